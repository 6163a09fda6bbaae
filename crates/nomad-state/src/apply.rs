//! The FSM: how each [`Command`] changes the tables (Nomad's `state_store.go` rules).

use std::collections::BTreeSet;
use std::sync::Arc;

use nomad_structs::*;

use crate::tables::{JobKey, Tables};
use crate::{Command, StateError, Table, JOB_TRACKED_VERSIONS};

/// Node event messages, as Nomad's state store writes them.
const NODE_REGISTERED: &str = "Node registered";
const NODE_REREGISTERED: &str = "Node re-registered";
const NODE_HEARTBEAT_MISSED: &str = "Node heartbeat missed";
const NODE_EVENT_SUBSYSTEM: &str = "Cluster";

impl Tables {
    pub(crate) fn apply(&mut self, index: u64, cmd: &Command) -> Result<(), StateError> {
        // Jobs whose status must be recomputed once the command is in.
        let mut touched: BTreeSet<JobKey> = BTreeSet::new();
        match cmd {
            Command::JobRegister {
                job,
                eval,
                submission,
                now,
                enforce_index,
            } => {
                if let Some(jmi) = enforce_index {
                    let existing = self
                        .jobs
                        .get(&(job.namespace.clone(), job.id.clone()))
                        .map(|j| j.job_modify_index);
                    if let Some(m) = crate::enforce_index_refusal(existing, *jmi) {
                        return Err(StateError::Refused(m));
                    }
                }
                self.job_register(
                    index,
                    job,
                    eval.as_ref(),
                    submission.as_ref(),
                    *now,
                    &mut touched,
                )?
            }
            Command::JobDeregister {
                namespace,
                job_id,
                purge,
                eval,
                now,
            } => self.job_deregister(
                index,
                namespace,
                job_id,
                *purge,
                eval.as_ref(),
                *now,
                &mut touched,
            )?,
            Command::JobStability {
                namespace,
                job_id,
                version,
                stable,
            } => self.job_stability(index, namespace, job_id, *version, *stable)?,
            Command::ScalingEventRegister {
                namespace,
                job_id,
                group,
                event,
            } => self.scaling_event_register(index, namespace, job_id, group, event)?,
            Command::EvalsUpsert { evals } => {
                for e in evals {
                    self.upsert_eval(index, e.clone(), &mut touched);
                }
            }
            Command::NodeRegister { node, now } => self.node_register(index, node, *now)?,
            Command::NodeStatusUpdate {
                node_id,
                status,
                evals,
                now,
            } => {
                self.node_status_update(index, node_id, status, *now)?;
                for e in evals {
                    self.upsert_eval(index, e.clone(), &mut touched);
                }
            }
            Command::NodeUpdateEligibility {
                node_id,
                eligibility,
                evals,
                now,
            } => {
                self.node_update_eligibility(index, node_id, eligibility, *now)?;
                for e in evals {
                    self.upsert_eval(index, e.clone(), &mut touched);
                }
            }
            Command::NodeUpdateDrain {
                node_id,
                drain_strategy,
                mark_eligible,
                drain_status,
                meta,
                accessor_id,
                event,
                evals,
                now,
            } => {
                let update = DrainUpdate {
                    strategy: drain_strategy.as_ref(),
                    mark_eligible: *mark_eligible,
                    status: drain_status,
                    meta: meta.as_ref(),
                    accessor_id,
                    event,
                };
                self.node_update_drain(index, node_id, update, *now)?;
                for e in evals {
                    self.upsert_eval(index, e.clone(), &mut touched);
                }
            }
            Command::PlanApply {
                allocs_upsert,
                allocs_stop,
                evals,
                now,
            } => {
                for a in allocs_upsert {
                    self.plan_upsert_alloc(index, a, *now, &mut touched);
                }
                for (id, desc) in allocs_stop {
                    let Some(existing) = self.allocs.get(id).cloned() else {
                        continue;
                    };
                    let mut a = (*existing).clone();
                    a.desired_status = ALLOC_DESIRED_STOP.to_string();
                    a.desired_description = desc.clone();
                    a.modify_index = index;
                    a.alloc_modify_index = index;
                    a.modify_time = *now;
                    touched.insert((a.namespace.clone(), a.job_id.clone()));
                    self.put_alloc(a);
                    self.touch(Table::Allocs, index);
                }
                for e in evals {
                    self.upsert_eval(index, e.clone(), &mut touched);
                }
            }
            Command::AllocClientUpdate { allocs, evals, now } => {
                for u in allocs {
                    self.client_update_alloc(index, u, *now, &mut touched);
                }
                for e in evals {
                    self.upsert_eval(index, e.clone(), &mut touched);
                }
            }
            Command::AllocDesiredTransition {
                alloc_ids,
                desired_status,
                desired_description,
                transition,
                evals,
                now,
            } => {
                for id in alloc_ids {
                    let Some(existing) = self.allocs.get(id).cloned() else {
                        continue;
                    };
                    let mut a = (*existing).clone();
                    merge_transition(&mut a.desired_transition, transition);
                    if let Some(s) = desired_status {
                        if *s != a.desired_status {
                            a.desired_status = s.clone();
                            a.alloc_modify_index = index;
                        }
                    }
                    if let Some(d) = desired_description {
                        a.desired_description = d.clone();
                    }
                    a.modify_index = index;
                    a.modify_time = *now;
                    touched.insert((a.namespace.clone(), a.job_id.clone()));
                    self.put_alloc(a);
                    self.touch(Table::Allocs, index);
                }
                for e in evals {
                    self.upsert_eval(index, e.clone(), &mut touched);
                }
            }
            Command::AclBootstrap { token, reset_index } => {
                self.acl_bootstrap(index, token, *reset_index)?
            }
            Command::AclTokenUpsert { tokens } => self.acl_token_upsert(index, tokens)?,
            Command::AclTokenDelete { accessor_ids } => {
                self.acl_token_delete(index, accessor_ids)?
            }
            Command::AclPolicyUpsert { policies } => self.acl_policy_upsert(index, policies)?,
            Command::AclPolicyDelete { names } => self.acl_policy_delete(index, names),
            Command::NamespaceUpsert { namespaces } => self.namespace_upsert(index, namespaces)?,
            Command::NamespaceDelete { names } => self.namespace_delete(index, names)?,
            Command::VarApply { op, var, now } => self.var_apply(index, *op, var, *now)?,
            Command::Restore { state } => {
                let mut t = crate::persist::decode(state)?;
                let tables = [
                    Table::Jobs,
                    Table::JobSummary,
                    Table::Evals,
                    Table::Allocs,
                    Table::Nodes,
                    Table::AclTokens,
                    Table::AclPolicies,
                    Table::Namespaces,
                    Table::ScalingEvents,
                    Table::Variables,
                ];
                for table in tables {
                    t.touch(table, index);
                }
                *self = t;
            }
        }
        for key in touched {
            self.refresh_job_status(index, &key);
        }
        Ok(())
    }

