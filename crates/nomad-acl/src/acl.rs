//! A compiled ACL: the union of a token's policies, ready for checks
//! (`acl/acl.go`).
//!
//! Merge rules, as Nomad:
//! * capabilities of rules with the same name (across all policies) are
//!   unioned; a `deny` capability clears the set and nothing can be added
//!   after it;
//! * coarse levels (`agent`, `node`, ...) take the maximum privilege, where
//!   `deny` beats `write` beats `read` beats `list`;
//! * lookups use the rule whose name equals the namespace exactly, if any
//!   (even when it grants less than a glob would); otherwise the matching
//!   glob closest to the name (smallest `len(name) - len(glob) + stars`).

use crate::capability;
use crate::glob::closest_glob;
use crate::policy::{Level, Policy};
use crate::token::{AclToken, MANAGEMENT_TOKEN};
use std::collections::{BTreeMap, BTreeSet};

type CapSet = BTreeSet<String>;

/// Exact-name and glob-name rule tables of one scope.
#[derive(Debug, Clone, Default)]
struct Rules {
    exact: BTreeMap<String, CapSet>,
    globs: BTreeMap<String, CapSet>,
}

impl Rules {
    /// Adds `caps` to the rule named `name`, honouring deny.
    fn add<'a>(&mut self, name: &str, caps: impl IntoIterator<Item = &'a str>) {
        let table = if name.contains('*') {
            &mut self.globs
        } else {
            &mut self.exact
        };
        let set = table.entry(name.to_string()).or_default();
        if set.contains(capability::DENY) {
            return;
        }
        for cap in caps {
            if cap == capability::DENY {
                set.clear();
                set.insert(capability::DENY.to_string());
                return;
            }
            set.insert(cap.to_string());
        }
    }

    /// The rule set governing `name`: exact match, else the closest glob.
    fn lookup(&self, name: &str) -> Option<&CapSet> {
        if let Some(set) = self.exact.get(name) {
            return Some(set);
        }
        let glob = closest_glob(self.globs.keys().map(String::as_str), name)?;
        self.globs.get(glob)
    }

    fn all(&self) -> impl Iterator<Item = &CapSet> {
        self.exact.values().chain(self.globs.values())
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }
}

fn grants_anything(set: &CapSet) -> bool {
    !set.is_empty() && !set.contains(capability::DENY)
}

fn merge_level(current: Option<Level>, new: Option<Level>) -> Option<Level> {
    match (current, new) {
        (None, n) => n,
        (c, None) => c,
        (Some(c), Some(n)) => Some(if n.rank() > c.rank() { n } else { c }),
    }
}

/// Workload identity of a caller, giving implicit read/list access to the
/// variables at `nomad/jobs`, `nomad/jobs/<job>`, `.../<group>`,
/// `.../<task>` of its own namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VariableClaim {
    pub namespace: String,
    pub job: String,
    pub group: String,
    pub task: String,
}

/// A compiled ACL object. Build with [`Acl::management`] or
/// [`Acl::from_policies`]; an ACL from no policies allows nothing.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    management: bool,
    namespaces: Rules,
    node_pools: Rules,
    host_volumes: Rules,
    /// Keyed by `namespace + "\0" + path`, globbed over the whole key.
    variables: Rules,
    agent: Option<Level>,
    node: Option<Level>,
    operator: Option<Level>,
    quota: Option<Level>,
    plugin: Option<Level>,
}

impl Acl {
    /// The ACL of a management token: everything is allowed.
    pub fn management() -> Acl {
        Acl {
            management: true,
            ..Acl::default()
        }
    }

