//! The RPC port's listener: reads each connection's first byte and hands the connection to
//! the protocol it names.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nomad_tls::rustls;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::server::RpcServer;
use crate::stream::{BoxedStream, StreamHandler};
use crate::{RPC_NOMAD, RPC_RAFT, RPC_TLS};

/// How long a new connection has to send its protocol byte, and to finish a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings of the RPC port (`tls { rpc = true }`).
#[derive(Clone, Default)]
pub struct RpcConfig {
    /// The server certificate (and client verification) for 0x04 connections; `None`: TLS
    /// connections are refused.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse every connection that does not start with 0x04 (Nomad's `RequireTLS`).
    pub require_tls: bool,
    /// Raft (0x02) over TLS only from a peer whose certificate names this
    /// (`server.<region>.nomad` with `verify_server_hostname`): a client's or the CLI's
    /// certificate, though signed by the same CA, must not reach the servers' log.
    pub raft_peer_name: Option<String>,
}

impl std::fmt::Debug for RpcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcConfig")
            .field("tls", &self.tls.is_some())
            .field("require_tls", &self.require_tls)
            .field("raft_peer_name", &self.raft_peer_name)
            .finish()
    }
}

type HandlerSlot = Arc<Mutex<Option<Arc<dyn StreamHandler>>>>;

/// The listener on the RPC port (4647).
pub struct RpcListener {
    listener: TcpListener,
    acceptor: Option<nomad_tls::tokio_rustls::TlsAcceptor>,
    require_tls: bool,
    raft_peer_name: Option<String>,
    raft: HandlerSlot,
}

impl std::fmt::Debug for RpcListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcListener")
            .field("addr", &self.listener.local_addr().ok())
            .field("tls", &self.acceptor.is_some())
            .field("require_tls", &self.require_tls)
            .finish_non_exhaustive()
    }
}

impl RpcListener {
    /// Binds `addr` (e.g. `0.0.0.0:4647`, or `127.0.0.1:0` in tests). `require_tls` without
    /// a TLS config is refused as invalid input.
    pub async fn bind(addr: impl ToSocketAddrs, config: RpcConfig) -> std::io::Result<RpcListener> {
        if config.require_tls && config.tls.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "RPC TLS is required but no TLS certificate is configured",
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        Ok(RpcListener {
            listener,
            acceptor: config.tls.map(nomad_tls::acceptor),
            require_tls: config.require_tls,
            raft_peer_name: config.raft_peer_name,
            raft: Arc::new(Mutex::new(None)),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Hands 0x02 (Raft) connections to `handler` from now on; without one they are closed.
    pub fn set_raft_handler(&self, handler: Arc<dyn StreamHandler>) {
        *self.raft.lock().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// Accepts connections until `shutdown` fires, then closes every connection it accepted.
    /// A connection's failure (bad byte, failed handshake, malformed frame) ends only that
    /// connection. If no cluster info was set on `rpc`, it answers as a single server at this
    /// listener's address.
    pub async fn serve(self, rpc: Arc<RpcServer>, mut shutdown: watch::Receiver<bool>) {
        if let Ok(addr) = self.listener.local_addr() {
            rpc.default_cluster(addr.to_string());
        }
        let ctx = Arc::new(ConnCtx {
            acceptor: self.acceptor,
            require_tls: self.require_tls,
            raft_peer_name: self.raft_peer_name,
            raft: self.raft,
            rpc,
            shutdown: shutdown.clone(),
        });
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = crate::stopped(&mut shutdown) => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        conns.spawn(ctx.clone().handle(tcp, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "rpc: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

struct ConnCtx {
    acceptor: Option<nomad_tls::tokio_rustls::TlsAcceptor>,
    require_tls: bool,
    raft_peer_name: Option<String>,
    raft: HandlerSlot,
    rpc: Arc<RpcServer>,
    shutdown: watch::Receiver<bool>,
}

impl ConnCtx {
    async fn handle(self: Arc<Self>, mut tcp: TcpStream, peer: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let peer_s = peer.to_string();
        let Some(byte) = read_byte(&mut tcp, &peer_s).await else {
            return;
        };
        if byte != RPC_TLS {
            if self.require_tls {
                tracing::warn!(peer = %peer_s, "rpc: non-TLS connection attempted with RequireTLS set");
                return;
            }
            return self.dispatch(Box::new(tcp), byte, peer_s).await;
        }
        let Some(acceptor) = &self.acceptor else {
            tracing::warn!(peer = %peer_s, "rpc: TLS connection attempted, server not configured for TLS");
            return;
        };
        let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(peer = %peer_s, error = %e, "rpc: TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::warn!(peer = %peer_s, "rpc: TLS handshake timed out");
                return;
            }
        };
        let Some(inner) = read_byte(&mut tls, &peer_s).await else {
            return;
        };
        if inner == RPC_TLS {
            tracing::warn!(peer = %peer_s, "rpc: TLS inside TLS refused");
            return;
        }
        if let (RPC_RAFT, Some(name)) = (inner, &self.raft_peer_name) {
            let names_server = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .is_some_and(|c| nomad_tls::certificate_names(c, name));
            if !names_server {
                tracing::warn!(
                    peer = %peer_s,
                    "rpc: raft connection refused: the peer's certificate is not valid for {name}"
                );
                return;
            }
        }
        self.dispatch(Box::new(tls), inner, peer_s).await
    }

    async fn dispatch(&self, stream: BoxedStream, byte: u8, peer: String) {
        match byte {
            RPC_NOMAD => {
                self.rpc
                    .clone()
                    .serve_conn(stream, peer, self.shutdown.clone())
                    .await
            }
            RPC_RAFT => {
                let handler = self.raft.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match handler {
                    Some(h) => h.handle(stream).await,
                    None => tracing::warn!(%peer, "rpc: raft connection refused: no raft handler"),
                }
            }
            other => tracing::warn!(%peer, "rpc: unrecognized RPC byte: {other:#04x}"),
        }
    }
}

async fn read_byte<S: tokio::io::AsyncRead + Unpin>(s: &mut S, peer: &str) -> Option<u8> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, s.read_u8()).await {
        Ok(Ok(b)) => Some(b),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "rpc: connection closed before its protocol byte");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "rpc: no protocol byte in time");
            None
        }
    }
}
