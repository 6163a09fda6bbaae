//! Commit latency of `RaftNode::apply` on a 3-node in-process cluster with fsync on, next to
//! the fsync floor of the same disk (256 B write + fdatasync), a bare redb commit, and the disk
//! work one commit needs (leader commit, then both followers' at once), measured in the same
//! run and interleaved.
//!
//! `cargo run --release -p nomad-raft --example raft-bench [-- <dir> [samples]]`

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nomad_raft::{RaftConfig, RaftNode};
use nomad_state::{Command, StateStore};
use nomad_structs::Evaluation;

fn eval_cmd(i: usize) -> Command {
    Command::EvalsUpsert {
        evals: vec![Evaluation {
            id: format!("bench-eval-{i:06}"),
            namespace: "default".into(),
            job_id: "bench".into(),
            status: "pending".into(),
            ..Default::default()
        }],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Appends 256 B to `f` and fdatasyncs it: the floor of any durable commit on this disk.
fn fsync_once(f: &mut std::fs::File) -> std::io::Result<Duration> {
    let t = Instant::now();
    f.write_all(&[0x5au8; 256])?;
    f.sync_data()?;
    Ok(t.elapsed())
}

const PROBE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");

/// One 256 B insert committed with `Durability::Immediate` (redb's own floor).
fn redb_once(db: &redb::Database, i: u64) -> Result<Duration, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let txn = db.begin_write()?;
    txn.open_table(PROBE)?.insert(i, [0x5au8; 256].as_slice())?;
    txn.commit()?;
    Ok(t.elapsed())
}

/// The disk work one commit needs with openraft 0.9 on this machine, and nothing else: the
/// leader's redb commit, then the two followers' commits at the same time (they share the
/// disk, as the three servers here do). openraft appends on the leader before it replicates,
/// so no commit can be faster than this.
fn protocol_floor_once(
    dbs: &[redb::Database; 3],
    i: u64,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let t = Instant::now();
    redb_once(&dbs[0], i)?;
    std::thread::scope(|s| {
        let other = s.spawn(|| redb_once(&dbs[2], i).map_err(|e| e.to_string()));
        let mine = redb_once(&dbs[1], i).map_err(|e| e.to_string());
        let other = other
            .join()
            .map_err(|_| "probe thread panicked".to_string())?;
        mine.and(other)
    })?;
    Ok(t.elapsed())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let samples: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    let root = tempfile::tempdir_in(&base)?;

    let mut nodes: Vec<Arc<RaftNode>> = Vec::new();
    for id in 1..=3u64 {
        let dir = root.path().join(format!("node{id}"));
        std::fs::create_dir_all(&dir)?;
        let mut cfg = RaftConfig::new(id, "127.0.0.1:0", dir);
        cfg.heartbeat_interval = Duration::from_millis(50);
        cfg.election_timeout_min = Duration::from_millis(300);
        cfg.election_timeout_max = Duration::from_millis(600);
        nodes.push(RaftNode::start(cfg, StateStore::new()).await?);
    }
    let members: BTreeMap<u64, String> =
        nodes.iter().map(|n| (n.node_id(), n.rpc_addr())).collect();
    nodes[0].bootstrap(members).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        if let Some(n) = nodes.iter().find(|n| n.is_leader()) {
            break n.clone();
        }
        if Instant::now() > deadline {
            return Err("no leader elected".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let follower = nodes
        .iter()
        .find(|n| !n.is_leader())
        .cloned()
        .ok_or("no follower")?;

    for i in 0..20 {
        leader.apply(eval_cmd(i)).await?;
    }
    // Interleave the three measurements so that all of them see the same disk load.
    let mut probe = std::fs::File::create(root.path().join("fsync-probe"))?;
    let probe_db = redb::Database::create(root.path().join("redb-probe.db"))?;
    let protocol_dbs = [
        redb::Database::create(root.path().join("protocol-probe-1.db"))?,
        redb::Database::create(root.path().join("protocol-probe-2.db"))?,
        redb::Database::create(root.path().join("protocol-probe-3.db"))?,
    ];
    let (mut lat, mut fwd, mut floor, mut redb) = (vec![], vec![], vec![], vec![]);
    let mut protocol = vec![];
    for i in 0..samples {
        let t = Instant::now();
        leader.apply(eval_cmd(1000 + i)).await?;
        lat.push(t.elapsed());
        if i % 4 == 0 {
            let t = Instant::now();
            follower.apply(eval_cmd(100_000 + i)).await?;
            fwd.push(t.elapsed());
        }
        floor.push(fsync_once(&mut probe)?);
        redb.push(redb_once(&probe_db, i as u64)?);
        protocol.push(protocol_floor_once(&protocol_dbs, i as u64)?);
    }
    for v in [&mut lat, &mut fwd, &mut floor, &mut redb, &mut protocol] {
        v.sort();
    }
    let (p50, p99, f50) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&floor, 0.5),
    );
    println!("dir: {}", root.path().display());
    println!("apply() on leader, 3 nodes, fsync on: p50 {p50:?}  p99 {p99:?}  (n={samples})");
    println!(
        "apply() on follower (forwarded):      p50 {:?}  (n={})",
        percentile(&fwd, 0.5),
        fwd.len()
    );
    println!(
        "fsync floor (256 B write + fdatasync): p50 {f50:?}  p99 {:?}  (n={samples})",
        percentile(&floor, 0.99)
    );
    println!(
        "redb commit (256 B, Immediate):        p50 {:?}  (n={samples})",
        percentile(&redb, 0.5)
    );
    let pr50 = percentile(&protocol, 0.5);
    println!(
        "disk work of one commit (leader redb commit, then two at once): p50 {pr50:?}  (n={samples})"
    );
    println!(
        "ratio apply p50 / fsync p50: {:.2}",
        p50.as_secs_f64() / f50.as_secs_f64().max(1e-9)
    );
    println!(
        "ratio apply p50 / disk work p50: {:.2}",
        p50.as_secs_f64() / pr50.as_secs_f64().max(1e-9)
    );

    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
