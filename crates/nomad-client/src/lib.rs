//! nomad-client
