//! `nomad alloc exec` into an isolated (exec driver) task: the command runs inside the task's
//! mount, PID, IPC (and any other non-host) namespaces, in its root, in its cgroup, with its
//! uid, gid, groups and capability sets: what the task sees, the command sees.
//!
//! Everything is read from the task's live main process, so it is right for recovered tasks
//! too (nothing needs to be kept from the start): namespaces (`/proc/<pid>/ns/*`, or better a
//! pidfd), root and working directory (`/proc/<pid>/root`, `/proc/<pid>/cwd`), credentials and
//! capabilities (`/proc/<pid>/status`: `Uid`, `Gid`, `Groups`, `Cap*`, `NoNewPrivs`) and
//! `oom_score_adj`. All of it is opened or parsed before forking, then the start time of the
//! process is checked again, so every descriptor is known to belong to the task and not to a
//! process that reused its pid.
//!
//! Two children are forked, both with raw `clone(2)` (no glibc fork handlers):
//!
//! - **A** (in the agent's namespaces): stdio `dup2`, joins the task's cgroup (the host
//!   `/sys/fs/cgroup` is only visible from here), copies `oom_score_adj`, `setns` into the
//!   task's namespaces (one `setns(pidfd, flags)` on Linux ≥ 5.8, else one namespace file at a
//!   time, mount namespace last), `fchdir` + `chroot` into the task's root, then clones **B**
//!   with `CLONE_PARENT`, reports B's pid and exits. `setns` into a PID namespace only applies
//!   to children, hence the second fork; `CLONE_PARENT` makes B a direct child of the agent, so
//!   it is waited for and killed exactly like a raw_exec session command.
//! - **B** (inside the task's PID namespace): `setsid` (+ controlling terminal), bounding set,
//!   `setgroups`/`setgid`/`setuid`, capability sets and ambient set, `no_new_privs`, working
//!   directory, signal reset, then `execve` of each candidate path in order (a `PATH` search
//!   inside the task's root, with every candidate prepared before the fork).
//!
//! Both children only make async-signal-safe system calls on data prepared before the fork.
//! Failures travel back through a close-on-exec pipe as `(step, errno)` records and become
//! [`ExecError::Step`] (`setns mnt: ...`) or [`ExecError::NotFound`].

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::caps::CapSet;
use crate::exec_session::{above_stdio, open_pty, ExecChild, ExecError, WinSize};
use crate::spawn::{format_u32, read_records, reap, report_code, write_file};

