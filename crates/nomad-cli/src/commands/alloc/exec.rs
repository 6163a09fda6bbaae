//! `nomad alloc exec` (alias `nomad exec`): run a command inside a running allocation's task,
//! interactively (with a tty) or scripted; exits with the command's exit code.

use nomad_structs::{AllocListStub, Allocation};

use crate::api::{path_escape, Client};
use crate::commands::alloc::logs::lookup_task;
use crate::commands::alloc::{alloc_by_prefix, client_for, validate_task_exists, AllocLookup};
use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::escape::parse_escape_char;
use crate::exec_client::{self, OutputMode, SessionSpec};
use crate::format::SHORT_ID;
use crate::goflag::FlagSet;
use crate::meta::Meta;
use crate::terminal;

fn help() -> String {
    with_general(
        "Usage: nomad alloc exec [options] <allocation> <command> [<args>...]

  Runs a command inside the environment of an allocation's task and streams its
  input and output. Exits with the command's exit code.

  When ACLs are enabled, the token needs 'alloc-exec', 'read-job' and
  'list-jobs' in the allocation's namespace; for drivers without file system
  isolation (such as 'raw_exec') 'alloc-node-exec' instead of 'alloc-exec'.",
        "Exec Options:

  -task <task-name>
    The task to run the command in. Needed when the allocation runs several
    tasks.

  -job
    Treat <allocation> as a job ID and use a random running allocation of it.

  -group <group-name>
    With -job, pick the allocation from this task group.

  -i
    Pass stdin to the command (default true). -i=false closes its stdin.

  -t
    Allocate a pseudo-terminal. Defaults to true when stdin and stdout are
    terminals. -t=false disables it.

  -e <escape_char>
    The escape character of tty sessions (default '~'). It is recognised at the
    start of a line only; followed by '.' it closes the connection, typed twice
    it sends itself once. 'none' disables escapes.",
    )
}

/// Parsed `alloc exec` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOpts {
    /// `-job`: the first argument is a job.
    pub job: bool,
    /// `-task`.
    pub task: String,
    /// `-group`.
    pub group: String,
    /// `-i`.
    pub stdin: bool,
    /// `-t`.
    pub tty: bool,
    /// `-e` (None = disabled).
    pub escape: Option<u8>,
    /// Alloc ID prefix or job ID.
    pub target: String,
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// Expands Docker-style combined flags `-it` / `-ti` before the first positional argument.
pub fn expand_combined(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut flags_done = false;
    for a in args {
        if !flags_done && matches!(a.as_str(), "-it" | "-ti" | "--it" | "--ti") {
            out.push("-i".to_string());
            out.push("-t".to_string());
            continue;
        }
        if !flags_done && (a == "--" || !a.starts_with('-') || a.len() < 2) {
            flags_done = true;
        }
        out.push(a.clone());
    }
    out
}

/// Registers the exec flags (shared with `job action`).
pub fn register_session_flags(fs: &mut FlagSet, default_tty: bool) {
    fs.bool("i", true)
        .bool("t", default_tty)
        .string("e", "~")
        .string("task", "")
        .string("group", "");
}

/// Checks `-t` needs `-i` and parses `-e` (Nomad's messages).
pub fn session_flags(fs: &FlagSet) -> Result<(bool, bool, Option<u8>), String> {
    let (stdin, tty) = (fs.get_bool("i"), fs.get_bool("t"));
    if tty && !stdin {
        return Err("-i must be enabled if running with tty".to_string());
    }
    let escape = parse_escape_char(&fs.get_str("e"))?;
    Ok((stdin, tty, escape))
}

/// Validates the positional arguments; `Err((message, show_hint))`.
pub fn check_opts(fs: &FlagSet, rest: &[String]) -> Result<ExecOpts, (String, bool)> {
    let job = fs.get_bool("job");
    if rest.is_empty() {
        let m = if job {
            "A job ID is required"
        } else {
            "An allocation ID is required"
        };
        return Err((m.to_string(), true));
    }
    if !job && rest[0].len() == 1 {
        return Err((
            "Alloc ID must contain at least two characters".to_string(),
            false,
        ));
    }
    if rest.len() < 2 {
        return Err(("A command is required".to_string(), true));
    }
    let (stdin, tty, escape) = session_flags(fs).map_err(|e| (e, false))?;
    Ok(ExecOpts {
        job,
        task: fs.get_str("task"),
        group: fs.get_str("group"),
        stdin,
        tty,
        escape,
        target: rest[0].clone(),
        command: rest[1..].to_vec(),
    })
}

