//! Token resolution (Nomad's `acl.go` / `auth.go`): a request's secret becomes a compiled
//! [`Acl`], cached by token and policy versions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nomad_acl::{anonymous_policy_name, anonymous_token, Acl, AclToken, Policy};
use nomad_state::StateSnapshot;

use crate::{now_nanos, Server, ServerError};

/// Nomad's `ACL token not found` (403 through the HTTP layer's suffix matching).
pub const ERR_TOKEN_NOT_FOUND: &str = "ACL token not found";
/// Nomad's `ACL token expired` (an uncoded error: 500, as Nomad answers).
pub const ERR_TOKEN_EXPIRED: &str = "ACL token expired";
/// Nomad's `ACL support disabled` (400).
pub const ERR_ACL_DISABLED: &str = "ACL support disabled";

/// Compiled ACLs kept at most; the cache is emptied when it grows past this.
const ACL_CACHE_LIMIT: usize = 512;

/// What a request may do: the compiled ACL and the token it came from.
#[derive(Debug, Clone)]
pub struct ResolvedAcl {
    /// The compiled ACL. Allows everything when ACLs are disabled.
    pub acl: Arc<Acl>,
    /// The caller's token: `None` when ACLs are disabled, the anonymous token (accessor
    /// `anonymous`, no SecretID) for requests without one.
    pub token: Option<Arc<AclToken>>,
    /// Whether the server enforces ACLs.
    pub acl_enabled: bool,
}

impl ResolvedAcl {
    /// Allow-all, as when ACLs are disabled.
    pub fn disabled() -> ResolvedAcl {
        ResolvedAcl {
            acl: Arc::new(Acl::management()),
            token: None,
            acl_enabled: false,
        }
    }

    /// Whether the caller may do everything (management token, or ACLs disabled).
    pub fn is_management(&self) -> bool {
        self.acl.is_management()
    }

    /// Whether the caller is the anonymous token (ACLs enabled, no secret given).
    pub fn is_anonymous(&self) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| t.secret_id.is_empty() && t.accessor_id == "anonymous")
    }
}

/// (AccessorID, token ModifyIndex, [(policy name, policy ModifyIndex)]).
type CacheKey = (String, u64, Vec<(String, u64)>);

/// Compiled ACLs keyed by the versions they were built from, so a changed token or policy
/// simply misses.
#[derive(Debug, Default)]
pub(crate) struct AclCache {
    entries: Mutex<HashMap<CacheKey, Arc<Acl>>>,
}

impl AclCache {
    fn get_or_build(&self, key: CacheKey, build: impl FnOnce() -> Acl) -> Arc<Acl> {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = m.get(&key) {
            return a.clone();
        }
        if m.len() >= ACL_CACHE_LIMIT {
            m.clear();
        }
        let acl = Arc::new(build());
        m.insert(key, acl.clone());
        acl
    }
}

impl Server {
    /// Resolves a request's secret (the `X-Nomad-Token`) to what it may do.
    ///
    /// ACLs disabled: allow-all. No (or blank) secret: the anonymous token with the
    /// `anonymous` policy (nothing allowed if that policy does not exist). Unknown secret:
    /// `ACL token not found`; expired token: `ACL token expired`. A management token gets
    /// [`Acl::management`]; a client token the union of its (existing) policies.
    pub fn resolve_token(&self, secret: Option<&str>) -> Result<ResolvedAcl, ServerError> {
        if !self.config.acl_enabled {
            return Ok(ResolvedAcl::disabled());
        }
        let snap = self.state.snapshot();
        let secret = secret.map(str::trim).filter(|s| !s.is_empty());
        let token = match secret {
            None => Arc::new(anonymous_token()),
            Some(s) => match snap.acl_token_by_secret(s) {
                Some(t) => t,
                None => return Err(ServerError::Internal(ERR_TOKEN_NOT_FOUND.into())),
            },
        };
        if token.is_expired(now_nanos()) {
            return Err(ServerError::Internal(ERR_TOKEN_EXPIRED.into()));
        }
        let acl = self.acl_for_token(&snap, &token);
        Ok(ResolvedAcl {
            acl,
            token: Some(token),
            acl_enabled: true,
        })
    }

    /// For a client-only agent's own checks (`ACL.ResolveToken`): the token a secret names
    /// (without its secret) and the policies it has, with the same errors as
    /// [`Server::resolve_token`]. `None`: ACLs are disabled.
    pub fn token_and_policies(
        &self,
        secret: Option<&str>,
    ) -> Result<Option<(AclToken, Vec<nomad_acl::AclPolicy>)>, ServerError> {
        let resolved = self.resolve_token(secret)?;
        let Some(token) = resolved.token else {
            return Ok(None);
        };
        let snap = self.state.snapshot();
        let names: Vec<String> = if token.accessor_id == "anonymous" && token.secret_id.is_empty() {
            vec![anonymous_policy_name().to_string()]
        } else {
            token.policy_names().to_vec()
        };
        let policies = names
            .iter()
            .filter_map(|n| snap.acl_policy(n))
            .map(|p| (*p).clone())
            .collect();
        let mut token = (*token).clone();
        token.secret_id.clear();
        Ok(Some((token, policies)))
    }

    /// The compiled ACL of a (known, unexpired) token, from the cache when its token and
    /// policies are unchanged.
    pub(crate) fn acl_for_token(&self, snap: &StateSnapshot, token: &AclToken) -> Arc<Acl> {
        if token.is_management() {
            return Arc::new(Acl::management());
        }
        let names: Vec<&str> = if token.accessor_id == "anonymous" && token.secret_id.is_empty() {
            vec![anonymous_policy_name()]
        } else {
            token.policy_names().iter().map(String::as_str).collect()
        };
        // Policies that do not exist (deleted, or never created) grant nothing.
        let stored: Vec<_> = names.iter().filter_map(|n| snap.acl_policy(n)).collect();
        let key: CacheKey = (
            token.accessor_id.clone(),
            token.modify_index,
            stored
                .iter()
                .map(|p| (p.name.clone(), p.modify_index))
                .collect(),
        );
        self.acl_cache.get_or_build(key, || {
            let parsed: Vec<Policy> = stored.iter().filter_map(|p| p.parsed().ok()).collect();
            Acl::for_token(token, &parsed)
        })
    }

    /// `ACL support disabled` unless ACLs are enabled.
    pub(crate) fn require_acl_enabled(&self) -> Result<(), ServerError> {
        if self.config.acl_enabled {
            Ok(())
        } else {
            Err(ServerError::BadRequest(ERR_ACL_DISABLED.into()))
        }
    }
}
