//! The raft-backed server: [`Server::with_raft`], the leadership loop that starts and stops the
//! leader duties, heartbeats forwarded to the leader, consistent reads, and the operator calls
//! (peers, remove-peer, snapshot save / restore / inspect).
//!
//! Design:
//! - Writes: [`Server::apply`] goes through [`RaftNode::apply`] (a follower forwards the command
//!   to the leader). Every server's raft node calls the apply observer for each committed
//!   command; the observer runs `Server::after_apply`, which feeds the broker and heartbeat
//!   timers only while this server's leader duties are active.
//! - Leader duties: `run_raft` watches leadership; on gaining it, it waits until every entry of
//!   earlier terms is applied (a linearizable read is the barrier), rebuilds the broker from the
//!   pending / blocked / delayed evals in the state and gives every live node a fresh TTL +
//!   grace, then runs the workers, the delay timer and the heartbeat timers; on losing it they
//!   stop and the broker and timers are forgotten. Plans and "node down" writes use
//!   [`RaftNode::apply_local`], so a deposed leader's worker never forwards a stale plan.
//! - Heartbeats: the TTL timers live on the leader, so a follower forwards `node_heartbeat` as a
//!   leader call (`Node.UpdateStatus`) over the raft link; registration and node status writes
//!   start the timer where they are applied as leader, so they need no forwarding.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nomad_raft::{RaftError, RaftNode};
use nomad_state::{Command, StateStore};
use serde::{Deserialize, Serialize};

use crate::{Server, ServerConfig, ServerError};

