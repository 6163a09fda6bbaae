//! The server: accepts writes, turns them into state-store commands, runs the eval broker and
//! scheduler workers, applies plans, and tracks node heartbeats.
//!
//! Invariants: every state change goes through [`Server::apply`] with IDs and timestamps chosen
//! here, before the command is applied (so a Raft log can take over later). HTTP is not known
//! here: callers get typed results and a [`ServerError`].
//!
//! Entry points: the endpoint methods on [`Server`] (`job_register`, `node_register`, ...),
//! [`Server::blocking_query`] for reads, and [`Server::run`], which owns the scheduler workers
//! (`worker.rs`), the delayed-eval timer and the heartbeat timers (`heartbeat.rs`). Every
//! applied command is also shown to the eval broker (`eval_broker.rs`), which queues the
//! pending evals it carries and keeps blocked ones until capacity may have changed.
//!
//! Raft (`raft.rs`): [`Server::with_raft`] puts the state on a [`nomad_raft::RaftNode`]; then
//! [`Server::apply`] replicates through the log (a follower forwards to the leader), the raft
//! node's apply observer shows every committed command to `Server::after_apply`, and the
//! leader duties (broker, workers, delayed evals, heartbeat timers) run only while this server
//! leads. [`Server::new`] / [`Server::with_state`] keep the single-process, in-memory mode.
//!
//! ACLs (`acl.rs`, `endpoints/acl.rs`): [`Server::resolve_token`] turns a request's secret into
//! a [`ResolvedAcl`]; the ACL and namespace endpoints (`endpoints/namespace.rs`) take it as the
//! caller and check management or namespace rules themselves.
#![forbid(unsafe_code)]

mod acl;
mod drainer;
mod endpoints;
mod eval_broker;
mod heartbeat;
mod raft;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nomad_state::{Command, StateError, StateSnapshot, StateStore, Table};
use nomad_structs::*;

pub use acl::{ResolvedAcl, ERR_ACL_DISABLED, ERR_TOKEN_EXPIRED, ERR_TOKEN_NOT_FOUND};
pub use endpoints::acl::ACL_BOOTSTRAP_RESET_FILE;
pub use endpoints::variable::VarWrite;
use eval_broker::EvalBroker;
use heartbeat::Heartbeats;
pub use nomad_raft::RaftNode;
pub use raft::{SnapshotInfo, SNAPSHOT_MAGIC};
pub use worker::SnapshotState;

/// Longest (and default) wait of a blocking query.
pub const MAX_BLOCKING_WAIT: Duration = Duration::from_secs(300);
/// Default grace added to the heartbeat TTL before a node is marked down.
pub const DEFAULT_HEARTBEAT_GRACE: Duration = Duration::from_secs(10);

/// Server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Region name (`global`).
    pub region: String,
    /// Datacenter of this server (`dc1`).
    pub datacenter: String,
    /// Node heartbeat TTL the server hands out.
    pub heartbeat_ttl: Duration,
    /// Scheduler workers to run.
    pub num_schedulers: usize,
    /// Enforce ACLs (`acl { enabled = true }`). Off: every check passes and the ACL
    /// endpoints answer `ACL support disabled`.
    pub acl_enabled: bool,
    /// The agent's data directory; the ACL bootstrap reset file is read from
    /// `<data_dir>/server/acl-bootstrap-reset`. `None` (dev mode): no reset file.
    pub data_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            region: "global".into(),
            datacenter: "dc1".into(),
            heartbeat_ttl: Duration::from_secs(10),
            num_schedulers: 2,
            acl_enabled: false,
            data_dir: None,
        }
    }
}

/// Why a request was refused or failed. The HTTP layer maps these to status codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 404, e.g. "job not found".
    #[error("{0}")]
    NotFound(String),
    /// 403.
    #[error("Permission denied")]
    PermissionDenied,
    /// 500, e.g. validation errors in go-multierror form.
    #[error("{0}")]
    Internal(String),
}

