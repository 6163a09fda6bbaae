//! `nomad alloc fs` (alias `nomad fs`): list a directory of an allocation, print a file
//! (`cat`, `-tail`, `-f` over the stream endpoint) or show a file's stat.

use std::io::{Read, Write};

use serde::Deserialize;

use crate::api::{path_escape, Client};
use crate::commands::alloc::logs::{decode_frames, last_lines, print_tail, spawn_reader};
use crate::commands::alloc::{client_for, single_alloc};
use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::format::{format_list, format_unix_nanos, ibytes, FULL_ID, SHORT_ID};
use crate::meta::Meta;

const DEFAULT_TAIL_LINES: i64 = 10;
const BYTES_TO_LINES: i64 = 120;

fn help() -> String {
    with_general(
        "Usage: nomad alloc fs [options] <allocation> <path>
Alias: nomad fs

  Lists the directory or prints the file at <path> in an allocation's
  directory. <path> is relative to the allocation directory and defaults to
  its root.

  With ACLs on, the token needs 'read-fs', 'read-job' and 'list-jobs' in the
  allocation's namespace.",
        "FS Options:

  -H
    Print sizes in bytes rather than human units.

  -verbose
    Print full IDs.

  -job
    Treat the first argument as a job ID and use one of its allocations
    (a running one when there is one).

  -stat
    Print the file's stat line instead of its contents or listing.

  -f
    Keep printing the file as it grows instead of stopping at its end.

  -tail
    Print the end of the file (10 lines unless -n or -c is given).

  -n <lines>
    With -tail, roughly how many lines from the end to print.

  -c <bytes>
    With -tail, how many bytes from the end to print.",
    )
}

/// One entry of `/v1/client/fs/ls` and the answer of `/v1/client/fs/stat`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AllocFileInfo {
    /// Base name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Whether it is a directory.
    #[serde(rename = "IsDir")]
    pub is_dir: bool,
    /// Size in bytes.
    #[serde(rename = "Size")]
    pub size: i64,
    /// Go `FileMode` string, e.g. `-rw-r--r--`.
    #[serde(rename = "FileMode")]
    pub file_mode: String,
    /// RFC 3339 modification time.
    #[serde(rename = "ModTime")]
    pub mod_time: String,
    /// Detected content type (stat only).
    #[serde(rename = "ContentType")]
    pub content_type: Option<String>,
}

impl AllocFileInfo {
    fn display_name(&self) -> String {
        if self.is_dir {
            format!("{}/", self.name)
        } else {
            self.name.clone()
        }
    }

    fn display_size(&self, machine: bool) -> String {
        if machine {
            self.size.to_string()
        } else {
            ibytes(self.size.max(0).unsigned_abs())
        }
    }

    fn display_time(&self) -> String {
        nomad_structs::parse_rfc3339_nanos(&self.mod_time)
            .map(format_unix_nanos)
            .unwrap_or_default()
    }
}

/// The directory listing table (`Mode  Size  Modified Time  Name`).
pub fn format_listing(files: &[AllocFileInfo], machine: bool) -> String {
    let mut rows = vec!["Mode|Size|Modified Time|Name".to_string()];
    for f in files {
        rows.push(format!(
            "{}|{}|{}|{}",
            f.file_mode,
            f.display_size(machine),
            f.display_time(),
            f.display_name()
        ));
    }
    format_list(&rows)
}

/// The `-stat` table (`Mode  Size  Modified Time  Content Type  Name`).
pub fn format_stat(f: &AllocFileInfo, machine: bool) -> String {
    format_list(&[
        "Mode|Size|Modified Time|Content Type|Name".to_string(),
        format!(
            "{}|{}|{}|{}|{}",
            f.file_mode,
            f.display_size(machine),
            f.display_time(),
            f.content_type.as_deref().unwrap_or_default(),
            f.display_name()
        ),
    ])
}

/// Where `-tail` starts: `(bytes back from the end, lines to keep or -1)`, capped at `size`.
pub fn tail_window(n_lines: i64, n_bytes: i64, size: i64) -> Result<(i64, i64), String> {
    let (n, c) = (n_lines != -1, n_bytes != -1);
    if n && c {
        return Err("Both -n and -c are not allowed".to_string());
    }
    if n_lines < -1 || n_bytes < -1 {
        return Err("Invalid size is specified".to_string());
    }
    let (offset, lines) = if n {
        (n_lines * BYTES_TO_LINES, n_lines)
    } else if c {
        (n_bytes, -1)
    } else {
        (DEFAULT_TAIL_LINES * BYTES_TO_LINES, DEFAULT_TAIL_LINES)
    };
    Ok((offset.min(size.max(0)), lines))
}

