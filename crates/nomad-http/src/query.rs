//! Query-string parsing (`region`, `namespace`, `index`, `wait`, `stale`, `prefix`, `pretty`,
//! paging), request-body decoding, and JSON rendering with Nomad's meta headers.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use nomad_server::QueryOptions;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// `X-Nomad-Index`.
pub const HEADER_INDEX: &str = "x-nomad-index";
/// `X-Nomad-KnownLeader`.
pub const HEADER_KNOWN_LEADER: &str = "x-nomad-knownleader";
/// `X-Nomad-LastContact`.
pub const HEADER_LAST_CONTACT: &str = "x-nomad-lastcontact";
/// `X-Nomad-NextToken`.
pub const HEADER_NEXT_TOKEN: &str = "x-nomad-nexttoken";

/// Decodes `%XX` escapes; with `plus_is_space` (query strings) `+` becomes a space. Invalid
/// escapes are kept verbatim, as lenient decoders do; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
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

/// Parsed query parameters, in order, keys and values decoded.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses a raw (still escaped) query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect();
        Params { pairs }
    }

    /// The first value of `key` (`Some("")` when given without a value).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or "" when absent.
    pub fn str(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    /// Whether `key` is present at all.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A boolean as Go's `strconv.ParseBool` reads it; absent or empty → `None`.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => parse_go_bool(v).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Failed to parse value of {key:?} ({v}) as a bool: strconv.ParseBool: parsing {v:?}: invalid syntax"
                ))
            }),
        }
    }

    /// A boolean defaulting to `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        Ok(self.bool(key)?.unwrap_or(default))
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The options every request carries (Nomad's `parse()` / `parseWriteRequest`).
#[derive(Debug, Clone, Default)]
pub struct ReqOptions {
    /// `?region=` or "" when not given.
    pub region: String,
    /// `?namespace=` as given ("" when absent).
    pub namespace_param: String,
    /// Blocking-query minimum index.
    pub min_index: u64,
    /// Blocking-query wait.
    pub wait: Duration,
    /// `?stale`.
    pub stale: bool,
    /// `?prefix=`.
    pub prefix: String,
    /// `?pretty`.
    pub pretty: bool,
    /// `?per_page=` (0 = no paging).
    pub per_page: usize,
    /// `?next_token=`.
    pub next_token: String,
    /// `?reverse=true`.
    pub reverse: bool,
    /// `?filter=` on a paginated list: applied before the page is cut, as Nomad does, so a
    /// page holds `per_page` matching items.
    pub filter: Option<crate::filter::Expr>,
}

impl ReqOptions {
    /// Parses the common parameters, with Nomad's 400 messages.
    pub fn parse(p: &Params) -> Result<Self, ApiError> {
        let mut o = ReqOptions {
            region: p.str("region").to_string(),
            namespace_param: p.str("namespace").to_string(),
            prefix: p.str("prefix").to_string(),
            next_token: p.str("next_token").to_string(),
            ..Default::default()
        };
        if let Some(v) = p.get("index").filter(|v| !v.is_empty()) {
            o.min_index = v
                .parse()
                .map_err(|_| ApiError::bad_request("Invalid index"))?;
        }
        if let Some(v) = p.get("wait").filter(|v| !v.is_empty()) {
            let ns = nomad_structs::duration::parse_go_duration(v)
                .map_err(|_| ApiError::bad_request("Invalid wait time"))?;
            o.wait = Duration::from_nanos(ns.max(0) as u64);
        }
        if let Some(v) = p.get("stale") {
            o.stale = match v {
                "" | "true" => true,
                "false" => false,
                _ => {
                    return Err(ApiError::bad_request(
                        "Expect `true` or `false` for `stale` query string parameter",
                    ))
                }
            };
        }
        o.pretty = p.get("pretty").is_some_and(|v| v != "0");
        if let Some(v) = p.get("per_page").filter(|v| !v.is_empty()) {
            let n: i32 = v.parse().map_err(|_| {
                ApiError::bad_request("Expect a number for `per_page` query string parameter")
            })?;
            o.per_page = n.max(0) as usize;
        }
        o.reverse = p.get("reverse") == Some("true");
        Ok(o)
    }

    /// The request namespace: `?namespace=` or `default`.
    pub fn namespace(&self) -> &str {
        if self.namespace_param.is_empty() {
            "default"
        } else {
            &self.namespace_param
        }
    }

    /// For list endpoints: `None` for `*` (all namespaces), else the namespace.
    pub fn list_namespace(&self) -> Option<&str> {
        match self.namespace() {
            "*" => None,
            ns => Some(ns),
        }
    }

    /// The blocking-query options for the server.
    pub fn query_options(&self) -> QueryOptions {
        QueryOptions {
            min_index: self.min_index,
            wait: self.wait,
        }
    }

    /// Applies `filter`, `reverse`, `next_token` and `per_page` to a list sorted by `key`;
    /// returns the page and the next token (the key of the first item of the next page).
    pub fn paginate<T: serde::Serialize>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> String,
    ) -> (Vec<T>, Option<String>) {
        if let Some(expr) = &self.filter {
            // The expression sees each item as the answer shows it.
            items.retain(|i| serde_json::to_value(i).is_ok_and(|v| expr.eval(&v)));
        }
        if self.reverse {
            items.reverse();
        }
        if !self.next_token.is_empty() {
            let tok = self.next_token.as_str();
            let reverse = self.reverse;
            items.retain(|i| {
                let k = key(i);
                if reverse {
                    k.as_str() <= tok
                } else {
                    k.as_str() >= tok
                }
            });
        }
        if self.per_page == 0 || items.len() <= self.per_page {
            return (items, None);
        }
        let rest = items.split_off(self.per_page);
        let next = rest.first().map(&key);
        (items, next)
    }
}

