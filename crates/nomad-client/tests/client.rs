//! End-to-end client tests: a fake in-memory server and the real raw_exec driver.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use nomad_structs::RestartPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_task_runs_and_completes() {
    let h = start(TestDir::new(), FakeServer::new());
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
    let h = start(TestDir::new(), FakeServer::new());
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
    let h = start(TestDir::new(), FakeServer::new());
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
    let h = start(TestDir::new(), FakeServer::new());
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
    let dir = TestDir::new();
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
    let dir = TestDir::new();
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

fn artifact(src: &str, dest: Option<&str>) -> nomad_structs::TaskArtifact {
    nomad_structs::TaskArtifact {
        getter_source: Some(src.into()),
        relative_dest: dest.map(str::to_string),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifacts_download_before_start() {
    let http = serve(BTreeMap::from([(
        "/v1/web.txt".to_string(),
        b"artifact-body\n".to_vec(),
    )]));
    let h = start(TestDir::new(), FakeServer::new());
    let mut t = task("web", "cat local/dl/web.txt");
    let mut a1 = artifact(
        &format!(
            "http://127.0.0.1:{}/${{VERSION}}/${{NOMAD_TASK_NAME}}.txt",
            http.port
        ),
        Some("local/dl"),
    );
    a1.getter_headers = Some(BTreeMap::from([(
        "X-Token".to_string(),
        "tok-${NOMAD_TASK_NAME}-${attr.kernel.name}".to_string(),
    )]));
    t.artifacts = Some(vec![a1]);
    t.env = Some(BTreeMap::from([("VERSION".to_string(), "v1".to_string())]));
    let a = alloc("batch", vec![t], no_restart());
    h.server.set_allocs(vec![a.clone()]);
    let up = h.status(&a.id, "complete").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    assert_eq!(
        event_types(ts),
        vec![
            "Received",
            "Task Setup",
            "Downloading Artifacts",
            "Started",
            "Terminated"
        ]
    );
    assert_eq!(
        event(ts, "Downloading Artifacts").display_message,
        "Client is downloading artifacts"
    );
    assert_eq!(stdout_of(&h.client, &a.id, "web"), "artifact-body\n");
    let reqs = http.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].starts_with("GET /v1/web.txt "), "{}", reqs[0]);
    assert!(
        reqs[0]
            .to_ascii_lowercase()
            .contains("x-token: tok-web-linux"),
        "{}",
        reqs[0]
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_artifact_limits_apply() {
    let http = serve(BTreeMap::from([(
        "/big.txt".to_string(),
        b"more than ten bytes\n".to_vec(),
    )]));
    let h = start_with(TestDir::new(), FakeServer::new(), |c| {
        c.artifact.http_max_size = 10;
    });
    let mut t = task("web", "true");
    t.artifacts = Some(vec![artifact(
        &format!("http://127.0.0.1:{}/big.txt", http.port),
        None,
    )]);
    let a = alloc("batch", vec![t], no_restart());
    h.server.set_allocs(vec![a.clone()]);
    let up = h.status(&a.id, "failed").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    let f = event(ts, "Failed Artifact Download");
    assert!(
        f.download_error
            .contains("artifact exceeds the maximum size of 10 bytes"),
        "{}",
        f.download_error
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifact_failures_follow_restart_policy() {
    let http = serve(BTreeMap::new());
    let h = start(TestDir::new(), FakeServer::new());
    // Recoverable (HTTP 404): retried per policy (1 attempt), then the task fails.
    let mut t = task("web", "true");
    t.artifacts = Some(vec![artifact(
        &format!("http://127.0.0.1:{}/missing.txt", http.port),
        None,
    )]);
    let a = alloc("batch", vec![t], policy(1, 50));
    // Unrecoverable (destination escapes): no retry.
    let mut t = task("web", "true");
    t.artifacts = Some(vec![artifact(
        &format!("http://127.0.0.1:{}/x", http.port),
        Some("../../../etc"),
    )]);
    let b = alloc("batch", vec![t], policy(3, 50));
    h.server.set_allocs(vec![a.clone(), b.clone()]);

    let up = h.status(&a.id, "failed").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    assert_eq!(
        event_types(ts),
        vec![
            "Received",
            "Task Setup",
            "Downloading Artifacts",
            "Failed Artifact Download",
            "Restarting",
            "Downloading Artifacts",
            "Failed Artifact Download",
            "Not Restarting"
        ]
    );
    let f = event(ts, "Failed Artifact Download");
    assert!(f.download_error.contains("404"), "{}", f.download_error);
    assert_eq!(f.display_message, f.download_error);
    assert_eq!(
        f.details.as_ref().expect("d")["download_error"],
        f.download_error
    );
    assert!(ts.failed);
    assert_eq!(ts.restarts, 1);
    assert_eq!(http.requests.lock().unwrap().len(), 2);

    let up = h.status(&b.id, "failed").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    assert_eq!(
        event_types(ts),
        vec![
            "Received",
            "Task Setup",
            "Downloading Artifacts",
            "Failed Artifact Download",
            "Not Restarting"
        ]
    );
    assert_eq!(
        event(ts, "Failed Artifact Download").download_error,
        "artifact destination path escapes alloc directory"
    );
    assert_eq!(
        last_event(ts, "Not Restarting").restart_reason,
        "Error was unrecoverable"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exit_codes_and_signals_in_terminated_events() {
    let h = start(TestDir::new(), FakeServer::new());
    let a = alloc("batch", vec![task("web", "kill -9 $$")], no_restart());
    let b = alloc("batch", vec![task("web", "exit 3")], no_restart());
    let mut t = task("web", "true");
    t.config =
        Some(serde_json::from_value(serde_json::json!({"command": "${nope}"})).expect("cfg"));
    let c = alloc("batch", vec![t], policy(3, 50));
    h.server.set_allocs(vec![a.clone(), b.clone(), c.clone()]);

    let up = h.status(&a.id, "failed").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    let term = event(ts, "Terminated");
    assert_eq!((term.exit_code, term.signal), (137, 9));
    assert_eq!(term.display_message, "Exit Code: 137, Signal: 9");
    let d = term.details.as_ref().expect("details");
    assert_eq!(d["exit_code"], "137");
    assert_eq!(d["signal"], "9");
    assert_eq!(d["oom_killed"], "false");
    assert!(!d.contains_key("exit_message"));

    let up = h.status(&b.id, "failed").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    let term = event(ts, "Terminated");
    assert_eq!((term.exit_code, term.signal), (3, 0));
    assert_eq!(term.display_message, "Exit Code: 3");
    assert_eq!(term.details.as_ref().expect("d")["signal"], "0");

    // An unknown variable in the driver config fails validation; not restarted.
    let up = h.status(&c.id, "failed").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    let fv = event(ts, "Failed Validation");
    assert_eq!(
        fv.validation_error,
        "failed to parse config: Unknown variable; There is no variable named \"nope\"."
    );
    assert_eq!(
        last_event(ts, "Not Restarting").restart_reason,
        "Error was unrecoverable"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signal_and_restart_api() {
    let h = start(TestDir::new(), FakeServer::new());
    // attempts = 0: any restart counted against the policy would fail the task.
    let a = alloc(
        "service",
        vec![task(
            "web",
            "trap 'echo got-usr1' USR1; echo start; while :; do sleep 0.05; done",
        )],
        no_restart(),
    );
    let b = alloc("batch", vec![task("web", "true")], no_restart());
    h.server.set_allocs(vec![a.clone(), b.clone()]);
    h.status(&a.id, "running").await;
    let c = h.client.clone();
    let id = a.id.clone();
    wait_until("started output", Duration::from_secs(10), || {
        stdout_of(&c, &id, "web").contains("start")
    })
    .await;

    h.client
        .signal_task(&a.id, Some("web"), "SIGUSR1")
        .await
        .expect("signal");
    wait_until("trap ran", Duration::from_secs(10), || {
        stdout_of(&c, &id, "web").contains("got-usr1")
    })
    .await;
    let st = h.client.task_state(&a.id, "web").expect("state");
    let sig = event(&st, "Signaling");
    assert_eq!(sig.task_signal, "SIGUSR1");
    assert_eq!(sig.display_message, "Task being sent signal SIGUSR1");
    assert_eq!(sig.details.as_ref().expect("d")["task_signal"], "SIGUSR1");

    let started = |n: usize| {
        let c = c.clone();
        let id = id.clone();
        move || {
            c.task_state(&id, "web").is_some_and(|s| {
                // Only the last 10 events are kept: count restarts, not Started events.
                s.state == "running"
                    && s.restarts as usize == n - 1
                    && event_types(&s).last().map(String::as_str) == Some("Started")
                    && c.task_driver(&id, "web").is_ok()
            })
        }
    };
    h.client
        .restart_alloc(&a.id, Some("web"))
        .await
        .expect("restart");
    wait_until("restarted", Duration::from_secs(15), started(2)).await;
    let st = h.client.task_state(&a.id, "web").expect("state");
    let types = event_types(&st);
    assert_eq!(
        &types[types.len() - 4..],
        &["Restart Signaled", "Terminated", "Restarting", "Started"]
    );
    let rs = event(&st, "Restart Signaled");
    assert_eq!(rs.restart_reason, "User requested restart");
    assert_eq!(rs.display_message, "User requested restart");
    let r = last_event(&st, "Restarting");
    assert_eq!(r.display_message, "Task restarting in 0s");
    assert_eq!(st.restarts, 1);
    assert!(st.last_restart.is_some());
    assert!(!st.failed);

    // Every running task (no name), then -all-tasks: still not counted against the policy.
    h.client.restart_alloc(&a.id, None).await.expect("restart");
    wait_until("restarted again", Duration::from_secs(15), started(3)).await;
    h.client
        .restart_all_tasks(&a.id)
        .await
        .expect("restart all");
    wait_until("restarted thrice", Duration::from_secs(15), started(4)).await;
    let st = h.client.task_state(&a.id, "web").expect("state");
    assert_eq!(st.restarts, 3);
    let up = h.status(&a.id, "running").await;
    assert!(!up.task_states.expect("states")["web"].failed);

    // A completed batch alloc: nothing runs, so Nomad's "Task not running".
    h.status(&b.id, "complete").await;
    use nomad_client::ClientError;
    let e = h
        .client
        .restart_alloc(&b.id, Some("web"))
        .await
        .unwrap_err();
    assert_eq!(e, ClientError::TaskNotRunning);
    assert_eq!(e.to_string(), "Task not running");
    assert_eq!(
        h.client.restart_alloc(&b.id, None).await.unwrap_err(),
        ClientError::TaskNotRunning
    );
    assert_eq!(
        h.client.restart_all_tasks(&b.id).await.unwrap_err(),
        ClientError::TaskNotRunning
    );
    assert_eq!(
        h.client
            .signal_task(&b.id, None, "SIGHUP")
            .await
            .unwrap_err(),
        ClientError::TaskNotRunning
    );
    assert_eq!(
        h.client
            .signal_task(&b.id, Some("web"), "SIGHUP")
            .await
            .unwrap_err(),
        ClientError::TaskNotRunning
    );
    assert!(matches!(
        h.client.restart_alloc(&a.id, Some("nope")).await,
        Err(ClientError::UnknownTask(_))
    ));

    let mut stop = a.clone();
    stop.desired_status = "stop".into();
    stop.alloc_modify_index = 2;
    h.server.set_allocs(vec![stop, b.clone()]);
    h.status(&a.id, "complete").await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_budget_survives_agent_restart() {
    let dir = TestDir::new();
    let server = FakeServer::new();
    let h = start(dir.clone(), server.clone());
    // First run fails (restart 1 of 1), second run stays up.
    let a = alloc(
        "service",
        vec![task(
            "web",
            "if [ -f \"$NOMAD_ALLOC_DIR/ran\" ]; then exec sleep 30; fi; touch \"$NOMAD_ALLOC_DIR/ran\"; exit 1",
        )],
        policy(1, 50),
    );
    server.set_allocs(vec![a.clone()]);
    let c = h.client.clone();
    let id = a.id.clone();
    wait_until("second run", Duration::from_secs(15), || {
        c.task_state(&id, "web")
            .is_some_and(|s| s.restarts == 1 && s.state == "running")
            && c.task_driver(&id, "web").is_ok()
    })
    .await;
    h.shutdown().await;

    let h2 = start(dir, server.clone());
    let c = h2.client.clone();
    wait_until("restored", Duration::from_secs(10), || {
        c.task_driver(&id, "web").is_ok()
    })
    .await;
    let pid = h2.client.task_driver(&a.id, "web").expect("handle").1.pid;
    assert_eq!(h2.client.task_state(&a.id, "web").expect("st").restarts, 1);
    // The task dies: the restored tracker remembers the restart already used.
    let st = std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(st.success());
    let up = h2.status(&a.id, "failed").await;
    let ts = &up.task_states.as_ref().expect("states")["web"];
    assert_eq!(
        last_event(ts, "Not Restarting").restart_reason,
        "Exceeded allowed attempts 1 in interval 1h0m0s and mode is \"fail\""
    );
    assert_eq!(ts.restarts, 1);
    h2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alloc_dir_kept_until_gc() {
    let h = start(TestDir::new(), FakeServer::new());
    let a = alloc(
        "batch",
        vec![task(
            "web",
            "echo s3 > \"$NOMAD_SECRETS_DIR/tok\"; echo d > local/f",
        )],
        no_restart(),
    );
    h.server.set_allocs(vec![a.clone()]);
    h.status(&a.id, "complete").await;
    let dir = h.client.alloc_dir_path(&a.id).expect("dir kept");
    let r = h.client.alloc_runner(&a.id).expect("runner");
    assert!(r.wait_done(Duration::from_secs(10)).await);
    // The task ended but its dirs stay until the servers GC the alloc.
    let secrets = dir.join("web/secrets");
    assert_eq!(
        std::fs::read_to_string(secrets.join("tok")).expect("secret"),
        "s3\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("web/local/f")).expect("local"),
        "d\n"
    );
    assert!(dir.join("alloc/logs/web.stdout.0").exists());
    if nomad_client::allocdir::agent_is_root() {
        assert!(nomad_executor::hostmount::is_mount_point(&secrets));
        assert!(nomad_executor::hostmount::is_mount_point(
            &dir.join("web/private")
        ));
    }
    h.server.set_allocs(vec![]);
    wait_until("gc", Duration::from_secs(10), || !dir.exists()).await;
    assert!(!nomad_executor::hostmount::is_mount_point(&secrets));
    h.shutdown().await;
}
