//! Endpoint → required permission, as data (facts §7.2), so the HTTP layer
//! and its tests share one table.
//!
//! Namespace requirements are `&[&[cap]]`: every inner list must be
//! satisfied, and an inner list is satisfied by **any one** of its
//! capabilities, in the request's namespace (for alloc-scoped routes: the
//! alloc's namespace). `[[parse-job, submit-job]]` reads "parse-job OR
//! submit-job".
//!
//! Conditions that depend on the request beyond method and route are left
//! to the caller and noted on the rows: `alloc-node-exec` for exec/action on
//! drivers without filesystem isolation, `purge=true` on job delete (which
//! Nomad narrows to submit-job OR purge-job), CSI/host volume/sentinel extras
//! on job register, result filtering on list endpoints.

use crate::acl::Acl;
use crate::capability::*;

/// What a route requires of the caller's ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No check at all (`/v1/status/leader`, `/v1/regions`, bootstrap).
    None,
    /// Any resolvable token (results may be filtered).
    AnyToken,
    /// Management token only.
    Management,
    NodeRead,
    NodeWrite,
    AgentRead,
    AgentWrite,
    OperatorRead,
    OperatorWrite,
    /// Something other than deny in the namespace (`allow_namespace`).
    NamespaceVisible,
    /// Namespace capabilities: all of the groups, any of each group.
    Namespace(&'static [&'static [&'static str]]),
    /// A variables path capability (`list`, `read`, `write`, `destroy`) on
    /// the path in the route, in the request's namespace.
    Variable(&'static str),
}

impl Acl {
    /// Whether this ACL satisfies `access` in `namespace`. For
    /// [`Access::Variable`] this is the loose search check; call
    /// [`Acl::allow_variable_operation`] with the concrete path instead.
    pub fn allows(&self, access: &Access, namespace: &str) -> bool {
        match access {
            Access::None | Access::AnyToken => true,
            Access::Management => self.is_management(),
            Access::NodeRead => self.allow_node_read(),
            Access::NodeWrite => self.allow_node_write(),
            Access::AgentRead => self.allow_agent_read(),
            Access::AgentWrite => self.allow_agent_write(),
            Access::OperatorRead => self.allow_operator_read(),
            Access::OperatorWrite => self.allow_operator_write(),
            Access::NamespaceVisible => self.allow_namespace(namespace),
            Access::Namespace(groups) => groups
                .iter()
                .all(|any| self.allow_namespace_any_of(namespace, any)),
            Access::Variable(_) => self.allow_variable_search(namespace),
        }
    }
}

/// Which methods a row covers.
#[derive(Debug, Clone, Copy)]
enum M {
    Get,
    /// PUT or POST (interchangeable in Nomad).
    Write,
    Delete,
    /// PUT, POST or DELETE.
    WriteOrDelete,
    Any,
}

impl M {
    fn matches(self, method: &str) -> bool {
        let m = method.to_ascii_uppercase();
        match self {
            M::Get => m == "GET" || m == "HEAD",
            M::Write => m == "PUT" || m == "POST",
            M::Delete => m == "DELETE",
            M::WriteOrDelete => m == "PUT" || m == "POST" || m == "DELETE",
            M::Any => true,
        }
    }
}

impl M {
    /// The HTTP methods this row covers (HEAD left out: it follows GET).
    fn methods(self) -> &'static [&'static str] {
        match self {
            M::Get => &["GET"],
            M::Write => &["PUT", "POST"],
            M::Delete => &["DELETE"],
            M::WriteOrDelete => &["PUT", "POST", "DELETE"],
            M::Any => &["GET", "PUT", "POST", "DELETE"],
        }
    }
}

/// One row of the permission table, for tests that walk every endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The HTTP methods the row covers.
    pub methods: &'static [&'static str],
    /// The route pattern: `:x` is one segment, a trailing `*` the rest.
    pub pattern: &'static str,
    /// What the route needs.
    pub access: Access,
}

/// Every row of the table, in lookup order.
pub fn rows() -> impl Iterator<Item = Row> {
    TABLE.iter().map(|(m, pattern, access)| Row {
        methods: m.methods(),
        pattern,
        access: *access,
    })
}

