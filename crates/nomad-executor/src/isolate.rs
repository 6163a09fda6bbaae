//! Executing a [`MountPlan`] in the isolated child, behind a narrow syscall trait.
//!
//! The plan is compiled to C strings *before* fork ([`CompiledPlan`]); [`apply_plan`] then
//! walks it calling [`MountSyscalls`] methods only, without allocating, so it is safe between
//! fork and exec. [`LinuxSyscalls`] is the real implementation; [`RecordingSyscalls`] records
//! the calls (and can inject a failure) so the order and arguments are unit-tested without
//! root.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::caps::CapSet;
use crate::mount_plan::{MountFlags, MountPlan, MountStep};

/// What `spawn_isolated` needs besides the [`crate::ProcessSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// The mount plan (always run in a new mount namespace).
    pub plan: MountPlan,
    /// New PID namespace (the task is pid 1 in it).
    pub pid_namespace: bool,
    /// New IPC namespace.
    pub ipc_namespace: bool,
    /// The task's capabilities: bounding, permitted, inheritable and effective set to this;
    /// raised as ambient for a non-root user so they survive exec.
    pub caps: CapSet,
}

/// The syscalls a mount plan needs. Errors are raw errno values (no allocation).
pub trait MountSyscalls {
    /// `mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL)`.
    fn make_private(&mut self) -> Result<(), i32>;
    /// A new file system (`tmpfs`, `proc`, `devpts`).
    fn mount_fs(
        &mut self,
        fstype: &CStr,
        target: &CStr,
        flags: MountFlags,
        data: Option<&CStr>,
    ) -> Result<(), i32>;
    /// A bind mount.
    fn bind(&mut self, source: &CStr, target: &CStr, recursive: bool) -> Result<(), i32>;
    /// Sets per-mount flags on a bind mount (recursively when asked and supported).
    fn remount(&mut self, target: &CStr, flags: MountFlags, recursive: bool) -> Result<(), i32>;
    /// `mkdir`; `EEXIST` counts as success.
    fn mkdir(&mut self, path: &CStr, mode: u32) -> Result<(), i32>;
    /// Creates an empty file; an existing file is fine.
    fn touch(&mut self, path: &CStr) -> Result<(), i32>;
    /// `symlink(target, link)`.
    fn symlink(&mut self, target: &CStr, link: &CStr) -> Result<(), i32>;
    /// `mknod(path, S_IFCHR|mode, makedev(major, minor))`.
    fn mknod_char(&mut self, path: &CStr, mode: u32, major: u32, minor: u32) -> Result<(), i32>;
    /// `chdir(new_root); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/")`.
    fn pivot_root(&mut self, new_root: &CStr) -> Result<(), i32>;
    /// `chdir(new_root); mount(new_root, "/", MS_MOVE); chroot("."); chdir("/")`.
    fn move_root(&mut self, new_root: &CStr) -> Result<(), i32>;
}

/// One compiled step (C strings ready for the child).
#[derive(Debug, Clone, PartialEq, Eq)]
enum CStep {
    MakePrivate,
    Fs {
        fstype: &'static CStr,
        target: CString,
        flags: MountFlags,
        data: Option<CString>,
    },
    Mkdir(CString, u32),
    Touch(CString),
    Symlink(CString, CString),
    Bind {
        source: CString,
        target: CString,
        recursive: bool,
        optional: bool,
    },
    Remount {
        target: CString,
        flags: MountFlags,
        recursive: bool,
        optional: bool,
    },
    Mknod(CString, u32, u32, u32),
    Pivot(CString),
    Move(CString),
}

/// A plan compiled for the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPlan {
    steps: Vec<CStep>,
}

/// A path or mount option contained a NUL byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mount plan path contains a NUL byte: {0:?}")]
pub struct NulInPlan(pub String);

fn c(p: &Path) -> Result<CString, NulInPlan> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| NulInPlan(p.display().to_string()))
}

fn cs(s: &str) -> Result<CString, NulInPlan> {
    CString::new(s).map_err(|_| NulInPlan(s.to_string()))
}

const TMPFS: &CStr = c"tmpfs";
const PROC: &CStr = c"proc";
const DEVPTS: &CStr = c"devpts";

