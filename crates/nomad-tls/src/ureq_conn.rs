//! A ureq 3 connector that speaks TLS with our own rustls `ClientConfig`, so the
//! `-tls-server-name` override, `-ca-path` and the skip-verify verifier behave exactly as in
//! [`crate::client_config`]. ureq's built-in TLS (`TlsConfig`) has no server name override,
//! so we plug in at the transport level instead.

use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::{ClientConnection, StreamOwned};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    TcpConnector, Transport, TransportAdapter,
};

use crate::explain::TlsConnectError;
use crate::{client_config, ClientTlsConfig, TlsError};

/// An ureq 3 `Agent` (default `ureq::config::Config`) whose `https://` connections use
/// the TLS settings of `cfg`. `http://` URLs still work (plain TCP). HTTP `CONNECT`
/// proxies are supported; SOCKS proxies are not.
pub fn ureq_agent(cfg: &ClientTlsConfig) -> Result<ureq::Agent, TlsError> {
    ureq_agent_with_config(cfg, ureq::config::Config::default())
}

/// Like [`ureq_agent`] with a caller-built ureq config (timeouts, user agent...).
/// Its `tls_config` is ignored: TLS comes from `cfg`.
pub fn ureq_agent_with_config(
    cfg: &ClientTlsConfig,
    config: ureq::config::Config,
) -> Result<ureq::Agent, TlsError> {
    let tls = NomadTlsConnector::new(cfg)?;
    let connector =
        ().chain(ConnectProxyConnector::default())
            .chain(TcpConnector::default())
            .chain(tls);
    Ok(ureq::Agent::with_parts(
        config,
        connector,
        DefaultResolver::default(),
    ))
}

/// ureq connector wrapping the chained TCP transport in rustls for `https://` URLs.
pub struct NomadTlsConnector {
    config: Arc<rustls::ClientConfig>,
    tls: ClientTlsConfig,
}

impl NomadTlsConnector {
    /// Builds the rustls client config from `cfg` (see [`crate::client_config`]).
    pub fn new(cfg: &ClientTlsConfig) -> Result<Self, TlsError> {
        // Validate the override once, up front.
        if let Some(name) = &cfg.server_name {
            cfg.rustls_server_name(name)?;
        }
        Ok(NomadTlsConnector {
            config: client_config(cfg)?,
            tls: cfg.clone(),
        })
    }
}

impl fmt::Debug for NomadTlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NomadTlsConnector")
            .field("tls", &self.tls)
            .finish()
    }
}

impl<In: Transport> Connector<In> for NomadTlsConnector {
    type Out = Either<In, NomadTlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().unwrap_or_default().to_string();
        let name = self
            .tls
            .rustls_server_name(&host)
            .map_err(|_| ureq::Error::Tls("invalid TLS server name"))?;
        let server_name = name.to_str().into_owned();
        let conn = ClientConnection::new(self.config.clone(), name).map_err(|e| {
            ureq::Error::Io(wrap_tls_error(
                std::io::Error::other(e),
                &host,
                &server_name,
            ))
        })?;
        let mut sock = TransportAdapter::new(
            Box::new(transport) as Box<dyn Transport>,
            details.current_time.clone(),
        );
        sock.set_timeout(details.timeout);
        let mut stream = StreamOwned { conn, sock };
        // Drive the handshake now so a failure surfaces as a connect error.
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| ureq::Error::from(wrap_tls_error(e, &host, &server_name)))?;
        }
        Ok(Some(Either::B(NomadTlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream,
            host,
            server_name,
        })))
    }
}

/// Puts a rustls error carried by an io::Error into a [`TlsConnectError`] (keeping the kind),
/// so [`crate::explain_handshake_error`] knows which host was being verified.
fn wrap_tls_error(e: std::io::Error, host: &str, server_name: &str) -> std::io::Error {
    let kind = e.kind();
    let is_rustls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if !is_rustls {
        return e;
    }
    match e.into_inner().map(|b| b.downcast::<rustls::Error>()) {
        Some(Ok(err)) => std::io::Error::new(
            kind,
            TlsConnectError {
                host: host.to_string(),
                server_name: server_name.to_string(),
                error: *err,
            },
        ),
        // Unreachable given the check above; keep a plain error rather than panic.
        _ => std::io::Error::new(kind, "tls error"),
    }
}

/// The TLS transport produced by [`NomadTlsConnector`].
pub struct NomadTlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
    host: String,
    server_name: String,
}

impl fmt::Debug for NomadTlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NomadTlsTransport")
            .field("host", &self.host)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Transport for NomadTlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream
            .write_all(output)
            .and_then(|_| self.stream.flush())
            .map_err(|e| wrap_tls_error(e, &self.host, &self.server_name))?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self
            .stream
            .read(input)
            .map_err(|e| wrap_tls_error(e, &self.host, &self.server_name))?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
