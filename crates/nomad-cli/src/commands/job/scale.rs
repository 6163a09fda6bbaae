//! `nomad job scale`: change the count of a task group and watch the evaluation.

use std::collections::BTreeMap;

use nomad_structs::{
    JobRegisterResponse, JobScaleStatus, ScalingRequest, TaskGroupScaleStatus,
    SCALING_TARGET_GROUP, SCALING_TARGET_JOB,
};

use crate::api::path_escape;
use crate::commands::{client_flags, parse_flags, with_general};
use crate::format::{FULL_ID, SHORT_ID};
use crate::meta::Meta;
use crate::monitor::Monitor;

/// The message the CLI attaches to its scaling events, as Nomad's does.
const CLI_MESSAGE: &str = "submitted using the Nomad CLI";

fn help() -> String {
    with_general(
        "Usage: nomad job scale [options] <job> [<group>] <count>

  Sets the count of a task group of the job, then watches the evaluation the
  change creates. <group> may be left out when the job has one group.",
        "Scale Options:

  -detach
    Print the evaluation ID and return instead of watching it.

  -verbose
    Print full IDs.",
    )
}

/// Runs `nomad job scale`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("detach", false).bool("verbose", false);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (job, mut group, count_str) = match rest.as_slice() {
        [job, count] => (job.clone(), String::new(), count.clone()),
        [job, group, count] => (job.clone(), group.clone(), count.clone()),
        _ => {
            eprintln!("Command requires at least two arguments and no more than three");
            return 1;
        }
    };
    let count: i64 = match count_str.parse() {
        Ok(c) => c,
        Err(_) => {
            eprintln!(
                "Failed to convert count string to int: strconv.Atoi: parsing {count_str:?}: invalid syntax"
            );
            return 1;
        }
    };
    let client = Meta::from_flags(&fs).client();
    let status: JobScaleStatus =
        match client.get(&format!("/v1/job/{}/scale", path_escape(&job)), &[]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("Error querying job: {e}");
                return 1;
            }
        };
    if let Err(e) = pick_group(&status.task_groups, &mut group) {
        eprintln!("{e}");
        return 1;
    }
    let req = ScalingRequest {
        count: Some(count),
        target: BTreeMap::from([
            (SCALING_TARGET_JOB.to_string(), job.clone()),
            (SCALING_TARGET_GROUP.to_string(), group),
        ]),
        message: CLI_MESSAGE.to_string(),
        ..Default::default()
    };
    let resp: JobRegisterResponse =
        match client.put(&format!("/v1/job/{}/scale", path_escape(&job)), &[], &req) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Error submitting scaling request: {e}");
                return 1;
            }
        };
    if !resp.warnings.is_empty() {
        outln!(
            "{}",
            crate::color::bold(&format!("Job Warnings:\n{}\n", resp.warnings))
        );
    }
    if fs.get_bool("detach") {
        outln!("Evaluation ID: {}", resp.eval_id);
        return 0;
    }
    let length = if fs.get_bool("verbose") {
        FULL_ID
    } else {
        SHORT_ID
    };
    Monitor::new(&client, length).monitor(&resp.eval_id)
}

/// Nomad's group check: with one group the name may be left out; with several it is
/// required; a named group must exist.
fn pick_group(
    groups: &BTreeMap<String, TaskGroupScaleStatus>,
    group: &mut String,
) -> Result<(), String> {
    if group.is_empty() {
        return match groups.keys().collect::<Vec<_>>().as_slice() {
            [only] => {
                *group = (*only).clone();
                Ok(())
            }
            [] => Err("Group  not found within job".to_string()),
            _ => Err("Group name required".to_string()),
        };
    }
    if groups.contains_key(group.as_str()) {
        Ok(())
    } else {
        Err(format!("Group {group} not found within job"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(names: &[&str]) -> BTreeMap<String, TaskGroupScaleStatus> {
        names
            .iter()
            .map(|n| (n.to_string(), TaskGroupScaleStatus::default()))
            .collect()
    }

    #[test]
    fn group_is_inferred_only_when_unambiguous() {
        let mut g = String::new();
        assert_eq!(pick_group(&groups(&["web"]), &mut g), Ok(()));
        assert_eq!(g, "web");
        let mut g = String::new();
        assert_eq!(
            pick_group(&groups(&["a", "b"]), &mut g),
            Err("Group name required".to_string())
        );
        let mut g = "db".to_string();
        assert_eq!(
            pick_group(&groups(&["a", "b"]), &mut g),
            Err("Group db not found within job".to_string())
        );
        let mut g = "b".to_string();
        assert_eq!(pick_group(&groups(&["a", "b"]), &mut g), Ok(()));
    }
}
