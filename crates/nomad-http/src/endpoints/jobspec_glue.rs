//! The one call into `nomad-jobspec` (kept apart so its signature lives in one place).

use nomad_structs::Job;

/// Parses HCL2 `src` with `variables` (HCL variable-file content), as `/v1/jobs/parse` does.
pub(crate) fn parse_hcl(src: &str, variables: &str) -> Result<Job, String> {
    let mut opts = nomad_jobspec::ParseOptions {
        filename: "input.hcl".into(),
        ..Default::default()
    };
    if !variables.trim().is_empty() {
        opts.var_files
            .push(("variables.hcl".into(), variables.to_string()));
    }
    nomad_jobspec::parse_job(src, &opts).map_err(|e| e.to_string())
}
