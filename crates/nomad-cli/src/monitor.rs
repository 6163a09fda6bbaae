//! The evaluation monitor used by `job run` and `job stop` (Nomad `command/monitor.go`).

use std::collections::BTreeMap;
use std::time::Duration;

use nomad_structs::{AllocListStub, AllocMetric, Evaluation};

use crate::api::{path_escape, Client};
use crate::format::{limit, now_formatted};

/// Time between polls of the evaluation.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Default, PartialEq)]
struct AllocState {
    id: String,
    group: String,
    node: String,
    desired: String,
    client: String,
    client_desc: String,
    index: u64,
}

#[derive(Debug, Clone, Default)]
struct EvalState {
    status: String,
    node: String,
    deployment: String,
    job: String,
    allocs: BTreeMap<String, AllocState>,
    index: u64,
}

impl EvalState {
    fn pending() -> Self {
        EvalState {
            status: "pending".into(),
            ..Default::default()
        }
    }
}

/// Watches one evaluation chain and prints what changes.
#[derive(Debug)]
pub struct Monitor<'a> {
    client: &'a Client,
    length: usize,
    state: EvalState,
}

fn info(msg: &str) {
    outln!("==> {msg}");
}

fn error(msg: &str) {
    eprintln!("==> {msg}");
}

fn output(msg: &str) {
    if msg.is_empty() {
        outln!();
    } else {
        outln!("    {msg}");
    }
}

/// Formats placement metrics, one `prefix* ...` line each, without a trailing newline (Nomad
/// `formatAllocMetrics`, no scores).
pub fn format_alloc_metrics(m: &AllocMetric, prefix: &str) -> String {
    let mut out = String::new();
    if m.nodes_evaluated == 0 {
        out.push_str(&format!(
            "{prefix}* No nodes were eligible for evaluation\n"
        ));
    }
    for (dc, n) in m.nodes_available.iter().flatten() {
        if *n == 0 {
            out.push_str(&format!(
                "{prefix}* No nodes are available in datacenter {dc:?}\n"
            ));
        }
    }
    for (class, n) in m.class_filtered.iter().flatten() {
        out.push_str(&format!(
            "{prefix}* Class {class:?}: {n} nodes excluded by filter\n"
        ));
    }
    for (c, n) in m.constraint_filtered.iter().flatten() {
        out.push_str(&format!(
            "{prefix}* Constraint {c:?}: {n} nodes excluded by filter\n"
        ));
    }
    if m.nodes_exhausted > 0 {
        out.push_str(&format!(
            "{prefix}* Resources exhausted on {} nodes\n",
            m.nodes_exhausted
        ));
    }
    for (class, n) in m.class_exhausted.iter().flatten() {
        out.push_str(&format!(
            "{prefix}* Class {class:?} exhausted on {n} nodes\n"
        ));
    }
    for (dim, n) in m.dimension_exhausted.iter().flatten() {
        out.push_str(&format!(
            "{prefix}* Dimension {dim:?} exhausted on {n} nodes\n"
        ));
    }
    for q in m.quota_exhausted.iter().flatten() {
        out.push_str(&format!("{prefix}* Quota limit hit {q:?}\n"));
    }
    out.truncate(out.trim_end_matches('\n').len());
    out
}

/// The `Task Group "x" (failed to place N allocation[s]):` header.
pub fn failed_tg_header(tg: &str, m: &AllocMetric) -> String {
    let noun = if m.coalesced_failures > 0 {
        "allocations"
    } else {
        "allocation"
    };
    format!(
        "Task Group {tg:?} (failed to place {} {noun}):",
        m.coalesced_failures + 1
    )
}

impl<'a> Monitor<'a> {
    /// A monitor printing IDs cut to `length`.
    pub fn new(client: &'a Client, length: usize) -> Self {
        Monitor {
            client,
            length,
            state: EvalState::pending(),
        }
    }

