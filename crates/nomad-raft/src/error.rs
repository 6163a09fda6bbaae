//! The one error type of the crate; serde so it can cross the RPC link unchanged.

use serde::{Deserialize, Serialize};

/// Errors of the Raft layer.
///
/// "Request refused" variants (`NoLeader`, `NotLeader`, `Apply`, `ClusterIdMismatch`) are kept
/// apart from "node is broken" ones (`Storage`, `Corrupt`, `Shutdown`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RaftError {
    /// No leader is known, or none answered in time (Nomad's `structs.ErrNoLeader` text).
    #[error("No cluster leader")]
    NoLeader,
    /// This node is not the leader; `leader` is the leader's RPC address when known.
    #[error("node is not the leader{}", .leader.as_ref().map(|l| format!(" (leader is {l})")).unwrap_or_default())]
    NotLeader {
        /// RPC address of the current leader, when known.
        leader: Option<String>,
    },
    /// Reading or writing the Raft data under `data_dir` failed.
    #[error("raft storage: {0}")]
    Storage(String),
    /// The Raft data on disk is damaged (the message names the file).
    #[error("raft data corrupted: {0}")]
    Corrupt(String),
    /// Talking to a peer failed.
    #[error("raft rpc: {0}")]
    Network(String),
    /// The entry was committed but the state store refused it (deterministic on every server).
    #[error("{0}")]
    Apply(String),
    /// A peer (or the data on disk) belongs to another cluster.
    #[error("cluster ID mismatch: ours {ours}, theirs {theirs}")]
    ClusterIdMismatch {
        /// Our cluster ID.
        ours: String,
        /// The other side's cluster ID.
        theirs: String,
    },
    /// A membership change was refused (unknown node, change in progress...).
    #[error("raft membership change: {0}")]
    Membership(String),
    /// The configuration is unusable (bad address, node ID mismatch with the data dir...).
    #[error("raft config: {0}")]
    Config(String),
    /// The node is shut down.
    #[error("raft is shut down")]
    Shutdown,
}
