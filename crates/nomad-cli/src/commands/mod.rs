//! One module per subcommand, plus helpers they share (flag parsing, prefix lookups).

pub mod acl;
pub mod alloc;
pub mod eval;
pub mod job;
pub mod namespace;
pub mod node;
pub mod operator;
pub mod operator_api;
pub mod server;
pub mod status;
pub mod tls;
pub mod var;
pub mod version;

use nomad_structs::{AllocListStub, JobListStub};

use crate::api::Client;
use crate::format::{format_list, format_unix_nanos, limit, now_nanos, pretty_time_diff};
use crate::goflag::{FlagError, FlagSet};
use crate::meta::{self, Meta};

/// Parses `args` with `fs`; on `-h` prints `help` (exit 0), on bad flags prints the error and the
/// help (exit 1), as Go's flag package with Nomad's usage function does.
pub fn parse_flags(fs: &mut FlagSet, args: &[String], help: &str) -> Result<Vec<String>, i32> {
    match fs.parse(args) {
        Ok(rest) => Ok(rest),
        Err(FlagError::Help) => {
            outln!("{}", help.trim_end());
            Err(0)
        }
        Err(FlagError::Invalid(msg)) => {
            eprintln!("{msg}");
            outln!("{}", help.trim_end());
            Err(1)
        }
    }
}

/// [`parse_flags`] for a command that takes no arguments: any argument is Nomad's
/// "This command takes no arguments" error (exit 1) for `nomad <name>`.
pub fn parse_no_args(fs: &mut FlagSet, args: &[String], help: &str, name: &str) -> Result<(), i32> {
    let rest = parse_flags(fs, args, help)?;
    if !rest.is_empty() {
        eprintln!("This command takes no arguments");
        eprintln!("{}", error_hint(name));
        return Err(1);
    }
    Ok(())
}

/// [`parse_flags`] for a command that takes exactly one argument, shown as `what`
/// (`<namespace>`) in Nomad's "This command takes one argument" error.
pub fn parse_one_arg(
    fs: &mut FlagSet,
    args: &[String],
    help: &str,
    name: &str,
    what: &str,
) -> Result<String, i32> {
    let mut rest = parse_flags(fs, args, help)?;
    if rest.len() != 1 {
        eprintln!("This command takes one argument: {what}");
        eprintln!("{}", error_hint(name));
        return Err(1);
    }
    Ok(rest.remove(0))
}

/// A flag set that already has the general options.
pub fn client_flags() -> FlagSet {
    let mut fs = FlagSet::new();
    meta::register(&mut fs);
    fs
}

/// Help text with the general options appended.
pub fn with_general(usage: &str, specific: &str) -> String {
    let mut s = format!(
        "{}\n\nGeneral Options:\n\n{}\n",
        usage.trim_end(),
        meta::general_options_usage()
    );
    if !specific.is_empty() {
        s.push('\n');
        s.push_str(specific.trim_end());
        s.push('\n');
    }
    s
}

/// `For additional help try 'nomad <cmd> -help'`.
pub fn error_hint(name: &str) -> String {
    format!("For additional help try 'nomad {name} -help'")
}

/// Job list table (Nomad `createStatusListOutput`).
pub fn status_list_output(jobs: &[JobListStub], all_ns: bool) -> String {
    let mut out = Vec::with_capacity(jobs.len() + 1);
    if all_ns {
        out.push("ID|Namespace|Type|Priority|Status|Submit Date".to_string());
    } else {
        out.push("ID|Type|Priority|Status|Submit Date".to_string());
    }
    for j in jobs {
        let mut t = j.job_type.clone();
        if j.periodic {
            t.push_str("/periodic");
        }
        if j.parameterized_job {
            t.push_str("/parameterized");
        }
        let status = status_string(&j.status, j.stop);
        let date = format_unix_nanos(j.submit_time);
        if all_ns {
            out.push(format!(
                "{}|{}|{}|{}|{}|{}",
                j.id, j.job_summary.namespace, t, j.priority, status, date
            ));
        } else {
            out.push(format!("{}|{}|{}|{}|{}", j.id, t, j.priority, status, date));
        }
    }
    format_list(&out)
}

/// `running (stopped)` when the job is stopped.
pub fn status_string(status: &str, stop: bool) -> String {
    if stop {
        format!("{status} (stopped)")
    } else {
        status.to_string()
    }
}

/// Resolves a job ID prefix to its ID and points `client` at the job's namespace (which a
/// `-namespace=*` lookup may have found).
pub fn resolve_job(client: &mut Client, meta: &Meta, prefix: &str) -> Result<String, String> {
    let (id, ns) = job_id_by_prefix(client, meta, prefix)?;
    if !ns.is_empty() {
        client.set_namespace(&ns);
    }
    Ok(id)
}

