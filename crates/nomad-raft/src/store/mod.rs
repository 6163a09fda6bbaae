//! Raft storage: the redb log and the state machine with its snapshots.

pub(crate) mod log;
pub(crate) mod sm;
