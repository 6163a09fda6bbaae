//! `nomad job inspect`: print a registered job as JSON.

use nomad_structs::Job;

use crate::api::path_escape;
use crate::commands::{client_flags, error_hint, parse_flags, resolve_job, with_general};
use crate::format::{job_wrapped_json, json_pretty};
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad job inspect [options] <job>
Alias: nomad inspect

  Prints the registered job as JSON, wrapped in {\"Job\": ...} so the output can
  be sent back to the API.",
        "Inspect Options:

  -json
    Print the bare job object.

  -version <n>
    Print a specific job version.",
    )
}

/// Runs `nomad job inspect`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("json", false)
        .string("t", "")
        .string("version", "")
        .bool("hcl", false);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let meta = Meta::from_flags(&fs);
    let mut client = meta.client();
    if rest.is_empty() && fs.get_bool("json") {
        let jobs: serde_json::Value = match client.get("/v1/jobs", &[]) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("Error querying jobs: {e}");
                return 1;
            }
        };
        let jobs: Vec<nomad_structs::JobListStub> =
            serde_json::from_value(jobs).unwrap_or_default();
        outln!("{}", json_pretty(&jobs));
        return 0;
    }
    if rest.len() != 1 {
        eprintln!("This command takes one argument: <job>");
        eprintln!("{}", error_hint("job inspect"));
        return 1;
    }
    let job_id = match resolve_job(&mut client, &meta, rest[0].trim()) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let version = fs.get_str("version");
    let job: Job = if version.is_empty() {
        match client.get(&format!("/v1/job/{}", path_escape(&job_id)), &[]) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("Error inspecting job: {e}");
                return 1;
            }
        }
    } else {
        let Ok(v) = version.parse::<u64>() else {
            eprintln!("Error parsing version value {version:?}: invalid syntax");
            return 1;
        };
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Versions {
            #[serde(rename = "Versions")]
            versions: Vec<Job>,
        }
        let vs: Versions =
            match client.get(&format!("/v1/job/{}/versions", path_escape(&job_id)), &[]) {
                Ok(j) => j,
                Err(e) => {
                    eprintln!("Error inspecting job: {e}");
                    return 1;
                }
            };
        match vs.versions.into_iter().find(|j| j.version == v) {
            Some(j) => j,
            None => {
                eprintln!("Error inspecting job: job {job_id:?} at version {v} not found");
                return 1;
            }
        }
    };
    if fs.get_bool("json") {
        outln!("{}", json_pretty(&job));
    } else {
        outln!("{}", job_wrapped_json(&job));
    }
    0
}
