//! Allocations: a task group placed on a node, and what its tasks did there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{Job, NetworkResource, Resources};
use crate::serde_util::null_default as nd;

/// Desired status: the alloc should run.
pub const ALLOC_DESIRED_RUN: &str = "run";
/// Desired status: the alloc should stop.
pub const ALLOC_DESIRED_STOP: &str = "stop";
/// Desired status: the alloc was evicted (preempted).
pub const ALLOC_DESIRED_EVICT: &str = "evict";

/// Client status strings.
pub const ALLOC_CLIENT_PENDING: &str = "pending";
/// At least one task runs.
pub const ALLOC_CLIENT_RUNNING: &str = "running";
/// All tasks completed successfully.
pub const ALLOC_CLIENT_COMPLETE: &str = "complete";
/// A task failed.
pub const ALLOC_CLIENT_FAILED: &str = "failed";
/// The node went down.
pub const ALLOC_CLIENT_LOST: &str = "lost";
/// The node disconnected.
pub const ALLOC_CLIENT_UNKNOWN: &str = "unknown";

/// Task state strings.
pub const TASK_STATE_PENDING: &str = "pending";
/// The task runs.
pub const TASK_STATE_RUNNING: &str = "running";
/// The task ended.
pub const TASK_STATE_DEAD: &str = "dead";

fn is_empty_str(s: &str) -> bool {
    s.is_empty()
}
fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i(v: &i64) -> bool {
    *v == 0
}

/// An allocation (whole-struct omitempty in Nomad: zero fields are left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Allocation {
    #[serde(rename = "ID", deserialize_with = "nd")]
    pub id: String,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(rename = "EvalID", deserialize_with = "nd")]
    pub eval_id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(rename = "NodeID", deserialize_with = "nd")]
    pub node_id: String,
    #[serde(deserialize_with = "nd")]
    pub node_name: String,
    #[serde(rename = "JobID", deserialize_with = "nd")]
    pub job_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Box<Job>>,
    #[serde(deserialize_with = "nd")]
    pub task_group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_resources: Option<AllocatedResources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<AllocMetric>,
    #[serde(deserialize_with = "nd")]
    pub desired_status: String,
    #[serde(skip_serializing_if = "is_empty_str", deserialize_with = "nd")]
    pub desired_description: String,
    #[serde(deserialize_with = "nd")]
    pub desired_transition: DesiredTransition,
    #[serde(deserialize_with = "nd")]
    pub client_status: String,
    #[serde(skip_serializing_if = "is_empty_str", deserialize_with = "nd")]
    pub client_description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_states: Option<BTreeMap<String, TaskState>>,
    #[serde(skip_serializing_if = "is_empty_str", deserialize_with = "nd")]
    pub previous_allocation: String,
    #[serde(skip_serializing_if = "is_empty_str", deserialize_with = "nd")]
    pub next_allocation: String,
    #[serde(
        rename = "DeploymentID",
        skip_serializing_if = "is_empty_str",
        deserialize_with = "nd"
    )]
    pub deployment_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reschedule_tracker: Option<serde_json::Value>,
    #[serde(
        rename = "FollowupEvalID",
        skip_serializing_if = "is_empty_str",
        deserialize_with = "nd"
    )]
    pub followup_eval_id: String,
    #[serde(deserialize_with = "nd")]
    pub create_index: u64,
    #[serde(deserialize_with = "nd")]
    pub modify_index: u64,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "nd")]
    pub alloc_modify_index: u64,
    #[serde(skip_serializing_if = "is_zero_i", deserialize_with = "nd")]
    pub create_time: i64,
    #[serde(skip_serializing_if = "is_zero_i", deserialize_with = "nd")]
    pub modify_time: i64,
}

impl Allocation {
    /// Whether the server wants the alloc stopped.
    pub fn server_terminal(&self) -> bool {
        self.desired_status == ALLOC_DESIRED_STOP || self.desired_status == ALLOC_DESIRED_EVICT
    }

    /// Whether the client has finished with the alloc.
    pub fn client_terminal(&self) -> bool {
        matches!(
            self.client_status.as_str(),
            ALLOC_CLIENT_COMPLETE | ALLOC_CLIENT_FAILED | ALLOC_CLIENT_LOST
        )
    }

