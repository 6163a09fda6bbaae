//! Router tests driven with `oneshot` (no sockets).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use http_body_util::BodyExt;
use nomad_client::{BoxFuture, Client, ClientConfig, RpcError, ServerConn};
use nomad_server::{Server, ServerConfig};
use nomad_structs::{Allocation, Job, Node};
use tower::ServiceExt;

use crate::{router, AgentInfo, HttpState};

fn agent() -> Arc<AgentInfo> {
    Arc::new(AgentInfo {
        region: "global".into(),
        datacenter: "dc1".into(),
        node_name: "dev".into(),
        server_enabled: true,
        client_enabled: true,
        http_addr: "127.0.0.1:4646".into(),
        rpc_addr: "127.0.0.1:4647".into(),
        config_json: serde_json::json!({"Region": "global", "Datacenter": "dc1"}),
        node_tls: None,
    })
}

fn server_app() -> (Router, Arc<Server>) {
    let server = Server::new(ServerConfig::default());
    let state = HttpState {
        server: Some(server.clone()),
        client: None,
        agent: agent(),
    };
    (router(state), server)
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: impl Into<Body>,
) -> (StatusCode, HeaderMap, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .expect("valid request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, HeaderMap, Bytes) {
    call(app, Method::GET, uri, Body::empty()).await
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn job_json(id: &str) -> serde_json::Value {
    serde_json::json!({
        "ID": id,
        "Name": id,
        "Type": "service",
        "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "web",
            "Count": 1,
            "Tasks": [{"Name": "server", "Driver": "raw_exec", "Config": {"command": "/bin/sleep", "args": ["60"]}}]
        }]
    })
}

/// Puts a job straight into the state store (bypassing `job_register`).
async fn seed_job(server: &Server, id: &str) {
    let mut job: Job = serde_json::from_value(job_json(id)).expect("job json");
    job.namespace = "default".into();
    job.region = "global".into();
    job.status = "pending".into();
    let cmd = nomad_state::Command::JobRegister {
        enforce_index: None,
        job,
        eval: None,
        submission: None,
        now: 1,
    };
    server.apply(cmd).await.expect("apply");
}

#[tokio::test]
async fn unknown_paths_and_redirects() {
    let (app, _) = server_app();
    let (s, _, b) = get(&app, "/v1/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b.is_empty());
    let (s, _, b) = get(&app, "/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b.is_empty());
    let (s, h, _) = get(&app, "/?a=b").await;
    assert_eq!(s, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(h["location"], "/ui/?a=b");
    let (s, h, _) = get(&app, "/ui/").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn wrong_method_is_405() {
    let (app, _) = server_app();
    let (s, h, b) = call(&app, Method::DELETE, "/v1/jobs", Body::empty()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(text(&b), "Invalid method");
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn bad_query_params_are_400() {
    let (app, _) = server_app();
    let (s, _, b) = get(&app, "/v1/jobs?index=abc").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "Invalid index")
    );
    let (s, _, b) = get(&app, "/v1/jobs?wait=forever").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "Invalid wait time")
    );
    let (s, _, b) = get(&app, "/v1/jobs?region=mars").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "No path to region")
    );
}

#[tokio::test]
async fn register_body_errors() {
    let (app, _) = server_app();
    let (s, _, b) = call(&app, Method::PUT, "/v1/jobs", Body::empty()).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "Request body is empty")
    );
    let (s, _, b) = call(&app, Method::PUT, "/v1/jobs", "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(!b.is_empty());
    let (s, _, b) = call(&app, Method::PUT, "/v1/jobs", "{}").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "Job must be specified")
    );
    let (s, _, b) = call(&app, Method::PUT, "/v1/jobs", r#"{"Job":{"Name":"x"}}"#).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "Job ID hasn't been provided")
    );
    let body = serde_json::json!({"Job": job_json("other")}).to_string();
    let (s, _, b) = call(&app, Method::PUT, "/v1/job/example", body).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "Job ID does not match name")
    );
}

#[tokio::test]
async fn unknown_job_is_404() {
    let (app, _) = server_app();
    let (s, h, b) = get(&app, "/v1/job/missing").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "job not found")
    );
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    let (s, _, b) = get(&app, "/v1/job/missing/summary").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "job not found")
    );
    let (s, _, b) = get(&app, "/v1/allocation/abc").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "alloc not found")
    );
    let (s, _, b) = get(&app, "/v1/evaluation/abc").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "eval not found")
    );
    let (s, _, b) = get(&app, "/v1/node/abc").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "node not found")
    );
    let (s, _, b) = get(&app, "/v1/allocation/a/b/c").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "resource not found")
    );
}

