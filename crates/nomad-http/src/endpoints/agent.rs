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

/// One server of the raft configuration as the operator endpoints show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    /// The raft ID (the RPC address when raft is not in use).
    pub(crate) id: String,
    /// RPC address `host:port`.
    pub(crate) addr: String,
    /// Has a vote.
    pub(crate) voter: bool,
    /// Is the current leader.
    pub(crate) leader: bool,
    /// Is this agent's server.
    pub(crate) is_self: bool,
}

/// The servers of the cluster: the raft configuration (sorted by ID), or just this server when
/// raft is not in use. Empty when this agent runs no server.
pub(crate) fn cluster_peers(ctx: &Ctx) -> Vec<Peer> {
    let Some(server) = &ctx.state.server else {
        return Vec::new();
    };
    let Some(raft) = server.raft() else {
        let addr = ctx.state.agent.rpc_addr.clone();
        return vec![Peer {
            id: addr.clone(),
            addr,
            voter: true,
            leader: true,
            is_self: true,
        }];
    };
    let leader = raft.leader().map(|(id, _)| id);
    let me = raft.node_id();
    let mut peers: Vec<Peer> = server
        .peers()
        .into_iter()
        .map(|(id, addr, voter)| Peer {
            id: id.to_string(),
            addr,
            voter,
            leader: leader == Some(id),
            is_self: id == me,
        })
        .collect();
    peers.sort_by_key(|p| p.id.parse::<u64>().unwrap_or(u64::MAX));
    peers
}

/// The leader's RPC address as this agent knows it: the raft leader; this server without
/// raft; the agent's RPC address when it runs no server. `None`: no leader known.
pub(crate) fn leader_addr(ctx: &Ctx) -> Option<String> {
    match &ctx.state.server {
        Some(server) if server.raft().is_some() => server.leader(),
        _ => Some(ctx.state.agent.rpc_addr.clone()).filter(|a| !a.is_empty()),
    }
}

/// Unless `?stale`, makes the reads that follow see every acknowledged write (a leader must be
/// reachable): Nomad's 500 `No cluster leader` otherwise.
pub(crate) async fn consistency(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.opts.stale {
        return Ok(());
    }
    match &ctx.state.server {
        Some(server) => server
            .consistent_read()
            .await
            .map_err(|_| ApiError::internal("No cluster leader")),
        None => Ok(()),
    }
}

/// The serf port of a peer we only know by RPC address: ours is the RPC port plus some offset
/// (4647 → 4648 by default); assume the peer uses the same layout.
fn guess_serf_port(agent: &AgentInfo, peer_rpc_port: u16) -> u16 {
    let (_, own_rpc) = split_host_port(&agent.rpc_addr, 4647);
    let offset = i32::from(serf_port(agent)) - i32::from(own_rpc);
    u16::try_from(i32::from(peer_rpc_port) + offset).unwrap_or(4648)
}

/// The member name of a server we only know by address: `<host:port>.<region>`.
pub(crate) fn peer_node_name(agent: &AgentInfo, peer: &Peer) -> String {
    if peer.is_self {
        format!("{}.{}", agent.node_name, agent.region())
    } else {
        format!("{}.{}", peer.addr, agent.region())
    }
}

/// A server as a Serf member. `peer` `None`: this agent without raft; otherwise one server of
/// the raft configuration (the agent's own, or another known only by address: it gets this
/// agent's region, datacenter and build, as servers of one cluster normally share them).
fn member(agent: &AgentInfo, peer: Option<&Peer>) -> Value {
    let own = peer.is_none_or(|p| p.is_self);
    // The raft address, so `Addr:Tags.port` matches `/v1/status/leader` (how the CLI finds
    // the leader).
    let rpc = peer.map_or(agent.rpc_addr.as_str(), |p| p.addr.as_str());
    let (rpc_host, rpc_port) = split_host_port(rpc, 4647);
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
    match agent.config_json["Server"]["BootstrapExpect"].as_u64() {
        Some(n) if n > 1 => tags.insert("expect", n.to_string()),
        _ => tags.insert("bootstrap", "1".to_string()),
    };
    if let Some(p) = peer {
        tags.insert("id", p.id.clone());
        if !p.voter {
            tags.insert("nonvoter", "1".to_string());
        }
    } else if let Some(id) = agent.config_json["NodeID"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        tags.insert("id", id.to_string());
    }
    let (name, port) = match peer {
        Some(p) if !own => (peer_node_name(agent, p), guess_serf_port(agent, rpc_port)),
        _ => (
            format!("{}.{}", agent.node_name, agent.region()),
            serf_port(agent),
        ),
    };
    j!({
        "Name": name,
        "Addr": rpc_host,
        "Port": port,
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

/// This agent's own member entry (servers only).
fn self_member(ctx: &Ctx) -> Value {
    let peers = cluster_peers(ctx);
    let own = ctx
        .state
        .server
        .as_ref()
        .filter(|s| s.raft().is_some())
        .and_then(|_| peers.iter().find(|p| p.is_self));
    member(&ctx.state.agent, own)
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
        let is_leader = ctx.state.server.as_ref().is_none_or(|s| s.is_leader());
        stats.insert(
            "nomad".into(),
            string_map(&[
                ("server", "true".into()),
                ("leader", is_leader.to_string()),
                ("leader_addr", leader_addr(&ctx).unwrap_or_default()),
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
        self_member(&ctx)
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
    let members: Vec<Value> = match &ctx.state.server {
        Some(server) if server.raft().is_some() => cluster_peers(&ctx)
            .iter()
            .map(|p| member(agent, Some(p)))
            .collect(),
        Some(_) => vec![member(agent, None)],
        None if agent.server_enabled => vec![member(agent, None)],
        None => Vec::new(),
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

/// `GET /v1/agent/servers`: the RPC addresses of the known servers.
pub(crate) async fn servers(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let addrs: Vec<String> = if ctx.state.server.is_some() {
        cluster_peers(&ctx).into_iter().map(|p| p.addr).collect()
    } else {
        leader_addr(&ctx).into_iter().collect()
    };
    json(&addrs, ctx.pretty(), Meta::None)
}

/// `GET /v1/status/leader`: the leader's RPC address as a JSON string (`""` with `?stale`
/// when none is known).
pub(crate) async fn leader(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    consistency(&ctx).await?;
    let addr = leader_addr(&ctx).unwrap_or_default();
    json(&addr, ctx.pretty(), Meta::None)
}

/// `GET /v1/status/peers`: the RPC addresses of the voting servers.
pub(crate) async fn peers(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    consistency(&ctx).await?;
    let peers: Vec<String> = cluster_peers(&ctx)
        .into_iter()
        .filter(|p| p.voter)
        .map(|p| p.addr)
        .collect();
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
