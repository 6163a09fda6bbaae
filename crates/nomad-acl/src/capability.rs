//! Namespace capability strings (`acl/policy.go`) and the policy shorthands.
//!
//! Besides Nomad's own capabilities this module defines one extension of ours,
//! [`RUN_ACTION`], which allows `nomad job action` without granting arbitrary
//! `alloc-exec`.

/// Overrides every other capability of the same namespace rule set.
pub const DENY: &str = "deny";
pub const LIST_JOBS: &str = "list-jobs";
pub const PARSE_JOB: &str = "parse-job";
pub const READ_JOB: &str = "read-job";
pub const SUBMIT_JOB: &str = "submit-job";
pub const DISPATCH_JOB: &str = "dispatch-job";
pub const READ_LOGS: &str = "read-logs";
pub const READ_FS: &str = "read-fs";
pub const ALLOC_EXEC: &str = "alloc-exec";
pub const ALLOC_NODE_EXEC: &str = "alloc-node-exec";
pub const ALLOC_LIFECYCLE: &str = "alloc-lifecycle";
pub const SENTINEL_OVERRIDE: &str = "sentinel-override";
pub const CSI_REGISTER_PLUGIN: &str = "csi-register-plugin";
pub const CSI_WRITE_VOLUME: &str = "csi-write-volume";
pub const CSI_READ_VOLUME: &str = "csi-read-volume";
pub const CSI_LIST_VOLUME: &str = "csi-list-volume";
pub const CSI_MOUNT_VOLUME: &str = "csi-mount-volume";
pub const HOST_VOLUME_CREATE: &str = "host-volume-create";
pub const HOST_VOLUME_REGISTER: &str = "host-volume-register";
pub const HOST_VOLUME_READ: &str = "host-volume-read";
pub const HOST_VOLUME_WRITE: &str = "host-volume-write";
pub const HOST_VOLUME_DELETE: &str = "host-volume-delete";
pub const LIST_SCALING_POLICIES: &str = "list-scaling-policies";
pub const READ_SCALING_POLICY: &str = "read-scaling-policy";
pub const READ_JOB_SCALING: &str = "read-job-scaling";
pub const SCALE_JOB: &str = "scale-job";
pub const SUBMIT_RECOMMENDATION: &str = "submit-recommendation";

// Fine-grained job capabilities (each is also covered by submit-job at the
// endpoint level).
pub const REGISTER_JOB: &str = "register-job";
pub const REVERT_JOB: &str = "revert-job";
pub const DEREGISTER_JOB: &str = "deregister-job";
pub const PURGE_JOB: &str = "purge-job";
pub const EVALUATE_JOB: &str = "evaluate-job";
pub const PLAN_JOB: &str = "plan-job";
pub const TAG_JOB_VERSION: &str = "tag-job-version";
pub const STABLE_JOB: &str = "stable-job";

// Deployment capabilities.
pub const FAIL_DEPLOYMENT: &str = "fail-deployment";
pub const PAUSE_DEPLOYMENT: &str = "pause-deployment";
pub const PROMOTE_DEPLOYMENT: &str = "promote-deployment";
pub const UNBLOCK_DEPLOYMENT: &str = "unblock-deployment";
pub const CANCEL_DEPLOYMENT: &str = "cancel-deployment";
pub const SET_ALLOC_HEALTH_DEPLOYMENT: &str = "set-alloc-health-deployment";

pub const GC_ALLOCATION: &str = "gc-allocation";
pub const PAUSE_ALLOCATION: &str = "pause-allocation";
pub const FORCE_PERIODIC_JOB: &str = "force-periodic-job";
pub const DELETE_SERVICE_REGISTRATION: &str = "delete-service-registration";

/// nomad-rs extension: run a job's declared `action` (the `nomad job action`
/// websocket) without the right to exec arbitrary commands. Not part of any
/// shorthand; grant it explicitly.
pub const RUN_ACTION: &str = "run-action";

