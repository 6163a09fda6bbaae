//! End-to-end client tests: a fake in-memory server and the real raw_exec driver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nomad_client::{BoxFuture, Client, ClientConfig, RpcError, ServerConn};
use nomad_drivers::{Driver, RawExecConfig, RawExecDriver};
use nomad_structs::{Allocation, Job, Node, RestartPolicy, Task, TaskGroup, TaskState};
use tokio::sync::watch;

#[derive(Default)]
struct FakeServer {
    allocs: Mutex<(Vec<Allocation>, u64)>,
    index_tx: Mutex<Option<watch::Sender<u64>>>,
    updates: Mutex<BTreeMap<String, Allocation>>,
    nodes: Mutex<Vec<Node>>,
}

impl FakeServer {
    fn new() -> Arc<FakeServer> {
        let s = FakeServer::default();
        *s.index_tx.lock().unwrap() = Some(watch::channel(0).0);
        Arc::new(s)
    }

    fn set_allocs(&self, allocs: Vec<Allocation>) {
        let mut g = self.allocs.lock().unwrap();
        g.1 += 1;
        g.0 = allocs;
        let idx = g.1;
        drop(g);
        self.index_tx
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .send_replace(idx);
    }

    fn update(&self, id: &str) -> Option<Allocation> {
        self.updates.lock().unwrap().get(id).cloned()
    }
}

