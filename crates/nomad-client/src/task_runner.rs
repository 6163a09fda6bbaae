//! The task runner: one task's life from `Received` to `dead` (facts §5), with Nomad's event
//! strings. Hooks are the steps of [`TaskRunner::run`]: task dir, logmon, lifecycle gate,
//! artifacts (`Downloading Artifacts` / `Failed Artifact Download`, retried per the restart
//! policy when recoverable, done once), env and config interpolation, driver start, wait,
//! restart policy (its count and window persisted with the task state), kill.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nomad_drivers::{Driver, ExitFuture, ExitResult, FsIsolation, TaskConfig, TaskHandle};
use nomad_structs::task_event as te;
use nomad_structs::{
    Allocation, Node, Task, TaskEvent, TaskState, TASK_STATE_DEAD, TASK_STATE_PENDING,
    TASK_STATE_RUNNING,
};
use tokio::sync::{mpsc, watch, Notify};

use crate::allocdir::AllocDir;
use crate::artifacts::{self, ArtifactEnv};
use crate::logmon::{LogMon, LogSettings};
use crate::restarts::{Decision, Outcome, Policy, RestartTracker};
use crate::state::LocalTaskState;
use crate::taskenv;
use crate::Shared;

/// Events kept per task (Nomad keeps 10).
pub const MAX_EVENTS: usize = 10;
/// Client-side cap on `kill_timeout` (`client.max_kill_timeout` default).
pub const MAX_KILL_TIMEOUT: Duration = Duration::from_secs(30);

/// Unix nanoseconds now.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The wall clock as a duration since the Unix epoch (the restart tracker's time base).
pub(crate) fn wall_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Why a start attempt (prestart hooks + driver start) did not produce a running task.
enum StartErr {
    /// Failed; the event was emitted. `recoverable` decides whether the policy may retry.
    Failed { recoverable: bool },
    /// A kill arrived meanwhile.
    Killed,
}

/// A uniformly distributed number in `[0, 1)` (from a v4 UUID: no rand dependency).
pub(crate) fn jitter() -> f64 {
    let v = uuid::Uuid::new_v4().as_u128() as u64;
    (v >> 11) as f64 / (1u64 << 53) as f64
}

/// Lifecycle stage of a task (facts §5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `prestart`, not sidecar.
    PrestartEphemeral,
    /// `prestart`, sidecar.
    PrestartSidecar,
    /// No lifecycle block.
    Main,
    /// `poststart`, not sidecar.
    PoststartEphemeral,
    /// `poststart`, sidecar.
    PoststartSidecar,
    /// `poststop`.
    Poststop,
}

impl Stage {
    /// The stage of a task.
    pub fn of(t: &Task) -> Stage {
        match t.lifecycle.as_ref().map(|l| (l.hook.as_str(), l.sidecar)) {
            Some(("prestart", false)) => Stage::PrestartEphemeral,
            Some(("prestart", true)) => Stage::PrestartSidecar,
            Some(("poststart", false)) => Stage::PoststartEphemeral,
            Some(("poststart", true)) => Stage::PoststartSidecar,
            Some(("poststop", _)) => Stage::Poststop,
            _ => Stage::Main,
        }
    }

    /// Sidecars run alongside the main tasks.
    pub fn is_sidecar(self) -> bool {
        matches!(self, Stage::PrestartSidecar | Stage::PoststartSidecar)
    }
}

/// Whether a task of `stage` may start given every task's stage and state.
pub fn gate_open(stage: Stage, tasks: &BTreeMap<String, (Stage, TaskState)>) -> bool {
    let dead = |s: &TaskState| s.state == TASK_STATE_DEAD;
    let prestart_done = tasks.values().all(|(st, s)| match st {
        Stage::PrestartEphemeral => dead(s) && !s.failed,
        Stage::PrestartSidecar => s.state == TASK_STATE_RUNNING,
        _ => true,
    });
    match stage {
        Stage::PrestartEphemeral | Stage::PrestartSidecar => true,
        Stage::Main => prestart_done,
        Stage::PoststartEphemeral | Stage::PoststartSidecar => {
            prestart_done
                && tasks
                    .values()
                    .filter(|(st, _)| *st == Stage::Main)
                    .all(|(_, s)| s.started_at.is_some() || dead(s))
        }
        Stage::Poststop => tasks
            .values()
            .filter(|(st, _)| *st != Stage::Poststop)
            .all(|(_, s)| dead(s)),
    }
}