    /// Terminal on either side: it holds no resources any more.
    pub fn terminal(&self) -> bool {
        self.server_terminal() || self.client_terminal()
    }

    /// The alloc index parsed back from its name `<job>.<group>[<index>]` (0 on any error).
    pub fn index(&self) -> u64 {
        let prefix = self.job_id.len() + self.task_group.len() + 2;
        self.name
            .get(prefix..)
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The list stub served by list endpoints.
    pub fn stub(&self) -> AllocListStub {
        let job = self.job.as_deref();
        AllocListStub {
            id: self.id.clone(),
            eval_id: self.eval_id.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            node_id: self.node_id.clone(),
            node_name: self.node_name.clone(),
            job_id: self.job_id.clone(),
            job_type: job.map(|j| j.job_type.clone()).unwrap_or_default(),
            job_version: job.map(|j| j.version).unwrap_or_default(),
            task_group: self.task_group.clone(),
            allocated_resources: None,
            desired_status: self.desired_status.clone(),
            desired_description: self.desired_description.clone(),
            client_status: self.client_status.clone(),
            client_description: self.client_description.clone(),
            desired_transition: self.desired_transition.clone(),
            task_states: self.task_states.clone(),
            deployment_status: None,
            followup_eval_id: self.followup_eval_id.clone(),
            next_allocation: self.next_allocation.clone(),
            reschedule_tracker: self.reschedule_tracker.clone(),
            preempted_allocations: None,
            preempted_by_allocation: String::new(),
            create_index: self.create_index,
            modify_index: self.modify_index,
            create_time: self.create_time,
            modify_time: self.modify_time,
        }
    }
}

/// Nomad's `AllocListStub`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocListStub {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub name: String,
    pub namespace: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_name: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_type: String,
    pub job_version: u64,
    pub task_group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_resources: Option<AllocatedResources>,
    pub desired_status: String,
    pub desired_description: String,
    pub client_status: String,
    pub client_description: String,
    pub desired_transition: DesiredTransition,
    pub task_states: Option<BTreeMap<String, TaskState>>,
    pub deployment_status: Option<serde_json::Value>,
    #[serde(rename = "FollowupEvalID")]
    pub followup_eval_id: String,
    pub next_allocation: String,
    pub reschedule_tracker: Option<serde_json::Value>,
    pub preempted_allocations: Option<Vec<String>>,
    pub preempted_by_allocation: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

/// Server-side requests to the client about an alloc's transition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredTransition {
    pub migrate: Option<bool>,
    pub reschedule: Option<bool>,
    pub force_reschedule: Option<bool>,
    pub no_shutdown_delay: Option<bool>,
    pub migrate_disable_placement: Option<bool>,
}

/// Resources the scheduler gave an alloc.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedResources {
    #[serde(deserialize_with = "nd")]
    pub tasks: BTreeMap<String, AllocatedTaskResources>,
    pub task_lifecycles: Option<BTreeMap<String, Option<crate::job::Lifecycle>>>,
    #[serde(deserialize_with = "nd")]
    pub shared: AllocatedSharedResources,
}

/// Per-task allocated resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedTaskResources {
    #[serde(deserialize_with = "nd")]
    pub cpu: AllocatedCpuResources,
    #[serde(deserialize_with = "nd")]
    pub memory: AllocatedMemoryResources,
    pub networks: Option<Vec<NetworkResource>>,
    pub devices: Option<Vec<serde_json::Value>>,
}

/// Allocated CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedCpuResources {
    #[serde(deserialize_with = "nd")]
    pub cpu_shares: i64,
    pub reserved_cores: Option<Vec<u16>>,
}

/// Allocated memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AllocatedMemoryResources {
    #[serde(rename = "MemoryMB", deserialize_with = "nd")]
    pub memory_mb: i64,
    #[serde(rename = "MemoryMaxMB", deserialize_with = "nd")]
    pub memory_max_mb: i64,
}

