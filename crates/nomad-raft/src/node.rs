//! [`RaftNode`]: one server's Raft, its RPC listener and the follower→leader forwarding.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nomad_state::{Command, StateStore};
use openraft::error::{ClientWriteError, InitializeError, RaftError as ORaftError};
use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::network::{
    CallError, Conn, Dial, FramedConn, NetworkFactory, Request, RequestBody, Response,
    ResponseBody, Shared,
};
use crate::store::log::{LogDb, LogStore, META_CLUSTER_ID, META_LAST_PURGED, META_NODE_ID};
use crate::store::sm::{load_snapshot, ObserverSlot, StateMachine, StoredSnapshot, SNAPSHOT_FILE};
use crate::types::{LogId, NodeId, Raft};
use crate::{BoxFuture, BoxedStream, RaftConfig, RaftError, SyncStream};

/// Sees every command applied to this node's state store, right after it changed (index,
/// command), on the state machine's task: keep it short and never block in it.
pub type ApplyObserver = Arc<dyn Fn(u64, &Command) + Send + Sync>;

/// Serves [`RaftNode::call_leader`] calls on the leader: (method, body) → answer bytes.
/// Application errors travel inside the answer; the hook should not hold the node or its
/// owner strongly (use a `Weak`), or they never drop.
pub type CallHandler = Arc<dyn Fn(String, Vec<u8>) -> BoxFuture<Vec<u8>> + Send + Sync>;

/// Log entries kept behind a snapshot, so a briefly lagging follower catches up from the log
/// instead of a whole snapshot (Nomad's `raft_trailing_logs` is 10240).
const TRAILING_LOGS: u64 = 10240;
/// Entries since the last snapshot that trigger a new one (Nomad's `raft_snapshot_threshold`).
const SNAPSHOT_THRESHOLD: u64 = 8192;
/// Forwarded-write connections kept open to the leader.
const FORWARD_POOL: usize = 8;

/// One Raft server. Cheap to share: the server and agent hold it in an `Arc`.
pub struct RaftNode {
    node_id: NodeId,
    rpc_addr: String,
    raft: Raft,
    state: Arc<StateStore>,
    shared: Arc<Shared>,
    heartbeat: Duration,
    apply_timeout: Duration,
    forward_pool: Mutex<Vec<Conn>>,
    shutdown_tx: watch::Sender<bool>,
    stopped: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    observer: ObserverSlot,
    call_handler: RwLock<Option<CallHandler>>,
    /// Lets `shutdown` wait until the log file is closed (so it can be opened again).
    db: std::sync::Weak<LogDb>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node_id", &self.node_id)
            .field("rpc_addr", &self.rpc_addr)
            .finish()
    }
}

/// One try at a leader-only operation.
enum Attempt<T> {
    Done(Result<T, RaftError>),
    /// Surely not applied; try again once a leader is known.
    Retry,
}

