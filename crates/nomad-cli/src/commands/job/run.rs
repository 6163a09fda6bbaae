//! `nomad job run`: parse a jobspec locally, register it, watch the evaluation.

use nomad_structs::{JobRegisterRequest, JobRegisterResponse};

use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::format::{job_wrapped_json, FULL_ID, SHORT_ID};
use crate::jobfile::JobGetter;
use crate::meta::Meta;
use crate::monitor::Monitor;

fn help() -> String {
    with_general(
        "Usage: nomad job run [options] <path>
Alias: nomad run

  Parses the job file at <path> (or stdin when <path> is \"-\"), registers the
  job with the cluster and watches the evaluation it creates until the
  scheduler is done. Exit codes: 0 success, 1 error, 2 placement failures.",
        "Run Options:

  -check-index
    Register only if the job's modify index equals this value; 0 means the
    job must not exist yet.

  -detach
    Print the evaluation ID and return instead of watching it.

  -eval-priority
    Priority of the evaluation created by this registration.

  -json
    The job file is JSON rather than HCL.

  -hcl2-strict
    Fail on unknown variables given with -var or -var-file (default true).

  -output
    Print the parsed job as JSON and exit without registering it.

  -policy-override
  -preserve-counts
  -preserve-resources
  -consul-namespace
  -vault-namespace
    Accepted for compatibility.

  -var 'key=value'
    Set an input variable; may be repeated.

  -var-file=path
    Read input variables from a file; may be repeated.

  -verbose
    Print full IDs.",
    )
}

/// Runs `nomad job run`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("detach", false)
        .bool("verbose", false)
        .bool("output", false)
        .bool("policy-override", false)
        .bool("preserve-counts", false)
        .bool("preserve-resources", false)
        .bool("ui", false)
        .string("check-index", "")
        .string("consul-namespace", "")
        .string("vault-namespace", "")
        .int("eval-priority", 0);
    JobGetter::register(&mut fs);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let length = if fs.get_bool("verbose") {
        FULL_ID
    } else {
        SHORT_ID
    };
    if rest.len() != 1 {
        eprintln!("This command takes one argument: <path>");
        eprintln!("{}", error_hint("job run"));
        return 1;
    }
    let getter = JobGetter::from_flags(&fs);
    if let Err(e) = getter.validate() {
        eprintln!("Invalid job options: {e}");
        return 1;
    }
    let (submission, mut job) = match getter.get(&rest[0]) {
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
    let consul_ns = fs.get_str("consul-namespace");
    if !consul_ns.is_empty() {
        job.consul_namespace = consul_ns;
    }
    let vault_ns = fs.get_str("vault-namespace");
    if !vault_ns.is_empty() {
        job.vault_namespace = vault_ns;
    }
    let periodic = job.periodic.as_ref().is_some_and(|p| !p.is_null());
    let param = job.parameterized_job.as_ref().is_some_and(|p| !p.is_null());
    let multiregion = job.multiregion.as_ref().is_some_and(|p| !p.is_null());

    if fs.get_bool("output") {
        outln!("{}", job_wrapped_json(&job));
        return 0;
    }

    let check_index = fs.get_str("check-index");
    let (enforce, modify_index) = if check_index.is_empty() {
        (false, 0)
    } else {
        match check_index.parse::<u64>() {
            Ok(n) => (true, n),
            Err(_) => {
                eprintln!(
                    "Error parsing check-index value {check_index:?}: strconv.ParseUint: parsing {check_index:?}: invalid syntax"
                );
                return 1;
            }
        }
    };

    let req = JobRegisterRequest {
        submission: Some(submission),
        job: Some(job),
        enforce_index: enforce,
        job_modify_index: modify_index,
        policy_override: fs.get_bool("policy-override"),
        preserve_counts: fs.get_bool("preserve-counts"),
        eval_priority: fs.get_int("eval-priority"),
        ..Default::default()
    };
    let resp: JobRegisterResponse = match client.put("/v1/jobs", &[], &req) {
        Ok(r) => r,
        Err(e) => {
            let text = e.to_string();
            if text.contains("Enforcing job modify index") {
                if let Some(inner) = text.split_once('(').map(|(_, r)| r.trim_end_matches(')')) {
                    eprintln!("{inner}");
                    eprintln!("Job not updated");
                    return 1;
                }
            }
            eprintln!("Error submitting job: {text}");
            return 1;
        }
    };
    if !resp.warnings.is_empty() {
        outln!("Job Warnings:\n{}\n", resp.warnings);
    }
    if fs.get_bool("detach") || periodic || param || multiregion {
        outln!("Job registration successful");
        if !param && !periodic {
            outln!("Evaluation ID: {}", resp.eval_id);
        }
        return 0;
    }
    Monitor::new(&client, length).monitor(&resp.eval_id)
}
