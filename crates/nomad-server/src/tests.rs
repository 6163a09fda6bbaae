//! In-process server tests (no HTTP): endpoints, broker + real scheduler, heartbeats.

use std::future::Future;
use std::time::Duration;

use super::*;

pub(crate) fn test_node(id: &str) -> Node {
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

pub(crate) fn test_job(id: &str, count: i64) -> Job {
    Job {
        id: id.into(),
        job_type: JOB_TYPE_SERVICE.into(),
        datacenters: Some(vec!["dc1".into()]),
        task_groups: vec![TaskGroup {
            name: "web".into(),
            count: Some(count),
            tasks: vec![Task {
                name: "server".into(),
                driver: "raw_exec".into(),
                config: Some(serde_json::Map::from_iter([(
                    "command".to_string(),
                    serde_json::json!("/bin/sleep"),
                )])),
                resources: Some(Resources {
                    cpu: Some(100),
                    memory_mb: Some(64),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn register(job: Job) -> JobRegisterRequest {
    JobRegisterRequest {
        job: Some(job),
        ..Default::default()
    }
}

/// A server whose workers run until the returned sender is dropped.
pub(crate) fn running(config: ServerConfig) -> (Arc<Server>, tokio::sync::watch::Sender<bool>) {
    let server = Server::new(config);
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server.clone().run(rx));
    (server, tx)
}

/// Polls `cond` until it holds or `timeout` passes (the sleep only paces the polling).
pub(crate) async fn wait_for<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn live_allocs(s: &Server, job: &str) -> Vec<Arc<Allocation>> {
    s.state()
        .snapshot()
        .allocs_by_job("default", job)
        .into_iter()
        .filter(|a| !a.terminal())
        .collect()
}

#[tokio::test]
async fn register_job_places_allocs_on_node() {
    let (s, _stop) = running(ServerConfig::default());
    s.node_register(test_node("n1")).await.unwrap();
    let resp = s.job_register(register(test_job("web", 2))).await.unwrap();
    assert!(!resp.eval_id.is_empty());
    assert_eq!(resp.eval_create_index, resp.index);
    assert_eq!(resp.job_modify_index, resp.index);

    assert!(
        wait_for(Duration::from_secs(10), || async {
            live_allocs(&s, "web").len() == 2
        })
        .await
    );
    let snap = s.state().snapshot();
    let eval = snap.eval(&resp.eval_id).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            s.state().snapshot().eval(&resp.eval_id).unwrap().status == EVAL_STATUS_COMPLETE
        })
        .await
    );
    assert_eq!(
        (eval.triggered_by.as_str(), eval.eval_type.as_str()),
        ("job-register", "service")
    );
    let allocs = s
        .node_allocs("n1", &QueryOptions::default())
        .await
        .unwrap()
        .0;
    assert_eq!(allocs.len(), 2);
    assert!(allocs.iter().all(|a| a.job.is_some() && a.node_id == "n1"));
    let job = snap.job("default", "web").unwrap();
    assert_eq!(job.status, JOB_STATUS_RUNNING);
    assert_eq!(job.region, "global");
    let summary = s.state().snapshot().job_summary("default", "web").unwrap();
    assert_eq!(
        (
            summary.summary["web"].starting,
            summary.summary["web"].queued
        ),
        (2, 0)
    );

    // The client reports one running, one failed: the failure creates an alloc-failure eval.
    let mut running_alloc = allocs[0].clone();
    running_alloc.client_status = ALLOC_CLIENT_RUNNING.into();
    let mut failed_alloc = allocs[1].clone();
    failed_alloc.client_status = ALLOC_CLIENT_FAILED.into();
    s.node_update_allocs(vec![running_alloc, failed_alloc])
        .await
        .unwrap();
    let evals = s.state().snapshot().evals_by_job("default", "web");
    assert!(evals
        .iter()
        .any(|e| e.triggered_by == TRIGGER_RETRY_FAILED_ALLOC));
    let tg = s
        .state()
        .snapshot()
        .job_summary("default", "web")
        .unwrap()
        .summary["web"]
        .clone();
    assert_eq!((tg.running, tg.failed), (1, 1));
}

#[tokio::test]
async fn unchanged_reregister_new_eval_same_version() {
    let s = Server::new(ServerConfig::default());
    let first = s.job_register(register(test_job("web", 1))).await.unwrap();
    let second = s.job_register(register(test_job("web", 1))).await.unwrap();
    assert_ne!(first.eval_id, second.eval_id);
    assert_eq!(second.job_modify_index, first.job_modify_index);
    let snap = s.state().snapshot();
    assert_eq!(snap.job("default", "web").unwrap().version, 0);
    assert_eq!(
        snap.eval(&second.eval_id).unwrap().job_modify_index,
        first.job_modify_index
    );
    let third = s.job_register(register(test_job("web", 3))).await.unwrap();
    assert_eq!(third.job_modify_index, third.index);
    assert_eq!(
        s.state().snapshot().job("default", "web").unwrap().version,
        1
    );
}

#[tokio::test]
async fn request_errors() {
    let s = Server::new(ServerConfig::default());
    assert_eq!(
        s.job_register(JobRegisterRequest::default()).await,
        Err(ServerError::BadRequest("Job must be specified".into()))
    );
    assert_eq!(
        s.job_register(register(Job::default())).await,
        Err(ServerError::BadRequest(
            "Job ID hasn't been provided".into()
        ))
    );
    let mut bad = test_job("bad", 1);
    bad.priority = 500;
    bad.task_groups[0].count = Some(-1);
    match s.job_register(register(bad)).await {
        Err(ServerError::Internal(msg)) => {
            assert!(
                msg.starts_with("2 errors occurred:\n\t* Job priority must be between [1, 100]\n"),
                "{msg:?}"
            );
            assert!(msg.ends_with("\n\n"));
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    // A driver the server does not know is not a registration error.
    let mut odd = test_job("odd", 1);
    odd.task_groups[0].tasks[0].driver = "no-such-driver".into();
    assert!(s.job_register(register(odd)).await.is_ok());
}

#[tokio::test]
async fn enforce_index_messages() {
    let s = Server::new(ServerConfig::default());
    let enforce = |jmi: u64| JobRegisterRequest {
        job: Some(test_job("web", 1)),
        enforce_index: true,
        job_modify_index: jmi,
        ..Default::default()
    };
    assert_eq!(
        s.job_register(enforce(7)).await,
        Err(ServerError::Internal(
            "Enforcing job modify index 7: job does not exist".into()
        ))
    );
    let created = s.job_register(enforce(0)).await.unwrap();
    assert_eq!(
        s.job_register(enforce(0)).await,
        Err(ServerError::Internal(
            "Enforcing job modify index 0: job already exists".into()
        ))
    );
    assert_eq!(
        s.job_register(enforce(99)).await,
        Err(ServerError::Internal(format!(
            "Enforcing job modify index 99: job exists with conflicting job modify index: {}",
            created.job_modify_index
        )))
    );
    assert!(s
        .job_register(enforce(created.job_modify_index))
        .await
        .is_ok());
}

#[tokio::test]
async fn namespace_precedence_and_deregister() {
    let s = Server::new(ServerConfig {
        region: "eu".into(),
        ..Default::default()
    });
    for ns in ["from-req", "from-job"] {
        s.namespace_upsert(
            nomad_state::Namespace {
                name: ns.into(),
                ..Default::default()
            },
            &ResolvedAcl::disabled(),
        )
        .await
        .unwrap();
    }
    let mut job = test_job("web", 1);
    job.namespace = "from-job".into();
    let req = JobRegisterRequest {
        job: Some(job.clone()),
        namespace: "from-req".into(),
        ..Default::default()
    };
    s.job_register(req).await.unwrap();
    s.job_register(register(job)).await.unwrap();
    let snap = s.state().snapshot();
    assert_eq!(snap.job("from-req", "web").unwrap().region, "eu");
    assert!(snap.job("from-job", "web").is_some());

    let unknown = s.job_deregister("default", "nope", false).await.unwrap();
    assert_eq!(unknown.eval_id, "");
    assert!(unknown.index >= 1);

    let stopped = s.job_deregister("from-job", "web", false).await.unwrap();
    assert!(!stopped.eval_id.is_empty());
    let snap = s.state().snapshot();
    let j = snap.job("from-job", "web").unwrap();
    assert!(j.stop);
    assert_eq!(j.version, 1);
    let e = snap.eval(&stopped.eval_id).unwrap();
    assert_eq!(
        (e.triggered_by.as_str(), e.job_modify_index),
        (TRIGGER_JOB_DEREGISTER, stopped.index)
    );

    s.job_deregister("from-job", "web", true).await.unwrap();
    assert!(s.state().snapshot().job("from-job", "web").is_none());
    assert_eq!(
        s.job_evaluate("from-job", "web").await,
        Err(ServerError::NotFound("job not found".into()))
    );
    assert_eq!(
        s.alloc_stop("nope").await,
        Err(ServerError::NotFound("allocation not found".into()))
    );
    assert_eq!(
        s.node_heartbeat("nope").await,
        Err(ServerError::NotFound("node not found".into()))
    );
}

#[tokio::test]
async fn blocking_query_wakes_on_change_and_times_out() {
    let s = Server::new(ServerConfig::default());
    s.job_register(register(test_job("a", 1))).await.unwrap();
    let idx = s.state().snapshot().index(&[Table::Jobs]);

    // Immediate with min_index 0.
    let (jobs, i) = s
        .blocking_query(&[Table::Jobs], &QueryOptions::default(), |snap| {
            snap.jobs(None, "").len()
        })
        .await;
    assert_eq!((jobs, i), (1, idx));

    let s2 = s.clone();
    let waiter = tokio::spawn(async move {
        let opts = QueryOptions {
            min_index: idx,
            wait: Duration::from_secs(60),
        };
        s2.blocking_query(&[Table::Jobs], &opts, |snap| snap.jobs(None, "").len())
            .await
    });
    tokio::task::yield_now().await;
    // A node write does not satisfy a jobs query.
    s.node_register(test_node("n1")).await.unwrap();
    s.job_register(register(test_job("b", 1))).await.unwrap();
    let (jobs, i) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(jobs, 2);
    assert!(i > idx);

    // Nothing changes: the wait passes and the unchanged result comes back.
    let start = tokio::time::Instant::now();
    let opts = QueryOptions {
        min_index: i,
        wait: Duration::from_millis(100),
    };
    let (_, same) = s
        .blocking_query(&[Table::Jobs], &opts, |snap| snap.jobs(None, "").len())
        .await;
    assert_eq!(same, i);
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn blocked_eval_is_unblocked_by_a_new_node() {
    let (s, _stop) = running(ServerConfig::default());
    let resp = s.job_register(register(test_job("web", 1))).await.unwrap();
    // No node yet: the eval completes with a blocked eval.
    assert!(
        wait_for(Duration::from_secs(10), || async {
            s.state()
                .snapshot()
                .evals_by_job("default", "web")
                .iter()
                .any(|e| e.status == EVAL_STATUS_BLOCKED)
        })
        .await
    );
    let snap = s.state().snapshot();
    let eval = snap.eval(&resp.eval_id).unwrap();
    assert_eq!(eval.status, EVAL_STATUS_COMPLETE);
    assert!(!eval.blocked_eval.is_empty());
    assert_eq!(
        snap.job("default", "web").unwrap().status,
        JOB_STATUS_PENDING
    );
    assert_eq!(
        snap.job_summary("default", "web").unwrap().summary["web"].queued,
        1
    );

    s.node_register(test_node("n1")).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            live_allocs(&s, "web").len() == 1
        })
        .await
    );
    let blocked = eval.blocked_eval.clone();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            s.state()
                .snapshot()
                .eval(&blocked)
                .is_some_and(|e| e.status == EVAL_STATUS_COMPLETE)
        })
        .await
    );
    assert!(
        wait_for(Duration::from_secs(10), || async {
            s.broker_stats() == (0, 0, 0, 0)
        })
        .await
    );
}

#[tokio::test]
async fn alloc_stop_replaces_the_alloc() {
    let (s, _stop) = running(ServerConfig::default());
    s.node_register(test_node("n1")).await.unwrap();
    s.job_register(register(test_job("web", 1))).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            live_allocs(&s, "web").len() == 1
        })
        .await
    );
    let first = live_allocs(&s, "web")[0].id.clone();
    let resp = s.alloc_stop(&first).await.unwrap();
    let e = s.state().snapshot().eval(&resp.eval_id).unwrap();
    assert_eq!(e.triggered_by, TRIGGER_ALLOC_STOP);
    assert!(
        wait_for(Duration::from_secs(10), || async {
            let live = live_allocs(&s, "web");
            live.len() == 1 && live[0].id != first
        })
        .await
    );
    let stopped = s.state().snapshot().alloc(&first).unwrap();
    assert_eq!(stopped.desired_status, ALLOC_DESIRED_STOP);
    assert_eq!(stopped.desired_transition.migrate, Some(true));
}

