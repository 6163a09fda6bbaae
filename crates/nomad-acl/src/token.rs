//! ACL tokens and stored ACL policies (`nomad/structs/acl.go`), with Nomad's
//! JSON shape, validation messages and hashing. IDs and times are parameters.

use crate::error::PolicyError;
use crate::policy::{parse_policy, parse_policy_lenient, Policy};
use crate::timefmt;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `Type` of a client token (policies and/or roles attached).
pub const CLIENT_TOKEN: &str = "client";
/// `Type` of a management token (allowed everything).
pub const MANAGEMENT_TOKEN: &str = "management";
/// Longest token name accepted.
pub const MAX_TOKEN_NAME_LENGTH: usize = 256;
/// Longest policy description accepted.
pub const MAX_POLICY_DESCRIPTION_LENGTH: usize = 256;
/// Nomad's default `acl.token_min_expiration_ttl` (1m), in nanoseconds.
pub const DEFAULT_MIN_EXPIRATION_TTL: i64 = 60 * 1_000_000_000;
/// Nomad's default `acl.token_max_expiration_ttl` (24h), in nanoseconds.
pub const DEFAULT_MAX_EXPIRATION_TTL: i64 = 24 * 3600 * 1_000_000_000;

/// Name of the policy applied to requests without a token.
pub fn anonymous_policy_name() -> &'static str {
    "anonymous"
}

/// The token used for requests that carry none (ACLs enabled): accessor
/// `anonymous`, policy `anonymous`.
pub fn anonymous_token() -> AclToken {
    AclToken {
        accessor_id: "anonymous".into(),
        name: "Anonymous Token".into(),
        token_type: CLIENT_TOKEN.into(),
        policies: Some(vec![anonymous_policy_name().into()]),
        ..AclToken::default()
    }
}