/// A kill request, with the event that explains it (e.g. `Sibling Task Failed`).
#[derive(Debug, Clone, Default)]
pub(crate) struct KillRequest {
    pub event: Option<TaskEvent>,
}

/// Everything a task runner reads from its alloc runner.
pub(crate) struct RunCtx {
    pub shared: Arc<Shared>,
    pub alloc: Arc<Mutex<Allocation>>,
    pub dir: AllocDir,
    pub gates: watch::Receiver<BTreeMap<String, (Stage, TaskState)>>,
}

/// Runs one task.
pub struct TaskRunner {
    /// Task name.
    pub name: String,
    pub(crate) task: Task,
    pub(crate) stage: Stage,
    job_type: String,
    state: Mutex<LocalTaskState>,
    kill_tx: watch::Sender<Option<KillRequest>>,
    restart: Notify,
    changed: mpsc::UnboundedSender<()>,
    /// The driver knows the task (started, or recovered after a restore).
    attached: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for TaskRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRunner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

enum Waited {
    Exited(ExitResult),
    Killed(Box<KillRequest>),
    Restart,
}

impl TaskRunner {
    pub(crate) fn new(
        task: Task,
        job_type: &str,
        restored: Option<LocalTaskState>,
        changed: mpsc::UnboundedSender<()>,
    ) -> TaskRunner {
        let fresh = restored.is_none();
        let state = restored.unwrap_or_else(|| LocalTaskState {
            state: TaskState {
                state: TASK_STATE_PENDING.into(),
                ..Default::default()
            },
            ..Default::default()
        });
        let tr = TaskRunner {
            name: task.name.clone(),
            stage: Stage::of(&task),
            task,
            job_type: job_type.to_string(),
            state: Mutex::new(state),
            kill_tx: watch::channel(None).0,
            restart: Notify::new(),
            changed,
            attached: std::sync::atomic::AtomicBool::new(false),
        };
        if fresh {
            tr.emit(TaskEvent::new(te::RECEIVED, now_nanos()), |_| {});
        }
        tr
    }

    /// The task state.
    pub fn state(&self) -> TaskState {
        self.lock().state.clone()
    }

    pub(crate) fn local_state(&self) -> LocalTaskState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalTaskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the task runs now (and the driver is attached to it).
    pub fn is_running(&self) -> bool {
        self.attached() && self.lock().state.state == TASK_STATE_RUNNING
    }

    fn attached(&self) -> bool {
        self.attached.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set_attached(&self, v: bool) {
        self.attached.store(v, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the task is dead.
    pub fn is_dead(&self) -> bool {
        self.lock().state.state == TASK_STATE_DEAD
    }

    /// The running task's driver handle.
    pub fn handle(&self) -> Option<TaskHandle> {
        if !self.attached() {
            return None;
        }
        self.lock().handle.clone()
    }

    /// Asks the task to stop (idempotent).
    pub(crate) fn kill(&self, req: KillRequest) {
        self.kill_tx.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(req);
                true
            } else {
                false
            }
        });
    }

    /// Asks a running task to restart.
    pub(crate) fn request_restart(&self) {
        self.restart.notify_one();
    }

    /// Records an event (DisplayMessage filled, last [`MAX_EVENTS`] kept) after `f` changed the
    /// state, and tells the alloc runner.
    pub(crate) fn emit(&self, mut ev: TaskEvent, f: impl FnOnce(&mut LocalTaskState)) {
        ev.populate_display_message();
        {
            let mut st = self.lock();
            f(&mut st);
            let evs = st.state.events.get_or_insert_with(Vec::new);
            evs.push(ev);
            if evs.len() > MAX_EVENTS {
                let drop = evs.len() - MAX_EVENTS;
                evs.drain(..drop);
            }
        }
        let _ = self.changed.send(());
    }

    fn update(&self, f: impl FnOnce(&mut LocalTaskState)) {
        f(&mut self.lock());
        let _ = self.changed.send(());
    }

    fn has_event(&self, ty: &str) -> bool {
        self.lock()
            .state
            .events
            .iter()
            .flatten()
            .any(|e| e.event_type == ty)
    }

    fn kill_timeout(&self) -> Duration {
        let kt = self.task.kill_timeout.unwrap_or(5_000_000_000).max(0) as u64;
        Duration::from_nanos(kt).min(MAX_KILL_TIMEOUT)
    }

    fn kill_signal(&self) -> Option<String> {
        Some(self.task.kill_signal.clone()).filter(|s| !s.is_empty())
    }

