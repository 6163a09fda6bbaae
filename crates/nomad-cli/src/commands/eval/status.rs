//! `nomad eval status`: one evaluation's details, placed allocations and placement failures.

use nomad_structs::{AllocListStub, Evaluation};

use crate::api::path_escape;
use crate::commands::{
    client_flags, error_hint, format_alloc_list_stubs, parse_flags, with_general,
};
use crate::format::{
    format_kv, format_list, format_unix_nanos, json_pretty, limit, sanitize_uuid_prefix, FULL_ID,
    SHORT_ID,
};
use crate::meta::Meta;
use crate::monitor::{failed_tg_header, format_alloc_metrics};

fn help() -> String {
    with_general(
        "Usage: nomad eval status [options] <evaluation>

  Shows an evaluation's state, the allocations it placed and why placements
  failed. <evaluation> may be an ID prefix.",
        "Eval Status Options:

  -json
    Print the evaluation as JSON.

  -verbose
    Print full IDs.",
    )
}

/// Runs `nomad eval status`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("json", false)
        .bool("verbose", false)
        .bool("monitor", false)
        .string("t", "")
        .bool("ui", false);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.len() != 1 {
        eprintln!("This command takes one argument");
        eprintln!("{}", error_hint("eval status"));
        return 1;
    }
    let verbose = fs.get_bool("verbose");
    let length = if verbose { FULL_ID } else { SHORT_ID };
    let client = Meta::from_flags(&fs).client();
    let id = &rest[0];
    if id.len() == 1 {
        eprintln!("Identifier must contain at least two characters.");
        return 1;
    }
    let id = sanitize_uuid_prefix(id);
    let evals: Vec<Evaluation> = match client.get("/v1/evaluations", &[("prefix", id.clone())]) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("Error querying evaluation: {e}");
            return 1;
        }
    };
    if evals.is_empty() {
        eprintln!("No evaluation(s) with prefix or id {id:?} found");
        return 1;
    }
    if evals.len() > 1 {
        let mut rows =
            vec!["ID|Priority|Triggered By|Job ID|Status|Placement Failures".to_string()];
        for e in &evals {
            let f = if e.status == "blocked" {
                "N/A - In Progress".to_string()
            } else {
                e.failed_tg_allocs
                    .as_ref()
                    .is_some_and(|m| !m.is_empty())
                    .to_string()
            };
            rows.push(format!(
                "{}|{}|{}|{}|{}|{f}",
                limit(&e.id, length),
                e.priority,
                e.triggered_by,
                e.job_id,
                e.status
            ));
        }
        eprintln!(
            "Prefix matched multiple evaluations\n\n{}",
            format_list(&rows)
        );
        return 1;
    }
    let eval = &evals[0];
    if fs.get_bool("json") {
        outln!("{}", json_pretty(eval));
        return 0;
    }
    let allocs: Vec<AllocListStub> = match client.get(
        &format!("/v1/evaluation/{}/allocations", path_escape(&eval.id)),
        &[],
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("Error querying related allocations: {e}");
            return 1;
        }
    };
    let failed = eval.failed_tg_allocs.clone().unwrap_or_default();
    let failures = if eval.status == "blocked" {
        "N/A - In Progress".to_string()
    } else {
        (!failed.is_empty()).to_string()
    };
    let desc = if eval.status_description.is_empty() {
        "<none>".to_string()
    } else {
        eval.status_description.clone()
    };
    let mut basic = vec![
        format!("ID|{}", limit(&eval.id, length)),
        format!("Create Time|{}", format_unix_nanos(eval.create_time)),
        format!("Modify Time|{}", format_unix_nanos(eval.modify_time)),
        format!("Status|{}", eval.status),
        format!("Status Description|{desc}"),
        format!("Type|{}", eval.eval_type),
        format!("TriggeredBy|{}", eval.triggered_by),
        format!("Job ID|{}", eval.job_id),
        format!("Namespace|{}", eval.namespace),
    ];
    if eval.triggered_by == "node-update" && !eval.node_id.is_empty() {
        basic.push(format!("Node ID|{}", limit(&eval.node_id, length)));
    }
    basic.push(format!("Priority|{}", eval.priority));
    basic.push(format!("Placement Failures|{failures}"));
    basic.push(format!(
        "Previous Eval|{}",
        limit(&eval.previous_eval, length)
    ));
    basic.push(format!("Next Eval|{}", limit(&eval.next_eval, length)));
    basic.push(format!(
        "Blocked Eval|{}",
        limit(&eval.blocked_eval, length)
    ));
    outln!("{}", format_kv(&basic));
    if !allocs.is_empty() {
        outln!("\n{}", crate::color::bold("Placed Allocations"));
        outln!("{}", format_alloc_list_stubs(&allocs, verbose, length));
    }
    if !failed.is_empty() {
        outln!("\n{}", crate::color::bold("Failed Placements"));
        for (tg, m) in &failed {
            outln!("{}", failed_tg_header(tg, m));
            outln!("{}", format_alloc_metrics(m, "  "));
            outln!();
        }
        if !eval.blocked_eval.is_empty() {
            outln!(
                "\nEvaluation {:?} waiting for additional capacity to place remainder",
                limit(&eval.blocked_eval, length)
            );
        }
    }
    0
}