#[tokio::test]
async fn list_reads_carry_meta_headers() {
    let (app, _) = server_app();
    let (s, h, b) = get(&app, "/v1/jobs").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text(&b), "[]");
    assert_eq!(h["content-type"], "application/json");
    assert_ne!(h["x-nomad-index"], "0");
    assert_eq!(h["x-nomad-knownleader"], "true");
    assert_eq!(h["x-nomad-lastcontact"], "0");
    for uri in [
        "/v1/allocations",
        "/v1/evaluations",
        "/v1/nodes",
        "/v1/deployments",
    ] {
        let (s, h, b) = get(&app, uri).await;
        assert_eq!((s, text(&b).as_str()), (StatusCode::OK, "[]"), "{uri}");
        assert!(h.contains_key("x-nomad-index"), "{uri}");
    }
}

#[tokio::test]
async fn pretty_output() {
    let (app, _) = server_app();
    let (_, _, b) = get(&app, "/v1/regions?pretty").await;
    assert_eq!(text(&b), "[\n    \"global\"\n]\n");
    let (_, _, b) = get(&app, "/v1/regions?pretty=0").await;
    assert_eq!(text(&b), "[\"global\"]");
}

#[tokio::test]
async fn register_get_and_list() {
    let (app, _) = server_app();
    let body = serde_json::json!({"Job": job_json("example")}).to_string();
    let (s, h, b) = call(&app, Method::PUT, "/v1/jobs", body).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_ne!(h["x-nomad-index"], "0");
    let resp: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert!(resp["JobModifyIndex"].as_u64().unwrap() > 0);

    let (s, h, b) = get(&app, "/v1/job/example").await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_ne!(h["x-nomad-index"], "0");
    let job: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(job["ID"], "example");
    assert_eq!(job["Namespace"], "default");

    let (s, _, b) = get(&app, "/v1/jobs?prefix=ex").await;
    assert_eq!(s, StatusCode::OK);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&b).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["ID"], "example");
    assert_eq!(list[0]["JobSummary"]["Namespace"], "default");
    let (_, _, b) = get(&app, "/v1/jobs?prefix=zz").await;
    assert_eq!(text(&b), "[]");
}

#[tokio::test]
async fn job_ids_with_slashes_route_by_suffix() {
    let (app, server) = server_app();
    let id = "parent/periodic-1700000000";
    seed_job(&server, id).await;
    for uri in [
        "/v1/job/parent%2Fperiodic-1700000000",
        "/v1/job/parent/periodic-1700000000",
    ] {
        let (s, _, b) = get(&app, uri).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {}", text(&b));
        let job: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(job["ID"], id);
    }
    let (s, _, b) = get(&app, "/v1/job/parent%2Fperiodic-1700000000/versions").await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["Versions"][0]["ID"], id);
    assert!(v["Diffs"].is_null());
    let (s, _, b) = get(&app, "/v1/job/parent%2Fperiodic-1700000000/allocations").await;
    assert_eq!((s, text(&b).as_str()), (StatusCode::OK, "[]"));
    let (s, _, b) = get(&app, "/v1/job/parent%2Fperiodic-1700000000/deployment").await;
    assert_eq!((s, text(&b).as_str()), (StatusCode::OK, "null"));
}

#[tokio::test]
async fn blocking_query_returns_after_wait() {
    let (app, _) = server_app();
    let (_, h, _) = get(&app, "/v1/jobs").await;
    let index: u64 = h["x-nomad-index"].to_str().unwrap().parse().unwrap();
    let start = Instant::now();
    let (s, h, _) = get(&app, &format!("/v1/jobs?index={index}&wait=50ms")).await;
    let elapsed = start.elapsed();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-nomad-index"].to_str().unwrap(), index.to_string());
    assert!(
        elapsed >= Duration::from_millis(50),
        "returned after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "returned after {elapsed:?}"
    );
}

#[tokio::test]
async fn parse_endpoint() {
    let (app, _) = server_app();
    let hcl = r#"job "example" {
  group "cache" {
    task "redis" {
      driver = "docker"
      config { image = "redis:7" }
    }
  }
}"#;
    let body = serde_json::json!({"JobHCL": hcl, "Canonicalize": true}).to_string();
    let (s, h, b) = call(&app, Method::POST, "/v1/jobs/parse", body).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(h["content-type"], "application/json");
    let job: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(job["ID"], "example");
    assert_eq!(job["TaskGroups"][0]["Tasks"][0]["Driver"], "docker");

    let body = serde_json::json!({"JobHCL": "job \"x\" {"}).to_string();
    let (s, _, b) = call(&app, Method::POST, "/v1/jobs/parse", body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        text(&b).starts_with("Failed to parse job: "),
        "{}",
        text(&b)
    );

    let (s, _, b) = call(&app, Method::POST, "/v1/jobs/parse", r#"{"JobHCL":""}"#).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "Job spec is empty")
    );
}

