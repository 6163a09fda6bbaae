//! Client nodes as the servers see them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::null_default as nd;

/// Node status strings.
pub const NODE_STATUS_INIT: &str = "initializing";
/// Heartbeating and usable.
pub const NODE_STATUS_READY: &str = "ready";
/// Missed its heartbeats.
pub const NODE_STATUS_DOWN: &str = "down";
/// Disconnected (allocs unknown).
pub const NODE_STATUS_DISCONNECTED: &str = "disconnected";
/// Scheduling eligibility.
pub const NODE_ELIGIBLE: &str = "eligible";
/// Not eligible for new placements.
pub const NODE_INELIGIBLE: &str = "ineligible";

/// A client node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID", deserialize_with = "nd")]
    pub id: String,
    /// Never served: blanked by the HTTP layer.
    #[serde(rename = "SecretID", deserialize_with = "nd")]
    pub secret_id: String,
    #[serde(deserialize_with = "nd")]
    pub datacenter: String,
    #[serde(deserialize_with = "nd")]
    pub name: String,
    #[serde(deserialize_with = "nd")]
    pub cgroup_parent: String,
    #[serde(rename = "HTTPAddr", deserialize_with = "nd")]
    pub http_addr: String,
    #[serde(rename = "TLSEnabled", deserialize_with = "nd")]
    pub tls_enabled: bool,
    #[serde(deserialize_with = "nd")]
    pub attributes: BTreeMap<String, String>,
    #[serde(deserialize_with = "nd")]
    pub node_resources: NodeResources,
    #[serde(deserialize_with = "nd")]
    pub reserved_resources: NodeReservedResources,
    pub links: Option<BTreeMap<String, String>>,
    pub meta: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "nd")]
    pub node_class: String,
    #[serde(deserialize_with = "nd")]
    pub node_pool: String,
    #[serde(deserialize_with = "nd")]
    pub computed_class: String,
    pub drain_strategy: Option<DrainStrategy>,
    #[serde(deserialize_with = "nd")]
    pub scheduling_eligibility: String,
    #[serde(deserialize_with = "nd")]
    pub status: String,
    #[serde(deserialize_with = "nd")]
    pub status_description: String,
    /// Unix seconds.
    #[serde(deserialize_with = "nd")]
    pub status_updated_at: i64,
    pub events: Option<Vec<NodeEvent>>,
    #[serde(deserialize_with = "nd")]
    pub drivers: BTreeMap<String, DriverInfo>,
    pub host_volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub host_networks: Option<BTreeMap<String, serde_json::Value>>,
    pub last_drain: Option<DrainMetadata>,
    #[serde(deserialize_with = "nd")]
    pub create_index: u64,
    #[serde(deserialize_with = "nd")]
    pub modify_index: u64,
}

impl Node {
    /// Whether the scheduler may place new allocs here.
    pub fn ready(&self) -> bool {
        self.status == NODE_STATUS_READY
            && self.scheduling_eligibility != NODE_INELIGIBLE
            && self.drain_strategy.is_none()
    }

    /// The list stub served by `GET /v1/nodes`.
    pub fn stub(&self) -> NodeListStub {
        NodeListStub {
            address: self
                .http_addr
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_default(),
            id: self.id.clone(),
            attributes: None,
            datacenter: self.datacenter.clone(),
            name: self.name.clone(),
            node_pool: self.node_pool.clone(),
            node_class: self.node_class.clone(),
            version: self
                .attributes
                .get("nomad.version")
                .cloned()
                .unwrap_or_default(),
            drain: self.drain_strategy.is_some(),
            scheduling_eligibility: self.scheduling_eligibility.clone(),
            status: self.status.clone(),
            status_description: self.status_description.clone(),
            drivers: self.drivers.clone(),
            host_volumes: self.host_volumes.clone(),
            node_resources: None,
            reserved_resources: None,
            last_drain: self.last_drain.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// Go's zero `time.Time`, as Nomad serializes an unset time.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `LastDrain.Status` values.
pub const DRAIN_STATUS_DRAINING: &str = "draining";
/// The drain finished: every alloc left the node.
pub const DRAIN_STATUS_COMPLETE: &str = "complete";
/// An operator disabled the drain before it finished.
pub const DRAIN_STATUS_CANCELED: &str = "canceled";

/// What an operator asks of a drain (`DrainSpec` in Nomad's API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainSpec {
    /// Nanoseconds. Positive: allocs still there after it are stopped; 0: no deadline;
    /// negative: stop everything now (`-force`).
    #[serde(deserialize_with = "nd")]
    pub deadline: i64,
    /// Leave system allocs running.
    #[serde(deserialize_with = "nd")]
    pub ignore_system_jobs: bool,
}

/// A node's drain in progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainStrategy {
    #[serde(flatten)]
    pub spec: DrainSpec,
    /// RFC3339: when the deadline forces the remaining allocs off ([`GO_ZERO_TIME`] if none).
    #[serde(deserialize_with = "nd")]
    pub force_deadline: String,
    /// RFC3339: when the drain began.
    #[serde(deserialize_with = "nd")]
    pub started_at: String,
}

impl DrainStrategy {
    /// Whether the remaining allocs must be stopped now: a forced drain always, one with a
    /// deadline once it passed, one without a deadline never.
    pub fn deadline_reached(&self, now_nanos: i64) -> bool {
        match self.spec.deadline {
            d if d < 0 => true,
            0 => false,
            _ => self.force_deadline_nanos().is_some_and(|t| now_nanos >= t),
        }
    }

