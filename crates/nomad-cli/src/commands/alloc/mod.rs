//! `nomad alloc <subcommand>`.

pub mod logs;
pub mod status;

use nomad_structs::{AllocListStub, Allocation};

use crate::api::{path_escape, Client};
use crate::commands::format_alloc_list_stubs;
use crate::format::sanitize_uuid_prefix;

const HELP: &str = "Usage: nomad alloc <subcommand> [options] [args]

  Inspect allocations and their tasks.

Subcommands:
    logs      Stream the logs of a task
    status    Show an allocation's status and task events
";

/// Dispatches `nomad alloc ...`.
pub fn run(args: &[String]) -> i32 {
    let Some(sub) = args.first() else {
        eprintln!("{}", HELP.trim_end());
        return 1;
    };
    let rest = &args[1..];
    match sub.as_str() {
        "status" => status::run(rest),
        "logs" => logs::run(rest),
        "exec" => {
            eprintln!("nomad alloc exec is not available in this build yet");
            1
        }
        "-h" | "-help" | "--help" => {
            outln!("{}", HELP.trim_end());
            0
        }
        other => {
            eprintln!("Unknown alloc subcommand {other:?}\n\n{}", HELP.trim_end());
            1
        }
    }
}

/// Result of looking an allocation up by ID prefix.
#[derive(Debug)]
pub enum AllocLookup {
    /// Exactly one match, fully fetched.
    Found(Box<Allocation>),
    /// Several matches: the table to show.
    Multiple(String),
}

/// Resolves an allocation ID prefix and fetches the allocation (errors worded like Nomad's).
pub fn alloc_by_prefix(
    client: &Client,
    id: &str,
    verbose: bool,
    length: usize,
    short_msg: &str,
) -> Result<AllocLookup, String> {
    if id.len() == 1 {
        return Err(short_msg.to_string());
    }
    let id = sanitize_uuid_prefix(id);
    let stubs: Vec<AllocListStub> = client
        .get("/v1/allocations", &[("prefix", id.clone())])
        .map_err(|e| format!("Error querying allocation: {e}"))?;
    if stubs.is_empty() {
        return Err(format!("No allocation(s) with prefix or id {id:?} found"));
    }
    if stubs.len() > 1 {
        return Ok(AllocLookup::Multiple(format!(
            "Prefix matched multiple allocations\n\n{}",
            format_alloc_list_stubs(&stubs, verbose, length)
        )));
    }
    let mut c = client.clone();
    if !stubs[0].namespace.is_empty() {
        c.set_namespace(&stubs[0].namespace);
    }
    let alloc: Allocation = c
        .get(
            &format!("/v1/allocation/{}", path_escape(&stubs[0].id)),
            &[],
        )
        .map_err(|e| format!("Error querying allocation: {e}"))?;
    Ok(AllocLookup::Found(Box::new(alloc)))
}
