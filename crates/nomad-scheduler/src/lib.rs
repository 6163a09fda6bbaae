//! nomad-scheduler: Nomad's schedulers as a pure library. An [`Evaluation`] and a read-only
//! [`SchedulerState`] go in; a [`Plan`] (allocs to place or update, allocs to stop), the updated
//! eval and an optional blocked eval come out.
//!
//! Invariants: no IO, no clock, no randomness, no async. Time (`now_unix_nanos`) and fresh IDs
//! (`new_id`) come from the caller through [`SchedulerContext`], so the same inputs and the same
//! ID sequence give the same plan. Nodes are visited in node-ID order and ties are broken by
//! node ID. An unplaceable alloc is a result (`FailedTGAllocs`, blocked eval), never an `Err`.
//!
//! Entry point: [`process_eval`]. Service and batch jobs go through the generic scheduler
//! (`generic.rs`: reconcile per task group, then feasibility + bin-packing per placement);
//! system and sysbatch jobs through the system scheduler (`system.rs`: one alloc per feasible
//! ready node).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;

use nomad_structs::{Allocation, Evaluation, Job, Node};

mod context;
pub mod feasible;
mod generic;
mod rank;
mod system;

#[cfg(test)]
mod tests;

/// Desired descriptions the scheduler writes, with Nomad's exact wording.
pub mod desc {
    /// The job no longer needs the alloc (scale down, job stopped or deregistered).
    pub const ALLOC_NOT_NEEDED: &str = "alloc not needed due to job update";
    /// The alloc is replaced by a destructive update.
    pub const ALLOC_UPDATING: &str = "alloc is being updated due to job update";
    /// The alloc moves off a draining node.
    pub const ALLOC_MIGRATING: &str = "alloc is being migrated";
    /// The alloc's node is down.
    pub const ALLOC_LOST: &str = "alloc is lost since its node is down";
    /// The failed alloc was replaced by a rescheduled one.
    pub const ALLOC_RESCHEDULED: &str = "alloc was rescheduled because it failed";
    /// A system alloc on a draining node.
    pub const ALLOC_NODE_TAINTED: &str = "alloc not needed as node is tainted";
    /// StatusDescription of the blocked eval made for failed placements.
    pub const BLOCKED_EVAL_FAILED_PLACEMENTS: &str = "created to place remaining allocations";
}

/// The read-only view of cluster state the scheduler works from (a snapshot).
pub trait SchedulerState {
    /// The job, if registered.
    fn job(&self, namespace: &str, id: &str) -> Option<Job>;
    /// All nodes, any status.
    fn nodes(&self) -> Vec<Node>;
    /// All allocs of a job, any status.
    fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Allocation>;
    /// All allocs on a node, any job and status.
    fn allocs_by_node(&self, node_id: &str) -> Vec<Allocation>;
}

/// What the caller supplies that a pure library may not make itself.
pub struct SchedulerContext<'a> {
    /// "Now", for CreateTime/ModifyTime and reschedule windows.
    pub now_unix_nanos: i64,
    /// Returns a fresh UUID on each call (new alloc and eval IDs).
    pub new_id: &'a mut dyn FnMut() -> String,
}

impl std::fmt::Debug for SchedulerContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerContext")
            .field("now_unix_nanos", &self.now_unix_nanos)
            .finish_non_exhaustive()
    }
}

/// The scheduler's proposal, to be applied by the plan applier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The eval that made the plan.
    pub eval_id: String,
    /// New or updated allocs per node ID: full objects with the Job embedded; new ones have
    /// DesiredStatus `run` and ClientStatus `pending`, in-place updates keep their ID.
    pub node_allocation: BTreeMap<String, Vec<Allocation>>,
    /// Allocs to stop per node ID: the alloc with DesiredStatus `stop`, DesiredDescription set
    /// and, for lost allocs, ClientStatus `lost`.
    pub node_update: BTreeMap<String, Vec<Allocation>>,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.node_allocation.values().all(Vec::is_empty)
            && self.node_update.values().all(Vec::is_empty)
    }
}

/// Everything one scheduling pass produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleResult {
    /// The plan to apply.
    pub plan: Plan,
    /// The eval, updated: Status `complete` (or still `blocked`, see `still_blocked`),
    /// FailedTGAllocs, QueuedAllocations (every group), BlockedEval.
    pub eval: Evaluation,
    /// A new `blocked` eval (TriggeredBy `queued-allocs`) when placements failed; never made
    /// when the eval being processed is itself blocked.
    pub blocked_eval: Option<Evaluation>,
    /// Further evals to create: `pending` evals with TriggeredBy `alloc-failure` and WaitUntil
    /// set, for failed allocs whose reschedule delay has not passed.
    pub follow_up_evals: Vec<Evaluation>,
    /// The processed eval was `blocked` and placements still fail: keep it blocked.
    pub still_blocked: bool,
}

/// Why a scheduling pass could not run (not "could not place": that is a result).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// The job (or eval) names a type no scheduler handles.
    #[error("unknown scheduler type {job_type:?} for job {job_id:?} (eval {eval_id})")]
    UnknownJobType {
        /// The eval.
        eval_id: String,
        /// The job.
        job_id: String,
        /// The type found.
        job_type: String,
    },
}

/// Runs one evaluation against a state snapshot and returns the plan and eval updates.
pub fn process_eval(
    eval: &Evaluation,
    state: &dyn SchedulerState,
    ctx: &mut SchedulerContext<'_>,
) -> Result<ScheduleResult, SchedulerError> {
    let job = state.job(&eval.namespace, &eval.job_id);
    let job_type = job
        .as_ref()
        .map(|j| j.job_type.clone())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            if eval.eval_type.is_empty() {
                nomad_structs::JOB_TYPE_SERVICE.to_string()
            } else {
                eval.eval_type.clone()
            }
        });
    let mut s = context::Sched::new(eval, state, ctx);
    match job_type.as_str() {
        nomad_structs::JOB_TYPE_SERVICE | nomad_structs::JOB_TYPE_BATCH => {
            generic::schedule(&mut s, job.as_ref())
        }
        nomad_structs::JOB_TYPE_SYSTEM | nomad_structs::JOB_TYPE_SYSBATCH => {
            system::schedule(&mut s, job.as_ref())
        }
        _ => {
            return Err(SchedulerError::UnknownJobType {
                eval_id: eval.id.clone(),
                job_id: eval.job_id.clone(),
                job_type,
            })
        }
    }
    Ok(s.finish(job.as_ref()))
}
