//! `nomad job action`: run an action declared in a task (`action "name" { command, args }`)
//! in a running allocation, as an exec session; exits with the action's exit code.
//!
//! Beyond Nomad: `-all` runs the action on every running allocation of `-group` at once
//! (stdin closed, no tty), each output line prefixed by the allocation's short ID; the exit
//! code is 0 when every run exited 0, else the first non-zero one (in allocation order).

use nomad_structs::{AllocListStub, Allocation};

use crate::api::{path_escape, Client};
use crate::commands::alloc::exec::{
    choose_task, expand_combined, fetch_alloc, random_job_alloc, register_session_flags,
    run_session, session_flags, session_spec,
};
use crate::commands::alloc::{alloc_by_prefix, AllocLookup};
use crate::commands::{client_flags, error_hint, parse_flags, resolve_job, with_general};
use crate::exec_client::{self, OutputMode};
use crate::format::{limit, SHORT_ID};
use crate::goflag::FlagSet;
use crate::meta::Meta;
use crate::terminal;

fn help() -> String {
    with_general(
        "Usage: nomad job action [options] <action>

  Runs an action declared in a task of the job, in a running allocation, and
  streams its input and output. Exits with the action's exit code.

  When ACLs are enabled, the token needs 'alloc-exec', 'read-job' and
  'list-jobs' in the job's namespace ('alloc-node-exec' for drivers without
  file system isolation, such as 'raw_exec'). Beyond Nomad, 'run-action'
  (with 'read-job' and 'list-jobs') lets a token run the declared actions
  without allowing arbitrary 'nomad alloc exec'.",
        "Action Options:

  -job <job-id>
    The job declaring the action (required).

  -alloc <allocation>
    The allocation to run the action in. Without it, a random running
    allocation of -group is used, and -group and -task are both required.

  -task <task-name>
    The task declaring the action.

  -group <group-name>
    The task group to pick the allocation from.

  -all
    Run the action on every running allocation of -group at once, each output
    line prefixed with the allocation's short ID. Exits 0 when every run exited
    0, else with the first non-zero exit code. Implies -i=false -t=false.

  -i
    Pass stdin to the action (default true).

  -t
    Allocate a pseudo-terminal. Defaults to true when stdin and stdout are
    terminals.

  -e <escape_char>
    The escape character of tty sessions (default '~'); '~.' at the start of a
    line closes the connection, 'none' disables escapes.",
    )
}

/// Parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOpts {
    /// The action name.
    pub action: String,
    /// `-job`.
    pub job: String,
    /// `-alloc`.
    pub alloc: String,
    /// `-task`.
    pub task: String,
    /// `-group`.
    pub group: String,
    /// `-all`.
    pub all: bool,
    /// `-i`.
    pub stdin: bool,
    /// `-t`.
    pub tty: bool,
    /// `-e`.
    pub escape: Option<u8>,
}

fn flags(default_tty: bool) -> FlagSet {
    let mut fs = client_flags();
    fs.string("job", "").string("alloc", "").bool("all", false);
    register_session_flags(&mut fs, default_tty);
    fs
}

/// Validates flags and arguments (Nomad's messages; `-all` rules are ours).
pub fn check_opts(fs: &FlagSet, rest: &[String]) -> Result<ActionOpts, (String, bool)> {
    if rest.len() != 1 {
        return Err((
            "This command takes one argument: <action>".to_string(),
            true,
        ));
    }
    let job = fs.get_str("job");
    if job.is_empty() {
        return Err(("A job ID is required".to_string(), true));
    }
    let all = fs.get_bool("all");
    let (mut stdin, mut tty, escape) = session_flags(fs).map_err(|e| (e, false))?;
    let alloc = fs.get_str("alloc");
    let group = fs.get_str("group");
    let task = fs.get_str("task");
    if all && !alloc.is_empty() {
        return Err(("-all and -alloc cannot be used together".to_string(), false));
    }
    if alloc.is_empty() {
        if group.is_empty() {
            return Err((
                "A group name is required if no allocation is provided".to_string(),
                false,
            ));
        }
        if task.is_empty() {
            return Err((
                "A task name is required if no allocation is provided".to_string(),
                false,
            ));
        }
    } else if alloc.len() == 1 {
        return Err((
            "Alloc ID must contain at least two characters".to_string(),
            false,
        ));
    }
    if all {
        stdin = false;
        tty = false;
    }
    Ok(ActionOpts {
        action: rest[0].clone(),
        job,
        alloc,
        task,
        group,
        all,
        stdin,
        tty,
        escape,
    })
}

