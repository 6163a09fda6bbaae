//! Feasibility: which nodes may run a task group at all (readiness, pool, datacenter, drivers,
//! constraints). Pure functions over a [`Node`]; the filter reasons are Nomad's metric keys.

use std::collections::BTreeSet;

use nomad_structs::{Constraint, Job, Node, TaskGroup};

/// Metric key for a node lacking a task's driver (Nomad's `FilterConstraintDrivers`).
pub const FILTER_MISSING_DRIVERS: &str = "missing drivers";
/// Metric key (and operand) for the distinct_hosts constraint.
pub const CONSTRAINT_DISTINCT_HOSTS: &str = "distinct_hosts";
/// Operand for distinct_property (not enforced yet; always satisfied).
pub const CONSTRAINT_DISTINCT_PROPERTY: &str = "distinct_property";

/// The node pool that matches every node.
pub const NODE_POOL_ALL: &str = "all";
/// The pool of nodes and jobs that name none.
pub const NODE_POOL_DEFAULT: &str = "default";

/// Whether `node` belongs to the job's node pool (`all` matches any; empty means `default`).
pub fn node_pool_matches(job: &Job, node: &Node) -> bool {
    let want = if job.node_pool.is_empty() {
        NODE_POOL_DEFAULT
    } else {
        job.node_pool.as_str()
    };
    let have = if node.node_pool.is_empty() {
        NODE_POOL_DEFAULT
    } else {
        node.node_pool.as_str()
    };
    want == NODE_POOL_ALL || want == have
}

/// Whether the node's datacenter matches one of the job's datacenter globs (none means `*`).
pub fn datacenter_matches(job: &Job, node: &Node) -> bool {
    match job.datacenters.as_deref() {
        None | Some([]) => true,
        Some(dcs) => dcs.iter().any(|pat| glob_match(pat, &node.datacenter)),
    }
}

/// Glob matching with `*` (any run of characters) and `?` (one character), as Nomad's
/// datacenter patterns.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The drivers a task group's tasks need.
pub fn group_drivers(tg: &TaskGroup) -> BTreeSet<String> {
    tg.tasks
        .iter()
        .map(|t| t.driver.clone())
        .filter(|d| !d.is_empty())
        .collect()
}

/// Whether the node has every driver detected and healthy (or the legacy `driver.<name>`
/// attribute set to a true value).
pub fn has_drivers(node: &Node, drivers: &BTreeSet<String>) -> bool {
    drivers.iter().all(|d| match node.drivers.get(d) {
        Some(info) => info.detected && info.healthy,
        None => node
            .attributes
            .get(&format!("driver.{d}"))
            .is_some_and(|v| parse_go_bool(v).unwrap_or(false)),
    })
}

fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Task-group level constraints: the group's own plus each task's, in order, without duplicates.
pub fn group_constraints(tg: &TaskGroup) -> Vec<Constraint> {
    let mut out: Vec<Constraint> = Vec::new();
    let all = tg
        .constraints
        .iter()
        .flatten()
        .chain(tg.tasks.iter().flat_map(|t| t.constraints.iter().flatten()));
    for c in all {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// Whether a constraint list asks for distinct hosts (an empty or unparsable RTarget means yes).
pub fn wants_distinct_hosts(constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .find(|c| c.operand == CONSTRAINT_DISTINCT_HOSTS)
        .is_some_and(|c| c.r_target.is_empty() || parse_go_bool(&c.r_target).unwrap_or(true))
}

/// Checks constraints in order; returns the display form of the first one the node fails.
/// distinct_hosts / distinct_property are skipped here (they depend on the plan).
pub fn first_failed_constraint(node: &Node, constraints: &[Constraint]) -> Option<String> {
    constraints
        .iter()
        .find(|c| !meets_constraint(node, c))
        .map(|c| c.to_string())
}

/// Resolves a constraint target against a node: `${...}` interpolations or a literal.
pub fn resolve_target(target: &str, node: &Node) -> Option<String> {
    let Some(inner) = target.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return Some(target.to_string());
    };
    match inner {
        "node.unique.id" => Some(node.id.clone()),
        "node.datacenter" => Some(node.datacenter.clone()),
        "node.unique.name" => Some(node.name.clone()),
        "node.class" => Some(node.node_class.clone()),
        "node.pool" => Some(node.node_pool.clone()),
        "node.region" => node.attributes.get("nomad.region").cloned(),
        _ => {
            if let Some(attr) = inner.strip_prefix("attr.") {
                node.attributes.get(attr).cloned()
            } else if let Some(key) = inner.strip_prefix("meta.") {
                node.meta.as_ref().and_then(|m| m.get(key)).cloned()
            } else {
                None
            }
        }
    }
}

/// Whether the node satisfies one constraint.
pub fn meets_constraint(node: &Node, c: &Constraint) -> bool {
    let l = resolve_target(&c.l_target, node);
    let r = resolve_target(&c.r_target, node);
    check_constraint(&c.operand, l.as_deref(), r.as_deref())
}

/// Applies an operand to resolved values (`None` = target not present on the node).
pub fn check_constraint(operand: &str, l: Option<&str>, r: Option<&str>) -> bool {
    match operand {
        CONSTRAINT_DISTINCT_HOSTS | CONSTRAINT_DISTINCT_PROPERTY => true,
        "=" | "==" | "is" => matches!((l, r), (Some(a), Some(b)) if a == b),
        "!=" | "not" => l != r,
        "<" | "<=" | ">" | ">=" => match (l, r) {
            (Some(a), Some(b)) => check_order(operand, a, b),
            _ => false,
        },
        "is_set" => l.is_some(),
        "is_not_set" => l.is_none(),
        "version" | "semver" => match (l, r) {
            (Some(a), Some(b)) => version_matches(a, b, operand == "semver"),
            _ => false,
        },
        "regexp" => match (l, r) {
            (Some(a), Some(b)) => regex::Regex::new(b).is_ok_and(|re| re.is_match(a)),
            _ => false,
        },
        "set_contains" | "set_contains_all" => match (l, r) {
            (Some(a), Some(b)) => {
                let have = split_set(a);
                split_set(b).iter().all(|x| have.contains(x))
            }
            _ => false,
        },
        "set_contains_any" => match (l, r) {
            (Some(a), Some(b)) => {
                let have = split_set(a);
                split_set(b).iter().any(|x| have.contains(x))
            }
            _ => false,
        },
        _ => false,
    }
}

fn split_set(s: &str) -> BTreeSet<&str> {
    s.split(',').map(str::trim).collect()
}

/// Integer compare if both parse, else float, else lexical, as Nomad does.
fn check_order(op: &str, a: &str, b: &str) -> bool {
    let ord = if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
        x.cmp(&y)
    } else if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        match x.partial_cmp(&y) {
            Some(o) => o,
            None => return false,
        }
    } else {
        a.cmp(b)
    };
    use std::cmp::Ordering::*;
    match op {
        "<" => ord == Less,
        "<=" => ord != Greater,
        ">" => ord == Greater,
        ">=" => ord != Less,
        _ => false,
    }
}

/// A parsed version: numeric segments and an optional prerelease tag.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    segs: Vec<u64>,
    pre: Option<String>,
}

fn parse_version(s: &str) -> Option<Version> {
    let s = s.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    let s = s.split('+').next().unwrap_or(s);
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p.to_string())),
        None => (s, None),
    };
    if core.is_empty() {
        return None;
    }
    let segs = core
        .split('.')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<Vec<_>>>()?;
    Some(Version { segs, pre })
}

fn cmp_version(a: &Version, b: &Version) -> std::cmp::Ordering {
    let n = a.segs.len().max(b.segs.len()).max(3);
    for i in 0..n {
        let (x, y) = (
            a.segs.get(i).copied().unwrap_or(0),
            b.segs.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x.cmp(&y);
        }
    }
    match (&a.pre, &b.pre) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    }
}

