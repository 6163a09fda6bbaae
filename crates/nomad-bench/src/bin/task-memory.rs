//! Per-task memory overhead on the node, N sleeping raw_exec tasks: the agent's RSS growth per
//! running task, plus the task's one helper process, its exit recorder (Nomad has an
//! executor and a logmon per task). The recorder is reported both as RSS (counting the
//! binary's pages it shares with the agent and every other recorder) and as PSS (shared
//! pages divided among their users: what it really adds).
//!
//!     cargo build --release -p nomad-cli -p nomad-bench
//!     ./target/release/task-memory [tasks=100]

use std::time::Duration;

use nomad_bench::nomad_bin;
use nomad_testkit::{wait_for, DevAgent};

/// `(rss, pss)` in KiB of `pid`, from `/proc/<pid>/smaps_rollup`.
fn rss_pss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// The agent's exit-recorder children.
fn recorders(agent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            ppid == Some(agent) && cmd.split(|b| *b == 0).any(|a| a == b"exit-recorder")
        })
        .collect()
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
    let idle = rss_pss_kib(pid).0;

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
    let busy = rss_pss_kib(pid).0;
    let per_task = (busy.saturating_sub(idle)) as f64 / tasks as f64;
    let helpers = recorders(pid);
    let (h_rss, h_pss) = helpers.iter().fold((0, 0), |(r, p), h| {
        let (hr, hp) = rss_pss_kib(*h);
        (r + hr, p + hp)
    });
    let n = helpers.len().max(1) as f64;
    let (rec_rss, rec_pss) = (h_rss as f64 / n, h_pss as f64 / n);
    println!("agent RSS idle {idle} KiB, with {tasks} running tasks {busy} KiB");
    println!(
        "  agent growth per task {per_task:.1} KiB; helper processes per task: {:.2} (exit recorder: RSS {rec_rss:.0} KiB, PSS {rec_pss:.0} KiB)",
        helpers.len() as f64 / tasks as f64
    );
    println!(
        "  per-task overhead (agent growth + recorder PSS) {:.1} KiB ({:.3} MiB); with recorder RSS {:.3} MiB",
        per_task + rec_pss,
        (per_task + rec_pss) / 1024.0,
        (per_task + rec_rss) / 1024.0
    );
    let _ = ureq::delete(&format!("{}/v1/job/mem?purge=true", agent.address)).call();
}
