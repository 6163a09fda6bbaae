//! Method names and JSON bodies of the Nomad RPC protocol. Field names follow Nomad's
//! request/response structs (`NodeRegisterRequest`, `NodeUpdateResponse`, ...); durations
//! are integer nanoseconds, like Go's `time.Duration`.

use nomad_structs::{Allocation, Node};
use serde::{Deserialize, Serialize};

/// `Node.Register`: [`NodeRegisterRequest`] → [`NodeUpdateResponse`].
pub const NODE_REGISTER: &str = "Node.Register";
/// `Node.UpdateStatus` (the heartbeat): [`NodeUpdateStatusRequest`] → [`NodeUpdateResponse`].
pub const NODE_UPDATE_STATUS: &str = "Node.UpdateStatus";
/// `Node.GetClientAllocs` (blocking): [`NodeClientAllocsRequest`] → [`NodeClientAllocsResponse`].
pub const NODE_GET_CLIENT_ALLOCS: &str = "Node.GetClientAllocs";
/// `Node.UpdateAlloc`: [`AllocUpdateRequest`] → [`GenericResponse`].
pub const NODE_UPDATE_ALLOC: &str = "Node.UpdateAlloc";
/// `Status.Ping`: `{}` → `{}`.
pub const STATUS_PING: &str = "Status.Ping";
/// `Status.Leader`: `{}` → the leader's RPC address as a JSON string (`""` if none).
pub const STATUS_LEADER: &str = "Status.Leader";
/// `Status.Peers`: `{}` → the Raft peers' RPC addresses as a JSON array.
pub const STATUS_PEERS: &str = "Status.Peers";

/// `HTTP.Forward`: an HTTP API request a client-only agent cannot answer itself (jobs, nodes,
/// allocations, ACLs ...), answered by the server's own HTTP API. Body and answer are the JSON
/// documents of `nomad_http::relay`; this crate only carries them.
pub const HTTP_FORWARD: &str = "HTTP.Forward";

/// `ACL.ResolveToken`: [`AclResolveTokenRequest`] → [`AclResolveTokenResponse`]. Lets a
/// client-only agent check the tokens of requests made to its own HTTP API.
pub const ACL_RESOLVE_TOKEN: &str = "ACL.ResolveToken";

/// Body of `ACL.ResolveToken`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclResolveTokenRequest {
    /// The secret (empty: the anonymous token).
    #[serde(rename = "SecretID")]
    pub secret_id: String,
}

/// Answer of `ACL.ResolveToken`: the token without its secret, and its policies. `Token`
/// is null when the servers do not enforce ACLs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclResolveTokenResponse {
    /// The token.
    pub token: Option<serde_json::Value>,
    /// Its policies.
    pub policies: Vec<serde_json::Value>,
}

/// The error text of a server that knows of no leader (Nomad's `structs.ErrNoLeader`).
pub const ERR_NO_LEADER: &str = "No cluster leader";
/// The error text of a server that is not the leader (the client fails over to another).
pub const ERR_NOT_LEADER: &str = "not the leader";

/// Body of `Node.Register`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeRegisterRequest {
    /// The node as fingerprinted by the client.
    pub node: Node,
}

/// Body of `Node.UpdateStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeUpdateStatusRequest {
    /// The heartbeating node.
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// The status the node reports (`ready`); the server treats every heartbeat as `ready`.
    pub status: String,
}

/// Answer of `Node.Register` and `Node.UpdateStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeUpdateResponse {
    /// When the next heartbeat is due, in nanoseconds.
    #[serde(rename = "HeartbeatTTL")]
    pub heartbeat_ttl: u64,
}

/// Body of `Node.GetClientAllocs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeClientAllocsRequest {
    /// Whose allocations.
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// Answer once the index is above this (0: at once).
    pub min_query_index: u64,
    /// Longest wait, in nanoseconds (0: the server's maximum, 5 minutes).
    pub max_query_time: u64,
}

/// Answer of `Node.GetClientAllocs`. Nomad answers alloc IDs and modify indexes and the client
/// fetches changed allocations with `Alloc.GetAllocs`; here the allocations come whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeClientAllocsResponse {
    /// The node's allocations.
    pub allocs: Vec<Allocation>,
    /// The index of the answer (pass it as the next `MinQueryIndex`).
    pub index: u64,
}

/// Body of `Node.UpdateAlloc`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocUpdateRequest {
    /// Client-side status of the allocations (ID, ClientStatus, TaskStates, ...).
    #[serde(rename = "Alloc")]
    pub allocs: Vec<Allocation>,
}

/// Answer of writes without a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GenericResponse {
    /// The Raft index of the write.
    pub index: u64,
}

/// Nanoseconds of `d`, saturating.
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