#[tokio::test(start_paused = true)]
async fn missed_heartbeat_marks_node_down_and_replaces_allocs() {
    let config = ServerConfig {
        heartbeat_ttl: Duration::from_secs(10),
        ..Default::default()
    };
    let (s, _stop) = running(config);
    s.set_heartbeat_grace(Duration::from_secs(5));
    s.node_register(test_node("n1")).await.unwrap();
    s.node_register(test_node("n2")).await.unwrap();
    s.job_register(register(test_job("web", 2))).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || async {
            live_allocs(&s, "web").len() == 2
        })
        .await
    );

    // n2 keeps heartbeating; n1 goes silent.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        s.node_heartbeat("n2").await.unwrap();
        assert_eq!(
            s.state().snapshot().node("n1").unwrap().status,
            NODE_STATUS_READY,
            "not before TTL + grace"
        );
    }
    assert!(
        wait_for(Duration::from_secs(10), || async {
            s.state().snapshot().node("n1").unwrap().status == NODE_STATUS_DOWN
        })
        .await
    );
    assert_eq!(
        s.state().snapshot().node("n2").unwrap().status,
        NODE_STATUS_READY
    );
    let n1 = s.state().snapshot().node("n1").unwrap();
    assert!(n1
        .events
        .iter()
        .flatten()
        .any(|e| e.message == "Node heartbeat missed"));
    // Its allocs are lost and replaced on n2.
    assert!(
        wait_for(Duration::from_secs(10), || async {
            let live = live_allocs(&s, "web");
            live.len() == 2 && live.iter().all(|a| a.node_id == "n2")
        })
        .await
    );
    assert!(s
        .state()
        .snapshot()
        .allocs_by_node("n1")
        .iter()
        .any(|a| a.client_status == ALLOC_CLIENT_LOST));

    // A heartbeat from the down node brings it back.
    s.node_heartbeat("n1").await.unwrap();
    assert_eq!(
        s.state().snapshot().node("n1").unwrap().status,
        NODE_STATUS_READY
    );
}

