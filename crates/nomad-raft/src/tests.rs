//! In-process clusters over real TCP on 127.0.0.1, with temp data dirs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nomad_state::{Command, StateStore};
use nomad_structs::Evaluation;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use crate::store::log::{LogDb, LogStore};
use crate::store::sm::StateMachine;
use crate::types::{StorageError, TypeConfig};
use crate::{RaftConfig, RaftError, RaftNode};

const WAIT: Duration = Duration::from_secs(15);

fn cfg(id: u64, addr: &str, dir: &Path) -> RaftConfig {
    RaftConfig {
        node_id: id,
        rpc_addr: addr.to_string(),
        data_dir: dir.to_path_buf(),
        cluster_id: None,
        heartbeat_interval: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(150),
        election_timeout_max: Duration::from_millis(300),
        in_memory: false,
        listen: true,
        dial_prefix: None,
        dialer: None,
    }
}

fn eval_cmd(i: usize) -> Command {
    Command::EvalsUpsert {
        evals: vec![Evaluation {
            id: format!("eval-{i:04}"),
            namespace: "default".into(),
            job_id: "example".into(),
            status: "pending".into(),
            ..Default::default()
        }],
    }
}

/// Polls `cond` until it holds; panics naming `what` after `timeout`.
async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cluster of nodes 1..=n, each with its own data dir and state store.
struct Cluster {
    dirs: Vec<TempDir>,
    nodes: Vec<Option<Arc<RaftNode>>>,
    states: Vec<Arc<StateStore>>,
    addrs: Vec<String>,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let mut c = Cluster {
            dirs: vec![],
            nodes: vec![],
            states: vec![],
            addrs: vec![],
        };
        for i in 0..n {
            let dir = tempfile::tempdir().expect("tempdir");
            let state = StateStore::new();
            let node = RaftNode::start(cfg(i as u64 + 1, "127.0.0.1:0", dir.path()), state.clone())
                .await
                .expect("node starts");
            c.addrs.push(node.rpc_addr());
            c.dirs.push(dir);
            c.states.push(state);
            c.nodes.push(Some(node));
        }
        c
    }

    fn members(&self) -> BTreeMap<u64, String> {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, a.clone()))
            .collect()
    }

    async fn bootstrap(n: usize) -> Cluster {
        let c = Cluster::start(n).await;
        c.node(1).bootstrap(c.members()).await.expect("bootstrap");
        c.wait_leader(&[]).await;
        c
    }

    fn node(&self, id: u64) -> &Arc<RaftNode> {
        self.nodes[id as usize - 1]
            .as_ref()
            .expect("node is running")
    }

    fn running(&self) -> impl Iterator<Item = &Arc<RaftNode>> {
        self.nodes.iter().flatten()
    }

    /// Waits until every running node (but `except`) agrees on one leader; returns its id.
    async fn wait_leader(&self, except: &[u64]) -> u64 {
        let mut leader = 0;
        wait_until("a leader all nodes agree on", WAIT, || {
            let views: Vec<Option<u64>> = self
                .running()
                .filter(|n| !except.contains(&n.node_id()))
                .map(|n| n.leader().map(|l| l.0))
                .collect();
            match views.first() {
                Some(Some(l)) if views.iter().all(|v| *v == Some(*l)) && !except.contains(l) => {
                    leader = *l;
                    self.node(*l).is_leader()
                }
                _ => false,
            }
        })
        .await;
        leader
    }

    async fn stop(&mut self, id: u64) {
        let node = self.nodes[id as usize - 1].take().expect("node is running");
        node.shutdown().await;
    }

    async fn restart(&mut self, id: u64) {
        let i = id as usize - 1;
        let state = StateStore::new();
        let node = RaftNode::start(cfg(id, &self.addrs[i], self.dirs[i].path()), state.clone())
            .await
            .expect("node restarts");
        self.states[i] = state;
        self.nodes[i] = Some(node);
    }

    /// Waits until every running node's state is byte-for-byte the same and has `evals` evals.
    async fn wait_converged(&self, evals: usize) {
        let ids: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(i, _)| i)
            .collect();
        wait_until("all states to converge", WAIT, || {
            let first = self.states[ids[0]].persist();
            ids.iter().all(|i| self.states[*i].persist() == first)
                && self.states[ids[0]].snapshot().evals(None, "").len() == evals
        })
        .await;
    }

    async fn shutdown(&mut self) {
        for n in self.nodes.iter_mut() {
            if let Some(n) = n.take() {
                n.shutdown().await;
            }
        }
    }
}

