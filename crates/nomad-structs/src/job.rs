//! The job specification: Job, TaskGroup, Task and the blocks inside them, in Nomad's JSON shape.
//!
//! One type serves both directions. Fields that Nomad's Go `api` package sends as pointers are
//! `Option`s where "unset" and "zero" differ (e.g. `Count`); [`crate::canonicalize`] fills them on
//! the server, so stored jobs always carry concrete values, as Nomad's server JSON does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::null_default as nd;

/// Job types.
pub const JOB_TYPE_SERVICE: &str = "service";
/// Batch jobs run to completion.
pub const JOB_TYPE_BATCH: &str = "batch";
/// System jobs run one alloc on every eligible node.
pub const JOB_TYPE_SYSTEM: &str = "system";
/// Sysbatch jobs run to completion on every eligible node.
pub const JOB_TYPE_SYSBATCH: &str = "sysbatch";

/// Job status strings.
pub const JOB_STATUS_PENDING: &str = "pending";
/// At least one alloc is non-terminal.
pub const JOB_STATUS_RUNNING: &str = "running";
/// Stopped, or every alloc and eval finished.
pub const JOB_STATUS_DEAD: &str = "dead";

/// A job (Nomad `structs.Job` / `api.Job`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Job {
    #[serde(deserialize_with = "nd")]
    pub stop: bool,
    #[serde(deserialize_with = "nd")]
    pub region: String,
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(rename = "ID", deserialize_with = "nd")]
    pub id: String,
    #[serde(rename = "ParentID", deserialize_with = "nd")]
    pub parent_id: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(rename = "Type", deserialize_with = "nd")]
    pub job_type: String,
    #[serde(deserialize_with = "nd")]
    pub priority: i32,
    #[serde(deserialize_with = "nd")]
    pub all_at_once: bool,
    pub datacenters: Option<Vec<String>>,
    #[serde(deserialize_with = "nd")]
    pub node_pool: String,
    pub constraints: Option<Vec<Constraint>>,
    pub affinities: Option<Vec<Affinity>>,
    pub spreads: Option<Vec<serde_json::Value>>,
    #[serde(deserialize_with = "nd")]
    pub task_groups: Vec<TaskGroup>,
    pub update: Option<UpdateStrategy>,
    pub multiregion: Option<serde_json::Value>,
    pub periodic: Option<serde_json::Value>,
    pub parameterized_job: Option<serde_json::Value>,
    #[serde(deserialize_with = "nd")]
    pub dispatched: bool,
    #[serde(deserialize_with = "nd")]
    pub dispatch_idempotency_token: String,
    pub payload: Option<String>,
    pub meta: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "nd")]
    pub consul_namespace: String,
    #[serde(deserialize_with = "nd")]
    pub vault_namespace: String,
    #[serde(rename = "NomadTokenID", deserialize_with = "nd")]
    pub nomad_token_id: String,
    #[serde(deserialize_with = "nd")]
    pub status: String,
    #[serde(deserialize_with = "nd")]
    pub status_description: String,
    #[serde(deserialize_with = "nd")]
    pub stable: bool,
    #[serde(deserialize_with = "nd")]
    pub version: u64,
    #[serde(deserialize_with = "nd")]
    pub submit_time: i64,
    #[serde(deserialize_with = "nd")]
    pub create_index: u64,
    #[serde(deserialize_with = "nd")]
    pub modify_index: u64,
    #[serde(deserialize_with = "nd")]
    pub job_modify_index: u64,
    #[serde(rename = "UI")]
    pub ui: Option<serde_json::Value>,
    pub version_tag: Option<serde_json::Value>,
    /// Input only (api.Job): merged into each group by canonicalize.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reschedule: Option<ReschedulePolicy>,
    /// Input only (api.Job): merged into each group by canonicalize.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrate: Option<MigrateStrategy>,
}

impl Job {
    /// Finds a task group by name.
    pub fn lookup_task_group(&self, name: &str) -> Option<&TaskGroup> {
        self.task_groups.iter().find(|g| g.name == name)
    }

    /// Periodic or parameterized jobs get no evaluation on registration.
    pub fn is_periodic_or_parameterized(&self) -> bool {
        self.periodic.as_ref().is_some_and(|p| !p.is_null())
            || self
                .parameterized_job
                .as_ref()
                .is_some_and(|p| !p.is_null())
    }

    /// Whether the scheduler places one alloc per node (system, sysbatch).
    pub fn is_system_like(&self) -> bool {
        self.job_type == JOB_TYPE_SYSTEM || self.job_type == JOB_TYPE_SYSBATCH
    }

