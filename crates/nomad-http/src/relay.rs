//! The HTTP API of a client-only agent answers what only servers know (jobs, nodes, allocs,
//! evaluations, ACLs, namespaces, status ...) by relaying the request to a server over RPC
//! (`HTTP.Forward`), as Nomad's client agents do: users point `NOMAD_ADDR` at the agent on
//! their own node. The server runs the request through its own HTTP API, ACL checks included,
//! and the answer (status, headers such as `X-Nomad-Index`, body) comes back as it is.
//! For `/v1/client/...` calls about an allocation on another node the agent only asks where
//! that node answers ([`alloc_node_addr`]) and forwards the call itself, so streams stream.
//!
//! The wire document: request `{"Method", "PathAndQuery", "Headers": [[k, v]], "Body": base64}`,
//! answer `{"Status", "Headers": [[k, v]], "Body": base64}`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::{Ctx, HttpState, MAX_BODY_BYTES};

/// Request headers that travel with a request answered elsewhere (relayed to a server, or
/// forwarded to a node).
pub(crate) const PASSED: &[&str] = &["x-nomad-token", "authorization", "content-type", "accept"];
/// Answer headers that come back.
const RETURNED: &[&str] = &[
    "content-type",
    "x-nomad-index",
    "x-nomad-knownleader",
    "x-nomad-lastcontact",
    "x-nomad-nextoken",
    "x-nomad-nexttoken",
];

