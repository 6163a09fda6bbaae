//! TLS for the Nomad agent (HTTP listener) and the CLI (HTTPS client), plus
//! certificate generation for `nomad tls ca create` / `nomad tls cert create`.
//!
//! Everything uses rustls with the `ring` crypto provider.
//!
//! * Server side: [`server_config`] builds a `rustls::ServerConfig` from the agent's
//!   `tls { cert_file, key_file, ca_file, verify_https_client }` settings, and
//!   [`acceptor`] wraps it into a `tokio_rustls::TlsAcceptor`.
//! * Client side: [`ClientTlsConfig`] holds the CLI's `-ca-cert`, `-ca-path`,
//!   `-client-cert`, `-client-key`, `-tls-server-name` and `-tls-skip-verify` settings
//!   (or their `NOMAD_*` environment variables). [`client_config`] turns them into a
//!   `rustls::ClientConfig` (for websockets and other clients), and [`ureq_agent`] into a
//!   ready `ureq::Agent` that also honours the server name override.
//! * Certificates: [`create_ca`] and [`create_cert`] produce PEM strings the way
//!   Nomad's `tls` commands do (ECDSA P-256 keys, CA valid 1825 days, certificates 365 days,
//!   SANs `<role>.<region>.nomad`, `localhost`, `127.0.0.1`).
//! * Errors: [`TlsError`] names the file and the cause; [`explain_handshake_error`] turns a
//!   handshake failure into a sentence that says which certificate failed and why.

mod certgen;
mod client;
mod error;
mod explain;
mod pem;
mod server;
mod ureq_conn;

#[cfg(test)]
mod tests;

pub use certgen::{
    create_ca, create_ca_with_additional_domains, create_cert, default_ca_file_names,
    default_file_names, CaOptions, CertOptions, CertRole, DEFAULT_CA_DAYS, DEFAULT_CERT_DAYS,
};
pub use client::{client_config, parse_go_bool, ClientTlsConfig};
pub use error::TlsError;
pub use explain::{explain_handshake_error, TlsConnectError};
pub use server::{acceptor, certificate_names, server_config, ServerTlsConfig};
pub use ureq_conn::{ureq_agent, ureq_agent_with_config, NomadTlsConnector};

/// Re-exports so callers need not depend on the exact rustls / tokio-rustls versions.
pub use rustls;
pub use tokio_rustls;

use std::sync::Arc;

/// The crypto provider used everywhere in this crate (ring).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
