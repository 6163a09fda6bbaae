//! Submit-to-running latency on a dev agent: PUT /v1/jobs of a one-task raw_exec batch job until
//! its allocation's client status is `running` (or already `complete`), over N jobs.
//!
//!     cargo build --release -p nomad-cli -p nomad-bench
//!     ./target/release/submit-latency [jobs=100]

use std::time::{Duration, Instant};

use nomad_bench::{fork_exec_floor, ms, nomad_bin, percentile};
use nomad_testkit::DevAgent;

fn main() {
    let jobs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let bin = nomad_bin();
    assert!(
        bin.exists(),
        "build the agent first: cargo build --release -p nomad-cli ({} missing)",
        bin.display()
    );
    let agent = DevAgent::start(&bin, "");
    let floor = fork_exec_floor(200);

    let mut samples = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let id = format!("bench-{i}");
        let body = serde_json::json!({"Job": {
            "ID": id, "Type": "batch", "Datacenters": ["dc1"],
            "TaskGroups": [{"Name": "g", "Tasks": [{
                "Name": "t", "Driver": "raw_exec",
                "Config": {"command": "/bin/sleep", "args": ["30"]},
                "Resources": {"CPU": 10, "MemoryMB": 10}}]}]}});
        let start = Instant::now();
        ureq::put(&format!("{}/v1/jobs", agent.address))
            .send_json(&body)
            .expect("register job");
        let mut index = 0u64;
        loop {
            let url = format!(
                "{}/v1/job/{id}/allocations?index={index}&wait=10s",
                agent.address
            );
            let mut resp = ureq::get(&url).call().expect("allocations");
            index = resp
                .headers()
                .get("X-Nomad-Index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let allocs: serde_json::Value = resp.body_mut().read_json().expect("json");
            let done = allocs.as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x["ClientStatus"] == "running" || x["ClientStatus"] == "complete")
            });
            if done {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "job {id} never started"
            );
        }
        samples.push(start.elapsed());
        let _ = ureq::delete(&format!("{}/v1/job/{id}?purge=true", agent.address)).call();
    }
    let p50 = percentile(&mut samples, 50.0);
    let p99 = percentile(&mut samples, 99.0);
    println!("submit-to-running over {jobs} batch jobs (raw_exec /bin/sleep)");
    println!("  p50 {} ms   p99 {} ms", ms(p50), ms(p99));
    println!(
        "  fork/exec/wait floor (/bin/true, p50 of 200): {} ms",
        ms(floor)
    );
    println!(
        "  ratio p50/floor: {:.1}x",
        p50.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
}
