//! Nomad's HTTP API under `/v1` on axum, wire-compatible with Nomad's Go `api` package,
//! python-nomad and the Terraform provider.
//!
//! Invariants:
//! - Routing is by prefix and then suffix on the **percent-decoded** path, as Nomad's Go mux
//!   does, so job IDs containing `/` (periodic and dispatched children) work whether the client
//!   sends them raw or `%2F`-escaped. A segment router would break them.
//! - Errors are plain-text bodies with Nomad's status codes ([`ApiError`]); unknown paths are
//!   404 with an empty body; wrong methods are 405 `Invalid method`.
//! - Handlers are thin: parse, call one server/client method (or a blocking query closure over a
//!   state snapshot), render. Reads carry `X-Nomad-Index`/`KnownLeader`/`LastContact`, writes
//!   `X-Nomad-Index`.
//! - A panicking handler never takes the agent down: it becomes a 500.
//!
//! Entry points: [`router`] (tests drive it with `oneshot`) and [`serve`].
#![forbid(unsafe_code)]

use std::future::IntoFuture;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::FutureExt;

pub mod auth;
mod client_acl;
pub mod error;
pub mod filter;
pub mod query;
pub mod relay;
pub mod tls;

mod endpoints;

pub use error::ApiError;
pub use tls::serve_tls;

use query::{Params, ReqOptions};

/// Largest request body accepted (job specs with embedded templates can be big).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What the HTTP layer serves from: the local server and/or client, and agent facts.
#[derive(Clone)]
pub struct HttpState {
    /// The server, when this agent runs one.
    pub server: Option<Arc<nomad_server::Server>>,
    /// The client, when this agent runs one.
    pub client: Option<Arc<nomad_client::Client>>,
    /// Agent identity and configuration.
    pub agent: Arc<AgentInfo>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("server", &self.server.is_some())
            .field("client", &self.client.is_some())
            .field("agent", &self.agent)
            .finish()
    }
}

/// Facts about the agent served by `/v1/agent/*` and `/v1/status/*`.
#[derive(Debug, Clone, Default)]
pub struct AgentInfo {
    /// Region (`global`).
    pub region: String,
    /// Datacenter (`dc1`).
    pub datacenter: String,
    /// Node name.
    pub node_name: String,
    /// Whether the agent runs a server.
    pub server_enabled: bool,
    /// Whether the agent runs a client.
    pub client_enabled: bool,
    /// HTTP address, e.g. `127.0.0.1:4646`.
    pub http_addr: String,
    /// RPC address, e.g. `127.0.0.1:4647`.
    pub rpc_addr: String,
    /// The agent config in Nomad's PascalCase shape, served as `/v1/agent/self` `config`.
    pub config_json: serde_json::Value,
    /// How a server reaches nodes' HTTPS APIs when forwarding client requests (`tls { http }`
    /// on): the CA and this agent's certificate. `None`: plain HTTP.
    pub node_tls: Option<nomad_tls::ClientTlsConfig>,
}

impl AgentInfo {
    /// The region, `global` when unset.
    pub(crate) fn region(&self) -> &str {
        if self.region.is_empty() {
            "global"
        } else {
            &self.region
        }
    }

    /// The datacenter, `dc1` when unset.
    pub(crate) fn datacenter(&self) -> &str {
        if self.datacenter.is_empty() {
            "dc1"
        } else {
            &self.datacenter
        }
    }
}

/// One request as the handlers see it: decoded path, parsed query, buffered body.
pub(crate) struct Ctx {
    pub(crate) state: HttpState,
    pub(crate) method: Method,
    pub(crate) params: Params,
    pub(crate) opts: ReqOptions,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The websocket upgrade, when the request asks for one (`Upgrade: websocket`).
    pub(crate) ws: Option<WebSocketUpgrade>,
    /// The request's path and query as received (for forwarding to a node).
    pub(crate) path_and_query: String,
}

impl Ctx {
    /// The local server, or Nomad's error when there is none to answer.
    pub(crate) fn server(&self) -> Result<&Arc<nomad_server::Server>, ApiError> {
        self.state
            .server
            .as_ref()
            .ok_or_else(|| ApiError::internal("No cluster leader"))
    }

    /// The local client, or an error when this agent runs none.
    pub(crate) fn client(&self) -> Result<&Arc<nomad_client::Client>, ApiError> {
        self.state
            .client
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("Nomad client is not enabled on this agent"))
    }

    /// Whether the method is a write (Nomad takes PUT and POST interchangeably).
    pub(crate) fn is_write(&self) -> bool {
        self.method == Method::PUT || self.method == Method::POST
    }

    pub(crate) fn is_get(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }

    pub(crate) fn pretty(&self) -> bool {
        self.opts.pretty
    }
}

