//! `nomad alloc restart`: restart one task, the running tasks, or all tasks of an allocation.

use crate::api::path_escape;
use crate::commands::alloc::{client_for, single_alloc, validate_task_exists};
use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::format::{FULL_ID, SHORT_ID};
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad alloc restart [options] <allocation> <task>

  Restarts the tasks of an allocation in place: <task> when given, else every
  task that is running now. -all-tasks also restarts tasks that already ran.

  With ACLs on, the token needs 'alloc-lifecycle', 'read-job' and 'list-jobs'
  in the allocation's namespace.",
        "Restart Options:

  -all-tasks
    Restart every task, including those that already finished. Cannot be
    combined with -task or <task>.

  -task <task-name>
    The task to restart; wins over the <task> argument.

  -no-shutdown-delay
    Accepted for compatibility; restarts never wait for a shutdown delay here.

  -verbose
    Print full IDs.",
    )
}

/// The body of `PUT /v1/client/allocation/<id>/restart`.
pub fn restart_body(task: &str, all_tasks: bool) -> serde_json::Value {
    serde_json::json!({"TaskName": task, "AllTasks": all_tasks})
}

/// Checks the positional arguments and picks the task (`-task` wins over the argument).
pub fn pick_task(rest: &[String], task_flag: &str, all_tasks: bool) -> Result<String, String> {
    if rest.is_empty() || rest.len() > 2 {
        return Err("This command takes one or two arguments: <alloc-id> <task-name>".to_string());
    }
    let mut task = task_flag.to_string();
    if task.is_empty() && rest.len() >= 2 {
        task = rest[1].clone();
    }
    if all_tasks && !task.is_empty() {
        return Err(
            "The -all-tasks option is not allowed when restarting a specific task.".to_string(),
        );
    }
    Ok(task)
}

/// Runs `nomad alloc restart`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("verbose", false)
        .bool("all-tasks", false)
        .bool("no-shutdown-delay", false)
        .string("task", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let all_tasks = fs.get_bool("all-tasks");
    let task = match pick_task(&rest, &fs.get_str("task"), all_tasks) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            if rest.is_empty() || rest.len() > 2 {
                eprintln!("{}", error_hint("alloc restart"));
            }
            return 1;
        }
    };
    let verbose = fs.get_bool("verbose");
    let length = if verbose { FULL_ID } else { SHORT_ID };
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    let alloc = match single_alloc(&client, &rest[0], verbose, length) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if !task.is_empty() {
        if let Err(e) = validate_task_exists(&task, &alloc) {
            eprintln!("{e}");
            return 1;
        }
    }
    let client = client_for(&client, &alloc);
    let res: Result<serde_json::Value, _> = client.put(
        &format!("/v1/client/allocation/{}/restart", path_escape(&alloc.id)),
        &[],
        &restart_body(&task, all_tasks),
    );
    if let Err(e) = res {
        let target = if task.is_empty() {
            "allocation"
        } else {
            "task"
        };
        eprintln!("Failed to restart {target}:\n\n{e}");
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn task_selection() {
        assert_eq!(pick_task(&args(&["ab"]), "", false).unwrap(), "");
        assert_eq!(pick_task(&args(&["ab", "web"]), "", false).unwrap(), "web");
        assert_eq!(pick_task(&args(&["ab", "web"]), "db", false).unwrap(), "db");
        assert_eq!(
            pick_task(&args(&["ab", "web"]), "", true).unwrap_err(),
            "The -all-tasks option is not allowed when restarting a specific task."
        );
        assert_eq!(pick_task(&args(&["ab"]), "", true).unwrap(), "");
        assert_eq!(
            pick_task(&args(&[]), "", false).unwrap_err(),
            "This command takes one or two arguments: <alloc-id> <task-name>"
        );
    }

    #[test]
    fn bodies() {
        assert_eq!(
            restart_body("web", false),
            serde_json::json!({"TaskName": "web", "AllTasks": false})
        );
        assert_eq!(
            restart_body("", true),
            serde_json::json!({"TaskName": "", "AllTasks": true})
        );
    }

    #[test]
    fn flags_parse() {
        let mut fs = client_flags();
        fs.bool("verbose", false)
            .bool("all-tasks", false)
            .bool("no-shutdown-delay", false)
            .string("task", "");
        let rest = fs
            .parse(&args(&["-all-tasks", "-no-shutdown-delay", "abcd"]))
            .unwrap();
        assert_eq!(rest, args(&["abcd"]));
        assert!(fs.get_bool("all-tasks"));
    }
}
