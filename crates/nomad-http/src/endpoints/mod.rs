//! The route table: prefix match on the decoded path after `/v1/`, then per-endpoint suffix
//! matching (see [`jobs::job_specific`]).

use axum::response::Response;

use crate::error::ApiError;
use crate::Ctx;

pub(crate) mod acl;
pub(crate) mod agent;
pub(crate) mod allocs;
pub(crate) mod evals;
pub(crate) mod exec;
pub(crate) mod forward;
pub(crate) mod fs;
pub(crate) mod jobs;
mod jobspec_glue;
pub(crate) mod namespaces;
pub(crate) mod nodes;
pub(crate) mod operator;
pub(crate) mod vars;

/// Routes `rest` (the decoded path without `/v1/`).
pub(crate) async fn route(ctx: Ctx, rest: &str) -> Result<Response, ApiError> {
    // A client-only agent asks a server for what only servers know.
    if ctx.state.server.is_none()
        && ctx.state.client.is_some()
        && ctx.ws.is_none()
        && !crate::relay::served_locally(rest)
    {
        return crate::relay::to_servers(ctx).await;
    }
    // Client requests for an alloc on another node go to that node.
    let remote_alloc = if let Some(t) = rest.strip_prefix("client/fs/") {
        t.split_once('/').map(|(_, id)| id)
    } else if let Some(t) = rest.strip_prefix("client/allocation/") {
        t.split('/').next()
    } else if rest.starts_with("job/") && rest.ends_with("/action") {
        Some(ctx.params.str("allocID"))
    } else {
        None
    };
    if let Some(id) = remote_alloc.filter(|id| !id.is_empty()) {
        if let Some(node) = forward::target(&ctx, id) {
            return forward::forward(ctx, &node).await;
        }
        // A client-only agent asks the servers where an allocation it does not run is.
        let elsewhere = ctx.state.server.is_none()
            && ctx
                .state
                .client
                .as_ref()
                .is_some_and(|c| c.alloc_dir_path(id).is_none());
        if elsewhere {
            if let Some(node) = crate::relay::alloc_node_addr(&ctx, id).await? {
                return forward::forward(ctx, &node).await;
            }
        }
    }
    if let Some(tail) = rest.strip_prefix("job/") {
        return jobs::job_specific(ctx, tail).await;
    }
    if let Some(tail) = rest.strip_prefix("allocation/") {
        return allocs::alloc_specific(ctx, tail).await;
    }
    if let Some(tail) = rest.strip_prefix("evaluation/") {
        return evals::eval_specific(ctx, tail).await;
    }
    if let Some(tail) = rest.strip_prefix("node/") {
        return nodes::node_specific(ctx, tail).await;
    }
    if let Some(tail) = rest.strip_prefix("client/fs/") {
        return fs::fs_request(ctx, tail).await;
    }
    if let Some(tail) = rest.strip_prefix("client/allocation/") {
        return fs::client_alloc(ctx, tail).await;
    }
    if let Some(tail) = rest.strip_prefix("deployment/") {
        return jobs::deployment_specific(ctx, tail).await;
    }
    if let Some(tail) = rest.strip_prefix("namespace/") {
        return namespaces::specific(ctx, tail).await;
    }
    if let Some(tail) = rest.strip_prefix("var/") {
        return vars::specific(ctx, tail).await;
    }
    if let Some(tail) = rest.strip_prefix("acl/") {
        return acl::route(ctx, tail).await;
    }
    match rest {
        "jobs" => jobs::jobs(ctx).await,
        "jobs/parse" => jobs::parse(ctx).await,
        "validate/job" => jobs::validate(ctx).await,
        "deployments" => jobs::deployments(ctx).await,
        "allocations" => allocs::list(ctx).await,
        "evaluations" => evals::list(ctx).await,
        "evaluations/count" => evals::count(ctx).await,
        "nodes" => nodes::list(ctx).await,
        "namespaces" => namespaces::list(ctx).await,
        "vars" => vars::list(ctx).await,
        "namespace" => namespaces::upsert_unnamed(ctx).await,
        "agent/self" => agent::agent_self(ctx).await,
        "agent/members" => agent::members(ctx).await,
        "agent/health" => agent::health(ctx).await,
        "agent/servers" => agent::servers(ctx).await,
        "status/leader" => agent::leader(ctx).await,
        "status/peers" => agent::peers(ctx).await,
        "operator/raft/configuration" => operator::raft_configuration(ctx).await,
        "operator/raft/peer" => operator::raft_peer(ctx).await,
        "operator/snapshot" => operator::snapshot(ctx).await,
        "regions" => agent::regions(ctx).await,
        "metrics" => agent::metrics(ctx).await,
        "client/stats" => fs::client_stats(ctx).await,
        _ => Err(ApiError::no_route()),
    }
}

/// Checks the method is GET (or HEAD).
pub(crate) fn require_get(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.is_get() {
        Ok(())
    } else {
        Err(ApiError::invalid_method())
    }
}

/// Checks the method is PUT or POST.
pub(crate) fn require_write(ctx: &Ctx) -> Result<(), ApiError> {
    if ctx.is_write() {
        Ok(())
    } else {
        Err(ApiError::invalid_method())
    }
}
