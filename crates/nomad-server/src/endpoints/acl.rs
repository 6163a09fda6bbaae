//! ACL endpoints (Nomad's `acl_endpoint.go`): bootstrap, tokens and policies.
//!
//! Every method answers `ACL support disabled` (400) when ACLs are off. Writes need a
//! management caller; reads follow Nomad's rules (a token may read itself and its policies).

use std::path::Path;

use nomad_acl::{
    anonymous_policy_name, AclPolicy, AclPolicyListStub, AclToken, AclTokenListStub,
    MANAGEMENT_TOKEN,
};
use nomad_state::{Command, Table};

use crate::acl::{ResolvedAcl, ERR_TOKEN_NOT_FOUND};
use crate::{new_id, now_nanos, QueryOptions, Server, ServerError};

/// The reset file's name, under `<data_dir>/server/`.
pub const ACL_BOOTSTRAP_RESET_FILE: &str = "acl-bootstrap-reset";

impl Server {
    /// `PUT /v1/acl/bootstrap`: creates the one management token (Name `Bootstrap Token`,
    /// Global). `bootstrap_secret` (a UUID) becomes its SecretID when given.
    ///
    /// Once bootstrapped it answers `ACL bootstrap already done (reset index: N)`, unless
    /// `<data_dir>/server/acl-bootstrap-reset` holds N, which allows one more bootstrap.
    pub async fn acl_bootstrap(
        &self,
        bootstrap_secret: Option<String>,
    ) -> Result<AclToken, ServerError> {
        self.require_acl_enabled()?;
        let _guard = self.acl_lock.lock().await;
        let mut reset_index = None;
        if let Some(done_at) = self.state.snapshot().acl_bootstrap_index() {
            let specified = self.file_bootstrap_reset_index();
            if specified == 0 {
                return Err(ServerError::BadRequest(format!(
                    "ACL bootstrap already done (reset index: {done_at})"
                )));
            }
            if specified != done_at {
                return Err(ServerError::BadRequest(format!(
                    "Invalid bootstrap reset index (specified {specified}, reset index: {done_at})"
                )));
            }
            reset_index = Some(done_at);
        }
        let mut token = AclToken {
            name: "Bootstrap Token".into(),
            token_type: MANAGEMENT_TOKEN.into(),
            global: true,
            ..AclToken::default()
        };
        token.canonicalize(new_id(), new_id(), now_nanos());
        if let Some(secret) = bootstrap_secret.filter(|s| !s.is_empty()) {
            if !is_uuid(&secret) {
                return Err(ServerError::BadRequest("invalid acl token".into()));
            }
            token.secret_id = secret;
        }
        token.set_hash();
        let accessor = token.accessor_id.clone();
        let index = self
            .apply(Command::AclBootstrap { token, reset_index })
            .await?;
        tracing::warn!(accessor_id = %accessor, index, "ACL system bootstrapped");
        self.stored_token(&accessor)
    }

    /// Nomad's reset file: the leading decimal number of `<data_dir>/server/acl-bootstrap-reset`,
    /// 0 when there is no such file or it does not parse.
    fn file_bootstrap_reset_index(&self) -> u64 {
        let Some(dir) = &self.config.data_dir else {
            return 0;
        };
        let path = dir.join("server").join(ACL_BOOTSTRAP_RESET_FILE);
        read_reset_index(&path)
    }

