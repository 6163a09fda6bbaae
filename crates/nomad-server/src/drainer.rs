//! The node drainer (Nomad's `nomad/drainer`): a leader duty that empties draining nodes.
//!
//! It never stops an alloc itself. It marks allocs with `DesiredTransition.Migrate` and
//! creates `node-drain` evals; the schedulers stop each marked alloc and place its
//! replacement on another node. What it decides is only *when*:
//! - a service group moves at the pace of its `migrate.max_parallel`: an alloc is marked only
//!   while the group keeps at least `count - max_parallel` running allocs across the cluster,
//!   so replacements must be running before the next ones go;
//! - batch allocs are left to finish; they, and anything else still there, are marked when
//!   the deadline passes (at once with `-force`, never with `-no-deadline`);
//! - system allocs go last, once everything else has left (unless `IgnoreSystemJobs`), and
//!   then the drain is complete: the strategy is removed and the node stays ineligible.
//!
//! "Running" stands in for Nomad's deployment health here: nomad-rs has no deployments, so
//! `migrate.min_healthy_time` and `health_check` are not waited on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use nomad_state::{Command, StateSnapshot, Table};
use nomad_structs::*;

use crate::endpoints::node::DRAIN_EVENT_COMPLETE;
use crate::{now_nanos, pending_eval, Server};

/// The longest the drainer sleeps without a state change (a safety net; changes and
/// deadlines wake it sooner).
const IDLE_WAKE: Duration = Duration::from_secs(60);
/// Pause after a failed write before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What one pass over the draining nodes decided.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct DrainPass {
    /// Allocs to mark for migration now.
    pub migrate: Vec<Arc<Allocation>>,
    /// Nodes whose drain ends now (after the marks above).
    pub complete: Vec<String>,
    /// The earliest deadline still ahead (unix nanoseconds).
    pub next_deadline: Option<i64>,
}

fn is_system(a: &Allocation) -> bool {
    a.job
        .as_ref()
        .is_some_and(|j| j.job_type == JOB_TYPE_SYSTEM)
}

fn marked(a: &Allocation) -> bool {
    a.desired_transition.migrate == Some(true)
}

/// Decides the marks and completions for every draining node from one snapshot.
pub(crate) fn plan_drains(snap: &StateSnapshot, now: i64) -> DrainPass {
    let mut pass = DrainPass::default();
    let draining: Vec<Arc<Node>> = snap
        .nodes("")
        .into_iter()
        .filter(|n| n.drain_strategy.is_some())
        .collect();
    let draining_ids: BTreeSet<&str> = draining.iter().map(|n| n.id.as_str()).collect();
    // Service groups with allocs left on a node still draining at its own pace.
    let mut paced: BTreeSet<(String, String, String)> = BTreeSet::new();
    for node in &draining {
        let Some(strategy) = node.drain_strategy.as_ref() else {
            continue;
        };
        let allocs = snap.allocs_by_node(&node.id);
        let keep_system = strategy.spec.ignore_system_jobs;
        let kept = |a: &Allocation| a.terminal() || marked(a) || (keep_system && is_system(a));
        // Everything still live the drain must move, system allocs included (unless kept).
        let remaining = || allocs.iter().filter(|a| !kept(a)).cloned();
        if strategy.deadline_reached(now) {
            pass.migrate.extend(remaining());
            pass.complete.push(node.id.clone());
            continue;
        }
        if let Some(at) = strategy.force_deadline_nanos() {
            pass.next_deadline = Some(pass.next_deadline.map_or(at, |n| n.min(at)));
        }
        if allocs.iter().all(|a| is_system(a) || a.client_terminal()) {
            pass.migrate.extend(remaining());
            pass.complete.push(node.id.clone());
            continue;
        }
        for a in allocs.iter().filter(|a| !a.client_terminal() && !marked(a)) {
            if a.job
                .as_ref()
                .is_some_and(|j| j.job_type == JOB_TYPE_SERVICE)
            {
                paced.insert((a.namespace.clone(), a.job_id.clone(), a.task_group.clone()));
            }
        }
    }
    for (namespace, job_id, group) in paced {
        pass.migrate.extend(paced_group(
            snap,
            &draining_ids,
            &namespace,
            &job_id,
            &group,
        ));
    }
    pass
}

