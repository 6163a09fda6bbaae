//! The server side of the Nomad RPC protocol: one task per connection reads frames, each
//! request runs in its own task (so a blocking query does not hold up a heartbeat), and one
//! writer task sends the answers in the order they finish.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nomad_server::{QueryOptions, Server};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::frame::{self, FrameError, RequestFrame, ResponseFrame};
use crate::proto::{self, *};
use crate::stream::BoxedStream;

/// What the RPC layer needs to know about the cluster (the agent implements it over Raft).
pub trait ClusterInfo: Send + Sync + 'static {
    /// The leader's RPC address, `None` when there is none.
    fn leader(&self) -> Option<String>;
    /// The RPC addresses of the Raft peers.
    fn peers(&self) -> Vec<String>;
    /// Whether this server is the leader. Non-leaders refuse `Node.*` calls with
    /// [`ERR_NOT_LEADER`] (or [`ERR_NO_LEADER`] when no leader is known), and clients fail
    /// over to another server (forwarding to the leader comes later).
    fn is_leader(&self) -> bool {
        true
    }
}

/// A single server that is its own leader, at `addr`.
#[derive(Debug, Clone)]
pub struct SingleServer {
    /// The server's RPC address.
    pub addr: String,
}

impl ClusterInfo for SingleServer {
    fn leader(&self) -> Option<String> {
        Some(self.addr.clone())
    }

    fn peers(&self) -> Vec<String> {
        vec![self.addr.clone()]
    }
}

/// Limits of one server connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A connection with nothing in flight and no frame for this long is closed.
    pub idle_timeout: Duration,
    /// Once a frame's length arrived, its body must arrive within this.
    pub frame_timeout: Duration,
    /// Requests one connection may have in flight; more are not read until some finish.
    pub max_in_flight: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            idle_timeout: Duration::from_secs(10 * 60),
            frame_timeout: Duration::from_secs(30),
            max_in_flight: 256,
        }
    }
}

/// Answers Nomad RPC requests with a [`Server`].
pub struct RpcServer {
    server: Arc<Server>,
    cluster: OnceLock<Arc<dyn ClusterInfo>>,
    limits: ConnLimits,
    http: OnceLock<HttpForwarder>,
}

/// Answers `HTTP.Forward` with this agent's HTTP API (set by the agent, which has one).
pub type HttpForwarder = Arc<
    dyn Fn(serde_json::Value) -> crate::BoxFuture<'static, Result<serde_json::Value, String>>
        + Send
        + Sync,
>;

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Why a request failed: its message goes back as the response's `error`.
type MethodResult = Result<serde_json::Value, String>;

impl RpcServer {
    /// Serves `server`. Until [`RpcServer::set_cluster_info`] is called, the server answers as
    /// a single server that is its own leader at the listener's address.
    pub fn new(server: Arc<Server>) -> Arc<RpcServer> {
        RpcServer::with_limits(server, ConnLimits::default())
    }

    /// Like [`RpcServer::new`] with other connection limits.
    pub fn with_limits(server: Arc<Server>, limits: ConnLimits) -> Arc<RpcServer> {
        Arc::new(RpcServer {
            server,
            cluster: OnceLock::new(),
            limits,
            http: OnceLock::new(),
        })
    }

    /// Sets what answers `HTTP.Forward` (once).
    pub fn set_http_forwarder(&self, f: HttpForwarder) -> bool {
        self.http.set(f).is_ok()
    }

    /// Sets where `Status.Leader`, `Status.Peers` and the leader check get their answers.
    /// Only the first call (or the listener's single-server default) takes effect; returns
    /// whether this one did.
    pub fn set_cluster_info(&self, info: Arc<dyn ClusterInfo>) -> bool {
        self.cluster.set(info).is_ok()
    }