/// Decodes a JSON request body: empty → `400 Request body is empty`, malformed → 400 with the
/// decoder's message.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::empty_body());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Like [`decode_body`] but an empty body gives `T::default()`.
pub fn decode_optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Serializes `v`; with `pretty`, 4-space indentation and a trailing newline as Nomad does.
pub fn to_json_bytes<T: Serialize + ?Sized>(v: &T, pretty: bool) -> Result<Vec<u8>, ApiError> {
    let mut buf = Vec::new();
    let res = if pretty {
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        v.serialize(&mut ser)
    } else {
        serde_json::to_writer(&mut buf, v)
    };
    res.map_err(|e| ApiError::internal(format!("failed to encode response: {e}")))?;
    if pretty {
        buf.push(b'\n');
    }
    Ok(buf)
}

/// Response meta: which headers to set besides the body.
#[derive(Debug, Clone, Default)]
pub enum Meta {
    /// No meta headers (agent, status endpoints).
    #[default]
    None,
    /// Writes: `X-Nomad-Index` only.
    Write(u64),
    /// Reads: index, known leader, last contact, optional next token.
    Read {
        /// `X-Nomad-Index`.
        index: u64,
        /// `X-Nomad-NextToken`.
        next_token: Option<String>,
    },
}

impl Meta {
    /// Read meta with an index and no paging.
    pub fn read(index: u64) -> Self {
        Meta::Read {
            index,
            next_token: None,
        }
    }

    fn apply(self, resp: &mut Response) {
        let h = resp.headers_mut();
        let num = |n: u64| {
            HeaderValue::from_str(&n.to_string()).expect("digits are a valid header value")
        };
        match self {
            Meta::None => {}
            Meta::Write(index) => {
                h.insert(HeaderName::from_static(HEADER_INDEX), num(index));
            }
            Meta::Read { index, next_token } => {
                h.insert(HeaderName::from_static(HEADER_INDEX), num(index));
                h.insert(
                    HeaderName::from_static(HEADER_KNOWN_LEADER),
                    HeaderValue::from_static("true"),
                );
                h.insert(
                    HeaderName::from_static(HEADER_LAST_CONTACT),
                    HeaderValue::from_static("0"),
                );
                if let Some(tok) = next_token.and_then(|t| HeaderValue::from_str(&t).ok()) {
                    h.insert(HeaderName::from_static(HEADER_NEXT_TOKEN), tok);
                }
            }
        }
    }
}

