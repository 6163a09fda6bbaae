//! `nomad job <subcommand>`.

pub mod action;
pub mod history;
pub mod init;
pub mod inspect;
pub mod revert;
pub mod run;
pub mod scale;
pub mod status;
pub mod stop;
pub mod validate;

const HELP: &str = "Usage: nomad job <subcommand> [options] [args]

  Work with jobs: register, inspect, stop and watch them.

Subcommands:
    action      Run an action declared by a task of the job
    history     Show the versions the cluster keeps of a job
    init        Write an example job file
    inspect     Print a registered job as JSON
    revert      Revert a job to one of its kept versions
    run         Register a job and watch its evaluation
    scale       Change the count of a task group
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
        "history" => history::run(rest),
        "revert" => revert::run(rest),
        "scale" => scale::run(rest),
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
