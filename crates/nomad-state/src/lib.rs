//! The server's state store: in-memory tables changed only by applying [`Command`]s.
//!
//! Invariants: `apply` is deterministic — no clock reads, no fresh IDs, no IO; everything a
//! command needs (IDs, timestamps) is inside it, so a Raft log replayed on any server gives the
//! same state. Readers take immutable [`StateSnapshot`]s; blocking queries wait on the index.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use nomad_structs::*;
use serde::{Deserialize, Serialize};

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Upsert a job (version bumped when the spec changed) and optionally create its eval.
    JobRegister { job: Job, eval: Option<Evaluation>, submission: Option<JobSubmission>, now: i64 },
    /// Stop (or purge) a job and optionally create the deregister eval.
    JobDeregister { namespace: String, job_id: String, purge: bool, eval: Option<Evaluation>, now: i64 },
    /// Upsert evaluations (new, updated status, blocked...).
    EvalsUpsert { evals: Vec<Evaluation> },
    /// Register or update a node.
    NodeRegister { node: Node, now: i64 },
    /// Change a node's status (ready/down) with the evals the change creates.
    NodeStatusUpdate { node_id: String, status: String, evals: Vec<Evaluation>, now: i64 },
    /// Apply a scheduler plan: allocs placed or updated, allocs stopped, and the eval's new state.
    PlanApply { allocs_upsert: Vec<Allocation>, allocs_stop: Vec<(String, String)>, evals: Vec<Evaluation>, now: i64 },
    /// Client-reported alloc status (ClientStatus, TaskStates, ...), with evals it triggers.
    AllocClientUpdate { allocs: Vec<Allocation>, evals: Vec<Evaluation>, now: i64 },
    /// Server-side desired transitions (e.g. `alloc stop`), with the eval it creates.
    AllocDesiredTransition { alloc_ids: Vec<String>, desired_status: Option<String>, desired_description: Option<String>, transition: DesiredTransition, evals: Vec<Evaluation>, now: i64 },
}

/// Errors applying a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The command refers to an object that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The command is malformed.
    #[error("invalid command: {0}")]
    Invalid(String),
}

/// Tables, for blocking queries on a table's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Jobs.
    Jobs,
    /// Job summaries.
    JobSummary,
    /// Evaluations.
    Evals,
    /// Allocations.
    Allocs,
    /// Nodes.
    Nodes,
}

/// The state store. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct StateStore {}

impl StateStore {
    /// An empty store at index 0.
    pub fn new() -> Arc<Self> {
        Arc::new(StateStore {})
    }

    /// Applies `cmd` at raft `index` (strictly increasing). Returns the index.
    pub fn apply(&self, index: u64, cmd: &Command) -> Result<u64, StateError> {
        let _ = cmd;
        Ok(index)
    }

    /// The latest applied index.
    pub fn latest_index(&self) -> u64 {
        0
    }

    /// A consistent read-only view.
    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot::default()
    }

    /// Waits until any of `tables` has an index greater than `min_index`, or `timeout` passes.
    pub async fn wait_for_change(&self, tables: &[Table], min_index: u64, timeout: Duration) {
        let _ = (tables, min_index);
        tokio::time::sleep(timeout).await;
    }
}

/// An immutable view of every table at one index.
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {}

impl StateSnapshot {
    /// The highest index of the given tables (never 0 once anything was written: 1 is the floor).
    pub fn index(&self, tables: &[Table]) -> u64 {
        let _ = tables;
        1
    }
    /// Jobs in a namespace (`None` = all namespaces), sorted by ID, optionally by ID prefix.
    pub fn jobs(&self, namespace: Option<&str>, prefix: &str) -> Vec<Arc<Job>> {
        let _ = (namespace, prefix);
        vec![]
    }
    /// One job.
    pub fn job(&self, namespace: &str, id: &str) -> Option<Arc<Job>> {
        let _ = (namespace, id);
        None
    }
    /// A job's summary (always present for an existing job).
    pub fn job_summary(&self, namespace: &str, id: &str) -> Option<JobSummary> {
        let _ = (namespace, id);
        None
    }
    /// The submission of a job version.
    pub fn job_submission(&self, namespace: &str, id: &str, version: u64) -> Option<JobSubmission> {
        let _ = (namespace, id, version);
        None
    }
    /// All allocations (optionally one namespace, ID prefix), sorted by ID.
    pub fn allocs(&self, namespace: Option<&str>, prefix: &str) -> Vec<Arc<Allocation>> {
        let _ = (namespace, prefix);
        vec![]
    }
    /// One allocation by full ID.
    pub fn alloc(&self, id: &str) -> Option<Arc<Allocation>> {
        let _ = id;
        None
    }
    /// Allocations of a job.
    pub fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<Allocation>> {
        let _ = (namespace, job_id);
        vec![]
    }
    /// Allocations on a node.
    pub fn allocs_by_node(&self, node_id: &str) -> Vec<Arc<Allocation>> {
        let _ = node_id;
        vec![]
    }
    /// Allocations created by an eval.
    pub fn allocs_by_eval(&self, eval_id: &str) -> Vec<Arc<Allocation>> {
        let _ = eval_id;
        vec![]
    }
    /// Evaluations (optionally one namespace, ID prefix), sorted by ID.
    pub fn evals(&self, namespace: Option<&str>, prefix: &str) -> Vec<Arc<Evaluation>> {
        let _ = (namespace, prefix);
        vec![]
    }
    /// One evaluation.
    pub fn eval(&self, id: &str) -> Option<Arc<Evaluation>> {
        let _ = id;
        None
    }
    /// Evaluations of a job.
    pub fn evals_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<Evaluation>> {
        let _ = (namespace, job_id);
        vec![]
    }
    /// Nodes (ID prefix), sorted by ID.
    pub fn nodes(&self, prefix: &str) -> Vec<Arc<Node>> {
        let _ = prefix;
        vec![]
    }
    /// One node.
    pub fn node(&self, id: &str) -> Option<Arc<Node>> {
        let _ = id;
        None
    }
}
