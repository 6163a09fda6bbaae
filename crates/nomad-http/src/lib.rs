//! nomad-http
