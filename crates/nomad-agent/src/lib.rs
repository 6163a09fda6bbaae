//! The Nomad agent: configuration, and the wiring of server, client and HTTP API in one process.
//!
//! Invariants: this is the only crate that knows every other one; it holds no scheduling,
//! state or driver logic of its own — it builds components from configuration and connects them.
#![forbid(unsafe_code)]

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod conn;

pub use agent::{start, RunningAgent};
pub use config::AgentConfig;
