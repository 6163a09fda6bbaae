//! The client's connection to a server in the same process (`-dev`, or server+client agents).

use std::sync::Arc;
use std::time::Duration;

use nomad_client::{BoxFuture, RpcError, ServerConn};
use nomad_server::{QueryOptions, Server};
use nomad_structs::{Allocation, Node};

/// Calls the in-process server directly; the network transport replaces this for remote servers.
#[derive(Debug, Clone)]
pub struct LocalServerConn {
    server: Arc<Server>,
}

impl LocalServerConn {
    /// Wraps `server`.
    pub fn new(server: Arc<Server>) -> Self {
        LocalServerConn { server }
    }
}

impl ServerConn for LocalServerConn {
    fn register(&self, node: Node) -> BoxFuture<'_, Result<Duration, RpcError>> {
        Box::pin(async move {
            self.server
                .node_register(node)
                .await
                .map_err(|e| RpcError(e.to_string()))
        })
    }

    fn heartbeat(&self, node_id: &str) -> BoxFuture<'_, Result<Duration, RpcError>> {
        let node_id = node_id.to_string();
        Box::pin(async move {
            self.server
                .node_heartbeat(&node_id)
                .await
                .map_err(|e| RpcError(e.to_string()))
        })
    }

    fn allocs(
        &self,
        node_id: &str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(Vec<Allocation>, u64), RpcError>> {
        let node_id = node_id.to_string();
        Box::pin(async move {
            let opts = QueryOptions { min_index, wait };
            self.server
                .node_allocs(&node_id, &opts)
                .await
                .map_err(|e| RpcError(e.to_string()))
        })
    }

    fn update_allocs(&self, allocs: Vec<Allocation>) -> BoxFuture<'_, Result<(), RpcError>> {
        Box::pin(async move {
            self.server
                .node_update_allocs(allocs)
                .await
                .map(|_| ())
                .map_err(|e| RpcError(e.to_string()))
        })
    }
}
