//! `alloc exec` and `job action` websockets against the real router on a loopback listener,
//! with a real `nomad_client::Client` running raw_exec tasks (fed by an in-memory server).
//! The websocket client is tungstenite (blocking) on a helper thread.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nomad_client::{BoxFuture, Client, ClientConfig, RpcError, ServerConn};
use nomad_drivers::{Driver, RawExecConfig, RawExecDriver};
use nomad_http::{AgentInfo, HttpState};
use nomad_structs::{Action, Allocation, Job, Node, RestartPolicy, Task, TaskGroup};
use tokio::sync::watch;
use tungstenite::{Message, WebSocket};

#[derive(Default)]
struct FakeServer {
    allocs: Mutex<(Vec<Allocation>, u64)>,
    index: Mutex<Option<watch::Sender<u64>>>,
}

impl FakeServer {
    fn new() -> Arc<FakeServer> {
        let s = FakeServer::default();
        *s.index.lock().unwrap() = Some(watch::channel(0).0);
        Arc::new(s)
    }

    fn set_allocs(&self, allocs: Vec<Allocation>) {
        let mut g = self.allocs.lock().unwrap();
        g.1 += 1;
        g.0 = allocs;
        let idx = g.1;
        drop(g);
        self.index
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .send_replace(idx);
    }
}

impl ServerConn for FakeServer {
    fn register(&self, _node: Node) -> BoxFuture<'_, Result<Duration, RpcError>> {
        Box::pin(async { Ok(Duration::from_secs(10)) })
    }
    fn heartbeat(&self, _node_id: &str) -> BoxFuture<'_, Result<Duration, RpcError>> {
        Box::pin(async { Ok(Duration::from_secs(10)) })
    }
    fn allocs(
        &self,
        _node_id: &str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(Vec<Allocation>, u64), RpcError>> {
        let mut rx = self.index.lock().unwrap().as_ref().unwrap().subscribe();
        Box::pin(async move {
            let _ = tokio::time::timeout(wait, rx.wait_for(|i| *i > min_index)).await;
            let g = self.allocs.lock().unwrap();
            Ok((g.0.clone(), g.1))
        })
    }
    fn update_allocs(&self, _allocs: Vec<Allocation>) -> BoxFuture<'_, Result<(), RpcError>> {
        Box::pin(async { Ok(()) })
    }
    /// A server that knows no allocations on other nodes.
    fn forward_http(
        &self,
        _req: serde_json::Value,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<serde_json::Value, RpcError>> {
        Box::pin(async { Ok(serde_json::json!({"Status": 404, "Headers": [], "Body": ""})) })
    }
}

/// Unmounts what the client mounted below the dir (tmpfs secrets as root), then removes it.
struct TestDir(tempfile::TempDir);

impl Drop for TestDir {
    fn drop(&mut self) {
        let Ok(root) = std::fs::canonicalize(self.0.path()) else {
            return;
        };
        if let Ok(mounts) = nomad_executor::procfs::read_mountinfo("self") {
            for m in mounts.iter().rev() {
                if m.mount_point.starts_with(&root) {
                    let _ = nomad_executor::hostmount::unmount_detach(&m.mount_point);
                }
            }
        }
    }
}

struct Agent {
    addr: String,
    client: Arc<Client>,
    fake: Arc<FakeServer>,
    stop: watch::Sender<bool>,
    _dir: TestDir,
}

