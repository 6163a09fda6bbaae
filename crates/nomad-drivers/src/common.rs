//! Machinery shared by the executor-based drivers (raw_exec, exec): the task table, exit
//! notification, waiter threads, stop / signal / destroy / recover, whole-tree kill.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nomad_executor::{parse_signal, Cgroup, CgroupFs, CgroupLimits, CgroupMode, ProcessError};
use tokio::sync::watch;

use crate::{DriverError, ExitFuture, ExitResult, RecorderHandle, TaskConfig, TaskHandle};

/// How long stop/destroy wait for processes to disappear after SIGKILL.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(15);

/// Exit notification shared between the waiter thread and callers.
#[derive(Debug)]
pub(crate) struct ExitCell {
    value: Mutex<Option<ExitResult>>,
    cond: Condvar,
    tx: watch::Sender<Option<ExitResult>>,
}

impl ExitCell {
    pub(crate) fn new() -> Arc<ExitCell> {
        Arc::new(ExitCell {
            value: Mutex::new(None),
            cond: Condvar::new(),
            tx: watch::channel(None).0,
        })
    }

    pub(crate) fn set(&self, result: ExitResult) {
        let mut v = self.value.lock().expect("exit cell poisoned");
        if v.is_none() {
            *v = Some(result.clone());
            self.tx.send_replace(Some(result));
        }
        self.cond.notify_all();
    }

    pub(crate) fn get(&self) -> Option<ExitResult> {
        self.value.lock().expect("exit cell poisoned").clone()
    }

    /// Waits up to `timeout`; true when exited.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let guard = self.value.lock().expect("exit cell poisoned");
        let (guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |v| v.is_none())
            .expect("exit cell poisoned");
        guard.is_some()
    }
}

/// Host-side leftovers of a task that `destroy` removes after the processes are gone.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TaskCleanup {
    /// Mount points to unmount (lazily).
    pub unmount: Vec<PathBuf>,
    /// Empty directories to remove.
    pub remove_dirs: Vec<PathBuf>,
}

/// One running (or exited, not yet destroyed) task.
#[derive(Debug)]
pub(crate) struct ManagedTask {
    pub handle: TaskHandle,
    pub cgroup: Option<Cgroup>,
    pub exit: Arc<ExitCell>,
    pub cleanup: TaskCleanup,
}

impl ManagedTask {
    pub(crate) fn exited(&self) -> bool {
        self.exit.get().is_some()
    }
}

/// The tasks of one driver and the operations on them.
#[derive(Debug)]
pub(crate) struct TaskTable {
    driver: &'static str,
    tasks: Mutex<HashMap<String, Arc<ManagedTask>>>,
}

impl TaskTable {
    pub(crate) fn new(driver: &'static str) -> TaskTable {
        TaskTable {
            driver,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, task_id: &str) -> Result<Arc<ManagedTask>, DriverError> {
        self.tasks
            .lock()
            .expect("task table poisoned")
            .get(task_id)
            .cloned()
            .ok_or_else(|| DriverError::TaskNotFound(task_id.to_string()))
    }

    pub(crate) fn contains(&self, task_id: &str) -> bool {
        self.tasks
            .lock()
            .expect("task table poisoned")
            .contains_key(task_id)
    }

    /// Registers a freshly started task and starts its waiter thread.
    pub(crate) fn insert_started(
        &self,
        handle: TaskHandle,
        cgroup: Option<Cgroup>,
        cleanup: TaskCleanup,
    ) {
        let exit = ExitCell::new();
        match &handle.recorder {
            // The recorder is our child; the task is its child.
            Some(rec) => spawn_waiter(
                self.driver,
                &handle,
                cgroup.clone(),
                exit.clone(),
                Waited::Recorder {
                    pid: rec.pid,
                    status_path: rec.status_path.clone(),
                },
            ),
            None => spawn_waiter(
                self.driver,
                &handle,
                cgroup.clone(),
                exit.clone(),
                Waited::Child,
            ),
        }
        self.insert(ManagedTask {
            handle,
            cgroup,
            exit,
            cleanup,
        });
    }

    fn insert(&self, task: ManagedTask) {
        self.tasks
            .lock()
            .expect("task table poisoned")
            .insert(task.handle.task_id.clone(), Arc::new(task));
    }

    pub(crate) fn wait_task(&self, task_id: &str) -> Result<ExitFuture, DriverError> {
        let task = self.get(task_id)?;
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

    /// Stop signal (default SIGINT) to the main process, wait `timeout`, SIGKILL, then kill
    /// whatever is left of the task.
    pub(crate) fn stop_task(
        &self,
        task_id: &str,
        timeout: Duration,
        signal: Option<&str>,
    ) -> Result<(), DriverError> {
        let task = self.get(task_id)?;
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
                kill_main(&task);
            }
        }
        kill_remaining(&task)
    }