/// Paths (after `/v1/`) a client-only agent answers itself.
pub(crate) fn served_locally(rest: &str) -> bool {
    rest.starts_with("client/")
        || rest.starts_with("agent/")
        || rest == "metrics"
        || rest == "regions"
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The caller's headers that travel with a relayed request.
fn passed_headers(ctx: &Ctx) -> Vec<(String, String)> {
    PASSED
        .iter()
        .filter_map(|h| {
            let v = ctx.headers.get(*h)?.to_str().ok()?;
            Some((h.to_string(), v.to_string()))
        })
        .collect()
}

/// Relays `ctx`'s request to a server through this agent's client.
pub(crate) async fn to_servers(ctx: Ctx) -> Result<Response, ApiError> {
    let Some(client) = ctx.state.client.clone() else {
        return Err(ApiError::internal("No cluster leader"));
    };
    let req = serde_json::json!({
        "Method": ctx.method.as_str(),
        "PathAndQuery": ctx.path_and_query,
        "Headers": passed_headers(&ctx),
        "Body": b64().encode(&ctx.body),
    });
    // A blocking query may wait up to its `wait` (5 minutes at most) on the server.
    let timeout = if ctx.params.has("index") {
        nomad_server::MAX_BLOCKING_WAIT + Duration::from_secs(15)
    } else {
        Duration::from_secs(60)
    };
    let answer = client
        .forward_http(req, timeout)
        .await
        .map_err(|e| ApiError::internal(e.0))?;
    decode_answer(&answer)
}

/// Where to send a client-only agent's `/v1/client/...` request for an allocation this node
/// does not run: the HTTP address of the node that does, asked of a server with the caller's
/// token (the server answers only if that token may read the allocation). `Ok(None)` when
/// the servers do not know the allocation (the local answer, `Unknown allocation`, is right).
pub(crate) async fn alloc_node_addr(ctx: &Ctx, alloc_id: &str) -> Result<Option<String>, ApiError> {
    let Some(client) = ctx.state.client.clone() else {
        return Ok(None);
    };
    let req = serde_json::json!({
        "Method": "GET",
        "PathAndQuery": format!("/v1/allocation/{alloc_id}"),
        "Headers": passed_headers(ctx),
        "Body": "",
        NODE_ADDR_OF_ALLOC: true,
    });
    let answer = client
        .forward_http(req, Duration::from_secs(30))
        .await
        .map_err(|e| {
            ApiError::internal(format!(
                "allocation {alloc_id:?} is not on this node, and asking the servers where it is failed: {}",
                e.0
            ))
        })?;
    if let Some(addr) = answer[NODE_ADDR].as_str().filter(|a| !a.is_empty()) {
        return Ok(Some(addr.to_string()));
    }
    match answer["Status"].as_u64() {
        Some(404) => Ok(None),
        Some(200) => Err(ApiError::internal(format!(
            "allocation {alloc_id:?} runs on a node without an HTTP address"
        ))),
        status => {
            // Refused (403 ...): the server's answer, as the caller would have had it there.
            let status = status
                .and_then(|s| StatusCode::from_u16(s as u16).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = b64()
                .decode(answer["Body"].as_str().unwrap_or_default())
                .unwrap_or_default();
            Err(ApiError::new(
                status,
                String::from_utf8_lossy(&body).trim().to_string(),
            ))
        }
    }
}

/// In an `HTTP.Forward` request: answer with the HTTP address of the allocation's node
/// ([`NODE_ADDR`]) instead of the allocation.
const NODE_ADDR_OF_ALLOC: &str = "NodeAddrOfAlloc";
/// In an `HTTP.Forward` answer: the node's HTTP address.
const NODE_ADDR: &str = "NodeAddr";

fn decode_answer(answer: &serde_json::Value) -> Result<Response, ApiError> {
    let status = answer["Status"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .ok_or_else(|| ApiError::internal("bad HTTP.Forward answer: no status"))?;
    let body = b64()
        .decode(answer["Body"].as_str().unwrap_or_default())
        .map_err(|e| ApiError::internal(format!("bad HTTP.Forward answer: {e}")))?;
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    for pair in answer["Headers"].as_array().into_iter().flatten() {
        let (Some(k), Some(v)) = (pair[0].as_str(), pair[1].as_str()) else {
            continue;
        };
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_str(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}

/// What a server answers `HTTP.Forward` with: the request run through its own router.
pub async fn answer_forwarded(
    state: HttpState,
    req: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let method = req["Method"].as_str().unwrap_or("GET");
    let pq = req["PathAndQuery"].as_str().unwrap_or("/");
    if !pq.starts_with("/v1/") {
        return Err(format!("HTTP.Forward: refusing path {pq:?}"));
    }
    let body = b64()
        .decode(req["Body"].as_str().unwrap_or_default())
        .map_err(|e| format!("HTTP.Forward: bad body: {e}"))?;
    let mut b = Request::builder().method(method).uri(pq);
    for pair in req["Headers"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (pair[0].as_str(), pair[1].as_str()) {
            if PASSED.contains(&k.to_ascii_lowercase().as_str()) {
                b = b.header(k, v);
            }
        }
    }
    let request = b
        .body(Body::from(body))
        .map_err(|e| format!("HTTP.Forward: {e}"))?;
    let server = state.server.clone();
    let resp = crate::router(state)
        .oneshot(request)
        .await
        .map_err(|e| format!("HTTP.Forward: {e}"))?;
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = RETURNED
        .iter()
        .filter_map(|h| {
            let v = resp.headers().get(*h)?.to_str().ok()?;
            Some((h.to_string(), v.to_string()))
        })
        .collect();
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| format!("HTTP.Forward: reading the answer: {e}"))?;
    if req[NODE_ADDR_OF_ALLOC] == true && status == 200 {
        // The caller may read the allocation: tell where its node answers.
        let node_id = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|a| a["NodeID"].as_str().map(str::to_string))
            .unwrap_or_default();
        let addr = server
            .as_ref()
            .and_then(|s| s.state().snapshot().node(&node_id))
            .map(|n| n.http_addr.clone())
            .unwrap_or_default();
        return Ok(serde_json::json!({"Status": 200, "Headers": [], "Body": "", NODE_ADDR: addr}));
    }
    Ok(serde_json::json!({
        "Status": status,
        "Headers": headers,
        "Body": b64().encode(&bytes),
    }))
}
