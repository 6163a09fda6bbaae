//! `nomad node <subcommand>`.

pub mod drain;
pub mod eligibility;
pub mod status;

const HELP: &str = "Usage: nomad node <subcommand> [options] [args]

  Inspect client nodes.

Subcommands:
    drain          Drain a node: migrate its allocations elsewhere
    eligibility    Mark a node eligible or ineligible for new allocations
    status         Show nodes and their allocations
";

/// Dispatches `nomad node ...`.
pub fn run(args: &[String]) -> i32 {
    let Some(sub) = args.first() else {
        eprintln!("{}", HELP.trim_end());
        return 1;
    };
    match sub.as_str() {
        "status" => status::run(&args[1..]),
        "eligibility" => eligibility::run(&args[1..]),
        "drain" => drain::run(&args[1..]),
        "-h" | "-help" | "--help" => {
            outln!("{}", HELP.trim_end());
            0
        }
        other => {
            eprintln!("Unknown node subcommand {other:?}\n\n{}", HELP.trim_end());
            1
        }
    }
}
