//! `nomad alloc signal`: send a signal to one task or to every task of an allocation.

use crate::api::path_escape;
use crate::commands::alloc::{client_for, single_alloc, validate_task_exists};
use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::format::{FULL_ID, SHORT_ID};
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad alloc signal [options] <allocation> <task>

  Sends a signal to the tasks of an allocation: to <task> when given, else to
  every task of the allocation.

  With ACLs on, the token needs 'alloc-lifecycle', 'read-job' and 'list-jobs'
  in the allocation's namespace.",
        "Signal Options:

  -s <signal>
    The signal to send, e.g. SIGUSR1 or SIGHUP. Defaults to SIGKILL.

  -task <task-name>
    The task to signal; wins over the <task> argument.

  -verbose
    Print full IDs.",
    )
}

/// The body of `PUT /v1/client/allocation/<id>/signal`.
pub fn signal_body(task: &str, signal: &str) -> serde_json::Value {
    serde_json::json!({"Task": task, "Signal": signal})
}

/// Checks the positional arguments: one or two.
pub fn check_args(rest: &[String]) -> Result<(), String> {
    if rest.is_empty() || rest.len() > 2 {
        return Err("This command takes up to two arguments: <alloc-id> <task>".to_string());
    }
    Ok(())
}

/// Runs `nomad alloc signal`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("verbose", false)
        .string("s", "SIGKILL")
        .string("task", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Err(e) = check_args(&rest) {
        eprintln!("{e}");
        eprintln!("{}", error_hint("alloc signal"));
        return 1;
    }
    let verbose = fs.get_bool("verbose");
    let length = if verbose { FULL_ID } else { SHORT_ID };
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    let alloc = match single_alloc(&client, &rest[0], verbose, length) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut task = fs.get_str("task");
    if task.is_empty() && rest.len() >= 2 {
        task = rest[1].clone();
    }
    if !task.is_empty() {
        if let Err(e) = validate_task_exists(&task, &alloc) {
            eprintln!("{e}");
            return 1;
        }
    }
    let client = client_for(&client, &alloc);
    let res: Result<serde_json::Value, _> = client.put(
        &format!("/v1/client/allocation/{}/signal", path_escape(&alloc.id)),
        &[],
        &signal_body(&task, &fs.get_str("s")),
    );
    if let Err(e) = res {
        eprintln!("Error signalling allocation: {e}");
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
    fn arguments() {
        assert!(check_args(&args(&["ab"])).is_ok());
        assert!(check_args(&args(&["ab", "web"])).is_ok());
        assert_eq!(
            check_args(&args(&[])).unwrap_err(),
            "This command takes up to two arguments: <alloc-id> <task>"
        );
        assert!(check_args(&args(&["a", "b", "c"])).is_err());
    }

    #[test]
    fn flags_and_body() {
        let mut fs = client_flags();
        fs.bool("verbose", false)
            .string("s", "SIGKILL")
            .string("task", "");
        let rest = fs
            .parse(&args(&["-s", "SIGUSR1", "-task=web", "abcd"]))
            .unwrap();
        assert_eq!(rest, args(&["abcd"]));
        assert_eq!(
            signal_body(&fs.get_str("task"), &fs.get_str("s")),
            serde_json::json!({"Task": "web", "Signal": "SIGUSR1"})
        );
        let mut fs2 = client_flags();
        fs2.string("s", "SIGKILL");
        fs2.parse(&args(&["abcd"])).unwrap();
        assert_eq!(fs2.get_str("s"), "SIGKILL");
    }

    #[test]
    fn help_mentions_flags() {
        let h = help();
        for f in ["-s <signal>", "-task <task-name>", "-verbose", "-address"] {
            assert!(h.contains(f), "{f}");
        }
    }
}
