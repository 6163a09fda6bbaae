//! Client side: the CLI's (and API clients') TLS settings.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::pem::{files_in_dir, load_certs, load_key, parse_certs, read_file};
use crate::{provider, TlsError};

/// The CLI's TLS settings (`-ca-cert`, `-ca-path`, `-client-cert`, `-client-key`,
/// `-tls-server-name`, `-tls-skip-verify`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsConfig {
    /// `-ca-cert` / `NOMAD_CACERT`: a PEM file with the CA certificate(s) to trust.
    pub ca_cert: Option<PathBuf>,
    /// `-ca-path` / `NOMAD_CAPATH`: a directory; every file in it (recursively) must be PEM
    /// and all its certificates are trusted.
    pub ca_path: Option<PathBuf>,
    /// `-client-cert` / `NOMAD_CLIENT_CERT`: client certificate chain for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// `-client-key` / `NOMAD_CLIENT_KEY`: the key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// `-tls-server-name` / `NOMAD_TLS_SERVER_NAME`: the name to send as SNI and to verify
    /// the server's certificate against, instead of the address's host.
    pub server_name: Option<String>,
    /// `-tls-skip-verify` / `NOMAD_SKIP_VERIFY`: accept any server certificate.
    /// **Insecure**: anyone on the path can impersonate the server.
    pub skip_verify: bool,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` / `0 f F FALSE false False`;
/// anything else is `None`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl ClientTlsConfig {
    /// Reads `NOMAD_CACERT`, `NOMAD_CAPATH`, `NOMAD_CLIENT_CERT`, `NOMAD_CLIENT_KEY`,
    /// `NOMAD_TLS_SERVER_NAME` and `NOMAD_SKIP_VERIFY` (Go ParseBool; an unparsable value
    /// is ignored, like the Go API client does). Empty variables count as unset.
    pub fn from_env() -> Self {
        ClientTlsConfig {
            ca_cert: env_path("NOMAD_CACERT"),
            ca_path: env_path("NOMAD_CAPATH"),
            client_cert: env_path("NOMAD_CLIENT_CERT"),
            client_key: env_path("NOMAD_CLIENT_KEY"),
            server_name: std::env::var("NOMAD_TLS_SERVER_NAME")
                .ok()
                .filter(|v| !v.is_empty()),
            skip_verify: std::env::var("NOMAD_SKIP_VERIFY")
                .ok()
                .and_then(|v| parse_go_bool(&v))
                .unwrap_or(false),
        }
    }

    /// The name to use for SNI and certificate verification when connecting to `host`:
    /// the `server_name` override if set, else `host` (IPv6 brackets removed).
    pub fn server_name(&self, host: &str) -> String {
        match &self.server_name {
            Some(name) => name.clone(),
            None => host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
                .to_string(),
        }
    }

    /// A rustls `ServerName` for [`Self::server_name`].
    pub fn rustls_server_name(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = self.server_name(host);
        ServerName::try_from(name.clone()).map_err(|_| TlsError::InvalidServerName(name))
    }

    /// Where the trusted CAs come from, for messages ("the CA in /x/ca.pem").
    pub(crate) fn ca_description(&self) -> Option<String> {
        match (&self.ca_cert, &self.ca_path) {
            (Some(f), Some(d)) => Some(format!("the CA in {} or {}", f.display(), d.display())),
            (Some(f), None) => Some(format!("the CA in {}", f.display())),
            (None, Some(d)) => Some(format!("the CAs in {}", d.display())),
            (None, None) => None,
        }
    }
}

/// Builds a rustls `ClientConfig`:
///
/// * roots: the certificates of `ca_cert` plus those of every file under `ca_path`; when
///   neither is set, the Mozilla roots of `webpki-roots`;
/// * `skip_verify`: a verifier that accepts **any** server certificate (insecure; handshake
///   signatures are still checked, so the connection is encrypted to whoever answered);
/// * `client_cert` + `client_key`: presented when the server asks (both or neither).
///
/// The `server_name` override is not part of a `ClientConfig`: pass
/// `cfg.rustls_server_name(host)` when connecting (the [`crate::ureq_agent`] does this).
pub fn client_config(cfg: &ClientTlsConfig) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;

    // Load the roots even with skip_verify so a bad path is still reported.
    let roots = load_roots(cfg)?;
    let builder = if cfg.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(InsecureVerifier { provider }))
    } else {
        builder.with_root_certificates(roots)
    };

    let config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs("client certificate file", cert)?;
            let key_der = load_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    other => TlsError::InvalidKey {
                        path: key.clone(),
                        reason: other.to_string(),
                    },
                })?
        }
        (Some(_), None) => {
            return Err(TlsError::IncompleteClientCert {
                given: "certificate",
            })
        }
        (None, Some(_)) => return Err(TlsError::IncompleteClientCert { given: "key" }),
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn load_roots(cfg: &ClientTlsConfig) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let mut add = |certs: Vec<CertificateDer<'static>>, path: &std::path::Path| {
        for cert in certs {
            roots.add(cert).map_err(|e| TlsError::InvalidCertificate {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        Ok::<(), TlsError>(())
    };
    if let Some(file) = &cfg.ca_cert {
        add(load_certs("CA file", file)?, file)?;
    }
    if let Some(dir) = &cfg.ca_path {
        for file in files_in_dir(dir)? {
            let data = read_file("CA file", &file)?;
            add(parse_certs(&data, &file)?, &file)?;
        }
    }
    if cfg.ca_cert.is_none() && cfg.ca_path.is_none() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(roots)
}

/// Accepts every server certificate (`-tls-skip-verify`). **Insecure.**
#[derive(Debug)]
struct InsecureVerifier {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for InsecureVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