/// Picks an allocation of `job` as Nomad does: uniformly among the running ones (of `group`
/// when given), else among all.
pub fn random_job_alloc(client: &Client, job: &str, group: &str) -> Result<AllocListStub, String> {
    let allocs: Vec<AllocListStub> = client
        .get(
            &format!("/v1/job/{}/allocations", path_escape(job)),
            &[("all", "false".to_string())],
        )
        .map_err(|e| e.to_string())?;
    if allocs.is_empty() {
        return Err(format!(
            "job {job:?} doesn't exist or it has no allocations"
        ));
    }
    let allocs: Vec<AllocListStub> = if group.is_empty() {
        allocs
    } else {
        let g: Vec<_> = allocs
            .into_iter()
            .filter(|a| a.task_group == group)
            .collect();
        if g.is_empty() {
            return Err(format!(
                "task group {group:?} doesn't exist or it has no allocations"
            ));
        }
        g
    };
    let running: Vec<&AllocListStub> = allocs
        .iter()
        .filter(|a| a.client_status == "running")
        .collect();
    let pool: Vec<&AllocListStub> = if running.is_empty() {
        allocs.iter().collect()
    } else {
        running
    };
    Ok(pool[pseudo_random(pool.len())].clone())
}

/// An index below `n` from the clock and pid (no RNG dependency needed for this).
fn pseudo_random(n: usize) -> usize {
    let t = crate::format::now_nanos().unsigned_abs();
    let mix = t ^ (u64::from(std::process::id()) << 17);
    (mix.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % n.max(1)
}

/// Fetches the full allocation of a stub (in its namespace).
pub fn fetch_alloc(client: &Client, stub: &AllocListStub) -> Result<Allocation, String> {
    let mut c = client.clone();
    if !stub.namespace.is_empty() {
        c.set_namespace(&stub.namespace);
    }
    c.get(&format!("/v1/allocation/{}", path_escape(&stub.id)), &[])
        .map_err(|e| format!("Error querying allocation: {e}"))
}

/// Picks the task: `-task` if it exists, else the group's only task (Nomad's wording).
pub fn choose_task(task: &str, alloc: &Allocation) -> Result<String, String> {
    if task.is_empty() {
        lookup_task(alloc)
    } else {
        validate_task_exists(task, alloc).map(|()| task.to_string())
    }
}

/// The session of `path` with `query` on the agent `meta` names, in the alloc's namespace;
/// the last argument is (tty, forward stdin, escape character).
pub fn session_spec(
    client: &Client,
    meta: &Meta,
    alloc: &Allocation,
    path: &str,
    query: &[(&str, String)],
    (tty, stdin, escape): (bool, bool, Option<u8>),
) -> Result<SessionSpec, String> {
    let c = client_for(client, alloc);
    Ok(SessionSpec {
        url: exec_client::ws_url(&c.url(path, query))?,
        token: meta.token.clone(),
        http_auth: std::env::var("NOMAD_HTTP_AUTH").unwrap_or_default(),
        tty,
        stdin,
        escape,
        output: OutputMode::Direct,
    })
}

/// Runs a session, printing errors as Nomad does; returns the process exit code.
pub fn run_session(spec: &SessionSpec) -> i32 {
    match exec_client::run(spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("failed to exec into task: {e}");
            1
        }
    }
}