    fn set_dead(&self, failed: bool) {
        self.update(|st| mark_dead(st, failed));
    }

    fn fail_event(&self, ev: TaskEvent) {
        self.emit(ev, |st| mark_dead(st, true));
    }

    /// Runs the task to completion (or until the future is dropped at agent shutdown).
    pub(crate) async fn run(self: Arc<Self>, rt: RunCtx) {
        let initial = self.local_state();
        if initial.run_complete || initial.state.state == TASK_STATE_DEAD {
            return;
        }
        let mut kill_rx = self.kill_tx.subscribe();
        let on_success =
            RestartTracker::on_success_for(&self.job_type, self.task.lifecycle.as_ref());
        let group_policy = {
            let a = rt.alloc.lock().unwrap_or_else(|p| p.into_inner());
            a.job
                .as_ref()
                .and_then(|j| j.lookup_task_group(&a.task_group))
                .and_then(|g| g.restart_policy.clone())
        };
        let policy = Policy::resolve(
            &self.job_type,
            group_policy.as_ref(),
            self.task.restart_policy.as_ref(),
        );
        let mut tracker = RestartTracker::restored(policy, on_success, initial.restart_tracker);

        // Restore: reattach to a task started by a previous agent.
        let mut reattached: Option<TaskHandle> = None;
        if let Some(h) = initial.handle.clone() {
            let driver = rt.shared.drivers.get(&self.task.driver).cloned();
            let recovered = match &driver {
                Some(d) if initial.state.state == TASK_STATE_RUNNING => {
                    let (d, h2) = (d.clone(), h.clone());
                    tokio::task::spawn_blocking(move || d.recover_task(&h2))
                        .await
                        .unwrap_or_else(|e| {
                            Err(nomad_drivers::DriverError::Recover {
                                task_id: h.task_id.clone(),
                                message: e.to_string(),
                            })
                        })
                }
                _ => Err(nomad_drivers::DriverError::TaskNotFound(h.task_id.clone())),
            };
            match recovered {
                Ok(()) => {
                    self.set_attached(true);
                    reattached = Some(h);
                }
                Err(e) => {
                    tracing::warn!(task = %self.name, error = %e, "failed to restore task");
                    if let Some(d) = driver {
                        let id = h.task_id.clone();
                        let _ =
                            tokio::task::spawn_blocking(move || d.destroy_task(&id, true)).await;
                    }
                    let mut ev = TaskEvent::new(te::FAILED_RESTORE, now_nanos());
                    ev.message =
                        "failed to restore task; will not run until server is contacted".into();
                    let v = ev.message.clone();
                    ev = ev.detail("message", v);
                    self.emit(ev, |st| {
                        st.handle = None;
                        st.state.state = TASK_STATE_PENDING.into();
                    });
                    let mut contacted = rt.shared.server_contacted.subscribe();
                    tokio::select! {
                        _ = contacted.wait_for(|c| *c) => {}
                        _ = kill_rx.wait_for(|k| k.is_some()) => {
                            self.set_dead(false);
                            return;
                        }
                    }
                }
            }
        }

        // Task dir.
        if reattached.is_none() && !self.has_event(te::TASK_SETUP) {
            let mut ev = TaskEvent::new(te::TASK_SETUP, now_nanos());
            ev.message = "Building Task Directory".into();
            ev = ev.detail("message", "Building Task Directory");
            self.emit(ev, |_| {});
        }
        let secrets_mb = self
            .task
            .resources
            .as_ref()
            .and_then(|r| r.secrets_mb)
            .unwrap_or(0)
            .max(0) as u64;
        if let Err(e) = rt.dir.build_task(&self.name, secrets_mb) {
            let mut ev = TaskEvent::new(te::SETUP_FAILURE, now_nanos());
            ev.setup_error = format!("failed to build task directory for {:?}: {e}", self.name);
            ev.fails_task = true;
            let v = ev.setup_error.clone();
            ev = ev.detail("setup_error", v).detail("fails_task", "true");
            self.fail_event(ev);
            return;
        }

        // logmon.
        let logmon = match LogMon::start(
            &rt.dir.logs_dir(),
            &self.name,
            LogSettings::from_task(&self.task),
        ) {
            Ok(l) => l,
            Err(e) => {
                let mut ev = TaskEvent::new(te::HOOK_FAILED, now_nanos());
                ev.message = format!("logmon: {e}");
                ev.fails_task = true;
                let v = ev.message.clone();
                ev = ev.detail("message", v).detail("fails_task", "true");
                self.fail_event(ev);
                return;
            }
        };

        // Lifecycle gate.
        if reattached.is_none() {
            let mut gates = rt.gates.clone();
            let stage = self.stage;
            let gate = tokio::select! {
                r = gates.wait_for(|m| gate_open(stage, m)) => if r.is_ok() { Ok(()) } else { Err(None) },
                k = kill_rx.wait_for(|k| k.is_some()) => Err(Some(k.map(|k| k.clone()).ok().flatten().unwrap_or_default())),
            };
            match gate {
                Ok(()) => {}
                Err(None) => {
                    logmon.shutdown().await;
                    return;
                }
                Err(Some(req)) => {
                    if let Some(ev) = req.event {
                        self.emit(ev, |_| {});
                    }
                    logmon.shutdown().await;
                    self.set_dead(false);
                    return;
                }
            }
        }

        loop {
            let (handle, driver) = match reattached.take() {
                Some(h) => match rt.shared.drivers.get(&self.task.driver) {
                    Some(d) => (h, d.clone()),
                    None => break,
                },
                None => {
                    let pending_kill = kill_rx.borrow().clone();
                    if let Some(req) = pending_kill {
                        if let Some(ev) = req.event {
                            self.emit(ev, |_| {});
                        }
                        self.set_dead(false);
                        break;
                    }
                    match self.start_once(&rt, &logmon, &mut kill_rx).await {
                        Ok(x) => x,
                        Err(StartErr::Killed) => continue,
                        Err(StartErr::Failed { recoverable }) => {
                            let d = self.decide(&mut tracker, Outcome::StartError { recoverable });
                            if self.apply(d, &mut kill_rx).await {
                                continue;
                            }
                            break;
                        }
                    }
                }
            };

            let mut exit: ExitFuture = match driver.wait_task(&handle.task_id) {
                Ok(f) => f,
                Err(e) => Box::pin(std::future::ready(ExitResult {
                    exit_code: -1,
                    signal: 0,
                    oom_killed: false,
                    err: Some(e.to_string()),
                })),
            };
            let waited = tokio::select! {
                r = &mut exit => Waited::Exited(r),
                k = kill_rx.wait_for(|k| k.is_some()) => Waited::Killed(Box::new(k.map(|k| k.clone()).ok().flatten().unwrap_or_default())),
                _ = self.restart.notified() => Waited::Restart,
            };
            match waited {
                Waited::Exited(res) => {
                    self.emit_terminated(&res);
                    self.destroy(&driver, &handle.task_id).await;
                    let d = self.decide(
                        &mut tracker,
                        Outcome::Exited {
                            success: res.successful(),
                        },
                    );
                    if self.apply(d, &mut kill_rx).await {
                        continue;
                    }
                    break;
                }
                Waited::Killed(req) => {
                    if let Some(ev) = req.event.clone() {
                        self.emit(ev, |_| {});
                    }
                    let kt = self.kill_timeout();
                    let mut ev = TaskEvent::new(te::KILLING, now_nanos());
                    ev.kill_timeout = kt.as_nanos() as i64;
                    let v = nomad_structs::duration::format_go_duration(ev.kill_timeout);
                    ev = ev.detail("kill_timeout", v);
                    self.emit(ev, |_| {});
                    let kill_err = self.stop(&driver, &handle.task_id, kt).await;
                    let res = wait_exit(exit, kt).await;
                    self.emit_terminated(&res);
                    self.destroy(&driver, &handle.task_id).await;
                    let mut ev = TaskEvent::new(te::KILLED, now_nanos());
                    if let Some(e) = kill_err {
                        ev.kill_error = e.clone();
                        ev = ev.detail("kill_error", e);
                    }
                    self.emit(ev, |st| st.handle = None);
                    self.set_dead(false);
                    break;
                }
                Waited::Restart => {
                    let mut ev = TaskEvent::new(te::RESTART_SIGNAL, now_nanos());
                    ev.restart_reason = "User requested restart".into();
                    // Nomad's display for `Restart Signaled` is the reason.
                    ev.display_message = ev.restart_reason.clone();
                    ev = ev.detail("restart_reason", "User requested restart");
                    self.emit(ev, |_| {});
                    let kt = self.kill_timeout();
                    let _ = self.stop(&driver, &handle.task_id, kt).await;
                    let res = wait_exit(exit, kt).await;
                    self.emit_terminated(&res);
                    self.destroy(&driver, &handle.task_id).await;
                    let d = self.decide(&mut tracker, Outcome::RestartRequested);
                    if self.apply(d, &mut kill_rx).await {
                        continue;
                    }
                    break;
                }
            }
        }
        logmon.shutdown().await;
        if !self.is_dead() {
            self.set_dead(false);
        }
    }

