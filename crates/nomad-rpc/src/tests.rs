//! Tests over real TCP on 127.0.0.1: a real server behind the listener, the real client and
//! raw_exec driver on the other side, failover, multiplexing, malformed frames, TLS, and the
//! Raft hand-off.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nomad_client::{Client, ClientConfig, ServerConn};
use nomad_drivers::{Driver, RawExecConfig, RawExecDriver};
use nomad_server::{Server, ServerConfig};
use nomad_structs::*;
use nomad_tls::{CaOptions, CertOptions, CertRole, ClientTlsConfig, ServerTlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::*;

/// A listener serving `server` until dropped.
struct Running {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn addr(&self) -> String {
        self.addr.to_string()
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn listen_with(
    server: &Arc<Server>,
    config: RpcConfig,
    cluster: Option<Arc<dyn ClusterInfo>>,
    raft: Option<Arc<dyn StreamHandler>>,
) -> Running {
    let listener = RpcListener::bind("127.0.0.1:0", config).await.unwrap();
    if let Some(h) = raft {
        listener.set_raft_handler(h);
    }
    let addr = listener.local_addr().unwrap();
    let rpc = RpcServer::new(server.clone());
    if let Some(c) = cluster {
        assert!(rpc.set_cluster_info(c));
    }
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(listener.serve(rpc, rx));
    Running { addr, stop, task }
}

async fn listen(server: &Arc<Server>) -> Running {
    listen_with(server, RpcConfig::default(), None, None).await
}

/// A server with its workers running until the sender is dropped.
fn running_server() -> (Arc<Server>, watch::Sender<bool>) {
    let server = Server::new(ServerConfig::default());
    let (tx, rx) = watch::channel(false);
    tokio::spawn(server.clone().run(rx));
    (server, tx)
}

fn ordered() -> RemoteOptions {
    RemoteOptions {
        shuffle: false,
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RemoteOptions::default()
    }
}

fn remote(servers: &[String], tls: Option<ClientTlsConfig>) -> RemoteServerConn {
    RemoteServerConn::with_options(servers.to_vec(), tls, ordered()).unwrap()
}

/// Polls `cond` until it holds or `timeout` passes (the sleep only paces the polling).
async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn test_node(id: &str) -> Node {
    let mut n = Node {
        id: id.into(),
        secret_id: format!("secret-{id}"),
        name: format!("name-{id}"),
        datacenter: "dc1".into(),
        http_addr: "127.0.0.1:4646".into(),
        ..Default::default()
    };
    n.attributes.insert("kernel.name".into(), "linux".into());
    n.attributes
        .insert("unique.network.ip-address".into(), "127.0.0.1".into());
    n.drivers.insert(
        "raw_exec".into(),
        DriverInfo {
            detected: true,
            healthy: true,
            ..Default::default()
        },
    );
    n.node_resources.cpu.cpu_shares = 4000;
    n.node_resources.memory.memory_mb = 8192;
    n.node_resources.disk.disk_mb = 100_000;
    n
}

/// A temp dir that unmounts what the client mounted below it (tmpfs secrets as root).
struct TestDir(tempfile::TempDir);

impl Drop for TestDir {
    fn drop(&mut self) {
        let Ok(root) = std::fs::canonicalize(self.0.path()) else {
            return;
        };
        let Ok(mounts) = nomad_executor::procfs::read_mountinfo("self") else {
            return;
        };
        for m in mounts.iter().rev() {
            if m.mount_point.starts_with(&root) {
                let _ = nomad_executor::hostmount::unmount_detach(&m.mount_point);
            }
        }
    }
}

fn batch_job(id: &str, script: &str) -> Job {
    let mut cfg = serde_json::Map::new();
    cfg.insert("command".into(), "/bin/sh".into());
    cfg.insert("args".into(), serde_json::json!(["-c", script]));
    Job {
        id: id.into(),
        job_type: JOB_TYPE_BATCH.into(),
        datacenters: Some(vec!["dc1".into()]),
        task_groups: vec![TaskGroup {
            name: "grp".into(),
            count: Some(1),
            tasks: vec![Task {
                name: "t".into(),
                driver: "raw_exec".into(),
                config: Some(cfg),
                resources: Some(Resources {
                    cpu: Some(100),
                    memory_mb: Some(32),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_runs_a_job_through_the_rpc_port() {
    let (server, _stop_server) = running_server();
    let l = listen(&server).await;
    let conn = Arc::new(remote(&[l.addr()], None));

    let dir = TestDir(tempfile::tempdir().unwrap());
    let mut cfg = ClientConfig::new(PathBuf::from(dir.0.path()));
    cfg.node_name = "rpc-test-node".into();
    let raw: Arc<dyn Driver> = Arc::new(RawExecDriver::new(RawExecConfig {
        enabled: true,
        no_cgroups: true,
        ..Default::default()
    }));
    let drivers = BTreeMap::from([("raw_exec".to_string(), raw)]);
    let client = Client::new(cfg, conn.clone(), drivers).unwrap();
    let node_id = client.node_id();
    let (stop_client, rx) = watch::channel(false);
    let run = tokio::spawn(client.clone().run(rx));

    wait_for("node registered", Duration::from_secs(20), || async {
        server
            .state()
            .snapshot()
            .node(&node_id)
            .is_some_and(|n| n.status == NODE_STATUS_READY)
    })
    .await;
    assert_eq!(conn.connected_server(), Some(l.addr()));

    let resp = server
        .job_register(JobRegisterRequest {
            job: Some(batch_job("rpc-batch", "echo hello")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!resp.eval_id.is_empty());

    wait_for("alloc complete", Duration::from_secs(30), || async {
        let allocs = server
            .state()
            .snapshot()
            .allocs_by_job("default", "rpc-batch");
        allocs.len() == 1
            && allocs[0].node_id == node_id
            && allocs[0].client_status == ALLOC_CLIENT_COMPLETE
    })
    .await;
    let snap = server.state().snapshot();
    let alloc = &snap.allocs_by_job("default", "rpc-batch")[0];
    let ts = alloc.task_states.as_ref().and_then(|m| m.get("t")).cloned();
    assert_eq!(ts.map(|t| t.state), Some("dead".to_string()));

    stop_client.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), run).await;
    l.stop().await;
}

#[tokio::test]
async fn fails_over_when_the_server_goes_away() {
    let (server, _s) = running_server();
    let a = listen(&server).await;
    let b = listen(&server).await;
    let conn = RemoteServerConn::new(vec![a.addr(), b.addr()], None).unwrap();
    assert_eq!(
        conn.register(test_node("n1")).await.unwrap(),
        Duration::from_secs(10)
    );
    let first = conn.connected_server().unwrap();
    let (gone, other) = if first == a.addr() { (a, b) } else { (b, a) };
    gone.stop().await;

    assert_eq!(conn.heartbeat("n1").await.unwrap(), Duration::from_secs(10));
    assert_eq!(conn.connected_server(), Some(other.addr()));
    let other_addr = other.addr();
    other.stop().await;

    // Nobody left: a clear error naming the servers.
    let err = conn.heartbeat("n1").await.unwrap_err();
    eprintln!("no servers: {err}");
    assert!(err.0.contains(&other_addr), "{err}");
    assert!(!err.0.contains("not found"), "{err}");
}

#[tokio::test]
async fn skips_unreachable_servers_and_backs_off() {
    let (server, _s) = running_server();
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let up = listen(&server).await;
    let conn = remote(&[dead.clone(), up.addr()], None);
    conn.ping().await.unwrap();
    assert_eq!(conn.connected_server(), Some(up.addr()));
    assert_eq!(conn.servers(), vec![up.addr(), dead.clone()]);

    let only_dead = remote(std::slice::from_ref(&dead), None);
    let err = only_dead.ping().await.unwrap_err();
    assert!(err.0.contains(&dead), "{err}");
    // Backing off, but it still answers (an error) rather than hanging.
    let err = only_dead.ping().await.unwrap_err();
    assert!(err.0.contains(&dead), "{err}");
    up.stop().await;
}

struct NotLeader;

impl ClusterInfo for NotLeader {
    fn leader(&self) -> Option<String> {
        None
    }
    fn peers(&self) -> Vec<String> {
        Vec::new()
    }
    fn is_leader(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn fails_over_from_a_server_without_leader() {
    let (server, _s) = running_server();
    let follower = listen_with(
        &server,
        RpcConfig::default(),
        Some(Arc::new(NotLeader)),
        None,
    )
    .await;
    let leader = listen(&server).await;
    let conn = remote(&[follower.addr(), leader.addr()], None);
    conn.register(test_node("n1")).await.unwrap();
    assert_eq!(conn.connected_server(), Some(leader.addr()));

    // Alone, the follower's answer comes back as the error.
    let lone = remote(&[follower.addr()], None);
    let err = lone.register(test_node("n2")).await.unwrap_err();
    assert!(err.0.contains("No cluster leader"), "{err}");
    assert_eq!(lone.leader().await.unwrap(), "");
    follower.stop().await;
    leader.stop().await;
}

#[tokio::test]
async fn status_answers_as_a_single_server() {
    let (server, _s) = running_server();
    let l = listen(&server).await;
    let conn = remote(&[l.addr()], None);
    conn.ping().await.unwrap();
    assert_eq!(conn.leader().await.unwrap(), l.addr());
    assert_eq!(conn.peers().await.unwrap(), vec![l.addr()]);
    let err = conn.heartbeat("missing").await.unwrap_err();
    eprintln!("remote error: {err}");
    assert!(err.0.contains("node not found"), "{err}");
    assert!(err.0.contains(&l.addr()), "{err}");
    l.stop().await;
}

async fn write_frame(s: &mut BoxedStream, v: &serde_json::Value) {
    let bytes = frame::encode(v).unwrap();
    s.write_all(&bytes).await.unwrap();
    s.flush().await.unwrap();
}

async fn read_response(s: &mut BoxedStream) -> ResponseFrame {
    tokio::time::timeout(
        Duration::from_secs(10),
        frame::read::<ResponseFrame, _>(s, Duration::from_secs(10)),
    )
    .await
    .expect("an answer in time")
    .expect("a response frame")
}

#[tokio::test]
async fn heartbeat_overtakes_a_blocking_query_on_one_connection() {
    let (server, _s) = running_server();
    server.node_register(test_node("n1")).await.unwrap();
    let l = listen(&server).await;

    // Raw frames: the blocking query goes out first, the heartbeat's answer comes first.
    let mut s = dial(&l.addr(), RPC_NOMAD, None).await.unwrap();
    let (_, index) = server
        .node_allocs("n1", &nomad_server::QueryOptions::default())
        .await
        .unwrap();
    write_frame(
        &mut s,
        &serde_json::json!({"id": 1, "method": proto::NODE_GET_CLIENT_ALLOCS,
            "body": {"NodeID": "n1", "MinQueryIndex": index, "MaxQueryTime": 60_000_000_000u64}}),
    )
    .await;
    write_frame(
        &mut s,
        &serde_json::json!({"id": 2, "method": proto::NODE_UPDATE_STATUS, "body": {"NodeID": "n1", "Status": "ready"}}),
    )
    .await;
    let resp = read_response(&mut s).await;
    assert_eq!(resp.id, 2);
    assert_eq!(resp.error, None);
    assert_eq!(resp.body["HeartbeatTTL"], 10_000_000_000u64);
    // An unknown method is an error answer, not the end of the connection.
    write_frame(
        &mut s,
        &serde_json::json!({"id": 3, "method": "Node.Nope", "body": {}}),
    )
    .await;
    let resp = read_response(&mut s).await;
    assert_eq!(resp.id, 3);
    assert_eq!(
        resp.error.as_deref(),
        Some("rpc: can't find method Node.Nope")
    );

    // The same through RemoteServerConn: heartbeats complete while the query waits.
    let conn = Arc::new(remote(&[l.addr()], None));
    conn.ping().await.unwrap();
    let c = conn.clone();
    let query = tokio::spawn(async move { c.allocs("n1", index, Duration::from_secs(60)).await });
    for _ in 0..5 {
        conn.heartbeat("n1").await.unwrap();
    }
    assert!(!query.is_finished());
    assert_eq!(conn.connected_server(), Some(l.addr()));

    // A new alloc for the node wakes the query.
    server
        .job_register(JobRegisterRequest {
            job: Some(batch_job("wake", "true")),
            ..Default::default()
        })
        .await
        .unwrap();
    let (allocs, new_index) = tokio::time::timeout(Duration::from_secs(20), query)
        .await
        .expect("query woken")
        .unwrap()
        .unwrap();
    assert_eq!(allocs.len(), 1);
    assert_eq!(allocs[0].job_id, "wake");
    assert!(new_index > index);
    l.stop().await;
}

async fn expect_closed(s: &mut BoxedStream) {
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "connection still open");
}

#[tokio::test]
async fn malformed_frames_close_only_their_connection() {
    let (server, _s) = running_server();
    let l = listen(&server).await;

    // Not JSON.
    let mut s = dial(&l.addr(), RPC_NOMAD, None).await.unwrap();
    s.write_all(&5u32.to_be_bytes()).await.unwrap();
    s.write_all(b"\xff\x00{]x").await.unwrap();
    expect_closed(&mut s).await;

    // JSON, but not a request.
    let mut s = dial(&l.addr(), RPC_NOMAD, None).await.unwrap();
    write_frame(&mut s, &serde_json::json!([1, 2, 3])).await;
    expect_closed(&mut s).await;

    // A length over the limit.
    let mut s = dial(&l.addr(), RPC_NOMAD, None).await.unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    expect_closed(&mut s).await;

    // An unknown protocol byte.
    let mut s = dial(&l.addr(), 0x09, None).await.unwrap();
    expect_closed(&mut s).await;

    // Raft without a handler.
    let mut s = dial(&l.addr(), RPC_RAFT, None).await.unwrap();
    expect_closed(&mut s).await;

    // The listener still serves.
    let conn = remote(&[l.addr()], None);
    conn.ping().await.unwrap();
    l.stop().await;
}

/// A raft stand-in: reports what each connection sends, echoes it back.
struct EchoHandler(mpsc::UnboundedSender<Vec<u8>>);

impl StreamHandler for EchoHandler {
    fn handle(&self, mut stream: BoxedStream) -> BoxFuture<'static, ()> {
        let tx = self.0.clone();
        Box::pin(async move {
            let mut buf = [0u8; 5];
            if stream.read_exact(&mut buf).await.is_ok() {
                let _ = tx.send(buf.to_vec());
                let _ = stream.write_all(&buf).await;
                let _ = stream.flush().await;
            }
        })
    }
}

#[tokio::test]
async fn raft_byte_goes_to_the_stream_handler() {
    let (server, _s) = running_server();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let l = listen_with(
        &server,
        RpcConfig::default(),
        None,
        Some(Arc::new(EchoHandler(tx))),
    )
    .await;
    let mut s = dial(&l.addr(), RPC_RAFT, None).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    s.flush().await.unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");
    assert_eq!(rx.recv().await.unwrap(), b"hello".to_vec());
    l.stop().await;
}

/// A CA and certificates for every role, in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_key) = nomad_tls::create_ca(&CaOptions::default()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
        for role in [CertRole::Server, CertRole::Client] {
            let opts = CertOptions {
                role,
                ..CertOptions::default()
            };
            let (cert, key) = nomad_tls::create_cert(&ca, &ca_key, &opts).unwrap();
            std::fs::write(dir.path().join(format!("{}.pem", role.as_str())), cert).unwrap();
            std::fs::write(dir.path().join(format!("{}-key.pem", role.as_str())), key).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The RPC port presenting `role`'s certificate, requiring client certificates.
    fn rpc_config(&self, role: &str, require_tls: bool) -> RpcConfig {
        let cfg = nomad_tls::server_config(&ServerTlsConfig {
            ca_file: Some(self.path("ca.pem")),
            cert_file: self.path(&format!("{role}.pem")),
            key_file: self.path(&format!("{role}-key.pem")),
            verify_https_client: true,
        })
        .unwrap();
        RpcConfig {
            tls: Some(cfg),
            require_tls,
            raft_peer_name: None,
        }
    }

    /// A client agent's settings, checking `server.global.nomad` when `verify_name`.
    fn client_tls(&self, verify_name: bool) -> ClientTlsConfig {
        ClientTlsConfig {
            ca_cert: Some(self.path("ca.pem")),
            client_cert: Some(self.path("client.pem")),
            client_key: Some(self.path("client-key.pem")),
            server_name: verify_name.then(|| "server.global.nomad".to_string()),
            ..ClientTlsConfig::default()
        }
    }
}

#[tokio::test]
async fn tls_rpc_with_server_name_check() {
    let pki = Pki::new();
    let (server, _s) = running_server();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let l = listen_with(
        &server,
        pki.rpc_config("server", true),
        None,
        Some(Arc::new(EchoHandler(tx))),
    )
    .await;

    let conn = remote(&[l.addr()], Some(pki.client_tls(true)));
    conn.register(test_node("n1")).await.unwrap();
    conn.heartbeat("n1").await.unwrap();

    // Plaintext is refused when TLS is required, for RPC and Raft alike.
    let plain = remote(&[l.addr()], None);
    let err = plain.ping().await.unwrap_err();
    eprintln!("plaintext refused: {err}");
    assert!(err.0.contains(&l.addr()), "{err}");
    let mut s = dial(&l.addr(), RPC_RAFT, None).await.unwrap();
    let _ = s.write_all(b"hello").await;
    expect_closed(&mut s).await;

    // Raft inside TLS reaches the handler.
    let tls = RpcTls::new(&pki.client_tls(true)).unwrap();
    let mut s = dial(&l.addr(), RPC_RAFT, Some(&tls)).await.unwrap();
    s.write_all(b"raft!").await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), b"raft!".to_vec());

    // No client certificate: the server refuses the handshake.
    let anon = ClientTlsConfig {
        client_cert: None,
        client_key: None,
        ..pki.client_tls(true)
    };
    let err = remote(&[l.addr()], Some(anon)).ping().await.unwrap_err();
    eprintln!("no client cert: {err}");
    assert!(err.0.contains(&l.addr()), "{err}");
    l.stop().await;
}

#[tokio::test]
async fn raft_over_tls_needs_a_server_certificate_with_verify_server_hostname() {
    let pki = Pki::new();
    let (server, _s) = running_server();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = RpcConfig {
        raft_peer_name: Some("server.global.nomad".into()),
        ..pki.rpc_config("server", true)
    };
    let l = listen_with(&server, config, None, Some(Arc::new(EchoHandler(tx)))).await;

    // A client agent's certificate (same CA) still reaches Nomad RPC, but not Raft.
    let conn = remote(&[l.addr()], Some(pki.client_tls(true)));
    conn.ping().await.unwrap();
    let tls = RpcTls::new(&pki.client_tls(true)).unwrap();
    let mut s = dial(&l.addr(), RPC_RAFT, Some(&tls)).await.unwrap();
    let _ = s.write_all(b"forged").await;
    let _ = s.flush().await;
    expect_closed(&mut s).await;

    // Another server's certificate does.
    let as_server = ClientTlsConfig {
        client_cert: Some(pki.path("server.pem")),
        client_key: Some(pki.path("server-key.pem")),
        ..pki.client_tls(true)
    };
    let tls = RpcTls::new(&as_server).unwrap();
    let mut s = dial(&l.addr(), RPC_RAFT, Some(&tls)).await.unwrap();
    s.write_all(b"raft!").await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), b"raft!".to_vec());
    assert!(
        rx.try_recv().is_err(),
        "the client's bytes reached the raft handler"
    );
    l.stop().await;
}

#[tokio::test]
async fn server_name_check_rejects_a_non_server_certificate() {
    let pki = Pki::new();
    let (server, _s) = running_server();
    // This "server" presents a client certificate (client.global.nomad, localhost, 127.0.0.1).
    let l = listen_with(&server, pki.rpc_config("client", true), None, None).await;

    let err = remote(&[l.addr()], Some(pki.client_tls(true)))
        .ping()
        .await
        .unwrap_err();
    eprintln!("server name check: {err}");
    assert!(err.0.contains("server.global.nomad"), "{err}");
    assert!(err.0.contains(&l.addr()), "{err}");

    // Without verify_server_hostname the certificate is checked against the dialled host.
    remote(&[l.addr()], Some(pki.client_tls(false)))
        .ping()
        .await
        .unwrap();
    l.stop().await;
}

#[tokio::test]
async fn tls_optional_accepts_both() {
    let pki = Pki::new();
    let (server, _s) = running_server();
    let l = listen_with(&server, pki.rpc_config("server", false), None, None).await;
    remote(&[l.addr()], Some(pki.client_tls(true)))
        .ping()
        .await
        .unwrap();
    remote(&[l.addr()], None).ping().await.unwrap();
    l.stop().await;

    // Requiring TLS without a certificate is a configuration error.
    let err = RpcListener::bind(
        "127.0.0.1:0",
        RpcConfig {
            tls: None,
            require_tls: true,
            raft_peer_name: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn no_servers_is_an_error() {
    assert!(matches!(
        RemoteServerConn::new(vec![" ".into()], None),
        Err(RemoteConnError::NoServers)
    ));
}

#[tokio::test]
async fn set_servers_keeps_the_live_connection() {
    let (server, _s) = running_server();
    let a = listen(&server).await;
    let conn = remote(&[a.addr()], None);
    conn.ping().await.unwrap();
    conn.set_servers(vec!["127.0.0.1:1".into(), a.addr()]);
    assert_eq!(conn.servers(), vec![a.addr(), "127.0.0.1:1".to_string()]);
    assert_eq!(conn.connected_server(), Some(a.addr()));
    a.stop().await;
}

#[tokio::test]
async fn idle_and_stalled_connections_are_closed() {
    let (server, _s) = running_server();
    server.node_register(test_node("n1")).await.unwrap();
    let listener = RpcListener::bind("127.0.0.1:0", RpcConfig::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let rpc = RpcServer::with_limits(
        server.clone(),
        ConnLimits {
            idle_timeout: Duration::from_millis(300),
            frame_timeout: Duration::from_millis(300),
            max_in_flight: 4,
        },
    );
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(listener.serve(rpc, rx));

    // Nothing sent: closed once idle.
    let mut s = dial(&addr, RPC_NOMAD, None).await.unwrap();
    expect_closed(&mut s).await;

    // A frame that never completes: closed after the frame timeout.
    let mut s = dial(&addr, RPC_NOMAD, None).await.unwrap();
    s.write_all(&10u32.to_be_bytes()).await.unwrap();
    s.write_all(b"{\"").await.unwrap();
    s.flush().await.unwrap();
    expect_closed(&mut s).await;

    // A blocking query in flight keeps its connection open past the idle timeout.
    let conn = Arc::new(remote(std::slice::from_ref(&addr), None));
    let (_, index) = conn.allocs("n1", 0, Duration::ZERO).await.unwrap();
    let started = tokio::time::Instant::now();
    let (_, again) = conn
        .allocs("n1", index, Duration::from_millis(1200))
        .await
        .unwrap();
    assert_eq!(again, index);
    assert!(started.elapsed() >= Duration::from_millis(1000));

    // The client redials after the server closed its idle connection.
    wait_for("idle close", Duration::from_secs(10), || async {
        conn.connected_server().is_none()
    })
    .await;
    conn.heartbeat("n1").await.unwrap();
    assert_eq!(conn.connected_server(), Some(addr.clone()));

    stop.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
