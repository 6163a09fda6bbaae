//! nomad-state
