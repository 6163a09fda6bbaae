//! Endpoint groups split out of `lib.rs`, one file per Nomad `*_endpoint.go`.

pub(crate) mod acl;
pub(crate) mod job;
pub(crate) mod namespace;
pub(crate) mod node;
pub(crate) mod variable;
