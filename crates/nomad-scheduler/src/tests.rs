//! Scheduler harness: an in-memory state, builders, and data-driven scheduling cases.

use std::collections::{BTreeMap, BTreeSet};

use nomad_structs::*;

use crate::{desc, process_eval, ScheduleResult, SchedulerContext, SchedulerState};

const NOW: i64 = 1_700_000_000_000_000_000;

#[derive(Default, Clone)]
struct MemState {
    jobs: BTreeMap<(String, String), Job>,
    nodes: BTreeMap<String, Node>,
    allocs: BTreeMap<String, Allocation>,
}

impl SchedulerState for MemState {
    fn job(&self, namespace: &str, id: &str) -> Option<Job> {
        self.jobs
            .get(&(namespace.to_string(), id.to_string()))
            .cloned()
    }
    fn nodes(&self) -> Vec<Node> {
        self.nodes.values().cloned().collect()
    }
    fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Allocation> {
        self.allocs
            .values()
            .filter(|a| a.namespace == namespace && a.job_id == job_id)
            .cloned()
            .collect()
    }
    fn allocs_by_node(&self, node_id: &str) -> Vec<Allocation> {
        self.allocs
            .values()
            .filter(|a| a.node_id == node_id)
            .cloned()
            .collect()
    }
}

impl MemState {
    fn with_nodes(nodes: Vec<Node>) -> Self {
        let mut s = MemState::default();
        for n in nodes {
            s.nodes.insert(n.id.clone(), n);
        }
        s
    }
    fn put_job(&mut self, j: &Job) {
        self.jobs
            .insert((j.namespace.clone(), j.id.clone()), j.clone());
    }
    fn put_alloc(&mut self, a: Allocation) {
        self.allocs.insert(a.id.clone(), a);
    }
    /// Applies a plan the way the plan applier would.
    fn apply(&mut self, r: &ScheduleResult) {
        for a in r
            .plan
            .node_update
            .values()
            .flatten()
            .chain(r.plan.node_allocation.values().flatten())
        {
            self.allocs.insert(a.id.clone(), a.clone());
        }
    }
}

fn node(id: &str, dc: &str) -> Node {
    let mut n = Node {
        id: id.to_string(),
        name: format!("name-{id}"),
        datacenter: dc.to_string(),
        node_pool: "default".into(),
        status: NODE_STATUS_READY.into(),
        scheduling_eligibility: NODE_ELIGIBLE.into(),
        computed_class: "v1:123".into(),
        ..Default::default()
    };
    n.attributes.insert("kernel.name".into(), "linux".into());
    n.attributes.insert(
        "unique.network.ip-address".into(),
        format!("10.0.0.{}", id.len()),
    );
    for d in ["raw_exec", "exec"] {
        n.drivers.insert(
            d.into(),
            DriverInfo {
                detected: true,
                healthy: true,
                ..Default::default()
            },
        );
    }
    n.node_resources.cpu.cpu_shares = 4000;
    n.node_resources.memory.memory_mb = 8192;
    n.node_resources.disk.disk_mb = 100_000;
    n
}