/// Checks the positional arguments and returns the path (`/` by default).
pub fn check_args(rest: &[String], job: bool) -> Result<String, String> {
    if rest.is_empty() {
        return Err(if job {
            "A job ID is required".to_string()
        } else {
            "An allocation ID is required".to_string()
        });
    }
    if rest.len() > 2 {
        return Err("This command takes one or two arguments: <allocation> [<path>]".to_string());
    }
    Ok(rest.get(1).cloned().unwrap_or_else(|| "/".to_string()))
}

/// A random allocation of `job` (ID taken verbatim), preferring running ones.
fn random_job_alloc(client: &Client, job: &str) -> Result<String, String> {
    let allocs: Vec<nomad_structs::AllocListStub> = client
        .get(&format!("/v1/job/{}/allocations", path_escape(job)), &[])
        .map_err(|e| format!("error querying job {job:?}: {e}"))?;
    if allocs.is_empty() {
        return Err(format!(
            "job {job:?} doesn't exist or it has no allocations"
        ));
    }
    let running: Vec<_> = allocs
        .iter()
        .filter(|a| a.client_status == "running")
        .collect();
    let pool: Vec<_> = if running.is_empty() {
        allocs.iter().collect()
    } else {
        running
    };
    let idx = crate::format::now_nanos().unsigned_abs() as usize % pool.len();
    Ok(pool[idx].id.clone())
}

fn copy_out(mut r: impl Read) -> Result<(), String> {
    let mut out = std::io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            let _ = out.flush();
            return Ok(());
        }
        if out.write_all(&buf[..n]).is_err() {
            return Ok(());
        }
    }
}

