//! Starting a task process: fork, prepare the child, exec.
//!
//! Everything the child needs (C strings, argv/envp pointer arrays, file descriptors, group
//! list) is prepared *before* `fork`, because between `fork` and `exec` the child of a
//! multi-threaded parent may only do async-signal-safe work: no allocation, no locks, no
//! logging. The child reports failures through a `CLOEXEC` pipe as fixed-size records; a
//! successful `execve` closes the pipe, so the parent reads until EOF.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::stat::Mode;

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Absolute (or cwd-relative) path of the binary; no PATH lookup is done here.
    pub program: PathBuf,
    /// Arguments after argv[0] (argv[0] is `program`).
    pub args: Vec<String>,
    /// The complete environment; nothing is inherited from the agent.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Run as this user (uid, primary gid and supplementary groups looked up by name).
    pub user: Option<String>,
    /// stdout destination (regular file or FIFO), opened for append, created if missing.
    pub stdout_path: PathBuf,
    /// stderr destination (regular file or FIFO).
    pub stderr_path: PathBuf,
    /// `cgroup.procs` files the child writes its pid into before exec.
    pub cgroup_procs: Vec<PathBuf>,
    /// Value for `/proc/self/oom_score_adj`, written before exec.
    pub oom_score_adj: Option<i32>,
    /// Start the task under an exit recorder (see [`crate::exit_record`]), so its status
    /// survives an agent that is down when the task ends. `None`: the task is the caller's
    /// direct child.
    pub exit_record: Option<ExitRecordSpec>,
}

/// Where the exit recorder comes from and writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecordSpec {
    /// The status file.
    pub status_path: PathBuf,
    /// The binary implementing the recorder subcommand: `/proc/self/exe` for the `nomad`
    /// binary ([`crate::exit_record::recorder_exe`]). If it cannot be executed, the forked
    /// recorder waits and writes the status itself.
    pub recorder_exe: PathBuf,
}

