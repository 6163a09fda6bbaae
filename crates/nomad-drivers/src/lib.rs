//! nomad-drivers
