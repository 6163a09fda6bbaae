//! `alloc exec` round trip on a dev agent: (a) the API alone — websocket upgrade, exec of
//! `/bin/true` in the task (its cgroup, env, cwd), until the exit frame; (b) the whole CLI,
//! `nomad alloc exec <alloc> /bin/true`; against bare fork/exec of `/bin/true` in the same run.
//!
//!     cargo build --release -p nomad-cli -p nomad-bench
//!     ./target/release/exec-latency [runs=200]

use std::time::{Duration, Instant};

use nomad_bench::{fork_exec_floor, ms, nomad_bin, percentile};
use nomad_testkit::{wait_for, DevAgent};

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let bin = nomad_bin();
    assert!(
        bin.exists(),
        "build the agent first: cargo build --release -p nomad-cli ({} missing)",
        bin.display()
    );
    let agent = DevAgent::start(&bin, "");
    let body = serde_json::json!({"Job": {"ID": "execbench", "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/sleep", "args": ["3600"]}, "Resources": {"CPU": 10, "MemoryMB": 10}}]}]}});
    ureq::put(&format!("{}/v1/jobs", agent.address))
        .send_json(&body)
        .expect("register");
    let mut alloc = String::new();
    let up = wait_for(Duration::from_secs(30), || {
        agent
            .get_json("/v1/job/execbench/allocations")
            .ok()
            .and_then(|v| v.as_array().and_then(|a| a.first().cloned()))
            .is_some_and(|a| {
                alloc = a["ID"].as_str().unwrap_or_default().to_string();
                a["ClientStatus"] == "running"
            })
    });
    assert!(up, "task never ran");
    let floor = fork_exec_floor(200);
    let host = agent.address.trim_start_matches("http://").to_string();
    let url = format!("ws://{host}/v1/client/allocation/{alloc}/exec?task=t&tty=false&command=%5B%22%2Fbin%2Ftrue%22%5D");
    let mut api = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let (mut ws, _) = tungstenite::connect(url.as_str()).expect("websocket");
        loop {
            let msg = ws.read().expect("frame");
            if let tungstenite::Message::Text(t) = msg {
                let v: serde_json::Value = serde_json::from_str(&t).expect("json frame");
                if v["exited"] == true {
                    break;
                }
            }
        }
        api.push(t.elapsed());
        let _ = ws.close(None);
    }
    let mut cli = Vec::with_capacity(runs / 4);
    for _ in 0..(runs / 4).max(1) {
        let t = Instant::now();
        let out = std::process::Command::new(&bin)
            .args(["alloc", "exec", "-i=false", "-t=false", &alloc, "/bin/true"])
            .env("NOMAD_ADDR", &agent.address)
            .output()
            .expect("cli");
        assert!(
            out.status.success(),
            "cli exec failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cli.push(t.elapsed());
    }
    let (a50, a99) = (percentile(&mut api, 50.0), percentile(&mut api, 99.0));
    let (c50, c99) = (percentile(&mut cli, 50.0), percentile(&mut cli, 99.0));
    println!(
        "alloc exec /bin/true on a raw_exec task ({runs} API runs, {} CLI runs)",
        cli.len()
    );
    println!("  API round trip p50 {} ms  p99 {} ms", ms(a50), ms(a99));
    println!("  CLI round trip p50 {} ms  p99 {} ms", ms(c50), ms(c99));
    println!("  fork/exec/wait floor p50 {} ms", ms(floor));
    println!(
        "  ratio API p50/floor: {:.1}x",
        a50.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
    let _ = ureq::delete(&format!("{}/v1/job/execbench?purge=true", agent.address)).call();
}