/// A failure to start the process.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A string contained a NUL byte.
    #[error("invalid {what}: contains a NUL byte")]
    Nul {
        /// Which input.
        what: &'static str,
    },
    /// The user does not exist or could not be looked up.
    #[error("failed to look up user {user:?}: {reason}")]
    User {
        /// The user name.
        user: String,
        /// Why.
        reason: String,
    },
    /// Opening an output file failed.
    #[error("failed to open {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A syscall in the parent failed.
    #[error("failed to {step}")]
    Parent {
        /// What the parent was doing.
        step: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `execve` failed in the child (ENOENT, EACCES, ...).
    #[error("failed to start command {command:?}: {source}")]
    Exec {
        /// The program.
        command: String,
        /// The errno from execve.
        #[source]
        source: std::io::Error,
    },
    /// A step of the isolated child's chroot / namespace setup failed, e.g.
    /// `failed to bind-mount /usr into chroot at /usr: Permission denied (os error 13)`.
    #[error("failed to {step}: {source}")]
    Isolation {
        /// The program.
        command: String,
        /// What the step does (from [`crate::MountPlan::describe`]).
        step: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// The mount plan could not be compiled (a path with a NUL byte).
    #[error(transparent)]
    Plan(#[from] crate::isolate::NulInPlan),
    /// A preparation step in the child failed.
    #[error("failed to start command {command:?}: {step}: {source}")]
    Child {
        /// The program.
        command: String,
        /// The step name.
        step: &'static str,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
}

/// A started process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    /// Its pid (also its process group and session id).
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`, to recognise the process after an agent restart.
    pub start_time: u64,
    /// Whether the child joined *all* requested cgroups.
    pub joined_cgroups: bool,
    /// Number of cgroup.procs writes that failed (non-fatal).
    pub cgroup_join_failures: usize,
    /// The exit recorder (the caller's direct child, the task's parent) as (pid, start time),
    /// when [`ProcessSpec::exit_status_path`] was set.
    pub recorder: Option<(u32, u64)>,
}

/// Child steps, as reported through the error pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    Setsid = 1,
    CgroupJoin = 2,
    OomScoreAdj = 3,
    Stdio = 4,
    Setgroups = 5,
    Setgid = 6,
    Setuid = 7,
    Chdir = 8,
    Sigmask = 9,
    Exec = 10,
    CapBounding = 11,
    KeepCaps = 12,
    Capset = 13,
    AmbientCaps = 14,
    /// The exit recorder could not fork the task.
    Fork = 15,
}

/// The record the exit recorder sends with the task's pid in the errno field.
const PID_RECORD: u32 = 999;

/// Pipe records with a code at or above this are mount plan steps (`code - base` = index).
const PLAN_STEP_BASE: u32 = 1000;

impl Step {
    fn from_u32(v: u32) -> Option<Step> {
        Some(match v {
            1 => Step::Setsid,
            2 => Step::CgroupJoin,
            3 => Step::OomScoreAdj,
            4 => Step::Stdio,
            5 => Step::Setgroups,
            6 => Step::Setgid,
            7 => Step::Setuid,
            8 => Step::Chdir,
            9 => Step::Sigmask,
            10 => Step::Exec,
            11 => Step::CapBounding,
            12 => Step::KeepCaps,
            13 => Step::Capset,
            14 => Step::AmbientCaps,
            15 => Step::Fork,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Step::Setsid => "setsid",
            Step::CgroupJoin => "join cgroup",
            Step::OomScoreAdj => "set oom_score_adj",
            Step::Stdio => "redirect stdio",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setgid",
            Step::Setuid => "setuid",
            Step::Chdir => "chdir to working directory",
            Step::Sigmask => "reset signal mask",
            Step::Exec => "exec",
            Step::CapBounding => "drop capabilities from the bounding set",
            Step::KeepCaps => "keep capabilities across setuid",
            Step::Capset => "set capabilities",
            Step::AmbientCaps => "raise ambient capabilities",
            Step::Fork => "fork the task from its exit recorder",
        }
    }
    /// Non-fatal steps are reported but the child continues.
    fn fatal(self) -> bool {
        !matches!(self, Step::CgroupJoin | Step::OomScoreAdj)
    }
}

/// A record sent from child to parent: step (u32) + errno (i32), native endian.
pub(crate) const RECORD_LEN: usize = 8;

fn cstring(bytes: &[u8], what: &'static str) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::Nul { what })
}

fn path_cstring(p: &Path, what: &'static str) -> Result<CString, SpawnError> {
    cstring(p.as_os_str().as_bytes(), what)
}

/// Credentials resolved in the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// A user looked up in the passwd/group databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory (`pw_dir`).
    pub home: PathBuf,
    /// Supplementary groups (including the primary one).
    pub groups: Vec<u32>,
}

/// Looks a user up by name (uid, gid, home, groups).
pub fn lookup_user(name: &str) -> Result<UserInfo, SpawnError> {
    let err = |reason: String| SpawnError::User {
        user: name.to_string(),
        reason,
    };
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("no such user".to_string()))?;
    let cname = cstring(name.as_bytes(), "user name")?;
    let groups = nix::unistd::getgrouplist(&cname, user.gid)
        .map_err(|e| err(format!("getgrouplist: {e}")))?;
    Ok(UserInfo {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
        groups: groups.into_iter().map(|g| g.as_raw()).collect(),
    })
}

fn lookup_credentials(name: &str) -> Result<Credentials, SpawnError> {
    let u = lookup_user(name)?;
    Ok(Credentials {
        uid: u.uid,
        gid: u.gid,
        groups: u.groups,
    })
}

/// Opens an output file for the child: write-only, append, created 0644. FIFOs block in open
/// until a reader exists (the log collector must already be reading).
fn open_output(path: &Path) -> Result<OwnedFd, SpawnError> {
    // A FIFO (the client's log collector reads the other end) is opened read-write: the task's
    // own descriptor then always counts as a reader, so while the agent is down (nobody reading)
    // writes fill the pipe and block instead of failing with EPIPE/SIGPIPE, and the restarted
    // agent drains what was written. On Linux an O_RDWR open of a FIFO never blocks.
    use std::os::unix::fs::FileTypeExt;
    let is_fifo = std::fs::metadata(path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    let access = if is_fifo {
        OFlag::O_RDWR
    } else {
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT
    };
    let fd = nix::fcntl::open(
        path,
        access | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| SpawnError::Open {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    above_stdio(fd, path)
}

/// Makes sure an fd we will dup2 onto 0/1/2 is not itself 0/1/2 (if the agent runs with closed
/// stdio), so the dup2 sequence in the child cannot clobber a source fd.
fn above_stdio(fd: OwnedFd, path: &Path) -> Result<OwnedFd, SpawnError> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let new =
        nix::fcntl::fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(|e| SpawnError::Open {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) })
}

/// Everything the child touches, allocated before fork.
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    procs: Vec<CString>,
    oom_path: CString,
    oom_value: Option<Vec<u8>>,
    creds: Option<Credentials>,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    iso: Option<PreparedIso>,
    recorder: Option<PreparedRecorder>,
}

/// The exit recorder's exec arguments, prepared before the fork.
struct PreparedRecorder {
    exe: CString,
    subcommand: CString,
    status: CString,
    status_tmp: CString,
}

/// The isolated child's extra state, prepared before the clone.
struct PreparedIso {
    plan: crate::isolate::CompiledPlan,
    clone_flags: libc::c_int,
    caps: crate::caps::CapSet,
    last_cap: u32,
}

fn prepare(
    spec: &ProcessSpec,
    iso: Option<&crate::isolate::Isolation>,
) -> Result<Prepared, SpawnError> {
    let program = path_cstring(&spec.program, "command")?;
    let mut argv = vec![program.clone()];
    for a in &spec.args {
        argv.push(cstring(a.as_bytes(), "argument")?);
    }
    let mut envp = Vec::with_capacity(spec.env.len());
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(SpawnError::Nul {
                what: "environment variable name (empty or contains '=')",
            });
        }
        envp.push(cstring(
            format!("{k}={v}").as_bytes(),
            "environment variable",
        )?);
    }
    let cwd = path_cstring(&spec.cwd, "working directory")?;
    let procs = spec
        .cgroup_procs
        .iter()
        .map(|p| path_cstring(p, "cgroup path"))
        .collect::<Result<Vec<_>, _>>()?;
    let creds = spec.user.as_deref().map(lookup_credentials).transpose()?;
    let devnull = Path::new("/dev/null");
    let stdin = nix::fcntl::open(devnull, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| SpawnError::Open {
            path: devnull.to_path_buf(),
            source: e.into(),
        })?;
    let stdin = above_stdio(stdin, devnull)?;
    let stdout = open_output(&spec.stdout_path)?;
    let stderr = open_output(&spec.stderr_path)?;
    let recorder = match &spec.exit_record {
        None => None,
        Some(ExitRecordSpec {
            status_path: p,
            recorder_exe,
        }) => {
            // A status left by an earlier start must not be mistaken for this one's.
            let _ = std::fs::remove_file(p);
            let tmp = crate::exit_record::tmp_path(p);
            Some(PreparedRecorder {
                exe: path_cstring(recorder_exe, "exit recorder path")?,
                subcommand: CString::new(crate::exit_record::SUBCOMMAND)
                    .expect("literal has no NUL"),
                status: path_cstring(p, "exit status path")?,
                status_tmp: path_cstring(&tmp, "exit status path")?,
            })
        }
    };
    Ok(Prepared {
        recorder,
        program,
        argv,
        envp,
        cwd,
        procs,
        oom_path: CString::new("/proc/self/oom_score_adj").expect("literal has no NUL"),
        oom_value: spec.oom_score_adj.map(|v| v.to_string().into_bytes()),
        creds,
        stdin,
        stdout,
        stderr,
        iso: iso
            .map(|i| -> Result<PreparedIso, SpawnError> {
                let mut flags = libc::CLONE_NEWNS;
                if i.pid_namespace {
                    flags |= libc::CLONE_NEWPID;
                }
                if i.ipc_namespace {
                    flags |= libc::CLONE_NEWIPC;
                }
                // A task cannot hold what the agent itself lacks (capset would fail EPERM),
                // e.g. CAP_SYS_RESOURCE inside a restricted container.
                let caps = crate::caps::CapSet(i.caps.0 & crate::caps::current_permitted().0);
                if caps != i.caps {
                    tracing::debug!(requested = ?i.caps, granted = ?caps, "capabilities the agent lacks are not given to the task");
                }
                Ok(PreparedIso {
                    plan: crate::isolate::CompiledPlan::compile(&i.plan)?,
                    clone_flags: flags,
                    caps,
                    last_cap: crate::caps::kernel_last_cap(),
                })
            })
            .transpose()?,
    })
}

/// Starts the process described by `spec`. Returns once the child has exec'd (or failed to).
pub fn spawn(spec: &ProcessSpec) -> Result<Spawned, SpawnError> {
    spawn_inner(spec, None)
}

/// Starts the process in new mount (and, as asked, PID and IPC) namespaces, inside the chroot
/// described by `iso.plan`, with `iso.caps`. `spec.program` and `spec.cwd` are paths *inside*
/// the chroot; `spec.stdout_path`/`stderr_path` and `cgroup_procs` are host paths (opened or
/// written before the root changes). With a PID namespace the returned pid is the host pid of
/// the task, which is pid 1 inside.
///
/// Order in the child: setsid, join cgroups, oom_score_adj, stdio, mount plan (ending in
/// pivot_root), drop the bounding set (needs CAP_SETPCAP, so before setuid), keep-caps,
/// setgroups/setgid/setuid, capset, ambient caps (so a non-root user keeps them across exec),
/// chdir, exec.
pub fn spawn_isolated(
    spec: &ProcessSpec,
    iso: &crate::isolate::Isolation,
) -> Result<Spawned, SpawnError> {
    spawn_inner(spec, Some(iso))
}

fn spawn_inner(
    spec: &ProcessSpec,
    iso: Option<&crate::isolate::Isolation>,
) -> Result<Spawned, SpawnError> {
    let prep = prepare(spec, iso)?;
    let mut argv_ptrs: Vec<*const libc::c_char> = prep.argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = prep.envp.iter().map(|c| c.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());

    let (pipe_r, pipe_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError::Parent {
            step: "create status pipe",
            source: e.into(),
        })?;

    // With a recorder, the recorder is forked plainly and creates the task itself.
    let direct_iso = if prep.recorder.is_some() {
        None
    } else {
        prep.iso.as_ref()
    };
    // SAFETY: the child branch below only performs async-signal-safe syscalls on memory
    // prepared before the fork (no allocation, no locks, no logging) and always ends in
    // execve or _exit; see `fork_into`.
    let pid = unsafe { fork_into(direct_iso) };
    if pid < 0 {
        return Err(SpawnError::Parent {
            step: "fork",
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        if let Some(rec) = &prep.recorder {
            // SAFETY: we are the freshly forked recorder; `recorder_main` obeys the same
            // async-signal-safety rules as `child_main` and never returns.
            unsafe {
                recorder_main(
                    &prep,
                    rec,
                    argv_ptrs.as_ptr(),
                    envp_ptrs.as_ptr(),
                    pipe_w.as_raw_fd(),
                )
            }
        }
        // SAFETY: we are the freshly forked child; `child_main` upholds the async-signal-safety
        // rules and never returns.
        unsafe {
            child_main(
                &prep,
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
                pipe_w.as_raw_fd(),
            )
        }
    }

    // Parent.
    drop(pipe_w);
    drop(prep.stdin);
    drop(prep.stdout);
    drop(prep.stderr);
    let records = read_records(&pipe_r);
    drop(pipe_r);
    let command = spec.program.display().to_string();
    // With a recorder, `pid` is the recorder and the task's pid comes in a record. Whatever
    // fails below, reaping the recorder (which reaps the task) leaves no zombie behind.
    let (task_pid, recorder_pid) = if prep.recorder.is_some() {
        let task = records
            .iter()
            .find(|(step, _)| *step == PID_RECORD)
            .map(|(_, p)| *p);
        (task.unwrap_or(0), Some(pid))
    } else {
        (pid, None)
    };
    let status_path = spec.exit_record.as_ref().map(|r| r.status_path.clone());
    let discard = |status: &Option<PathBuf>| {
        reap(pid);
        if let Some(p) = status {
            let _ = std::fs::remove_file(p);
        }
    };
    let mut join_failures = 0;
    for (step, errno) in &records {
        if *step == PID_RECORD {
            continue;
        }
        let source = std::io::Error::from_raw_os_error(*errno);
        if *step >= PLAN_STEP_BASE {
            discard(&status_path);
            let index = (*step - PLAN_STEP_BASE) as usize;
            let what = iso
                .map(|i| i.plan.describe(index))
                .unwrap_or_else(|| format!("run chroot setup step {index}"));
            return Err(SpawnError::Isolation {
                command,
                step: what,
                source,
            });
        }
        match Step::from_u32(*step) {
            Some(s) if s.fatal() => {
                // The child has _exit'ed; reap it so it does not linger as a zombie.
                discard(&status_path);
                return Err(if s == Step::Exec {
                    SpawnError::Exec { command, source }
                } else {
                    SpawnError::Child {
                        command,
                        step: s.name(),
                        source,
                    }
                });
            }
            Some(Step::CgroupJoin) => {
                join_failures += 1;
                tracing::warn!(pid = task_pid, error = %source, "task process could not join a cgroup");
            }
            Some(s) => {
                tracing::warn!(pid = task_pid, step = s.name(), error = %source, "task setup step failed")
            }
            None => {}
        }
    }
    let Ok(pid_u) = u32::try_from(task_pid) else {
        discard(&status_path);
        return Err(SpawnError::Parent {
            step: "learn the task's pid from its exit recorder",
            source: std::io::Error::other("no pid reported"),
        });
    };
    if pid_u == 0 {
        discard(&status_path);
        return Err(SpawnError::Parent {
            step: "learn the task's pid from its exit recorder",
            source: std::io::Error::other("no pid reported"),
        });
    }
    let start_time = crate::procfs::process_start_time(pid_u).unwrap_or(0);
    let recorder = recorder_pid.map(|r| {
        let r = r as u32;
        (r, crate::procfs::process_start_time(r).unwrap_or(0))
    });
    Ok(Spawned {
        pid: pid_u,
        start_time,
        joined_cgroups: join_failures == 0,
        cgroup_join_failures: join_failures,
        recorder,
    })
}

pub(crate) fn read_records(fd: &OwnedFd) -> Vec<(u32, i32)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    buf.chunks_exact(RECORD_LEN)
        .map(|c| {
            let step = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            let errno = i32::from_ne_bytes([c[4], c[5], c[6], c[7]]);
            (step, errno)
        })
        .collect()
}

pub(crate) fn reap(pid: libc::pid_t) {
    while let Err(nix::errno::Errno::EINTR) =
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
    {}
}

/// Writes a failure record to the status pipe. Async-signal-safe.
///
/// # Safety
/// Must only be called in the forked child with a valid pipe fd.
unsafe fn report(fd: RawFd, step: Step, errno: i32) {
    // SAFETY: forwarded caller contract.
    unsafe { report_code(fd, step as u32, errno) }
}

/// Writes a raw failure record (step code + errno). Async-signal-safe.
///
/// # Safety
/// Must only be called in the forked child with a valid pipe fd.
pub(crate) unsafe fn report_code(fd: RawFd, code: u32, errno: i32) {
    let mut rec = [0u8; RECORD_LEN];
    rec[..4].copy_from_slice(&code.to_ne_bytes());
    rec[4..].copy_from_slice(&errno.to_ne_bytes());
    loop {
        // SAFETY: `rec` is a valid 8-byte buffer; write(2) is async-signal-safe.
        let n = unsafe { libc::write(fd, rec.as_ptr().cast(), RECORD_LEN) };
        // SAFETY: reading errno through libc's thread-local accessor is async-signal-safe.
        if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
            continue;
        }
        break;
    }
}

/// Reports a fatal failure and exits the child without running any destructors or atexit
/// handlers (which could take locks held by other threads of the parent at fork time).
///
/// # Safety
/// Must only be called in the forked child.
unsafe fn fail(fd: RawFd, step: Step) -> ! {
    // SAFETY: errno accessor is async-signal-safe.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: in the child with a valid pipe fd (caller contract).
    unsafe { report(fd, step, errno) };
    // SAFETY: _exit is async-signal-safe and terminates the child immediately.
    unsafe { libc::_exit(127) }
}

/// Formats `n` as decimal into `buf`, returning the used tail. No allocation.
pub(crate) fn format_u32(mut n: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Writes `data` to the file at `path` (open, write, close). Async-signal-safe.
///
/// # Safety
/// Child-only; `path` must be a valid C string.
pub(crate) unsafe fn write_file(path: &CString, data: &[u8]) -> bool {
    // SAFETY: valid NUL-terminated path; open(2) is async-signal-safe.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `data` is a valid buffer of `data.len()` bytes.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    // SAFETY: errno accessor is async-signal-safe; we preserve errno across close.
    let saved = unsafe { *libc::__errno_location() };
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    // SAFETY: restoring errno for the caller's report.
    unsafe { *libc::__errno_location() = saved };
    n == data.len() as isize
}

/// `capset(2)` header and data (version 3: two 32-bit words per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets this thread's effective, permitted and inheritable sets (`capset(2)`, version 3).
/// Returns false with errno set on failure. Async-signal-safe: no allocation.
pub(crate) fn capset(
    effective: crate::caps::CapSet,
    permitted: crate::caps::CapSet,
    inheritable: crate::caps::CapSet,
) -> bool {
    let [e0, e1] = effective.words();
    let [p0, p1] = permitted.words();
    let [i0, i1] = inheritable.words();
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: header and a two-element data array of the v3 layout, both live stack values
    // valid for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    ret == 0
}

/// Isolated child, still root: run the mount plan, shrink the bounding set, keep capabilities
/// across the coming setuid.
///
/// # Safety
/// Child-only (after clone), `pipe` valid.
unsafe fn isolate_before_setuid(iso: &PreparedIso, creds: Option<&Credentials>, pipe: RawFd) {
    // The plan creates device nodes and mount points with exact modes.
    // SAFETY: umask is async-signal-safe and cannot fail.
    unsafe { libc::umask(0) };
    let mut sys = crate::isolate::LinuxSyscalls;
    if let Err((index, errno)) = crate::isolate::apply_plan(&iso.plan, &mut sys) {
        // SAFETY: child-only report, then exit without unwinding.
        unsafe {
            report_code(pipe, PLAN_STEP_BASE + index as u32, errno);
            libc::_exit(127)
        }
    }
    // SAFETY: as above.
    unsafe { libc::umask(0o022) };
    // Dropping from the bounding set needs CAP_SETPCAP, which we only have as root.
    for cap in 0..=iso.last_cap {
        if !iso.caps.contains(cap) {
            // SAFETY: prctl with integer arguments is async-signal-safe.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
                // SAFETY: child-only.
                unsafe { fail(pipe, Step::CapBounding) }
            }
        }
    }
    if creds.is_some_and(|c| c.uid != 0) {
        // Without this, setuid to a non-root uid clears the permitted set.
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } < 0 {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::KeepCaps) }
        }
    }
}

/// Isolated child, after setuid: permitted/effective/inheritable = the task's set, and (for a
/// non-root user) the same set as ambient so it survives exec of an ordinary binary.
///
/// # Safety
/// Child-only (after clone), `pipe` valid.
unsafe fn isolate_after_setuid(iso: &PreparedIso, creds: Option<&Credentials>, pipe: RawFd) {
    if !capset(iso.caps, iso.caps, iso.caps) {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Capset) }
    }
    if creds.is_some_and(|c| c.uid != 0) {
        for cap in iso.caps.numbers() {
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
}

/// The child side of `spawn`. Never returns.
///
/// Order matters:
/// 1. `setsid` first: the task gets its own session and process group (pgid == pid), so group
///    signals reach it and nothing from the agent's terminal/session.
/// 2. Join the cgroups while still root and before exec, so no task code ever runs outside
///    them (and nothing it forks escapes).
/// 3. `oom_score_adj` while still privileged (lowering it needs CAP_SYS_RESOURCE).
/// 4. stdio redirection (dup2 clears CLOEXEC on the targets). Isolated only, then: the mount
///    plan (ends in pivot_root, so every later path is inside the chroot), bounding-set drop
///    and keep-caps while still root (see `isolate_before_setuid`).
/// 5. Drop privileges: setgroups, then setgid, then setuid (after setuid we could not change
///    groups any more). Isolated only, then: capset + ambient caps, which need the
///    post-setuid credentials.
/// 6. chdir as the target user, so directory permissions are checked for that user.
/// 7. Mark every other inherited fd CLOEXEC, reset signal dispositions and mask (Rust ignores
///    SIGPIPE; the agent may block signals), then execve.
///
/// # Safety
/// Must be called only in the child right after fork; `argv`/`envp` are NULL-terminated
/// arrays of pointers into `prep`, which stays alive (the child's copy of the parent memory).
/// Creates the child: a plain fork, or with an isolation a clone into its new namespaces.
///
/// # Safety
/// The caller's child branch must obey the post-fork rules (async-signal-safe calls only on
/// memory prepared before, ending in execve or _exit).
unsafe fn fork_into(iso: Option<&PreparedIso>) -> libc::pid_t {
    match iso {
        // SAFETY: fork() itself is safe to call; the caller upholds the child's rules.
        None => unsafe { libc::fork() },
        // SAFETY: clone(2) without CLONE_VM and with a NULL stack behaves like fork (the child
        // gets a copy-on-write copy of this thread's stack); only namespace flags and the
        // SIGCHLD exit signal are added, so the child is waitable like a forked one. The
        // child branch obeys the same async-signal-safety rules as after fork; it never
        // touches glibc's cached thread state (only raw syscalls and pre-built data).
        Some(i) => unsafe {
            libc::syscall(
                libc::SYS_clone,
                (i.clone_flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            ) as libc::pid_t
        },
    }
}

/// The exit recorder between fork and exec: a session of its own (signals meant for the
/// agent's terminal do not reach it), then the task as its child (cloned into the isolation's
/// namespaces when there is one), the task's pid reported to the agent, and an exec of this
/// binary's recorder subcommand, whose fresh image waits for the task and writes its status.
/// If that exec fails, this copy waits and writes the status itself with raw syscalls.
///
/// # Safety
/// Must only be called in the freshly forked recorder with everything prepared before the
/// fork; it performs only async-signal-safe calls and never returns.
unsafe fn recorder_main(
    prep: &Prepared,
    rec: &PreparedRecorder,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    pipe: RawFd,
) -> ! {
    // SAFETY: setsid is async-signal-safe; a fresh child is never a group leader.
    unsafe { libc::setsid() };
    // SAFETY: fork/clone are async-signal-safe; the child runs `child_main` only.
    let task = unsafe { fork_into(prep.iso.as_ref()) };
    if task < 0 {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Fork) }
    }
    if task == 0 {
        // SAFETY: the task's freshly created process; the usual child path.
        unsafe { child_main(prep, argv, envp, pipe) }
    }
    // SAFETY: child-only report with a valid pipe fd; the errno field carries the pid.
    unsafe { report_code(pipe, PID_RECORD, task) };
    // The agent reads the pipe until every writer is gone: ours must not outlive this point.
    // SAFETY: closing our copy of the pipe; the task keeps its own until its exec.
    unsafe { libc::close(pipe) };
    for fd in 0..3 {
        // SAFETY: /dev/null (prepared read-only) over our stdio; both fds are valid.
        unsafe { libc::dup2(prep.stdin.as_raw_fd(), fd) };
    }
    let mut digits = [0u8; 12];
    let pid_str = format_u32(task as u32, &mut digits);
    let mut pid_arg = [0u8; 16];
    pid_arg[..pid_str.len()].copy_from_slice(pid_str);
    let rargv: [*const libc::c_char; 5] = [
        rec.exe.as_ptr(),
        rec.subcommand.as_ptr(),
        pid_arg.as_ptr().cast(),
        rec.status.as_ptr(),
        std::ptr::null(),
    ];
    let renvp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: sigset_t is plain data; emptied and installed with async-signal-safe calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    // SAFETY: NUL-terminated strings prepared before the fork (or on this stack), arrays
    // ending in NULL.
    unsafe { libc::execve(rec.exe.as_ptr(), rargv.as_ptr(), renvp.as_ptr()) };
    // Fallback: record here.
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid out-pointer; async-signal-safe.
        let r = unsafe { libc::waitpid(task, &mut status, 0) };
        // SAFETY: errno accessor.
        if r < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
            continue;
        }
        if r < 0 {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(1) }
        }
        break;
    }
    let (code, signal, core) = if libc::WIFSIGNALED(status) {
        (0, libc::WTERMSIG(status), libc::WCOREDUMP(status))
    } else {
        (libc::WEXITSTATUS(status), 0, false)
    };
    let mut line = [0u8; 40];
    let n = crate::exit_record::format_status(code as u32, signal as u32, core, &mut line);
    // SAFETY: valid C strings and buffer; open/write/close/rename are async-signal-safe.
    unsafe {
        let fd = libc::open(
            rec.status_tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o600,
        );
        if fd >= 0 {
            libc::write(fd, line.as_ptr().cast(), n);
            libc::close(fd);
            libc::rename(rec.status_tmp.as_ptr(), rec.status.as_ptr());
        }
        libc::_exit(0)
    }
}

unsafe fn child_main(
    prep: &Prepared,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    pipe: RawFd,
) -> ! {
    // SAFETY: setsid is async-signal-safe; the fresh child is never a group leader.
    if unsafe { libc::setsid() } < 0 {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Setsid) }
    }

    if !prep.procs.is_empty() {
        let mut buf = [0u8; 12];
        // SAFETY: getpid is async-signal-safe.
        let pid = unsafe { libc::getpid() } as u32;
        let pid_bytes = format_u32(pid, &mut buf);
        for path in &prep.procs {
            // SAFETY: child-only, valid C string.
            if !unsafe { write_file(path, pid_bytes) } {
                // SAFETY: errno accessor; child-only report (non-fatal, continue).
                unsafe { report(pipe, Step::CgroupJoin, *libc::__errno_location()) };
            }
        }
    }

    if let Some(v) = &prep.oom_value {
        // SAFETY: child-only, valid C string and buffer.
        if !unsafe { write_file(&prep.oom_path, v) } {
            // SAFETY: errno accessor; child-only report (non-fatal).
            unsafe { report(pipe, Step::OomScoreAdj, *libc::__errno_location()) };
        }
    }

    for (src, dst) in [
        (prep.stdin.as_raw_fd(), 0),
        (prep.stdout.as_raw_fd(), 1),
        (prep.stderr.as_raw_fd(), 2),
    ] {
        // SAFETY: both fds are valid; sources are > 2 (see `above_stdio`), so no clobbering.
        if unsafe { libc::dup2(src, dst) } < 0 {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::Stdio) }
        }
    }

    if let Some(iso) = &prep.iso {
        // SAFETY: child-only; `iso` was prepared before the clone.
        unsafe { isolate_before_setuid(iso, prep.creds.as_ref(), pipe) };
    }

    if let Some(c) = &prep.creds {
        // Raw syscalls, not the glibc wrappers: glibc's setgroups/setgid/setuid broadcast the
        // change to every thread it believes exists (a futex wait on the "setxid" handshake).
        // After a raw clone(2) glibc still believes the parent's threads exist, so the
        // wrappers would wait forever. The kernel calls change this (only) thread, which is
        // the whole child.
        // SAFETY: pointer/len describe the prepared Vec; plain syscall.
        if unsafe {
            libc::syscall(
                libc::SYS_setgroups,
                c.groups.len() as libc::size_t,
                c.groups.as_ptr(),
            )
        } < 0
        {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::Setgroups) }
        }
        // SAFETY: plain syscall with an integer argument.
        if unsafe { libc::syscall(libc::SYS_setgid, c.gid as libc::c_long) } < 0 {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::Setgid) }
        }
        // SAFETY: plain syscall with an integer argument.
        if unsafe { libc::syscall(libc::SYS_setuid, c.uid as libc::c_long) } < 0 {
            // SAFETY: child-only.
            unsafe { fail(pipe, Step::Setuid) }
        }
    }

    if let Some(iso) = &prep.iso {
        // SAFETY: child-only; runs after setuid.
        unsafe { isolate_after_setuid(iso, prep.creds.as_ref(), pipe) };
    }

    // SAFETY: valid C string; chdir is async-signal-safe.
    if unsafe { libc::chdir(prep.cwd.as_ptr()) } < 0 {
        // SAFETY: child-only.
        unsafe { fail(pipe, Step::Chdir) }
    }

    // Best effort: any fd >= 3 the agent leaked without CLOEXEC is closed at exec (our status
    // pipe is already CLOEXEC). Fails harmlessly on kernels < 5.11.
    // SAFETY: raw close_range syscall with constant arguments; async-signal-safe.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };

    // SAFETY: sigset_t is plain data; zeroed then initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; these calls are async-signal-safe.
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
        // SAFETY: resetting dispositions to SIG_DFL is async-signal-safe; invalid numbers
        // just return EINVAL.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }

    // SAFETY: program/argv/envp are valid NUL-terminated arrays prepared before fork.
    unsafe { libc::execve(prep.program.as_ptr(), argv, envp) };
    // SAFETY: child-only; execve only returns on failure.
    unsafe { fail(pipe, Step::Exec) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_pids() {
        let mut b = [0u8; 12];
        assert_eq!(format_u32(0, &mut b), b"0");
        assert_eq!(format_u32(12345, &mut b), b"12345");
        assert_eq!(format_u32(u32::MAX, &mut b), b"4294967295");
    }

    #[test]
    fn steps_round_trip() {
        for v in 1..=15 {
            let s = Step::from_u32(v).expect("step");
            assert_eq!(s as u32, v);
        }
        assert!(Step::from_u32(0).is_none());
        assert!(!Step::CgroupJoin.fatal());
        assert!(Step::Exec.fatal());
    }

    #[test]
    fn rejects_nul_and_bad_env() {
        let mut spec = ProcessSpec {
            program: "/bin/true".into(),
            cwd: "/".into(),
            stdout_path: "/dev/null".into(),
            stderr_path: "/dev/null".into(),
            ..Default::default()
        };
        spec.args = vec!["a\0b".into()];
        assert!(matches!(prepare(&spec, None), Err(SpawnError::Nul { .. })));
        spec.args.clear();
        spec.env.insert("A=B".into(), "x".into());
        assert!(matches!(prepare(&spec, None), Err(SpawnError::Nul { .. })));
    }

    fn recorded_spec(script: &str, status: &Path) -> ProcessSpec {
        ProcessSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: "/".into(),
            stdout_path: "/dev/null".into(),
            stderr_path: "/dev/null".into(),
            // Not executable: the forked recorder falls back to waiting itself (the real
            // subcommand lives in the `nomad` binary, not in this test harness).
            exit_record: Some(ExitRecordSpec {
                status_path: status.to_path_buf(),
                recorder_exe: "/nonexistent/nomad".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_recorded_task_is_the_recorders_child_and_its_status_is_written() {
        let dir = tempfile::tempdir().unwrap();
        for (script, code, signal) in [("exit 5", 5, 0), ("kill -TERM $$", 0, libc::SIGTERM)] {
            let status = dir.path().join(format!("st-{code}-{signal}"));
            std::fs::write(&status, "stale").unwrap();
            let s = spawn(&recorded_spec(script, &status)).unwrap();
            let (recorder, _) = s.recorder.expect("a recorder");
            assert_ne!(recorder, s.pid);
            // The task is not ours to wait for; the recorder is.
            assert!(crate::process::wait_child(s.pid).is_err());
            crate::process::wait_child(recorder).unwrap();
            let st = crate::exit_record::read_status(&status).expect("status written");
            assert_eq!((st.code, st.signal), (code, signal), "{script}");
        }
    }

    #[test]
    fn a_recorded_task_that_cannot_start_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("st");
        let mut spec = recorded_spec("", &status);
        spec.program = "/nonexistent/program".into();
        let err = spawn(&spec).expect_err("error");
        assert!(matches!(err, SpawnError::Exec { .. }), "{err}");
        assert!(!status.exists());
        assert!(!crate::exit_record::tmp_path(&status).exists());
    }

    #[test]
    fn unknown_user_is_an_error() {
        let spec = ProcessSpec {
            program: "/bin/true".into(),
            cwd: "/".into(),
            stdout_path: "/dev/null".into(),
            stderr_path: "/dev/null".into(),
            user: Some("no-such-user-nomad-rs".into()),
            ..Default::default()
        };
        let err = prepare(&spec, None).err().expect("error");
        assert!(err.to_string().contains("no such user"), "{err}");
    }
}
