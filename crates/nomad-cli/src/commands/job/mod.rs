//! `nomad job <subcommand>`.

pub mod action;
pub mod init;
pub mod inspect;
pub mod run;
pub mod status;
pub mod stop;
pub mod validate;

const HELP: &str = "Usage: nomad job <subcommand> [options] [args]

  Work with jobs: register, inspect, stop and watch them.

Subcommands:
    action      Run an action declared by a task of the job
    init        Write an example job file
    inspect     Print a registered job as JSON
    run         Register a job and watch its evaluation
    status      Show the status of jobs
    stop        Stop a running job
    validate    Check a job file for errors
";

/// Dispatches `nomad job ...`.
pub fn run(args: &[String]) -> i32 {
    let Some(sub) = args.first() else {
        eprintln!("{}", HELP.trim_end());
        return 1;
    };
    let rest = &args[1..];
    match sub.as_str() {
        "action" => action::run(rest),
        "run" => run::run(rest),
        "status" => status::run(rest),
        "stop" => stop::run(rest),
        "init" => init::run(rest),
        "validate" => validate::run(rest),
        "inspect" => inspect::run(rest),
        "-h" | "-help" | "--help" => {
            outln!("{}", HELP.trim_end());
            0
        }
        other => {
            eprintln!("Unknown job subcommand {other:?}\n\n{}", HELP.trim_end());
            1
        }
    }
}
