//! `/v1/allocations`, `/v1/allocation/<id>[/stop|/services|/checks]`.

use std::collections::BTreeMap;

use axum::response::Response;
use nomad_state::Table;
use nomad_structs::{AllocListStub, Allocation, TaskState};

use super::{require_get, require_write};
use crate::error::ApiError;
use crate::query::{json, Meta};
use crate::Ctx;

/// Fills every task event's `DisplayMessage`, as Nomad's list and get endpoints do.
pub(crate) fn fill_display_messages(states: &mut Option<BTreeMap<String, TaskState>>) {
    for st in states.iter_mut().flat_map(|m| m.values_mut()) {
        for ev in st.events.iter_mut().flatten() {
            ev.populate_display_message();
        }
    }
}

/// The list stub of `a`, with display messages; `task_states = false` drops the states.
pub(crate) fn alloc_stub(a: &Allocation, task_states: bool, resources: bool) -> AllocListStub {
    let mut s = a.stub();
    if task_states {
        fill_display_messages(&mut s.task_states);
    } else {
        s.task_states = None;
    }
    if resources {
        s.allocated_resources = a.allocated_resources.clone();
    }
    s
}

/// A full alloc as served: display messages filled.
pub(crate) fn alloc_full(a: &Allocation) -> Allocation {
    let mut a = a.clone();
    fill_display_messages(&mut a.task_states);
    a
}

/// `GET /v1/allocations`.
pub(crate) async fn list(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let ns = ctx.opts.list_namespace().map(str::to_string);
    let prefix = ctx.opts.prefix.clone();
    let task_states = ctx.params.bool_or("task_states", true)?;
    let resources = ctx.params.bool_or("resources", false)?;
    let allow = crate::auth::namespace_filter(&ctx, nomad_acl::capability::READ_JOB);
    let (stubs, index) = server
        .blocking_query(&[Table::Allocs], &ctx.opts.query_options(), |snap| {
            snap.allocs(ns.as_deref(), &prefix)
                .iter()
                .filter(|a| allow(&a.namespace))
                .map(|a| alloc_stub(a, task_states, resources))
                .collect::<Vec<_>>()
        })
        .await;
    let (page, next_token) = ctx.opts.paginate(stubs, |s| s.id.clone());
    json(&page, ctx.pretty(), Meta::Read { index, next_token })
}

/// `/v1/allocation/<id>[/<action>]`.
pub(crate) async fn alloc_specific(ctx: Ctx, tail: &str) -> Result<Response, ApiError> {
    let tokens: Vec<&str> = tail.split('/').collect();
    if tokens.len() > 2 {
        return Err(ApiError::not_found("resource not found"));
    }
    let id = tokens[0];
    match tokens.get(1).copied() {
        None => get(ctx, id).await,
        Some("stop") => stop(ctx, id).await,
        Some("services") => {
            require_get(&ctx)?;
            let server = ctx.server()?;
            let ((), index) = server
                .blocking_query(&[Table::Allocs], &ctx.opts.query_options(), |_| ())
                .await;
            json(&serde_json::json!([]), ctx.pretty(), Meta::read(index))
        }
        Some("checks") => {
            require_get(&ctx)?;
            json(&serde_json::json!({}), ctx.pretty(), Meta::None)
        }
        Some(_) => Err(ApiError::not_found("resource not found")),
    }
}

async fn get(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let (alloc, index) = server
        .blocking_query(&[Table::Allocs], &ctx.opts.query_options(), |snap| {
            snap.alloc(id).map(|a| alloc_full(&a))
        })
        .await;
    let alloc = alloc.ok_or_else(|| ApiError::not_found("alloc not found"))?;
    json(&alloc, ctx.pretty(), Meta::read(index))
}

async fn stop(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_write(&ctx)?;
    let server = ctx.server()?;
    ctx.params.bool("no_shutdown_delay")?;
    ctx.params.bool("reschedule")?;
    let resp = server.alloc_stop(id).await?;
    json(&resp, ctx.pretty(), Meta::Write(resp.index))
}
