//! Replicates the server's state-machine log with openraft.
//!
//! Role: the consensus layer of the Nomad servers. [`RaftNode`] owns one openraft node, its
//! durable log (redb, `<data_dir>/raft/raft.db`), its snapshots (`<data_dir>/raft/snapshot.bin`)
//! and a tiny TCP RPC link to the other servers (length-prefixed JSON frames: AppendEntries,
//! Vote, InstallSnapshot, plus Forward for follower→leader writes, Join/Remove for membership,
//! ReadIndex for linearizable reads on followers).
//!
//! Invariants:
//! - openraft types are declared once (`types.rs`) and never appear in the public API.
//! - The state store is changed only by applying committed log entries (or restoring a
//!   snapshot); the log index is the state store's index.
//! - Every RPC carries the cluster ID; a mismatch is refused, so two clusters never merge.
//! - Damaged Raft files are reported as [`RaftError::Corrupt`] with the path, never skipped.
//!
//! Shared RPC port: with [`RaftConfig::listen`] off the node binds nothing and the owner of the
//! port hands each Raft connection in ([`RaftNode::handle_stream`], after reading the `0x02`
//! protocol byte); [`RaftConfig::dial_prefix`] makes outgoing connections write that byte
//! first, and [`RaftConfig::dialer`] replaces plain TCP (e.g. for TLS).
//!
//! Hooks for the server above: [`RaftNode::set_apply_observer`] sees every applied command
//! (the leader's eval broker is fed from it), [`RaftNode::set_call_handler`] /
//! [`RaftNode::call_leader`] carry small application calls to the leader (forwarded node
//! heartbeats), [`RaftNode::apply_local`] writes only as leader, and
//! [`RaftNode::wait_leader_change`] reports leadership changes.
//!
//! Entry points: [`RaftNode::start`], [`RaftNode::bootstrap`], [`RaftNode::apply`].
#![forbid(unsafe_code)]

mod error;
mod network;
mod node;
mod store;
mod types;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use error::RaftError;
pub use node::{ApplyObserver, CallHandler, RaftNode};
pub use SyncStream as SyncRaftStream;

/// A boxed future, as the hooks of this crate return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A byte stream Raft traffic can run over (TCP, TLS, a test pipe...).
pub trait RaftStream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> RaftStream for T {}

/// Makes any `Send` stream a [`RaftStream`] (a `Mutex` that is never locked: the stream is
/// only reached through `&mut`).
pub struct SyncStream<S>(std::sync::Mutex<S>);

impl<S> SyncStream<S> {
    /// Wraps `s`.
    pub fn new(s: S) -> Self {
        SyncStream(std::sync::Mutex::new(s))
    }

    fn inner(self: Pin<&mut Self>) -> Pin<&mut S>
    where
        S: Unpin,
    {
        Pin::new(
            self.get_mut()
                .0
                .get_mut()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SyncStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SyncStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.inner().poll_write(cx, buf)
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner().poll_shutdown(cx)
    }
}

/// A boxed [`RaftStream`].
pub type BoxedStream = Box<dyn RaftStream>;

/// Opens an outgoing connection to a peer's RPC address (e.g. TCP then a TLS handshake).
///
/// The stream it returns must be ready for the Raft bytes: when [`RaftConfig::dial_prefix`]
/// is set, that byte is written on the returned stream (so a TLS dialer writes its own `0x04`
/// on the TCP stream before the handshake, and the `0x02` then travels inside TLS).
#[derive(Clone)]
pub struct RaftDialer(
    pub Arc<dyn Fn(String) -> BoxFuture<std::io::Result<BoxedStream>> + Send + Sync>,
);

impl std::fmt::Debug for RaftDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaftDialer(..)")
    }
}

/// Nomad's RPC-port protocol byte for Raft traffic (`pool.RpcRaft`).
pub const RPC_RAFT_BYTE: u8 = 0x02;

/// How to run one Raft node.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This server's Raft ID (unique in the cluster, stable across restarts).
    pub node_id: u64,
    /// Address the RPC listener binds, e.g. "127.0.0.1:4647" (port 0 picks one; see
    /// [`RaftNode::rpc_addr`]).
    pub rpc_addr: String,
    /// The agent's data dir; Raft keeps `raft/` in it (redb file + snapshots).
    pub data_dir: PathBuf,
    /// The cluster's ID; `None` takes the one on disk, or derives one at bootstrap, or adopts
    /// the leader's when joining.
    pub cluster_id: Option<String>,
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max: Duration,
    /// `-dev`: log and snapshots in memory, nothing written under `data_dir`, no fsync.
    pub in_memory: bool,
    /// `true` (default): bind an own listener on `rpc_addr`. `false`: bind nothing; the
    /// caller owns the RPC port and hands each Raft connection in with
    /// [`RaftNode::handle_stream`] (after consuming its protocol byte). `rpc_addr` must then
    /// be the real address peers dial (no port 0).
    pub listen: bool,
    /// When set, every outgoing Raft connection writes this byte first (Nomad's shared RPC
    /// port: [`RPC_RAFT_BYTE`]).
    pub dial_prefix: Option<u8>,
    /// How outgoing connections are opened; `None`: plain TCP to the peer's address.
    pub dialer: Option<RaftDialer>,
}

impl RaftConfig {
    /// Nomad-like timings (heartbeat 100 ms, election 1-2 s) for `node_id` at `rpc_addr`.
    pub fn new(node_id: u64, rpc_addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        RaftConfig {
            node_id,
            rpc_addr: rpc_addr.into(),
            data_dir: data_dir.into(),
            cluster_id: None,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            in_memory: false,
            listen: true,
            dial_prefix: None,
            dialer: None,
        }
    }
}

#[cfg(test)]
mod tests;
