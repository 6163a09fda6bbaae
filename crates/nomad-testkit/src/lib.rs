//! nomad-testkit