/// The index (or done) answer of a forwarded write, read index or membership change.
fn index_of(r: ResponseBody) -> Result<u64, RaftError> {
    match r {
        ResponseBody::Index(r) => r,
        ResponseBody::Done(r) => r.map(|_| 0),
        _ => Err(RaftError::Network("unexpected response".into())),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A cluster ID derived from the bootstrap membership, so every server bootstrapping with the
/// same member list agrees on it without talking (FNV-1a, formatted like a UUID).
pub(crate) fn derived_cluster_id(members: &BTreeMap<u64, String>) -> String {
    let mut text = String::new();
    for (id, addr) in members {
        text.push_str(&format!("{id}={addr};"));
    }
    let fnv = |seed: u64| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let (a, b) = (fnv(0), fnv(0x9e37_79b9_7f4a_7c15));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Maps openraft's "fatal" errors (storage failure, stopped) to ours.
fn fatal<E: std::fmt::Display>(e: &E) -> RaftError {
    let m = e.to_string();
    if m.contains("raft stopped") {
        RaftError::Shutdown
    } else {
        RaftError::Storage(m)
    }
}

impl RaftNode {
    /// Opens the log under `cfg.data_dir/raft`, restores the last snapshot into `state` and
    /// replays the committed log after it, then starts the RPC listener on `cfg.rpc_addr`.
    pub async fn start(
        cfg: RaftConfig,
        state: Arc<StateStore>,
    ) -> Result<Arc<RaftNode>, RaftError> {
        if cfg.election_timeout_min >= cfg.election_timeout_max {
            return Err(RaftError::Config(
                "election_timeout_min must be below election_timeout_max".into(),
            ));
        }
        if cfg.heartbeat_interval >= cfg.election_timeout_min {
            return Err(RaftError::Config(
                "heartbeat_interval must be below election_timeout_min".into(),
            ));
        }
        let dir: Option<PathBuf> = if cfg.in_memory {
            None
        } else {
            Some(cfg.data_dir.join("raft"))
        };
        let fsync = !cfg.in_memory;
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)
                .map_err(|e| RaftError::Storage(format!("{}: {e}", d.display())))?;
        }

        // Opening verifies the whole log; keep that off the async threads.
        let db_path = dir.as_ref().map(|d| d.join("raft.db"));
        let db = tokio::task::spawn_blocking(move || LogDb::open(db_path.as_deref(), fsync))
            .await
            .map_err(|e| RaftError::Storage(format!("open task failed: {e}")))??;
        let db = Arc::new(db);

        match db.get_meta::<u64>(META_NODE_ID)? {
            Some(id) if id != cfg.node_id => {
                return Err(RaftError::Config(format!(
                    "{}: written by node {id}, not node {}",
                    db.path(),
                    cfg.node_id
                )))
            }
            Some(_) => {}
            None => db.put_meta(META_NODE_ID, &cfg.node_id, true)?,
        }
        let stored_cluster: Option<String> = db.get_meta(META_CLUSTER_ID)?;
        let cluster_id = match (&cfg.cluster_id, stored_cluster) {
            (Some(ours), Some(disk)) if *ours != disk => {
                return Err(RaftError::ClusterIdMismatch {
                    ours: ours.clone(),
                    theirs: disk,
                })
            }
            (Some(ours), None) => {
                db.put_meta(META_CLUSTER_ID, ours, true)?;
                Some(ours.clone())
            }
            (_, disk) => disk.or_else(|| cfg.cluster_id.clone()),
        };

        let snapshot: Option<StoredSnapshot> = match &dir {
            Some(d) => load_snapshot(d)?,
            None => None,
        };
        let purged: Option<LogId> = db.get_meta(META_LAST_PURGED)?;
        let snap_index = snapshot
            .as_ref()
            .and_then(|s| s.meta.last_log_id.as_ref())
            .map(|l| l.index);
        if let Some(p) = &purged {
            if snap_index.is_none_or(|s| s < p.index) {
                let snap_path = dir
                    .as_ref()
                    .map(|d| d.join(SNAPSHOT_FILE).display().to_string());
                return Err(RaftError::Corrupt(format!(
                    "{}: the log is purged up to {} but the snapshot {} covers {}",
                    db.path(),
                    p.index,
                    snap_path.unwrap_or_else(|| "<memory>".into()),
                    snap_index.map_or_else(|| "nothing".to_string(), |i| i.to_string()),
                )));
            }
        }
        match &snapshot {
            Some(s) => state.restore(&s.data).map_err(|e| {
                let p = dir
                    .as_ref()
                    .map(|d| d.join(SNAPSHOT_FILE).display().to_string())
                    .unwrap_or_default();
                RaftError::Corrupt(format!("{p}: {e}"))
            })?,
            None if state.latest_index() > 0 => {
                // The log is the only truth: start from the empty state and replay it.
                state
                    .restore(&StateStore::new().persist())
                    .map_err(|e| RaftError::Storage(e.to_string()))?;
            }
            None => {}
        }

        let (listener, rpc_addr) = if cfg.listen {
            let listener = TcpListener::bind(&cfg.rpc_addr).await.map_err(|e| {
                RaftError::Config(format!("cannot listen on {}: {e}", cfg.rpc_addr))
            })?;
            let addr = listener
                .local_addr()
                .map_err(|e| RaftError::Network(format!("{}: {e}", cfg.rpc_addr)))?
                .to_string();
            (Some(listener), addr)
        } else {
            if cfg.rpc_addr.ends_with(":0") || cfg.rpc_addr.is_empty() {
                return Err(RaftError::Config(format!(
                    "rpc_addr {:?}: without an own listener it must be the address peers dial",
                    cfg.rpc_addr
                )));
            }
            (None, cfg.rpc_addr.clone())
        };

        let config = openraft::Config {
            cluster_name: cluster_id.clone().unwrap_or_else(|| "nomad".into()),
            heartbeat_interval: ms(cfg.heartbeat_interval),
            election_timeout_min: ms(cfg.election_timeout_min),
            election_timeout_max: ms(cfg.election_timeout_max),
            install_snapshot_timeout: ms(cfg.election_timeout_max).max(1000) * 4,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_THRESHOLD),
            max_in_snapshot_log_to_keep: TRAILING_LOGS,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftError::Config(e.to_string()))?;

        let dial = Dial {
            prefix: cfg.dial_prefix,
            dialer: cfg.dialer.clone(),
        };
        let shared = Arc::new(Shared::new(cfg.node_id, cluster_id, db.clone(), dial));
        let sm = StateMachine::new(state.clone(), snapshot, dir.clone(), fsync);
        let observer = sm.observer_slot();
        let raft = Raft::new(
            cfg.node_id,
            Arc::new(config),
            NetworkFactory {
                shared: shared.clone(),
            },
            LogStore::new(db.clone()),
            sm,
        )
        .await
        .map_err(|e| {
            let m = e.to_string();
            if m.to_ascii_lowercase().contains("corrupt") {
                RaftError::Corrupt(m)
            } else {
                RaftError::Storage(m)
            }
        })?;
        let db_weak = Arc::downgrade(&db);
        drop(db);

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let node = Arc::new(RaftNode {
            node_id: cfg.node_id,
            rpc_addr,
            raft,
            state,
            shared,
            heartbeat: cfg.heartbeat_interval,
            apply_timeout: (cfg.election_timeout_max * 10).max(Duration::from_secs(5)),
            forward_pool: Mutex::new(Vec::new()),
            shutdown_tx,
            stopped: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            observer,
            call_handler: RwLock::new(None),
            db: db_weak,
        });
        if let Some(listener) = listener {
            let accept = tokio::spawn(accept_loop(listener, Arc::downgrade(&node), shutdown_rx));
            node.tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(accept);
        }
        tracing::info!(node_id = node.node_id, rpc_addr = %node.rpc_addr, "raft started");
        Ok(node)
    }

    /// This node's ID.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The address the RPC listener is bound to (the real port when `rpc_addr` had port 0).
    pub fn rpc_addr(&self) -> String {
        self.rpc_addr.clone()
    }

    /// The cluster ID this node belongs to, once known.
    pub fn cluster_id(&self) -> Option<String> {
        self.shared.cluster_id()
    }

    /// The state store the log is applied to.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// Initializes a new cluster with `members` (id → rpc addr); must include this node.
    /// Already-initialized is `Ok`. Without a configured cluster ID one is derived from the
    /// member list, so every server bootstrapping the same list agrees.
    pub async fn bootstrap(&self, members: BTreeMap<u64, String>) -> Result<(), RaftError> {
        if !members.contains_key(&self.node_id) {
            return Err(RaftError::Config(format!(
                "bootstrap members do not include this node ({})",
                self.node_id
            )));
        }
        if self.raft.is_initialized().await.map_err(|e| fatal(&e))? {
            return Ok(());
        }
        if self.shared.cluster_id().is_none() {
            self.shared.set_cluster_id(&derived_cluster_id(&members))?;
        }
        let nodes: BTreeMap<u64, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(ORaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(ORaftError::APIError(e)) => Err(RaftError::Config(e.to_string())),
            Err(ORaftError::Fatal(e)) => Err(fatal(&e)),
        }
    }

    /// Adds `node_id` at `rpc_addr` as a learner, waits for it to catch up, then makes it a
    /// voter. On a follower the request is forwarded to the leader.
    pub async fn add_voter(&self, node_id: u64, rpc_addr: String) -> Result<(), RaftError> {
        let deadline = Instant::now() + self.apply_timeout;
        self.with_leader(
            deadline,
            RequestBody::Join {
                node_id,
                addr: rpc_addr.clone(),
            },
            || self.add_voter_local(node_id, rpc_addr.clone(), deadline),
            index_of,
        )
        .await
        .map(|_| ())
    }

    /// Removes `node_id` from the configuration (voter or learner). Forwarded when not leader.
    pub async fn remove_peer(&self, node_id: u64) -> Result<(), RaftError> {
        let deadline = Instant::now() + self.apply_timeout;
        self.with_leader(
            deadline,
            RequestBody::Remove { node_id },
            || self.remove_local(node_id),
            index_of,
        )
        .await
        .map(|_| ())
    }

    /// Asks the server at `via` (any member) to add this node as a voter.
    /// A member that is not the leader answers with the leader's address, which is followed.
    pub async fn join(&self, via: &str) -> Result<(), RaftError> {
        let deadline = Instant::now() + self.apply_timeout;
        let mut target = via.to_string();
        loop {
            let mut conn = Conn::new(target.clone());
            let body = RequestBody::Join {
                node_id: self.node_id,
                addr: self.rpc_addr.clone(),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let res = match conn.call(&self.shared, body, left).await {
                Ok(ResponseBody::Done(r)) => r,
                Ok(_) => return Err(RaftError::Network(format!("{target}: unexpected response"))),
                Err(CallError::Unreachable(m)) => Err(RaftError::Network(format!("{target}: {m}"))),
                Err(e) => return Err(e.into_raft_error(&target)),
            };
            match res {
                Err(RaftError::NotLeader { leader: Some(l) }) if l != target => target = l,
                Err(RaftError::NotLeader { .. } | RaftError::NoLeader | RaftError::Network(_)) => {
                    if Instant::now() >= deadline {
                        return Err(RaftError::NoLeader);
                    }
                    tokio::time::sleep(self.heartbeat * 2).await;
                    target = via.to_string();
                }
                other => return other,
            }
        }
    }

    /// Replicates `cmd`; returns its log index once it is committed and applied to this node's
    /// state store. A follower forwards it to the leader. Gives up with
    /// [`RaftError::NoLeader`] when no leader takes it in time.
    pub async fn apply(&self, cmd: Command) -> Result<u64, RaftError> {
        self.apply_with_timeout(cmd, self.apply_timeout).await
    }

    /// [`RaftNode::apply`] with an explicit deadline.
    pub async fn apply_with_timeout(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<u64, RaftError> {
        let deadline = Instant::now() + timeout;
        let index = self
            .with_leader(
                deadline,
                RequestBody::Forward(cmd.clone()),
                || self.write_local(cmd.clone()),
                index_of,
            )
            .await?;
        // A forwarded write is applied here once the leader's next append carries the commit.
        if self.applied_index() < index {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(self.heartbeat * 20);
            if self
                .raft
                .wait(Some(left))
                .applied_index_at_least(Some(index), "forwarded write")
                .await
                .is_err()
            {
                tracing::warn!(
                    index,
                    "write committed on the leader but not yet applied here"
                );
            }
        }
        Ok(index)
    }

    /// The current leader's (id, rpc addr), if known.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((id, addr))
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// Every member of the configuration: (id, rpc addr, voter).
    pub fn peers(&self) -> Vec<(u64, String, bool)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone(), voters.contains(id)))
            .collect()
    }

    /// Waits until this node's state reflects every write committed before the call (a
    /// leader confirms its leadership with a quorum; a follower asks the leader for its read
    /// index and waits to apply up to it).
    pub async fn ensure_linearizable(&self) -> Result<(), RaftError> {
        let deadline = Instant::now() + self.apply_timeout;
        let index = self
            .with_leader(
                deadline,
                RequestBody::ReadIndex,
                || self.read_index_local(),
                index_of,
            )
            .await?;
        if self.applied_index() < index {
            let left = deadline.saturating_duration_since(Instant::now());
            self.raft
                .wait(Some(left))
                .applied_index_at_least(Some(index), "linearizable read")
                .await
                .map_err(|_| RaftError::NoLeader)?;
        }
        Ok(())
    }

    /// Takes a snapshot of the state now and waits until it is written.
    pub async fn snapshot_now(&self) -> Result<(), RaftError> {
        let Some(applied) = self.raft.metrics().borrow().last_applied else {
            return Ok(());
        };
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| fatal(&e))?;
        self.raft
            .wait(Some(self.apply_timeout))
            .metrics(
                |m| {
                    m.snapshot
                        .as_ref()
                        .is_some_and(|s| s.index >= applied.index)
                },
                "snapshot_now",
            )
            .await
            .map_err(|e| RaftError::Storage(format!("snapshot did not complete: {e}")))?;
        Ok(())
    }

    /// Stops Raft and the RPC listener; the data dir can be opened again afterwards.
    pub async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.shutdown_tx.send(true);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft core did not stop cleanly");
        }
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        self.forward_pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.shared.close();
        // openraft's tasks drop their log handles as they finish; the file closes (and the
        // pending committed index is written) when the last one goes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.db.strong_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.db.strong_count() > 0 {
            tracing::warn!(node_id = self.node_id, "raft log still open after shutdown");
        }
        tracing::info!(node_id = self.node_id, "raft stopped");
    }

    /// Serves one incoming Raft connection handed in by the owner of the RPC port (whose
    /// protocol byte was already consumed), exactly as the own listener does; returns when the
    /// peer closes it or the node shuts down. A TCP stream should have `TCP_NODELAY` set.
    pub async fn handle_stream<S>(self: &Arc<Self>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.handle_boxed_stream(Box::new(SyncStream::new(stream)))
            .await;
    }

    /// [`RaftNode::handle_stream`] for an already boxed stream.
    pub async fn handle_boxed_stream(self: &Arc<Self>, stream: BoxedStream) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let shutdown = self.shutdown_tx.subscribe();
        serve_conn(
            FramedConn::new(stream),
            "handed-in".to_string(),
            Arc::downgrade(self),
            shutdown,
        )
        .await;
    }

    /// Sets (or clears) the observer of applied commands. It sees every command applied from
    /// then on (by this node as leader or follower), not those restored from a snapshot.
    pub fn set_apply_observer(&self, observer: Option<ApplyObserver>) {
        *self.observer.write().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    /// Sets (or clears) the handler of [`RaftNode::call_leader`] calls arriving at this node
    /// while it leads.
    pub fn set_call_handler(&self, handler: Option<CallHandler>) {
        *self.call_handler.write().unwrap_or_else(|e| e.into_inner()) = handler;
    }

    /// Runs an application call on the leader: locally when this node leads, else sent over
    /// the Raft link to the leader's call handler. Retried (until `timeout`) only while no
    /// leader is known or the call surely did not run; then [`RaftError::NoLeader`].
    pub async fn call_leader(
        &self,
        method: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RaftError> {
        let deadline = Instant::now() + timeout;
        let req = RequestBody::Call {
            method: method.to_string(),
            body: body.clone(),
        };
        self.with_leader(
            deadline,
            req,
            || self.call_local(method.to_string(), body.clone()),
            |r| match r {
                ResponseBody::Call(r) => r,
                _ => Err(RaftError::Network("unexpected response".into())),
            },
        )
        .await
    }

    /// Writes `cmd` only if this node is the leader (no forwarding): for leader duties (plans,
    /// marking nodes down) that must not run on behalf of a deposed leader.
    pub async fn apply_local(&self, cmd: Command) -> Result<u64, RaftError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(RaftError::Shutdown);
        }
        if !self.is_leader() {
            return Err(RaftError::NotLeader {
                leader: self.leader().map(|l| l.1),
            });
        }
        self.write_local(cmd).await
    }

    /// Waits until [`RaftNode::is_leader`] differs from `was_leader` (or the node stops).
    pub async fn wait_leader_change(&self, was_leader: bool) {
        let mut rx = self.raft.metrics();
        loop {
            if self.stopped.load(Ordering::SeqCst) || self.is_leader() != was_leader {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The index of the last log entry applied to the state store.
    pub fn last_applied_index(&self) -> u64 {
        self.applied_index()
    }

    /// Whether [`RaftNode::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    // ---- internals ----

    async fn call_local(&self, method: String, body: Vec<u8>) -> Result<Vec<u8>, RaftError> {
        let handler = self
            .call_handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match handler {
            Some(h) => Ok(h(method, body).await),
            None => Err(RaftError::Config(format!("no handler for call {method:?}"))),
        }
    }

    pub(crate) fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .as_ref()
            .map_or(0, |l| l.index)
    }

    /// Drops traffic to and from `peers` (partition tests).
    #[cfg(test)]
    pub(crate) fn partition_from(&self, peers: &[u64]) {
        self.shared.set_blocked(peers.iter().copied().collect());
    }

    /// Purges the log up to `upto` (at most the snapshot).
    #[cfg(test)]
    pub(crate) async fn purge_log(&self, upto: u64) -> Result<(), RaftError> {
        self.raft
            .trigger()
            .purge_log(upto)
            .await
            .map_err(|e| fatal(&e))?;
        self.raft
            .wait(Some(self.apply_timeout))
            .metrics(
                |m| m.purged.as_ref().is_some_and(|p| p.index >= upto),
                "purge",
            )
            .await
            .map_err(|e| RaftError::Storage(e.to_string()))?;
        Ok(())
    }

    /// Runs `local` when this node leads, else sends `body` to the leader; retries while there
    /// is no leader (or it moves) until `deadline`, then fails with `NoLeader`.
    async fn with_leader<T, F, Fut>(
        &self,
        deadline: Instant,
        body: RequestBody,
        local: F,
        extract: fn(ResponseBody) -> Result<T, RaftError>,
    ) -> Result<T, RaftError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, RaftError>>,
    {
        let attempt = async {
            loop {
                if self.stopped.load(Ordering::SeqCst) {
                    return Err(RaftError::Shutdown);
                }
                let res = match self.leader() {
                    Some((id, _)) if id == self.node_id => match local().await {
                        Err(RaftError::NoLeader | RaftError::NotLeader { .. }) => Attempt::Retry,
                        r => Attempt::Done(r),
                    },
                    Some((_, addr)) if !addr.is_empty() => match self.forward(&addr, &body).await {
                        Attempt::Done(Ok(resp)) => Attempt::Done(extract(resp)),
                        Attempt::Done(Err(e)) => Attempt::Done(Err(e)),
                        Attempt::Retry => Attempt::Retry,
                    },
                    _ => Attempt::Retry,
                };
                match res {
                    Attempt::Done(r) => return r,
                    Attempt::Retry => {
                        // Wait for the leader to change (or a short while), then try again.
                        let mut rx = self.raft.metrics();
                        let _ = tokio::time::timeout(self.heartbeat * 2, rx.changed()).await;
                        tokio::time::sleep(self.heartbeat / 4).await;
                    }
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(r) => r,
            Err(_) => Err(RaftError::NoLeader),
        }
    }

    /// Sends a leader-only request to `addr`. Retries only where the request was surely not
    /// applied: connect failures, "not the leader", a leader shutting down.
    async fn forward(&self, addr: &str, body: &RequestBody) -> Attempt<ResponseBody> {
        let mut conn = {
            let mut pool = self.forward_pool.lock().unwrap_or_else(|e| e.into_inner());
            match pool.iter().position(|c| c.addr() == addr) {
                Some(i) => pool.swap_remove(i),
                None => Conn::new(addr.to_string()),
            }
        };
        let req = match body {
            RequestBody::Forward(c) => RequestBody::Forward(c.clone()),
            RequestBody::Join { node_id, addr } => RequestBody::Join {
                node_id: *node_id,
                addr: addr.clone(),
            },
            RequestBody::Remove { node_id } => RequestBody::Remove { node_id: *node_id },
            RequestBody::ReadIndex => RequestBody::ReadIndex,
            RequestBody::Call { method, body } => RequestBody::Call {
                method: method.clone(),
                body: body.clone(),
            },
            _ => return Attempt::Done(Err(RaftError::Network("not a forwardable request".into()))),
        };
        let out = match conn.call(&self.shared, req, self.apply_timeout).await {
            Ok(ResponseBody::Index(Err(RaftError::NotLeader { .. } | RaftError::NoLeader)))
            | Ok(ResponseBody::Done(Err(RaftError::NotLeader { .. } | RaftError::NoLeader)))
            | Ok(ResponseBody::Call(Err(RaftError::NotLeader { .. } | RaftError::NoLeader))) => {
                Attempt::Retry
            }
            Ok(r) => Attempt::Done(Ok(r)),
            Err(CallError::Unreachable(m)) => {
                tracing::debug!(addr, error = m, "leader unreachable");
                return Attempt::Retry;
            }
            Err(CallError::Refused(RaftError::Shutdown)) => return Attempt::Retry,
            // The leader may have applied it: report instead of retrying into a duplicate.
            Err(e) => return Attempt::Done(Err(e.into_raft_error(addr))),
        };
        let mut pool = self.forward_pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < FORWARD_POOL {
            pool.push(conn);
        }
        out
    }

    /// Writes on this node as leader.
    async fn write_local(&self, cmd: Command) -> Result<u64, RaftError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => match resp.data.error {
                None => Ok(resp.data.index),
                Some(e) => Err(RaftError::Apply(e)),
            },
            Err(ORaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(RaftError::NotLeader {
                    leader: f.leader_node.map(|n| n.addr),
                })
            }
            Err(ORaftError::APIError(e)) => Err(RaftError::Membership(e.to_string())),
            Err(ORaftError::Fatal(e)) => Err(fatal(&e)),
        }
    }

    async fn read_index_local(&self) -> Result<u64, RaftError> {
        match self.raft.ensure_linearizable().await {
            Ok(l) => Ok(l.map_or(0, |l| l.index)),
            Err(ORaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(RaftError::NotLeader {
                    leader: f.leader_node.map(|n| n.addr),
                })
            }
            Err(ORaftError::APIError(_)) => Err(RaftError::NoLeader),
            Err(ORaftError::Fatal(e)) => Err(fatal(&e)),
        }
    }

    fn membership_error(e: ORaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> RaftError {
        match e {
            ORaftError::APIError(ClientWriteError::ForwardToLeader(f)) => RaftError::NotLeader {
                leader: f.leader_node.map(|n| n.addr),
            },
            ORaftError::APIError(e) => RaftError::Membership(e.to_string()),
            ORaftError::Fatal(e) => fatal(&e),
        }
    }

    async fn add_voter_local(
        &self,
        node_id: u64,
        addr: String,
        deadline: Instant,
    ) -> Result<u64, RaftError> {
        let (is_voter, known_addr) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            (
                mem.voter_ids().any(|v| v == node_id),
                mem.get_node(&node_id).map(|n| n.addr.clone()),
            )
        };
        if is_voter && known_addr.as_deref() == Some(addr.as_str()) {
            return Ok(0);
        }
        // Check reachability and cluster ID first: a node of another cluster is refused here
        // instead of being added as a learner that never catches up.
        if node_id != self.node_id {
            let mut conn = Conn::new(addr.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            match conn.call(&self.shared, RequestBody::Ping, left).await {
                Ok(_) => {}
                Err(CallError::Refused(e @ RaftError::ClusterIdMismatch { .. })) => return Err(e),
                Err(e) => return Err(RaftError::Membership(e.into_raft_error(&addr).to_string())),
            }
        }
        if known_addr.is_none() {
            self.raft
                .add_learner(node_id, BasicNode::new(&addr), true)
                .await
                .map_err(Self::membership_error)?;
        } else if known_addr.as_deref() != Some(addr.as_str()) {
            let set = ChangeMembers::SetNodes(BTreeMap::from([(node_id, BasicNode::new(&addr))]));
            self.raft
                .change_membership(set, true)
                .await
                .map_err(Self::membership_error)?;
        }
        if !is_voter {
            let add = ChangeMembers::AddVoterIds(BTreeSet::from([node_id]));
            self.raft
                .change_membership(add, false)
                .await
                .map_err(Self::membership_error)?;
        }
        Ok(0)
    }

    async fn remove_local(&self, node_id: u64) -> Result<u64, RaftError> {
        let (is_voter, known) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let mem = m.membership_config.membership();
            (
                mem.voter_ids().any(|v| v == node_id),
                mem.get_node(&node_id).is_some(),
            )
        };
        if is_voter {
            let rm = ChangeMembers::RemoveVoters(BTreeSet::from([node_id]));
            self.raft
                .change_membership(rm, false)
                .await
                .map_err(Self::membership_error)?;
        } else if known {
            let rm = ChangeMembers::RemoveNodes(BTreeSet::from([node_id]));
            self.raft
                .change_membership(rm, false)
                .await
                .map_err(Self::membership_error)?;
        }
        Ok(0)
    }

    /// Serves one request from a peer.
    async fn handle(&self, req: Request) -> ResponseBody {
        if self.stopped.load(Ordering::SeqCst) {
            return ResponseBody::Refused(RaftError::Shutdown);
        }
        let leader_traffic = matches!(
            req.body,
            RequestBody::AppendEntries(_) | RequestBody::InstallSnapshot(_)
        );
        if let Err(e) = self
            .shared
            .check_cluster(req.cluster_id.as_deref(), leader_traffic)
        {
            tracing::warn!(from = req.from, error = %e, "refusing raft rpc");
            return ResponseBody::Refused(e);
        }
        match req.body {
            RequestBody::AppendEntries(r) => {
                ResponseBody::AppendEntries(self.raft.append_entries(r).await)
            }
            RequestBody::Vote(r) => ResponseBody::Vote(self.raft.vote(r).await),
            RequestBody::InstallSnapshot(r) => {
                ResponseBody::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            RequestBody::Forward(cmd) => ResponseBody::Index(self.write_local(cmd).await),
            RequestBody::Join { node_id, addr } => {
                let deadline = Instant::now() + self.apply_timeout;
                ResponseBody::Done(
                    self.with_leader_local_only(self.add_voter_local(node_id, addr, deadline))
                        .await,
                )
            }
            RequestBody::Remove { node_id } => ResponseBody::Done(
                self.with_leader_local_only(self.remove_local(node_id))
                    .await,
            ),
            RequestBody::ReadIndex => ResponseBody::Index(self.read_index_local().await),
            RequestBody::Ping => ResponseBody::Done(Ok(())),
            RequestBody::Call { method, body } => {
                if !self.is_leader() {
                    return ResponseBody::Call(Err(RaftError::NotLeader {
                        leader: self.leader().map(|l| l.1),
                    }));
                }
                ResponseBody::Call(self.call_local(method, body).await)
            }
        }
    }

    /// Runs a leader-only operation for a peer, without forwarding it again (no loops).
    async fn with_leader_local_only(
        &self,
        f: impl std::future::Future<Output = Result<u64, RaftError>>,
    ) -> Result<(), RaftError> {
        if !self.is_leader() {
            return Err(RaftError::NotLeader {
                leader: self.leader().map(|l| l.1),
            });
        }
        f.await.map(|_| ())
    }
}

async fn accept_loop(
    listener: TcpListener,
    node: std::sync::Weak<RaftNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "raft rpc accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let node = node.clone();
                let shutdown = shutdown.clone();
                // Small frames (votes, heartbeats) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                let stream: BoxedStream = Box::new(stream);
                conns.spawn(serve_conn(FramedConn::new(stream), peer.to_string(), node, shutdown));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn serve_conn(
    mut conn: FramedConn,
    peer: String,
    node: std::sync::Weak<RaftNode>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let req = tokio::select! {
            _ = shutdown.changed() => return,
            r = conn.recv::<Request>() => r,
        };
        let req = match req {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(peer, error = %e, "raft rpc connection dropped");
                return;
            }
        };
        let Some(node) = node.upgrade() else { return };
        if node.shared.is_blocked(req.from) {
            // Partitioned (tests): behave like a dead link.
            return;
        }
        let body = node.handle(req).await;
        let resp = Response {
            cluster_id: node.shared.cluster_id(),
            body,
        };
        drop(node);
        if let Err(e) = conn.send(&resp).await {
            tracing::debug!(peer, error = %e, "raft rpc response not sent");
            return;
        }
    }
}
