//! The server-to-server RPC link: length-prefixed JSON frames over TCP.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON. A connection carries
//! one request, then its response, then the next request: callers that want parallelism open more
//! connections. Every request and response carries the sender's cluster ID; a receiver that has a
//! different one refuses the request, so two clusters never exchange Raft traffic.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nomad_state::Command;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError as ORaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::store::log::{LogDb, META_CLUSTER_ID};
use crate::types::{Node, NodeId, TypeConfig};
use crate::{BoxedStream, RaftDialer, RaftError};

/// Largest frame accepted from the network (a snapshot chunk or a batch of log entries).
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// A request frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) cluster_id: Option<String>,
    pub(crate) from: NodeId,
    pub(crate) body: RequestBody,
}

/// What a request asks for.
// A wire message, built once and moved into the encoder: boxing buys nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RequestBody {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower's write, forwarded to the leader.
    Forward(Command),
    /// Add the sender (or another node) as a voter; sent to the leader.
    Join {
        node_id: NodeId,
        addr: String,
    },
    /// Remove a node from the configuration; sent to the leader.
    Remove {
        node_id: NodeId,
    },
    /// The leader's linearizable read index.
    ReadIndex,
    /// Checks that the receiver is reachable and of our cluster.
    Ping,
    /// An application call for the leader (see `RaftNode::call_leader`).
    Call {
        method: String,
        body: Vec<u8>,
    },
}

/// A response frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Response {
    pub(crate) cluster_id: Option<String>,
    pub(crate) body: ResponseBody,
}

/// Responses, one variant per request kind (plus a refusal of any request).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ResponseBody {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, ORaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, ORaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, ORaftError<NodeId, InstallSnapshotError>>,
    ),
    Index(Result<u64, RaftError>),
    Done(Result<(), RaftError>),
    /// The leader's answer to an application call.
    Call(Result<Vec<u8>, RaftError>),
    /// The request was not looked at (other cluster, shutting down).
    Refused(RaftError),
}

/// State the transport shares with the node: identity, cluster ID, test partitions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node_id: NodeId,
    cluster_id: RwLock<Option<String>>,
    /// Where an adopted cluster ID is persisted; `None` once shut down.
    db: Mutex<Option<Arc<LogDb>>>,
    /// Peers this node neither sends to nor answers (partition tests).
    blocked: RwLock<BTreeSet<NodeId>>,
    /// How outgoing connections are opened.
    dial: Dial,
}

/// How outgoing connections are opened: a dialer (or TCP), then an optional protocol byte.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dial {
    pub(crate) prefix: Option<u8>,
    pub(crate) dialer: Option<RaftDialer>,
}

impl Dial {
    async fn connect(&self, addr: &str) -> std::io::Result<BoxedStream> {
        let mut stream: BoxedStream = match &self.dialer {
            Some(d) => (d.0)(addr.to_string()).await?,
            None => {
                let s = TcpStream::connect(addr).await?;
                // Small frames (votes, heartbeats) must not wait for Nagle.
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
        };
        if let Some(b) = self.prefix {
            stream.write_all(&[b]).await?;
        }
        Ok(stream)
    }
}

impl Shared {
    pub(crate) fn new(
        node_id: NodeId,
        cluster_id: Option<String>,
        db: Arc<LogDb>,
        dial: Dial,
    ) -> Self {
        Shared {
            node_id,
            cluster_id: RwLock::new(cluster_id),
            db: Mutex::new(Some(db)),
            blocked: RwLock::new(BTreeSet::new()),
            dial,
        }
    }

    pub(crate) fn cluster_id(&self) -> Option<String> {
        self.cluster_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets and persists the cluster ID.
    pub(crate) fn set_cluster_id(&self, id: &str) -> Result<(), RaftError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(db) = db {
            db.put_meta(META_CLUSTER_ID, &id.to_string(), true)?;
        }
        *self.cluster_id.write().unwrap_or_else(|e| e.into_inner()) = Some(id.to_string());
        Ok(())
    }