struct TempBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for TempBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        // The suite checks logic, not durability: skip fsync so it stays fast.
        let db = LogDb::open(Some(&dir.path().join("raft.db")), false).expect("opens");
        let sm = StateMachine::new(
            StateStore::new(),
            None,
            Some(dir.path().to_path_buf()),
            false,
        );
        Ok((dir, LogStore::new(Arc::new(db)), sm))
    }
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
        let db = LogDb::open(None, false).expect("opens");
        Ok((
            (),
            LogStore::new(Arc::new(db)),
            StateMachine::new(StateStore::new(), None, None, false),
        ))
    }
}

#[test]
fn file_log_store_passes_openraft_suite() {
    Suite::test_all(TempBuilder).expect("file-backed store passes");
}

#[test]
fn memory_log_store_passes_openraft_suite() {
    Suite::test_all(MemBuilder).expect("in-memory store passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_replicate_forward_fail_over_and_catch_up() {
    let mut c = Cluster::bootstrap(3).await;
    let leader = c.wait_leader(&[]).await;
    assert_eq!(c.node(leader).peers().len(), 3);
    assert!(
        c.node(leader).peers().iter().all(|p| p.2),
        "all three are voters"
    );

    // 100 writes on the leader.
    let mut acked = Vec::new();
    for i in 0..100 {
        let index = c
            .node(leader)
            .apply(eval_cmd(i))
            .await
            .expect("write on leader");
        acked.push((i, index));
    }
    assert!(
        acked.windows(2).all(|w| w[0].1 < w[1].1),
        "indexes increase"
    );
    // The leader returned after applying locally.
    assert!(c.states[leader as usize - 1]
        .snapshot()
        .eval("eval-0099")
        .is_some());
    c.wait_converged(100).await;

    // A write on a follower is forwarded, and applied on that follower when apply returns.
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let index = c
        .node(follower)
        .apply(eval_cmd(100))
        .await
        .expect("forwarded write");
    assert!(c.states[follower as usize - 1]
        .snapshot()
        .eval("eval-0100")
        .is_some());
    assert!(c.states[follower as usize - 1].latest_index() >= index);
    acked.push((100, index));
    c.ensure_linearizable_everywhere().await;

    // Kill the leader: a new one is elected and takes writes.
    c.stop(leader).await;
    let started = std::time::Instant::now();
    let new_leader = c.wait_leader(&[leader]).await;
    assert_ne!(new_leader, leader);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "new leader within a few seconds"
    );
    for i in 101..120 {
        let index = c
            .node(new_leader)
            .apply(eval_cmd(i))
            .await
            .expect("write after fail-over");
        acked.push((i, index));
    }

    // The old leader restarts from its data dir and catches up.
    c.restart(leader).await;
    c.wait_converged(120).await;
    for s in &c.states {
        let snap = s.snapshot();
        for (i, _) in &acked {
            assert!(
                snap.eval(&format!("eval-{i:04}")).is_some(),
                "acknowledged write {i} lost"
            );
        }
    }
    c.shutdown().await;
}

