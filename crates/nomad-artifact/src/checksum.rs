//! go-getter's `checksum` option: `type:hex`, or a bare hex digest whose length names the type.

use digest::DynDigest;

use crate::{ArtifactError, Ctx};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algo {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algo::Md5 => 32,
            Algo::Sha1 => 40,
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
        }
    }

    pub(crate) fn hasher(self) -> Box<dyn DynDigest> {
        match self {
            Algo::Md5 => Box::new(md5::Md5::default()),
            Algo::Sha1 => Box::new(sha1::Sha1::default()),
            Algo::Sha256 => Box::new(sha2::Sha256::default()),
            Algo::Sha512 => Box::new(sha2::Sha512::default()),
        }
    }
}

/// An expected digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) algo: Algo,
    /// Lower-case hex.
    pub(crate) hex: String,
}

impl Expected {
    pub(crate) fn parse(ctx: &Ctx, value: &str) -> Result<Expected, ArtifactError> {
        let bad = |reason: &str| ArtifactError::InvalidOption {
            artifact: ctx.artifact.clone(),
            key: "checksum".into(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let value_trimmed = value.trim();
        let (algo, hex) = match value_trimmed.split_once(':') {
            Some((kind, hex)) => {
                let algo = match kind.to_ascii_lowercase().as_str() {
                    "md5" => Algo::Md5,
                    "sha1" => Algo::Sha1,
                    "sha256" => Algo::Sha256,
                    "sha512" => Algo::Sha512,
                    "file" => return Err(bad("checksum files are not supported")),
                    _ => {
                        return Err(bad(
                            "unsupported checksum type (want md5, sha1, sha256 or sha512)",
                        ))
                    }
                };
                (algo, hex)
            }
            None => {
                let algo = match value_trimmed.len() {
                    32 => Algo::Md5,
                    40 => Algo::Sha1,
                    64 => Algo::Sha256,
                    128 => Algo::Sha512,
                    _ => return Err(bad("cannot tell the checksum type from its length")),
                };
                (algo, value_trimmed)
            }
        };
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("checksum is not hexadecimal"));
        }
        if hex.len() != algo.hex_len() {
            return Err(bad(&format!(
                "a {} checksum has {} hex digits, not {}",
                algo.name(),
                algo.hex_len(),
                hex.len()
            )));
        }
        Ok(Expected {
            algo,
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// Compares a finished digest with the expected one.
    pub(crate) fn verify(&self, ctx: &Ctx, digest: &[u8]) -> Result<(), ArtifactError> {
        let actual = to_hex(digest);
        if actual == self.hex {
            Ok(())
        } else {
            Err(ArtifactError::ChecksumMismatch {
                artifact: ctx.artifact.clone(),
                kind: self.algo.name(),
                expected: self.hex.clone(),
                actual,
            })
        }
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            artifact: "src".into(),
        }
    }

    fn digest(algo: Algo, data: &[u8]) -> String {
        let mut h = algo.hasher();
        h.update(data);
        to_hex(&h.finalize())
    }

    #[test]
    fn known_digests() {
        assert_eq!(
            digest(Algo::Md5, b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            digest(Algo::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            digest(Algo::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest(Algo::Sha512, b"abc").len(), 128);
    }

    #[test]
    fn parsing() {
        let e = Expected::parse(
            &ctx(),
            "SHA256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        )
        .unwrap();
        assert_eq!(e.algo, Algo::Sha256);
        assert!(e.hex.starts_with("ba78"));
        let e = Expected::parse(&ctx(), "900150983cd24fb0d6963f7d28e17f72").unwrap();
        assert_eq!(e.algo, Algo::Md5);
        assert!(Expected::parse(&ctx(), "sha256:abc").is_err());
        assert!(Expected::parse(&ctx(), "crc32:abcd").is_err());
        assert!(Expected::parse(&ctx(), "file:http://x/SHASUMS").is_err());
        assert!(Expected::parse(&ctx(), "md5:zz0150983cd24fb0d6963f7d28e17f72").is_err());
    }

    #[test]
    fn mismatch_message() {
        let e = Expected::parse(&ctx(), "md5:00000000000000000000000000000000").unwrap();
        let err = e.verify(&ctx(), &[0xab; 16]).unwrap_err().to_string();
        assert_eq!(
            err,
            "checksum mismatch for \"src\": expected md5 00000000000000000000000000000000, got abababababababababababababababab"
        );
    }
}
