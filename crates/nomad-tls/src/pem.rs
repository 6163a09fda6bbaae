//! Reading PEM certificates and keys from files, with errors that name the file.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use crate::TlsError;

pub(crate) fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// All `CERTIFICATE` blocks of a PEM buffer; other blocks are ignored.
pub(crate) fn parse_certs(
    data: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(data) {
        let (kind, der) = item.map_err(|e| TlsError::InvalidPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if kind == SectionKind::Certificate {
            out.push(CertificateDer::from(der));
        }
    }
    if out.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// Reads a certificate chain file (at least one certificate).
pub(crate) fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read_file(what, path)?;
    parse_certs(&data, path)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM buffer.
pub(crate) fn parse_key(data: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(data) {
        let (kind, der) = item.map_err(|e| TlsError::InvalidPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        match kind {
            SectionKind::PrivateKey => return Ok(PrivatePkcs8KeyDer::from(der).into()),
            SectionKind::RsaPrivateKey => return Ok(PrivatePkcs1KeyDer::from(der).into()),
            SectionKind::EcPrivateKey => return Ok(PrivateSec1KeyDer::from(der).into()),
            _ => {}
        }
    }
    Err(TlsError::NoPrivateKey {
        path: path.to_path_buf(),
    })
}

pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = read_file("key file", path)?;
    parse_key(&data, path)
}

/// Every regular file below `dir` (recursively, sorted), like go-rootcerts' LoadCAPath.
pub(crate) fn files_in_dir(dir: &Path) -> Result<Vec<PathBuf>, TlsError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| TlsError::Read {
            what: "CA path",
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| TlsError::Read {
                what: "CA path",
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            // Follow symlinks (c_rehash style directories are full of them).
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) if m.is_file() => out.push(path),
                Ok(_) => {}
                Err(source) => {
                    return Err(TlsError::Read {
                        what: "CA file",
                        path,
                        source,
                    })
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