#[tokio::test]
async fn validate_endpoint_reports_in_body() {
    let (app, _) = server_app();
    let body = serde_json::json!({"Job": {"ID": "x", "TaskGroups": []}}).to_string();
    let (s, _, b) = call(&app, Method::PUT, "/v1/validate/job", body).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["DriverConfigValidated"], true);
    assert!(!v["ValidationErrors"].as_array().unwrap().is_empty());
    assert!(v["Error"].as_str().unwrap().contains("error"));
}

#[tokio::test]
async fn agent_and_status_endpoints() {
    let (app, _) = server_app();
    let (s, _, b) = get(&app, "/v1/agent/self").await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["config"]["Region"], "global");
    assert_eq!(v["member"]["Name"], "dev.global");
    assert_eq!(v["member"]["Status"], "alive");
    assert_eq!(v["stats"]["nomad"]["leader"], "true");
    let (_, _, b) = get(&app, "/v1/status/leader").await;
    assert_eq!(text(&b), "\"127.0.0.1:4647\"");
    let (_, _, b) = get(&app, "/v1/status/peers").await;
    assert_eq!(text(&b), "[\"127.0.0.1:4647\"]");
    let (_, _, b) = get(&app, "/v1/agent/members").await;
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["Members"][0]["Tags"]["region"], "global");
    let (s, _, _) = get(&app, "/v1/agent/health").await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn panics_become_500() {
    let app = Router::new()
        .route(
            "/boom",
            axum::routing::get(|| async {
                if std::hint::black_box(true) {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .layer(axum::middleware::from_fn(crate::catch_panic));
    let (s, _, b) = get(&app, "/boom").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(&b), "internal server error");
}

// ----- logs -----

/// Servers that do not take part: registration, heartbeats and alloc watches fail; `forward`
/// says how `HTTP.Forward` answers (`None`: the connection fails as a refused one would).
struct NoServer {
    forward: Option<serde_json::Value>,
}

fn refused<T>() -> Result<T, RpcError> {
    Err(RpcError("connection refused".into()))
}

impl ServerConn for NoServer {
    fn register(&self, _node: Node) -> BoxFuture<'_, Result<Duration, RpcError>> {
        Box::pin(async { refused() })
    }
    fn heartbeat(&self, _node_id: &str) -> BoxFuture<'_, Result<Duration, RpcError>> {
        Box::pin(async { refused() })
    }
    fn allocs(
        &self,
        _node_id: &str,
        _min: u64,
        _wait: Duration,
    ) -> BoxFuture<'_, Result<(Vec<Allocation>, u64), RpcError>> {
        Box::pin(async { refused() })
    }
    fn update_allocs(&self, _allocs: Vec<Allocation>) -> BoxFuture<'_, Result<(), RpcError>> {
        Box::pin(async { refused() })
    }
    fn forward_http(
        &self,
        _req: serde_json::Value,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<serde_json::Value, RpcError>> {
        let answer = self.forward.clone();
        Box::pin(async move { answer.ok_or_else(|| RpcError("connection refused".into())) })
    }
}

/// A client-only agent asked about an alloc it does not run, with the servers down, says
/// that it could not find out where the alloc is (not that the alloc does not exist).
#[tokio::test]
async fn remote_alloc_with_servers_down_says_why() {
    let fx = log_fixture_with(Arc::new(NoServer { forward: None }));
    let (s, _, b) = get(&fx.app, "/v1/client/fs/logs/elsewhere?task=web&type=stdout").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        text(&b),
        "allocation \"elsewhere\" is not on this node, and asking the servers where it is failed: connection refused"
    );
    // Its own allocs still answer.
    std::fs::write(fx.logs.join("web.stdout.0"), "local\n").unwrap();
    let (s, _, b) = get(
        &fx.app,
        &format!("/v1/client/fs/logs/{ALLOC}?task=web&type=stdout&plain=true"),
    )
    .await;
    assert_eq!((s, text(&b).as_str()), (StatusCode::OK, "local\n"));
}

const ALLOC: &str = "5b3c4a3e-0000-4000-8000-000000000001";

struct LogFixture {
    _tmp: tempfile::TempDir,
    logs: std::path::PathBuf,
    app: Router,
}

fn log_fixture() -> LogFixture {
    log_fixture_with(Arc::new(NoServer {
        forward: Some(serde_json::json!({"Status": 404, "Headers": [], "Body": ""})),
    }))
}

