//! Three servers on real raft over loopback TCP, with temp data dirs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nomad_raft::{RaftConfig, RaftNode};
use nomad_state::StateStore;
use nomad_structs::*;
use tempfile::TempDir;

use crate::tests::{live_allocs, register, test_job, test_node, wait_for};
use crate::{Server, ServerConfig, ServerError};

const WAIT: Duration = Duration::from_secs(20);

struct Member {
    server: Arc<Server>,
    raft: Arc<RaftNode>,
    stop: tokio::sync::watch::Sender<bool>,
    run: tokio::task::JoinHandle<()>,
}

struct Cluster {
    _dirs: Vec<TempDir>,
    members: Vec<Option<Member>>,
    addrs: Vec<String>,
}

fn raft_cfg(id: u64, dir: &std::path::Path) -> RaftConfig {
    let mut c = RaftConfig::new(id, "127.0.0.1:0", dir);
    c.heartbeat_interval = Duration::from_millis(50);
    c.election_timeout_min = Duration::from_millis(250);
    c.election_timeout_max = Duration::from_millis(500);
    c
}

fn server_cfg() -> ServerConfig {
    ServerConfig {
        heartbeat_ttl: Duration::from_secs(2),
        num_schedulers: 1,
        ..ServerConfig::default()
    }
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let mut c = Cluster {
            _dirs: vec![],
            members: vec![],
            addrs: vec![],
        };
        for i in 0..n {
            let dir = tempfile::tempdir().expect("tempdir");
            let raft = RaftNode::start(raft_cfg(i as u64 + 1, dir.path()), StateStore::new())
                .await
                .expect("raft starts");
            let server = Server::with_raft(server_cfg(), raft.clone());
            server.set_heartbeat_grace(Duration::from_secs(1));
            let (stop, rx) = tokio::sync::watch::channel(false);
            let run = tokio::spawn(server.clone().run(rx));
            c.addrs.push(raft.rpc_addr());
            c._dirs.push(dir);
            c.members.push(Some(Member {
                server,
                raft,
                stop,
                run,
            }));
        }
        let members: BTreeMap<u64, String> = c
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, a.clone()))
            .collect();
        c.server(1)
            .raft()
            .expect("raft")
            .bootstrap(members)
            .await
            .expect("bootstrap");
        c.wait_leader().await;
        c
    }

    fn server(&self, id: u64) -> &Arc<Server> {
        &self.members[id as usize - 1]
            .as_ref()
            .expect("running")
            .server
    }

    fn running(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().flatten()
    }

    /// Waits until one running server leads with its duties started and all agree on it.
    async fn wait_leader(&self) -> u64 {
        let ok = wait_for(WAIT, || async {
            let views: Vec<Option<u64>> = self
                .running()
                .map(|m| m.raft.leader().map(|l| l.0))
                .collect();
            match views.first() {
                Some(Some(l)) => {
                    views.iter().all(|v| *v == Some(*l))
                        && self.members[*l as usize - 1]
                            .as_ref()
                            .is_some_and(|m| m.server.is_leader() && m.server.leader_active())
                }
                _ => false,
            }
        })
        .await;
        assert!(ok, "no leader elected");
        self.running()
            .find(|m| m.server.is_leader())
            .expect("leader")
            .raft
            .node_id()
    }

    fn follower(&self) -> u64 {
        self.running()
            .find(|m| !m.raft.is_leader())
            .expect("a follower")
            .raft
            .node_id()
    }

    /// Stops the server's duties and its raft node (as a killed process would).
    async fn kill(&mut self, id: u64) {
        let m = self.members[id as usize - 1].take().expect("running");
        let _ = m.stop.send(true);
        m.raft.shutdown().await;
        let _ = tokio::time::timeout(WAIT, m.run).await;
    }

    async fn shutdown(&mut self) {
        for id in 1..=self.members.len() as u64 {
            if self.members[id as usize - 1].is_some() {
                self.kill(id).await;
            }
        }
    }
}

