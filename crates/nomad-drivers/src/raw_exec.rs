//! The `raw_exec` driver: runs a command directly on the host, as the agent's user (or
//! `task.user`), in the task directory, inside a per-task cgroup when available.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nomad_executor::{
    parse_signal, Cgroup, CgroupFs, CgroupLimits, CgroupMode, HostFs, ProcessError, ProcessSpec,
    SpawnError,
};
use tokio::sync::watch;

use crate::task_config::{self, RawExecTaskConfig};
use crate::{
    Capabilities, Driver, DriverError, ExitFuture, ExitResult, Fingerprint, FsIsolation,
    TaskConfig, TaskHandle,
};

/// Driver name.
pub const DRIVER_NAME: &str = "raw_exec";
/// How long stop/destroy wait for processes to disappear after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(15);

/// Plugin configuration of raw_exec.
#[derive(Debug, Clone, Default)]
pub struct RawExecConfig {
    /// `plugin "raw_exec" { config { enabled = true } }`; default false.
    pub enabled: bool,
    /// Run tasks without cgroups (only the process group is killed on stop).
    pub no_cgroups: bool,
    /// Force a cgroup mode instead of detecting it (tests use this to exercise v2 on a hybrid
    /// host). `None` = detect from `/proc/self/mounts` at start.
    pub cgroup_mode: Option<CgroupMode>,
}

/// Exit notification shared between the waiter thread and callers.
#[derive(Debug)]
struct ExitCell {
    value: Mutex<Option<ExitResult>>,
    cond: Condvar,
    tx: watch::Sender<Option<ExitResult>>,
}

impl ExitCell {
    fn new() -> Arc<ExitCell> {
        Arc::new(ExitCell {
            value: Mutex::new(None),
            cond: Condvar::new(),
            tx: watch::channel(None).0,
        })
    }

    fn set(&self, result: ExitResult) {
        let mut v = self.value.lock().expect("exit cell poisoned");
        if v.is_none() {
            *v = Some(result.clone());
            self.tx.send_replace(Some(result));
        }
        self.cond.notify_all();
    }

    fn get(&self) -> Option<ExitResult> {
        self.value.lock().expect("exit cell poisoned").clone()
    }

    /// Waits up to `timeout`; true when exited.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self.value.lock().expect("exit cell poisoned");
        let (guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |v| v.is_none())
            .expect("exit cell poisoned");
        guard.is_some()
    }
}

#[derive(Debug)]
struct Task {
    handle: TaskHandle,
    cgroup: Option<Cgroup>,
    exit: Arc<ExitCell>,
}

impl Task {
    fn exited(&self) -> bool {
        self.exit.get().is_some()
    }
}

/// The raw_exec driver.
#[derive(Debug)]
pub struct RawExecDriver {
    config: RawExecConfig,
    tasks: Mutex<HashMap<String, Arc<Task>>>,
    fs: Arc<dyn CgroupFs>,
}

impl RawExecDriver {
    /// Creates the driver.
    pub fn new(config: RawExecConfig) -> Self {
        RawExecDriver {
            config,
            tasks: Mutex::new(HashMap::new()),
            fs: Arc::new(HostFs),
        }
    }

    fn cgroup_mode(&self) -> CgroupMode {
        if self.config.no_cgroups {
            return CgroupMode::Unavailable;
        }
        self.config
            .cgroup_mode
            .clone()
            .unwrap_or_else(CgroupMode::detect)
    }

    fn task(&self, task_id: &str) -> Result<Arc<Task>, DriverError> {
        self.tasks
            .lock()
            .expect("task table poisoned")
            .get(task_id)
            .cloned()
            .ok_or_else(|| DriverError::TaskNotFound(task_id.to_string()))
    }

    /// The cgroup of a running task, if any (for tests and the client's stats).
    pub fn task_cgroup_paths(&self, task_id: &str) -> Result<Vec<PathBuf>, DriverError> {
        Ok(self
            .task(task_id)?
            .cgroup
            .as_ref()
            .map(|c| c.paths())
            .unwrap_or_default())
    }