    /// The served server.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    fn cluster(&self) -> Option<&Arc<dyn ClusterInfo>> {
        self.cluster.get()
    }

    /// Serves one connection whose protocol byte (0x01) has been read, until the peer closes
    /// it, it breaks the protocol, it stays idle past the limit, or `shutdown` fires.
    pub async fn serve_conn(
        self: Arc<Self>,
        stream: BoxedStream,
        peer: String,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let limits = self.limits;
        let (mut rd, mut wr) = tokio::io::split(stream);

        // Reads run in their own task so waiting for a frame never races a half-read one.
        let (frames_tx, mut frames_rx) = mpsc::channel::<Result<Vec<u8>, FrameError>>(16);
        let reader = tokio::spawn(async move {
            loop {
                let res = frame::read_raw(&mut rd, limits.frame_timeout).await;
                let end = res.is_err();
                if frames_tx.send(res).await.is_err() || end {
                    return;
                }
            }
        });

        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
        let peer_w = peer.clone();
        let writer = tokio::spawn(async move {
            while let Some(bytes) = out_rx.recv().await {
                if let Err(e) = frame::write_raw(&mut wr, &bytes).await {
                    tracing::debug!(peer = %peer_w, error = %e, "rpc: failed to write a response");
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });

        let mut calls: JoinSet<()> = JoinSet::new();
        let idle = tokio::time::sleep(limits.idle_timeout);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                _ = crate::stopped(&mut shutdown) => break,
                Some(_) = calls.join_next(), if !calls.is_empty() => {
                    if calls.is_empty() {
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    }
                }
                _ = &mut idle, if calls.is_empty() => {
                    tracing::debug!(%peer, "rpc: closing idle connection");
                    break;
                }
                got = frames_rx.recv(), if calls.len() < limits.max_in_flight => {
                    let raw = match got {
                        Some(Ok(raw)) => raw,
                        Some(Err(FrameError::Closed)) | None => break,
                        Some(Err(e)) => {
                            tracing::warn!(%peer, error = %e, "rpc: closing connection");
                            break;
                        }
                    };
                    let req: RequestFrame = match serde_json::from_slice(&raw) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "rpc: malformed request frame; closing connection");
                            break;
                        }
                    };
                    idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    let me = self.clone();
                    let out = out_tx.clone();
                    calls.spawn(async move {
                        let id = req.id;
                        let res = me.dispatch(&req.method, req.body).await;
                        let bytes = encode_response(id, res);
                        let _ = out.send(bytes).await;
                    });
                }
            }
        }
        calls.abort_all();
        reader.abort();
        drop(out_tx);
        // Let answers already queued go out, but do not wait on a stuck peer.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    }

    /// Runs one method.
    async fn dispatch(&self, method: &str, body: serde_json::Value) -> MethodResult {
        match method {
            STATUS_PING => Ok(serde_json::json!({})),
            STATUS_LEADER => Ok(serde_json::Value::String(
                self.cluster().and_then(|c| c.leader()).unwrap_or_default(),
            )),
            STATUS_PEERS => to_value(&self.cluster().map(|c| c.peers()).unwrap_or_default()),
            NODE_REGISTER => {
                self.check_leader()?;
                let req: NodeRegisterRequest = parse(method, body)?;
                let ttl = self
                    .server
                    .node_register(req.node)
                    .await
                    .map_err(|e| e.to_string())?;
                to_value(&NodeUpdateResponse {
                    heartbeat_ttl: proto::nanos(ttl),
                })
            }
            NODE_UPDATE_STATUS => {
                self.check_leader()?;
                let req: NodeUpdateStatusRequest = parse(method, body)?;
                if req.node_id.is_empty() {
                    return Err("missing node ID for client status update".into());
                }
                let ttl = self
                    .server
                    .node_heartbeat(&req.node_id)
                    .await
                    .map_err(|e| e.to_string())?;
                to_value(&NodeUpdateResponse {
                    heartbeat_ttl: proto::nanos(ttl),
                })
            }
            NODE_GET_CLIENT_ALLOCS => {
                self.check_leader()?;
                let req: NodeClientAllocsRequest = parse(method, body)?;
                if req.node_id.is_empty() {
                    return Err("missing node ID".into());
                }
                let opts = QueryOptions {
                    min_index: req.min_query_index,
                    wait: Duration::from_nanos(req.max_query_time),
                };
                let (allocs, index) = self
                    .server
                    .node_allocs(&req.node_id, &opts)
                    .await
                    .map_err(|e| e.to_string())?;
                to_value(&NodeClientAllocsResponse { allocs, index })
            }
            NODE_UPDATE_ALLOC => {
                self.check_leader()?;
                let req: AllocUpdateRequest = parse(method, body)?;
                let index = self
                    .server
                    .node_update_allocs(req.allocs)
                    .await
                    .map_err(|e| e.to_string())?;
                to_value(&GenericResponse { index })
            }
            HTTP_FORWARD => match self.http.get() {
                Some(f) => f(body).await,
                None => Err("rpc: this server does not forward HTTP requests".into()),
            },
            ACL_RESOLVE_TOKEN => {
                // Any server answers from its own state, as for other reads.
                let req: AclResolveTokenRequest = parse(method, body)?;
                let resolved = self
                    .server
                    .token_and_policies(Some(&req.secret_id))
                    .map_err(|e| e.to_string())?;
                let resp = match resolved {
                    None => AclResolveTokenResponse::default(),
                    Some((token, policies)) => AclResolveTokenResponse {
                        token: Some(serde_json::to_value(&token).map_err(|e| e.to_string())?),
                        policies: policies
                            .iter()
                            .map(serde_json::to_value)
                            .collect::<Result<_, _>>()
                            .map_err(|e| e.to_string())?,
                    },
                };
                to_value(&resp)
            }
            other => Err(format!("rpc: can't find method {other}")),
        }
    }

    fn check_leader(&self) -> Result<(), String> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        if c.is_leader() {
            return Ok(());
        }
        match c.leader() {
            Some(l) if !l.is_empty() => Err(format!("{ERR_NOT_LEADER} (leader is {l})")),
            _ => Err(ERR_NO_LEADER.to_string()),
        }
    }

    /// Sets the single-server default answering at `addr`, unless cluster info was set.
    pub(crate) fn default_cluster(&self, addr: String) {
        let _ = self.cluster.set(Arc::new(SingleServer { addr }));
    }
}

fn parse<T: DeserializeOwned>(method: &str, body: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(body).map_err(|e| format!("rpc: bad {method} request: {e}"))
}

fn to_value<T: Serialize>(v: &T) -> MethodResult {
    serde_json::to_value(v).map_err(|e| format!("rpc: failed to encode the response: {e}"))
}

/// Encodes an answer; one too large to send becomes an error answer.
fn encode_response(id: u64, res: MethodResult) -> Vec<u8> {
    let resp = match res {
        Ok(body) => ResponseFrame {
            id,
            error: None,
            body,
        },
        Err(e) => ResponseFrame {
            id,
            error: Some(e),
            body: serde_json::Value::Null,
        },
    };
    match frame::encode(&resp) {
        Ok(b) => b,
        Err(e) => {
            let fallback = ResponseFrame {
                id,
                error: Some(format!("rpc: response not sent: {e}")),
                body: serde_json::Value::Null,
            };
            frame::encode(&fallback).unwrap_or_default()
        }
    }
}
