//! `nomad job validate`: parse a jobspec and have the agent (or, when none answers, this
//! binary) check it.
//!
//! Like Nomad, a connection failure is not an error: the job is then validated locally with
//! nomad-structs' rules, a note says driver configuration was not checked, and the exit code
//! reflects only the local result.

use nomad_structs::{canonicalize_job, multierror, validate_job, JobValidateResponse};

use crate::commands::{client_flags, parse_one_arg, with_general};
use crate::jobfile::JobGetter;
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad job validate [options] <path>
Alias: nomad validate

  Checks the job file at <path> (or stdin for \"-\") for syntax and semantic
  errors. The agent validates when reachable; otherwise the check runs
  locally and driver configuration is not validated.",
        "Validate Options:

  -json
    The job file is JSON rather than HCL.

  -hcl2-strict
    Fail on unknown variables (default true).

  -var 'key=value'
    Set an input variable; may be repeated.

  -var-file=path
    Read input variables from a file; may be repeated.",
    )
}

#[derive(serde::Serialize)]
struct ValidateRequest<'a> {
    #[serde(rename = "Job")]
    job: &'a nomad_structs::Job,
}

/// Runs `nomad job validate`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.string("consul-namespace", "")
        .string("vault-namespace", "");
    JobGetter::register(&mut fs);
    let arg = match parse_one_arg(&mut fs, args, &help, "job validate", "<path>") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let getter = JobGetter::from_flags(&fs);
    if let Err(e) = getter.validate() {
        eprintln!("Invalid job options: {e}");
        return 1;
    }
    let (_, job) = match getter.get(&arg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("Error getting job struct: {e}");
            return 1;
        }
    };
    let meta = Meta::from_flags(&fs);
    let mut client = meta.client();
    if !job.region.is_empty() {
        client.set_region(&job.region);
    }
    if !job.namespace.is_empty() {
        client.set_namespace(&job.namespace);
    }
    let resp: JobValidateResponse =
        match client.put("/v1/validate/job", &[], &ValidateRequest { job: &job }) {
            Ok(r) => r,
            Err(e) if e.is_transport() => validate_locally(&job),
            Err(e) => {
                eprintln!("Error validating job: {e}");
                return 1;
            }
        };
    if !resp.driver_config_validated {
        outln!("Driver configuration not validated since connection to Nomad agent couldn't be established.\n");
    }
    if !resp.error.is_empty() {
        eprintln!("Job validation errors:");
        eprintln!("{}", resp.error);
        return 1;
    }
    if !resp.warnings.is_empty() {
        outln!("Job Warnings:\n{}\n", resp.warnings);
    }
    outln!("Job validation successful");
    0
}

fn validate_locally(job: &nomad_structs::Job) -> JobValidateResponse {
    let mut j = job.clone();
    canonicalize_job(&mut j);
    let errs = validate_job(&j);
    JobValidateResponse {
        driver_config_validated: false,
        error: if errs.is_empty() {
            String::new()
        } else {
            multierror(&errs)
        },
        validation_errors: errs,
        warnings: String::new(),
    }
}