fn job(id: &str, count: i64) -> Job {
    Job {
        id: id.into(),
        name: id.into(),
        namespace: "default".into(),
        region: "global".into(),
        job_type: JOB_TYPE_SERVICE.into(),
        priority: 50,
        datacenters: Some(vec!["dc1".into()]),
        node_pool: "default".into(),
        create_index: 10,
        job_modify_index: 10,
        task_groups: vec![TaskGroup {
            name: "web".into(),
            count: Some(count),
            ephemeral_disk: Some(EphemeralDisk {
                size_mb: Some(300),
                ..Default::default()
            }),
            tasks: vec![Task {
                name: "server".into(),
                driver: "raw_exec".into(),
                resources: Some(Resources {
                    cpu: Some(500),
                    memory_mb: Some(256),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn eval_for(j: &Job) -> Evaluation {
    Evaluation {
        id: "eval-1".into(),
        namespace: j.namespace.clone(),
        priority: j.priority,
        eval_type: j.job_type.clone(),
        triggered_by: TRIGGER_JOB_REGISTER.into(),
        job_id: j.id.clone(),
        job_modify_index: j.job_modify_index,
        status: EVAL_STATUS_PENDING.into(),
        ..Default::default()
    }
}

/// An existing alloc of `j`'s first group at `idx` on `node_id`.
fn existing(j: &Job, idx: u64, node_id: &str, client_status: &str) -> Allocation {
    let tg = &j.task_groups[0];
    let ask = crate::rank::ResourceAsk::for_group(tg);
    Allocation {
        id: format!("old-{idx}-{node_id}"),
        namespace: j.namespace.clone(),
        eval_id: "eval-0".into(),
        name: format!("{}.{}[{idx}]", j.id, tg.name),
        node_id: node_id.into(),
        job_id: j.id.clone(),
        job: Some(Box::new(j.clone())),
        task_group: tg.name.clone(),
        allocated_resources: Some(crate::rank::allocated_resources(&ask, &Default::default())),
        desired_status: ALLOC_DESIRED_RUN.into(),
        client_status: client_status.into(),
        create_index: 20 + idx,
        ..Default::default()
    }
}

fn run_with(state: &MemState, eval: &Evaluation, first_id: u64) -> ScheduleResult {
    let mut n = first_id;
    let mut gen = move || {
        n += 1;
        format!("00000000-0000-4000-8000-{n:012}")
    };
    let mut ctx = SchedulerContext {
        now_unix_nanos: NOW,
        new_id: &mut gen,
    };
    process_eval(eval, state, &mut ctx).expect("schedules")
}

/// Runs with IDs unique across the whole test binary, so multi-step tests never reuse an ID.
fn run(state: &MemState, eval: &Evaluation) -> ScheduleResult {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    run_with(
        state,
        eval,
        NEXT.fetch_add(1000, std::sync::atomic::Ordering::Relaxed),
    )
}

fn placed(r: &ScheduleResult) -> Vec<&Allocation> {
    r.plan.node_allocation.values().flatten().collect()
}

fn stopped(r: &ScheduleResult) -> Vec<&Allocation> {
    r.plan.node_update.values().flatten().collect()
}

fn names_on(r: &ScheduleResult, node: &str) -> Vec<String> {
    r.plan
        .node_allocation
        .get(node)
        .into_iter()
        .flatten()
        .map(|a| a.name.clone())
        .collect()
}

fn queued(r: &ScheduleResult, tg: &str) -> i64 {
    r.eval
        .queued_allocations
        .as_ref()
        .and_then(|q| q.get(tg).copied())
        .unwrap_or(-1)
}

fn failed<'r>(r: &'r ScheduleResult, tg: &str) -> &'r AllocMetric {
    r.eval
        .failed_tg_allocs
        .as_ref()
        .and_then(|f| f.get(tg))
        .expect("failed tg allocs")
}

fn map(pairs: &[(&str, i64)]) -> Option<BTreeMap<String, i64>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect())
}

#[test]
fn place_three_on_two_nodes() {
    let j = job("web", 3);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "dc1")]);
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    assert_eq!(placed(&r).len(), 3);
    // Binpack prefers the fuller node, job anti-affinity pushes the second alloc away; ties go
    // to the lowest node ID.
    assert_eq!(names_on(&r, "n1"), vec!["web.web[0]", "web.web[2]"]);
    assert_eq!(names_on(&r, "n2"), vec!["web.web[1]"]);
    let a = &r.plan.node_allocation["n1"][0];
    assert!(a.id.starts_with("00000000-0000-4000-8000-"));
    assert_eq!(a.eval_id, "eval-1");
    assert_eq!(a.node_name, "name-n1");
    assert_eq!(a.desired_status, ALLOC_DESIRED_RUN);
    assert_eq!(a.client_status, ALLOC_CLIENT_PENDING);
    assert_eq!(a.job.as_deref(), Some(&j));
    assert_eq!((a.create_time, a.modify_time), (NOW, NOW));
    let ar = a.allocated_resources.as_ref().unwrap();
    assert_eq!(ar.tasks["server"].cpu.cpu_shares, 500);
    assert_eq!(ar.tasks["server"].memory.memory_mb, 256);
    assert_eq!(ar.shared.disk_mb, 300);
    let m = a.metrics.as_ref().unwrap();
    assert_eq!(m.nodes_evaluated, 2);
    assert_eq!(m.nodes_available, map(&[("dc1", 2)]));
    assert_eq!(r.eval.status, EVAL_STATUS_COMPLETE);
    assert_eq!(r.eval.status_description, "");
    assert_eq!(queued(&r, "web"), 0);
    assert!(r.eval.failed_tg_allocs.is_none());
    assert!(r.blocked_eval.is_none() && !r.still_blocked);
    assert!(r.plan.node_update.is_empty());
    assert_eq!(r.plan.eval_id, "eval-1");

    // Applying the plan and evaluating again changes nothing.
    st.apply(&r);
    let again = run(&st, &eval_for(&j));
    assert!(again.plan.is_empty(), "{:?}", again.plan);
}

#[test]
fn scale_down_stops_highest_indexes() {
    let j = job("web", 1);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1")]);
    st.put_job(&j);
    for i in 0..3 {
        st.put_alloc(existing(&j, i, "n1", ALLOC_CLIENT_RUNNING));
    }
    let r = run(&st, &eval_for(&j));
    assert!(placed(&r).is_empty());
    let mut names: Vec<_> = stopped(&r).iter().map(|a| a.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["web.web[1]", "web.web[2]"]);
    for a in stopped(&r) {
        assert_eq!(a.desired_status, ALLOC_DESIRED_STOP);
        assert_eq!(a.desired_description, desc::ALLOC_NOT_NEEDED);
    }
}

#[test]
fn lowest_free_index_is_reused() {
    let j = job("web", 3);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1")]);
    st.put_job(&j);
    st.put_alloc(existing(&j, 1, "n1", ALLOC_CLIENT_RUNNING));
    let r = run(&st, &eval_for(&j));
    let mut names: Vec<_> = placed(&r).iter().map(|a| a.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["web.web[0]", "web.web[2]"]);
}

#[test]
fn stopped_and_deregistered_jobs_stop_everything() {
    let mut j = job("web", 2);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1")]);
    st.put_alloc(existing(&j, 0, "n1", ALLOC_CLIENT_RUNNING));
    st.put_alloc(existing(&j, 1, "n1", ALLOC_CLIENT_PENDING));
    st.put_alloc(existing(&j, 2, "n1", ALLOC_CLIENT_FAILED)); // terminal: left alone
    j.stop = true;
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    assert_eq!(stopped(&r).len(), 2);
    assert!(stopped(&r)
        .iter()
        .all(|a| a.desired_description == desc::ALLOC_NOT_NEEDED));
    assert!(placed(&r).is_empty());
    assert_eq!(r.eval.status, EVAL_STATUS_COMPLETE);

    st.jobs.clear();
    let mut e = eval_for(&j);
    e.triggered_by = TRIGGER_JOB_DEREGISTER.into();
    let r = run(&st, &e);
    assert_eq!(stopped(&r).len(), 2);
    assert_eq!(r.eval.queued_allocations, Some(BTreeMap::new()));
}

#[test]
fn missing_driver_fails_placement_and_blocks() {
    let mut j = job("web", 3);
    j.task_groups[0].tasks[0].driver = "docker".into();
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "dc1")]);
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    assert!(placed(&r).is_empty());
    let m = failed(&r, "web");
    assert_eq!(m.nodes_evaluated, 2);
    assert_eq!(m.nodes_filtered, 2);
    assert_eq!(m.constraint_filtered, map(&[("missing drivers", 2)]));
    assert_eq!(m.coalesced_failures, 2);
    assert_eq!(m.nodes_available, map(&[("dc1", 2)]));
    assert_eq!(queued(&r, "web"), 3);
    let b = r.blocked_eval.as_ref().expect("blocked eval");
    assert_eq!(r.eval.blocked_eval, b.id);
    assert_eq!(
        b.class_eligibility.as_ref().unwrap().get("v1:123"),
        Some(&false)
    );
}

