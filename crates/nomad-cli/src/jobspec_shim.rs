//! Temporary stand-in for `nomad_jobspec::{parse_job, ParseOptions}` until that crate exports them.

use std::path::PathBuf;

use nomad_structs::Job;

/// Mirrors `nomad_jobspec::ParseOptions`.
#[allow(dead_code)]
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    pub filename: String,
    pub var_args: Vec<String>,
    pub var_files: Vec<(String, String)>,
    pub env_vars: Vec<(String, String)>,
    pub strict: bool,
    pub base_dir: Option<PathBuf>,
}

/// Always fails: HCL parsing arrives with nomad-jobspec.
pub fn parse_job(_src: &str, opts: &ParseOptions) -> Result<Job, String> {
    Err(format!("{}: HCL parsing is not available in this build yet", opts.filename))
}
