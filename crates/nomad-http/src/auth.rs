//! ACL enforcement for every `/v1` request, before any handler (and so before any side effect
//! or websocket upgrade) runs.
//!
//! One axum middleware ([`enforce`]) resolves the caller's token (`X-Nomad-Token`, else
//! `Authorization: Bearer`), works out the namespace the request acts in (the `namespace`
//! query parameter; for alloc- and eval-scoped routes the object's own namespace; for job
//! registration the job's namespace by Nomad's precedence), looks the route up in
//! [`nomad_acl::required_access`] (the single source of truth) and answers 403 before the
//! handler runs:
//!
//! - unknown secret → `ACL token not found`, expired token → `ACL token expired`;
//! - missing capability → `Permission denied`.
//!
//! Routes the table does not know need a management token (deny by default). With ACLs
//! disabled the middleware is a no-op. Handlers that filter results (lists with
//! `namespace=*`) or need the caller (ACL endpoints) call [`caller`] again; resolution is a
//! snapshot read plus a cached compiled ACL.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nomad_acl::capability::{
    ALLOC_EXEC, ALLOC_NODE_EXEC, PURGE_JOB, READ_JOB, RUN_ACTION, SUBMIT_JOB,
};
use nomad_acl::{required_access, Access, Acl};
use nomad_server::{ResolvedAcl, Server, ServerError, ERR_TOKEN_EXPIRED};
use nomad_state::StateSnapshot;

use crate::error::ApiError;
use crate::query::{percent_decode, Params};
use crate::{Ctx, HttpState, MAX_BODY_BYTES};

/// Nomad's `Permission denied` (403).
pub fn permission_denied() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "Permission denied")
}

/// The request's secret: `X-Nomad-Token` (trimmed) wins; else `Authorization: Bearer <secret>`
/// (scheme case-insensitive, first space-separated word after it). `None` when neither is set.
pub fn secret_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-nomad-token").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = auth.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    rest.split_whitespace().next().map(str::to_string)
}

/// Resolves the request's token on `server`: unknown → 403 `ACL token not found`, expired →
/// 403 `ACL token expired`. ACLs disabled → allow-all.
pub fn resolve(server: &Server, headers: &HeaderMap) -> Result<ResolvedAcl, ApiError> {
    let secret = secret_from_headers(headers);
    server
        .resolve_token(secret.as_deref())
        .map_err(|e| match e {
            ServerError::Internal(m) if m == ERR_TOKEN_EXPIRED => {
                ApiError::new(StatusCode::FORBIDDEN, m)
            }
            other => ApiError::from(other),
        })
}

/// The caller of a request being handled. On a client-only agent with ACLs, the ACL the
/// middleware resolved through the servers moments ago (nothing allowed if it is gone);
/// allow-all on an agent without ACLs.
pub(crate) fn caller(ctx: &Ctx) -> Result<ResolvedAcl, ApiError> {
    match (&ctx.state.server, &ctx.state.client) {
        (Some(s), _) => resolve(s, &ctx.headers),
        (None, Some(c)) if c.config().acl_enabled => {
            let secret = secret_from_headers(&ctx.headers).unwrap_or_default();
            let acl = crate::client_acl::resolved_for_request(c, &secret)
                .unwrap_or_else(|| Arc::new(Acl::default()));
            Ok(ResolvedAcl {
                acl,
                token: None,
                acl_enabled: true,
            })
        }
        (None, _) => Ok(ResolvedAcl::disabled()),
    }
}

/// A predicate for list results: whether the caller holds `capability` in a namespace.
/// A caller that cannot be resolved sees nothing (the middleware already refused it).
pub(crate) fn namespace_filter(
    ctx: &Ctx,
    capability: &'static str,
) -> impl Fn(&str) -> bool + Send + Sync + 'static {
    let acl = caller(ctx)
        .map(|r| r.acl)
        .unwrap_or_else(|_| Arc::new(Acl::default()));
    move |ns: &str| acl.allow_namespace_operation(ns, capability)
}

/// The `alloc exec` check (facts §4.5): `alloc-exec` in the alloc's namespace, plus
/// `alloc-node-exec` when the task's driver has no file system isolation (raw_exec).
pub fn check_exec_permission(
    acl: &Acl,
    namespace: &str,
    fs_isolation_none: bool,
) -> Result<(), ApiError> {
    if !acl.allow_namespace_operation(namespace, ALLOC_EXEC) {
        return Err(permission_denied());
    }
    if fs_isolation_none && !acl.allow_namespace_operation(namespace, ALLOC_NODE_EXEC) {
        return Err(permission_denied());
    }
    Ok(())
}