/// The `/v1` API (plus `/` and `/ui/`) with panic catching. Every path goes through one
/// dispatcher that routes on the decoded path.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .fallback(dispatch)
        .with_state(state.clone())
        // ACL enforcement runs before any handler (see `auth`).
        .layer(middleware::from_fn_with_state(state, auth::enforce))
        .layer(middleware::from_fn(catch_panic))
}

/// Serves [`router`] on `listener` until `shutdown` turns true (or its sender goes away).
/// Open streams (e.g. followed logs) get a few seconds to finish before this returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(state);
    let graceful = wait_shutdown(shutdown.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let deadline = async move {
        wait_shutdown(shutdown).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    tokio::select! {
        r = server.into_future() => r,
        () = deadline => {
            tracing::warn!("http: connections still open at shutdown; closing");
            Ok(())
        }
    }
}

async fn wait_shutdown(mut rx: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Turns a panic in any handler into a 500 so one bad request cannot take the agent down.
async fn catch_panic(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => {
            tracing::debug!(%method, %path, status = resp.status().as_u16(), "http request");
            resp
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            tracing::error!(%method, %path, error = %what, "http handler panicked");
            ApiError::internal("internal server error").into_response()
        }
    }
}

async fn dispatch(State(state): State<HttpState>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let wants_ws = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let ws = if wants_ws {
        WebSocketUpgrade::from_request_parts(&mut parts, &state)
            .await
            .ok()
    } else {
        None
    };
    let raw_path = parts.uri.path();
    let raw_query = parts.uri.query();

    if raw_path == "/" {
        let loc = match raw_query {
            Some(q) => format!("/ui/?{q}"),
            None => "/ui/".to_string(),
        };
        let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
        if let Ok(v) = HeaderValue::from_str(&loc) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return resp;
    }
    if raw_path == "/ui" || raw_path.starts_with("/ui/") {
        return endpoints::agent::ui_placeholder();
    }

    let path = query::percent_decode(raw_path, false);
    let Some(rest) = path.strip_prefix("/v1/") else {
        return ApiError::no_route().into_response();
    };
    let rest = rest.to_string();

    let params = Params::parse(raw_query);
    let mut opts = match ReqOptions::parse(&params) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    if !opts.region.is_empty() && opts.region != state.agent.region() {
        return ApiError::internal("No path to region").into_response();
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!("failed to read request body: {e}"))
                .into_response()
        }
    };
    // `?filter=` on list endpoints: a paginated list filters before it cuts the page; the
    // others filter the list they answer.
    let mut list_filter = match params.get("filter").filter(|f| !f.trim().is_empty()) {
        Some(f) if LIST_ROUTES.contains(&rest.as_str()) => match filter::parse(f) {
            Ok(e) => Some(e),
            Err(e) => {
                return ApiError::bad_request(format!("failed to read filter expression: {e}"))
                    .into_response()
            }
        },
        _ => None,
    };
    if PAGINATED_ROUTES.contains(&rest.as_str()) {
        opts.filter = list_filter.take();
    }
    let pretty = opts.pretty;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let ctx = Ctx {
        state,
        method: parts.method,
        params,
        opts,
        headers: parts.headers,
        body,
        ws,
        path_and_query,
    };
    match endpoints::route(ctx, &rest).await {
        Ok(resp) => match list_filter {
            Some(expr) if resp.status() == StatusCode::OK => {
                apply_filter(resp, &expr, pretty).await
            }
            _ => resp,
        },
        Err(e) => e.into_response(),
    }
}

/// The list endpoints `?filter=` applies to (paths after `/v1/`).
const LIST_ROUTES: &[&str] = &[
    "jobs",
    "allocations",
    "nodes",
    "evaluations",
    "deployments",
    "namespaces",
    "vars",
    "acl/tokens",
    "acl/policies",
];

/// The list endpoints that paginate (`ReqOptions::paginate`), and so filter themselves.
const PAGINATED_ROUTES: &[&str] = &["jobs", "allocations", "nodes", "evaluations"];

/// Keeps the elements of a JSON array answer that pass `expr`.
async fn apply_filter(resp: Response, expr: &filter::Expr, pretty: bool) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::internal("failed to read the answer to filter").into_response();
    };
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let kept: Vec<serde_json::Value> = items.into_iter().filter(|v| expr.eval(v)).collect();
    let out = if pretty {
        serde_json::to_vec_pretty(&kept)
    } else {
        serde_json::to_vec(&kept)
    }
    .unwrap_or_default();
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(out))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod operator_tests;
