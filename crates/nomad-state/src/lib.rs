//! The server's state store: in-memory tables changed only by applying [`Command`]s.
//!
//! Invariants: `apply` is deterministic — no clock reads, no fresh IDs, no IO; everything a
//! command needs (IDs, timestamps) is inside it, so a Raft log replayed on any server gives the
//! same state. Readers take immutable [`StateSnapshot`]s; blocking queries wait on the index.
//!
//! Layout: every table is an `Arc<BTreeMap<..>>` of `Arc<T>` objects. A snapshot clones the
//! table `Arc`s (cheap); a write clones a table only when a snapshot still shares it
//! (`Arc::make_mut`), and objects are cloned before they are changed (copy-on-write).
//! Entry points: [`StateStore::apply`], [`StateStore::snapshot`], [`StateStore::wait_for_change`],
//! [`StateStore::persist`] / [`StateStore::restore`].
//!
//! Besides jobs, evals, allocs and nodes the store holds ACL tokens (by AccessorID, indexed by
//! SecretID), ACL policies, the ACL bootstrap index and [`Namespace`]s; the `default`
//! namespace exists from the start (index 1), even before any command, as in Nomad.
#![forbid(unsafe_code)]

mod acl;
mod apply;
mod namespace;
mod persist;
mod snapshot;
mod tables;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use nomad_structs::*;
use serde::{Deserialize, Serialize};

pub use namespace::{
    Namespace, NamespaceCapabilities, NamespaceConsulConfiguration, NamespaceNodePoolConfiguration,
    NamespaceVaultConfiguration, DEFAULT_NAMESPACE, DEFAULT_NAMESPACE_DESCRIPTION,
    MAX_NAMESPACE_DESCRIPTION_LENGTH, NAMESPACE_NAME_PATTERN,
};
pub use nomad_acl::{AclPolicy, AclToken};
pub use snapshot::StateSnapshot;
use tables::Tables;

/// How many versions of a job are kept (Nomad's `JobTrackedVersions`).
pub const JOB_TRACKED_VERSIONS: usize = 6;

/// How a refused check-and-set on a variable reads (the server turns it into a 409).
pub const VAR_CAS_CONFLICT: &str = "variable check-and-set conflict";

/// Variable operations (Nomad's `VarOp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VarOp {
    /// Write whatever is there.
    Set,
    /// Write if the stored ModifyIndex matches.
    Cas,
    /// Delete (nothing there is fine).
    Delete,
    /// Delete if the stored ModifyIndex matches.
    DeleteCas,
}

