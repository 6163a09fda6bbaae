//! Waiting for and signalling task processes.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// How a process ended. `code` is the exit status when it exited normally (0 when killed);
/// `signal` is the terminating signal (0 when it exited normally). Applying the `128 + signal`
/// convention is the client's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit status of a normal exit.
    pub code: i32,
    /// Terminating signal, or 0.
    pub signal: i32,
    /// Whether a core was dumped.
    pub core_dumped: bool,
}

/// Wait / signal failures.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The process does not exist (any more).
    #[error("process {pid} not found")]
    NotFound {
        /// The pid.
        pid: i32,
    },
    /// `waitpid` failed (e.g. ECHILD: not our child).
    #[error("failed to wait for process {pid}")]
    Wait {
        /// The pid.
        pid: i32,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `kill` failed for another reason than ESRCH.
    #[error("failed to send signal {signal} to {target}")]
    Signal {
        /// `"process 12"` or `"process group 12"`.
        target: String,
        /// The signal number.
        signal: i32,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The signal number is invalid.
    #[error("invalid signal number {0}")]
    InvalidSignal(i32),
}

/// Blocks until our child `pid` exits and reaps it.
pub fn wait_child(pid: u32) -> Result<ExitStatus, ProcessError> {
    let raw = pid as i32;
    loop {
        match waitpid(Pid::from_raw(raw), None) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Ok(ExitStatus {
                    code,
                    signal: 0,
                    core_dumped: false,
                })
            }
            Ok(WaitStatus::Signaled(_, sig, core)) => {
                return Ok(ExitStatus {
                    code: 0,
                    signal: sig as i32,
                    core_dumped: core,
                })
            }
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(ProcessError::Wait {
                    pid: raw,
                    source: e.into(),
                })
            }
        }
    }
}

fn pidfd_open(pid: u32) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open(pid, 0) takes no pointers; the returned fd (if any) is new and owned
    // by nobody else.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0 as libc::c_uint) };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `ret` is a fresh, valid file descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// Blocks until a process that is *not* our child (re-attached after an agent restart) exits.
/// `start_time` (field 22 of `/proc/<pid>/stat`) guards against PID reuse. Uses `pidfd_open` +
/// `poll` when available (Linux >= 5.3), otherwise polls `/proc` every `poll_interval`.
///
/// The exit status of a process we did not fork cannot be read (`waitpid` only works for our
/// own children), so this only reports *that* it exited.
pub fn wait_foreign(pid: u32, start_time: u64, poll_interval: Duration) {
    if let Ok(fd) = pidfd_open(pid) {
        // The pidfd pins the process identity; re-check it is the one we expect.
        if !crate::procfs::is_same_live_process(pid, start_time) {
            return;
        }
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(n) if n > 0 => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break, // fall back to polling /proc
            }
        }
    }
    while crate::procfs::is_same_live_process(pid, start_time) {
        std::thread::sleep(poll_interval);
    }
}

fn to_signal(sig: i32) -> Result<Option<Signal>, ProcessError> {
    if sig == 0 {
        return Ok(None);
    }
    Signal::try_from(sig)
        .map(Some)
        .map_err(|_| ProcessError::InvalidSignal(sig))
}

/// Sends `sig` to one process. ESRCH becomes [`ProcessError::NotFound`].
pub fn signal_process(pid: u32, sig: i32) -> Result<(), ProcessError> {
    let s = to_signal(sig)?;
    let raw = pid as i32;
    if raw <= 0 {
        return Err(ProcessError::NotFound { pid: raw });
    }
    match nix::sys::signal::kill(Pid::from_raw(raw), s) {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(ProcessError::NotFound { pid: raw }),
        Err(e) => Err(ProcessError::Signal {
            target: format!("process {raw}"),
            signal: sig,
            source: e.into(),
        }),
    }
}

/// Sends `sig` to every process of process group `pgid`. ESRCH becomes
/// [`ProcessError::NotFound`].
pub fn signal_group(pgid: u32, sig: i32) -> Result<(), ProcessError> {
    let s = to_signal(sig)?;
    let raw = pgid as i32;
    if raw <= 1 {
        // Never signal "every process" (-1) or our own group (0).
        return Err(ProcessError::NotFound { pid: raw });
    }
    match nix::sys::signal::killpg(Pid::from_raw(raw), s) {
        Ok(()) => Ok(()),
        Err(Errno::ESRCH) => Err(ProcessError::NotFound { pid: raw }),
        Err(e) => Err(ProcessError::Signal {
            target: format!("process group {raw}"),
            signal: sig,
            source: e.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_dangerous_groups() {
        assert!(matches!(
            signal_group(0, 9),
            Err(ProcessError::NotFound { .. })
        ));
        assert!(matches!(
            signal_group(1, 9),
            Err(ProcessError::NotFound { .. })
        ));
        assert!(matches!(
            signal_process(0, 9),
            Err(ProcessError::NotFound { .. })
        ));
        assert!(matches!(
            signal_process(1, 12345),
            Err(ProcessError::InvalidSignal(12345))
        ));
    }

    #[test]
    fn foreign_wait_returns_for_missing_process() {
        // A start time that cannot match: returns immediately.
        wait_foreign(std::process::id(), u64::MAX, Duration::from_millis(1));
    }
}
