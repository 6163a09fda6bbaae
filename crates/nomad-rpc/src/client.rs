//! The client side: a multiplexed connection ([`MuxConn`]) and the client agent's
//! [`ServerConn`] over the network ([`RemoteServerConn`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nomad_client::{BoxFuture, RpcError, ServerConn};
use nomad_structs::{Allocation, Node};
use nomad_tls::ClientTlsConfig;
use rand::seq::SliceRandom;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::frame::{self, FrameError, RequestFrame, ResponseFrame};
use crate::proto::{self, *};
use crate::stream::{dial, BoxedStream, RpcTls};
use crate::RPC_NOMAD;

/// How one call on a connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The server answered with an error.
    #[error("{0}")]
    Remote(String),
    /// The connection broke (or was already broken); the request may or may not have run.
    #[error("{0}")]
    Transport(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

type Pending = HashMap<u64, oneshot::Sender<Result<ResponseFrame, String>>>;

struct PendingState {
    /// Why the connection ended, once it did.
    closed: Option<String>,
    calls: Pending,
}

/// One multiplexed Nomad RPC connection: many requests in flight, answered by id. Dropping
/// it closes the connection.
pub struct MuxConn {
    addr: String,
    out: mpsc::Sender<Vec<u8>>,
    pending: Arc<Mutex<PendingState>>,
    closed: Arc<AtomicBool>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl std::fmt::Debug for MuxConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxConn")
            .field("addr", &self.addr)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Drop for MuxConn {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// How long a started answer frame may take to arrive whole.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

fn lock(p: &Mutex<PendingState>) -> std::sync::MutexGuard<'_, PendingState> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl MuxConn {
    /// Runs the protocol over `stream`, whose 0x01 byte was sent (see [`dial`]). `addr`
    /// names the server in errors.
    pub fn start(addr: String, stream: BoxedStream) -> MuxConn {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let pending = Arc::new(Mutex::new(PendingState {
            closed: None,
            calls: HashMap::new(),
        }));
        let closed = Arc::new(AtomicBool::new(false));
        let (dead_tx, mut dead_rx) = watch::channel(false);
        let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(64);

        let writer = tokio::spawn(async move {
            while let Some(bytes) = out_rx.recv().await {
                if frame::write_raw(&mut wr, &bytes).await.is_err() {
                    break;
                }
            }
            dead_tx.send_replace(true);
        });

        let (p, c, a) = (pending.clone(), closed.clone(), addr.clone());
        let reader = tokio::spawn(async move {
            let mut answered = false;
            let reason = loop {
                let got = tokio::select! {
                    _ = dead_rx.wait_for(|d| *d) => break "connection closed (write failed)".to_string(),
                    got = frame::read::<ResponseFrame, _>(&mut rd, FRAME_TIMEOUT) => got,
                };
                match got {
                    Ok(resp) => {
                        answered = true;
                        let tx = lock(&p).calls.remove(&resp.id);
                        if let Some(tx) = tx {
                            let _ = tx.send(Ok(resp));
                        }
                    }
                    Err(FrameError::Closed) if answered => break "connection closed".to_string(),
                    Err(FrameError::Closed) => {
                        break "connection closed by the server before any answer (does it \
                               require TLS, or a client certificate?)"
                            .to_string()
                    }
                    Err(e) if answered => {
                        tracing::warn!(server = %a, error = %e, "rpc: dropping connection");
                        break format!("connection lost: {e}");
                    }
                    Err(e) => {
                        tracing::debug!(server = %a, error = %e, "rpc: connection refused");
                        break format!(
                            "connection lost before any answer: {e} (does the server require \
                             TLS, or a client certificate?)"
                        );
                    }
                }
            };
            c.store(true, Ordering::SeqCst);
            let mut g = lock(&p);
            for (_, tx) in g.calls.drain() {
                let _ = tx.send(Err(reason.clone()));
            }
            g.closed = Some(reason);
        });

        MuxConn {
            addr,
            out,
            pending,
            closed,
            next_id: AtomicU64::new(1),
            reader,
            writer,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection broke (no new call can succeed).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) || self.writer.is_finished()
    }

    /// Calls `method` with `body`, waiting at most `timeout` for the answer.
    pub async fn call(
        &self,
        method: &str,
        body: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = frame::encode(&RequestFrame {
            id,
            method: method.to_string(),
            body,
        })
        .map_err(|e| CallError::Remote(format!("rpc: request not sent: {e}")))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut g = lock(&self.pending);
            if let Some(reason) = &g.closed {
                return Err(CallError::Transport(reason.clone()));
            }
            g.calls.insert(id, tx);
        }
        let res = tokio::time::timeout(timeout, async {
            self.out
                .send(bytes)
                .await
                .map_err(|_| CallError::Transport("connection closed".into()))?;
            rx.await
                .map_err(|_| CallError::Transport("connection closed".into()))?
                .map_err(CallError::Transport)
        })
        .await;
        let resp = match res {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                lock(&self.pending).calls.remove(&id);
                return Err(CallError::Timeout(timeout));
            }
        };
        match resp.error {
            Some(e) => Err(CallError::Remote(e)),
            None => Ok(resp.body),
        }
    }
}

