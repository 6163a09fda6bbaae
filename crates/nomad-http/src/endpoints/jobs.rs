//! `/v1/jobs`, `/v1/jobs/parse`, `/v1/validate/job`, `/v1/job/<id>[/<op>]`, deployments.

use axum::response::Response;
use nomad_state::{StateSnapshot, Table};
use nomad_structs::{
    canonicalize_job, multierror, validate_job, Job, JobListStub, JobRegisterRequest,
    JobRevertRequest, JobStabilityRequest, JobStabilityResponse, JobSummary, JobValidateResponse,
    JobsParseRequest, ScalingRequest,
};
use serde::{Deserialize, Serialize};

use super::{allocs::alloc_stub, require_get, require_write};
use crate::error::ApiError;
use crate::query::{decode_body, decode_optional_body, json, Meta};
use crate::Ctx;

/// `/v1/jobs`: list (GET) or register (PUT/POST).
pub(crate) async fn jobs(ctx: Ctx) -> Result<Response, ApiError> {
    if ctx.is_get() {
        list(ctx).await
    } else if ctx.is_write() {
        register(ctx, None).await
    } else {
        Err(ApiError::invalid_method())
    }
}

fn summary_or_empty(snap: &StateSnapshot, job: &Job) -> JobSummary {
    snap.job_summary(&job.namespace, &job.id)
        .unwrap_or_else(|| JobSummary {
            job_id: job.id.clone(),
            namespace: job.namespace.clone(),
            create_index: job.create_index,
            modify_index: job.modify_index,
            ..Default::default()
        })
}

async fn list(ctx: Ctx) -> Result<Response, ApiError> {
    let server = ctx.server()?;
    let ns = ctx.opts.list_namespace().map(str::to_string);
    let prefix = ctx.opts.prefix.clone();
    let with_meta = ctx.params.bool_or("meta", false)?;
    let allow = crate::auth::namespace_filter(&ctx, nomad_acl::capability::LIST_JOBS);
    let (stubs, index) = server
        .blocking_query(
            &[Table::Jobs, Table::JobSummary],
            &ctx.opts.query_options(),
            |snap| {
                snap.jobs(ns.as_deref(), &prefix)
                    .iter()
                    .filter(|j| allow(&j.namespace))
                    .map(|j| {
                        let mut s = JobListStub::new(j, summary_or_empty(snap, j));
                        if with_meta {
                            s.meta = j.meta.clone();
                        }
                        s
                    })
                    .collect::<Vec<_>>()
            },
        )
        .await;
    let (page, next_token) = ctx.opts.paginate(stubs, |s| s.id.clone());
    json(&page, ctx.pretty(), Meta::Read { index, next_token })
}

