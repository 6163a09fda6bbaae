//! Runs the built `nomad` binary for behaviour that needs no agent.

use std::process::{Command, Output};

fn nomad(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nomad"))
        .args(args)
        .current_dir(dir)
        .env_remove("NOMAD_ADDR")
        .env_remove("NOMAD_NAMESPACE")
        .env_remove("NOMAD_TOKEN")
        .output()
        .expect("run nomad")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A loopback port nothing listens on: bind port 0, note the port, close the socket.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

#[test]
fn version_prints_nomad_version() {
    let d = tempfile::tempdir().unwrap();
    let out = nomad(d.path(), &["version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).trim(), "Nomad v2.0.6");
}

#[test]
fn job_init_writes_once() {
    let d = tempfile::tempdir().unwrap();
    let out = nomad(d.path(), &["job", "init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "Example job file written to example.nomad.hcl"
    );
    let content = std::fs::read_to_string(d.path().join("example.nomad.hcl")).unwrap();
    assert!(content.contains("job \"example\""));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("example.nomad.hcl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o007, 0, "no access for others: {mode:o}");
    }
    let again = nomad(d.path(), &["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("Job 'example.nomad.hcl' already exists"));
}

#[test]
fn job_run_output_prints_job_json() {
    let d = tempfile::tempdir().unwrap();
    let init = nomad(d.path(), &["job", "init", "-short", "short.nomad.hcl"]);
    assert_eq!(init.status.code(), Some(0));
    let out = nomad(d.path(), &["job", "run", "-output", "short.nomad.hcl"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("{\n    \"Job\": {"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["Job"]["ID"], "example");
}

#[test]
fn job_run_output_json_input() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("j.json"),
        r#"{"Job":{"ID":"j1","TaskGroups":[]}}"#,
    )
    .unwrap();
    let out = nomad(d.path(), &["run", "-json", "-output", "j.json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).expect("json");
    assert_eq!(v["Job"]["ID"], "j1");
}

#[test]
fn bad_hcl_fails_with_position() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("bad.nomad.hcl"),
        "job \"x\" {\n  group \"g\" {\n    count = \n  }\n}\n",
    )
    .unwrap();
    let port = closed_port();
    let addr = format!("http://127.0.0.1:{port}");
    let out = nomad(
        d.path(),
        &["job", "run", "-address", &addr, "bad.nomad.hcl"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("Error getting job struct: "), "{err}");
    assert!(err.contains("bad.nomad.hcl:"), "{err}");
    assert!(
        !err.contains("connection refused"),
        "must not contact the agent: {err}"
    );
}

#[test]
fn unknown_flag_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let out = nomad(d.path(), &["job", "status", "-bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("flag provided but not defined: -bogus"));
    assert!(text(&out.stdout).contains("Usage: nomad job status"));
}

#[test]
fn help_flag_exits_0() {
    let d = tempfile::tempdir().unwrap();
    let out = nomad(d.path(), &["job", "run", "-h"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Usage: nomad job run"));
}

#[test]
fn connection_refused_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let port = closed_port();
    let addr = format!("http://127.0.0.1:{port}");
    let out = nomad(d.path(), &["job", "status", "-address", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let want = format!(
        "Error querying jobs: Get \"http://127.0.0.1:{port}/v1/jobs\": dial tcp 127.0.0.1:{port}: connect: connection refused"
    );
    assert_eq!(err.trim(), want);
    let out = Command::new(env!("CARGO_BIN_EXE_nomad"))
        .args(["node", "status"])
        .env("NOMAD_ADDR", &addr)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Error querying node status: Get"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_falls_back_to_local_checks() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("j.json"), r#"{"ID":"j1","Name":"j1","Type":"service","Datacenters":["dc1"],"TaskGroups":[{"Name":"g","Tasks":[{"Name":"t","Driver":"raw_exec","Config":{"command":"/bin/true"}}]}]}"#).unwrap();
    let port = closed_port();
    let addr = format!("http://127.0.0.1:{port}");
    let out = nomad(
        d.path(),
        &["job", "validate", "-json", "-address", &addr, "j.json"],
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Driver configuration not validated"),
        "{stdout}"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("Job validation successful"), "{stdout}");
}
