//! The operator surface through the router (oneshot): `/v1/status/{leader,peers}`,
//! `/v1/agent/{members,servers}`, `/v1/operator/raft/*` and `/v1/operator/snapshot`, on a
//! single in-memory server and on three servers over real raft (loopback TCP).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use nomad_raft::{RaftConfig, RaftNode};
use nomad_server::{Server, ServerConfig};
use nomad_state::StateStore;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{router, AgentInfo, HttpState};

const WAIT: Duration = Duration::from_secs(20);

fn agent(node: &str, rpc_addr: &str, expect: u64) -> Arc<AgentInfo> {
    Arc::new(AgentInfo {
        region: "global".into(),
        datacenter: "dc1".into(),
        node_name: node.into(),
        server_enabled: true,
        client_enabled: false,
        http_addr: "127.0.0.1:4646".into(),
        rpc_addr: rpc_addr.into(),
        config_json: json!({
            "Region": "global",
            "Ports": {"HTTP": 4646, "RPC": 4647, "Serf": 4648},
            "Server": {"Enabled": true, "BootstrapExpect": expect},
        }),
        node_tls: None,
    })
}

fn single(acl_enabled: bool) -> (Router, Arc<Server>) {
    let server = Server::new(ServerConfig {
        acl_enabled,
        ..ServerConfig::default()
    });
    let state = HttpState {
        server: Some(server.clone()),
        client: None,
        agent: agent("dev", "127.0.0.1:4647", 1),
    };
    (router(state), server)
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("X-Nomad-Token", t);
    }
    let resp = app
        .clone()
        .oneshot(b.body(body.into()).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, HeaderMap, Bytes) {
    call(app, Method::GET, uri, None, Body::empty()).await
}