/// Checks a version against a comma-separated constraint list such as `>= 1.2, < 2.0` or
/// `~> 1.4`. With `semver`, a prerelease only matches constraints naming a prerelease.
pub fn version_matches(version: &str, constraints: &str, semver: bool) -> bool {
    let Some(v) = parse_version(version) else {
        return false;
    };
    let mut any = false;
    for part in constraints.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        any = true;
        let (op, rest) = ["~>", ">=", "<=", "!=", "==", ">", "<", "="]
            .iter()
            .find_map(|op| part.strip_prefix(op).map(|r| (*op, r)))
            .unwrap_or(("=", part));
        let Some(c) = parse_version(rest) else {
            return false;
        };
        if semver && v.pre.is_some() && c.pre.is_none() {
            return false;
        }
        let ord = cmp_version(&v, &c);
        use std::cmp::Ordering::*;
        let ok = match op {
            "=" | "==" => ord == Equal,
            "!=" => ord != Equal,
            ">" => ord == Greater,
            ">=" => ord != Less,
            "<" => ord == Less,
            "<=" => ord != Greater,
            "~>" => {
                // Pessimistic: at least c, below c with its second-to-last segment bumped.
                let mut upper = c.segs.clone();
                if upper.len() > 1 {
                    upper.pop();
                }
                if let Some(last) = upper.last_mut() {
                    *last += 1;
                }
                let upper = Version {
                    segs: upper,
                    pre: None,
                };
                ord != Less
                    && cmp_version(
                        &Version {
                            segs: v.segs.clone(),
                            pre: None,
                        },
                        &upper,
                    ) == Less
            }
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    any
}

/// Whether constraints reference node-unique values, which defeats computed-class caching
/// (Nomad's `EscapedComputedClass`).
pub fn escapes_computed_class(constraints: &[Constraint]) -> bool {
    constraints.iter().any(|c| {
        let unique = |t: &str| {
            t.contains("${node.unique.")
                || t.contains("${attr.unique.")
                || t.contains("${meta.unique.")
        };
        unique(&c.l_target) || unique(&c.r_target)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "dc1"));
        assert!(glob_match("dc*", "dc1"));
        assert!(!glob_match("dc*", "eu1"));
        assert!(glob_match("dc1", "dc1"));
        assert!(glob_match("*-west-?", "us-west-2"));
        assert!(!glob_match("dc1", "dc10"));
    }

    #[test]
    fn operands() {
        assert!(check_constraint("=", Some("linux"), Some("linux")));
        assert!(!check_constraint("=", None, Some("linux")));
        assert!(check_constraint("!=", None, Some("linux")));
        assert!(check_constraint(">", Some("10"), Some("9")));
        assert!(check_constraint("<", Some("abc"), Some("abd")));
        assert!(check_constraint(">=", Some("2.5"), Some("2.25")));
        assert!(check_constraint("is_set", Some(""), None));
        assert!(check_constraint("is_not_set", None, Some("x")));
        assert!(check_constraint(
            "regexp",
            Some("ubuntu-22.04"),
            Some("^ubuntu-2[0-9]")
        ));
        assert!(!check_constraint("regexp", Some("x"), Some("(")));
        assert!(check_constraint(
            "set_contains",
            Some("a, b,c"),
            Some("c,a")
        ));
        assert!(!check_constraint(
            "set_contains_all",
            Some("a,b"),
            Some("a,z")
        ));
        assert!(check_constraint(
            "set_contains_any",
            Some("a,b"),
            Some("z,b")
        ));
        assert!(!check_constraint("bogus", Some("a"), Some("a")));
    }

    #[test]
    fn versions() {
        assert!(version_matches("1.7.3", ">= 1.2, < 2.0", false));
        assert!(!version_matches("2.0.0", ">= 1.2, < 2.0", false));
        assert!(version_matches("1.4.9", "~> 1.4.2", false));
        assert!(!version_matches("1.5.0", "~> 1.4.2", false));
        assert!(version_matches("1.9", "~> 1.4", false));
        assert!(version_matches("v1.2", "= 1.2.0", false));
        assert!(!version_matches("1.2.0-beta", ">= 1.0", true));
        assert!(version_matches("1.2.0-beta", ">= 1.0", false));
        assert!(!version_matches("junk", ">= 1.0", false));
    }
}