/// Timeouts and behaviour of a [`RemoteServerConn`].
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Longest wait for a non-blocking call, dials included.
    pub rpc_timeout: Duration,
    /// Added to a blocking query's wait for its answer to arrive.
    pub blocking_slack: Duration,
    /// Shuffle the server list first (spreads clients over servers).
    pub shuffle: bool,
    /// Wait before redialling after every server failed once; doubles to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between dial rounds.
    pub max_backoff: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            rpc_timeout: Duration::from_secs(10),
            blocking_slack: Duration::from_secs(10),
            shuffle: true,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Why a [`RemoteServerConn`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RemoteConnError {
    /// `client { servers = [] }`.
    #[error("no servers configured")]
    NoServers,
    /// The TLS files could not be loaded.
    #[error(transparent)]
    Tls(#[from] nomad_tls::TlsError),
}

struct ConnState {
    /// The rotation: the current server is `servers[0]`.
    servers: Vec<String>,
    conn: Option<Arc<MuxConn>>,
    /// Dial failures in a row (reset by a successful dial).
    failures: u32,
    /// No dial before this (backoff after a whole round failed).
    next_dial: Option<Instant>,
}

/// The client agent's [`ServerConn`] over the network: one connection to one of the
/// servers at a time, failing over to the next on connection errors and on "No cluster
/// leader" / "not the leader" answers.
pub struct RemoteServerConn {
    state: Mutex<ConnState>,
    dial_lock: tokio::sync::Mutex<()>,
    tls: Option<RpcTls>,
    opts: RemoteOptions,
}

impl std::fmt::Debug for RemoteServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock_state();
        f.debug_struct("RemoteServerConn")
            .field("servers", &st.servers)
            .field("connected", &st.conn.as_ref().map(|c| c.addr.clone()))
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether a server's error means "ask another server".
fn is_leader_error(msg: &str) -> bool {
    msg.contains(ERR_NO_LEADER) || msg.contains(ERR_NOT_LEADER)
}

impl RemoteServerConn {
    /// Talks to `servers` (`host:port`, in `client { servers }` order, shuffled), over TLS
    /// when `tls` is given. For Nomad's `verify_server_hostname`, set
    /// `tls.server_name = Some("server.<region>.nomad")`.
    pub fn new(
        servers: Vec<String>,
        tls: Option<ClientTlsConfig>,
    ) -> Result<RemoteServerConn, RemoteConnError> {
        RemoteServerConn::with_options(servers, tls, RemoteOptions::default())
    }

    /// Like [`RemoteServerConn::new`] with other timeouts.
    pub fn with_options(
        servers: Vec<String>,
        tls: Option<ClientTlsConfig>,
        opts: RemoteOptions,
    ) -> Result<RemoteServerConn, RemoteConnError> {
        let mut servers: Vec<String> = servers
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            return Err(RemoteConnError::NoServers);
        }
        if opts.shuffle {
            servers.shuffle(&mut rand::rng());
        }
        let tls = tls.as_ref().map(RpcTls::new).transpose()?;
        Ok(RemoteServerConn {
            state: Mutex::new(ConnState {
                servers,
                conn: None,
                failures: 0,
                next_dial: None,
            }),
            dial_lock: tokio::sync::Mutex::new(()),
            tls,
            opts,
        })
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server list in its current rotation (the first is the one used).
    pub fn servers(&self) -> Vec<String> {
        self.lock_state().servers.clone()
    }

    /// The server of the live connection, if any.
    pub fn connected_server(&self) -> Option<String> {
        let st = self.lock_state();
        st.conn
            .as_ref()
            .filter(|c| !c.is_closed())
            .map(|c| c.addr.clone())
    }

    /// Replaces the server list (e.g. from `Status.Peers`), keeping the live connection if its
    /// server is still listed.
    pub fn set_servers(&self, servers: Vec<String>) {
        let mut servers: Vec<String> = servers.into_iter().filter(|s| !s.is_empty()).collect();
        if servers.is_empty() {
            return;
        }
        let mut st = self.lock_state();
        if let Some(cur) = st.conn.as_ref().map(|c| c.addr.clone()) {
            match servers.iter().position(|s| *s == cur) {
                Some(i) => servers.rotate_left(i),
                None => st.conn = None,
            }
        }
        st.servers = servers;
    }

    /// Drops `conn` (if it still is the current one) and moves to the next server.
    fn fail_over(&self, conn: &Arc<MuxConn>) {
        let mut st = self.lock_state();
        if st.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            st.conn = None;
            if st.servers.first().is_some_and(|s| *s == conn.addr) {
                st.servers.rotate_left(1);
            }
        }
    }

    fn live_conn(&self) -> Option<Arc<MuxConn>> {
        let st = self.lock_state();
        st.conn.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    /// The live connection, or a new one: tries each server once, in rotation order.
    async fn conn(&self, deadline: Instant) -> Result<Arc<MuxConn>, RpcError> {
        if let Some(c) = self.live_conn() {
            return Ok(c);
        }
        let _dialing = self.dial_lock.lock().await;
        // Someone else may have connected while we waited.
        if let Some(c) = self.live_conn() {
            return Ok(c);
        }
        let rounds = self.lock_state().servers.len();
        let mut errors = Vec::new();
        for _ in 0..rounds {
            let (addr, wait_until) = {
                let st = self.lock_state();
                (st.servers[0].clone(), st.next_dial)
            };
            if let Some(t) = wait_until {
                if t > deadline {
                    errors.push(format!("{addr}: not redialled yet (backing off)"));
                    break;
                }
                tokio::time::sleep_until(t).await;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let res =
                match tokio::time::timeout(left, dial(&addr, RPC_NOMAD, self.tls.as_ref())).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{addr}: connect timed out"),
                    )),
                };
            let mut st = self.lock_state();
            match res {
                Ok(stream) => {
                    let c = Arc::new(MuxConn::start(addr.clone(), stream));
                    st.conn = Some(c.clone());
                    st.failures = 0;
                    st.next_dial = None;
                    tracing::debug!(server = %addr, "rpc: connected");
                    return Ok(c);
                }
                Err(e) => {
                    tracing::debug!(server = %addr, error = %e, "rpc: dial failed");
                    errors.push(e.to_string());
                    st.failures = st.failures.saturating_add(1);
                    if st.servers.first().is_some_and(|s| *s == addr) {
                        st.servers.rotate_left(1);
                    }
                    let n = u32::try_from(st.servers.len()).unwrap_or(u32::MAX).max(1);
                    if st.failures >= n {
                        let round = (st.failures / n).saturating_sub(1).min(16);
                        let backoff = self
                            .opts
                            .min_backoff
                            .saturating_mul(1u32 << round)
                            .min(self.opts.max_backoff);
                        st.next_dial = Some(Instant::now() + backoff);
                    }
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(RpcError(format!(
            "failed to reach any server: {}",
            errors.join("; ")
        )))
    }

    /// Calls `method`, failing over between servers, within `timeout`.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let deadline = Instant::now() + timeout;
        let body = serde_json::to_value(req)
            .map_err(|e| RpcError(format!("rpc: failed to encode {method}: {e}")))?;
        // Every server once, plus one more try of the first (a stale connection to it).
        let attempts = self.lock_state().servers.len() + 1;
        let mut errors: Vec<String> = Vec::new();
        for _ in 0..attempts {
            let conn = match self.conn(deadline).await {
                Ok(c) => c,
                Err(e) if errors.is_empty() => return Err(e),
                Err(e) => {
                    errors.push(e.0);
                    break;
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match conn.call(method, body.clone(), left).await {
                Ok(v) => {
                    return serde_json::from_value(v).map_err(|e| {
                        RpcError(format!(
                            "rpc: bad {method} answer from server {}: {e}",
                            conn.addr
                        ))
                    })
                }
                Err(CallError::Remote(msg)) if is_leader_error(&msg) => {
                    tracing::debug!(server = %conn.addr, error = %msg, "rpc: failing over");
                    errors.push(format!("{}: {msg}", conn.addr));
                    self.fail_over(&conn);
                }
                Err(CallError::Remote(msg)) => {
                    return Err(RpcError(format!("rpc error: {msg} (server {})", conn.addr)))
                }
                Err(CallError::Transport(msg)) => {
                    tracing::debug!(server = %conn.addr, error = %msg, "rpc: connection lost");
                    errors.push(format!("{}: {msg}", conn.addr));
                    self.fail_over(&conn);
                }
                Err(CallError::Timeout(t)) => {
                    self.fail_over(&conn);
                    return Err(RpcError(format!(
                        "rpc: {method} to server {} timed out after {t:?}",
                        conn.addr
                    )));
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        errors.dedup();
        Err(RpcError(format!(
            "rpc: {method} failed: {}",
            errors.join("; ")
        )))
    }

    /// `Status.Ping` on the current server.
    pub async fn ping(&self) -> Result<(), RpcError> {
        self.call::<_, serde_json::Value>(
            STATUS_PING,
            &serde_json::json!({}),
            self.opts.rpc_timeout,
        )
        .await
        .map(|_| ())
    }

    /// `Status.Leader`: the leader's RPC address (empty when none).
    pub async fn leader(&self) -> Result<String, RpcError> {
        self.call(STATUS_LEADER, &serde_json::json!({}), self.opts.rpc_timeout)
            .await
    }

    /// `Status.Peers`: the servers' RPC addresses.
    pub async fn peers(&self) -> Result<Vec<String>, RpcError> {
        self.call(STATUS_PEERS, &serde_json::json!({}), self.opts.rpc_timeout)
            .await
    }
}

impl ServerConn for RemoteServerConn {
    fn register(&self, node: Node) -> BoxFuture<'_, Result<Duration, RpcError>> {
        Box::pin(async move {
            let resp: NodeUpdateResponse = self
                .call(
                    NODE_REGISTER,
                    &NodeRegisterRequest { node },
                    self.opts.rpc_timeout,
                )
                .await?;
            Ok(Duration::from_nanos(resp.heartbeat_ttl))
        })
    }

    fn heartbeat(&self, node_id: &str) -> BoxFuture<'_, Result<Duration, RpcError>> {
        let req = NodeUpdateStatusRequest {
            node_id: node_id.to_string(),
            status: nomad_structs::NODE_STATUS_READY.to_string(),
        };
        Box::pin(async move {
            let resp: NodeUpdateResponse = self
                .call(NODE_UPDATE_STATUS, &req, self.opts.rpc_timeout)
                .await?;
            Ok(Duration::from_nanos(resp.heartbeat_ttl))
        })
    }

    fn allocs(
        &self,
        node_id: &str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(Vec<Allocation>, u64), RpcError>> {
        let req = NodeClientAllocsRequest {
            node_id: node_id.to_string(),
            min_query_index: min_index,
            max_query_time: proto::nanos(wait),
        };
        // The server waits at most 5 minutes whatever we ask (0 means that maximum).
        let server_wait = if wait.is_zero() {
            nomad_server::MAX_BLOCKING_WAIT
        } else {
            wait.min(nomad_server::MAX_BLOCKING_WAIT)
        };
        let timeout = server_wait + self.opts.blocking_slack;
        Box::pin(async move {
            let resp: NodeClientAllocsResponse =
                self.call(NODE_GET_CLIENT_ALLOCS, &req, timeout).await?;
            Ok((resp.allocs, resp.index))
        })
    }

    fn update_allocs(&self, allocs: Vec<Allocation>) -> BoxFuture<'_, Result<(), RpcError>> {
        Box::pin(async move {
            let _: GenericResponse = self
                .call(
                    NODE_UPDATE_ALLOC,
                    &AllocUpdateRequest { allocs },
                    self.opts.rpc_timeout,
                )
                .await?;
            Ok(())
        })
    }

    fn forward_http(
        &self,
        req: serde_json::Value,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<serde_json::Value, RpcError>> {
        Box::pin(async move { self.call(HTTP_FORWARD, &req, timeout).await })
    }

    fn resolve_token(&self, secret: &str) -> BoxFuture<'_, Result<serde_json::Value, RpcError>> {
        let req = AclResolveTokenRequest {
            secret_id: secret.to_string(),
        };
        Box::pin(async move {
            self.call(ACL_RESOLVE_TOKEN, &req, self.opts.rpc_timeout)
                .await
        })
    }
}
