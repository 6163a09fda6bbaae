//! Replicates the server's state-machine log with openraft.
//!
//! Role: the consensus layer of the Nomad servers. [`RaftNode`] owns one openraft node, its
//! durable log (redb, `<data_dir>/raft/raft.db`), its snapshots (`<data_dir>/raft/snapshot.bin`)
//! and a tiny TCP RPC link to the other servers (length-prefixed JSON frames: AppendEntries,
//! Vote, InstallSnapshot, plus Forward for follower→leader writes, Join/Remove for membership,
//! ReadIndex for linearizable reads on followers).
//!
//! Invariants:
//! - openraft types are declared once (`types.rs`) and never appear in the public API.
//! - The state store is changed only by applying committed log entries (or restoring a
//!   snapshot); the log index is the state store's index.
//! - Every RPC carries the cluster ID; a mismatch is refused, so two clusters never merge.
//! - Damaged Raft files are reported as [`RaftError::Corrupt`] with the path, never skipped.
//!
//! Entry points: [`RaftNode::start`], [`RaftNode::bootstrap`], [`RaftNode::apply`].
#![forbid(unsafe_code)]

mod error;
mod network;
mod node;
mod store;
mod types;

use std::path::PathBuf;
use std::time::Duration;

pub use error::RaftError;
pub use node::RaftNode;

/// How to run one Raft node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This server's Raft ID (unique in the cluster, stable across restarts).
    pub node_id: u64,
    /// Address the RPC listener binds, e.g. "127.0.0.1:4647" (port 0 picks one; see
    /// [`RaftNode::rpc_addr`]).
    pub rpc_addr: String,
    /// The agent's data dir; Raft keeps `raft/` in it (redb file + snapshots).
    pub data_dir: PathBuf,
    /// The cluster's ID; `None` takes the one on disk, or derives one at bootstrap, or adopts
    /// the leader's when joining.
    pub cluster_id: Option<String>,
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max: Duration,
    /// `-dev`: log and snapshots in memory, nothing written under `data_dir`, no fsync.
    pub in_memory: bool,
}

impl RaftConfig {
    /// Nomad-like timings (heartbeat 100 ms, election 1-2 s) for `node_id` at `rpc_addr`.
    pub fn new(node_id: u64, rpc_addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        RaftConfig {
            node_id,
            rpc_addr: rpc_addr.into(),
            data_dir: data_dir.into(),
            cluster_id: None,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            in_memory: false,
        }
    }
}

#[cfg(test)]
mod tests;