impl CompiledPlan {
    /// Converts every path to a C string.
    pub fn compile(plan: &MountPlan) -> Result<CompiledPlan, NulInPlan> {
        let no_flags = MountFlags::default();
        let steps = plan
            .steps
            .iter()
            .map(|s| {
                Ok(match s {
                    MountStep::MakePrivate => CStep::MakePrivate,
                    MountStep::Tmpfs {
                        target,
                        data,
                        flags,
                    } => CStep::Fs {
                        fstype: TMPFS,
                        target: c(target)?,
                        flags: *flags,
                        data: Some(cs(data)?),
                    },
                    MountStep::Proc { target } => CStep::Fs {
                        fstype: PROC,
                        target: c(target)?,
                        flags: MountFlags {
                            readonly: false,
                            nosuid: true,
                            nodev: true,
                            noexec: true,
                        },
                        data: None,
                    },
                    MountStep::Devpts { target, data } => CStep::Fs {
                        fstype: DEVPTS,
                        target: c(target)?,
                        flags: MountFlags {
                            nosuid: true,
                            noexec: true,
                            ..no_flags
                        },
                        data: Some(cs(data)?),
                    },
                    MountStep::Mkdir { path, mode } => CStep::Mkdir(c(path)?, *mode),
                    MountStep::Touch { path } => CStep::Touch(c(path)?),
                    MountStep::Symlink { target, link } => CStep::Symlink(c(target)?, c(link)?),
                    MountStep::Bind {
                        source,
                        target,
                        recursive,
                        optional,
                    } => CStep::Bind {
                        source: c(source)?,
                        target: c(target)?,
                        recursive: *recursive,
                        optional: *optional,
                    },
                    MountStep::Remount {
                        target,
                        flags,
                        recursive,
                        optional,
                    } => CStep::Remount {
                        target: c(target)?,
                        flags: *flags,
                        recursive: *recursive,
                        optional: *optional,
                    },
                    MountStep::Mknod {
                        path,
                        mode,
                        major,
                        minor,
                    } => CStep::Mknod(c(path)?, *mode, *major, *minor),
                    MountStep::PivotRoot { new_root } => CStep::Pivot(c(new_root)?),
                    MountStep::MoveRoot { new_root } => CStep::Move(c(new_root)?),
                })
            })
            .collect::<Result<Vec<_>, NulInPlan>>()?;
        Ok(CompiledPlan { steps })
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Runs the plan; on failure returns the index of the failing step and the errno. Does not
/// allocate (safe between fork and exec with [`LinuxSyscalls`]).
pub fn apply_plan(plan: &CompiledPlan, sys: &mut dyn MountSyscalls) -> Result<(), (usize, i32)> {
    for (i, step) in plan.steps.iter().enumerate() {
        let r = match step {
            CStep::MakePrivate => sys.make_private(),
            CStep::Fs {
                fstype,
                target,
                flags,
                data,
            } => sys.mount_fs(fstype, target, *flags, data.as_deref()),
            CStep::Mkdir(p, mode) => sys.mkdir(p, *mode),
            CStep::Touch(p) => sys.touch(p),
            CStep::Symlink(t, l) => sys.symlink(t, l),
            CStep::Bind {
                source,
                target,
                recursive,
                optional,
            } => match sys.bind(source, target, *recursive) {
                Err(libc::ENOENT) if *optional => Ok(()),
                r => r,
            },
            CStep::Remount {
                target,
                flags,
                recursive,
                optional,
            } => match sys.remount(target, *flags, *recursive) {
                Err(libc::ENOENT | libc::EINVAL) if *optional => Ok(()),
                r => r,
            },
            CStep::Mknod(p, mode, major, minor) => sys.mknod_char(p, *mode, *major, *minor),
            CStep::Pivot(root) => sys.pivot_root(root),
            CStep::Move(root) => sys.move_root(root),
        };
        r.map_err(|e| (i, e))?;
    }
    Ok(())
}

/// The real syscalls. Only meaningful in the isolated child (in its own mount namespace).
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSyscalls;

#[cfg(target_os = "linux")]
fn errno() -> i32 {
    // SAFETY: reading errno through libc's thread-local accessor is async-signal-safe.
    unsafe { *libc::__errno_location() }
}

#[cfg(target_os = "linux")]
fn ms_flags(f: MountFlags) -> libc::c_ulong {
    let mut v = 0;
    if f.readonly {
        v |= libc::MS_RDONLY;
    }
    if f.nosuid {
        v |= libc::MS_NOSUID;
    }
    if f.nodev {
        v |= libc::MS_NODEV;
    }
    if f.noexec {
        v |= libc::MS_NOEXEC;
    }
    v
}

#[cfg(target_os = "linux")]
fn check(ret: libc::c_int) -> Result<(), i32> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[cfg(target_os = "linux")]
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

#[cfg(target_os = "linux")]
const MOUNT_ATTR_RDONLY: u64 = 0x1;
#[cfg(target_os = "linux")]
const MOUNT_ATTR_NOSUID: u64 = 0x2;
#[cfg(target_os = "linux")]
const MOUNT_ATTR_NODEV: u64 = 0x4;
#[cfg(target_os = "linux")]
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
#[cfg(target_os = "linux")]
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[cfg(target_os = "linux")]
impl MountSyscalls for LinuxSyscalls {
    fn make_private(&mut self) -> Result<(), i32> {
        // SAFETY: constant NUL-terminated strings / nulls; mount(2) is a plain syscall.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })
    }

    fn mount_fs(
        &mut self,
        fstype: &CStr,
        target: &CStr,
        flags: MountFlags,
        data: Option<&CStr>,
    ) -> Result<(), i32> {
        let data = data.map_or(std::ptr::null(), |d| d.as_ptr().cast());
        // SAFETY: all pointers are valid NUL-terminated strings (or null data).
        check(unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                ms_flags(flags),
                data,
            )
        })
    }