    pub(crate) fn signal_task(&self, task_id: &str, signal: &str) -> Result<(), DriverError> {
        let task = self.get(task_id)?;
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

    /// Kills (with `force`), removes the cgroup and the host-side leftovers, forgets the task.
    pub(crate) fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), DriverError> {
        let task = self.get(task_id)?;
        if !task.exited() {
            if !force {
                return Err(DriverError::StillRunning(task_id.to_string()));
            }
            kill_main(&task);
        }
        // Leftovers (daemonised children) die with the task.
        kill_remaining(&task)?;
        if let Some(cg) = &task.cgroup {
            cg.destroy().map_err(|e| DriverError::Stop {
                task_id: task_id.to_string(),
                message: e.to_string(),
            })?;
        }
        for m in &task.cleanup.unmount {
            if let Err(error) = nomad_executor::hostmount::unmount_detach(m) {
                tracing::warn!(task_id, path = %m.display(), %error, "could not unmount");
            }
        }
        if let Some(rec) = &task.handle.recorder {
            let _ = std::fs::remove_file(&rec.status_path);
            let _ = std::fs::remove_file(nomad_executor::exit_record::tmp_path(&rec.status_path));
        }
        for d in &task.cleanup.remove_dirs {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(task_id, path = %d.display(), %error, "could not remove")
                }
            }
        }
        self.tasks
            .lock()
            .expect("task table poisoned")
            .remove(task_id);
        Ok(())
    }

    /// Re-attaches to a live task of this driver (pid + start time check).
    pub(crate) fn recover_task(
        &self,
        handle: &TaskHandle,
        mode: &CgroupMode,
        fs: Arc<dyn CgroupFs>,
        cleanup: impl FnOnce() -> TaskCleanup,
    ) -> Result<(), DriverError> {
        let err = |message: String| DriverError::Recover {
            task_id: handle.task_id.clone(),
            message,
        };
        if handle.driver != self.driver {
            return Err(err(format!(
                "handle belongs to driver {:?}, not {}",
                handle.driver, self.driver
            )));
        }
        if self.contains(&handle.task_id) {
            return Ok(());
        }
        let task_alive = nomad_executor::is_same_live_process(handle.pid, handle.start_time);
        let recorded = handle
            .recorder
            .as_ref()
            .and_then(|r| nomad_executor::exit_record::read_status(&r.status_path));
        let recorder_alive = handle
            .recorder
            .as_ref()
            .is_some_and(|r| nomad_executor::is_same_live_process(r.pid, r.start_time));
        if !task_alive && recorded.is_none() && !recorder_alive {
            return Err(err(format!(
                "process {} is no longer running (or its pid was reused)",
                handle.pid
            )));
        }
        let cgroup = match &handle.cgroup {
            Some(rel) => match Cgroup::open(mode, rel, fs) {
                Ok(cg) => Some(cg),
                Err(error) => {
                    tracing::warn!(task_id = %handle.task_id, %error, "could not re-open task cgroup");
                    None
                }
            },
            None => None,
        };
        let exit = ExitCell::new();
        match (&handle.recorder, recorded) {
            // It ended while the agent was down, and its recorder wrote down how.
            (Some(_), Some(st)) => exit.set(exit_result(st, cgroup.as_ref())),
            (Some(rec), None) => spawn_waiter(
                self.driver,
                handle,
                cgroup.clone(),
                exit.clone(),
                Waited::ForeignRecorder(rec.clone()),
            ),
            (None, _) => spawn_waiter(
                self.driver,
                handle,
                cgroup.clone(),
                exit.clone(),
                Waited::Foreign,
            ),
        }
        self.insert(ManagedTask {
            handle: handle.clone(),
            cgroup,
            exit,
            cleanup: cleanup(),
        });
        tracing::info!(task_id = %handle.task_id, pid = handle.pid, driver = self.driver, "task recovered");
        Ok(())
    }
}

fn kill_main(task: &ManagedTask) {
    if let Err(error) = nomad_executor::signal_process(task.handle.pid, libc::SIGKILL) {
        if !matches!(error, ProcessError::NotFound { .. }) {
            tracing::warn!(task_id = %task.handle.task_id, %error, "could not kill task");
        }
    }
}

