//! Byte streams handed between the listener and protocol handlers, and the raw dialer.

use std::sync::Arc;
use std::time::Duration;

use nomad_tls::rustls;
use nomad_tls::{ClientTlsConfig, TlsConnectError, TlsError};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use nomad_client::BoxFuture;

use crate::RPC_TLS;

/// A bidirectional byte stream (TCP, or TLS over TCP).
pub trait AsyncReadWrite: AsyncRead + AsyncWrite {}

impl<T: AsyncRead + AsyncWrite + ?Sized> AsyncReadWrite for T {}

/// A connection whose protocol byte has already been read (by the listener) or written (by
/// [`dial`]); what follows is the protocol's own bytes.
pub type BoxedStream = Box<dyn AsyncReadWrite + Send + Unpin>;

/// Takes over connections of one protocol (e.g. Raft, byte 0x02) from the [`crate::RpcListener`].
/// The future owns the stream and runs until the handler is done with it.
pub trait StreamHandler: Send + Sync + 'static {
    /// Serves one connection.
    fn handle(&self, stream: BoxedStream) -> BoxFuture<'static, ()>;
}

/// How long [`dial`] waits for the TCP connect and the TLS handshake, each.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Client-side TLS for RPC: a rustls config built once, plus the name to verify servers by.
#[derive(Clone)]
pub struct RpcTls {
    config: Arc<rustls::ClientConfig>,
    settings: ClientTlsConfig,
}

impl std::fmt::Debug for RpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RpcTls {
    /// Loads the CA and client certificate of `settings`. With `settings.server_name` set (the
    /// agent sets `server.<region>.nomad` for `verify_server_hostname`), every server's
    /// certificate must name it; without, it must name the host dialled (as in `host:4647`).
    pub fn new(settings: &ClientTlsConfig) -> Result<RpcTls, TlsError> {
        Ok(RpcTls {
            config: nomad_tls::client_config(settings)?,
            settings: settings.clone(),
        })
    }

    /// The settings this was built from.
    pub fn settings(&self) -> &ClientTlsConfig {
        &self.settings
    }
}

/// The host part of `host:port` / `[v6]:port` (brackets removed).
pub(crate) fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => addr,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Connects to `addr` (`host:port`), performs the TLS handshake when `tls` is given (after
/// sending [`RPC_TLS`]), and sends `protocol` (e.g. [`crate::RPC_NOMAD`], [`crate::RPC_RAFT`]).
/// The stream returned carries the protocol's own bytes. Errors name `addr`.
pub async fn dial(addr: &str, protocol: u8, tls: Option<&RpcTls>) -> std::io::Result<BoxedStream> {
    let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{addr}: {e}"));
    let mut tcp = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(r) => r.map_err(named)?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{addr}: connect timed out after {DIAL_TIMEOUT:?}"),
            ))
        }
    };
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        tcp.write_all(&[protocol]).await.map_err(named)?;
        return Ok(Box::new(tcp));
    };
    tcp.write_all(&[RPC_TLS]).await.map_err(named)?;
    let host = host_of(addr);
    let server_name = tls
        .settings
        .rustls_server_name(host)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let connector = nomad_tls::tokio_rustls::TlsConnector::from(tls.config.clone());
    let handshake = connector.connect(server_name, tcp);
    let mut stream = match tokio::time::timeout(DIAL_TIMEOUT, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(explain_tls(e, addr, host, tls)),
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{addr}: TLS handshake timed out after {DIAL_TIMEOUT:?}"),
            ))
        }
    };
    stream.write_all(&[protocol]).await.map_err(named)?;
    stream.flush().await.map_err(named)?;
    Ok(Box::new(stream))
}

/// Turns a handshake failure into nomad-tls's explanation, naming the server.
fn explain_tls(e: std::io::Error, addr: &str, host: &str, tls: &RpcTls) -> std::io::Error {
    let kind = e.kind();
    let rustls_err = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    let msg = match rustls_err {
        Some(error) => {
            let ctx = TlsConnectError {
                host: host.to_string(),
                server_name: tls.settings.server_name(host),
                error,
            };
            nomad_tls::explain_handshake_error(&ctx, &tls.settings)
        }
        None => e.to_string(),
    };
    std::io::Error::new(kind, format!("{addr}: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:4647"), "127.0.0.1");
        assert_eq!(host_of("[::1]:4647"), "::1");
        assert_eq!(host_of("nomad.example.com:4647"), "nomad.example.com");
        assert_eq!(host_of("nomad.example.com"), "nomad.example.com");
    }
}
