//! Every row of the ACL table (`nomad_acl::endpoints::rows`), through the router: without a
//! token, with a token holding everything except what the row needs, and with a token holding
//! exactly that. The first two must get 403 "Permission denied"; the last must get past the
//! ACL check (whatever the handler then says about an empty body or a missing object).
//!
//! Requests that pass run for real, so the path IDs are chosen not to destroy what later
//! rows need: unknown token and policy IDs, the `default` namespace (which cannot be deleted).

use std::collections::HashMap;

use axum::http::{Method, StatusCode};
use axum::Router;
use nomad_acl::capability::{self, ALLOC_NODE_EXEC};
use nomad_acl::endpoints::{rows, Row};
use nomad_acl::Access;

use super::router_tests::{app, bootstrap, call, seed_job_and_alloc, token_with, uuid_like, Auth};

/// A concrete request path for `pattern`: alloc-scoped routes name the seeded alloc.
fn instantiate(pattern: &str, alloc: &str) -> String {
    let alloc_scoped = [
        "/v1/allocation/",
        "/v1/client/allocation/",
        "/v1/client/fs/",
    ]
    .iter()
    .any(|p| pattern.starts_with(p));
    let mut out = Vec::new();
    for seg in pattern.split('/') {
        let s = match seg {
            ":id" if alloc_scoped => alloc.to_string(),
            ":id" if pattern.starts_with("/v1/job/") => "web".to_string(),
            ":id" if pattern.starts_with("/v1/node/") => "node-1".to_string(),
            ":id" => uuid_like("no-such-object"),
            ":name" if pattern.starts_with("/v1/job/") => "v1".to_string(),
            ":name" if pattern.starts_with("/v1/namespace/") => "default".to_string(),
            ":name" => "no-such-policy".to_string(),
            "*" => "app/config".to_string(),
            s => s.to_string(),
        };
        out.push(s);
    }
    out.join("/")
}

/// Every namespace capability except `denied` (and `deny` itself).
fn all_caps_but(denied: &[&str]) -> String {
    capability::ALL
        .iter()
        .filter(|c| **c != capability::DENY && !denied.contains(c))
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rules granting every non-namespace area at `node`, `agent` and `operator` levels.
fn areas(node: &str, agent: &str, operator: &str) -> String {
    format!(
        "node {{ policy = {node:?} }}\nagent {{ policy = {agent:?} }}\noperator {{ policy = {operator:?} }}\n"
    )
}

const EVERY_NS: &str = "namespace \"*\" { policy = \"write\" }\n";

/// `(with, without)` policies for a row; `None` for `with` means the management token.
fn policies(row: &Row) -> (Option<String>, String) {
    let every_area = areas("write", "write", "write");
    match row.access {
        Access::Namespace(groups) => {
            let mut needed: Vec<&str> = groups.iter().map(|any| any[0]).collect();
            // The seeded task is raw_exec: exec and actions by alloc-exec also need this.
            if row.pattern.ends_with("/exec") || row.pattern.ends_with("/action") {
                needed.push(ALLOC_NODE_EXEC);
            }
            let with = format!(
                "namespace \"default\" {{ capabilities = [{}] }}\n",
                needed
                    .iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let every_needed: Vec<&str> = groups.iter().flat_map(|g| g.iter().copied()).collect();
            let without = format!(
                "namespace \"default\" {{ capabilities = [{}] }}\n{every_area}",
                all_caps_but(&every_needed)
            );
            (Some(with), without)
        }
        Access::NodeRead => (
            Some(areas("read", "deny", "deny")),
            format!("{EVERY_NS}{}", areas("deny", "write", "write")),
        ),
        Access::NodeWrite => (
            Some(areas("write", "deny", "deny")),
            format!("{EVERY_NS}{}", areas("read", "write", "write")),
        ),
        Access::AgentRead => (
            Some(areas("deny", "read", "deny")),
            format!("{EVERY_NS}{}", areas("write", "deny", "write")),
        ),
        Access::AgentWrite => (
            Some(areas("deny", "write", "deny")),
            format!("{EVERY_NS}{}", areas("write", "read", "write")),
        ),
        Access::OperatorRead => (
            Some(areas("deny", "deny", "read")),
            format!("{EVERY_NS}{}", areas("write", "write", "deny")),
        ),
        Access::OperatorWrite => (
            Some(areas("deny", "deny", "write")),
            format!("{EVERY_NS}{}", areas("write", "write", "read")),
        ),
        Access::Management => (None, format!("{EVERY_NS}{every_area}")),
        Access::NamespaceVisible => (
            Some("namespace \"default\" { policy = \"read\" }\n".to_string()),
            format!("namespace \"default\" {{ policy = \"deny\" }}\nnamespace \"other\" {{ policy = \"write\" }}\n{every_area}"),
        ),
        Access::Variable(op) => {
            let with = format!(
                "namespace \"default\" {{\n  variables {{\n    path \"*\" {{ capabilities = [{op:?}] }}\n  }}\n}}\n"
            );
            // Listing is allowed with any variable capability in the namespace (the answer is
            // filtered by `list`), so its "without" has no variables block at all.
            let others: Vec<String> = ["list", "read", "write", "destroy"]
                .iter()
                .filter(|o| **o != op && op != "list")
                .map(|o| format!("{o:?}"))
                .collect();
            let vars = if others.is_empty() {
                String::new()
            } else {
                format!(
                    "  variables {{\n    path \"*\" {{ capabilities = [{}] }}\n  }}\n",
                    others.join(", ")
                )
            };
            let without = format!(
                "namespace \"default\" {{\n  capabilities = [{}]\n{vars}}}\n{every_area}",
                all_caps_but(&[])
            );
            (Some(with), without)
        }
        Access::None | Access::AnyToken => (None, String::new()),
    }
}

struct Tokens<'a> {
    app: &'a Router,
    mgmt: String,
    by_rules: HashMap<String, String>,
}

impl Tokens<'_> {
    async fn for_rules(&mut self, rules: &str) -> String {
        if let Some(t) = self.by_rules.get(rules) {
            return t.clone();
        }
        let name = format!("p{}", self.by_rules.len());
        let t = token_with(self.app, &self.mgmt, &name, rules).await;
        self.by_rules.insert(rules.to_string(), t.clone());
        t
    }
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).expect("method")
}

