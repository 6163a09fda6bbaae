//! The `nomad` command line: a Nomad-compatible CLI over the HTTP API, plus `nomad agent`.
//!
//! Each subcommand lives in `commands/` and parses its own flags with Go `flag` rules
//! (`goflag`); general options (`meta`) are added to every API command; `api` is the typed
//! HTTP client. Exit codes follow Nomad: 0 ok, 1 error, 2 placement failures (job run/stop).
#![forbid(unsafe_code)]

/// `println!` that ignores a closed stdout (e.g. `nomad job run -output x | head`) instead of panicking.
macro_rules! outln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod api;
mod color;
mod commands;
mod escape;
mod exec_client;
mod format;
mod goflag;
mod interrupt;
mod jobfile;
mod meta;
mod monitor;
mod terminal;

use commands::{
    acl, alloc, eval, job, namespace, node, operator, server, status, tls, var, version,
};

const HELP: &str = "Usage: nomad [-version] [-help] <command> [args]

Common commands:
    run         Register a job and watch it being scheduled
    stop        Stop a running job
    status      Show the status of jobs
    alloc       Work with allocations
    job         Work with jobs
    node        Work with client nodes
    agent       Run a Nomad agent
    server      Work with servers

Other commands:
    acl         Interact with ACL policies and tokens
    eval        Work with evaluations
    exec        Execute commands in a task
    fs          Inspect the files of an allocation
    init        Write an example job file
    inspect     Print a registered job as JSON
    logs        Stream the logs of a task
    namespace   Interact with namespaces
    operator    Cluster operations (Raft peers, snapshots)
    tls         Generate self-signed TLS certificates
    validate    Check a job file for errors
    var         Interact with variables
    version     Print the Nomad version
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = dispatch(&args);
    std::process::exit(code);
}

#[cfg(feature = "agent")]
fn run_agent(args: &[String]) -> i32 {
    nomad_agent::cli::run(args.to_vec())
}

#[cfg(feature = "agent")]
fn run_exit_recorder(args: &[String]) -> i32 {
    nomad_agent::cli::run_exit_recorder(args)
}

#[cfg(not(feature = "agent"))]
fn run_exit_recorder(_args: &[String]) -> i32 {
    eprintln!("agent not built");
    1
}

#[cfg(not(feature = "agent"))]
fn run_agent(_args: &[String]) -> i32 {
    eprintln!("agent not built");
    1
}

fn dispatch(args: &[String]) -> i32 {
    let Some(cmd) = args.first() else {
        eprintln!("{}", HELP.trim_end());
        return 1;
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "-h" | "-help" | "--help" | "help" => {
            outln!("{}", HELP.trim_end());
            0
        }
        "-v" | "-version" | "--version" | "version" => version::run(rest),
        "agent" => run_agent(rest),
        // Hidden: started by the agent's drivers as each task's parent.
        "exit-recorder" => run_exit_recorder(rest),
        "job" => job::run(rest),
        "alloc" => alloc::run(rest),
        "node" => node::run(rest),
        "eval" => eval::run(rest),
        "acl" => acl::run(rest),
        "namespace" => namespace::run(rest),
        "var" => var::run(rest),
        "operator" => operator::run(rest),
        "server" => server::run(rest),
        "server-members" => server::members(rest),
        "tls" => tls::run(rest),
        "run" => job::run::run(rest),
        "stop" => job::stop::run(rest),
        "status" => status::run(rest),
        "init" => job::init::run(rest),
        "validate" => job::validate::run(rest),
        "inspect" => job::inspect::run(rest),
        "logs" => alloc::logs::run(rest),
        "fs" => alloc::fs::run(rest),
        "alloc-status" => alloc::status::run(rest),
        "node-status" => node::status::run(rest),
        "eval-status" => eval::status::run(rest),
        "exec" => alloc::exec::run(rest),
        other => {
            eprintln!("Unknown command: {other:?}\n\n{}", HELP.trim_end());
            127
        }
    }
}
