//! The exit recorder: a task's real exit status, even when the agent is down as it ends.
//!
//! Only a parent can read a process's exit status, and a task outlives the agent that started
//! it (an agent restart leaves tasks running). So a task is started as the child of a small
//! recorder process, itself the agent's child: [`crate::spawn`] forks the recorder, which
//! forks (or clones into the task's namespaces) the task, reports the task's pid, and execs
//! `nomad exit-recorder <pid> <status file>` ([`run`]): a fresh, small image that waits for the
//! task and writes `"<exit code> <signal> <core dumped>\n"` to the status file (through a
//! temporary file and a rename, so a reader never sees half a line).
//!
//! The agent learns of the end by waiting for the recorder (its child) and reading the file;
//! an agent that was restarted finds the file, or watches the task and then the recorder.
//! The recorder runs in its own session and outside the task's cgroup, and ignores the
//! signals a terminal or a service manager's stop would send the agent, so it is neither
//! killed with the agent nor with the task.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::process::ExitStatus;

/// The hidden subcommand of the `nomad` binary that runs [`run`].
pub const SUBCOMMAND: &str = "exit-recorder";

static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Declares that this process's own binary implements [`SUBCOMMAND`] (the `nomad` binary's
/// `main` does; a test harness must not, or the "recorder" would run the tests).
pub fn declare_available() {
    AVAILABLE.store(true, Ordering::Relaxed);
}

/// The recorder binary for [`crate::ExitRecordSpec::recorder_exe`]: this process's own
/// image, when it declared the subcommand available.
pub fn recorder_exe() -> Option<PathBuf> {
    AVAILABLE
        .load(Ordering::Relaxed)
        .then(|| PathBuf::from("/proc/self/exe"))
}

/// Where the status is written before the rename.
pub fn tmp_path(status: &Path) -> PathBuf {
    let mut s = status.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Formats a status line into `buf` without allocating (the fork path uses it); returns its
/// length.
pub fn format_status(code: u32, signal: u32, core: bool, buf: &mut [u8; 40]) -> usize {
    let mut n = 0;
    for (i, v) in [code, signal, u32::from(core)].into_iter().enumerate() {
        if i > 0 {
            buf[n] = b' ';
            n += 1;
        }
        let mut digits = [0u8; 12];
        let d = crate::spawn::format_u32(v, &mut digits);
        buf[n..n + d.len()].copy_from_slice(d);
        n += d.len();
    }
    buf[n] = b'\n';
    n + 1
}

/// Parses a status line.
pub fn parse_status(text: &str) -> Option<ExitStatus> {
    let mut it = text.split_whitespace().map(str::parse::<i32>);
    let code = it.next()?.ok()?;
    let signal = it.next()?.ok()?;
    let core = it.next()?.ok()?;
    Some(ExitStatus {
        code,
        signal,
        core_dumped: core != 0,
    })
}

/// The recorded status, once the recorder has written it.
pub fn read_status(path: &Path) -> Option<ExitStatus> {
    parse_status(&std::fs::read_to_string(path).ok()?)
}

/// The recorder process: ignores the agent's stop signals, then [`record`]s.
pub fn run(args: &[String]) -> i32 {
    crate::signal::ignore_stop_signals();
    record(args)
}

/// `args` are `<pid> <status file>`: waits for the task (our child), writes its status and
/// returns the process exit code (0 when recorded).
pub fn record(args: &[String]) -> i32 {
    let (Some(pid), Some(path)) = (args.first(), args.get(1)) else {
        eprintln!("usage: nomad {SUBCOMMAND} <pid> <status file>");
        return 2;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        eprintln!("{SUBCOMMAND}: invalid pid {pid:?}");
        return 2;
    };
    let status = match crate::process::wait_child(pid) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{SUBCOMMAND}: {e}");
            return 1;
        }
    };
    let path = Path::new(path);
    let mut line = [0u8; 40];
    let n = format_status(
        status.code as u32,
        status.signal as u32,
        status.core_dumped,
        &mut line,
    );
    let tmp = tmp_path(path);
    match std::fs::write(&tmp, &line[..n]).and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{SUBCOMMAND}: writing {}: {e}", path.display());
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_round_trip() {
        let mut buf = [0u8; 40];
        let n = format_status(3, 0, false, &mut buf);
        assert_eq!(&buf[..n], b"3 0 0\n");
        let n = format_status(0, 9, true, &mut buf);
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(line, "0 9 1\n");
        assert_eq!(
            parse_status(line),
            Some(ExitStatus {
                code: 0,
                signal: 9,
                core_dumped: true
            })
        );
        let n = format_status(u32::MAX, u32::MAX, true, &mut buf);
        assert_eq!(n, 10 + 1 + 10 + 1 + 1 + 1);
        assert_eq!(parse_status("garbage"), None);
        assert_eq!(parse_status("1 2"), None);
    }

    #[test]
    fn record_waits_for_a_child_and_writes_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("st");
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let args = [child.id().to_string(), status.display().to_string()];
        assert_eq!(record(&args), 0);
        // Already reaped by `record`: nothing left to wait for.
        assert!(child.try_wait().is_err());
        let st = read_status(&status).unwrap();
        assert_eq!((st.code, st.signal), (7, 0));
        assert!(!tmp_path(&status).exists());
        assert_eq!(record(&["x".into(), "y".into()]), 2);
        assert_eq!(record(&[]), 2);
    }

    #[test]
    fn tmp_path_is_beside() {
        assert_eq!(
            tmp_path(Path::new("/a/.t.exit")),
            PathBuf::from("/a/.t.exit.tmp")
        );
    }
}