/// First bytes of a snapshot written by [`Server::snapshot_save`].
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"NRSSNAP1";
/// magic + crc32 + index + term.
const SNAPSHOT_HEADER: usize = 8 + 4 + 8 + 8;
/// The leader call that carries a forwarded heartbeat.
const HEARTBEAT_METHOD: &str = "Node.UpdateStatus";
/// How often leadership is re-checked even without a change notification.
const LEADERSHIP_POLL: Duration = Duration::from_millis(100);
/// How long stopping the leader duties may take before they are aborted.
const REVOKE_WAIT: Duration = Duration::from_secs(5);
/// Default wait for a forwarded heartbeat.
const HEARTBEAT_FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Server::snapshot_inspect`] reports about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// The state's raft index when saved.
    pub index: u64,
    /// The raft term when saved (0 without raft).
    pub term: u64,
    /// Bytes of the whole snapshot.
    pub size: u64,
    /// Jobs in it.
    pub jobs: usize,
    /// Allocations in it.
    pub allocs: usize,
    /// Evaluations in it.
    pub evals: usize,
    /// Nodes in it.
    pub nodes: usize,
    /// Namespaces in it (`default` included).
    pub namespaces: usize,
    /// ACL tokens in it.
    pub acl_tokens: usize,
    /// ACL policies in it.
    pub acl_policies: usize,
}

/// A `ServerError` as it crosses the raft link in a leader call's answer.
#[derive(Debug, Serialize, Deserialize)]
enum WireError {
    BadRequest(String),
    NotFound(String),
    PermissionDenied,
    Internal(String),
}

impl From<ServerError> for WireError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::BadRequest(m) => WireError::BadRequest(m),
            ServerError::NotFound(m) => WireError::NotFound(m),
            ServerError::PermissionDenied => WireError::PermissionDenied,
            ServerError::Internal(m) => WireError::Internal(m),
        }
    }
}

impl From<WireError> for ServerError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::BadRequest(m) => ServerError::BadRequest(m),
            WireError::NotFound(m) => ServerError::NotFound(m),
            WireError::PermissionDenied => ServerError::PermissionDenied,
            WireError::Internal(m) => ServerError::Internal(m),
        }
    }
}

/// The answer to a forwarded heartbeat: the TTL in milliseconds.
type HeartbeatAnswer = Result<u64, WireError>;

/// Maps raft errors to the server's: no leader is Nomad's 500 `No cluster leader`; a command
/// the state store refused keeps its message (and "... not found" stays a 404).
pub(crate) fn raft_error(e: RaftError) -> ServerError {
    match e {
        RaftError::NoLeader => ServerError::Internal("No cluster leader".into()),
        RaftError::Apply(m) if m.ends_with(" not found") => ServerError::NotFound(m),
        RaftError::Apply(m) => ServerError::Internal(m),
        other => ServerError::Internal(other.to_string()),
    }
}

fn no_raft() -> ServerError {
    ServerError::Internal("raft is not in use on this server (dev mode)".into())
}

fn bad_snapshot(m: &str) -> ServerError {
    ServerError::BadRequest(format!("snapshot: {m}"))
}

/// Splits a snapshot into (index, term, state bytes), checking magic and checksum.
fn decode_snapshot(bytes: &[u8]) -> Result<(u64, u64, &[u8]), ServerError> {
    if bytes.len() < SNAPSHOT_HEADER {
        return Err(bad_snapshot("too short to be a snapshot"));
    }
    let (magic, rest) = bytes.split_at(8);
    if magic != SNAPSHOT_MAGIC {
        return Err(bad_snapshot("not a nomad-rs snapshot (bad magic)"));
    }
    let (crc, body) = rest.split_at(4);
    let mut crc_bytes = [0u8; 4];
    crc_bytes.copy_from_slice(crc);
    if u32::from_le_bytes(crc_bytes) != crc32fast::hash(body) {
        return Err(bad_snapshot("checksum mismatch (damaged or truncated)"));
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&body[..8]);
    let mut term = [0u8; 8];
    term.copy_from_slice(&body[8..16]);
    Ok((
        u64::from_le_bytes(index),
        u64::from_le_bytes(term),
        &body[16..],
    ))
}

fn encode_snapshot(index: u64, term: u64, state: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + state.len());
    body.extend_from_slice(&index.to_le_bytes());
    body.extend_from_slice(&term.to_le_bytes());
    body.extend_from_slice(state);
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

impl Server {
    /// A server whose state lives on `raft` (started with the state store this server reads:
    /// [`RaftNode::state`]). Writes replicate through the log; [`Server::run`] runs the leader
    /// duties only while this server leads. The caller keeps owning the raft node (bootstrap,
    /// join, shutdown).
    pub fn with_raft(config: ServerConfig, raft: Arc<RaftNode>) -> Arc<Server> {
        let state = raft.state().clone();
        let server = Arc::new(Server::build(config, state, Some(raft.clone())));
        let weak = Arc::downgrade(&server);
        raft.set_apply_observer(Some(Arc::new(move |_index, cmd: &Command| {
            if let Some(s) = weak.upgrade() {
                s.after_apply(cmd);
            }
        })));
        let weak = Arc::downgrade(&server);
        raft.set_call_handler(Some(Arc::new(move |method: String, body: Vec<u8>| {
            let weak = weak.clone();
            Box::pin(async move {
                match weak.upgrade() {
                    Some(s) => s.leader_call(&method, &body).await,
                    None => {
                        let answer: HeartbeatAnswer =
                            Err(WireError::Internal("server is shutting down".into()));
                        serde_json::to_vec(&answer).unwrap_or_default()
                    }
                }
            })
        })));
        server
    }

    /// The raft node, when the state is replicated.
    pub fn raft(&self) -> Option<&Arc<RaftNode>> {
        self.raft.as_ref()
    }

    /// Whether this server is the leader (always without raft).
    pub fn is_leader(&self) -> bool {
        self.raft.as_ref().is_none_or(|r| r.is_leader())
    }

    /// The leader's RPC address, when known (`None` without raft: the agent knows its own).
    pub fn leader(&self) -> Option<String> {
        self.raft
            .as_ref()?
            .leader()
            .map(|(_, addr)| addr)
            .filter(|a| !a.is_empty())
    }

    /// The raft configuration: (id, RPC address, voter). Empty without raft.
    pub fn peers(&self) -> Vec<(u64, String, bool)> {
        self.raft.as_ref().map(|r| r.peers()).unwrap_or_default()
    }

    /// Sets how long a replicated write waits for a leader before failing with
    /// `No cluster leader` (default: the raft node's, at least 5 s); also bounds forwarded
    /// heartbeats.
    pub fn set_apply_timeout(&self, timeout: Duration) {
        *self.apply_timeout.lock().unwrap_or_else(|e| e.into_inner()) = Some(timeout);
    }

    pub(crate) fn configured_apply_timeout(&self) -> Option<Duration> {
        *self.apply_timeout.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the following reads of this server's state see every write acknowledged before
    /// the call (the HTTP layer calls it unless `?stale`). A no-op without raft.
    pub async fn consistent_read(&self) -> Result<(), ServerError> {
        match &self.raft {
            Some(r) => r.ensure_linearizable().await.map_err(raft_error),
            None => Ok(()),
        }
    }

    /// `operator raft remove-peer`: removes the server with that raft ID or RPC address.
    pub async fn raft_remove_peer(&self, id_or_addr: &str) -> Result<(), ServerError> {
        let raft = self.raft.as_ref().ok_or_else(no_raft)?;
        let id_or_addr = id_or_addr.trim();
        let found = raft
            .peers()
            .into_iter()
            .find(|(id, addr, _)| addr == id_or_addr || id.to_string() == id_or_addr);
        let Some((id, _, _)) = found else {
            let what = if id_or_addr.parse::<u64>().is_ok() {
                "id"
            } else {
                "address"
            };
            return Err(ServerError::Internal(format!(
                "{what} {id_or_addr:?} was not found in the Raft configuration"
            )));
        };
        raft.remove_peer(id).await.map_err(raft_error)
    }

    /// `operator snapshot save`: a consistent copy of the whole state (header: magic, crc32,
    /// index, term; then the persisted state).
    pub async fn snapshot_save(&self) -> Result<Vec<u8>, ServerError> {
        self.consistent_read().await?;
        let state = self.state.persist();
        let index = self.state.latest_index();
        let term = self.raft.as_ref().map_or(0, |r| r.term());
        Ok(encode_snapshot(index, term, &state))
    }

    /// `operator snapshot restore`: replaces the whole state on every server (through the log)
    /// with the snapshot's. The leader then rebuilds its broker and heartbeat timers from it.
    pub async fn snapshot_restore(&self, bytes: &[u8]) -> Result<(), ServerError> {
        let (_, _, state) = decode_snapshot(bytes)?;
        // Refuse a snapshot whose state does not decode before it reaches the log.
        StateStore::from_persisted(state).map_err(|e| bad_snapshot(&e.to_string()))?;
        self.apply(Command::Restore {
            state: state.to_vec(),
        })
        .await?;
        tracing::info!(bytes = bytes.len(), "snapshot restored");
        Ok(())
    }

    /// `operator snapshot inspect`: what a snapshot holds.
    pub fn snapshot_inspect(bytes: &[u8]) -> Result<SnapshotInfo, ServerError> {
        let (index, term, state) = decode_snapshot(bytes)?;
        let store = StateStore::from_persisted(state).map_err(|e| bad_snapshot(&e.to_string()))?;
        let snap = store.snapshot();
        Ok(SnapshotInfo {
            index,
            term,
            size: bytes.len() as u64,
            jobs: snap.jobs(None, "").len(),
            allocs: snap.allocs(None, "").len(),
            evals: snap.evals(None, "").len(),
            nodes: snap.nodes("").len(),
            namespaces: snap.namespaces("").len(),
            acl_tokens: snap.acl_tokens("").len(),
            acl_policies: snap.acl_policies("").len(),
        })
    }

    /// A follower's heartbeat, sent to the leader.
    pub(crate) async fn forward_heartbeat(
        &self,
        raft: &RaftNode,
        node_id: &str,
    ) -> Result<Duration, ServerError> {
        let timeout = self
            .configured_apply_timeout()
            .unwrap_or(HEARTBEAT_FORWARD_TIMEOUT);
        let answer = raft
            .call_leader(HEARTBEAT_METHOD, node_id.as_bytes().to_vec(), timeout)
            .await
            .map_err(raft_error)?;
        let answer: HeartbeatAnswer = serde_json::from_slice(&answer)
            .map_err(|e| ServerError::Internal(format!("bad heartbeat answer: {e}")))?;
        answer.map(Duration::from_millis).map_err(ServerError::from)
    }

    /// Serves a leader call from a follower.
    async fn leader_call(&self, method: &str, body: &[u8]) -> Vec<u8> {
        let answer: HeartbeatAnswer = match method {
            HEARTBEAT_METHOD => match std::str::from_utf8(body) {
                Ok(node_id) => self
                    .node_heartbeat_local(node_id)
                    .await
                    .map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
                    .map_err(WireError::from),
                Err(_) => Err(WireError::BadRequest("node ID is not UTF-8".into())),
            },
            other => Err(WireError::Internal(format!(
                "unknown leader call {other:?}"
            ))),
        };
        serde_json::to_vec(&answer).unwrap_or_default()
    }

    /// Runs the leader duties whenever this server is the raft leader, until `shutdown`.
    pub(crate) async fn run_raft(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(raft) = self.raft.clone() else {
            return;
        };
        loop {
            if *shutdown.borrow_and_update() || raft.is_shut_down() {
                break;
            }
            if !raft.is_leader() {
                tokio::select! {
                    _ = raft.wait_leader_change(false) => {}
                    _ = tokio::time::sleep(LEADERSHIP_POLL) => {}
                    r = shutdown.changed() => if r.is_err() { break },
                }
                continue;
            }
            // Barrier: everything committed by earlier leaders is applied before the broker
            // is rebuilt from the state.
            if let Err(e) = raft.ensure_linearizable().await {
                tracing::warn!(error = %e, "leadership barrier failed");
                tokio::time::sleep(LEADERSHIP_POLL).await;
                continue;
            }
            if !raft.is_leader() {
                continue;
            }
            self.establish_leadership();
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let me = self.clone();
            let mut duties = tokio::spawn(async move { me.run_leader_tasks(stop_rx).await });
            let mut stopping = false;
            loop {
                tokio::select! {
                    _ = raft.wait_leader_change(true) => {}
                    _ = tokio::time::sleep(LEADERSHIP_POLL) => {}
                    r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { stopping = true },
                    _ = &mut duties => {
                        tracing::error!("leader duties ended on their own");
                        break;
                    }
                }
                if stopping || !raft.is_leader() || raft.is_shut_down() {
                    break;
                }
            }
            self.revoke_leadership();
            let _ = stop_tx.send(true);
            if !duties.is_finished()
                && tokio::time::timeout(REVOKE_WAIT, &mut duties)
                    .await
                    .is_err()
            {
                duties.abort();
            }
            // Timers or evals added by a worker finishing after the revoke are dropped too.
            self.broker.clear();
            self.heartbeats.clear();
            if stopping {
                break;
            }
        }
    }

    /// Rebuilds the broker and the heartbeat timers (fresh TTL + grace for every live node)
    /// and lets applied commands feed them from now on.
    fn establish_leadership(&self) {
        self.broker.clear();
        self.heartbeats.clear();
        // On before the state is read: a command applied in between is seen by the observer
        // (the broker ignores duplicates) or is already in the state read below.
        self.leader_active.store(true, Ordering::SeqCst);
        self.restore_leader_state();
        let (ready, _, blocked, delayed) = self.broker.stats();
        tracing::info!(
            ready,
            blocked,
            delayed,
            index = self.state.latest_index(),
            "raft leadership gained: leader duties started"
        );
    }

    fn revoke_leadership(&self) {
        self.leader_active.store(false, Ordering::SeqCst);
        tracing::info!("raft leadership lost: leader duties stopped");
    }
}
