//! Parsing go-getter source strings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::{ArtifactError, Ctx};

/// Query parameters that are options to the getter, not part of the URL.
const GETTER_KEYS: [&str; 3] = ["checksum", "archive", "filename"];

/// Where the bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// An `http(s)://` URL with the getter options removed from its query.
    Http(String),
    /// A local path (relative paths are relative to the task dir).
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) source: Source,
    /// The last path segment (decoded): the file name in mode `any`, and what the archive type
    /// is detected from.
    pub(crate) name: String,
    /// URL query options merged over the request's options.
    pub(crate) options: BTreeMap<String, String>,
}

pub(crate) fn parse(
    ctx: &Ctx,
    raw: &str,
    options: &BTreeMap<String, String>,
) -> Result<Parsed, ArtifactError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(invalid(ctx, "source is empty"));
    }
    let (forced, rest) = split_forced(raw);
    let lower = rest.to_ascii_lowercase();
    let is_http = lower.starts_with("http://") || lower.starts_with("https://");
    let is_file_url = lower.starts_with("file://");
    let kind = match forced.as_deref() {
        Some("http") | Some("https") if is_http => Kind::Http,
        Some("http") | Some("https") => {
            return Err(invalid(
                ctx,
                "the http getter needs an http:// or https:// URL",
            ))
        }
        Some("file") => Kind::File,
        Some(other) => {
            return Err(ArtifactError::UnsupportedGetter {
                artifact: ctx.artifact.clone(),
                getter: other.to_string(),
            })
        }
        None if is_http => Kind::Http,
        None if is_file_url || rest.starts_with('/') => Kind::File,
        None => {
            if let Some(scheme_end) = rest.find("://") {
                return Err(ArtifactError::UnsupportedGetter {
                    artifact: ctx.artifact.clone(),
                    getter: rest[..scheme_end].to_ascii_lowercase(),
                });
            }
            // go-getter's detectors would turn these into git/hg/s3/gcs sources.
            for (prefix, getter) in [
                ("github.com/", "git"),
                ("gitlab.com/", "git"),
                ("bitbucket.org/", "git"),
                ("git@", "git"),
                ("s3.amazonaws.com/", "s3"),
                ("www.googleapis.com/storage/", "gcs"),
            ] {
                if lower.starts_with(prefix) {
                    return Err(ArtifactError::UnsupportedGetter {
                        artifact: ctx.artifact.clone(),
                        getter: getter.to_string(),
                    });
                }
            }
            Kind::File
        }
    };

    // Drop a fragment, split off the query.
    let rest = rest.split_once('#').map_or(rest, |(a, _)| a);
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut merged = BTreeMap::new();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k, true);
        if GETTER_KEYS.contains(&key.as_str()) {
            // The first value wins, as with Go's url.Values.Get.
            merged.entry(key).or_insert_with(|| percent_decode(v, true));
        } else {
            kept.push(pair);
        }
    }
    for (k, v) in options {
        merged.entry(k.clone()).or_insert_with(|| v.clone());
    }

    match kind {
        Kind::Http => {
            let scheme_end = base.find("://").map_or(0, |i| i + 3);
            let after_scheme = &base[scheme_end..];
            let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
            if after_scheme.is_empty() || after_scheme.starts_with('/') {
                return Err(invalid(ctx, "URL has no host"));
            }
            let name = percent_decode(path.rsplit('/').next().unwrap_or(""), false);
            let mut url = base.to_string();
            if !kept.is_empty() {
                url.push('?');
                url.push_str(&kept.join("&"));
            }
            Ok(Parsed {
                source: Source::Http(url),
                name,
                options: merged,
            })
        }
        Kind::File => {
            let path = if base.len() >= 7 && base[..7].eq_ignore_ascii_case("file://") {
                let p = &base[7..];
                // file://localhost/x and file:///x both mean /x.
                let p = p.strip_prefix("localhost").unwrap_or(p);
                if !p.starts_with('/') {
                    return Err(invalid(ctx, "file URL must name an absolute path"));
                }
                percent_decode(p, false)
            } else {
                base.to_string()
            };
            if path.is_empty() {
                return Err(invalid(ctx, "path is empty"));
            }
            let path = PathBuf::from(path);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok(Parsed {
                source: Source::File(path),
                name,
                options: merged,
            })
        }
    }
}

enum Kind {
    Http,
    File,
}

fn invalid(ctx: &Ctx, reason: &str) -> ArtifactError {
    ArtifactError::InvalidSource {
        artifact: ctx.artifact.clone(),
        reason: reason.to_string(),
    }
}

/// go-getter's forced getter: `getter::rest`, where `getter` is alphanumeric.
fn split_forced(raw: &str) -> (Option<String>, &str) {
    if let Some(idx) = raw.find("::") {
        let prefix = &raw[..idx];
        if !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
            return (Some(prefix.to_ascii_lowercase()), &raw[idx + 2..]);
        }
    }
    (None, raw)
}

/// Decodes `%XX` escapes (and `+` as a space in query strings); bad escapes stay as they are.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            artifact: "test".into(),
        }
    }

    #[test]
    fn http_with_getter_query() {
        let mut opts = BTreeMap::new();
        opts.insert("checksum".to_string(), "md5:ignored".to_string());
        opts.insert("archive".to_string(), "zip".to_string());
        let p = parse(
            &ctx(),
            "https://example.com/dl/app%20v1.tar.gz?token=abc&checksum=sha256%3Aff&x=1",
            &opts,
        )
        .unwrap();
        assert_eq!(
            p.source,
            Source::Http("https://example.com/dl/app%20v1.tar.gz?token=abc&x=1".into())
        );
        assert_eq!(p.name, "app v1.tar.gz");
        assert_eq!(p.options["checksum"], "sha256:ff");
        assert_eq!(p.options["archive"], "zip");
    }

    #[test]
    fn forced_and_local() {
        let p = parse(&ctx(), "http::https://example.com/a", &BTreeMap::new()).unwrap();
        assert_eq!(p.source, Source::Http("https://example.com/a".into()));
        let p = parse(
            &ctx(),
            "file:///tmp/x%20y.zip?archive=false",
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(p.source, Source::File("/tmp/x y.zip".into()));
        assert_eq!(p.options["archive"], "false");
        let p = parse(&ctx(), "local/a.txt", &BTreeMap::new()).unwrap();
        assert_eq!(p.source, Source::File("local/a.txt".into()));
        assert_eq!(p.name, "a.txt");
        let p = parse(&ctx(), "file::/abs/b", &BTreeMap::new()).unwrap();
        assert_eq!(p.source, Source::File("/abs/b".into()));
    }

    #[test]
    fn unsupported() {
        for src in [
            "git::https://github.com/x/y",
            "github.com/hashicorp/nomad",
            "s3::https://s3.amazonaws.com/b/k",
            "ftp://example.com/x",
        ] {
            let err = parse(&ctx(), src, &BTreeMap::new()).unwrap_err();
            assert!(
                matches!(err, ArtifactError::UnsupportedGetter { .. }),
                "{src}: {err}"
            );
        }
        assert!(parse(&ctx(), "", &BTreeMap::new()).is_err());
        assert!(parse(&ctx(), "http::/no/url", &BTreeMap::new()).is_err());
        assert!(parse(&ctx(), "http:///nohost", &BTreeMap::new()).is_err());
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb+c", true), "a/b c");
        assert_eq!(percent_decode("a+c%", false), "a+c%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
    }
}