    /// Compiles the union of `policies`. `policy` shorthands are expanded
    /// again here, so hand-built [`Policy`] values need not pre-expand.
    pub fn from_policies(policies: &[Policy]) -> Acl {
        let mut acl = Acl::default();
        for policy in policies {
            for ns in &policy.namespaces {
                let expanded = ns
                    .policy
                    .as_deref()
                    .map(capability::expand_namespace_policy)
                    .unwrap_or_default();
                let implied: Vec<&str> = ns
                    .capabilities
                    .iter()
                    .flat_map(|c| capability::implied_capabilities(c).iter().copied())
                    .collect();
                for (path, caps) in ns.variable_paths() {
                    let key = format!("{}\0{}", ns.name, path);
                    acl.variables.add(&key, caps.iter().map(String::as_str));
                }
                acl.namespaces.add(
                    &ns.name,
                    ns.capabilities
                        .iter()
                        .map(String::as_str)
                        .chain(expanded)
                        .chain(implied),
                );
            }
            for np in &policy.node_pools {
                let expanded = np
                    .policy
                    .as_deref()
                    .map(capability::node_pool::expand_policy)
                    .unwrap_or_default();
                acl.node_pools.add(
                    &np.name,
                    np.capabilities.iter().map(String::as_str).chain(expanded),
                );
            }
            for hv in &policy.host_volumes {
                let expanded = hv
                    .policy
                    .as_deref()
                    .map(capability::host_volume::expand_policy)
                    .unwrap_or_default();
                acl.host_volumes.add(
                    &hv.name,
                    hv.capabilities.iter().map(String::as_str).chain(expanded),
                );
            }
            acl.agent = merge_level(acl.agent, policy.agent);
            acl.node = merge_level(acl.node, policy.node);
            acl.operator = merge_level(acl.operator, policy.operator);
            acl.quota = merge_level(acl.quota, policy.quota);
            acl.plugin = merge_level(acl.plugin, policy.plugin);
        }
        acl
    }

    /// The ACL of `token`: management for management tokens, otherwise the
    /// union of `policies` (which the caller resolved from the token's
    /// policies and roles). Expiry is the caller's concern.
    pub fn for_token(token: &AclToken, policies: &[Policy]) -> Acl {
        if token.token_type == MANAGEMENT_TOKEN {
            Acl::management()
        } else {
            Acl::from_policies(policies)
        }
    }

    pub fn is_management(&self) -> bool {
        self.management
    }

    /// Whether `capability` is granted in `namespace`. The namespace `*`
    /// (list across all namespaces) passes if any rule grants it.
    pub fn allow_namespace_operation(&self, namespace: &str, capability: &str) -> bool {
        if self.management {
            return true;
        }
        if namespace == "*" && self.namespaces.all().any(|set| set.contains(capability)) {
            return true;
        }
        self.namespaces
            .lookup(namespace)
            .is_some_and(|set| set.contains(capability))
    }

    /// Whether any one of `capabilities` is granted in `namespace`.
    pub fn allow_namespace_any_of(&self, namespace: &str, capabilities: &[&str]) -> bool {
        capabilities
            .iter()
            .any(|c| self.allow_namespace_operation(namespace, c))
    }

    /// Whether anything (other than deny) is granted in `namespace`; used to
    /// filter namespace lists.
    pub fn allow_namespace(&self, namespace: &str) -> bool {
        if self.management {
            return true;
        }
        if namespace == "*" && self.namespaces.all().any(grants_anything) {
            return true;
        }
        self.namespaces
            .lookup(namespace)
            .is_some_and(grants_anything)
    }

    /// A node pool capability (`read`, `write`, `delete`) on `pool`.
    pub fn allow_node_pool_operation(&self, pool: &str, capability: &str) -> bool {
        if self.management {
            return true;
        }
        self.node_pools
            .lookup(pool)
            .is_some_and(|set| set.contains(capability))
    }

    /// Whether anything (other than deny) is granted on node pool `pool`.
    pub fn allow_node_pool(&self, pool: &str) -> bool {
        self.management || self.node_pools.lookup(pool).is_some_and(grants_anything)
    }

    /// A host volume capability (`mount-readonly`, `mount-readwrite`) on the
    /// named host volume.
    pub fn allow_host_volume_operation(&self, name: &str, capability: &str) -> bool {
        if self.management {
            return true;
        }
        self.host_volumes
            .lookup(name)
            .is_some_and(|set| set.contains(capability))
    }

    /// Whether anything (other than deny) is granted on the named host volume.
    pub fn allow_host_volume(&self, name: &str) -> bool {
        self.management || self.host_volumes.lookup(name).is_some_and(grants_anything)
    }

    /// A variables capability (`list`, `read`, `write`, `destroy`) on
    /// `path` in `namespace`. Exact `(namespace, path)` rules win, then the
    /// workload's implicit access through `claim`, then the closest glob.
    pub fn allow_variable_operation(
        &self,
        namespace: &str,
        path: &str,
        capability: &str,
        claim: Option<&VariableClaim>,
    ) -> bool {
        if self.management {
            return true;
        }
        let key = format!("{namespace}\0{path}");
        if let Some(set) = self.variables.exact.get(&key) {
            return set.contains(capability);
        }
        if let Some(claim) = claim {
            if claim.namespace == namespace {
                let job = format!("nomad/jobs/{}", claim.job);
                let group = format!("{job}/{}", claim.group);
                let task = format!("{group}/{}", claim.task);
                if path == "nomad/jobs" || path == job || path == group || path == task {
                    return matches!(
                        capability,
                        capability::variables::READ | capability::variables::LIST
                    );
                }
            }
        }
        closest_glob(self.variables.globs.keys().map(String::as_str), &key)
            .and_then(|g| self.variables.globs.get(g))
            .is_some_and(|set| set.contains(capability))
    }

