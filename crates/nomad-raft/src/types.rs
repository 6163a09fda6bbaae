//! The Raft type configuration, declared once; nothing outside this crate names openraft types.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// What applying one log entry produced: the index, or the state store's refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ApplyResponse {
    /// The log index of the entry.
    pub(crate) index: u64,
    /// Why the state store refused the command (every server refuses it the same way).
    pub(crate) error: Option<String>,
}

openraft::declare_raft_types!(
    /// The crate's one openraft type configuration.
    pub(crate) TypeConfig:
        D = nomad_state::Command,
        R = ApplyResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub(crate) type NodeId = u64;
pub(crate) type Node = openraft::BasicNode;
pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
