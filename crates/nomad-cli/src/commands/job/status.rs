//! `nomad job status`: the job list, or one job's details, summary and allocations.

use nomad_structs::{AllocListStub, Evaluation, Job, JobListStub, JobSummary};

use crate::api::{path_escape, Client};
use crate::commands::{
    client_flags, error_hint, format_alloc_list_stubs, parse_flags, resolve_job,
    status_list_output, status_string, with_general,
};
use crate::format::{
    format_kv, format_list, format_unix_nanos, json_pretty, limit, FULL_ID, SHORT_ID,
};
use crate::meta::Meta;
use crate::monitor::format_alloc_metrics;

fn help() -> String {
    with_general(
        "Usage: nomad job status [options] <job>
Alias: nomad status

  Without an argument, lists all jobs. With a job ID or ID prefix, shows that
  job's details, per-group summary and allocations.",
        "Status Options:

  -short
    Show only the job's basic information.

  -evals
    Also list the job's evaluations.

  -all-allocs
    Include allocations of previous job versions.

  -json
    Print JSON instead of tables.

  -verbose
    Print full IDs and absolute times.",
    )
}

/// Runs `nomad job status`.
pub fn run(args: &[String]) -> i32 {
    run_named(args, "job status")
}

/// Runs job status under `name` (also used by `nomad status`).
pub fn run_named(args: &[String], name: &str) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("short", false)
        .bool("evals", false)
        .bool("all-allocs", false)
        .bool("json", false)
        .string("t", "")
        .bool("verbose", false)
        .bool("ui", false);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.len() > 1 {
        eprintln!("This command takes either no arguments or one: <job>");
        eprintln!("{}", error_hint(name));
        return 1;
    }
    if !fs.get_str("t").is_empty() {
        eprintln!("Go templates (-t) are not supported by this build");
        return 1;
    }
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    let opts = Opts {
        verbose: fs.get_bool("verbose"),
        evals: fs.get_bool("evals"),
        all_allocs: fs.get_bool("all-allocs"),
        json: fs.get_bool("json"),
        length: if fs.get_bool("verbose") {
            FULL_ID
        } else {
            SHORT_ID
        },
    };
    if rest.is_empty() {
        let jobs: Vec<JobListStub> = match client.get("/v1/jobs", &[]) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("Error querying jobs: {e}");
                return 1;
            }
        };
        if jobs.is_empty() {
            outln!("No running jobs");
            return 0;
        }
        if opts.json {
            let mut all = Vec::new();
            for j in &jobs {
                match json_job(&client, &j.id, &j.namespace, opts.all_allocs) {
                    Ok(v) => all.push(v),
                    Err(e) => {
                        eprintln!("{e}");
                        return 1;
                    }
                }
            }
            outln!("{}", json_pretty(&all));
            return 0;
        }
        outln!("{}", status_list_output(&jobs, meta.all_namespaces()));
        return 0;
    }

    let prefix = rest[0].trim();
    let mut client = client;
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
            eprintln!("Error querying job: {e}");
            return 1;
        }
    };
    if opts.json {
        match json_job(&client, &job.id, &job.namespace, opts.all_allocs) {
            Ok(v) => {
                outln!("{}", json_pretty(&vec![v]));
                return 0;
            }
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    }
    let periodic = job.periodic.as_ref().is_some_and(|p| !p.is_null());
    let param = job.parameterized_job.as_ref().is_some_and(|p| !p.is_null());
    let mut basic = vec![
        format!("ID|{}", job.id),
        format!("Name|{}", job.name),
        format!("Submit Date|{}", format_unix_nanos(job.submit_time)),
        format!("Type|{}", job.job_type),
        format!("Priority|{}", job.priority),
        format!(
            "Datacenters|{}",
            job.datacenters.clone().unwrap_or_default().join(",")
        ),
        format!("Namespace|{}", job.namespace),
        format!("Node Pool|{}", job.node_pool),
        format!("Status|{}", status_string(&job.status, job.stop)),
        format!("Periodic|{periodic}"),
        format!("Parameterized|{param}"),
    ];
    if !job.dispatch_idempotency_token.is_empty() {
        basic.push(format!(
            "Idempotency Token|{}",
            job.dispatch_idempotency_token
        ));
    }
    outln!("{}", format_kv(&basic));
    if fs.get_bool("short") {
        return 0;
    }
    match output_job_info(&client, &job, &opts, periodic || param) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

struct Opts {
    verbose: bool,
    evals: bool,
    all_allocs: bool,
    json: bool,
    length: usize,
}

/// One job's `-json` record, fields in Nomad's `JobJson` order.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct JobJson {
    summary: JobSummary,
    allocations: Vec<AllocListStub>,
    latest_deployment: serde_json::Value,
    evaluations: Vec<Evaluation>,
}

