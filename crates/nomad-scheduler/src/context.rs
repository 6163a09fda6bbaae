//! The per-eval scheduling context: the plan being built, proposed allocs per node, node
//! selection with metrics, failed-placement bookkeeping and the final eval/blocked-eval result.

use std::collections::{BTreeMap, BTreeSet};

use nomad_structs::{
    AllocMetric, Allocation, Evaluation, Job, Node, TaskGroup, ALLOC_CLIENT_PENDING,
    ALLOC_DESIRED_RUN, ALLOC_DESIRED_STOP, EVAL_STATUS_BLOCKED, EVAL_STATUS_COMPLETE,
    EVAL_STATUS_PENDING, NODE_STATUS_DISCONNECTED, NODE_STATUS_DOWN, TRIGGER_QUEUED_ALLOCS,
    TRIGGER_RETRY_FAILED_ALLOC,
};

use crate::feasible::{self, FILTER_MISSING_DRIVERS};
use crate::rank::{self, NodeUsage, ResourceAsk};
use crate::{desc, Plan, ScheduleResult, SchedulerContext, SchedulerState};

/// A successful node choice.
pub(crate) struct Choice {
    pub(crate) node: Node,
    pub(crate) offer: rank::Offer,
    pub(crate) metric: AllocMetric,
}

/// How to place one alloc.
pub(crate) struct PlaceRequest<'r> {
    pub(crate) job: &'r Job,
    pub(crate) tg: &'r TaskGroup,
    pub(crate) name: String,
    /// Nodes to consider, in order (already ready / in pool / in datacenter).
    pub(crate) candidates: Vec<String>,
    /// Nodes to penalize (where the alloc being rescheduled failed).
    pub(crate) penalty: BTreeSet<String>,
    /// Score job anti-affinity (generic scheduler only).
    pub(crate) anti_affinity: bool,
}

pub(crate) struct Sched<'a, 'c> {
    pub(crate) eval: &'a Evaluation,
    pub(crate) state: &'a dyn SchedulerState,
    pub(crate) ctx: &'a mut SchedulerContext<'c>,
    /// All nodes, sorted by ID.
    pub(crate) nodes: Vec<Node>,
    node_allocs: BTreeMap<String, Vec<Allocation>>,
    pub(crate) plan: Plan,
    pub(crate) failed: BTreeMap<String, AllocMetric>,
    pub(crate) queued: BTreeMap<String, i64>,
    class_eligibility: BTreeMap<String, bool>,
    escaped: bool,
    /// Evals to create besides the blocked one (delayed reschedules).
    pub(crate) follow_ups: Vec<Evaluation>,
}

impl<'a, 'c> Sched<'a, 'c> {
    pub(crate) fn new(
        eval: &'a Evaluation,
        state: &'a dyn SchedulerState,
        ctx: &'a mut SchedulerContext<'c>,
    ) -> Self {
        let mut nodes = state.nodes();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Sched {
            eval,
            state,
            ctx,
            nodes,
            node_allocs: BTreeMap::new(),
            plan: Plan {
                eval_id: eval.id.clone(),
                ..Default::default()
            },
            failed: BTreeMap::new(),
            queued: BTreeMap::new(),
            class_eligibility: BTreeMap::new(),
            escaped: false,
            follow_ups: Vec::new(),
        }
    }

    pub(crate) fn now(&self) -> i64 {
        self.ctx.now_unix_nanos
    }

    pub(crate) fn node(&self, id: &str) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// Down, disconnected or gone: its allocs are lost.
    pub(crate) fn node_lost(&self, id: &str) -> bool {
        self.node(id)
            .is_none_or(|n| n.status == NODE_STATUS_DOWN || n.status == NODE_STATUS_DISCONNECTED)
    }