/// Resources shared by the alloc's tasks (group network, disk).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedSharedResources {
    pub networks: Option<Vec<NetworkResource>>,
    #[serde(rename = "DiskMB", deserialize_with = "nd")]
    pub disk_mb: i64,
    pub ports: Option<Vec<AllocatedPortMapping>>,
}

/// A port the scheduler assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedPortMapping {
    #[serde(deserialize_with = "nd")]
    pub label: String,
    #[serde(deserialize_with = "nd")]
    pub value: i64,
    #[serde(deserialize_with = "nd")]
    pub to: i64,
    #[serde(rename = "HostIP", deserialize_with = "nd")]
    pub host_ip: String,
    #[serde(deserialize_with = "nd")]
    pub ignore_collision: bool,
}

/// What the scheduler saw while placing (or failing to place) an alloc.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocMetric {
    #[serde(deserialize_with = "nd")]
    pub nodes_evaluated: i64,
    #[serde(deserialize_with = "nd")]
    pub nodes_filtered: i64,
    #[serde(deserialize_with = "nd")]
    pub nodes_in_pool: i64,
    #[serde(deserialize_with = "nd")]
    pub node_pool: String,
    pub nodes_available: Option<BTreeMap<String, i64>>,
    pub class_filtered: Option<BTreeMap<String, i64>>,
    pub constraint_filtered: Option<BTreeMap<String, i64>>,
    #[serde(deserialize_with = "nd")]
    pub nodes_exhausted: i64,
    pub class_exhausted: Option<BTreeMap<String, i64>>,
    pub dimension_exhausted: Option<BTreeMap<String, i64>>,
    pub quota_exhausted: Option<Vec<String>>,
    pub resources_exhausted: Option<BTreeMap<String, Resources>>,
    pub scores: Option<BTreeMap<String, f64>>,
    pub score_meta_data: Option<Vec<serde_json::Value>>,
    #[serde(deserialize_with = "nd")]
    pub allocation_time: i64,
    #[serde(deserialize_with = "nd")]
    pub coalesced_failures: i64,
}

/// The state of one task of an alloc, reported by the client.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskState {
    #[serde(deserialize_with = "nd")]
    pub state: String,
    #[serde(deserialize_with = "nd")]
    pub failed: bool,
    #[serde(deserialize_with = "nd")]
    pub restarts: u64,
    /// RFC3339; `null` when zero.
    pub last_restart: Option<String>,
    /// RFC3339; `null` when zero. Exec and logs refuse tasks that never started.
    pub started_at: Option<String>,
    /// RFC3339; `null` when zero.
    pub finished_at: Option<String>,
    pub events: Option<Vec<TaskEvent>>,
    #[serde(deserialize_with = "nd")]
    pub paused: String,
}

/// Task event types, with Nomad's exact strings.
pub mod task_event {
    /// The client received the alloc.
    pub const RECEIVED: &str = "Received";
    /// Building the task directory.
    pub const TASK_SETUP: &str = "Task Setup";
    /// A setup step failed.
    pub const SETUP_FAILURE: &str = "Setup Failure";
    /// The driver failed to start the task.
    pub const DRIVER_FAILURE: &str = "Driver Failure";
    /// A message from the driver.
    pub const DRIVER_MESSAGE: &str = "Driver";
    /// The task config is invalid.
    pub const FAILED_VALIDATION: &str = "Failed Validation";
    /// The task started.
    pub const STARTED: &str = "Started";
    /// The task exited.
    pub const TERMINATED: &str = "Terminated";
    /// The client is killing the task.
    pub const KILLING: &str = "Killing";
    /// The task was killed.
    pub const KILLED: &str = "Killed";
    /// The task will restart.
    pub const RESTARTING: &str = "Restarting";
    /// The restart policy is exhausted or the task completed.
    pub const NOT_RESTARTING: &str = "Not Restarting";
    /// A user asked for a restart.
    pub const RESTART_SIGNAL: &str = "Restart Signaled";
    /// A signal is being sent.
    pub const SIGNALING: &str = "Signaling";
    /// Artifacts are downloading.
    pub const DOWNLOADING_ARTIFACTS: &str = "Downloading Artifacts";
    /// An artifact failed to download.
    pub const ARTIFACT_DOWNLOAD_FAILED: &str = "Failed Artifact Download";
    /// A sibling task failed.
    pub const SIBLING_FAILED: &str = "Sibling Task Failed";
    /// The leader task died.
    pub const LEADER_DEAD: &str = "Leader Task Dead";
    /// The main tasks ended.
    pub const MAIN_DEAD: &str = "Main Tasks Dead";
    /// A task hook failed.
    pub const HOOK_FAILED: &str = "Task hook failed";
    /// Restoring a task after an agent restart failed.
    pub const FAILED_RESTORE: &str = "Failed Restoring Task";
}

