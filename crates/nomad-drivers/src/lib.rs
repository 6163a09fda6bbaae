//! nomad-drivers: task drivers behind one [`Driver`] trait: `raw_exec` (host, no isolation)
//! and `exec` (namespaces + bind-mounted chroot + capabilities), sharing the task table,
//! stop/signal/recover machinery in a private `common` module.
//!
//! The client builds a `BTreeMap<String, Arc<dyn Driver>>` and drives tasks through the trait:
//! `validate_config` → `start_task` → `wait_task` / `signal_task` / `stop_task` →
//! `destroy_task`, and `recover_task` after an agent restart (from the persisted
//! [`TaskHandle`]).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod common;
pub mod exec;
pub mod exec_session;
pub mod idset;
pub mod raw_exec;
mod task_config;

pub use exec::{ExecConfig, ExecDriver, NamespaceMode};
pub use exec_session::{ExecControl, ExecExit, ExecRequest, ExecSession};
pub use idset::IdSet;
/// The exit recorder the drivers start as each task's parent (its subcommand lives in the
/// `nomad` binary).
pub use nomad_executor::exit_record;
pub use raw_exec::{RawExecConfig, RawExecDriver};

/// What file system isolation a driver provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsIsolation {
    /// Tasks see the host file system.
    #[default]
    None,
    /// chroot into the task dir.
    Chroot,
    /// A container image.
    Image,
    /// OpenBSD-style unveil.
    Unveil,
}

impl fmt::Display for FsIsolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsIsolation::None => "none",
            FsIsolation::Chroot => "chroot",
            FsIsolation::Image => "image",
            FsIsolation::Unveil => "unveil",
        })
    }
}

/// Driver capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The driver can signal tasks.
    pub send_signals: bool,
    /// The driver supports `alloc exec`.
    pub exec: bool,
    /// File system isolation.
    pub fs_isolation: FsIsolation,
}

/// Result of a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The driver is usable on this node (Nomad: health != undetected).
    pub detected: bool,
    /// Healthy.
    pub healthy: bool,
    /// e.g. `"Healthy"`, `"disabled"`.
    pub health_description: String,
    /// Node attributes, e.g. `"driver.raw_exec" => "1"`.
    pub attributes: BTreeMap<String, String>,
}

/// Resources of a task.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskResources {
    /// CPU in MHz (becomes cpu shares/weight).
    pub cpu_mhz: u64,
    /// Memory in MiB (hard limit, or the soft limit when `memory_max_mb` is larger).
    pub memory_mb: u64,
    /// Memory oversubscription hard limit in MiB; 0 = unset.
    pub memory_max_mb: u64,
    /// Reserved cores.
    pub cores: Vec<u32>,
}

/// Everything a driver needs to start a task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskConfig {
    /// Unique per task start, e.g. `"<alloc_id>/<task>/<8 hex>"`.
    pub id: String,
    /// Allocation id.
    pub alloc_id: String,
    /// Task name.
    pub task_name: String,
    /// Job id.
    pub job_id: String,
    /// Task group name.
    pub group_name: String,
    /// Namespace.
    pub namespace: String,
    /// The task's `config` block, already interpolated by the client.
    pub driver_config: serde_json::Value,
    /// The complete environment; nothing else is inherited.
    pub env: BTreeMap<String, String>,
    /// Run as this user.
    pub user: Option<String>,
    /// `<A>/alloc` on the host.
    pub alloc_dir: PathBuf,
    /// `<A>/<task>` on the host (local/ secrets/ tmp/ inside).
    pub task_dir: PathBuf,
    /// stdout destination (file or FIFO).
    pub stdout_path: PathBuf,
    /// stderr destination (file or FIFO).
    pub stderr_path: PathBuf,
    /// Resources.
    pub resources: TaskResources,
    /// `None` => SIGINT for raw_exec.
    pub kill_signal: Option<String>,
}

