//! State store tests: determinism, FSM rules, snapshots, blocking waits.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

fn job(id: &str) -> Job {
    let mut j = Job {
        id: id.into(),
        job_type: JOB_TYPE_SERVICE.into(),
        task_groups: vec![TaskGroup {
            name: "web".into(),
            count: Some(2),
            tasks: vec![Task {
                name: "t".into(),
                driver: "raw_exec".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    canonicalize_job(&mut j);
    j
}

fn eval(id: &str, job_id: &str, status: &str) -> Evaluation {
    Evaluation {
        id: id.into(),
        namespace: "default".into(),
        priority: 50,
        eval_type: JOB_TYPE_SERVICE.into(),
        triggered_by: TRIGGER_JOB_REGISTER.into(),
        job_id: job_id.into(),
        status: status.into(),
        create_time: 5,
        modify_time: 5,
        ..Default::default()
    }
}

fn alloc(id: &str, job_id: &str, node: &str, eval_id: &str) -> Allocation {
    Allocation {
        id: id.into(),
        namespace: "default".into(),
        eval_id: eval_id.into(),
        name: format!("{job_id}.web[0]"),
        node_id: node.into(),
        job_id: job_id.into(),
        task_group: "web".into(),
        desired_status: ALLOC_DESIRED_RUN.into(),
        client_status: ALLOC_CLIENT_PENDING.into(),
        ..Default::default()
    }
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        status: NODE_STATUS_READY.into(),
        ..Default::default()
    }
}

fn client_update(id: &str, status: &str) -> Allocation {
    Allocation {
        id: id.into(),
        client_status: status.into(),
        client_description: "x".into(),
        ..Default::default()
    }
}

/// A log touching every command kind.
fn log() -> Vec<Command> {
    let mut j2 = job("web");
    j2.task_groups[0].count = Some(3);
    vec![
        Command::NodeRegister {
            node: node("n1"),
            now: 1_000_000_000_000,
        },
        Command::JobRegister {
            enforce_index: None,
            job: job("web"),
            eval: Some(eval("e1", "web", EVAL_STATUS_PENDING)),
            submission: Some(JobSubmission {
                source: "job {}".into(),
                format: "hcl2".into(),
                ..Default::default()
            }),
            now: 10,
        },
        Command::PlanApply {
            allocs_upsert: vec![
                alloc("a1", "web", "n1", "e1"),
                alloc("a2", "web", "n1", "e1"),
            ],
            allocs_stop: vec![],
            evals: vec![Evaluation {
                queued_allocations: Some(BTreeMap::from([("web".to_string(), 0)])),
                ..eval("e1", "web", EVAL_STATUS_COMPLETE)
            }],
            now: 20,
        },
        Command::AllocClientUpdate {
            allocs: vec![
                client_update("a1", ALLOC_CLIENT_RUNNING),
                client_update("a2", ALLOC_CLIENT_FAILED),
            ],
            evals: vec![Evaluation {
                triggered_by: TRIGGER_RETRY_FAILED_ALLOC.into(),
                ..eval("e2", "web", EVAL_STATUS_PENDING)
            }],
            now: 30,
        },
        Command::JobRegister {
            enforce_index: None,
            job: j2,
            eval: Some(eval("e3", "web", EVAL_STATUS_PENDING)),
            submission: None,
            now: 40,
        },
        Command::AllocDesiredTransition {
            alloc_ids: vec!["a1".into()],
            desired_status: None,
            desired_description: None,
            transition: DesiredTransition {
                migrate: Some(true),
                ..Default::default()
            },
            evals: vec![Evaluation {
                triggered_by: TRIGGER_ALLOC_STOP.into(),
                ..eval("e4", "web", EVAL_STATUS_PENDING)
            }],
            now: 50,
        },
        Command::NodeStatusUpdate {
            node_id: "n1".into(),
            status: NODE_STATUS_DOWN.into(),
            evals: vec![],
            now: 60,
        },
        Command::EvalsUpsert {
            evals: vec![eval("e5", "web", EVAL_STATUS_BLOCKED)],
        },
        Command::JobDeregister {
            namespace: "default".into(),
            job_id: "web".into(),
            purge: false,
            eval: Some(eval("e6", "web", EVAL_STATUS_PENDING)),
            now: 70,
        },
    ]
}

fn apply_all(store: &StateStore, cmds: &[Command]) {
    for (i, c) in cmds.iter().enumerate() {
        store.apply(i as u64 + 1, c).unwrap();
    }
}

#[test]
fn same_log_same_state() {
    let (a, b) = (StateStore::new(), StateStore::new());
    apply_all(&a, &log());
    apply_all(&b, &log());
    assert_eq!(a.persist(), b.persist());
    assert_eq!(a.latest_index(), 9);
}

#[test]
fn persist_restore_round_trip() {
    let a = StateStore::new();
    apply_all(&a, &log());
    let bytes = a.persist();
    let b = StateStore::from_persisted(&bytes).unwrap();
    assert_eq!(b.persist(), bytes);
    let s = b.snapshot();
    assert_eq!(s.allocs_by_node("n1").len(), 2);
    assert_eq!(s.evals_by_job("default", "web").len(), 6);
    assert_eq!(s.allocs_by_eval("e1").len(), 2);
    assert!(StateStore::new().restore(b"nope").is_err());
}

#[test]
fn restore_command_replaces_every_table_deterministically() {
    let source = StateStore::new();
    apply_all(&source, &log());
    let bytes = source.persist();

    // Two servers with other state apply the same Restore at index 20.
    let (a, b) = (StateStore::new(), StateStore::new());
    for s in [&a, &b] {
        s.apply(
            1,
            &Command::EvalsUpsert {
                evals: vec![eval("other", "x", "pending")],
            },
        )
        .unwrap();
    }
    let cmd = Command::Restore {
        state: bytes.clone(),
    };
    // The command survives the log's JSON (base64 inside).
    let json = serde_json::to_string(&cmd).unwrap();
    assert!(json.len() < bytes.len() * 2);
    let cmd: Command = serde_json::from_str(&json).unwrap();
    a.apply(20, &cmd).unwrap();
    b.apply(20, &cmd).unwrap();
    assert_eq!(a.persist(), b.persist());
    let snap = a.snapshot();
    assert!(snap.eval("other").is_none(), "old tables are gone");
    assert_eq!(snap.allocs_by_node("n1").len(), 2);
    assert_eq!(
        snap.jobs(None, "").len(),
        source.snapshot().jobs(None, "").len()
    );
    assert_eq!(a.latest_index(), 20);
    assert_eq!(snap.index(&[Table::Jobs]), 20);
    assert_eq!(snap.index(&[Table::Namespaces]), 20);
    // Later commands apply on top.
    a.apply(
        21,
        &Command::EvalsUpsert {
            evals: vec![eval("after", "web", "pending")],
        },
    )
    .unwrap();
    assert!(a.snapshot().eval("after").is_some());
    // Garbage is refused and changes nothing.
    let before = a.persist();
    assert!(a
        .apply(
            22,
            &Command::Restore {
                state: b"nope".to_vec()
            }
        )
        .is_err());
    assert_eq!(a.persist(), before);
}

#[test]
fn version_bump_rules() {
    let s = StateStore::new();
    s.apply(
        1,
        &Command::JobRegister {
            enforce_index: None,
            job: job("web"),
            eval: None,
            submission: None,
            now: 1,
        },
    )
    .unwrap();
    let j = s.snapshot().job("default", "web").unwrap();
    assert_eq!(
        (
            j.version,
            j.create_index,
            j.modify_index,
            j.job_modify_index,
            j.submit_time
        ),
        (0, 1, 1, 1, 1)
    );

    // Unchanged: no new version, job untouched, but the eval goes in with the old JobModifyIndex.
    s.apply(
        2,
        &Command::JobRegister {
            enforce_index: None,
            job: job("web"),
            eval: Some(eval("e1", "web", "pending")),
            submission: None,
            now: 2,
        },
    )
    .unwrap();
    let snap = s.snapshot();
    let j = snap.job("default", "web").unwrap();
    assert_eq!((j.version, j.job_modify_index, j.submit_time), (0, 1, 1));
    assert_eq!(snap.eval("e1").unwrap().job_modify_index, 1);
    assert_eq!(snap.job_versions("default", "web").len(), 1);

    // Changed spec: version 1.
    let mut j2 = job("web");
    j2.task_groups[0].count = Some(5);
    let sub = JobSubmission {
        source: "v1".into(),
        ..Default::default()
    };
    s.apply(
        3,
        &Command::JobRegister {
            enforce_index: None,
            job: j2.clone(),
            eval: None,
            submission: Some(sub),
            now: 3,
        },
    )
    .unwrap();
    let snap = s.snapshot();
    let j = snap.job("default", "web").unwrap();
    assert_eq!(
        (j.version, j.create_index, j.job_modify_index, j.submit_time),
        (1, 1, 3, 3)
    );
    assert_eq!(
        snap.job_submission("default", "web", 1).unwrap().source,
        "v1"
    );
    assert!(snap.job_submission("default", "web", 0).is_none());

    // Stop bumps the version and sets Stop.
    s.apply(
        4,
        &Command::JobDeregister {
            namespace: "default".into(),
            job_id: "web".into(),
            purge: false,
            eval: None,
            now: 4,
        },
    )
    .unwrap();
    let j = s.snapshot().job("default", "web").unwrap();
    assert!(j.stop);
    assert_eq!(j.version, 2);

    // Only the last 6 versions are kept.
    for i in 0..10u64 {
        let mut jj = job("web");
        jj.task_groups[0].count = Some(10 + i as i64);
        s.apply(
            5 + i,
            &Command::JobRegister {
                enforce_index: None,
                job: jj,
                eval: None,
                submission: None,
                now: 5,
            },
        )
        .unwrap();
    }
    let versions = s.snapshot().job_versions("default", "web");
    assert_eq!(versions.len(), JOB_TRACKED_VERSIONS);
    assert_eq!(versions[0].version, 12);
    assert_eq!(versions[5].version, 7);

    // Purge removes job, versions and summary.
    s.apply(
        20,
        &Command::JobDeregister {
            namespace: "default".into(),
            job_id: "web".into(),
            purge: true,
            eval: None,
            now: 6,
        },
    )
    .unwrap();
    let snap = s.snapshot();
    assert!(snap.job("default", "web").is_none());
    assert!(snap.job_summary("default", "web").is_none());
    assert!(snap.job_versions("default", "web").is_empty());
    assert_eq!(
        s.apply(
            21,
            &Command::JobDeregister {
                namespace: "default".into(),
                job_id: "web".into(),
                purge: true,
                eval: None,
                now: 6
            }
        ),
        Err(StateError::NotFound("job".into()))
    );
    // The failed command changed nothing, and the index must still increase.
    assert_eq!(s.latest_index(), 20);
    assert!(s
        .apply(20, &Command::EvalsUpsert { evals: vec![] })
        .is_err());
}

#[test]
fn job_status_transitions() {
    let s = StateStore::new();
    let status = |s: &StateStore| s.snapshot().job("default", "web").unwrap().status.clone();
    s.apply(
        1,
        &Command::JobRegister {
            enforce_index: None,
            job: job("web"),
            eval: None,
            submission: None,
            now: 1,
        },
    )
    .unwrap();
    assert_eq!(status(&s), JOB_STATUS_PENDING);
    s.apply(
        2,
        &Command::EvalsUpsert {
            evals: vec![eval("e1", "web", EVAL_STATUS_PENDING)],
        },
    )
    .unwrap();
    assert_eq!(status(&s), JOB_STATUS_PENDING);
    s.apply(
        3,
        &Command::PlanApply {
            allocs_upsert: vec![alloc("a1", "web", "n1", "e1")],
            allocs_stop: vec![],
            evals: vec![eval("e1", "web", EVAL_STATUS_COMPLETE)],
            now: 3,
        },
    )
    .unwrap();
    assert_eq!(status(&s), JOB_STATUS_RUNNING);
    s.apply(
        4,
        &Command::AllocClientUpdate {
            allocs: vec![client_update("a1", ALLOC_CLIENT_COMPLETE)],
            evals: vec![],
            now: 4,
        },
    )
    .unwrap();
    assert_eq!(status(&s), JOB_STATUS_DEAD);
    let j = s.snapshot().job("default", "web").unwrap();
    assert_eq!(j.modify_index, 4);

    // System jobs run until stopped.
    let mut sys = job("sys");
    sys.job_type = JOB_TYPE_SYSTEM.into();
    s.apply(
        5,
        &Command::JobRegister {
            enforce_index: None,
            job: sys,
            eval: None,
            submission: None,
            now: 5,
        },
    )
    .unwrap();
    assert_eq!(
        s.snapshot().job("default", "sys").unwrap().status,
        JOB_STATUS_RUNNING
    );
    s.apply(
        6,
        &Command::JobDeregister {
            namespace: "default".into(),
            job_id: "sys".into(),
            purge: false,
            eval: None,
            now: 6,
        },
    )
    .unwrap();
    assert_eq!(
        s.snapshot().job("default", "sys").unwrap().status,
        JOB_STATUS_DEAD
    );
}

#[test]
fn summary_counts() {
    let s = StateStore::new();
    s.apply(
        1,
        &Command::JobRegister {
            enforce_index: None,
            job: job("web"),
            eval: Some(eval("e1", "web", "pending")),
            submission: None,
            now: 1,
        },
    )
    .unwrap();
    let sum = s.snapshot().job_summary("default", "web").unwrap();
    assert_eq!(sum.summary["web"], TaskGroupSummary::default());
    assert_eq!((sum.create_index, sum.namespace.as_str()), (1, "default"));

    // The scheduler could place one of two: Queued 1, Starting 1.
    s.apply(
        2,
        &Command::PlanApply {
            allocs_upsert: vec![alloc("a1", "web", "n1", "e1")],
            allocs_stop: vec![],
            evals: vec![Evaluation {
                queued_allocations: Some(BTreeMap::from([("web".to_string(), 1)])),
                ..eval("e1", "web", EVAL_STATUS_COMPLETE)
            }],
            now: 2,
        },
    )
    .unwrap();
    let tg = s.snapshot().job_summary("default", "web").unwrap().summary["web"].clone();
    assert_eq!((tg.queued, tg.starting, tg.running), (1, 1, 0));

    s.apply(
        3,
        &Command::AllocClientUpdate {
            allocs: vec![client_update("a1", ALLOC_CLIENT_RUNNING)],
            evals: vec![],
            now: 3,
        },
    )
    .unwrap();
    let tg = s.snapshot().job_summary("default", "web").unwrap().summary["web"].clone();
    assert_eq!((tg.starting, tg.running), (0, 1));
    s.apply(
        4,
        &Command::AllocClientUpdate {
            allocs: vec![client_update("a1", ALLOC_CLIENT_FAILED)],
            evals: vec![],
            now: 4,
        },
    )
    .unwrap();
    let tg = s.snapshot().job_summary("default", "web").unwrap().summary["web"].clone();
    assert_eq!((tg.running, tg.failed), (0, 1));

    // A client update keeps the server-side fields.
    let a = s.snapshot().alloc("a1").unwrap();
    assert_eq!(
        (
            a.desired_status.as_str(),
            a.eval_id.as_str(),
            a.create_index,
            a.modify_index
        ),
        ("run", "e1", 2, 4)
    );
    assert_eq!(a.alloc_modify_index, 2);
    assert_eq!(a.modify_time, 4);
    assert!(a.job.is_some(), "the plan applier attaches the job");

    // The scheduler marks an alloc lost: client status taken from the plan.
    s.apply(
        5,
        &Command::PlanApply {
            allocs_upsert: vec![alloc("a2", "web", "n1", "e1")],
            allocs_stop: vec![],
            evals: vec![],
            now: 5,
        },
    )
    .unwrap();
    let mut lost = (*s.snapshot().alloc("a2").unwrap()).clone();
    lost.desired_status = ALLOC_DESIRED_STOP.into();
    lost.client_status = ALLOC_CLIENT_LOST.into();
    lost.desired_description = "alloc is lost since its node is down".into();
    s.apply(
        6,
        &Command::PlanApply {
            allocs_upsert: vec![lost],
            allocs_stop: vec![],
            evals: vec![],
            now: 6,
        },
    )
    .unwrap();
    let tg = s.snapshot().job_summary("default", "web").unwrap().summary["web"].clone();
    assert_eq!((tg.starting, tg.lost), (0, 1));

    // Stops from a plan set the desired status only.
    s.apply(
        7,
        &Command::PlanApply {
            allocs_upsert: vec![],
            allocs_stop: vec![("a1".into(), "stop it".into())],
            evals: vec![],
            now: 7,
        },
    )
    .unwrap();
    let a = s.snapshot().alloc("a1").unwrap();
    assert_eq!(
        (
            a.desired_status.as_str(),
            a.desired_description.as_str(),
            a.client_status.as_str()
        ),
        ("stop", "stop it", "failed")
    );
}

#[test]
fn blocked_evals_are_replaced_and_cancelled() {
    let s = StateStore::new();
    s.apply(
        1,
        &Command::JobRegister {
            enforce_index: None,
            job: job("web"),
            eval: None,
            submission: None,
            now: 1,
        },
    )
    .unwrap();
    s.apply(
        2,
        &Command::EvalsUpsert {
            evals: vec![eval("b1", "web", EVAL_STATUS_BLOCKED)],
        },
    )
    .unwrap();
    s.apply(
        3,
        &Command::EvalsUpsert {
            evals: vec![eval("b2", "web", EVAL_STATUS_BLOCKED)],
        },
    )
    .unwrap();
    let snap = s.snapshot();
    assert_eq!(snap.eval("b1").unwrap().status, EVAL_STATUS_CANCELED);
    assert_eq!(snap.eval("b2").unwrap().status, EVAL_STATUS_BLOCKED);
    assert_eq!(snap.eval("b2").unwrap().create_index, 3);
    s.apply(
        4,
        &Command::EvalsUpsert {
            evals: vec![eval("c1", "web", EVAL_STATUS_COMPLETE)],
        },
    )
    .unwrap();
    let b2 = s.snapshot().eval("b2").unwrap();
    assert_eq!(b2.status, EVAL_STATUS_CANCELED);
    assert_eq!(b2.status_description, "evaluation \"c1\" successful");
    assert_eq!((b2.create_index, b2.modify_index), (3, 4));
}

#[test]
fn node_register_keeps_operator_fields() {
    let s = StateStore::new();
    s.apply(
        1,
        &Command::NodeRegister {
            node: node("n0"),
            now: 7_000_000_000,
        },
    )
    .unwrap();
    let n = s.snapshot().node("n0").unwrap();
    assert_eq!(
        (
            n.create_index,
            n.scheduling_eligibility.as_str(),
            n.status_updated_at
        ),
        (1, "eligible", 7)
    );
    assert_eq!(n.events.as_ref().unwrap()[0].message, "Node registered");

    let mut ineligible = node("n1");
    ineligible.scheduling_eligibility = NODE_INELIGIBLE.into();
    s.apply(
        2,
        &Command::NodeRegister {
            node: ineligible,
            now: 8_000_000_000,
        },
    )
    .unwrap();
    s.apply(
        3,
        &Command::NodeStatusUpdate {
            node_id: "n1".into(),
            status: NODE_STATUS_DOWN.into(),
            evals: vec![],
            now: 9_000_000_000,
        },
    )
    .unwrap();
    let mut again = node("n1");
    again.scheduling_eligibility = NODE_ELIGIBLE.into();
    again.status_updated_at = 0;
    s.apply(
        4,
        &Command::NodeRegister {
            node: again,
            now: 10_000_000_000,
        },
    )
    .unwrap();
    let n = s.snapshot().node("n1").unwrap();
    assert_eq!(
        (n.create_index, n.modify_index, n.status.as_str()),
        (2, 4, "ready")
    );
    assert_eq!(n.scheduling_eligibility, NODE_INELIGIBLE);
    let msgs: Vec<_> = n
        .events
        .iter()
        .flatten()
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        msgs,
        [
            "Node registered",
            "Node heartbeat missed",
            "Node re-registered"
        ]
    );
    assert_eq!(
        s.apply(
            5,
            &Command::NodeStatusUpdate {
                node_id: "nx".into(),
                status: "down".into(),
                evals: vec![],
                now: 1
            }
        ),
        Err(StateError::NotFound("node".into()))
    );
}

#[test]
fn snapshot_is_isolated_and_indexes_floor_at_one() {
    let s = StateStore::new();
    let empty = s.snapshot();
    assert_eq!(empty.index(&[Table::Jobs]), 1);
    s.apply(
        1,
        &Command::JobRegister {
            enforce_index: None,
            job: job("web"),
            eval: None,
            submission: None,
            now: 1,
        },
    )
    .unwrap();
    let before = s.snapshot();
    s.apply(
        2,
        &Command::NodeRegister {
            node: node("n1"),
            now: 1,
        },
    )
    .unwrap();
    let mut j = job("api");
    j.namespace = "other".into();
    s.apply(
        3,
        &Command::NamespaceUpsert {
            namespaces: vec![namespace("other")],
        },
    )
    .unwrap();
    s.apply(
        4,
        &Command::JobRegister {
            enforce_index: None,
            job: j,
            eval: None,
            submission: None,
            now: 1,
        },
    )
    .unwrap();
    assert!(before.node("n1").is_none());
    assert!(empty.job("default", "web").is_none());
    let now = s.snapshot();
    assert_eq!(now.index(&[Table::Nodes]), 2);
    assert_eq!(now.index(&[Table::Jobs, Table::Nodes]), 4);
    assert_eq!(now.index(&[Table::Allocs]), 1);
    assert_eq!(now.jobs(None, "").len(), 2);
    assert_eq!(now.jobs(Some("default"), "").len(), 1);
    assert_eq!(now.jobs(None, "a")[0].id, "api");
    assert_eq!(now.nodes("n").len(), 1);
}

#[tokio::test]
async fn wait_wakes_on_change_and_times_out() {
    let s = StateStore::new();
    s.apply(
        1,
        &Command::NodeRegister {
            node: node("n1"),
            now: 1,
        },
    )
    .unwrap();

    // A change to another table does not wake a waiter; the timeout does.
    let start = tokio::time::Instant::now();
    let s2 = s.clone();
    let waiter = tokio::spawn(async move {
        s2.wait_for_change(&[Table::Jobs], 1, Duration::from_millis(200))
            .await
    });
    s.apply(
        2,
        &Command::NodeRegister {
            node: node("n2"),
            now: 1,
        },
    )
    .unwrap();
    waiter.await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(s.snapshot().job("default", "web").is_none());

    // A change to the watched table wakes it long before the timeout.
    let start = tokio::time::Instant::now();
    let s2 = s.clone();
    let waiter = tokio::spawn(async move {
        s2.wait_for_change(&[Table::Jobs], 2, Duration::from_secs(30))
            .await
    });
    tokio::task::yield_now().await;
    s.apply(
        3,
        &Command::JobRegister {
            enforce_index: None,
            job: job("web"),
            eval: None,
            submission: None,
            now: 1,
        },
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));

    // Already past the index: returns at once.
    tokio::time::timeout(
        Duration::from_secs(1),
        s.wait_for_change(&[Table::Nodes], 1, Duration::from_secs(60)),
    )
    .await
    .expect("immediate");
}

fn token(accessor: &str, secret: &str, kind: &str, policies: &[&str]) -> AclToken {
    let mut t = AclToken {
        accessor_id: accessor.into(),
        secret_id: secret.into(),
        name: format!("token {accessor}"),
        token_type: kind.into(),
        policies: (!policies.is_empty()).then(|| policies.iter().map(|p| p.to_string()).collect()),
        create_time: "2024-01-01T00:00:00Z".into(),
        ..Default::default()
    };
    t.set_hash();
    t
}

fn policy(name: &str, rules: &str) -> AclPolicy {
    AclPolicy {
        name: name.into(),
        rules: rules.into(),
        ..Default::default()
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        name: name.into(),
        description: format!("the {name} namespace"),
        ..Default::default()
    }
}

/// A log touching every ACL and namespace command, then a job in the new namespace.
fn acl_log() -> Vec<Command> {
    let mut prod_job = job("api");
    prod_job.namespace = "prod".into();
    vec![
        Command::AclBootstrap {
            token: token("boot", "s-boot", "management", &[]),
            reset_index: None,
        },
        Command::AclPolicyUpsert {
            policies: vec![
                policy("readonly", r#"namespace "*" { policy = "read" }"#),
                policy("anonymous", r#"namespace "default" { policy = "read" }"#),
            ],
        },
        Command::AclTokenUpsert {
            tokens: vec![token("c1", "s-c1", "client", &["readonly"])],
        },
        Command::NamespaceUpsert {
            namespaces: vec![namespace("prod"), namespace("dev")],
        },
        Command::JobRegister {
            enforce_index: None,
            job: prod_job,
            eval: None,
            submission: None,
            now: 5,
        },
        Command::NamespaceDelete {
            names: vec!["dev".into()],
        },
        Command::AclPolicyDelete {
            names: vec!["anonymous".into(), "never-existed".into()],
        },
        Command::AclTokenDelete {
            accessor_ids: vec!["c1".into()],
        },
    ]
}

#[test]
fn default_namespace_exists_in_a_fresh_store() {
    let s = StateStore::new();
    let snap = s.snapshot();
    let ns = snap
        .namespace(DEFAULT_NAMESPACE)
        .expect("default namespace");
    assert_eq!(ns.description, DEFAULT_NAMESPACE_DESCRIPTION);
    assert_eq!((ns.create_index, ns.modify_index), (1, 1));
    assert!(!ns.hash.is_empty());
    assert_eq!(snap.index(&[Table::Namespaces]), 1);
    assert_eq!(snap.latest_index(), 0);
    assert_eq!(snap.acl_bootstrap_index(), None);
    // The first command may still use index 1.
    s.apply(1, &Command::EvalsUpsert { evals: vec![] }).unwrap();
    // Snapshots written before namespaces existed get the default namespace back.
    let mut old: serde_json::Value = serde_json::from_slice(&s.persist()).unwrap();
    old.as_object_mut().unwrap().remove("namespaces");
    let restored = StateStore::from_persisted(&serde_json::to_vec(&old).unwrap()).unwrap();
    assert!(restored.snapshot().namespace("default").is_some());
}

#[test]
fn acl_log_is_deterministic_and_round_trips() {
    let mut cmds = log();
    cmds.extend(acl_log());
    // Commands travel through the Raft log as JSON.
    for c in &cmds {
        let back: Command = serde_json::from_slice(&serde_json::to_vec(c).unwrap()).unwrap();
        assert_eq!(&back, c);
    }
    let (a, b) = (StateStore::new(), StateStore::new());
    apply_all(&a, &cmds);
    apply_all(&b, &cmds);
    assert_eq!(a.persist(), b.persist());
    let restored = StateStore::from_persisted(&a.persist()).unwrap();
    assert_eq!(restored.persist(), a.persist());

    let snap = restored.snapshot();
    assert_eq!(snap.acl_bootstrap_index(), Some(10));
    let boot = snap
        .acl_token_by_secret("s-boot")
        .expect("by secret after restore");
    assert_eq!((boot.accessor_id.as_str(), boot.create_index), ("boot", 10));
    assert!(snap.acl_token("c1").is_none());
    assert!(snap.acl_token_by_secret("s-c1").is_none());
    let names: Vec<String> = snap
        .acl_policies("")
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names, vec!["readonly"]);
    let ro = snap.acl_policy("readonly").unwrap();
    assert_eq!((ro.create_index, ro.modify_index), (11, 11));
    assert!(!ro.hash.is_empty() && ro.rules_json.is_none());
    let ns: Vec<String> = snap.namespaces("").iter().map(|n| n.name.clone()).collect();
    assert_eq!(ns, vec!["default", "prod"]);
    assert!(snap.job("prod", "api").is_some());
    assert_eq!(snap.index(&[Table::AclTokens]), 17);
    assert_eq!(snap.index(&[Table::AclPolicies]), 16);
    assert_eq!(snap.index(&[Table::Namespaces]), 15);
}

#[test]
fn bootstrap_once_unless_the_reset_index_matches() {
    let s = StateStore::new();
    let boot = |a: &str, reset| Command::AclBootstrap {
        token: token(a, &format!("s-{a}"), "management", &[]),
        reset_index: reset,
    };
    s.apply(3, &boot("b1", None)).unwrap();
    let before = s.persist();
    assert_eq!(
        s.apply(4, &boot("b2", None)),
        Err(StateError::Refused("ACL bootstrap already done".into()))
    );
    assert_eq!(
        s.apply(4, &boot("b2", Some(2))),
        Err(StateError::Refused(
            "Invalid reset index for ACL bootstrap".into()
        ))
    );
    assert_eq!(s.persist(), before, "a refused command changes nothing");
    s.apply(4, &boot("b2", Some(3))).unwrap();
    let snap = s.snapshot();
    assert_eq!(snap.acl_bootstrap_index(), Some(4));
    // The earlier bootstrap token is kept (Nomad only adds a new one).
    assert!(snap.acl_token("b1").is_some() && snap.acl_token("b2").is_some());
}

#[test]
fn token_upsert_keeps_immutable_fields_and_delete_checks() {
    let s = StateStore::new();
    s.apply(
        1,
        &Command::AclTokenUpsert {
            tokens: vec![token("a", "s-a", "client", &["p"])],
        },
    )
    .unwrap();
    let mut update = token("a", "other-secret", "client", &["p", "q"]);
    update.create_time = "2030-01-01T00:00:00Z".into();
    s.apply(
        2,
        &Command::AclTokenUpsert {
            tokens: vec![update],
        },
    )
    .unwrap();
    let snap = s.snapshot();
    let t = snap.acl_token("a").unwrap();
    assert_eq!(t.secret_id, "s-a");
    assert_eq!(t.create_time, "2024-01-01T00:00:00Z");
    assert_eq!((t.create_index, t.modify_index), (1, 2));
    assert_eq!(t.policy_names(), ["p", "q"]);
    assert!(snap.acl_token_by_secret("other-secret").is_none());

    // A second token may not reuse a secret.
    assert!(matches!(
        s.apply(
            3,
            &Command::AclTokenUpsert {
                tokens: vec![token("b", "s-a", "client", &["p"])]
            }
        ),
        Err(StateError::Refused(_))
    ));
    assert_eq!(
        s.apply(
            3,
            &Command::AclTokenDelete {
                accessor_ids: vec!["a".into(), "x".into(), "y".into()]
            }
        ),
        Err(StateError::Refused(
            "Cannot delete nonexistent tokens: x, y".into()
        ))
    );
    assert!(s.snapshot().acl_token("a").is_some());
    // Listing order is Nomad's: by CreateIndex.
    s.apply(
        3,
        &Command::AclTokenUpsert {
            tokens: vec![token("0-later", "s-0", "management", &[])],
        },
    )
    .unwrap();
    let order: Vec<String> = s
        .snapshot()
        .acl_tokens("")
        .iter()
        .map(|t| t.accessor_id.clone())
        .collect();
    assert_eq!(order, vec!["a", "0-later"]);
    assert_eq!(s.snapshot().acl_tokens("0-").len(), 1);
}

#[test]
fn namespace_rules() {
    let s = StateStore::new();
    let mut j = job("web");
    j.namespace = "prod".into();
    let reg = Command::JobRegister {
        enforce_index: None,
        job: j,
        eval: None,
        submission: None,
        now: 1,
    };
    assert_eq!(
        s.apply(1, &reg),
        Err(StateError::Refused(
            "job \"web\" is in nonexistent namespace \"prod\"".into()
        ))
    );
    s.apply(
        1,
        &Command::NamespaceUpsert {
            namespaces: vec![namespace("prod")],
        },
    )
    .unwrap();
    s.apply(2, &reg).unwrap();
    s.apply(
        3,
        &Command::NamespaceUpsert {
            namespaces: vec![Namespace {
                description: "changed".into(),
                ..namespace("prod")
            }],
        },
    )
    .unwrap();
    let ns = s.snapshot().namespace("prod").unwrap();
    assert_eq!((ns.create_index, ns.modify_index), (1, 3));
    assert_eq!(ns.hash, ns.compute_hash());
    assert_eq!(
        s.apply(
            4,
            &Command::NamespaceDelete {
                names: vec!["prod".into(), "default".into()]
            }
        ),
        Err(StateError::Refused(
            "default namespace can not be deleted".into()
        ))
    );
    assert_eq!(
        s.apply(
            4,
            &Command::NamespaceDelete {
                names: vec!["nope".into()]
            }
        ),
        Err(StateError::Refused("namespace not found".into()))
    );
    assert!(s.snapshot().namespace("prod").is_some());
    s.apply(
        4,
        &Command::NamespaceDelete {
            names: vec!["prod".into()],
        },
    )
    .unwrap();
    assert!(s.snapshot().namespace("prod").is_none());
}

#[test]
fn enforce_index_is_checked_in_log_order() {
    let s = StateStore::new();
    let reg = |enforce: Option<u64>| Command::JobRegister {
        enforce_index: enforce,
        job: job("web"),
        eval: None,
        submission: None,
        now: 1,
    };
    // 0: only if the job does not exist.
    s.apply(1, &reg(Some(0))).expect("first register");
    let jmi = s.snapshot().job("default", "web").unwrap().job_modify_index;
    let err = s.apply(2, &reg(Some(0))).unwrap_err().to_string();
    assert_eq!(err, "Enforcing job modify index 0: job already exists");
    let err = s.apply(3, &reg(Some(jmi + 7))).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "Enforcing job modify index {}: job exists with conflicting job modify index: {jmi}",
            jmi + 7
        )
    );
    // Two registrations that both expected `jmi`: the first wins, the second is refused.
    let mut changed = job("web");
    changed.task_groups[0].count = Some(5);
    let with = |j: Job| Command::JobRegister {
        enforce_index: Some(jmi),
        job: j,
        eval: None,
        submission: None,
        now: 2,
    };
    s.apply(4, &with(changed.clone())).expect("matching index");
    changed.task_groups[0].count = Some(6);
    assert!(s.apply(5, &with(changed)).is_err());
    assert_eq!(
        s.snapshot().job("default", "web").unwrap().task_groups[0].count,
        Some(5)
    );
    assert_eq!(
        enforce_index_refusal(None, 3).as_deref(),
        Some("Enforcing job modify index 3: job does not exist")
    );
}

#[test]
fn stability_marks_one_version_and_keeps_its_indexes() {
    let store = StateStore::new();
    let mut j1 = job("web");
    j1.task_groups[0].count = Some(5);
    for (i, j) in [job("web"), j1].into_iter().enumerate() {
        store
            .apply(
                i as u64 + 1,
                &Command::JobRegister {
                    job: j,
                    eval: None,
                    submission: None,
                    now: 1,
                    enforce_index: None,
                },
            )
            .unwrap();
    }
    let stable = |version, stable| Command::JobStability {
        namespace: "default".into(),
        job_id: "web".into(),
        version,
        stable,
    };
    // An old version: only its history entry changes.
    store.apply(3, &stable(0, true)).unwrap();
    let snap = store.snapshot();
    let v0 = snap.job_version("default", "web", 0).unwrap();
    assert!(v0.stable);
    assert_eq!(v0.modify_index, 3);
    assert_eq!(v0.job_modify_index, 1);
    assert!(!snap.job("default", "web").unwrap().stable);
    // The current version: the job itself too, without a new version.
    store.apply(4, &stable(1, true)).unwrap();
    let cur = store.snapshot().job("default", "web").unwrap();
    assert!(cur.stable);
    assert_eq!(
        (cur.version, cur.job_modify_index, cur.modify_index),
        (1, 2, 4)
    );
    assert_eq!(store.snapshot().job_versions("default", "web").len(), 2);
    // Unknown versions are refused, naming the version.
    let err = store.apply(5, &stable(7, true)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "job \"web\" in namespace \"default\" at version 7 not found"
    );
}

#[test]
fn scaling_events_are_kept_newest_first_and_capped() {
    let store = StateStore::new();
    store
        .apply(
            1,
            &Command::JobRegister {
                job: job("web"),
                eval: None,
                submission: None,
                now: 1,
                enforce_index: None,
            },
        )
        .unwrap();
    let ev = |n: i64| Command::ScalingEventRegister {
        namespace: "default".into(),
        job_id: "web".into(),
        group: "web".into(),
        event: ScalingEvent {
            time: n,
            count: Some(n),
            ..Default::default()
        },
    };
    for n in 0..25 {
        store.apply(n as u64 + 2, &ev(n)).unwrap();
    }
    let (groups, index) = store.snapshot().scaling_events_by_job("default", "web");
    let events = &groups["web"];
    assert_eq!(events.len(), JOB_TRACKED_SCALING_EVENTS);
    assert_eq!(events[0].count, Some(24));
    assert_eq!(events[0].create_index, 26);
    assert_eq!(index, 26);
    // A job that does not exist gets no events.
    let missing = Command::ScalingEventRegister {
        namespace: "default".into(),
        job_id: "nope".into(),
        group: "web".into(),
        event: ScalingEvent::default(),
    };
    assert!(store.apply(30, &missing).is_err());
    // Purging the job drops its events.
    store
        .apply(
            31,
            &Command::JobDeregister {
                namespace: "default".into(),
                job_id: "web".into(),
                purge: true,
                eval: None,
                now: 2,
            },
        )
        .unwrap();
    assert!(store
        .snapshot()
        .scaling_events_by_job("default", "web")
        .0
        .is_empty());
}

#[test]
fn stability_and_scaling_commands_are_deterministic_and_round_trip() {
    let mut cmds = log();
    // Before the final deregister, so the job still exists.
    let last = cmds.pop().expect("log ends with a deregister");
    cmds.extend(vec![
        Command::JobStability {
            namespace: "default".into(),
            job_id: "web".into(),
            version: 0,
            stable: true,
        },
        Command::ScalingEventRegister {
            namespace: "default".into(),
            job_id: "web".into(),
            group: "web".into(),
            event: ScalingEvent {
                time: 65,
                count: Some(3),
                previous_count: 2,
                message: "scaled".into(),
                eval_id: Some("e3".into()),
                ..Default::default()
            },
        },
    ]);
    cmds.push(last);
    for c in &cmds {
        let back: Command = serde_json::from_slice(&serde_json::to_vec(c).unwrap()).unwrap();
        assert_eq!(&back, c);
    }
    let (a, b) = (StateStore::new(), StateStore::new());
    apply_all(&a, &cmds);
    apply_all(&b, &cmds);
    assert_eq!(a.persist(), b.persist());
    let restored = StateStore::from_persisted(&a.persist()).unwrap();
    assert_eq!(restored.persist(), a.persist());
    let snap = restored.snapshot();
    assert!(snap.job_version("default", "web", 0).unwrap().stable);
    let (groups, index) = snap.scaling_events_by_job("default", "web");
    assert_eq!(groups["web"][0].message, "scaled");
    assert_eq!(index, 10);
    // Snapshots written before scaling events existed still decode.
    let mut old: serde_json::Value = serde_json::from_slice(&a.persist()).unwrap();
    old.as_object_mut().unwrap().remove("scaling_events");
    assert!(StateStore::from_persisted(&serde_json::to_vec(&old).unwrap()).is_ok());
}

fn var(path: &str, modify_index: u64, items: &[(&str, &str)]) -> Variable {
    Variable {
        meta: VariableMetadata {
            namespace: "default".into(),
            path: path.into(),
            modify_index,
            ..Default::default()
        },
        items: items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn variables_check_and_set_and_survive_snapshots() {
    let s = StateStore::new();
    let apply = |index: u64, op: VarOp, v: Variable| {
        s.apply(
            index,
            &Command::VarApply {
                op,
                var: v,
                now: index as i64 * 10,
            },
        )
    };
    // CAS 0: only if it does not exist.
    apply(2, VarOp::Cas, var("app/db", 0, &[("user", "a")])).unwrap();
    let e = apply(3, VarOp::Cas, var("app/db", 0, &[("user", "b")])).unwrap_err();
    assert_eq!(e.to_string(), VAR_CAS_CONFLICT);
    // The right index writes; create stays, modify moves.
    apply(4, VarOp::Cas, var("app/db", 2, &[("user", "c")])).unwrap();
    let v = s.snapshot().variable("default", "app/db").unwrap();
    assert_eq!(
        (
            v.meta.create_index,
            v.meta.create_time,
            v.meta.modify_index,
            v.meta.modify_time
        ),
        (2, 20, 4, 40)
    );
    assert_eq!(v.items["user"], "c");
    apply(5, VarOp::Set, var("app/web", 0, &[("port", "80")])).unwrap();
    apply(6, VarOp::Set, var("other", 0, &[("k", "v")])).unwrap();
    let paths = |prefix: &str| -> Vec<String> {
        s.snapshot()
            .variables(Some("default"), prefix)
            .iter()
            .map(|v| v.meta.path.clone())
            .collect()
    };
    assert_eq!(paths("app/"), ["app/db", "app/web"]);
    assert_eq!(s.snapshot().index(&[Table::Variables]), 6);

    let restored = StateStore::from_persisted(&s.persist()).unwrap();
    assert_eq!(restored.snapshot().variable("default", "app/db"), Some(v));

    // Delete-CAS with a stale index is refused; plain delete of nothing is fine.
    let e = apply(7, VarOp::DeleteCas, var("app/db", 2, &[])).unwrap_err();
    assert_eq!(e.to_string(), VAR_CAS_CONFLICT);
    apply(8, VarOp::DeleteCas, var("app/db", 4, &[])).unwrap();
    apply(9, VarOp::Delete, var("nothing", 0, &[])).unwrap();
    assert_eq!(paths("app/"), ["app/web"]);
}