#[test]
fn driver_attribute_fallback() {
    let mut j = job("web", 1);
    j.task_groups[0].tasks[0].driver = "java".into();
    let mut n = node("n1", "dc1");
    n.attributes.insert("driver.java".into(), "1".into());
    let mut st = MemState::with_nodes(vec![n]);
    st.put_job(&j);
    assert_eq!(placed(&run(&st, &eval_for(&j))).len(), 1);
}

#[test]
fn datacenter_mismatch_evaluates_no_nodes() {
    let mut j = job("web", 1);
    j.datacenters = Some(vec!["eu*".into()]);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "us-east")]);
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    let m = failed(&r, "web");
    assert_eq!(m.nodes_evaluated, 0);
    assert_eq!(m.nodes_available, Some(BTreeMap::new()));
    assert_eq!(queued(&r, "web"), 1);

    // A prefix glob that matches.
    j.datacenters = Some(vec!["dc*".into()]);
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    assert_eq!(names_on(&r, "n1"), vec!["web.web[0]"]);
}

#[test]
fn node_pool_filtering() {
    let mut j = job("web", 1);
    let mut n2 = node("n2", "dc1");
    n2.node_pool = "gpu".into();
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), n2]);
    j.node_pool = "gpu".into();
    st.put_job(&j);
    assert_eq!(names_on(&run(&st, &eval_for(&j)), "n2").len(), 1);
    j.node_pool = "all".into();
    j.task_groups[0].count = Some(2);
    st.put_job(&j);
    assert_eq!(placed(&run(&st, &eval_for(&j))).len(), 2);
}

#[test]
fn constraint_filtered_key_is_display_form() {
    let mut j = job("web", 2);
    j.constraints = Some(vec![Constraint {
        l_target: "${attr.kernel.name}".into(),
        r_target: "windows".into(),
        operand: "=".into(),
    }]);
    let mut n1 = node("n1", "dc1");
    n1.node_class = "large".into();
    let mut st = MemState::with_nodes(vec![n1, node("n2", "dc1")]);
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    let m = failed(&r, "web");
    assert_eq!(
        m.constraint_filtered,
        map(&[("${attr.kernel.name} = windows", 2)])
    );
    assert_eq!(m.class_filtered, map(&[("large", 1)]));
    assert_eq!(m.coalesced_failures, 1);

    // Task-level and group-level constraints with meta interpolation.
    let mut j = job("web", 1);
    j.task_groups[0].tasks[0].constraints = Some(vec![Constraint {
        l_target: "${meta.rack}".into(),
        r_target: "r2".into(),
        operand: "==".into(),
    }]);
    let mut n2 = node("n2", "dc1");
    n2.meta = Some([("rack".to_string(), "r2".to_string())].into());
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), n2]);
    st.put_job(&j);
    assert_eq!(names_on(&run(&st, &eval_for(&j)), "n2"), vec!["web.web[0]"]);
}

