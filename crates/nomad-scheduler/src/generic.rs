//! The generic scheduler (service and batch): reconcile each task group's existing allocs with
//! its count, then place what is missing.
//!
//! Reschedule delays: a failed alloc whose reschedule time (failure time + policy delay) is
//! within a second, or whose FollowupEvalID is the eval being processed, is replaced now;
//! otherwise a follow-up eval (`alloc-failure`, WaitUntil = reschedule time) is returned and the
//! failed alloc is updated with its FollowupEvalID.
//! Destructive updates are not rolled by `update.max_parallel`: all happen in one pass.

use std::collections::{BTreeMap, BTreeSet};

use nomad_structs::{
    Allocation, Job, ReschedulePolicy, TaskGroup, ALLOC_CLIENT_COMPLETE, ALLOC_CLIENT_FAILED,
    ALLOC_CLIENT_LOST,
};

use crate::context::{PlaceRequest, Sched};
use crate::desc;

const NS_PER_SEC: i64 = 1_000_000_000;
/// Past reschedule events kept for groups with unlimited rescheduling.
const MAX_PAST_RESCHEDULE_EVENTS: usize = 5;
/// A reschedule due within this window happens now.
const RESCHEDULE_WINDOW_NS: i64 = NS_PER_SEC;

/// What to do with one slot (name index) of a group.
#[derive(Debug, Clone)]
enum Slot {
    /// Running as wanted.
    Keep,
    /// Terminal but counts (batch success, failed without reschedule attempts left).
    Done,
    /// Same group spec, newer job: rewrite in place.
    InPlace,
    /// Changed group spec: stop and replace.
    Destructive,
    /// Failed and may be rescheduled now; carries the reschedule delay (ns).
    Reschedule(i64),
    /// Failed, to be rescheduled at the given time (unix ns) by a follow-up eval.
    RescheduleLater(i64),
    /// Its node is down: stop as lost and replace.
    Lost,
    /// On a draining node and marked for migration: stop and replace.
    Migrate,
}

pub(crate) fn schedule(s: &mut Sched<'_, '_>, job: Option<&Job>) {
    let mut allocs = s.state.allocs_by_job(&s.eval.namespace, &s.eval.job_id);
    allocs.sort_by(|a, b| {
        (a.index(), a.create_index, &a.id).cmp(&(b.index(), b.create_index, &b.id))
    });
    let Some(job) = job.filter(|j| !j.stop) else {
        for a in allocs.iter().filter(|a| !a.terminal()) {
            s.stop(a, desc::ALLOC_NOT_NEEDED, None);
        }
        return;
    };
    let mut by_group: BTreeMap<String, Vec<Allocation>> = BTreeMap::new();
    for a in allocs {
        by_group.entry(a.task_group.clone()).or_default().push(a);
    }
    // Groups the job no longer has.
    for (name, allocs) in &by_group {
        if job.lookup_task_group(name).is_none() {
            for a in allocs.iter().filter(|a| !a.terminal()) {
                s.stop(a, desc::ALLOC_NOT_NEEDED, None);
            }
        }
    }
    for tg in &job.task_groups {
        let existing = by_group.remove(&tg.name).unwrap_or_default();
        reconcile_group(s, job, tg, existing);
    }
}

