//! The server: accepts writes, turns them into state-store commands, runs the eval broker and
//! scheduler workers, applies plans, and tracks node heartbeats.
//!
//! Invariants: every state change goes through [`Server::apply`] with IDs and timestamps chosen
//! here, before the command is applied (so a Raft log can take over later). HTTP is not known
//! here: callers get typed results and a [`ServerError`].
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use nomad_state::{Command, StateSnapshot, StateStore, Table};
use nomad_structs::*;

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            region: "global".into(),
            datacenter: "dc1".into(),
            heartbeat_ttl: Duration::from_secs(10),
            num_schedulers: 2,
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
}

impl Server {
    /// A server with an empty state store.
    pub fn new(config: ServerConfig) -> Arc<Server> {
        Arc::new(Server { config, state: StateStore::new() })
    }

    /// Runs the eval broker, scheduler workers and heartbeat timers until `shutdown` fires.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut shutdown = shutdown;
        let _ = shutdown.changed().await;
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The state store (read through snapshots).
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// Applies a command to the state (through Raft later). Returns its index.
    pub async fn apply(&self, cmd: Command) -> Result<u64, ServerError> {
        let index = self.state.latest_index() + 1;
        self.state.apply(index, &cmd).map_err(|e| ServerError::Internal(e.to_string()))
    }

    /// Runs `f` against a snapshot, blocking as Nomad's blocking queries do: when
    /// `opts.min_index > 0`, waits until `f`'s returned index exceeds it or the wait passes.
    /// The index returned is never 0.
    pub async fn blocking_query<T, F>(&self, tables: &[Table], opts: &QueryOptions, f: F) -> (T, u64)
    where
        F: Fn(&StateSnapshot) -> T,
    {
        let _ = opts;
        let snap = self.state.snapshot();
        let idx = snap.index(tables).max(1);
        (f(&snap), idx)
    }

    /// `PUT /v1/jobs`: canonicalize, validate, register, create the eval.
    pub async fn job_register(&self, req: JobRegisterRequest) -> Result<JobRegisterResponse, ServerError> {
        let _ = req;
        Err(ServerError::Internal("not implemented".into()))
    }

    /// `DELETE /v1/job/:id`. An unknown job gives an empty EvalID, as Nomad does.
    pub async fn job_deregister(&self, namespace: &str, job_id: &str, purge: bool) -> Result<JobDeregisterResponse, ServerError> {
        let _ = (namespace, job_id, purge);
        Err(ServerError::Internal("not implemented".into()))
    }

    /// `PUT /v1/job/:id/evaluate`: a new eval for the job.
    pub async fn job_evaluate(&self, namespace: &str, job_id: &str) -> Result<JobRegisterResponse, ServerError> {
        let _ = (namespace, job_id);
        Err(ServerError::Internal("not implemented".into()))
    }

    /// `PUT /v1/allocation/:id/stop`.
    pub async fn alloc_stop(&self, alloc_id: &str) -> Result<AllocStopResponse, ServerError> {
        let _ = alloc_id;
        Err(ServerError::Internal("not implemented".into()))
    }

    /// Node.Register: upsert the node (status `ready`), returns the heartbeat TTL.
    pub async fn node_register(&self, node: Node) -> Result<Duration, ServerError> {
        let _ = node;
        Err(ServerError::Internal("not implemented".into()))
    }

    /// Node.UpdateStatus heartbeat: resets the node's TTL timer, returns the TTL.
    pub async fn node_heartbeat(&self, node_id: &str) -> Result<Duration, ServerError> {
        let _ = node_id;
        Err(ServerError::Internal("not implemented".into()))
    }

    /// Node.GetClientAllocs: the node's allocations, blocking until their index passes `opts.min_index`.
    pub async fn node_allocs(&self, node_id: &str, opts: &QueryOptions) -> Result<(Vec<Allocation>, u64), ServerError> {
        let _ = (node_id, opts);
        Err(ServerError::Internal("not implemented".into()))
    }

    /// Node.UpdateAlloc: client-side status of allocations (ClientStatus, ClientDescription, TaskStates).
    pub async fn node_update_allocs(&self, allocs: Vec<Allocation>) -> Result<u64, ServerError> {
        let _ = allocs;
        Err(ServerError::Internal("not implemented".into()))
    }
}