    pub(crate) fn close(&self) {
        self.db.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub(crate) fn is_blocked(&self, peer: NodeId) -> bool {
        self.blocked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&peer)
    }

    #[cfg(test)]
    pub(crate) fn set_blocked(&self, peers: BTreeSet<NodeId>) {
        *self.blocked.write().unwrap_or_else(|e| e.into_inner()) = peers;
    }

    /// Checks a peer's cluster ID against ours. `adopt` (leader traffic) lets a node that has
    /// none yet take the leader's.
    pub(crate) fn check_cluster(&self, theirs: Option<&str>, adopt: bool) -> Result<(), RaftError> {
        let ours = self.cluster_id();
        match (ours, theirs) {
            (Some(o), Some(t)) if o != t => Err(RaftError::ClusterIdMismatch {
                ours: o,
                theirs: t.to_string(),
            }),
            (None, Some(t)) if adopt => {
                tracing::info!(
                    node_id = self.node_id,
                    cluster_id = t,
                    "adopting the leader's cluster ID"
                );
                self.set_cluster_id(t)
            }
            _ => Ok(()),
        }
    }
}

async fn write_frame(
    w: &mut BufWriter<WriteHalf<BoxedStream>>,
    bytes: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(bytes).await?;
    w.flush().await
}

/// Reads one frame; `Ok(None)` on a clean end of stream before the length.
async fn read_frame(r: &mut BufReader<ReadHalf<BoxedStream>>) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is too large"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// One side of a connection, framing requests or responses.
pub(crate) struct FramedConn {
    r: BufReader<ReadHalf<BoxedStream>>,
    w: BufWriter<WriteHalf<BoxedStream>>,
}

impl std::fmt::Debug for FramedConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FramedConn")
    }
}

impl FramedConn {
    pub(crate) fn new(stream: BoxedStream) -> Self {
        let (r, w) = tokio::io::split(stream);
        FramedConn {
            r: BufReader::new(r),
            w: BufWriter::new(w),
        }
    }

    /// Whether the peer already closed (or broke) this idle connection, checked without
    /// waiting: a pooled connection the peer dropped must not swallow a request.
    pub(crate) async fn peer_gone(&mut self) -> bool {
        use tokio::io::AsyncBufRead;
        let r = &mut self.r;
        std::future::poll_fn(|cx| {
            // Ready is EOF or an error; unexpected bytes on an idle connection are as bad.
            std::task::Poll::Ready(std::pin::Pin::new(&mut *r).poll_fill_buf(cx).is_ready())
        })
        .await
    }

    pub(crate) async fn recv<T: for<'de> Deserialize<'de>>(
        &mut self,
    ) -> std::io::Result<Option<T>> {
        match read_frame(&mut self.r).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }

    pub(crate) async fn send<T: Serialize>(&mut self, v: &T) -> std::io::Result<()> {
        let b = serde_json::to_vec(v)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        write_frame(&mut self.w, &b).await
    }
}

/// Why a call failed, from the caller's point of view.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Could not connect; the request was surely not seen (safe to retry).
    Unreachable(String),
    /// The connection failed after the request may have been sent.
    Io(std::io::Error),
    /// No response in time.
    Timeout,
    /// The peer refused the request unseen (other cluster, shutting down).
    Refused(RaftError),
}

impl CallError {
    pub(crate) fn into_raft_error(self, addr: &str) -> RaftError {
        match self {
            CallError::Unreachable(m) => RaftError::Network(format!("{addr}: {m}")),
            CallError::Io(e) => RaftError::Network(format!("{addr}: {e}")),
            CallError::Timeout => RaftError::Network(format!("{addr}: timed out")),
            CallError::Refused(e) => e,
        }
    }
}