/// An event in a task's life, with Nomad's flat deprecated mirrors of `Details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskEvent {
    #[serde(rename = "Type", deserialize_with = "nd")]
    pub event_type: String,
    /// Unix nanoseconds.
    #[serde(deserialize_with = "nd")]
    pub time: i64,
    #[serde(deserialize_with = "nd")]
    pub message: String,
    #[serde(deserialize_with = "nd")]
    pub display_message: String,
    pub details: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "nd")]
    pub fails_task: bool,
    #[serde(deserialize_with = "nd")]
    pub restart_reason: String,
    #[serde(deserialize_with = "nd")]
    pub setup_error: String,
    #[serde(deserialize_with = "nd")]
    pub driver_error: String,
    #[serde(deserialize_with = "nd")]
    pub exit_code: i64,
    #[serde(deserialize_with = "nd")]
    pub signal: i64,
    #[serde(deserialize_with = "nd")]
    pub kill_timeout: i64,
    #[serde(deserialize_with = "nd")]
    pub kill_error: String,
    #[serde(deserialize_with = "nd")]
    pub kill_reason: String,
    #[serde(deserialize_with = "nd")]
    pub start_delay: i64,
    #[serde(deserialize_with = "nd")]
    pub download_error: String,
    #[serde(deserialize_with = "nd")]
    pub validation_error: String,
    #[serde(deserialize_with = "nd")]
    pub disk_limit: i64,
    #[serde(deserialize_with = "nd")]
    pub failed_sibling: String,
    #[serde(deserialize_with = "nd")]
    pub vault_error: String,
    #[serde(deserialize_with = "nd")]
    pub task_signal_reason: String,
    #[serde(deserialize_with = "nd")]
    pub task_signal: String,
    #[serde(deserialize_with = "nd")]
    pub driver_message: String,
    #[serde(deserialize_with = "nd")]
    pub generic_source: String,
}

impl TaskEvent {
    /// A new event of `event_type` at `time` (unix ns).
    pub fn new(event_type: &str, time: i64) -> Self {
        TaskEvent {
            event_type: event_type.to_string(),
            time,
            details: Some(BTreeMap::new()),
            ..Default::default()
        }
    }