const READ: &[&[&str]] = &[&[READ_JOB]];

/// `(methods, pattern, access)`; `:x` matches one segment, a trailing `*`
/// matches the rest (at least one segment). First match wins.
const TABLE: &[(M, &str, Access)] = &[
    // jobs
    (M::Get, "/v1/jobs", Access::Namespace(&[&[LIST_JOBS]])),
    (
        M::Write,
        "/v1/jobs/parse",
        Access::Namespace(&[&[PARSE_JOB, SUBMIT_JOB]]),
    ),
    (
        M::Write,
        "/v1/jobs",
        Access::Namespace(&[&[SUBMIT_JOB, REGISTER_JOB]]),
    ),
    (M::Write, "/v1/validate/job", Access::Namespace(READ)),
    (M::Get, "/v1/job/:id/summary", Access::Namespace(READ)),
    (M::Get, "/v1/job/:id/versions", Access::Namespace(READ)),
    (M::Get, "/v1/job/:id/submission", Access::Namespace(READ)),
    (M::Get, "/v1/job/:id/allocations", Access::Namespace(READ)),
    (M::Get, "/v1/job/:id/evaluations", Access::Namespace(READ)),
    (M::Get, "/v1/job/:id/deployments", Access::Namespace(READ)),
    (M::Get, "/v1/job/:id/deployment", Access::Namespace(READ)),
    (M::Get, "/v1/job/:id/actions", Access::Namespace(READ)),
    (M::Get, "/v1/job/:id/services", Access::Namespace(READ)),
    // websocket; our extension: run-action suffices (+ alloc-node-exec
    // when the driver has no FS isolation, unless run-action is used).
    (
        M::Get,
        "/v1/job/:id/action",
        Access::Namespace(&[&[ALLOC_EXEC, RUN_ACTION]]),
    ),
    (
        M::Write,
        "/v1/job/:id/plan",
        Access::Namespace(&[&[SUBMIT_JOB, PLAN_JOB]]),
    ),
    (
        M::Write,
        "/v1/job/:id/evaluate",
        Access::Namespace(&[&[SUBMIT_JOB, EVALUATE_JOB]]),
    ),
    (
        M::Write,
        "/v1/job/:id/revert",
        Access::Namespace(&[&[SUBMIT_JOB, REVERT_JOB]]),
    ),
    (
        M::Write,
        "/v1/job/:id/stable",
        Access::Namespace(&[&[SUBMIT_JOB, STABLE_JOB]]),
    ),
    (
        M::WriteOrDelete,
        "/v1/job/:id/versions/:name/tag",
        Access::Namespace(&[&[SUBMIT_JOB, TAG_JOB_VERSION]]),
    ),
    (
        M::Write,
        "/v1/job/:id/dispatch",
        Access::Namespace(&[&[DISPATCH_JOB]]),
    ),
    (
        M::Write,
        "/v1/job/:id/dispatch/payload",
        Access::Namespace(&[&[DISPATCH_JOB]]),
    ),
    (
        M::Write,
        "/v1/job/:id/periodic/force",
        Access::Namespace(&[&[DISPATCH_JOB, SUBMIT_JOB, FORCE_PERIODIC_JOB]]),
    ),
    (
        M::Get,
        "/v1/job/:id/scale",
        Access::Namespace(&[&[READ_JOB, READ_JOB_SCALING]]),
    ),
    (
        M::Write,
        "/v1/job/:id/scale",
        Access::Namespace(&[&[SCALE_JOB, SUBMIT_JOB]]),
    ),
    (M::Get, "/v1/job/:id", Access::Namespace(READ)),
    (
        M::Write,
        "/v1/job/:id",
        Access::Namespace(&[&[SUBMIT_JOB, REGISTER_JOB]]),
    ),
    // purge=true: submit-job OR purge-job only.
    (
        M::Delete,
        "/v1/job/:id",
        Access::Namespace(&[&[SUBMIT_JOB, PURGE_JOB, DEREGISTER_JOB]]),
    ),
    // allocations
    (M::Get, "/v1/allocations", Access::Namespace(READ)),
    (
        M::Write,
        "/v1/allocation/:id/stop",
        Access::Namespace(&[&[ALLOC_LIFECYCLE]]),
    ),
    (
        M::Get,
        "/v1/allocation/:id/services",
        Access::Namespace(READ),
    ),
    (M::Get, "/v1/allocation/:id/checks", Access::Namespace(READ)),
    (M::Get, "/v1/allocation/:id", Access::Namespace(READ)),
    (
        M::Get,
        "/v1/client/allocation/:id/stats",
        Access::Namespace(READ),
    ),
    (
        M::Get,
        "/v1/client/allocation/:id/checks",
        Access::Namespace(READ),
    ),
    (
        M::Any,
        "/v1/client/allocation/:id/restart",
        Access::Namespace(&[&[ALLOC_LIFECYCLE]]),
    ),
    (
        M::Any,
        "/v1/client/allocation/:id/signal",
        Access::Namespace(&[&[ALLOC_LIFECYCLE]]),
    ),
    (
        M::Any,
        "/v1/client/allocation/:id/gc",
        Access::Namespace(&[&[SUBMIT_JOB, GC_ALLOCATION]]),
    ),
    (
        M::Get,
        "/v1/client/allocation/:id/pause",
        Access::Namespace(READ),
    ),
    (
        M::Write,
        "/v1/client/allocation/:id/pause",
        Access::Namespace(&[&[SUBMIT_JOB, PAUSE_ALLOCATION]]),
    ),
    // websocket; + alloc-node-exec when the driver has no FS isolation.
    (
        M::Get,
        "/v1/client/allocation/:id/exec",
        Access::Namespace(&[&[ALLOC_EXEC]]),
    ),
    // file system
    (
        M::Get,
        "/v1/client/fs/logs/:id",
        Access::Namespace(&[&[READ_LOGS, READ_FS]]),
    ),
    (
        M::Get,
        "/v1/client/fs/ls/:id",
        Access::Namespace(&[&[READ_FS]]),
    ),
    (
        M::Get,
        "/v1/client/fs/stat/:id",
        Access::Namespace(&[&[READ_FS]]),
    ),
    (
        M::Get,
        "/v1/client/fs/cat/:id",
        Access::Namespace(&[&[READ_FS]]),
    ),
    (
        M::Get,
        "/v1/client/fs/readat/:id",
        Access::Namespace(&[&[READ_FS]]),
    ),
    (
        M::Get,
        "/v1/client/fs/stream/:id",
        Access::Namespace(&[&[READ_FS]]),
    ),
    // evaluations
    (M::Get, "/v1/evaluations", Access::Namespace(READ)),
    (
        M::Get,
        "/v1/evaluation/:id/allocations",
        Access::Namespace(READ),
    ),
    (M::Get, "/v1/evaluation/:id", Access::Namespace(READ)),
    // deployments
    (M::Get, "/v1/deployments", Access::Namespace(READ)),
    (
        M::Get,
        "/v1/deployment/allocations/:id",
        Access::Namespace(READ),
    ),
    (
        M::Write,
        "/v1/deployment/fail/:id",
        Access::Namespace(&[&[SUBMIT_JOB, FAIL_DEPLOYMENT]]),
    ),
    (
        M::Write,
        "/v1/deployment/pause/:id",
        Access::Namespace(&[&[SUBMIT_JOB, PAUSE_DEPLOYMENT]]),
    ),
    (
        M::Write,
        "/v1/deployment/promote/:id",
        Access::Namespace(&[&[SUBMIT_JOB, PROMOTE_DEPLOYMENT]]),
    ),
    (
        M::Write,
        "/v1/deployment/unblock/:id",
        Access::Namespace(&[&[SUBMIT_JOB, UNBLOCK_DEPLOYMENT]]),
    ),
    (
        M::Write,
        "/v1/deployment/cancel/:id",
        Access::Namespace(&[&[SUBMIT_JOB, CANCEL_DEPLOYMENT]]),
    ),
    (
        M::Write,
        "/v1/deployment/allocation-health/:id",
        Access::Namespace(&[&[SUBMIT_JOB, SET_ALLOC_HEALTH_DEPLOYMENT]]),
    ),
    (M::Get, "/v1/deployment/:id", Access::Namespace(READ)),
    // nodes, agent, client
    (M::Get, "/v1/nodes", Access::NodeRead),
    // allocations in the answer are filtered by read-job.
    (M::Get, "/v1/node/:id/allocations", Access::NodeRead),
    (M::Write, "/v1/node/:id/drain", Access::NodeWrite),
    (M::Write, "/v1/node/:id/eligibility", Access::NodeWrite),
    (M::Write, "/v1/node/:id/evaluate", Access::NodeWrite),
    (M::Write, "/v1/node/:id/purge", Access::NodeWrite),
    (M::Get, "/v1/node/:id", Access::NodeRead),
    (M::Get, "/v1/agent/members", Access::NodeRead),
    (M::Get, "/v1/client/stats", Access::NodeRead),
    (M::Any, "/v1/client/gc", Access::NodeWrite),
    (M::Get, "/v1/agent/self", Access::AgentRead),
    (M::Get, "/v1/status/leader", Access::None),
    (M::Get, "/v1/status/peers", Access::None),
    (M::Get, "/v1/regions", Access::None),
    // ACL
    (M::Write, "/v1/acl/bootstrap", Access::None),
    (M::Get, "/v1/acl/token/self", Access::AnyToken),
    (M::Get, "/v1/acl/tokens", Access::Management),
    (M::Write, "/v1/acl/token", Access::Management),
    (M::Any, "/v1/acl/token/:id", Access::Management),
    // a client token may read the policies attached to it: filter/check by name.
    (M::Get, "/v1/acl/policies", Access::AnyToken),
    (M::Get, "/v1/acl/policy/:name", Access::AnyToken),
    (M::WriteOrDelete, "/v1/acl/policy/:name", Access::Management),
    // namespaces (list filtered by allow_namespace)
    (M::Get, "/v1/namespaces", Access::AnyToken),
    (M::Get, "/v1/namespace/:name", Access::NamespaceVisible),
    (M::WriteOrDelete, "/v1/namespace/:name", Access::Management),
    (M::Write, "/v1/namespace", Access::Management),
    // variables
    (M::Get, "/v1/vars", Access::Variable("list")),
    (M::Get, "/v1/var/*", Access::Variable("read")),
    (M::Write, "/v1/var/*", Access::Variable("write")),
    (M::Delete, "/v1/var/*", Access::Variable("destroy")),
];