/// Resolves a job ID prefix to `(id, namespace)` (Nomad `JobIDByPrefix`).
pub fn job_id_by_prefix(
    client: &Client,
    meta: &Meta,
    prefix: &str,
) -> Result<(String, String), String> {
    let max = 20;
    let jobs: Vec<JobListStub> = match client.get(
        "/v1/jobs",
        &[
            ("prefix", prefix.to_string()),
            ("per_page", max.to_string()),
        ],
    ) {
        Ok(j) => j,
        Err(e) if e.to_string().contains("Permission denied") => {
            return Ok((prefix.to_string(), String::new()))
        }
        Err(e) => return Err(format!("Error querying job prefix {prefix:?}: {e}")),
    };
    let truncated = jobs.len() >= max;
    if jobs.is_empty() {
        return Err(format!("No job(s) with prefix or ID {prefix:?} found"));
    }
    if jobs.len() > 1 {
        let exact = prefix == jobs[0].id;
        let multi_ns = meta.all_namespaces() && jobs[0].id == jobs[1].id;
        if !exact || multi_ns {
            let t = if truncated {
                "\n(results may be truncated)"
            } else {
                ""
            };
            return Err(format!(
                "Prefix {prefix:?} matched multiple jobs\n\n{}{t}",
                status_list_output(&jobs, meta.all_namespaces())
            ));
        }
    }
    Ok((jobs[0].id.clone(), jobs[0].job_summary.namespace.clone()))
}

/// Allocation stub table (Nomad `formatAllocListStubs`).
pub fn format_alloc_list_stubs(stubs: &[AllocListStub], verbose: bool, length: usize) -> String {
    if stubs.is_empty() {
        return "No allocations placed".to_string();
    }
    let mut rows = Vec::with_capacity(stubs.len() + 1);
    if verbose {
        rows.push(
            "ID|Eval ID|Node ID|Node Name|Task Group|Version|Desired|Status|Created|Modified"
                .to_string(),
        );
        for a in stubs {
            rows.push(format!(
                "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                limit(&a.id, length),
                limit(&a.eval_id, length),
                limit(&a.node_id, length),
                a.node_name,
                a.task_group,
                a.job_version,
                a.desired_status,
                a.client_status,
                format_unix_nanos(a.create_time),
                format_unix_nanos(a.modify_time)
            ));
        }
    } else {
        rows.push("ID|Node ID|Task Group|Version|Desired|Status|Created|Modified".to_string());
        let now = now_nanos();
        for a in stubs {
            rows.push(format!(
                "{}|{}|{}|{}|{}|{}|{}|{}",
                limit(&a.id, length),
                limit(&a.node_id, length),
                a.task_group,
                a.job_version,
                a.desired_status,
                a.client_status,
                pretty_time_diff(a.create_time, now),
                pretty_time_diff(a.modify_time, now)
            ));
        }
    }
    format_list(&rows)
}

/// Reads one line from stdin for a confirmation question.
pub fn ask(question: &str) -> Option<String> {
    use std::io::{BufRead, Write};
    print!("{question} ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

/// Nomad's confirmation prompt: goes on only on an exact `y`. Otherwise prints why not and
/// gives the exit code: 0 for a no (or empty answer, printing `cancelled`) and for a
/// yes-like word, 1 when no answer came at all.
pub fn confirm(question: &str, cancelled: &str) -> Result<(), i32> {
    match ask(question).as_deref().map(str::trim) {
        Some("y") => Ok(()),
        Some(a) if a.is_empty() || a.starts_with(['n', 'N']) => {
            outln!("{cancelled}");
            Err(0)
        }
        Some(a) if a.starts_with(['y', 'Y']) && a.len() > 1 => {
            outln!("For confirmation, an exact ‘y’ is required.");
            Err(0)
        }
        _ => {
            outln!("No confirmation detected. For confirmation, an exact 'y' is required.");
            Err(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_list_table() {
        let j = JobListStub {
            id: "example".into(),
            job_type: "batch".into(),
            periodic: true,
            priority: 50,
            status: "dead".into(),
            stop: true,
            ..Default::default()
        };
        assert_eq!(
            status_list_output(&[j], false),
            "ID       Type            Priority  Status          Submit Date\nexample  batch/periodic  50        dead (stopped)  <none>"
        );
    }

    #[test]
    fn alloc_stub_table_empty() {
        assert_eq!(
            format_alloc_list_stubs(&[], false, 8),
            "No allocations placed"
        );
    }
}
