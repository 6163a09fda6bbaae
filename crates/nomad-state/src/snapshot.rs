//! Read-only, consistent views of the tables.

use std::sync::Arc;

use nomad_acl::{AclPolicy, AclToken};
use nomad_structs::*;

use crate::namespace::Namespace;
use crate::tables::Tables;
use crate::Table;

/// An immutable view of every table at one index.
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    t: Tables,
}

impl StateSnapshot {
    pub(crate) fn new(t: Tables) -> Self {
        StateSnapshot { t }
    }

    /// The highest index of the given tables (never 0 once anything was written: 1 is the floor).
    pub fn index(&self, tables: &[Table]) -> u64 {
        self.t.raw_index(tables).max(1)
    }

    /// The highest index of the given tables without the floor (0 when none was written);
    /// what [`crate::StateStore::wait_for_change`] compares against.
    pub fn index_raw(&self, tables: &[Table]) -> u64 {
        self.t.raw_index(tables)
    }

    /// The latest applied index of the whole store (0 when empty).
    pub fn latest_index(&self) -> u64 {
        self.t.index
    }

    /// Jobs in a namespace (`None` = all namespaces), sorted by ID, optionally by ID prefix.
    pub fn jobs(&self, namespace: Option<&str>, prefix: &str) -> Vec<Arc<Job>> {
        let mut out: Vec<Arc<Job>> = self
            .t
            .jobs
            .iter()
            .filter(|((ns, id), _)| namespace.is_none_or(|n| n == ns) && id.starts_with(prefix))
            .map(|(_, j)| j.clone())
            .collect();
        out.sort_by(|a, b| (&a.id, &a.namespace).cmp(&(&b.id, &b.namespace)));
        out
    }

    /// One job.
    pub fn job(&self, namespace: &str, id: &str) -> Option<Arc<Job>> {
        self.t
            .jobs
            .get(&(namespace.to_string(), id.to_string()))
            .cloned()
    }

    /// The kept versions of a job, newest first (empty for an unknown job).
    pub fn job_versions(&self, namespace: &str, id: &str) -> Vec<Arc<Job>> {
        self.t
            .job_versions
            .get(&(namespace.to_string(), id.to_string()))
            .map(|v| v.as_ref().clone())
            .unwrap_or_default()
    }

    /// One kept version of a job.
    pub fn job_version(&self, namespace: &str, id: &str, version: u64) -> Option<Arc<Job>> {
        self.job_versions(namespace, id)
            .into_iter()
            .find(|j| j.version == version)
    }

    /// A job's scaling events by task group, newest first, with the highest CreateIndex
    /// among them (0 when none).
    pub fn scaling_events_by_job(
        &self,
        namespace: &str,
        id: &str,
    ) -> (std::collections::BTreeMap<String, Vec<ScalingEvent>>, u64) {
        let groups = self
            .t
            .scaling_events
            .get(&(namespace.to_string(), id.to_string()))
            .map(|g| (**g).clone())
            .unwrap_or_default();
        let index = groups
            .values()
            .flatten()
            .map(|e| e.create_index)
            .max()
            .unwrap_or(0);
        (groups, index)
    }

    /// A job's summary (always present for an existing job).
    pub fn job_summary(&self, namespace: &str, id: &str) -> Option<JobSummary> {
        self.t
            .job_summaries
            .get(&(namespace.to_string(), id.to_string()))
            .map(|s| (**s).clone())
    }

    /// The submission of a job version.
    pub fn job_submission(&self, namespace: &str, id: &str, version: u64) -> Option<JobSubmission> {
        self.t
            .submissions
            .get(&(namespace.to_string(), id.to_string(), version))
            .map(|s| (**s).clone())
    }

