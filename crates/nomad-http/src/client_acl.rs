//! ACLs on a client-only agent: its HTTP API (logs, files, exec, alloc lifecycle) checks each
//! request's token as a server would, with the token and policies the servers return for it
//! (`ACL.ResolveToken`), compiled here and kept for the shorter of the agent's `acl { token_ttl,
//! policy_ttl }` (30 s each by default, as Nomad's), so a burst of requests costs one round trip. While no server
//! answers, a token resolved before keeps its last ACL (Nomad's default `down_policy =
//! "extend-cache"`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use nomad_acl::{Acl, AclPolicy, AclToken, Policy};
use nomad_client::Client;

use crate::error::ApiError;

/// How long a resolved token is trusted before the servers are asked again.
fn ttl(client: &Client) -> Duration {
    client.config().acl_cache_ttl
}

/// How long an ACL stays in the cache for the down policy once it is past its TTL.
const KEEP_STALE: Duration = Duration::from_secs(600);

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
    let answer = match client.resolve_token(secret).await {
        Ok(a) => a,
        Err(e) => {
            let m = e.0;
            if m.contains("ACL token not found") || m.contains("ACL token expired") {
                let what = if m.contains("expired") {
                    "ACL token expired"
                } else {
                    "ACL token not found"
                };
                return Err(ApiError::new(StatusCode::FORBIDDEN, what));
            }
            // Nomad's default `down_policy = "extend-cache"`: while no server answers, a
            // token resolved before keeps what it had.
            if let Some(stale) = stale(client, secret) {
                tracing::warn!(error = %m, "servers unreachable; using the cached ACL of this token");
                return Ok(stale);
            }
            return Err(ApiError::internal(format!(
                "failed to resolve the ACL token with the servers: {m}"
            )));
        }
    };
    let acl = Arc::new(compile(&answer)?);
    let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
    if c.len() > 512 {
        // Stale entries stay a while for the down policy, not forever.
        c.retain(|_, (at, _)| at.elapsed() < KEEP_STALE);
    }
    c.insert(key(client, secret), (Instant::now(), acl.clone()));
    Ok(acl)
}

/// The ACL resolved for `secret` within the last TTL, if any.
pub(crate) fn cached(client: &Client, secret: &str) -> Option<Arc<Acl>> {
    younger_than(client, secret, Some(ttl(client)))
}

/// The ACL the middleware resolved for this request's `secret` (moments ago, whatever the
/// TTL: with `token_ttl = "0s"` the entry is already past it when the handler asks).
pub(crate) fn resolved_for_request(client: &Client, secret: &str) -> Option<Arc<Acl>> {
    younger_than(
        client,
        secret,
        Some(ttl(client).max(Duration::from_secs(10))),
    )
}

/// The ACL resolved for `secret` at any time before, however old.
fn stale(client: &Client, secret: &str) -> Option<Arc<Acl>> {
    younger_than(client, secret, None)
}

/// The cached ACL of `secret` if it was resolved less than `max_age` ago (`None`: any age).
fn younger_than(client: &Client, secret: &str, max_age: Option<Duration>) -> Option<Arc<Acl>> {
    let c = cache().lock().unwrap_or_else(|p| p.into_inner());
    c.get(&key(client, secret))
        .filter(|(at, _)| max_age.is_none_or(|m| at.elapsed() < m))
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
    use nomad_client::{BoxFuture, ClientConfig, RpcError, ServerConn};
    use nomad_structs::{Allocation, Node};

    /// Servers that never answer.
    struct Down;

    impl ServerConn for Down {
        fn register(&self, _: Node) -> BoxFuture<'_, Result<Duration, RpcError>> {
            Box::pin(async { Err(RpcError("connection refused".into())) })
        }
        fn heartbeat(&self, _: &str) -> BoxFuture<'_, Result<Duration, RpcError>> {
            Box::pin(async { Err(RpcError("connection refused".into())) })
        }
        fn allocs(
            &self,
            _: &str,
            _: u64,
            _: Duration,
        ) -> BoxFuture<'_, Result<(Vec<Allocation>, u64), RpcError>> {
            Box::pin(async { Err(RpcError("connection refused".into())) })
        }
        fn update_allocs(&self, _: Vec<Allocation>) -> BoxFuture<'_, Result<(), RpcError>> {
            Box::pin(async { Err(RpcError("connection refused".into())) })
        }
        fn resolve_token(&self, _: &str) -> BoxFuture<'_, Result<serde_json::Value, RpcError>> {
            Box::pin(async { Err(RpcError("connection refused".into())) })
        }
    }

    #[tokio::test]
    async fn a_known_token_keeps_its_acl_while_the_servers_are_down() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = ClientConfig::new(tmp.path().to_path_buf());
        config.node_id = Some("node-down".into());
        let client =
            Client::new(config, Arc::new(Down), std::collections::BTreeMap::new()).unwrap();
        // Unknown token, nobody to ask: an error that says why.
        let err = resolve(&client, "never-seen").await.unwrap_err();
        assert!(format!("{err:?}").contains("connection refused"), "{err:?}");
        // A token resolved long ago (past the TTL): its last ACL still applies.
        let old = Instant::now()
            .checked_sub(ttl(&client) * 2)
            .unwrap_or_else(Instant::now);
        cache()
            .lock()
            .unwrap()
            .insert(key(&client, "seen"), (old, Arc::new(Acl::management())));
        assert!(cached(&client, "seen").is_none(), "past the TTL");
        let acl = resolve(&client, "seen").await.expect("stale ACL");
        assert!(acl.is_management());
    }

    /// Servers that resolve every token to management, counting the questions.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl ServerConn for Counting {
        fn register(&self, _: Node) -> BoxFuture<'_, Result<Duration, RpcError>> {
            Box::pin(async { Ok(Duration::from_secs(10)) })
        }
        fn heartbeat(&self, _: &str) -> BoxFuture<'_, Result<Duration, RpcError>> {
            Box::pin(async { Ok(Duration::from_secs(10)) })
        }
        fn allocs(
            &self,
            _: &str,
            _: u64,
            _: Duration,
        ) -> BoxFuture<'_, Result<(Vec<Allocation>, u64), RpcError>> {
            Box::pin(async { Ok((vec![], 0)) })
        }
        fn update_allocs(&self, _: Vec<Allocation>) -> BoxFuture<'_, Result<(), RpcError>> {
            Box::pin(async { Ok(()) })
        }
        fn resolve_token(&self, _: &str) -> BoxFuture<'_, Result<serde_json::Value, RpcError>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Ok(serde_json::json!({"Token": null})) })
        }
    }

    #[tokio::test]
    async fn the_cache_lasts_the_configured_ttl() {
        use std::sync::atomic::Ordering;
        let asked = |ttl: Duration| async move {
            let tmp = tempfile::tempdir().unwrap();
            let mut config = ClientConfig::new(tmp.path().to_path_buf());
            config.node_id = Some(format!("node-ttl-{}", ttl.as_secs()));
            config.acl_cache_ttl = ttl;
            let conn = Arc::new(Counting(Default::default()));
            let client =
                Client::new(config, conn.clone(), std::collections::BTreeMap::new()).unwrap();
            for _ in 0..3 {
                resolve(&client, "s").await.expect("resolved");
                // What the request's handler sees, whatever the TTL.
                assert!(resolved_for_request(&client, "s").is_some());
            }
            conn.0.load(Ordering::SeqCst)
        };
        assert_eq!(asked(Duration::from_secs(30)).await, 1, "cached");
        assert_eq!(
            asked(Duration::ZERO).await,
            3,
            "token_ttl = 0s asks every time"
        );
    }

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
