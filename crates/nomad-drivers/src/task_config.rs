//! Decoding and validating the raw_exec task `config` block.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::DriverError;

/// The decoded raw_exec task config (facts 3.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RawExecTaskConfig {
    pub command: String,
    pub args: Vec<String>,
    /// Accepted; not applied yet.
    pub cgroup_v2_override: Option<String>,
    /// Accepted; not applied yet.
    pub cgroup_v1_override: Option<BTreeMap<String, String>>,
    pub oom_score_adj: Option<i32>,
    pub work_dir: Option<String>,
    pub denied_envvars: Vec<String>,
}

const KEYS: &[&str] = &[
    "command",
    "args",
    "cgroup_v2_override",
    "cgroup_v1_override",
    "oom_score_adj",
    "work_dir",
    "denied_envvars",
];

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> DriverError {
    DriverError::InvalidConfig {
        field: field.to_string(),
        message: message.into(),
    }
}

pub(crate) fn string(field: &str, v: &Value) -> Result<String, DriverError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(invalid(
            field,
            format!("must be a string, got {}", type_name(other)),
        )),
    }
}

pub(crate) fn string_list(field: &str, v: &Value) -> Result<Vec<String>, DriverError> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(invalid(
                    field,
                    format!("element {i} must be a string, got {}", type_name(other)),
                )),
            })
            .collect(),
        other => Err(invalid(
            field,
            format!("must be a list of strings, got {}", type_name(other)),
        )),
    }
}

fn string_map_into(
    field: &str,
    v: &Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), DriverError> {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone(), string(&format!("{field}.{k}"), v)?);
            }
            Ok(())
        }
        Value::Array(items) => {
            // HCL blocks/list(map) decode as a list of maps.
            for item in items {
                string_map_into(field, item, out)?;
            }
            Ok(())
        }
        other => Err(invalid(
            field,
            format!("must be a map of strings, got {}", type_name(other)),
        )),
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn int(field: &str, v: &Value) -> Result<i64, DriverError> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15) {
                Ok(f as i64)
            } else {
                Err(invalid(field, "must be a whole number"))
            }
        }
        // Interpolated values may arrive as strings.
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| invalid(field, format!("must be a number, got {s:?}"))),
        other => Err(invalid(
            field,
            format!("must be a number, got {}", type_name(other)),
        )),
    }
}

/// Decodes and validates the block. `null` values count as absent.
pub(crate) fn parse(config: &Value) -> Result<RawExecTaskConfig, DriverError> {
    let obj = match config {
        Value::Object(m) => m,
        Value::Null => return Err(invalid("command", "missing required argument")),
        other => {
            return Err(invalid(
                "",
                format!("config must be a map, got {}", type_name(other)),
            ))
        }
    };
    for k in obj.keys() {
        if !KEYS.contains(&k.as_str()) {
            return Err(invalid(
                k,
                format!("unsupported argument: an argument named {k:?} is not expected here"),
            ));
        }
    }
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let command = match get("command") {
        Some(v) => string("command", v)?,
        None => return Err(invalid("command", "missing required argument")),
    };
    if command.trim().is_empty() {
        return Err(invalid("command", "must not be empty"));
    }
    let mut cfg = RawExecTaskConfig {
        command,
        ..Default::default()
    };
    if let Some(v) = get("args") {
        cfg.args = string_list("args", v)?;
    }
    if let Some(v) = get("cgroup_v2_override") {
        cfg.cgroup_v2_override = Some(string("cgroup_v2_override", v)?);
    }
    if let Some(v) = get("cgroup_v1_override") {
        let mut m = BTreeMap::new();
        string_map_into("cgroup_v1_override", v, &mut m)?;
        cfg.cgroup_v1_override = Some(m);
    }
    if cfg
        .cgroup_v1_override
        .as_ref()
        .is_some_and(|m| !m.is_empty())
        && cfg
            .cgroup_v2_override
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(invalid(
            "cgroup_v1_override",
            "only one of cgroups_v1_override and cgroups_v2_override may be set",
        ));
    }
    if let Some(v) = get("oom_score_adj") {
        let n = int("oom_score_adj", v)?;
        if n < 0 {
            return Err(invalid(
                "oom_score_adj",
                "oom_score_adj must not be negative",
            ));
        }
        if n > 1000 {
            return Err(invalid(
                "oom_score_adj",
                "oom_score_adj must be at most 1000",
            ));
        }
        cfg.oom_score_adj = Some(n as i32);
    }
    if let Some(v) = get("work_dir") {
        let w = string("work_dir", v)?;
        if !w.is_empty() {
            if !w.starts_with('/') {
                return Err(invalid("work_dir", "work_dir must be an absolute path"));
            }
            cfg.work_dir = Some(w);
        }
    }
    if let Some(v) = get("denied_envvars") {
        cfg.denied_envvars = string_list("denied_envvars", v)?;
    }
    Ok(cfg)
}