/// The `job action` check: `run-action` suffices; otherwise [`check_exec_permission`].
pub fn check_action_permission(
    acl: &Acl,
    namespace: &str,
    fs_isolation_none: bool,
) -> Result<(), ApiError> {
    if acl.allow_namespace_operation(namespace, RUN_ACTION) {
        return Ok(());
    }
    check_exec_permission(acl, namespace, fs_isolation_none)
}

/// Suffixes of `/v1/job/<id>/...` in the order the job router checks them.
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

/// A route as the ACL table sees it. Job IDs may contain `/`; the table's `:id` is one
/// segment, so job paths are rewritten with a placeholder ID the way the job router splits
/// them.
fn table_route(path: &str) -> String {
    let Some(tail) = path.strip_prefix("/v1/job/") else {
        return path.to_string();
    };
    for suffix in JOB_SUFFIXES {
        if let Some(id) = tail.strip_suffix(suffix) {
            if id.is_empty() {
                break;
            }
            if *suffix == "/tag" {
                return "/v1/job/x/versions/x/tag".to_string();
            }
            return format!("/v1/job/x{suffix}");
        }
    }
    if tail.is_empty() {
        return path.to_string();
    }
    "/v1/job/x".to_string()
}

/// What `method path` needs: the table, with the rows it lacks and the request-dependent
/// narrowing (job purge) applied. Unknown routes need a management token.
fn access_for(method: &Method, path: &str, params: &Params) -> Access {
    let is_get = *method == Method::GET || *method == Method::HEAD;
    match path {
        "/v1/evaluations/count" if is_get => return Access::Namespace(&[&[READ_JOB]]),
        "/v1/agent/health" | "/v1/metrics" if is_get => return Access::None,
        "/v1/agent/servers" if is_get => return Access::AgentRead,
        // Nomad's operator endpoints check for a management token, not `operator:*`.
        "/v1/operator/raft/configuration" | "/v1/operator/raft/peer" | "/v1/operator/snapshot" => {
            return Access::Management
        }
        _ => {}
    }
    let route = table_route(path);
    if *method == Method::DELETE
        && route == "/v1/job/x"
        && params
            .get("purge")
            .and_then(crate::query::parse_go_bool)
            .unwrap_or(false)
    {
        return Access::Namespace(&[&[SUBMIT_JOB, PURGE_JOB]]);
    }
    required_access(method.as_str(), &route).unwrap_or(Access::Management)
}

/// The alloc an alloc-scoped route names.
fn alloc_id_of(path: &str) -> Option<&str> {
    if let Some(t) = path.strip_prefix("/v1/allocation/") {
        return t.split('/').next();
    }
    if let Some(t) = path.strip_prefix("/v1/client/allocation/") {
        return t.split('/').next();
    }
    if let Some(t) = path.strip_prefix("/v1/client/fs/") {
        return t.split_once('/').map(|(_, id)| id);
    }
    None
}

fn eval_id_of(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/evaluation/")
        .map(|t| t.strip_suffix("/allocations").unwrap_or(t))
}

fn query_namespace(params: &Params) -> String {
    match params.get("namespace") {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => "default".to_string(),
    }
}

/// The namespace of a job registration body: query > body `Namespace` > `Job.Namespace`.
fn register_namespace(params: &Params, body: &[u8]) -> String {
    if let Some(ns) = params.get("namespace").filter(|s| !s.is_empty()) {
        return ns.to_string();
    }
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |obj: &serde_json::Value, key: &str| -> Option<String> {
        obj.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let job = v
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("job")))
        .map(|(_, j)| j.clone())
        .unwrap_or_default();
    field(&v, "Namespace")
        .or_else(|| field(&job, "Namespace"))
        .unwrap_or_else(|| "default".to_string())
}

