use std::path::PathBuf;

/// Errors from loading TLS material, building TLS configurations and generating
/// certificates. Every message names the file involved and the cause.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read (`what` is e.g. "CA file", "certificate file").
    #[error("failed to read {what} {path:?}: {}", io_message(.source))]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A PEM file contained no `CERTIFICATE` block.
    #[error("no certificates found in {path:?}")]
    NoCertificates { path: PathBuf },

    /// A PEM file contained no private key block.
    #[error("no private key found in {path:?}")]
    NoPrivateKey { path: PathBuf },

    /// A PEM file could not be parsed.
    #[error("failed to parse PEM in {path:?}: {reason}")]
    InvalidPem { path: PathBuf, reason: String },

    /// The private key is not usable (unsupported type, corrupt DER...).
    #[error("invalid private key in {path:?}: {reason}")]
    InvalidKey { path: PathBuf, reason: String },

    /// A certificate could not be used as a trust anchor / is malformed.
    #[error("invalid certificate in {path:?}: {reason}")]
    InvalidCertificate { path: PathBuf, reason: String },

    /// The private key does not belong to the certificate.
    #[error("private key in {key:?} does not match certificate {cert:?}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    /// `verify_https_client` was set without a `ca_file`.
    #[error("verify_https_client requires ca_file to be set: client certificates are verified against that CA")]
    ClientVerifyWithoutCa,

    /// Only one of the client certificate / key was given.
    #[error("both a client certificate and a client key are required (got only the {given}); set -client-cert and -client-key (NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY)")]
    IncompleteClientCert { given: &'static str },

    /// The TLS server name override (or URL host) is not a valid DNS name or IP address.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),

    /// rustls rejected the configuration.
    #[error("TLS configuration error: {0}")]
    Config(String),

    /// Parsing the CA certificate or CA key given to `create_cert` failed.
    #[error("error reading CA: {0}")]
    Ca(String),

    /// Certificate or key generation failed.
    #[error("error generating certificate: {0}")]
    Generate(String),

    /// A freshly generated certificate did not verify against its CA
    /// (for example a name constraint of the CA excludes one of its names).
    #[error("generated certificate does not verify against the CA: {0}")]
    Verify(String),
}

/// Renders an io::Error the way Go does (no " (os error N)" suffix, lower-case start
/// kept as the OS gives it).
pub(crate) fn io_message(err: &std::io::Error) -> String {
    let s = err.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}