/// What the client persists to re-attach to a task after an agent restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskHandle {
    /// The task id (`TaskConfig::id`).
    pub task_id: String,
    /// Driver name, e.g. `"raw_exec"`.
    pub driver: String,
    /// Main process pid (also its process group id).
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` at start (clock ticks since boot), guards against PID reuse.
    pub start_time: u64,
    /// The task cgroup relative to the hierarchy root (`nomad.slice/<a>.<t>.scope` on v2,
    /// `nomad/<a>.<t>` on v1); `None` when the task runs without a cgroup.
    pub cgroup: Option<String>,
    /// Wall clock start time.
    pub started_at_unix_nanos: i64,
    /// The task's configured kill signal, so a recovered task stops the same way.
    #[serde(default)]
    pub kill_signal: Option<String>,
    /// The exit recorder that is the task's parent, so the real exit status is known even
    /// when the task ends while the agent is down. `None`: the task was the agent's child.
    #[serde(default)]
    pub recorder: Option<RecorderHandle>,
}

/// A task's exit recorder (see `nomad_executor::exit_record`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecorderHandle {
    /// The recorder's pid.
    pub pid: u32,
    /// Its start time (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
    /// The file it writes the task's status to.
    pub status_path: std::path::PathBuf,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExitResult {
    /// Exit status of a normal exit (0 when killed by a signal; `128 + signal` is NOT applied
    /// here). -1 when unknown (see `err`).
    pub exit_code: i32,
    /// Terminating signal, 0 if none.
    pub signal: i32,
    /// The cgroup reported an OOM kill (best effort).
    pub oom_killed: bool,
    /// Set when the exit status could not be determined, e.g. for a task recovered after an
    /// agent restart (not our child, so `waitpid` cannot read its status).
    pub err: Option<String>,
}

impl ExitResult {
    /// Exit code 0, no signal, no error (Nomad's definition of success).
    pub fn successful(&self) -> bool {
        self.exit_code == 0 && self.signal == 0 && self.err.is_none()
    }
}

/// Driver errors.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The driver is disabled in the agent config.
    #[error("{0} is disabled")]
    Disabled(&'static str),
    /// The task `config` block is invalid.
    #[error("invalid driver config field {field:?}: {message}")]
    InvalidConfig {
        /// The offending key (or `""` for the block itself).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A task with this id already runs.
    #[error("task with ID {0:?} already started")]
    DuplicateTask(String),
    /// The binary could not be found (raw_exec lookup).
    #[error("binary {command:?} could not be found")]
    BinaryNotFound {
        /// The command as configured.
        command: String,
    },
    /// Starting the process failed.
    #[error("{message}")]
    Start {
        /// The task id.
        task_id: String,
        /// Human readable cause, e.g. `failed to start command "/nope": No such file or directory (os error 2)`.
        message: String,
    },
    /// No task with this id.
    #[error("task not found for given id: {0}")]
    TaskNotFound(String),
    /// A signal name could not be parsed.
    #[error("invalid signal: {0}")]
    InvalidSignal(#[from] nomad_executor::SignalParseError),
    /// Signalling failed (e.g. the process already exited).
    #[error("failed to signal task {task_id}: {message}")]
    Signal {
        /// The task id.
        task_id: String,
        /// Why.
        message: String,
    },
    /// The task did not go away.
    #[error("failed to stop task {task_id}: {message}")]
    Stop {
        /// The task id.
        task_id: String,
        /// Why.
        message: String,
    },
    /// destroy without force on a running task.
    #[error("cannot destroy running task {0}")]
    StillRunning(String),
    /// Re-attaching failed (process gone or replaced).
    #[error("failed to recover task {task_id}: {message}")]
    Recover {
        /// The task id.
        task_id: String,
        /// Why.
        message: String,
    },
}

impl DriverError {
    /// Whether retrying the start could help (Nomad's recoverable errors). Config errors,
    /// missing binaries and exec failures are not recoverable.
    pub fn is_recoverable(&self) -> bool {
        !matches!(
            self,
            DriverError::Disabled(_)
                | DriverError::InvalidConfig { .. }
                | DriverError::BinaryNotFound { .. }
                | DriverError::Start { .. }
                | DriverError::DuplicateTask(_)
        )
    }
}

/// The future returned by [`Driver::wait_task`].
pub type ExitFuture = Pin<Box<dyn Future<Output = ExitResult> + Send>>;

/// A task driver.
pub trait Driver: Send + Sync + 'static {
    /// e.g. `"raw_exec"`.
    fn name(&self) -> &'static str;
    /// Static capabilities.
    fn capabilities(&self) -> Capabilities;
    /// Current fingerprint.
    fn fingerprint(&self) -> Fingerprint;
    /// Validates the task's `config` block (unknown keys are rejected with the key named).
    fn validate_config(&self, config: &serde_json::Value) -> Result<(), DriverError>;
    /// Starts the task. Blocking (fork/exec, opening FIFOs): call from `spawn_blocking`.
    fn start_task(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError>;
    /// Resolves when the task exits. May be called more than once and awaited from any tokio
    /// task; every future resolves with the same result.
    fn wait_task(&self, task_id: &str) -> Result<ExitFuture, DriverError>;
    /// Sends `signal` (None => the task's kill_signal / SIGINT) to the main process, waits up
    /// to `timeout` for exit, then kills every process of the task (cgroup, else process
    /// group). Returns once no process of the task remains. Blocking.
    fn stop_task(
        &self,
        task_id: &str,
        timeout: Duration,
        signal: Option<&str>,
    ) -> Result<(), DriverError>;
    /// Sends a signal to the task's main process.
    fn signal_task(&self, task_id: &str, signal: &str) -> Result<(), DriverError>;
    /// Frees driver state (and removes the cgroup) after the task has exited; with `force`,
    /// kills first. Blocking.
    fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), DriverError>;
    /// Re-attaches to a task started by a previous agent process (pid + start_time check);
    /// error if it is gone.
    fn recover_task(&self, handle: &TaskHandle) -> Result<(), DriverError>;
    /// Starts `req.command` next to running task `task_id` (`nomad alloc exec`). Blocking
    /// (fork/exec). Drivers without exec support keep this default, which refuses.
    fn exec_task(&self, task_id: &str, req: ExecRequest) -> Result<ExecSession, DriverError> {
        let _ = req;
        Err(exec_session::unsupported(self.name(), task_id))
    }
}