/// Every valid namespace capability, in Nomad's declaration order, with our
/// extension last.
pub const ALL: &[&str] = &[
    DENY,
    LIST_JOBS,
    PARSE_JOB,
    READ_JOB,
    SUBMIT_JOB,
    DISPATCH_JOB,
    READ_LOGS,
    READ_FS,
    ALLOC_EXEC,
    ALLOC_NODE_EXEC,
    ALLOC_LIFECYCLE,
    SENTINEL_OVERRIDE,
    CSI_REGISTER_PLUGIN,
    CSI_WRITE_VOLUME,
    CSI_READ_VOLUME,
    CSI_LIST_VOLUME,
    CSI_MOUNT_VOLUME,
    HOST_VOLUME_CREATE,
    HOST_VOLUME_REGISTER,
    HOST_VOLUME_READ,
    HOST_VOLUME_WRITE,
    HOST_VOLUME_DELETE,
    LIST_SCALING_POLICIES,
    READ_SCALING_POLICY,
    READ_JOB_SCALING,
    SCALE_JOB,
    SUBMIT_RECOMMENDATION,
    REGISTER_JOB,
    REVERT_JOB,
    DEREGISTER_JOB,
    PURGE_JOB,
    EVALUATE_JOB,
    PLAN_JOB,
    TAG_JOB_VERSION,
    STABLE_JOB,
    FAIL_DEPLOYMENT,
    PAUSE_DEPLOYMENT,
    PROMOTE_DEPLOYMENT,
    UNBLOCK_DEPLOYMENT,
    CANCEL_DEPLOYMENT,
    SET_ALLOC_HEALTH_DEPLOYMENT,
    GC_ALLOCATION,
    PAUSE_ALLOCATION,
    FORCE_PERIODIC_JOB,
    DELETE_SERVICE_REGISTRATION,
    RUN_ACTION,
];

/// Whether `cap` is a valid namespace capability (Nomad's set plus
/// [`RUN_ACTION`]).
pub fn is_valid(cap: &str) -> bool {
    ALL.contains(&cap)
}

const READ_SET: &[&str] = &[
    LIST_JOBS,
    PARSE_JOB,
    READ_JOB,
    CSI_LIST_VOLUME,
    CSI_READ_VOLUME,
    READ_JOB_SCALING,
    LIST_SCALING_POLICIES,
    READ_SCALING_POLICY,
    HOST_VOLUME_READ,
];

const WRITE_SET: &[&str] = &[
    LIST_JOBS,
    PARSE_JOB,
    READ_JOB,
    CSI_LIST_VOLUME,
    CSI_READ_VOLUME,
    READ_JOB_SCALING,
    LIST_SCALING_POLICIES,
    READ_SCALING_POLICY,
    HOST_VOLUME_READ,
    SCALE_JOB,
    SUBMIT_JOB,
    DISPATCH_JOB,
    READ_LOGS,
    READ_FS,
    ALLOC_EXEC,
    ALLOC_LIFECYCLE,
    CSI_MOUNT_VOLUME,
    CSI_WRITE_VOLUME,
    SUBMIT_RECOMMENDATION,
    HOST_VOLUME_CREATE,
];

const SCALE_SET: &[&str] = &[
    LIST_SCALING_POLICIES,
    READ_SCALING_POLICY,
    READ_JOB_SCALING,
    SCALE_JOB,
    READ_JOB,
    SUBMIT_RECOMMENDATION,
];

/// The capabilities a namespace `policy = "..."` shorthand stands for, in
/// Nomad's order. Unknown shorthands expand to nothing. `write` does not
/// include `alloc-node-exec` nor the fine-grained job/deployment capabilities.
pub fn expand_namespace_policy(policy: &str) -> Vec<&'static str> {
    match policy {
        "deny" => vec![DENY],
        "read" => READ_SET.to_vec(),
        "write" => WRITE_SET.to_vec(),
        "scale" => SCALE_SET.to_vec(),
        _ => Vec::new(),
    }
}

