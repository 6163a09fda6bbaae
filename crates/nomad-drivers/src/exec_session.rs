//! `alloc exec` at the driver level: [`Driver::exec_task`](crate::Driver::exec_task) starts a
//! command next to a running task and hands back an [`ExecSession`] (streams, resize, kill,
//! wait). The transport (websocket frames) lives in nomad-http.
//!
//! raw_exec semantics (Nomad's `UniversalExecutor.ExecStreaming`): a plain host process with
//! the task's environment (read back from `/proc/<pid>/environ` of the task's main process
//! unless the caller passes one), the task's working directory, the task user, inside the
//! task's cgroup; `argv[0]` is resolved with the task environment's `PATH`, then the agent's.
//!
//! exec semantics ([`exec_in_isolated_task`]): the command enters the running task — its
//! mount, PID, IPC (and any other private) namespaces, its root, its cgroup, its uid/gid/groups
//! and capability sets, all read from the task's live main process at exec time (so recovered
//! tasks work the same), with the task's environment and working directory; `argv[0]` is
//! searched in the task environment's `PATH` inside the task's root. See
//! [`nomad_executor::exec_enter`].

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nomad_executor::exec_enter::{self, EnterSpec};
use nomad_executor::exec_session::{self as ex, ExecChild, ExecSpec, WinSize};

use crate::common::{ManagedTask, TaskTable};
use crate::DriverError;

pub use nomad_executor::exec_session::ExecControl;

/// What to run inside a task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// `argv`; must not be empty.
    pub command: Vec<String>,
    /// Attach a pseudo-terminal.
    pub tty: bool,
    /// Initial terminal size (rows, columns) when `tty`; `None` = 0x0 until the first resize.
    pub tty_size: Option<(u16, u16)>,
    /// The environment; `None` = the task's own (read from its main process).
    pub env: Option<BTreeMap<String, String>>,
    /// Working directory; `None` = the task's main process's current directory. raw_exec
    /// only: the exec driver always uses the task's own (inside its root).
    pub cwd: Option<PathBuf>,
    /// Run as this user; `None` or empty = the agent's user. raw_exec only: the exec driver
    /// always uses the live uid, gid, groups and capabilities of the task's main process.
    pub user: Option<String>,
}

/// How an exec'd command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecExit {
    /// Nomad's exit code: the exit status, `128 + signal` when killed by a signal, `-2` when
    /// the status could not be read.
    pub exit_code: i32,
    /// The terminating signal, 0 if none.
    pub signal: i32,
}

/// A running exec'd command. Take the streams (`stdin`, `stdout`, `stderr`), keep a
/// [`ExecSession::control`] for resizes and kills, then call [`ExecSession::wait`] (blocking).
#[derive(Debug)]
pub struct ExecSession {
    /// The command's stdin (the pty master with a tty). Dropping it closes stdin (no tty).
    pub stdin: Option<File>,
    /// The command's stdout (with a tty: all terminal output; EIO means EOF).
    pub stdout: Option<File>,
    /// The command's stderr; `None` with a tty.
    pub stderr: Option<File>,
    child: ExecChild,
}

impl ExecSession {
    fn new(mut child: ExecChild) -> ExecSession {
        ExecSession {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
        }
    }

    /// The command's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Resize / kill handle, usable from any thread while [`ExecSession::wait`] blocks.
    pub fn control(&self) -> ExecControl {
        self.child.control()
    }

    /// Blocks until the command exits.
    pub fn wait(mut self) -> ExecExit {
        match self.child.wait() {
            Ok(st) => ExecExit {
                exit_code: ex::exit_code(&st),
                signal: st.signal,
            },
            Err(error) => {
                tracing::warn!(%error, "exec: could not read the exit status");
                ExecExit {
                    exit_code: -2,
                    signal: 0,
                }
            }
        }
    }
}

/// Sets the size of a session's terminal (rows, columns); a no-op without a tty.
pub fn resize(control: &ExecControl, rows: u16, cols: u16) -> Result<(), DriverError> {
    control
        .resize(WinSize { rows, cols })
        .map_err(|e| DriverError::Start {
            task_id: String::new(),
            message: e.to_string(),
        })
}

/// The error of drivers without exec support.
pub(crate) fn unsupported(driver: &str, task_id: &str) -> DriverError {
    DriverError::Start {
        task_id: task_id.to_string(),
        message: format!("{driver} driver does not support exec"),
    }
}

/// Reads a process's initial environment (`/proc/<pid>/environ`).
fn proc_environ(pid: u32) -> Option<BTreeMap<String, String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let s = String::from_utf8_lossy(kv);
                let (k, v) = s.split_once('=')?;
                (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
            })
            .collect(),
    )
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves `argv[0]` like Go's `exec.LookPath` with the task's `PATH`, then the agent's. A
/// name with a `/` is used as given (relative to the working directory).
pub(crate) fn resolve_program(
    cmd: &str,
    env: &BTreeMap<String, String>,
    cwd: &Path,
) -> Result<PathBuf, String> {
    if cmd.contains('/') {
        return Ok(PathBuf::from(cmd));
    }
    let agent_path = std::env::var("PATH").unwrap_or_default();
    for path in [env.get("PATH").cloned().unwrap_or_default(), agent_path] {
        for dir in std::env::split_paths(&path) {
            let dir = if dir.as_os_str().is_empty() {
                cwd.to_path_buf()
            } else if dir.is_relative() {
                cwd.join(dir)
            } else {
                dir
            };
            let cand = dir.join(cmd);
            if is_executable(&cand) {
                return Ok(cand);
            }
        }
    }
    Err(format!("exec: {cmd:?}: executable file not found in $PATH"))
}

