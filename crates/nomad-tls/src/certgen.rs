//! `nomad tls ca create` / `nomad tls cert create`: a private CA and agent certificates.
//!
//! Follows Nomad's conventions (facts, not code): ECDSA P-256 keys, random 128-bit serials,
//! CA subject `C=US, ST=CA, L=San Francisco, street=101 Second Street, postalCode=94105,
//! O=HashiCorp Inc., CN=Nomad Agent CA <serial>`, CA key usage cert-sign + CRL-sign +
//! digital-signature, optional critical DNS name constraints; leaf certificates with
//! `CN=<role>.<region>.<domain>`, key usage digital-signature + key-encipherment, extended
//! key usage server-auth + client-auth, and the role's SANs. Keys are written as PKCS#8
//! (`PRIVATE KEY`) where Nomad writes SEC1 (`EC PRIVATE KEY`); both load everywhere.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::pem::{parse_certs, parse_key};
use crate::{provider, TlsError};

/// `nomad tls ca create -days` default (5 years).
pub const DEFAULT_CA_DAYS: u32 = 1825;
/// `nomad tls cert create -days` default (1 year).
pub const DEFAULT_CERT_DAYS: u32 = 365;

/// Options of `nomad tls ca create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaOptions {
    /// `-common-name`; default `Nomad Agent CA <serial>`.
    pub common_name: Option<String>,
    /// `-days` (1825).
    pub days: u32,
    /// `-domain` ("nomad"); names the files and, with `name_constraint`, the permitted zone.
    pub domain: String,
    /// `-name-constraint`: restrict the CA to DNS names under `domain`, `localhost` and
    /// `nomad` (plus any additional domains).
    pub name_constraint: bool,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            common_name: None,
            days: DEFAULT_CA_DAYS,
            domain: "nomad".to_string(),
            name_constraint: false,
        }
    }
}

/// Which agent role a certificate is for (`-server`, `-client`, `-cli`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertRole {
    Server,
    Client,
    Cli,
}

impl CertRole {
    /// `server`, `client` or `cli`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertRole::Server => "server",
            CertRole::Client => "client",
            CertRole::Cli => "cli",
        }
    }
}

/// Options of `nomad tls cert create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertOptions {
    pub role: CertRole,
    /// `-region` ("global").
    pub region: String,
    /// `-domain` ("nomad").
    pub domain: String,
    /// `-days` (365).
    pub days: u32,
    /// `-additional-dnsname` (repeatable; blanks are skipped, values trimmed).
    pub additional_dns: Vec<String>,
    /// `-additional-ipaddress` (repeatable).
    pub additional_ips: Vec<IpAddr>,
}

impl Default for CertOptions {
    fn default() -> Self {
        CertOptions {
            role: CertRole::Server,
            region: "global".to_string(),
            domain: "nomad".to_string(),
            days: DEFAULT_CERT_DAYS,
            additional_dns: Vec::new(),
            additional_ips: Vec::new(),
        }
    }
}

/// `(cert, key)` file names `nomad tls cert create` writes:
/// `<region>-<role>-<domain>.pem` and `<region>-<role>-<domain>-key.pem`,
/// e.g. `global-server-nomad.pem`, `global-server-nomad-key.pem`.
pub fn default_file_names(role: &CertRole, region: &str, domain: &str) -> (String, String) {
    let prefix = format!("{region}-{}-{domain}", role.as_str());
    (format!("{prefix}.pem"), format!("{prefix}-key.pem"))
}

/// `(cert, key)` file names `nomad tls ca create` writes (and `tls cert create` reads by
/// default): `<domain>-agent-ca.pem`, `<domain>-agent-ca-key.pem`.
pub fn default_ca_file_names(domain: &str) -> (String, String) {
    (
        format!("{domain}-agent-ca.pem"),
        format!("{domain}-agent-ca-key.pem"),
    )
}

fn gen_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// A random positive 128-bit serial (top bit cleared so the DER INTEGER needs no padding
/// and stays 16 bytes), and its decimal form for the default CA name.
fn random_serial() -> (SerialNumber, u128) {
    let mut n: u128 = rand::random::<u128>() >> 1;
    if n == 0 {
        n = 1;
    }
    let bytes = n.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    (SerialNumber::from_slice(&bytes[first..]), n)
}

