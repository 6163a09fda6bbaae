//! `/v1/operator/raft/{configuration,peer}` and `/v1/operator/snapshot`.
//!
//! ACL: Nomad checks a management token in all of these (not `operator:*`); see
//! `auth::access_for`.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json as j, Value};
use sha2::{Digest as _, Sha256};

use super::agent::{cluster_peers, consistency, leader_addr, peer_node_name};
use super::{require_get, require_write};
use crate::error::ApiError;
use crate::query::{json, set_known_leader, Meta, HEADER_INDEX};
use crate::Ctx;

/// The raft protocol every server speaks.
const RAFT_PROTOCOL: &str = "3";

/// The index the operator reads report: the last applied raft entry, or the state's index.
fn current_index(ctx: &Ctx) -> u64 {
    match &ctx.state.server {
        Some(s) => s
            .raft()
            .map(|r| r.last_applied_index())
            .unwrap_or_else(|| s.state().latest_index()),
        None => 0,
    }
}

/// `GET /v1/operator/raft/configuration`:
/// `{"Servers":[{"ID","Node","Address","Leader","Voter","RaftProtocol"}],"Index"}`.
pub(crate) async fn raft_configuration(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    ctx.server()?;
    consistency(&ctx).await?;
    let agent = &ctx.state.agent;
    let servers: Vec<Value> = cluster_peers(&ctx)
        .iter()
        .map(|p| {
            j!({
                "ID": p.id,
                "Node": peer_node_name(agent, p),
                "Address": p.addr,
                "Leader": p.leader,
                "Voter": p.voter,
                "RaftProtocol": RAFT_PROTOCOL,
            })
        })
        .collect();
    let index = current_index(&ctx);
    let body = j!({ "Servers": servers, "Index": index });
    let mut resp = json(&body, ctx.pretty(), Meta::read(index))?;
    set_known_leader(&mut resp, leader_addr(&ctx).is_some());
    Ok(resp)
}

/// `DELETE /v1/operator/raft/peer?id=<id>` or `?address=<ip:port>`.
pub(crate) async fn raft_peer(ctx: Ctx) -> Result<Response, ApiError> {
    if ctx.method != axum::http::Method::DELETE {
        // Nomad answers other methods on this path with a 404.
        return Err(ApiError::not_found("Invalid method"));
    }
    let server = ctx.server()?.clone();
    let id = ctx.params.get("id");
    let address = ctx.params.get("address");
    let target = match (id, address) {
        (None, None) => {
            return Err(ApiError::bad_request(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Must specify only one of ?id or ?address",
            ))
        }
        (Some(v), None) | (None, Some(v)) => v.to_string(),
    };
    // An address must not be taken for an ID (or the reverse): check the kind first.
    let by_id = id.is_some();
    let known = server.peers().into_iter().any(|(pid, addr, _)| {
        if by_id {
            pid.to_string() == target
        } else {
            addr == target
        }
    });
    if server.raft().is_some() && !known {
        let kind = if by_id { "id" } else { "address" };
        return Err(ApiError::internal(format!(
            "{kind} {target:?} was not found in the Raft configuration"
        )));
    }
    server.raft_remove_peer(&target).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET` (save) / `PUT`/`POST` (restore) `/v1/operator/snapshot`.
pub(crate) async fn snapshot(ctx: Ctx) -> Result<Response, ApiError> {
    if ctx.is_get() {
        return snapshot_save(ctx).await;
    }
    require_write(&ctx)?;
    snapshot_restore(ctx).await
}

/// The state index a snapshot was taken at (its header: magic, crc32, index, term).
fn snapshot_index(bytes: &[u8]) -> Option<u64> {
    if !bytes.starts_with(nomad_server::SNAPSHOT_MAGIC) {
        return None;
    }
    let raw: [u8; 8] = bytes.get(12..20)?.try_into().ok()?;
    Some(u64::from_le_bytes(raw))
}

/// `Digest` header value of a body: `sha-256=<base64>` (the Go API client checks it).
pub(crate) fn digest_header(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    format!(
        "sha-256={}",
        base64::engine::general_purpose::STANDARD.encode(sum)
    )
}

async fn snapshot_save(ctx: Ctx) -> Result<Response, ApiError> {
    let server = ctx.server()?.clone();
    // The server always takes the snapshot after a consistent read; `?stale` cannot skip it.
    let bytes = server.snapshot_save().await?;
    let index = snapshot_index(&bytes).unwrap_or_else(|| server.state().latest_index());
    let digest = digest_header(&bytes);
    let mut resp = (StatusCode::OK, Body::from(bytes)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&digest) {
        h.insert(HeaderName::from_static("digest"), v);
    }
    set_index(&mut resp, index);
    set_known_leader(&mut resp, leader_addr(&ctx).is_some());
    Ok(resp)
}

async fn snapshot_restore(ctx: Ctx) -> Result<Response, ApiError> {
    let server = ctx.server()?.clone();
    if ctx.body.is_empty() {
        return Err(ApiError::empty_body());
    }
    server.snapshot_restore(&ctx.body).await?;
    // Nomad answers a restore with an empty body and the write's index.
    let mut resp = StatusCode::OK.into_response();
    set_index(&mut resp, server.state().latest_index());
    Ok(resp)
}

fn set_index(resp: &mut Response, index: u64) {
    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
        resp.headers_mut()
            .insert(HeaderName::from_static(HEADER_INDEX), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_header_index() {
        let mut b = nomad_server::SNAPSHOT_MAGIC.to_vec();
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&42u64.to_le_bytes());
        assert_eq!(snapshot_index(&b), Some(42));
        assert_eq!(snapshot_index(b"junk"), None);
        assert_eq!(snapshot_index(nomad_server::SNAPSHOT_MAGIC), None);
    }

    #[test]
    fn digest_is_base64_sha256() {
        assert_eq!(
            digest_header(b""),
            "sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
