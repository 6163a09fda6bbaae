//! `nomad status [<id>]`: job status for jobs, and a pointer to the right command otherwise.

use crate::commands::job;

/// Runs `nomad status`. Without an argument it lists jobs; with one it shows the job of that
/// ID (prefix). Other resource kinds are not searched yet.
pub fn run(args: &[String]) -> i32 {
    job::status::run_named(args, "status")
}
