//! A small typed client for Nomad's HTTP API, with errors worded like the Go `api` package's.

use std::io::Read;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Connection settings of a client (from the general options).
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// Base address, e.g. `http://127.0.0.1:4646`.
    pub address: String,
    /// `?region=` for every request when set.
    pub region: String,
    /// `?namespace=` for every request when set.
    pub namespace: String,
    /// Sent as `X-Nomad-Token` when set.
    pub token: String,
    /// `NOMAD_HTTP_AUTH` (`user[:pass]`), sent as basic auth.
    pub http_auth: String,
    /// TLS settings for `https://` addresses (`-ca-cert`, `-client-cert`, ...).
    pub tls: nomad_tls::ClientTlsConfig,
}

/// An API error: either a non-2xx answer or a transport failure; `Display` matches the Go client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The agent answered with a non-success status.
    Status { code: u16, body: String },
    /// The request never got an answer (connection refused, bad address, ...).
    Transport(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Status { code, body } => {
                write!(f, "Unexpected response code: {code} ({body})")
            }
            ApiError::Transport(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Whether the agent could not be reached at all.
    pub fn is_transport(&self) -> bool {
        matches!(self, ApiError::Transport(_))
    }
}

/// A blocking HTTP client bound to one agent address.
#[derive(Debug, Clone)]
pub struct Client {
    cfg: ClientConfig,
    agent: ureq::Agent,
    /// Why the TLS settings could not be loaded (unreadable CA, bad key...): every request
    /// fails with it.
    tls_error: Option<String>,
}

/// Percent-encodes a query component (RFC 3986 unreserved characters kept).
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes a path segment (Go `url.PathEscape`: `/` becomes `%2F`).
pub fn path_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b'&'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn method_word(m: &str) -> String {
    // Go's url.Error prints the method capitalised like "Get", "Put", "Delete".
    let lower = m.to_ascii_lowercase();
    let mut c = lower.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hp = rest.split(['/', '?']).next().unwrap_or(rest);
    if hp.contains(':') {
        hp.to_string()
    } else if url.starts_with("https://") {
        format!("{hp}:443")
    } else {
        format!("{hp}:80")
    }
}

fn transport_error(
    method: &str,
    url: &str,
    e: &ureq::Error,
    tls: &nomad_tls::ClientTlsConfig,
) -> ApiError {
    if url.starts_with("https://") {
        // A handshake failure: say which certificate failed and why.
        let explained = nomad_tls::explain_handshake_error(e, tls);
        if explained != e.to_string() {
            return ApiError::Transport(format!("{} \"{url}\": {explained}", method_word(method)));
        }
    }
    let hp = host_port(url);
    let detail = match e {
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("dial tcp {hp}: connect: connection refused")
            }
            std::io::ErrorKind::TimedOut => format!("dial tcp {hp}: i/o timeout"),
            _ => format!("dial tcp {hp}: {io}"),
        },
        ureq::Error::HostNotFound => {
            let host = hp.rsplit_once(':').map(|(h, _)| h).unwrap_or(&hp);
            format!("dial tcp: lookup {host}: no such host")
        }
        ureq::Error::ConnectionFailed => format!("dial tcp {hp}: connect: connection failed"),
        other => other.to_string(),
    };
    ApiError::Transport(format!("{} \"{url}\": {detail}", method_word(method)))
}

