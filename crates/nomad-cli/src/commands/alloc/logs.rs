//! `nomad alloc logs`: stream a task's stdout or stderr from the framed logs endpoint.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use nomad_structs::Allocation;

use crate::api::{path_escape, Client};
use crate::commands::alloc::{alloc_by_prefix, AllocLookup};
use crate::commands::{client_flags, error_hint, job_id_by_prefix, parse_flags, with_general};
use crate::format::{limit, FULL_ID, SHORT_ID};
use crate::meta::Meta;

const DEFAULT_TAIL_LINES: i64 = 10;
const BYTES_TO_LINES: i64 = 120;

fn help() -> String {
    with_general(
        "Usage: nomad alloc logs [options] <allocation> <task>
Alias: nomad logs

  Prints the stdout (default) or stderr of a task. <task> may be left out when
  the allocation's group has a single task.",
        "Logs Options:

  -stdout
    Print stdout (the default).

  -stderr
    Print stderr instead of stdout.

  -f
    Keep the stream open and print new output as it arrives. Without -stdout,
    -stderr, -tail, -n or -c, follows both streams from their ends.

  -tail
    Start from the end of the log (10 lines unless -n or -c is given).

  -n <lines>
    With -tail, the number of lines to show.

  -c <bytes>
    With -tail, the number of bytes to show.

  -task <task>
    The task to read; same as the second argument.

  -job
    Treat the first argument as a job ID and pick one of its allocations.

  -group <group>
    With -job, pick an allocation of this group.

  -verbose
    Print full IDs.",
    )
}

/// One frame of the logs stream; every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct Frame {
    /// Offset just past this frame's data.
    #[serde(rename = "Offset")]
    pub offset: i64,
    /// Base64 data.
    #[serde(rename = "Data")]
    pub data: Option<String>,
    /// The file the data came from.
    #[serde(rename = "File")]
    pub file: Option<String>,
    /// `file deleted` / `file truncated`.
    #[serde(rename = "FileEvent")]
    pub file_event: Option<String>,
}

