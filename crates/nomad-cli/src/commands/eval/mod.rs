//! `nomad eval <subcommand>`.

pub mod list;
pub mod status;

/// Dispatches `nomad eval ...`.
pub fn run(args: &[String]) -> i32 {
    const HELP: &str = "Usage: nomad eval <subcommand> [options] [args]\n\n  Inspect evaluations.\n\nSubcommands:\n    list      List evaluations\n    status    Show an evaluation's status\n";
    match args.first().map(String::as_str) {
        Some("list") => list::run(&args[1..]),
        Some("status") => status::run(&args[1..]),
        Some("-h" | "-help" | "--help") => {
            outln!("{}", HELP.trim_end());
            0
        }
        _ => {
            eprintln!("{}", HELP.trim_end());
            1
        }
    }
}
