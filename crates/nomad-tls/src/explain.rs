//! Human-readable explanations of TLS handshake failures.

use std::error::Error as StdError;

use rustls::{AlertDescription, CertificateError};

use crate::ClientTlsConfig;

/// A TLS failure on a connection made by [`crate::ureq_agent`], with the host that was
/// dialled and the name its certificate was checked against. It travels inside the
/// `std::io::Error` of `ureq::Error::Io`.
#[derive(Debug)]
pub struct TlsConnectError {
    /// The host of the URL (e.g. `127.0.0.1`).
    pub host: String,
    /// The name used for SNI and verification (the `-tls-server-name` override or the host).
    pub server_name: String,
    /// The rustls error.
    pub error: rustls::Error,
}

impl std::fmt::Display for TlsConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tls: {} (connecting to {}", self.error, self.host)?;
        if self.server_name != self.host {
            write!(f, " as {}", self.server_name)?;
        }
        write!(f, ")")
    }
}

impl StdError for TlsConnectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.error)
    }
}

/// Digs the rustls error (and the host context if present) out of an error chain:
/// `ureq::Error::Io(io::Error(TlsConnectError | rustls::Error))`, a bare `io::Error`,
/// a `rustls::Error`, or anything whose `source()` chain leads to one of those.
fn find_rustls<'a>(
    err: &'a (dyn StdError + 'static),
) -> Option<(&'a rustls::Error, Option<&'a TlsConnectError>)> {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<TlsConnectError>() {
            return Some((&t.error, Some(t)));
        }
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some((r, None));
        }
        if let Some(ureq::Error::Io(io)) = e.downcast_ref::<ureq::Error>() {
            if let Some(found) = io.get_ref().and_then(|inner| find_rustls(inner)) {
                return Some(found);
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(found) = io.get_ref().and_then(|inner| find_rustls(inner)) {
                return Some(found);
            }
        }
        cur = e.source();
    }
    None
}

/// Turns a TLS/handshake error into a sentence saying which certificate failed and why,
/// phrased like Go's crypto/tls errors, with a hint at the flag that fixes it, e.g.
/// `x509: certificate signed by unknown authority (the server's certificate for 127.0.0.1 is
/// not signed by the CA in /x/ca.pem)`. Best effort: errors that are not TLS errors are
/// returned as their `Display`.
pub fn explain_handshake_error(err: &(dyn StdError + 'static), cfg: &ClientTlsConfig) -> String {
    let Some((tls, ctx)) = find_rustls(err) else {
        return err.to_string();
    };
    let host = ctx.map(|c| c.host.as_str());
    let name = ctx.map(|c| c.server_name.as_str());
    let for_host = match (host, name) {
        (Some(h), Some(n)) if h != n => format!(" for {h} (verified as {n})"),
        (Some(h), _) => format!(" for {h}"),
        _ => String::new(),
    };

    match tls {
        rustls::Error::InvalidCertificate(ce) => explain_cert_error(ce, cfg, &for_host, name),
        rustls::Error::AlertReceived(alert) => explain_alert(*alert, cfg),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "tls: first record does not look like a TLS handshake ({tls}); is the server \
             serving plain HTTP? Use an http:// address, or enable TLS on the agent"
        ),
        rustls::Error::NoCertificatesPresented => {
            "tls: the server presented no certificate".to_string()
        }
        other => format!("tls: {other}"),
    }
}

fn explain_cert_error(
    ce: &CertificateError,
    cfg: &ClientTlsConfig,
    for_host: &str,
    name: Option<&str>,
) -> String {
    match ce {
        CertificateError::UnknownIssuer => match cfg.ca_description() {
            Some(ca) => format!(
                "x509: certificate signed by unknown authority (the server's certificate{for_host} \
                 is not signed by {ca})"
            ),
            None => format!(
                "x509: certificate signed by unknown authority (the server's certificate{for_host} \
                 is not signed by a well-known CA and no CA is configured; set -ca-cert or \
                 NOMAD_CACERT to the cluster's CA file)"
            ),
        },
        CertificateError::NotValidForName => {
            let name = name.unwrap_or("the requested name");
            format!(
                "x509: certificate is not valid for {name} (the server's certificate{for_host} \
                 does not name it; connect with a name it lists or set -tls-server-name, e.g. \
                 server.<region>.nomad)"
            )
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = expected.to_str();
            format!(
                "x509: certificate is valid for {}, not {expected} (the server's \
                 certificate{for_host}; connect with one of those names or set -tls-server-name \
                 / NOMAD_TLS_SERVER_NAME)",
                if presented.is_empty() {
                    "no names".to_string()
                } else {
                    presented
                        .iter()
                        .map(|p| clean_presented(p))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
            "x509: certificate has expired or is not yet valid (the server's certificate{for_host} \
             has expired: {ce})"
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
            "x509: certificate has expired or is not yet valid (the server's certificate{for_host} \
             is not valid yet: {ce}; check the clocks)"
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!(
                "x509: certificate specifies an incompatible key usage (the server's \
                 certificate{for_host} is not valid for TLS server authentication)"
            )
        }
        CertificateError::BadSignature | CertificateError::BadEncoding => {
            format!("x509: the server's certificate{for_host} is malformed or badly signed: {ce}")
        }
        other => format!("x509: the server's certificate{for_host} was rejected: {other}"),
    }
}

/// rustls renders presented names as `DnsName("x")` / `IpAddress(1.2.3.4)`; keep the name.
fn clean_presented(p: &str) -> String {
    let inner = p
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(p);
    inner.trim_matches('"').to_string()
}

fn explain_alert(alert: AlertDescription, cfg: &ClientTlsConfig) -> String {
    let have_client_cert = cfg.client_cert.is_some();
    match alert {
        AlertDescription::CertificateRequired => {
            "remote error: tls: certificate required (the server requires a client certificate; \
             set -client-cert and -client-key, or NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY)"
                .to_string()
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnknownCA
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateExpired
        | AlertDescription::AccessDenied
            if have_client_cert =>
        {
            let cert = cfg
                .client_cert
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!(
                "remote error: tls: {} (the server rejected the client certificate {cert}; it \
                 must be signed by the agent's ca_file and valid for client authentication)",
                alert_text(alert)
            )
        }
        AlertDescription::HandshakeFailure | AlertDescription::BadCertificate
            if !have_client_cert =>
        {
            format!(
                "remote error: tls: {} (the server may require a client certificate; set \
                 -client-cert and -client-key)",
                alert_text(alert)
            )
        }
        other => format!("remote error: tls: {}", alert_text(other)),
    }
}

/// Go's wording for the common alerts.
fn alert_text(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::BadCertificate => "bad certificate".into(),
        AlertDescription::UnknownCA => "unknown certificate authority".into(),
        AlertDescription::CertificateUnknown => "unknown certificate".into(),
        AlertDescription::CertificateExpired => "expired certificate".into(),
        AlertDescription::UnsupportedCertificate => "unsupported certificate".into(),
        AlertDescription::HandshakeFailure => "handshake failure".into(),
        AlertDescription::AccessDenied => "access denied".into(),
        AlertDescription::CertificateRequired => "certificate required".into(),
        AlertDescription::ProtocolVersion => "protocol version not supported".into(),
        other => format!("{other:?}"),
    }
}