    fn job_register(
        &mut self,
        index: u64,
        job: &Job,
        eval: Option<&Evaluation>,
        submission: Option<&JobSubmission>,
        now: i64,
        touched: &mut BTreeSet<JobKey>,
    ) -> Result<(), StateError> {
        if job.id.is_empty() || job.namespace.is_empty() {
            return Err(StateError::Invalid("job without ID or namespace".into()));
        }
        if !self.namespaces.contains_key(&job.namespace) {
            return Err(StateError::Refused(format!(
                "job {:?} is in nonexistent namespace {:?}",
                job.id, job.namespace
            )));
        }
        let key: JobKey = (job.namespace.clone(), job.id.clone());
        let existing = self.jobs.get(&key).cloned();
        let new = match &existing {
            None => {
                let mut j = job.clone();
                j.create_index = index;
                j.modify_index = index;
                j.job_modify_index = index;
                j.version = 0;
                j.submit_time = now;
                Some(j)
            }
            Some(ex) if ex.spec_changed(job) => {
                let mut j = job.clone();
                j.create_index = ex.create_index;
                j.modify_index = index;
                j.job_modify_index = index;
                j.version = ex.version + 1;
                j.submit_time = now;
                j.stable = false;
                Some(j)
            }
            // Unchanged spec: the job is left alone (no new version), only the eval goes in.
            Some(_) => None,
        };
        let job_modify_index = match new {
            Some(mut j) => {
                j.status = self.compute_job_status(&j);
                j.status_description = String::new();
                let jmi = j.job_modify_index;
                self.insert_job_version(index, j, submission);
                self.ensure_summary(index, &key);
                jmi
            }
            None => existing.map(|e| e.job_modify_index).unwrap_or(index),
        };
        if let Some(e) = eval {
            let mut e = e.clone();
            e.job_modify_index = job_modify_index;
            self.upsert_eval(index, e, touched);
        }
        touched.insert(key);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn job_deregister(
        &mut self,
        index: u64,
        namespace: &str,
        job_id: &str,
        purge: bool,
        eval: Option<&Evaluation>,
        now: i64,
        touched: &mut BTreeSet<JobKey>,
    ) -> Result<(), StateError> {
        let key: JobKey = (namespace.to_string(), job_id.to_string());
        let Some(existing) = self.jobs.get(&key).cloned() else {
            return Err(StateError::NotFound("job".into()));
        };
        if purge {
            Arc::make_mut(&mut self.jobs).remove(&key);
            Arc::make_mut(&mut self.job_versions).remove(&key);
            let subs: Vec<_> = self
                .submissions
                .range((namespace.to_string(), job_id.to_string(), 0)..)
                .take_while(|((ns, j, _), _)| ns == namespace && j == job_id)
                .map(|(k, _)| k.clone())
                .collect();
            if !subs.is_empty() {
                let m = Arc::make_mut(&mut self.submissions);
                for k in subs {
                    m.remove(&k);
                }
            }
            Arc::make_mut(&mut self.job_summaries).remove(&key);
            if Arc::make_mut(&mut self.scaling_events)
                .remove(&key)
                .is_some()
            {
                self.touch(Table::ScalingEvents, index);
            }
            self.touch(Table::Jobs, index);
            self.touch(Table::JobSummary, index);
        } else if !existing.stop {
            // Stopping is a spec change: Nomad writes a new version with Stop set.
            let mut j = (*existing).clone();
            j.stop = true;
            j.modify_index = index;
            j.job_modify_index = index;
            j.version = existing.version + 1;
            j.submit_time = now;
            j.stable = false;
            j.status = self.compute_job_status(&j);
            self.insert_job_version(index, j, None);
            touched.insert(key.clone());
        }
        if let Some(e) = eval {
            let mut e = e.clone();
            e.job_modify_index = index;
            self.upsert_eval(index, e, touched);
        }
        Ok(())
    }

    /// Sets `Stable` on a kept version (and on the current job when it is that version).
    /// The version number and JobModifyIndex stay; ModifyIndex moves so readers see it.
    fn job_stability(
        &mut self,
        index: u64,
        namespace: &str,
        job_id: &str,
        version: u64,
        stable: bool,
    ) -> Result<(), StateError> {
        let key: JobKey = (namespace.to_string(), job_id.to_string());
        let Some(pos) = self
            .job_versions
            .get(&key)
            .and_then(|v| v.iter().position(|j| j.version == version))
        else {
            return Err(StateError::Refused(format!(
                "job {job_id:?} in namespace {namespace:?} at version {version} not found"
            )));
        };
        let versions = Arc::make_mut(&mut self.job_versions)
            .get_mut(&key)
            .expect("the version was found above");
        let v = Arc::make_mut(versions);
        if v[pos].stable == stable {
            return Ok(());
        }
        let mut j = (*v[pos]).clone();
        j.stable = stable;
        j.modify_index = index;
        let j = Arc::new(j);
        v[pos] = j.clone();
        if self
            .jobs
            .get(&key)
            .is_some_and(|cur| cur.version == version)
        {
            Arc::make_mut(&mut self.jobs).insert(key, j);
        }
        self.touch(Table::Jobs, index);
        Ok(())
    }

    /// Puts a scaling event at the head of its group's events (the job must exist).
    fn scaling_event_register(
        &mut self,
        index: u64,
        namespace: &str,
        job_id: &str,
        group: &str,
        event: &ScalingEvent,
    ) -> Result<(), StateError> {
        let key: JobKey = (namespace.to_string(), job_id.to_string());
        if !self.jobs.contains_key(&key) {
            return Err(StateError::Refused(format!(
                "job {job_id:?} in namespace {namespace:?} not found"
            )));
        }
        let mut event = event.clone();
        event.create_index = index;
        let groups = Arc::make_mut(&mut self.scaling_events)
            .entry(key)
            .or_default();
        let events = Arc::make_mut(groups).entry(group.to_string()).or_default();
        events.insert(0, event);
        events.truncate(JOB_TRACKED_SCALING_EVENTS);
        self.touch(Table::ScalingEvents, index);
        Ok(())
    }

    /// Stores `job` as the current version and at the head of its history.
    fn insert_job_version(&mut self, index: u64, job: Job, submission: Option<&JobSubmission>) {
        let key: JobKey = (job.namespace.clone(), job.id.clone());
        let job = Arc::new(job);
        let versions = Arc::make_mut(&mut self.job_versions)
            .entry(key.clone())
            .or_default();
        let v = Arc::make_mut(versions);
        // A purged and re-registered job restarts at version 0: drop the old history.
        if v.first()
            .is_some_and(|prev| prev.create_index != job.create_index)
        {
            v.clear();
        }
        v.retain(|old| old.version != job.version);
        v.insert(0, job.clone());
        v.truncate(JOB_TRACKED_VERSIONS);
        let kept: BTreeSet<u64> = v.iter().map(|j| j.version).collect();
        if let Some(s) = submission {
            Arc::make_mut(&mut self.submissions).insert(
                (key.0.clone(), key.1.clone(), job.version),
                Arc::new(s.clone()),
            );
        }
        let stale: Vec<_> = self
            .submissions
            .range((key.0.clone(), key.1.clone(), 0)..)
            .take_while(|((ns, j, _), _)| *ns == key.0 && *j == key.1)
            .filter(|((_, _, ver), _)| !kept.contains(ver))
            .map(|(k, _)| k.clone())
            .collect();
        if !stale.is_empty() {
            let m = Arc::make_mut(&mut self.submissions);
            for k in stale {
                m.remove(&k);
            }
        }
        Arc::make_mut(&mut self.jobs).insert(key, job);
        self.touch(Table::Jobs, index);
    }

    /// Creates the job's summary, or adds groups the job gained.
    fn ensure_summary(&mut self, index: u64, key: &JobKey) {
        let Some(job) = self.jobs.get(key).cloned() else {
            return;
        };
        let mut summary = match self.job_summaries.get(key) {
            Some(s) => (**s).clone(),
            None => JobSummary {
                job_id: job.id.clone(),
                namespace: job.namespace.clone(),
                summary: Default::default(),
                children: None,
                create_index: index,
                modify_index: index,
            },
        };
        let before = summary.clone();
        for tg in &job.task_groups {
            summary.summary.entry(tg.name.clone()).or_default();
        }
        if self.job_summaries.contains_key(key) && before == summary {
            return;
        }
        summary.modify_index = index;
        Arc::make_mut(&mut self.job_summaries).insert(key.clone(), Arc::new(summary));
        self.touch(Table::JobSummary, index);
    }

    /// Nomad's eval upsert: indexes, queued counts, and cancelling superseded blocked evals.
    fn upsert_eval(&mut self, index: u64, mut eval: Evaluation, touched: &mut BTreeSet<JobKey>) {
        eval.create_index = self.evals.get(&eval.id).map_or(index, |e| e.create_index);
        eval.modify_index = index;
        let key: JobKey = (eval.namespace.clone(), eval.job_id.clone());

        if let Some(queued) = &eval.queued_allocations {
            if let Some(s) = self.job_summaries.get(&key) {
                let mut s = (**s).clone();
                let mut changed = false;
                for (tg, n) in queued {
                    if let Some(tgs) = s.summary.get_mut(tg) {
                        if tgs.queued != *n {
                            tgs.queued = *n;
                            changed = true;
                        }
                    }
                }
                if changed {
                    s.modify_index = index;
                    Arc::make_mut(&mut self.job_summaries).insert(key.clone(), Arc::new(s));
                    self.touch(Table::JobSummary, index);
                }
            }
        }

        // A successful eval makes the job's blocked evals moot; a new blocked eval replaces
        // the job's older one (at most one blocked eval per job).
        let successful = eval.status == EVAL_STATUS_COMPLETE
            && eval.failed_tg_allocs.as_ref().is_none_or(|f| f.is_empty());
        let blocked = eval.status == EVAL_STATUS_BLOCKED;
        if successful || blocked {
            let description = if successful {
                format!("evaluation {:?} successful", eval.id)
            } else {
                format!("superseded by blocked evaluation {:?}", eval.id)
            };
            let others: Vec<Arc<Evaluation>> = self
                .eval_ids_by_job(&key.0, &key.1)
                .into_iter()
                .filter(|id| *id != eval.id)
                .filter_map(|id| self.evals.get(&id).cloned())
                .filter(|e| e.status == EVAL_STATUS_BLOCKED)
                .collect();
            for other in others {
                let mut o = (*other).clone();
                o.status = EVAL_STATUS_CANCELED.to_string();
                o.status_description = description.clone();
                o.modify_index = index;
                o.modify_time = eval.modify_time.max(o.modify_time);
                self.put_eval(o);
            }
        }

        self.put_eval(eval);
        self.touch(Table::Evals, index);
        touched.insert(key);
    }

    /// An alloc from a plan: new placements, in-place updates, and stops/evictions of existing
    /// allocs. The client-side fields of an existing alloc are kept (the plan's copy may be
    /// stale), except a scheduler-set `lost`/`unknown` client status.
    fn plan_upsert_alloc(
        &mut self,
        index: u64,
        alloc: &Allocation,
        now: i64,
        touched: &mut BTreeSet<JobKey>,
    ) {
        let mut a = alloc.clone();
        let existing = self.allocs.get(&a.id).cloned();
        match &existing {
            None => {
                a.create_index = index;
                if a.create_time == 0 {
                    a.create_time = now;
                }
                if a.client_status.is_empty() {
                    a.client_status = ALLOC_CLIENT_PENDING.to_string();
                }
                if a.desired_status.is_empty() {
                    a.desired_status = ALLOC_DESIRED_RUN.to_string();
                }
            }
            Some(ex) => {
                a.create_index = ex.create_index;
                a.create_time = ex.create_time;
                a.task_states = ex.task_states.clone();
                let scheduler_status = matches!(
                    a.client_status.as_str(),
                    ALLOC_CLIENT_LOST | ALLOC_CLIENT_UNKNOWN
                ) && a.client_status != ex.client_status
                    && !ex.client_terminal();
                if !scheduler_status {
                    a.client_status = ex.client_status.clone();
                    a.client_description = ex.client_description.clone();
                } else if a.client_description.is_empty() {
                    a.client_description = ex.client_description.clone();
                }
                if a.job.is_none() {
                    a.job = ex.job.clone();
                }
                if a.desired_status.is_empty() {
                    a.desired_status = ex.desired_status.clone();
                }
            }
        }
        if a.job.is_none() {
            a.job = self
                .jobs
                .get(&(a.namespace.clone(), a.job_id.clone()))
                .map(|j| Box::new((**j).clone()));
        }
        a.modify_index = index;
        a.alloc_modify_index = index;
        a.modify_time = now;
        self.summary_on_alloc(index, existing.as_deref(), &a);
        touched.insert((a.namespace.clone(), a.job_id.clone()));
        self.put_alloc(a);
        self.touch(Table::Allocs, index);
    }

    /// Merges what the client reports into the server's copy (Nomad's `nestedUpdateAllocFromClient`).
    fn client_update_alloc(
        &mut self,
        index: u64,
        update: &Allocation,
        now: i64,
        touched: &mut BTreeSet<JobKey>,
    ) {
        // Unknown allocs (already garbage collected) are ignored, as Nomad does.
        let Some(existing) = self.allocs.get(&update.id).cloned() else {
            return;
        };
        let mut a = (*existing).clone();
        if !update.client_status.is_empty() {
            a.client_status = update.client_status.clone();
        }
        a.client_description = update.client_description.clone();
        if update.task_states.is_some() {
            a.task_states = update.task_states.clone();
        }
        a.modify_index = index;
        a.modify_time = now;
        self.summary_on_alloc(index, Some(&existing), &a);
        touched.insert((a.namespace.clone(), a.job_id.clone()));
        self.put_alloc(a);
        self.touch(Table::Allocs, index);
    }

    /// Moves the alloc between the summary's buckets when its client status changed.
    fn summary_on_alloc(&mut self, index: u64, old: Option<&Allocation>, new: &Allocation) {
        let key: JobKey = (new.namespace.clone(), new.job_id.clone());
        let Some(s) = self.job_summaries.get(&key) else {
            return;
        };
        let mut s = (**s).clone();
        let Some(tg) = s.summary.get_mut(&new.task_group) else {
            return;
        };
        match old {
            None => {
                if let Some(b) = bucket(tg, &new.client_status) {
                    *b += 1;
                }
                if new.client_status == ALLOC_CLIENT_PENDING && tg.queued > 0 {
                    tg.queued -= 1;
                }
            }
            Some(old) if old.client_status != new.client_status => {
                if let Some(b) = bucket(tg, &new.client_status) {
                    *b += 1;
                }
                if let Some(b) = bucket(tg, &old.client_status) {
                    if *b > 0 {
                        *b -= 1;
                    }
                }
            }
            Some(_) => return,
        }
        s.modify_index = index;
        Arc::make_mut(&mut self.job_summaries).insert(key, Arc::new(s));
        self.touch(Table::JobSummary, index);
    }

    fn node_register(&mut self, index: u64, node: &Node, now: i64) -> Result<(), StateError> {
        if node.id.is_empty() {
            return Err(StateError::Invalid("node without ID".into()));
        }
        let mut n = node.clone();
        let secs = if n.status_updated_at != 0 {
            n.status_updated_at
        } else {
            now.div_euclid(1_000_000_000)
        };
        let event = |message: &str| NodeEvent {
            message: message.to_string(),
            subsystem: NODE_EVENT_SUBSYSTEM.to_string(),
            details: None,
            timestamp: Some(rfc3339_nanos(secs * 1_000_000_000)),
            create_index: index,
        };
        match self.nodes.get(&n.id).cloned() {
            Some(ex) => {
                n.create_index = ex.create_index;
                n.events = ex.events.clone();
                if ex.status == NODE_STATUS_DOWN && n.status != NODE_STATUS_DOWN {
                    n.events
                        .get_or_insert_with(Vec::new)
                        .push(event(NODE_REREGISTERED));
                }
                // Operator-owned fields survive a client re-registration.
                if !ex.scheduling_eligibility.is_empty() {
                    n.scheduling_eligibility = ex.scheduling_eligibility.clone();
                }
                n.drain_strategy = ex.drain_strategy.clone();
                n.last_drain = ex.last_drain.clone();
            }
            None => {
                n.create_index = index;
                n.events = Some(vec![event(NODE_REGISTERED)]);
            }
        }
        if n.scheduling_eligibility.is_empty() {
            n.scheduling_eligibility = NODE_ELIGIBLE.to_string();
        }
        if n.status.is_empty() {
            n.status = NODE_STATUS_INIT.to_string();
        }
        n.status_updated_at = secs;
        n.modify_index = index;
        Arc::make_mut(&mut self.nodes).insert(n.id.clone(), Arc::new(n));
        self.touch(Table::Nodes, index);
        Ok(())
    }

    fn node_status_update(
        &mut self,
        index: u64,
        node_id: &str,
        status: &str,
        now: i64,
    ) -> Result<(), StateError> {
        let Some(ex) = self.nodes.get(node_id).cloned() else {
            return Err(StateError::NotFound("node".into()));
        };
        let mut n = (*ex).clone();
        let secs = now.div_euclid(1_000_000_000);
        if n.status != status {
            let message = match status {
                NODE_STATUS_DOWN => Some(NODE_HEARTBEAT_MISSED),
                NODE_STATUS_READY if n.status == NODE_STATUS_DOWN => Some(NODE_REREGISTERED),
                _ => None,
            };
            if let Some(m) = message {
                n.events.get_or_insert_with(Vec::new).push(NodeEvent {
                    message: m.to_string(),
                    subsystem: NODE_EVENT_SUBSYSTEM.to_string(),
                    details: None,
                    timestamp: Some(rfc3339_nanos(secs * 1_000_000_000)),
                    create_index: index,
                });
            }
        }
        n.status = status.to_string();
        n.status_updated_at = secs;
        n.modify_index = index;
        Arc::make_mut(&mut self.nodes).insert(n.id.clone(), Arc::new(n));
        self.touch(Table::Nodes, index);
        Ok(())
    }

    fn node_update_eligibility(
        &mut self,
        index: u64,
        node_id: &str,
        eligibility: &str,
        now: i64,
    ) -> Result<(), StateError> {
        if eligibility != NODE_ELIGIBLE && eligibility != NODE_INELIGIBLE {
            return Err(StateError::Invalid(format!(
                "invalid scheduling eligibility {eligibility:?}"
            )));
        }
        let Some(ex) = self.nodes.get(node_id).cloned() else {
            return Err(StateError::NotFound("node".into()));
        };
        let mut n = (*ex).clone();
        if n.scheduling_eligibility != eligibility {
            let message = if eligibility == NODE_ELIGIBLE {
                "Node marked as eligible for scheduling"
            } else {
                "Node marked as ineligible for scheduling"
            };
            n.events.get_or_insert_with(Vec::new).push(NodeEvent {
                message: message.to_string(),
                subsystem: "Cluster".to_string(),
                details: None,
                timestamp: Some(rfc3339_nanos(now)),
                create_index: index,
            });
        }
        n.scheduling_eligibility = eligibility.to_string();
        n.modify_index = index;
        Arc::make_mut(&mut self.nodes).insert(n.id.clone(), Arc::new(n));
        self.touch(Table::Nodes, index);
        Ok(())
    }

    fn node_update_drain(
        &mut self,
        index: u64,
        node_id: &str,
        u: DrainUpdate<'_>,
        now: i64,
    ) -> Result<(), StateError> {
        let Some(ex) = self.nodes.get(node_id).cloned() else {
            return Err(StateError::NotFound("node".into()));
        };
        let mut n = (*ex).clone();
        let at = rfc3339_nanos(now);
        match u.strategy {
            Some(strategy) => {
                n.scheduling_eligibility = NODE_INELIGIBLE.to_string();
                // A new drain starts a new record; an update to a running one keeps its start.
                let last = n
                    .last_drain
                    .take()
                    .filter(|d| d.status == DRAIN_STATUS_DRAINING)
                    .unwrap_or_else(|| DrainMetadata {
                        started_at: at.clone(),
                        status: DRAIN_STATUS_DRAINING.to_string(),
                        ..Default::default()
                    });
                n.last_drain = Some(DrainMetadata {
                    updated_at: at.clone(),
                    accessor_id: u.accessor_id.to_string(),
                    meta: u.meta.cloned(),
                    ..last
                });
                n.drain_strategy = Some(strategy.clone());
            }
            None => {
                if u.mark_eligible {
                    n.scheduling_eligibility = NODE_ELIGIBLE.to_string();
                }
                if n.drain_strategy.take().is_some() {
                    if let Some(last) = n.last_drain.as_mut() {
                        last.status = u.status.to_string();
                        last.updated_at = at.clone();
                        if u.meta.is_some() {
                            last.meta = u.meta.cloned();
                        }
                    }
                }
            }
        }
        if !u.event.is_empty() {
            n.events.get_or_insert_with(Vec::new).push(NodeEvent {
                message: u.event.to_string(),
                subsystem: "Drain".to_string(),
                details: None,
                timestamp: Some(at),
                create_index: index,
            });
        }
        n.modify_index = index;
        Arc::make_mut(&mut self.nodes).insert(n.id.clone(), Arc::new(n));
        self.touch(Table::Nodes, index);
        Ok(())
    }

    fn var_apply(
        &mut self,
        index: u64,
        op: crate::VarOp,
        var: &Variable,
        now: i64,
    ) -> Result<(), StateError> {
        use crate::VarOp;
        let key = (var.meta.namespace.clone(), var.meta.path.clone());
        let existing = self.variables.get(&key).cloned();
        if matches!(op, VarOp::Cas | VarOp::DeleteCas) {
            let current = existing.as_ref().map_or(0, |v| v.meta.modify_index);
            if current != var.meta.modify_index {
                return Err(StateError::Refused(crate::VAR_CAS_CONFLICT.into()));
            }
        }
        match op {
            VarOp::Set | VarOp::Cas => {
                let (create_index, create_time) = existing
                    .as_ref()
                    .map_or((index, now), |e| (e.meta.create_index, e.meta.create_time));
                let stored = Variable {
                    meta: VariableMetadata {
                        namespace: key.0.clone(),
                        path: key.1.clone(),
                        create_index,
                        create_time,
                        modify_index: index,
                        modify_time: now,
                    },
                    items: var.items.clone(),
                };
                Arc::make_mut(&mut self.variables).insert(key, Arc::new(stored));
            }
            VarOp::Delete | VarOp::DeleteCas => {
                if existing.is_none() {
                    return Ok(());
                }
                Arc::make_mut(&mut self.variables).remove(&key);
            }
        }
        self.touch(Table::Variables, index);
        Ok(())
    }

    /// Nomad's job status rules (`getJobStatus`).
    pub(crate) fn compute_job_status(&self, job: &Job) -> String {
        if job.job_type == JOB_TYPE_SYSTEM || job.is_periodic_or_parameterized() {
            return if job.stop {
                JOB_STATUS_DEAD
            } else {
                JOB_STATUS_RUNNING
            }
            .to_string();
        }
        let mut has_alloc = false;
        for id in self.alloc_ids_by_job(&job.namespace, &job.id) {
            if let Some(a) = self.allocs.get(&id) {
                if !a.terminal() {
                    return JOB_STATUS_RUNNING.to_string();
                }
                has_alloc = true;
            }
        }
        let mut has_eval = false;
        for id in self.eval_ids_by_job(&job.namespace, &job.id) {
            if let Some(e) = self.evals.get(&id) {
                if !e.terminal() {
                    return JOB_STATUS_PENDING.to_string();
                }
                has_eval = true;
            }
        }
        if has_eval || has_alloc || job.stop {
            JOB_STATUS_DEAD.to_string()
        } else {
            JOB_STATUS_PENDING.to_string()
        }
    }

    fn refresh_job_status(&mut self, index: u64, key: &JobKey) {
        let Some(job) = self.jobs.get(key).cloned() else {
            return;
        };
        let status = self.compute_job_status(&job);
        if status == job.status {
            return;
        }
        let mut j = (*job).clone();
        j.status = status;
        j.modify_index = index;
        Arc::make_mut(&mut self.jobs).insert(key.clone(), Arc::new(j));
        self.touch(Table::Jobs, index);
    }
}

fn bucket<'a>(tg: &'a mut TaskGroupSummary, client_status: &str) -> Option<&'a mut i64> {
    match client_status {
        ALLOC_CLIENT_PENDING => Some(&mut tg.starting),
        ALLOC_CLIENT_RUNNING => Some(&mut tg.running),
        ALLOC_CLIENT_COMPLETE => Some(&mut tg.complete),
        ALLOC_CLIENT_FAILED => Some(&mut tg.failed),
        ALLOC_CLIENT_LOST => Some(&mut tg.lost),
        ALLOC_CLIENT_UNKNOWN => Some(&mut tg.unknown),
        _ => None,
    }
}

/// Fields set in `update` override; unset ones keep their value.
fn merge_transition(into: &mut DesiredTransition, update: &DesiredTransition) {
    if update.migrate.is_some() {
        into.migrate = update.migrate;
    }
    if update.reschedule.is_some() {
        into.reschedule = update.reschedule;
    }
    if update.force_reschedule.is_some() {
        into.force_reschedule = update.force_reschedule;
    }
    if update.no_shutdown_delay.is_some() {
        into.no_shutdown_delay = update.no_shutdown_delay;
    }
    if update.migrate_disable_placement.is_some() {
        into.migrate_disable_placement = update.migrate_disable_placement;
    }
}

/// The parts of [`Command::NodeUpdateDrain`] the node itself takes.
struct DrainUpdate<'a> {
    strategy: Option<&'a DrainStrategy>,
    mark_eligible: bool,
    status: &'a str,
    meta: Option<&'a std::collections::BTreeMap<String, String>>,
    accessor_id: &'a str,
    event: &'a str,
}