impl Client {
    /// A client for `cfg`.
    pub fn new(cfg: ClientConfig) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build();
        let mut tls_error = None;
        let agent: ureq::Agent = if cfg.address.starts_with("https://") {
            match nomad_tls::ureq_agent_with_config(&cfg.tls, config.clone()) {
                Ok(a) => a,
                Err(e) => {
                    tls_error = Some(e.to_string());
                    config.into()
                }
            }
        } else {
            config.into()
        };
        Client {
            cfg,
            agent,
            tls_error,
        }
    }

    /// A client for the node that runs an allocation, as Nomad's Go client does for
    /// `/v1/client/...` calls: the node's own HTTP address when it answers within a second,
    /// else this client (a server that has the node local, or an error naming it).
    pub fn for_node(&self, node_id: &str) -> Client {
        if node_id.is_empty() {
            return self.clone();
        }
        let node: serde_json::Value =
            match self.get(&format!("/v1/node/{}", path_escape(node_id)), &[]) {
                Ok(n) => n,
                Err(_) => return self.clone(),
            };
        let Some(addr) = node["HTTPAddr"].as_str().filter(|a| !a.is_empty()) else {
            return self.clone();
        };
        let scheme = if self.cfg.address.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let candidate = format!("{scheme}://{addr}");
        if candidate.trim_end_matches('/') == self.cfg.address.trim_end_matches('/') {
            return self.clone();
        }
        let reachable = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|sa| {
                std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_secs(1)).is_ok()
            });
        if !reachable {
            return self.clone();
        }
        let mut cfg = self.cfg.clone();
        cfg.address = candidate;
        Client::new(cfg)
    }

    /// The TLS settings this client was built with.
    #[allow(dead_code)]
    pub fn tls_config(&self) -> &nomad_tls::ClientTlsConfig {
        &self.cfg.tls
    }

    /// The configured token (for websocket handshakes and the like).
    #[allow(dead_code)]
    pub fn token(&self) -> &str {
        &self.cfg.token
    }

    /// Sends `method path` with an optional JSON body and ignores the answer's body (Nomad
    /// answers many writes with an empty 200).
    pub fn send_no_body<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<(), ApiError> {
        let url = self.url(path, query);
        let res = match (method, body) {
            ("DELETE", _) => self.decorate(self.agent.delete(&url)).call(),
            (_, Some(b)) => self.decorate(self.agent.put(&url)).send_json(b),
            (_, None) => self.decorate(self.agent.put(&url)).send_empty(),
        };
        self.finish(method, &url, res).map(|_| ())
    }

    /// Overrides the namespace (e.g. from the jobspec).
    pub fn set_namespace(&mut self, ns: &str) {
        self.cfg.namespace = ns.to_string();
    }

    /// The agent address requests go to.
    pub fn address(&self) -> &str {
        &self.cfg.address
    }

    /// The `?region=` / `?namespace=` every request gets (empty when unset).
    pub fn region_and_namespace(&self) -> (&str, &str) {
        (&self.cfg.region, &self.cfg.namespace)
    }

    /// Overrides the region (e.g. from the jobspec).
    pub fn set_region(&mut self, r: &str) {
        self.cfg.region = r.to_string();
    }

    /// The full URL of `path` with `query` plus region/namespace parameters.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut params: Vec<String> = Vec::new();
        if !self.cfg.region.is_empty() && !query.iter().any(|(k, _)| *k == "region") {
            params.push(format!("region={}", query_escape(&self.cfg.region)));
        }
        if !self.cfg.namespace.is_empty() && !query.iter().any(|(k, _)| *k == "namespace") {
            params.push(format!("namespace={}", query_escape(&self.cfg.namespace)));
        }
        for (k, v) in query {
            params.push(format!("{}={}", query_escape(k), query_escape(v)));
        }
        let base = self.cfg.address.trim_end_matches('/');
        if params.is_empty() {
            format!("{base}{path}")
        } else {
            params.sort();
            format!("{base}{path}?{}", params.join("&"))
        }
    }

    fn decorate<B>(&self, mut req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if !self.cfg.token.is_empty() {
            req = req.header("X-Nomad-Token", self.cfg.token.as_str());
        }
        if !self.cfg.http_auth.is_empty() {
            let enc = base64_encode(self.cfg.http_auth.as_bytes());
            req = req.header("Authorization", format!("Basic {enc}"));
        }
        req
    }

    fn finish(
        &self,
        method: &str,
        url: &str,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ApiError> {
        if let Some(e) = &self.tls_error {
            return Err(ApiError::Transport(format!(
                "{} \"{url}\": {e}",
                method_word(method)
            )));
        }
        let mut resp = res.map_err(|e| transport_error(method, url, &e, &self.cfg.tls))?;
        let code = resp.status().as_u16();
        if !(200..300).contains(&code) {
            let body = resp
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_string()
                .unwrap_or_default();
            return Err(ApiError::Status {
                code,
                body: body.trim_end().to_string(),
            });
        }
        Ok(resp)
    }

    fn decode<T: DeserializeOwned>(
        url: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<T, ApiError> {
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| ApiError::Transport(format!("error reading response from {url}: {e}")))?;
        serde_json::from_str(&text)
            .map_err(|e| ApiError::Transport(format!("error decoding response from {url}: {e}")))
    }

    /// GET `path` and decode JSON.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        let url = self.url(path, query);
        let res = self.decorate(self.agent.get(&url)).call();
        let resp = self.finish("GET", &url, res)?;
        Self::decode(&url, resp)
    }

    /// A blocking query: GET `path` once its index passes `index` (at once for 0), with the
    /// `X-Nomad-Index` of the answer to wait on next.
    pub fn get_blocking<T: DeserializeOwned>(
        &self,
        path: &str,
        index: u64,
    ) -> Result<(T, u64), ApiError> {
        let query = [("index", index.to_string()), ("wait", "5m".to_string())];
        let url = self.url(path, if index == 0 { &[] } else { &query });
        let res = self.decorate(self.agent.get(&url)).call();
        let resp = self.finish("GET", &url, res)?;
        let next = resp
            .headers()
            .get("x-nomad-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(index);
        Ok((Self::decode(&url, resp)?, next))
    }

    /// GET a list `path` and decode JSON, with the `X-Nomad-NextToken` of the page (empty on
    /// the last page).
    pub fn get_paged<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(T, String), ApiError> {
        let url = self.url(path, query);
        let res = self.decorate(self.agent.get(&url)).call();
        let resp = self.finish("GET", &url, res)?;
        let next = resp
            .headers()
            .get("x-nomad-nexttoken")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((Self::decode(&url, resp)?, next))
    }

    /// PUT `path` with a JSON body and decode the JSON answer.
    pub fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &B,
    ) -> Result<T, ApiError> {
        let url = self.url(path, query);
        let res = self.decorate(self.agent.put(&url)).send_json(body);
        let resp = self.finish("PUT", &url, res)?;
        Self::decode(&url, resp)
    }

    /// DELETE `path` and decode the JSON answer.
    pub fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        let url = self.url(path, query);
        let res = self.decorate(self.agent.delete(&url)).call();
        let resp = self.finish("DELETE", &url, res)?;
        Self::decode(&url, resp)
    }

    /// GET `path` and return the body as a stream (log frames).
    pub fn get_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Box<dyn Read + Send>, ApiError> {
        let url = self.url(path, query);
        let res = self.decorate(self.agent.get(&url)).call();
        let resp = self.finish("GET", &url, res)?;
        Ok(Box::new(resp.into_body().into_reader()))
    }
}

