//! Processes started next to a running task for `nomad alloc exec` (Nomad's
//! `ExecStreaming`): a command with the task's environment, working directory and user,
//! placed in the task's cgroup, attached either to a fresh pseudo-terminal or to three pipes.
//!
//! Everything the child needs (cgroup paths as C strings, credentials, the pty slave) is
//! prepared before `fork`; between `fork` and `exec` the child only makes async-signal-safe
//! system calls (see [`ChildSetup::run`]). The fork, the stdio `dup2`s, `chdir` and the report
//! of an `execve` failure are done by `std::process::Command`.
//!
//! Waiting uses `waitid(WNOWAIT)` first and reaps only under the same lock [`ExecControl::kill`]
//! takes, so a kill can never reach a recycled pid.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::process::ExitStatus;
use crate::spawn::{format_u32, write_file};

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WinSize {
    /// Rows (`tty_size.height`).
    pub rows: u16,
    /// Columns (`tty_size.width`).
    pub cols: u16,
}

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// The binary, already resolved (absolute, or relative to `cwd`).
    pub program: PathBuf,
    /// `argv[0]` as the user typed it (defaults to `program`).
    pub argv0: Option<String>,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// The complete environment; nothing is inherited from the agent.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Run as this user (uid, gid and groups looked up by name) instead of the agent's.
    pub user: Option<String>,
    /// `cgroup.procs` files the child writes its pid into before exec (best effort).
    pub cgroup_procs: Vec<PathBuf>,
    /// `Some`: attach a new pty of this size (stdin, stdout and stderr all on it, the child a
    /// session leader with the pty as controlling terminal). `None`: three pipes.
    pub tty: Option<WinSize>,
}