async fn start_agent(disable_remote_exec: bool) -> Agent {
    let dir = TestDir(tempfile::tempdir().expect("tmp"));
    let mut cfg = ClientConfig::new(dir.0.path().to_path_buf());
    cfg.node_name = "exec-test".into();
    cfg.disable_remote_exec = disable_remote_exec;
    let d: Arc<dyn Driver> = Arc::new(RawExecDriver::new(RawExecConfig {
        enabled: true,
        no_cgroups: true,
        ..Default::default()
    }));
    let fake = FakeServer::new();
    let client = Client::new(
        cfg,
        fake.clone(),
        BTreeMap::from([("raw_exec".to_string(), d)]),
    )
    .expect("client");
    let (stop, rx) = watch::channel(false);
    tokio::spawn(client.clone().run(rx.clone()));
    let state = HttpState {
        server: None,
        client: Some(client.clone()),
        agent: Arc::new(AgentInfo::default()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(nomad_http::serve(listener, state, rx));
    Agent {
        addr,
        client,
        fake,
        stop,
        _dir: dir,
    }
}

fn task(name: &str) -> Task {
    let mut cfg = serde_json::Map::new();
    cfg.insert("command".into(), "/bin/sh".into());
    cfg.insert(
        "args".into(),
        serde_json::json!(["-c", "while true; do sleep 1; done"]),
    );
    Task {
        name: name.into(),
        driver: "raw_exec".into(),
        config: Some(cfg),
        kill_timeout: Some(1_000_000_000),
        actions: Some(vec![Action {
            name: "greet".into(),
            command: "/bin/sh".into(),
            args: Some(vec![
                "-c".into(),
                "echo hi from $NOMAD_TASK_NAME; exit 5".into(),
            ]),
        }]),
        ..Default::default()
    }
}

fn alloc(tasks: Vec<Task>) -> Allocation {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let id = format!("{:08x}-{n:04x}-4000-8000-{nanos:012x}", std::process::id());
    let job = Job {
        id: "example".into(),
        name: "example".into(),
        job_type: "service".into(),
        namespace: "default".into(),
        task_groups: vec![TaskGroup {
            name: "grp".into(),
            tasks,
            restart_policy: Some(RestartPolicy {
                attempts: Some(0),
                interval: Some(10_000_000_000),
                delay: Some(100_000_000),
                mode: Some("fail".into()),
                render_templates: None,
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    Allocation {
        id,
        name: "example.grp[0]".into(),
        namespace: "default".into(),
        job_id: "example".into(),
        task_group: "grp".into(),
        job: Some(Box::new(job)),
        desired_status: "run".into(),
        client_status: "pending".into(),
        alloc_modify_index: 1,
        ..Default::default()
    }
}

async fn running_alloc(agent: &Agent) -> String {
    let a = alloc(vec![task("web")]);
    let id = a.id.clone();
    agent.fake.set_allocs(vec![a]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let started = agent
            .client
            .task_state(&id, "web")
            .is_some_and(|s| s.state == "running" && s.started_at.is_some());
        if started {
            return id;
        }
        assert!(Instant::now() < deadline, "task never started");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn exec_url(addr: &str, alloc: &str, task: &str, cmd: &[&str], tty: bool) -> String {
    let cmd = serde_json::to_string(cmd).unwrap();
    format!(
        "ws://{addr}/v1/client/allocation/{alloc}/exec?task={task}&tty={tty}&command={}",
        enc(&cmd)
    )
}

/// What a session produced, in order.
#[derive(Debug, Default)]
struct Transcript {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Frame kinds in arrival order: "out", "err", "out-close", "err-close", "exit".
    order: Vec<String>,
    exit_frame: Option<String>,
    exit_code: Option<i64>,
}

fn connect(url: &str) -> Result<WebSocket<TcpStream>, (u16, String)> {
    let hp = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let stream = TcpStream::connect(hp).expect("connect");
    match tungstenite::client(url, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => Err((
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string(),
        )),
        Err(e) => panic!("handshake: {e}"),
    }
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// Runs a session: sends `input` frames, then reads until the exit frame or close.
fn session(url: &str, input: Vec<String>) -> Result<Transcript, (u16, String)> {
    let mut ws = connect(url)?;
    for f in input {
        ws.send(Message::text(f)).expect("send");
    }
    let mut t = Transcript::default();
    loop {
        let msg = match ws.read() {
            Ok(m) => m,
            Err(e) => panic!("read: {e}; transcript {t:?}"),
        };
        let text = match msg {
            Message::Text(s) => s.to_string(),
            Message::Close(c) => {
                return Err((c.map(|c| u16::from(c.code)).unwrap_or(0), String::new()));
            }
            _ => continue,
        };
        let v: serde_json::Value = serde_json::from_str(&text).expect("json frame");
        let decode = |s: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_str().unwrap_or_default())
                .expect("b64")
        };
        if let Some(o) = v.get("stdout") {
            if let Some(d) = o.get("data") {
                t.stdout.extend(decode(d));
                t.order.push("out".into());
            }
            if o.get("close").is_some() {
                t.order.push("out-close".into());
            }
        } else if let Some(o) = v.get("stderr") {
            if let Some(d) = o.get("data") {
                t.stderr.extend(decode(d));
                t.order.push("err".into());
            }
            if o.get("close").is_some() {
                t.order.push("err-close".into());
            }
        } else if v.get("exited") == Some(&serde_json::Value::Bool(true)) {
            t.order.push("exit".into());
            t.exit_code = Some(
                v["result"]
                    .get("exit_code")
                    .and_then(|c| c.as_i64())
                    .unwrap_or(0),
            );
            t.exit_frame = Some(text);
            let _ = ws.close(None);
            let _ = ws.flush();
            return Ok(t);
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exit_codes_and_output_before_exit() {
    let agent = start_agent(false).await;
    let id = running_alloc(&agent).await;
    let addr = agent.addr.clone();
    for (script, code) in [
        (
            "i=0; while [ $i -lt 300 ]; do echo line$i; i=$((i+1)); done; echo oops >&2",
            0,
        ),
        ("echo one; exit 1", 1),
        ("echo three; echo e3 >&2; exit 3", 3),
        ("echo before; kill -9 $$", 137),
    ] {
        let url = exec_url(&addr, &id, "web", &["/bin/sh", "-c", script], false);
        let t = blocking(move || session(&url, vec![r#"{"stdin":{"close":true}}"#.into()]))
            .await
            .expect("session");
        assert_eq!(t.exit_code, Some(code), "{script}: {t:?}");
        // Every output frame and both close frames come before the exit frame.
        assert_eq!(t.order.last().map(String::as_str), Some("exit"), "{t:?}");
        assert!(
            t.order.contains(&"out-close".to_string())
                && t.order.contains(&"err-close".to_string()),
            "{t:?}"
        );
        if code == 0 {
            assert_eq!(
                t.exit_frame.as_deref(),
                Some(r#"{"exited":true,"result":{}}"#)
            );
            let out = String::from_utf8_lossy(&t.stdout);
            assert_eq!(out.lines().count(), 300, "{out}");
            assert!(out.ends_with("line299\n"));
            assert_eq!(t.stderr, b"oops\n");
        } else {
            assert_eq!(
                t.exit_frame.as_deref(),
                Some(format!(r#"{{"exited":true,"result":{{"exit_code":{code}}}}}"#).as_str())
            );
        }
    }
    agent.stop.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stdin_env_cwd_and_tty() {
    let agent = start_agent(false).await;
    let id = running_alloc(&agent).await;
    let addr = agent.addr.clone();

    let url = exec_url(
        &addr,
        &id,
        "web",
        &["/bin/sh", "-c", "cat; echo \"$NOMAD_TASK_NAME $(pwd)\""],
        false,
    );
    let input = vec![
        format!(r#"{{"stdin":{{"data":"{}"}}}}"#, b64(b"hello\nworld\n")),
        "{}".to_string(),
        r#"{"stdin":{"close":true}}"#.to_string(),
    ];
    let t = blocking(move || session(&url, input))
        .await
        .expect("session");
    let out = String::from_utf8_lossy(&t.stdout).to_string();
    assert!(out.starts_with("hello\nworld\nweb "), "{out}");
    assert!(out.trim_end().ends_with(&format!("{id}/web")), "{out}");
    assert_eq!(t.exit_code, Some(0));

    let url = exec_url(
        &addr,
        &id,
        "web",
        &["/bin/sh", "-c", "stty size; tty; exit 2"],
        true,
    );
    let input = vec![r#"{"tty_size":{"height":41,"width":132}}"#.to_string()];
    let t = blocking(move || session(&url, input))
        .await
        .expect("session");
    let out = String::from_utf8_lossy(&t.stdout).to_string();
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(t.stderr.is_empty());
    assert_eq!(t.exit_code, Some(2));
    agent.stop.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_http_errors_before_upgrade() {
    let agent = start_agent(false).await;
    let id = running_alloc(&agent).await;
    let addr = agent.addr.clone();
    let cases = vec![
        (
            exec_url(&addr, &id, "nope", &["ls"], false),
            400,
            "unknown task name \"nope\"".to_string(),
        ),
        (
            format!("ws://{addr}/v1/client/allocation/{id}/exec?task=web"),
            400,
            "command is not present".to_string(),
        ),
        (
            exec_url(&addr, "0000", "web", &["ls"], false),
            404,
            "Unknown allocation \"0000\"".to_string(),
        ),
        (
            format!("ws://{addr}/v1/job/example/action?action=nope&allocID={id}&task=web"),
            400,
            "action nope not found in task web".to_string(),
        ),
        (
            format!("ws://{addr}/v1/job/other/action?action=greet&allocID={id}&task=web"),
            400,
            format!("job other does not have allocation {id}"),
        ),
    ];
    for (url, status, body) in cases {
        let e = blocking(move || session(&url, vec![])).await.unwrap_err();
        assert_eq!(e, (status, body));
    }
    // A command that cannot start fails after the upgrade: close 1011.
    let url = exec_url(&addr, &id, "web", &["definitely-not-a-binary"], false);
    let e = blocking(move || session(&url, vec![])).await.unwrap_err();
    assert_eq!(e.0, 1011);

    // The action runs `[Command] + Args` in the task.
    let url = format!(
        "ws://{addr}/v1/job/example/action?action=greet&allocID={id}&task=web&group=grp&tty=false"
    );
    let t = blocking(move || session(&url, vec![r#"{"stdin":{"close":true}}"#.into()]))
        .await
        .expect("action");
    assert_eq!(String::from_utf8_lossy(&t.stdout), "hi from web\n");
    assert_eq!(t.exit_code, Some(5));
    agent.stop.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_remote_exec_is_403() {
    let agent = start_agent(true).await;
    let url = exec_url(&agent.addr, "anything", "web", &["ls"], false);
    let e = blocking(move || session(&url, vec![])).await.unwrap_err();
    assert_eq!(e, (403, "Permission denied".to_string()));
    agent.stop.send_replace(true);
}
