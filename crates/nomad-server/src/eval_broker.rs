//! The eval broker: pending evals wait here for a scheduler worker, at most one in flight per
//! job; blocked evals wait for capacity; delayed evals wait for their `WaitUntil`.
//!
//! The broker is in-memory leader state, rebuilt from the state store when the server starts
//! (`Server::run`). It only holds eval IDs; workers read the eval itself from a snapshot.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use nomad_structs::{Evaluation, EVAL_STATUS_BLOCKED, EVAL_STATUS_PENDING};
use tokio::sync::Notify;
use tokio::time::Instant;

/// (namespace, job ID).
pub(crate) type JobKey = (String, String);

/// An eval as the broker tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EvalRef {
    pub(crate) id: String,
    pub(crate) job: JobKey,
    pub(crate) priority: i32,
}

impl EvalRef {
    pub(crate) fn of(e: &Evaluation) -> Self {
        EvalRef {
            id: e.id.clone(),
            job: (e.namespace.clone(), e.job_id.clone()),
            priority: e.priority,
        }
    }
}

/// A dequeued eval: hand it back with [`EvalBroker::ack`].
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) eval: EvalRef,
}

#[derive(Debug, Default)]
struct Inner {
    seq: u64,
    /// Ready evals by (priority desc, arrival).
    ready: BTreeMap<(Reverse<i32>, u64), EvalRef>,
    /// Evals that arrived while their job had an eval in flight, in arrival order.
    waiting: HashMap<JobKey, VecDeque<EvalRef>>,
    /// The eval in flight per job, with the unblock epoch at dequeue time.
    in_flight: HashMap<JobKey, (String, u64)>,
    /// Evals the broker already holds (ready, waiting, in flight or delayed).
    known: HashSet<String>,
    /// The blocked eval per job.
    blocked: HashMap<JobKey, EvalRef>,
    /// Delayed evals by due time.
    delayed: BTreeMap<(Instant, u64), EvalRef>,
    /// Bumped by every unblock, so an eval blocked by a pass that started before the unblock
    /// is retried instead of missing the capacity change.
    epoch: u64,
    /// In-flight evals to run again when acked (they re-blocked after a concurrent unblock).
    requeue: HashSet<String>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct EvalBroker {
    inner: Mutex<Inner>,
    /// Wakes workers when an eval becomes ready.
    pub(crate) ready_notify: Notify,
    /// Wakes the delay timer when a delayed eval arrives.
    pub(crate) delay_notify: Notify,
}

impl EvalBroker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes an eval the state now holds: pending → ready (or delayed), blocked → blocked set.
    pub(crate) fn observe(&self, e: &Evaluation, delay_until: Option<Instant>) {
        match e.status.as_str() {
            EVAL_STATUS_PENDING => match delay_until {
                Some(at) if at > Instant::now() => self.delay(EvalRef::of(e), at),
                _ => self.enqueue(EvalRef::of(e)),
            },
            EVAL_STATUS_BLOCKED => self.block(EvalRef::of(e)),
            _ => {}
        }
    }

    /// Makes an eval ready (or waiting behind its job's in-flight eval). Duplicates are ignored.
    pub(crate) fn enqueue(&self, e: EvalRef) {
        {
            let mut g = self.lock();
            if !g.known.insert(e.id.clone()) {
                return;
            }
            Self::push_ready(&mut g, e);
        }
        self.ready_notify.notify_waiters();
    }

    fn push_ready(g: &mut Inner, e: EvalRef) {
        if g.in_flight.contains_key(&e.job) {
            g.waiting.entry(e.job.clone()).or_default().push_back(e);
        } else {
            g.seq += 1;
            let seq = g.seq;
            g.ready.insert((Reverse(e.priority), seq), e);
        }
    }

    fn delay(&self, e: EvalRef, at: Instant) {
        {
            let mut g = self.lock();
            if !g.known.insert(e.id.clone()) {
                return;
            }
            g.seq += 1;
            let seq = g.seq;
            g.delayed.insert((at, seq), e);
        }
        self.delay_notify.notify_waiters();
    }

    /// Keeps a blocked eval until capacity may have changed. One per job: the newest wins.
    pub(crate) fn block(&self, e: EvalRef) {
        let retry = {
            let mut g = self.lock();
            // The pass that produced this blocked eval started before an unblock: retry now.
            let stale = g
                .in_flight
                .get(&e.job)
                .is_some_and(|(_, epoch)| *epoch < g.epoch);
            if stale {
                if g.in_flight.get(&e.job).is_some_and(|(id, _)| *id == e.id) {
                    // The eval being processed re-blocks: run it again once it is acked.
                    g.requeue.insert(e.id.clone());
                } else if g.known.insert(e.id.clone()) {
                    Self::push_ready(&mut g, e);
                }
                true
            } else {
                g.blocked.insert(e.job.clone(), e);
                false
            }
        };
        if retry {
            self.ready_notify.notify_waiters();
        }
    }