/// `*`-wildcard glob match (go-glob semantics: `*` matches any run of characters).
pub(crate) fn glob_match(pattern: &str, s: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == s;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(e: DriverError) -> (String, String) {
        match e {
            DriverError::InvalidConfig { field, message } => (field, message),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn minimal_and_full() {
        let c = parse(&json!({"command": "/bin/sh"})).expect("ok");
        assert_eq!(c.command, "/bin/sh");
        assert!(c.args.is_empty());
        let c = parse(&json!({
            "command": "x", "args": ["-c", "y"], "oom_score_adj": 500,
            "work_dir": "/tmp", "denied_envvars": ["AWS_*"],
            "cgroup_v2_override": "custom.slice/x.scope", "cgroup_v1_override": null
        }))
        .expect("ok");
        assert_eq!(c.args, vec!["-c", "y"]);
        assert_eq!(c.oom_score_adj, Some(500));
        assert_eq!(c.work_dir.as_deref(), Some("/tmp"));
        assert_eq!(
            c.cgroup_v2_override.as_deref(),
            Some("custom.slice/x.scope")
        );
    }

    #[test]
    fn v1_override_as_list_of_maps() {
        let c = parse(
            &json!({"command": "x", "cgroup_v1_override": [{"pids": "a"}, {"memory": "/b"}]}),
        )
        .expect("ok");
        let m = c.cgroup_v1_override.expect("set");
        assert_eq!(m["pids"], "a");
        assert_eq!(m["memory"], "/b");
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(parse(&json!({})).unwrap_err()).0, "command");
        assert_eq!(
            field_of(parse(&json!({"command": 3})).unwrap_err()).0,
            "command"
        );
        assert_eq!(
            field_of(parse(&json!({"command": ""})).unwrap_err()).0,
            "command"
        );
        assert_eq!(
            field_of(parse(&json!({"command": "x", "args": "y"})).unwrap_err()).0,
            "args"
        );
        assert_eq!(
            field_of(parse(&json!({"command": "x", "args": [1]})).unwrap_err()).0,
            "args"
        );
        let (f, m) = field_of(parse(&json!({"command": "x", "bogus": 1})).unwrap_err());
        assert_eq!(f, "bogus");
        assert!(m.contains("\"bogus\""), "{m}");
        let (_, m) = field_of(parse(&json!({"command": "x", "oom_score_adj": -1})).unwrap_err());
        assert_eq!(m, "oom_score_adj must not be negative");
        let (_, m) = field_of(parse(&json!({"command": "x", "work_dir": "rel"})).unwrap_err());
        assert_eq!(m, "work_dir must be an absolute path");
        let (_, m) = field_of(
            parse(&json!({"command": "x", "cgroup_v1_override": {"pids": "a"}, "cgroup_v2_override": "b"}))
                .unwrap_err(),
        );
        assert_eq!(
            m,
            "only one of cgroups_v1_override and cgroups_v2_override may be set"
        );
        assert!(parse(&json!("str")).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("AWS_*", "AWS_SECRET"));
        assert!(!glob_match("AWS_*", "XAWS_SECRET"));
        assert!(glob_match("*TOKEN*", "MY_TOKEN_X"));
        assert!(glob_match("*", ""));
        assert!(glob_match("A*B*C", "AxxBxxC"));
        assert!(!glob_match("A*B*C", "AxxC"));
        assert!(!glob_match("AB*BA", "ABA"));
        assert!(glob_match("EXACT", "EXACT"));
        assert!(!glob_match("EXACT", "EXACTLY"));
    }
}