/// One entry of the replicated log.
// Commands are built once and moved into the log; boxing the job would change the public shape.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Upsert a job (version bumped when the spec changed) and optionally create its eval.
    JobRegister {
        job: Job,
        eval: Option<Evaluation>,
        submission: Option<JobSubmission>,
        now: i64,
        /// `EnforceIndex`: register only if the job's current `JobModifyIndex` is this (0: only
        /// if the job does not exist). Checked here, in the log's order, so two servers (or
        /// two requests) cannot both pass the check.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enforce_index: Option<u64>,
    },
    /// Stop (or purge) a job and optionally create the deregister eval.
    JobDeregister {
        namespace: String,
        job_id: String,
        purge: bool,
        eval: Option<Evaluation>,
        now: i64,
    },
    /// Mark one kept version of a job stable or not (Nomad's `JobStabilityRequestType`). The
    /// version keeps its number and JobModifyIndex; an unknown version is refused.
    JobStability {
        namespace: String,
        job_id: String,
        version: u64,
        stable: bool,
    },
    /// Record a scaling event for a task group of a job (`ScalingEventRegisterRequestType`);
    /// the newest [`JOB_TRACKED_SCALING_EVENTS`] per group are kept.
    ScalingEventRegister {
        namespace: String,
        job_id: String,
        group: String,
        event: ScalingEvent,
    },
    /// Upsert evaluations (new, updated status, blocked...).
    EvalsUpsert { evals: Vec<Evaluation> },
    /// Register or update a node.
    NodeRegister { node: Node, now: i64 },
    /// Change a node's status (ready/down) with the evals the change creates.
    NodeStatusUpdate {
        node_id: String,
        status: String,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// An operator sets a node's scheduling eligibility (`eligible` / `ineligible`), with the
    /// evals the change creates.
    NodeUpdateEligibility {
        node_id: String,
        eligibility: String,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// A node's drain set, updated or ended. `drain_strategy` Some: the node drains and is
    /// ineligible; None: the drain ends (`drain_status` says `canceled` or `complete`) and
    /// the node becomes eligible again if `mark_eligible`. With the evals the change creates.
    NodeUpdateDrain {
        node_id: String,
        drain_strategy: Option<DrainStrategy>,
        mark_eligible: bool,
        drain_status: String,
        meta: Option<std::collections::BTreeMap<String, String>>,
        accessor_id: String,
        /// The node event's message (empty: none).
        event: String,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// Apply a scheduler plan: allocs placed or updated, allocs stopped, and the eval's new state.
    PlanApply {
        allocs_upsert: Vec<Allocation>,
        allocs_stop: Vec<(String, String)>,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// Client-reported alloc status (ClientStatus, TaskStates, ...), with evals it triggers.
    AllocClientUpdate {
        allocs: Vec<Allocation>,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// Server-side desired transitions (e.g. `alloc stop`), with the eval it creates.
    AllocDesiredTransition {
        alloc_ids: Vec<String>,
        desired_status: Option<String>,
        desired_description: Option<String>,
        transition: DesiredTransition,
        evals: Vec<Evaluation>,
        now: i64,
    },
    /// The one-time ACL bootstrap: stores the (management) token and records the index.
    /// Refused once bootstrapped, unless `reset_index` equals the recorded bootstrap index
    /// (Nomad's `acl-bootstrap-reset` file, read by the server before proposing).
    AclBootstrap {
        token: AclToken,
        reset_index: Option<u64>,
    },
    /// Create or update ACL tokens (IDs, times and hash set by the server). An update keeps
    /// the stored SecretID, CreateTime and CreateIndex.
    AclTokenUpsert { tokens: Vec<AclToken> },
    /// Delete ACL tokens by AccessorID (all must exist).
    AclTokenDelete { accessor_ids: Vec<String> },
    /// Create or update ACL policies (validated and hashed by the server).
    AclPolicyUpsert { policies: Vec<AclPolicy> },
    /// Delete ACL policies by name (unknown names are ignored, as in Nomad).
    AclPolicyDelete { names: Vec<String> },
    /// Create or update namespaces (a missing hash is computed here).
    NamespaceUpsert { namespaces: Vec<Namespace> },
    /// Delete namespaces (all must exist; `default` cannot be deleted).
    NamespaceDelete { names: Vec<String> },
    /// Write or delete a variable (`VarApplyStateRequest`). `Cas` and `DeleteCas` go through
    /// only if the stored variable's ModifyIndex is `var.meta.modify_index` (0: it must not
    /// exist); otherwise the command is refused with [`VAR_CAS_CONFLICT`]. The check runs
    /// here, in the log's order, so two writers cannot both pass it.
    VarApply { op: VarOp, var: Variable, now: i64 },
    /// Replace every table with a state written by [`StateStore::persist`] (operator snapshot
    /// restore, through the log so every server restores). Every table's index becomes the
    /// command's index, so blocking queries wake and indexes never go back.
    Restore {
        /// The persisted state (base64 in the log's JSON).
        #[serde(with = "b64")]
        state: Vec<u8>,
    },
}

/// `Vec<u8>` as a base64 string (compact in JSON, unlike an array of numbers).
mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

impl Command {
    /// The evaluations the command writes (as given in the command, before indexes are set).
    pub fn evals(&self) -> Vec<&Evaluation> {
        match self {
            Command::JobRegister { eval, .. } | Command::JobDeregister { eval, .. } => {
                eval.iter().collect()
            }
            Command::EvalsUpsert { evals }
            | Command::NodeStatusUpdate { evals, .. }
            | Command::NodeUpdateEligibility { evals, .. }
            | Command::NodeUpdateDrain { evals, .. }
            | Command::PlanApply { evals, .. }
            | Command::AllocClientUpdate { evals, .. }
            | Command::AllocDesiredTransition { evals, .. } => evals.iter().collect(),
            Command::NodeRegister { .. }
            | Command::JobStability { .. }
            | Command::ScalingEventRegister { .. }
            | Command::AclBootstrap { .. }
            | Command::AclTokenUpsert { .. }
            | Command::AclTokenDelete { .. }
            | Command::AclPolicyUpsert { .. }
            | Command::AclPolicyDelete { .. }
            | Command::NamespaceUpsert { .. }
            | Command::NamespaceDelete { .. }
            | Command::VarApply { .. }
            | Command::Restore { .. } => vec![],
        }
    }
}

/// Errors applying a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The command refers to an object that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The command is malformed.
    #[error("invalid command: {0}")]
    Invalid(String),
    /// The command is well-formed but the state refuses it, with Nomad's state-store message
    /// (e.g. `ACL bootstrap already done`, `default namespace can not be deleted`).
    #[error("{0}")]
    Refused(String),
}

/// Nomad's `EnforceIndex` check: `Some(message)` when a register expecting job modify index
/// `jmi` must be refused, given the existing job's modify index (`None`: no such job).
pub fn enforce_index_refusal(existing: Option<u64>, jmi: u64) -> Option<String> {
    match existing {
        Some(_) if jmi == 0 => Some("Enforcing job modify index 0: job already exists".to_string()),
        Some(ex) if ex != jmi => Some(format!(
            "Enforcing job modify index {jmi}: job exists with conflicting job modify index: {ex}"
        )),
        None if jmi != 0 => Some(format!(
            "Enforcing job modify index {jmi}: job does not exist"
        )),
        _ => None,
    }
}

/// Tables, for blocking queries on a table's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Table {
    /// Jobs (and their versions and submissions).
    Jobs,
    /// Job summaries.
    JobSummary,
    /// Evaluations.
    Evals,
    /// Allocations.
    Allocs,
    /// Nodes.
    Nodes,
    /// ACL tokens (Nomad's `acl_token` index).
    AclTokens,
    /// ACL policies (`acl_policy`).
    AclPolicies,
    /// Namespaces.
    Namespaces,
    /// Scaling events of task groups (Nomad's `scaling_event`).
    ScalingEvents,
    /// Variables (Nomad's `variables`).
    Variables,
}

/// The state store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct StateStore {
    tables: RwLock<Tables>,
    /// Carries the latest applied index; every apply publishes, waiters re-check their tables.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for StateStore {
    fn default() -> Self {
        StateStore {
            tables: RwLock::new(Tables::default()),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl StateStore {
    /// An empty store at index 0.
    pub fn new() -> Arc<Self> {
        Arc::new(StateStore::default())
    }

    /// Applies `cmd` at raft `index` (strictly increasing). Returns the index.
    ///
    /// Either the whole command applies or nothing changes: every check that can fail runs
    /// before the first write.
    pub fn apply(&self, index: u64, cmd: &Command) -> Result<u64, StateError> {
        {
            let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
            if index <= t.index {
                return Err(StateError::Invalid(format!(
                    "index {index} is not after the latest index {}",
                    t.index
                )));
            }
            t.apply(index, cmd)?;
            t.index = index;
        }
        self.changes.send_replace(index);
        Ok(index)
    }

    /// The latest applied index.
    pub fn latest_index(&self) -> u64 {
        self.tables.read().unwrap_or_else(|e| e.into_inner()).index
    }

    /// A consistent read-only view.
    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot::new(
            self.tables
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Waits until any of `tables` has an index greater than `min_index`, or `timeout` passes.
    pub async fn wait_for_change(&self, tables: &[Table], min_index: u64, timeout: Duration) {
        // Subscribe before checking so an apply between the check and the wait is not missed.
        let mut rx = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = self
                .tables
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .raw_index(tables);
            if current > min_index {
                return;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // Timed out, or the sender is gone (cannot happen while `self` lives).
                _ => return,
            }
        }
    }

    /// Serializes the whole state (for Raft snapshots). Deterministic: equal states give equal bytes.
    pub fn persist(&self) -> Vec<u8> {
        let t = self
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        persist::encode(&t)
    }

    /// Replaces the whole state with one written by [`StateStore::persist`].
    pub fn restore(&self, bytes: &[u8]) -> Result<(), StateError> {
        let t = persist::decode(bytes)?;
        let index = t.index;
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = t;
        self.changes.send_replace(index);
        Ok(())
    }

    /// A new store holding a state written by [`StateStore::persist`].
    pub fn from_persisted(bytes: &[u8]) -> Result<Arc<Self>, StateError> {
        let store = StateStore::new();
        store.restore(bytes)?;
        Ok(store)
    }
}

#[cfg(test)]
mod tests;