/// Capabilities implied by fine-grained host-volume capabilities
/// (`host-volume-write` ⇒ register, create, delete, read; and so on).
pub(crate) fn implied_capabilities(cap: &str) -> &'static [&'static str] {
    match cap {
        HOST_VOLUME_WRITE => &[
            HOST_VOLUME_REGISTER,
            HOST_VOLUME_CREATE,
            HOST_VOLUME_DELETE,
            HOST_VOLUME_READ,
        ],
        HOST_VOLUME_REGISTER => &[HOST_VOLUME_CREATE, HOST_VOLUME_READ],
        HOST_VOLUME_CREATE => &[HOST_VOLUME_READ],
        _ => &[],
    }
}

/// Variables path capabilities (`namespace { variables { path "x" { ... } } }`).
pub mod variables {
    pub const LIST: &str = "list";
    pub const READ: &str = "read";
    pub const WRITE: &str = "write";
    pub const DESTROY: &str = "destroy";
    pub const DENY: &str = "deny";

    pub fn is_valid(cap: &str) -> bool {
        matches!(cap, LIST | READ | WRITE | DESTROY | DENY)
    }
}

/// Node pool capabilities (`node_pool "name" { ... }`).
pub mod node_pool {
    pub const DELETE: &str = "delete";
    pub const DENY: &str = "deny";
    pub const READ: &str = "read";
    pub const WRITE: &str = "write";

    pub fn is_valid(cap: &str) -> bool {
        matches!(cap, DELETE | DENY | READ | WRITE)
    }

    /// `policy = "..."` shorthand of a node pool rule.
    pub fn expand_policy(policy: &str) -> Vec<&'static str> {
        match policy {
            "deny" => vec![DENY],
            "read" => vec![READ],
            "write" => vec![DELETE, READ, WRITE],
            _ => Vec::new(),
        }
    }
}

/// Host volume capabilities (`host_volume "name" { ... }`).
pub mod host_volume {
    pub const DENY: &str = "deny";
    pub const MOUNT_READ_ONLY: &str = "mount-readonly";
    pub const MOUNT_READ_WRITE: &str = "mount-readwrite";

    pub fn is_valid(cap: &str) -> bool {
        matches!(cap, DENY | MOUNT_READ_ONLY | MOUNT_READ_WRITE)
    }

    /// `policy = "..."` shorthand of a host volume rule.
    pub fn expand_policy(policy: &str) -> Vec<&'static str> {
        match policy {
            "deny" => vec![DENY],
            "read" => vec![MOUNT_READ_ONLY],
            "write" => vec![MOUNT_READ_ONLY, MOUNT_READ_WRITE],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity() {
        for cap in ALL {
            assert!(is_valid(cap), "{cap}");
        }
        assert!(is_valid("run-action"));
        assert!(!is_valid("read"));
        assert!(!is_valid(""));
        assert!(!is_valid("List-Jobs"));
        assert_eq!(ALL.len(), 46);
    }

    #[test]
    fn shorthands_exact() {
        assert_eq!(expand_namespace_policy("deny"), vec!["deny"]);
        assert_eq!(
            expand_namespace_policy("read"),
            vec![
                "list-jobs",
                "parse-job",
                "read-job",
                "csi-list-volume",
                "csi-read-volume",
                "read-job-scaling",
                "list-scaling-policies",
                "read-scaling-policy",
                "host-volume-read",
            ]
        );
        let write = expand_namespace_policy("write");
        assert_eq!(write.len(), 20);
        assert_eq!(&write[..9], expand_namespace_policy("read").as_slice());
        assert_eq!(
            &write[9..],
            &[
                "scale-job",
                "submit-job",
                "dispatch-job",
                "read-logs",
                "read-fs",
                "alloc-exec",
                "alloc-lifecycle",
                "csi-mount-volume",
                "csi-write-volume",
                "submit-recommendation",
                "host-volume-create",
            ]
        );
        assert!(!write.contains(&ALLOC_NODE_EXEC));
        assert!(!write.contains(&RUN_ACTION));
        assert!(!write.contains(&REGISTER_JOB));
        assert_eq!(
            expand_namespace_policy("scale"),
            vec![
                "list-scaling-policies",
                "read-scaling-policy",
                "read-job-scaling",
                "scale-job",
                "read-job",
                "submit-recommendation",
            ]
        );
        assert!(expand_namespace_policy("list").is_empty());
        assert!(expand_namespace_policy("").is_empty());
    }
}
