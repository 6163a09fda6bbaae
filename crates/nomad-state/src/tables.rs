//! The tables and their secondary indexes, shared copy-on-write between the store and snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nomad_acl::{AclPolicy, AclToken};
use nomad_structs::*;

use crate::namespace::{Namespace, DEFAULT_NAMESPACE};
use crate::Table;

/// (namespace, job ID).
pub(crate) type JobKey = (String, String);

/// A job's scaling events: task group → events, newest first.
pub(crate) type GroupScalingEvents = BTreeMap<String, Vec<ScalingEvent>>;

/// Every table at one index. Cloning is cheap (one `Arc` clone per table).
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    pub(crate) index: u64,
    pub(crate) table_index: Arc<BTreeMap<Table, u64>>,
    pub(crate) jobs: Arc<BTreeMap<JobKey, Arc<Job>>>,
    /// Newest first, at most [`crate::JOB_TRACKED_VERSIONS`].
    pub(crate) job_versions: Arc<BTreeMap<JobKey, Arc<Vec<Arc<Job>>>>>,
    pub(crate) job_summaries: Arc<BTreeMap<JobKey, Arc<JobSummary>>>,
    /// Per job: task group → its scaling events, newest first.
    pub(crate) scaling_events: Arc<BTreeMap<JobKey, Arc<GroupScalingEvents>>>,
    pub(crate) submissions: Arc<BTreeMap<(String, String, u64), Arc<JobSubmission>>>,
    pub(crate) evals: Arc<BTreeMap<String, Arc<Evaluation>>>,
    /// (namespace, job ID, eval ID).
    pub(crate) evals_by_job: Arc<BTreeSet<(String, String, String)>>,
    pub(crate) allocs: Arc<BTreeMap<String, Arc<Allocation>>>,
    /// (namespace, job ID, alloc ID).
    pub(crate) allocs_by_job: Arc<BTreeSet<(String, String, String)>>,
    /// (node ID, alloc ID).
    pub(crate) allocs_by_node: Arc<BTreeSet<(String, String)>>,
    /// (eval ID, alloc ID).
    pub(crate) allocs_by_eval: Arc<BTreeSet<(String, String)>>,
    pub(crate) nodes: Arc<BTreeMap<String, Arc<Node>>>,
    /// By AccessorID.
    pub(crate) acl_tokens: Arc<BTreeMap<String, Arc<AclToken>>>,
    /// SecretID → AccessorID.
    pub(crate) acl_tokens_by_secret: Arc<BTreeMap<String, String>>,
    /// By name.
    pub(crate) acl_policies: Arc<BTreeMap<String, Arc<AclPolicy>>>,
    /// By name; `default` is always there.
    pub(crate) namespaces: Arc<BTreeMap<String, Arc<Namespace>>>,
    /// Raft index of the last ACL bootstrap (0: never bootstrapped).
    pub(crate) acl_bootstrap_index: u64,
    /// By (namespace, path).
    pub(crate) variables: Arc<BTreeMap<(String, String), Arc<Variable>>>,
}

impl Default for Tables {
    /// An empty state, except for the `default` namespace, which exists from index 1 on as in
    /// Nomad (so it is there before any command was applied).
    fn default() -> Self {
        let mut t = Tables {
            index: 0,
            table_index: Arc::default(),
            jobs: Arc::default(),
            job_versions: Arc::default(),
            job_summaries: Arc::default(),
            scaling_events: Arc::default(),
            submissions: Arc::default(),
            evals: Arc::default(),
            evals_by_job: Arc::default(),
            allocs: Arc::default(),
            allocs_by_job: Arc::default(),
            allocs_by_node: Arc::default(),
            allocs_by_eval: Arc::default(),
            nodes: Arc::default(),
            acl_tokens: Arc::default(),
            acl_tokens_by_secret: Arc::default(),
            acl_policies: Arc::default(),
            namespaces: Arc::default(),
            acl_bootstrap_index: 0,
            variables: Arc::default(),
        };
        t.ensure_default_namespace();
        t
    }
}

impl Tables {
    /// Highest index of `tables`, 0 when none was written.
    pub(crate) fn raw_index(&self, tables: &[Table]) -> u64 {
        tables
            .iter()
            .filter_map(|t| self.table_index.get(t))
            .copied()
            .max()
            .unwrap_or(0)
    }

    pub(crate) fn touch(&mut self, table: Table, index: u64) {
        Arc::make_mut(&mut self.table_index).insert(table, index);
    }

    /// Alloc IDs of a job, in ID order.
    pub(crate) fn alloc_ids_by_job(&self, namespace: &str, job_id: &str) -> Vec<String> {
        let start = (namespace.to_string(), job_id.to_string(), String::new());
        self.allocs_by_job
            .range(start..)
            .take_while(|(ns, j, _)| ns == namespace && j == job_id)
            .map(|(_, _, a)| a.clone())
            .collect()
    }