    /// A loose check that the ACL grants any variables rule in `namespace`
    /// (`*`: in any namespace); results are filtered per path afterwards.
    pub fn allow_variable_search(&self, namespace: &str) -> bool {
        if self.management {
            return true;
        }
        if namespace == "*" {
            return !self.variables.is_empty();
        }
        // Nomad's prefix seek over `namespace\0path` keys: deliberately loose.
        self.variables
            .exact
            .keys()
            .chain(self.variables.globs.keys())
            .any(|k| k.starts_with(namespace))
    }

    fn level_allows(&self, level: Option<Level>, accepted: &[Level]) -> bool {
        self.management || level.is_some_and(|l| accepted.contains(&l))
    }

    pub fn allow_node_read(&self) -> bool {
        self.level_allows(self.node, &[Level::Read, Level::Write])
    }
    pub fn allow_node_write(&self) -> bool {
        self.level_allows(self.node, &[Level::Write])
    }
    pub fn allow_agent_read(&self) -> bool {
        self.level_allows(self.agent, &[Level::Read, Level::Write])
    }
    pub fn allow_agent_write(&self) -> bool {
        self.level_allows(self.agent, &[Level::Write])
    }
    pub fn allow_operator_read(&self) -> bool {
        self.level_allows(self.operator, &[Level::Read, Level::Write])
    }
    pub fn allow_operator_write(&self) -> bool {
        self.level_allows(self.operator, &[Level::Write])
    }
    pub fn allow_quota_read(&self) -> bool {
        self.level_allows(self.quota, &[Level::Read, Level::Write])
    }
    pub fn allow_quota_write(&self) -> bool {
        self.level_allows(self.quota, &[Level::Write])
    }
    /// As Nomad: only `plugin { policy = "read" }` grants plugin read
    /// (`write` does not).
    pub fn allow_plugin_read(&self) -> bool {
        self.level_allows(self.plugin, &[Level::Read])
    }
    /// `read` or `list`.
    pub fn allow_plugin_list(&self) -> bool {
        self.level_allows(self.plugin, &[Level::Read, Level::List])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::*;
    use crate::policy::parse_policy;

    fn acl(rules: &[&str]) -> Acl {
        let policies: Vec<Policy> = rules
            .iter()
            .map(|r| parse_policy(r).expect("valid test policy"))
            .collect();
        Acl::from_policies(&policies)
    }

    #[test]
    fn management_allows_everything() {
        let a = Acl::management();
        assert!(a.is_management());
        for cap in ALL {
            assert!(a.allow_namespace_operation("anything", cap));
        }
        assert!(a.allow_namespace("x"));
        assert!(a.allow_node_read() && a.allow_node_write());
        assert!(a.allow_agent_read() && a.allow_agent_write());
        assert!(a.allow_operator_read() && a.allow_operator_write());
        assert!(a.allow_quota_write() && a.allow_plugin_read() && a.allow_plugin_list());
        assert!(a.allow_node_pool_operation("p", "write"));
        assert!(a.allow_host_volume_operation("v", "mount-readwrite"));
        assert!(a.allow_variable_operation("default", "a/b", "destroy", None));
    }

    #[test]
    fn no_policy_allows_nothing() {
        let a = Acl::from_policies(&[]);
        assert!(!a.is_management());
        for cap in ALL {
            assert!(!a.allow_namespace_operation("default", cap), "{cap}");
            assert!(!a.allow_namespace_operation("*", cap), "{cap}");
        }
        assert!(!a.allow_namespace("default"));
        assert!(!a.allow_namespace("*"));
        assert!(!a.allow_node_read() && !a.allow_node_write());
        assert!(!a.allow_agent_read() && !a.allow_agent_write());
        assert!(!a.allow_operator_read() && !a.allow_operator_write());
        assert!(!a.allow_quota_read() && !a.allow_plugin_list());
        assert!(!a.allow_node_pool("default"));
        assert!(!a.allow_host_volume("v"));
        assert!(!a.allow_variable_operation("default", "x", "read", None));
        assert!(!a.allow_variable_search("*"));
    }

    #[test]
    fn namespace_checks_table() {
        // (policies, namespace, capability, allowed)
        let read_default = r#"namespace "default" { policy = "read" }"#;
        let write_default = r#"namespace "default" { policy = "write" }"#;
        let list_all = r#"namespace "*" { capabilities = ["list-jobs"] }"#;
        let prod = r#"namespace "prod-*" { policy = "write" }"#;
        let prod_api = r#"namespace "prod-api-*" { capabilities = ["read-job"] }"#;
        let deny_default = r#"namespace "default" { policy = "deny" }"#;
        let deny_cap = r#"namespace "default" { capabilities = ["deny", "read-job"] }"#;
        let exec = r#"namespace "default" { capabilities = ["alloc-exec", "alloc-node-exec"] }"#;
        let action = r#"namespace "default" { capabilities = ["run-action", "read-job"] }"#;
        let cases: &[(&[&str], &str, &str, bool)] = &[
            (&[read_default], "default", READ_JOB, true),
            (&[read_default], "default", LIST_JOBS, true),
            (&[read_default], "default", PARSE_JOB, true),
            (&[read_default], "default", SUBMIT_JOB, false),
            (&[read_default], "other", READ_JOB, false),
            (&[write_default], "default", SUBMIT_JOB, true),
            (&[write_default], "default", ALLOC_EXEC, true),
            (&[write_default], "default", ALLOC_NODE_EXEC, false),
            (&[write_default], "default", REGISTER_JOB, false),
            (&[write_default], "default", RUN_ACTION, false),
            (&[list_all], "anything", LIST_JOBS, true),
            (&[list_all], "anything", READ_JOB, false),
            (&[prod], "prod-web", SUBMIT_JOB, true),
            (&[prod], "prod", SUBMIT_JOB, false),
            (&[prod], "dev", SUBMIT_JOB, false),
            // most specific glob wins, even though it grants less
            (&[prod, prod_api], "prod-api-1", READ_JOB, true),
            (&[prod, prod_api], "prod-api-1", SUBMIT_JOB, false),
            (&[prod, prod_api], "prod-web", SUBMIT_JOB, true),
            (&[prod, list_all], "prod-web", LIST_JOBS, true),
            (&[prod, list_all], "dev", LIST_JOBS, true),
            (&[prod, list_all], "dev", SUBMIT_JOB, false),
            // exact beats glob, even though it grants less
            (
                &[
                    read_default,
                    list_all,
                    r#"namespace "*" { policy = "write" }"#,
                ],
                "default",
                SUBMIT_JOB,
                false,
            ),
            (
                &[read_default, r#"namespace "*" { policy = "write" }"#],
                "other",
                SUBMIT_JOB,
                true,
            ),
            // deny wins across policies, whatever the order
            (&[write_default, deny_default], "default", READ_JOB, false),
            (&[deny_default, write_default], "default", READ_JOB, false),
            (&[deny_cap], "default", READ_JOB, false),
            (&[deny_default, list_all], "default", LIST_JOBS, false),
            // union across policies
            (&[read_default, exec], "default", ALLOC_NODE_EXEC, true),
            (&[read_default, exec], "default", READ_JOB, true),
            (&[action], "default", RUN_ACTION, true),
            (&[action], "default", ALLOC_EXEC, false),
            // the all-namespaces wildcard request
            (&[read_default], "*", READ_JOB, true),
            (&[read_default], "*", SUBMIT_JOB, false),
        ];
        for (rules, ns, cap, want) in cases {
            assert_eq!(
                acl(rules).allow_namespace_operation(ns, cap),
                *want,
                "{rules:?} {ns} {cap}"
            );
        }
    }

    #[test]
    fn allow_namespace_filtering() {
        let a = acl(&[r#"namespace "default" { policy = "read" }
               namespace "secret" { policy = "deny" }
               namespace "prod-*" { capabilities = ["list-jobs"] }"#]);
        assert!(a.allow_namespace("default"));
        assert!(!a.allow_namespace("secret"));
        assert!(a.allow_namespace("prod-x"));
        assert!(!a.allow_namespace("dev"));
        assert!(a.allow_namespace("*"));
        let only_deny = acl(&[r#"namespace "secret" { policy = "deny" }"#]);
        assert!(!only_deny.allow_namespace("*"));
    }

    #[test]
    fn coarse_levels() {
        let a = acl(&[
            r#"node { policy = "read" } agent { policy = "write" } operator { policy = "read" }"#,
        ]);
        assert!(a.allow_node_read() && !a.allow_node_write());
        assert!(a.allow_agent_read() && a.allow_agent_write());
        assert!(a.allow_operator_read() && !a.allow_operator_write());
        // max privilege across policies, deny wins
        let b = acl(&[
            r#"node { policy = "read" }"#,
            r#"node { policy = "write" }"#,
        ]);
        assert!(b.allow_node_write());
        let c = acl(&[
            r#"node { policy = "write" }"#,
            r#"node { policy = "deny" }"#,
        ]);
        assert!(!c.allow_node_read());
        let d = acl(&[r#"plugin { policy = "list" }"#]);
        assert!(d.allow_plugin_list() && !d.allow_plugin_read());
        let e = acl(&[r#"node { policy = "scale" }"#]);
        assert!(!e.allow_node_read());
    }

    #[test]
    fn node_pools_and_host_volumes() {
        let a = acl(&[r#"
            node_pool "prod-*" { policy = "read" }
            node_pool "prod-gpu" { policy = "write" }
            host_volume "data-*" { policy = "read" }
            host_volume "secret" { policy = "deny" }
        "#]);
        assert!(a.allow_node_pool_operation("prod-x", "read"));
        assert!(!a.allow_node_pool_operation("prod-x", "write"));
        assert!(a.allow_node_pool_operation("prod-gpu", "delete"));
        assert!(!a.allow_node_pool("dev"));
        assert!(a.allow_host_volume_operation("data-1", "mount-readonly"));
        assert!(!a.allow_host_volume_operation("data-1", "mount-readwrite"));
        assert!(!a.allow_host_volume("secret"));
    }

    #[test]
    fn variables() {
        let a = acl(&[r#"
            namespace "default" {
              variables {
                path "project/*" { capabilities = ["read"] }
                path "project/secret" { capabilities = ["deny"] }
                path "shared" { capabilities = ["write", "list"] }
              }
            }
            namespace "dev-*" {
              variables {
                path "*" { capabilities = ["read", "write", "destroy"] }
              }
            }
        "#]);
        assert!(a.allow_variable_operation("default", "project/a", "read", None));
        assert!(a.allow_variable_operation("default", "project/a", "list", None));
        assert!(!a.allow_variable_operation("default", "project/a", "write", None));
        assert!(!a.allow_variable_operation("default", "project/secret", "read", None));
        assert!(a.allow_variable_operation("default", "shared", "write", None));
        assert!(!a.allow_variable_operation("default", "other", "read", None));
        assert!(a.allow_variable_operation("dev-1", "x/y", "destroy", None));
        assert!(!a.allow_variable_operation("prod", "x", "read", None));
        assert!(a.allow_variable_search("default"));
        assert!(a.allow_variable_search("*"));
        assert!(!a.allow_variable_search("prod"));

        let claim = VariableClaim {
            namespace: "prod".into(),
            job: "web".into(),
            group: "g".into(),
            task: "t".into(),
        };
        assert!(a.allow_variable_operation("prod", "nomad/jobs/web/g/t", "read", Some(&claim)));
        assert!(a.allow_variable_operation("prod", "nomad/jobs", "list", Some(&claim)));
        assert!(!a.allow_variable_operation("prod", "nomad/jobs/web", "write", Some(&claim)));
        assert!(!a.allow_variable_operation("prod", "nomad/jobs/other", "read", Some(&claim)));
        assert!(!a.allow_variable_operation("dev", "nomad/jobs/web", "read", Some(&claim)));
    }

    #[test]
    fn hand_built_policy_expands_shorthand() {
        let p = Policy {
            namespaces: vec![crate::policy::NamespaceRule {
                name: "default".into(),
                policy: Some("write".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let a = Acl::from_policies(&[p]);
        assert!(a.allow_namespace_operation("default", SUBMIT_JOB));
    }

    #[test]
    fn for_token() {
        let mut t = AclToken {
            token_type: "management".into(),
            ..Default::default()
        };
        assert!(Acl::for_token(&t, &[]).is_management());
        t.token_type = "client".into();
        assert!(!Acl::for_token(&t, &[]).allow_namespace("default"));
    }
}