fn log_fixture_with(conn: Arc<dyn ServerConn>) -> LogFixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_path_buf();
    let adir = data.join("alloc").join(ALLOC);
    std::fs::create_dir_all(adir.join("web/local")).unwrap();
    let logs = adir.join("alloc/logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut config = ClientConfig::new(data.clone());
    config.node_name = "dev".into();
    config.node_id = Some("node-1".into());
    let client = Client::new(config, conn, BTreeMap::new()).unwrap();
    let state = HttpState {
        server: None,
        client: Some(client),
        agent: agent(),
    };
    LogFixture {
        _tmp: tmp,
        logs,
        app: router(state),
    }
}

/// Decodes concatenated frames into (data, files, heartbeats).
fn decode_frames(b: &[u8]) -> (Vec<u8>, Vec<String>, usize) {
    let mut data = Vec::new();
    let mut files = Vec::new();
    let mut heartbeats = 0;
    for v in serde_json::Deserializer::from_slice(b).into_iter::<serde_json::Value>() {
        let v = v.expect("frame is JSON");
        match v.get("Data").and_then(|d| d.as_str()) {
            Some(d) => data.extend(base64::engine::general_purpose::STANDARD.decode(d).unwrap()),
            None => heartbeats += 1,
        }
        if let Some(f) = v.get("File").and_then(|f| f.as_str()) {
            files.push(f.to_string());
        }
    }
    (data, files, heartbeats)
}

#[tokio::test]
async fn logs_framed_and_plain() {
    let fx = log_fixture();
    std::fs::write(fx.logs.join("web.stdout.0"), "hello\n").unwrap();
    let (s, h, b) = get(
        &fx.app,
        &format!("/v1/client/fs/logs/{ALLOC}?task=web&type=stdout"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(h["content-type"], "application/json");
    let frame: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(frame["Offset"], 6);
    assert_eq!(frame["File"], "alloc/logs/web.stdout.0");
    assert_eq!(
        frame["Data"],
        base64::engine::general_purpose::STANDARD.encode("hello\n")
    );

    let (s, _, b) = get(
        &fx.app,
        &format!("/v1/client/fs/logs/{ALLOC}?task=web&type=stdout&plain=true"),
    )
    .await;
    assert_eq!((s, text(&b).as_str()), (StatusCode::OK, "hello\n"));
}

#[tokio::test]
async fn logs_across_rotated_files() {
    let fx = log_fixture();
    std::fs::write(fx.logs.join("web.stderr.0"), "abc").unwrap();
    std::fs::write(fx.logs.join("web.stderr.1"), "def").unwrap();
    let base = format!("/v1/client/fs/logs/{ALLOC}?task=web&type=stderr");
    let (_, _, b) = get(&fx.app, &base).await;
    let (data, files, _) = decode_frames(&b);
    assert_eq!(data, b"abcdef");
    assert_eq!(
        files,
        vec!["alloc/logs/web.stderr.0", "alloc/logs/web.stderr.1"]
    );
    let (_, _, b) = get(&fx.app, &format!("{base}&plain=true&origin=end&offset=4")).await;
    assert_eq!(text(&b), "cdef");
    let (_, _, b) = get(&fx.app, &format!("{base}&plain=true&origin=start&offset=4")).await;
    assert_eq!(text(&b), "ef");
    let (_, _, b) = get(&fx.app, &format!("{base}&plain=true&origin=end&offset=100")).await;
    assert_eq!(text(&b), "abcdef");
}

#[tokio::test]
async fn logs_errors() {
    let fx = log_fixture();
    let base = format!("/v1/client/fs/logs/{ALLOC}");
    let (s, _, b) = get(&fx.app, &format!("{base}?type=stdout")).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "must provide task name")
    );
    let (s, _, b) = get(&fx.app, &format!("{base}?task=web")).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (
            StatusCode::BAD_REQUEST,
            "must provide log type (stdout/stderr)"
        )
    );
    let (s, _, b) = get(&fx.app, &format!("{base}?task=nope&type=stdout")).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "unknown task name \"nope\"")
    );
    let (s, _, b) = get(
        &fx.app,
        &format!("{base}?task=web&type=stdout&origin=middle"),
    )
    .await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "origin must be start or end")
    );
    let (s, _, b) = get(&fx.app, &format!("{base}?task=web&type=stdout")).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (
            StatusCode::NOT_FOUND,
            "task \"web\" not started yet. No logs available"
        )
    );
    let (s, _, b) = get(
        &fx.app,
        "/v1/client/fs/logs/unknown-alloc?task=web&type=stdout",
    )
    .await;
    assert_eq!(
        (s, text(&b).as_str()),
        (
            StatusCode::NOT_FOUND,
            "Unknown allocation \"unknown-alloc\""
        )
    );
}