/// Kills whatever is left of the task: SIGKILL to the process group, then the cgroup, and
/// waits for the main process to be gone.
fn kill_remaining(task: &ManagedTask) -> Result<(), DriverError> {
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

/// What a waiter thread waits for.
enum Waited {
    /// The task is our child: its status comes from `waitpid`.
    Child,
    /// The task's recorder is our child: wait for it, then read the status it wrote.
    Recorder { pid: u32, status_path: PathBuf },
    /// A recovered task with a recorder (neither is our child any more): watch the task,
    /// then the recorder, then read the status.
    ForeignRecorder(RecorderHandle),
    /// A recovered task without a recorder: only *that* it ended can be known.
    Foreign,
}

fn exit_result(st: nomad_executor::ExitStatus, cgroup: Option<&Cgroup>) -> ExitResult {
    ExitResult {
        exit_code: st.code,
        signal: st.signal,
        oom_killed: cgroup.is_some_and(|c| c.oom_killed()),
        err: None,
    }
}

fn recorded(path: &Path, cgroup: Option<&Cgroup>, why_missing: String) -> ExitResult {
    match nomad_executor::exit_record::read_status(path) {
        Some(st) => exit_result(st, cgroup),
        None => ExitResult {
            exit_code: -1,
            signal: 0,
            oom_killed: cgroup.is_some_and(|c| c.oom_killed()),
            err: Some(why_missing),
        },
    }
}

fn spawn_waiter(
    driver: &str,
    handle: &TaskHandle,
    cgroup: Option<Cgroup>,
    cell: Arc<ExitCell>,
    waited: Waited,
) {
    let (task_id, pid, start_time) = (handle.task_id.clone(), handle.pid, handle.start_time);
    let spawned = std::thread::Builder::new()
        .name(format!("{driver}-wait-{pid}"))
        .spawn({
            let cell = cell.clone();
            move || {
                let cg = cgroup.as_ref();
                let result = match waited {
                    Waited::Child => match nomad_executor::wait_child(pid) {
                        Ok(st) => exit_result(st, cg),
                        Err(e) => ExitResult {
                            exit_code: -1,
                            err: Some(e.to_string()),
                            ..Default::default()
                        },
                    },
                    Waited::Recorder {
                        pid: recorder,
                        status_path,
                    } => {
                        let why = match nomad_executor::wait_child(recorder) {
                            Ok(st) => format!(
                                "exit status lost: the exit recorder ended with code {} signal {}",
                                st.code, st.signal
                            ),
                            Err(e) => format!("exit status lost: {e}"),
                        };
                        // A recorder killed from outside leaves its task running: keep
                        // watching the task itself, so it is never taken for dead early.
                        if nomad_executor::exit_record::read_status(&status_path).is_none()
                            && nomad_executor::is_same_live_process(pid, start_time)
                        {
                            tracing::warn!(task_id = %task_id, pid, "the task's exit recorder is gone; watching the task directly");
                            nomad_executor::wait_foreign(pid, start_time, Duration::from_millis(200));
                        }
                        recorded(&status_path, cg, why)
                    }
                    Waited::ForeignRecorder(rec) => {
                        nomad_executor::wait_foreign(pid, start_time, Duration::from_millis(200));
                        nomad_executor::wait_foreign(
                            rec.pid,
                            rec.start_time,
                            Duration::from_millis(50),
                        );
                        recorded(
                            &rec.status_path,
                            cg,
                            "exit status lost: the exit recorder ended without writing it"
                                .to_string(),
                        )
                    }
                    Waited::Foreign => {
                        nomad_executor::wait_foreign(pid, start_time, Duration::from_millis(200));
                        ExitResult {
                            exit_code: -1,
                            signal: 0,
                            oom_killed: cg.is_some_and(|c| c.oom_killed()),
                            err: Some(
                                "exit status unknown: task was recovered after an agent restart"
                                    .to_string(),
                            ),
                        }
                    }
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

/// The exit recorder for a task being started, when this binary provides one: its status
/// file sits in the alloc dir's root, outside every directory the task sees.
pub(crate) fn exit_record_spec(cfg: &TaskConfig) -> Option<nomad_executor::ExitRecordSpec> {
    let recorder_exe = nomad_executor::exit_record::recorder_exe()?;
    let root = cfg.task_dir.parent().unwrap_or(&cfg.task_dir);
    let start: String = cfg
        .id
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    Some(nomad_executor::ExitRecordSpec {
        status_path: root.join(format!(".{}.{start}.exit", cfg.task_name)),
        recorder_exe,
    })
}

/// The handle's view of the recorder a spawn started.
pub(crate) fn recorder_handle(
    spawned: &nomad_executor::Spawned,
    spec: Option<&nomad_executor::ExitRecordSpec>,
) -> Option<RecorderHandle> {
    let (pid, start_time) = spawned.recorder?;
    Some(RecorderHandle {
        pid,
        start_time,
        status_path: spec?.status_path.clone(),
    })
}

/// Creates the task cgroup with the task's limits; `None` (with a warning) when cgroups are
/// unavailable or creation fails.
pub(crate) fn create_cgroup(
    mode: &CgroupMode,
    cfg: &TaskConfig,
    fs: Arc<dyn CgroupFs>,
    warn_if_unavailable: bool,
) -> Option<Cgroup> {
    if *mode == CgroupMode::Unavailable {
        if warn_if_unavailable {
            tracing::warn!(alloc_id = %cfg.alloc_id, task = %cfg.task_name, "no cgroup hierarchy found; task runs without a cgroup");
        }
        return None;
    }
    let r = &cfg.resources;
    let limits = CgroupLimits::from_resources(r.cpu_mhz, r.memory_mb, r.memory_max_mb, &r.cores);
    match Cgroup::create(mode, &cfg.alloc_id, &cfg.task_name, &limits, fs) {
        Ok(cg) => Some(cg),
        Err(error) => {
            tracing::warn!(alloc_id = %cfg.alloc_id, task = %cfg.task_name, error = %error, "could not create task cgroup; falling back to process group");
            None
        }
    }
}

/// Sets the `0555` bits of a binary found in the task dir (artifacts are often downloaded
/// without them).
pub(crate) fn ensure_executable(path: &Path) {
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
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

pub(crate) fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
