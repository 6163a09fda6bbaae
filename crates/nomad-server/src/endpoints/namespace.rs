//! Namespace endpoints (Nomad's `namespace_endpoint.go`). They work with ACLs on or off;
//! writes need a management caller, reads are filtered by the caller's namespace rules.

use nomad_state::{Command, Namespace, Table, DEFAULT_NAMESPACE};
use nomad_structs::{multierror, JOB_STATUS_DEAD};

use crate::acl::ResolvedAcl;
use crate::endpoints::acl::require_management;
use crate::{QueryOptions, Server, ServerError};

impl Server {
    /// `PUT /v1/namespace[/:name]`: validates (`Invalid namespace "x": ...`), hashes and stores
    /// the namespace; an existing one keeps its CreateIndex. Management only; returns the
    /// write index.
    pub async fn namespace_upsert(
        &self,
        namespace: Namespace,
        caller: &ResolvedAcl,
    ) -> Result<u64, ServerError> {
        require_management(caller)?;
        let mut ns = namespace;
        if let Err(errs) = ns.validate() {
            return Err(ServerError::Internal(format!(
                "Invalid namespace {:?}: {}",
                ns.name,
                multierror(&errs)
            )));
        }
        ns.set_hash();
        let name = ns.name.clone();
        let index = self
            .apply(Command::NamespaceUpsert {
                namespaces: vec![ns],
            })
            .await?;
        tracing::info!(namespace = %name, index, "namespace upserted");
        Ok(index)
    }

    /// `DELETE /v1/namespace/:name`. Refused for `default` (`can not delete default
    /// namespace`), for a namespace with jobs that are not dead or allocs that are not
    /// client-terminal (`namespace "x" has non-terminal jobs in regions: [global]`), and for an
    /// unknown one (`namespace not found`). Management only; returns the write index.
    pub async fn namespace_delete(
        &self,
        name: &str,
        caller: &ResolvedAcl,
    ) -> Result<u64, ServerError> {
        require_management(caller)?;
        if name == DEFAULT_NAMESPACE {
            return Err(ServerError::Internal(
                "can not delete default namespace".into(),
            ));
        }
        // The job lock keeps a job from being registered between the check and the delete.
        let _guard = self.register_lock.lock().await;
        let snap = self.state.snapshot();
        if snap.namespace(name).is_none() {
            return Err(ServerError::Internal("namespace not found".into()));
        }
        let region = &self.config.region;
        let mut errs = Vec::new();
        if snap
            .jobs(Some(name), "")
            .iter()
            .any(|j| j.status != JOB_STATUS_DEAD)
        {
            errs.push(format!(
                "namespace {name:?} has non-terminal jobs in regions: [{region}]"
            ));
        }
        if snap
            .allocs(Some(name), "")
            .iter()
            .any(|a| !a.client_terminal())
        {
            errs.push(format!(
                "namespace {name:?} has non-terminal allocations in regions: [{region}]"
            ));
        }
        if snap.namespace(name).is_some_and(|ns| !ns.quota.is_empty()) {
            errs.push(format!(
                "namespace {name:?} has quotas associated with it: [{region}]"
            ));
        }
        if !errs.is_empty() {
            return Err(ServerError::Internal(multierror(&errs)));
        }
        let index = self
            .apply(Command::NamespaceDelete {
                names: vec![name.to_string()],
            })
            .await?;
        tracing::info!(namespace = name, index, "namespace deleted");
        Ok(index)
    }

    /// `GET /v1/namespace/:name` (blocking). `Permission denied` unless the caller's ACL
    /// grants something in it; unknown: `Namespace not found` (404).
    pub async fn namespace_get(
        &self,
        name: &str,
        caller: &ResolvedAcl,
        opts: &QueryOptions,
    ) -> Result<(Namespace, u64), ServerError> {
        if !caller.acl.allow_namespace(name) {
            return Err(ServerError::PermissionDenied);
        }
        let (found, index) = self
            .blocking_query_indexed(&[Table::Namespaces], opts, |snap| {
                match snap.namespace(name) {
                    Some(ns) => {
                        let idx = ns.modify_index;
                        (Some(ns), idx)
                    }
                    None => (None, snap.index(&[Table::Namespaces])),
                }
            })
            .await;
        match found {
            Some(ns) => Ok(((*ns).clone(), index)),
            None => Err(ServerError::NotFound("Namespace not found".into())),
        }
    }

    /// `GET /v1/namespaces` (blocking): by name, only those the caller's ACL grants anything in.
    pub async fn namespace_list(
        &self,
        prefix: &str,
        caller: &ResolvedAcl,
        opts: &QueryOptions,
    ) -> Result<(Vec<Namespace>, u64), ServerError> {
        let acl = caller.acl.clone();
        Ok(self
            .blocking_query(&[Table::Namespaces], opts, |snap| {
                snap.namespaces(prefix)
                    .iter()
                    .filter(|ns| acl.allow_namespace(&ns.name))
                    .map(|ns| (**ns).clone())
                    .collect::<Vec<_>>()
            })
            .await)
    }
}