    /// Capacity may have appeared: every blocked eval becomes ready again.
    pub(crate) fn unblock_all(&self) {
        let any = {
            let mut g = self.lock();
            g.epoch += 1;
            let blocked: Vec<EvalRef> = g.blocked.drain().map(|(_, e)| e).collect();
            let any = !blocked.is_empty();
            for e in blocked {
                if g.known.insert(e.id.clone()) {
                    Self::push_ready(&mut g, e);
                }
            }
            any
        };
        if any {
            self.ready_notify.notify_waiters();
        }
    }

    /// The next ready eval whose job has nothing in flight.
    pub(crate) fn dequeue(&self) -> Option<Lease> {
        let mut g = self.lock();
        while let Some((_, e)) = g.ready.pop_first() {
            if g.in_flight.contains_key(&e.job) {
                g.waiting.entry(e.job.clone()).or_default().push_back(e);
                continue;
            }
            let epoch = g.epoch;
            g.in_flight.insert(e.job.clone(), (e.id.clone(), epoch));
            return Some(Lease { eval: e });
        }
        None
    }

    /// The worker is done with the eval: the job's next eval may run.
    pub(crate) fn ack(&self, lease: &Lease) {
        let woke = {
            let mut g = self.lock();
            g.known.remove(&lease.eval.id);
            if g.in_flight
                .get(&lease.eval.job)
                .is_some_and(|(id, _)| *id == lease.eval.id)
            {
                g.in_flight.remove(&lease.eval.job);
            }
            let requeued = g.requeue.remove(&lease.eval.id);
            if requeued {
                g.known.insert(lease.eval.id.clone());
                Self::push_ready(&mut g, lease.eval.clone());
            }
            let next = g
                .waiting
                .get_mut(&lease.eval.job)
                .and_then(VecDeque::pop_front);
            if g.waiting
                .get(&lease.eval.job)
                .is_some_and(VecDeque::is_empty)
            {
                g.waiting.remove(&lease.eval.job);
            }
            match next {
                Some(e) => {
                    Self::push_ready(&mut g, e);
                    true
                }
                None => requeued,
            }
        };
        if woke {
            self.ready_notify.notify_waiters();
        }
    }

    /// Moves due delayed evals to ready; returns when the next one is due.
    pub(crate) fn promote_due(&self, now: Instant) -> Option<Instant> {
        let (moved, next) = {
            let mut g = self.lock();
            let mut moved = false;
            while let Some((&(at, seq), _)) = g.delayed.first_key_value() {
                if at > now {
                    break;
                }
                if let Some(e) = g.delayed.remove(&(at, seq)) {
                    Self::push_ready(&mut g, e);
                    moved = true;
                }
            }
            (moved, g.delayed.first_key_value().map(|(&(at, _), _)| at))
        };
        if moved {
            self.ready_notify.notify_waiters();
        }
        next
    }

    /// Forgets everything (leadership lost, or the state was replaced). A lease handed out
    /// before may still be acked: that is a no-op.
    pub(crate) fn clear(&self) {
        *self.lock() = Inner::default();
        self.ready_notify.notify_waiters();
        self.delay_notify.notify_waiters();
    }

    /// Counts (ready + waiting, in flight, blocked, delayed), for tests and metrics.
    pub(crate) fn stats(&self) -> (usize, usize, usize, usize) {
        let g = self.lock();
        (
            g.ready.len() + g.waiting.values().map(VecDeque::len).sum::<usize>(),
            g.in_flight.len(),
            g.blocked.len(),
            g.delayed.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, job: &str, priority: i32) -> EvalRef {
        EvalRef {
            id: id.into(),
            job: ("default".into(), job.into()),
            priority,
        }
    }

    #[test]
    fn one_in_flight_per_job_and_priority_order() {
        let b = EvalBroker::default();
        b.enqueue(r("a1", "a", 50));
        b.enqueue(r("a2", "a", 50));
        b.enqueue(r("b1", "b", 80));
        b.enqueue(r("a1", "a", 50)); // duplicate
        let first = b.dequeue().unwrap();
        assert_eq!(first.eval.id, "b1");
        let second = b.dequeue().unwrap();
        assert_eq!(second.eval.id, "a1");
        assert!(b.dequeue().is_none(), "a2 waits for a1");
        b.ack(&second);
        assert_eq!(b.dequeue().unwrap().eval.id, "a2");
    }

    #[test]
    fn blocked_evals_come_back_on_unblock() {
        let b = EvalBroker::default();
        b.block(r("x1", "x", 50));
        b.block(r("x2", "x", 50));
        assert_eq!(b.stats().2, 1, "one blocked eval per job");
        b.unblock_all();
        assert_eq!(b.dequeue().unwrap().eval.id, "x2");
        assert!(b.dequeue().is_none());
    }

    #[test]
    fn block_after_concurrent_unblock_retries() {
        let b = EvalBroker::default();
        b.enqueue(r("y1", "y", 50));
        let lease = b.dequeue().unwrap();
        b.unblock_all(); // capacity changed while y1 was being scheduled
        b.block(r("y1", "y", 50));
        b.ack(&lease);
        // y1 was retried rather than parked.
        assert_eq!(b.stats().2, 0);
        assert_eq!(b.dequeue().unwrap().eval.id, "y1");
    }
}