/// Checks the task declares `action`; the error lists what it declares.
pub fn check_action(alloc: &Allocation, task: &str, action: &str) -> Result<(), String> {
    let declared: Vec<String> = alloc
        .job
        .as_ref()
        .and_then(|j| j.lookup_task_group(&alloc.task_group))
        .and_then(|tg| tg.tasks.iter().find(|t| t.name == task))
        .map(|t| t.actions.iter().flatten().map(|a| a.name.clone()).collect())
        .unwrap_or_default();
    if declared.iter().any(|a| a == action) {
        return Ok(());
    }
    if declared.is_empty() {
        return Err(format!(
            "Action {action:?} not found: task {task:?} declares no actions"
        ));
    }
    Err(format!(
        "Action {action:?} not found in task {task:?}. The task declares:\n  * {}",
        declared.join("\n  * ")
    ))
}

fn action_query(
    opts: &ActionOpts,
    alloc: &Allocation,
    task: &str,
    tty: bool,
) -> Vec<(&'static str, String)> {
    vec![
        ("action", opts.action.clone()),
        ("allocID", alloc.id.clone()),
        ("task", task.to_string()),
        ("group", alloc.task_group.clone()),
        ("tty", tty.to_string()),
        ("command", "[]".to_string()),
    ]
}

/// Runs `nomad job action`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let args = expand_combined(args);
    let mut fs = flags(terminal::stdin_and_stdout_are_terminals());
    let rest = match parse_flags(&mut fs, &args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let opts = match check_opts(&fs, &rest) {
        Ok(o) => o,
        Err((msg, hint)) => {
            eprintln!("{msg}");
            if hint {
                eprintln!("{}", error_hint("job action"));
            }
            return 1;
        }
    };
    let meta = Meta::from_flags(&fs);
    let mut client = meta.client();
    let job_id = match resolve_job(&mut client, &meta, &opts.job) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if opts.all {
        return run_all(&client, &meta, &opts, &job_id);
    }
    let alloc = if opts.alloc.is_empty() {
        let stub = match random_job_alloc(&client, &job_id, &opts.group) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("Error fetching allocations: {e}");
                return 1;
            }
        };
        match fetch_alloc(&client, &stub) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    } else {
        match alloc_by_prefix(
            &client,
            &opts.alloc,
            false,
            SHORT_ID,
            "Alloc ID must contain at least two characters",
        ) {
            Ok(AllocLookup::Found(a)) => *a,
            Ok(AllocLookup::Multiple(t)) => {
                eprintln!("{t}");
                return 1;
            }
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    };
    if alloc.job_id != job_id {
        eprintln!(
            "Allocation {} belongs to job {:?}, not {job_id:?}",
            limit(&alloc.id, SHORT_ID),
            alloc.job_id
        );
        return 1;
    }
    if !opts.group.is_empty() && alloc.task_group != opts.group {
        eprintln!(
            "Allocation {} belongs to task group {:?}, not {:?} (-alloc and -group conflict)",
            limit(&alloc.id, SHORT_ID),
            alloc.task_group,
            opts.group
        );
        return 1;
    }
    let task = match choose_task(&opts.task, &alloc) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if let Err(e) = check_action(&alloc, &task, &opts.action) {
        eprintln!("{e}");
        return 1;
    }
    let spec = match session_spec(
        &client,
        &meta,
        &alloc,
        &format!("/v1/job/{}/action", path_escape(&job_id)),
        &action_query(&opts, &alloc, &task, opts.tty),
        (opts.tty, opts.stdin, opts.escape),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("failed to exec into task: {e}");
            return 1;
        }
    };
    run_session(&spec)
}