/// Runs `nomad alloc exec`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let args = expand_combined(args);
    let mut fs = client_flags();
    fs.bool("job", false);
    register_session_flags(&mut fs, terminal::stdin_and_stdout_are_terminals());
    let rest = match parse_flags(&mut fs, &args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let opts = match check_opts(&fs, &rest) {
        Ok(o) => o,
        Err((msg, hint)) => {
            eprintln!("{msg}");
            if hint {
                eprintln!("{}", error_hint("alloc exec"));
            }
            return 1;
        }
    };
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    let alloc = if opts.job {
        let stub = match random_job_alloc(&client, &opts.target, &opts.group) {
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
            &opts.target,
            false,
            SHORT_ID,
            "Alloc ID must contain at least two characters",
        ) {
            Ok(AllocLookup::Found(a)) => *a,
            Ok(AllocLookup::Multiple(table)) => {
                eprintln!("{table}");
                return 1;
            }
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    };
    let task = match choose_task(&opts.task, &alloc) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let command = serde_json::to_string(&opts.command).expect("strings serialize");
    let spec = match session_spec(
        &client.for_node(&alloc.node_id),
        &meta,
        &alloc,
        &format!("/v1/client/allocation/{}/exec", path_escape(&alloc.id)),
        &[
            ("command", command),
            ("task", task),
            ("tty", opts.tty.to_string()),
        ],
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn parse(v: &[&str], default_tty: bool) -> Result<ExecOpts, (String, bool)> {
        let mut fs = client_flags();
        fs.bool("job", false);
        register_session_flags(&mut fs, default_tty);
        let rest = fs
            .parse(&expand_combined(&args(v)))
            .map_err(|e| (format!("{e:?}"), false))?;
        check_opts(&fs, &rest)
    }

    #[test]
    fn flags_and_defaults() {
        let o = parse(&["abcd", "/bin/sh", "-c", "echo hi"], false).unwrap();
        assert!(o.stdin && !o.tty && !o.job);
        assert_eq!(o.escape, Some(b'~'));
        assert_eq!(o.command, args(&["/bin/sh", "-c", "echo hi"]));
        // Flags after the alloc belong to the command.
        let o = parse(&["-task", "web", "abcd", "ls", "-la"], true).unwrap();
        assert_eq!(o.task, "web");
        assert!(o.tty);
        assert_eq!(o.command, args(&["ls", "-la"]));
        let o = parse(&["-it", "-e", "none", "abcd", "sh"], false).unwrap();
        assert!(o.stdin && o.tty);
        assert_eq!(o.escape, None);
        let o = parse(&["-i=true", "-t=false", "abcd", "cat"], true).unwrap();
        assert!(o.stdin && !o.tty);
        let o = parse(&["-job", "-group", "g", "myjob", "env"], false).unwrap();
        assert!(o.job);
        assert_eq!((o.target.as_str(), o.group.as_str()), ("myjob", "g"));
    }

    #[test]
    fn validation_messages() {
        assert_eq!(
            parse(&[], false).unwrap_err(),
            ("An allocation ID is required".into(), true)
        );
        assert_eq!(
            parse(&["-job"], false).unwrap_err(),
            ("A job ID is required".into(), true)
        );
        assert_eq!(
            parse(&["a", "ls"], false).unwrap_err().0,
            "Alloc ID must contain at least two characters"
        );
        // A one-character job ID is fine.
        assert!(parse(&["-job", "j", "ls"], false).is_ok());
        assert_eq!(
            parse(&["abcd"], false).unwrap_err(),
            ("A command is required".into(), true)
        );
        assert_eq!(
            parse(&["-i=false", "-t", "abcd", "sh"], false)
                .unwrap_err()
                .0,
            "-i must be enabled if running with tty"
        );
        assert_eq!(
            parse(&["-e", "ab", "abcd", "sh"], false).unwrap_err().0,
            "-e requires 'none' or a single character"
        );
    }

    #[test]
    fn combined_flags_stop_at_positionals() {
        assert_eq!(
            expand_combined(&args(&["-it", "abcd", "-it"])),
            args(&["-i", "-t", "abcd", "-it"])
        );
    }

    #[test]
    fn task_choice() {
        let one = crate::commands::alloc::tests::alloc_with_tasks(&["web"]);
        assert_eq!(choose_task("", &one).unwrap(), "web");
        let two = crate::commands::alloc::tests::alloc_with_tasks(&["web", "db"]);
        let e = choose_task("", &two).unwrap_err();
        assert!(e.contains("  * web\n  * db\n"), "{e}");
        assert!(e.ends_with("Please specify the task."), "{e}");
        assert_eq!(choose_task("db", &two).unwrap(), "db");
        assert!(choose_task("nope", &two).is_err());
    }

    #[test]
    fn random_index_in_range() {
        for n in 1..20 {
            assert!(pseudo_random(n) < n);
        }
    }
}