impl Cluster {
    async fn ensure_linearizable_everywhere(&self) {
        for n in self.running() {
            n.ensure_linearizable().await.expect("linearizable read");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_restart_and_install_on_lagging_follower() {
    let mut c = Cluster::bootstrap(3).await;
    let leader = c.wait_leader(&[]).await;
    for i in 0..30 {
        c.node(leader).apply(eval_cmd(i)).await.expect("write");
    }
    c.wait_converged(30).await;

    // A follower goes away; the leader writes on, snapshots and purges its log past it.
    let lagging = (1..=3).find(|id| *id != leader).expect("a follower");
    c.stop(lagging).await;
    for i in 30..60 {
        c.node(leader).apply(eval_cmd(i)).await.expect("write");
    }
    c.node(leader).snapshot_now().await.expect("snapshot");
    let applied = c.node(leader).applied_index();
    c.node(leader).purge_log(applied).await.expect("purge");
    assert!(c.dirs[leader as usize - 1]
        .path()
        .join("raft/snapshot.bin")
        .exists());

    // The lagging follower can only catch up through InstallSnapshot.
    c.restart(lagging).await;
    c.wait_converged(60).await;

    // The leader restarts from snapshot + (empty) log tail and has the full state right away,
    // before hearing from any peer.
    let before = c.states[leader as usize - 1].persist();
    c.stop(leader).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &others {
        c.stop(*id).await;
    }
    c.restart(leader).await;
    assert_eq!(
        c.states[leader as usize - 1].persist(),
        before,
        "state restored from the snapshot"
    );
    for id in &others {
        c.restart(*id).await;
    }
    let l = c.wait_leader(&[]).await;
    c.node(l)
        .apply(eval_cmd(60))
        .await
        .expect("write after restart");
    c.wait_converged(61).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minority_partition_accepts_no_writes() {
    let mut c = Cluster::bootstrap(3).await;
    let old = c.wait_leader(&[]).await;
    c.node(old).apply(eval_cmd(0)).await.expect("write");
    let majority: Vec<u64> = (1..=3).filter(|id| *id != old).collect();

    // Cut the leader off from both followers.
    c.node(old).partition_from(&majority);
    for id in &majority {
        c.node(*id).partition_from(&[old]);
    }
    let err = c
        .node(old)
        .apply_with_timeout(eval_cmd(1), Duration::from_secs(2))
        .await
        .expect_err("minority write");
    assert_eq!(err, RaftError::NoLeader);
    assert_eq!(err.to_string(), "No cluster leader");

    // The majority elects a leader and takes writes.
    let mut new = 0;
    wait_until("a leader in the majority", WAIT, || {
        match c.node(majority[0]).leader() {
            Some((l, _)) if majority.contains(&l) && c.node(l).is_leader() => {
                new = l;
                true
            }
            _ => false,
        }
    })
    .await;
    c.node(new)
        .apply(eval_cmd(2))
        .await
        .expect("majority write");

    // Heal: the old leader steps down and converges; the refused write never appears.
    for id in 1..=3 {
        c.node(id).partition_from(&[]);
    }
    c.wait_converged(2).await;
    assert!(c.states[0].snapshot().eval("eval-0001").is_none());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_via_any_member_and_remove() {
    let mut c = Cluster::bootstrap(3).await;
    let leader = c.wait_leader(&[]).await;
    for i in 0..10 {
        c.node(leader).apply(eval_cmd(i)).await.expect("write");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateStore::new();
    let n4 = RaftNode::start(cfg(4, "127.0.0.1:0", dir.path()), state.clone())
        .await
        .expect("starts");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    n4.join(&c.addrs[follower as usize - 1])
        .await
        .expect("join through a follower");
    wait_until("node 4 catches up", WAIT, || {
        state.snapshot().evals(None, "").len() == 10
    })
    .await;
    assert!(
        c.node(leader).peers().iter().any(|p| p.0 == 4 && p.2),
        "node 4 is a voter"
    );
    assert_eq!(
        n4.cluster_id(),
        c.node(leader).cluster_id(),
        "node 4 adopted the cluster ID"
    );

    c.node(follower)
        .remove_peer(4)
        .await
        .expect("remove through a follower");
    wait_until("node 4 removed", WAIT, || {
        c.node(leader).peers().iter().all(|p| p.0 != 4)
    })
    .await;
    n4.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_cluster_ids_refuse_to_talk() {
    let (da, db) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut ca = cfg(1, "127.0.0.1:0", da.path());
    ca.cluster_id = Some("cluster-a".into());
    let mut cb = cfg(2, "127.0.0.1:0", db.path());
    cb.cluster_id = Some("cluster-b".into());
    let a = RaftNode::start(ca.clone(), StateStore::new())
        .await
        .expect("a starts");
    let b_state = StateStore::new();
    let b = RaftNode::start(cb, b_state.clone())
        .await
        .expect("b starts");
    a.bootstrap(BTreeMap::from([(1, a.rpc_addr())]))
        .await
        .expect("bootstrap a");
    wait_until("a leads", WAIT, || a.is_leader()).await;
    a.apply(eval_cmd(0)).await.expect("write on a");

    let err = a
        .add_voter(2, b.rpc_addr())
        .await
        .expect_err("b is of another cluster");
    assert!(
        matches!(err, RaftError::ClusterIdMismatch { .. }),
        "{err:?}"
    );
    assert!(a.peers().iter().all(|p| p.0 != 2));
    let err = b.join(&a.rpc_addr()).await.expect_err("b cannot join a");
    assert!(
        matches!(err, RaftError::ClusterIdMismatch { .. }),
        "{err:?}"
    );
    assert!(b_state.snapshot().evals(None, "").is_empty());

    // A data dir of cluster A cannot be started as cluster B.
    a.shutdown().await;
    let mut wrong = ca;
    wrong.cluster_id = Some("cluster-b".into());
    let err = RaftNode::start(wrong, StateStore::new())
        .await
        .expect_err("mismatch on disk");
    assert!(
        matches!(err, RaftError::ClusterIdMismatch { .. }),
        "{err:?}"
    );
    b.shutdown().await;
}

/// Starts a one-node cluster in `dir`, writes `n` evals, stops it.
async fn single_node_with_writes(dir: &Path, n: usize) {
    let node = RaftNode::start(cfg(1, "127.0.0.1:0", dir), StateStore::new())
        .await
        .expect("starts");
    node.bootstrap(BTreeMap::from([(1, node.rpc_addr())]))
        .await
        .expect("bootstrap");
    wait_until("leader", WAIT, || node.is_leader()).await;
    for i in 0..n {
        node.apply(eval_cmd(i)).await.expect("write");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replays_the_log_and_bootstrap_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    single_node_with_writes(dir.path(), 20).await;
    let state = StateStore::new();
    let node = RaftNode::start(cfg(1, "127.0.0.1:0", dir.path()), state.clone())
        .await
        .expect("restarts");
    // Committed entries are replayed while starting, before any election.
    assert_eq!(state.snapshot().evals(None, "").len(), 20);
    node.bootstrap(BTreeMap::from([(1, node.rpc_addr())]))
        .await
        .expect("already initialized is ok");
    wait_until("leader", WAIT, || node.is_leader()).await;
    node.apply(eval_cmd(20)).await.expect("write");
    node.shutdown().await;

    // Another node ID on the same data dir is refused.
    let err = RaftNode::start(cfg(2, "127.0.0.1:0", dir.path()), StateStore::new())
        .await
        .expect_err("wrong id");
    assert!(matches!(err, RaftError::Config(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_corrupted_log_is_reported() {
    // Truncated file.
    let dir = tempfile::tempdir().expect("tempdir");
    single_node_with_writes(dir.path(), 50).await;
    let db = dir.path().join("raft/raft.db");
    let len = std::fs::metadata(&db).expect("db exists").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let err = RaftNode::start(cfg(1, "127.0.0.1:0", dir.path()), StateStore::new())
        .await
        .expect_err("truncated");
    match &err {
        RaftError::Corrupt(m) => {
            eprintln!("detected: {m}");
            assert!(m.contains("raft.db"), "names the file: {m}")
        }
        e => panic!("expected Corrupt, got {e:?}"),
    }

    // Bytes flipped all over the file.
    let dir = tempfile::tempdir().expect("tempdir");
    single_node_with_writes(dir.path(), 50).await;
    let db = dir.path().join("raft/raft.db");
    let mut bytes = std::fs::read(&db).expect("read");
    for i in (4096..bytes.len()).step_by(97) {
        bytes[i] ^= 0xa5;
    }
    std::fs::write(&db, &bytes).expect("write");
    let err = RaftNode::start(cfg(1, "127.0.0.1:0", dir.path()), StateStore::new())
        .await
        .expect_err("corrupted");
    match &err {
        RaftError::Corrupt(m) => {
            eprintln!("detected: {m}");
            assert!(m.contains("raft.db"), "names the file: {m}")
        }
        e => panic!("expected Corrupt, got {e:?}"),
    }

    // A damaged snapshot file.
    let dir = tempfile::tempdir().expect("tempdir");
    let node = RaftNode::start(cfg(1, "127.0.0.1:0", dir.path()), StateStore::new())
        .await
        .expect("starts");
    node.bootstrap(BTreeMap::from([(1, node.rpc_addr())]))
        .await
        .expect("bootstrap");
    wait_until("leader", WAIT, || node.is_leader()).await;
    node.apply(eval_cmd(0)).await.expect("write");
    node.snapshot_now().await.expect("snapshot");
    node.shutdown().await;
    let snap = dir.path().join("raft/snapshot.bin");
    let mut bytes = std::fs::read(&snap).expect("snapshot exists");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&snap, &bytes).expect("write");
    let err = RaftNode::start(cfg(1, "127.0.0.1:0", dir.path()), StateStore::new())
        .await
        .expect_err("bad snapshot");
    match &err {
        RaftError::Corrupt(m) => assert!(m.contains("snapshot.bin"), "names the file: {m}"),
        e => panic!("expected Corrupt, got {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_node_writes_nothing_to_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = cfg(1, "127.0.0.1:0", dir.path());
    c.in_memory = true;
    let state = StateStore::new();
    let node = RaftNode::start(c, state.clone()).await.expect("starts");
    node.bootstrap(BTreeMap::from([(1, node.rpc_addr())]))
        .await
        .expect("bootstrap");
    wait_until("leader", WAIT, || node.is_leader()).await;
    let index = node.apply(eval_cmd(0)).await.expect("write");
    assert_eq!(state.latest_index(), index);
    node.snapshot_now().await.expect("snapshot in memory");
    node.ensure_linearizable().await.expect("read");
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "nothing written"
    );
    node.shutdown().await;
    assert_eq!(node.apply(eval_cmd(1)).await, Err(RaftError::Shutdown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_command_is_an_apply_error_and_does_not_stall_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = RaftNode::start(cfg(1, "127.0.0.1:0", dir.path()), StateStore::new())
        .await
        .expect("starts");
    node.bootstrap(BTreeMap::from([(1, node.rpc_addr())]))
        .await
        .expect("bootstrap");
    wait_until("leader", WAIT, || node.is_leader()).await;
    let bad = Command::NodeStatusUpdate {
        node_id: "missing".into(),
        status: "down".into(),
        evals: vec![],
        now: 0,
    };
    let err = node.apply(bad).await.expect_err("unknown node");
    assert!(matches!(err, RaftError::Apply(_)), "{err:?}");
    node.apply(eval_cmd(0)).await.expect("later writes apply");
    node.shutdown().await;
}

/// A stand-in for the shared RPC port: reads the protocol byte, hands raft connections in.
async fn shared_port(
    node: Arc<tokio::sync::OnceCell<Arc<RaftNode>>>,
) -> (
    String,
    tokio::task::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let handed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = handed.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let node = node.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                if stream.read_exact(&mut b).await.is_err() || b[0] != crate::RPC_RAFT_BYTE {
                    return;
                }
                let Some(node) = node.get().cloned() else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                node.handle_stream(stream).await;
            });
        }
    });
    (addr, task, handed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raft_over_a_shared_port_with_handed_in_connections() {
    let mut dirs = Vec::new();
    let mut cells = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..2 {
        let cell = Arc::new(tokio::sync::OnceCell::new());
        ports.push(shared_port(cell.clone()).await);
        cells.push(cell);
        dirs.push(tempfile::tempdir().expect("tempdir"));
    }
    let mut nodes = Vec::new();
    for i in 0..2 {
        let mut c = cfg(i as u64 + 1, &ports[i].0, dirs[i].path());
        c.listen = false;
        c.dial_prefix = Some(crate::RPC_RAFT_BYTE);
        let node = RaftNode::start(c, StateStore::new()).await.expect("starts");
        assert_eq!(
            node.rpc_addr(),
            ports[i].0,
            "no own listener: the given address"
        );
        cells[i].set(node.clone()).expect("set once");
        nodes.push(node);
    }
    let members: BTreeMap<u64, String> =
        (0..2).map(|i| (i as u64 + 1, ports[i].0.clone())).collect();
    nodes[0].bootstrap(members).await.expect("bootstrap");
    wait_until("a leader", WAIT, || nodes.iter().any(|n| n.is_leader())).await;

    // Observer and leader calls.
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for n in &nodes {
        let seen = seen.clone();
        let me = n.node_id();
        n.set_apply_observer(Some(Arc::new(move |index, _cmd| {
            if me == 2 {
                seen.store(index, std::sync::atomic::Ordering::SeqCst);
            }
        })));
        n.set_call_handler(Some(Arc::new(move |method, body| {
            Box::pin(async move { format!("{me}:{method}:{}", body.len()).into_bytes() })
        })));
    }
    let leader = nodes
        .iter()
        .find(|n| n.is_leader())
        .expect("leader")
        .node_id();
    let follower = &nodes[if leader == 1 { 1 } else { 0 }];
    let index = follower.apply(eval_cmd(1)).await.expect("forwarded write");
    wait_until("write on both", WAIT, || {
        nodes
            .iter()
            .all(|n| n.state().snapshot().eval("eval-0001").is_some())
    })
    .await;
    wait_until("node 2 observed the write", WAIT, || {
        seen.load(std::sync::atomic::Ordering::SeqCst) >= index
    })
    .await;
    let answer = follower
        .call_leader("Test.Echo", vec![1, 2, 3], WAIT)
        .await
        .expect("leader call");
    assert_eq!(answer, format!("{leader}:Test.Echo:3").into_bytes());
    assert!(matches!(
        follower.apply_local(eval_cmd(2)).await,
        Err(RaftError::NotLeader { .. })
    ));
    assert!(ports
        .iter()
        .all(|p| p.2.load(std::sync::atomic::Ordering::SeqCst) > 0));

    // Leadership moves when the leader stops; the survivor alone has no quorum.
    let f = follower.clone();
    let watcher = tokio::spawn(async move { f.wait_leader_change(false).await });
    nodes[leader as usize - 1].shutdown().await;
    // A two-node cluster cannot elect with one: the watcher must not report a leadership.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), watcher)
            .await
            .is_err(),
        "no leader without a quorum"
    );
    assert_eq!(
        follower
            .apply_with_timeout(eval_cmd(3), Duration::from_millis(500))
            .await,
        Err(RaftError::NoLeader)
    );
    for n in &nodes {
        n.shutdown().await;
    }
    for p in ports {
        p.1.abort();
    }
}

#[test]
fn derived_cluster_id_is_stable() {
    let m = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".to_string())]);
    let id = crate::node::derived_cluster_id(&m);
    assert_eq!(id, crate::node::derived_cluster_id(&m.clone()));
    assert_eq!(id.len(), 36);
    assert_ne!(
        id,
        crate::node::derived_cluster_id(&BTreeMap::from([(1, "a:1".to_string())]))
    );
}