impl From<StateError> for ServerError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::NotFound(what) => ServerError::NotFound(format!("{what} not found")),
            StateError::Invalid(_) => ServerError::Internal(e.to_string()),
            StateError::Refused(m) => ServerError::Internal(m),
        }
    }
}

/// Options of a (possibly blocking) read.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Return only once the result's index is greater than this (0 = immediately).
    pub min_index: u64,
    /// How long to wait at most (capped at 5 minutes; 0 = 5 minutes).
    pub wait: Duration,
}

/// The server. Shared as `Arc<Server>`.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    state: Arc<StateStore>,
    /// One writer at a time: index = last + 1 (Raft replaces this later).
    write_lock: tokio::sync::Mutex<()>,
    /// Makes the EnforceIndex check and the job write one step.
    register_lock: tokio::sync::Mutex<()>,
    broker: EvalBroker,
    heartbeats: Heartbeats,
    /// Makes ACL checks (bootstrap done? token exists?) and their write one step.
    acl_lock: tokio::sync::Mutex<()>,
    /// Compiled ACLs by token and policy versions.
    acl_cache: acl::AclCache,
    /// The replicated log, when not in-memory.
    raft: Option<Arc<RaftNode>>,
    /// Leader duties are running: applied commands feed the broker and heartbeat timers.
    /// Always on without raft.
    leader_active: AtomicBool,
    /// How long a replicated write waits for a leader (`None`: the raft node's default).
    apply_timeout: Mutex<Option<Duration>>,
}

