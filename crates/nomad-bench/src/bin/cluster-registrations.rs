//! Job registrations per second through a three-server cluster (separate `nomad agent`
//! processes on loopback, Raft log fsync'd), with the latency of each registration, next to
//! the fsync floor of the same disk measured in the same run (256 B write + fdatasync in the
//! servers' data directory).
//!
//!     cargo build --release -p nomad-cli -p nomad-bench
//!     ./target/release/cluster-registrations [jobs=400] [concurrency=8]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nomad_bench::{ms, nomad_bin, percentile};
use nomad_testkit::cluster::{has_leader_and_peers, leader, server_config, Ports};
use nomad_testkit::DevAgent;

fn fsync_floor(dir: &std::path::Path, runs: usize) -> Duration {
    let mut f = std::fs::File::create(dir.join("fsync-probe")).expect("probe file");
    let mut v: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&[0x5a; 256]).expect("write");
            f.sync_data().expect("fdatasync");
            t.elapsed()
        })
        .collect();
    percentile(&mut v, 50.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let jobs = args.first().copied().unwrap_or(400);
    let concurrency = args.get(1).copied().unwrap_or(8).max(1);
    let bin = nomad_bin();
    assert!(
        bin.exists(),
        "build the agent first: cargo build --release -p nomad-cli ({} missing)",
        bin.display()
    );
    let root = tempfile::tempdir().expect("tmp");
    let ports = [Ports::free(), Ports::free(), Ports::free()];
    let servers: Vec<DevAgent> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let dir = root.path().join(format!("s{i}"));
            let cfg = server_config(&dir, &format!("s{i}"), *p, &ports, "");
            DevAgent::start_in(&bin, &dir, &cfg, p.http)
        })
        .collect();
    servers[0].wait_until("a leader and three voters", Duration::from_secs(60), |a| {
        has_leader_and_peers(a, 3)
    });
    let lead = leader(&servers[0]);
    let lead_i = ports
        .iter()
        .position(|p| p.rpc_addr() == lead)
        .expect("leader is one of ours");
    let floor = fsync_floor(root.path(), 200);

    // Through the leader (the common case: Nomad's clients pick any server, followers forward).
    let addr = servers[lead_i].address.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(jobs)));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (addr, next, lat) = (addr.clone(), next.clone(), lat.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return;
                }
                let body = serde_json::json!({"Job": {
                    "ID": format!("bench-{i}"), "Type": "batch", "Datacenters": ["dc1"],
                    "TaskGroups": [{"Name": "g", "Tasks": [{
                        "Name": "t", "Driver": "raw_exec",
                        "Config": {"command": "/bin/true"}}]}]}});
                let t = Instant::now();
                ureq::put(&format!("{addr}/v1/jobs"))
                    .send_json(&body)
                    .expect("register");
                lat.lock().unwrap().push(t.elapsed());
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let elapsed = start.elapsed();
    let mut lat = lat.lock().unwrap().clone();
    let p50 = percentile(&mut lat, 50.0);
    let p99 = percentile(&mut lat, 99.0);
    println!(
        "{jobs} registrations, {concurrency} at a time, through the leader of 3 servers: {:.0}/s",
        jobs as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency p50 {} ms, p99 {} ms; fsync floor {} ms (p50 {:.1}x the floor)",
        ms(p50),
        ms(p99),
        ms(floor),
        p50.as_secs_f64() / floor.as_secs_f64()
    );
}
