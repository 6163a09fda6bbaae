//! `/v1/namespaces`, `/v1/namespace[/<name>]` (facts §2.10), served from the state store.
//! Reads are filtered by the caller's namespace rules; writes need a management token
//! (checked by the server as well as by the middleware).

use axum::http::Method;
use axum::response::Response;
use nomad_state::Namespace;

use super::acl::empty_write;
use super::require_get;
use crate::auth::caller;
use crate::error::ApiError;
use crate::query::{decode_body, json, Meta};
use crate::Ctx;

/// `GET /v1/namespaces` (`?prefix=`).
pub(crate) async fn list(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?.clone();
    let who = caller(&ctx)?;
    let (list, index) = server
        .namespace_list(&ctx.opts.prefix, &who, &ctx.opts.query_options())
        .await?;
    json(&list, ctx.pretty(), Meta::read(index))
}

/// `PUT/POST /v1/namespace`: upsert with the name from the body.
pub(crate) async fn upsert_unnamed(ctx: Ctx) -> Result<Response, ApiError> {
    if !ctx.is_write() {
        return Err(ApiError::invalid_method());
    }
    upsert(ctx, None).await
}

/// `/v1/namespace/<name>`: GET, PUT/POST, DELETE.
pub(crate) async fn specific(ctx: Ctx, name: &str) -> Result<Response, ApiError> {
    if name.is_empty() {
        return upsert_unnamed(ctx).await;
    }
    if ctx.is_get() {
        let server = ctx.server()?.clone();
        let who = caller(&ctx)?;
        let (ns, index) = server
            .namespace_get(name, &who, &ctx.opts.query_options())
            .await?;
        return json(&ns, ctx.pretty(), Meta::read(index));
    }
    if ctx.is_write() {
        return upsert(ctx, Some(name)).await;
    }
    if ctx.method == Method::DELETE {
        let server = ctx.server()?.clone();
        let who = caller(&ctx)?;
        let index = server.namespace_delete(name, &who).await?;
        return Ok(empty_write(index));
    }
    Err(ApiError::invalid_method())
}

async fn upsert(ctx: Ctx, name: Option<&str>) -> Result<Response, ApiError> {
    let server = ctx.server()?.clone();
    let who = caller(&ctx)?;
    let mut ns: Namespace = decode_body(&ctx.body)?;
    if let Some(name) = name {
        if ns.name.is_empty() {
            ns.name = name.to_string();
        } else if ns.name != name {
            return Err(ApiError::bad_request(
                "Namespace name does not match request path",
            ));
        }
    }
    let index = server.namespace_upsert(ns, &who).await?;
    Ok(empty_write(index))
}
