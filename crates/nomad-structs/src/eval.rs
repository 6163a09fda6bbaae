//! Evaluations: the unit of scheduling work.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alloc::AllocMetric;
use crate::serde_util::null_default as nd;

/// Eval status: waiting for capacity.
pub const EVAL_STATUS_BLOCKED: &str = "blocked";
/// Eval status: not processed yet.
pub const EVAL_STATUS_PENDING: &str = "pending";
/// Eval status: processed.
pub const EVAL_STATUS_COMPLETE: &str = "complete";
/// Eval status: processing failed.
pub const EVAL_STATUS_FAILED: &str = "failed";
/// Eval status: superseded (one "l", as Nomad spells it).
pub const EVAL_STATUS_CANCELED: &str = "canceled";

/// Triggers.
pub const TRIGGER_JOB_REGISTER: &str = "job-register";
/// The job was deregistered.
pub const TRIGGER_JOB_DEREGISTER: &str = "job-deregister";
/// A node changed.
pub const TRIGGER_NODE_UPDATE: &str = "node-update";
/// The node drainer marked allocs for migration.
pub const TRIGGER_NODE_DRAIN: &str = "node-drain";
/// An alloc was stopped through the API.
pub const TRIGGER_ALLOC_STOP: &str = "alloc-stop";
/// Capacity appeared for a blocked eval.
pub const TRIGGER_QUEUED_ALLOCS: &str = "queued-allocs";
/// A failed alloc is rescheduled.
pub const TRIGGER_RETRY_FAILED_ALLOC: &str = "alloc-failure";
/// Follow-up eval for a delayed reschedule.
pub const TRIGGER_FAILED_FOLLOW_UP: &str = "failed-follow-up";

/// An evaluation (whole-struct omitempty in Nomad).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Evaluation {
    #[serde(rename = "ID", deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(deserialize_with = "nd")]
    pub priority: i32,
    #[serde(rename = "Type", deserialize_with = "nd")]
    pub eval_type: String,
    #[serde(deserialize_with = "nd")]
    pub triggered_by: String,
    #[serde(rename = "JobID", deserialize_with = "nd")]
    pub job_id: String,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "nd")]
    pub job_modify_index: u64,
    #[serde(
        rename = "NodeID",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nd"
    )]
    pub node_id: String,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "nd")]
    pub node_modify_index: u64,
    #[serde(
        rename = "DeploymentID",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nd"
    )]
    pub deployment_id: String,
    #[serde(deserialize_with = "nd")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub status_description: String,
    #[serde(skip_serializing_if = "is_zero_i", deserialize_with = "nd")]
    pub wait: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub next_eval: String,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub previous_eval: String,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub blocked_eval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related_evals: Option<Vec<serde_json::Value>>,
    #[serde(rename = "FailedTGAllocs", skip_serializing_if = "Option::is_none")]
    pub failed_tg_allocs: Option<BTreeMap<String, AllocMetric>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_eligibility: Option<BTreeMap<String, bool>>,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub quota_limit_reached: String,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nd")]
    pub escaped_computed_class: bool,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nd")]
    pub annotate_plan: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_allocations: Option<BTreeMap<String, i64>>,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "nd")]
    pub snapshot_index: u64,
    #[serde(deserialize_with = "nd")]
    pub create_index: u64,
    #[serde(deserialize_with = "nd")]
    pub modify_index: u64,
    #[serde(deserialize_with = "nd")]
    pub create_time: i64,
    #[serde(deserialize_with = "nd")]
    pub modify_time: i64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i(v: &i64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

impl Evaluation {
    /// Whether the eval is finished (no more work for the broker).
    pub fn terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            EVAL_STATUS_COMPLETE | EVAL_STATUS_FAILED | EVAL_STATUS_CANCELED
        )
    }
}
