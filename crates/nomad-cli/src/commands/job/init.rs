//! `nomad job init`: write an example job file.

use std::io::Write;

use crate::commands::{error_hint, parse_flags};
use crate::goflag::FlagSet;

/// The default example job (Nomad's content, our comments).
pub const EXAMPLE_JOB: &str = include_str!("example.nomad.hcl");
/// The `-short` example job.
pub const EXAMPLE_JOB_SHORT: &str = include_str!("example-short.nomad.hcl");
/// Default output file name.
pub const DEFAULT_FILE: &str = "example.nomad.hcl";

const HELP: &str = "Usage: nomad job init [options] [<filename>]
Alias: nomad init

  Writes an example job file to <filename> (default example.nomad.hcl) as a
  starting point for a new job.

Init Options:

  -short
    Write the example without comments and optional blocks.

  -connect
    Write the Consul Connect variant (not available in this build).
";

/// Runs `nomad job init`.
pub fn run(args: &[String]) -> i32 {
    let mut fs = FlagSet::new();
    fs.bool("short", false)
        .bool("connect", false)
        .string("template", "")
        .bool("list-templates", false);
    let rest = match parse_flags(&mut fs, args, HELP) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.len() > 1 {
        eprintln!("This command takes either no arguments or one: <filename>");
        eprintln!("{}", error_hint("job init"));
        return 1;
    }
    if fs.get_bool("connect") || !fs.get_str("template").is_empty() || fs.get_bool("list-templates")
    {
        eprintln!("Connect examples and job templates are not supported by this build");
        return 1;
    }
    let filename = rest
        .first()
        .cloned()
        .unwrap_or_else(|| DEFAULT_FILE.to_string());
    match std::fs::symlink_metadata(&filename) {
        Ok(_) => {
            eprintln!("Job '{filename}' already exists");
            return 1;
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("Failed to stat '{filename}': {e}");
            return 1;
        }
        Err(_) => {}
    }
    let content = if fs.get_bool("short") {
        EXAMPLE_JOB_SHORT
    } else {
        EXAMPLE_JOB
    };
    if let Err(e) = write_file(&filename, content) {
        eprintln!("Failed to write '{filename}': {e}");
        return 1;
    }
    outln!("Example job file written to {filename}");
    0
}

fn write_file(path: &str, content: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o660);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_mentions_key_settings() {
        for needle in [
            "job \"example\"",
            "datacenters = [\"*\"]",
            "group \"cache\"",
            "image          = \"redis:7\"",
            "to = 6379",
        ] {
            assert!(EXAMPLE_JOB.contains(needle), "{needle}");
        }
    }

    #[test]
    fn examples_parse_with_jobspec() {
        let opts = nomad_jobspec::ParseOptions {
            filename: DEFAULT_FILE.into(),
            strict: true,
            ..Default::default()
        };
        let job = nomad_jobspec::parse_job(EXAMPLE_JOB, &opts).expect("example parses");
        assert_eq!(job.id, "example");
        assert_eq!(job.task_groups[0].name, "cache");
        assert_eq!(job.task_groups[0].count, Some(1));
        assert_eq!(job.task_groups[0].tasks[0].name, "redis");
        assert_eq!(job.task_groups[0].tasks[0].driver, "docker");
        let short =
            nomad_jobspec::parse_job(EXAMPLE_JOB_SHORT, &opts).expect("short example parses");
        assert_eq!(short.task_groups[0].tasks[0].name, "redis");
    }
}