/// What to run inside a running isolated task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnterSpec {
    /// Host pid of the task's main process (pid 1 of its PID namespace, if private).
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` at task start; 0 = do not check for pid reuse.
    pub start_time: u64,
    /// `argv`; `argv[0]` is looked up with the `PATH` of `env` inside the task's root unless it
    /// contains a `/`.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the task's root; `None` = the main process's current directory.
    pub cwd: Option<PathBuf>,
    /// Host `cgroup.procs` files to join (best effort, as for raw_exec sessions).
    pub cgroup_procs: Vec<PathBuf>,
    /// `Some`: a new pty of this size is the command's stdin, stdout, stderr and controlling
    /// terminal. `None`: three pipes.
    pub tty: Option<WinSize>,
}

/// The `PATH` used when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Credentials and capabilities of a live process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcIdentity {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// `CapInh`.
    pub inheritable: CapSet,
    /// `CapPrm`.
    pub permitted: CapSet,
    /// `CapEff`.
    pub effective: CapSet,
    /// `CapBnd`.
    pub bounding: CapSet,
    /// `CapAmb`.
    pub ambient: CapSet,
    /// `NoNewPrivs: 1`.
    pub no_new_privs: bool,
}

impl ProcIdentity {
    /// Parses the text of `/proc/<pid>/status`. `None` if a required line is missing.
    pub fn parse(status: &str) -> Option<ProcIdentity> {
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        // `Uid:`/`Gid:` are real, effective, saved, filesystem.
        let second =
            |key: &str| -> Option<u32> { field(key)?.split_whitespace().nth(1)?.parse().ok() };
        let caps = |key: &str| crate::caps::parse_status_caps(status, key);
        let groups = field("Groups")?
            .split_whitespace()
            .map(|g| g.parse().ok())
            .collect::<Option<Vec<u32>>>()?;
        Some(ProcIdentity {
            uid: second("Uid")?,
            gid: second("Gid")?,
            groups,
            inheritable: caps("CapInh")?,
            permitted: caps("CapPrm")?,
            effective: caps("CapEff")?,
            bounding: caps("CapBnd")?,
            // CapAmb exists since Linux 4.3.
            ambient: caps("CapAmb").unwrap_or_default(),
            no_new_privs: field("NoNewPrivs") == Some("1"),
        })
    }
}

/// The paths `execve` is tried on, in order: `cmd` itself when it contains a `/`, else
/// `<dir>/<cmd>` for every `PATH` entry (an empty entry is the working directory), like
/// `execvp`.
pub fn exec_candidates(cmd: &str, path: Option<&str>) -> Vec<PathBuf> {
    if cmd.contains('/') {
        return vec![PathBuf::from(cmd)];
    }
    let path = path.filter(|p| !p.is_empty()).unwrap_or(DEFAULT_PATH);
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in path.split(':') {
        let cand = if dir.is_empty() {
            PathBuf::from(cmd)
        } else {
            Path::new(dir).join(cmd)
        };
        if !out.contains(&cand) {
            out.push(cand);
        }
    }
    out
}

/// Namespaces joined when the task's differs from the agent's. Mount last: after it the
/// host's `/proc` is gone.
const NAMESPACES: &[(&str, libc::c_int, Step)] = &[
    ("ipc", libc::CLONE_NEWIPC, Step::SetnsIpc),
    ("uts", libc::CLONE_NEWUTS, Step::SetnsUts),
    ("net", libc::CLONE_NEWNET, Step::SetnsNet),
    ("cgroup", libc::CLONE_NEWCGROUP, Step::SetnsCgroup),
    ("pid", libc::CLONE_NEWPID, Step::SetnsPid),
    ("mnt", libc::CLONE_NEWNS, Step::SetnsMnt),
];

/// Child steps, as reported through the status pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    Stdio = 1,
    CgroupJoin = 2,
    OomScoreAdj = 3,
    SetnsIpc = 4,
    SetnsUts = 5,
    SetnsNet = 6,
    SetnsCgroup = 7,
    SetnsPid = 8,
    SetnsMnt = 9,
    Chroot = 10,
    Fork = 11,
    Setsid = 12,
    Tty = 13,
    CapBounding = 14,
    KeepCaps = 15,
    Setgroups = 16,
    Setgid = 17,
    Setuid = 18,
    Capset = 19,
    AmbientCaps = 20,
    NoNewPrivs = 21,
    Chdir = 22,
    Sigmask = 23,
    Exec = 24,
}

/// A record carrying B's pid (in the errno field) instead of a failure.
const PID_RECORD: u32 = 999;

impl Step {
    const ALL: [Step; 24] = [
        Step::Stdio,
        Step::CgroupJoin,
        Step::OomScoreAdj,
        Step::SetnsIpc,
        Step::SetnsUts,
        Step::SetnsNet,
        Step::SetnsCgroup,
        Step::SetnsPid,
        Step::SetnsMnt,
        Step::Chroot,
        Step::Fork,
        Step::Setsid,
        Step::Tty,
        Step::CapBounding,
        Step::KeepCaps,
        Step::Setgroups,
        Step::Setgid,
        Step::Setuid,
        Step::Capset,
        Step::AmbientCaps,
        Step::NoNewPrivs,
        Step::Chdir,
        Step::Sigmask,
        Step::Exec,
    ];

    fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u32 == v)
    }

    fn name(self) -> &'static str {
        match self {
            Step::Stdio => "redirect stdio",
            Step::CgroupJoin => "join cgroup",
            Step::OomScoreAdj => "set oom_score_adj",
            Step::SetnsIpc => "setns ipc",
            Step::SetnsUts => "setns uts",
            Step::SetnsNet => "setns net",
            Step::SetnsCgroup => "setns cgroup",
            Step::SetnsPid => "setns pid",
            Step::SetnsMnt => "setns mnt",
            Step::Chroot => "chroot into the task's root",
            Step::Fork => "fork into the task's pid namespace",
            Step::Setsid => "setsid",
            Step::Tty => "set the controlling terminal",
            Step::CapBounding => "drop capabilities from the bounding set",
            Step::KeepCaps => "keep capabilities across setuid",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setgid",
            Step::Setuid => "setuid",
            Step::Capset => "set capabilities",
            Step::AmbientCaps => "raise ambient capabilities",
            Step::NoNewPrivs => "set no_new_privs",
            Step::Chdir => "chdir to the working directory",
            Step::Sigmask => "reset signal mask",
            Step::Exec => "exec",
        }
    }

    fn fatal(self) -> bool {
        !matches!(self, Step::CgroupJoin | Step::OomScoreAdj)
    }
}

/// Everything both children touch, allocated before the first fork.
struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    candidates: Vec<CString>,
    /// `pidfd_open(pid)`, when the kernel has it.
    pidfd: Option<OwnedFd>,
    /// Union of the `CLONE_NEW*` flags of the namespaces to join.
    ns_flags: libc::c_int,
    /// Fallback: the namespace files, in [`NAMESPACES`] order.
    ns_fds: Vec<(OwnedFd, Step)>,
    root: OwnedFd,
    cwd_fd: Option<OwnedFd>,
    cwd_path: Option<CString>,
    procs: Vec<CString>,
    oom_path: CString,
    oom_value: Option<Vec<u8>>,
    id: ProcIdentity,
    last_cap: u32,
    tty: bool,
    /// Child-side stdin, stdout, stderr (all above 2); filled in by [`make_stdio`].
    stdio: Vec<OwnedFd>,
}

fn cstr(bytes: &[u8], what: &'static str) -> Result<CString, ExecError> {
    CString::new(bytes).map_err(|_| ExecError::Nul { what })
}

fn open_path(path: &str, flags: OFlag) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        Path::new(path),
        flags | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Tests force the per-namespace-file fallback (older kernels) with this.
#[cfg(test)]
static NO_PIDFD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    #[cfg(test)]
    if NO_PIDFD.load(std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0 as libc::c_long) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall returned a fresh descriptor (close-on-exec by definition) that
    // nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens and reads everything about the task before forking; checks the start time last.
fn prepare(spec: &EnterSpec) -> Result<Prepared, ExecError> {
    let pid = spec.pid;
    let inspect = |what: String, source: io::Error| {
        if source.raw_os_error() == Some(libc::ENOENT) || source.raw_os_error() == Some(libc::ESRCH)
        {
            ExecError::TaskGone { pid }
        } else {
            ExecError::Inspect { pid, what, source }
        }
    };
    let argv0 = spec.argv.first().map(String::as_str).unwrap_or_default();
    if argv0.is_empty() {
        return Err(ExecError::NotFound("command is not present".to_string()));
    }
    let argv = spec
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes(), "argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut envp = Vec::with_capacity(spec.env.len());
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(ExecError::Nul {
                what: "environment variable name (empty or contains '=')",
            });
        }
        envp.push(cstr(format!("{k}={v}").as_bytes(), "environment variable")?);
    }
    let candidates = exec_candidates(argv0, spec.env.get("PATH").map(String::as_str))
        .iter()
        .map(|p| cstr(p.as_os_str().as_bytes(), "command"))
        .collect::<Result<Vec<_>, _>>()?;

    let pidfd = pidfd_open(pid);
    let mut ns_flags = 0;
    let mut ns_fds = Vec::new();
    for (name, flag, step) in NAMESPACES {
        let theirs_path = format!("/proc/{pid}/ns/{name}");
        let theirs = match std::fs::metadata(&theirs_path) {
            Ok(m) => m,
            // A namespace type the kernel lacks (e.g. no cgroup namespaces): nothing to join.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && *name != "mnt" => {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(ExecError::TaskGone { pid });
                }
                continue;
            }
            Err(e) => return Err(inspect(theirs_path, e)),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).ok();
        if ours.is_some_and(|o| o.ino() == theirs.ino() && o.dev() == theirs.dev()) {
            continue;
        }
        ns_flags |= *flag;
        let fd = open_path(&theirs_path, OFlag::O_RDONLY).map_err(|e| inspect(theirs_path, e))?;
        ns_fds.push((fd, *step));
    }
    let root_path = format!("/proc/{pid}/root");
    let root = open_path(&root_path, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| inspect(root_path, e))?;
    let (cwd_fd, cwd_path) = match &spec.cwd {
        Some(p) => (
            None,
            Some(cstr(p.as_os_str().as_bytes(), "working directory")?),
        ),
        None => {
            let p = format!("/proc/{pid}/cwd");
            let fd =
                open_path(&p, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| inspect(p, e))?;
            (Some(fd), None)
        }
    };
    let status_path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&status_path).map_err(|e| inspect(status_path.clone(), e))?;
    let id = ProcIdentity::parse(&status).ok_or_else(|| ExecError::Inspect {
        pid,
        what: status_path,
        source: io::Error::new(io::ErrorKind::InvalidData, "unexpected format"),
    })?;
    let oom_value = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .ok()
        .map(|s| s.trim().as_bytes().to_vec())
        .filter(|v| !v.is_empty());
    // Everything above belongs to the task only if it is still the same process now.
    let alive = if spec.start_time != 0 {
        crate::procfs::is_same_live_process(pid, spec.start_time)
    } else {
        crate::procfs::is_alive(pid)
    };
    if !alive {
        return Err(ExecError::TaskGone { pid });
    }
    let procs = spec
        .cgroup_procs
        .iter()
        .map(|p| cstr(p.as_os_str().as_bytes(), "cgroup path"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        argv,
        envp,
        candidates,
        pidfd,
        ns_flags,
        ns_fds,
        root,
        cwd_fd,
        cwd_path,
        procs,
        oom_path: c"/proc/self/oom_score_adj".to_owned(),
        oom_value,
        id,
        last_cap: crate::caps::kernel_last_cap(),
        tty: spec.tty.is_some(),
        stdio: Vec::new(),
    })
}

/// Parent-side ends of the command's stdio.
struct ParentStdio {
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    pty: Option<OwnedFd>,
}

/// A pty of the task's own devpts instance (`/dev/pts` inside its root), its slave owned by
/// the task user like a login terminal (mode 0620), so `tty` inside the task names it. `None`
/// if that fails (e.g. no devpts in the task, or a kernel without `TIOCGPTPEER`).
fn open_task_pty(pid: u32, size: WinSize, id: &ProcIdentity) -> Option<(OwnedFd, OwnedFd)> {
    let master = open_path(
        &format!("/proc/{pid}/root/dev/pts/ptmx"),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
    )
    .ok()?;
    let unlock: libc::c_int = 0;
    // SAFETY: `master` is an open pty master; TIOCSPTLCK reads one int through the pointer,
    // which points to a live stack value.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return None;
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor for the slave (opened
    // without a path lookup, so it is the peer of this very master).
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return None;
    }
    // SAFETY: the ioctl returned a fresh descriptor that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    let owner = nix::unistd::fchown(
        &slave,
        Some(nix::unistd::Uid::from_raw(id.uid)),
        Some(nix::unistd::Gid::from_raw(id.gid)),
    );
    let mode = nix::sys::stat::fchmod(&slave, nix::sys::stat::Mode::from_bits_truncate(0o620));
    if owner.is_err() || mode.is_err() {
        return None;
    }
    crate::exec_session::set_winsize(&master, size).ok()?;
    Some((master, slave))
}

fn make_stdio(
    pid: u32,
    tty: Option<WinSize>,
    id: &ProcIdentity,
) -> Result<(ParentStdio, Vec<OwnedFd>), ExecError> {
    let io_err = ExecError::Pty;
    if let Some(size) = tty {
        let (master, slave) = match open_task_pty(pid, size, id) {
            Some(pair) => pair,
            None => {
                tracing::debug!(pid, "exec: no pty from the task's devpts; using the host's");
                open_pty(size)?
            }
        };
        let slave = above_stdio(slave).map_err(io_err)?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(ExecError::Pty);
        let child = vec![dup(&slave)?, dup(&slave)?, slave];
        let parent = ParentStdio {
            stdin: Some(File::from(dup(&master)?)),
            stdout: Some(File::from(dup(&master)?)),
            stderr: None,
            pty: Some(master),
        };
        return Ok((parent, child));
    }
    let pipe = || -> Result<(OwnedFd, OwnedFd), ExecError> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ExecError::Pty(e.into()))?;
        Ok((
            above_stdio(r).map_err(ExecError::Pty)?,
            above_stdio(w).map_err(ExecError::Pty)?,
        ))
    };
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok((
        ParentStdio {
            stdin: Some(File::from(in_w)),
            stdout: Some(File::from(out_r)),
            stderr: Some(File::from(err_r)),
            pty: None,
        },
        vec![in_r, out_w, err_w],
    ))
}

/// Starts `spec.argv` inside the running task `spec.pid`. Returns once the command has exec'd
/// (or failed to). The command is a direct child of this process: wait for it, resize and kill
/// it through the returned [`ExecChild`].
pub fn spawn_exec_in_task(spec: &EnterSpec) -> Result<ExecChild, ExecError> {
    let mut prep = prepare(spec)?;
    let (parent_io, child_io) = make_stdio(spec.pid, spec.tty, &prep.id)?;
    prep.stdio = child_io;
    let command = spec.argv.first().cloned().unwrap_or_default();
    let mut argv_ptrs: Vec<*const libc::c_char> = prep.argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = prep.envp.iter().map(|c| c.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let (pipe_r, pipe_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ExecError::Start {
        command: command.clone(),
        source: e.into(),
    })?;

    // SAFETY: clone(2) without CLONE_VM and with a NULL stack behaves like fork (the child gets
    // a copy-on-write copy of this thread's stack) and, unlike glibc's fork, runs no atfork
    // handlers. The child branch only makes async-signal-safe system calls on memory prepared
    // above (no allocation, no locks, no logging) and always ends in `_exit`.
    let a = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    } as libc::pid_t;
    if a < 0 {
        return Err(ExecError::Start {
            command,
            source: io::Error::last_os_error(),
        });
    }
    if a == 0 {
        // SAFETY: we are the freshly cloned child; `child_a` upholds the async-signal-safety
        // rules and never returns.
        unsafe {
            child_a(
                &prep,
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
                pipe_w.as_raw_fd(),
            )
        }
    }

    drop(pipe_w);
    drop(prep);
    let records = read_records(&pipe_r);
    drop(pipe_r);
    reap(a);
    let mut b: Option<u32> = None;
    let mut failure: Option<(Step, i32)> = None;
    for (code, errno) in records {
        if code == PID_RECORD {
            b = u32::try_from(errno).ok();
            continue;
        }
        let Some(step) = Step::from_u32(code) else {
            continue;
        };
        if step.fatal() {
            failure.get_or_insert((step, errno));
        } else {
            tracing::warn!(pid = spec.pid, step = step.name(), error = %io::Error::from_raw_os_error(errno), "exec session setup step failed");
        }
    }
    if let Some((step, errno)) = failure {
        if let Some(b) = b {
            // B reported and _exit'ed; it is our child (CLONE_PARENT).
            reap(b as libc::pid_t);
        }
        return Err(step_error(&command, &prep_candidates(spec), step, errno));
    }
    let Some(b) = b else {
        return Err(ExecError::Start {
            command,
            source: io::Error::other("the setup process exited without starting the command"),
        });
    };
    tracing::debug!(
        task_pid = spec.pid,
        pid = b,
        "exec session entered the task"
    );
    Ok(ExecChild::from_raw(
        b,
        parent_io.stdin,
        parent_io.stdout,
        parent_io.stderr,
        parent_io.pty,
    ))
}

fn prep_candidates(spec: &EnterSpec) -> Vec<PathBuf> {
    let argv0 = spec.argv.first().map(String::as_str).unwrap_or_default();
    exec_candidates(argv0, spec.env.get("PATH").map(String::as_str))
}

fn step_error(command: &str, candidates: &[PathBuf], step: Step, errno: i32) -> ExecError {
    let source = io::Error::from_raw_os_error(errno);
    if step == Step::Exec && errno == libc::ENOENT {
        return ExecError::NotFound(if command.contains('/') {
            format!("failed to start command {command:?}: no such file inside the task's root")
        } else {
            let dirs: Vec<String> = candidates
                .iter()
                .map(|c| {
                    c.parent()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                })
                .collect();
            format!(
                "exec: {command:?}: executable file not found in $PATH inside the task's root (searched {})",
                dirs.join(":")
            )
        });
    }
    if step == Step::Exec {
        return ExecError::Start {
            command: command.to_string(),
            source,
        };
    }
    ExecError::Step {
        command: command.to_string(),
        step: step.name(),
        source,
    }
}

fn errno() -> i32 {
    // SAFETY: reading errno through libc's thread-local accessor is async-signal-safe.
    unsafe { *libc::__errno_location() }
}

/// Reports `step` with the current errno and exits the child without running destructors or
/// atexit handlers.
///
/// # Safety
/// Child-only, `pipe` valid.
unsafe fn fail(pipe: RawFd, step: Step) -> ! {
    let e = errno();
    // SAFETY: child-only with a valid pipe (caller contract).
    unsafe { report_code(pipe, step as u32, e) };
    // SAFETY: _exit is async-signal-safe and ends the child immediately.
    unsafe { libc::_exit(127) }
}

/// `setns(2)` as a raw syscall.
fn setns(fd: RawFd, flags: libc::c_int) -> bool {
    // SAFETY: setns takes a descriptor and integer flags; no memory is passed.
    unsafe { libc::syscall(libc::SYS_setns, fd as libc::c_long, flags as libc::c_long) == 0 }
}

/// Child A: in the agent's namespaces; ends by cloning B into the task's namespaces.
///
/// # Safety
/// Must be called only in the child right after the clone; `argv`/`envp` are NULL-terminated
/// arrays of pointers into `prep`.
unsafe fn child_a(
    prep: &Prepared,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    pipe: RawFd,
) -> ! {
    for (i, fd) in prep.stdio.iter().enumerate() {
        // SAFETY: both descriptors are valid; sources are above 2 (`above_stdio`), so the
        // sequence cannot clobber a later source. dup2 clears close-on-exec on the target.
        if unsafe { libc::dup2(fd.as_raw_fd(), i as RawFd) } < 0 {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::Stdio) }
        }
    }

    // The cgroup join has to happen while the host's cgroup file system is reachable, i.e.
    // before the mount namespace changes; B inherits the cgroup.
    if !prep.procs.is_empty() {
        let mut buf = [0u8; 12];
        // SAFETY: getpid as a raw syscall (glibc may cache the pid of the parent).
        let me = unsafe { libc::syscall(libc::SYS_getpid) } as u32;
        let digits = format_u32(me, &mut buf);
        for path in &prep.procs {
            // SAFETY: child-only; valid C string prepared before the clone.
            if !unsafe { write_file(path, digits) } {
                // SAFETY: child-only report (non-fatal).
                unsafe { report_code(pipe, Step::CgroupJoin as u32, errno()) };
            }
        }
    }
    if let Some(v) = &prep.oom_value {
        // SAFETY: child-only; valid C string and buffer.
        if !unsafe { write_file(&prep.oom_path, v) } {
            // SAFETY: child-only report (non-fatal).
            unsafe { report_code(pipe, Step::OomScoreAdj as u32, errno()) };
        }
    }

    if prep.ns_flags != 0 {
        // One atomic setns through the pidfd (Linux >= 5.8); older kernels reject a pidfd
        // with EINVAL, and any other failure is retried one namespace at a time so the error
        // names the namespace.
        let joined = prep
            .pidfd
            .as_ref()
            .is_some_and(|fd| setns(fd.as_raw_fd(), prep.ns_flags));
        if !joined {
            for (fd, step) in &prep.ns_fds {
                if !setns(fd.as_raw_fd(), 0) {
                    // SAFETY: child-only.
                    unsafe { fail(pipe, *step) }
                }
            }
        }
    }

    // setns(mnt) leaves us at the namespace's root mount; the task's root is what its process
    // sees as "/" (the pivoted tmpfs, or the moved one with no_pivot_root).
    // SAFETY: `root` is an open O_PATH directory descriptor; fchdir takes only it.
    let entered = unsafe { libc::fchdir(prep.root.as_raw_fd()) } == 0
        // SAFETY: chroot with a constant NUL-terminated path.
        && unsafe { libc::chroot(c".".as_ptr()) } == 0;
    if !entered {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Chroot) }
    }

    // B is a child of the agent (CLONE_PARENT) and, after setns(pid), in the task's PID
    // namespace.
    // SAFETY: as for the first clone: fork semantics without atfork handlers; B only runs
    // `child_b`, which obeys the same rules.
    let b = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    } as libc::pid_t;
    if b < 0 {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Fork) }
    }
    if b == 0 {
        // SAFETY: B, right after the clone; never returns.
        unsafe { child_b(prep, argv, envp, pipe) }
    }
    // SAFETY: child-only report of B's pid (as seen from the agent's PID namespace).
    unsafe { report_code(pipe, PID_RECORD, b) };
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Child B: inside the task's namespaces and root; becomes the command.
///
/// # Safety
/// As for [`child_a`].
unsafe fn child_b(
    prep: &Prepared,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    pipe: RawFd,
) -> ! {
    // SAFETY: setsid is async-signal-safe; a fresh child is never a group leader.
    if unsafe { libc::setsid() } < 0 {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Setsid) }
    }
    if prep.tty {
        // SAFETY: fd 0 is the pty slave; TIOCSCTTY takes an int (0: do not steal).
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::Tty) }
        }
    }
    let id = &prep.id;
    // Needs CAP_SETPCAP: while still the agent's root.
    for cap in 0..=prep.last_cap {
        if !id.bounding.contains(cap) {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
                // SAFETY: child-only.
                unsafe { fail(pipe, Step::CapBounding) }
            }
        }
    }
    if id.uid != 0 {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } < 0 {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::KeepCaps) }
        }
    }
    // Raw syscalls: glibc's wrappers would try to broadcast to threads that do not exist in a
    // cloned child (see spawn.rs).
    // SAFETY: pointer/len of the Vec prepared before the clone.
    if unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            id.groups.len() as libc::size_t,
            id.groups.as_ptr(),
        )
    } < 0
    {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Setgroups) }
    }
    // SAFETY: integer argument.
    if unsafe { libc::syscall(libc::SYS_setgid, id.gid as libc::c_long) } < 0 {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Setgid) }
    }
    // SAFETY: integer argument.
    if unsafe { libc::syscall(libc::SYS_setuid, id.uid as libc::c_long) } < 0 {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Setuid) }
    }
    if id.uid != 0 {
        // Root (uid 0) gets its bounding set back at exec by itself; anyone else carries the
        // task's sets across exec through the ambient set, as the task did.
        if !crate::spawn::capset(id.effective, id.permitted, id.inheritable) {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::Capset) }
        }
        let ambient = CapSet(id.ambient.0 & id.permitted.0 & id.inheritable.0);
        for cap in ambient.numbers() {
            // SAFETY: prctl with integer arguments.
            let ret = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            if ret < 0 {
                // SAFETY: child-only.
                unsafe { fail(pipe, Step::AmbientCaps) }
            }
        }
    }
    if id.no_new_privs {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::NoNewPrivs) }
        }
    }
    // As the task user, so directory permissions are checked for it.
    let cd = match (&prep.cwd_fd, &prep.cwd_path) {
        // SAFETY: an open O_PATH directory descriptor.
        (Some(fd), _) => unsafe { libc::fchdir(fd.as_raw_fd()) },
        // SAFETY: a valid C string (resolved inside the new root).
        (None, Some(p)) => unsafe { libc::chdir(p.as_ptr()) },
        // SAFETY: constant path.
        (None, None) => unsafe { libc::chdir(c"/".as_ptr()) },
    };
    if cd < 0 {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Chdir) }
    }

    // SAFETY: raw close_range with constant arguments: every inherited fd >= 3 is closed at
    // exec (ours are close-on-exec already). Harmless ENOSYS on old kernels.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    // SAFETY: sigset_t is plain data, zeroed then initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; async-signal-safe calls.
    let mask_ok = unsafe {
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) == 0
    };
    if !mask_ok {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Sigmask) }
    }
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL is async-signal-safe.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }

    // execvp's rules: ENOENT/ENOTDIR/ESTALE/ENODEV/ETIMEDOUT move on to the next candidate,
    // EACCES is remembered and reported if nothing else works, anything else stops the search.
    let mut saw_eacces = false;
    let mut last = libc::ENOENT;
    for cand in &prep.candidates {
        // SAFETY: candidate, argv and envp are valid NUL-terminated data prepared before the
        // clone; execve only returns on failure.
        unsafe { libc::execve(cand.as_ptr(), argv, envp) };
        last = errno();
        match last {
            libc::EACCES => saw_eacces = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => break,
        }
    }
    if saw_eacces && matches!(last, libc::ENOENT | libc::ENOTDIR | libc::EACCES) {
        last = libc::EACCES;
    }
    // SAFETY: child-only.
    unsafe { report_code(pipe, Step::Exec as u32, last) };
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(127) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4242\nPPid:\t1\nUid:\t65534\t65534\t65534\t65534\nGid:\t65533\t65533\t65533\t65533\nFDSize:\t64\nGroups:\t65533 100 \nNSpid:\t4242\t1\nCapInh:\t00000000a80425fb\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t00000000a80425fb\nNoNewPrivs:\t0\nSeccomp:\t0\n";

    #[test]
    fn parses_identity() {
        let id = ProcIdentity::parse(STATUS).expect("parse");
        assert_eq!((id.uid, id.gid), (65534, 65533));
        assert_eq!(id.groups, vec![65533, 100]);
        assert_eq!(id.effective, CapSet(0xa80425fb));
        assert_eq!(id.bounding, CapSet(0xa80425fb));
        assert_eq!(id.ambient, CapSet(0xa80425fb));
        assert!(!id.no_new_privs);
        let nnp = STATUS.replace("NoNewPrivs:\t0", "NoNewPrivs:\t1");
        assert!(ProcIdentity::parse(&nnp).expect("parse").no_new_privs);
        // Empty group list.
        let none = STATUS.replace("Groups:\t65533 100 ", "Groups:\t");
        assert!(ProcIdentity::parse(&none).expect("parse").groups.is_empty());
        assert!(ProcIdentity::parse("Name:\tsh\n").is_none());
    }

    #[test]
    fn own_identity_matches_the_kernel() {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let id = ProcIdentity::parse(&status).expect("parse");
        assert_eq!(id.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(id.gid, nix::unistd::getegid().as_raw());
    }

    #[test]
    fn candidates_follow_path() {
        assert_eq!(
            exec_candidates("/bin/sh", Some("/x")),
            vec![PathBuf::from("/bin/sh")]
        );
        assert_eq!(exec_candidates("./run", None), vec![PathBuf::from("./run")]);
        assert_eq!(
            exec_candidates("sh", Some("/usr/bin::/bin:/usr/bin")),
            vec![
                PathBuf::from("/usr/bin/sh"),
                PathBuf::from("sh"),
                PathBuf::from("/bin/sh")
            ]
        );
        assert_eq!(
            exec_candidates("sh", Some("")),
            vec![
                PathBuf::from("/usr/local/bin/sh"),
                PathBuf::from("/usr/bin/sh"),
                PathBuf::from("/bin/sh")
            ]
        );
    }

    #[test]
    fn steps_round_trip_and_errors_name_the_step() {
        for s in Step::ALL {
            assert_eq!(Step::from_u32(s as u32), Some(s));
        }
        assert_eq!(Step::from_u32(PID_RECORD), None);
        assert!(!Step::CgroupJoin.fatal() && Step::SetnsMnt.fatal());
        let e = step_error("sh", &[], Step::SetnsMnt, libc::EPERM);
        assert!(
            e.to_string()
                .starts_with("failed to start command \"sh\": setns mnt: "),
            "{e}"
        );
        let c = exec_candidates("nope", Some("/usr/bin:/bin"));
        let e = step_error("nope", &c, Step::Exec, libc::ENOENT);
        assert_eq!(
            e.to_string(),
            "exec: \"nope\": executable file not found in $PATH inside the task's root (searched /usr/bin:/bin)"
        );
        let e = step_error("/x/nope", &[], Step::Exec, libc::ENOENT);
        assert!(
            e.to_string()
                .contains("no such file inside the task's root"),
            "{e}"
        );
        let e = step_error("/x/y", &[], Step::Exec, libc::EACCES);
        assert!(matches!(e, ExecError::Start { .. }), "{e}");
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Enters a process in its own UTS and IPC namespaces (same root and mount namespace), once
    /// through the pidfd and once through the namespace files.
    #[test]
    fn joins_uts_and_ipc_namespaces_both_ways() {
        if !is_root() {
            eprintln!("\n!!! SKIP joins_uts_and_ipc_namespaces_both_ways: requires root !!!\n");
            return;
        }
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("/bin/sleep");
        cmd.arg("30");
        // SAFETY: the hook runs in the forked child before exec and only calls unshare and
        // sethostname (test code; the parent test thread holds no locks the child needs).
        unsafe {
            cmd.pre_exec(|| {
                nix::sched::unshare(
                    nix::sched::CloneFlags::CLONE_NEWUTS | nix::sched::CloneFlags::CLONE_NEWIPC,
                )?;
                nix::unistd::sethostname("nomad-enter-test")?;
                Ok(())
            });
        }
        let mut target = cmd.spawn().expect("spawn target");
        let pid = target.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let ns = |p: &str| std::fs::read_link(p).ok();
        while ns(&format!("/proc/{pid}/ns/uts")) == ns("/proc/self/ns/uts") {
            assert!(
                std::time::Instant::now() < deadline,
                "target never unshared"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let spec = EnterSpec {
            pid,
            start_time: crate::procfs::process_start_time(pid).expect("start time"),
            argv: vec![
                "sh".into(),
                "-c".into(),
                "cat /proc/sys/kernel/hostname; readlink /proc/self/ns/ipc".into(),
            ],
            env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
            ..Default::default()
        };
        let want_ipc = std::fs::read_link(format!("/proc/{pid}/ns/ipc")).expect("ipc ns");
        for no_pidfd in [false, true] {
            NO_PIDFD.store(no_pidfd, std::sync::atomic::Ordering::SeqCst);
            let mut c = spawn_exec_in_task(&spec).expect("enter");
            let mut out = String::new();
            use std::io::Read;
            c.stdout
                .take()
                .expect("stdout")
                .read_to_string(&mut out)
                .expect("read");
            let st = c.wait().expect("wait");
            assert_eq!(crate::exec_session::exit_code(&st), 0);
            assert_eq!(
                out,
                format!("nomad-enter-test\n{}\n", want_ipc.display()),
                "no_pidfd={no_pidfd}"
            );
        }
        NO_PIDFD.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = target.kill();
        let _ = target.wait();
        // A wrong start time is a gone task, not an exec into a stranger.
        let e = spawn_exec_in_task(&EnterSpec {
            start_time: 1,
            pid: std::process::id(),
            ..spec
        })
        .unwrap_err();
        assert!(matches!(e, ExecError::TaskGone { .. }), "{e}");
    }

    #[test]
    fn missing_task_is_reported() {
        // pid_max is at most 2^22: this pid cannot exist.
        let spec = EnterSpec {
            pid: 99_999_999,
            argv: vec!["/bin/true".into()],
            ..Default::default()
        };
        let e = spawn_exec_in_task(&spec).unwrap_err();
        assert!(matches!(e, ExecError::TaskGone { pid: 99_999_999 }), "{e}");
        let spec = EnterSpec {
            pid: std::process::id(),
            argv: vec![],
            ..Default::default()
        };
        assert!(spawn_exec_in_task(&spec).is_err());
    }
}