    fn bind(&mut self, source: &CStr, target: &CStr, recursive: bool) -> Result<(), i32> {
        let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
        // SAFETY: valid NUL-terminated strings; null fstype and data are allowed for binds.
        check(unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        })
    }

    fn remount(&mut self, target: &CStr, flags: MountFlags, recursive: bool) -> Result<(), i32> {
        if recursive {
            let mut set = 0;
            if flags.readonly {
                set |= MOUNT_ATTR_RDONLY;
            }
            if flags.nosuid {
                set |= MOUNT_ATTR_NOSUID;
            }
            if flags.nodev {
                set |= MOUNT_ATTR_NODEV;
            }
            if flags.noexec {
                set |= MOUNT_ATTR_NOEXEC;
            }
            let attr = MountAttr {
                attr_set: set,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            // SAFETY: valid path string and a properly sized, initialised mount_attr struct.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    AT_RECURSIVE,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            };
            if ret == 0 {
                return Ok(());
            }
            let e = errno();
            if e != libc::ENOSYS {
                return Err(e);
            }
            // Kernel < 5.12: only the top mount can be changed.
        }
        // SAFETY: valid NUL-terminated target; null source/fstype/data for a bind remount.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT | libc::MS_BIND | ms_flags(flags),
                std::ptr::null(),
            )
        })
    }

    fn mkdir(&mut self, path: &CStr, mode: u32) -> Result<(), i32> {
        // SAFETY: valid NUL-terminated path.
        match check(unsafe { libc::mkdir(path.as_ptr(), mode as libc::mode_t) }) {
            Err(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    fn touch(&mut self, path: &CStr) -> Result<(), i32> {
        // SAFETY: valid NUL-terminated path; the fd is closed right away.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: `fd` was just opened and is closed once.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn symlink(&mut self, target: &CStr, link: &CStr) -> Result<(), i32> {
        // SAFETY: valid NUL-terminated strings.
        match check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }) {
            Err(libc::EEXIST) => Ok(()),
            r => r,
        }
    }

    fn mknod_char(&mut self, path: &CStr, mode: u32, major: u32, minor: u32) -> Result<(), i32> {
        let dev = libc::makedev(major, minor);
        // SAFETY: valid NUL-terminated path; plain syscall.
        check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | mode as libc::mode_t, dev) })
    }

    fn pivot_root(&mut self, new_root: &CStr) -> Result<(), i32> {
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
        // drops the old root without needing a put_old directory (the runc idiom).
        // SAFETY: valid NUL-terminated strings; plain syscalls.
        unsafe {
            check(libc::chdir(new_root.as_ptr()))?;
            check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as i32)?;
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(c"/".as_ptr()))
        }
    }

    fn move_root(&mut self, new_root: &CStr) -> Result<(), i32> {
        // SAFETY: valid NUL-terminated strings; plain syscalls.
        unsafe {
            check(libc::chdir(new_root.as_ptr()))?;
            check(libc::mount(
                new_root.as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            ))?;
            check(libc::chroot(c".".as_ptr()))?;
            check(libc::chdir(c"/".as_ptr()))
        }
    }
}

