//! nomad-jobspec