    async fn stop(&self, driver: &Arc<dyn Driver>, task_id: &str, kt: Duration) -> Option<String> {
        let (d, id, sig) = (driver.clone(), task_id.to_string(), self.kill_signal());
        match tokio::task::spawn_blocking(move || d.stop_task(&id, kt, sig.as_deref())).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        }
    }

    async fn destroy(&self, driver: &Arc<dyn Driver>, task_id: &str) {
        let (d, id) = (driver.clone(), task_id.to_string());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || d.destroy_task(&id, true)).await {
            tracing::debug!(task = %self.name, error = %e, "destroy_task");
        }
        self.set_attached(false);
        self.update(|st| st.handle = None);
    }

    fn emit_terminated(&self, res: &ExitResult) {
        let mut ev = TaskEvent::new(te::TERMINATED, now_nanos());
        let code = if res.signal != 0 && res.exit_code == 0 {
            128 + res.signal
        } else {
            res.exit_code
        };
        ev.exit_code = i64::from(code);
        ev.signal = i64::from(res.signal);
        ev = ev
            .detail("exit_code", code.to_string())
            .detail("signal", res.signal.to_string())
            .detail("oom_killed", res.oom_killed.to_string());
        if let Some(e) = &res.err {
            ev.message = e.clone();
            ev = ev.detail("exit_message", e.clone());
        }
        self.emit(ev, |_| {});
    }

    /// Asks the tracker and persists its new count/window with the task state.
    fn decide(&self, tracker: &mut RestartTracker, outcome: Outcome) -> Decision {
        let d = tracker.decide(outcome, wall_now(), jitter());
        let st = tracker.state();
        self.update(|s| s.restart_tracker = st);
        d
    }

    /// The task's env; `iso` decides the dir variables and host env passthrough.
    fn build_task_env(
        &self,
        rt: &RunCtx,
        alloc: &Allocation,
        node: &Node,
        iso: FsIsolation,
    ) -> BTreeMap<String, String> {
        let opts = &rt.shared.config.options;
        let deny = rt.shared.config.env_denylist.clone().or_else(|| {
            opts.get("env.denylist")
                .or_else(|| opts.get("env.blacklist"))
                .map(|s| s.split(',').map(str::to_string).collect())
        });
        taskenv::build_env(&taskenv::EnvInputs {
            alloc,
            task: &self.task,
            node,
            region: &rt.shared.config.region,
            alloc_root: &rt.dir.root,
            fs_isolation: iso,
            host_env: &rt.shared.host_env,
            denylist: deny.as_deref(),
        })
    }

    /// The artifact prestart hook: downloads every `artifact` once (skipped when done).
    async fn run_artifacts(
        &self,
        rt: &RunCtx,
        env: &BTreeMap<String, String>,
        node_vals: &BTreeMap<String, String>,
        kill_rx: &mut watch::Receiver<Option<KillRequest>>,
    ) -> Result<(), StartErr> {
        let arts = self.task.artifacts.clone().unwrap_or_default();
        if arts.is_empty() || self.lock().artifacts_done {
            return Ok(());
        }
        self.emit(
            TaskEvent::new(te::DOWNLOADING_ARTIFACTS, now_nanos()),
            |_| {},
        );
        // `EnvMapClient`: the same env with the dir variables as host paths.
        let mut client_env = env.clone();
        let host = taskenv::task_dirs(&rt.dir.root, &self.name, FsIsolation::None);
        for (k, v) in [
            ("NOMAD_ALLOC_DIR", host.alloc_dir),
            ("NOMAD_TASK_DIR", host.task_dir),
            ("NOMAD_SECRETS_DIR", host.secrets_dir),
        ] {
            if env.get(k).is_some() {
                client_env.insert(k.to_string(), v);
            }
        }
        let aenv = ArtifactEnv {
            task_env: env,
            client_env: &client_env,
            node: node_vals,
        };
        let (task_dir, shared_dir) = (rt.dir.task_dir(&self.name), rt.dir.shared_dir());
        for a in &arts {
            let res = match artifacts::plan(
                a,
                aenv,
                &task_dir,
                &shared_dir,
                &rt.shared.config.artifact,
            ) {
                Ok(p) => {
                    tokio::select! {
                        r = artifacts::fetch(p) => r,
                        _ = kill_rx.wait_for(|k| k.is_some()) => return Err(StartErr::Killed),
                    }
                }
                Err(e) => Err(e),
            };
            match res {
                Ok(r) => {
                    tracing::debug!(task = %self.name, files = r.files.len(), bytes = r.bytes, "artifact downloaded");
                }
                Err(e) => {
                    let msg = e.to_string();
                    let mut ev = TaskEvent::new(te::ARTIFACT_DOWNLOAD_FAILED, now_nanos());
                    ev.download_error = msg.clone();
                    ev = ev.detail("download_error", msg);
                    self.emit(ev, |_| {});
                    return Err(StartErr::Failed {
                        recoverable: e.is_recoverable(),
                    });
                }
            }
        }
        self.update(|st| st.artifacts_done = true);
        Ok(())
    }

    /// Applies a restart decision; true = start again.
    async fn apply(&self, d: Decision, kill_rx: &mut watch::Receiver<Option<KillRequest>>) -> bool {
        match d {
            Decision::Restart { delay, reason } => {
                let mut ev = TaskEvent::new(te::RESTARTING, now_nanos());
                ev.start_delay = delay.as_nanos() as i64;
                ev.restart_reason = reason.clone();
                let v = ev.start_delay.to_string();
                ev = ev.detail("restart_reason", reason).detail("start_delay", v);
                let now = nomad_structs::rfc3339_nanos(now_nanos());
                self.emit(ev, |st| {
                    st.state.state = TASK_STATE_PENDING.into();
                    st.state.restarts += 1;
                    st.state.last_restart = Some(now);
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => true,
                    k = kill_rx.wait_for(|k| k.is_some()) => {
                        let req = k.map(|k| k.clone()).ok().flatten().unwrap_or_default();
                        if let Some(ev) = req.event {
                            self.emit(ev, |_| {});
                        }
                        self.emit(TaskEvent::new(te::KILLED, now_nanos()), |st| mark_dead(st, false));
                        false
                    }
                }
            }
            Decision::NotRestarting { reason, fails_task } => {
                let mut ev = TaskEvent::new(te::NOT_RESTARTING, now_nanos());
                ev.restart_reason = reason.clone();
                ev.fails_task = fails_task;
                ev = ev.detail("restart_reason", reason);
                if fails_task {
                    ev = ev.detail("fails_task", "true");
                }
                self.emit(ev, |st| mark_dead(st, fails_task));
                false
            }
            Decision::Terminated { .. } => {
                self.set_dead(false);
                false
            }
            Decision::Killed => {
                self.set_dead(false);
                false
            }
        }
    }

    /// Driver check, prestart hooks (artifacts), env, config interpolation and validation,
    /// start. Errors are returned after their event was emitted.
    async fn start_once(
        &self,
        rt: &RunCtx,
        logmon: &LogMon,
        kill_rx: &mut watch::Receiver<Option<KillRequest>>,
    ) -> Result<(TaskHandle, Arc<dyn Driver>), StartErr> {
        const UNRECOVERABLE: StartErr = StartErr::Failed { recoverable: false };
        if let Err(e) = validate_user(
            &rt.shared.config.options,
            &self.task.driver,
            &self.task.user,
        ) {
            let mut ev = TaskEvent::new(te::HOOK_FAILED, now_nanos());
            ev.message = format!("prestart hook \"validate\" failed: {e}");
            ev.fails_task = true;
            let v = ev.message.clone();
            ev = ev.detail("message", v).detail("fails_task", "true");
            self.emit(ev, |_| {});
            return Err(UNRECOVERABLE);
        }
        let driver = match rt.shared.drivers.get(&self.task.driver) {
            Some(d) => d.clone(),
            None => {
                self.driver_failure(format!(
                    "failed to initialize driver: plugin {:?} not found",
                    self.task.driver
                ));
                return Err(UNRECOVERABLE);
            }
        };
        let fp = driver.fingerprint();
        if !fp.detected || !fp.healthy {
            self.driver_failure(format!(
                "driver {:?} is not available on this node: {}",
                self.task.driver, fp.health_description
            ));
            return Err(UNRECOVERABLE);
        }
        let alloc = rt.alloc.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let node = rt.shared.node();
        let caps = driver.capabilities();
        let env = self.build_task_env(rt, &alloc, &node, caps.fs_isolation);
        let node_vals = taskenv::node_values(&node, &rt.shared.config.region);
        self.run_artifacts(rt, &env, &node_vals, kill_rx).await?;
        let raw = serde_json::Value::Object(self.task.config.clone().unwrap_or_default());
        let cfg = taskenv::try_interpolate_config(&raw, &env, &node_vals)
            .map_err(|e| e.to_string())
            .and_then(|cfg| {
                driver
                    .validate_config(&cfg)
                    .map(|()| cfg)
                    .map_err(|e| e.to_string())
            });
        let cfg = match cfg {
            Ok(c) => c,
            Err(e) => {
                let mut ev = TaskEvent::new(te::FAILED_VALIDATION, now_nanos());
                ev.validation_error = format!("failed to parse config: {e}");
                ev.fails_task = true;
                let v = ev.validation_error.clone();
                ev = ev
                    .detail("validation_error", v)
                    .detail("fails_task", "true");
                self.emit(ev, |_| {});
                return Err(UNRECOVERABLE);
            }
        };
        let suffix: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(8)
            .collect();
        let tc = TaskConfig {
            id: format!("{}/{}/{}", alloc.id, self.name, suffix),
            alloc_id: alloc.id.clone(),
            task_name: self.name.clone(),
            job_id: alloc.job_id.clone(),
            group_name: alloc.task_group.clone(),
            namespace: alloc.namespace.clone(),
            driver_config: cfg,
            env,
            user: Some(self.task.user.clone()).filter(|u| !u.is_empty()),
            alloc_dir: rt.dir.shared_dir(),
            task_dir: rt.dir.task_dir(&self.name),
            stdout_path: logmon.stdout_path.clone(),
            stderr_path: logmon.stderr_path.clone(),
            resources: taskenv::task_resources(&alloc, &self.task),
            kill_signal: self.kill_signal(),
        };
        let d2 = driver.clone();
        let started = tokio::task::spawn_blocking(move || d2.start_task(&tc)).await;
        match started {
            Ok(Ok(h)) => {
                self.set_attached(true);
                let at = nomad_structs::rfc3339_nanos(now_nanos());
                let h2 = h.clone();
                self.emit(TaskEvent::new(te::STARTED, now_nanos()), move |st| {
                    st.handle = Some(h2);
                    st.state.state = TASK_STATE_RUNNING.into();
                    st.state.started_at = Some(at);
                });
                Ok((h, driver))
            }
            Ok(Err(e)) => {
                let recoverable = e.is_recoverable();
                self.driver_failure(e.to_string());
                Err(StartErr::Failed { recoverable })
            }
            Err(e) => {
                self.driver_failure(format!("failed to start task: {e}"));
                Err(StartErr::Failed { recoverable: true })
            }
        }
    }

    fn driver_failure(&self, msg: String) {
        let mut ev = TaskEvent::new(te::DRIVER_FAILURE, now_nanos());
        ev.driver_error = msg.clone();
        ev = ev.detail("driver_error", msg);
        self.emit(ev, |_| {});
    }

    /// Sends a signal to the running task (event `Signaling`).
    pub(crate) fn signal(
        &self,
        drivers: &BTreeMap<String, Arc<dyn Driver>>,
        signal: &str,
    ) -> Result<(), crate::ClientError> {
        let handle = self
            .handle()
            .filter(|_| self.is_running())
            .ok_or(crate::ClientError::TaskNotRunning)?;
        let driver = drivers
            .get(&self.task.driver)
            .ok_or(crate::ClientError::TaskNotRunning)?;
        let mut ev = TaskEvent::new(te::SIGNALING, now_nanos());
        ev.task_signal = signal.to_string();
        ev = ev.detail("task_signal", signal);
        self.emit(ev, |_| {});
        driver
            .signal_task(&handle.task_id, signal)
            .map_err(|e| crate::ClientError::Driver(e.to_string()))
    }
}

