//! Job scaling, revert and stability: request and response bodies, scaling events, scale status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::null_default as nd;

/// Eval trigger of a `job scale` (`EvalTriggerScaling`).
pub const TRIGGER_SCALING: &str = "job-scaling";

/// How many scaling events are kept per task group (Nomad's `JobTrackedScalingEvents`).
pub const JOB_TRACKED_SCALING_EVENTS: usize = 20;

/// The `Target` key naming the task group of a scaling request.
pub const SCALING_TARGET_GROUP: &str = "Group";
/// The `Target` key naming the job of a scaling request.
pub const SCALING_TARGET_JOB: &str = "Job";
/// The `Target` key naming the namespace of a scaling request.
pub const SCALING_TARGET_NAMESPACE: &str = "Namespace";

/// `PUT /v1/job/:id/scale` body (`api.ScalingRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScalingRequest {
    pub count: Option<i64>,
    #[serde(deserialize_with = "nd")]
    pub target: BTreeMap<String, String>,
    #[serde(deserialize_with = "nd")]
    pub message: String,
    #[serde(deserialize_with = "nd")]
    pub error: bool,
    pub meta: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(deserialize_with = "nd")]
    pub policy_override: bool,
    #[serde(deserialize_with = "nd")]
    pub job_modify_index: u64,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(deserialize_with = "nd")]
    pub region: String,
}

impl ScalingRequest {
    /// Nomad's `JobScaleRequest.Validate` for a request on `job_id` in `namespace`: the first
    /// problem, with Nomad's wording.
    pub fn validate(&self, job_id: &str, namespace: &str) -> Result<(), String> {
        if let Some(ns) = self.target.get(SCALING_TARGET_NAMESPACE) {
            if !ns.is_empty() && ns != namespace {
                return Err("namespace in payload did not match header".into());
            }
        }
        if let Some(j) = self.target.get(SCALING_TARGET_JOB) {
            if !j.is_empty() && j != job_id {
                return Err("job ID in payload did not match URL".into());
            }
        }
        if self.group().is_empty() {
            return Err("missing task group name for scaling action".into());
        }
        if let Some(c) = self.count {
            if c < 0 {
                return Err("scaling action count can't be negative".into());
            }
            if self.error {
                return Err("scaling action should not contain count if error is true".into());
            }
            if i32::try_from(c).is_err() {
                return Err(format!(
                    "new scaling count is too large for TaskGroup.Count (int): {c}"
                ));
            }
        }
        Ok(())
    }

    /// The target task group (empty when missing).
    pub fn group(&self) -> &str {
        self.target
            .get(SCALING_TARGET_GROUP)
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// One scaling action or scaling error recorded for a task group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScalingEvent {
    /// Unix nanoseconds.
    #[serde(deserialize_with = "nd")]
    pub time: i64,
    pub count: Option<i64>,
    #[serde(deserialize_with = "nd")]
    pub previous_count: i64,
    #[serde(deserialize_with = "nd")]
    pub message: String,
    #[serde(deserialize_with = "nd")]
    pub error: bool,
    pub meta: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "EvalID")]
    pub eval_id: Option<String>,
    #[serde(deserialize_with = "nd")]
    pub create_index: u64,
}

/// One task group of [`JobScaleStatus`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupScaleStatus {
    #[serde(deserialize_with = "nd")]
    pub desired: i64,
    #[serde(deserialize_with = "nd")]
    pub placed: i64,
    #[serde(deserialize_with = "nd")]
    pub running: i64,
    #[serde(deserialize_with = "nd")]
    pub healthy: i64,
    #[serde(deserialize_with = "nd")]
    pub unhealthy: i64,
    /// Newest first; `null` when the group never scaled.
    pub events: Option<Vec<ScalingEvent>>,
}

/// `GET /v1/job/:id/scale` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobScaleStatus {
    #[serde(rename = "JobID", deserialize_with = "nd")]
    pub job_id: String,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(deserialize_with = "nd")]
    pub job_create_index: u64,
    #[serde(deserialize_with = "nd")]
    pub job_modify_index: u64,
    #[serde(deserialize_with = "nd")]
    pub job_stopped: bool,
    #[serde(deserialize_with = "nd")]
    pub task_groups: BTreeMap<String, TaskGroupScaleStatus>,
}

/// `PUT /v1/job/:id/revert` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRevertRequest {
    #[serde(rename = "JobID", deserialize_with = "nd")]
    pub job_id: String,
    #[serde(deserialize_with = "nd")]
    pub job_version: u64,
    /// Revert only if the current version is this one.
    pub enforce_prior_version: Option<u64>,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(deserialize_with = "nd")]
    pub region: String,
}

/// `PUT /v1/job/:id/stable` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobStabilityRequest {
    #[serde(rename = "JobID", deserialize_with = "nd")]
    pub job_id: String,
    #[serde(deserialize_with = "nd")]
    pub job_version: u64,
    #[serde(deserialize_with = "nd")]
    pub stable: bool,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
}

/// `PUT /v1/job/:id/stable` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobStabilityResponse {
    pub job_modify_index: u64,
    pub index: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> ScalingRequest {
        serde_json::from_str(body).expect("valid request JSON")
    }

    #[test]
    fn scaling_request_validation_names_the_problem() {
        let ok = req(r#"{"Count": 3, "Target": {"Group": "web"}}"#);
        assert_eq!(ok.validate("j", "default"), Ok(()));
        let cases = [
            (r#"{"Count": 3, "Target": {}}"#, "missing task group name"),
            (
                r#"{"Count": -1, "Target": {"Group": "web"}}"#,
                "count can't be negative",
            ),
            (
                r#"{"Count": 1, "Error": true, "Target": {"Group": "web"}}"#,
                "should not contain count if error is true",
            ),
            (
                r#"{"Count": 1, "Target": {"Group": "web", "Job": "other"}}"#,
                "job ID in payload did not match URL",
            ),
            (
                r#"{"Count": 1, "Target": {"Group": "web", "Namespace": "ops"}}"#,
                "namespace in payload did not match header",
            ),
            (
                r#"{"Count": 9999999999, "Target": {"Group": "web"}}"#,
                "too large",
            ),
        ];
        for (body, want) in cases {
            let err = req(body).validate("j", "default").unwrap_err();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn scale_status_serializes_null_events() {
        let mut s = JobScaleStatus {
            job_id: "j".into(),
            ..Default::default()
        };
        s.task_groups.insert(
            "web".into(),
            TaskGroupScaleStatus {
                desired: 2,
                ..Default::default()
            },
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["TaskGroups"]["web"]["Events"], serde_json::Value::Null);
        assert_eq!(v["TaskGroups"]["web"]["Desired"], 2);
        assert_eq!(v["JobID"], "j");
    }
}
