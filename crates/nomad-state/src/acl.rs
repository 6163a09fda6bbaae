//! FSM rules for ACL tokens, ACL policies, the bootstrap index and namespaces (Nomad's
//! `state_store_acl.go`, `state_store.go` namespace functions). Every check runs before the
//! first write, so a refused command changes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use nomad_acl::{AclPolicy, AclToken};

use crate::namespace::{Namespace, DEFAULT_NAMESPACE};
use crate::tables::Tables;
use crate::{StateError, Table};

impl Tables {
    pub(crate) fn acl_bootstrap(
        &mut self,
        index: u64,
        token: &AclToken,
        reset_index: Option<u64>,
    ) -> Result<(), StateError> {
        if self.acl_bootstrap_index != 0 {
            match reset_index.filter(|r| *r != 0) {
                None => return Err(StateError::Refused("ACL bootstrap already done".into())),
                Some(r) if r != self.acl_bootstrap_index => {
                    return Err(StateError::Refused(
                        "Invalid reset index for ACL bootstrap".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        self.check_token(token)?;
        let mut t = token.clone();
        t.create_index = index;
        t.modify_index = index;
        self.put_token(t);
        self.acl_bootstrap_index = index;
        self.touch(Table::AclTokens, index);
        Ok(())
    }

    pub(crate) fn acl_token_upsert(
        &mut self,
        index: u64,
        tokens: &[AclToken],
    ) -> Result<(), StateError> {
        let mut accessors = BTreeSet::new();
        let mut new_secrets = BTreeSet::new();
        for t in tokens {
            if !accessors.insert(t.accessor_id.as_str()) {
                return Err(StateError::Invalid(format!(
                    "token {} appears twice",
                    t.accessor_id
                )));
            }
            self.check_token(t)?;
            if !self.acl_tokens.contains_key(&t.accessor_id)
                && !new_secrets.insert(t.secret_id.as_str())
            {
                return Err(StateError::Refused(
                    "token with the same SecretID already exists".into(),
                ));
            }
        }
        for t in tokens {
            let mut t = t.clone();
            match self.acl_tokens.get(&t.accessor_id) {
                Some(ex) => {
                    // The secret and creation facts of a token never change.
                    t.secret_id = ex.secret_id.clone();
                    t.create_time = ex.create_time.clone();
                    t.create_index = ex.create_index;
                }
                None => t.create_index = index,
            }
            t.modify_index = index;
            self.put_token(t);
        }
        self.touch(Table::AclTokens, index);
        Ok(())
    }

    /// A token may be stored: it has IDs, and its SecretID is not another token's.
    fn check_token(&self, t: &AclToken) -> Result<(), StateError> {
        if t.accessor_id.is_empty() {
            return Err(StateError::Invalid("token without AccessorID".into()));
        }
        let existing = self.acl_tokens.get(&t.accessor_id);
        if existing.is_none() {
            if t.secret_id.is_empty() {
                return Err(StateError::Invalid("token without SecretID".into()));
            }
            if self.acl_tokens_by_secret.contains_key(&t.secret_id) {
                return Err(StateError::Refused(
                    "token with the same SecretID already exists".into(),
                ));
            }
        }
        Ok(())
    }

    fn put_token(&mut self, t: AclToken) {
        if let Some(old) = self.acl_tokens.get(&t.accessor_id).cloned() {
            Arc::make_mut(&mut self.acl_tokens_by_secret).remove(&old.secret_id);
        }
        Arc::make_mut(&mut self.acl_tokens_by_secret)
            .insert(t.secret_id.clone(), t.accessor_id.clone());
        Arc::make_mut(&mut self.acl_tokens).insert(t.accessor_id.clone(), Arc::new(t));
    }

    pub(crate) fn acl_token_delete(
        &mut self,
        index: u64,
        accessor_ids: &[String],
    ) -> Result<(), StateError> {
        let missing: Vec<&str> = accessor_ids
            .iter()
            .filter(|a| !self.acl_tokens.contains_key(*a))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(StateError::Refused(format!(
                "Cannot delete nonexistent tokens: {}",
                missing.join(", ")
            )));
        }
        for a in accessor_ids {
            if let Some(old) = Arc::make_mut(&mut self.acl_tokens).remove(a) {
                Arc::make_mut(&mut self.acl_tokens_by_secret).remove(&old.secret_id);
            }
        }
        self.touch(Table::AclTokens, index);
        Ok(())
    }

    pub(crate) fn acl_policy_upsert(
        &mut self,
        index: u64,
        policies: &[AclPolicy],
    ) -> Result<(), StateError> {
        if policies.iter().any(|p| p.name.is_empty()) {
            return Err(StateError::Invalid("policy without name".into()));
        }
        for p in policies {
            let mut p = p.clone();
            // RulesJSON is derived on read; the stored object holds the rules text only.
            p.rules_json = None;
            if p.hash.is_empty() {
                p.set_hash();
            }
            p.create_index = self
                .acl_policies
                .get(&p.name)
                .map_or(index, |ex| ex.create_index);
            p.modify_index = index;
            Arc::make_mut(&mut self.acl_policies).insert(p.name.clone(), Arc::new(p));
        }
        self.touch(Table::AclPolicies, index);
        Ok(())
    }

    pub(crate) fn acl_policy_delete(&mut self, index: u64, names: &[String]) {
        for n in names {
            Arc::make_mut(&mut self.acl_policies).remove(n);
        }
        self.touch(Table::AclPolicies, index);
    }

    pub(crate) fn namespace_upsert(
        &mut self,
        index: u64,
        namespaces: &[Namespace],
    ) -> Result<(), StateError> {
        if namespaces.iter().any(|n| n.name.is_empty()) {
            return Err(StateError::Invalid("namespace without name".into()));
        }
        for ns in namespaces {
            let mut ns = ns.clone();
            if ns.hash.is_empty() {
                ns.set_hash();
            }
            ns.create_index = self
                .namespaces
                .get(&ns.name)
                .map_or(index, |ex| ex.create_index);
            ns.modify_index = index;
            Arc::make_mut(&mut self.namespaces).insert(ns.name.clone(), Arc::new(ns));
        }
        self.touch(Table::Namespaces, index);
        Ok(())
    }

    pub(crate) fn namespace_delete(
        &mut self,
        index: u64,
        names: &[String],
    ) -> Result<(), StateError> {
        for n in names {
            if !self.namespaces.contains_key(n) {
                return Err(StateError::Refused("namespace not found".into()));
            }
            if n == DEFAULT_NAMESPACE {
                return Err(StateError::Refused(
                    "default namespace can not be deleted".into(),
                ));
            }
        }
        for n in names {
            Arc::make_mut(&mut self.namespaces).remove(n);
        }
        self.touch(Table::Namespaces, index);
        Ok(())
    }
}