fn json_job(client: &Client, id: &str, ns: &str, all: bool) -> Result<JobJson, String> {
    let mut c = client.clone();
    if !ns.is_empty() {
        c.set_namespace(ns);
    }
    let p = path_escape(id);
    let summary: JobSummary = c
        .get(&format!("/v1/job/{p}/summary"), &[])
        .map_err(|e| format!("Error querying job summary: {e}"))?;
    let allocs: Vec<AllocListStub> = c
        .get(
            &format!("/v1/job/{p}/allocations"),
            &[("all", all.to_string())],
        )
        .map_err(|e| format!("Error querying job allocations: {e}"))?;
    let deployment: serde_json::Value = c
        .get(&format!("/v1/job/{p}/deployment"), &[])
        .map_err(|e| format!("Error querying latest job deployment: {e}"))?;
    let evals: Vec<Evaluation> = c
        .get(&format!("/v1/job/{p}/evaluations"), &[])
        .map_err(|e| format!("Error querying job evaluations: {e}"))?;
    Ok(JobJson {
        summary,
        allocations: allocs,
        latest_deployment: deployment,
        evaluations: evals,
    })
}

fn output_job_info(
    client: &Client,
    job: &Job,
    opts: &Opts,
    periodic_or_param: bool,
) -> Result<(), String> {
    let p = path_escape(&job.id);
    let summary: JobSummary = client
        .get(&format!("/v1/job/{p}/summary"), &[])
        .map_err(|e| format!("Error querying job summary: {e}"))?;
    if periodic_or_param {
        // Children listings of periodic/parameterized jobs.
        if let Some(ch) = &summary.children {
            outln!("\n{}", crate::color::bold("Children Job Summary"));
            outln!(
                "{}",
                format_list(&[
                    "Pending|Running|Dead".to_string(),
                    format!("{}|{}|{}", ch.pending, ch.running, ch.dead)
                ])
            );
        }
        return Ok(());
    }
    let allocs: Vec<AllocListStub> = client
        .get(
            &format!("/v1/job/{p}/allocations"),
            &[("all", opts.all_allocs.to_string())],
        )
        .map_err(|e| format!("Error querying job allocations: {e}"))?;
    let evals: Vec<Evaluation> = client
        .get(&format!("/v1/job/{p}/evaluations"), &[])
        .map_err(|e| format!("Error querying job evaluations: {e}"))?;
    let deployment: serde_json::Value = client
        .get(&format!("/v1/job/{p}/deployment"), &[])
        .map_err(|e| format!("Error querying latest job deployment: {e}"))?;

    outln!("\n{}", crate::color::bold("Summary"));
    let mut rows =
        vec!["Task Group|Queued|Starting|Running|Failed|Complete|Lost|Unknown".to_string()];
    for (tg, s) in &summary.summary {
        rows.push(format!(
            "{tg}|{}|{}|{}|{}|{}|{}|{}",
            s.queued, s.starting, s.running, s.failed, s.complete, s.lost, s.unknown
        ));
    }
    outln!("{}", format_list(&rows));
    if let Some(ch) = &summary.children {
        if ch.pending + ch.running + ch.dead > 0 {
            outln!("\n{}", crate::color::bold("Children Job Summary"));
            outln!(
                "{}",
                format_list(&[
                    "Pending|Running|Dead".to_string(),
                    format!("{}|{}|{}", ch.pending, ch.running, ch.dead)
                ])
            );
        }
    }

    let mut eval_rows = vec!["ID|Priority|Triggered By|Status|Placement Failures".to_string()];
    let mut blocked = false;
    let mut latest_failed: Option<&Evaluation> = None;
    for e in &evals {
        let has_failures = e.failed_tg_allocs.as_ref().is_some_and(|m| !m.is_empty());
        let failures = if e.status == "blocked" {
            "N/A - In Progress".to_string()
        } else {
            has_failures.to_string()
        };
        eval_rows.push(format!(
            "{}|{}|{}|{}|{}",
            limit(&e.id, opts.length),
            e.priority,
            e.triggered_by,
            e.status,
            failures
        ));
        if e.status == "blocked" {
            blocked = true;
        }
        if has_failures && latest_failed.is_none_or(|l| l.create_index < e.create_index) {
            latest_failed = Some(e);
        }
    }
    if opts.verbose || opts.evals {
        outln!("\n{}", crate::color::bold("Evaluations"));
        outln!("{}", format_list(&eval_rows));
    }
    if blocked {
        if let Some(failed) = latest_failed {
            print_failed_placements(failed);
        }
    }
    if let Some(d) = deployment.as_object() {
        outln!("\n{}", crate::color::bold("Latest Deployment"));
        let get = |k: &str| {
            d.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        outln!(
            "{}",
            format_kv(&[
                format!("ID|{}", limit(&get("ID"), opts.length)),
                format!("Status|{}", get("Status")),
                format!("Description|{}", get("StatusDescription")),
            ])
        );
    }
    let mut actions = vec!["Action Name|Task Group|Task".to_string()];
    for tg in &job.task_groups {
        for t in &tg.tasks {
            for a in t.actions.iter().flatten() {
                actions.push(format!("{}|{}|{}", a.name, tg.name, t.name));
            }
        }
    }
    if actions.len() > 1 {
        outln!("\n{}", crate::color::bold("Actions"));
        outln!("{}", format_list(&actions));
    }
    outln!("\n{}", crate::color::bold("Allocations"));
    outln!(
        "{}",
        format_alloc_list_stubs(&allocs, opts.verbose, opts.length)
    );
    Ok(())
}

fn print_failed_placements(eval: &Evaluation) {
    let text = failed_placements_text(eval);
    if !text.is_empty() {
        outln!("{text}");
    }
}

/// The `Placement Failure` section of the latest eval with failures (Nomad
/// `outputFailedPlacements`): at most 5 task groups, sorted, blank lines between them.
pub(crate) fn failed_placements_text(eval: &Evaluation) -> String {
    const MAX_FAILED_TGS: usize = 5;
    let Some(failed) = eval.failed_tg_allocs.as_ref().filter(|f| !f.is_empty()) else {
        return String::new();
    };
    let mut lines = vec!["\nPlacement Failure".to_string()];
    let n = failed.len();
    for (i, (tg, m)) in failed.iter().enumerate() {
        if i >= MAX_FAILED_TGS {
            break;
        }
        lines.push(format!("Task Group {tg:?}:"));
        lines.push(format_alloc_metrics(m, "  "));
        if i != n - 1 {
            lines.push(String::new());
        }
    }
    if n > MAX_FAILED_TGS {
        lines.push(format!(
            "\nPlacement failures truncated. To see remainder run:\nnomad eval-status {}",
            eval.id
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nomad_structs::AllocMetric;

    #[test]
    fn placement_failure_section() {
        let mut e = Evaluation {
            id: "e1".into(),
            ..Default::default()
        };
        assert_eq!(failed_placements_text(&e), "");
        let m = AllocMetric {
            nodes_evaluated: 1,
            nodes_exhausted: 1,
            dimension_exhausted: Some([("memory".to_string(), 1)].into_iter().collect()),
            ..Default::default()
        };
        e.failed_tg_allocs = Some(
            [("cache".to_string(), m.clone()), ("web".to_string(), m)]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            failed_placements_text(&e),
            "\nPlacement Failure\nTask Group \"cache\":\n  * Resources exhausted on 1 nodes\n  * Dimension \"memory\" exhausted on 1 nodes\n\nTask Group \"web\":\n  * Resources exhausted on 1 nodes\n  * Dimension \"memory\" exhausted on 1 nodes"
        );
    }
}
