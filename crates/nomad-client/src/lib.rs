//! The client (node agent): fingerprints the node, registers and heartbeats with the servers,
//! watches its allocations and runs them with alloc runners and task runners.
//!
//! Invariants: the client talks to servers only through [`ServerConn`] (in-process in `-dev`,
//! over the network later); it never reads the server's state store. Drivers are reached only
//! through `nomad_drivers::Driver`.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nomad_drivers::{Driver, TaskHandle};
use nomad_structs::{Allocation, Node, TaskState};
use tokio::sync::{watch, Notify};

pub mod alloc_runner;
pub mod allocdir;
pub mod artifacts;
pub mod fingerprint;
pub mod logmon;
pub mod restarts;
pub mod state;
pub mod task_runner;
pub mod taskenv;

pub use alloc_runner::AllocRunner;
pub use task_runner::TaskRunner;

use crate::state::StateDb;
use crate::task_runner::{jitter, now_nanos};

/// A boxed future, so [`ServerConn`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An RPC failure talking to the servers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RpcError(pub String);

/// The client's view of the servers (Nomad's Node.* RPCs).
pub trait ServerConn: Send + Sync + 'static {
    /// Registers (or re-registers) the node; returns the heartbeat TTL.
    fn register(&self, node: Node) -> BoxFuture<'_, Result<Duration, RpcError>>;
    /// Heartbeats; returns the TTL until the next one is due.
    fn heartbeat(&self, node_id: &str) -> BoxFuture<'_, Result<Duration, RpcError>>;
    /// The node's allocations once their index exceeds `min_index` (or `wait` passes).
    fn allocs(
        &self,
        node_id: &str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(Vec<Allocation>, u64), RpcError>>;
    /// Reports client-side alloc status (ID, ClientStatus, ClientDescription, TaskStates, NodeID, ...).
    fn update_allocs(&self, allocs: Vec<Allocation>) -> BoxFuture<'_, Result<(), RpcError>>;
    /// `HTTP.Forward`: an HTTP API request (as `nomad_http::relay` encodes it) answered by a
    /// server's HTTP API, for what a client-only agent cannot answer itself.
    fn forward_http(
        &self,
        _req: serde_json::Value,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<serde_json::Value, RpcError>> {
        Box::pin(async {
            Err(RpcError(
                "this server connection cannot forward HTTP requests".into(),
            ))
        })
    }
    /// `ACL.ResolveToken`: the token a secret names and its policies, as the servers' JSON
    /// (`{"Token": ..., "Policies": [...]}`), so a client-only agent can check requests to its
    /// own HTTP API. Connections that cannot ask (in-process, tests) say so.
    fn resolve_token(&self, _secret: &str) -> BoxFuture<'_, Result<serde_json::Value, RpcError>> {
        Box::pin(async {
            Err(RpcError(
                "this server connection cannot resolve ACL tokens".into(),
            ))
        })
    }
}