fn reconcile_group(s: &mut Sched<'_, '_>, job: &Job, tg: &TaskGroup, allocs: Vec<Allocation>) {
    let now = s.now();
    let batch = job.is_batch_like();
    let mut slots: Vec<(u64, Slot, Allocation)> = Vec::new();
    for a in allocs {
        if a.server_terminal() {
            continue;
        }
        let slot = match a.client_status.as_str() {
            ALLOC_CLIENT_COMPLETE if batch => Slot::Done,
            ALLOC_CLIENT_COMPLETE | ALLOC_CLIENT_LOST => continue,
            ALLOC_CLIENT_FAILED => {
                if !a.next_allocation.is_empty() {
                    continue; // already replaced
                }
                match reschedule_delay(&a, tg, job, now) {
                    Some(delay) => {
                        let at = failed_at(&a, now).saturating_add(delay);
                        if at <= now + RESCHEDULE_WINDOW_NS || a.followup_eval_id == s.eval.id {
                            Slot::Reschedule(delay)
                        } else if !a.followup_eval_id.is_empty() {
                            Slot::Done // a follow-up eval is already waiting for it
                        } else {
                            Slot::RescheduleLater(at)
                        }
                    }
                    None => Slot::Done,
                }
            }
            _ => {
                if s.node_lost(&a.node_id) {
                    Slot::Lost
                } else if a.desired_transition.migrate == Some(true) {
                    // As Nomad: a live alloc marked for migration (by the node drainer)
                    // always moves, even once the drain itself is over.
                    Slot::Migrate
                } else if needs_update(&a, job) {
                    if destructive(s, &a, job, tg) {
                        Slot::Destructive
                    } else {
                        Slot::InPlace
                    }
                } else {
                    Slot::Keep
                }
            }
        };
        slots.push((a.index(), slot, a));
    }

    // Scale down: drop the slots that would need a replacement first, then the highest indexes.
    let count = tg.count() as usize;
    if slots.len() > count {
        let mut removable: Vec<usize> = (0..slots.len())
            .filter(|&i| !matches!(slots[i].1, Slot::Done))
            .collect();
        removable.sort_by_key(|&i| {
            let needs_replacement = matches!(
                slots[i].1,
                Slot::Lost | Slot::Reschedule(_) | Slot::RescheduleLater(_)
            );
            (!needs_replacement, std::cmp::Reverse(slots[i].0))
        });
        let excess = slots.len() - count;
        let drop: BTreeSet<usize> = removable.into_iter().take(excess).collect();
        let mut kept = Vec::new();
        for (i, (idx, slot, a)) in slots.into_iter().enumerate() {
            if !drop.contains(&i) {
                kept.push((idx, slot, a));
                continue;
            }
            match slot {
                Slot::Lost => s.stop(&a, desc::ALLOC_LOST, Some(ALLOC_CLIENT_LOST)),
                _ => s.stop(&a, desc::ALLOC_NOT_NEEDED, None),
            }
        }
        slots = kept;
    }

    // In-place updates and lost stops first, so placements see the freed resources.
    let mut later: BTreeMap<i64, Vec<Allocation>> = BTreeMap::new();
    for (_, slot, a) in &slots {
        match slot {
            Slot::RescheduleLater(at) => later.entry(*at).or_default().push(a.clone()),
            Slot::InPlace => {
                let mut u = a.clone();
                u.job = Some(Box::new(job.clone()));
                u.eval_id = s.eval.id.clone();
                u.modify_time = now;
                s.add_alloc(u);
            }
            Slot::Lost => s.stop(a, desc::ALLOC_LOST, Some(ALLOC_CLIENT_LOST)),
            _ => {}
        }
    }

    for (at, allocs) in later {
        let eval = s.follow_up_eval(at);
        for a in allocs {
            let mut u = a.clone();
            u.followup_eval_id = eval.id.clone();
            u.modify_time = now;
            s.add_alloc(u);
        }
        s.follow_ups.push(eval);
    }

    let used: BTreeSet<u64> = slots.iter().map(|(i, _, _)| *i).collect();
    for (idx, slot, a) in &slots {
        match slot {
            Slot::Destructive => place(
                s,
                job,
                tg,
                *idx,
                Some((a, Some(desc::ALLOC_UPDATING), None)),
            ),
            Slot::Migrate => place(
                s,
                job,
                tg,
                *idx,
                Some((a, Some(desc::ALLOC_MIGRATING), None)),
            ),
            Slot::Reschedule(delay) => place(
                s,
                job,
                tg,
                *idx,
                Some((a, Some(desc::ALLOC_RESCHEDULED), Some(*delay))),
            ),
            Slot::Lost => place(s, job, tg, *idx, Some((a, None, None))),
            Slot::Keep | Slot::Done | Slot::InPlace | Slot::RescheduleLater(_) => {}
        }
    }
    let missing = count.saturating_sub(slots.len());
    let mut next = 0u64;
    for _ in 0..missing {
        while used.contains(&next) {
            next += 1;
        }
        place(s, job, tg, next, None);
        next += 1;
    }
}

/// Places one alloc named `<job>.<group>[idx]`. `prev` is the alloc it replaces, the stop
/// description to give it if the replacement lands (None: already stopped), and the
/// reschedule delay when this is a reschedule.
fn place(
    s: &mut Sched<'_, '_>,
    job: &Job,
    tg: &TaskGroup,
    idx: u64,
    prev: Option<(&Allocation, Option<&str>, Option<i64>)>,
) {
    if s.group_failed(&tg.name) {
        // Same group, same state: it would fail the same way.
        s.record_failure(&tg.name, None);
        return;
    }
    let name = format!("{}.{}[{}]", job.id, tg.name, idx);
    if let Some((p, Some(d), _)) = prev {
        s.stop(p, d, None);
    }
    let rescheduling = matches!(prev, Some((_, _, Some(_))));
    let req = PlaceRequest {
        job,
        tg,
        name: name.clone(),
        candidates: s.ready_candidates(job),
        penalty: prev
            .filter(|_| rescheduling)
            .map(|(p, _, _)| p.node_id.clone())
            .into_iter()
            .collect(),
        anti_affinity: true,
    };
    match s.select(&req) {
        Ok(choice) => {
            let mut alloc = s.new_alloc(job, tg, name, choice);
            if let Some((p, _, delay)) = prev {
                alloc.previous_allocation = p.id.clone();
                if let Some(delay) = delay {
                    alloc.reschedule_tracker = Some(next_tracker(p, tg, job, s.now(), delay));
                }
            }
            s.add_alloc(alloc);
        }
        Err(metric) => {
            if let Some((p, Some(_), _)) = prev {
                s.unstop(p);
            }
            s.record_failure(&tg.name, Some(*metric));
        }
    }
}

fn needs_update(a: &Allocation, job: &Job) -> bool {
    a.job
        .as_ref()
        .is_none_or(|aj| aj.version != job.version || aj.create_index != job.create_index)
}

