//! Server side: the agent's HTTPS listener.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::pem::{load_certs, load_key};
use crate::{provider, TlsError};

/// The agent's `tls { ... }` settings that matter for one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTlsConfig {
    /// `ca_file`: the CA that signs client certificates (required with `verify_https_client`).
    pub ca_file: Option<PathBuf>,
    /// `cert_file`: the server certificate chain (leaf first), PEM.
    pub cert_file: PathBuf,
    /// `key_file`: the server private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub key_file: PathBuf,
    /// `verify_https_client`: require a client certificate signed by `ca_file`.
    pub verify_https_client: bool,
}

/// Builds a rustls `ServerConfig` for the agent's HTTPS listener.
///
/// * the certificate chain and key are read from `cert_file` / `key_file`, and the key must
///   match the leaf certificate;
/// * with `verify_https_client`, clients must present a certificate signed by `ca_file`
///   (mutual TLS); without it no client certificate is requested;
/// * no ALPN protocol is advertised (the HTTP layer speaks HTTP/1.1).
pub fn server_config(cfg: &ServerTlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let chain = load_certs("certificate file", &cfg.cert_file)?;
    let key = load_key(&cfg.key_file)?;

    // Load the key first so a broken key is reported as such, and compare it with the
    // certificate's public key so a mismatch names both files.
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::InvalidKey {
            path: cfg.key_file.clone(),
            reason: e.to_string(),
        })?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cfg.cert_file.clone(),
                key: cfg.key_file.clone(),
            })
        }
        Err(e) => {
            return Err(TlsError::InvalidCertificate {
                path: cfg.cert_file.clone(),
                reason: e.to_string(),
            })
        }
    }

    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;

    let builder = if cfg.verify_https_client {
        let ca_file = cfg
            .ca_file
            .as_ref()
            .ok_or(TlsError::ClientVerifyWithoutCa)?;
        let roots = root_store_from_file(ca_file)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::InvalidCertificate {
                path: ca_file.clone(),
                reason: e.to_string(),
            })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        // Still validate ca_file when given so a typo is reported at startup.
        if let Some(ca_file) = &cfg.ca_file {
            root_store_from_file(ca_file)?;
        }
        builder.with_no_client_auth()
    };

    let config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cfg.cert_file.clone(),
            key: cfg.key_file.clone(),
        },
        other => TlsError::InvalidKey {
            path: cfg.key_file.clone(),
            reason: other.to_string(),
        },
    })?;
    Ok(Arc::new(config))
}

/// Wraps a server config into a tokio-rustls acceptor:
/// `acceptor(cfg).accept(tcp_stream).await` performs the handshake.
pub fn acceptor(cfg: Arc<rustls::ServerConfig>) -> tokio_rustls::TlsAcceptor {
    tokio_rustls::TlsAcceptor::from(cfg)
}

/// Whether a peer's certificate (DER, already verified against the CA by the handshake)
/// names `name` (a DNS name such as `server.global.nomad`, or an IP) among its subject
/// alternative names. The RPC listener uses it to keep client and CLI certificates off the
/// servers' Raft port, as Nomad does with `verify_server_hostname`.
pub fn certificate_names(cert: &rustls_pki_types::CertificateDer<'_>, name: &str) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(sn) = rustls_pki_types::ServerName::try_from(name) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&sn).is_ok()
}

/// A root store holding every certificate of one PEM file.
pub(crate) fn root_store_from_file(path: &std::path::Path) -> Result<RootCertStore, TlsError> {
    let certs = load_certs("CA file", path)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::InvalidCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}
