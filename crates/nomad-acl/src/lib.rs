//! Nomad's ACL model, the pure part: policy rules (HCL or JSON) and their
//! capabilities, compiled ACL objects with Nomad's merge and glob rules,
//! ACL tokens and stored policies with their validation and hashing, and the
//! endpoint → capability table.
//!
//! No IO, no clock, no randomness: IDs and "now" are parameters.
//!
//! ```
//! use nomad_acl::{parse_policy, Acl, capability};
//! let p = parse_policy(r#"namespace "prod-*" { policy = "read" }"#).unwrap();
//! let acl = Acl::from_policies(&[p]);
//! assert!(acl.allow_namespace_operation("prod-web", capability::READ_JOB));
//! assert!(!acl.allow_namespace_operation("prod-web", capability::SUBMIT_JOB));
//! ```

pub mod capability;
pub mod endpoints;
pub mod glob;
pub mod timefmt;

mod acl;
mod error;
mod policy;
mod token;

pub use acl::{Acl, VariableClaim};
pub use capability::expand_namespace_policy;
pub use endpoints::{required_access, required_namespace_capabilities, Access};
pub use error::PolicyError;
pub use policy::{
    parse_policy, parse_policy_lenient, HostVolumeRule, Level, NamespaceRule, NodePoolRule, Policy,
};
pub use token::{
    anonymous_policy_name, anonymous_token, AclPolicy, AclPolicyListStub, AclToken,
    AclTokenListStub, CLIENT_TOKEN, DEFAULT_MAX_EXPIRATION_TTL, DEFAULT_MIN_EXPIRATION_TTL,
    MANAGEMENT_TOKEN, MAX_POLICY_DESCRIPTION_LENGTH, MAX_TOKEN_NAME_LENGTH,
};

#[cfg(test)]
mod policy_tests;