    fn update(&mut self, update: EvalState) {
        let now = now_formatted();
        let existing = &self.state;
        if existing.node.is_empty() && !update.node.is_empty() {
            output(&format!(
                "{now}: Evaluation triggered by node {:?}",
                limit(&update.node, self.length)
            ));
        }
        if existing.job.is_empty() && !update.job.is_empty() {
            output(&format!(
                "{now}: Evaluation triggered by job {:?}",
                update.job
            ));
        }
        if existing.deployment.is_empty() && !update.deployment.is_empty() {
            output(&format!(
                "{now}: Evaluation within deployment: {:?}",
                limit(&update.deployment, self.length)
            ));
        }
        let mut allocs: Vec<&AllocState> = update.allocs.values().collect();
        allocs.sort_by(|a, b| (a.index, &a.id).cmp(&(b.index, &b.id)));
        for alloc in allocs {
            match existing.allocs.get(&alloc.id) {
                None if alloc.index < update.index => output(&format!(
                    "{now}: Allocation {:?} modified: node {:?}, group {:?}",
                    limit(&alloc.id, self.length),
                    limit(&alloc.node, self.length),
                    alloc.group
                )),
                None if alloc.desired == "run" => output(&format!(
                    "{now}: Allocation {:?} created: node {:?}, group {:?}",
                    limit(&alloc.id, self.length),
                    limit(&alloc.node, self.length),
                    alloc.group
                )),
                None => {}
                Some(old) if old.client != alloc.client => {
                    let desc = if alloc.client_desc.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", alloc.client_desc)
                    };
                    output(&format!(
                        "{now}: Allocation {:?} status changed: {:?} -> {:?}{desc}",
                        limit(&alloc.id, self.length),
                        old.client,
                        alloc.client
                    ));
                }
                Some(_) => {}
            }
        }
        // Transitions to pending are not printed.
        if !existing.status.is_empty()
            && update.status != "pending"
            && existing.status != update.status
        {
            output(&format!(
                "{now}: Evaluation status changed: {:?} -> {:?}",
                existing.status, update.status
            ));
        }
        self.state = update;
    }

    /// Monitors `eval_id` (and its follow-ups) to the end. Returns the exit code: 0 done,
    /// 1 error, 2 placement failures.
    pub fn monitor(&mut self, eval_id: &str) -> i32 {
        let mut eval_id = eval_id.to_string();
        let mut sched_failure = false;
        loop {
            info(&format!(
                "{}: Monitoring evaluation {:?}",
                now_formatted(),
                limit(&eval_id, self.length)
            ));
            let eval = loop {
                let path = format!("/v1/evaluation/{}", path_escape(&eval_id));
                let eval: Evaluation = match self.client.get(&path, &[]) {
                    Ok(e) => e,
                    Err(_) => {
                        error(&format!("No evaluation with id {eval_id:?} found"));
                        return 1;
                    }
                };
                let allocs: Vec<AllocListStub> = match self.client.get(
                    &format!("/v1/evaluation/{}/allocations", path_escape(&eval.id)),
                    &[],
                ) {
                    Ok(a) => a,
                    Err(e) => {
                        error(&format!(
                            "{}: Error reading allocations: {e}",
                            now_formatted()
                        ));
                        return 1;
                    }
                };
                let mut st = EvalState {
                    status: eval.status.clone(),
                    node: eval.node_id.clone(),
                    deployment: eval.deployment_id.clone(),
                    job: eval.job_id.clone(),
                    allocs: BTreeMap::new(),
                    index: eval.create_index,
                };
                for a in allocs {
                    st.allocs.insert(
                        a.id.clone(),
                        AllocState {
                            id: a.id,
                            group: a.task_group,
                            node: a.node_id,
                            desired: a.desired_status,
                            client: a.client_status,
                            client_desc: a.client_description,
                            index: a.create_index,
                        },
                    );
                }
                self.update(st);
                if matches!(eval.status.as_str(), "complete" | "failed" | "canceled") {
                    break eval;
                }
                std::thread::sleep(POLL);
            };

            let failed = eval.failed_tg_allocs.clone().unwrap_or_default();
            let now = now_formatted();
            if failed.is_empty() {
                info(&format!(
                    "{now}: Evaluation {:?} finished with status {:?}",
                    limit(&eval.id, self.length),
                    eval.status
                ));
            } else {
                sched_failure = true;
                info(&format!(
                    "{now}: Evaluation {:?} finished with status {:?} but failed to place all allocations:",
                    limit(&eval.id, self.length),
                    eval.status
                ));
                for (tg, m) in &failed {
                    output(&format!("{now}: {}", failed_tg_header(tg, m)));
                    for line in format_alloc_metrics(m, "  ").split('\n') {
                        output(line);
                    }
                }
                if !eval.blocked_eval.is_empty() {
                    output(&format!(
                        "{now}: Evaluation {:?} waiting for additional capacity to place remainder",
                        limit(&eval.blocked_eval, self.length)
                    ));
                }
            }

            if eval.next_eval.is_empty() {
                break;
            }
            if eval.wait != 0 {
                info(&format!(
                    "{}: Monitoring next evaluation {:?} in {}",
                    now_formatted(),
                    limit(&eval.next_eval, self.length),
                    nomad_structs::duration::format_go_duration(eval.wait)
                ));
                std::thread::sleep(Duration::from_nanos(eval.wait.max(0) as u64));
            }
            self.state = EvalState::pending();
            eval_id = eval.next_eval.clone();
        }
        // Deployments are not monitored yet: the agent creates none.
        if sched_failure {
            2
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines() {
        let mut m = AllocMetric {
            nodes_evaluated: 2,
            nodes_exhausted: 1,
            ..Default::default()
        };
        m.constraint_filtered = Some([("missing drivers".to_string(), 1)].into_iter().collect());
        m.dimension_exhausted = Some([("memory".to_string(), 1)].into_iter().collect());
        m.nodes_available = Some([("dc1".to_string(), 0)].into_iter().collect());
        let out = format_alloc_metrics(&m, "  ");
        assert_eq!(
            out,
            "  * No nodes are available in datacenter \"dc1\"\n  * Constraint \"missing drivers\": 1 nodes excluded by filter\n  * Resources exhausted on 1 nodes\n  * Dimension \"memory\" exhausted on 1 nodes"
        );
        let none = AllocMetric::default();
        assert_eq!(
            format_alloc_metrics(&none, "  "),
            "  * No nodes were eligible for evaluation"
        );
        assert_eq!(
            failed_tg_header("cache", &none),
            "Task Group \"cache\" (failed to place 1 allocation):"
        );
        let two = AllocMetric {
            coalesced_failures: 1,
            ..Default::default()
        };
        assert_eq!(
            failed_tg_header("cache", &two),
            "Task Group \"cache\" (failed to place 2 allocations):"
        );
    }
}