/// A raw (non-JSON) answer: the body and the headers the caller may check.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// The body.
    pub body: Vec<u8>,
    /// `Digest` (e.g. `sha-256=<base64>`), when sent.
    pub digest: Option<String>,
}

/// An answer of [`Client::send_raw`]: status, headers, body.
pub type RawAnswer = (u16, Vec<(String, String)>, Vec<u8>);

impl Client {
    /// GET `path` and return the raw body (snapshots), up to `limit` bytes.
    pub fn get_raw(
        &self,
        path: &str,
        query: &[(&str, String)],
        limit: u64,
    ) -> Result<RawResponse, ApiError> {
        let url = self.url(path, query);
        let res = self.decorate(self.agent.get(&url)).call();
        let mut resp = self.finish("GET", &url, res)?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let digest = header("digest");
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| ApiError::Transport(format!("error reading response from {url}: {e}")))?;
        Ok(RawResponse { body, digest })
    }

    /// Sends `method url` as given (`nomad operator api`): the token and basic auth as for
    /// every request unless `headers` set them, any status accepted. Returns the status line,
    /// the answer's headers and its body.
    pub fn send_raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<RawAnswer, ApiError> {
        if let Some(e) = &self.tls_error {
            return Err(ApiError::Transport(e.clone()));
        }
        let m = ureq::http::Method::from_bytes(method.as_bytes())
            .map_err(|_| ApiError::Transport(format!("invalid HTTP method {method:?}")))?;
        let mut req = ureq::http::Request::builder().method(m).uri(url);
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if !has("X-Nomad-Token") && !self.cfg.token.is_empty() {
            req = req.header("X-Nomad-Token", self.cfg.token.as_str());
        }
        if !has("Authorization") && !self.cfg.http_auth.is_empty() {
            let enc = base64_encode(self.cfg.http_auth.as_bytes());
            req = req.header("Authorization", format!("Basic {enc}"));
        }
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(body.map(<[u8]>::to_vec).unwrap_or_default())
            .map_err(|e| ApiError::Transport(format!("Error making request: {e}")))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| transport_error(method, url, &e, &self.cfg.tls))?;
        let status = resp.status().as_u16();
        let hs = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| ApiError::Transport(format!("Error reading response: {e}")))?;
        Ok((status, hs, body))
    }

    /// PUT `path` with a raw body (snapshot restore), ignoring the answer's body.
    pub fn put_raw(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &[u8],
    ) -> Result<(), ApiError> {
        let url = self.url(path, query);
        let res = self.decorate(self.agent.put(&url)).send(body);
        self.finish("PUT", &url, res).map(|_| ())
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_region_and_namespace() {
        let c = Client::new(ClientConfig {
            address: "http://127.0.0.1:4646/".into(),
            namespace: "prod".into(),
            ..Default::default()
        });
        assert_eq!(
            c.url("/v1/jobs", &[("prefix", "a b".into())]),
            "http://127.0.0.1:4646/v1/jobs?namespace=prod&prefix=a+b"
        );
        let c = Client::new(ClientConfig {
            address: "http://h:1".into(),
            ..Default::default()
        });
        assert_eq!(c.url("/v1/jobs", &[]), "http://h:1/v1/jobs");
        assert_eq!(path_escape("a/periodic-1"), "a%2Fperiodic-1");
    }

    #[test]
    fn error_wording() {
        let e = ApiError::Status {
            code: 404,
            body: "job not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "Unexpected response code: 404 (job not found)"
        );
        let io = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = transport_error(
            "GET",
            "http://127.0.0.1:4646/v1/jobs",
            &io,
            &Default::default(),
        );
        assert_eq!(
            e.to_string(),
            "Get \"http://127.0.0.1:4646/v1/jobs\": dial tcp 127.0.0.1:4646: connect: connection refused"
        );
    }
}
