//! Soak (issue: alloc exec): 1,000 scripted `nomad alloc exec` runs against one task, with
//! pseudo-random exit codes and output sizes; every exit code and every byte must arrive.

use std::path::Path;
use std::time::Duration;

use nomad_testkit::DevAgent;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

#[test]
fn thousand_execs_keep_every_code_and_byte() {
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("soak.nomad.hcl");
    std::fs::write(
        &spec,
        "job \"soak\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sleep\"\n        args = [\"3600\"]\n      }\n      resources {\n        cpu = 20\n        memory = 16\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let (code, out, err) = agent.cli(bin(), &["job", "run", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let mut alloc = String::new();
    agent.wait_until("a running alloc", Duration::from_secs(20), |a| {
        if let Some(x) = a
            .get_json("/v1/job/soak/allocations")
            .ok()
            .and_then(|v| v.as_array().and_then(|x| x.first().cloned()))
        {
            alloc = x["ID"].as_str().unwrap_or_default().to_string();
            return x["ClientStatus"] == "running";
        }
        false
    });

    // A small LCG: deterministic, so a failure names a case that can be rerun.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let mut bytes_checked = 0usize;
    for case in 0..1000 {
        let code = (next() % 8) as i32 * if case % 7 == 0 { 9 } else { 1 } % 256;
        let size = match next() % 4 {
            0 => 0,
            1 => (next() % 100) as usize,
            2 => (next() % 5_000) as usize,
            _ => (next() % 70_000) as usize,
        };
        let script =
            format!("yes abcdefghijklmnopqrstuvwxyz0123456789 | head -c {size}; exit {code}");
        let (got, out, err) = agent.cli(
            bin(),
            &[
                "alloc", "exec", "-i=false", "-t=false", &alloc, "/bin/sh", "-c", &script,
            ],
        );
        assert_eq!(
            got, code,
            "case {case}: exit code (size {size}); stderr: {err}"
        );
        let expected: String = "abcdefghijklmnopqrstuvwxyz0123456789\n"
            .chars()
            .cycle()
            .take(size)
            .collect();
        assert!(
            out == expected,
            "case {case}: {} bytes received, {size} expected",
            out.len()
        );
        bytes_checked += size;
    }
    assert!(
        bytes_checked > 1_000_000,
        "the soak moved {bytes_checked} bytes"
    );
}
