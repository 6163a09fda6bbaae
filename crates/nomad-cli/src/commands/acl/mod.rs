//! `nomad acl <bootstrap|token|policy> ...`: the ACL system from the CLI, with Nomad's
//! outputs (token and policy key/value blocks, list tables).

pub mod bootstrap;
pub mod policy;
pub mod token;

use nomad_acl::{AclPolicy, AclToken};

use crate::format::{format_kv, format_list};

const HELP: &str = "Usage: nomad acl <subcommand> [options] [args]

  Interact with ACL policies and tokens: bootstrap the ACL system, then
  write policies and create tokens that carry them.

Subcommands:
    bootstrap    Bootstrap the ACL system and get the first management token
    policy       Apply, list, inspect and delete ACL policies
    token        Create, list, inspect, update and delete ACL tokens
";

/// Dispatches `nomad acl ...`.
pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("bootstrap") => bootstrap::run(&args[1..]),
        Some("token") => token::run(&args[1..]),
        Some("policy") => policy::run(&args[1..]),
        Some("-h" | "-help" | "--help") => {
            outln!("{}", HELP.trim_end());
            0
        }
        _ => {
            eprintln!("{}", HELP.trim_end());
            1
        }
    }
}

/// Go's `time.Time.String()` of an RFC 3339 timestamp (`2024-01-02 10:11:12.5 +0000 UTC`);
/// the input itself when it does not parse.
pub(crate) fn go_time_string(rfc3339: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let t = t.with_timezone(&chrono::Utc);
    let nanos = t.timestamp_subsec_nanos();
    let frac = if nanos == 0 {
        String::new()
    } else {
        let s = format!(".{nanos:09}");
        s.trim_end_matches('0').to_string()
    };
    format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

/// `<none>` for a missing or zero expiry, else its Go time string.
fn expiry_string(t: &Option<String>) -> String {
    match t.as_deref() {
        None | Some("") | Some("0001-01-01T00:00:00Z") => "<none>".to_string(),
        Some(s) => go_time_string(s),
    }
}

/// Go's `%v` of a string slice: `[a b]`.
pub(crate) fn go_list(v: &Option<Vec<String>>) -> String {
    format!("[{}]", v.as_deref().unwrap_or_default().join(" "))
}

/// A token as Nomad's `acl token` commands print it.
pub(crate) fn format_token(token: &AclToken) -> String {
    let mut kv = vec![
        format!("Accessor ID|{}", token.accessor_id),
        format!("Secret ID|{}", token.secret_id),
        format!("Name|{}", token.name),
        format!("Type|{}", token.token_type),
        format!("Global|{}", token.global),
        format!("Create Time|{}", go_time_string(&token.create_time)),
        format!("Expiry Time |{}", expiry_string(&token.expiration_time)),
        format!("Create Index|{}", token.create_index),
        format!("Modify Index|{}", token.modify_index),
    ];
    if token.token_type == "management" {
        kv.push("Policies|n/a".to_string());
        kv.push("Roles|n/a".to_string());
        return format_kv(&kv);
    }
    kv.push(format!("Policies|{}", go_list(&token.policies)));
    let roles = token.roles.as_deref().unwrap_or_default();
    let mut rows = Vec::new();
    if roles.is_empty() {
        rows.push("<none>".to_string());
    } else {
        rows.push("ID|Name".to_string());
        for r in roles {
            let f = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            rows.push(format!("{}|{}", f("ID"), f("Name")));
        }
    }
    format!("{}\n\nRoles\n{}", format_kv(&kv), format_list(&rows))
}

/// A policy as `nomad acl policy info` prints it.
pub(crate) fn format_policy(policy: &AclPolicy) -> String {
    let mut out = format_kv(&[
        format!("Name|{}", policy.name),
        format!("Description|{}", policy.description),
        format!("CreateIndex|{}", policy.create_index),
        format!("ModifyIndex|{}", policy.modify_index),
    ]);
    if let Some(j) = policy.job_acl.as_ref().filter(|j| !j.is_null()) {
        let f = |k: &str| j.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        out.push_str("\n\nAssociated Workload\n");
        out.push_str(&format_kv(&[
            format!("Namespace|{}", f("Namespace")),
            format!("JobID|{}", f("JobID")),
            format!("Group|{}", f("Group")),
            format!("Task|{}", f("Task")),
        ]));
    }
    out.push_str("\n\nRules\n\n");
    out.push_str(&policy.rules);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_strings() {
        assert_eq!(
            go_time_string("2024-01-02T10:11:12.500Z"),
            "2024-01-02 10:11:12.5 +0000 UTC"
        );
        assert_eq!(
            go_time_string("2024-01-02T10:11:12Z"),
            "2024-01-02 10:11:12 +0000 UTC"
        );
        assert_eq!(expiry_string(&None), "<none>");
    }

    #[test]
    fn token_blocks() {
        let t = AclToken {
            accessor_id: "a".into(),
            secret_id: "s".into(),
            name: "Bootstrap Token".into(),
            token_type: "management".into(),
            global: true,
            create_time: "2024-01-02T10:11:12Z".into(),
            create_index: 7,
            modify_index: 7,
            ..Default::default()
        };
        let out = format_token(&t);
        assert!(
            out.starts_with("Accessor ID  = a\nSecret ID    = s\n"),
            "{out}"
        );
        assert!(out.contains("Expiry Time  = <none>"), "{out}");
        assert!(
            out.ends_with("Policies     = n/a\nRoles        = n/a"),
            "{out}"
        );
        let c = AclToken {
            token_type: "client".into(),
            policies: Some(vec!["a".into(), "b".into()]),
            ..t
        };
        let out = format_token(&c);
        assert!(out.contains("Policies     = [a b]"), "{out}");
        assert!(out.ends_with("\n\nRoles\n<none>"), "{out}");
    }
}