    fn create_cgroup(&self, cfg: &TaskConfig) -> Option<Cgroup> {
        let mode = self.cgroup_mode();
        if mode == CgroupMode::Unavailable {
            if !self.config.no_cgroups {
                tracing::warn!(alloc_id = %cfg.alloc_id, task = %cfg.task_name, "no cgroup hierarchy found; task runs without a cgroup");
            }
            return None;
        }
        let r = &cfg.resources;
        let limits =
            CgroupLimits::from_resources(r.cpu_mhz, r.memory_mb, r.memory_max_mb, &r.cores);
        match Cgroup::create(
            &mode,
            &cfg.alloc_id,
            &cfg.task_name,
            &limits,
            self.fs.clone(),
        ) {
            Ok(cg) => Some(cg),
            Err(error) => {
                tracing::warn!(alloc_id = %cfg.alloc_id, task = %cfg.task_name, error = %error, "could not create task cgroup; falling back to process group");
                None
            }
        }
    }

    /// Kills whatever is left of the task: SIGKILL to the process group, then the cgroup, and
    /// waits for the main process to be gone.
    fn kill_remaining(&self, task: &Task) -> Result<(), DriverError> {
        let id = &task.handle.task_id;
        // The group outlives the leader only while members remain, so its id cannot have been
        // reused while any of them lives; ESRCH just means nothing is left.
        if let Err(error) = nomad_executor::signal_group(task.handle.pid, libc::SIGKILL) {
            if !matches!(error, ProcessError::NotFound { .. }) {
                tracing::warn!(task_id = %id, %error, "could not kill process group");
            }
        }
        if task.cgroup.is_none() {
            // Without a cgroup, wait until no live member of the group remains (kill(2)
            // returns before the target is gone).
            let deadline = Instant::now() + KILL_WAIT;
            loop {
                let left = nomad_executor::live_pids_in_group(task.handle.pid);
                if left.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(DriverError::Stop {
                        task_id: id.clone(),
                        message: format!("processes {left:?} survived SIGKILL"),
                    });
                }
                let _ = nomad_executor::signal_group(task.handle.pid, libc::SIGKILL);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(cg) = &task.cgroup {
            cg.kill_all(KILL_WAIT).map_err(|e| DriverError::Stop {
                task_id: id.clone(),
                message: e.to_string(),
            })?;
        }
        if !task.exit.wait(KILL_WAIT) {
            return Err(DriverError::Stop {
                task_id: id.clone(),
                message: format!("process did not exit after {} seconds", KILL_WAIT.as_secs()),
            });
        }
        Ok(())
    }

    fn spawn_waiter_child(task_id: String, pid: u32, cgroup: Option<Cgroup>, cell: Arc<ExitCell>) {
        let name = format!("raw_exec-wait-{pid}");
        let spawned = std::thread::Builder::new().name(name).spawn({
            let cell = cell.clone();
            move || {
                let result = match nomad_executor::wait_child(pid) {
                    Ok(st) => ExitResult {
                        exit_code: st.code,
                        signal: st.signal,
                        oom_killed: cgroup.as_ref().is_some_and(|c| c.oom_killed()),
                        err: None,
                    },
                    Err(e) => ExitResult {
                        exit_code: -1,
                        signal: 0,
                        oom_killed: false,
                        err: Some(e.to_string()),
                    },
                };
                tracing::debug!(task_id = %task_id, pid, exit_code = result.exit_code, signal = result.signal, "task exited");
                cell.set(result);
            }
        });
        if let Err(e) = spawned {
            cell.set(ExitResult {
                exit_code: -1,
                err: Some(format!("failed to start wait thread: {e}")),
                ..Default::default()
            });
        }
    }

    fn spawn_waiter_foreign(handle: &TaskHandle, cgroup: Option<Cgroup>, cell: Arc<ExitCell>) {
        let (pid, start_time) = (handle.pid, handle.start_time);
        let spawned = std::thread::Builder::new()
            .name(format!("raw_exec-reattach-{pid}"))
            .spawn({
                let cell = cell.clone();
                move || {
                    nomad_executor::wait_foreign(pid, start_time, Duration::from_millis(200));
                    cell.set(ExitResult {
                        exit_code: -1,
                        signal: 0,
                        oom_killed: cgroup.as_ref().is_some_and(|c| c.oom_killed()),
                        err: Some(
                            "exit status unknown: task was recovered after an agent restart"
                                .to_string(),
                        ),
                    });
                }
            });
        if let Err(e) = spawned {
            cell.set(ExitResult {
                exit_code: -1,
                err: Some(format!("failed to start wait thread: {e}")),
                ..Default::default()
            });
        }
    }
}

/// Resolves the binary like Nomad's raw_exec: `<T>/local/<cmd>`, `<T>/<cmd>`, an absolute
/// path that exists, then the agent's `PATH`. Binaries found in the task dir get their
/// `0555` bits set (artifacts are often downloaded without them).
pub(crate) fn lookup_bin(task_dir: &Path, command: &str) -> Option<PathBuf> {
    let rel = command.trim_start_matches('/');
    for candidate in [task_dir.join("local").join(rel), task_dir.join(rel)] {
        if candidate.is_file() {
            ensure_executable(&candidate);
            return Some(candidate);
        }
    }
    let p = Path::new(command);
    if p.is_absolute() && p.exists() {
        return Some(p.to_path_buf());
    }
    if command.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|c| {
            c.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn ensure_executable(path: &Path) {
    if let Ok(meta) = path.metadata() {
        let mode = meta.permissions().mode();
        if mode & 0o555 != 0o555 {
            if let Err(error) =
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o555))
            {
                tracing::warn!(path = %path.display(), %error, "could not make binary executable");
            }
        }
    }
}

/// `err: cause: cause...`
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn build_spec(cfg: &TaskConfig, tc: &RawExecTaskConfig, program: PathBuf) -> ProcessSpec {
    let env = cfg
        .env
        .iter()
        .filter(|(k, _)| {
            !tc.denied_envvars
                .iter()
                .any(|p| task_config::glob_match(p, k))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ProcessSpec {
        program,
        args: tc.args.clone(),
        env,
        cwd: tc
            .work_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| cfg.task_dir.clone()),
        user: cfg.user.clone().filter(|u| !u.is_empty()),
        stdout_path: cfg.stdout_path.clone(),
        stderr_path: cfg.stderr_path.clone(),
        cgroup_procs: vec![],
        oom_score_adj: tc.oom_score_adj,
    }
}

impl Driver for RawExecDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            send_signals: true,
            exec: true,
            fs_isolation: FsIsolation::None,
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        if !self.config.enabled {
            return Fingerprint {
                detected: false,
                healthy: false,
                health_description: "disabled".to_string(),
                attributes: Default::default(),
            };
        }
        Fingerprint {
            detected: true,
            healthy: true,
            health_description: "Healthy".to_string(),
            attributes: [("driver.raw_exec".to_string(), "1".to_string())].into(),
        }
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<(), DriverError> {
        task_config::parse(config).map(|_| ())
    }

    fn start_task(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError> {
        if !self.config.enabled {
            return Err(DriverError::Disabled(DRIVER_NAME));
        }
        let tc = task_config::parse(&cfg.driver_config)?;
        if let Some(kill) = &cfg.kill_signal {
            parse_signal(kill)?;
        }
        if self
            .tasks
            .lock()
            .expect("task table poisoned")
            .contains_key(&cfg.id)
        {
            return Err(DriverError::DuplicateTask(cfg.id.clone()));
        }
        if tc.cgroup_v1_override.is_some() || tc.cgroup_v2_override.is_some() {
            tracing::debug!(task_id = %cfg.id, "cgroup overrides are accepted but not applied");
        }
        let program = match lookup_bin(&cfg.task_dir, &tc.command) {
            Some(p) => p,
            // A path-like command is tried as given so exec reports the precise errno.
            None if tc.command.contains('/') => cfg.task_dir.join(&tc.command),
            None => {
                return Err(DriverError::BinaryNotFound {
                    command: tc.command.clone(),
                })
            }
        };
        let mut spec = build_spec(cfg, &tc, program);
        let mut cgroup = self.create_cgroup(cfg);
        if let Some(cg) = &cgroup {
            spec.cgroup_procs = cg.procs_files();
        }
        let spawned = match nomad_executor::spawn(&spec) {
            Ok(s) => s,
            Err(e) => {
                if let Some(cg) = &cgroup {
                    if let Err(error) = cg.destroy() {
                        tracing::warn!(task_id = %cfg.id, %error, "could not remove cgroup");
                    }
                }
                let message = match &e {
                    SpawnError::Exec { .. } | SpawnError::Child { .. } => e.to_string(),
                    other => format!(
                        "failed to start command {:?}: {}",
                        spec.program.display().to_string(),
                        error_chain(other)
                    ),
                };
                return Err(DriverError::Start {
                    task_id: cfg.id.clone(),
                    message,
                });
            }
        };
        if let Some(cg) = &cgroup {
            if spawned.cgroup_join_failures >= cg.procs_files().len() {
                tracing::warn!(task_id = %cfg.id, "task could not join its cgroup; using its process group only");
                let _ = cg.destroy();
                cgroup = None;
            }
        }
        let handle = TaskHandle {
            task_id: cfg.id.clone(),
            driver: DRIVER_NAME.to_string(),
            pid: spawned.pid,
            start_time: spawned.start_time,
            cgroup: cgroup.as_ref().map(|c| c.rel().to_string()),
            started_at_unix_nanos: unix_nanos_now(),
            kill_signal: cfg.kill_signal.clone(),
        };
        tracing::info!(alloc_id = %cfg.alloc_id, task = %cfg.task_name, pid = spawned.pid, cgroup = ?handle.cgroup, "raw_exec task started");
        let exit = ExitCell::new();
        Self::spawn_waiter_child(cfg.id.clone(), spawned.pid, cgroup.clone(), exit.clone());
        let task = Arc::new(Task {
            handle: handle.clone(),
            cgroup,
            exit,
        });
        self.tasks
            .lock()
            .expect("task table poisoned")
            .insert(cfg.id.clone(), task);
        Ok(handle)
    }

    fn wait_task(&self, task_id: &str) -> Result<ExitFuture, DriverError> {
        let task = self.task(task_id)?;
        let mut rx = task.exit.tx.subscribe();
        Ok(Box::pin(async move {
            match rx.wait_for(|v| v.is_some()).await {
                Ok(v) => v.clone().expect("wait_for guarantees Some"),
                Err(_) => ExitResult {
                    exit_code: -1,
                    err: Some("task wait channel closed".to_string()),
                    ..Default::default()
                },
            }
        }))
    }

    fn stop_task(
        &self,
        task_id: &str,
        timeout: Duration,
        signal: Option<&str>,
    ) -> Result<(), DriverError> {
        let task = self.task(task_id)?;
        let name = signal
            .filter(|s| !s.is_empty())
            .or(task.handle.kill_signal.as_deref().filter(|s| !s.is_empty()))
            .unwrap_or("SIGINT");
        let sig = parse_signal(name)?;
        if !task.exited() {
            if !timeout.is_zero() {
                match nomad_executor::signal_process(task.handle.pid, sig) {
                    Ok(()) | Err(ProcessError::NotFound { .. }) => {}
                    Err(error) => tracing::warn!(task_id, %error, "could not send stop signal"),
                }
                let deadline = Instant::now() + timeout;
                task.exit
                    .wait(deadline.saturating_duration_since(Instant::now()));
            }
            if !task.exited() {
                if let Err(error) = nomad_executor::signal_process(task.handle.pid, libc::SIGKILL) {
                    if !matches!(error, ProcessError::NotFound { .. }) {
                        tracing::warn!(task_id, %error, "could not kill task");
                    }
                }
            }
        }
        self.kill_remaining(&task)
    }

    fn signal_task(&self, task_id: &str, signal: &str) -> Result<(), DriverError> {
        let task = self.task(task_id)?;
        let sig = parse_signal(signal)?;
        if task.exited() {
            return Err(DriverError::Signal {
                task_id: task_id.to_string(),
                message: "task has already exited".to_string(),
            });
        }
        nomad_executor::signal_process(task.handle.pid, sig).map_err(|e| DriverError::Signal {
            task_id: task_id.to_string(),
            message: e.to_string(),
        })
    }

    fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), DriverError> {
        let task = self.task(task_id)?;
        if !task.exited() {
            if !force {
                return Err(DriverError::StillRunning(task_id.to_string()));
            }
            if let Err(error) = nomad_executor::signal_process(task.handle.pid, libc::SIGKILL) {
                if !matches!(error, ProcessError::NotFound { .. }) {
                    tracing::warn!(task_id, %error, "could not kill task");
                }
            }
        }
        // Leftovers (daemonised children) die with the task.
        self.kill_remaining(&task)?;
        if let Some(cg) = &task.cgroup {
            cg.destroy().map_err(|e| DriverError::Stop {
                task_id: task_id.to_string(),
                message: e.to_string(),
            })?;
        }
        self.tasks
            .lock()
            .expect("task table poisoned")
            .remove(task_id);
        Ok(())
    }

    fn recover_task(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        let err = |message: String| DriverError::Recover {
            task_id: handle.task_id.clone(),
            message,
        };
        if handle.driver != DRIVER_NAME {
            return Err(err(format!(
                "handle belongs to driver {:?}, not {DRIVER_NAME}",
                handle.driver
            )));
        }
        if self
            .tasks
            .lock()
            .expect("task table poisoned")
            .contains_key(&handle.task_id)
        {
            return Ok(());
        }
        if !nomad_executor::is_same_live_process(handle.pid, handle.start_time) {
            return Err(err(format!(
                "process {} is no longer running (or its pid was reused)",
                handle.pid
            )));
        }
        let cgroup = match &handle.cgroup {
            Some(rel) => match Cgroup::open(&self.cgroup_mode(), rel, self.fs.clone()) {
                Ok(cg) => Some(cg),
                Err(error) => {
                    tracing::warn!(task_id = %handle.task_id, %error, "could not re-open task cgroup");
                    None
                }
            },
            None => None,
        };
        let exit = ExitCell::new();
        Self::spawn_waiter_foreign(handle, cgroup.clone(), exit.clone());
        let task = Arc::new(Task {
            handle: handle.clone(),
            cgroup,
            exit,
        });
        self.tasks
            .lock()
            .expect("task table poisoned")
            .insert(handle.task_id.clone(), task);
        tracing::info!(task_id = %handle.task_id, pid = handle.pid, "raw_exec task recovered");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_disabled_and_enabled() {
        let d = RawExecDriver::new(RawExecConfig::default());
        let fp = d.fingerprint();
        assert!(!fp.detected && !fp.healthy);
        assert_eq!(fp.health_description, "disabled");
        assert!(fp.attributes.is_empty());
        let d = RawExecDriver::new(RawExecConfig {
            enabled: true,
            ..Default::default()
        });
        let fp = d.fingerprint();
        assert!(fp.detected && fp.healthy);
        assert_eq!(fp.health_description, "Healthy");
        assert_eq!(fp.attributes["driver.raw_exec"], "1");
        let caps = d.capabilities();
        assert!(caps.send_signals && caps.exec);
        assert_eq!(caps.fs_isolation.to_string(), "none");
    }

    #[test]
    fn disabled_driver_refuses_to_start() {
        let d = RawExecDriver::new(RawExecConfig::default());
        let err = d.start_task(&TaskConfig::default()).unwrap_err();
        assert_eq!(err.to_string(), "raw_exec is disabled");
    }

    #[test]
    fn lookup_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = dir.path();
        std::fs::create_dir_all(t.join("local")).expect("mkdir");
        std::fs::write(t.join("tool"), "#!/bin/sh\n").expect("write");
        assert_eq!(lookup_bin(t, "tool"), Some(t.join("tool")));
        // Made executable.
        let mode = std::fs::metadata(t.join("tool"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o555, 0o555);
        std::fs::write(t.join("local/tool"), "#!/bin/sh\n").expect("write");
        assert_eq!(lookup_bin(t, "tool"), Some(t.join("local/tool")));
        assert_eq!(lookup_bin(t, "/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert!(lookup_bin(t, "sh").is_some_and(|p| p.is_absolute()));
        assert_eq!(lookup_bin(t, "definitely-not-a-binary-xyz"), None);
        assert_eq!(lookup_bin(t, "/nope"), None);
    }

    #[test]
    fn spec_filters_denied_env_and_uses_task_dir() {
        let mut cfg = TaskConfig {
            task_dir: "/alloc/web".into(),
            ..Default::default()
        };
        cfg.env.insert("AWS_KEY".into(), "x".into());
        cfg.env.insert("KEEP".into(), "y".into());
        let tc = RawExecTaskConfig {
            command: "x".into(),
            denied_envvars: vec!["AWS_*".into()],
            ..Default::default()
        };
        let spec = build_spec(&cfg, &tc, "/bin/x".into());
        assert_eq!(spec.env.len(), 1);
        assert_eq!(spec.env["KEEP"], "y");
        assert_eq!(spec.cwd, PathBuf::from("/alloc/web"));
    }
}