/// A changed group spec (count, scaling and update/migrate/reschedule policies aside), changed
/// job meta, or a node that no longer fits the job means a destructive update.
fn destructive(s: &Sched<'_, '_>, a: &Allocation, job: &Job, tg: &TaskGroup) -> bool {
    let Some(old_job) = a.job.as_deref() else {
        return false;
    };
    let Some(old_tg) = old_job.lookup_task_group(&tg.name) else {
        return true;
    };
    let norm = |t: &TaskGroup| {
        let mut t = t.clone();
        t.count = None;
        t.scaling = None;
        t.update = None;
        t.migrate = None;
        t.reschedule_policy = None;
        t
    };
    if norm(old_tg) != norm(tg) || old_job.meta != job.meta {
        return true;
    }
    match s.node(&a.node_id) {
        Some(node) => !s.node_feasible(job, tg, node),
        None => true,
    }
}

fn effective_policy(tg: &TaskGroup, job: &Job) -> ReschedulePolicy {
    if let Some(p) = &tg.reschedule_policy {
        return p.clone();
    }
    if job.is_batch_like() {
        ReschedulePolicy {
            attempts: Some(1),
            interval: Some(24 * 3600 * NS_PER_SEC),
            delay: Some(5 * NS_PER_SEC),
            delay_function: Some("constant".into()),
            max_delay: Some(0),
            unlimited: Some(false),
        }
    } else {
        ReschedulePolicy {
            attempts: Some(0),
            interval: Some(0),
            delay: Some(30 * NS_PER_SEC),
            delay_function: Some("exponential".into()),
            max_delay: Some(3600 * NS_PER_SEC),
            unlimited: Some(true),
        }
    }
}

/// Past reschedule events of an alloc: (time ns, delay ns).
fn past_events(a: &Allocation) -> Vec<serde_json::Value> {
    a.reschedule_tracker
        .as_ref()
        .and_then(|t| t.get("Events"))
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default()
}

fn event_time(e: &serde_json::Value) -> i64 {
    e.get("RescheduleTime")
        .and_then(|v| v.as_i64())
        .unwrap_or(0)
}

/// `Some(delay)` when the failed alloc may be rescheduled now.
fn reschedule_delay(a: &Allocation, tg: &TaskGroup, job: &Job, now: i64) -> Option<i64> {
    let p = effective_policy(tg, job);
    let events = past_events(a);
    let forced = a.desired_transition.force_reschedule == Some(true);
    if !forced && p.unlimited != Some(true) {
        let attempts = p.attempts.unwrap_or(0);
        let interval = p.interval.unwrap_or(0);
        if attempts <= 0 {
            return None;
        }
        let recent = events
            .iter()
            .filter(|e| interval <= 0 || event_time(e) > now - interval)
            .count() as i64;
        if recent >= attempts {
            return None;
        }
    }
    Some(compute_delay(&p, &events))
}

/// Delay per the policy's delay function, capped by MaxDelay (when set).
fn compute_delay(p: &ReschedulePolicy, events: &[serde_json::Value]) -> i64 {
    let base = p.delay.unwrap_or(0).max(0);
    let max = p.max_delay.unwrap_or(0);
    let last = |i: usize| {
        events
            .get(events.len().wrapping_sub(i))
            .and_then(|e| e.get("Delay"))
            .and_then(|v| v.as_i64())
    };
    let d = match p.delay_function.as_deref() {
        Some("exponential") => last(1).map_or(base, |d| d.saturating_mul(2)),
        Some("fibonacci") => match (last(1), last(2)) {
            (Some(a), Some(b)) => a.saturating_add(b),
            _ => base,
        },
        _ => base,
    };
    if max > 0 {
        d.min(max)
    } else {
        d
    }
}

fn next_tracker(
    prev: &Allocation,
    tg: &TaskGroup,
    job: &Job,
    now: i64,
    delay: i64,
) -> serde_json::Value {
    let p = effective_policy(tg, job);
    let mut events = past_events(prev);
    if p.unlimited == Some(true) {
        let skip = events.len().saturating_sub(MAX_PAST_RESCHEDULE_EVENTS - 1);
        events.drain(..skip);
    } else if let Some(interval) = p.interval.filter(|i| *i > 0) {
        events.retain(|e| event_time(e) > now - interval);
    }
    events.push(serde_json::json!({
        "RescheduleTime": now,
        "PrevAllocID": prev.id,
        "PrevNodeID": prev.node_id,
        "Delay": delay,
    }));
    serde_json::json!({ "Events": events, "LastReschedule": "ok" })
}

/// When the alloc failed: its tasks' latest FinishedAt, else its ModifyTime, else now.
fn failed_at(a: &Allocation, now: i64) -> i64 {
    let finished = a
        .task_states
        .iter()
        .flat_map(|m| m.values())
        .filter_map(|t| t.finished_at.as_deref())
        .filter_map(nomad_structs::parse_rfc3339_nanos)
        .max();
    finished
        .or(Some(a.modify_time).filter(|t| *t > 0))
        .unwrap_or(now)
}
