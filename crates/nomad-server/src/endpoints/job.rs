//! Job revert, stability and scaling (the `Revert`, `Stable`, `Scale` and `ScaleStatus` parts of
//! Nomad's `job_endpoint.go`). Each write goes through the replicated log as a [`Command`].

use nomad_state::{Command, StateSnapshot, Table};
use nomad_structs::*;

use crate::{namespace_or_default, now_nanos, pending_eval, QueryOptions, Server, ServerError};

impl Server {
    /// `PUT /v1/job/:id/revert`: registers the kept version `req.job_version` again, as a new
    /// version. Refused (Nomad's wording, 500) for an unknown job or version, for the current
    /// version, and when `EnforcePriorVersion` is not the current version.
    pub async fn job_revert(
        &self,
        namespace: &str,
        req: JobRevertRequest,
    ) -> Result<JobRegisterResponse, ServerError> {
        let namespace = namespace_or_default(namespace);
        if req.job_id.is_empty() {
            return Err(ServerError::Internal("missing job ID for revert".into()));
        }
        let snap = self.state.snapshot();
        let Some(cur) = snap.job(namespace, &req.job_id) else {
            return Err(ServerError::Internal(format!(
                "job {:?} not found",
                req.job_id
            )));
        };
        if req.job_version == cur.version {
            return Err(ServerError::Internal(
                "can't revert to current version".into(),
            ));
        }
        let Some(old) = snap.job_version(namespace, &req.job_id, req.job_version) else {
            return Err(ServerError::Internal(format!(
                "job {:?} in namespace {:?} at version {} not found",
                req.job_id, namespace, req.job_version
            )));
        };
        let mut job = (*old).clone();
        // A tag names one version; the new version must not carry it too.
        job.version_tag = None;
        let mut reg = JobRegisterRequest {
            job: Some(job),
            namespace: namespace.to_string(),
            region: req.region.clone(),
            ..Default::default()
        };
        if let Some(prior) = req.enforce_prior_version {
            if cur.version != prior {
                return Err(ServerError::Internal(format!(
                    "Current job has version {}; enforcing version {prior}",
                    cur.version
                )));
            }
            // The state machine checks this again in log order, so a register that slips in
            // between cannot be overwritten.
            reg.enforce_index = true;
            reg.job_modify_index = cur.job_modify_index;
        }
        tracing::info!(job_id = %req.job_id, namespace, version = req.job_version, "job revert");
        self.job_register(reg).await
    }

    /// `PUT /v1/job/:id/stable`: marks a kept version stable (or not). Returns the write index.
    pub async fn job_stability(
        &self,
        namespace: &str,
        req: JobStabilityRequest,
    ) -> Result<u64, ServerError> {
        let namespace = namespace_or_default(namespace);
        if req.job_id.is_empty() {
            return Err(ServerError::Internal(
                "missing job ID for marking job as stable".into(),
            ));
        }
        let snap = self.state.snapshot();
        if snap
            .job_version(namespace, &req.job_id, req.job_version)
            .is_none()
        {
            return Err(ServerError::Internal(format!(
                "job {:?} in namespace {:?} at version {} not found",
                req.job_id, namespace, req.job_version
            )));
        }
        self.apply(Command::JobStability {
            namespace: namespace.to_string(),
            job_id: req.job_id,
            version: req.job_version,
            stable: req.stable,
        })
        .await
    }