    /// All allocations (optionally one namespace, ID prefix), sorted by ID.
    pub fn allocs(&self, namespace: Option<&str>, prefix: &str) -> Vec<Arc<Allocation>> {
        self.t
            .allocs
            .range(prefix.to_string()..)
            .take_while(|(id, _)| id.starts_with(prefix))
            .filter(|(_, a)| namespace.is_none_or(|n| n == a.namespace))
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// One allocation by full ID.
    pub fn alloc(&self, id: &str) -> Option<Arc<Allocation>> {
        self.t.allocs.get(id).cloned()
    }

    /// Allocations of a job.
    pub fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<Allocation>> {
        self.lookup_allocs(self.t.alloc_ids_by_job(namespace, job_id))
    }

    /// Allocations on a node.
    pub fn allocs_by_node(&self, node_id: &str) -> Vec<Arc<Allocation>> {
        self.lookup_allocs(self.t.alloc_ids_by_node(node_id))
    }

    /// Allocations created by an eval.
    pub fn allocs_by_eval(&self, eval_id: &str) -> Vec<Arc<Allocation>> {
        self.lookup_allocs(self.t.alloc_ids_by_eval(eval_id))
    }

    fn lookup_allocs(&self, ids: Vec<String>) -> Vec<Arc<Allocation>> {
        ids.iter()
            .filter_map(|id| self.t.allocs.get(id).cloned())
            .collect()
    }

    /// Evaluations (optionally one namespace, ID prefix), sorted by ID.
    pub fn evals(&self, namespace: Option<&str>, prefix: &str) -> Vec<Arc<Evaluation>> {
        self.t
            .evals
            .range(prefix.to_string()..)
            .take_while(|(id, _)| id.starts_with(prefix))
            .filter(|(_, e)| namespace.is_none_or(|n| n == e.namespace))
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// One evaluation.
    pub fn eval(&self, id: &str) -> Option<Arc<Evaluation>> {
        self.t.evals.get(id).cloned()
    }

    /// Evaluations of a job.
    pub fn evals_by_job(&self, namespace: &str, job_id: &str) -> Vec<Arc<Evaluation>> {
        self.t
            .eval_ids_by_job(namespace, job_id)
            .iter()
            .filter_map(|id| self.t.evals.get(id).cloned())
            .collect()
    }

    /// Nodes (ID prefix), sorted by ID.
    pub fn nodes(&self, prefix: &str) -> Vec<Arc<Node>> {
        self.t
            .nodes
            .range(prefix.to_string()..)
            .take_while(|(id, _)| id.starts_with(prefix))
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// One node.
    pub fn node(&self, id: &str) -> Option<Arc<Node>> {
        self.t.nodes.get(id).cloned()
    }

    /// ACL tokens in Nomad's list order: by CreateIndex, then AccessorID. With a non-empty
    /// `prefix`, only tokens whose AccessorID starts with it, by AccessorID.
    pub fn acl_tokens(&self, prefix: &str) -> Vec<Arc<AclToken>> {
        if !prefix.is_empty() {
            return self
                .t
                .acl_tokens
                .range(prefix.to_string()..)
                .take_while(|(id, _)| id.starts_with(prefix))
                .map(|(_, t)| t.clone())
                .collect();
        }
        let mut out: Vec<Arc<AclToken>> = self.t.acl_tokens.values().cloned().collect();
        out.sort_by(|a, b| (a.create_index, &a.accessor_id).cmp(&(b.create_index, &b.accessor_id)));
        out
    }

    /// One ACL token by AccessorID.
    pub fn acl_token(&self, accessor_id: &str) -> Option<Arc<AclToken>> {
        self.t.acl_tokens.get(accessor_id).cloned()
    }

    /// One ACL token by SecretID.
    pub fn acl_token_by_secret(&self, secret_id: &str) -> Option<Arc<AclToken>> {
        let accessor = self.t.acl_tokens_by_secret.get(secret_id)?;
        self.t.acl_tokens.get(accessor).cloned()
    }

    /// ACL policies (name prefix), sorted by name. Stored without `RulesJSON`.
    pub fn acl_policies(&self, prefix: &str) -> Vec<Arc<AclPolicy>> {
        self.t
            .acl_policies
            .range(prefix.to_string()..)
            .take_while(|(n, _)| n.starts_with(prefix))
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// One ACL policy by name.
    pub fn acl_policy(&self, name: &str) -> Option<Arc<AclPolicy>> {
        self.t.acl_policies.get(name).cloned()
    }

    /// Raft index of the ACL bootstrap, `None` before it (Nomad's reset index).
    pub fn acl_bootstrap_index(&self) -> Option<u64> {
        (self.t.acl_bootstrap_index != 0).then_some(self.t.acl_bootstrap_index)
    }

    /// Namespaces (name prefix), sorted by name. `default` is always there.
    pub fn namespaces(&self, prefix: &str) -> Vec<Arc<Namespace>> {
        self.t
            .namespaces
            .range(prefix.to_string()..)
            .take_while(|(n, _)| n.starts_with(prefix))
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// One namespace by name.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.t.namespaces.get(name).cloned()
    }

    /// Variables whose path starts with `prefix`, in one namespace (`None`: all), ordered
    /// by namespace then path.
    pub fn variables(&self, namespace: Option<&str>, prefix: &str) -> Vec<Arc<Variable>> {
        self.t
            .variables
            .iter()
            .filter(|((ns, path), _)| {
                namespace.is_none_or(|want| ns == want) && path.starts_with(prefix)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// One variable.
    pub fn variable(&self, namespace: &str, path: &str) -> Option<Arc<Variable>> {
        self.t
            .variables
            .get(&(namespace.to_string(), path.to_string()))
            .cloned()
    }
}
