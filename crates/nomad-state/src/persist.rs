//! Whole-state serialization for Raft snapshots (JSON; secondary indexes are rebuilt on load).

use std::collections::BTreeMap;
use std::sync::Arc;

use nomad_acl::{AclPolicy, AclToken};
use nomad_structs::*;
use serde::{Deserialize, Serialize};

use crate::namespace::Namespace;
use crate::tables::Tables;
use crate::{StateError, Table};

#[derive(Serialize, Deserialize)]
struct Persisted {
    index: u64,
    table_index: Vec<(Table, u64)>,
    jobs: Vec<Job>,
    /// Every kept version, grouped by job, newest first within a job.
    job_versions: Vec<Job>,
    job_summaries: Vec<JobSummary>,
    submissions: Vec<PersistedSubmission>,
    evals: Vec<Evaluation>,
    allocs: Vec<Allocation>,
    nodes: Vec<Node>,
    // The ACL and namespace tables came later: older snapshots decode without them.
    #[serde(default)]
    acl_tokens: Vec<AclToken>,
    #[serde(default)]
    acl_policies: Vec<AclPolicy>,
    #[serde(default)]
    namespaces: Vec<Namespace>,
    #[serde(default)]
    acl_bootstrap_index: u64,
    #[serde(default)]
    scaling_events: Vec<PersistedScalingEvents>,
    #[serde(default)]
    variables: Vec<Variable>,
}

#[derive(Serialize, Deserialize)]
struct PersistedScalingEvents {
    namespace: String,
    job_id: String,
    groups: BTreeMap<String, Vec<ScalingEvent>>,
}

#[derive(Serialize, Deserialize)]
struct PersistedSubmission {
    namespace: String,
    job_id: String,
    version: u64,
    submission: JobSubmission,
}

pub(crate) fn encode(t: &Tables) -> Vec<u8> {
    let p = Persisted {
        index: t.index,
        table_index: t.table_index.iter().map(|(k, v)| (*k, *v)).collect(),
        jobs: t.jobs.values().map(|j| (**j).clone()).collect(),
        job_versions: t
            .job_versions
            .values()
            .flat_map(|v| v.iter().map(|j| (**j).clone()))
            .collect(),
        job_summaries: t.job_summaries.values().map(|s| (**s).clone()).collect(),
        submissions: t
            .submissions
            .iter()
            .map(|((ns, id, version), s)| PersistedSubmission {
                namespace: ns.clone(),
                job_id: id.clone(),
                version: *version,
                submission: (**s).clone(),
            })
            .collect(),
        evals: t.evals.values().map(|e| (**e).clone()).collect(),
        allocs: t.allocs.values().map(|a| (**a).clone()).collect(),
        nodes: t.nodes.values().map(|n| (**n).clone()).collect(),
        acl_tokens: t.acl_tokens.values().map(|x| (**x).clone()).collect(),
        acl_policies: t.acl_policies.values().map(|x| (**x).clone()).collect(),
        namespaces: t.namespaces.values().map(|x| (**x).clone()).collect(),
        acl_bootstrap_index: t.acl_bootstrap_index,
        scaling_events: t
            .scaling_events
            .iter()
            .map(|((ns, id), groups)| PersistedScalingEvents {
                namespace: ns.clone(),
                job_id: id.clone(),
                groups: (**groups).clone(),
            })
            .collect(),
        variables: t.variables.values().map(|v| (**v).clone()).collect(),
    };
    // Serializing plain data structures to a Vec cannot fail; an empty state is the fallback.
    serde_json::to_vec(&p).unwrap_or_default()
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Tables, StateError> {
    let p: Persisted = serde_json::from_slice(bytes)
        .map_err(|e| StateError::Invalid(format!("state snapshot does not decode: {e}")))?;
    let mut versions: BTreeMap<(String, String), Vec<Arc<Job>>> = BTreeMap::new();
    for j in p.job_versions {
        versions
            .entry((j.namespace.clone(), j.id.clone()))
            .or_default()
            .push(Arc::new(j));
    }
    let mut t = Tables {
        index: p.index,
        table_index: Arc::new(p.table_index.into_iter().collect()),
        jobs: Arc::new(
            p.jobs
                .into_iter()
                .map(|j| ((j.namespace.clone(), j.id.clone()), Arc::new(j)))
                .collect(),
        ),
        job_versions: Arc::new(
            versions
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
        ),
        job_summaries: Arc::new(
            p.job_summaries
                .into_iter()
                .map(|s| ((s.namespace.clone(), s.job_id.clone()), Arc::new(s)))
                .collect(),
        ),
        submissions: Arc::new(
            p.submissions
                .into_iter()
                .map(|s| ((s.namespace, s.job_id, s.version), Arc::new(s.submission)))
                .collect(),
        ),
        evals: Arc::new(
            p.evals
                .into_iter()
                .map(|e| (e.id.clone(), Arc::new(e)))
                .collect(),
        ),
        allocs: Arc::new(
            p.allocs
                .into_iter()
                .map(|a| (a.id.clone(), Arc::new(a)))
                .collect(),
        ),
        nodes: Arc::new(
            p.nodes
                .into_iter()
                .map(|n| (n.id.clone(), Arc::new(n)))
                .collect(),
        ),
        acl_tokens: Arc::new(
            p.acl_tokens
                .into_iter()
                .map(|x| (x.accessor_id.clone(), Arc::new(x)))
                .collect(),
        ),
        acl_policies: Arc::new(
            p.acl_policies
                .into_iter()
                .map(|x| (x.name.clone(), Arc::new(x)))
                .collect(),
        ),
        namespaces: Arc::new(
            p.namespaces
                .into_iter()
                .map(|x| (x.name.clone(), Arc::new(x)))
                .collect(),
        ),
        acl_bootstrap_index: p.acl_bootstrap_index,
        scaling_events: Arc::new(
            p.scaling_events
                .into_iter()
                .map(|s| ((s.namespace, s.job_id), Arc::new(s.groups)))
                .collect(),
        ),
        variables: Arc::new(
            p.variables
                .into_iter()
                .map(|v| ((v.meta.namespace.clone(), v.meta.path.clone()), Arc::new(v)))
                .collect(),
        ),
        ..Tables::default()
    };
    t.ensure_default_namespace();
    t.reindex();
    Ok(t)
}
