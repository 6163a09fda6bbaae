//! `nomad job revert`: register a kept version of a job again and watch the evaluation.

use nomad_structs::{JobRegisterResponse, JobRevertRequest};

use crate::api::path_escape;
use crate::commands::job::history::JobVersions;
use crate::commands::{client_flags, error_hint, parse_flags, resolve_job, with_general};
use crate::format::{FULL_ID, SHORT_ID};
use crate::meta::Meta;
use crate::monitor::Monitor;

fn help() -> String {
    with_general(
        "Usage: nomad job revert [options] <job> <version|tag>

  Registers a version the cluster kept (see \"nomad job history\") as the
  job's new version, then watches the evaluation it creates. <version|tag> is
  a version number or the name of a version tag.",
        "Revert Options:

  -detach
    Print the evaluation ID and return instead of watching it.

  -consul-token
    Accepted for compatibility.

  -verbose
    Print full IDs.",
    )
}

/// Runs `nomad job revert`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("detach", false)
        .bool("verbose", false)
        .string("consul-token", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let length = if fs.get_bool("verbose") {
        FULL_ID
    } else {
        SHORT_ID
    };
    if rest.len() != 2 {
        eprintln!("This command takes two arguments: <job> <version|tag>");
        eprintln!("{}", error_hint("job revert"));
        return 1;
    }
    let meta = Meta::from_flags(&fs);
    let mut client = meta.client();
    // A number is a version; anything else names a version tag.
    let version = match rest[1].parse::<u64>() {
        Ok(v) => v,
        Err(_) => match version_by_tag(&client, &rest[0], &rest[1]) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("Error retrieving job versions: {e}");
                return 1;
            }
        },
    };
    let job_id = match resolve_job(&mut client, &meta, rest[0].trim()) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let req = JobRevertRequest {
        job_id: job_id.clone(),
        job_version: version,
        ..Default::default()
    };
    let resp: JobRegisterResponse = match client.put(
        &format!("/v1/job/{}/revert", path_escape(&job_id)),
        &[],
        &req,
    ) {
        Ok(r) => r,
        Err(e) => {
            // Nomad's wording, even though the revert is what failed.
            eprintln!("Error retrieving job versions: {e}");
            return 1;
        }
    };
    if resp.eval_id.is_empty() {
        return 0;
    }
    if fs.get_bool("detach") {
        outln!("Evaluation ID: {}", resp.eval_id);
        return 0;
    }
    Monitor::new(&client, length).monitor(&resp.eval_id)
}

/// The version of `job` carrying the tag `tag`.
fn version_by_tag(client: &crate::api::Client, job: &str, tag: &str) -> Result<u64, String> {
    let resp: JobVersions = client
        .get(&format!("/v1/job/{}/versions", path_escape(job)), &[])
        .map_err(|e| e.to_string())?;
    resp.versions
        .iter()
        .find(|j| {
            j.version_tag
                .as_ref()
                .and_then(|t| t.get("Name"))
                .and_then(serde_json::Value::as_str)
                == Some(tag)
        })
        .map(|j| j.version)
        .ok_or_else(|| format!("version tag {tag} not found for job {job}"))
}