async fn get_json(app: &Router, uri: &str) -> Value {
    let (s, _, b) = get(app, uri).await;
    assert_eq!(s, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).expect("json")
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn wait_for<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn single_server_status_members_and_raft_configuration() {
    let (app, _) = single(false);
    let (s, _, b) = get(&app, "/v1/status/leader").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text(&b), "\"127.0.0.1:4647\"");
    assert_eq!(
        get_json(&app, "/v1/status/peers").await,
        json!(["127.0.0.1:4647"])
    );
    assert_eq!(
        get_json(&app, "/v1/agent/servers").await,
        json!(["127.0.0.1:4647"])
    );

    let m = get_json(&app, "/v1/agent/members").await;
    assert_eq!(m["ServerName"], "dev");
    assert_eq!(m["ServerRegion"], "global");
    assert_eq!(m["ServerDC"], "dc1");
    let members = m["Members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["Name"], "dev.global");
    assert_eq!(members[0]["Addr"], "127.0.0.1");
    assert_eq!(members[0]["Port"], 4648);
    assert_eq!(members[0]["Status"], "alive");
    assert_eq!(members[0]["Tags"]["role"], "nomad");
    assert_eq!(members[0]["Tags"]["port"], "4647");
    assert_eq!(members[0]["Tags"]["bootstrap"], "1");
    assert_eq!(members[0]["Tags"]["raft_vsn"], "3");

    let (s, h, b) = get(&app, "/v1/operator/raft/configuration").await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(h["x-nomad-knownleader"], "true");
    assert!(h.contains_key("x-nomad-index"));
    let c: Value = serde_json::from_slice(&b).expect("json");
    assert_eq!(
        c["Servers"],
        json!([{
            "ID": "127.0.0.1:4647", "Node": "dev.global", "Address": "127.0.0.1:4647",
            "Leader": true, "Voter": true, "RaftProtocol": "3"
        }])
    );
    let (s, _, _) = call(
        &app,
        Method::PUT,
        "/v1/operator/raft/configuration",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);

    let self_ = get_json(&app, "/v1/agent/self").await;
    assert_eq!(self_["stats"]["nomad"]["leader"], "true");
    assert_eq!(self_["stats"]["nomad"]["leader_addr"], "127.0.0.1:4647");
}

#[tokio::test]
async fn remove_peer_parameters() {
    let (app, _) = single(false);
    let del = |uri: &'static str| {
        let app = app.clone();
        async move { call(&app, Method::DELETE, uri, None, Body::empty()).await }
    };
    let (s, _, b) = del("/v1/operator/raft/peer").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        text(&b),
        "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
    );
    let (s, _, b) = del("/v1/operator/raft/peer?id=1&address=a:1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(text(&b), "Must specify only one of ?id or ?address");
    // Without raft there is nothing to remove.
    let (s, _, _) = del("/v1/operator/raft/peer?address=127.0.0.1:4647").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let (s, _, b) = get(&app, "/v1/operator/raft/peer?id=1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(text(&b), "Invalid method");
}

#[tokio::test]
async fn snapshot_save_and_restore_round_trip() {
    let (app, server) = single(false);
    let ns = nomad_state::Namespace {
        name: "team-a".into(),
        ..Default::default()
    };
    server
        .apply(nomad_state::Command::NamespaceUpsert {
            namespaces: vec![ns],
        })
        .await
        .expect("apply");

    let (s, h, snap) = get(&app, "/v1/operator/snapshot").await;
    assert_eq!(s, StatusCode::OK, "{}", text(&snap));
    assert_eq!(h["content-type"], "application/octet-stream");
    assert!(snap.starts_with(nomad_server::SNAPSHOT_MAGIC));
    assert_eq!(
        h["digest"].to_str().unwrap(),
        crate::endpoints::operator::digest_header(&snap)
    );
    let index: u64 = h["x-nomad-index"].to_str().unwrap().parse().unwrap();
    let info = Server::snapshot_inspect(&snap).expect("inspect");
    assert_eq!(index, info.index);
    assert_eq!(info.namespaces, 2);

    // Restore into a fresh server.
    let (app2, server2) = single(false);
    assert!(server2.state().snapshot().namespace("team-a").is_none());
    let (s, h, b) = call(
        &app2,
        Method::PUT,
        "/v1/operator/snapshot",
        None,
        snap.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert!(b.is_empty());
    assert!(h.contains_key("x-nomad-index"));
    assert!(server2.state().snapshot().namespace("team-a").is_some());

    // Garbage and empty bodies are refused.
    let (s, _, b) = call(
        &app2,
        Method::PUT,
        "/v1/operator/snapshot",
        None,
        "not a snapshot at all, clearly",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{}", text(&b));
    let (s, _, _) = call(
        &app2,
        Method::POST,
        "/v1/operator/snapshot",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = call(
        &app2,
        Method::DELETE,
        "/v1/operator/snapshot",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn operator_endpoints_need_a_management_token() {
    let (app, _) = single(true);
    let (s, _, b) = call(&app, Method::PUT, "/v1/acl/bootstrap", None, Body::empty()).await;
    assert_eq!(s, StatusCode::OK);
    let mgmt = serde_json::from_slice::<Value>(&b).unwrap()["SecretID"]
        .as_str()
        .unwrap()
        .to_string();
    let policy =
        json!({"Name": "op", "Rules": r#"operator { policy = "write" } node { policy = "read" }"#});
    let (s, _, b) = call(
        &app,
        Method::PUT,
        "/v1/acl/policy/op",
        Some(&mgmt),
        policy.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let token = json!({"Name": "op", "Type": "client", "Policies": ["op"]});
    let (s, _, b) = call(
        &app,
        Method::PUT,
        "/v1/acl/token",
        Some(&mgmt),
        token.to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let op = serde_json::from_slice::<Value>(&b).unwrap()["SecretID"]
        .as_str()
        .unwrap()
        .to_string();

    for (method, uri) in [
        (Method::GET, "/v1/operator/raft/configuration"),
        (Method::DELETE, "/v1/operator/raft/peer?id=1"),
        (Method::GET, "/v1/operator/snapshot"),
        (Method::PUT, "/v1/operator/snapshot"),
    ] {
        let (s, _, b) = call(&app, method.clone(), uri, None, Body::empty()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri} anonymous");
        assert_eq!(text(&b), "Permission denied");
        let (s, _, _) = call(&app, method.clone(), uri, Some(&op), Body::empty()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri} operator token");
    }
    let (s, _, _) = call(
        &app,
        Method::GET,
        "/v1/operator/raft/configuration",
        Some(&mgmt),
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(
        &app,
        Method::GET,
        "/v1/operator/snapshot",
        Some(&mgmt),
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // No ACL on the status endpoints; node:read on members.
    let (s, _, _) = get(&app, "/v1/status/leader").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(
        &app,
        Method::GET,
        "/v1/agent/members",
        Some(&op),
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

struct Member {
    app: Router,
    server: Arc<Server>,
    raft: Arc<RaftNode>,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn cluster(n: u64) -> Vec<Member> {
    let mut members = Vec::new();
    for id in 1..=n {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = RaftConfig::new(id, "127.0.0.1:0", dir.path());
        cfg.heartbeat_interval = Duration::from_millis(50);
        cfg.election_timeout_min = Duration::from_millis(250);
        cfg.election_timeout_max = Duration::from_millis(500);
        let raft = RaftNode::start(cfg, StateStore::new())
            .await
            .expect("raft starts");
        let server = Server::with_raft(
            ServerConfig {
                num_schedulers: 1,
                ..ServerConfig::default()
            },
            raft.clone(),
        );
        let (stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(server.clone().run(rx));
        let state = HttpState {
            server: Some(server.clone()),
            client: None,
            agent: agent(&format!("s{id}"), &raft.rpc_addr(), n),
        };
        members.push(Member {
            app: router(state),
            server,
            raft,
            stop,
            _dir: dir,
        });
    }
    let config: BTreeMap<u64, String> = members
        .iter()
        .map(|m| (m.raft.node_id(), m.raft.rpc_addr()))
        .collect();
    members[0].raft.bootstrap(config).await.expect("bootstrap");
    let agreed = wait_for(WAIT, || async {
        let views: Vec<Option<u64>> = members
            .iter()
            .map(|m| m.raft.leader().map(|l| l.0))
            .collect();
        views[0].is_some() && views.iter().all(|v| *v == views[0])
    })
    .await;
    assert!(agreed, "no leader elected");
    members
}

async fn shutdown(members: Vec<Member>) {
    for m in members {
        let _ = m.stop.send(true);
        m.raft.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_leader_peers_members_and_remove_peer() {
    let members = cluster(3).await;
    let leader = members
        .iter()
        .find(|m| m.server.is_leader())
        .expect("a leader");
    let leader_addr = leader.raft.rpc_addr();
    let follower = members
        .iter()
        .find(|m| !m.server.is_leader())
        .expect("a follower");
    let all: Vec<String> = members.iter().map(|m| m.raft.rpc_addr()).collect();

    // Every server names the same leader and all three peers.
    for m in &members {
        let (s, _, b) = get(&m.app, "/v1/status/leader").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(text(&b), format!("\"{leader_addr}\""));
        let peers: Vec<String> =
            serde_json::from_value(get_json(&m.app, "/v1/status/peers").await).unwrap();
        assert_eq!(peers, all);
    }

    // Members: one per peer, all alive, the leader found the way the CLI finds it.
    let v = get_json(&follower.app, "/v1/agent/members").await;
    let list = v["Members"].as_array().expect("members");
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|m| m["Status"] == "alive"));
    assert!(list.iter().all(|m| m["Tags"]["expect"] == "3"));
    let leaders: Vec<&Value> = list
        .iter()
        .filter(|m| {
            format!(
                "{}:{}",
                m["Addr"].as_str().unwrap(),
                m["Tags"]["port"].as_str().unwrap()
            ) == leader_addr
        })
        .collect();
    assert_eq!(leaders.len(), 1);
    let own = format!("s{}.global", follower.raft.node_id());
    assert!(list.iter().any(|m| m["Name"] == own.as_str()));

    // Raft configuration: three voters, exactly one leader, IDs are raft IDs.
    let (s, h, b) = get(&follower.app, "/v1/operator/raft/configuration").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-nomad-knownleader"], "true");
    let c: Value = serde_json::from_slice(&b).unwrap();
    let servers = c["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    assert_eq!(servers.iter().filter(|s| s["Leader"] == true).count(), 1);
    assert!(servers.iter().all(|s| s["Voter"] == true));
    let ids: Vec<&str> = servers.iter().map(|s| s["ID"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3"]);

    // Unknown peers are refused with Nomad's message.
    let (s, _, b) = call(
        &leader.app,
        Method::DELETE,
        "/v1/operator/raft/peer?id=9",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(&b), "id \"9\" was not found in the Raft configuration");
    let (s, _, b) = call(
        &leader.app,
        Method::DELETE,
        "/v1/operator/raft/peer?address=1",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        text(&b),
        "address \"1\" was not found in the Raft configuration"
    );

    // Remove a follower by address through another follower's API.
    let victim = members
        .iter()
        .find(|m| !m.server.is_leader() && m.raft.node_id() != follower.raft.node_id())
        .expect("second follower");
    let victim_addr = victim.raft.rpc_addr();
    let (s, _, b) = call(
        &follower.app,
        Method::DELETE,
        &format!("/v1/operator/raft/peer?address={victim_addr}"),
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let gone = wait_for(WAIT, || async {
        let v = get_json(&leader.app, "/v1/status/peers").await;
        v.as_array()
            .is_some_and(|a| a.len() == 2 && !a.iter().any(|p| p == victim_addr.as_str()))
    })
    .await;
    assert!(gone, "peer not removed");
    let v = get_json(&leader.app, "/v1/agent/members").await;
    assert_eq!(v["Members"].as_array().unwrap().len(), 2);

    // A snapshot taken through a follower inspects like the leader's state.
    let (s, _, snap) = get(&follower.app, "/v1/operator/snapshot").await;
    assert_eq!(s, StatusCode::OK, "{}", text(&snap));
    let info = Server::snapshot_inspect(&snap).expect("inspect");
    assert!(info.term >= 1);
    assert_eq!(info.namespaces, 1);

    shutdown(members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_leader_is_500_unless_stale() {
    let mut members = cluster(3).await;
    // Keep one server; stop the other two so it can never win an election.
    let keep = members.remove(0);
    shutdown(members).await;
    // Without a quorum no read can be made consistent, whatever this server believes.
    let (s, _, b) = get(&keep.app, "/v1/status/leader").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(&b), "No cluster leader");
    // Stale reads answer from the local view.
    let (s, _, _) = get(&keep.app, "/v1/status/peers?stale").await;
    assert_eq!(s, StatusCode::OK);
    let (s, h, b) = get(&keep.app, "/v1/operator/raft/configuration?stale=true").await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    if keep.raft.leader().is_none() {
        assert_eq!(h["x-nomad-knownleader"], "false");
    }
    let (s, _, b) = get(&keep.app, "/v1/operator/raft/configuration").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(&b), "No cluster leader");
    shutdown(vec![keep]).await;
}
