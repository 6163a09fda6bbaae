//! `/v1/agent/{self,members,health,servers}`, `/v1/status/{leader,peers}`, `/v1/regions`,
//! `/v1/metrics`, and the `/ui/` placeholder.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json as j, Value};

use super::require_get;
use crate::error::ApiError;
use crate::query::{json, Meta};
use crate::{AgentInfo, Ctx};

/// Splits `host:port` (IPv6 in brackets allowed); a missing or bad port gives `default_port`.
fn split_host_port(addr: &str, default_port: u16) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => {
            let host = h.trim_start_matches('[').trim_end_matches(']').to_string();
            (host, p.parse().unwrap_or(default_port))
        }
        _ if addr.is_empty() => ("127.0.0.1".to_string(), default_port),
        _ => (addr.to_string(), default_port),
    }
}

fn serf_port(agent: &AgentInfo) -> u16 {
    agent.config_json["Ports"]["Serf"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(4648)
}

/// The agent as a Serf member (servers only).
fn member(agent: &AgentInfo) -> Value {
    let (rpc_host, rpc_port) = split_host_port(&agent.rpc_addr, 4647);
    let mut tags = BTreeMap::new();
    tags.insert("role", "nomad".to_string());
    tags.insert("region", agent.region().to_string());
    tags.insert("dc", agent.datacenter().to_string());
    tags.insert("build", nomad_structs::NOMAD_VERSION.to_string());
    tags.insert("revision", String::new());
    tags.insert("vsn", "1".to_string());
    tags.insert("raft_vsn", "3".to_string());
    tags.insert("rpc_addr", rpc_host.clone());
    tags.insert("port", rpc_port.to_string());
    tags.insert("bootstrap", "1".to_string());
    if let Some(id) = agent.config_json["NodeID"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        tags.insert("id", id.to_string());
    }
    j!({
        "Name": format!("{}.{}", agent.node_name, agent.region()),
        "Addr": rpc_host,
        "Port": serf_port(agent),
        "Tags": tags,
        "Status": "alive",
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

fn string_map(pairs: &[(&str, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect(),
    )
}

/// `GET /v1/agent/self`: `config`, `member`, `stats` (lowercase top-level keys).
pub(crate) async fn agent_self(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let agent = &ctx.state.agent;
    let mut stats = serde_json::Map::new();
    if let Some(client) = &ctx.state.client {
        let node_id = client.node_id();
        let num_allocs = client.num_allocs();
        stats.insert(
            "client".into(),
            string_map(&[
                ("node_id", node_id),
                ("known_servers", agent.rpc_addr.clone()),
                ("num_allocations", num_allocs.to_string()),
                ("last_heartbeat", "0".into()),
                ("heartbeat_ttl", "0".into()),
            ]),
        );
    }
    if agent.server_enabled || ctx.state.server.is_some() {
        stats.insert(
            "nomad".into(),
            string_map(&[
                ("server", "true".into()),
                ("leader", "true".into()),
                ("leader_addr", agent.rpc_addr.clone()),
                ("bootstrap", "true".into()),
                ("known_regions", "1".into()),
            ]),
        );
    }
    stats.insert(
        "runtime".into(),
        string_map(&[
            ("arch", std::env::consts::ARCH.into()),
            ("version", "rust".into()),
            (
                "cpu_count",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
                    .to_string(),
            ),
            ("kernel.name", std::env::consts::OS.into()),
        ]),
    );
    let member = if agent.server_enabled || ctx.state.server.is_some() {
        member(agent)
    } else {
        Value::Null
    };
    let body = j!({ "config": agent.config_json, "member": member, "stats": stats });
    json(&body, ctx.pretty(), Meta::None)
}

/// `GET /v1/agent/members`.
pub(crate) async fn members(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let agent = &ctx.state.agent;
    let members: Vec<Value> = if agent.server_enabled || ctx.state.server.is_some() {
        vec![member(agent)]
    } else {
        Vec::new()
    };
    let body = j!({
        "ServerName": agent.node_name,
        "ServerRegion": agent.region(),
        "ServerDC": agent.datacenter(),
        "Members": members,
    });
    json(&body, ctx.pretty(), Meta::None)
}

/// `GET /v1/agent/health`.
pub(crate) async fn health(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let mut body = serde_json::Map::new();
    if ctx.state.client.is_some() {
        body.insert("client".into(), j!({"ok": true, "message": "ok"}));
    }
    if ctx.state.server.is_some() {
        body.insert("server".into(), j!({"ok": true, "message": "ok"}));
    }
    json(&body, ctx.pretty(), Meta::None)
}

fn server_addrs(ctx: &Ctx) -> Vec<String> {
    if ctx.state.agent.rpc_addr.is_empty() {
        Vec::new()
    } else {
        vec![ctx.state.agent.rpc_addr.clone()]
    }
}

/// `GET /v1/agent/servers`.
pub(crate) async fn servers(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    json(&server_addrs(&ctx), ctx.pretty(), Meta::None)
}

/// `GET /v1/status/leader`: the leader's RPC address as a JSON string.
pub(crate) async fn leader(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let addr = server_addrs(&ctx).into_iter().next().unwrap_or_default();
    json(&addr, ctx.pretty(), Meta::None)
}

/// `GET /v1/status/peers`.
pub(crate) async fn peers(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let peers = if ctx.state.server.is_some() {
        server_addrs(&ctx)
    } else {
        Vec::new()
    };
    json(&peers, ctx.pretty(), Meta::None)
}

/// `GET /v1/regions`.
pub(crate) async fn regions(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    json(&[ctx.state.agent.region()], ctx.pretty(), Meta::None)
}

/// `GET /v1/metrics`: an empty go-metrics summary (no metrics are collected yet).
pub(crate) async fn metrics(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    if ctx.params.str("format") == "prometheus" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Prometheus is not enabled",
        ));
    }
    let body = j!({"Timestamp": "", "Gauges": [], "Points": [], "Counters": [], "Samples": []});
    json(&body, ctx.pretty(), Meta::None)
}

/// A tiny page where the web UI would be.
pub(crate) fn ui_placeholder() -> Response {
    let html = "<!DOCTYPE html>\n<html><head><title>Nomad</title></head>\
                <body><h1>Nomad</h1><p>The web UI is not bundled with this agent. \
                Use the HTTP API under <code>/v1/</code> or the <code>nomad</code> CLI.</p></body></html>\n";
    let mut resp = (StatusCode::OK, html).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_addresses() {
        assert_eq!(
            split_host_port("127.0.0.1:4647", 1),
            ("127.0.0.1".into(), 4647)
        );
        assert_eq!(split_host_port("[::1]:4647", 1), ("::1".into(), 4647));
        assert_eq!(split_host_port("", 4647), ("127.0.0.1".into(), 4647));
    }
}