#[tokio::test]
async fn system_job_placed_on_new_node() {
    let (s, _stop) = running(ServerConfig::default());
    let mut sys = test_job("sys", 1);
    sys.job_type = JOB_TYPE_SYSTEM.into();
    s.node_register(test_node("n1")).await.unwrap();
    s.job_register(register(sys)).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            live_allocs(&s, "sys").len() == 1
        })
        .await
    );
    s.node_register(test_node("n2")).await.unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || async {
            live_allocs(&s, "sys").len() == 2
        })
        .await
    );
    assert!(s
        .state()
        .snapshot()
        .evals_by_job("default", "sys")
        .iter()
        .any(|e| e.triggered_by == TRIGGER_NODE_UPDATE));
}

#[tokio::test]
async fn node_allocs_blocks_until_the_nodes_allocs_change() {
    let (s, _stop) = running(ServerConfig::default());
    s.node_register(test_node("n1")).await.unwrap();
    let (none, idx) = s.node_allocs("n1", &QueryOptions::default()).await.unwrap();
    assert!(none.is_empty());
    let s2 = s.clone();
    let waiter = tokio::spawn(async move {
        s2.node_allocs(
            "n1",
            &QueryOptions {
                min_index: idx,
                wait: Duration::from_secs(60),
            },
        )
        .await
        .unwrap()
    });
    s.job_register(register(test_job("web", 1))).await.unwrap();
    let (allocs, i) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(allocs.len(), 1);
    assert_eq!(i, allocs[0].modify_index);
}