/// An ACL token as Nomad's API shows it.
///
/// `Hash` is base64 (Go `[]byte`), emitted as `null` when empty.
/// `ExpirationTTL` is nanoseconds here; on the wire it is a Go duration
/// string (`"1h0m0s"`, `""` for none), as Nomad's `MarshalJSON` writes it,
/// and a string or a number of nanoseconds is accepted on input.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclToken {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub token_type: String,
    pub policies: Option<Vec<String>>,
    /// Role links, `{"ID": "...", "Name": "..."}`.
    pub roles: Option<Vec<Value>>,
    pub global: bool,
    #[serde(with = "hash_b64")]
    pub hash: String,
    #[serde(deserialize_with = "null_string")]
    pub create_time: String,
    pub expiration_time: Option<String>,
    #[serde(rename = "ExpirationTTL", with = "go_duration")]
    pub expiration_ttl: i64,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Element of `GET /v1/acl/tokens`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclTokenListStub {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub token_type: String,
    pub policies: Option<Vec<String>>,
    pub roles: Option<Vec<Value>>,
    pub global: bool,
    #[serde(with = "hash_b64")]
    pub hash: String,
    #[serde(deserialize_with = "null_string")]
    pub create_time: String,
    pub expiration_time: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

fn non_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

impl AclToken {
    /// Validates with Nomad's default TTL bounds (1m..24h). `existing` is
    /// the stored token when this is an update.
    pub fn validate(&self, existing: Option<&AclToken>) -> Result<(), PolicyError> {
        self.validate_with_ttl(
            DEFAULT_MIN_EXPIRATION_TTL,
            DEFAULT_MAX_EXPIRATION_TTL,
            existing,
        )
    }

    /// Nomad's `ACLToken.Validate`: every failure is collected, in Nomad's
    /// order, into [`PolicyError::Validation`].
    pub fn validate_with_ttl(
        &self,
        min_ttl_nanos: i64,
        max_ttl_nanos: i64,
        existing: Option<&AclToken>,
    ) -> Result<(), PolicyError> {
        let mut errs: Vec<String> = Vec::new();
        if self.name.len() > MAX_TOKEN_NAME_LENGTH {
            errs.push("token name too long".into());
        }
        let has_links = non_empty(&self.policies) || non_empty(&self.roles);
        match self.token_type.as_str() {
            CLIENT_TOKEN if !has_links => {
                errs.push("client token missing policies or roles".into())
            }
            MANAGEMENT_TOKEN if has_links => {
                errs.push("management token cannot be associated with policies or roles".into())
            }
            CLIENT_TOKEN | MANAGEMENT_TOKEN => {}
            _ => errs.push("token type must be client or management".into()),
        }
        match existing {
            None => {
                if self.expiration_ttl < 0 {
                    errs.push(format!(
                        "token expiration TTL '{}' should not be negative",
                        timefmt::format_go_duration(self.expiration_ttl)
                    ));
                }
                if let Some(exp) = self.expiration_nanos() {
                    let create = timefmt::parse_rfc3339(&self.create_time)
                        .unwrap_or_else(timefmt::go_zero_time_nanos);
                    if create > exp {
                        errs.push("expiration time cannot be before create time".into());
                    }
                    let expires_in = exp - create;
                    let shown = timefmt::format_go_duration(
                        expires_in.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                    );
                    if expires_in > max_ttl_nanos as i128 {
                        errs.push(format!(
                            "expiration time cannot be more than {} in the future (was {shown})",
                            timefmt::format_go_duration(max_ttl_nanos)
                        ));
                    } else if expires_in < min_ttl_nanos as i128 {
                        errs.push(format!(
                            "expiration time cannot be less than {} in the future (was {shown})",
                            timefmt::format_go_duration(min_ttl_nanos)
                        ));
                    }
                }
            }
            Some(old) => {
                if old.global != self.global {
                    errs.push("cannot toggle global mode".into());
                }
                if old.expiration_ttl != self.expiration_ttl {
                    errs.push("cannot update expiration TTL".into());
                }
                if let Some(new_exp) = &self.expiration_time {
                    let new_t = timefmt::parse_rfc3339(new_exp);
                    let old_t = old
                        .expiration_time
                        .as_deref()
                        .and_then(timefmt::parse_rfc3339);
                    if new_t.is_none() || new_t != old_t {
                        errs.push("cannot update expiration time".into());
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Validation(errs))
        }
    }

    /// The expiration instant, if the token has one (Go's zero time and
    /// absence both mean "never"). An unparseable time counts as already
    /// past, so a corrupt token fails closed.
    fn expiration_nanos(&self) -> Option<i128> {
        let exp = self.expiration_time.as_deref()?;
        match timefmt::parse_rfc3339(exp) {
            Some(t) if t == timefmt::go_zero_time_nanos() => None,
            Some(t) => Some(t),
            None => Some(i128::MIN),
        }
    }

    /// Whether the token has an expiration time set.
    pub fn has_expiration_time(&self) -> bool {
        self.expiration_nanos().is_some()
    }

    /// Whether the token's expiration time lies strictly before `now`.
    /// Tokens without an expiration never expire.
    pub fn is_expired(&self, now_unix_nanos: i64) -> bool {
        self.expiration_nanos()
            .is_some_and(|exp| exp < now_unix_nanos as i128)
    }

    /// Nomad's `Canonicalize` for a token being created: when `AccessorID`
    /// is empty, sets both IDs and `CreateTime`; when `CreateTime` is
    /// missing (uploaded token), sets it. Either way `ExpirationTime` is
    /// derived from `ExpirationTTL` if only the latter was given.
    pub fn canonicalize(&mut self, accessor_id: String, secret_id: String, now_unix_nanos: i64) {
        let set_times = if self.accessor_id.is_empty() {
            self.accessor_id = accessor_id;
            self.secret_id = secret_id;
            true
        } else {
            self.create_time.is_empty()
                || timefmt::parse_rfc3339(&self.create_time) == Some(timefmt::go_zero_time_nanos())
        };
        if set_times {
            self.create_time = timefmt::format_rfc3339(now_unix_nanos);
            if self.expiration_time.is_none() && self.expiration_ttl != 0 {
                self.expiration_time = Some(timefmt::format_rfc3339(
                    now_unix_nanos.saturating_add(self.expiration_ttl),
                ));
            }
        }
    }

    /// The hash of the fields a user can update: name, type, policies,
    /// global/local, role IDs (not times). SHA-256, base64; Nomad uses
    /// BLAKE2b-256, but the value is only compared with itself.
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update(self.token_type.as_bytes());
        for p in self.policies.iter().flatten() {
            h.update(p.as_bytes());
        }
        h.update(if self.global { "global" } else { "local" });
        for role in self.roles.iter().flatten() {
            if let Some(id) = role.get("ID").and_then(Value::as_str) {
                h.update(id.as_bytes());
            }
        }
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    }

    /// Sets `hash` to [`AclToken::compute_hash`].
    pub fn set_hash(&mut self) {
        self.hash = self.compute_hash();
    }

    /// The list form (no secret, no TTL).
    pub fn stub(&self) -> AclTokenListStub {
        AclTokenListStub {
            accessor_id: self.accessor_id.clone(),
            name: self.name.clone(),
            token_type: self.token_type.clone(),
            policies: self.policies.clone(),
            roles: self.roles.clone(),
            global: self.global,
            hash: self.hash.clone(),
            create_time: self.create_time.clone(),
            expiration_time: self.expiration_time.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }

    /// A copy without the secret (Nomad's `Sanitize`).
    pub fn sanitized(&self) -> AclToken {
        AclToken {
            secret_id: String::new(),
            ..self.clone()
        }
    }

    pub fn is_management(&self) -> bool {
        self.token_type == MANAGEMENT_TOKEN
    }

    /// Policy names linked directly (not through roles).
    pub fn policy_names(&self) -> &[String] {
        self.policies.as_deref().unwrap_or(&[])
    }

    /// IDs of the linked roles.
    pub fn role_ids(&self) -> Vec<String> {
        self.roles
            .iter()
            .flatten()
            .filter_map(|r| r.get("ID").and_then(Value::as_str).map(str::to_string))
            .collect()
    }
}

/// A stored ACL policy (`GET /v1/acl/policy/:name`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclPolicy {
    pub name: String,
    pub description: String,
    /// HCL or JSON rules text, as submitted.
    pub rules: String,
    /// The parsed rules, filled on read ([`AclPolicy::with_rules_json`]).
    #[serde(rename = "RulesJSON")]
    pub rules_json: Option<Policy>,
    /// `{"Namespace","JobID","Group","Task"}` or null.
    #[serde(rename = "JobACL")]
    pub job_acl: Option<Value>,
    #[serde(with = "hash_b64")]
    pub hash: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Element of `GET /v1/acl/policies`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclPolicyListStub {
    pub name: String,
    pub description: String,
    #[serde(rename = "JobACL")]
    pub job_acl: Option<Value>,
    #[serde(with = "hash_b64")]
    pub hash: String,
    pub create_index: u64,
    pub modify_index: u64,
}

fn job_acl_field<'a>(job_acl: &'a Option<Value>, key: &str) -> &'a str {
    job_acl
        .as_ref()
        .and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl AclPolicy {
    /// Nomad's `ACLPolicy.Validate`: name `^[a-zA-Z0-9-]{1,128}$`, rules
    /// parse strictly, description ≤ 256, consistent `JobACL`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut errs = Vec::new();
        let name_ok = (1..=128).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !name_ok {
            errs.push(format!("invalid name '{}'", self.name));
        }
        if let Err(e) = parse_policy(&self.rules) {
            errs.push(format!("failed to parse rules: {e}"));
        }
        if self.description.len() > MAX_POLICY_DESCRIPTION_LENGTH {
            errs.push(format!(
                "description longer than {MAX_POLICY_DESCRIPTION_LENGTH}"
            ));
        }
        if self.job_acl.is_some() {
            let f = |k| job_acl_field(&self.job_acl, k);
            if !f("JobID").is_empty() && f("Namespace").is_empty() {
                errs.push("namespace must be set to set job ID".into());
            }
            if !f("Group").is_empty() && f("JobID").is_empty() {
                errs.push("job ID must be set to set group".into());
            }
            if !f("Task").is_empty() && f("Group").is_empty() {
                errs.push("group must be set to set task".into());
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Validation(errs))
        }
    }

    /// The parsed rules, leniently (as Nomad evaluates stored policies).
    pub fn parsed(&self) -> Result<Policy, PolicyError> {
        parse_policy_lenient(&self.rules)
    }

    /// A copy with `RulesJSON` filled from `Rules` (left `None` if the rules
    /// do not parse).
    pub fn with_rules_json(&self) -> AclPolicy {
        AclPolicy {
            rules_json: self.parsed().ok(),
            ..self.clone()
        }
    }

    /// Hash of name, description, rules and the JobACL fields; SHA-256,
    /// base64 (Nomad: BLAKE2b-256).
    pub fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update(self.description.as_bytes());
        h.update(self.rules.as_bytes());
        if self.job_acl.is_some() {
            for k in ["Namespace", "JobID", "Group", "Task"] {
                h.update(job_acl_field(&self.job_acl, k).as_bytes());
            }
        }
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    }

    pub fn set_hash(&mut self) {
        self.hash = self.compute_hash();
    }

    pub fn stub(&self) -> AclPolicyListStub {
        AclPolicyListStub {
            name: self.name.clone(),
            description: self.description.clone(),
            job_acl: self.job_acl.clone(),
            hash: self.hash.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

// ---------------------------------------------------------------------------
// serde helpers

fn null_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Base64 text that is `null` when empty (Go nil `[]byte`).
mod hash_b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            s.serialize_str(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }
}

/// Nanoseconds as a Go duration string (`""` for zero); accepts a string,
/// a number of nanoseconds, or null.
mod go_duration {
    use super::*;

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        if *v == 0 {
            s.serialize_str("")
        } else {
            s.serialize_str(&timefmt::format_go_duration(*v))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None => Ok(0),
            Some(Value::String(s)) if s.is_empty() => Ok(0),
            Some(Value::String(s)) => timefmt::parse_go_duration(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("time: invalid duration \"{s}\""))),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or_else(|| serde::de::Error::custom("invalid ExpirationTTL")),
            Some(_) => Err(serde::de::Error::custom(
                "ExpirationTTL must be a duration string or nanoseconds",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;
    const MIN: i64 = 60_000_000_000;
    const HOUR: i64 = 3_600_000_000_000;

    fn client() -> AclToken {
        AclToken {
            name: "t".into(),
            token_type: "client".into(),
            policies: Some(vec!["readonly".into()]),
            create_time: timefmt::format_rfc3339(NOW),
            ..Default::default()
        }
    }

    fn msgs(r: Result<(), PolicyError>) -> Vec<String> {
        r.err().map(|e| e.messages()).unwrap_or_default()
    }

    #[test]
    fn token_validation_table() {
        let role = serde_json::json!({"ID": "r1", "Name": "ops"});
        let cases: Vec<(AclToken, Vec<&str>)> = vec![
            (client(), vec![]),
            (
                AclToken {
                    policies: None,
                    ..client()
                },
                vec!["client token missing policies or roles"],
            ),
            (
                AclToken {
                    policies: Some(vec![]),
                    ..client()
                },
                vec!["client token missing policies or roles"],
            ),
            (
                AclToken {
                    policies: None,
                    roles: Some(vec![role.clone()]),
                    ..client()
                },
                vec![],
            ),
            (
                AclToken {
                    token_type: "management".into(),
                    policies: None,
                    ..client()
                },
                vec![],
            ),
            (
                AclToken {
                    token_type: "management".into(),
                    ..client()
                },
                vec!["management token cannot be associated with policies or roles"],
            ),
            (
                AclToken {
                    token_type: "management".into(),
                    policies: None,
                    roles: Some(vec![role]),
                    ..client()
                },
                vec!["management token cannot be associated with policies or roles"],
            ),
            (
                AclToken {
                    token_type: "admin".into(),
                    ..client()
                },
                vec!["token type must be client or management"],
            ),
            (
                AclToken {
                    name: "x".repeat(257),
                    ..client()
                },
                vec!["token name too long"],
            ),
            (
                AclToken {
                    name: "x".repeat(256),
                    ..client()
                },
                vec![],
            ),
            (
                AclToken {
                    name: "x".repeat(300),
                    policies: None,
                    ..client()
                },
                vec![
                    "token name too long",
                    "client token missing policies or roles",
                ],
            ),
            (
                AclToken {
                    expiration_ttl: -MIN,
                    ..client()
                },
                vec!["token expiration TTL '-1m0s' should not be negative"],
            ),
            (
                AclToken {
                    expiration_time: Some(timefmt::format_rfc3339(NOW + HOUR)),
                    ..client()
                },
                vec![],
            ),
            (
                AclToken {
                    expiration_time: Some(timefmt::format_rfc3339(NOW - HOUR)),
                    ..client()
                },
                vec![
                    "expiration time cannot be before create time",
                    "expiration time cannot be less than 1m0s in the future (was -1h0m0s)",
                ],
            ),
            (
                AclToken {
                    expiration_time: Some(timefmt::format_rfc3339(NOW + 25 * HOUR)),
                    ..client()
                },
                vec!["expiration time cannot be more than 24h0m0s in the future (was 25h0m0s)"],
            ),
            (
                AclToken {
                    expiration_time: Some(timefmt::format_rfc3339(NOW + 30_000_000_000)),
                    ..client()
                },
                vec!["expiration time cannot be less than 1m0s in the future (was 30s)"],
            ),
        ];
        for (token, want) in cases {
            assert_eq!(msgs(token.validate(None)), want, "{token:?}");
        }
    }

    #[test]
    fn token_update_validation() {
        let mut old = client();
        old.expiration_ttl = HOUR;
        old.expiration_time = Some(timefmt::format_rfc3339(NOW + HOUR));
        let same = old.clone();
        assert!(same.validate(Some(&old)).is_ok());
        let changed = AclToken {
            global: true,
            expiration_ttl: 2 * HOUR,
            expiration_time: Some(timefmt::format_rfc3339(NOW + 2 * HOUR)),
            ..old.clone()
        };
        assert_eq!(
            msgs(changed.validate(Some(&old))),
            vec![
                "cannot toggle global mode",
                "cannot update expiration TTL",
                "cannot update expiration time"
            ]
        );
        let err = changed.validate(Some(&old)).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("3 errors occurred:\n\t* cannot toggle global mode"));
        // Omitting the expiration time on update is fine.
        let omitted = AclToken {
            expiration_time: None,
            ..old.clone()
        };
        assert!(omitted.validate(Some(&old)).is_ok());
    }

    #[test]
    fn expiry() {
        let mut t = client();
        assert!(!t.is_expired(NOW));
        assert!(!t.has_expiration_time());
        t.expiration_time = Some("0001-01-01T00:00:00Z".into());
        assert!(!t.is_expired(i64::MAX));
        t.expiration_time = Some(timefmt::format_rfc3339(NOW + HOUR));
        assert!(t.has_expiration_time());
        assert!(!t.is_expired(NOW));
        assert!(!t.is_expired(NOW + HOUR));
        assert!(t.is_expired(NOW + HOUR + 1));
        t.expiration_time = Some("garbage".into());
        assert!(t.is_expired(NOW));
    }

    #[test]
    fn canonicalize_sets_ids_and_times() {
        let mut t = AclToken {
            name: "n".into(),
            token_type: "client".into(),
            policies: Some(vec!["p".into()]),
            expiration_ttl: HOUR,
            ..Default::default()
        };
        t.canonicalize("acc".into(), "sec".into(), NOW);
        assert_eq!(t.accessor_id, "acc");
        assert_eq!(t.secret_id, "sec");
        assert_eq!(t.create_time, timefmt::format_rfc3339(NOW));
        assert_eq!(t.expiration_time, Some(timefmt::format_rfc3339(NOW + HOUR)));
        // Existing tokens keep their IDs and times.
        let before = t.clone();
        t.canonicalize("other".into(), "other".into(), NOW + 5);
        assert_eq!(t, before);
    }

    #[test]
    fn hash_covers_mutable_fields() {
        let mut a = client();
        a.set_hash();
        assert_eq!(a.hash.len(), 44); // 32 bytes base64
        let mut b = a.clone();
        b.secret_id = "different".into();
        b.create_index = 99;
        b.expiration_time = Some("2030-01-01T00:00:00Z".into());
        b.set_hash();
        assert_eq!(a.hash, b.hash);
        b.global = true;
        b.set_hash();
        assert_ne!(a.hash, b.hash);
        let mut c = a.clone();
        c.policies = Some(vec!["other".into()]);
        assert_ne!(c.compute_hash(), a.hash);
        let mut d = a.clone();
        d.roles = Some(vec![serde_json::json!({"ID": "r1"})]);
        assert_ne!(d.compute_hash(), a.hash);
    }

    #[test]
    fn token_json_shape() {
        let mut t = client();
        t.accessor_id = "a".into();
        t.secret_id = "s".into();
        t.expiration_ttl = HOUR;
        t.set_hash();
        let v = serde_json::to_value(&t).expect("serialize");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for k in [
            "AccessorID",
            "SecretID",
            "Name",
            "Type",
            "Policies",
            "Roles",
            "Global",
            "Hash",
            "CreateTime",
            "ExpirationTime",
            "ExpirationTTL",
            "CreateIndex",
            "ModifyIndex",
        ] {
            assert!(keys.contains(&k), "{k}");
        }
        assert_eq!(v["ExpirationTTL"], "1h0m0s");
        assert_eq!(v["Roles"], Value::Null);
        let back: AclToken = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, t);

        // Create requests: partial bodies, TTL as string or nanoseconds.
        let req: AclToken = serde_json::from_str(
            r#"{"Name":"x","Type":"client","Policies":["p"],"ExpirationTTL":"10m","Hash":null,"CreateTime":null}"#,
        )
        .expect("partial");
        assert_eq!(req.expiration_ttl, 10 * MIN);
        let req: AclToken =
            serde_json::from_str(r#"{"ExpirationTTL":3600000000000}"#).expect("number");
        assert_eq!(req.expiration_ttl, HOUR);
        assert!(serde_json::from_str::<AclToken>(r#"{"ExpirationTTL":"soon"}"#).is_err());

        let stub = serde_json::to_value(t.stub()).expect("stub");
        assert!(stub.get("SecretID").is_none());
        assert!(stub.get("ExpirationTTL").is_none());
        assert_eq!(stub["AccessorID"], "a");
        let anon = anonymous_token();
        assert_eq!(anon.accessor_id, "anonymous");
        assert_eq!(anon.policy_names(), ["anonymous"]);
        assert_eq!(t.sanitized().secret_id, "");
    }

    #[test]
    fn policy_object() {
        let mut p = AclPolicy {
            name: "readonly".into(),
            description: "read only".into(),
            rules: r#"namespace "default" { policy = "read" }"#.into(),
            ..Default::default()
        };
        assert!(p.validate().is_ok());
        p.set_hash();
        let shown = p.with_rules_json();
        let v = serde_json::to_value(&shown).expect("serialize");
        assert_eq!(v["RulesJSON"]["Namespaces"][0]["Name"], "default");
        assert_eq!(v["RulesJSON"]["Namespaces"][0]["Policy"], "read");
        assert_eq!(v["RulesJSON"]["Node"], Value::Null);
        assert_eq!(v["JobACL"], Value::Null);
        let back: AclPolicy = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, shown);
        let stub = serde_json::to_value(p.stub()).expect("stub");
        assert!(stub.get("Rules").is_none());
        assert_eq!(stub["Hash"], p.hash.as_str());

        let bad = AclPolicy {
            name: "bad name".into(),
            rules: r#"namespace "default" { policy = "root" }"#.into(),
            description: "d".repeat(257),
            job_acl: Some(serde_json::json!({"JobID": "web", "Task": "t"})),
            ..Default::default()
        };
        let m = msgs(bad.validate());
        assert_eq!(m.len(), 5, "{m:?}");
        assert_eq!(m[0], "invalid name 'bad name'");
        assert!(
            m[1].starts_with("failed to parse rules: Invalid namespace policy"),
            "{}",
            m[1]
        );
        assert_eq!(m[2], "description longer than 256");
        assert_eq!(m[3], "namespace must be set to set job ID");
        assert_eq!(m[4], "group must be set to set task");

        let mut with_job = p.clone();
        with_job.job_acl = Some(serde_json::json!({"Namespace": "default", "JobID": "web"}));
        assert_ne!(with_job.compute_hash(), p.hash);
    }
}