/// Register through `PUT /v1/jobs` or `PUT /v1/job/<id>` (then `path_id` must match).
async fn register(ctx: Ctx, path_id: Option<&str>) -> Result<Response, ApiError> {
    let server = ctx.server()?;
    let mut req: JobRegisterRequest = decode_body(&ctx.body)?;
    let agent_region = ctx.state.agent.region().to_string();
    let Some(job) = req.job.as_mut() else {
        return Err(ApiError::bad_request("Job must be specified"));
    };
    if job.id.is_empty() {
        return Err(ApiError::bad_request("Job ID hasn't been provided"));
    }
    if let Some(id) = path_id {
        if job.id != id {
            return Err(ApiError::bad_request("Job ID does not match name"));
        }
    }
    if req.eval_priority != 0 && !(1..=100).contains(&req.eval_priority) {
        return Err(ApiError::bad_request(
            "Eval priority must be between 1 and 100 inclusively",
        ));
    }
    if job.job_type == nomad_structs::JOB_TYPE_SYSTEM
        && job
            .task_groups
            .iter()
            .any(|g| g.scaling.as_ref().is_some_and(|s| !s.is_null()))
    {
        return Err(ApiError::bad_request(
            "Task groups with job type system do not support scaling blocks",
        ));
    }
    // Precedence: query string > request body > job > defaults.
    let ns = [
        ctx.opts.namespace_param.as_str(),
        req.namespace.as_str(),
        job.namespace.as_str(),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or("default")
    .to_string();
    let mut region = [
        ctx.opts.region.as_str(),
        req.region.as_str(),
        job.region.as_str(),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or(&agent_region)
    .to_string();
    if region == "global" {
        region = agent_region;
    }
    job.namespace = ns.clone();
    job.region = region.clone();
    req.namespace = ns;
    req.region = region;
    let mut resp = server.job_register(req).await?;
    resp.known_leader = true;
    json(&resp, ctx.pretty(), Meta::Write(resp.index))
}

/// `POST /v1/jobs/parse`: HCL to job JSON.
pub(crate) async fn parse(ctx: Ctx) -> Result<Response, ApiError> {
    require_write(&ctx)?;
    let req: JobsParseRequest = decode_body(&ctx.body)?;
    if req.job_hcl.trim().is_empty() {
        return Err(ApiError::bad_request("Job spec is empty"));
    }
    let mut job = super::jobspec_glue::parse_hcl(&req.job_hcl, &req.variables)
        .map_err(|e| ApiError::bad_request(format!("Failed to parse job: {e}")))?;
    if req.canonicalize {
        canonicalize_job(&mut job);
    }
    json(&job, ctx.pretty(), Meta::None)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct JobValidateRequest {
    job: Option<Job>,
    region: Option<String>,
    namespace: Option<String>,
}

/// `PUT /v1/validate/job`: 200 with the problems in the body.
pub(crate) async fn validate(ctx: Ctx) -> Result<Response, ApiError> {
    require_write(&ctx)?;
    let req: JobValidateRequest = decode_body(&ctx.body)?;
    let Some(mut job) = req.job else {
        return Err(ApiError::bad_request("Job must be specified"));
    };
    let agent_region = ctx.state.agent.region().to_string();
    if !ctx.opts.namespace_param.is_empty() {
        job.namespace = ctx.opts.namespace_param.clone();
    } else if job.namespace.is_empty() {
        job.namespace = req
            .namespace
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
    }
    if job.region.is_empty() {
        job.region = req.region.filter(|s| !s.is_empty()).unwrap_or(agent_region);
    }
    canonicalize_job(&mut job);
    let errs = validate_job(&job);
    let resp = JobValidateResponse {
        driver_config_validated: true,
        error: if errs.is_empty() {
            String::new()
        } else {
            multierror(&errs)
        },
        validation_errors: errs,
        warnings: String::new(),
    };
    json(&resp, ctx.pretty(), Meta::None)
}

/// Suffixes of `/v1/job/<id>/...`, checked in Nomad's order; anything else is the job itself.
const JOB_SUFFIXES: &[&str] = &[
    "/evaluate",
    "/allocations",
    "/evaluations",
    "/periodic/force",
    "/plan",
    "/summary",
    "/dispatch",
    "/dispatch/payload",
    "/versions",
    "/revert",
    "/deployments",
    "/deployment",
    "/stable",
    "/scale",
    "/services",
    "/submission",
    "/actions",
    "/action",
    "/tag",
];

/// `/v1/job/<tail>`: routes on the suffix of the decoded path, so IDs may contain `/`.
pub(crate) async fn job_specific(ctx: Ctx, tail: &str) -> Result<Response, ApiError> {
    for suffix in JOB_SUFFIXES {
        if let Some(id) = tail.strip_suffix(suffix) {
            let op = &suffix[1..];
            return job_op(ctx, id, op).await;
        }
    }
    job_crud(ctx, tail).await
}

async fn job_op(ctx: Ctx, id: &str, op: &str) -> Result<Response, ApiError> {
    match op {
        "evaluate" => evaluate(ctx, id).await,
        "allocations" => allocations(ctx, id).await,
        "evaluations" => evaluations(ctx, id).await,
        "summary" => summary(ctx, id).await,
        "versions" => versions(ctx, id).await,
        "deployments" => read_with_job_index(ctx, serde_json::json!([])).await,
        "deployment" => read_with_job_index(ctx, serde_json::Value::Null).await,
        "actions" => actions(ctx, id).await,
        "submission" => submission(ctx, id).await,
        "services" => services(ctx, id).await,
        "periodic/force" => Err(ApiError::not_supported("Forcing a periodic launch")),
        "plan" => Err(ApiError::not_supported("Job plan")),
        "dispatch" | "dispatch/payload" => Err(ApiError::not_supported("Job dispatch")),
        "revert" => revert(ctx, id).await,
        "stable" => stable(ctx, id).await,
        "scale" => scale(ctx, id).await,
        "action" => super::exec::job_action(ctx, id).await,
        "tag" => Err(ApiError::not_supported("Job version tags")),
        _ => Err(ApiError::no_route()),
    }
}

async fn job_crud(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    if ctx.method == axum::http::Method::DELETE {
        deregister(ctx, id).await
    } else if ctx.is_get() {
        get_job(ctx, id).await
    } else if ctx.is_write() {
        register(ctx, Some(id)).await
    } else {
        Err(ApiError::invalid_method())
    }
}

async fn get_job(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    let server = ctx.server()?;
    let ns = ctx.opts.namespace();
    let (job, index) = server
        .blocking_query(&[Table::Jobs], &ctx.opts.query_options(), |snap| {
            snap.job(ns, id)
        })
        .await;
    let job = job.ok_or_else(|| ApiError::not_found("job not found"))?;
    json(&*job, ctx.pretty(), Meta::read(index))
}

async fn deregister(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    let server = ctx.server()?;
    let purge = ctx.params.bool_or("purge", false)?;
    ctx.params.bool("global")?;
    ctx.params.bool("no_shutdown_delay")?;
    if let Some(p) = ctx.params.get("eval_priority").filter(|s| !s.is_empty()) {
        let p: i64 = p.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "Failed to parse value of \"eval_priority\" ({p}) as an int"
            ))
        })?;
        if !(1..=100).contains(&p) {
            return Err(ApiError::bad_request(
                "Eval priority must be between 1 and 100 inclusively",
            ));
        }
    }
    let mut resp = server
        .job_deregister(ctx.opts.namespace(), id, purge)
        .await?;
    resp.known_leader = true;
    json(&resp, ctx.pretty(), Meta::Write(resp.index))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct JobEvaluateRequest {
    #[serde(rename = "JobID")]
    job_id: Option<String>,
}