/// `-all`: one session per running allocation of the group, concurrently.
fn run_all(client: &Client, meta: &Meta, opts: &ActionOpts, job_id: &str) -> i32 {
    let stubs: Vec<AllocListStub> = match client.get(
        &format!("/v1/job/{}/allocations", path_escape(job_id)),
        &[("all", "false".to_string())],
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error fetching allocations: {e}");
            return 1;
        }
    };
    let mut running: Vec<AllocListStub> = stubs
        .into_iter()
        .filter(|a| a.task_group == opts.group && a.client_status == "running")
        .collect();
    running.sort_by(|a, b| a.id.cmp(&b.id));
    if running.is_empty() {
        eprintln!(
            "Error fetching allocations: task group {:?} of job {job_id:?} has no running allocations",
            opts.group
        );
        return 1;
    }
    let mut specs = Vec::new();
    for stub in &running {
        let alloc = match fetch_alloc(client, stub) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        if let Err(e) =
            choose_task(&opts.task, &alloc).and_then(|t| check_action(&alloc, &t, &opts.action))
        {
            eprintln!("{e}");
            return 1;
        }
        let spec = session_spec(
            client,
            meta,
            &alloc,
            &format!("/v1/job/{}/action", path_escape(job_id)),
            &action_query(opts, &alloc, &opts.task, false),
            (false, false, None),
        );
        match spec {
            Ok(mut s) => {
                let prefix = format!("{}: ", limit(&alloc.id, SHORT_ID));
                s.output = OutputMode::Prefixed(prefix.clone());
                specs.push((prefix, s));
            }
            Err(e) => {
                eprintln!("failed to exec into task: {e}");
                return 1;
            }
        }
    }
    let handles: Vec<_> = specs
        .into_iter()
        .map(|(prefix, s)| {
            std::thread::spawn(move || match exec_client::run(&s) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("{prefix}failed to exec into task: {e}");
                    1
                }
            })
        })
        .collect();
    let codes: Vec<i32> = handles.into_iter().map(|h| h.join().unwrap_or(1)).collect();
    combined_exit_code(&codes)
}

/// 0 when all are 0, else the first non-zero.
pub fn combined_exit_code(codes: &[i32]) -> i32 {
    codes.iter().copied().find(|c| *c != 0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nomad_structs::Action;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn parse(v: &[&str]) -> Result<ActionOpts, (String, bool)> {
        let mut fs = flags(false);
        let rest = fs.parse(&args(v)).map_err(|e| (format!("{e:?}"), false))?;
        check_opts(&fs, &rest)
    }

    #[test]
    fn flag_rules() {
        assert_eq!(
            parse(&["-job", "j"]).unwrap_err().0,
            "This command takes one argument: <action>"
        );
        assert_eq!(
            parse(&["act"]).unwrap_err(),
            ("A job ID is required".into(), true)
        );
        assert_eq!(
            parse(&["-job", "j", "act"]).unwrap_err().0,
            "A group name is required if no allocation is provided"
        );
        assert_eq!(
            parse(&["-job", "j", "-group", "g", "act"]).unwrap_err().0,
            "A task name is required if no allocation is provided"
        );
        let o = parse(&["-job", "j", "-group", "g", "-task", "t", "act"]).unwrap();
        assert_eq!(
            (
                o.job.as_str(),
                o.group.as_str(),
                o.task.as_str(),
                o.action.as_str()
            ),
            ("j", "g", "t", "act")
        );
        assert!(o.stdin && !o.all);
        let o = parse(&["-job", "j", "-alloc", "abcd", "act"]).unwrap();
        assert_eq!(o.alloc, "abcd");
        assert_eq!(
            parse(&["-job", "j", "-alloc", "abcd", "-all", "act"])
                .unwrap_err()
                .0,
            "-all and -alloc cannot be used together"
        );
        let o = parse(&[
            "-job", "j", "-group", "g", "-task", "t", "-all", "-t", "act",
        ])
        .unwrap();
        assert!(o.all && !o.tty && !o.stdin);
    }

    #[test]
    fn unknown_action_lists_declared() {
        let mut a = crate::commands::alloc::tests_support::alloc_with_tasks(&["web"]);
        if let Some(j) = a.job.as_mut() {
            j.task_groups[0].tasks[0].actions = Some(vec![
                Action {
                    name: "date".into(),
                    command: "/bin/date".into(),
                    args: None,
                },
                Action {
                    name: "env".into(),
                    command: "env".into(),
                    args: None,
                },
            ]);
        }
        assert!(check_action(&a, "web", "date").is_ok());
        assert_eq!(
            check_action(&a, "web", "nope").unwrap_err(),
            "Action \"nope\" not found in task \"web\". The task declares:\n  * date\n  * env"
        );
        let b = crate::commands::alloc::tests_support::alloc_with_tasks(&["web"]);
        assert_eq!(
            check_action(&b, "web", "x").unwrap_err(),
            "Action \"x\" not found: task \"web\" declares no actions"
        );
    }

    #[test]
    fn combined_code() {
        assert_eq!(combined_exit_code(&[0, 0]), 0);
        assert_eq!(combined_exit_code(&[0, 3, 1]), 3);
        assert_eq!(combined_exit_code(&[]), 0);
    }
}