#[test]
fn distinct_hosts_limits_one_per_node() {
    let mut j = job("web", 3);
    j.task_groups[0].constraints = Some(vec![Constraint {
        operand: "distinct_hosts".into(),
        r_target: "true".into(),
        ..Default::default()
    }]);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "dc1")]);
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    assert_eq!(names_on(&r, "n1").len(), 1);
    assert_eq!(names_on(&r, "n2").len(), 1);
    assert_eq!(
        failed(&r, "web").constraint_filtered,
        map(&[("distinct_hosts", 2)])
    );
}

#[test]
fn memory_exhausted_creates_blocked_eval() {
    let mut j = job("web", 3);
    j.task_groups[0].tasks[0]
        .resources
        .as_mut()
        .unwrap()
        .memory_mb = Some(600);
    let mut n1 = node("n1", "dc1");
    let mut n2 = node("n2", "dc1");
    n1.node_resources.memory.memory_mb = 1024;
    n2.node_resources.memory.memory_mb = 1124;
    n2.reserved_resources.memory.memory_mb = 100;
    let mut st = MemState::with_nodes(vec![n1, n2]);
    st.put_job(&j);
    let e = eval_for(&j);
    let r = run(&st, &e);
    assert_eq!(placed(&r).len(), 2);
    let m = failed(&r, "web");
    assert_eq!(m.nodes_evaluated, 2);
    assert_eq!(m.nodes_exhausted, 2);
    assert_eq!(m.dimension_exhausted, map(&[("memory", 2)]));
    assert_eq!(m.coalesced_failures, 0);
    assert_eq!(queued(&r, "web"), 1);
    assert_eq!(r.eval.status, EVAL_STATUS_COMPLETE);
    let b = r.blocked_eval.clone().expect("blocked eval");
    assert_eq!(b.status, EVAL_STATUS_BLOCKED);
    assert_eq!(b.triggered_by, TRIGGER_QUEUED_ALLOCS);
    assert_eq!(
        b.status_description,
        "created to place remaining allocations"
    );
    assert_eq!(b.previous_eval, "eval-1");
    assert_eq!(
        (b.priority, b.eval_type.as_str(), b.job_id.as_str()),
        (50, "service", "web")
    );
    assert_eq!(b.job_modify_index, 10);
    assert_eq!(r.eval.blocked_eval, b.id);
    assert_ne!(b.id, placed(&r)[0].id);

    // The blocked eval, run against the applied state, still cannot place: it stays blocked.
    st.apply(&r);
    let r2 = run_with(&st, &b, 100);
    assert!(placed(&r2).is_empty());
    assert!(r2.still_blocked);
    assert!(r2.blocked_eval.is_none());
    assert_eq!(r2.eval.status, EVAL_STATUS_BLOCKED);
    assert_eq!(queued(&r2, "web"), 1);

    // With a new node the blocked eval places the rest and completes.
    st.nodes.insert("n3".into(), node("n3", "dc1"));
    let r3 = run_with(&st, &b, 200);
    assert_eq!(names_on(&r3, "n3"), vec!["web.web[2]"]);
    assert!(!r3.still_blocked);
    assert_eq!(r3.eval.status, EVAL_STATUS_COMPLETE);
}

#[test]
fn batch_completed_alloc_is_not_replaced() {
    let mut j = job("work", 2);
    j.job_type = JOB_TYPE_BATCH.into();
    let mut st = MemState::with_nodes(vec![node("n1", "dc1")]);
    st.put_job(&j);
    st.put_alloc(existing(&j, 0, "n1", ALLOC_CLIENT_COMPLETE));
    st.put_alloc(existing(&j, 1, "n1", ALLOC_CLIENT_RUNNING));
    let r = run(&st, &eval_for(&j));
    assert!(r.plan.is_empty(), "{:?}", r.plan);
    assert_eq!(queued(&r, "web"), 0);

    // A service job replaces a completed alloc.
    let s = job("svc", 1);
    st.put_job(&s);
    st.put_alloc(existing(&s, 0, "n1", ALLOC_CLIENT_COMPLETE));
    let r = run(&st, &eval_for(&s));
    assert_eq!(names_on(&r, "n1"), vec!["svc.web[0]"]);
}