/// Reads body frames until `pred` holds on everything read so far, or the timeout passes.
async fn read_until(body: &mut Body, timeout: Duration, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut acc = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !pred(&acc) {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    acc.extend_from_slice(&d);
                }
            }
            _ => break,
        }
    }
    acc
}

#[tokio::test]
async fn logs_follow_growth_and_rotation() {
    let fx = log_fixture();
    std::fs::write(fx.logs.join("web.stdout.0"), "one\n").unwrap();
    let req = Request::builder()
        .uri(format!(
            "/v1/client/fs/logs/{ALLOC}?task=web&type=stdout&follow=true"
        ))
        .body(Body::empty())
        .unwrap();
    let resp = fx.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let has = |want: &'static [u8]| {
        move |b: &[u8]| decode_frames(b).0.windows(want.len()).any(|w| w == want)
    };
    let got = read_until(&mut body, Duration::from_secs(5), has(b"one\n")).await;
    assert_eq!(decode_frames(&got).0, b"one\n");

    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(fx.logs.join("web.stdout.0"))
        .unwrap();
    f.write_all(b"two\n").unwrap();
    let got = read_until(&mut body, Duration::from_secs(5), has(b"two\n")).await;
    assert_eq!(decode_frames(&got).0, b"two\n");

    std::fs::write(fx.logs.join("web.stdout.1"), "three\n").unwrap();
    let got = read_until(&mut body, Duration::from_secs(5), has(b"three\n")).await;
    let (data, files, _) = decode_frames(&got);
    assert_eq!(data, b"three\n");
    assert_eq!(
        files.last().map(String::as_str),
        Some("alloc/logs/web.stdout.1")
    );

    // Idle: a heartbeat `{}` arrives within a couple of seconds.
    let got = read_until(&mut body, Duration::from_secs(3), |b| {
        decode_frames(b).2 > 0
    })
    .await;
    assert!(decode_frames(&got).2 > 0);
}

// ----- fs: stream, secrets, escapes, client alloc ops -----

/// A fixture alloc dir with a task `web` holding `local/data.txt` and `secrets/token`.
fn fs_fixture() -> LogFixture {
    let fx = log_fixture();
    let adir = fx.logs.parent().unwrap().parent().unwrap().to_path_buf();
    std::fs::create_dir_all(adir.join("web/secrets")).unwrap();
    std::fs::create_dir_all(adir.join("web/private")).unwrap();
    std::fs::write(adir.join("web/local/data.txt"), "0123456789").unwrap();
    std::fs::write(adir.join("web/secrets/token"), "s3cr3t").unwrap();
    std::fs::write(adir.join("web/private/key"), "k").unwrap();
    fx
}

fn alloc_root(fx: &LogFixture) -> std::path::PathBuf {
    fx.logs.parent().unwrap().parent().unwrap().to_path_buf()
}

#[tokio::test]
async fn fs_stream_whole_file_without_follow() {
    let fx = fs_fixture();
    let base = format!("/v1/client/fs/stream/{ALLOC}?path=web/local/data.txt&follow=false");
    let (s, h, b) = get(&fx.app, &base).await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert_eq!(h["content-type"], "application/json");
    let (data, files, _) = decode_frames(&b);
    assert_eq!(data, b"0123456789");
    assert_eq!(files, vec!["web/local/data.txt"]);
    let frame: serde_json::Value = serde_json::Deserializer::from_slice(&b)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(frame["Offset"], 10);

    let (_, _, b) = get(&fx.app, &format!("{base}&origin=end&offset=3")).await;
    assert_eq!(decode_frames(&b).0, b"789");
    let (_, _, b) = get(&fx.app, &format!("{base}&offset=8")).await;
    assert_eq!(decode_frames(&b).0, b"89");
    let (_, _, b) = get(&fx.app, &format!("{base}&offset=2&limit=3")).await;
    assert_eq!(decode_frames(&b).0, b"234");
    let (_, _, b) = get(&fx.app, &format!("{base}&origin=end&offset=100")).await;
    assert_eq!(decode_frames(&b).0, b"0123456789");
}

