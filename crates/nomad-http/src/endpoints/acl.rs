//! `/v1/acl/*` (facts §2.9): bootstrap, tokens and policies. The server checks management and
//! self-read rules; the caller comes from the request's token ([`crate::auth::caller`]).
//!
//! With ACLs disabled every ACL route answers 400 `ACL support disabled`. Writes that Nomad
//! answers without a body (policy upsert/delete, token delete) answer an empty 200 with
//! `X-Nomad-Index`.

use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use nomad_acl::{AclPolicy, AclToken};
use serde::Deserialize;

use super::{require_get, require_write};
use crate::auth::{caller, secret_from_headers};
use crate::error::ApiError;
use crate::query::{decode_body, decode_optional_body, json, Meta, HEADER_INDEX};
use crate::Ctx;

/// An empty 200 carrying `X-Nomad-Index`, as Nomad answers writes that return nothing.
pub(crate) fn empty_write(index: u64) -> Response {
    let mut resp = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
        resp.headers_mut()
            .insert(HeaderName::from_static(HEADER_INDEX), v);
    }
    resp
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BootstrapRequest {
    #[serde(rename = "BootstrapSecret")]
    bootstrap_secret: Option<String>,
}

/// `/v1/acl/<tail>`.
pub(crate) async fn route(ctx: Ctx, tail: &str) -> Result<Response, ApiError> {
    let server = ctx.server()?.clone();
    if !server.config().acl_enabled {
        return Err(ApiError::bad_request(nomad_server::ERR_ACL_DISABLED));
    }
    match tail {
        "bootstrap" => {
            require_write(&ctx)?;
            let req: BootstrapRequest = decode_optional_body(&ctx.body)?;
            let token = server.acl_bootstrap(req.bootstrap_secret).await?;
            let index = token.modify_index;
            json(&token, ctx.pretty(), Meta::Write(index))
        }
        "tokens" => {
            require_get(&ctx)?;
            let who = caller(&ctx)?;
            let (list, index) = server
                .acl_token_list(&ctx.opts.prefix, &who, &ctx.opts.query_options())
                .await?;
            json(&list, ctx.pretty(), Meta::read(index))
        }
        "token" => {
            require_write(&ctx)?;
            let who = caller(&ctx)?;
            let token: AclToken = decode_body(&ctx.body)?;
            let token = server.acl_token_create(token, &who).await?;
            let index = token.modify_index;
            json(&token, ctx.pretty(), Meta::Write(index))
        }
        "token/self" => {
            require_get(&ctx)?;
            let secret = secret_from_headers(&ctx.headers);
            let (token, index) = server.acl_token_self(secret.as_deref())?;
            json(&token, ctx.pretty(), Meta::read(index))
        }
        "policies" => {
            require_get(&ctx)?;
            let who = caller(&ctx)?;
            let (list, index) = server
                .acl_policy_list(&ctx.opts.prefix, &who, &ctx.opts.query_options())
                .await?;
            json(&list, ctx.pretty(), Meta::read(index))
        }
        _ => {
            if let Some(accessor) = tail.strip_prefix("token/").filter(|s| !s.is_empty()) {
                return token_specific(ctx, accessor).await;
            }
            if let Some(name) = tail.strip_prefix("policy/").filter(|s| !s.is_empty()) {
                return policy_specific(ctx, name).await;
            }
            Err(ApiError::no_route())
        }
    }
}

async fn token_specific(ctx: Ctx, accessor: &str) -> Result<Response, ApiError> {
    let server = ctx.server()?.clone();
    let who = caller(&ctx)?;
    if ctx.is_get() {
        let (token, index) = server
            .acl_token_get(accessor, &who, &ctx.opts.query_options())
            .await?;
        return json(&token, ctx.pretty(), Meta::read(index));
    }
    if ctx.is_write() {
        let mut token: AclToken = decode_body(&ctx.body)?;
        if token.accessor_id.is_empty() {
            token.accessor_id = accessor.to_string();
        }
        let token = server.acl_token_update(accessor, token, &who).await?;
        let index = token.modify_index;
        return json(&token, ctx.pretty(), Meta::Write(index));
    }
    if ctx.method == Method::DELETE {
        let index = server.acl_token_delete(accessor, &who).await?;
        return Ok(empty_write(index));
    }
    Err(ApiError::invalid_method())
}

async fn policy_specific(ctx: Ctx, name: &str) -> Result<Response, ApiError> {
    let server = ctx.server()?.clone();
    let who = caller(&ctx)?;
    if ctx.is_get() {
        let (policy, index) = server
            .acl_policy_get(name, &who, &ctx.opts.query_options())
            .await?;
        return json(&policy, ctx.pretty(), Meta::read(index));
    }
    if ctx.is_write() {
        let policy: AclPolicy = decode_body(&ctx.body)?;
        let index = server.acl_policy_upsert(name, policy, &who).await?;
        return Ok(empty_write(index));
    }
    if ctx.method == Method::DELETE {
        let index = server.acl_policy_delete(name, &who).await?;
        return Ok(empty_write(index));
    }
    Err(ApiError::invalid_method())
}