    /// Whether allocs run to completion (batch, sysbatch).
    pub fn is_batch_like(&self) -> bool {
        self.job_type == JOB_TYPE_BATCH || self.job_type == JOB_TYPE_SYSBATCH
    }

    /// Task meta with Nomad's precedence: task > group > job.
    pub fn combined_task_meta(&self, group: &str, task: &str) -> BTreeMap<String, String> {
        let mut out = self.meta.clone().unwrap_or_default();
        if let Some(tg) = self.lookup_task_group(group) {
            out.extend(tg.meta.clone().unwrap_or_default());
            if let Some(t) = tg.lookup_task(task) {
                out.extend(t.meta.clone().unwrap_or_default());
            }
        }
        out
    }

    /// Whether two versions differ in what the user specified (ignoring indexes, status, version).
    pub fn spec_changed(&self, other: &Job) -> bool {
        let strip = |j: &Job| {
            let mut j = j.clone();
            j.status = String::new();
            j.status_description = String::new();
            j.stable = false;
            j.version = 0;
            j.submit_time = 0;
            j.create_index = 0;
            j.modify_index = 0;
            j.job_modify_index = 0;
            j
        };
        strip(self) != strip(other)
    }
}

/// A constraint (`constraint { attribute, operator, value }`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Constraint {
    #[serde(rename = "LTarget", deserialize_with = "nd")]
    pub l_target: String,
    #[serde(rename = "RTarget", deserialize_with = "nd")]
    pub r_target: String,
    #[serde(rename = "Operand", deserialize_with = "nd")]
    pub operand: String,
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.l_target, self.operand, self.r_target)
    }
}

/// An affinity (`affinity { attribute, operator, value, weight }`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Affinity {
    #[serde(rename = "LTarget", deserialize_with = "nd")]
    pub l_target: String,
    #[serde(rename = "RTarget", deserialize_with = "nd")]
    pub r_target: String,
    #[serde(rename = "Operand", deserialize_with = "nd")]
    pub operand: String,
    #[serde(rename = "Weight", deserialize_with = "nd")]
    pub weight: i8,
}

/// The `update` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateStrategy {
    pub stagger: Option<i64>,
    pub max_parallel: Option<i64>,
    pub health_check: Option<String>,
    pub min_healthy_time: Option<i64>,
    pub healthy_deadline: Option<i64>,
    pub progress_deadline: Option<i64>,
    pub auto_revert: Option<bool>,
    pub auto_promote: Option<bool>,
    pub canary: Option<i64>,
}

/// The `migrate` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MigrateStrategy {
    pub max_parallel: Option<i64>,
    pub health_check: Option<String>,
    pub min_healthy_time: Option<i64>,
    pub healthy_deadline: Option<i64>,
}

/// The `restart` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub attempts: Option<i64>,
    pub interval: Option<i64>,
    pub delay: Option<i64>,
    pub mode: Option<String>,
    pub render_templates: Option<bool>,
}

/// The `reschedule` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReschedulePolicy {
    pub attempts: Option<i64>,
    pub interval: Option<i64>,
    pub delay: Option<i64>,
    pub delay_function: Option<String>,
    pub max_delay: Option<i64>,
    pub unlimited: Option<bool>,
}

/// The `ephemeral_disk` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EphemeralDisk {
    pub sticky: Option<bool>,
    #[serde(rename = "SizeMB")]
    pub size_mb: Option<i64>,
    pub migrate: Option<bool>,
}

/// A task group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroup {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    pub count: Option<i64>,
    pub update: Option<UpdateStrategy>,
    pub migrate: Option<MigrateStrategy>,
    pub constraints: Option<Vec<Constraint>>,
    pub scaling: Option<serde_json::Value>,
    pub restart_policy: Option<RestartPolicy>,
    pub disconnect: Option<serde_json::Value>,
    #[serde(deserialize_with = "nd")]
    pub tasks: Vec<Task>,
    pub ephemeral_disk: Option<EphemeralDisk>,
    pub meta: Option<BTreeMap<String, String>>,
    pub reschedule_policy: Option<ReschedulePolicy>,
    pub affinities: Option<Vec<Affinity>>,
    pub spreads: Option<Vec<serde_json::Value>>,
    pub networks: Option<Vec<NetworkResource>>,
    pub consul: Option<serde_json::Value>,
    pub services: Option<Vec<serde_json::Value>>,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub shutdown_delay: Option<i64>,
    pub max_run_duration: Option<i64>,
    pub stop_after_client_disconnect: Option<i64>,
    pub max_client_disconnect: Option<i64>,
    pub prevent_reschedule_on_lost: Option<bool>,
}

