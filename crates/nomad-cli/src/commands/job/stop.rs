//! `nomad job stop`: deregister a job and watch the resulting evaluation.

use nomad_structs::{Job, JobDeregisterResponse};

use crate::api::path_escape;
use crate::commands::{client_flags, confirm, error_hint, parse_flags, resolve_job, with_general};
use crate::format::{FULL_ID, SHORT_ID};
use crate::meta::Meta;
use crate::monitor::Monitor;

fn help() -> String {
    with_general(
        "Usage: nomad job stop [options] <job>
Alias: nomad stop

  Stops a running job and watches the evaluation that stops its allocations.
  <job> may be an ID prefix; a prefix match asks for confirmation.",
        "Stop Options:

  -detach
    Print the evaluation ID and return instead of watching it.

  -eval-priority
    Priority of the deregistration evaluation.

  -purge
    Remove the job from the cluster state entirely.

  -global
  -no-shutdown-delay
    Passed to the agent.

  -yes
    Do not ask for confirmation.

  -verbose
    Print full IDs.",
    )
}

/// Runs `nomad job stop`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("detach", false)
        .bool("verbose", false)
        .bool("global", false)
        .bool("no-shutdown-delay", false)
        .bool("yes", false)
        .bool("purge", false)
        .int("eval-priority", 0);
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
        eprintln!("This command takes one argument: <job>");
        eprintln!("{}", error_hint("job stop"));
        return 1;
    }
    let meta = Meta::from_flags(&fs);
    let mut client = meta.client();
    let prefix = rest[0].trim();
    let job_id = match resolve_job(&mut client, &meta, prefix) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let job: Job = match client.get(&format!("/v1/job/{}", path_escape(&job_id)), &[]) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("Error querying job {job_id:?}: {e}");
            return 1;
        }
    };
    if prefix != job.id && !fs.get_bool("yes") {
        let question = format!("Are you sure you want to stop job {:?}? [y/N]", job.id);
        if let Err(code) = confirm(&question, "Cancelling job stop") {
            return code;
        }
    }
    let mut q = vec![
        ("purge", fs.get_bool("purge").to_string()),
        ("global", fs.get_bool("global").to_string()),
    ];
    if fs.get_int("eval-priority") != 0 {
        q.push(("eval_priority", fs.get_int("eval-priority").to_string()));
    }
    if fs.get_bool("no-shutdown-delay") {
        q.push(("no_shutdown_delay", "true".to_string()));
    }
    let resp: JobDeregisterResponse =
        match client.delete(&format!("/v1/job/{}", path_escape(&job.id)), &q) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Error deregistering job with id {} err: {e}", job.id);
                return 1;
            }
        };
    if resp.eval_id.is_empty() {
        return 0;
    }
    if fs.get_bool("detach") {
        outln!("{}", resp.eval_id);
        return 0;
    }
    Monitor::new(&client, length).monitor(&resp.eval_id)
}
