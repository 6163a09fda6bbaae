//! The system scheduler (system and sysbatch): one alloc of each group on every feasible ready
//! node. Nodes a group cannot run on are skipped, not failures; a node without room is a
//! failed placement.

use std::collections::BTreeMap;

use nomad_structs::{Allocation, Job, Node, TaskGroup, ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_LOST};

use crate::context::{PlaceRequest, Sched};
use crate::{desc, feasible};

pub(crate) fn schedule(s: &mut Sched<'_, '_>, job: Option<&Job>) {
    let mut allocs = s.state.allocs_by_job(&s.eval.namespace, &s.eval.job_id);
    // Newest first per node, so the latest alloc is the one kept.
    allocs.sort_by(|a, b| {
        (&a.node_id, std::cmp::Reverse(a.create_index), &a.id).cmp(&(
            &b.node_id,
            std::cmp::Reverse(b.create_index),
            &b.id,
        ))
    });
    let Some(job) = job.filter(|j| !j.stop) else {
        for a in allocs.iter().filter(|a| !a.terminal()) {
            s.stop(a, desc::ALLOC_NOT_NEEDED, None);
        }
        return;
    };
    let mut by_group: BTreeMap<String, BTreeMap<String, Vec<Allocation>>> = BTreeMap::new();
    for a in allocs.into_iter().filter(|a| !a.server_terminal()) {
        by_group
            .entry(a.task_group.clone())
            .or_default()
            .entry(a.node_id.clone())
            .or_default()
            .push(a);
    }
    for (name, per_node) in &by_group {
        if job.lookup_task_group(name).is_none() {
            for a in per_node.values().flatten().filter(|a| !a.terminal()) {
                s.stop(a, desc::ALLOC_NOT_NEEDED, None);
            }
        }
    }
    for tg in &job.task_groups {
        let mut per_node = by_group.remove(&tg.name).unwrap_or_default();
        // Allocs on nodes the state no longer knows are lost.
        let known: Vec<String> = s.nodes.iter().map(|n| n.id.clone()).collect();
        for (node_id, allocs) in &per_node {
            if !known.contains(node_id) {
                for a in allocs.iter().filter(|a| !a.terminal()) {
                    s.stop(a, desc::ALLOC_LOST, Some(ALLOC_CLIENT_LOST));
                }
            }
        }
        let nodes: Vec<Node> = s.nodes.clone();
        for node in &nodes {
            let existing = per_node.remove(&node.id).unwrap_or_default();
            node_group(s, job, tg, node, existing);
        }
    }
}

fn node_group(
    s: &mut Sched<'_, '_>,
    job: &Job,
    tg: &TaskGroup,
    node: &Node,
    existing: Vec<Allocation>,
) {
    let live: Vec<&Allocation> = existing.iter().filter(|a| !a.client_terminal()).collect();
    if s.node_lost(&node.id) {
        for a in live {
            s.stop(a, desc::ALLOC_LOST, Some(ALLOC_CLIENT_LOST));
        }
        return;
    }
    // Marked by the node drainer: stopped wherever it runs (the drain may be over already).
    let (migrating, live): (Vec<&Allocation>, Vec<&Allocation>) = live
        .into_iter()
        .partition(|a| a.desired_transition.migrate == Some(true));
    for a in &migrating {
        s.stop(a, desc::ALLOC_NODE_TAINTED, None);
    }
    if node.drain_strategy.is_some() {
        return;
    }
    if !feasible::node_pool_matches(job, node) || !feasible::datacenter_matches(job, node) {
        for a in live {
            s.stop(a, desc::ALLOC_NOT_NEEDED, None);
        }
        return;
    }
    if !node.ready() {
        return; // ineligible or initializing: leave what runs there alone
    }
    if !s.node_feasible(job, tg, node) {
        for a in live {
            s.stop(a, desc::ALLOC_NOT_NEEDED, None);
        }
        return;
    }
    if let Some((first, extra)) = live.split_first() {
        for a in extra {
            s.stop(a, desc::ALLOC_NOT_NEEDED, None);
        }
        let current = first
            .job
            .as_ref()
            .is_some_and(|aj| aj.version == job.version && aj.create_index == job.create_index);
        if current {
            return;
        }
        let changed = first.job.as_deref().is_some_and(|old| {
            old.meta != job.meta
                || old.lookup_task_group(&tg.name).is_none_or(|old_tg| {
                    let norm = |t: &TaskGroup| TaskGroup {
                        count: None,
                        scaling: None,
                        update: None,
                        migrate: None,
                        ..t.clone()
                    };
                    norm(old_tg) != norm(tg)
                })
        });
        if changed {
            place(s, job, tg, node, Some(first));
        } else {
            let mut u = (*first).clone();
            u.job = Some(Box::new(job.clone()));
            u.eval_id = s.eval.id.clone();
            u.modify_time = s.now();
            s.add_alloc(u);
        }
        return;
    }
    if job.job_type == nomad_structs::JOB_TYPE_SYSBATCH
        && existing
            .iter()
            .any(|a| a.client_status == ALLOC_CLIENT_COMPLETE)
    {
        return; // the work ran to completion on this node
    }
    place(s, job, tg, node, None);
}

fn place(
    s: &mut Sched<'_, '_>,
    job: &Job,
    tg: &TaskGroup,
    node: &Node,
    replaces: Option<&Allocation>,
) {
    if let Some(p) = replaces {
        s.stop(p, desc::ALLOC_UPDATING, None);
    }
    let name = format!("{}.{}[0]", job.id, tg.name);
    let req = PlaceRequest {
        job,
        tg,
        name: name.clone(),
        candidates: vec![node.id.clone()],
        penalty: Default::default(),
        anti_affinity: false,
    };
    match s.select(&req) {
        Ok(choice) => {
            let mut alloc = s.new_alloc(job, tg, name, choice);
            if let Some(p) = replaces {
                alloc.previous_allocation = p.id.clone();
            }
            s.add_alloc(alloc);
        }
        Err(metric) => {
            if let Some(p) = replaces {
                s.unstop(p);
            }
            s.record_failure(&tg.name, Some(*metric));
        }
    }
}