/// Wall-clock now in unix nanoseconds (the server, not the state store, reads the clock).
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Server {
    /// A server with an empty state store.
    pub fn new(config: ServerConfig) -> Arc<Server> {
        Server::with_state(config, StateStore::new())
    }

    /// A server over an existing state store (e.g. restored from a snapshot). Pending and
    /// blocked evals in it are queued when [`Server::run`] starts.
    pub fn with_state(config: ServerConfig, state: Arc<StateStore>) -> Arc<Server> {
        Arc::new(Server::build(config, state, None))
    }

    fn build(config: ServerConfig, state: Arc<StateStore>, raft: Option<Arc<RaftNode>>) -> Server {
        let leader_active = AtomicBool::new(raft.is_none());
        Server {
            config,
            state,
            write_lock: tokio::sync::Mutex::new(()),
            register_lock: tokio::sync::Mutex::new(()),
            broker: EvalBroker::default(),
            heartbeats: Heartbeats::new(DEFAULT_HEARTBEAT_GRACE),
            acl_lock: tokio::sync::Mutex::new(()),
            acl_cache: acl::AclCache::default(),
            raft,
            leader_active,
            apply_timeout: Mutex::new(None),
        }
    }

    /// Changes the grace period added to the heartbeat TTL before a node is marked down.
    pub fn set_heartbeat_grace(&self, grace: Duration) {
        self.heartbeats.set_grace(grace);
    }

    /// Runs the eval broker, scheduler workers and heartbeat timers until `shutdown` fires.
    ///
    /// With raft they run only while this server leads (see [`Server::with_raft`]).
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.raft.is_some() {
            self.run_raft(shutdown).await;
            return;
        }
        self.restore_leader_state();
        self.run_leader_tasks(shutdown).await;
    }

    /// Runs the workers, the delayed-eval timer, the heartbeat timers and the node drainer
    /// until `shutdown`.
    async fn run_leader_tasks(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..self.config.num_schedulers.max(1) {
            tasks.spawn(self.clone().worker_loop(n, shutdown.clone()));
        }
        tasks.spawn(self.clone().delay_loop(shutdown.clone()));
        tasks.spawn(self.clone().heartbeat_loop(shutdown.clone()));
        tasks.spawn(self.clone().drainer_loop(shutdown.clone()));
        let mut shutdown = shutdown;
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "server task ended abnormally");
            }
        }
    }

    /// Rebuilds the broker and heartbeat timers from the state (Nomad does this on gaining
    /// leadership).
    fn restore_leader_state(&self) {
        let snap = self.state.snapshot();
        for e in snap.evals(None, "") {
            self.broker.observe(&e, self.delay_of(&e));
        }
        let ttl = self.config.heartbeat_ttl;
        for n in snap.nodes("") {
            if n.status != NODE_STATUS_DOWN {
                self.heartbeats.reset(&n.id, ttl);
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The state store (read through snapshots).
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// Applies a command to the state; with raft it is replicated (a follower forwards it to
    /// the leader) and applied here before this returns. Returns its index. No leader in
    /// time: `Internal("No cluster leader")`.
    pub async fn apply(&self, cmd: Command) -> Result<u64, ServerError> {
        if let Some(raft) = &self.raft {
            let res = match self.configured_apply_timeout() {
                Some(t) => raft.apply_with_timeout(cmd, t).await,
                None => raft.apply(cmd).await,
            };
            return res.map_err(raft::raft_error);
        }
        self.apply_in_memory(cmd).await
    }

    /// Applies a leader duty's command (a plan, a node marked down): with raft only while
    /// this server is the leader, never forwarded on behalf of a deposed leader.
    pub(crate) async fn apply_leader(&self, cmd: Command) -> Result<u64, ServerError> {
        match &self.raft {
            Some(raft) => raft.apply_local(cmd).await.map_err(raft::raft_error),
            None => self.apply_in_memory(cmd).await,
        }
    }

    async fn apply_in_memory(&self, cmd: Command) -> Result<u64, ServerError> {
        let _guard = self.write_lock.lock().await;
        let index = self.state.latest_index() + 1;
        self.state.apply(index, &cmd)?;
        self.after_apply(&cmd);
        Ok(index)
    }

    /// Shows an applied command to the leader duties: capacity changes unblock, new evals
    /// queue, a node that (re)registered or came back gets a heartbeat timer. With raft this
    /// runs for every committed command (the raft node's observer), only while leading.
    fn after_apply(&self, cmd: &Command) {
        if !self.leader_active.load(Ordering::SeqCst) {
            return;
        }
        let ttl = self.config.heartbeat_ttl;
        match cmd {
            Command::NodeRegister { node, .. } if node.status == NODE_STATUS_READY => {
                self.heartbeats.reset(&node.id, ttl)
            }
            Command::NodeStatusUpdate {
                node_id, status, ..
            } if status == NODE_STATUS_READY => self.heartbeats.reset(node_id, ttl),
            Command::Restore { .. } => {
                // Every table changed: rebuild the leader state from scratch.
                self.broker.clear();
                self.heartbeats.clear();
                self.restore_leader_state();
                return;
            }
            _ => {}
        }
        let unblock = match cmd {
            Command::NodeRegister { node, .. } => node.status == NODE_STATUS_READY,
            Command::NodeStatusUpdate { status, .. } => status == NODE_STATUS_READY,
            Command::NodeUpdateEligibility { eligibility, .. } => eligibility == NODE_ELIGIBLE,
            Command::NodeUpdateDrain {
                drain_strategy,
                mark_eligible,
                ..
            } => drain_strategy.is_none() && *mark_eligible,
            Command::AllocClientUpdate { allocs, .. } => {
                allocs.iter().any(Allocation::client_terminal)
            }
            Command::PlanApply {
                allocs_upsert,
                allocs_stop,
                ..
            } => !allocs_stop.is_empty() || allocs_upsert.iter().any(Allocation::terminal),
            Command::AllocDesiredTransition { desired_status, .. } => desired_status
                .as_deref()
                .is_some_and(|s| s == ALLOC_DESIRED_STOP || s == ALLOC_DESIRED_EVICT),
            Command::JobRegister { .. }
            | Command::JobDeregister { .. }
            | Command::JobStability { .. }
            | Command::ScalingEventRegister { .. }
            | Command::EvalsUpsert { .. }
            | Command::AclBootstrap { .. }
            | Command::AclTokenUpsert { .. }
            | Command::AclTokenDelete { .. }
            | Command::AclPolicyUpsert { .. }
            | Command::AclPolicyDelete { .. }
            | Command::NamespaceUpsert { .. }
            | Command::NamespaceDelete { .. }
            | Command::VarApply { .. }
            | Command::Restore { .. } => false,
        };
        if unblock {
            self.broker.unblock_all();
        }
        for e in cmd.evals() {
            self.broker.observe(e, self.delay_of(e));
        }
    }

    /// When a delayed eval (`WaitUntil` / `Wait`) becomes due, as a tokio instant.
    fn delay_of(&self, e: &Evaluation) -> Option<tokio::time::Instant> {
        let wait_ns = match e.wait_until.as_deref().and_then(parse_rfc3339_nanos) {
            Some(until) => until.saturating_sub(now_nanos()),
            None => e.wait,
        };
        (wait_ns > 0)
            .then(|| tokio::time::Instant::now() + Duration::from_nanos(wait_ns.unsigned_abs()))
    }

    /// Runs `f` against a snapshot, blocking as Nomad's blocking queries do: when
    /// `opts.min_index > 0`, waits until `f`'s returned index exceeds it or the wait passes.
    /// The index returned is never 0.
    pub async fn blocking_query<T, F>(
        &self,
        tables: &[Table],
        opts: &QueryOptions,
        f: F,
    ) -> (T, u64)
    where
        F: Fn(&StateSnapshot) -> T,
    {
        self.blocking_query_indexed(tables, opts, |snap| {
            let v = f(snap);
            (v, snap.index(tables))
        })
        .await
    }

    /// Like [`Server::blocking_query`], but `f` returns its own index (e.g. the highest
    /// ModifyIndex of the objects it read); it is re-run whenever one of `tables` changes.
    pub async fn blocking_query_indexed<T, F>(
        &self,
        tables: &[Table],
        opts: &QueryOptions,
        f: F,
    ) -> (T, u64)
    where
        F: Fn(&StateSnapshot) -> (T, u64),
    {
        let wait = if opts.wait.is_zero() || opts.wait > MAX_BLOCKING_WAIT {
            MAX_BLOCKING_WAIT
        } else {
            opts.wait
        };
        // Deterministic jitter up to wait/16 spreads out clients that started together.
        let jitter = (wait / 16) * (opts.min_index % 16) as u32 / 16;
        let deadline = tokio::time::Instant::now() + wait + jitter;
        loop {
            let snap = self.state.snapshot();
            let (v, idx) = f(&snap);
            let idx = idx.max(1);
            if opts.min_index == 0 || idx > opts.min_index {
                return (v, idx);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return (v, idx);
            }
            self.state
                .wait_for_change(tables, snap.index_raw(tables), deadline - now)
                .await;
        }
    }

    /// `PUT /v1/jobs`: canonicalize, validate, register, create the eval.
    pub async fn job_register(
        &self,
        req: JobRegisterRequest,
    ) -> Result<JobRegisterResponse, ServerError> {
        let Some(mut job) = req.job else {
            return Err(ServerError::BadRequest("Job must be specified".into()));
        };
        if job.id.is_empty() {
            return Err(ServerError::BadRequest(
                "Job ID hasn't been provided".into(),
            ));
        }
        if !req.namespace.is_empty() {
            job.namespace = req.namespace.clone();
        } else if job.namespace.is_empty() {
            job.namespace = "default".into();
        }
        if !req.region.is_empty() {
            job.region = req.region.clone();
        }
        if job.region.is_empty() || job.region == "global" {
            job.region = self.config.region.clone();
        }
        if req.eval_priority != 0 && !(1..=100).contains(&req.eval_priority) {
            return Err(ServerError::BadRequest(
                "Eval priority must be between 1 and 100 inclusively".into(),
            ));
        }
        if job.job_type == JOB_TYPE_SYSTEM
            && job
                .task_groups
                .iter()
                .any(|tg| tg.scaling.as_ref().is_some_and(|s| !s.is_null()))
        {
            return Err(ServerError::BadRequest(
                "Task groups with job type system do not support scaling blocks".into(),
            ));
        }
        canonicalize_job(&mut job);
        // No lock across the write: the EnforceIndex check below answers early, and the state
        // machine repeats it in the log's order (`Command::JobRegister::enforce_index`), so
        // concurrent registrations of different jobs commit together.
        let snap = self.state.snapshot();
        // Nomad's admission validators: the namespace hook runs before job validation, and
        // all their errors come back as one multierror.
        let mut errs = Vec::new();
        if snap.namespace(&job.namespace).is_none() {
            errs.push(format!(
                "job {:?} is in nonexistent namespace {:?}",
                job.id, job.namespace
            ));
        }
        errs.extend(validate_job(&job));
        if !errs.is_empty() {
            return Err(ServerError::Internal(multierror(&errs)));
        }

        let existing = snap.job(&job.namespace, &job.id);
        if req.enforce_index {
            let existing = existing.map(|j| j.job_modify_index);
            if let Some(m) = nomad_state::enforce_index_refusal(existing, req.job_modify_index) {
                return Err(ServerError::Internal(m));
            }
        }
        let now = now_nanos();
        let priority = if req.eval_priority != 0 {
            req.eval_priority as i32
        } else {
            job.priority
        };
        let eval = (!job.is_periodic_or_parameterized()).then(|| {
            pending_eval(
                &job.namespace,
                &job.id,
                &job.job_type,
                priority,
                TRIGGER_JOB_REGISTER,
                now,
            )
        });
        let eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
        let (namespace, id) = (job.namespace.clone(), job.id.clone());
        let index = self
            .apply(Command::JobRegister {
                job,
                eval,
                submission: req.submission,
                now,
                enforce_index: req.enforce_index.then_some(req.job_modify_index),
            })
            .await?;
        let job_modify_index = self
            .state
            .snapshot()
            .job(&namespace, &id)
            .map(|j| j.job_modify_index)
            .unwrap_or(index);
        tracing::info!(job_id = %id, namespace = %namespace, eval_id = %eval_id, index, "job registered");
        Ok(JobRegisterResponse {
            eval_create_index: if eval_id.is_empty() { 0 } else { index },
            eval_id,
            job_modify_index,
            index,
            known_leader: true,
            ..Default::default()
        })
    }

    /// `DELETE /v1/job/:id`. An unknown job gives an empty EvalID, as Nomad does.
    pub async fn job_deregister(
        &self,
        namespace: &str,
        job_id: &str,
        purge: bool,
    ) -> Result<JobDeregisterResponse, ServerError> {
        let namespace = namespace_or_default(namespace);
        let _guard = self.register_lock.lock().await;
        let snap = self.state.snapshot();
        let Some(job) = snap.job(namespace, job_id) else {
            return Ok(JobDeregisterResponse {
                index: snap.index(&[Table::Jobs]),
                known_leader: true,
                ..Default::default()
            });
        };
        let now = now_nanos();
        // Nomad gives the deregister eval the service type whatever the job's type; the
        // scheduler picks the job's own scheduler when the job still exists.
        let eval = (!job.is_periodic_or_parameterized()).then(|| {
            pending_eval(
                namespace,
                job_id,
                JOB_TYPE_SERVICE,
                job.priority,
                TRIGGER_JOB_DEREGISTER,
                now,
            )
        });
        let eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
        let index = self
            .apply(Command::JobDeregister {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                purge,
                eval,
                now,
            })
            .await?;
        tracing::info!(job_id, namespace, purge, eval_id = %eval_id, index, "job deregistered");
        Ok(JobDeregisterResponse {
            eval_create_index: if eval_id.is_empty() { 0 } else { index },
            eval_id,
            job_modify_index: index,
            index,
            known_leader: true,
            ..Default::default()
        })
    }

    /// `PUT /v1/job/:id/evaluate`: a new eval for the job.
    pub async fn job_evaluate(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Result<JobRegisterResponse, ServerError> {
        let namespace = namespace_or_default(namespace);
        let snap = self.state.snapshot();
        let Some(job) = snap.job(namespace, job_id) else {
            return Err(ServerError::NotFound("job not found".into()));
        };
        if job.periodic.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(ServerError::Internal("can't evaluate periodic job".into()));
        }
        if job.parameterized_job.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(ServerError::Internal(
                "can't evaluate parameterized job".into(),
            ));
        }
        let now = now_nanos();
        let eval = Evaluation {
            job_modify_index: job.job_modify_index,
            ..pending_eval(
                namespace,
                job_id,
                &job.job_type,
                job.priority,
                TRIGGER_JOB_REGISTER,
                now,
            )
        };
        let eval_id = eval.id.clone();
        let index = self
            .apply(Command::EvalsUpsert { evals: vec![eval] })
            .await?;
        Ok(JobRegisterResponse {
            eval_id,
            eval_create_index: index,
            job_modify_index: job.job_modify_index,
            index,
            known_leader: true,
            ..Default::default()
        })
    }

    /// `PUT /v1/allocation/:id/stop`.
    ///
    /// Nomad marks the alloc for migration and creates an `alloc-stop` eval; the scheduler
    /// then stops it and places a replacement. Here the alloc is also set to DesiredStatus
    /// `stop` ("alloc is being migrated") right away, so the stop does not depend on the
    /// scheduler honouring `DesiredTransition.Migrate` on a node that is not draining; the
    /// eval then places the replacement.
    pub async fn alloc_stop(&self, alloc_id: &str) -> Result<AllocStopResponse, ServerError> {
        let snap = self.state.snapshot();
        let Some(alloc) = snap.alloc(alloc_id) else {
            return Err(ServerError::NotFound("allocation not found".into()));
        };
        let job = snap.job(&alloc.namespace, &alloc.job_id);
        let (job_type, priority, jmi) = match job.as_deref().or(alloc.job.as_deref()) {
            Some(j) => (j.job_type.clone(), j.priority, j.job_modify_index),
            None => (JOB_TYPE_SERVICE.to_string(), 50, 0),
        };
        let now = now_nanos();
        let eval = Evaluation {
            job_modify_index: jmi,
            ..pending_eval(
                &alloc.namespace,
                &alloc.job_id,
                &job_type,
                priority,
                TRIGGER_ALLOC_STOP,
                now,
            )
        };
        let eval_id = eval.id.clone();
        let index = self
            .apply(Command::AllocDesiredTransition {
                alloc_ids: vec![alloc.id.clone()],
                desired_status: Some(ALLOC_DESIRED_STOP.into()),
                desired_description: Some(nomad_scheduler::desc::ALLOC_MIGRATING.into()),
                transition: DesiredTransition {
                    migrate: Some(true),
                    ..Default::default()
                },
                evals: vec![eval],
                now,
            })
            .await?;
        Ok(AllocStopResponse { eval_id, index })
    }

    /// Node.Register: upsert the node (status `ready`), returns the heartbeat TTL.
    pub async fn node_register(&self, node: Node) -> Result<Duration, ServerError> {
        if node.id.is_empty() {
            return Err(ServerError::BadRequest(
                "missing node ID for client registration".into(),
            ));
        }
        let mut node = node;
        let now = now_nanos();
        let previous = self.state.snapshot().node(&node.id);
        node.status = NODE_STATUS_READY.into();
        node.status_updated_at = now.div_euclid(1_000_000_000);
        if node.scheduling_eligibility.is_empty() {
            node.scheduling_eligibility = NODE_ELIGIBLE.into();
        }
        if node.node_pool.is_empty() {
            node.node_pool = "default".into();
        }
        let node_id = node.id.clone();
        // The heartbeat timer starts where the command is applied as leader (`after_apply`).
        let index = self.apply(Command::NodeRegister { node, now }).await?;
        let ttl = self.config.heartbeat_ttl;
        // A new node, or one coming back, gets evals for system jobs and its own jobs.
        if previous
            .as_ref()
            .is_none_or(|p| p.status != NODE_STATUS_READY)
        {
            let evals = self.node_evals(&self.state.snapshot(), &node_id, index, true, now);
            if !evals.is_empty() {
                self.apply(Command::EvalsUpsert { evals }).await?;
            }
        }
        tracing::info!(node_id = %node_id, index, "node registered");
        Ok(ttl)
    }

    /// Node.UpdateStatus heartbeat: resets the node's TTL timer, returns the TTL.
    ///
    /// The timers live on the leader: a follower forwards the heartbeat to it (as Nomad
    /// forwards the RPC) through the raft link's leader call.
    pub async fn node_heartbeat(&self, node_id: &str) -> Result<Duration, ServerError> {
        if let Some(raft) = &self.raft {
            if !raft.is_leader() {
                return self.forward_heartbeat(raft, node_id).await;
            }
        }
        self.node_heartbeat_local(node_id).await
    }

    /// The leader's side of [`Server::node_heartbeat`].
    pub(crate) async fn node_heartbeat_local(
        &self,
        node_id: &str,
    ) -> Result<Duration, ServerError> {
        let snap = self.state.snapshot();
        let Some(node) = snap.node(node_id) else {
            return Err(ServerError::NotFound("node not found".into()));
        };
        let ttl = self.config.heartbeat_ttl;
        self.heartbeats.reset(node_id, ttl);
        if node.status != NODE_STATUS_READY {
            let now = now_nanos();
            let evals = self.node_evals(&snap, node_id, node.modify_index, true, now);
            self.apply(Command::NodeStatusUpdate {
                node_id: node_id.to_string(),
                status: NODE_STATUS_READY.into(),
                evals,
                now,
            })
            .await?;
            tracing::info!(node_id, "node ready again after heartbeat");
        }
        Ok(ttl)
    }

    /// Node.GetClientAllocs: the node's allocations, blocking until their index passes `opts.min_index`.
    ///
    /// The index is the highest ModifyIndex among the node's allocs (the Allocs table index
    /// when it has none), so a client wakes only for changes to its own allocs.
    pub async fn node_allocs(
        &self,
        node_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<Allocation>, u64), ServerError> {
        Ok(self
            .blocking_query_indexed(&[Table::Allocs], opts, |snap| {
                let allocs: Vec<Allocation> = snap
                    .allocs_by_node(node_id)
                    .iter()
                    .map(|a| (**a).clone())
                    .collect();
                let idx = allocs
                    .iter()
                    .map(|a| a.modify_index)
                    .max()
                    .unwrap_or_else(|| snap.index(&[Table::Allocs]));
                (allocs, idx)
            })
            .await)
    }

    /// Node.UpdateAlloc: client-side status of allocations (ClientStatus, ClientDescription, TaskStates).
    ///
    /// An alloc that newly failed gets an `alloc-failure` eval for its job, so the scheduler can
    /// reschedule it per the group's policy.
    pub async fn node_update_allocs(&self, allocs: Vec<Allocation>) -> Result<u64, ServerError> {
        let snap = self.state.snapshot();
        let now = now_nanos();
        let mut failed_jobs: BTreeMap<(String, String), (String, i32, u64)> = BTreeMap::new();
        for u in &allocs {
            let Some(ex) = snap.alloc(&u.id) else {
                continue;
            };
            if u.client_status == ALLOC_CLIENT_FAILED
                && ex.client_status != ALLOC_CLIENT_FAILED
                && !ex.server_terminal()
            {
                let key = (ex.namespace.clone(), ex.job_id.clone());
                let job = snap.job(&key.0, &key.1);
                if let Some(j) = job.as_deref().or(ex.job.as_deref()) {
                    failed_jobs.entry(key).or_insert((
                        j.job_type.clone(),
                        j.priority,
                        j.job_modify_index,
                    ));
                }
            }
        }
        let evals = failed_jobs
            .into_iter()
            .map(
                |((namespace, job_id), (eval_type, priority, jmi))| Evaluation {
                    id: new_id(),
                    namespace,
                    priority,
                    eval_type,
                    triggered_by: TRIGGER_RETRY_FAILED_ALLOC.into(),
                    job_id,
                    job_modify_index: jmi,
                    status: EVAL_STATUS_PENDING.into(),
                    create_time: now,
                    modify_time: now,
                    ..Default::default()
                },
            )
            .collect();
        self.apply(Command::AllocClientUpdate { allocs, evals, now })
            .await
    }

    /// `node-update` evals for a node that changed: one per job with a live alloc on it, plus
    /// (when `system_jobs`) every running system/sysbatch job so it gets placed there.
    pub(crate) fn node_evals(
        &self,
        snap: &StateSnapshot,
        node_id: &str,
        node_index: u64,
        system_jobs: bool,
        now: i64,
    ) -> Vec<Evaluation> {
        let mut jobs: BTreeMap<(String, String), (String, i32)> = BTreeMap::new();
        for a in snap.allocs_by_node(node_id) {
            if a.terminal() {
                continue;
            }
            let key = (a.namespace.clone(), a.job_id.clone());
            let job = snap.job(&key.0, &key.1);
            let (t, p) = match job.as_deref().or(a.job.as_deref()) {
                Some(j) => (j.job_type.clone(), j.priority),
                None => (JOB_TYPE_SERVICE.to_string(), 50),
            };
            jobs.entry(key).or_insert((t, p));
        }
        if system_jobs {
            for j in snap.jobs(None, "") {
                if j.is_system_like() && !j.stop {
                    jobs.entry((j.namespace.clone(), j.id.clone()))
                        .or_insert((j.job_type.clone(), j.priority));
                }
            }
        }
        jobs.into_iter()
            .map(|((namespace, job_id), (eval_type, priority))| Evaluation {
                id: new_id(),
                namespace,
                priority,
                eval_type,
                triggered_by: TRIGGER_NODE_UPDATE.into(),
                job_id,
                node_id: node_id.to_string(),
                node_modify_index: node_index,
                status: EVAL_STATUS_PENDING.into(),
                create_time: now,
                modify_time: now,
                ..Default::default()
            })
            .collect()
    }

    /// Marks a node whose heartbeat expired `down` and asks the scheduler to replace its allocs.
    async fn node_missed_heartbeat(&self, node_id: &str) {
        let snap = self.state.snapshot();
        let Some(node) = snap.node(node_id) else {
            return;
        };
        if node.status == NODE_STATUS_DOWN {
            return;
        }
        let now = now_nanos();
        let evals = self.node_evals(&snap, node_id, node.modify_index, false, now);
        match self
            .apply_leader(Command::NodeStatusUpdate {
                node_id: node_id.to_string(),
                status: NODE_STATUS_DOWN.into(),
                evals,
                now,
            })
            .await
        {
            Ok(index) => tracing::warn!(node_id, index, "node missed its heartbeat, marked down"),
            Err(e) => tracing::error!(node_id, error = %e, "marking node down failed"),
        }
    }

    /// Broker counts (ready + waiting, in flight, blocked, delayed), for tests and metrics.
    pub fn broker_stats(&self) -> (usize, usize, usize, usize) {
        self.broker.stats()
    }
}

/// A new pending evaluation of a job, created `now` (fields a caller needs beyond these go
/// on with struct update syntax).
pub(crate) fn pending_eval(
    namespace: &str,
    job_id: &str,
    eval_type: &str,
    priority: i32,
    triggered_by: &str,
    now: i64,
) -> Evaluation {
    Evaluation {
        id: new_id(),
        namespace: namespace.to_string(),
        priority,
        eval_type: eval_type.to_string(),
        triggered_by: triggered_by.to_string(),
        job_id: job_id.to_string(),
        status: EVAL_STATUS_PENDING.into(),
        create_time: now,
        modify_time: now,
        ..Default::default()
    }
}

/// The namespace a request names, `default` when it names none (as Nomad's RPC layer fills it).
pub(crate) fn namespace_or_default(namespace: &str) -> &str {
    if namespace.is_empty() {
        "default"
    } else {
        namespace
    }
}

#[cfg(test)]
mod acl_tests;
#[cfg(test)]
mod raft_tests;
#[cfg(test)]
mod tests;
