//! nomad-structs