impl Server {
    fn leader_active(&self) -> bool {
        self.leader_active.load(Ordering::SeqCst)
    }
}

async fn placed_everywhere(c: &Cluster, job: &str, count: usize) -> bool {
    c.running()
        .all(|m| live_allocs(&m.server, job).len() == count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_replicate_schedule_fail_over_and_keep_heartbeats() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    let follower = c.follower();
    assert_eq!(c.server(follower).peers().len(), 3);
    assert_eq!(
        c.server(follower).leader().as_deref(),
        Some(c.addrs[leader as usize - 1].as_str())
    );

    // A job registered on a follower is visible everywhere; no node yet: the eval blocks.
    let f = c.server(follower).clone();
    f.job_register(register(test_job("web", 2)))
        .await
        .expect("register on follower");
    for m in c.running() {
        assert!(
            m.server.state().snapshot().job("default", "web").is_some()
                || wait_for(WAIT, || async {
                    m.server.state().snapshot().job("default", "web").is_some()
                })
                .await
        );
    }

    // Nodes register through a follower; the leader's workers place the allocs.
    f.node_register(test_node("n1")).await.expect("node n1");
    f.node_register(test_node("n2")).await.expect("node n2");
    assert!(
        wait_for(WAIT, || placed_everywhere(&c, "web", 2)).await,
        "allocs placed by the leader and replicated"
    );

    // n1 heartbeats through a follower all along; n2 goes silent.
    let beats = Arc::new(AtomicUsize::new(0));
    let hb = {
        let beats = beats.clone();
        let servers: Vec<Arc<Server>> = c.running().map(|m| m.server.clone()).collect();
        tokio::spawn(async move {
            loop {
                // Any live server will do; a dead one's error is just retried on the next.
                for s in &servers {
                    if s.raft()
                        .is_some_and(|r| !r.is_shut_down() && !r.is_leader())
                        && s.node_heartbeat("n1").await.is_ok()
                    {
                        beats.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    assert!(wait_for(WAIT, || async { beats.load(Ordering::SeqCst) >= 2 }).await);

    // Kill the leader: another takes over and runs the broker.
    c.kill(leader).await;
    let new_leader = c.wait_leader().await;
    assert_ne!(new_leader, leader);
    let survivor = c.follower();
    c.server(survivor)
        .job_register(register(test_job("api", 1)))
        .await
        .expect("register after failover");
    assert!(
        wait_for(WAIT, || placed_everywhere(&c, "api", 1)).await,
        "the new leader schedules"
    );
    for m in c.running() {
        let snap = m.server.state().snapshot();
        assert!(
            snap.job("default", "web").is_some(),
            "no acknowledged job lost"
        );
        assert!(snap.job("default", "api").is_some());
    }

    // The new leader's timers run: silent n2 goes down, n1 (forwarded heartbeats) stays up
    // well past TTL + grace (3 s) after the failover.
    assert!(
        wait_for(WAIT, || async {
            c.server(survivor)
                .state()
                .snapshot()
                .node("n2")
                .is_some_and(|n| n.status == NODE_STATUS_DOWN)
        })
        .await,
        "the new leader marks a silent node down"
    );
    let after = beats.load(Ordering::SeqCst);
    assert!(
        wait_for(WAIT, || async {
            beats.load(Ordering::SeqCst) >= after + 12
        })
        .await
    );
    let n1 = c
        .server(survivor)
        .state()
        .snapshot()
        .node("n1")
        .expect("n1");
    assert_eq!(
        n1.status, NODE_STATUS_READY,
        "forwarded heartbeats keep n1 ready"
    );
    hb.abort();

    // Operator: remove the dead server by address.
    let dead = c.addrs[leader as usize - 1].clone();
    c.server(survivor)
        .raft_remove_peer(&dead)
        .await
        .expect("remove peer");
    assert!(wait_for(WAIT, || async { c.server(survivor).peers().len() == 2 }).await);
    assert!(matches!(
        c.server(survivor).raft_remove_peer("127.0.0.1:1").await,
        Err(ServerError::Internal(m)) if m.contains("was not found in the Raft configuration")
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_cluster_leader_without_a_majority() {
    let mut c = Cluster::start(3).await;
    let leader = c.wait_leader().await;
    let follower = c.follower();
    c.server(follower)
        .consistent_read()
        .await
        .expect("consistent read");
    for id in 1..=3 {
        if id != follower {
            c.kill(id).await;
        }
    }
    let _ = leader;
    let s = c.server(follower).clone();
    s.set_apply_timeout(Duration::from_millis(800));
    assert_eq!(
        s.job_register(register(test_job("web", 1))).await.err(),
        Some(ServerError::Internal("No cluster leader".into()))
    );
    assert_eq!(
        s.node_heartbeat("n1").await.err(),
        Some(ServerError::Internal("No cluster leader".into()))
    );
    assert!(!s.is_leader());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_save_restore_into_a_fresh_cluster() {
    let mut a = Cluster::start(3).await;
    let leader = a.wait_leader().await;
    let s = a.server(leader).clone();
    s.node_register(test_node("n1")).await.expect("node");
    for j in ["web", "api", "db"] {
        s.job_register(register(test_job(j, 1))).await.expect("job");
    }
    assert!(wait_for(WAIT, || placed_everywhere(&a, "db", 1)).await);
    // Saved on a follower: a consistent read first, so it has every acknowledged write.
    let bytes = a.server(a.follower()).snapshot_save().await.expect("save");
    let info = Server::snapshot_inspect(&bytes).expect("inspect");
    assert_eq!((info.jobs, info.nodes, info.allocs), (3, 1, 3));
    assert!(info.index > 0 && info.term > 0);
    assert_eq!(info.size, bytes.len() as u64);
    a.shutdown().await;

    let mut b = Cluster::start(3).await;
    let f = b.server(b.follower()).clone();
    f.job_register(register(test_job("other", 1)))
        .await
        .expect("job");
    f.snapshot_restore(&bytes).await.expect("restore");
    assert!(
        wait_for(WAIT, || async {
            b.running().all(|m| {
                let snap = m.server.state().snapshot();
                ["web", "api", "db"]
                    .iter()
                    .all(|j| snap.job("default", j).is_some())
                    && snap.job("default", "other").is_none()
            })
        })
        .await,
        "every server restored"
    );
    // The leader's broker runs on the restored state: a new job is placed on the restored
    // node (its heartbeat timer was restarted with a grace period).
    f.job_register(register(test_job("after", 1)))
        .await
        .expect("job");
    assert!(wait_for(WAIT, || placed_everywhere(&b, "after", 1)).await);

    // Damaged snapshots are refused before they reach the log.
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x20;
    assert!(matches!(
        f.snapshot_restore(&bad).await,
        Err(ServerError::BadRequest(m)) if m.contains("checksum")
    ));
    assert!(Server::snapshot_inspect(b"short").is_err());
    b.shutdown().await;
}

#[tokio::test]
async fn in_memory_server_snapshot_round_trip_and_dev_defaults() {
    let s = Server::new(ServerConfig::default());
    assert!(s.is_leader() && s.raft().is_none() && s.leader().is_none());
    assert!(s.peers().is_empty());
    s.consistent_read().await.expect("no-op");
    s.job_register(register(test_job("web", 1)))
        .await
        .expect("job");
    let bytes = s.snapshot_save().await.expect("save");
    assert_eq!(Server::snapshot_inspect(&bytes).expect("inspect").term, 0);
    let t = Server::new(ServerConfig::default());
    t.snapshot_restore(&bytes).await.expect("restore");
    assert!(t.state().snapshot().job("default", "web").is_some());
    assert!(t.raft_remove_peer("1").await.is_err());
}