/// Runs `nomad alloc fs`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("verbose", false)
        .bool("H", false)
        .bool("job", false)
        .bool("stat", false)
        .bool("f", false)
        .bool("tail", false)
        .int("n", -1)
        .int("c", -1);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let path = match check_args(&rest, fs.get_bool("job")) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}", error_hint("alloc fs"));
            return 1;
        }
    };
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    let mut alloc_id = rest[0].clone();
    if fs.get_bool("job") {
        match random_job_alloc(&client, &rest[0]) {
            Ok(id) => alloc_id = id,
            Err(e) => {
                eprintln!("Error fetching allocations: {e}");
                return 1;
            }
        }
    }
    let verbose = fs.get_bool("verbose");
    let length = if verbose { FULL_ID } else { SHORT_ID };
    let alloc = match single_alloc(&client, &alloc_id, verbose, length) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = client_for(&client, &alloc);
    let id = path_escape(&alloc.id);
    let q = |extra: &[(&'static str, String)]| {
        let mut v = vec![("path", path.clone())];
        v.extend_from_slice(extra);
        v
    };
    let machine = fs.get_bool("H");
    let file: AllocFileInfo = match client.get(&format!("/v1/client/fs/stat/{id}"), &q(&[])) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if fs.get_bool("stat") {
        outln!("{}", format_stat(&file, machine));
        return 0;
    }
    if file.is_dir {
        let files: Vec<AllocFileInfo> = match client.get(&format!("/v1/client/fs/ls/{id}"), &q(&[]))
        {
            Ok(f) => f,
            Err(e) => {
                eprintln!("Error listing alloc dir: {e}");
                return 1;
            }
        };
        outln!("{}", format_listing(&files, machine));
        return 0;
    }

    let follow = fs.get_bool("f");
    let stream = |origin: &str, offset: i64| {
        client.get_stream(
            &format!("/v1/client/fs/stream/{id}"),
            &q(&[
                ("origin", origin.to_string()),
                ("offset", offset.to_string()),
                ("follow", "true".to_string()),
            ]),
        )
    };
    if !fs.get_bool("tail") {
        let res = if follow {
            stream("start", 0).map_err(|e| format!("Error reading file: {e}"))
        } else {
            client
                .get_stream(&format!("/v1/client/fs/cat/{id}"), &q(&[]))
                .map_err(|e| format!("Error reading file: {e}"))
        };
        let r = match res {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        let res = if follow {
            crate::interrupt::exit_on_interrupt();
            let mut out = std::io::stdout();
            decode_frames(r, |d| {
                let ok = out.write_all(&d).is_ok();
                let _ = out.flush();
                ok
            })
        } else {
            copy_out(r)
        };
        if let Err(e) = res {
            eprintln!("error tailing file: {e}");
            return 1;
        }
        return 0;
    }

    let (back, lines) = match tail_window(fs.get_int("n"), fs.get_int("c"), file.size) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if follow {
        let r = match stream("end", back) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Error tailing file: {e}");
                return 1;
            }
        };
        crate::interrupt::exit_on_interrupt();
        if let Err(e) = print_tail(spawn_reader(r), lines, &mut std::io::stdout()) {
            eprintln!("error tailing file: {e}");
            return 1;
        }
        return 0;
    }
    let start = file.size - back;
    let r = match client.get_stream(
        &format!("/v1/client/fs/readat/{id}"),
        &q(&[("offset", start.to_string()), ("limit", "-1".to_string())]),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error tailing file: {e}");
            return 1;
        }
    };
    let res = if lines == -1 {
        copy_out(r)
    } else {
        let mut buf = Vec::new();
        let mut r = r;
        match r.read_to_end(&mut buf) {
            Ok(_) => {
                let mut out = std::io::stdout();
                let _ = out.write_all(last_lines(&buf, usize::try_from(lines.max(0)).unwrap_or(0)));
                let _ = out.flush();
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    };
    if let Err(e) = res {
        eprintln!("error tailing file: {e}");
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

    fn info(name: &str, dir: bool, size: i64) -> AllocFileInfo {
        AllocFileInfo {
            name: name.into(),
            is_dir: dir,
            size,
            file_mode: if dir { "drwxrwxrwx" } else { "-rw-r--r--" }.into(),
            mod_time: "1970-01-01T00:00:00Z".into(),
            content_type: None,
        }
    }

    #[test]
    fn listing_table() {
        let files = vec![info("alloc", true, 4096), info("out.txt", false, 1536)];
        assert_eq!(
            format_listing(&files, false),
            "Mode        Size     Modified Time  Name\n\
             drwxrwxrwx  4.0 KiB  <none>         alloc/\n\
             -rw-r--r--  1.5 KiB  <none>         out.txt"
        );
        assert_eq!(
            format_listing(&files, true),
            "Mode        Size  Modified Time  Name\n\
             drwxrwxrwx  4096  <none>         alloc/\n\
             -rw-r--r--  1536  <none>         out.txt"
        );
        assert_eq!(
            format_listing(&[], false),
            "Mode  Size  Modified Time  Name"
        );
    }

    #[test]
    fn stat_table_and_decoding() {
        let f: AllocFileInfo = serde_json::from_str(
            r#"{"Name":"data.txt","IsDir":false,"Size":10,"FileMode":"-rw-r--r--",
                "ModTime":"1970-01-01T00:00:00Z","ContentType":"text/plain; charset=utf-8"}"#,
        )
        .unwrap();
        assert_eq!(
            format_stat(&f, true),
            "Mode        Size  Modified Time  Content Type               Name\n\
             -rw-r--r--  10    <none>         text/plain; charset=utf-8  data.txt"
        );
        let t = AllocFileInfo {
            mod_time: "2024-05-06T07:08:09Z".into(),
            ..f
        };
        assert!(format_stat(&t, false).contains("10 B"));
        assert!(format_stat(&t, false).contains("2024-05-0"));
    }

    #[test]
    fn tail_windows() {
        assert_eq!(tail_window(-1, -1, 100_000), Ok((1200, 10)));
        assert_eq!(tail_window(-1, -1, 50), Ok((50, 10)));
        assert_eq!(tail_window(3, -1, 100_000), Ok((360, 3)));
        assert_eq!(tail_window(-1, 5, 100_000), Ok((5, -1)));
        assert_eq!(
            tail_window(3, 5, 100),
            Err("Both -n and -c are not allowed".into())
        );
        assert_eq!(
            tail_window(-2, -1, 100),
            Err("Invalid size is specified".into())
        );
    }

    #[test]
    fn arguments() {
        assert_eq!(check_args(&args(&["ab"]), false).unwrap(), "/");
        assert_eq!(
            check_args(&args(&["ab", "alloc/logs"]), false).unwrap(),
            "alloc/logs"
        );
        assert_eq!(
            check_args(&args(&[]), false).unwrap_err(),
            "An allocation ID is required"
        );
        assert_eq!(
            check_args(&args(&[]), true).unwrap_err(),
            "A job ID is required"
        );
        assert_eq!(
            check_args(&args(&["a", "b", "c"]), false).unwrap_err(),
            "This command takes one or two arguments: <allocation> [<path>]"
        );
    }

    #[test]
    fn flags() {
        let mut fs = client_flags();
        fs.bool("H", false)
            .bool("stat", false)
            .bool("f", false)
            .bool("tail", false)
            .int("n", -1)
            .int("c", -1);
        let rest = fs
            .parse(&args(&[
                "-H",
                "-tail",
                "-n",
                "4",
                "-f",
                "ab",
                "web/local/x",
            ]))
            .unwrap();
        assert_eq!(rest, args(&["ab", "web/local/x"]));
        assert!(fs.get_bool("H") && fs.get_bool("tail") && fs.get_bool("f"));
        assert_eq!((fs.get_int("n"), fs.get_int("c")), (4, -1));
    }
}
