//! nomad-scheduler