/// `now` .. `now + days`.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Creates a CA certificate and key (`nomad tls ca create`); returns `(cert_pem, key_pem)`.
pub fn create_ca(opts: &CaOptions) -> Result<(String, String), TlsError> {
    create_ca_with_additional_domains(opts, &[])
}

/// [`create_ca`] with `-additional-domain` zones added to the name constraint (ignored
/// unless `opts.name_constraint`).
pub fn create_ca_with_additional_domains(
    opts: &CaOptions,
    additional_domains: &[String],
) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let (serial, serial_num) = random_serial();
    let days = if opts.days == 0 { 365 } else { opts.days };

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 17]), "94105"); // postalCode
    dn.push(DnType::StateOrProvinceName, "CA");
    dn.push(DnType::LocalityName, "San Francisco");
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 9]), "101 Second Street"); // streetAddress
    dn.push(DnType::OrganizationName, "HashiCorp Inc.");
    let cn = match &opts.common_name {
        Some(cn) if !cn.is_empty() => cn.clone(),
        _ => format!("Nomad Agent CA {serial_num}"),
    };
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serial_number = Some(serial);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);

    if opts.name_constraint {
        let mut zones = vec![opts.domain.clone(), "localhost".into(), "nomad".into()];
        zones.extend(additional_domains.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        zones.retain(|z| !z.is_empty() && seen.insert(z.clone()));
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: zones.into_iter().map(GeneralSubtree::DnsName).collect(),
            excluded_subtrees: Vec::new(),
        });
    }

    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The SANs Nomad puts on a `role` certificate: additional names first, then
/// `<role>.<region>.<domain>`, `<role>.<region>.nomad`, `<role>.global.nomad` as applicable,
/// and `localhost`; IPs: additional ones plus `127.0.0.1` for server and client roles.
fn role_sans(opts: &CertOptions) -> (String, Vec<String>, Vec<IpAddr>) {
    let role = opts.role.as_str();
    let region = if opts.region.is_empty() {
        "global"
    } else {
        opts.region.as_str()
    };
    let domain = if opts.domain.is_empty() {
        "nomad"
    } else {
        opts.domain.as_str()
    };
    let name = format!("{role}.{region}.{domain}");
    let region_url = format!("{role}.{region}.nomad");
    let global_url = format!("{role}.global.nomad");

    let mut dns: Vec<String> = opts
        .additional_dns
        .iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    match (region == "global", domain == "nomad") {
        (false, false) => dns.extend([name.clone(), region_url, global_url]),
        (false, true) => dns.extend([region_url, global_url]),
        (true, false) => dns.extend([region_url, name.clone()]),
        (true, true) => dns.push(name.clone()),
    }
    dns.push("localhost".to_string());
    let mut seen = std::collections::HashSet::new();
    dns.retain(|d| seen.insert(d.clone()));

    let mut ips = opts.additional_ips.clone();
    if matches!(opts.role, CertRole::Server | CertRole::Client) {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let mut seen_ip = std::collections::HashSet::new();
    ips.retain(|ip| seen_ip.insert(*ip));
    (name, dns, ips)
}

/// Converts a CA key to rcgen's `KeyPair`. rcgen's ring backend only reads PKCS#8, so
/// SEC1 (`EC PRIVATE KEY`, what Nomad writes) and PKCS#1 (`RSA PRIVATE KEY`) keys are
/// wrapped into a PKCS#8 envelope first.
fn ca_key_pair(ca_key_pem: &str) -> Result<KeyPair, TlsError> {
    let path = std::path::Path::new("CA key");
    let key = parse_key(ca_key_pem.as_bytes(), path).map_err(|e| TlsError::Ca(e.to_string()))?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der())?,
        PrivateKeyDer::Pkcs1(k) => pkcs1_to_pkcs8(k.secret_pkcs1_der()),
        _ => return Err(TlsError::Ca("unsupported CA key type".into())),
    };
    KeyPair::try_from(pkcs8.as_slice())
        .map_err(|e| TlsError::Ca(format!("failed to parse CA key: {e}")))
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        let mut out = vec![0x80 | (bytes.len() - first) as u8];
        out.extend_from_slice(&bytes[first..]);
        out
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// Reads one DER TLV at the start of `data`: `(tag, content, rest)`.
pub(crate) fn der_read(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, TlsError> {
    let bad = || TlsError::Ca("failed to parse CA key: malformed EC PRIVATE KEY".into());
    // ECPrivateKey ::= SEQUENCE { version INTEGER (1), privateKey OCTET STRING,
    //                             [0] parameters OPTIONAL, [1] publicKey OPTIONAL }
    let (tag, body, _) = der_read(sec1).ok_or_else(bad)?;
    if tag != 0x30 {
        return Err(bad());
    }
    let (_, _version, rest) = der_read(body).ok_or_else(bad)?;
    let (tag, private, mut rest) = der_read(rest).ok_or_else(bad)?;
    if tag != 0x04 {
        return Err(bad());
    }
    let mut curve: Option<&[u8]> = None;
    while !rest.is_empty() {
        let (tag, content, r) = der_read(rest).ok_or_else(bad)?;
        if tag == 0xa0 {
            if let Some((0x06, oid, _)) = der_read(content) {
                curve = Some(oid);
            }
        }
        rest = r;
    }
    let curve = match curve {
        Some(oid) => oid,
        None if private.len() == 32 => OID_P256,
        None if private.len() == 48 => OID_P384,
        None => return Err(TlsError::Ca("unsupported EC curve in CA key".into())),
    };
    let mut alg = der_tlv(0x06, OID_EC_PUBLIC_KEY);
    alg.extend(der_tlv(0x06, curve));
    let mut body = der_tlv(0x02, &[0]);
    body.extend(der_tlv(0x30, &alg));
    body.extend(der_tlv(0x04, sec1));
    Ok(der_tlv(0x30, &body))
}

fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let mut alg = der_tlv(0x06, OID_RSA);
    alg.extend([0x05, 0x00]);
    let mut body = der_tlv(0x02, &[0]);
    body.extend(der_tlv(0x30, &alg));
    body.extend(der_tlv(0x04, pkcs1));
    der_tlv(0x30, &body)
}