/// A client connection to one peer address, connected lazily and dropped on any error.
#[derive(Debug)]
pub(crate) struct Conn {
    addr: String,
    conn: Option<FramedConn>,
}

impl Conn {
    pub(crate) fn new(addr: String) -> Self {
        Conn { addr, conn: None }
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request and waits for its response, all within `timeout`.
    pub(crate) async fn call(
        &mut self,
        shared: &Shared,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ResponseBody, CallError> {
        let req = Request {
            cluster_id: shared.cluster_id(),
            from: shared.node_id,
            body,
        };
        let res = tokio::time::timeout(timeout, self.call_inner(shared, &req)).await;
        let res = match res {
            Err(_) => Err(CallError::Timeout),
            Ok(r) => r,
        };
        if res.is_err() {
            self.conn = None;
        }
        let resp = res?;
        if let Err(e) = shared.check_cluster(resp.cluster_id.as_deref(), false) {
            self.conn = None;
            return Err(CallError::Refused(e));
        }
        match resp.body {
            ResponseBody::Refused(e) => Err(CallError::Refused(e)),
            body => Ok(body),
        }
    }

    async fn call_inner(&mut self, shared: &Shared, req: &Request) -> Result<Response, CallError> {
        if let Some(c) = self.conn.as_mut() {
            if c.peer_gone().await {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let stream = shared
                .dial
                .connect(&self.addr)
                .await
                .map_err(|e| CallError::Unreachable(e.to_string()))?;
            self.conn = Some(FramedConn::new(stream));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(CallError::Unreachable("not connected".into()));
        };
        conn.send(req).await.map_err(CallError::Io)?;
        match conn.recv::<Response>().await.map_err(CallError::Io)? {
            Some(r) => Ok(r),
            None => Err(CallError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the response",
            ))),
        }
    }
}

/// openraft's factory of per-peer clients.
#[derive(Debug, Clone)]
pub(crate) struct NetworkFactory {
    pub(crate) shared: Arc<Shared>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            target,
            conn: Conn::new(node.addr.clone()),
            shared: self.shared.clone(),
        }
    }
}

/// The client openraft uses to reach one peer.
#[derive(Debug)]
pub(crate) struct PeerClient {
    target: NodeId,
    conn: Conn,
    shared: Arc<Shared>,
}

impl PeerClient {
    async fn rpc<E: std::error::Error>(
        &mut self,
        action: RPCTypes,
        body: RequestBody,
        option: &RPCOption,
    ) -> Result<ResponseBody, RPCError<NodeId, Node, E>> {
        if self.shared.is_blocked(self.target) {
            let e = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "partitioned");
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        let timeout = option.hard_ttl();
        match self.conn.call(&self.shared, body, timeout).await {
            Ok(b) => Ok(b),
            Err(CallError::Timeout) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.shared.node_id,
                target: self.target,
                timeout,
            })),
            Err(CallError::Unreachable(m)) => {
                let e = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, m);
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(CallError::Refused(e)) => {
                tracing::warn!(target = self.target, addr = self.conn.addr(), error = %e, "peer refused raft rpc");
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(CallError::Io(e)) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, Node, E> {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected response kind");
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, ORaftError<NodeId>>> {
        match self
            .rpc(
                RPCTypes::AppendEntries,
                RequestBody::AppendEntries(rpc),
                &option,
            )
            .await?
        {
            ResponseBody::AppendEntries(Ok(r)) => Ok(r),
            ResponseBody::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, ORaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .rpc(
                RPCTypes::InstallSnapshot,
                RequestBody::InstallSnapshot(rpc),
                &option,
            )
            .await?
        {
            ResponseBody::InstallSnapshot(Ok(r)) => Ok(r),
            ResponseBody::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, ORaftError<NodeId>>> {
        match self
            .rpc(RPCTypes::Vote, RequestBody::Vote(rpc), &option)
            .await?
        {
            ResponseBody::Vote(Ok(r)) => Ok(r),
            ResponseBody::Vote(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }
}
