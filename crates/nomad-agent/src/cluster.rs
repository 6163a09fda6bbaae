//! A non-dev server's Raft node: its stable ID, the stream handler that takes Raft
//! connections from the shared RPC port, the TLS dialer, and forming or joining a cluster
//! (`bootstrap_expect`, `server_join { retry_join }`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nomad_raft::{RaftConfig, RaftDialer, RaftNode};
use nomad_state::StateStore;

use crate::config::AgentConfig;

/// Hands connections whose first byte is Raft's (0x02) to the Raft node.
struct RaftHandler(Arc<RaftNode>);

impl nomad_rpc::StreamHandler for RaftHandler {
    fn handle(&self, stream: nomad_rpc::BoxedStream) -> nomad_rpc::BoxFuture<'static, ()> {
        let node = self.0.clone();
        Box::pin(async move { node.handle_stream(stream).await })
    }
}

/// The server's Raft ID, made once and kept in `<server_dir>/node-id`.
fn raft_id(server_dir: &Path) -> anyhow::Result<u64> {
    let path = server_dir.join("node-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        return s
            .trim()
            .parse()
            .with_context(|| format!("corrupt Raft node ID in {}", path.display()));
    }
    // The high 64 bits of a random UUID; never 0.
    let id = (uuid::Uuid::new_v4().as_u128() >> 64) as u64 | 1;
    std::fs::write(&path, id.to_string())
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(id)
}

/// Starts the Raft node of a server agent on `state`, taking its connections from `listener`.
pub async fn start_raft(
    cfg: &AgentConfig,
    data_dir: &Path,
    rpc_advertise: &str,
    state: Arc<StateStore>,
    listener: &nomad_rpc::RpcListener,
) -> anyhow::Result<Arc<RaftNode>> {
    let server_dir = data_dir.join("server");
    std::fs::create_dir_all(&server_dir)
        .with_context(|| format!("failed to create {}", server_dir.display()))?;
    let mut rc = RaftConfig::new(raft_id(&server_dir)?, rpc_advertise, &server_dir);
    rc.listen = false;
    match cfg.tls.rpc_client_config(&cfg.region) {
        None => rc.dial_prefix = Some(nomad_rpc::RPC_RAFT),
        Some(tls) => {
            // With RPC TLS the listener refuses plaintext: dial TLS first, Raft inside it.
            let tls = Arc::new(
                nomad_rpc::RpcTls::new(&tls).map_err(|e| anyhow::anyhow!("RPC TLS: {e}"))?,
            );
            rc.dialer = Some(RaftDialer(Arc::new(move |addr: String| {
                let tls = tls.clone();
                Box::pin(async move {
                    let s = nomad_rpc::dial(&addr, nomad_rpc::RPC_RAFT, Some(&tls)).await?;
                    Ok(Box::new(nomad_raft::SyncRaftStream::new(s)) as nomad_raft::BoxedStream)
                })
            })));
        }
    }
    let raft = RaftNode::start(rc, state)
        .await
        .map_err(|e| anyhow::anyhow!("Error starting agent: raft: {e}"))?;
    listener.set_raft_handler(Arc::new(RaftHandler(raft.clone())));
    Ok(raft)
}

/// Forms or joins the cluster in the background: a lone server (`bootstrap_expect = 1`, no
/// peers to join) bootstraps itself; otherwise the server keeps asking the `retry_join`
/// addresses to add it, and the server with the lowest address among them bootstraps when no
/// cluster answers, so a fresh set of servers converges on one cluster.
pub fn form_cluster(
    raft: Arc<RaftNode>,
    self_addr: String,
    peers: Vec<String>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let peers: Vec<String> = peers.into_iter().filter(|p| *p != self_addr).collect();
        if peers.is_empty() {
            let members = BTreeMap::from([(raft.node_id(), self_addr.clone())]);
            if let Err(e) = raft.bootstrap(members).await {
                tracing::error!(error = %e, "raft bootstrap failed");
            }
            return;
        }
        let lowest = peers.iter().all(|p| self_addr < *p);
        // The lowest address bootstraps at once (a no-op when it already has state); the
        // others join it, directly or through any member.
        let mut rounds = u32::from(lowest);
        // Done once this server is a voter: seeing a leader is not enough, since a join cut
        // short by its timeout can leave it a learner that the leader replicates to but never
        // counts (a later join finishes the promotion; joining is idempotent).
        let is_voter = |raft: &RaftNode| {
            raft.leader().is_some()
                && raft
                    .peers()
                    .iter()
                    .any(|(id, _, voter)| *id == raft.node_id() && *voter)
        };
        while !is_voter(&raft) {
            for p in &peers {
                // An uninitialised peer holds a join until its own timeout: keep rounds short.
                let attempt = tokio::time::timeout(Duration::from_secs(2), raft.join(p)).await;
                match attempt.unwrap_or_else(|_| {
                    Err(nomad_raft::RaftError::Network(format!(
                        "join via {p} timed out"
                    )))
                }) {
                    Ok(()) => {
                        // Done only once this server is a voter (checked by the loop): a
                        // peer that is not in a cluster yet must not end the search.
                        tracing::info!(peer = %p, "asked to join the cluster");
                        break;
                    }
                    Err(e) => tracing::debug!(peer = %p, error = %e, "join attempt failed"),
                }
            }
            rounds += 1;
            if lowest && rounds >= 1 && raft.leader().is_none() && raft.peers().is_empty() {
                tracing::info!(
                    "no cluster answered; bootstrapping one that the other servers can join"
                );
                let members = BTreeMap::from([(raft.node_id(), self_addr.clone())]);
                if let Err(e) = raft.bootstrap(members).await {
                    tracing::error!(error = %e, "raft bootstrap failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    })
}