async fn evaluate(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_write(&ctx)?;
    let server = ctx.server()?;
    let req: JobEvaluateRequest = decode_optional_body(&ctx.body)?;
    if let Some(body_id) = req.job_id.filter(|s| !s.is_empty()) {
        if body_id != id {
            return Err(ApiError::bad_request("Job ID does not match"));
        }
    }
    let mut resp = server.job_evaluate(ctx.opts.namespace(), id).await?;
    resp.known_leader = true;
    json(&resp, ctx.pretty(), Meta::Write(resp.index))
}

async fn allocations(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let all = ctx.params.bool_or("all", false)?;
    let ns = ctx.opts.namespace();
    let (stubs, index) = server
        .blocking_query(&[Table::Allocs], &ctx.opts.query_options(), |snap| {
            // Without `all`, only allocs of the current incarnation of the job (same CreateIndex).
            let current = snap.job(ns, id).map(|j| j.create_index);
            snap.allocs_by_job(ns, id)
                .iter()
                .filter(|a| {
                    all || match (current, a.job.as_ref()) {
                        (Some(ci), Some(j)) => j.create_index == ci,
                        _ => true,
                    }
                })
                .map(|a| alloc_stub(a, true, false))
                .collect::<Vec<_>>()
        })
        .await;
    json(&stubs, ctx.pretty(), Meta::read(index))
}