impl ServerConn for FakeServer {
    fn register(&self, node: Node) -> BoxFuture<'_, Result<Duration, RpcError>> {
        self.nodes.lock().unwrap().push(node);
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
        let mut rx = self.index_tx.lock().unwrap().as_ref().unwrap().subscribe();
        Box::pin(async move {
            let _ = tokio::time::timeout(wait, rx.wait_for(|i| *i > min_index)).await;
            let g = self.allocs.lock().unwrap();
            Ok((g.0.clone(), g.1))
        })
    }

    fn update_allocs(&self, allocs: Vec<Allocation>) -> BoxFuture<'_, Result<(), RpcError>> {
        let mut u = self.updates.lock().unwrap();
        for a in allocs {
            u.insert(a.id.clone(), a);
        }
        Box::pin(async { Ok(()) })
    }
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > timeout {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn raw_exec() -> BTreeMap<String, Arc<dyn Driver>> {
    let d: Arc<dyn Driver> = Arc::new(RawExecDriver::new(RawExecConfig {
        enabled: true,
        no_cgroups: true,
        cgroup_mode: None,
    }));
    BTreeMap::from([("raw_exec".to_string(), d)])
}

fn task(name: &str, script: &str) -> Task {
    let mut cfg = serde_json::Map::new();
    cfg.insert("command".into(), "/bin/sh".into());
    cfg.insert("args".into(), serde_json::json!(["-c", script]));
    Task {
        name: name.into(),
        driver: "raw_exec".into(),
        config: Some(cfg),
        kill_timeout: Some(2_000_000_000),
        ..Default::default()
    }
}

fn alloc(job_type: &str, tasks: Vec<Task>, restart: RestartPolicy) -> Allocation {
    let id = uuid::Uuid::new_v4().to_string();
    let job = Job {
        id: "example".into(),
        name: "example".into(),
        job_type: job_type.into(),
        namespace: "default".into(),
        task_groups: vec![TaskGroup {
            name: "grp".into(),
            tasks,
            restart_policy: Some(restart),
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

fn no_restart() -> RestartPolicy {
    RestartPolicy {
        attempts: Some(0),
        interval: Some(10_000_000_000),
        delay: Some(100_000_000),
        mode: Some("fail".into()),
        render_templates: None,
    }
}

struct Harness {
    server: Arc<FakeServer>,
    client: Arc<Client>,
    stop: watch::Sender<bool>,
    run: tokio::task::JoinHandle<()>,
    dir: Arc<tempfile::TempDir>,
}

fn start(dir: Arc<tempfile::TempDir>, server: Arc<FakeServer>) -> Harness {
    let mut cfg = ClientConfig::new(dir.path().to_path_buf());
    cfg.node_name = "test-node".into();
    let client = Client::new(cfg, server.clone(), raw_exec()).expect("client");
    let (stop, rx) = watch::channel(false);
    let run = tokio::spawn(client.clone().run(rx));
    Harness {
        server,
        client,
        stop,
        run,
        dir,
    }
}

impl Harness {
    async fn status(&self, id: &str, want: &str) -> Allocation {
        let mut last = None;
        let s = self.server.clone();
        wait_until(
            &format!("client status {want}"),
            Duration::from_secs(20),
            || {
                last = s.update(id);
                last.as_ref().is_some_and(|a| a.client_status == want)
            },
        )
        .await;
        last.expect("update")
    }

    async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.run).await;
    }
}

fn event_types(ts: &TaskState) -> Vec<String> {
    ts.events
        .iter()
        .flatten()
        .map(|e| e.event_type.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_task_runs_and_completes() {
    let h = start(
        Arc::new(tempfile::tempdir().expect("tmp")),
        FakeServer::new(),
    );
    wait_until("registration", Duration::from_secs(5), || {
        !h.server.nodes.lock().unwrap().is_empty()
    })
    .await;
    let node = h.server.nodes.lock().unwrap()[0].clone();
    assert_eq!(node.status, "initializing");
    assert_eq!(
        node.attributes.get("driver.raw_exec").map(String::as_str),
        Some("1")
    );
    assert!(node.drivers["raw_exec"].healthy);
    assert_eq!(node.id, h.client.node_id());

    let a = alloc(
        "batch",
        vec![task("web", "echo hello; env")],
        RestartPolicy::default(),
    );
    h.server.set_allocs(vec![a.clone()]);
    let up = h.status(&a.id, "complete").await;
    assert_eq!(up.node_id, h.client.node_id());
    assert_eq!(up.client_description, "All tasks have completed");
    let ts = &up.task_states.as_ref().expect("states")["web"];
    assert_eq!(ts.state, "dead");
    assert!(!ts.failed);
    assert!(ts.started_at.is_some() && ts.finished_at.is_some());
    assert_eq!(
        event_types(ts),
        vec!["Received", "Task Setup", "Started", "Terminated"]
    );
    let term = ts
        .events
        .as_ref()
        .expect("events")
        .last()
        .cloned()
        .expect("ev");
    assert_eq!(term.exit_code, 0);
    assert_eq!(term.display_message, "Exit Code: 0");
    assert_eq!(term.details.as_ref().expect("details")["exit_code"], "0");

    let logs = h
        .client
        .alloc_dir_path(&a.id)
        .expect("alloc dir")
        .join("alloc/logs/web.stdout.0");
    let out = std::fs::read_to_string(&logs).expect("log file");
    assert!(out.starts_with("hello\n"), "{out}");
    assert!(out.contains(&format!("NOMAD_ALLOC_ID={}", a.id)), "{out}");
    assert!(out.contains("NOMAD_TASK_NAME=web"), "{out}");
    assert!(out.contains("NOMAD_TASK_DIR="), "{out}");
    assert_eq!(
        h.client.task_state(&a.id, "web").expect("state").state,
        "dead"
    );
    assert_eq!(h.client.num_allocs(), 1);

    // GC by the server: the alloc dir goes away.
    let dir = h.client.alloc_dir_path(&a.id).expect("dir");
    h.server.set_allocs(vec![]);
    wait_until("gc", Duration::from_secs(10), || !dir.exists()).await;
    assert_eq!(h.client.num_allocs(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_task_restarts_then_fails() {
    let h = start(
        Arc::new(tempfile::tempdir().expect("tmp")),
        FakeServer::new(),
    );
    let policy = RestartPolicy {
        attempts: Some(1),
        interval: Some(60_000_000_000),
        delay: Some(100_000_000),
        mode: Some("fail".into()),
        render_templates: None,
    };
    let a = alloc("batch", vec![task("bad", "echo oops >&2; exit 3")], policy);
    h.server.set_allocs(vec![a.clone()]);
    let up = h.status(&a.id, "failed").await;
    let ts = &up.task_states.as_ref().expect("states")["bad"];
    assert!(ts.failed);
    assert_eq!(ts.restarts, 1);
    assert_eq!(
        event_types(ts),
        vec![
            "Received",
            "Task Setup",
            "Started",
            "Terminated",
            "Restarting",
            "Started",
            "Terminated",
            "Not Restarting"
        ]
    );
    let last = ts.events.as_ref().expect("ev").last().cloned().expect("ev");
    assert_eq!(
        last.restart_reason,
        "Exceeded allowed attempts 1 in interval 1m0s and mode is \"fail\""
    );
    assert!(last.fails_task);
    let err = std::fs::read_to_string(
        h.client
            .alloc_dir_path(&a.id)
            .expect("dir")
            .join("alloc/logs/bad.stderr.0"),
    )
    .expect("stderr");
    assert_eq!(err, "oops\noops\n");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_failure_reports_driver_error() {
    let h = start(
        Arc::new(tempfile::tempdir().expect("tmp")),
        FakeServer::new(),
    );
    let mut t = task("web", "");
    t.config = Some(
        serde_json::from_value(serde_json::json!({"command": "/definitely/not/here"}))
            .expect("cfg"),
    );
    let a = alloc("service", vec![t], RestartPolicy::default());
    h.server.set_allocs(vec![a.clone()]);
    let up = h.status(&a.id, "failed").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    let df = ts
        .events
        .iter()
        .flatten()
        .find(|e| e.event_type == "Driver Failure")
        .expect("driver failure event");
    assert!(
        df.driver_error.contains("/definitely/not/here"),
        "{}",
        df.driver_error
    );
    assert_eq!(df.display_message, df.driver_error);
    assert_eq!(
        df.details.as_ref().expect("d")["driver_error"],
        df.driver_error
    );
    assert_eq!(
        event_types(ts).last().map(String::as_str),
        Some("Not Restarting")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_and_sibling_failure() {
    let h = start(
        Arc::new(tempfile::tempdir().expect("tmp")),
        FakeServer::new(),
    );
    // Server stop: Killing → Terminated → Killed, not failed.
    let mut a = alloc(
        "service",
        vec![task("web", "exec sleep 30")],
        RestartPolicy::default(),
    );
    h.server.set_allocs(vec![a.clone()]);
    h.status(&a.id, "running").await;
    a.desired_status = "stop".into();
    a.alloc_modify_index = 2;
    h.server.set_allocs(vec![a.clone()]);
    let up = h.status(&a.id, "complete").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    assert!(!ts.failed);
    let types = event_types(ts);
    assert_eq!(
        &types[types.len() - 3..],
        &["Killing", "Terminated", "Killed"]
    );
    let killing = ts
        .events
        .iter()
        .flatten()
        .find(|e| e.event_type == "Killing")
        .expect("killing");
    assert_eq!(
        killing.display_message,
        "Sent interrupt. Waiting 2s before force killing"
    );

    // One task fails: the other is killed with "Sibling Task Failed".
    let b = alloc(
        "batch",
        vec![
            task("bad", "sleep 0.3; exit 1"),
            task("good", "exec sleep 30"),
        ],
        no_restart(),
    );
    h.server.set_allocs(vec![a.clone(), b.clone()]);
    let up = h.status(&b.id, "failed").await;
    let states = up.task_states.expect("states");
    wait_until("sibling dead", Duration::from_secs(10), || {
        h.client
            .task_state(&b.id, "good")
            .is_some_and(|s| s.state == "dead")
    })
    .await;
    let good = h.client.task_state(&b.id, "good").expect("good");
    assert!(!good.failed);
    let sib = good
        .events
        .iter()
        .flatten()
        .find(|e| e.event_type == "Sibling Task Failed")
        .expect("sibling event");
    assert_eq!(sib.display_message, "Task's sibling \"bad\" failed");
    assert!(states["bad"].failed);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_reattaches_running_task() {
    let dir = Arc::new(tempfile::tempdir().expect("tmp"));
    let server = FakeServer::new();
    let h = start(dir.clone(), server.clone());
    let a = alloc(
        "service",
        vec![task("web", "exec sleep 30")],
        RestartPolicy::default(),
    );
    server.set_allocs(vec![a.clone()]);
    h.status(&a.id, "running").await;
    let node_id = h.client.node_id();
    let pid = h.client.task_driver(&a.id, "web").expect("handle").1.pid;
    h.shutdown().await;

    // A new agent with the same dirs reattaches: same pid, no second Started event.
    let h2 = start(dir, server.clone());
    assert_eq!(h2.client.node_id(), node_id);
    wait_until("restored", Duration::from_secs(10), || {
        h2.client.task_driver(&a.id, "web").is_ok()
    })
    .await;
    assert_eq!(
        h2.client.task_driver(&a.id, "web").expect("handle").1.pid,
        pid
    );
    let st = h2.client.task_state(&a.id, "web").expect("state");
    assert_eq!(
        event_types(&st).iter().filter(|t| *t == "Started").count(),
        1
    );

    // Signal + restart API.
    h2.client
        .signal_task(&a.id, Some("web"), "SIGCONT")
        .await
        .expect("signal");
    assert!(h2.client.signal_task("nope", None, "SIGHUP").await.is_err());

    let mut stop = a.clone();
    stop.desired_status = "stop".into();
    stop.alloc_modify_index = 2;
    server.set_allocs(vec![stop]);
    h2.status(&a.id, "complete").await;
    h2.shutdown().await;
    let _ = h2.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_of_dead_process_restarts_task() {
    let dir = Arc::new(tempfile::tempdir().expect("tmp"));
    let server = FakeServer::new();
    let h = start(dir.clone(), server.clone());
    let a = alloc(
        "service",
        vec![task("web", "exec sleep 30")],
        RestartPolicy::default(),
    );
    server.set_allocs(vec![a.clone()]);
    h.status(&a.id, "running").await;
    let pid = h.client.task_driver(&a.id, "web").expect("handle").1.pid;
    h.shutdown().await;
    // The task dies while the agent is down.
    let st = std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(st.success());
    wait_until("process gone", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    })
    .await;

    let h2 = start(dir, server.clone());
    wait_until("restarted", Duration::from_secs(10), || {
        h2.client.task_state(&a.id, "web").is_some_and(|s| {
            s.state == "running" && event_types(&s).iter().filter(|t| *t == "Started").count() == 2
        })
    })
    .await;
    let st = h2.client.task_state(&a.id, "web").expect("state");
    let fr = st
        .events
        .iter()
        .flatten()
        .find(|e| e.event_type == "Failed Restoring Task")
        .expect("failed restore event");
    assert_eq!(
        fr.display_message,
        "failed to restore task; will not run until server is contacted"
    );
    assert_ne!(
        h2.client.task_driver(&a.id, "web").expect("handle").1.pid,
        pid
    );
    let mut stop = a.clone();
    stop.desired_status = "stop".into();
    stop.alloc_modify_index = 2;
    server.set_allocs(vec![stop]);
    h2.status(&a.id, "complete").await;
    h2.shutdown().await;
}
