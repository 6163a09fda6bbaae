//! `nomad job history`: the kept versions of a job.

use nomad_structs::Job;
use serde::Deserialize;

use crate::api::path_escape;
use crate::commands::{client_flags, error_hint, parse_flags, resolve_job, with_general};
use crate::format::{columnize, format_unix_nanos, json_pretty};
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad job history [options] <job>

  Shows the versions of a job the cluster keeps, newest first: when each was
  submitted and whether it is marked stable. Use it to pick a version for
  \"nomad job revert\". <job> may be an ID prefix.",
        "History Options:

  -p
    Show the difference between each version and the one before it.

  -full
    Print the whole job definition of each version.

  -version <job version>
    Show only this version.

  -json
    Print the versions as JSON.

  -t
    Not supported (Go templates).",
    )
}

/// `GET /v1/job/:id/versions` answer, as far as the CLI reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct JobVersions {
    pub(crate) versions: Vec<Job>,
    pub(crate) diffs: Option<Vec<serde_json::Value>>,
}

/// Runs `nomad job history`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("p", false)
        .bool("full", false)
        .bool("json", false)
        .string("version", "")
        .string("t", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.is_empty() || rest.len() > 2 {
        eprintln!("This command takes one argument: <job>");
        eprintln!("{}", error_hint("job history"));
        return 1;
    }
    let (json, diff, full) = (fs.get_bool("json"), fs.get_bool("p"), fs.get_bool("full"));
    let tmpl = fs.get_str("t");
    if (json || !tmpl.is_empty()) && (diff || full) {
        eprintln!("-json and -t are exclusive with -p and -full");
        return 1;
    }
    if !tmpl.is_empty() {
        eprintln!("Go templates (-t) are not supported by this build");
        return 1;
    }
    let meta = Meta::from_flags(&fs);
    let mut client = meta.client();
    let job_id = match resolve_job(&mut client, &meta, rest[0].trim()) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut q = Vec::new();
    if diff {
        q.push(("diffs", "true".to_string()));
    }
    let resp: JobVersions =
        match client.get(&format!("/v1/job/{}/versions", path_escape(&job_id)), &q) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("Error retrieving job versions: {e}");
                return 1;
            }
        };
    let diffs = resp.diffs.unwrap_or_default();
    let version_str = fs.get_str("version");
    if !version_str.is_empty() {
        let Ok(version) = version_str.parse::<u64>() else {
            eprintln!(
                "Error parsing version value {version_str:?}: strconv.ParseUint: parsing {version_str:?}: invalid syntax"
            );
            return 1;
        };
        let found = resp.versions.iter().position(|j| j.version == version);
        if json {
            match found {
                Some(i) => outln!("{}", json_pretty(&resp.versions[i])),
                None => outln!("null"),
            }
            return 0;
        }
        let Some(i) = found else {
            eprintln!("Error printing job history for non-existing job or job version");
            return 1;
        };
        outln!("{}", format_version(&resp.versions[i], diffs.get(i), full));
        return 0;
    }
    if json {
        outln!("{}", json_pretty(&resp.versions));
        return 0;
    }
    if !diffs.is_empty() && resp.versions.len() != diffs.len() + 1 {
        eprintln!(
            "Number of job versions {} doesn't match number of diffs {}",
            resp.versions.len(),
            diffs.len()
        );
        return 1;
    }
    let blocks: Vec<String> = resp
        .versions
        .iter()
        .enumerate()
        .map(|(i, j)| format_version(j, diffs.get(i), full))
        .collect();
    outln!("{}", blocks.join("\n\n"));
    0
}

/// One version as a `Key = value` block (cells are not trimmed, empty cells stay empty).
fn format_version(job: &Job, diff: Option<&serde_json::Value>, full: bool) -> String {
    let mut rows = vec![
        format!("Version|{}", job.version),
        format!("Stable|{}", job.stable),
        format!("Submit Date|{}", format_unix_nanos(job.submit_time)),
    ];
    if let Some(d) = diff {
        rows.push(format!("Diff|\n{}", json_pretty(d).trim()));
    }
    if full {
        rows.push(format!("Full|JSON Job:\n{}", json_pretty(job)));
    }
    columnize(&rows, " = ", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_block_aligns_its_keys() {
        let job = Job {
            version: 3,
            stable: true,
            ..Default::default()
        };
        assert_eq!(
            format_version(&job, None, false),
            "Version     = 3\nStable      = true\nSubmit Date = "
        );
        let full = format_version(&job, None, true);
        assert!(
            full.contains("\nFull        = JSON Job:\n{\n    \""),
            "{full}"
        );
    }
}