/// Failures of [`spawn_exec`] and of the session controls.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A string contained a NUL byte.
    #[error("invalid {what}: contains a NUL byte")]
    Nul {
        /// Which input.
        what: &'static str,
    },
    /// The user could not be looked up.
    #[error("failed to look up user {user:?}: {reason}")]
    User {
        /// The user name.
        user: String,
        /// Why.
        reason: String,
    },
    /// Opening or configuring the pseudo-terminal failed.
    #[error("failed to allocate a pty: {0}")]
    Pty(#[source] io::Error),
    /// fork, a child setup step or execve failed.
    #[error("failed to start command {command:?}: {source}")]
    Start {
        /// The program.
        command: String,
        /// The cause (the errno reported by the child).
        #[source]
        source: io::Error,
    },
    /// A named setup step of the child failed (entering an isolated task), e.g.
    /// `failed to start command "sh": setns mnt: Operation not permitted (os error 1)`.
    #[error("failed to start command {command:?}: {step}: {source}")]
    Step {
        /// The command as given.
        command: String,
        /// The step, e.g. `setns mnt`.
        step: &'static str,
        /// The errno reported by the child.
        #[source]
        source: io::Error,
    },
    /// The command was not found inside the task's root.
    #[error("{0}")]
    NotFound(String),
    /// The task's process is gone (or its pid was reused).
    #[error("task process {pid} is not running")]
    TaskGone {
        /// The pid.
        pid: u32,
    },
    /// Inspecting the task's process (`/proc/<pid>/...`) failed.
    #[error("failed to inspect task process {pid}: {what}: {source}")]
    Inspect {
        /// The pid.
        pid: u32,
        /// What was read or opened.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Setting the terminal size failed.
    #[error("failed to resize the pty: {0}")]
    Resize(#[source] io::Error),
    /// Waiting for the process failed.
    #[error("failed to wait for process {pid}: {source}")]
    Wait {
        /// The pid.
        pid: u32,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Credentials resolved before fork.
#[derive(Debug, Clone)]
struct Creds {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// What the child does between fork and exec, all prepared in the parent.
#[derive(Debug)]
struct ChildSetup {
    tty: bool,
    procs: Vec<CString>,
    creds: Option<Creds>,
}

impl ChildSetup {
    /// Runs in the forked child, after std has `dup2`ed stdio and changed directory, right
    /// before `execve`. Async-signal-safe only: no allocation, no locks, no logging.
    ///
    /// Order: `setsid` first (a new session, so the pty can become our controlling terminal
    /// and a kill of the process group reaches everything this command starts), then the
    /// controlling terminal, then the cgroup join (needs the agent's privileges, so before the
    /// uid change), then groups, gid, uid (uid last: afterwards we could not change the rest).
    fn run(&self) -> io::Result<()> {
        // SAFETY: setsid(2) is async-signal-safe and takes no arguments.
        if unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
        if self.tty {
            // SAFETY: fd 0 is the pty slave (std dup2ed it); TIOCSCTTY takes an int argument
            // (0: do not steal a terminal that is another session's). ioctl(2) is
            // async-signal-safe.
            if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if !self.procs.is_empty() {
            let mut buf = [0u8; 12];
            // SAFETY: getpid(2) is async-signal-safe.
            let pid = unsafe { libc::getpid() } as u32;
            let digits = format_u32(pid, &mut buf);
            for path in &self.procs {
                // Best effort, as for the task itself: a failed join leaves the command in the
                // agent's cgroup rather than failing the session.
                // SAFETY: `path` is a NUL-terminated C string built before fork.
                unsafe { write_file(path, digits) };
            }
        }
        if let Some(c) = &self.creds {
            // Raw syscalls: glibc's wrappers broadcast the change to every thread of the
            // process (setxid), which is not safe in a forked child of a threaded parent.
            // SAFETY: the group list was allocated before fork and outlives this call.
            if unsafe {
                libc::syscall(
                    libc::SYS_setgroups,
                    c.groups.len() as libc::c_long,
                    c.groups.as_ptr(),
                )
            } < 0
            {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: plain integer argument; async-signal-safe syscall.
            if unsafe { libc::syscall(libc::SYS_setgid, c.gid as libc::c_long) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: plain integer argument; async-signal-safe syscall.
            if unsafe { libc::syscall(libc::SYS_setuid, c.uid as libc::c_long) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

pub(crate) fn set_winsize(fd: &OwnedFd, size: WinSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is an open pty master borrowed for the call; TIOCSWINSZ reads one
    // `winsize` through the pointer, which points to a live stack value.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &ws as *const libc::winsize,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens a pty pair, both ends close-on-exec (the child gets the slave through `dup2`, which
/// clears the flag on the copies), with the initial size set.
pub(crate) fn open_pty(size: WinSize) -> Result<(OwnedFd, OwnedFd), ExecError> {
    let pty = |e: Errno| ExecError::Pty(e.into());
    let master =
        nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(pty)?;
    nix::pty::grantpt(&master).map_err(pty)?;
    nix::pty::unlockpt(&master).map_err(pty)?;
    let name = nix::pty::ptsname_r(&master).map_err(pty)?;
    let slave = nix::fcntl::open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(pty)?;
    let master: OwnedFd = master.into();
    set_winsize(&master, size).map_err(ExecError::Pty)?;
    Ok((master, slave))
}

fn lookup_creds(user: &str) -> Result<Creds, ExecError> {
    let u = crate::spawn::lookup_user(user).map_err(|e| ExecError::User {
        user: user.to_string(),
        reason: match e {
            crate::SpawnError::User { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;
    Ok(Creds {
        uid: u.uid,
        gid: u.gid,
        groups: u.groups,
    })
}

/// Shared between the waiter and the controls: set once the child is reaped.
type ReapedFlag = Arc<Mutex<bool>>;

/// Resizes and kills a running exec process; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct ExecControl {
    pid: u32,
    pty: Option<Arc<OwnedFd>>,
    reaped: ReapedFlag,
}

impl ExecControl {
    /// The process id (also its process group and session id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sets the pty size (the kernel sends SIGWINCH to the foreground process group). A no-op
    /// without a tty.
    pub fn resize(&self, size: WinSize) -> Result<(), ExecError> {
        match &self.pty {
            Some(fd) => set_winsize(fd, size).map_err(ExecError::Resize),
            None => Ok(()),
        }
    }

    /// SIGKILLs the command's process group (everything it started in its session), unless it
    /// was already reaped.
    pub fn kill(&self) {
        let reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if *reaped {
            return;
        }
        // The child is alive or a zombie we have not reaped: its pid cannot be reused.
        let pid = Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// A started exec process. Take the streams, then [`ExecChild::wait`].
#[derive(Debug)]
pub struct ExecChild {
    /// Write end of the command's stdin (the pty master with a tty). Drop it to close stdin
    /// (without a tty; with a tty the pty stays open until the command exits).
    pub stdin: Option<File>,
    /// Read end of stdout (the pty master with a tty; reads end with EIO once the command and
    /// everything holding the terminal is gone).
    pub stdout: Option<File>,
    /// Read end of stderr; `None` with a tty (stderr goes to the terminal).
    pub stderr: Option<File>,
    control: ExecControl,
    reaper: Reaper,
}

/// How the command is reaped.
#[derive(Debug)]
enum Reaper {
    /// Started through `std::process::Command`.
    Std(Child),
    /// A raw child of this process (`waitpid`); the status once reaped.
    Pid(Option<ExitStatus>),
}

impl ExecChild {
    /// The controls (resize, kill).
    pub fn control(&self) -> ExecControl {
        self.control.clone()
    }

    /// The pid.
    pub fn pid(&self) -> u32 {
        self.control.pid
    }

    /// Blocks until the command exits and reaps it.
    pub fn wait(&mut self) -> Result<ExitStatus, ExecError> {
        let pid = self.control.pid;
        let err = |source: io::Error| ExecError::Wait { pid, source };
        loop {
            match waitid(
                Id::Pid(Pid::from_raw(pid as i32)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(err(e.into())),
            }
        }
        let mut reaped = self
            .control
            .reaped
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let status = match &mut self.reaper {
            Reaper::Std(child) => {
                let status = child.wait().map_err(err)?;
                match status.signal() {
                    Some(sig) => ExitStatus {
                        code: 0,
                        signal: sig,
                        core_dumped: status.core_dumped(),
                    },
                    None => ExitStatus {
                        code: status.code().unwrap_or(-1),
                        signal: 0,
                        core_dumped: false,
                    },
                }
            }
            Reaper::Pid(Some(st)) => *st,
            Reaper::Pid(cached) => {
                let st = reap_raw(pid).map_err(err)?;
                *cached = Some(st);
                st
            }
        };
        *reaped = true;
        Ok(status)
    }

    /// Wraps a raw child of this process (started with `fork`/`clone`, not yet reaped).
    pub(crate) fn from_raw(
        pid: u32,
        stdin: Option<File>,
        stdout: Option<File>,
        stderr: Option<File>,
        pty: Option<OwnedFd>,
    ) -> ExecChild {
        ExecChild {
            stdin,
            stdout,
            stderr,
            control: ExecControl {
                pid,
                pty: pty.map(Arc::new),
                reaped: Arc::new(Mutex::new(false)),
            },
            reaper: Reaper::Pid(None),
        }
    }
}

/// `waitpid(pid)` (retrying on EINTR), decoded.
fn reap_raw(pid: u32) -> io::Result<ExitStatus> {
    use nix::sys::wait::WaitStatus;
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None) {
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
            Err(e) => return Err(e.into()),
        }
    }
}

/// Duplicates `fd` to a descriptor above 2 (close-on-exec) if it is 0, 1 or 2, so a child's
/// `dup2` onto stdio cannot clobber another source descriptor.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let new = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) })
}

/// Starts `spec`. Returns once the command has exec'd (or failed to: then the child's errno is
/// the error's source).
pub fn spawn_exec(spec: &ExecSpec) -> Result<ExecChild, ExecError> {
    let procs = spec
        .cgroup_procs
        .iter()
        .map(|p| {
            CString::new(p.as_os_str().as_bytes()).map_err(|_| ExecError::Nul {
                what: "cgroup path",
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let creds = spec
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(lookup_creds)
        .transpose()?;
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(ExecError::Nul {
                what: "environment variable",
            });
        }
    }
    let mut cmd = Command::new(&spec.program);
    if let Some(a0) = &spec.argv0 {
        cmd.arg0(a0);
    }
    cmd.args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd);
    let mut master = None;
    if let Some(size) = spec.tty {
        let (m, slave) = open_pty(size)?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(ExecError::Pty);
        cmd.stdin(Stdio::from(dup(&slave)?))
            .stdout(Stdio::from(dup(&slave)?))
            .stderr(Stdio::from(slave));
        master = Some(m);
    } else {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let setup = ChildSetup {
        tty: spec.tty.is_some(),
        procs,
        creds,
    };
    // SAFETY: the hook runs in the forked child before exec. `ChildSetup::run` only makes
    // async-signal-safe system calls on data prepared (and owned by the closure) before the
    // fork; it neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || setup.run());
    }
    let mut child = cmd.spawn().map_err(|source| ExecError::Start {
        command: spec
            .argv0
            .clone()
            .unwrap_or_else(|| spec.program.display().to_string()),
        source,
    })?;
    // Our copies of the pty slave go with the Command.
    drop(cmd);
    let pid = child.id();
    let (stdin, stdout, stderr, pty) = match master {
        Some(m) => {
            let w = m.try_clone().map_err(ExecError::Pty);
            let r = m.try_clone().map_err(ExecError::Pty);
            match (w, r) {
                (Ok(w), Ok(r)) => (
                    Some(File::from(w)),
                    Some(File::from(r)),
                    None,
                    Some(Arc::new(m)),
                ),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            }
        }
        None => (
            child.stdin.take().map(|s| File::from(OwnedFd::from(s))),
            child.stdout.take().map(|s| File::from(OwnedFd::from(s))),
            child.stderr.take().map(|s| File::from(OwnedFd::from(s))),
            None,
        ),
    };
    Ok(ExecChild {
        stdin,
        stdout,
        stderr,
        control: ExecControl {
            pid,
            pty,
            reaped: Arc::new(Mutex::new(false)),
        },
        reaper: Reaper::Std(child),
    })
}

/// The exit code Nomad reports for a status: the exit status, or `128 + signal`.
pub fn exit_code(status: &ExitStatus) -> i32 {
    if status.signal != 0 {
        128 + status.signal
    } else {
        status.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn sh(script: &str) -> ExecSpec {
        ExecSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
            cwd: "/".into(),
            ..Default::default()
        }
    }

    fn read_all(f: Option<File>) -> String {
        let mut s = String::new();
        let mut f = f.expect("stream");
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => s.push_str(&String::from_utf8_lossy(&buf[..n])),
                // EIO: the pty slave side is gone.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read: {e}"),
            }
        }
        s
    }

    #[test]
    fn pipes_exit_codes_and_signals() {
        let mut c = spawn_exec(&sh("echo out; echo err >&2; exit 3")).expect("spawn");
        let out = read_all(c.stdout.take());
        let err = read_all(c.stderr.take());
        let st = c.wait().expect("wait");
        assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
        assert_eq!(exit_code(&st), 3);

        let mut c = spawn_exec(&sh("kill -9 $$")).expect("spawn");
        let st = c.wait().expect("wait");
        assert_eq!(st.signal, 9);
        assert_eq!(exit_code(&st), 137);
    }

    #[test]
    fn stdin_closes_and_env_and_cwd_apply() {
        let mut spec = sh("cat; echo \"$FOO $(pwd)\"");
        spec.env.insert("FOO".into(), "bar".into());
        spec.cwd = "/tmp".into();
        let mut c = spawn_exec(&spec).expect("spawn");
        let mut stdin = c.stdin.take().expect("stdin");
        stdin.write_all(b"hello\n").expect("write");
        drop(stdin);
        let out = read_all(c.stdout.take());
        assert_eq!(out, "hello\nbar /tmp\n");
        assert_eq!(exit_code(&c.wait().expect("wait")), 0);
    }

    #[test]
    fn tty_has_size_and_controlling_terminal() {
        let mut spec = sh("stty size; test -t 0 && echo tty; exit 1");
        spec.tty = Some(WinSize {
            rows: 33,
            cols: 101,
        });
        let mut c = spawn_exec(&spec).expect("spawn");
        assert!(c.stderr.is_none());
        let out = read_all(c.stdout.take());
        assert!(out.contains("33 101"), "{out:?}");
        assert!(out.contains("tty"), "{out:?}");
        assert_eq!(exit_code(&c.wait().expect("wait")), 1);
    }

    #[test]
    fn missing_binary_is_a_start_error() {
        let mut spec = sh("");
        spec.program = "/definitely/not/here".into();
        let e = spawn_exec(&spec).unwrap_err();
        assert!(matches!(e, ExecError::Start { .. }), "{e}");
    }

    #[test]
    fn kill_reaches_the_process_group() {
        let mut c = spawn_exec(&sh("sleep 60")).expect("spawn");
        let ctl = c.control();
        ctl.kill();
        let st = c.wait().expect("wait");
        assert_eq!(exit_code(&st), 137);
        // After reaping, kill is a no-op.
        ctl.kill();
    }

    #[test]
    fn pid_digits() {
        let mut b = [0u8; 12];
        assert_eq!(format_u32(0, &mut b), b"0");
        assert_eq!(format_u32(4_294_967_295, &mut b), b"4294967295");
    }
}
