//! nomad-executor