/// Creates a certificate for `opts.role` signed by the CA (`nomad tls cert create`);
/// returns `(cert_pem, key_pem)`. The result is verified against the CA for
/// `<role>.<region>.<domain>` before it is returned (so a CA name constraint that excludes
/// the certificate's names is an error here, not at handshake time).
pub fn create_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    opts: &CertOptions,
) -> Result<(String, String), TlsError> {
    let ca_path = std::path::Path::new("CA certificate");
    let ca_der = parse_certs(ca_cert_pem.as_bytes(), ca_path)
        .map_err(|e| TlsError::Ca(e.to_string()))?
        .remove(0);
    let ca_key = ca_key_pair(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_der(&ca_der, &ca_key)
        .map_err(|e| TlsError::Ca(format!("failed to parse CA certificate: {e}")))?;

    let (name, dns, ips) = role_sans(opts);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name.clone());
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial().0);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match opts.role {
        CertRole::Cli => vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ],
        _ => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    let mut sans = Vec::with_capacity(dns.len() + ips.len());
    for d in dns {
        let ia5 = d
            .clone()
            .try_into()
            .map_err(|_| TlsError::Generate(format!("invalid DNS name {d:?}")))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(ips.into_iter().map(SanType::IpAddress));
    params.subject_alt_names = sans;
    let days = if opts.days == 0 {
        DEFAULT_CERT_DAYS
    } else {
        opts.days
    };
    validity(&mut params, days);

    let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
    verify_against_ca(&ca_der, cert.der(), &name)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Checks that `leaf` chains to `ca` and is valid for `name` (like Nomad's post-generation
/// check).
fn verify_against_ca(
    ca: &CertificateDer<'static>,
    leaf: &CertificateDer<'static>,
    name: &str,
) -> Result<(), TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| TlsError::Ca(format!("failed to parse CA certificate: {e}")))?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Verify(e.to_string()))?;
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| TlsError::InvalidServerName(name.into()))?;
    verifier
        .verify_server_cert(leaf, &[], &server_name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| TlsError::Verify(e.to_string()))
}