#[test]
fn failed_alloc_is_rescheduled_away_from_its_node() {
    let j = job("web", 1);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "dc1")]);
    st.put_job(&j);
    let old = failed_minutes_ago(existing(&j, 0, "n1", ALLOC_CLIENT_FAILED), 5);
    st.put_alloc(old.clone());
    let r = run(&st, &eval_for(&j));
    assert!(r.follow_up_evals.is_empty());
    let new = &r.plan.node_allocation["n2"][0];
    assert_eq!(new.name, "web.web[0]");
    assert_eq!(new.previous_allocation, old.id);
    let ev = &new.reschedule_tracker.as_ref().unwrap()["Events"][0];
    assert_eq!(ev["PrevAllocID"], old.id.as_str());
    assert_eq!(ev["PrevNodeID"], "n1");
    assert_eq!(ev["RescheduleTime"], NOW);
    assert_eq!(ev["Delay"], 30_000_000_000i64);
    let s = stopped(&r);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].id, old.id);
    assert_eq!(s[0].desired_description, desc::ALLOC_RESCHEDULED);
    assert_eq!(s[0].client_status, ALLOC_CLIENT_FAILED);
}

fn failed_minutes_ago(mut a: Allocation, minutes: i64) -> Allocation {
    let ts = TaskState {
        state: TASK_STATE_DEAD.into(),
        failed: true,
        finished_at: Some(rfc3339_nanos(NOW - minutes * 60_000_000_000)),
        ..Default::default()
    };
    a.task_states = Some([("server".to_string(), ts)].into());
    a
}

#[test]
fn delayed_reschedule_uses_a_follow_up_eval() {
    let j = job("web", 1);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "dc1")]);
    st.put_job(&j);
    // Failed 10s ago; the service default delay is 30s.
    let mut old = existing(&j, 0, "n1", ALLOC_CLIENT_FAILED);
    old.task_states = failed_minutes_ago(old.clone(), 0).task_states;
    let ts = old.task_states.as_mut().unwrap().get_mut("server").unwrap();
    ts.finished_at = Some(rfc3339_nanos(NOW - 10_000_000_000));
    st.put_alloc(old.clone());
    let r = run(&st, &eval_for(&j));
    assert_eq!(r.follow_up_evals.len(), 1);
    let f = &r.follow_up_evals[0];
    assert_eq!(f.status, EVAL_STATUS_PENDING);
    assert_eq!(f.triggered_by, TRIGGER_RETRY_FAILED_ALLOC);
    assert_eq!(f.previous_eval, "eval-1");
    assert_eq!(
        f.wait_until.as_deref().and_then(parse_rfc3339_nanos),
        Some(NOW + 20_000_000_000)
    );
    // The failed alloc is only annotated; nothing is stopped or placed.
    assert!(r.plan.node_update.is_empty());
    let upd = placed(&r);
    assert_eq!(upd.len(), 1);
    assert_eq!(
        (upd[0].id.as_str(), upd[0].followup_eval_id.as_str()),
        (old.id.as_str(), f.id.as_str())
    );
    assert_eq!(queued(&r, "web"), 0);

    // Another eval meanwhile does not make a second follow-up.
    st.apply(&r);
    let r2 = run(&st, &eval_for(&j));
    assert!(r2.plan.is_empty() && r2.follow_up_evals.is_empty());

    // The follow-up eval itself reschedules.
    let r3 = run(&st, f);
    assert_eq!(r3.plan.node_allocation["n2"][0].previous_allocation, old.id);
    assert_eq!(
        r3.plan.node_update["n1"][0].desired_description,
        desc::ALLOC_RESCHEDULED
    );
}

#[test]
fn batch_reschedule_attempts_are_limited() {
    let mut j = job("work", 1);
    j.job_type = JOB_TYPE_BATCH.into();
    j.task_groups[0].reschedule_policy = Some(ReschedulePolicy {
        attempts: Some(1),
        interval: Some(3600 * 1_000_000_000),
        unlimited: Some(false),
        delay: Some(5_000_000_000),
        delay_function: Some("constant".into()),
        ..Default::default()
    });
    let mut st = MemState::with_nodes(vec![node("n1", "dc1")]);
    st.put_job(&j);
    let mut old = failed_minutes_ago(existing(&j, 0, "n1", ALLOC_CLIENT_FAILED), 1);
    st.put_alloc(old.clone());
    let r = run(&st, &eval_for(&j));
    assert_eq!(placed(&r).len(), 1, "first failure is rescheduled");

    // One reschedule already happened within the interval: no more attempts.
    old.reschedule_tracker = Some(
        serde_json::json!({"Events":[{"RescheduleTime": NOW - 60_000_000_000i64, "PrevAllocID":"x","PrevNodeID":"n1","Delay":5}]}),
    );
    st.put_alloc(old);
    let r = run(&st, &eval_for(&j));
    assert!(r.plan.is_empty());
    assert_eq!(queued(&r, "web"), 0);
}

