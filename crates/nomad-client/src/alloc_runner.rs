//! The alloc runner: builds the alloc dir, runs a task runner per task, derives the alloc's
//! client status, persists state and queues updates for the servers. Kills siblings when a
//! task fails and the group when the leader dies (facts §5.5–5.6).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nomad_structs::task_event as te;
use nomad_structs::{client_status_from_tasks, Allocation, TaskEvent, TaskState, TASK_STATE_DEAD};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::allocdir::AllocDir;
use crate::state::{LocalAllocState, LocalTaskState};
use crate::task_runner::{now_nanos, KillRequest, RunCtx, Stage, TaskRunner};
use crate::Shared;

/// Runs one allocation.
pub struct AllocRunner {
    /// Alloc ID.
    pub id: String,
    alloc: Arc<Mutex<Allocation>>,
    dir: AllocDir,
    tasks: BTreeMap<String, Arc<TaskRunner>>,
    shared: Arc<Shared>,
    gates: watch::Sender<BTreeMap<String, (Stage, TaskState)>>,
    changed_rx: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
    group_killed: AtomicBool,
    destroyed: AtomicBool,
    done: watch::Sender<bool>,
    main: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AllocRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllocRunner")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AllocRunner {
    /// A runner for `alloc` (fresh) or for a persisted alloc (`restored`).
    pub(crate) fn new(
        shared: Arc<Shared>,
        alloc: Allocation,
        restored: Option<BTreeMap<String, LocalTaskState>>,
    ) -> Arc<AllocRunner> {
        let (tx, rx) = mpsc::unbounded_channel();
        let job_type = alloc
            .job
            .as_ref()
            .map(|j| j.job_type.clone())
            .unwrap_or_default();
        let group = alloc
            .job
            .as_ref()
            .and_then(|j| j.lookup_task_group(&alloc.task_group))
            .cloned();
        let mut restored = restored.unwrap_or_default();
        let mut tasks = BTreeMap::new();
        for t in group.iter().flat_map(|g| g.tasks.iter()) {
            let st = restored.remove(&t.name);
            tasks.insert(
                t.name.clone(),
                Arc::new(TaskRunner::new(t.clone(), &job_type, st, tx.clone())),
            );
        }
        let snapshot = tasks
            .iter()
            .map(|(n, t)| (n.clone(), (t.stage, t.state())))
            .collect();
        let dir = AllocDir::new(&shared.config.alloc_dir, &alloc.id);
        Arc::new(AllocRunner {
            id: alloc.id.clone(),
            alloc: Arc::new(Mutex::new(alloc)),
            dir,
            tasks,
            shared,
            gates: watch::channel(snapshot).0,
            changed_rx: Mutex::new(Some(rx)),
            group_killed: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
            done: watch::channel(false).0,
            main: Mutex::new(None),
        })
    }

