//! Per-task memory overhead on the node: the agent's RSS growth per running raw_exec task (our
//! tasks have no per-task helper process, unlike Nomad's executor/logmon pair), N sleeping tasks.
//!
//!     cargo build --release -p nomad-cli -p nomad-bench
//!     ./target/release/task-memory [tasks=100]

use std::time::Duration;

use nomad_bench::nomad_bin;
use nomad_testkit::{wait_for, DevAgent};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let tasks: usize = std::env::args()
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
    let pid = agent.pid().expect("agent pid");
    // Let the idle agent settle (allocator arenas, first requests) before the baseline.
    let _ = agent.get_json("/v1/jobs");
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pid);

    let body = serde_json::json!({"Job": {
        "ID": "mem", "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Count": tasks, "Tasks": [{
            "Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/sleep", "args": ["3600"]},
            "Resources": {"CPU": 10, "MemoryMB": 10}}]}]}});
    ureq::put(&format!("{}/v1/jobs", agent.address))
        .send_json(&body)
        .expect("register");
    let running = wait_for(Duration::from_secs(120), || {
        agent
            .get_json("/v1/job/mem/allocations")
            .ok()
            .and_then(|v| {
                v.as_array()
                    .map(|a| a.iter().filter(|x| x["ClientStatus"] == "running").count())
            })
            .unwrap_or(0)
            == tasks
    });
    assert!(running, "not all {tasks} tasks reached running");
    std::thread::sleep(Duration::from_millis(500));
    let busy = rss_kib(pid);
    let per_task = (busy.saturating_sub(idle)) as f64 / tasks as f64;
    println!("agent RSS idle {idle} KiB, with {tasks} running tasks {busy} KiB");
    println!(
        "  per-task overhead {per_task:.1} KiB ({:.3} MiB); helper processes per task: 0",
        per_task / 1024.0
    );
    let _ = ureq::delete(&format!("{}/v1/job/mem?purge=true", agent.address)).call();
}