    /// `PUT /v1/job/:id/scale`: with a `Count`, a new job version with the group's count and a
    /// `job-scaling` eval; always a scaling event on the group.
    pub async fn job_scale(
        &self,
        namespace: &str,
        job_id: &str,
        req: ScalingRequest,
    ) -> Result<JobRegisterResponse, ServerError> {
        let namespace = namespace_or_default(namespace);
        req.validate(job_id, namespace)
            .map_err(ServerError::BadRequest)?;
        let snap = self.state.snapshot();
        let Some(job) = snap.job(namespace, job_id) else {
            return Err(ServerError::NotFound(format!("job {job_id:?} not found")));
        };
        if job.job_type == JOB_TYPE_SYSTEM && req.count.is_some_and(|c| c > 1) {
            return Err(ServerError::BadRequest(
                "jobs of type \"system\" can only be scaled to 1 or 0".into(),
            ));
        }
        let group_name = req.group().to_string();
        let Some(group) = job.lookup_task_group(&group_name) else {
            return Err(ServerError::BadRequest(format!(
                "task group {group_name:?} specified for scaling does not exist in job"
            )));
        };
        let now = now_nanos();
        let mut event = ScalingEvent {
            time: now,
            count: req.count,
            previous_count: group.count.unwrap_or(0),
            message: req.message.clone(),
            error: req.error,
            meta: req.meta.clone(),
            ..Default::default()
        };
        let mut resp = JobRegisterResponse {
            job_modify_index: job.modify_index,
            known_leader: true,
            ..Default::default()
        };
        if let Some(count) = req.count {
            if let Some((min, max)) = scaling_bounds(group) {
                if count < min {
                    return Err(ServerError::BadRequest(format!(
                        "group count was less than scaling policy minimum: {count} < {min}"
                    )));
                }
                if max < count {
                    return Err(ServerError::BadRequest(format!(
                        "group count was greater than scaling policy maximum: {count} > {max}"
                    )));
                }
            }
            if req.job_modify_index > 0 && req.job_modify_index != job.job_modify_index {
                return Err(ServerError::Internal(format!(
                    "Enforcing job modify index {}: job exists with conflicting job modify index: {}",
                    req.job_modify_index, job.job_modify_index
                )));
            }
            let mut scaled = (*job).clone();
            for tg in &mut scaled.task_groups {
                if tg.name == group_name {
                    tg.count = Some(count);
                }
            }
            let eval = (!job.is_periodic_or_parameterized()).then(|| {
                pending_eval(
                    namespace,
                    job_id,
                    &job.job_type,
                    job.priority,
                    TRIGGER_SCALING,
                    now,
                )
            });
            let eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
            let index = self
                .apply(Command::JobRegister {
                    job: scaled,
                    eval,
                    submission: None,
                    now,
                    enforce_index: Some(job.job_modify_index),
                })
                .await?;
            resp.job_modify_index = self
                .state
                .snapshot()
                .job(namespace, job_id)
                .map(|j| j.job_modify_index)
                .unwrap_or(index);
            if !eval_id.is_empty() {
                resp.eval_create_index = index;
                event.eval_id = Some(eval_id.clone());
                resp.eval_id = eval_id;
            }
        }
        resp.index = self
            .apply(Command::ScalingEventRegister {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                group: group_name.clone(),
                event,
            })
            .await?;
        tracing::info!(job_id, namespace, group = %group_name, count = ?req.count, eval_id = %resp.eval_id, "job scaled");
        Ok(resp)
    }

    /// `GET /v1/job/:id/scale`, blocking on the job, its allocs and its scaling events.
    /// `None` when the job does not exist.
    pub async fn job_scale_status(
        &self,
        namespace: &str,
        job_id: &str,
        opts: &QueryOptions,
    ) -> (Option<JobScaleStatus>, u64) {
        self.blocking_query_indexed(
            &[Table::Jobs, Table::Allocs, Table::ScalingEvents],
            opts,
            |snap| scale_status(snap, namespace, job_id),
        )
        .await
    }
}

/// The `Min`/`Max` of a group's `scaling` block, when it has one.
fn scaling_bounds(group: &TaskGroup) -> Option<(i64, i64)> {
    let s = group.scaling.as_ref().filter(|s| !s.is_null())?;
    let min = s
        .get("Min")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let max = s
        .get("Max")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(i64::MAX);
    Some((min, max))
}