impl Tokens<'_> {
    /// The three checks for one row at `path`; returns how many methods were checked.
    async fn check(&mut self, row: &Row, path: &str) -> usize {
        let app = self.app;
        let (with, without) = policies(row);
        let open = matches!(row.access, Access::None | Access::AnyToken);
        let with_token = match &with {
            Some(rules) => self.for_rules(rules).await,
            None => self.mgmt.clone(),
        };
        let without_token = if open {
            None
        } else {
            Some(self.for_rules(&without).await)
        };
        for m in row.methods {
            let what = format!("{m} {path} ({:?})", row.access);
            if !open {
                let (st, body) = call(app, method(m), path, Auth::None, None).await;
                assert_eq!(
                    (st, body.as_str()),
                    (StatusCode::FORBIDDEN, "Permission denied"),
                    "{what} without a token"
                );
                let t = without_token.as_deref().expect("token");
                let (st, body) = call(app, method(m), path, Auth::Header(t), None).await;
                assert_eq!(
                    st,
                    StatusCode::FORBIDDEN,
                    "{what} with everything but its capability: {body}\npolicy:\n{without}"
                );
            }
            let (st, body) = call(app, method(m), path, Auth::Header(&with_token), None).await;
            assert_ne!(
                st,
                StatusCode::FORBIDDEN,
                "{what} with exactly its capability: {body}\npolicy:\n{with:?}"
            );
        }
        row.methods.len()
    }
}

#[tokio::test]
async fn every_route_no_token_without_and_with_its_capability() {
    let (app, server) = app(true);
    let mgmt = bootstrap(&app).await;
    let alloc = seed_job_and_alloc(&server, "web", "default").await;
    let mut tokens = Tokens {
        app: &app,
        mgmt,
        by_rules: HashMap::new(),
    };
    let mut checked = 0;
    for row in rows() {
        checked += tokens.check(&row, &instantiate(row.pattern, &alloc)).await;
    }
    assert!(checked > 100, "only {checked} route/method pairs");

    // The routes the HTTP layer decides itself, and routes the table does not know, which
    // need a management token.
    let extra: &[(&[&str], &str, Access)] = &[
        (
            &["GET"],
            "/v1/evaluations/count",
            Access::Namespace(&[&["read-job"]]),
        ),
        (&["GET"], "/v1/agent/servers", Access::AgentRead),
        (&["GET"], "/v1/agent/health", Access::None),
        (
            &["GET"],
            "/v1/operator/raft/configuration",
            Access::Management,
        ),
        (&["DELETE"], "/v1/operator/raft/peer", Access::Management),
        (&["GET", "PUT"], "/v1/operator/snapshot", Access::Management),
        (
            &["GET", "PUT"],
            "/v1/operator/scheduler/configuration",
            Access::Management,
        ),
        (&["GET"], "/v1/no/such/route", Access::Management),
    ];
    for (methods, pattern, access) in extra {
        let row = Row {
            methods,
            pattern,
            access: *access,
        };
        tokens.check(&row, pattern).await;
    }
}
