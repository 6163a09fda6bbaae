//! Request and response bodies of the HTTP API that both the agent and the CLI use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::Job;
use crate::serde_util::null_default as nd;

/// The jobspec source kept with a job version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobSubmission {
    #[serde(deserialize_with = "nd")]
    pub source: String,
    #[serde(deserialize_with = "nd")]
    pub format: String,
    pub variable_flags: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "nd")]
    pub variables: String,
}

/// `PUT /v1/jobs` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRegisterRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submission: Option<JobSubmission>,
    pub job: Option<Job>,
    #[serde(skip_serializing_if = "std::ops::Not::not", deserialize_with = "nd")]
    pub enforce_index: bool,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "nd")]
    pub job_modify_index: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not", deserialize_with = "nd")]
    pub policy_override: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not", deserialize_with = "nd")]
    pub preserve_counts: bool,
    #[serde(skip_serializing_if = "is_zero_i", deserialize_with = "nd")]
    pub eval_priority: i64,
    #[serde(deserialize_with = "nd")]
    pub region: String,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(rename = "SecretID", deserialize_with = "nd")]
    pub secret_id: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i(v: &i64) -> bool {
    *v == 0
}

/// `PUT /v1/jobs` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRegisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub warnings: String,
    pub index: u64,
    pub last_contact: u64,
    pub known_leader: bool,
    pub next_token: String,
}

/// `DELETE /v1/job/:id` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobDeregisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    #[serde(rename = "VolumeEvalID")]
    pub volume_eval_id: String,
    pub volume_eval_index: u64,
    pub index: u64,
    pub last_contact: u64,
    pub known_leader: bool,
    pub next_token: String,
}

/// `POST /v1/jobs/parse` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobsParseRequest {
    #[serde(rename = "JobHCL", deserialize_with = "nd")]
    pub job_hcl: String,
    #[serde(deserialize_with = "nd")]
    pub variables: String,
    #[serde(deserialize_with = "nd")]
    pub canonicalize: bool,
}

/// `PUT /v1/validate/job` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobValidateResponse {
    pub driver_config_validated: bool,
    pub validation_errors: Vec<String>,
    pub error: String,
    pub warnings: String,
}

/// `PUT /v1/node/:id/eligibility` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeEligibilityUpdateRequest {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// `eligible` or `ineligible`.
    pub eligibility: String,
}

/// `PUT /v1/node/:id/eligibility` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeEligibilityUpdateResponse {
    #[serde(rename = "EvalIDs")]
    pub eval_ids: Vec<String>,
    pub eval_create_index: u64,
    pub node_modify_index: u64,
    pub index: u64,
}

/// `PUT /v1/node/:id/drain` request: `DrainSpec` null disables the drain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeUpdateDrainRequest {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub drain_spec: Option<crate::DrainSpec>,
    /// With the drain disabled: make the node eligible for placements again.
    pub mark_eligible: bool,
    pub meta: Option<BTreeMap<String, String>>,
}

/// `PUT /v1/node/:id/drain` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeDrainUpdateResponse {
    pub node_modify_index: u64,
    #[serde(rename = "EvalIDs")]
    pub eval_ids: Vec<String>,
    pub eval_create_index: u64,
    pub index: u64,
}

/// `PUT /v1/allocation/:id/stop` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocStopResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub index: u64,
}