impl Frame {
    /// The decoded data (empty for heartbeats and events; undecodable data is skipped).
    pub fn bytes(&self) -> Vec<u8> {
        match &self.data {
            Some(d) if !d.is_empty() => base64::engine::general_purpose::STANDARD
                .decode(d)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Decodes concatenated JSON frames from `r`, calling `sink` with each frame's data.
pub fn decode_frames<R: Read>(r: R, mut sink: impl FnMut(Vec<u8>) -> bool) -> Result<(), String> {
    let stream = serde_json::Deserializer::from_reader(r).into_iter::<Frame>();
    for frame in stream {
        let frame = frame.map_err(|e| e.to_string())?;
        let data = frame.bytes();
        if !data.is_empty() && !sink(data) {
            break;
        }
    }
    Ok(())
}

/// Keeps the last `n` lines of `buf` (a trailing newline does not count as a line break), as
/// Nomad's `LineLimitReader` does.
pub fn last_lines(buf: &[u8], n: usize) -> &[u8] {
    if buf.is_empty() {
        return buf;
    }
    let mut found = 0;
    let mut last_index = buf.len() - 1;
    let mut i = buf.len() as isize - 1;
    while found < n && i >= 0 {
        let iu = i as usize;
        if buf[iu] == b'\n' {
            last_index = iu;
            if iu != buf.len() - 1 {
                found += 1;
            }
        }
        i -= 1;
    }
    if found == n {
        &buf[last_index + 1..]
    } else {
        buf
    }
}

struct Opts {
    follow: bool,
    task: String,
}

/// Runs `nomad alloc logs`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("verbose", false)
        .bool("job", false)
        .bool("tail", false)
        .bool("f", false)
        .bool("stderr", false)
        .bool("stdout", false)
        .int("n", -1)
        .int("c", -1)
        .string("task", "")
        .string("group", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.is_empty() {
        eprintln!(
            "{}",
            if fs.get_bool("job") {
                "A job ID is required"
            } else {
                "An allocation ID is required"
            }
        );
        eprintln!("{}", error_hint("alloc logs"));
        return 1;
    }
    if rest.len() > 2 {
        eprintln!("This command takes one or two arguments");
        eprintln!("{}", error_hint("alloc logs"));
        return 1;
    }
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    let verbose = fs.get_bool("verbose");
    let length = if verbose { FULL_ID } else { SHORT_ID };
    let mut alloc_id = rest[0].clone();
    if fs.get_bool("job") {
        match random_job_alloc(&client, &meta, &rest[0], &fs.get_str("group")) {
            Ok(id) => alloc_id = id,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    }
    let alloc = match alloc_by_prefix(
        &client,
        &alloc_id,
        verbose,
        length,
        "Alloc ID must contain at least two characters.",
    ) {
        Ok(AllocLookup::Found(a)) => a,
        Ok(AllocLookup::Multiple(table)) => {
            eprintln!("{table}");
            return 1;
        }
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut task = fs.get_str("task");
    let check = if !task.is_empty() {
        validate_task(&task, &alloc)
    } else if rest.len() >= 2 {
        task = rest[1].clone();
        if task.is_empty() {
            eprintln!("Task name required");
            return 1;
        }
        Ok(())
    } else {
        lookup_task(&alloc).map(|t| task = t)
    };
    if let Err(e) = check {
        eprintln!("Failed to validate task: {e}");
        return 1;
    }
    let mut client = client.for_node(&alloc.node_id);
    if !alloc.namespace.is_empty() {
        client.set_namespace(&alloc.namespace);
    }
    let (follow, stderr, stdout, tail) = (
        fs.get_bool("f"),
        fs.get_bool("stderr"),
        fs.get_bool("stdout"),
        fs.get_bool("tail"),
    );
    let (n_lines, n_bytes) = (fs.get_int("n"), fs.get_int("c"));
    let opts = Opts { follow, task };
    if follow && !(stderr || stdout || tail || n_lines > 0 || n_bytes > 0) {
        if let Err(e) = follow_both(&client, &alloc, &opts) {
            eprintln!("Failed to tail stdout and stderr files: {e}");
            return 1;
        }
        return 0;
    }
    if stderr && stdout {
        eprintln!("Unable to support both stdout and stderr");
        return 1;
    }
    let log_type = if stderr { "stderr" } else { "stdout" };
    if let Err(e) = single_file(&client, &alloc, &opts, log_type, tail, n_lines, n_bytes) {
        eprintln!("Failed to read {log_type} file: {e}");
        return 1;
    }
    0
}

fn random_job_alloc(
    client: &Client,
    meta: &Meta,
    job: &str,
    group: &str,
) -> Result<String, String> {
    let (job_id, ns) = job_id_by_prefix(client, meta, job)?;
    let mut c = client.clone();
    if !ns.is_empty() {
        c.set_namespace(&ns);
    }
    let allocs: Vec<nomad_structs::AllocListStub> = c
        .get(
            &format!("/v1/job/{}/allocations", path_escape(&job_id)),
            &[],
        )
        .map_err(|e| format!("Error fetching allocations: {e}"))?;
    let mut running: Vec<_> = allocs
        .iter()
        .filter(|a| a.client_status == "running" && (group.is_empty() || a.task_group == group))
        .collect();
    if running.is_empty() {
        return Err(if group.is_empty() {
            format!("Error fetching allocations: job {job_id:?} doesn't exist or it has no running allocations")
        } else {
            format!("Error fetching allocations: no running allocations found for task group {group:?} of job {job_id:?}")
        });
    }
    // Any running alloc will do; pick by the clock rather than pulling in an RNG.
    let idx = (crate::format::now_nanos().unsigned_abs() as usize) % running.len();
    Ok(running.swap_remove(idx).id.clone())
}

fn validate_task(task: &str, alloc: &Allocation) -> Result<(), String> {
    let tg = alloc
        .job
        .as_ref()
        .and_then(|j| j.lookup_task_group(&alloc.task_group))
        .ok_or_else(|| format!("Could not find allocation task group: {}", alloc.task_group))?;
    if tg.tasks.iter().any(|t| t.name == task) {
        return Ok(());
    }
    let names: Vec<&str> = tg.tasks.iter().map(|t| t.name.as_str()).collect();
    Err(format!(
        "Could not find task named: {task}, found:\n  * {}",
        names.join("\n  * ")
    ))
}

pub(crate) fn lookup_task(alloc: &Allocation) -> Result<String, String> {
    let tg = alloc
        .job
        .as_ref()
        .and_then(|j| j.lookup_task_group(&alloc.task_group))
        .ok_or_else(|| format!("Could not find allocation task group: {}", alloc.task_group))?;
    if tg.tasks.len() == 1 {
        return Ok(tg.tasks[0].name.clone());
    }
    let mut s = format!(
        "Allocation {:?} is running the following tasks:\n",
        limit(&alloc.id, SHORT_ID)
    );
    for t in &tg.tasks {
        s.push_str(&format!("  * {}\n", t.name));
    }
    s.push_str("\nPlease specify the task.");
    Err(s)
}

fn open_stream(
    client: &Client,
    alloc: &Allocation,
    opts: &Opts,
    log_type: &str,
    origin: &str,
    offset: i64,
    follow: bool,
) -> Result<Box<dyn Read + Send>, String> {
    client
        .get_stream(
            &format!("/v1/client/fs/logs/{}", path_escape(&alloc.id)),
            &[
                ("task", opts.task.clone()),
                ("type", log_type.to_string()),
                ("origin", origin.to_string()),
                ("offset", offset.to_string()),
                ("follow", follow.to_string()),
            ],
        )
        .map_err(|e| e.to_string())
}

pub(crate) fn spawn_reader(r: Box<dyn Read + Send>) -> mpsc::Receiver<Result<Vec<u8>, String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let tx2 = tx.clone();
        let res = decode_frames(r, |data| tx2.send(Ok(data)).is_ok());
        if let Err(e) = res {
            let _ = tx.send(Err(e));
        }
    });
    rx
}

fn single_file(
    client: &Client,
    alloc: &Allocation,
    opts: &Opts,
    log_type: &str,
    tail: bool,
    n_lines: i64,
    n_bytes: i64,
) -> Result<(), String> {
    let mut out = std::io::stdout();
    if !tail {
        let r = open_stream(client, alloc, opts, log_type, "start", 0, opts.follow)
            .map_err(|e| format!("error reading file: {e}"))?;
        if opts.follow {
            crate::interrupt::exit_on_interrupt();
        }
        return decode_frames(r, |data| {
            let ok = out.write_all(&data).is_ok();
            let _ = out.flush();
            ok
        })
        .map_err(|e| format!("error following logs: {e}"));
    }
    let mut lines = n_lines;
    let offset = if n_lines != -1 && n_bytes != -1 {
        return Err("both -n and -c set".to_string());
    } else if n_lines != -1 {
        n_lines * BYTES_TO_LINES
    } else if n_bytes != -1 {
        n_bytes
    } else {
        lines = DEFAULT_TAIL_LINES;
        DEFAULT_TAIL_LINES * BYTES_TO_LINES
    };
    let r = open_stream(client, alloc, opts, log_type, "end", offset, opts.follow)
        .map_err(|e| format!("error tailing file: {e}"))?;
    let rx = spawn_reader(r);
    if opts.follow {
        crate::interrupt::exit_on_interrupt();
    }
    print_tail(rx, lines, &mut out)
}

/// Prints a tailed stream: with `lines == -1` everything as it comes; otherwise buffers until
/// `lines * 120` bytes, the end of the stream or a second without data, prints only the last
/// `lines` lines of that, then everything after as it arrives (Nomad's `LineLimitReader`).
pub(crate) fn print_tail(
    rx: mpsc::Receiver<Result<Vec<u8>, String>>,
    lines: i64,
    out: &mut impl Write,
) -> Result<(), String> {
    if lines == -1 {
        for chunk in rx {
            let data = chunk.map_err(|e| format!("error following logs: {e}"))?;
            let _ = out.write_all(&data);
            let _ = out.flush();
        }
        return Ok(());
    }
    let limit_bytes = usize::try_from((lines * BYTES_TO_LINES).max(0)).unwrap_or(usize::MAX);
    let mut buf = Vec::new();
    let mut last = Instant::now();
    let mut ended = false;
    while buf.len() < limit_bytes {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(d)) => {
                buf.extend_from_slice(&d);
                last = Instant::now();
            }
            Ok(Err(e)) => return Err(format!("error following logs: {e}")),
            Err(mpsc::RecvTimeoutError::Timeout) if last.elapsed() >= Duration::from_secs(1) => {
                break
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                ended = true;
                break;
            }
        }
    }
    let _ = out.write_all(last_lines(&buf, usize::try_from(lines.max(0)).unwrap_or(0)));
    let _ = out.flush();
    if ended {
        return Ok(());
    }
    for chunk in rx {
        let data = chunk.map_err(|e| format!("error following logs: {e}"))?;
        let _ = out.write_all(&data);
        let _ = out.flush();
    }
    Ok(())
}

