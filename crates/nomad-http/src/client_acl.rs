//! ACLs on a client-only agent: its HTTP API (logs, files, exec, alloc lifecycle) checks each
//! request's token as a server would, with the token and policies the servers return for it
//! (`ACL.ResolveToken`), compiled here and kept for [`TTL`] (Nomad's client `acl { token_ttl,
//! policy_ttl }` default), so a burst of requests costs one round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use nomad_acl::{Acl, AclPolicy, AclToken, Policy};
use nomad_client::Client;

use crate::error::ApiError;

/// How long a resolved token is trusted before the servers are asked again.
pub const TTL: Duration = Duration::from_secs(30);

type Key = (usize, String);
type Cache = Mutex<HashMap<Key, (Instant, Arc<Acl>)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn key(client: &Client, secret: &str) -> Key {
    (client as *const Client as usize, secret.to_string())
}

/// The compiled ACL of `secret`, fresh from the cache or from the servers.
pub(crate) async fn resolve(client: &Arc<Client>, secret: &str) -> Result<Arc<Acl>, ApiError> {
    if let Some(acl) = cached(client, secret) {
        return Ok(acl);
    }
    let answer = client.resolve_token(secret).await.map_err(|e| {
        let m = e.0;
        if m.contains("ACL token not found") || m.contains("ACL token expired") {
            let what = if m.contains("expired") {
                "ACL token expired"
            } else {
                "ACL token not found"
            };
            ApiError::new(StatusCode::FORBIDDEN, what)
        } else {
            ApiError::internal(format!(
                "failed to resolve the ACL token with the servers: {m}"
            ))
        }
    })?;
    let acl = Arc::new(compile(&answer)?);
    let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
    if c.len() > 512 {
        c.retain(|_, (at, _)| at.elapsed() < TTL);
    }
    c.insert(key(client, secret), (Instant::now(), acl.clone()));
    Ok(acl)
}

/// The ACL resolved for `secret` within the last [`TTL`], if any.
pub(crate) fn cached(client: &Client, secret: &str) -> Option<Arc<Acl>> {
    let c = cache().lock().unwrap_or_else(|p| p.into_inner());
    c.get(&key(client, secret))
        .filter(|(at, _)| at.elapsed() < TTL)
        .map(|(_, acl)| acl.clone())
}

/// `{"Token": ..., "Policies": [...]}` → the ACL; a null token means the servers do not
/// enforce ACLs.
fn compile(answer: &serde_json::Value) -> Result<Acl, ApiError> {
    let bad =
        |e: serde_json::Error| ApiError::internal(format!("bad ACL.ResolveToken answer: {e}"));
    let token = match answer.get("Token") {
        None | Some(serde_json::Value::Null) => return Ok(Acl::management()),
        Some(t) => serde_json::from_value::<AclToken>(t.clone()).map_err(bad)?,
    };
    let policies: Vec<AclPolicy> = match answer.get("Policies") {
        None | Some(serde_json::Value::Null) => vec![],
        Some(p) => serde_json::from_value(p.clone()).map_err(bad)?,
    };
    let parsed: Vec<Policy> = policies.iter().filter_map(|p| p.parsed().ok()).collect();
    Ok(Acl::for_token(&token, &parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_the_servers_answer() {
        let acl = compile(&serde_json::json!({"Token": null})).unwrap();
        assert!(acl.is_management());
        let answer = serde_json::json!({
            "Token": {"AccessorID": "a", "Type": "client", "Policies": ["ops"]},
            "Policies": [{"Name": "ops", "Rules": "namespace \"default\" { capabilities = [\"alloc-exec\"] }"}],
        });
        let acl = compile(&answer).unwrap();
        assert!(!acl.is_management());
        assert!(acl.allow_namespace_operation("default", "alloc-exec"));
        assert!(!acl.allow_namespace_operation("default", "read-logs"));
        assert!(!acl.allow_namespace_operation("other", "alloc-exec"));
    }
}