/// Client configuration (the agent's `client { }` block, plus agent-level settings).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where alloc dirs and client state live (`<data_dir>/alloc`, `<data_dir>/client`).
    pub data_dir: PathBuf,
    /// Alloc dir root (default `<data_dir>/alloc`).
    pub alloc_dir: PathBuf,
    /// Client state dir (default `<data_dir>/client`).
    pub state_dir: PathBuf,
    /// Node name (default: hostname).
    pub node_name: String,
    /// Node class.
    pub node_class: String,
    /// Node pool (`default`).
    pub node_pool: String,
    /// Datacenter (`dc1`).
    pub datacenter: String,
    /// Region (`global`).
    pub region: String,
    /// `client { meta { } }`.
    pub meta: BTreeMap<String, String>,
    /// `client { options { } }`.
    pub options: BTreeMap<String, String>,
    /// Address the node advertises for HTTP (`HTTPAddr`, e.g. "127.0.0.1:4646").
    pub http_addr: String,
    /// `client { artifact { } }`: download limits.
    pub artifact: artifacts::ArtifactConfig,
    /// `acl { enabled }`: a client-only agent then checks every request to its HTTP API
    /// against the servers' tokens (`ACL.ResolveToken`).
    pub acl_enabled: bool,
    /// How long a token resolved through the servers is trusted before they are asked again
    /// (the shorter of `acl { token_ttl }` and `acl { policy_ttl }`, as both are cached
    /// together).
    pub acl_cache_ttl: Duration,
    /// Dynamic port range.
    pub min_dynamic_port: u16,
    /// Dynamic port range end.
    pub max_dynamic_port: u16,
    /// `client { disable_remote_exec }`.
    pub disable_remote_exec: bool,
    /// Host environment keys never passed to tasks (`env.denylist`); `None` = Nomad's default list.
    pub env_denylist: Option<Vec<String>>,
    /// Cgroup parent (`nomad.slice`).
    pub cgroup_parent: String,
    /// Node ID to use; `None` = load from state dir or generate.
    pub node_id: Option<String>,
    /// `-dev`: tasks are killed and alloc dirs removed when the client shuts down, as Nomad's
    /// dev agent does, instead of being left running for the next start to reattach.
    pub dev_mode: bool,
}

impl ClientConfig {
    /// Nomad's defaults with every dir under `data_dir` (`<data_dir>/alloc`, `<data_dir>/client`).
    pub fn new(data_dir: PathBuf) -> ClientConfig {
        ClientConfig {
            alloc_dir: data_dir.join("alloc"),
            state_dir: data_dir.join("client"),
            data_dir,
            node_name: fingerprint::hostname(),
            node_class: String::new(),
            node_pool: "default".into(),
            datacenter: "dc1".into(),
            region: "global".into(),
            meta: BTreeMap::new(),
            options: BTreeMap::new(),
            http_addr: "127.0.0.1:4646".into(),
            acl_enabled: false,
            acl_cache_ttl: Duration::from_secs(30),
            artifact: Default::default(),
            min_dynamic_port: 20000,
            max_dynamic_port: 32000,
            disable_remote_exec: false,
            env_denylist: None,
            cgroup_parent: "nomad.slice".into(),
            node_id: None,
            dev_mode: false,
        }
    }
}

/// Errors of the client's alloc operations (HTTP layer: unknown alloc/task → 404).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No such alloc on this client.
    #[error("Unknown allocation {0:?}")]
    UnknownAlloc(String),
    /// No such task in the alloc.
    #[error("unknown task name {0:?}")]
    UnknownTask(String),
    /// The task is not running.
    #[error("Task not running")]
    TaskNotRunning,
    /// The driver refused.
    #[error("{0}")]
    Driver(String),
}

/// State shared by the client, its alloc runners and task runners.
pub(crate) struct Shared {
    pub config: ClientConfig,
    pub drivers: BTreeMap<String, Arc<dyn Driver>>,
    node: Mutex<Node>,
    pub db: Option<StateDb>,
    pub host_env: BTreeMap<String, String>,
    /// Set once the client registered (tasks that failed to restore wait for it).
    pub server_contacted: watch::Sender<bool>,
    pending: Mutex<BTreeMap<String, Allocation>>,
    pending_notify: Notify,
}

impl Shared {
    pub(crate) fn node(&self) -> Node {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn node_id(&self) -> String {
        self.node
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .id
            .clone()
    }

    /// Queues an alloc update for the servers (coalesced per alloc).
    pub(crate) fn queue_update(&self, a: Allocation) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(a.id.clone(), a);
        self.pending_notify.notify_one();
    }

    fn take_pending(&self) -> Vec<Allocation> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
            .into_values()
            .collect()
    }

    /// Puts back updates that failed to send, unless a newer one was queued meanwhile.
    fn requeue(&self, batch: Vec<Allocation>) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for a in batch {
            p.entry(a.id.clone()).or_insert(a);
        }
    }
}