    /// The alloc as last received.
    pub fn alloc(&self) -> Allocation {
        self.alloc.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The alloc dir.
    pub fn dir(&self) -> &AllocDir {
        &self.dir
    }

    /// A task runner.
    pub fn task(&self, name: &str) -> Option<&Arc<TaskRunner>> {
        self.tasks.get(name)
    }

    /// Task runners by name.
    pub fn tasks(&self) -> &BTreeMap<String, Arc<TaskRunner>> {
        &self.tasks
    }

    /// Current task states.
    pub fn task_states(&self) -> BTreeMap<String, TaskState> {
        self.tasks
            .iter()
            .map(|(n, t)| (n.clone(), t.state()))
            .collect()
    }

    /// Starts the runner (alloc dir, task runners, state loop). Call once.
    pub(crate) fn start(self: &Arc<Self>) {
        let Some(mut rx) = self
            .changed_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let me = self.clone();
        let h = tokio::spawn(async move {
            if let Err(e) = me.dir.build() {
                tracing::error!(alloc = %me.id, error = %e, "failed to build alloc dir");
                for t in me.tasks.values() {
                    let mut ev = TaskEvent::new(te::SETUP_FAILURE, now_nanos());
                    ev.setup_error = format!("failed to build alloc directory: {e}");
                    ev.fails_task = true;
                    let v = ev.setup_error.clone();
                    ev = ev.detail("setup_error", v).detail("fails_task", "true");
                    t.emit(ev, |st| {
                        st.state.state = TASK_STATE_DEAD.into();
                        st.state.failed = true;
                        st.state.finished_at = Some(nomad_structs::rfc3339_nanos(now_nanos()));
                        st.run_complete = true;
                    });
                }
            }
            let mut set = tokio::task::JoinSet::new();
            for t in me.tasks.values() {
                let rt = RunCtx {
                    shared: me.shared.clone(),
                    alloc: me.alloc.clone(),
                    dir: me.dir.clone(),
                    gates: me.gates.subscribe(),
                };
                set.spawn(t.clone().run(rt));
            }
            // The server learns the initial state right away.
            me.on_change();
            loop {
                tokio::select! {
                    Some(()) = rx.recv() => {
                        while rx.try_recv().is_ok() {}
                        me.on_change();
                    }
                    j = set.join_next() => {
                        if j.is_none() {
                            while rx.try_recv().is_ok() {}
                            me.on_change();
                            break;
                        }
                    }
                }
            }
            me.done.send_replace(true);
        });
        *self.main.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    /// Reacts to a task state change: gates, persistence, server update, sibling/leader kills.
    fn on_change(&self) {
        let states = self.task_states();
        let snapshot = self
            .tasks
            .iter()
            .map(|(n, t)| (n.clone(), (t.stage, states[n].clone())))
            .collect();
        self.gates.send_replace(snapshot);
        if self.destroyed.load(Ordering::SeqCst) {
            return;
        }
        self.persist();
        let alloc = self.alloc();
        let (status, desc) = client_status_from_tasks(&states);
        self.shared.queue_update(Allocation {
            id: alloc.id.clone(),
            node_id: self.shared.node_id(),
            namespace: alloc.namespace.clone(),
            job_id: alloc.job_id.clone(),
            task_group: alloc.task_group.clone(),
            eval_id: alloc.eval_id.clone(),
            name: alloc.name.clone(),
            client_status: status.to_string(),
            client_description: desc.to_string(),
            task_states: Some(states.clone()),
            ..Default::default()
        });
        self.handle_task_state_updates(&states);
    }

    fn handle_task_state_updates(&self, states: &BTreeMap<String, TaskState>) {
        if self.group_killed.load(Ordering::SeqCst) {
            return;
        }
        let mut event: Option<TaskEvent> = None;
        for (name, tr) in &self.tasks {
            if tr.stage == Stage::Poststop {
                continue;
            }
            let s = &states[name];
            if s.state != TASK_STATE_DEAD {
                continue;
            }
            if s.failed {
                let mut ev = TaskEvent::new(te::SIBLING_FAILED, now_nanos());
                ev.failed_sibling = name.clone();
                ev = ev.detail("failed_sibling", name.clone());
                event = Some(ev);
                break;
            }
            if tr.task.leader {
                event = Some(TaskEvent::new(te::LEADER_DEAD, now_nanos()));
                break;
            }
        }
        if event.is_none() {
            // Only sidecars left alive once every main task died.
            let mains: Vec<_> = self
                .tasks
                .values()
                .filter(|t| t.stage == Stage::Main)
                .collect();
            let main_dead = !mains.is_empty()
                && mains
                    .iter()
                    .all(|t| states[&t.name].state == TASK_STATE_DEAD);
            let live_sidecar = self
                .tasks
                .values()
                .any(|t| t.stage.is_sidecar() && states[&t.name].state != TASK_STATE_DEAD);
            if main_dead && live_sidecar {
                event = Some(TaskEvent::new(te::MAIN_DEAD, now_nanos()));
            }
        }
        let Some(ev) = event else { return };
        if self.group_killed.swap(true, Ordering::SeqCst) {
            return;
        }
        for (name, tr) in &self.tasks {
            if tr.stage == Stage::Poststop || states[name].state == TASK_STATE_DEAD {
                continue;
            }
            tr.kill(KillRequest {
                event: Some(ev.clone()),
            });
        }
    }

    fn persist(&self) {
        let Some(db) = &self.shared.db else { return };
        let st = LocalAllocState {
            alloc: self.alloc(),
            tasks: self
                .tasks
                .iter()
                .map(|(n, t)| (n.clone(), t.local_state()))
                .collect(),
        };
        if let Err(e) = db.put(&st) {
            tracing::warn!(alloc = %self.id, error = %e, "failed to persist alloc state");
        }
    }

    /// A newer version of the alloc from the servers.
    pub(crate) fn update(&self, alloc: Allocation) {
        let stop = alloc.server_terminal();
        {
            let mut cur = self.alloc.lock().unwrap_or_else(|p| p.into_inner());
            let job = alloc.job.clone().or_else(|| cur.job.clone());
            let mut a = alloc;
            a.job = job;
            // Task states are ours, not the server's.
            a.task_states = None;
            *cur = a;
        }
        if stop {
            self.kill(false);
        }
        self.persist();
    }

    /// Kills the tasks (all but poststop ones unless `everything`).
    pub(crate) fn kill(&self, everything: bool) {
        self.group_killed.store(true, Ordering::SeqCst);
        for t in self.tasks.values() {
            if !everything && t.stage == Stage::Poststop {
                continue;
            }
            t.kill(KillRequest::default());
        }
    }

    /// Whether every task runner finished.
    pub fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// Waits until every task runner finished (or `timeout`).
    pub async fn wait_done(&self, timeout: Duration) -> bool {
        let mut rx = self.done.subscribe();
        let ok = tokio::time::timeout(timeout, rx.wait_for(|d| *d))
            .await
            .is_ok();
        ok
    }

    /// GC: kills everything, removes the alloc dir and local state.
    pub(crate) async fn destroy(&self) {
        self.kill(true);
        if self
            .main
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            self.wait_done(Duration::from_secs(60)).await;
        }
        self.destroyed.store(true, Ordering::SeqCst);
        if let Some(db) = &self.shared.db {
            let _ = db.delete(&self.id);
        }
        if let Err(e) = self.dir.destroy() {
            tracing::warn!(alloc = %self.id, error = %e, "failed to remove alloc dir");
        }
    }

    /// Agent shutdown: stop supervising but leave tasks running; state stays on disk.
    pub(crate) fn shutdown(&self) {
        self.persist();
        if let Some(h) = self.main.lock().unwrap_or_else(|p| p.into_inner()).take() {
            h.abort();
        }
    }
}
