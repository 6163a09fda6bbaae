//! Shared harness of the client integration tests: a fake in-memory server, the real raw_exec
//! driver, and temp dirs that unmount the client's tmpfs mounts when dropped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nomad_client::{BoxFuture, Client, ClientConfig, RpcError, ServerConn};
use nomad_drivers::{Driver, RawExecConfig, RawExecDriver};
use nomad_structs::{Allocation, Job, Node, RestartPolicy, Task, TaskGroup, TaskState};
use tokio::sync::watch;

#[derive(Default)]
pub struct FakeServer {
    pub allocs: Mutex<(Vec<Allocation>, u64)>,
    pub index_tx: Mutex<Option<watch::Sender<u64>>>,
    pub updates: Mutex<BTreeMap<String, Allocation>>,
    pub nodes: Mutex<Vec<Node>>,
}

impl FakeServer {
    pub fn new() -> Arc<FakeServer> {
        let s = FakeServer::default();
        *s.index_tx.lock().unwrap() = Some(watch::channel(0).0);
        Arc::new(s)
    }

    pub fn set_allocs(&self, allocs: Vec<Allocation>) {
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

    pub fn update(&self, id: &str) -> Option<Allocation> {
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

pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > timeout {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn raw_exec() -> BTreeMap<String, Arc<dyn Driver>> {
    let d: Arc<dyn Driver> = Arc::new(RawExecDriver::new(RawExecConfig {
        enabled: true,
        no_cgroups: true,
        ..Default::default()
    }));
    BTreeMap::from([("raw_exec".to_string(), d)])
}

pub fn task(name: &str, script: &str) -> Task {
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

pub fn alloc(job_type: &str, tasks: Vec<Task>, restart: RestartPolicy) -> Allocation {
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

pub fn no_restart() -> RestartPolicy {
    RestartPolicy {
        attempts: Some(0),
        interval: Some(10_000_000_000),
        delay: Some(100_000_000),
        mode: Some("fail".into()),
        render_templates: None,
    }
}

pub struct Harness {
    pub server: Arc<FakeServer>,
    pub client: Arc<Client>,
    pub stop: watch::Sender<bool>,
    pub run: tokio::task::JoinHandle<()>,
    pub dir: Arc<TestDir>,
}

pub fn start(dir: Arc<TestDir>, server: Arc<FakeServer>) -> Harness {
    start_with(dir, server, |_| {})
}

/// [`start`] with the client's configuration adjusted by `f`.
pub fn start_with(
    dir: Arc<TestDir>,
    server: Arc<FakeServer>,
    f: impl FnOnce(&mut ClientConfig),
) -> Harness {
    let mut cfg = ClientConfig::new(dir.path().to_path_buf());
    cfg.node_name = "test-node".into();
    f(&mut cfg);
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
    pub async fn status(&self, id: &str, want: &str) -> Allocation {
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

    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.run).await;
    }
}

pub fn event_types(ts: &TaskState) -> Vec<String> {
    ts.events
        .iter()
        .flatten()
        .map(|e| e.event_type.clone())
        .collect()
}

/// A temp dir for one test agent. As root the client mounts tmpfs on tasks' `secrets/` and
/// `private/`; tests that do not GC their allocs would leak those mounts, so dropping this
/// unmounts whatever is still mounted below the dir.
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    pub fn new() -> Arc<TestDir> {
        Arc::new(TestDir(tempfile::tempdir().expect("tmp")))
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

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

/// A tiny HTTP/1.1 file server on 127.0.0.1 for artifact tests: `GET <path>` answers the
/// body registered for that path, or 404. Every request head is recorded.
pub struct HttpFixture {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

pub fn serve(files: BTreeMap<String, Vec<u8>>) -> HttpFixture {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let reqs = requests.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(1) => head.push(b[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            reqs.lock().unwrap().push(head);
            let resp = match files.get(&path) {
                Some(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = c.write_all(&resp);
        }
    });
    HttpFixture { port, requests }
}

/// The stdout log (`<A>/alloc/logs/<task>.stdout.0`) of a task.
pub fn stdout_of(client: &Client, alloc_id: &str, task: &str) -> String {
    client
        .alloc_dir_path(alloc_id)
        .map(|d| d.join(format!("alloc/logs/{task}.stdout.0")))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// The first event of `ty`.
pub fn event<'a>(ts: &'a TaskState, ty: &str) -> &'a nomad_structs::TaskEvent {
    ts.events
        .iter()
        .flatten()
        .find(|e| e.event_type == ty)
        .unwrap_or_else(|| panic!("no {ty:?} event in {:?}", event_types(ts)))
}

/// The last event of `ty`.
pub fn last_event<'a>(ts: &'a TaskState, ty: &str) -> &'a nomad_structs::TaskEvent {
    ts.events
        .iter()
        .flatten()
        .rev()
        .find(|e| e.event_type == ty)
        .unwrap_or_else(|| panic!("no {ty:?} event in {:?}", event_types(ts)))
}

pub fn policy(attempts: i64, delay_ms: i64) -> RestartPolicy {
    RestartPolicy {
        attempts: Some(attempts),
        interval: Some(3_600_000_000_000),
        delay: Some(delay_ms * 1_000_000),
        mode: Some("fail".into()),
        render_templates: None,
    }
}