#[tokio::test]
async fn fs_stream_errors() {
    let fx = fs_fixture();
    let base = format!("/v1/client/fs/stream/{ALLOC}");
    let cases: &[(&str, StatusCode, &str)] = &[
        ("", StatusCode::BAD_REQUEST, "must provide a file name"),
        (
            "?path=web/local/data.txt&origin=middle",
            StatusCode::BAD_REQUEST,
            "origin must be start or end",
        ),
        (
            "?path=web/local",
            StatusCode::BAD_REQUEST,
            "file \"web/local\" is a directory",
        ),
        (
            "?path=web/secrets/token",
            StatusCode::INTERNAL_SERVER_ERROR,
            "Reading secret file prohibited: web/secrets/token",
        ),
        (
            "?path=web/private/key",
            StatusCode::INTERNAL_SERVER_ERROR,
            "Reading private file prohibited: web/private/key",
        ),
        (
            "?path=../../etc/passwd",
            StatusCode::INTERNAL_SERVER_ERROR,
            "Path escapes the alloc directory",
        ),
        (
            "?path=web/local/data.txt&offset=x",
            StatusCode::BAD_REQUEST,
            "error parsing offset: strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
    ];
    for (q, status, msg) in cases {
        let (s, _, b) = get(&fx.app, &format!("{base}{q}")).await;
        assert_eq!((s, text(&b).as_str()), (*status, *msg), "query {q}");
    }
    let (s, _, b) = get(&fx.app, "/v1/client/fs/stream/nope-alloc?path=x").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "Unknown allocation \"nope-alloc\"")
    );
    let (s, _, b) = get(&fx.app, &format!("{base}?path=web/local/missing")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{}", text(&b));
}

#[tokio::test]
async fn fs_stream_follows_growth_truncation_and_deletion() {
    let fx = fs_fixture();
    let file = alloc_root(&fx).join("web/local/grow.log");
    std::fs::write(&file, "one\n").unwrap();
    let req = Request::builder()
        .uri(format!(
            "/v1/client/fs/stream/{ALLOC}?path=web/local/grow.log"
        ))
        .body(Body::empty())
        .unwrap();
    let resp = fx.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let has = |want: &'static [u8]| {
        move |b: &[u8]| decode_frames(b).0.windows(want.len()).any(|w| w == want)
    };
    let got = read_until(&mut body, Duration::from_secs(5), has(b"one\n")).await;
    assert_eq!(decode_frames(&got).0, b"one\n");

    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(b"two\n").unwrap();
    drop(f);
    let got = read_until(&mut body, Duration::from_secs(5), has(b"two\n")).await;
    assert_eq!(decode_frames(&got).0, b"two\n");

    // Idle: a heartbeat.
    let got = read_until(&mut body, Duration::from_secs(3), |b| {
        decode_frames(b).2 > 0
    })
    .await;
    assert!(decode_frames(&got).2 > 0);

    // Truncation: an event, then the new content from offset 0.
    std::fs::write(&file, "x\n").unwrap();
    let event = |ev: &'static str| {
        move |b: &[u8]| {
            serde_json::Deserializer::from_slice(b)
                .into_iter::<serde_json::Value>()
                .flatten()
                .any(|v| v["FileEvent"] == ev)
        }
    };
    let got = read_until(&mut body, Duration::from_secs(5), |b| {
        event("file truncated")(b) && has(b"x\n")(b)
    })
    .await;
    assert!(
        event("file truncated")(&got),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // Deletion: a final event and the end of the stream.
    std::fs::remove_file(&file).unwrap();
    let got = read_until(&mut body, Duration::from_secs(5), event("file deleted")).await;
    assert!(
        event("file deleted")(&got),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
    assert!(matches!(end, Ok(None)), "stream ends after a deletion");
}

#[tokio::test]
async fn fs_secrets_are_never_read() {
    let fx = fs_fixture();
    for op in ["cat", "readat"] {
        for path in [
            "web/secrets/token",
            "web/SECRETS/token",
            "web/local/../secrets/token",
        ] {
            let (s, _, b) = get(
                &fx.app,
                &format!("/v1/client/fs/{op}/{ALLOC}?path={path}&offset=0"),
            )
            .await;
            assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{op} {path}");
            assert_eq!(text(&b), format!("Reading secret file prohibited: {path}"));
        }
    }
    // A symlink into secrets/ is refused too.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("../secrets", alloc_root(&fx).join("web/local/s")).unwrap();
        let (s, _, b) = get(
            &fx.app,
            &format!("/v1/client/fs/cat/{ALLOC}?path=web/local/s/token"),
        )
        .await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!text(&b).contains("s3cr3t"));
    }
    // Listing and stat show names only, as in Nomad.
    let (s, _, b) = get(
        &fx.app,
        &format!("/v1/client/fs/ls/{ALLOC}?path=web/secrets"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert!(!text(&b).contains("s3cr3t"));
    let (s, _, b) = get(
        &fx.app,
        &format!("/v1/client/fs/cat/{ALLOC}?path=web/local/data.txt"),
    )
    .await;
    assert_eq!((s, text(&b).as_str()), (StatusCode::OK, "0123456789"));
}

#[tokio::test]
async fn fs_paths_may_not_escape_the_alloc_dir() {
    let fx = fs_fixture();
    let outside = alloc_root(&fx).parent().unwrap().join("outside.txt");
    std::fs::write(&outside, "nope").unwrap();
    for (op, path) in [
        ("ls", "../"),
        ("ls", "web/../../"),
        ("stat", "../outside.txt"),
        ("cat", "../outside.txt"),
        ("readat", "/../../outside.txt"),
        ("stream", "../outside.txt"),
    ] {
        let (s, _, b) = get(
            &fx.app,
            &format!("/v1/client/fs/{op}/{ALLOC}?path={path}&offset=0"),
        )
        .await;
        assert_eq!(
            (s, text(&b).as_str()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Path escapes the alloc directory"
            ),
            "{op} {path}"
        );
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, alloc_root(&fx).join("web/local/out")).unwrap();
        for op in ["cat", "stat", "stream"] {
            let (s, _, b) = get(
                &fx.app,
                &format!("/v1/client/fs/{op}/{ALLOC}?path=web/local/out&follow=false"),
            )
            .await;
            assert_eq!(
                (s, text(&b).as_str()),
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Path escapes the alloc directory"
                ),
                "{op} via symlink"
            );
        }
    }
    // `/` is the alloc dir itself.
    let (s, _, b) = get(&fx.app, &format!("/v1/client/fs/ls/{ALLOC}?path=/")).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<String> = serde_json::from_slice::<Vec<serde_json::Value>>(&b)
        .unwrap()
        .iter()
        .map(|v| v["Name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["alloc", "web"]);
}

#[tokio::test]
async fn client_alloc_signal_and_restart_errors() {
    let fx = fs_fixture();
    let (s, _, b) = call(
        &fx.app,
        Method::PUT,
        "/v1/client/allocation/nope/signal",
        r#"{"Task":"web","Signal":"SIGUSR1"}"#,
    )
    .await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "Unknown allocation \"nope\"")
    );
    let (s, _, b) = call(
        &fx.app,
        Method::PUT,
        "/v1/client/allocation/nope/restart",
        r#"{"TaskName":"web"}"#,
    )
    .await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "Unknown allocation \"nope\"")
    );
    let (s, _, _) = call(
        &fx.app,
        Method::GET,
        "/v1/client/allocation/nope/signal",
        Body::empty(),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _, b) = call(
        &fx.app,
        Method::PUT,
        "/v1/client/allocation/nope/restart",
        r#"{"TaskName":"web","AllTasks":true}"#,
    )
    .await;
    assert_eq!(
        (s, text(&b).as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "task name cannot be set when restarting all tasks"
        )
    );
}