    /// Ready nodes in the job's node pool and datacenters, in ID order.
    pub(crate) fn ready_candidates(&self, job: &Job) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| {
                n.ready()
                    && feasible::node_pool_matches(job, n)
                    && feasible::datacenter_matches(job, n)
            })
            .map(|n| n.id.clone())
            .collect()
    }

    /// The node's allocs as the plan would leave them: state's, minus those stopped in the
    /// plan, with the plan's new and updated allocs; non-terminal only.
    pub(crate) fn proposed_allocs(&mut self, node_id: &str) -> Vec<Allocation> {
        if !self.node_allocs.contains_key(node_id) {
            let allocs = self.state.allocs_by_node(node_id);
            self.node_allocs.insert(node_id.to_string(), allocs);
        }
        let stopped: BTreeSet<&str> = self
            .plan
            .node_update
            .get(node_id)
            .into_iter()
            .flatten()
            .map(|a| a.id.as_str())
            .collect();
        let planned = self.plan.node_allocation.get(node_id);
        let planned_ids: BTreeSet<&str> = planned
            .into_iter()
            .flatten()
            .map(|a| a.id.as_str())
            .collect();
        let mut out: Vec<Allocation> = self.node_allocs[node_id]
            .iter()
            .filter(|a| !stopped.contains(a.id.as_str()) && !planned_ids.contains(a.id.as_str()))
            .cloned()
            .collect();
        out.extend(planned.into_iter().flatten().cloned());
        out.retain(|a| !a.terminal());
        out
    }

    /// Adds a stop for `alloc` to the plan.
    pub(crate) fn stop(
        &mut self,
        alloc: &Allocation,
        description: &str,
        client_status: Option<&str>,
    ) {
        let mut a = alloc.clone();
        a.desired_status = ALLOC_DESIRED_STOP.to_string();
        a.desired_description = description.to_string();
        if let Some(cs) = client_status {
            a.client_status = cs.to_string();
        }
        a.modify_time = self.now();
        self.plan
            .node_update
            .entry(a.node_id.clone())
            .or_default()
            .push(a);
    }

    /// Takes a stop back out of the plan (its replacement could not be placed).
    pub(crate) fn unstop(&mut self, alloc: &Allocation) {
        if let Some(v) = self.plan.node_update.get_mut(&alloc.node_id) {
            v.retain(|a| a.id != alloc.id);
            if v.is_empty() {
                self.plan.node_update.remove(&alloc.node_id);
            }
        }
    }

    /// Adds a new or updated alloc to the plan.
    pub(crate) fn add_alloc(&mut self, alloc: Allocation) {
        self.plan
            .node_allocation
            .entry(alloc.node_id.clone())
            .or_default()
            .push(alloc);
    }

    fn record_class(&mut self, node: &Node, eligible: bool) {
        if node.computed_class.is_empty() {
            return;
        }
        let e = self
            .class_eligibility
            .entry(node.computed_class.clone())
            .or_insert(false);
        *e |= eligible;
    }

    /// Whether a node passes the job, driver and group checks (no resources, no readiness).
    pub(crate) fn node_feasible(&self, job: &Job, tg: &TaskGroup, node: &Node) -> bool {
        let job_cons = job.constraints.clone().unwrap_or_default();
        feasible::node_pool_matches(job, node)
            && feasible::datacenter_matches(job, node)
            && feasible::first_failed_constraint(node, &job_cons).is_none()
            && feasible::has_drivers(node, &feasible::group_drivers(tg))
            && feasible::first_failed_constraint(node, &feasible::group_constraints(tg)).is_none()
    }

    /// Picks the best node for one alloc, or returns the metrics of the failure.
    pub(crate) fn select(&mut self, req: &PlaceRequest<'_>) -> Result<Choice, Box<AllocMetric>> {
        let job = req.job;
        let tg = req.tg;
        let job_cons = job.constraints.clone().unwrap_or_default();
        let tg_cons = feasible::group_constraints(tg);
        if feasible::escapes_computed_class(&job_cons) || feasible::escapes_computed_class(&tg_cons)
        {
            self.escaped = true;
        }
        let drivers = feasible::group_drivers(tg);
        let distinct_job = feasible::wants_distinct_hosts(&job_cons);
        let distinct_tg = feasible::wants_distinct_hosts(&tg_cons);
        let ask = ResourceAsk::for_group(tg);
        let desired = tg.count().max(1) as f64;

        let pool = if job.node_pool.is_empty() {
            feasible::NODE_POOL_DEFAULT
        } else {
            job.node_pool.as_str()
        };
        let mut m = AllocMetric {
            node_pool: pool.to_string(),
            ..Default::default()
        };
        m.nodes_in_pool = self
            .nodes
            .iter()
            .filter(|n| n.ready() && feasible::node_pool_matches(job, n))
            .count() as i64;
        let mut avail: BTreeMap<String, i64> = BTreeMap::new();
        for id in &req.candidates {
            if let Some(n) = self.node(id) {
                *avail.entry(n.datacenter.clone()).or_default() += 1;
            }
        }
        m.nodes_available = Some(avail);

        let mut best: Option<(f64, Node, rank::Offer)> = None;
        let mut scored: Vec<(f64, serde_json::Value)> = Vec::new();
        for id in &req.candidates {
            let Some(node) = self.node(id).cloned() else {
                continue;
            };
            m.nodes_evaluated += 1;
            let filtered = if let Some(key) = feasible::first_failed_constraint(&node, &job_cons) {
                Some(key)
            } else if !feasible::has_drivers(&node, &drivers) {
                Some(FILTER_MISSING_DRIVERS.to_string())
            } else {
                feasible::first_failed_constraint(&node, &tg_cons)
            };
            self.record_class(&node, filtered.is_none());
            let proposed = if filtered.is_none() {
                self.proposed_allocs(&node.id)
            } else {
                Vec::new()
            };
            let filtered = filtered.or_else(|| {
                let clash = (distinct_job || distinct_tg)
                    && proposed
                        .iter()
                        .any(|a| a.job_id == job.id && (distinct_job || a.task_group == tg.name));
                clash.then(|| feasible::CONSTRAINT_DISTINCT_HOSTS.to_string())
            });
            if let Some(key) = filtered {
                m.nodes_filtered += 1;
                *m.constraint_filtered
                    .get_or_insert_with(BTreeMap::new)
                    .entry(key)
                    .or_default() += 1;
                if !node.node_class.is_empty() {
                    *m.class_filtered
                        .get_or_insert_with(BTreeMap::new)
                        .entry(node.node_class.clone())
                        .or_default() += 1;
                }
                continue;
            }
            let usage = NodeUsage::of(&proposed);
            let offer = match rank::fit(&node, &usage, &ask, &format!("{}/{}", req.name, node.id)) {
                Ok(o) => o,
                Err(dim) => {
                    m.nodes_exhausted += 1;
                    *m.dimension_exhausted
                        .get_or_insert_with(BTreeMap::new)
                        .entry(dim)
                        .or_default() += 1;
                    if !node.node_class.is_empty() {
                        *m.class_exhausted
                            .get_or_insert_with(BTreeMap::new)
                            .entry(node.node_class.clone())
                            .or_default() += 1;
                    }
                    continue;
                }
            };
            let mut parts: Vec<(&str, f64)> =
                vec![("binpack", rank::binpack_score(&node, &usage, &ask))];
            if req.anti_affinity {
                let collisions = proposed
                    .iter()
                    .filter(|a| {
                        a.job_id == job.id
                            && a.namespace == job.namespace
                            && a.task_group == tg.name
                    })
                    .count();
                if collisions > 0 {
                    parts.push(("job-anti-affinity", -((collisions + 1) as f64) / desired));
                }
            }
            if req.penalty.contains(&node.id) {
                parts.push(("node-reschedule-penalty", -1.0));
            }
            let norm = parts.iter().map(|p| p.1).sum::<f64>() / parts.len() as f64;
            let scores: serde_json::Map<String, serde_json::Value> = parts
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect();
            scored.push((
                norm,
                serde_json::json!({"NodeID": node.id, "Scores": scores, "NormScore": norm}),
            ));
            if best.as_ref().is_none_or(|(b, _, _)| norm > *b + 1e-12) {
                best = Some((norm, node, offer));
            }
        }
        match best {
            Some((_, node, offer)) => {
                scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
                scored.truncate(5);
                m.score_meta_data = Some(scored.into_iter().map(|s| s.1).collect());
                Ok(Choice {
                    node,
                    offer,
                    metric: m,
                })
            }
            None => Err(Box::new(m)),
        }
    }

    /// Builds a new alloc from a choice.
    pub(crate) fn new_alloc(
        &mut self,
        job: &Job,
        tg: &TaskGroup,
        name: String,
        choice: Choice,
    ) -> Allocation {
        let ask = ResourceAsk::for_group(tg);
        let now = self.now();
        Allocation {
            id: (self.ctx.new_id)(),
            namespace: job.namespace.clone(),
            eval_id: self.eval.id.clone(),
            name,
            node_id: choice.node.id.clone(),
            node_name: choice.node.name.clone(),
            job_id: job.id.clone(),
            job: Some(Box::new(job.clone())),
            task_group: tg.name.clone(),
            allocated_resources: Some(rank::allocated_resources(&ask, &choice.offer)),
            metrics: Some(choice.metric),
            desired_status: ALLOC_DESIRED_RUN.to_string(),
            client_status: ALLOC_CLIENT_PENDING.to_string(),
            create_time: now,
            modify_time: now,
            ..Default::default()
        }
    }

    /// A pending eval that reschedules failed allocs at `at` (unix ns).
    pub(crate) fn follow_up_eval(&mut self, at: i64) -> Evaluation {
        let now = self.now();
        Evaluation {
            id: (self.ctx.new_id)(),
            namespace: self.eval.namespace.clone(),
            priority: self.eval.priority,
            eval_type: self.eval.eval_type.clone(),
            triggered_by: TRIGGER_RETRY_FAILED_ALLOC.to_string(),
            job_id: self.eval.job_id.clone(),
            job_modify_index: self.eval.job_modify_index,
            status: EVAL_STATUS_PENDING.to_string(),
            wait_until: Some(nomad_structs::rfc3339_nanos(at)),
            previous_eval: self.eval.id.clone(),
            create_time: now,
            modify_time: now,
            ..Default::default()
        }
    }

    /// Records a failed placement for a group (the first metric is kept; later ones coalesce).
    pub(crate) fn record_failure(&mut self, tg: &str, metric: Option<AllocMetric>) {
        *self.queued.entry(tg.to_string()).or_default() += 1;
        match self.failed.get_mut(tg) {
            Some(m) => m.coalesced_failures += 1,
            None => {
                self.failed
                    .insert(tg.to_string(), metric.unwrap_or_default());
            }
        }
    }

    /// Whether the group already failed a placement in this pass.
    pub(crate) fn group_failed(&self, tg: &str) -> bool {
        self.failed.contains_key(tg)
    }

    /// Turns the pass into a result: eval status, queued counts, blocked eval.
    pub(crate) fn finish(mut self, job: Option<&Job>) -> ScheduleResult {
        let now = self.now();
        if let Some(job) = job.filter(|j| !j.stop) {
            for tg in &job.task_groups {
                self.queued.entry(tg.name.clone()).or_insert(0);
            }
        }
        let mut eval = self.eval.clone();
        eval.status = EVAL_STATUS_COMPLETE.to_string();
        eval.status_description = String::new();
        eval.queued_allocations = Some(self.queued.clone());
        eval.failed_tg_allocs = if self.failed.is_empty() {
            None
        } else {
            Some(self.failed.clone())
        };
        eval.modify_time = now;
        let mut blocked_eval = None;
        let mut still_blocked = false;
        if !self.failed.is_empty() {
            if self.eval.status == EVAL_STATUS_BLOCKED {
                still_blocked = true;
                eval.status = EVAL_STATUS_BLOCKED.to_string();
                eval.class_eligibility = Some(self.class_eligibility.clone());
                eval.escaped_computed_class = self.escaped;
            } else {
                let b = Evaluation {
                    id: (self.ctx.new_id)(),
                    namespace: self.eval.namespace.clone(),
                    priority: self.eval.priority,
                    eval_type: self.eval.eval_type.clone(),
                    triggered_by: TRIGGER_QUEUED_ALLOCS.to_string(),
                    job_id: self.eval.job_id.clone(),
                    job_modify_index: self.eval.job_modify_index,
                    status: EVAL_STATUS_BLOCKED.to_string(),
                    status_description: desc::BLOCKED_EVAL_FAILED_PLACEMENTS.to_string(),
                    previous_eval: self.eval.id.clone(),
                    failed_tg_allocs: Some(self.failed.clone()),
                    class_eligibility: Some(self.class_eligibility.clone()),
                    escaped_computed_class: self.escaped,
                    create_time: now,
                    modify_time: now,
                    ..Default::default()
                };
                eval.blocked_eval = b.id.clone();
                blocked_eval = Some(b);
            }
        }
        ScheduleResult {
            plan: self.plan,
            eval,
            blocked_eval,
            follow_up_evals: self.follow_ups,
            still_blocked,
        }
    }
}