/// The `SecretID` of a write request's body (`{"Job": ..., "SecretID": "..."}`), if any.
fn body_secret(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("SecretID"))
        .and_then(|(_, v)| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn is_register(method: &Method, route: &str) -> bool {
    (*method == Method::PUT || *method == Method::POST)
        && (route == "/v1/jobs" || route == "/v1/job/x")
}

/// Whether the driver of `task` in `alloc` has no file system isolation: the live driver's
/// capabilities when this agent's client runs the task, else by driver name (raw_exec).
fn task_fs_isolation_none(
    state: &HttpState,
    snap: &StateSnapshot,
    alloc_id: &str,
    task: &str,
) -> bool {
    if let Some(client) = &state.client {
        if let Ok((driver, _)) = client.task_driver(alloc_id, task) {
            let caps = driver.capabilities();
            return caps.fs_isolation == nomad_drivers::FsIsolation::None;
        }
    }
    let Some(alloc) = snap.alloc(alloc_id) else {
        return false;
    };
    let Some(job) = alloc.job.as_ref() else {
        return false;
    };
    job.task_groups
        .iter()
        .filter(|g| g.name == alloc.task_group)
        .flat_map(|g| g.tasks.iter())
        .filter(|t| task.is_empty() || t.name == task)
        .any(|t| t.driver == "raw_exec")
}

/// The decision for a request, once its ACL, route and namespace are known. `fs_none` says
/// whether an alloc's task runs without file system isolation (exec needs alloc-node-exec).
fn is_allowed(
    acl: &Acl,
    access: &Access,
    route: &str,
    path: &str,
    params: &Params,
    namespace: &str,
    fs_none: impl Fn(&str) -> bool,
) -> bool {
    match route {
        r if r.starts_with("/v1/client/allocation/") && r.ends_with("/exec") => {
            let id = alloc_id_of(path).unwrap_or("");
            check_exec_permission(acl, namespace, fs_none(id)).is_ok()
        }
        "/v1/job/x/action" => {
            let id = params.str("allocID");
            check_action_permission(acl, namespace, fs_none(id)).is_ok()
        }
        // A variable's own path decides (`/v1/var/<path>`); listing is the loose check.
        _ => match access {
            Access::Variable(op) if *op != "list" => {
                let var_path = path.strip_prefix("/v1/var/").unwrap_or("");
                acl.allow_variable_operation(namespace, var_path, op, None)
            }
            _ => acl.allows(access, namespace),
        },
    }
}

/// The middleware on a client-only agent with ACLs: the same decision as on a server, with
/// the token resolved through the servers and the namespace from the alloc this client runs.
async fn enforce_on_client(
    client: Arc<nomad_client::Client>,
    req: Request,
    next: Next,
) -> Response {
    let path = percent_decode(req.uri().path(), false);
    let Some(rest) = path.strip_prefix("/v1/") else {
        return next.run(req).await;
    };
    // What is relayed to a server is checked there, with the server's full knowledge (a
    // job's namespace in its body, ...).
    let is_ws = req.headers().contains_key(header::UPGRADE);
    if !is_ws && !crate::relay::served_locally(rest) {
        return next.run(req).await;
    }
    let params = Params::parse(req.uri().query());
    let method = req.method().clone();
    let access = access_for(&method, &path, &params);
    if access == Access::None {
        return next.run(req).await;
    }
    let secret = secret_from_headers(req.headers()).unwrap_or_default();
    let acl = match crate::client_acl::resolve(&client, &secret).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let route = table_route(&path);
    let alloc_id = alloc_id_of(&path)
        .map(str::to_string)
        .or_else(|| (route == "/v1/job/x/action").then(|| params.str("allocID").to_string()));
    let namespace = alloc_id
        .and_then(|id| client.allocs().into_iter().find(|a| a.id == id))
        .map(|a| a.namespace)
        .unwrap_or_else(|| query_namespace(&params));
    let fs_none = |id: &str| match client.task_driver(id, params.str("task")) {
        Ok((driver, _)) => driver.capabilities().fs_isolation == nomad_drivers::FsIsolation::None,
        // Unknown task: ask for the stricter permission.
        Err(_) => true,
    };
    if !is_allowed(&acl, &access, &route, &path, &params, &namespace, fs_none) {
        tracing::debug!(%method, %path, namespace = %namespace, "ACL (client): permission denied");
        return permission_denied().into_response();
    }
    next.run(req).await
}

/// The middleware: see the module docs.
pub(crate) async fn enforce(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let Some(server) = state.server.clone() else {
        return match state.client.clone() {
            Some(client) if client.config().acl_enabled => {
                enforce_on_client(client, req, next).await
            }
            _ => next.run(req).await,
        };
    };
    if !server.config().acl_enabled {
        return next.run(req).await;
    }
    let path = percent_decode(req.uri().path(), false);
    if !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let params = Params::parse(req.uri().query());
    let method = req.method().clone();
    let access = access_for(&method, &path, &params);
    if access == Access::None {
        return next.run(req).await;
    }
    let route = table_route(&path);
    let mut req = req;
    // A job registration reads its body here: for its namespace, and for the token of the
    // body's `SecretID` (Nomad's api.WriteRequest), used when no header carries one.
    let mut body_namespace = None;
    if is_register(&method, &route) {
        let (mut parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(e) => {
                return ApiError::bad_request(format!("failed to read request body: {e}"))
                    .into_response()
            }
        };
        body_namespace = Some(register_namespace(&params, &bytes));
        if secret_from_headers(&parts.headers).is_none() {
            if let Some(v) = body_secret(&bytes).and_then(|s| s.parse().ok()) {
                parts.headers.insert("x-nomad-token", v);
            }
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let resolved = match resolve(&server, req.headers()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let snap = server.state().snapshot();

    // The namespace the request acts in.
    let namespace = if let Some(ns) = body_namespace {
        ns
    } else if let Some(alloc) = alloc_id_of(&path).and_then(|id| snap.alloc(id)) {
        alloc.namespace.clone()
    } else if let Some(eval) = eval_id_of(&path).and_then(|id| snap.eval(id)) {
        eval.namespace.clone()
    } else if let Some(name) = path
        .strip_prefix("/v1/namespace/")
        .filter(|n| !n.is_empty() && !n.contains('/'))
    {
        // `GET /v1/namespace/<name>` reads that namespace, whatever `?namespace=` says.
        name.to_string()
    } else {
        query_namespace(&params)
    };

    let fs_none = |id: &str| task_fs_isolation_none(&state, &snap, id, params.str("task"));
    let allowed = is_allowed(
        &resolved.acl,
        &access,
        &route,
        &path,
        &params,
        &namespace,
        fs_none,
    );
    if !allowed {
        tracing::debug!(%method, %path, namespace = %namespace, "ACL: permission denied");
        return permission_denied().into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn token_header_precedence() {
        let mut h = HeaderMap::new();
        assert_eq!(secret_from_headers(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bEaReR  abc def"),
        );
        assert_eq!(secret_from_headers(&h).as_deref(), Some("abc"));
        h.insert("x-nomad-token", HeaderValue::from_static(" xyz "));
        assert_eq!(secret_from_headers(&h).as_deref(), Some("xyz"));
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Zm9v"),
        );
        assert_eq!(secret_from_headers(&h), None);
    }

    #[test]
    fn job_routes_with_slashes_map_to_the_table() {
        assert_eq!(table_route("/v1/job/a/periodic-1"), "/v1/job/x");
        assert_eq!(
            table_route("/v1/job/a/periodic-1/summary"),
            "/v1/job/x/summary"
        );
        assert_eq!(
            table_route("/v1/job/a/versions/v1/tag"),
            "/v1/job/x/versions/x/tag"
        );
        assert_eq!(table_route("/v1/jobs"), "/v1/jobs");
        let p = Params::parse(Some("purge=true"));
        assert_eq!(
            access_for(&Method::DELETE, "/v1/job/a/b", &p),
            Access::Namespace(&[&[SUBMIT_JOB, PURGE_JOB]])
        );
        assert_eq!(
            access_for(&Method::GET, "/v1/bogus", &Params::default()),
            Access::Management
        );
        assert_eq!(
            access_for(&Method::GET, "/v1/agent/health", &Params::default()),
            Access::None
        );
    }

    #[test]
    fn register_namespace_precedence() {
        let body = br#"{"Job": {"ID": "x", "Namespace": "job-ns"}, "Namespace": ""}"#;
        assert_eq!(register_namespace(&Params::default(), body), "job-ns");
        let body2 = br#"{"Job": {"Namespace": "job-ns"}, "Namespace": "req-ns"}"#;
        assert_eq!(register_namespace(&Params::default(), body2), "req-ns");
        assert_eq!(
            register_namespace(&Params::parse(Some("namespace=q")), body2),
            "q"
        );
        assert_eq!(register_namespace(&Params::default(), b"junk"), "default");
    }

    #[test]
    fn exec_permission() {
        let p = nomad_acl::parse_policy(
            r#"namespace "default" { capabilities = ["alloc-exec"] }
               namespace "ops" { capabilities = ["alloc-exec", "alloc-node-exec"] }
               namespace "act" { capabilities = ["run-action"] }"#,
        )
        .expect("policy");
        let acl = Acl::from_policies(&[p]);
        assert!(check_exec_permission(&acl, "default", false).is_ok());
        assert!(check_exec_permission(&acl, "default", true).is_err());
        assert!(check_exec_permission(&acl, "ops", true).is_ok());
        assert!(check_exec_permission(&acl, "act", false).is_err());
        assert!(check_action_permission(&acl, "act", true).is_ok());
        assert!(check_action_permission(&acl, "default", true).is_err());
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod router_tests;

#[cfg(test)]
#[path = "route_matrix_tests.rs"]
mod route_matrix_tests;
