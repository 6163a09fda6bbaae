//! nomad-server