/// Nomad's scale status: desired counts from the job, placed/running from the job's
/// non-terminal allocs, and the groups' scaling events. Healthy/Unhealthy come from
/// deployment health, and deployments are not tracked yet, so they stay 0. The index is the highest
/// of the job's ModifyIndex, the events and the allocs; for a missing job, the latest index.
pub(crate) fn scale_status(
    snap: &StateSnapshot,
    namespace: &str,
    job_id: &str,
) -> (Option<JobScaleStatus>, u64) {
    let Some(job) = snap.job(namespace, job_id) else {
        return (None, snap.latest_index());
    };
    let (mut events, events_index) = snap.scaling_events_by_job(namespace, job_id);
    let mut status = JobScaleStatus {
        job_id: job.id.clone(),
        namespace: job.namespace.clone(),
        job_create_index: job.create_index,
        job_modify_index: job.modify_index,
        job_stopped: job.stop,
        task_groups: Default::default(),
    };
    for tg in &job.task_groups {
        status.task_groups.insert(
            tg.name.clone(),
            TaskGroupScaleStatus {
                desired: tg.count.unwrap_or(0),
                events: events.remove(&tg.name),
                ..Default::default()
            },
        );
    }
    let mut allocs_index = 0;
    for a in snap.allocs_by_job(namespace, job_id) {
        if a.terminal() {
            continue;
        }
        let Some(tg) = status.task_groups.get_mut(&a.task_group) else {
            continue;
        };
        tg.placed += 1;
        if a.client_status == ALLOC_CLIENT_RUNNING {
            tg.running += 1;
        }
        allocs_index = allocs_index.max(a.modify_index);
    }
    let index = job.modify_index.max(events_index).max(allocs_index);
    (Some(status), index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nomad_state::StateStore;

    fn job() -> Job {
        let mut j = Job {
            id: "web".into(),
            job_type: JOB_TYPE_SERVICE.into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                count: Some(3),
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

    fn alloc(id: &str, client_status: &str) -> Allocation {
        Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: "web".into(),
            task_group: "g".into(),
            node_id: "n".into(),
            eval_id: "e".into(),
            desired_status: ALLOC_DESIRED_RUN.into(),
            client_status: client_status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn scale_status_counts_live_allocs_by_group() {
        let store = StateStore::new();
        store
            .apply(
                1,
                &Command::JobRegister {
                    job: job(),
                    eval: None,
                    submission: None,
                    now: 1,
                    enforce_index: None,
                },
            )
            .unwrap();
        store
            .apply(
                2,
                &Command::PlanApply {
                    allocs_upsert: vec![
                        alloc("a1", ALLOC_CLIENT_RUNNING),
                        alloc("a2", ALLOC_CLIENT_PENDING),
                        alloc("a3", ALLOC_CLIENT_FAILED),
                    ],
                    allocs_stop: vec![],
                    evals: vec![],
                    now: 2,
                },
            )
            .unwrap();
        let (status, index) = scale_status(&store.snapshot(), "default", "web");
        let status = status.expect("job exists");
        let g = &status.task_groups["g"];
        assert_eq!(
            (g.desired, g.placed, g.running, g.healthy, g.unhealthy),
            (3, 2, 1, 0, 0)
        );
        assert!(g.events.is_none());
        assert_eq!(index, 2);
        let (missing, index) = scale_status(&store.snapshot(), "default", "nope");
        assert!(missing.is_none());
        assert_eq!(index, 2);
    }

    #[test]
    fn scaling_bounds_read_the_policy() {
        let mut tg = job().task_groups.remove(0);
        assert_eq!(scaling_bounds(&tg), None);
        tg.scaling = Some(serde_json::json!({"Min": 1, "Max": 5}));
        assert_eq!(scaling_bounds(&tg), Some((1, 5)));
    }

    use crate::tests::{register, test_job};
    use crate::ServerConfig;

    fn revert(version: u64, prior: Option<u64>) -> JobRevertRequest {
        JobRevertRequest {
            job_id: "web".into(),
            job_version: version,
            enforce_prior_version: prior,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn revert_registers_the_old_version_as_a_new_one() {
        let s = Server::new(ServerConfig::default());
        s.job_register(register(test_job("web", 1))).await.unwrap();
        s.job_register(register(test_job("web", 4))).await.unwrap();
        let resp = s.job_revert("", revert(0, Some(1))).await.unwrap();
        assert!(!resp.eval_id.is_empty());
        assert_eq!(resp.eval_create_index, resp.index);
        let snap = s.state().snapshot();
        let cur = snap.job("default", "web").unwrap();
        assert_eq!((cur.version, cur.task_groups[0].count), (2, Some(1)));
        assert_eq!(cur.job_modify_index, resp.job_modify_index);
        assert_eq!(snap.job_versions("default", "web").len(), 3);

        let err = |r: Result<JobRegisterResponse, ServerError>| match r {
            Err(ServerError::Internal(m)) => m,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(
            err(s.job_revert("", revert(2, None)).await),
            "can't revert to current version"
        );
        assert_eq!(
            err(s.job_revert("", revert(9, None)).await),
            "job \"web\" in namespace \"default\" at version 9 not found"
        );
        assert_eq!(
            err(s.job_revert("", revert(1, Some(0))).await),
            "Current job has version 2; enforcing version 0"
        );
        let mut unknown = revert(0, None);
        unknown.job_id = "nope".into();
        assert_eq!(
            err(s.job_revert("", unknown).await),
            "job \"nope\" not found"
        );
    }

    #[tokio::test]
    async fn stability_needs_a_kept_version() {
        let s = Server::new(ServerConfig::default());
        s.job_register(register(test_job("web", 1))).await.unwrap();
        let req = |v| JobStabilityRequest {
            job_id: "web".into(),
            job_version: v,
            stable: true,
            ..Default::default()
        };
        let index = s.job_stability("default", req(0)).await.unwrap();
        let cur = s.state().snapshot().job("default", "web").unwrap();
        assert!(cur.stable);
        assert_eq!(cur.modify_index, index);
        assert_eq!(
            s.job_stability("default", req(3)).await,
            Err(ServerError::Internal(
                "job \"web\" in namespace \"default\" at version 3 not found".into()
            ))
        );
    }

    #[tokio::test]
    async fn scale_changes_the_count_and_records_an_event() {
        let s = Server::new(ServerConfig::default());
        s.job_register(register(test_job("web", 1))).await.unwrap();
        let scale = |count: Option<i64>, group: &str| ScalingRequest {
            count,
            target: [(SCALING_TARGET_GROUP.to_string(), group.to_string())].into(),
            message: "more".into(),
            ..Default::default()
        };
        let resp = s.job_scale("", "web", scale(Some(3), "web")).await.unwrap();
        let snap = s.state().snapshot();
        let cur = snap.job("default", "web").unwrap();
        assert_eq!((cur.version, cur.task_groups[0].count), (1, Some(3)));
        let eval = snap.eval(&resp.eval_id).expect("scaling eval");
        assert_eq!(eval.triggered_by, TRIGGER_SCALING);
        assert_eq!(eval.job_modify_index, resp.job_modify_index);
        let (status, _) = s
            .job_scale_status("default", "web", &QueryOptions::default())
            .await;
        let g = &status.expect("job exists").task_groups["web"];
        assert_eq!(g.desired, 3);
        let events = g.events.as_ref().expect("one event");
        assert_eq!((events[0].count, events[0].previous_count), (Some(3), 1));
        assert_eq!(events[0].eval_id.as_deref(), Some(resp.eval_id.as_str()));
        assert_eq!(events[0].message, "more");

        // A message without a count records an event only.
        let resp = s.job_scale("", "web", scale(None, "web")).await.unwrap();
        assert!(resp.eval_id.is_empty());
        assert_eq!(
            s.state().snapshot().job("default", "web").unwrap().version,
            1
        );

        assert_eq!(
            s.job_scale("", "web", scale(Some(2), "db")).await,
            Err(ServerError::BadRequest(
                "task group \"db\" specified for scaling does not exist in job".into()
            ))
        );
        assert_eq!(
            s.job_scale("", "nope", scale(Some(2), "web")).await,
            Err(ServerError::NotFound("job \"nope\" not found".into()))
        );
        assert_eq!(
            s.job_scale("", "web", scale(Some(-2), "web")).await,
            Err(ServerError::BadRequest(
                "scaling action count can't be negative".into()
            ))
        );
    }
}