#[test]
fn node_down_marks_lost_and_replaces() {
    let j = job("web", 1);
    let mut n1 = node("n1", "dc1");
    n1.status = NODE_STATUS_DOWN.into();
    let mut st = MemState::with_nodes(vec![n1, node("n2", "dc1")]);
    st.put_job(&j);
    let old = existing(&j, 0, "n1", ALLOC_CLIENT_RUNNING);
    st.put_alloc(old.clone());
    let r = run(&st, &eval_for(&j));
    let s = &r.plan.node_update["n1"][0];
    assert_eq!(s.id, old.id);
    assert_eq!(s.desired_status, ALLOC_DESIRED_STOP);
    assert_eq!(s.desired_description, desc::ALLOC_LOST);
    assert_eq!(s.client_status, ALLOC_CLIENT_LOST);
    let new = &r.plan.node_allocation["n2"][0];
    assert_eq!(new.name, "web.web[0]");
    assert_eq!(new.previous_allocation, old.id);
}

#[test]
fn system_job_one_alloc_per_feasible_node() {
    let mut j = job("sys", 1);
    j.job_type = JOB_TYPE_SYSTEM.into();
    j.datacenters = Some(vec!["*".into()]);
    let mut n3 = node("n3", "dc2");
    n3.drivers.clear(); // infeasible: skipped, not a failure
    let mut n4 = node("n4", "dc1");
    n4.status = NODE_STATUS_DOWN.into();
    let mut n5 = node("n5", "dc1");
    n5.scheduling_eligibility = NODE_INELIGIBLE.into();
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "dc2"), n3, n4, n5]);
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    let nodes: Vec<_> = r.plan.node_allocation.keys().cloned().collect();
    assert_eq!(nodes, vec!["n1", "n2"]);
    assert!(placed(&r).iter().all(|a| a.name == "sys.web[0]"));
    assert!(r.eval.failed_tg_allocs.is_none());
    assert!(r.blocked_eval.is_none());
    assert_eq!(queued(&r, "web"), 0);

    st.apply(&r);
    assert!(run(&st, &eval_for(&j)).plan.is_empty());

    // A node going down loses its alloc; a new node gets one.
    st.nodes.get_mut("n1").unwrap().status = NODE_STATUS_DOWN.into();
    st.nodes.insert("n6".into(), node("n6", "dc1"));
    let r = run(&st, &eval_for(&j));
    assert_eq!(r.plan.node_update["n1"][0].client_status, ALLOC_CLIENT_LOST);
    assert_eq!(
        r.plan.node_allocation.keys().cloned().collect::<Vec<_>>(),
        vec!["n6"]
    );

    // Job stop stops them all.
    st.apply(&r);
    j.stop = true;
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    assert_eq!(stopped(&r).len(), 2);
}

#[test]
fn system_job_exhausted_node_is_a_failure() {
    let mut j = job("sys", 1);
    j.job_type = JOB_TYPE_SYSBATCH.into();
    j.task_groups[0].tasks[0].resources.as_mut().unwrap().cpu = Some(3000);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "dc1")]);
    st.put_job(&j);
    let mut other = job("other", 1);
    other.id = "other".into();
    st.put_alloc(Allocation {
        job_id: "other".into(),
        ..existing(&other, 0, "n2", ALLOC_CLIENT_RUNNING)
    });
    st.allocs.values_mut().for_each(|a| {
        a.allocated_resources
            .as_mut()
            .unwrap()
            .tasks
            .get_mut("server")
            .unwrap()
            .cpu
            .cpu_shares = 2000
    });
    let r = run(&st, &eval_for(&j));
    assert_eq!(
        r.plan.node_allocation.keys().cloned().collect::<Vec<_>>(),
        vec!["n1"]
    );
    assert_eq!(failed(&r, "web").dimension_exhausted, map(&[("cpu", 1)]));
    assert_eq!(queued(&r, "web"), 1);

    // sysbatch: a completed alloc on a node is not run again.
    st.apply(&r);
    for a in st.allocs.values_mut().filter(|a| a.job_id == "sys") {
        a.client_status = ALLOC_CLIENT_COMPLETE.into();
    }
    let r = run(&st, &eval_for(&j));
    assert!(r.plan.node_allocation.is_empty());
}

fn with_port(mut j: Job, reserved: &[(&str, i64)], dynamic: &[&str]) -> Job {
    j.task_groups[0].networks = Some(vec![NetworkResource {
        reserved_ports: reserved
            .iter()
            .map(|(l, v)| Port {
                label: l.to_string(),
                value: *v,
                ..Default::default()
            })
            .collect(),
        dynamic_ports: dynamic
            .iter()
            .map(|l| Port {
                label: l.to_string(),
                to: 8080,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }]);
    j
}

#[test]
fn static_port_collision() {
    let j = with_port(job("web", 3), &[("http", 8080)], &[]);
    let mut n3 = node("n3", "dc1");
    n3.reserved_resources.networks.reserved_host_ports = "22,8000-8100".into();
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "dc1"), n3]);
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    assert_eq!(placed(&r).len(), 2);
    assert!(!r.plan.node_allocation.contains_key("n3"));
    let m = failed(&r, "web");
    assert_eq!(
        m.dimension_exhausted,
        map(&[("network: reserved port collision http=8080", 3)])
    );
    assert_eq!(m.nodes_exhausted, 3);
    let a = placed(&r)[0];
    let shared = &a.allocated_resources.as_ref().unwrap().shared;
    let p = &shared.ports.as_ref().unwrap()[0];
    assert_eq!(
        (p.label.as_str(), p.value, p.host_ip.as_str()),
        ("http", 8080, "10.0.0.2")
    );
    let net = &shared.networks.as_ref().unwrap()[0];
    assert_eq!(net.ip, "10.0.0.2");
    assert_eq!(net.reserved_ports[0].value, 8080);
    assert!(r.blocked_eval.is_some());
}