fn follow_both(client: &Client, alloc: &Allocation, opts: &Opts) -> Result<(), String> {
    let so = open_stream(client, alloc, opts, "stdout", "end", 0, true)
        .map_err(|e| format!("failed to setup stdout log tailing: {e}"))?;
    let se = open_stream(client, alloc, opts, "stderr", "end", 0, true)
        .map_err(|e| format!("failed to setup stderr log tailing: {e}"))?;
    crate::interrupt::exit_on_interrupt();
    let (tx, rx) = mpsc::channel::<(bool, Result<Vec<u8>, String>)>();
    for (is_err, r) in [(false, so), (true, se)] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let tx2 = tx.clone();
            if let Err(e) = decode_frames(r, |d| tx2.send((is_err, Ok(d))).is_ok()) {
                let _ = tx.send((is_err, Err(e)));
            }
        });
    }
    drop(tx);
    for (is_err, chunk) in rx {
        match chunk {
            Ok(d) if is_err => {
                let mut e = std::io::stderr();
                let _ = e.write_all(&d);
                let _ = e.flush();
            }
            Ok(d) => {
                let mut o = std::io::stdout();
                let _ = o.write_all(&d);
                let _ = o.flush();
            }
            Err(e) => {
                let which = if is_err { "stderr" } else { "stdout" };
                return Err(format!("received an error from {which} log stream: {e}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_concatenated() {
        let body = br#"{"Offset":6,"Data":"aGVsbG8K","File":"alloc/logs/t.stdout.0"}{}{"FileEvent":"file truncated","File":"x"}{"Data":"d29ybGQK"}"#;
        let mut out = Vec::new();
        decode_frames(&body[..], |d| {
            out.extend(d);
            true
        })
        .unwrap();
        assert_eq!(out, b"hello\nworld\n");
    }

    #[test]
    fn frames_bad_json_is_error() {
        assert!(decode_frames(&b"{\"Data\":"[..], |_| true).is_err());
    }

    #[test]
    fn tail_prints_last_lines_then_the_rest() {
        let (tx, rx) = mpsc::channel();
        tx.send(Ok(b"a\nb\nc\n".to_vec())).unwrap();
        drop(tx);
        let mut out = Vec::new();
        print_tail(rx, 2, &mut out).unwrap();
        assert_eq!(out, b"b\nc\n");

        // More than the search limit arrives at once: only the last lines of it, then the rest.
        let (tx, rx) = mpsc::channel();
        tx.send(Ok("x\n".repeat(200).into_bytes())).unwrap();
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            print_tail(rx, 1, &mut out).map(|_| out)
        });
        std::thread::sleep(Duration::from_millis(50));
        tx.send(Ok(b"later\n".to_vec())).unwrap();
        drop(tx);
        assert_eq!(t.join().unwrap().unwrap(), b"x\nlater\n");

        let (tx, rx) = mpsc::channel();
        tx.send(Ok(b"raw".to_vec())).unwrap();
        tx.send(Err("boom".to_string())).unwrap();
        drop(tx);
        let mut out = Vec::new();
        assert_eq!(
            print_tail(rx, -1, &mut out).unwrap_err(),
            "error following logs: boom"
        );
        assert_eq!(out, b"raw");
    }

    #[test]
    fn tail_lines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"", 3), b"");
    }
}
