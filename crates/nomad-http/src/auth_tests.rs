//! ACL enforcement through the router (oneshot): every Access class without a token, with a
//! token lacking the capability (and nothing done), and with it; namespace isolation;
//! bootstrap; unknown, expired and deleted tokens; `Authorization: Bearer`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use nomad_server::{Server, ServerConfig};
use nomad_structs::{Allocation, Job};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{router, AgentInfo, HttpState};

pub(super) fn app(acl_enabled: bool) -> (Router, Arc<Server>) {
    let server = Server::new(ServerConfig {
        acl_enabled,
        ..ServerConfig::default()
    });
    let agent = Arc::new(AgentInfo {
        region: "global".into(),
        datacenter: "dc1".into(),
        node_name: "dev".into(),
        server_enabled: true,
        client_enabled: false,
        http_addr: "127.0.0.1:4646".into(),
        rpc_addr: "127.0.0.1:4647".into(),
        config_json: json!({"Region": "global"}),
        node_tls: None,
    });
    let state = HttpState {
        server: Some(server.clone()),
        client: None,
        agent,
    };
    (router(state), server)
}

pub(super) enum Auth<'a> {
    None,
    Header(&'a str),
    Bearer(&'a str),
}

pub(super) async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut b = Request::builder().method(method).uri(uri);
    match auth {
        Auth::None => {}
        Auth::Header(t) => b = b.header("X-Nomad-Token", t),
        Auth::Bearer(t) => b = b.header("Authorization", format!("Bearer {t}")),
    }
    let body = body
        .map(|v| Body::from(v.to_string()))
        .unwrap_or_else(Body::empty);
    let resp = app
        .clone()
        .oneshot(b.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes: Bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub(super) async fn bootstrap(app: &Router) -> String {
    let (st, body) = call(app, Method::PUT, "/v1/acl/bootstrap", Auth::None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("token json");
    v["SecretID"].as_str().expect("secret").to_string()
}

/// A client token with one policy holding `rules`.
pub(super) async fn token_with(app: &Router, mgmt: &str, name: &str, rules: &str) -> String {
    let (st, body) = call(
        app,
        Method::PUT,
        &format!("/v1/acl/policy/{name}"),
        Auth::Header(mgmt),
        Some(json!({"Name": name, "Rules": rules})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "policy {name}: {body}");
    let (st, body) = call(
        app,
        Method::PUT,
        "/v1/acl/token",
        Auth::Header(mgmt),
        Some(json!({"Name": name, "Type": "client", "Policies": [name]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "token {name}: {body}");
    let v: Value = serde_json::from_str(&body).expect("token json");
    v["SecretID"].as_str().expect("secret").to_string()
}

fn job_value(id: &str, ns: &str) -> Value {
    json!({
        "ID": id, "Name": id, "Type": "service", "Namespace": ns, "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "web", "Count": 1, "Tasks": [{
            "Name": "server", "Driver": "raw_exec",
            "Config": {"command": "/bin/sleep", "args": ["60"]}}]}]
    })
}

async fn seed_namespace(server: &Server, name: &str) {
    let ns = nomad_state::Namespace {
        name: name.into(),
        ..Default::default()
    };
    server
        .apply(nomad_state::Command::NamespaceUpsert {
            namespaces: vec![ns],
        })
        .await
        .expect("namespace");
}

/// Registers job `id` in `ns` and one alloc of it; returns the alloc ID.
pub(super) async fn seed_job_and_alloc(server: &Server, id: &str, ns: &str) -> String {
    let mut job: Job = serde_json::from_value(job_value(id, ns)).expect("job");
    job.region = "global".into();
    job.status = "running".into();
    server
        .apply(nomad_state::Command::JobRegister {
            enforce_index: None,
            job: job.clone(),
            eval: None,
            submission: None,
            now: 1,
        })
        .await
        .expect("job");
    let alloc_id = uuid_like(id);
    let alloc: Allocation = serde_json::from_value(json!({
        "ID": alloc_id, "Namespace": ns, "JobID": id, "TaskGroup": "web",
        "Name": format!("{id}.web[0]"), "NodeID": "node-1", "EvalID": uuid_like("eval"),
        "DesiredStatus": "run", "ClientStatus": "running",
    }))
    .expect("alloc");
    let mut alloc = alloc;
    alloc.job = Some(Box::new(job));
    server
        .apply(nomad_state::Command::PlanApply {
            allocs_upsert: vec![alloc],
            allocs_stop: vec![],
            evals: vec![],
            now: 2,
        })
        .await
        .expect("alloc");
    alloc_id
}

pub(super) fn uuid_like(seed: &str) -> String {
    let mut h: u64 = 1469598103934665603;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff,
        (h >> 48) & 0xffff,
        h & 0xffff_ffff_ffff
    )
}

const READ_DEFAULT: &str = r#"namespace "default" { policy = "read" }"#;
const WRITE_DEFAULT: &str = r#"namespace "default" { policy = "write" }"#;

#[tokio::test]
async fn bootstrap_once_then_reset_index_message() {
    let (app, _) = app(true);
    let (st, body) = call(&app, Method::PUT, "/v1/acl/bootstrap", Auth::None, None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["Type"], "management");
    assert_eq!(v["Name"], "Bootstrap Token");
    assert!(!v["AccessorID"].as_str().unwrap_or("").is_empty());
    let (st, body) = call(&app, Method::POST, "/v1/acl/bootstrap", Auth::None, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body.starts_with("ACL bootstrap already done (reset index: "),
        "{body}"
    );
}

#[tokio::test]
async fn acl_endpoints_refuse_when_disabled() {
    let (app, _) = app(false);
    for (m, p) in [
        (Method::PUT, "/v1/acl/bootstrap"),
        (Method::GET, "/v1/acl/tokens"),
        (Method::GET, "/v1/acl/policies"),
    ] {
        let (st, body) = call(&app, m, p, Auth::None, None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{p}");
        assert_eq!(body, "ACL support disabled");
    }
    // Everything else is open.
    let (st, _) = call(&app, Method::GET, "/v1/jobs", Auth::None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = call(&app, Method::GET, "/v1/namespaces", Auth::None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("\"default\""), "{body}");
}

#[tokio::test]
async fn job_endpoints_no_token_wrong_token_right_token() {
    let (app, server) = app(true);
    let mgmt = bootstrap(&app).await;
    let reader = token_with(&app, &mgmt, "reader", READ_DEFAULT).await;
    let writer = token_with(&app, &mgmt, "writer", WRITE_DEFAULT).await;
    let node_only = token_with(&app, &mgmt, "noder", r#"node { policy = "read" }"#).await;
    let reg = json!({"Job": job_value("web", "")});

    // register: none / lacking / holding
    let (st, body) = call(&app, Method::PUT, "/v1/jobs", Auth::None, Some(reg.clone())).await;
    assert_eq!(
        (st, body.as_str()),
        (StatusCode::FORBIDDEN, "Permission denied")
    );
    let (st, _) = call(
        &app,
        Method::PUT,
        "/v1/jobs",
        Auth::Header(&reader),
        Some(reg.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(
        server.state().snapshot().job("default", "web").is_none(),
        "a refused register must not register"
    );
    let (st, body) = call(
        &app,
        Method::PUT,
        "/v1/job/web",
        Auth::Header(&writer),
        Some(reg.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(server.state().snapshot().job("default", "web").is_some());

    // list and read
    for uri in ["/v1/jobs", "/v1/job/web", "/v1/job/web/summary"] {
        let (st, _) = call(&app, Method::GET, uri, Auth::None, None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{uri} anonymous");
        let (st, _) = call(&app, Method::GET, uri, Auth::Header(&node_only), None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{uri} node-only");
        let (st, body) = call(&app, Method::GET, uri, Auth::Header(&reader), None).await;
        assert_eq!(st, StatusCode::OK, "{uri}: {body}");
    }

    // deregister: a reader changes nothing
    let (st, _) = call(
        &app,
        Method::DELETE,
        "/v1/job/web",
        Auth::Header(&reader),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let job = server
        .state()
        .snapshot()
        .job("default", "web")
        .expect("job");
    assert!(!job.stop, "a refused deregister must not stop the job");
    let (st, body) = call(
        &app,
        Method::DELETE,
        "/v1/job/web",
        Auth::Header(&writer),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // The token may come in the body's SecretID (Nomad's api.WriteRequest) when no header
    // carries one; a header wins over it.
    let in_body = |secret: &str, id: &str| json!({"Job": job_value(id, ""), "SecretID": secret});
    let (st, _) = call(
        &app,
        Method::PUT,
        "/v1/jobs",
        Auth::None,
        Some(in_body(&reader, "b1")),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = call(
        &app,
        Method::PUT,
        "/v1/jobs",
        Auth::None,
        Some(in_body(&writer, "b1")),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(server.state().snapshot().job("default", "b1").is_some());
    let (st, _) = call(
        &app,
        Method::PUT,
        "/v1/jobs",
        Auth::Header(&reader),
        Some(in_body(&writer, "b2")),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(server.state().snapshot().job("default", "b2").is_none());

    // purge narrows to submit-job OR purge-job: deregister-job alone is not enough
    let dereg = token_with(
        &app,
        &mgmt,
        "dereg",
        r#"namespace "default" { capabilities = ["deregister-job"] }"#,
    )
    .await;
    let (st, _) = call(
        &app,
        Method::DELETE,
        "/v1/job/web?purge=true",
        Auth::Header(&dereg),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(server.state().snapshot().job("default", "web").is_some());
}

#[tokio::test]
async fn alloc_node_agent_and_management_endpoints() {
    let (app, server) = app(true);
    let mgmt = bootstrap(&app).await;
    let alloc = seed_job_and_alloc(&server, "web", "default").await;
    let reader = token_with(&app, &mgmt, "reader", READ_DEFAULT).await;
    let writer = token_with(&app, &mgmt, "writer", WRITE_DEFAULT).await;
    let noder = token_with(
        &app,
        &mgmt,
        "noder",
        r#"node { policy = "read" }
           agent { policy = "read" }"#,
    )
    .await;

    // alloc read: read-job in the alloc's namespace
    let uri = format!("/v1/allocation/{alloc}");
    let (st, _) = call(&app, Method::GET, &uri, Auth::None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, Method::GET, &uri, Auth::Header(&noder), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = call(&app, Method::GET, &uri, Auth::Header(&reader), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // alloc stop: alloc-lifecycle
    let uri = format!("/v1/allocation/{alloc}/stop");
    let (st, _) = call(&app, Method::PUT, &uri, Auth::None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, Method::PUT, &uri, Auth::Header(&reader), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let a = server.state().snapshot().alloc(&alloc).expect("alloc");
    assert_eq!(a.desired_status, "run", "a refused stop must not stop");
    let (st, body) = call(&app, Method::PUT, &uri, Auth::Header(&writer), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // logs: read-logs (not in `read`); with it the ACL passes (this agent has no client)
    let uri = format!("/v1/client/fs/logs/{alloc}?task=server&type=stdout");
    let (st, _) = call(&app, Method::GET, &uri, Auth::None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, Method::GET, &uri, Auth::Header(&reader), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = call(&app, Method::GET, &uri, Auth::Header(&writer), None).await;
    assert_ne!(st, StatusCode::FORBIDDEN, "{body}");

    // nodes: node:read
    let (st, _) = call(&app, Method::GET, "/v1/nodes", Auth::None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, Method::GET, "/v1/nodes", Auth::Header(&reader), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(&app, Method::GET, "/v1/nodes", Auth::Header(&noder), None).await;
    assert_eq!(st, StatusCode::OK);

    // agent self: agent:read
    let (st, _) = call(&app, Method::GET, "/v1/agent/self", Auth::None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(
        &app,
        Method::GET,
        "/v1/agent/self",
        Auth::Header(&reader),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(
        &app,
        Method::GET,
        "/v1/agent/self",
        Auth::Header(&noder),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    // no check at all
    let (st, _) = call(&app, Method::GET, "/v1/status/leader", Auth::None, None).await;
    assert_eq!(st, StatusCode::OK);

    // token list: management only, secrets never listed
    let (st, _) = call(&app, Method::GET, "/v1/acl/tokens", Auth::None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(
        &app,
        Method::GET,
        "/v1/acl/tokens",
        Auth::Header(&writer),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = call(
        &app,
        Method::GET,
        "/v1/acl/tokens",
        Auth::Header(&mgmt),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(!body.contains("SecretID"), "{body}");
    assert!(!body.contains(&mgmt), "{body}");

    // namespace write: management only, nothing created otherwise
    let ns = json!({"Name": "a", "Description": "team a"});
    let (st, _) = call(
        &app,
        Method::PUT,
        "/v1/namespace/a",
        Auth::None,
        Some(ns.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(
        &app,
        Method::PUT,
        "/v1/namespace/a",
        Auth::Header(&writer),
        Some(ns.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(server.state().snapshot().namespace("a").is_none());
    let (st, body) = call(
        &app,
        Method::PUT,
        "/v1/namespace/a",
        Auth::Header(&mgmt),
        Some(ns),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(server.state().snapshot().namespace("a").is_some());
}

#[tokio::test]
async fn unknown_expired_deleted_tokens_and_bearer() {
    let (app, server) = app(true);
    let mgmt = bootstrap(&app).await;

    let (st, body) = call(
        &app,
        Method::GET,
        "/v1/jobs",
        Auth::Header("8c0e0c0c-0000-4000-8000-000000000000"),
        None,
    )
    .await;
    assert_eq!(
        (st, body.as_str()),
        (StatusCode::FORBIDDEN, "ACL token not found")
    );

    // Bearer works like the header.
    let (st, _) = call(
        &app,
        Method::GET,
        "/v1/acl/tokens",
        Auth::Bearer(&mgmt),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    // An expired token is refused and does nothing.
    let mut expired = nomad_acl::AclToken {
        name: "old".into(),
        token_type: "management".into(),
        ..Default::default()
    };
    expired.canonicalize(
        "11111111-1111-4111-8111-111111111111".into(),
        "22222222-2222-4222-8222-222222222222".into(),
        1_000_000_000,
    );
    expired.expiration_time = Some("2001-01-01T00:00:00Z".into());
    expired.set_hash();
    server
        .apply(nomad_state::Command::AclTokenUpsert {
            tokens: vec![expired.clone()],
        })
        .await
        .expect("token");
    let reg = json!({"Job": job_value("web", "default")});
    let (st, body) = call(
        &app,
        Method::PUT,
        "/v1/jobs",
        Auth::Header(&expired.secret_id),
        Some(reg.clone()),
    )
    .await;
    assert_eq!(
        (st, body.as_str()),
        (StatusCode::FORBIDDEN, "ACL token expired")
    );
    assert!(server.state().snapshot().job("default", "web").is_none());

    // A deleted token stops working.
    let writer = token_with(&app, &mgmt, "writer", WRITE_DEFAULT).await;
    let (_, body) = call(
        &app,
        Method::GET,
        "/v1/acl/token/self",
        Auth::Header(&writer),
        None,
    )
    .await;
    let me: Value = serde_json::from_str(&body).expect("self");
    let accessor = me["AccessorID"].as_str().expect("accessor").to_string();
    let (st, _) = call(
        &app,
        Method::DELETE,
        &format!("/v1/acl/token/{accessor}"),
        Auth::Header(&mgmt),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = call(
        &app,
        Method::PUT,
        "/v1/jobs",
        Auth::Header(&writer),
        Some(reg),
    )
    .await;
    assert_eq!(
        (st, body.as_str()),
        (StatusCode::FORBIDDEN, "ACL token not found")
    );
    assert!(server.state().snapshot().job("default", "web").is_none());
}

#[tokio::test]
async fn namespace_isolation() {
    let (app, server) = app(true);
    let mgmt = bootstrap(&app).await;
    seed_namespace(&server, "a").await;
    seed_namespace(&server, "b").await;
    let alloc_a = seed_job_and_alloc(&server, "ja", "a").await;
    let alloc_b = seed_job_and_alloc(&server, "jb", "b").await;
    let tok = token_with(
        &app,
        &mgmt,
        "a-read",
        r#"namespace "a" { policy = "read" }"#,
    )
    .await;

    // A namespace is read by its own name, not the request's `namespace` parameter.
    let (st, body) = call(
        &app,
        Method::GET,
        "/v1/namespace/a",
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains("\"Name\":\"a\""), "{body}");
    let (st, _) = call(
        &app,
        Method::GET,
        "/v1/namespace/b",
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (st, body) = call(
        &app,
        Method::GET,
        "/v1/jobs?namespace=*",
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let jobs: Vec<Value> = serde_json::from_str(&body).expect("list");
    let ids: Vec<&str> = jobs.iter().filter_map(|j| j["ID"].as_str()).collect();
    assert_eq!(ids, vec!["ja"]);

    let (st, body) = call(
        &app,
        Method::GET,
        "/v1/allocations?namespace=*",
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains(&alloc_a) && !body.contains(&alloc_b),
        "{body}"
    );

    let (st, _) = call(
        &app,
        Method::GET,
        "/v1/job/jb?namespace=b",
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(
        &app,
        Method::GET,
        "/v1/jobs?namespace=b",
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = call(
        &app,
        Method::GET,
        "/v1/job/ja?namespace=a",
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // An alloc in b is refused even when the request claims namespace a.
    let (st, _) = call(
        &app,
        Method::GET,
        &format!("/v1/allocation/{alloc_b}?namespace=a"),
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A registration into b through a body namespace is refused.
    let writer_a = token_with(
        &app,
        &mgmt,
        "a-write",
        r#"namespace "a" { policy = "write" }"#,
    )
    .await;
    let (st, _) = call(
        &app,
        Method::PUT,
        "/v1/jobs",
        Auth::Header(&writer_a),
        Some(json!({"Job": job_value("sneaky", "b")})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(server.state().snapshot().job("b", "sneaky").is_none());

    // Namespace list shows only a (and not default, which the token cannot use).
    let (st, body) = call(
        &app,
        Method::GET,
        "/v1/namespaces",
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<Value> = serde_json::from_str(&body).expect("list");
    let names: Vec<&str> = names.iter().filter_map(|n| n["Name"].as_str()).collect();
    assert_eq!(names, vec!["a"]);
    let (st, _) = call(
        &app,
        Method::GET,
        "/v1/namespace/b",
        Auth::Header(&tok),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Deleting a namespace with a live job is refused.
    let (st, body) = call(
        &app,
        Method::DELETE,
        "/v1/namespace/b",
        Auth::Header(&mgmt),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("has non-terminal jobs"), "{body}");
    assert!(server.state().snapshot().namespace("b").is_some());
}

#[tokio::test]
async fn policy_errors_and_reads() {
    let (app, _) = app(true);
    let mgmt = bootstrap(&app).await;
    let (st, body) = call(
        &app,
        Method::PUT,
        "/v1/acl/policy/bad",
        Auth::Header(&mgmt),
        Some(json!({"Name": "bad", "Rules": "namespace \"default\" {\n  policy = \n}"})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains(':'), "{body}");
    let (st, body) = call(
        &app,
        Method::PUT,
        "/v1/acl/policy/bad",
        Auth::Header(&mgmt),
        Some(json!({"Name": "bad", "Rules": r#"namespace "default" { capabilities = ["fly"] }"#})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("fly"), "{body}");
    let reader = token_with(&app, &mgmt, "reader", READ_DEFAULT).await;
    // A client token reads its own policy, not others.
    let (st, body) = call(
        &app,
        Method::GET,
        "/v1/acl/policy/reader",
        Auth::Header(&reader),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains("RulesJSON"));
    let (st, _) = call(
        &app,
        Method::PUT,
        "/v1/acl/policy/reader",
        Auth::Header(&reader),
        Some(json!({"Name": "reader", "Rules": WRITE_DEFAULT})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = call(
        &app,
        Method::GET,
        "/v1/acl/token/self",
        Auth::Header(&reader),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains(&reader));
}

#[tokio::test]
async fn variables_follow_path_rules() {
    let (app, _server) = app(true);
    let mgmt = bootstrap(&app).await;
    let put = |path: &str, token: &str, body: Value| {
        let (app, uri, token) = (app.clone(), format!("/v1/var/{path}"), token.to_string());
        async move { call(&app, Method::PUT, &uri, Auth::Header(&token), Some(body)).await }
    };
    for path in ["app/db", "app/web", "ops/key"] {
        let (st, body) = put(path, &mgmt, json!({"Items": {"k": "v"}})).await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    let reader = token_with(
        &app,
        &mgmt,
        "app-reader",
        r#"namespace "default" { variables { path "app/*" { capabilities = ["read", "list"] } } }"#,
    )
    .await;
    let get = |uri: &str, token: &str| {
        let (app, uri, token) = (app.clone(), uri.to_string(), token.to_string());
        async move { call(&app, Method::GET, &uri, Auth::Header(&token), None).await }
    };
    let (st, body) = get("/v1/var/app/db", &reader).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["Path"].as_str(), v["Items"]["k"].as_str()),
        (Some("app/db"), Some("v"))
    );
    let (st, _) = get("/v1/var/ops/key", &reader).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = put("app/db", &reader, json!({"Items": {"k": "w"}})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // The listing shows only what the token may list, without items.
    let (st, body) = get("/v1/vars", &reader).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    let paths: Vec<&str> = list.iter().filter_map(|v| v["Path"].as_str()).collect();
    assert_eq!(paths, ["app/db", "app/web"]);
    assert!(list.iter().all(|v| v.get("Items").is_none()));
    // Check-and-set: a stale index is a 409 carrying what is stored.
    let (st, body) = put("app/db?cas=1", &mgmt, json!({"Items": {"k": "x"}})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let current: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(current["Items"]["k"], "v");
    // Bad input names what is wrong.
    let (st, body) = put("app/db", &mgmt, json!({"Path": "app/db"})).await;
    assert_eq!(
        (st, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "variable missing required Items object"
        )
    );
    let (st, body) = put("nomad/other", &mgmt, json!({"Items": {"k": "v"}})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("only paths at"), "{body}");
    let (st, _) = call(
        &app,
        Method::DELETE,
        "/v1/var/app/db",
        Auth::Header(&mgmt),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = get("/v1/var/app/db", &mgmt).await;
    assert_eq!(
        (st, body.as_str()),
        (StatusCode::NOT_FOUND, "variable not found")
    );
}