impl TaskGroup {
    /// Finds a task by name.
    pub fn lookup_task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The group's count (1 when unset, as canonicalize would make it).
    pub fn count(&self) -> u64 {
        self.count.map_or(1, |c| c.max(0) as u64)
    }

    /// Sum of the tasks' resource asks.
    pub fn total_resources(&self) -> (u64, u64) {
        self.tasks.iter().fold((0, 0), |(c, m), t| {
            let r = t.resources.clone().unwrap_or_default();
            (
                c + r.cpu.unwrap_or(0).max(0) as u64,
                m + r.memory_mb.unwrap_or(0).max(0) as u64,
            )
        })
    }
}

/// A task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub driver: String,
    #[serde(deserialize_with = "nd")]
    pub user: String,
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    pub env: Option<BTreeMap<String, String>>,
    pub services: Option<Vec<serde_json::Value>>,
    pub vault: Option<serde_json::Value>,
    pub templates: Option<Vec<serde_json::Value>>,
    pub constraints: Option<Vec<Constraint>>,
    pub affinities: Option<Vec<Affinity>>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    pub dispatch_payload: Option<serde_json::Value>,
    pub lifecycle: Option<Lifecycle>,
    pub meta: Option<BTreeMap<String, String>>,
    pub kill_timeout: Option<i64>,
    pub log_config: Option<LogConfig>,
    pub artifacts: Option<Vec<TaskArtifact>>,
    #[serde(deserialize_with = "nd")]
    pub leader: bool,
    pub shutdown_delay: Option<i64>,
    pub volume_mounts: Option<Vec<serde_json::Value>>,
    pub scaling_policies: Option<Vec<serde_json::Value>>,
    #[serde(deserialize_with = "nd")]
    pub kill_signal: String,
    #[serde(deserialize_with = "nd")]
    pub kind: String,
    #[serde(rename = "CSIPluginConfig")]
    pub csi_plugin_config: Option<serde_json::Value>,
    pub identity: Option<serde_json::Value>,
    pub identities: Option<Vec<serde_json::Value>>,
    pub actions: Option<Vec<Action>>,
    pub schedule: Option<serde_json::Value>,
}

/// The `lifecycle` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Lifecycle {
    #[serde(deserialize_with = "nd")]
    pub hook: String,
    #[serde(deserialize_with = "nd")]
    pub sidecar: bool,
}

/// The `logs` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    pub max_files: Option<i64>,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: Option<i64>,
    pub disabled: Option<bool>,
    /// Deprecated mirror of `Disabled` that the api package still carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// An `artifact` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskArtifact {
    pub getter_source: Option<String>,
    pub getter_options: Option<BTreeMap<String, String>>,
    pub getter_headers: Option<BTreeMap<String, String>>,
    pub getter_mode: Option<String>,
    pub getter_insecure: Option<bool>,
    pub relative_dest: Option<String>,
    pub chown: Option<bool>,
}

/// An `action` block: a command the job's author declares for operators to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Action {
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub command: String,
    pub args: Option<Vec<String>>,
}

/// The `resources` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    #[serde(rename = "CPU")]
    pub cpu: Option<i64>,
    pub cores: Option<i64>,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: Option<i64>,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: Option<i64>,
    #[serde(rename = "DiskMB")]
    pub disk_mb: Option<i64>,
    #[serde(rename = "IOPS")]
    pub iops: Option<i64>,
    pub networks: Option<Vec<NetworkResource>>,
    pub devices: Option<Vec<serde_json::Value>>,
    #[serde(rename = "NUMA")]
    pub numa: Option<serde_json::Value>,
    #[serde(rename = "SecretsMB")]
    pub secrets_mb: Option<i64>,
}

/// A `network` block (group level) or a node's network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkResource {
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub mode: String,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub device: String,
    #[serde(
        rename = "CIDR",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nd"
    )]
    pub cidr: String,
    #[serde(
        rename = "IP",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nd"
    )]
    pub ip: String,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub hostname: String,
    #[serde(
        rename = "MBits",
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "nd"
    )]
    pub mbits: i64,
    #[serde(rename = "DNS", skip_serializing_if = "Option::is_none")]
    pub dns: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nd")]
    pub reserved_ports: Vec<Port>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nd")]
    pub dynamic_ports: Vec<Port>,
    #[serde(rename = "CNI", skip_serializing_if = "Option::is_none")]
    pub cni: Option<serde_json::Value>,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// A port in a network block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Port {
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub label: String,
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nd")]
    pub value: i64,
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nd")]
    pub to: i64,
    #[serde(skip_serializing_if = "String::is_empty", deserialize_with = "nd")]
    pub host_network: String,
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nd")]
    pub ignore_collision: bool,
}