fn route_matches(pattern: &str, path: &str) -> bool {
    let mut pat = pattern.trim_matches('/').split('/');
    let mut segs = path.trim_matches('/').split('/');
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return true,
            (Some("*"), Some(s)) => return !s.is_empty(),
            (Some(p), Some(s)) if p.starts_with(':') => {
                if s.is_empty() {
                    return false;
                }
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

/// The permission `method route` needs. `route` is a request path (a query
/// string is ignored) such as `/v1/job/web/plan`. `None`: route unknown to
/// the table.
pub fn required_access(method: &str, route: &str) -> Option<Access> {
    let path = route.split('?').next().unwrap_or(route);
    TABLE
        .iter()
        .find(|(m, pattern, _)| m.matches(method) && route_matches(pattern, path))
        .map(|(_, _, access)| *access)
}

/// The namespace capabilities `method route` needs (see the module docs for
/// the all-of/any-of reading), or `None` when the route is not
/// namespace-scoped or unknown (use [`required_access`] for those).
pub fn required_namespace_capabilities(
    method: &str,
    route: &str,
) -> Option<&'static [&'static [&'static str]]> {
    match required_access(method, route)? {
        Access::Namespace(caps) => Some(caps),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    #[test]
    fn table_lookups() {
        let cases: &[(&str, &str, Option<Access>)] = &[
            ("GET", "/v1/jobs", Some(Access::Namespace(&[&[LIST_JOBS]]))),
            (
                "GET",
                "/v1/jobs?namespace=*",
                Some(Access::Namespace(&[&[LIST_JOBS]])),
            ),
            (
                "POST",
                "/v1/jobs/parse",
                Some(Access::Namespace(&[&[PARSE_JOB, SUBMIT_JOB]])),
            ),
            (
                "PUT",
                "/v1/jobs",
                Some(Access::Namespace(&[&[SUBMIT_JOB, REGISTER_JOB]])),
            ),
            ("GET", "/v1/job/web", Some(Access::Namespace(READ))),
            ("GET", "/v1/job/web/summary", Some(Access::Namespace(READ))),
            (
                "post",
                "/v1/job/web/plan",
                Some(Access::Namespace(&[&[SUBMIT_JOB, PLAN_JOB]])),
            ),
            (
                "DELETE",
                "/v1/job/web/versions/v1/tag",
                Some(Access::Namespace(&[&[SUBMIT_JOB, TAG_JOB_VERSION]])),
            ),
            (
                "GET",
                "/v1/job/web/action",
                Some(Access::Namespace(&[&[ALLOC_EXEC, RUN_ACTION]])),
            ),
            (
                "GET",
                "/v1/client/allocation/abc/exec",
                Some(Access::Namespace(&[&[ALLOC_EXEC]])),
            ),
            (
                "PUT",
                "/v1/client/allocation/abc/restart",
                Some(Access::Namespace(&[&[ALLOC_LIFECYCLE]])),
            ),
            (
                "GET",
                "/v1/client/fs/logs/abc?task=t&type=stdout",
                Some(Access::Namespace(&[&[READ_LOGS, READ_FS]])),
            ),
            ("GET", "/v1/nodes", Some(Access::NodeRead)),
            ("POST", "/v1/node/n1/drain", Some(Access::NodeWrite)),
            ("GET", "/v1/agent/self", Some(Access::AgentRead)),
            ("GET", "/v1/status/leader", Some(Access::None)),
            ("GET", "/v1/acl/token/self", Some(Access::AnyToken)),
            ("GET", "/v1/acl/token/abc", Some(Access::Management)),
            ("PUT", "/v1/acl/policy/readonly", Some(Access::Management)),
            ("GET", "/v1/var/a/b/c", Some(Access::Variable("read"))),
            ("DELETE", "/v1/var/a", Some(Access::Variable("destroy"))),
            ("GET", "/v1/var", None),
            ("GET", "/v1/unknown", None),
            ("PATCH", "/v1/job/web", None),
        ];
        for (method, route, want) in cases {
            assert_eq!(required_access(method, route), *want, "{method} {route}");
        }
        assert_eq!(required_namespace_capabilities("GET", "/v1/nodes"), None);
        assert_eq!(
            required_namespace_capabilities("GET", "/v1/job/x/scale"),
            Some(&[&[READ_JOB, READ_JOB_SCALING][..]][..])
        );
    }

    #[test]
    fn every_capability_in_table_is_valid() {
        for (_, _, access) in TABLE {
            if let Access::Namespace(groups) = access {
                for group in *groups {
                    for cap in *group {
                        assert!(is_valid(cap), "{cap}");
                    }
                }
            }
        }
    }

    #[test]
    fn allows_with_acl() {
        let p = parse_policy(
            r#"namespace "default" { policy = "read" }
               namespace "ops" { capabilities = ["run-action", "read-job"] }"#,
        )
        .expect("policy");
        let acl = Acl::from_policies(&[p]);
        let access = |m, r| required_access(m, r).expect("known route");
        assert!(acl.allows(&access("GET", "/v1/job/web"), "default"));
        assert!(acl.allows(&access("POST", "/v1/jobs/parse"), "default"));
        assert!(!acl.allows(&access("PUT", "/v1/jobs"), "default"));
        assert!(!acl.allows(&access("GET", "/v1/job/web/action"), "default"));
        assert!(acl.allows(&access("GET", "/v1/job/web/action"), "ops"));
        assert!(!acl.allows(&access("GET", "/v1/client/allocation/a/exec"), "ops"));
        assert!(!acl.allows(&access("GET", "/v1/nodes"), "default"));
        assert!(acl.allows(&access("GET", "/v1/status/leader"), "default"));
        assert!(!acl.allows(&access("GET", "/v1/acl/tokens"), "default"));
        assert!(Acl::management().allows(&access("GET", "/v1/acl/tokens"), "default"));
        assert!(acl.allows(&access("GET", "/v1/namespace/default"), "default"));
        assert!(!acl.allows(&access("GET", "/v1/namespace/prod"), "prod"));
    }
}
