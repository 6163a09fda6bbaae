//! Variables (Nomad's `nomad/structs/variables.go`): small key/value documents at a path in a
//! namespace, for tasks' templates and for operators.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::null_default as nd;

/// The most a variable's items may hold together (keys and values), in bytes.
pub const MAX_VARIABLE_SIZE: usize = 64 * 1024;

/// What the listing shows of a variable: everything but its items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VariableMetadata {
    #[serde(deserialize_with = "nd")]
    pub namespace: String,
    #[serde(deserialize_with = "nd")]
    pub path: String,
    #[serde(deserialize_with = "nd")]
    pub create_index: u64,
    /// Unix nanoseconds.
    #[serde(deserialize_with = "nd")]
    pub create_time: i64,
    #[serde(deserialize_with = "nd")]
    pub modify_index: u64,
    /// Unix nanoseconds.
    #[serde(deserialize_with = "nd")]
    pub modify_time: i64,
}

/// A variable with its items (`VariableDecrypted`; nomad-rs keeps no separate encrypted form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Variable {
    #[serde(flatten)]
    pub meta: VariableMetadata,
    #[serde(deserialize_with = "nd")]
    pub items: BTreeMap<String, String>,
}

impl Variable {
    /// Nomad's checks for a variable about to be written, with its messages.
    pub fn validate(&self) -> Result<(), String> {
        if self.meta.namespace == "*" {
            return Err("can not target wildcard (\"*\")namespace".into());
        }
        if self.items.is_empty() {
            return Err("empty variables are invalid".into());
        }
        let size: usize = self.items.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_VARIABLE_SIZE {
            return Err("variables are limited to 64KiB in total size".into());
        }
        validate_variable_path(&self.meta.path)
    }
}

/// A variable path: `[a-zA-Z0-9-_~/]{1,128}`; under `nomad/` only `nomad/jobs...` and
/// `nomad/job-templates/<name>`, which Nomad reserves for workloads and job templates.
pub fn validate_variable_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("variable requires path".into());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '~' | '/');
    if path.len() > 128 || !path.chars().all(allowed) {
        return Err(format!("invalid path {path:?}"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts[0] != "nomad" {
        return Ok(());
    }
    match parts.get(1).copied() {
        None => Err("\"nomad\" is a reserved top-level directory path, but you may write variables to \"nomad/jobs\", \"nomad/job-templates\", or below".into()),
        Some("jobs") => Ok(()),
        Some("job-templates") if parts.len() == 3 => Ok(()),
        Some("job-templates") => Err("\"nomad/job-templates\" is a reserved directory path, but you may write variables at the level below it, for example, \"nomad/job-templates/template-name\"".into()),
        Some(_) => Err("only paths at \"nomad/jobs\" or \"nomad/job-templates\" and below are valid paths under the top-level \"nomad\" directory".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(path: &str, items: &[(&str, &str)]) -> Variable {
        Variable {
            meta: VariableMetadata {
                namespace: "default".into(),
                path: path.into(),
                ..Default::default()
            },
            items: items
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn nomad_checks_and_messages() {
        assert_eq!(var("secret/db", &[("user", "app")]).validate(), Ok(()));
        assert_eq!(var("nomad/jobs/web/g/t", &[("a", "b")]).validate(), Ok(()));
        assert_eq!(
            var("nomad/job-templates/t1", &[("a", "b")]).validate(),
            Ok(())
        );
        assert_eq!(
            var("secret/db", &[]).validate().unwrap_err(),
            "empty variables are invalid"
        );
        assert_eq!(
            var("a b", &[("a", "b")]).validate().unwrap_err(),
            "invalid path \"a b\""
        );
        assert_eq!(
            var("", &[("a", "b")]).validate().unwrap_err(),
            "variable requires path"
        );
        assert!(var("nomad", &[("a", "b")])
            .validate()
            .unwrap_err()
            .contains("reserved top-level"));
        assert!(var("nomad/job-templates", &[("a", "b")])
            .validate()
            .unwrap_err()
            .contains("reserved directory path"));
        assert!(var("nomad/other", &[("a", "b")])
            .validate()
            .unwrap_err()
            .starts_with("only paths at"));
        let big = "x".repeat(MAX_VARIABLE_SIZE);
        assert_eq!(
            var("big", &[("k", &big)]).validate().unwrap_err(),
            "variables are limited to 64KiB in total size"
        );
        let mut wild = var("a", &[("a", "b")]);
        wild.meta.namespace = "*".into();
        assert!(wild.validate().unwrap_err().contains("wildcard"));
    }

    #[test]
    fn json_is_flat_as_nomads() {
        let v: Variable = serde_json::from_str(
            r#"{"Namespace":"default","Path":"a","ModifyIndex":7,"Items":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!((v.meta.modify_index, v.items["k"].as_str()), (7, "v"));
        let back = serde_json::to_value(&v).unwrap();
        assert_eq!(back["Path"], "a");
        assert_eq!(back["Items"]["k"], "v");
    }
}