/// The allocs of one service group that may leave draining nodes now.
fn paced_group(
    snap: &StateSnapshot,
    draining: &BTreeSet<&str>,
    namespace: &str,
    job_id: &str,
    group: &str,
) -> Vec<Arc<Allocation>> {
    let allocs: Vec<Arc<Allocation>> = snap
        .allocs_by_job(namespace, job_id)
        .into_iter()
        .filter(|a| a.task_group == group)
        .collect();
    let job = snap.job(namespace, job_id).or_else(|| {
        allocs
            .iter()
            .find_map(|a| a.job.clone().map(|j| Arc::new(*j)))
    });
    let Some(tg) = job.as_ref().and_then(|j| j.lookup_task_group(group)) else {
        return vec![];
    };
    let max_parallel = tg
        .migrate
        .as_ref()
        .and_then(|m| m.max_parallel)
        .unwrap_or(1)
        .max(0);
    let running = allocs
        .iter()
        .filter(|a| !a.terminal() && a.client_status == ALLOC_CLIENT_RUNNING)
        .count() as i64;
    let mut drainable: Vec<Arc<Allocation>> = allocs
        .into_iter()
        .filter(|a| draining.contains(a.node_id.as_str()) && !a.client_terminal() && !marked(a))
        .collect();
    drainable.sort_by(|a, b| (&a.node_id, &a.name, &a.id).cmp(&(&b.node_id, &b.name, &b.id)));
    let threshold = tg.count() as i64 - max_parallel;
    let n = (running - threshold).clamp(0, drainable.len() as i64) as usize;
    drainable.truncate(n);
    drainable
}