async fn evaluations(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let ns = ctx.opts.namespace();
    let (evals, index) = server
        .blocking_query(&[Table::Evals], &ctx.opts.query_options(), |snap| {
            snap.evals_by_job(ns, id)
                .iter()
                .map(|e| (**e).clone())
                .collect::<Vec<_>>()
        })
        .await;
    json(&evals, ctx.pretty(), Meta::read(index))
}

async fn summary(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let ns = ctx.opts.namespace();
    let (sum, index) = server
        .blocking_query(&[Table::JobSummary], &ctx.opts.query_options(), |snap| {
            snap.job_summary(ns, id)
        })
        .await;
    let sum = sum.ok_or_else(|| ApiError::not_found("job not found"))?;
    json(&sum, ctx.pretty(), Meta::read(index))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct JobVersionsResponse {
    versions: Vec<Job>,
    diffs: Option<Vec<serde_json::Value>>,
    index: u64,
    last_contact: u64,
    known_leader: bool,
    next_token: String,
}

/// The kept versions, newest first. Diffs between versions are not computed yet
/// (`?diffs=true` answers `"Diffs": null`).
async fn versions(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let ns = ctx.opts.namespace();
    ctx.params.bool("diffs")?;
    let (versions, index) = server
        .blocking_query(&[Table::Jobs], &ctx.opts.query_options(), |snap| {
            snap.job_versions(ns, id)
        })
        .await;
    if versions.is_empty() {
        return Err(ApiError::not_found("job versions not found"));
    }
    let resp = JobVersionsResponse {
        versions: versions.iter().map(|j| (**j).clone()).collect(),
        diffs: None,
        index,
        last_contact: 0,
        known_leader: true,
        next_token: String::new(),
    };
    json(&resp, ctx.pretty(), Meta::read(index))
}

/// `PUT /v1/job/<id>/revert`: the body's `JobID` must name the path's job.
async fn revert(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_write(&ctx)?;
    let server = ctx.server()?;
    let mut req: JobRevertRequest = decode_body(&ctx.body)?;
    if req.job_id.is_empty() {
        return Err(ApiError::bad_request("JobID must be specified"));
    }
    if req.job_id != id {
        return Err(ApiError::bad_request("Job ID does not match"));
    }
    if !ctx.opts.region.is_empty() {
        req.region = ctx.opts.region.clone();
    }
    // As Nomad, the namespace comes from the request (query), not the body; the ACL check
    // reads it from the same place.
    let ns = ctx.opts.namespace().to_string();
    let mut resp = server.job_revert(&ns, req).await?;
    resp.known_leader = true;
    json(&resp, ctx.pretty(), Meta::Write(resp.index))
}

/// `PUT /v1/job/<id>/stable`.
async fn stable(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_write(&ctx)?;
    let server = ctx.server()?;
    let req: JobStabilityRequest = decode_body(&ctx.body)?;
    if req.job_id.is_empty() {
        return Err(ApiError::bad_request("JobID must be specified"));
    }
    if req.job_id != id {
        return Err(ApiError::bad_request("Job ID does not match"));
    }
    // As Nomad, the namespace comes from the request (query), not the body; the ACL check
    // reads it from the same place.
    let ns = ctx.opts.namespace().to_string();
    let index = server.job_stability(&ns, req).await?;
    let resp = JobStabilityResponse {
        job_modify_index: index,
        index,
    };
    json(&resp, ctx.pretty(), Meta::Write(index))
}

/// `/v1/job/<id>/scale`: the scale status (GET) or a scaling action (PUT/POST).
async fn scale(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    let server = ctx.server()?;
    if ctx.is_get() {
        let (status, index) = server
            .job_scale_status(ctx.opts.namespace(), id, &ctx.opts.query_options())
            .await;
        let status = status.ok_or_else(|| ApiError::not_found("job not found"))?;
        return json(&status, ctx.pretty(), Meta::read(index));
    }
    require_write(&ctx)?;
    let req: ScalingRequest = decode_body(&ctx.body)?;
    if let Some(j) = req.target.get(nomad_structs::SCALING_TARGET_JOB) {
        if !j.is_empty() && j != id {
            return Err(ApiError::bad_request("job ID in payload did not match URL"));
        }
    }
    // As Nomad, the namespace comes from the request (query), not the body; the ACL check
    // reads it from the same place.
    let ns = ctx.opts.namespace().to_string();
    let mut resp = server.job_scale(&ns, id, req).await?;
    resp.known_leader = true;
    json(&resp, ctx.pretty(), Meta::Write(resp.index))
}

/// Deployments are not tracked yet: an empty answer carrying the jobs table index, so clients
/// that block on it still get a usable `X-Nomad-Index`.
async fn read_with_job_index(ctx: Ctx, body: serde_json::Value) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let ((), index) = server
        .blocking_query(&[Table::Jobs], &ctx.opts.query_options(), |_| ())
        .await;
    json(&body, ctx.pretty(), Meta::read(index))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct JobAction {
    name: String,
    command: String,
    args: Option<Vec<String>>,
    task_name: String,
    task_group_name: String,
}

async fn actions(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let ns = ctx.opts.namespace();
    let (job, index) = server
        .blocking_query(&[Table::Jobs], &ctx.opts.query_options(), |snap| {
            snap.job(ns, id)
        })
        .await;
    let job = job.ok_or_else(|| ApiError::not_found("job not found"))?;
    let mut out = Vec::new();
    for tg in &job.task_groups {
        for task in &tg.tasks {
            for a in task.actions.iter().flatten() {
                out.push(JobAction {
                    name: a.name.clone(),
                    command: a.command.clone(),
                    args: a.args.clone(),
                    task_name: task.name.clone(),
                    task_group_name: tg.name.clone(),
                });
            }
        }
    }
    json(&out, ctx.pretty(), Meta::read(index))
}

async fn submission(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let ns = ctx.opts.namespace();
    let version: u64 =
        ctx.params.str("version").parse().map_err(|_| {
            ApiError::bad_request("Unable to parse job submission version parameter")
        })?;
    let (sub, index) = server
        .blocking_query(&[Table::Jobs], &ctx.opts.query_options(), |snap| {
            snap.job_submission(ns, id, version)
        })
        .await;
    let sub = sub.ok_or_else(|| ApiError::not_found("job source not found"))?;
    json(&sub, ctx.pretty(), Meta::read(index))
}

async fn services(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let ns = ctx.opts.namespace();
    let (exists, index) = server
        .blocking_query(&[Table::Jobs], &ctx.opts.query_options(), |snap| {
            snap.job(ns, id).is_some()
        })
        .await;
    if !exists {
        return Err(ApiError::not_found("job not found"));
    }
    json(&serde_json::json!([]), ctx.pretty(), Meta::read(index))
}

/// `GET /v1/deployments`: none are tracked yet.
pub(crate) async fn deployments(ctx: Ctx) -> Result<Response, ApiError> {
    read_with_job_index(ctx, serde_json::json!([])).await
}

/// `/v1/deployment/<...>`: none are tracked yet.
pub(crate) async fn deployment_specific(ctx: Ctx, tail: &str) -> Result<Response, ApiError> {
    if let Some(id) = tail.strip_prefix("allocations/") {
        let _ = id;
        return read_with_job_index(ctx, serde_json::json!([])).await;
    }
    for verb in [
        "fail/",
        "pause/",
        "promote/",
        "allocation-health/",
        "unblock/",
    ] {
        if tail.starts_with(verb) {
            require_write(&ctx)?;
            return Err(ApiError::not_found("deployment not found"));
        }
    }
    require_get(&ctx)?;
    Err(ApiError::not_found("deployment not found"))
}