#[test]
fn dynamic_ports_unique_on_node() {
    let j = with_port(job("web", 5), &[("admin", 9000)], &["http", "grpc"]);
    let mut j = j;
    j.task_groups[0].networks.as_mut().unwrap()[0]
        .reserved_ports
        .clear();
    let mut n1 = node("n1", "dc1");
    n1.node_resources.min_dynamic_port = 30000;
    n1.node_resources.max_dynamic_port = 30015;
    let mut st = MemState::with_nodes(vec![n1]);
    st.put_job(&j);
    // An existing alloc of another job holds a port in the range.
    let mut other = existing(&job("other", 1), 0, "n1", ALLOC_CLIENT_RUNNING);
    other.allocated_resources.as_mut().unwrap().shared.ports = Some(vec![AllocatedPortMapping {
        label: "x".into(),
        value: 30003,
        ..Default::default()
    }]);
    st.put_alloc(other);
    let r = run(&st, &eval_for(&j));
    assert_eq!(placed(&r).len(), 5);
    let mut seen = BTreeSet::new();
    for a in placed(&r) {
        let shared = &a.allocated_resources.as_ref().unwrap().shared;
        let ports = shared.ports.as_ref().unwrap();
        assert_eq!(ports.len(), 2);
        for p in ports {
            assert!((30000..=30015).contains(&p.value), "{}", p.value);
            assert_ne!(p.value, 30003);
            assert_eq!(p.to, 8080);
            assert!(seen.insert(p.value), "duplicate port {}", p.value);
        }
        let net = &shared.networks.as_ref().unwrap()[0];
        let dyn_vals: Vec<i64> = net.dynamic_ports.iter().map(|p| p.value).collect();
        assert_eq!(dyn_vals, ports.iter().map(|p| p.value).collect::<Vec<_>>());
    }
    // 15 free ports, 10 used: a sixth and seventh alloc (4 more ports) cannot all fit.
    st.apply(&r);
    j.task_groups[0].count = Some(8);
    st.put_job(&j);
    let r = run(&st, &eval_for(&j));
    assert_eq!(placed(&r).len(), 2);
    assert_eq!(
        failed(&r, "web").dimension_exhausted,
        map(&[("network: dynamic port selection failed", 1)])
    );
}

#[test]
fn in_place_vs_destructive_update() {
    let j0 = job("web", 2);
    let mut st = MemState::with_nodes(vec![node("n1", "dc1"), node("n2", "dc1")]);
    st.put_alloc(existing(&j0, 0, "n1", ALLOC_CLIENT_RUNNING));
    st.put_alloc(existing(&j0, 1, "n2", ALLOC_CLIENT_RUNNING));

    // Only the version moved (and the count-irrelevant update block): in place.
    let mut j1 = j0.clone();
    j1.version = 1;
    j1.job_modify_index = 30;
    j1.task_groups[0].update = Some(UpdateStrategy {
        max_parallel: Some(2),
        ..Default::default()
    });
    st.put_job(&j1);
    let r = run(&st, &eval_for(&j1));
    assert!(r.plan.node_update.is_empty());
    let ids: Vec<_> = placed(&r).iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids, vec!["old-0-n1", "old-1-n2"]);
    assert!(placed(&r)
        .iter()
        .all(|a| a.job.as_ref().unwrap().version == 1 && a.eval_id == "eval-1"));

    // The task changed: destructive.
    let mut j2 = j0.clone();
    j2.version = 2;
    j2.task_groups[0].tasks[0].env = Some([("A".to_string(), "b".to_string())].into());
    st.put_job(&j2);
    let r = run(&st, &eval_for(&j2));
    let s = stopped(&r);
    assert_eq!(s.len(), 2);
    assert!(s
        .iter()
        .all(|a| a.desired_description == desc::ALLOC_UPDATING));
    let p = placed(&r);
    assert_eq!(p.len(), 2);
    let mut prev: Vec<_> = p
        .iter()
        .map(|a| (a.name.clone(), a.previous_allocation.clone()))
        .collect();
    prev.sort();
    assert_eq!(
        prev,
        vec![
            ("web.web[0]".to_string(), "old-0-n1".to_string()),
            ("web.web[1]".to_string(), "old-1-n2".to_string())
        ]
    );
    assert!(p
        .iter()
        .all(|a| !a.id.starts_with("old-") && a.job.as_ref().unwrap().version == 2));
}