    /// Eval IDs of a job, in ID order.
    pub(crate) fn eval_ids_by_job(&self, namespace: &str, job_id: &str) -> Vec<String> {
        let start = (namespace.to_string(), job_id.to_string(), String::new());
        self.evals_by_job
            .range(start..)
            .take_while(|(ns, j, _)| ns == namespace && j == job_id)
            .map(|(_, _, e)| e.clone())
            .collect()
    }

    pub(crate) fn alloc_ids_by_node(&self, node_id: &str) -> Vec<String> {
        self.allocs_by_node
            .range((node_id.to_string(), String::new())..)
            .take_while(|(n, _)| n == node_id)
            .map(|(_, a)| a.clone())
            .collect()
    }

    pub(crate) fn alloc_ids_by_eval(&self, eval_id: &str) -> Vec<String> {
        self.allocs_by_eval
            .range((eval_id.to_string(), String::new())..)
            .take_while(|(e, _)| e == eval_id)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Inserts or replaces an alloc, keeping the secondary indexes right.
    pub(crate) fn put_alloc(&mut self, alloc: Allocation) {
        if let Some(old) = self.allocs.get(&alloc.id).cloned() {
            self.unindex_alloc(&old);
        }
        Arc::make_mut(&mut self.allocs_by_job).insert((
            alloc.namespace.clone(),
            alloc.job_id.clone(),
            alloc.id.clone(),
        ));
        Arc::make_mut(&mut self.allocs_by_node).insert((alloc.node_id.clone(), alloc.id.clone()));
        Arc::make_mut(&mut self.allocs_by_eval).insert((alloc.eval_id.clone(), alloc.id.clone()));
        Arc::make_mut(&mut self.allocs).insert(alloc.id.clone(), Arc::new(alloc));
    }

    fn unindex_alloc(&mut self, old: &Allocation) {
        Arc::make_mut(&mut self.allocs_by_job).remove(&(
            old.namespace.clone(),
            old.job_id.clone(),
            old.id.clone(),
        ));
        Arc::make_mut(&mut self.allocs_by_node).remove(&(old.node_id.clone(), old.id.clone()));
        Arc::make_mut(&mut self.allocs_by_eval).remove(&(old.eval_id.clone(), old.id.clone()));
    }

    /// Inserts or replaces an eval, keeping the job index right.
    pub(crate) fn put_eval(&mut self, eval: Evaluation) {
        if let Some(old) = self.evals.get(&eval.id).cloned() {
            Arc::make_mut(&mut self.evals_by_job).remove(&(
                old.namespace.clone(),
                old.job_id.clone(),
                old.id.clone(),
            ));
        }
        Arc::make_mut(&mut self.evals_by_job).insert((
            eval.namespace.clone(),
            eval.job_id.clone(),
            eval.id.clone(),
        ));
        Arc::make_mut(&mut self.evals).insert(eval.id.clone(), Arc::new(eval));
    }

    /// Puts the `default` namespace back if it is missing (fresh store, old snapshot).
    pub(crate) fn ensure_default_namespace(&mut self) {
        if !self.namespaces.contains_key(DEFAULT_NAMESPACE) {
            Arc::make_mut(&mut self.namespaces).insert(
                DEFAULT_NAMESPACE.to_string(),
                Arc::new(Namespace::default_namespace()),
            );
            let m = Arc::make_mut(&mut self.table_index);
            let at = m.entry(Table::Namespaces).or_insert(1);
            *at = (*at).max(1);
        }
    }

    /// Rebuilds every secondary index from the primary tables (after a restore).
    pub(crate) fn reindex(&mut self) {
        self.acl_tokens_by_secret = Arc::new(
            self.acl_tokens
                .values()
                .filter(|t| !t.secret_id.is_empty())
                .map(|t| (t.secret_id.clone(), t.accessor_id.clone()))
                .collect(),
        );
        let mut by_job = BTreeSet::new();
        let mut by_node = BTreeSet::new();
        let mut by_eval = BTreeSet::new();
        for a in self.allocs.values() {
            by_job.insert((a.namespace.clone(), a.job_id.clone(), a.id.clone()));
            by_node.insert((a.node_id.clone(), a.id.clone()));
            by_eval.insert((a.eval_id.clone(), a.id.clone()));
        }
        self.allocs_by_job = Arc::new(by_job);
        self.allocs_by_node = Arc::new(by_node);
        self.allocs_by_eval = Arc::new(by_eval);
        self.evals_by_job = Arc::new(
            self.evals
                .values()
                .map(|e| (e.namespace.clone(), e.job_id.clone(), e.id.clone()))
                .collect(),
        );
    }
}