/// Sets `X-Nomad-KnownLeader` (read meta says `true` by default).
pub fn set_known_leader(resp: &mut Response, known: bool) {
    resp.headers_mut().insert(
        HeaderName::from_static(HEADER_KNOWN_LEADER),
        HeaderValue::from_static(if known { "true" } else { "false" }),
    );
}

/// A 200 JSON response with meta headers.
pub fn json<T: Serialize + ?Sized>(v: &T, pretty: bool, meta: Meta) -> Result<Response, ApiError> {
    let body = to_json_bytes(v, pretty)?;
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    meta.apply(&mut resp);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Fb", false), "a/b");
        assert_eq!(percent_decode("a%2fb+c", true), "a/b c");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
    }

    #[test]
    fn parses_common_options() {
        let p = Params::parse(Some(
            "index=7&wait=50ms&stale&prefix=ab&pretty&namespace=%2A",
        ));
        let o = ReqOptions::parse(&p).unwrap();
        assert_eq!(o.min_index, 7);
        assert_eq!(o.wait, Duration::from_millis(50));
        assert!(o.stale && o.pretty);
        assert_eq!(o.prefix, "ab");
        assert_eq!(o.list_namespace(), None);
        let p = Params::parse(Some("pretty=0"));
        assert!(!ReqOptions::parse(&p).unwrap().pretty);
        assert_eq!(
            ReqOptions::parse(&Params::parse(None)).unwrap().namespace(),
            "default"
        );
    }

    #[test]
    fn rejects_bad_options() {
        let msg = |q: &str| {
            ReqOptions::parse(&Params::parse(Some(q)))
                .unwrap_err()
                .message
        };
        assert_eq!(msg("index=abc"), "Invalid index");
        assert_eq!(msg("wait=5x"), "Invalid wait time");
        assert_eq!(
            msg("stale=maybe"),
            "Expect `true` or `false` for `stale` query string parameter"
        );
        assert_eq!(
            msg("per_page=x"),
            "Expect a number for `per_page` query string parameter"
        );
    }

    #[test]
    fn paginates_by_key() {
        let p = Params::parse(Some("per_page=2"));
        let o = ReqOptions::parse(&p).unwrap();
        let (page, next) = o.paginate(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(page, vec!["a", "b"]);
        assert_eq!(next.as_deref(), Some("c"));
        let o = ReqOptions::parse(&Params::parse(Some("per_page=2&next_token=c"))).unwrap();
        let (page, next) = o.paginate(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(page, vec!["c"]);
        assert!(next.is_none());
    }

    #[test]
    fn filter_applies_before_the_page_is_cut() {
        let p = Params::parse(Some("per_page=2"));
        let mut o = ReqOptions::parse(&p).unwrap();
        o.filter = Some(crate::filter::parse(r#"Status == "up""#).unwrap());
        let items = || {
            ["a", "b", "c", "d", "e"]
                .iter()
                .zip(["down", "up", "down", "up", "up"])
                .map(|(id, st)| serde_json::json!({"ID": id, "Status": st}))
                .collect::<Vec<_>>()
        };
        let id = |v: &serde_json::Value| v["ID"].as_str().unwrap_or_default().to_string();
        let (page, next) = o.paginate(items(), id);
        assert_eq!(page.iter().map(id).collect::<Vec<_>>(), ["b", "d"]);
        assert_eq!(next.as_deref(), Some("e"));
        o.next_token = "e".into();
        let (page, next) = o.paginate(items(), id);
        assert_eq!(page.iter().map(id).collect::<Vec<_>>(), ["e"]);
        assert!(next.is_none());
    }

    #[test]
    fn pretty_json_uses_four_spaces_and_newline() {
        let b = to_json_bytes(&serde_json::json!({"A": 1}), true).unwrap();
        assert_eq!(String::from_utf8(b).unwrap(), "{\n    \"A\": 1\n}\n");
    }
}