#[test]
fn destructive_update_without_room_keeps_the_old_alloc() {
    let j0 = job("web", 1);
    let mut n1 = node("n1", "dc1");
    n1.node_resources.memory.memory_mb = 600;
    let mut st = MemState::with_nodes(vec![n1]);
    st.put_alloc(existing(&j0, 0, "n1", ALLOC_CLIENT_RUNNING));
    let mut j1 = j0.clone();
    j1.version = 1;
    j1.task_groups[0].tasks[0]
        .resources
        .as_mut()
        .unwrap()
        .memory_mb = Some(500);
    st.put_job(&j1);
    // The old alloc's memory is freed by its own stop, so the new one fits on the same node.
    let r = run(&st, &eval_for(&j1));
    assert_eq!(placed(&r).len(), 1);
    assert_eq!(stopped(&r).len(), 1);
    // Too big even on an empty node: nothing is stopped, placement fails.
    j1.task_groups[0].tasks[0]
        .resources
        .as_mut()
        .unwrap()
        .memory_mb = Some(700);
    st.put_job(&j1);
    let r = run(&st, &eval_for(&j1));
    assert!(r.plan.is_empty());
    assert_eq!(queued(&r, "web"), 1);
}

#[test]
fn deterministic_given_same_ids() {
    let j = with_port(job("web", 7), &[], &["http"]);
    let nodes: Vec<Node> = (0..5).map(|i| node(&format!("node-{i}"), "dc1")).collect();
    let mut st = MemState::with_nodes(nodes);
    st.put_job(&j);
    let a = run_with(&st, &eval_for(&j), 7);
    let b = run_with(&st, &eval_for(&j), 7);
    assert_eq!(a, b);
    assert_eq!(placed(&a)[0].id, "00000000-0000-4000-8000-000000000008");
}

/// A tiny deterministic generator for property-style checks (no RNG dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

#[test]
fn never_over_count_or_over_capacity() {
    let mut rng = Lcg(42);
    for round in 0..60 {
        let n_nodes = 1 + rng.next(5);
        let mut nodes = Vec::new();
        for i in 0..n_nodes {
            let mut n = node(&format!("n{i}"), "dc1");
            n.node_resources.cpu.cpu_shares = 500 + 250 * rng.next(8) as i64;
            n.node_resources.memory.memory_mb = 256 + 256 * rng.next(8) as i64;
            if rng.next(6) == 0 {
                n.status = NODE_STATUS_DOWN.into();
            }
            nodes.push(n);
        }
        let mut st = MemState::with_nodes(nodes);
        let mut j = job("p", 1 + rng.next(12) as i64);
        let res = j.task_groups[0].tasks[0].resources.as_mut().unwrap();
        res.cpu = Some(100 + 100 * rng.next(5) as i64);
        res.memory_mb = Some(64 + 64 * rng.next(6) as i64);
        if rng.next(2) == 0 {
            j = with_port(j, &[], &["http"]);
        }
        st.put_job(&j);
        let mut next_id = 0;
        for step in 0..3 {
            if step == 2 {
                j.task_groups[0].count = Some(rng.next(10) as i64);
                j.version += 1;
                st.put_job(&j);
            }
            let r = run_with(&st, &eval_for(&j), next_id);
            next_id += 1000;
            st.apply(&r);
            let live: Vec<&Allocation> = st.allocs.values().filter(|a| !a.terminal()).collect();
            assert!(
                live.len() as u64 <= j.task_groups[0].count(),
                "round {round}: {} > count",
                live.len()
            );
            let names: BTreeSet<_> = live.iter().map(|a| a.name.clone()).collect();
            assert_eq!(names.len(), live.len(), "round {round}: duplicate names");
            for n in st.nodes.values() {
                let on: Vec<&&Allocation> = live.iter().filter(|a| a.node_id == n.id).collect();
                if !on.is_empty() {
                    assert!(n.ready(), "round {round}: alloc on unready node");
                }
                let cpu: i64 = on
                    .iter()
                    .map(|a| {
                        a.allocated_resources.as_ref().unwrap().tasks["server"]
                            .cpu
                            .cpu_shares
                    })
                    .sum();
                let mem: i64 = on
                    .iter()
                    .map(|a| {
                        a.allocated_resources.as_ref().unwrap().tasks["server"]
                            .memory
                            .memory_mb
                    })
                    .sum();
                assert!(
                    cpu <= n.node_resources.cpu.cpu_shares,
                    "round {round}: cpu over capacity"
                );
                assert!(
                    mem <= n.node_resources.memory.memory_mb,
                    "round {round}: memory over capacity"
                );
            }
            if queued(&r, "web") > 0 {
                assert!(
                    r.blocked_eval.is_some(),
                    "round {round}: queued without blocked eval"
                );
            }
        }
    }
}
