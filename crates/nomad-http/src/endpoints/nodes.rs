//! `/v1/nodes`, `/v1/node/<id>[/allocations]`.

use axum::response::Response;
use nomad_state::Table;

use super::{allocs::alloc_full, require_get, require_write};
use crate::error::ApiError;
use crate::query::{decode_body, json, Meta};
use crate::Ctx;

/// `GET /v1/nodes` (`?prefix=`, `?resources=`, `?os=`).
pub(crate) async fn list(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    let resources = ctx.params.bool_or("resources", false)?;
    let os = ctx.params.bool_or("os", false)?;
    let prefix = ctx.opts.prefix.clone();
    let (stubs, index) = server
        .blocking_query(&[Table::Nodes], &ctx.opts.query_options(), |snap| {
            snap.nodes(&prefix)
                .iter()
                .map(|n| {
                    let mut s = n.stub();
                    if resources {
                        s.node_resources = Some(n.node_resources.clone());
                        s.reserved_resources = Some(n.reserved_resources.clone());
                    }
                    if os {
                        s.attributes = Some(
                            n.attributes
                                .iter()
                                .filter(|(k, _)| k.starts_with("os."))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        );
                    }
                    s
                })
                .collect::<Vec<_>>()
        })
        .await;
    let (page, next_token) = ctx.opts.paginate(stubs, |s| s.id.clone());
    json(&page, ctx.pretty(), Meta::Read { index, next_token })
}

/// `/v1/node/<id>[/<op>]`.
pub(crate) async fn node_specific(ctx: Ctx, tail: &str) -> Result<Response, ApiError> {
    if let Some(id) = tail.strip_suffix("/allocations") {
        return allocations(ctx, id).await;
    }
    if let Some(id) = tail.strip_suffix("/eligibility") {
        return eligibility(ctx, id).await;
    }
    if let Some(id) = tail.strip_suffix("/drain") {
        return drain(ctx, id).await;
    }
    for (suffix, what) in [("/evaluate", "Node evaluate"), ("/purge", "Node purge")] {
        if tail.ends_with(suffix) {
            require_write(&ctx)?;
            return Err(ApiError::not_supported(what));
        }
    }
    require_get(&ctx)?;
    let server = ctx.server()?;
    let (node, index) = server
        .blocking_query(&[Table::Nodes], &ctx.opts.query_options(), |snap| {
            snap.node(tail)
        })
        .await;
    let node = node.ok_or_else(|| ApiError::not_found("node not found"))?;
    let mut node = (*node).clone();
    node.secret_id = String::new();
    let drain = node.drain_strategy.is_some();
    let mut v = serde_json::to_value(&node).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        m.insert("Drain".into(), serde_json::Value::Bool(drain));
    }
    json(&v, ctx.pretty(), Meta::read(index))
}

async fn allocations(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?;
    // Nomad filters a node's allocations by read-job in their namespaces.
    let allow = crate::auth::namespace_filter(&ctx, nomad_acl::capability::READ_JOB);
    let (allocs, index) = server
        .blocking_query(&[Table::Allocs], &ctx.opts.query_options(), |snap| {
            snap.allocs_by_node(id)
                .iter()
                .filter(|a| allow(&a.namespace))
                .map(|a| alloc_full(a))
                .collect::<Vec<_>>()
        })
        .await;
    json(&allocs, ctx.pretty(), Meta::read(index))
}

/// `PUT|POST /v1/node/<id>/eligibility` with `{"Eligibility"}`.
async fn eligibility(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_write(&ctx)?;
    let server = ctx.server()?;
    let mut req: nomad_structs::NodeEligibilityUpdateRequest = decode_body(&ctx.body)?;
    // As Nomad, the path names the node whatever the body says.
    req.node_id = id.to_string();
    let resp = server.node_update_eligibility(req).await?;
    json(&resp, ctx.pretty(), Meta::Write(resp.index))
}

/// `PUT|POST /v1/node/<id>/drain` with `{"DrainSpec", "MarkEligible", "Meta"}`.
async fn drain(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_write(&ctx)?;
    let server = ctx.server()?;
    let mut req: nomad_structs::NodeUpdateDrainRequest = decode_body(&ctx.body)?;
    req.node_id = id.to_string();
    // The drain's LastDrain records who asked (Nomad's AccessorID; empty without ACLs).
    let accessor = crate::auth::caller(&ctx)
        .ok()
        .and_then(|r| r.token)
        .map(|t| t.accessor_id.clone())
        .unwrap_or_default();
    let resp = server.node_update_drain(req, &accessor).await?;
    json(&resp, ctx.pretty(), Meta::Write(resp.index))
}