/// What both session kinds start from: the running task, `argv[0]` and the environment.
struct Target {
    task: std::sync::Arc<ManagedTask>,
    argv0: String,
    env: BTreeMap<String, String>,
}

fn start_err(task_id: &str, message: String) -> DriverError {
    DriverError::Start {
        task_id: task_id.to_string(),
        message,
    }
}

fn target(tasks: &TaskTable, task_id: &str, req: &ExecRequest) -> Result<Target, DriverError> {
    let task = tasks.get(task_id)?;
    if task.exited() {
        return Err(start_err(task_id, "task is not running".to_string()));
    }
    let Some(argv0) = req.command.first().filter(|c| !c.is_empty()).cloned() else {
        return Err(start_err(task_id, "command is not present".to_string()));
    };
    let env = match &req.env {
        Some(e) => e.clone(),
        None => proc_environ(task.handle.pid).unwrap_or_default(),
    };
    Ok(Target { task, argv0, env })
}

fn tty_size(req: &ExecRequest) -> Option<WinSize> {
    req.tty.then(|| {
        let (rows, cols) = req.tty_size.unwrap_or((0, 0));
        WinSize { rows, cols }
    })
}

fn started(task_id: &str, child: ExecChild, tty: bool) -> ExecSession {
    tracing::debug!(task_id, pid = child.pid(), tty, "exec session started");
    ExecSession::new(child)
}

/// raw_exec's `exec_task`: the command on the host, next to task `task_id` of `tasks`.
pub(crate) fn exec_in_task(
    tasks: &TaskTable,
    task_id: &str,
    req: ExecRequest,
) -> Result<ExecSession, DriverError> {
    let Target { task, argv0, env } = target(tasks, task_id, &req)?;
    let start_err = |message: String| start_err(task_id, message);
    let pid = task.handle.pid;
    let tty = tty_size(&req);
    let cwd = req
        .cwd
        .filter(|c| c.is_dir())
        .or_else(|| std::fs::read_link(format!("/proc/{pid}/cwd")).ok())
        .unwrap_or_else(|| PathBuf::from("/"));
    let program = resolve_program(&argv0, &env, &cwd).map_err(start_err)?;
    let spec = ExecSpec {
        program,
        argv0: Some(argv0),
        args: req.command[1..].to_vec(),
        env,
        cwd,
        user: req.user.filter(|u| !u.is_empty()),
        cgroup_procs: task
            .cgroup
            .as_ref()
            .map(|c| c.procs_files())
            .unwrap_or_default(),
        tty,
    };
    let child = ex::spawn_exec(&spec).map_err(|e| start_err(e.to_string()))?;
    Ok(started(task_id, child, req.tty))
}

/// exec's `exec_task`: the command inside task `task_id` of `tasks` (see the module docs).
///
/// `req.cwd` and `req.user` are not used: the client passes host paths and the job's user,
/// while the command gets the task's own working directory (inside its root) and the live
/// credentials of its main process, which are what the task actually runs with.
pub(crate) fn exec_in_isolated_task(
    tasks: &TaskTable,
    task_id: &str,
    req: ExecRequest,
) -> Result<ExecSession, DriverError> {
    let Target { task, argv0, env } = target(tasks, task_id, &req)?;
    let mut argv = req.command.clone();
    argv[0] = argv0;
    let spec = EnterSpec {
        pid: task.handle.pid,
        start_time: task.handle.start_time,
        argv,
        env,
        cwd: None,
        cgroup_procs: task
            .cgroup
            .as_ref()
            .map(|c| c.procs_files())
            .unwrap_or_default(),
        tty: tty_size(&req),
    };
    let child =
        exec_enter::spawn_exec_in_task(&spec).map_err(|e| start_err(task_id, e.to_string()))?;
    Ok(started(task_id, child, req.tty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_resolution() {
        let env: BTreeMap<String, String> =
            [("PATH".to_string(), "/nonexistent:/bin".to_string())].into();
        assert_eq!(
            resolve_program("sh", &env, Path::new("/")).expect("sh"),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            resolve_program("./x", &env, Path::new("/")).expect("x"),
            PathBuf::from("./x")
        );
        assert_eq!(
            resolve_program("definitely-not-a-binary-xyz", &env, Path::new("/")).unwrap_err(),
            "exec: \"definitely-not-a-binary-xyz\": executable file not found in $PATH"
        );
    }

    #[test]
    fn environ_of_self() {
        let env = proc_environ(std::process::id()).expect("environ");
        if let Ok(path) = std::env::var("PATH") {
            assert_eq!(env.get("PATH"), Some(&path));
        }
    }
}
