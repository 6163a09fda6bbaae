//! Namespaces (`nomad/structs` `Namespace`), with Nomad's JSON shape, validation and hashing.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Name of the namespace that always exists and cannot be deleted.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Description Nomad gives the `default` namespace.
pub const DEFAULT_NAMESPACE_DESCRIPTION: &str = "Default shared namespace";
/// Longest namespace description accepted.
pub const MAX_NAMESPACE_DESCRIPTION_LENGTH: usize = 256;
/// The pattern namespace names must match, as Nomad prints it in errors.
pub const NAMESPACE_NAME_PATTERN: &str = "^[a-zA-Z0-9-]{1,128}$";

/// A namespace as Nomad's API shows it (`GET /v1/namespace/:name`).
///
/// `Hash` is base64 (Go `[]byte`), `null` when empty.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Namespace {
    /// Unique name.
    pub name: String,
    /// Free text, at most 256 bytes.
    pub description: String,
    /// Attached quota (Enterprise; kept as given).
    pub quota: String,
    /// Task drivers and network modes allowed or denied in the namespace.
    pub capabilities: Option<NamespaceCapabilities>,
    /// Node pools jobs of the namespace may use.
    pub node_pool_configuration: Option<NamespaceNodePoolConfiguration>,
    /// Vault clusters jobs of the namespace may use.
    pub vault_configuration: Option<NamespaceVaultConfiguration>,
    /// Consul clusters jobs of the namespace may use.
    pub consul_configuration: Option<NamespaceConsulConfiguration>,
    /// User metadata.
    #[serde(deserialize_with = "null_map")]
    pub meta: BTreeMap<String, String>,
    /// Hash of the user-set fields ([`Namespace::compute_hash`]).
    #[serde(with = "hash_b64")]
    pub hash: String,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// `Namespace.Capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NamespaceCapabilities {
    /// Drivers allowed (empty: all).
    pub enabled_task_drivers: Option<Vec<String>>,
    /// Drivers refused.
    pub disabled_task_drivers: Option<Vec<String>>,
    /// Network modes allowed (empty: all).
    pub enabled_network_modes: Option<Vec<String>>,
    /// Network modes refused.
    pub disabled_network_modes: Option<Vec<String>>,
}

/// `Namespace.NodePoolConfiguration` (the Vault and Consul blocks have the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NamespaceNodePoolConfiguration {
    /// Used when a job names none.
    pub default: String,
    /// Globs allowed (exclusive with `denied`).
    pub allowed: Option<Vec<String>>,
    /// Globs refused.
    pub denied: Option<Vec<String>>,
}

/// `Namespace.VaultConfiguration`: `{"Default","Allowed","Denied"}`.
pub type NamespaceVaultConfiguration = NamespaceNodePoolConfiguration;
/// `Namespace.ConsulConfiguration`: `{"Default","Allowed","Denied"}`.
pub type NamespaceConsulConfiguration = NamespaceNodePoolConfiguration;

impl Namespace {
    /// The `default` namespace as a fresh store holds it (created at index 1, as Nomad does).
    pub fn default_namespace() -> Namespace {
        let mut ns = Namespace {
            name: DEFAULT_NAMESPACE.into(),
            description: DEFAULT_NAMESPACE_DESCRIPTION.into(),
            create_index: 1,
            modify_index: 1,
            ..Namespace::default()
        };
        ns.set_hash();
        ns
    }

    /// Nomad's `Namespace.Validate`: every failure, in Nomad's order and wording.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if !valid_name(&self.name) {
            errs.push(format!(
                "invalid name {:?}. Must match regex {NAMESPACE_NAME_PATTERN}",
                self.name
            ));
        }
        if self.description.len() > MAX_NAMESPACE_DESCRIPTION_LENGTH {
            errs.push(format!(
                "description longer than {MAX_NAMESPACE_DESCRIPTION_LENGTH}"
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// Hash of every user-set field (not the indexes); SHA-256, base64. Nomad uses BLAKE2b,
    /// but the value is only ever compared with itself.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update([0]);
        h.update(self.description.as_bytes());
        h.update([0]);
        h.update(self.quota.as_bytes());
        h.update([0]);
        // Plain data with sorted maps: the JSON text is a stable encoding.
        let rest = (
            &self.capabilities,
            &self.node_pool_configuration,
            &self.vault_configuration,
            &self.consul_configuration,
            &self.meta,
        );
        h.update(serde_json::to_vec(&rest).unwrap_or_default());
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    }

    /// Sets `hash` to [`Namespace::compute_hash`].
    pub fn set_hash(&mut self) {
        self.hash = self.compute_hash();
    }
}

fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn null_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// Base64 text that is `null` when empty (Go nil `[]byte`).
mod hash_b64 {
    use super::*;

    pub(super) fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            s.serialize_str(v)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_validation() {
        let ns = Namespace::default_namespace();
        let v = serde_json::to_value(&ns).unwrap();
        assert_eq!(v["Name"], "default");
        assert_eq!(v["Description"], DEFAULT_NAMESPACE_DESCRIPTION);
        assert!(v["Capabilities"].is_null());
        assert!(v["NodePoolConfiguration"].is_null());
        assert_eq!(v["Meta"], serde_json::json!({}));
        assert!(v["Hash"].is_string());
        assert_eq!(v["CreateIndex"], 1);
        let back: Namespace = serde_json::from_value(v).unwrap();
        assert_eq!(back, ns);
        let parsed: Namespace =
            serde_json::from_str(r#"{"Name":"prod","Meta":null,"Hash":null}"#).unwrap();
        assert_eq!(parsed.name, "prod");
        assert!(parsed.validate().is_ok());

        let bad = Namespace {
            name: "no spaces".into(),
            description: "x".repeat(257),
            ..Default::default()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            vec![
                "invalid name \"no spaces\". Must match regex ^[a-zA-Z0-9-]{1,128}$".to_string(),
                "description longer than 256".to_string(),
            ]
        );
        let mut changed = ns.clone();
        changed.description = "other".into();
        assert_ne!(changed.compute_hash(), ns.hash);
        changed.modify_index = 9;
        changed.description = ns.description.clone();
        assert_eq!(changed.compute_hash(), ns.hash);
    }
}
