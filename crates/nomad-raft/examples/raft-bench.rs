//! Commit latency of `RaftNode::apply` on a 3-node in-process cluster with fsync on, next to
//! the fsync floor of the same disk (256 B write + fdatasync), a bare redb commit, and the disk
//! disk work one commit needs: as openraft 0.9 does it (leader commit, then both followers' at
//! once), as an engine that overlaps the leader's flush with replication would (all three
//! redb commits at once), and as any engine with any log would at best (three fdatasyncs at
//! once). All measured in the same run, interleaved; each quorum figure stops at the leader
//! plus the first follower.
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

type Job = Box<dyn FnMut() -> Result<Duration, String> + Send>;

/// A thread that runs its one piece of disk work whenever asked and reports to a channel it may
/// share with other workers, so that several commits start at the same instant without a
/// thread spawn inside the measurement, and the first to finish can be told apart.
struct Worker {
    go: std::sync::mpsc::SyncSender<()>,
}

impl Worker {
    fn start(mut job: Job, done: std::sync::mpsc::SyncSender<Result<Duration, String>>) -> Self {
        let (go, go_rx) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::spawn(move || {
            while go_rx.recv().is_ok() {
                if done.send(job()).is_err() {
                    break;
                }
            }
        });
        Worker { go }
    }
}

/// Two followers' disk work: each on its own thread, reporting to one channel.
struct Followers {
    workers: [Worker; 2],
    done: std::sync::mpsc::Receiver<Result<Duration, String>>,
}

impl Followers {
    fn start(a: Job, b: Job) -> Self {
        let (tx, done) = std::sync::mpsc::sync_channel(2);
        Followers {
            workers: [Worker::start(a, tx.clone()), Worker::start(b, tx)],
            done,
        }
    }

    fn go(&self) -> Result<(), Box<dyn std::error::Error>> {
        for w in &self.workers {
            w.go.send(())?;
        }
        Ok(())
    }

    /// Waits for the first follower to finish, then for the other outside the caller's clock.
    fn first(&self) -> Result<Instant, Box<dyn std::error::Error>> {
        self.done.recv()??;
        let at = Instant::now();
        self.done.recv()??;
        Ok(at)
    }
}

fn redb_job(db: redb::Database) -> Job {
    let mut i = 0u64;
    Box::new(move || {
        i += 1;
        redb_once(&db, i).map_err(|e| e.to_string())
    })
}

fn fsync_job(mut f: std::fs::File) -> Job {
    Box::new(move || fsync_once(&mut f).map_err(|e| e.to_string()))
}

/// The disk work one commit needs with openraft 0.9 on this machine, and nothing else: the
/// leader's redb commit, then the two followers' commits at the same time (they share the
/// disk, as the three servers here do), until the first follower is done (a quorum).
/// openraft 0.9 appends on the leader before it replicates, so no commit can be faster.
fn serial_floor_once(
    leader: &redb::Database,
    followers: &Followers,
    i: u64,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let t = Instant::now();
    redb_once(leader, i)?;
    followers.go()?;
    Ok(followers.first()? - t)
}

/// The disk work of one commit for an engine that flushes the leader's log while it
/// replicates (openraft 0.10's asynchronous log IO): the leader's and both followers' commits
/// started at once, until the leader and one follower are done. With `leader` a plain fsync
/// and the followers too, this is the floor of any engine and any log on this one disk.
fn overlapped_floor_once(
    leader: &mut dyn FnMut() -> Result<Duration, String>,
    followers: &Followers,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let t = Instant::now();
    followers.go()?;
    leader()?;
    let leader_done = Instant::now();
    let follower_done = followers.first()?;
    Ok(leader_done.max(follower_done) - t)
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
    let db = |name: &str| redb::Database::create(root.path().join(name));
    let file = |name: &str| std::fs::File::create(root.path().join(name));
    let serial_leader = db("serial-probe-1.db")?;
    let serial_followers = Followers::start(
        redb_job(db("serial-probe-2.db")?),
        redb_job(db("serial-probe-3.db")?),
    );
    let mut overlapped_leader = redb_job(db("overlap-probe-1.db")?);
    let overlapped_followers = Followers::start(
        redb_job(db("overlap-probe-2.db")?),
        redb_job(db("overlap-probe-3.db")?),
    );
    let mut quorum_leader = fsync_job(file("quorum-probe-1")?);
    let quorum_followers = Followers::start(
        fsync_job(file("quorum-probe-2")?),
        fsync_job(file("quorum-probe-3")?),
    );
    let (mut lat, mut fwd, mut floor, mut redb) = (vec![], vec![], vec![], vec![]);
    let (mut serial, mut overlapped, mut quorum) = (vec![], vec![], vec![]);
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
        serial.push(serial_floor_once(
            &serial_leader,
            &serial_followers,
            i as u64,
        )?);
        overlapped.push(overlapped_floor_once(
            &mut overlapped_leader,
            &overlapped_followers,
        )?);
        quorum.push(overlapped_floor_once(
            &mut quorum_leader,
            &quorum_followers,
        )?);
    }
    for v in [
        &mut lat,
        &mut fwd,
        &mut floor,
        &mut redb,
        &mut serial,
        &mut overlapped,
        &mut quorum,
    ] {
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
    let ratio = |d: Duration| d.as_secs_f64() / f50.as_secs_f64().max(1e-9);
    for (what, v) in [
        (
            "disk work, openraft 0.9 (leader redb commit, then followers')",
            &serial,
        ),
        (
            "disk work, overlapped flush (three redb commits at once)  ",
            &overlapped,
        ),
        (
            "disk work, any engine and log (three fdatasyncs at once) ",
            &quorum,
        ),
    ] {
        let d = percentile(v, 0.5);
        println!("{what}: p50 {d:?}  ({:.2}x the fsync floor)", ratio(d));
    }
    let s50 = percentile(&serial, 0.5);
    println!("ratio apply p50 / fsync p50: {:.2}", ratio(p50));
    println!(
        "ratio apply p50 / disk work (openraft 0.9) p50: {:.2}",
        p50.as_secs_f64() / s50.as_secs_f64().max(1e-9)
    );

    for n in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
