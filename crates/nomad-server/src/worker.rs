//! Scheduler workers: dequeue an eval, run the scheduler on a snapshot, apply the plan.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use nomad_scheduler::{process_eval, ScheduleResult, SchedulerContext, SchedulerState};
use nomad_state::{Command, StateSnapshot};
use nomad_structs::*;

use crate::eval_broker::Lease;
use crate::{new_id, now_nanos, Server};

/// The scheduler's view of a state snapshot.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotState<'a>(pub &'a StateSnapshot);

impl SchedulerState for SnapshotState<'_> {
    fn job(&self, namespace: &str, id: &str) -> Option<Job> {
        self.0.job(namespace, id).map(|j| (*j).clone())
    }
    fn nodes(&self) -> Vec<Node> {
        self.0.nodes("").iter().map(|n| (**n).clone()).collect()
    }
    fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Allocation> {
        self.0
            .allocs_by_job(namespace, job_id)
            .iter()
            .map(|a| (**a).clone())
            .collect()
    }
    fn allocs_by_node(&self, node_id: &str) -> Vec<Allocation> {
        self.0
            .allocs_by_node(node_id)
            .iter()
            .map(|a| (**a).clone())
            .collect()
    }
}

impl Server {
    pub(crate) async fn worker_loop(
        self: Arc<Self>,
        n: usize,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        tracing::debug!(worker = n, "scheduler worker started");
        loop {
            if *shutdown.borrow() {
                return;
            }
            // Register interest before looking, so an enqueue in between is not missed.
            let ready = self.broker.ready_notify.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some(lease) = self.broker.dequeue() {
                self.process(lease).await;
                continue;
            }
            tokio::select! {
                _ = &mut ready => {}
                r = shutdown.changed() => if r.is_err() { return },
            }
        }
    }

    /// Moves delayed evals (follow-ups with `WaitUntil`) to the ready queue when they are due.
    pub(crate) async fn delay_loop(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let changed = self.broker.delay_notify.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next = self.broker.promote_due(tokio::time::Instant::now());
            let until = next.unwrap_or_else(|| {
                tokio::time::Instant::now() + std::time::Duration::from_secs(3600)
            });
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = &mut changed => {}
                r = shutdown.changed() => if r.is_err() { return },
            }
        }
    }

    /// Runs one eval through the scheduler and applies the outcome; always acks the lease.
    async fn process(&self, lease: Lease) {
        let cmd = self.schedule(&lease);
        if let Some(cmd) = cmd {
            if let Err(e) = self.apply_leader(cmd).await {
                tracing::error!(eval_id = %lease.eval.id, error = %e, "applying the plan failed");
            }
        }
        self.broker.ack(&lease);
    }

    /// The command that records the scheduling pass, or `None` when there is nothing to do.
    fn schedule(&self, lease: &Lease) -> Option<Command> {
        let snap = self.state.snapshot();
        let eval = snap.eval(&lease.eval.id)?;
        if eval.terminal() {
            return None;
        }
        let now = now_nanos();
        let adapter = SnapshotState(&snap);
        let mut ids = new_id;
        let mut ctx = SchedulerContext {
            now_unix_nanos: now,
            new_id: &mut ids,
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| process_eval(&eval, &adapter, &mut ctx)));
        let failure = match outcome {
            Ok(Ok(result)) => return Some(plan_command(result, now)),
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("scheduler panicked: {msg}")
            }
        };
        tracing::error!(eval_id = %eval.id, job_id = %eval.job_id, error = %failure, "eval failed");
        let mut failed = (*eval).clone();
        failed.status = EVAL_STATUS_FAILED.into();
        failed.status_description = failure;
        failed.modify_time = now;
        Some(Command::EvalsUpsert {
            evals: vec![failed],
        })
    }
}

/// Turns a scheduling result into the `PlanApply` command.
fn plan_command(result: ScheduleResult, now: i64) -> Command {
    let ScheduleResult {
        plan,
        mut eval,
        blocked_eval,
        follow_up_evals,
        still_blocked,
    } = result;
    let mut allocs: Vec<Allocation> = plan.node_allocation.into_values().flatten().collect();
    allocs.extend(plan.node_update.into_values().flatten());
    if still_blocked {
        eval.status = EVAL_STATUS_BLOCKED.into();
    } else if !eval.terminal() && eval.status != EVAL_STATUS_BLOCKED {
        eval.status = EVAL_STATUS_COMPLETE.into();
    }
    eval.modify_time = now;
    let mut evals = vec![eval];
    if !still_blocked {
        if let Some(mut b) = blocked_eval {
            b.status = EVAL_STATUS_BLOCKED.into();
            if b.create_time == 0 {
                b.create_time = now;
            }
            if b.modify_time == 0 {
                b.modify_time = now;
            }
            evals.push(b);
        }
    }
    for mut f in follow_up_evals {
        if f.status.is_empty() {
            f.status = EVAL_STATUS_PENDING.into();
        }
        if f.create_time == 0 {
            f.create_time = now;
            f.modify_time = now;
        }
        evals.push(f);
    }
    Command::PlanApply {
        allocs_upsert: allocs,
        allocs_stop: vec![],
        evals,
        now,
    }
}
