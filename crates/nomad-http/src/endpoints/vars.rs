//! `/v1/vars` and `/v1/var/<path>` (facts §2.11). The middleware checked the caller's
//! variables capability on the path in the request's namespace; the listing is filtered per
//! variable here.

use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use nomad_server::VarWrite;
use nomad_structs::Variable;

use super::require_get;
use crate::auth::caller;
use crate::error::ApiError;
use crate::query::{json, to_json_bytes, Meta, HEADER_INDEX};
use crate::Ctx;

/// `GET /v1/vars` (`?prefix=`, `?namespace=*`).
pub(crate) async fn list(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let server = ctx.server()?.clone();
    let who = caller(&ctx)?;
    let (vars, index) = server
        .var_list(
            ctx.opts.list_namespace(),
            &ctx.opts.prefix,
            &who,
            &ctx.opts.query_options(),
        )
        .await;
    json(&vars, ctx.pretty(), Meta::read(index))
}

/// `/v1/var/<path>`: GET, PUT/POST (`?cas=`), DELETE (`?cas=`).
pub(crate) async fn specific(ctx: Ctx, path: &str) -> Result<Response, ApiError> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(ApiError::bad_request("missing variable path"));
    }
    if ["lock-acquire", "lock-release", "lock-renew"]
        .iter()
        .any(|op| ctx.params.get(op).is_some())
    {
        return Err(ApiError::not_supported("Variable locks"));
    }
    let server = ctx.server()?.clone();
    let namespace = ctx.opts.namespace().to_string();
    let cas =
        match ctx.params.get("cas") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("failed to parse cas parameter {v:?}"))
            })?),
        };
    if ctx.is_get() {
        let (v, index) = server
            .var_read(&namespace, path, &ctx.opts.query_options())
            .await?;
        return json(&v, ctx.pretty(), Meta::read(index));
    }
    if ctx.is_write() {
        let raw: serde_json::Value = crate::query::decode_body(&ctx.body)?;
        if raw.get("Items").is_none_or(serde_json::Value::is_null) {
            return Err(ApiError::bad_request(
                "variable missing required Items object",
            ));
        }
        let mut var: Variable =
            serde_json::from_value(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
        // The request's namespace is the one the ACL check saw: the body may only repeat it.
        if !var.meta.namespace.is_empty() && var.meta.namespace != namespace {
            return Err(ApiError::bad_request(format!(
                "variable namespace {:?} does not match the request's namespace {namespace:?}",
                var.meta.namespace
            )));
        }
        var.meta.namespace = namespace;
        var.meta.path = path.to_string();
        return match server.var_put(var, cas).await? {
            VarWrite::Done(index, stored) => json(
                &stored.unwrap_or_default(),
                ctx.pretty(),
                Meta::Write(index),
            ),
            VarWrite::Conflict(current) => conflict(current, ctx.pretty()),
        };
    }
    if ctx.method == Method::DELETE {
        return match server.var_delete(&namespace, path, cas).await? {
            VarWrite::Done(index, _) => {
                let mut resp = StatusCode::NO_CONTENT.into_response();
                if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
                    resp.headers_mut()
                        .insert(HeaderName::from_static(HEADER_INDEX), v);
                }
                Ok(resp)
            }
            VarWrite::Conflict(current) => conflict(current, ctx.pretty()),
        };
    }
    Err(ApiError::invalid_method())
}

/// A check-and-set miss: 409 with what is stored now, as Nomad answers.
fn conflict(current: Option<Variable>, pretty: bool) -> Result<Response, ApiError> {
    let body = to_json_bytes(&current.unwrap_or_default(), pretty)?;
    let mut resp = (StatusCode::CONFLICT, body).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
