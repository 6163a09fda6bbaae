//! `nomad alloc <subcommand>`.

pub mod exec;
pub mod fs;
pub mod logs;
pub mod restart;
pub mod signal;
pub mod status;
pub mod stop;

use nomad_structs::{AllocListStub, Allocation};

use crate::api::{path_escape, Client};
use crate::commands::format_alloc_list_stubs;
use crate::format::sanitize_uuid_prefix;

const HELP: &str = "Usage: nomad alloc <subcommand> [options] [args]

  Inspect allocations and their tasks.

Subcommands:
    exec      Run a command in a running allocation's task
    fs        Inspect the files of an allocation
    logs      Stream the logs of a task
    restart   Restart a running allocation or task
    signal    Send a signal to a running allocation or task
    status    Show an allocation's status and task events
    stop      Stop an allocation and have it rescheduled
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
        "fs" => fs::run(rest),
        "signal" => signal::run(rest),
        "restart" => restart::run(rest),
        "stop" => stop::run(rest),
        "exec" => exec::run(rest),
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

/// Resolves an allocation prefix for a command that acts on exactly one allocation, printing
/// Nomad's errors (`Alloc ID must contain at least two characters.`, `No allocation(s) with
/// prefix or id ...`, `Prefix matched multiple allocations` + table) and returning exit code 1
/// on failure.
pub fn single_alloc(
    client: &Client,
    id: &str,
    verbose: bool,
    length: usize,
) -> Result<Box<Allocation>, i32> {
    match alloc_by_prefix(
        client,
        id,
        verbose,
        length,
        "Alloc ID must contain at least two characters.",
    ) {
        Ok(AllocLookup::Found(a)) => Ok(a),
        Ok(AllocLookup::Multiple(table)) => {
            eprintln!("{table}");
            Err(1)
        }
        Err(e) => {
            eprintln!("{e}");
            Err(1)
        }
    }
}

/// A client bound to the allocation's namespace.
pub fn client_for(client: &Client, alloc: &Allocation) -> Client {
    let mut c = client.for_node(&alloc.node_id);
    if !alloc.namespace.is_empty() {
        c.set_namespace(&alloc.namespace);
    }
    c
}

/// Checks `task` is a task of the allocation's group (Nomad `validateTaskExistsInAllocation`).
pub fn validate_task_exists(task: &str, alloc: &Allocation) -> Result<(), String> {
    let tg = alloc
        .job
        .as_ref()
        .and_then(|j| j.lookup_task_group(&alloc.task_group))
        .ok_or_else(|| format!("Could not find allocation task group: {}", alloc.task_group))?;
    if tg.tasks.iter().any(|t| t.name == task) {
        return Ok(());
    }
    let names: Vec<&str> = tg.tasks.iter().map(|t| t.name.as_str()).collect();
    Err(format!(
        "Could not find task named: {task}, found:\n{}",
        names.join("\n")
    ))
}

#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::alloc_with_tasks;
}

#[cfg(test)]
mod tests {
    use super::*;
    use nomad_structs::{Job, Task, TaskGroup};

    pub(crate) fn alloc_with_tasks(tasks: &[&str]) -> Allocation {
        let tg = TaskGroup {
            name: "g".into(),
            tasks: tasks
                .iter()
                .map(|t| Task {
                    name: t.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        Allocation {
            id: "0b6e7f63-1111-2222-3333-444455556666".into(),
            task_group: "g".into(),
            job: Some(Box::new(Job {
                id: "j".into(),
                task_groups: vec![tg],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn task_validation_wording() {
        let a = alloc_with_tasks(&["web", "db"]);
        assert!(validate_task_exists("web", &a).is_ok());
        assert_eq!(
            validate_task_exists("nope", &a).unwrap_err(),
            "Could not find task named: nope, found:\nweb\ndb"
        );
        let mut b = a.clone();
        b.task_group = "other".into();
        assert_eq!(
            validate_task_exists("web", &b).unwrap_err(),
            "Could not find allocation task group: other"
        );
    }
}
