//! The RPC port (4647): clients reach servers over the network, and servers reach each other.
//!
//! # One port, many protocols
//!
//! As in Nomad, one TCP listener ([`RpcListener`]) serves every protocol of the port, and the
//! first byte a connection sends names its protocol:
//!
//! | byte | protocol | handled by |
//! |---|---|---|
//! | [`RPC_NOMAD`] `0x01` | Nomad RPC (below) | [`RpcServer`] |
//! | [`RPC_RAFT`] `0x02` | Raft | the [`StreamHandler`] given to [`RpcListener::set_raft_handler`] |
//! | [`RPC_TLS`] `0x04` | TLS; after the handshake the next byte names the inner protocol (0x01 or 0x02) | the listener |
//!
//! Any other byte closes the connection with a log line. With `tls { rpc = true }`
//! ([`RpcConfig::require_tls`]) every connection that does not start with 0x04 is refused,
//! whatever it asks for (plaintext Nomad RPC and plaintext Raft alike). Nomad's other bytes
//! (0x03 yamux multiplexing, 0x05 streaming, ...) are not served: our 0x01 protocol is itself
//! multiplexed. A connection must send its byte, and finish its TLS handshake, within
//! [`HANDSHAKE_TIMEOUT`].
//!
//! # Nomad RPC (0x01)
//!
//! After the byte, both directions carry frames: a u32 big-endian length, then that many
//! bytes of JSON ([`frame`]), at most [`MAX_FRAME`] (64 MiB). The caller sends
//! `{"id": u64, "method": "Node.Register", "body": {...}}` ([`RequestFrame`]); the server
//! answers `{"id": u64, "error": "..." | null, "body": {...}}` ([`ResponseFrame`]) with the
//! request's id. Requests are independent: the server runs each in its own task and answers
//! in the order they finish, so a blocking `Node.GetClientAllocs` does not hold up a
//! heartbeat on the same connection. Errors cross the wire as strings (Nomad's
//! `structs.ErrNoLeader` text, `node not found`, ...).
//!
//! Methods ([`proto`]; bodies use Nomad's field names, durations in nanoseconds):
//! `Node.Register` (Node → HeartbeatTTL), `Node.UpdateStatus` (NodeID → HeartbeatTTL),
//! `Node.GetClientAllocs` (NodeID, MinQueryIndex, MaxQueryTime → Allocs, Index; blocking),
//! `Node.UpdateAlloc` (Alloc → Index), `Status.Ping`, `Status.Leader`, `Status.Peers`
//! (answered by a [`ClusterInfo`]; a lone server is its own leader and only peer).
//! An unknown method or an undecodable body gets an error answer; a broken frame (bad
//! length, not JSON, too large, a body that stalls) closes that connection only, with a log
//! line. A connection with nothing in flight is closed after [`ConnLimits::idle_timeout`];
//! at most [`ConnLimits::max_in_flight`] requests run per connection (more wait unread).
//!
//! # Client side
//!
//! [`RemoteServerConn`] is the client agent's [`nomad_client::ServerConn`] over the network.
//! It shuffles `client { servers }`, keeps one connection, and on a broken connection or
//! an answer containing "No cluster leader" / "not the leader" moves to the next server and
//! retries (every method here is safe to repeat). Once every server failed to connect it
//! backs off (doubling up to [`RemoteOptions::max_backoff`]) before dialling again. Calls
//! time out after [`RemoteOptions::rpc_timeout`]; a blocking alloc query after its wait plus
//! [`RemoteOptions::blocking_slack`]. Errors name the server.
//!
//! TLS: [`dial`] sends 0x04, handshakes with the CA (and client certificate) of a
//! [`nomad_tls::ClientTlsConfig`], then sends the inner byte. With `server_name =
//! Some("server.<region>.nomad")` (Nomad's `verify_server_hostname`) a server's certificate
//! must name that role and region; without it, it must name the dialled host.
//!
//! [`dial`] is also the raw client for other protocols (e.g. Raft over 0x02).
#![forbid(unsafe_code)]

mod client;
pub mod frame;
mod listener;
pub mod proto;
mod server;
mod stream;

#[cfg(test)]
mod tests;

pub use client::{CallError, MuxConn, RemoteConnError, RemoteOptions, RemoteServerConn};
pub use frame::{RequestFrame, ResponseFrame, MAX_FRAME};
pub use listener::{RpcConfig, RpcListener, HANDSHAKE_TIMEOUT};
pub use server::{ClusterInfo, ConnLimits, HttpForwarder, RpcServer, SingleServer};
pub use stream::{
    dial, AsyncReadWrite, BoxFuture, BoxedStream, RpcTls, StreamHandler, DIAL_TIMEOUT,
};

/// First byte of a Nomad RPC connection.
pub const RPC_NOMAD: u8 = 0x01;
/// First byte of a Raft connection.
pub const RPC_RAFT: u8 = 0x02;
/// First byte of a TLS connection; the inner protocol's byte follows the handshake.
pub const RPC_TLS: u8 = 0x04;

/// Resolves once `shutdown` is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