/// A fake that records every call as a line of text and can fail one call.
#[derive(Debug, Default, Clone)]
pub struct RecordingSyscalls {
    /// The calls, e.g. `bind /usr -> /r/usr rec`.
    pub calls: Vec<String>,
    /// Fail the first call whose text contains this, with `fail_errno`.
    pub fail_on: Option<String>,
    /// errno for `fail_on` (default EPERM).
    pub fail_errno: i32,
}

impl RecordingSyscalls {
    fn rec(&mut self, line: String) -> Result<(), i32> {
        let fail = self.fail_on.as_deref().is_some_and(|f| line.contains(f));
        self.calls.push(line);
        if fail {
            Err(if self.fail_errno == 0 {
                1
            } else {
                self.fail_errno
            })
        } else {
            Ok(())
        }
    }
}

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

fn f(fl: MountFlags) -> String {
    let mut v = vec![];
    if fl.readonly {
        v.push("ro");
    }
    if fl.nosuid {
        v.push("nosuid");
    }
    if fl.nodev {
        v.push("nodev");
    }
    if fl.noexec {
        v.push("noexec");
    }
    v.join(",")
}

impl MountSyscalls for RecordingSyscalls {
    fn make_private(&mut self) -> Result<(), i32> {
        self.rec("make-private /".into())
    }
    fn mount_fs(
        &mut self,
        fstype: &CStr,
        target: &CStr,
        flags: MountFlags,
        data: Option<&CStr>,
    ) -> Result<(), i32> {
        self.rec(format!(
            "mount {} {} [{}] {}",
            s(fstype),
            s(target),
            f(flags),
            data.map(s).unwrap_or_default()
        ))
    }
    fn bind(&mut self, source: &CStr, target: &CStr, recursive: bool) -> Result<(), i32> {
        self.rec(format!(
            "bind {} -> {}{}",
            s(source),
            s(target),
            if recursive { " rec" } else { "" }
        ))
    }
    fn remount(&mut self, target: &CStr, flags: MountFlags, recursive: bool) -> Result<(), i32> {
        self.rec(format!(
            "remount {} [{}]{}",
            s(target),
            f(flags),
            if recursive { " rec" } else { "" }
        ))
    }
    fn mkdir(&mut self, path: &CStr, mode: u32) -> Result<(), i32> {
        self.rec(format!("mkdir {} {mode:o}", s(path)))
    }
    fn touch(&mut self, path: &CStr) -> Result<(), i32> {
        self.rec(format!("touch {}", s(path)))
    }
    fn symlink(&mut self, target: &CStr, link: &CStr) -> Result<(), i32> {
        self.rec(format!("symlink {} -> {}", s(link), s(target)))
    }
    fn mknod_char(&mut self, path: &CStr, mode: u32, major: u32, minor: u32) -> Result<(), i32> {
        self.rec(format!("mknod {} {mode:o} {major}:{minor}", s(path)))
    }
    fn pivot_root(&mut self, new_root: &CStr) -> Result<(), i32> {
        self.rec(format!("pivot_root {}", s(new_root)))
    }
    fn move_root(&mut self, new_root: &CStr) -> Result<(), i32> {
        self.rec(format!("move_root {}", s(new_root)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount_plan::{build_plan, ChrootSpec, HostEntry, HostView};
    use std::path::PathBuf;

    struct Host;
    impl HostView for Host {
        fn lstat(&self, p: &Path) -> Option<HostEntry> {
            match p.to_str()? {
                "/usr" | "/etc" | "/t/web/local" | "/t/web/secrets" | "/t/web/tmp" | "/t/alloc"
                | "/t/alloc/logs" => Some(HostEntry::Dir),
                "/bin" => Some(HostEntry::Symlink("usr/bin".into())),
                "/usr/bin" => Some(HostEntry::Dir),
                _ => None,
            }
        }
        fn canonicalize(&self, p: &Path) -> Option<PathBuf> {
            match p.to_str()? {
                "/bin" => Some("/usr/bin".into()),
                other => self.lstat(p).map(|_| PathBuf::from(other)),
            }
        }
    }

    fn plan() -> MountPlan {
        build_plan(
            &ChrootSpec {
                root: "/t/web/.root".into(),
                task_dir: "/t/web".into(),
                alloc_dir: "/t/alloc".into(),
                chroot_env: vec![
                    ("/bin".into(), "/bin".into()),
                    ("/etc".into(), "/etc".into()),
                    ("/usr".into(), "/usr".into()),
                ],
                skip_sources: vec![],
                pivot_root: true,
            },
            &Host,
        )
        .expect("plan")
    }

    #[test]
    fn records_the_plan_in_order() {
        let plan = plan();
        let compiled = CompiledPlan::compile(&plan).expect("compile");
        assert_eq!(compiled.len(), plan.steps.len());
        let mut sys = RecordingSyscalls::default();
        apply_plan(&compiled, &mut sys).expect("apply");
        let calls = &sys.calls;
        assert_eq!(calls[0], "make-private /");
        assert_eq!(
            calls[1],
            "mount tmpfs /t/web/.root [nosuid,nodev] mode=755,size=1m"
        );
        let pos = |needle: &str| {
            calls
                .iter()
                .position(|c| c == needle)
                .unwrap_or_else(|| panic!("missing {needle:?} in {calls:#?}"))
        };
        let usr_dir = pos("mkdir /t/web/.root/usr 755");
        let usr_bind = pos("bind /usr -> /t/web/.root/usr rec");
        let usr_ro = pos("remount /t/web/.root/usr [ro] rec");
        assert!(usr_dir < usr_bind && usr_bind + 1 == usr_ro);
        pos("symlink /t/web/.root/bin -> /usr/bin");
        pos("bind /t/web/secrets -> /t/web/.root/secrets");
        pos("remount /t/web/.root/secrets [nosuid,nodev,noexec]");
        pos("remount /t/web/.root/alloc/logs [ro,nosuid,nodev,noexec]");
        let dev = pos("mount tmpfs /t/web/.root/dev [nosuid] mode=755,size=65536k");
        let null = pos("mknod /t/web/.root/dev/null 666 1:3");
        assert!(dev < null);
        pos("mknod /t/web/.root/dev/urandom 666 1:9");
        pos("mount devpts /t/web/.root/dev/pts [nosuid,noexec] newinstance,ptmxmode=0666,mode=0620,gid=5");
        pos("symlink /t/web/.root/dev/fd -> /proc/self/fd");
        let proc_ = pos("mount proc /t/web/.root/proc [nosuid,nodev,noexec] ");
        let mask = pos("bind /t/web/.root/dev/null -> /t/web/.root/proc/kcore");
        assert!(null < mask && proc_ < mask);
        let root_ro = pos("remount /t/web/.root [ro,nosuid,nodev]");
        let pivot = pos("pivot_root /t/web/.root");
        assert_eq!(pivot, calls.len() - 1);
        assert_eq!(root_ro + 1, pivot);
    }

    #[test]
    fn failure_reports_the_step_index_and_errno() {
        let plan = plan();
        let compiled = CompiledPlan::compile(&plan).expect("compile");
        let mut sys = RecordingSyscalls {
            fail_on: Some("bind /usr ".into()),
            fail_errno: libc::EACCES,
            ..Default::default()
        };
        let (i, e) = apply_plan(&compiled, &mut sys).unwrap_err();
        assert_eq!(e, libc::EACCES);
        assert_eq!(plan.describe(i), "bind-mount /usr into chroot at /usr");
        // Nothing after the failing call ran.
        assert!(sys
            .calls
            .last()
            .is_some_and(|c| c.starts_with("bind /usr ")));
    }

    #[test]
    fn optional_masks_tolerate_missing_files() {
        let plan = plan();
        let compiled = CompiledPlan::compile(&plan).expect("compile");
        let mut sys = RecordingSyscalls {
            fail_on: Some("proc/kcore".into()),
            fail_errno: libc::ENOENT,
            ..Default::default()
        };
        apply_plan(&compiled, &mut sys).expect("optional step ignored");
        assert!(sys
            .calls
            .last()
            .is_some_and(|c| c.starts_with("pivot_root")));
    }

    #[test]
    fn nul_paths_are_rejected() {
        let mut plan = plan();
        plan.steps.push(MountStep::Touch {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(b"/a\0b")),
        });
        assert!(CompiledPlan::compile(&plan).is_err());
    }
}
