//! `/v1/evaluations`, `/v1/evaluations/count`, `/v1/evaluation/<id>[/allocations]`.

use axum::response::Response;
use nomad_state::Table;
use nomad_structs::Evaluation;
use serde::Serialize;

use super::{allocs::alloc_stub, require_get};
use crate::error::ApiError;
use crate::query::{json, Meta};
use crate::Ctx;

fn filtered(ctx: &Ctx, snap: &nomad_state::StateSnapshot) -> Vec<Evaluation> {
    let job = ctx.params.str("job");
    let status = ctx.params.str("status");
    let allow = crate::auth::namespace_filter(ctx, nomad_acl::capability::READ_JOB);
    snap.evals(ctx.opts.list_namespace(), &ctx.opts.prefix)
        .iter()
        .filter(|e| allow(&e.namespace))
        .filter(|e| job.is_empty() || e.job_id == job)
        .filter(|e| status.is_empty() || e.status == status)
        .map(|e| (**e).clone())
        .collect()
}

/// `GET /v1/evaluations` (`?job=`, `?status=`, `?prefix=`, `?namespace=*`).
pub(crate) async fn list(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let (evals, index) = server
        .blocking_query(&[Table::Evals], &ctx.opts.query_options(), |snap| {
            filtered(&ctx, snap)
        })
        .await;
    let (page, next_token) = ctx.opts.paginate(evals, |e| e.id.clone());
    json(&page, ctx.pretty(), Meta::Read { index, next_token })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EvalCountResponse {
    count: usize,
    index: u64,
    last_contact: u64,
    known_leader: bool,
    next_token: String,
}

/// `GET /v1/evaluations/count`.
pub(crate) async fn count(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let (count, index) = server
        .blocking_query(&[Table::Evals], &ctx.opts.query_options(), |snap| {
            filtered(&ctx, snap).len()
        })
        .await;
    let resp = EvalCountResponse {
        count,
        index,
        last_contact: 0,
        known_leader: true,
        next_token: String::new(),
    };
    json(&resp, ctx.pretty(), Meta::read(index))
}

/// `/v1/evaluation/<id>` and `/v1/evaluation/<id>/allocations`.
pub(crate) async fn eval_specific(ctx: Ctx, tail: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    if let Some(id) = tail.strip_suffix("/allocations") {
        let (stubs, index) = server
            .blocking_query(&[Table::Allocs], &ctx.opts.query_options(), |snap| {
                snap.allocs_by_eval(id)
                    .iter()
                    .map(|a| alloc_stub(a, true, false))
                    .collect::<Vec<_>>()
            })
            .await;
        return json(&stubs, ctx.pretty(), Meta::read(index));
    }
    ctx.params.bool("related")?;
    let (eval, index) = server
        .blocking_query(&[Table::Evals], &ctx.opts.query_options(), |snap| {
            snap.eval(tail).map(|e| (*e).clone())
        })
        .await;
    let eval = eval.ok_or_else(|| ApiError::not_found("eval not found"))?;
    json(&eval, ctx.pretty(), Meta::read(index))
}