/// How long a first alloc update waits for others to join its batch. Nomad syncs every 200 ms,
/// which puts a fixed 200 ms between a task starting and `job status` showing it; a few
/// milliseconds already coalesce the bursts (every task of an alloc changing at once), and
/// updates that arrive while a batch is in flight go in the next one.
const UPDATE_INTERVAL: Duration = Duration::from_millis(5);
/// Long-poll wait for the node's allocs.
const ALLOC_WAIT: Duration = Duration::from_secs(300);

/// The running client.
pub struct Client {
    conn: Arc<dyn ServerConn>,
    shared: Arc<Shared>,
    runners: Mutex<BTreeMap<String, Arc<AllocRunner>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn advertised_ip(http_addr: &str) -> String {
    let host = http_addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(http_addr);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".to_string(),
    }
}

impl Client {
    /// Builds the client: fingerprints the node, loads (or creates) the node ID.
    pub fn new(
        config: ClientConfig,
        conn: Arc<dyn ServerConn>,
        drivers: BTreeMap<String, Arc<dyn Driver>>,
    ) -> std::io::Result<Arc<Client>> {
        std::fs::create_dir_all(&config.alloc_dir)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(&config.alloc_dir, std::fs::Permissions::from_mode(0o711));
        }
        let db = StateDb::open(&config.state_dir)?;
        let node_id = match &config.node_id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => state::load_or_create_id(&config.state_dir, "node-id")?,
        };
        let secret_id = state::load_or_create_id(&config.state_dir, "secret-id")?;
        let node = build_node(&config, &drivers, node_id, secret_id);
        let shared = Arc::new(Shared {
            host_env: std::env::vars().collect(),
            config,
            drivers,
            node: Mutex::new(node),
            db: Some(db),
            server_contacted: watch::channel(false).0,
            pending: Mutex::new(BTreeMap::new()),
            pending_notify: Notify::new(),
        });
        Ok(Arc::new(Client {
            conn,
            shared,
            runners: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Registers, heartbeats, watches and runs allocations until `shutdown` fires. On shutdown
    /// tasks are left running (they are reattached on the next start), as Nomad does; in dev
    /// mode they are killed.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut shutdown = shutdown;
        self.restore();
        let ttl = tokio::select! {
            ttl = self.register_with_retry() => Some(ttl),
            _ = shutdown.wait_for(|s| *s) => None,
        };
        if let Some(ttl) = ttl {
            self.shared.server_contacted.send_replace(true);
            let hb = tokio::spawn(self.clone().heartbeat_loop(ttl));
            let watcher = tokio::spawn(self.clone().watch_allocs());
            let updater = tokio::spawn(self.clone().update_loop());
            let _ = shutdown.wait_for(|s| *s).await;
            hb.abort();
            watcher.abort();
            updater.abort();
            // Best effort: send what is still queued.
            let batch = self.shared.take_pending();
            if !batch.is_empty() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), self.conn.update_allocs(batch))
                        .await;
            }
        }
        let runners: Vec<_> = self.lock_runners().values().cloned().collect();
        if self.shared.config.dev_mode {
            // Nothing of a dev agent outlives it: kill every task, all at once.
            let destroys = runners.iter().map(|r| r.destroy());
            let _ =
                tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(destroys))
                    .await;
            return;
        }
        for r in runners {
            r.shutdown();
        }
    }

    /// The node as it registers (ID, attributes, drivers, resources).
    pub fn node(&self) -> Node {
        self.shared.node()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// Has a server answer an HTTP API request (see [`ServerConn::forward_http`]).
    pub async fn forward_http(
        &self,
        req: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, RpcError> {
        self.conn.forward_http(req, timeout).await
    }

    /// Asks the servers what a token may do (see [`ServerConn::resolve_token`]).
    pub async fn resolve_token(&self, secret: &str) -> Result<serde_json::Value, RpcError> {
        self.conn.resolve_token(secret).await
    }

    /// The host path of an allocation's directory `<alloc_dir>/<alloc_id>`, if this client runs (or ran) it.
    pub fn alloc_dir_path(&self, alloc_id: &str) -> Option<PathBuf> {
        if alloc_id.is_empty() || alloc_id.contains('/') || alloc_id.contains("..") {
            return None;
        }
        let p = self.shared.config.alloc_dir.join(alloc_id);
        p.is_dir().then_some(p)
    }

    /// The node ID.
    pub fn node_id(&self) -> String {
        self.shared.node_id()
    }

    /// How many allocs this client runs (or keeps until GC).
    pub fn num_allocs(&self) -> usize {
        self.lock_runners().len()
    }

    /// The alloc runner of `alloc_id`.
    pub fn alloc_runner(&self, alloc_id: &str) -> Option<Arc<AllocRunner>> {
        self.lock_runners().get(alloc_id).cloned()
    }

    /// The allocs this client runs, with their current task states and client status.
    pub fn allocs(&self) -> Vec<Allocation> {
        self.lock_runners()
            .values()
            .map(|r| {
                let mut a = r.alloc();
                let states = r.task_states();
                let (s, d) = nomad_structs::client_status_from_tasks(&states);
                a.client_status = s.into();
                a.client_description = d.into();
                a.task_states = Some(states);
                a
            })
            .collect()
    }

    /// A task's current state.
    pub fn task_state(&self, alloc_id: &str, task: &str) -> Option<TaskState> {
        self.alloc_runner(alloc_id)?.task(task).map(|t| t.state())
    }

    /// The driver and live handle of a running task (for `alloc exec` and stats).
    pub fn task_driver(
        &self,
        alloc_id: &str,
        task: &str,
    ) -> Result<(Arc<dyn Driver>, TaskHandle), ClientError> {
        let r = self
            .alloc_runner(alloc_id)
            .ok_or_else(|| ClientError::UnknownAlloc(alloc_id.into()))?;
        let t = r
            .task(task)
            .ok_or_else(|| ClientError::UnknownTask(task.into()))?;
        let h = t
            .handle()
            .filter(|_| t.is_running())
            .ok_or(ClientError::TaskNotRunning)?;
        let d = self
            .shared
            .drivers
            .get(&t.task.driver)
            .cloned()
            .ok_or(ClientError::TaskNotRunning)?;
        Ok((d, h))
    }

    /// Sends `signal` to one task, or to every running task when `task` is `None`; each
    /// signalled task records a `Signaling` event (`TaskSignal` = the signal). A named task that
    /// is not running, or an alloc with no running task, is refused with "Task not running".
    pub async fn signal_task(
        &self,
        alloc_id: &str,
        task: Option<&str>,
        signal: &str,
    ) -> Result<(), ClientError> {
        let r = self
            .alloc_runner(alloc_id)
            .ok_or_else(|| ClientError::UnknownAlloc(alloc_id.into()))?;
        match task {
            Some(name) => {
                let t = r
                    .task(name)
                    .ok_or_else(|| ClientError::UnknownTask(name.into()))?;
                t.signal(&self.shared.drivers, signal)
            }
            None => {
                let running: Vec<_> = r.tasks().values().filter(|t| t.is_running()).collect();
                if running.is_empty() {
                    return Err(ClientError::TaskNotRunning);
                }
                for t in running {
                    t.signal(&self.shared.drivers, signal)?;
                }
                Ok(())
            }
        }
    }

    /// Restarts one running task, or every running task when `task` is `None`, in place: event
    /// `Restart Signaled` ("User requested restart"), the task is stopped with its kill signal
    /// and timeout (`Terminated`), then `Restarting` with no delay and `Started`. This does not
    /// count against the restart policy (the task state's `Restarts` still increments, as in
    /// Nomad). A task that is not running (e.g. in a completed batch alloc) is refused with
    /// "Task not running".
    pub async fn restart_alloc(
        &self,
        alloc_id: &str,
        task: Option<&str>,
    ) -> Result<(), ClientError> {
        let r = self
            .alloc_runner(alloc_id)
            .ok_or_else(|| ClientError::UnknownAlloc(alloc_id.into()))?;
        match task {
            Some(name) => {
                let t = r
                    .task(name)
                    .ok_or_else(|| ClientError::UnknownTask(name.into()))?;
                if !t.is_running() {
                    return Err(ClientError::TaskNotRunning);
                }
                t.request_restart();
            }
            None => {
                let running: Vec<_> = r.tasks().values().filter(|t| t.is_running()).collect();
                if running.is_empty() {
                    return Err(ClientError::TaskNotRunning);
                }
                for t in running {
                    t.request_restart();
                }
            }
        }
        Ok(())
    }

    /// `alloc restart -all-tasks`: restarts every running task of the alloc, like
    /// [`Client::restart_alloc`] with no task. Gap: Nomad also re-runs tasks that already
    /// finished (e.g. prestart tasks) in lifecycle order; here dead tasks stay dead. An alloc with
    /// no running task is refused with "Task not running".
    pub async fn restart_all_tasks(&self, alloc_id: &str) -> Result<(), ClientError> {
        self.restart_alloc(alloc_id, None).await
    }

    fn lock_runners(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<AllocRunner>>> {
        self.runners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recreates runners for persisted allocs (tasks are reattached, not restarted).
    fn restore(&self) {
        let Some(db) = &self.shared.db else { return };
        for st in db.load_all() {
            if st.tasks.is_empty() || st.alloc.job.is_none() {
                let _ = db.delete(&st.alloc.id);
                continue;
            }
            if self.lock_runners().contains_key(&st.alloc.id) {
                continue;
            }
            tracing::info!(alloc = %st.alloc.id, "restoring alloc");
            let r = AllocRunner::new(self.shared.clone(), st.alloc, Some(st.tasks));
            self.lock_runners().insert(r.id.clone(), r.clone());
            r.start();
        }
    }

    fn refresh_node(&self) -> Node {
        let mut n = self.shared.node.lock().unwrap_or_else(|p| p.into_inner());
        let now = nomad_structs::rfc3339_nanos(now_nanos());
        let (attrs, infos) = fingerprint::drivers(&self.shared.drivers, &now);
        n.attributes.retain(|k, _| !k.starts_with("driver."));
        n.attributes.extend(attrs);
        n.drivers = infos;
        n.clone()
    }

    async fn register_with_retry(&self) -> Duration {
        let mut backoff = Duration::from_millis(500);
        loop {
            let node = self.refresh_node();
            match self.conn.register(node).await {
                Ok(ttl) => {
                    tracing::info!(node_id = %self.node_id(), "node registered");
                    return ttl;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "failed to register node; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, ttl: Duration) {
        let mut ttl = ttl;
        loop {
            let base = if ttl.is_zero() {
                Duration::from_secs(10)
            } else {
                ttl
            };
            tokio::time::sleep(base.mul_f64(0.4 + 0.2 * jitter())).await;
            match self.conn.heartbeat(&self.node_id()).await {
                Ok(t) => ttl = t,
                Err(e) if e.0.to_ascii_lowercase().contains("not found") => {
                    tracing::warn!(error = %e, "heartbeat: node unknown to the servers; re-registering");
                    ttl = self.register_with_retry().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat failed");
                    ttl = Duration::from_secs(2);
                }
            }
        }
    }

    async fn watch_allocs(self: Arc<Self>) {
        let mut index = 0u64;
        let mut backoff = Duration::from_millis(500);
        loop {
            let started = Instant::now();
            match self.conn.allocs(&self.node_id(), index, ALLOC_WAIT).await {
                Ok((allocs, new_index)) => {
                    backoff = Duration::from_millis(500);
                    let unchanged = new_index == index;
                    index = new_index;
                    self.sync_allocs(allocs);
                    // A server that answers at once without a newer index must not spin us.
                    if unchanged && started.elapsed() < Duration::from_millis(20) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "failed to fetch node allocs");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Diffs the server's allocs against the runners: add, update/stop, GC.
    fn sync_allocs(&self, allocs: Vec<Allocation>) {
        let mut seen = BTreeSet::new();
        let mut start = Vec::new();
        let mut gc = Vec::new();
        {
            let mut runners = self.lock_runners();
            for a in allocs {
                seen.insert(a.id.clone());
                match runners.get(&a.id) {
                    Some(r) => {
                        let cur = r.alloc();
                        let jv = |x: &Allocation| {
                            x.job.as_ref().map(|j| (j.version, j.job_modify_index))
                        };
                        if a.alloc_modify_index != cur.alloc_modify_index
                            || a.desired_status != cur.desired_status
                            || (a.job.is_some() && jv(&a) != jv(&cur))
                        {
                            r.update(a);
                        }
                    }
                    None => {
                        if a.server_terminal() || a.client_terminal() {
                            continue;
                        }
                        if a.job.is_none() {
                            tracing::warn!(alloc = %a.id, "alloc without job; ignoring");
                            continue;
                        }
                        let r = AllocRunner::new(self.shared.clone(), a, None);
                        runners.insert(r.id.clone(), r.clone());
                        start.push(r);
                    }
                }
            }
            let gone: Vec<String> = runners
                .keys()
                .filter(|id| !seen.contains(*id))
                .cloned()
                .collect();
            for id in gone {
                if let Some(r) = runners.remove(&id) {
                    gc.push(r);
                }
            }
        }
        for r in start {
            tracing::info!(alloc = %r.id, "starting alloc");
            r.start();
        }
        for r in gc {
            tracing::info!(alloc = %r.id, "alloc garbage collected by the servers; destroying");
            tokio::spawn(async move { r.destroy().await });
        }
    }

    async fn update_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            self.shared.pending_notify.notified().await;
            tokio::time::sleep(UPDATE_INTERVAL).await;
            let batch = self.shared.take_pending();
            if batch.is_empty() {
                continue;
            }
            match self.conn.update_allocs(batch.clone()).await {
                Ok(()) => backoff = Duration::from_millis(500),
                Err(e) => {
                    tracing::warn!(error = %e, "failed to update allocs; retrying");
                    self.shared.requeue(batch);
                    self.shared.pending_notify.notify_one();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

fn build_node(
    config: &ClientConfig,
    drivers: &BTreeMap<String, Arc<dyn Driver>>,
    id: String,
    secret_id: String,
) -> Node {
    let ip = advertised_ip(&config.http_addr);
    let facts = fingerprint::host_facts(&ip);
    let mut attributes = facts.attributes.clone();
    let now = nomad_structs::rfc3339_nanos(now_nanos());
    let (dattrs, dinfos) = fingerprint::drivers(drivers, &now);
    attributes.extend(dattrs);
    let disk_mb = config
        .options
        .get("disk_total_mb")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(fingerprint::DEFAULT_DISK_MB);
    Node {
        id,
        secret_id,
        datacenter: config.datacenter.clone(),
        name: config.node_name.clone(),
        cgroup_parent: config.cgroup_parent.clone(),
        http_addr: config.http_addr.clone(),
        attributes,
        node_resources: fingerprint::node_resources(
            &facts,
            disk_mb,
            config.min_dynamic_port,
            config.max_dynamic_port,
        ),
        meta: Some(config.meta.clone()),
        node_class: config.node_class.clone(),
        node_pool: if config.node_pool.is_empty() {
            "default".into()
        } else {
            config.node_pool.clone()
        },
        scheduling_eligibility: nomad_structs::NODE_ELIGIBLE.into(),
        status: nomad_structs::NODE_STATUS_INIT.into(),
        drivers: dinfos,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised() {
        assert_eq!(advertised_ip("127.0.0.1:4646"), "127.0.0.1");
        assert_eq!(advertised_ip("0.0.0.0:4646"), "127.0.0.1");
        assert_eq!(advertised_ip("10.1.2.3:4646"), "10.1.2.3");
        assert_eq!(advertised_ip("myhost:4646"), "127.0.0.1");
    }
}