fn mark_dead(st: &mut LocalTaskState, failed: bool) {
    if st.state.state != TASK_STATE_DEAD {
        st.state.state = TASK_STATE_DEAD.into();
        if st.state.finished_at.is_none() {
            st.state.finished_at = Some(nomad_structs::rfc3339_nanos(now_nanos()));
        }
    }
    if failed {
        st.state.failed = true;
    }
    st.run_complete = true;
}

async fn wait_exit(exit: ExitFuture, kt: Duration) -> ExitResult {
    match tokio::time::timeout(kt + Duration::from_secs(20), exit).await {
        Ok(r) => r,
        Err(_) => ExitResult {
            exit_code: -1,
            signal: 0,
            oom_killed: false,
            err: Some("task did not exit after kill".into()),
        },
    }
}

/// Nomad's validate hook: drivers in `user.checked_drivers` (default exec, qemu, java) may not
/// run a task as a user of `user.denylist` (alias `user.blacklist`; default root,
/// Administrator). raw_exec is not checked unless listed.
fn validate_user(
    options: &BTreeMap<String, String>,
    driver: &str,
    user: &str,
) -> Result<(), String> {
    let list = |keys: &[&str], default: &[&str]| -> Vec<String> {
        keys.iter()
            .find_map(|k| options.get(*k))
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
    };
    let checked = list(&["user.checked_drivers"], &["exec", "qemu", "java"]);
    let denied = list(
        &["user.denylist", "user.blacklist"],
        &["root", "Administrator"],
    );
    if checked.iter().any(|d| d == driver) && denied.iter().any(|u| u == user) {
        return Err(format!("running as user {user:?} is disallowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_denylist_applies_to_checked_drivers() {
        use super::validate_user;
        let none = std::collections::BTreeMap::new();
        assert_eq!(
            validate_user(&none, "exec", "root").unwrap_err(),
            "running as user \"root\" is disallowed"
        );
        assert!(validate_user(&none, "exec", "nobody").is_ok());
        assert!(validate_user(&none, "exec", "").is_ok());
        assert!(validate_user(&none, "raw_exec", "root").is_ok());
        let opts = std::collections::BTreeMap::from([
            ("user.denylist".to_string(), "alice, bob".to_string()),
            ("user.checked_drivers".to_string(), "raw_exec".to_string()),
        ]);
        assert!(validate_user(&opts, "raw_exec", "bob").is_err());
        assert!(validate_user(&opts, "raw_exec", "root").is_ok());
        assert!(validate_user(&opts, "exec", "bob").is_ok());
        let legacy =
            std::collections::BTreeMap::from([("user.blacklist".to_string(), "carol".to_string())]);
        assert!(validate_user(&legacy, "exec", "carol").is_err());
    }

    use super::*;
    use nomad_structs::Lifecycle;

    fn st(state: &str, failed: bool, started: bool) -> TaskState {
        TaskState {
            state: state.into(),
            failed,
            started_at: started.then(|| "2024-01-01T00:00:00Z".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn stages() {
        let mut t = Task::default();
        assert_eq!(Stage::of(&t), Stage::Main);
        t.lifecycle = Some(Lifecycle {
            hook: "prestart".into(),
            sidecar: true,
        });
        assert_eq!(Stage::of(&t), Stage::PrestartSidecar);
        t.lifecycle = Some(Lifecycle {
            hook: "poststop".into(),
            sidecar: false,
        });
        assert_eq!(Stage::of(&t), Stage::Poststop);
    }

    #[test]
    fn gates() {
        let mut m = BTreeMap::new();
        m.insert(
            "init".to_string(),
            (Stage::PrestartEphemeral, st("pending", false, false)),
        );
        m.insert(
            "side".to_string(),
            (Stage::PrestartSidecar, st("running", false, true)),
        );
        m.insert(
            "main".to_string(),
            (Stage::Main, st("pending", false, false)),
        );
        m.insert(
            "post".to_string(),
            (Stage::PoststartEphemeral, st("pending", false, false)),
        );
        m.insert(
            "stop".to_string(),
            (Stage::Poststop, st("pending", false, false)),
        );
        assert!(gate_open(Stage::PrestartEphemeral, &m));
        assert!(!gate_open(Stage::Main, &m));
        m.insert(
            "init".to_string(),
            (Stage::PrestartEphemeral, st("dead", true, true)),
        );
        assert!(!gate_open(Stage::Main, &m), "failed prestart blocks main");
        m.insert(
            "init".to_string(),
            (Stage::PrestartEphemeral, st("dead", false, true)),
        );
        assert!(gate_open(Stage::Main, &m));
        assert!(!gate_open(Stage::PoststartEphemeral, &m));
        m.insert(
            "main".to_string(),
            (Stage::Main, st("running", false, true)),
        );
        assert!(gate_open(Stage::PoststartEphemeral, &m));
        assert!(!gate_open(Stage::Poststop, &m));
        for k in ["side", "main", "post"] {
            let s = m[k].0;
            m.insert(k.to_string(), (s, st("dead", false, true)));
        }
        assert!(gate_open(Stage::Poststop, &m));
    }
}