    /// `PUT /v1/acl/token`: creates a token (new AccessorID/SecretID, CreateTime,
    /// ExpirationTime from ExpirationTTL). A body with an AccessorID updates that token, as
    /// Nomad's `ACL.UpsertTokens` does. Management only.
    pub async fn acl_token_create(
        &self,
        token: AclToken,
        caller: &ResolvedAcl,
    ) -> Result<AclToken, ServerError> {
        self.require_acl_enabled()?;
        require_management(caller)?;
        let _guard = self.acl_lock.lock().await;
        let snap = self.state.snapshot();
        let mut token = token;
        let existing = if token.accessor_id.is_empty() {
            None
        } else {
            match snap.acl_token(&token.accessor_id) {
                Some(t) => Some(t),
                None => {
                    return Err(ServerError::BadRequest(format!(
                        "cannot find token {}",
                        token.accessor_id
                    )))
                }
            }
        };
        match &existing {
            None => {
                token.secret_id = String::new();
                token.canonicalize(new_id(), new_id(), now_nanos());
            }
            Some(ex) => {
                // Immutable facts come from the stored token.
                token.secret_id = ex.secret_id.clone();
                token.create_time = ex.create_time.clone();
                token.create_index = ex.create_index;
                if token.expiration_time.is_none() {
                    token.expiration_time = ex.expiration_time.clone();
                }
            }
        }
        token
            .validate(existing.as_deref())
            .map_err(|e| ServerError::BadRequest(format!("token 0 invalid: {e}")))?;
        // Roles are not stored by this server, so no role link can resolve.
        if let Some(role) = token.roles.iter().flatten().next() {
            let id = ["ID", "Name"]
                .iter()
                .find_map(|k| {
                    role.get(*k)
                        .and_then(|v| v.as_str())
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or("");
            return Err(ServerError::BadRequest(format!("cannot find role {id}")));
        }
        token.set_hash();
        let accessor = token.accessor_id.clone();
        let index = self
            .apply(Command::AclTokenUpsert {
                tokens: vec![token],
            })
            .await?;
        tracing::info!(accessor_id = %accessor, index, "ACL token upserted");
        self.stored_token(&accessor)
    }

    /// `PUT /v1/acl/token/:accessor`: updates a token (Name, Policies, Type...; the SecretID,
    /// Global and expiry cannot change). The body's AccessorID must equal `accessor_id`.
    pub async fn acl_token_update(
        &self,
        accessor_id: &str,
        token: AclToken,
        caller: &ResolvedAcl,
    ) -> Result<AclToken, ServerError> {
        self.require_acl_enabled()?;
        if token.accessor_id != accessor_id {
            return Err(ServerError::BadRequest(
                "Token Accessor ID does not match request path".into(),
            ));
        }
        self.acl_token_create(token, caller).await
    }

    /// `DELETE /v1/acl/token/:accessor`. Management only; returns the write index.
    pub async fn acl_token_delete(
        &self,
        accessor_id: &str,
        caller: &ResolvedAcl,
    ) -> Result<u64, ServerError> {
        self.require_acl_enabled()?;
        require_management(caller)?;
        let _guard = self.acl_lock.lock().await;
        if self.state.snapshot().acl_token(accessor_id).is_none() {
            return Err(ServerError::BadRequest(format!(
                "Cannot delete nonexistent tokens: {accessor_id}"
            )));
        }
        let index = self
            .apply(Command::AclTokenDelete {
                accessor_ids: vec![accessor_id.to_string()],
            })
            .await?;
        tracing::info!(accessor_id, index, "ACL token deleted");
        Ok(index)
    }

    /// `GET /v1/acl/token/:accessor` (blocking). Management tokens read any token, other
    /// tokens only themselves; an unknown accessor is `ACL token not found` (404) for
    /// management and `Permission denied` for others.
    pub async fn acl_token_get(
        &self,
        accessor_id: &str,
        caller: &ResolvedAcl,
        opts: &QueryOptions,
    ) -> Result<(AclToken, u64), ServerError> {
        self.require_acl_enabled()?;
        let mgmt = caller.is_management();
        let own_secret = caller
            .token
            .as_ref()
            .map(|t| t.secret_id.clone())
            .unwrap_or_default();
        let (found, index) = self
            .blocking_query_indexed(&[Table::AclTokens], opts, |snap| {
                match snap.acl_token(accessor_id) {
                    Some(t) => {
                        let idx = t.modify_index;
                        (Some(t), idx)
                    }
                    None => (None, snap.index(&[Table::AclTokens])),
                }
            })
            .await;
        match found {
            Some(t) if mgmt || (!own_secret.is_empty() && t.secret_id == own_secret) => {
                Ok(((*t).clone(), index))
            }
            None if mgmt => Err(ServerError::NotFound(ERR_TOKEN_NOT_FOUND.into())),
            _ => Err(ServerError::PermissionDenied),
        }
    }

    /// `GET /v1/acl/tokens` (blocking): list stubs, Nomad's order; management only.
    pub async fn acl_token_list(
        &self,
        prefix: &str,
        caller: &ResolvedAcl,
        opts: &QueryOptions,
    ) -> Result<(Vec<AclTokenListStub>, u64), ServerError> {
        self.require_acl_enabled()?;
        require_management(caller)?;
        Ok(self
            .blocking_query(&[Table::AclTokens], opts, |snap| {
                snap.acl_tokens(prefix)
                    .iter()
                    .map(|t| t.stub())
                    .collect::<Vec<_>>()
            })
            .await)
    }

    /// `GET /v1/acl/token/self`: the token whose SecretID the request carries (with its
    /// secret). No secret, or an unknown one: `ACL token not found` (404, as Nomad answers
    /// here rather than 403). Returns the token and its ModifyIndex.
    pub fn acl_token_self(&self, secret: Option<&str>) -> Result<(AclToken, u64), ServerError> {
        self.require_acl_enabled()?;
        let secret = secret.map(str::trim).filter(|s| !s.is_empty());
        let snap = self.state.snapshot();
        match secret.and_then(|s| snap.acl_token_by_secret(s)) {
            Some(t) => {
                let idx = t.modify_index.max(1);
                Ok(((*t).clone(), idx))
            }
            None => Err(ServerError::NotFound(ERR_TOKEN_NOT_FOUND.into())),
        }
    }

    /// `PUT /v1/acl/policy/:name`: validates (rules parsed strictly; errors carry line:col)
    /// and stores the policy. `name` is the path's; the body's Name must equal it.
    /// Management only; returns the write index.
    pub async fn acl_policy_upsert(
        &self,
        name: &str,
        policy: AclPolicy,
        caller: &ResolvedAcl,
    ) -> Result<u64, ServerError> {
        self.require_acl_enabled()?;
        require_management(caller)?;
        if policy.name != name {
            return Err(ServerError::BadRequest(
                "ACL policy name does not match request path".into(),
            ));
        }
        let mut policy = policy;
        policy
            .validate()
            .map_err(|e| ServerError::BadRequest(format!("policy 0 invalid: {e}")))?;
        policy.rules_json = None;
        policy.set_hash();
        let index = self
            .apply(Command::AclPolicyUpsert {
                policies: vec![policy],
            })
            .await?;
        tracing::info!(policy = name, index, "ACL policy upserted");
        Ok(index)
    }

    /// `DELETE /v1/acl/policy/:name`. Management only; an unknown name is not an error.
    pub async fn acl_policy_delete(
        &self,
        name: &str,
        caller: &ResolvedAcl,
    ) -> Result<u64, ServerError> {
        self.require_acl_enabled()?;
        require_management(caller)?;
        let index = self
            .apply(Command::AclPolicyDelete {
                names: vec![name.to_string()],
            })
            .await?;
        tracing::info!(policy = name, index, "ACL policy deleted");
        Ok(index)
    }

    /// `GET /v1/acl/policy/:name` (blocking), with `RulesJSON`. Management reads any policy;
    /// others only `anonymous` and the token's own policies (else `Permission denied`).
    /// Unknown: `ACL policy not found` (404).
    pub async fn acl_policy_get(
        &self,
        name: &str,
        caller: &ResolvedAcl,
        opts: &QueryOptions,
    ) -> Result<(AclPolicy, u64), ServerError> {
        self.require_acl_enabled()?;
        if !caller.is_management()
            && name != anonymous_policy_name()
            && !caller_policies(caller).iter().any(|p| p == name)
        {
            return Err(ServerError::PermissionDenied);
        }
        let (found, index) = self
            .blocking_query_indexed(&[Table::AclPolicies], opts, |snap| {
                match snap.acl_policy(name) {
                    Some(p) => {
                        let idx = p.modify_index;
                        (Some(p), idx)
                    }
                    None => (None, snap.index(&[Table::AclPolicies])),
                }
            })
            .await;
        match found {
            Some(p) => Ok((p.with_rules_json(), index)),
            None => Err(ServerError::NotFound("ACL policy not found".into())),
        }
    }

    /// `GET /v1/acl/policies` (blocking): stubs by name; a non-management caller sees only
    /// its token's policies.
    pub async fn acl_policy_list(
        &self,
        prefix: &str,
        caller: &ResolvedAcl,
        opts: &QueryOptions,
    ) -> Result<(Vec<AclPolicyListStub>, u64), ServerError> {
        self.require_acl_enabled()?;
        let mgmt = caller.is_management();
        let mine = caller_policies(caller);
        Ok(self
            .blocking_query(&[Table::AclPolicies], opts, |snap| {
                snap.acl_policies(prefix)
                    .iter()
                    .filter(|p| mgmt || mine.contains(&p.name))
                    .map(|p| p.stub())
                    .collect::<Vec<_>>()
            })
            .await)
    }

    fn stored_token(&self, accessor: &str) -> Result<AclToken, ServerError> {
        self.state
            .snapshot()
            .acl_token(accessor)
            .map(|t| (*t).clone())
            .ok_or_else(|| ServerError::Internal("token lookup failed: token not found".into()))
    }
}

/// `Permission denied` unless the caller is management (or ACLs are disabled).
pub(crate) fn require_management(caller: &ResolvedAcl) -> Result<(), ServerError> {
    if caller.is_management() {
        Ok(())
    } else {
        Err(ServerError::PermissionDenied)
    }
}

/// Policy names the caller's token links directly (the anonymous token: `anonymous`).
fn caller_policies(caller: &ResolvedAcl) -> Vec<String> {
    caller
        .token
        .as_ref()
        .map(|t| t.policy_names().to_vec())
        .unwrap_or_default()
}

/// Go's `fmt.Sscanf("%d")` of the file: leading spaces skipped, then the leading digits.
fn read_reset_index(path: &Path) -> u64 {
    let raw = match std::fs::read_to_string(path) {
        Ok(r) => r,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::error!(path = %path.display(), error = %e, "failed to read bootstrap file");
            }
            return 0;
        }
    };
    let digits: String = raw
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match digits.parse::<u64>() {
        Ok(i) => {
            tracing::warn!(path = %path.display(), reset_index = i, "bootstrap file parsed");
            i
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "failed to parse bootstrap file");
            0
        }
    }
}

/// Nomad's `helper.IsUUID`: 36 characters, 8-4-4-4-12 hex groups.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_and_reset_file_parsing() {
        assert!(is_uuid("52d3353d-d7b9-d945-0591-1af608732b76"));
        assert!(!is_uuid("52d3353dd7b9d94505911af608732b76"));
        assert!(!is_uuid("52d3353d-d7b9-d945-0591-1af608732b7z"));
        let dir = std::env::temp_dir().join(format!("nomad-reset-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(ACL_BOOTSTRAP_RESET_FILE);
        assert_eq!(read_reset_index(&p), 0);
        std::fs::write(&p, " 7\n").unwrap();
        assert_eq!(read_reset_index(&p), 7);
        std::fs::write(&p, "seven").unwrap();
        assert_eq!(read_reset_index(&p), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