    /// Sets a `Details` key.
    pub fn detail(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.into());
        self
    }

    /// Fills `DisplayMessage` from the event's fields, as Nomad's server does when it is empty.
    pub fn populate_display_message(&mut self) {
        if !self.display_message.is_empty() {
            return;
        }
        use task_event as te;
        let d = match self.event_type.as_str() {
            te::STARTED => "Task started by client".to_string(),
            te::RECEIVED => "Task received by client".to_string(),
            te::TASK_SETUP => self.message.clone(),
            te::KILLING => {
                if !self.kill_reason.is_empty() {
                    self.kill_reason.clone()
                } else if self.kill_timeout != 0 {
                    format!(
                        "Sent interrupt. Waiting {} before force killing",
                        crate::duration::format_go_duration(self.kill_timeout)
                    )
                } else {
                    "Sent interrupt".to_string()
                }
            }
            te::KILLED => {
                if self.kill_error.is_empty() {
                    "Task successfully killed".to_string()
                } else {
                    self.kill_error.clone()
                }
            }
            te::TERMINATED => {
                let mut s = format!("Exit Code: {}", self.exit_code);
                if self.signal != 0 {
                    s.push_str(&format!(", Signal: {}", self.signal));
                }
                if !self.message.is_empty() {
                    s.push_str(&format!(", Exit Message: {:?}", self.message));
                }
                s
            }
            te::RESTARTING => {
                let delay = crate::duration::format_go_duration(self.start_delay);
                if self.restart_reason.is_empty() || self.restart_reason == "Restart within policy"
                {
                    format!("Task restarting in {delay}")
                } else {
                    format!("{} - Task restarting in {delay}", self.restart_reason)
                }
            }
            te::NOT_RESTARTING => {
                if self.restart_reason.is_empty() {
                    "Task exceeded restart policy".to_string()
                } else {
                    self.restart_reason.clone()
                }
            }
            te::DOWNLOADING_ARTIFACTS => "Client is downloading artifacts".to_string(),
            te::ARTIFACT_DOWNLOAD_FAILED => self.download_error.clone(),
            te::SIBLING_FAILED => format!("Task's sibling {:?} failed", self.failed_sibling),
            te::SIGNALING => {
                if self.task_signal_reason.is_empty() {
                    format!("Task being sent signal {}", self.task_signal)
                } else {
                    format!(
                        "Task being sent signal {}: {}",
                        self.task_signal, self.task_signal_reason
                    )
                }
            }
            te::LEADER_DEAD => "Leader Task in Group dead".to_string(),
            te::DRIVER_FAILURE => self.driver_error.clone(),
            te::SETUP_FAILURE => self.setup_error.clone(),
            te::FAILED_VALIDATION => self.validation_error.clone(),
            te::DRIVER_MESSAGE => self.driver_message.clone(),
            _ => self.message.clone(),
        };
        self.display_message = d;
    }
}

/// Derives an alloc's client status from its task states, as Nomad's client does.
pub fn client_status_from_tasks(
    states: &BTreeMap<String, TaskState>,
) -> (&'static str, &'static str) {
    let (mut running, mut pending, mut failed) = (false, false, false);
    for s in states.values() {
        match s.state.as_str() {
            TASK_STATE_RUNNING => running = true,
            TASK_STATE_PENDING => pending = true,
            TASK_STATE_DEAD if s.failed => failed = true,
            _ => {}
        }
    }
    if failed {
        (ALLOC_CLIENT_FAILED, "Failed tasks")
    } else if running {
        (ALLOC_CLIENT_RUNNING, "Tasks are running")
    } else if pending {
        (ALLOC_CLIENT_PENDING, "No tasks have started")
    } else {
        (ALLOC_CLIENT_COMPLETE, "All tasks have completed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_index_from_name() {
        let a = Allocation {
            name: "web/dispatch-1.grp[12]".into(),
            job_id: "web/dispatch-1".into(),
            task_group: "grp".into(),
            ..Default::default()
        };
        assert_eq!(a.index(), 12);
    }

    #[test]
    fn display_messages() {
        let mut e = TaskEvent::new(task_event::TERMINATED, 1);
        e.exit_code = 3;
        e.populate_display_message();
        assert_eq!(e.display_message, "Exit Code: 3");
        let mut k = TaskEvent::new(task_event::KILLING, 1);
        k.kill_timeout = 5_000_000_000;
        k.populate_display_message();
        assert_eq!(
            k.display_message,
            "Sent interrupt. Waiting 5s before force killing"
        );
    }

    #[test]
    fn status_from_tasks() {
        let mut m = BTreeMap::new();
        m.insert(
            "a".into(),
            TaskState {
                state: TASK_STATE_DEAD.into(),
                ..Default::default()
            },
        );
        assert_eq!(client_status_from_tasks(&m).0, ALLOC_CLIENT_COMPLETE);
        m.insert(
            "b".into(),
            TaskState {
                state: TASK_STATE_RUNNING.into(),
                ..Default::default()
            },
        );
        assert_eq!(client_status_from_tasks(&m).0, ALLOC_CLIENT_RUNNING);
        m.insert(
            "c".into(),
            TaskState {
                state: TASK_STATE_DEAD.into(),
                failed: true,
                ..Default::default()
            },
        );
        assert_eq!(client_status_from_tasks(&m).0, ALLOC_CLIENT_FAILED);
    }
}