impl Server {
    /// Runs drain passes while leading: after every change to nodes, allocs or jobs, and at
    /// the next deadline.
    pub(crate) async fn drainer_loop(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let index = self.state.latest_index();
            let wait = match self.drain_pass().await {
                Ok(Some(at)) => {
                    let ahead = at.saturating_sub(now_nanos()).max(0) as u64;
                    Duration::from_nanos(ahead).clamp(Duration::from_millis(1), IDLE_WAKE)
                }
                Ok(None) => IDLE_WAKE,
                Err(e) => {
                    tracing::warn!(error = %e, "node drainer: write failed, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                        r = shutdown.changed() => if r.is_err() { return },
                    }
                    continue;
                }
            };
            tokio::select! {
                _ = self.state.wait_for_change(&[Table::Nodes, Table::Allocs, Table::Jobs], index, wait) => {}
                r = shutdown.changed() => if r.is_err() { return },
            }
        }
    }

    /// One pass: marks what may move now, ends the drains that are over. Returns the next
    /// deadline to wake for.
    async fn drain_pass(&self) -> Result<Option<i64>, crate::ServerError> {
        let snap = self.state.snapshot();
        let now = now_nanos();
        let pass = plan_drains(&snap, now);
        if !pass.migrate.is_empty() {
            let mut evals: BTreeMap<(String, String), Evaluation> = BTreeMap::new();
            for a in &pass.migrate {
                let key = (a.namespace.clone(), a.job_id.clone());
                if evals.contains_key(&key) {
                    continue;
                }
                let job = snap.job(&a.namespace, &a.job_id);
                let job = job.as_deref().or(a.job.as_deref());
                let (job_type, priority, jmi) = job
                    .map_or((JOB_TYPE_SERVICE.to_string(), 50, 0), |j| {
                        (j.job_type.clone(), j.priority, j.job_modify_index)
                    });
                let eval = Evaluation {
                    job_modify_index: jmi,
                    ..pending_eval(
                        &a.namespace,
                        &a.job_id,
                        &job_type,
                        priority,
                        TRIGGER_NODE_DRAIN,
                        now,
                    )
                };
                evals.insert(key, eval);
            }
            self.apply_leader(Command::AllocDesiredTransition {
                alloc_ids: pass.migrate.iter().map(|a| a.id.clone()).collect(),
                desired_status: None,
                desired_description: None,
                transition: DesiredTransition {
                    migrate: Some(true),
                    ..Default::default()
                },
                evals: evals.into_values().collect(),
                now,
            })
            .await?;
        }
        for node_id in &pass.complete {
            self.apply_leader(Command::NodeUpdateDrain {
                node_id: node_id.clone(),
                drain_strategy: None,
                mark_eligible: false,
                drain_status: DRAIN_STATUS_COMPLETE.into(),
                meta: None,
                accessor_id: String::new(),
                event: DRAIN_EVENT_COMPLETE.into(),
                evals: vec![],
                now,
            })
            .await?;
        }
        Ok(pass.next_deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{test_job, test_node};
    use nomad_state::StateStore;

    const HOUR: i64 = 3_600_000_000_000;
    const NOW: i64 = 1_800_000_000_000_000_000;

    struct World {
        store: Arc<StateStore>,
        index: u64,
    }

    impl World {
        fn new() -> World {
            let mut w = World {
                store: StateStore::new(),
                index: 0,
            };
            for id in ["n1", "n2"] {
                w.apply(Command::NodeRegister {
                    node: Node {
                        status: NODE_STATUS_READY.into(),
                        ..test_node(id)
                    },
                    now: NOW,
                });
            }
            w
        }

        fn apply(&mut self, cmd: Command) {
            self.index += 1;
            self.store.apply(self.index, &cmd).unwrap();
        }

        fn job(&mut self, job: Job) -> Job {
            let job = Job {
                namespace: "default".into(),
                ..job
            };
            self.apply(Command::JobRegister {
                job: job.clone(),
                eval: None,
                submission: None,
                now: NOW,
                enforce_index: None,
            });
            (*self.store.snapshot().job("default", &job.id).unwrap()).clone()
        }

        /// Allocs of `job` on `node`, running.
        fn allocs(&mut self, job: &Job, node: &str, indexes: std::ops::Range<u64>) {
            let allocs = indexes
                .map(|i| Allocation {
                    id: format!("{}-{node}-{i}", job.id),
                    namespace: "default".into(),
                    name: format!("{}.{}[{i}]", job.id, job.task_groups[0].name),
                    job_id: job.id.clone(),
                    task_group: job.task_groups[0].name.clone(),
                    node_id: node.into(),
                    job: Some(Box::new(job.clone())),
                    desired_status: ALLOC_DESIRED_RUN.into(),
                    client_status: ALLOC_CLIENT_RUNNING.into(),
                    ..Default::default()
                })
                .collect();
            self.apply(Command::PlanApply {
                allocs_upsert: allocs,
                allocs_stop: vec![],
                evals: vec![],
                now: NOW,
            });
        }

        fn drain(&mut self, node: &str, deadline: i64, ignore_system_jobs: bool) {
            self.apply(Command::NodeUpdateDrain {
                node_id: node.into(),
                drain_strategy: Some(DrainStrategy {
                    spec: DrainSpec {
                        deadline,
                        ignore_system_jobs,
                    },
                    force_deadline: if deadline > 0 {
                        rfc3339_nanos(NOW + deadline)
                    } else {
                        GO_ZERO_TIME.into()
                    },
                    started_at: rfc3339_nanos(NOW),
                }),
                mark_eligible: false,
                drain_status: String::new(),
                meta: None,
                accessor_id: String::new(),
                event: String::new(),
                evals: vec![],
                now: NOW,
            });
        }

        fn plan(&self, now: i64) -> (Vec<String>, Vec<String>) {
            let pass = plan_drains(&self.store.snapshot(), now);
            let mut ids: Vec<String> = pass.migrate.iter().map(|a| a.id.clone()).collect();
            ids.sort();
            (ids, pass.complete)
        }

        fn set_client_status(&mut self, id: &str, status: &str) {
            let mut a = (*self.store.snapshot().alloc(id).unwrap()).clone();
            a.client_status = status.into();
            self.apply(Command::AllocClientUpdate {
                allocs: vec![a],
                evals: vec![],
                now: NOW,
            });
        }
    }

    fn typed(id: &str, job_type: &str, count: i64) -> Job {
        Job {
            job_type: job_type.into(),
            ..test_job(id, count)
        }
    }

    #[test]
    fn service_groups_move_at_the_pace_of_max_parallel() {
        let mut w = World::new();
        let web = w.job(test_job("web", 3));
        w.allocs(&web, "n1", 0..3);
        let mut api = test_job("api", 3);
        api.task_groups[0].migrate = Some(MigrateStrategy {
            max_parallel: Some(2),
            ..Default::default()
        });
        let api = w.job(api);
        w.allocs(&api, "n1", 0..3);
        w.drain("n1", HOUR, false);
        // 3 running, 3 - max_parallel must stay: one of web may go, two of api.
        let (ids, complete) = w.plan(NOW);
        assert_eq!(ids, ["api-n1-0", "api-n1-1", "web-n1-0"]);
        assert!(complete.is_empty());
        // Once marked they are not marked again, and no more go while the replacements
        // are not running.
        w.apply(Command::AllocDesiredTransition {
            alloc_ids: ids,
            desired_status: Some(ALLOC_DESIRED_STOP.into()),
            desired_description: None,
            transition: DesiredTransition {
                migrate: Some(true),
                ..Default::default()
            },
            evals: vec![],
            now: NOW,
        });
        assert_eq!(w.plan(NOW), (vec![], vec![]));
        // A replacement of web runs on n2: the next web alloc may go.
        w.allocs(&web, "n2", 0..1);
        assert_eq!(w.plan(NOW).0, ["web-n1-1"]);
    }

    #[test]
    fn batch_waits_for_the_deadline_and_system_goes_last() {
        let mut w = World::new();
        let batch = w.job(typed("crunch", JOB_TYPE_BATCH, 1));
        w.allocs(&batch, "n1", 0..1);
        let sys = w.job(typed("agent", JOB_TYPE_SYSTEM, 1));
        w.allocs(&sys, "n1", 0..1);
        w.drain("n1", HOUR, false);
        assert_eq!(w.plan(NOW), (vec![], vec![]));
        let pass = plan_drains(&w.store.snapshot(), NOW);
        assert_eq!(pass.next_deadline, Some(NOW + HOUR));
        // At the deadline everything left goes and the drain ends.
        assert_eq!(
            w.plan(NOW + HOUR),
            (
                vec!["agent-n1-0".to_string(), "crunch-n1-0".to_string()],
                vec!["n1".to_string()]
            )
        );
        // Before it, the batch alloc finishing leaves only the system alloc: it goes, done.
        w.set_client_status("crunch-n1-0", ALLOC_CLIENT_COMPLETE);
        assert_eq!(
            w.plan(NOW),
            (vec!["agent-n1-0".to_string()], vec!["n1".to_string()])
        );
    }

    #[test]
    fn force_no_deadline_and_ignore_system_jobs() {
        let mut w = World::new();
        let batch = w.job(typed("crunch", JOB_TYPE_BATCH, 1));
        w.allocs(&batch, "n1", 0..1);
        let sys = w.job(typed("agent", JOB_TYPE_SYSTEM, 1));
        w.allocs(&sys, "n1", 0..1);
        w.allocs(&sys, "n2", 0..1);
        // -force with -ignore-system: the batch alloc goes at once, the system one stays.
        w.drain("n1", -1, true);
        assert_eq!(
            w.plan(NOW),
            (vec!["crunch-n1-0".to_string()], vec!["n1".to_string()])
        );
        // -no-deadline: nothing is ever forced; n2's drain waits for its batch alloc.
        w.allocs(&batch, "n2", 1..2);
        w.drain("n2", 0, false);
        let pass = plan_drains(&w.store.snapshot(), NOW + 1000 * HOUR);
        assert!(!pass.complete.contains(&"n2".to_string()));
        assert!(pass.migrate.iter().all(|a| a.node_id != "n2"));
        assert_eq!(pass.next_deadline, None);
    }

    #[test]
    fn nodes_not_draining_are_left_alone() {
        let mut w = World::new();
        let web = w.job(test_job("web", 2));
        w.allocs(&web, "n1", 0..2);
        assert_eq!(plan_drains(&w.store.snapshot(), NOW), DrainPass::default());
    }

    /// Plays the clients: pending allocs start running, stopped ones complete.
    fn simulate_clients(s: Arc<Server>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let snap = s.state().snapshot();
                let index = snap.latest_index();
                let updates: Vec<Allocation> = snap
                    .allocs(None, "")
                    .into_iter()
                    .filter_map(|a| {
                        let status = if a.server_terminal() && !a.client_terminal() {
                            ALLOC_CLIENT_COMPLETE
                        } else if !a.server_terminal() && a.client_status == ALLOC_CLIENT_PENDING {
                            ALLOC_CLIENT_RUNNING
                        } else {
                            return None;
                        };
                        Some(Allocation {
                            client_status: status.into(),
                            ..(*a).clone()
                        })
                    })
                    .collect();
                if !updates.is_empty() {
                    s.node_update_allocs(updates).await.unwrap();
                }
                s.state()
                    .wait_for_change(&[Table::Allocs], index, Duration::from_secs(5))
                    .await;
            }
        })
    }

    #[tokio::test]
    async fn a_drained_node_ends_empty_and_ineligible() {
        let (s, _stop) = crate::tests::running(crate::ServerConfig::default());
        s.node_register(test_node("n1")).await.unwrap();
        s.job_register(crate::tests::register(test_job("web", 2)))
            .await
            .unwrap();
        let sim = simulate_clients(s.clone());
        let running_on = |node: &'static str| {
            let s = s.clone();
            move || {
                let s = s.clone();
                async move {
                    let live = crate::tests::live_allocs(&s, "web");
                    live.len() == 2
                        && live
                            .iter()
                            .all(|a| a.node_id == node && a.client_status == ALLOC_CLIENT_RUNNING)
                }
            }
        };
        assert!(crate::tests::wait_for(Duration::from_secs(10), running_on("n1")).await);
        s.node_register(test_node("n2")).await.unwrap();
        let spec = NodeUpdateDrainRequest {
            node_id: "n1".into(),
            drain_spec: Some(DrainSpec {
                deadline: HOUR,
                ignore_system_jobs: false,
            }),
            ..Default::default()
        };
        let resp = s.node_update_drain(spec, "").await.unwrap();
        assert!(resp.eval_ids.is_empty());
        assert!(crate::tests::wait_for(Duration::from_secs(20), running_on("n2")).await);
        assert!(
            crate::tests::wait_for(Duration::from_secs(10), || async {
                s.state()
                    .snapshot()
                    .node("n1")
                    .unwrap()
                    .drain_strategy
                    .is_none()
            })
            .await
        );
        let n1 = s.state().snapshot().node("n1").unwrap();
        assert_eq!(n1.scheduling_eligibility, NODE_INELIGIBLE);
        assert_eq!(
            n1.last_drain.as_ref().unwrap().status,
            DRAIN_STATUS_COMPLETE
        );
        let events: Vec<&str> = n1
            .events
            .iter()
            .flatten()
            .filter(|e| e.subsystem == "Drain")
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(
            events,
            [
                crate::endpoints::node::DRAIN_EVENT_SET,
                DRAIN_EVENT_COMPLETE
            ]
        );
        let moved = s.state().snapshot().allocs_by_node("n1");
        assert!(moved
            .iter()
            .all(|a| a.desired_transition.migrate == Some(true) && a.client_terminal()));
        let evals = s.state().snapshot().evals_by_job("default", "web");
        assert!(evals.iter().any(|e| e.triggered_by == TRIGGER_NODE_DRAIN));
        sim.abort();
    }

    #[tokio::test]
    async fn drain_update_and_cancel() {
        let s = Server::new(crate::ServerConfig::default());
        s.node_register(test_node("n1")).await.unwrap();
        let set = |deadline: i64| NodeUpdateDrainRequest {
            node_id: "n1".into(),
            drain_spec: Some(DrainSpec {
                deadline,
                ignore_system_jobs: false,
            }),
            meta: Some(BTreeMap::from([(
                "message".to_string(),
                "kernel".to_string(),
            )])),
            ..Default::default()
        };
        s.node_update_drain(set(HOUR), "acc-1").await.unwrap();
        let first = s.state().snapshot().node("n1").unwrap();
        let strategy = first.drain_strategy.clone().unwrap();
        assert_eq!(first.scheduling_eligibility, NODE_INELIGIBLE);
        assert!(strategy.force_deadline_nanos().is_some());
        let last = first.last_drain.clone().unwrap();
        assert_eq!(
            (last.status.as_str(), last.accessor_id.as_str()),
            ("draining", "acc-1")
        );
        assert_eq!(last.meta.unwrap()["message"], "kernel");

        // An update keeps when the drain started; -force has no deadline time.
        s.node_update_drain(set(-1), "").await.unwrap();
        let n = s.state().snapshot().node("n1").unwrap();
        let forced = n.drain_strategy.clone().unwrap();
        assert_eq!(forced.started_at, strategy.started_at);
        assert_eq!(forced.force_deadline, GO_ZERO_TIME);
        assert_eq!(n.last_drain.as_ref().unwrap().started_at, last.started_at);

        // Cancel, eligible again: node evals and the "disabled" event.
        let cancel = NodeUpdateDrainRequest {
            node_id: "n1".into(),
            mark_eligible: true,
            ..Default::default()
        };
        s.node_update_drain(cancel, "").await.unwrap();
        let n = s.state().snapshot().node("n1").unwrap();
        assert!(n.drain_strategy.is_none());
        assert_eq!(n.scheduling_eligibility, NODE_ELIGIBLE);
        assert_eq!(n.last_drain.as_ref().unwrap().status, DRAIN_STATUS_CANCELED);
        let events: Vec<&str> = n
            .events
            .iter()
            .flatten()
            .filter(|e| e.subsystem == "Drain")
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(
            events,
            [
                "Node drain strategy set",
                "Node drain strategy updated",
                "Node drain disabled"
            ]
        );

        let e = s
            .node_update_drain(
                NodeUpdateDrainRequest {
                    node_id: "nope".into(),
                    ..Default::default()
                },
                "",
            )
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "node not found");
        let e = s
            .node_update_drain(NodeUpdateDrainRequest::default(), "")
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "missing node ID for drain update");
    }
}
