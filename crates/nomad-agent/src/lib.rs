//! nomad-agent