    /// The force deadline in unix nanoseconds, when the drain has one.
    pub fn force_deadline_nanos(&self) -> Option<i64> {
        if self.spec.deadline <= 0 {
            return None;
        }
        crate::parse_rfc3339_nanos(&self.force_deadline)
    }
}

/// The last drain of a node (`LastDrain`), kept after it ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainMetadata {
    /// RFC3339.
    #[serde(deserialize_with = "nd")]
    pub started_at: String,
    /// RFC3339.
    #[serde(deserialize_with = "nd")]
    pub updated_at: String,
    /// `draining`, `complete` or `canceled`.
    #[serde(deserialize_with = "nd")]
    pub status: String,
    #[serde(rename = "AccessorID", deserialize_with = "nd")]
    pub accessor_id: String,
    pub meta: Option<BTreeMap<String, String>>,
}

/// An event in a node's life.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeEvent {
    #[serde(deserialize_with = "nd")]
    pub message: String,
    #[serde(deserialize_with = "nd")]
    pub subsystem: String,
    pub details: Option<BTreeMap<String, String>>,
    /// RFC3339.
    pub timestamp: Option<String>,
    #[serde(deserialize_with = "nd")]
    pub create_index: u64,
}

/// A driver's health on a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverInfo {
    pub attributes: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "nd")]
    pub detected: bool,
    #[serde(deserialize_with = "nd")]
    pub healthy: bool,
    #[serde(deserialize_with = "nd")]
    pub health_description: String,
    /// RFC3339.
    pub update_time: Option<String>,
}

/// A node's total resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeResources {
    #[serde(deserialize_with = "nd")]
    pub cpu: NodeCpuResources,
    #[serde(deserialize_with = "nd")]
    pub memory: NodeMemoryResources,
    #[serde(deserialize_with = "nd")]
    pub disk: NodeDiskResources,
    pub networks: Option<Vec<crate::job::NetworkResource>>,
    pub node_networks: Option<Vec<serde_json::Value>>,
    pub devices: Option<Vec<serde_json::Value>>,
    #[serde(deserialize_with = "nd")]
    pub min_dynamic_port: i64,
    #[serde(deserialize_with = "nd")]
    pub max_dynamic_port: i64,
}

/// CPU in MHz and cores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeCpuResources {
    #[serde(deserialize_with = "nd")]
    pub cpu_shares: i64,
    #[serde(deserialize_with = "nd")]
    pub total_cpu_cores: u16,
    pub reservable_cpu_cores: Option<Vec<u16>>,
}

/// Memory in MB.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeMemoryResources {
    #[serde(rename = "MemoryMB", deserialize_with = "nd")]
    pub memory_mb: i64,
}

/// Disk in MB.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeDiskResources {
    #[serde(rename = "DiskMB", deserialize_with = "nd")]
    pub disk_mb: i64,
}

/// Resources held back from scheduling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedResources {
    #[serde(deserialize_with = "nd")]
    pub cpu: NodeReservedCpu,
    #[serde(deserialize_with = "nd")]
    pub memory: NodeMemoryResources,
    #[serde(deserialize_with = "nd")]
    pub disk: NodeDiskResources,
    #[serde(deserialize_with = "nd")]
    pub networks: NodeReservedNetworks,
}

/// Reserved CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedCpu {
    #[serde(deserialize_with = "nd")]
    pub cpu_shares: i64,
    pub reserved_cpu_cores: Option<Vec<u16>>,
}

/// Reserved host ports, as a Nomad port-spec string ("22,80,8000-8100").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedNetworks {
    #[serde(deserialize_with = "nd")]
    pub reserved_host_ports: String,
}

/// Nomad's `NodeListStub`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeListStub {
    pub address: String,
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    pub datacenter: String,
    pub name: String,
    pub node_pool: String,
    pub node_class: String,
    pub version: String,
    pub drain: bool,
    pub scheduling_eligibility: String,
    pub status: String,
    pub status_description: String,
    pub drivers: BTreeMap<String, DriverInfo>,
    pub host_volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_resources: Option<NodeResources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_resources: Option<NodeReservedResources>,
    pub last_drain: Option<DrainMetadata>,
    pub create_index: u64,
    pub modify_index: u64,
}