#[test]
fn client_errors_use_nomad_wording() {
    use super::endpoints::fs::{client_error_for_tests as ce, ClientOpForTests as Op};
    use nomad_client::ClientError;
    let e = ce(ClientError::UnknownAlloc("a1".into()), Op::Signal);
    assert_eq!(
        (e.status, e.message.as_str()),
        (StatusCode::NOT_FOUND, "Unknown allocation \"a1\"")
    );
    let e = ce(ClientError::UnknownTask("db".into()), Op::Signal);
    assert_eq!(
        (e.status, e.message.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "Task not found")
    );
    let e = ce(ClientError::UnknownTask("db".into()), Op::Restart);
    assert_eq!(
        e.message,
        "Could not find task runner for task: db".to_string()
    );
    let e = ce(ClientError::TaskNotRunning, Op::Restart);
    assert_eq!(
        (e.status, e.message.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "Task not running")
    );
}

async fn put_json(app: &Router, uri: &str, v: serde_json::Value) -> (StatusCode, Bytes) {
    let (s, _, b) = call(app, Method::PUT, uri, v.to_string()).await;
    (s, b)
}

fn body_json(b: &Bytes) -> serde_json::Value {
    serde_json::from_slice(b).expect("JSON body")
}

#[tokio::test]
async fn versions_revert_and_stable() {
    let (app, _) = server_app();
    let mut job = job_json("web");
    let (s, _) = put_json(&app, "/v1/jobs", serde_json::json!({ "Job": job })).await;
    assert_eq!(s, StatusCode::OK);
    job["TaskGroups"][0]["Count"] = 3.into();
    put_json(&app, "/v1/jobs", serde_json::json!({ "Job": job })).await;

    let (s, _, b) = get(&app, "/v1/job/web/versions").await;
    assert_eq!(s, StatusCode::OK);
    let v = body_json(&b);
    let versions: Vec<u64> = v["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["Version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 0]);

    // Body checks, then the server's refusals.
    let revert = |v: serde_json::Value| put_json(&app, "/v1/job/web/revert", v);
    let (s, b) = revert(serde_json::json!({ "JobVersion": 0 })).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "JobID must be specified")
    );
    let (s, b) = revert(serde_json::json!({ "JobID": "other", "JobVersion": 0 })).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::BAD_REQUEST, "Job ID does not match")
    );
    let (s, b) = revert(serde_json::json!({ "JobID": "web", "JobVersion": 1 })).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "can't revert to current version"
        )
    );
    let (s, b) = revert(serde_json::json!({ "JobID": "web", "JobVersion": 7 })).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        text(&b),
        "job \"web\" in namespace \"default\" at version 7 not found"
    );
    let (s, b) =
        revert(serde_json::json!({ "JobID": "web", "JobVersion": 0, "EnforcePriorVersion": 5 }))
            .await;
    assert_eq!(
        (s, text(&b).as_str()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Current job has version 1; enforcing version 5"
        )
    );
    let (s, b) =
        revert(serde_json::json!({ "JobID": "web", "JobVersion": 0, "EnforcePriorVersion": 1 }))
            .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let r = body_json(&b);
    assert!(!r["EvalID"].as_str().unwrap().is_empty());
    assert!(r["JobModifyIndex"].as_u64().unwrap() > 0);
    let (_, _, b) = get(&app, "/v1/job/web").await;
    let cur = body_json(&b);
    assert_eq!(
        (
            cur["Version"].as_u64(),
            cur["TaskGroups"][0]["Count"].as_i64()
        ),
        (Some(2), Some(1))
    );

    let (s, b) = put_json(
        &app,
        "/v1/job/web/stable",
        serde_json::json!({ "JobID": "web", "JobVersion": 2, "Stable": true }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    assert!(body_json(&b)["Index"].as_u64().unwrap() > 0);
    let (_, _, b) = get(&app, "/v1/job/web").await;
    assert_eq!(body_json(&b)["Stable"], true);
    let (s, _) = put_json(
        &app,
        "/v1/job/web/stable",
        serde_json::json!({ "JobID": "web", "JobVersion": 9, "Stable": true }),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn scale_action_and_status() {
    let (app, _) = server_app();
    put_json(
        &app,
        "/v1/jobs",
        serde_json::json!({ "Job": job_json("web") }),
    )
    .await;
    let (s, _, b) = get(&app, "/v1/job/web/scale").await;
    assert_eq!(s, StatusCode::OK);
    let st = body_json(&b);
    assert_eq!(st["JobID"], "web");
    assert_eq!(st["JobStopped"], false);
    assert_eq!(st["TaskGroups"]["web"]["Desired"], 1);
    assert_eq!(st["TaskGroups"]["web"]["Events"], serde_json::Value::Null);

    let scale = |v: serde_json::Value| put_json(&app, "/v1/job/web/scale", v);
    let (s, b) =
        scale(serde_json::json!({ "Count": 2, "Target": {"Group": "web", "Job": "x"} })).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (
            StatusCode::BAD_REQUEST,
            "job ID in payload did not match URL"
        )
    );
    let (s, b) = scale(serde_json::json!({ "Count": 2, "Target": {} })).await;
    assert_eq!(
        (s, text(&b).as_str()),
        (
            StatusCode::BAD_REQUEST,
            "missing task group name for scaling action"
        )
    );
    let (s, b) = scale(serde_json::json!({
        "Count": 4, "Target": {"Group": "web"}, "Message": "busy", "Meta": {"k": "v"}
    }))
    .await;
    assert_eq!(s, StatusCode::OK, "{}", text(&b));
    let r = body_json(&b);
    let eval_id = r["EvalID"].as_str().unwrap().to_string();
    assert!(!eval_id.is_empty());
    assert!(r["Index"].as_u64().unwrap() > r["EvalCreateIndex"].as_u64().unwrap());

    let (_, _, b) = get(&app, "/v1/job/web/scale").await;
    let st = body_json(&b);
    let g = &st["TaskGroups"]["web"];
    assert_eq!(g["Desired"], 4);
    assert_eq!(g["Events"][0]["Count"], 4);
    assert_eq!(g["Events"][0]["PreviousCount"], 1);
    assert_eq!(g["Events"][0]["Message"], "busy");
    assert_eq!(g["Events"][0]["EvalID"], eval_id.as_str());
    assert_eq!(g["Events"][0]["Meta"]["k"], "v");
    let (_, _, b) = get(&app, "/v1/job/web").await;
    assert_eq!(body_json(&b)["Version"], 1);

    let (s, _, b) = get(&app, "/v1/job/missing/scale").await;
    assert_eq!(
        (s, text(&b).as_str()),
        (StatusCode::NOT_FOUND, "job not found")
    );
    let (s, _) = put_json(
        &app,
        "/v1/job/missing/scale",
        serde_json::json!({ "Count": 1, "Target": {"Group": "web"} }),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
