//! `nomad eval list`: the evaluations the cluster holds, filtered and paginated.

use nomad_structs::Evaluation;

use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::format::{format_list, json_pretty, limit, FULL_ID, SHORT_ID};
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad eval list [options]

  Lists the evaluations the cluster holds.",
        "Eval List Options:

  -verbose
    Print full IDs.

  -per-page
    How many evaluations to show per page.

  -page-token
    Where to start the page (the token a previous page printed).

  -filter
    An expression the evaluations must match.

  -job
    Only evaluations of this job ID.

  -status
    Only evaluations with this status.

  -json
    Print the evaluations as JSON.

  -t
    Not supported (Go templates).",
    )
}

/// Runs `nomad eval list`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("verbose", false)
        .bool("json", false)
        .bool("ui", false)
        .string("t", "")
        .int("per-page", 0)
        .string("page-token", "")
        .string("filter", "")
        .string("job", "")
        .string("status", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if !rest.is_empty() {
        eprintln!("This command takes no arguments");
        eprintln!("{}", error_hint("eval list"));
        return 1;
    }
    if !fs.get_str("t").is_empty() {
        eprintln!("Go templates (-t) are not supported by this build");
        return 1;
    }
    let client = Meta::from_flags(&fs).client();
    let mut q = Vec::new();
    for (flag, param) in [
        ("filter", "filter"),
        ("page-token", "next_token"),
        ("job", "job"),
        ("status", "status"),
    ] {
        let v = fs.get_str(flag);
        if !v.is_empty() {
            q.push((param, v));
        }
    }
    if fs.get_int("per-page") > 0 {
        q.push(("per_page", fs.get_int("per-page").to_string()));
    }
    let (evals, next_token): (Vec<Evaluation>, String) =
        match client.get_paged("/v1/evaluations", &q) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("Error querying evaluations: {e}");
                return 1;
            }
        };
    if fs.get_bool("json") {
        outln!("{}", json_pretty(&evals));
        return 0;
    }
    if evals.is_empty() {
        outln!("No evals found");
        return 0;
    }
    outln!("{}", format_eval_list(&evals, fs.get_bool("verbose")));
    if !next_token.is_empty() {
        let argv: Vec<String> = std::env::args().collect();
        outln!(
            "\nResults have been paginated. To get the next page run:\n\n{} -page-token {next_token}",
            args_without_page_token(&argv)
        );
    }
    0
}

/// The command line without its `-page-token` flag (and the flag's value when separate).
fn args_without_page_token(argv: &[String]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        if a.starts_with("-page-token") {
            i += if a.contains('=') { 1 } else { 2 };
            continue;
        }
        out.push(a.as_str());
        i += 1;
    }
    out.join(" ")
}

/// `true`/`false` for placement failures; blocked evals are still in progress.
fn failure_status(e: &Evaluation) -> String {
    if e.status == "blocked" {
        return "N/A - In Progress".to_string();
    }
    e.failed_tg_allocs
        .as_ref()
        .is_some_and(|m| !m.is_empty())
        .to_string()
}

fn format_eval_list(evals: &[Evaluation], verbose: bool) -> String {
    let length = if verbose { FULL_ID } else { SHORT_ID };
    let mut rows =
        vec!["ID|Priority|Triggered By|Job ID|Namespace|Node ID|Status|Placement Failures".into()];
    for e in evals {
        rows.push(format!(
            "{}|{}|{}|{}|{}|{}|{}|{}",
            limit(&e.id, length),
            e.priority,
            e.triggered_by,
            e.job_id,
            e.namespace,
            limit(&e.node_id, length),
            e.status,
            failure_status(e)
        ));
    }
    format_list(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn page_token_is_dropped_from_the_next_page_hint() {
        assert_eq!(
            args_without_page_token(&argv(&[
                "nomad",
                "eval",
                "list",
                "-page-token",
                "abc",
                "-per-page=1"
            ])),
            "nomad eval list -per-page=1"
        );
        assert_eq!(
            args_without_page_token(&argv(&["nomad", "eval", "list", "-page-token=abc"])),
            "nomad eval list"
        );
    }

    #[test]
    fn eval_rows_show_blocked_as_in_progress() {
        let e = Evaluation {
            id: "0123456789abcdef".into(),
            priority: 50,
            triggered_by: "job-register".into(),
            job_id: "web".into(),
            namespace: "default".into(),
            status: "blocked".into(),
            ..Default::default()
        };
        let out = format_eval_list(&[e], false);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID        Priority  Triggered By"));
        assert!(lines[1].starts_with("01234567  50        job-register"));
        assert!(lines[1].ends_with("N/A - In Progress"), "{out}");
        assert!(lines[1].contains("<none>"), "an empty node ID: {out}");
    }
}
