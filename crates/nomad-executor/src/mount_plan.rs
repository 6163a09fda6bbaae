//! The exec driver's chroot, as data.
//!
//! [`build_plan`] turns a [`ChrootSpec`] (task dirs + `chroot_env`) into a list of
//! [`MountStep`]s that the isolated child executes in its own mount namespace (see
//! `isolate::apply_plan`). Nothing is copied or hard-linked: the new root is a small tmpfs
//! mounted at `<task_dir>/.root` *inside the task's mount namespace*, holding only mount points;
//! every `chroot_env` entry is a read-only recursive bind mount, so building the root costs the
//! same whatever the size of `/usr`, and every mount disappears with the namespace (nothing to
//! unmount on the host when the task ends).
//!
//! The task sees:
//!
//! | path | what | options |
//! |---|---|---|
//! | `/` | tmpfs of mount points | read-only after setup |
//! | chroot_env dests | recursive binds of the host sources | read-only |
//! | `/alloc` | `<A>/alloc` | rw, nosuid, nodev |
//! | `/alloc/logs` | `<A>/alloc/logs` | ro, nosuid, nodev, noexec |
//! | `/local` | `<T>/local` | rw, nosuid, nodev |
//! | `/secrets` | `<T>/secrets` (a tmpfs on the host, see the driver) | rw, noexec, nosuid, nodev |
//! | `/tmp` | `<T>/tmp` | rw, nosuid, nodev |
//! | `/dev` | private tmpfs: null zero full random urandom tty, pts, shm, fd/std* links | nosuid |
//! | `/proc` | proc of the task's pid namespace; kcore/keys/timer_list masked, sys/sysrq-trigger/irq/bus ro | nosuid, nodev, noexec |
//!
//! Top-level symlink sources (merged-`/usr` hosts: `/bin -> usr/bin`) become symlinks in the
//! root when their target is visible in the chroot, otherwise their resolved target is bound.
//! `/etc/resolv.conf` and `/etc/localtime` are checked the same way: when the host file is a
//! symlink to something the chroot does not show, its target is bound where the link points.
//!
//! Pure: the host is seen through [`HostView`], so plans are unit-tested without root.

use std::path::{Component, Path, PathBuf};

/// Nomad's default `chroot_env` (host source → chroot destination).
pub const DEFAULT_CHROOT_ENV: &[(&str, &str)] = &[
    ("/bin", "/bin"),
    ("/etc", "/etc"),
    ("/lib", "/lib"),
    ("/lib32", "/lib32"),
    ("/lib64", "/lib64"),
    ("/run/resolvconf", "/run/resolvconf"),
    ("/sbin", "/sbin"),
    ("/usr", "/usr"),
    ("/run/systemd/resolve", "/run/systemd/resolve"),
];

/// Destinations owned by the driver; `chroot_env` may not map into them.
pub const RESERVED_DESTS: &[&str] = &["/alloc", "/local", "/secrets", "/tmp", "/dev", "/proc"];

/// Files inside bound directories whose symlink targets are made visible when needed.
const LINKED_FILES: &[&str] = &["/etc/resolv.conf", "/etc/localtime"];

/// Per-mount flags applied by a bind remount or given to a new mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    /// MS_RDONLY
    pub readonly: bool,
    /// MS_NOSUID
    pub nosuid: bool,
    /// MS_NODEV
    pub nodev: bool,
    /// MS_NOEXEC
    pub noexec: bool,
}

impl MountFlags {
    const RO: MountFlags = MountFlags {
        readonly: true,
        nosuid: false,
        nodev: false,
        noexec: false,
    };
    const RW_NOSUID_NODEV: MountFlags = MountFlags {
        readonly: false,
        nosuid: true,
        nodev: true,
        noexec: false,
    };
    const ALL: MountFlags = MountFlags {
        readonly: true,
        nosuid: true,
        nodev: true,
        noexec: true,
    };

    fn describe(self) -> String {
        let mut v = vec![if self.readonly { "ro" } else { "rw" }];
        if self.nosuid {
            v.push("nosuid");
        }
        if self.nodev {
            v.push("nodev");
        }
        if self.noexec {
            v.push("noexec");
        }
        v.join(",")
    }
}

/// One step of the plan. Paths are absolute host paths as seen by the child *before*
/// `pivot_root` (i.e. under [`MountPlan::root`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountStep {
    /// `mount(NULL, "/", NULL, MS_REC|MS_PRIVATE)`: nothing below propagates to the host.
    MakePrivate,
    /// A new tmpfs.
    Tmpfs {
        /// Mount point.
        target: PathBuf,
        /// Mount data, e.g. `mode=755,size=1m`.
        data: String,
        /// Mount flags.
        flags: MountFlags,
    },
    /// `mkdir(path, mode)`; `EEXIST` is fine.
    Mkdir {
        /// Directory.
        path: PathBuf,
        /// Mode (the child runs with umask 0 while building).
        mode: u32,
    },
    /// Create an empty file (a mount point for a file bind).
    Touch {
        /// File.
        path: PathBuf,
    },
    /// `symlink(target, link)`.
    Symlink {
        /// Link text.
        target: PathBuf,
        /// Where the link is created.
        link: PathBuf,
    },
    /// `mount(source, target, NULL, MS_BIND[|MS_REC])`.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Mount point.
        target: PathBuf,
        /// Include sub-mounts.
        recursive: bool,
        /// `ENOENT` is not an error (masking files that may not exist).
        optional: bool,
    },
    /// Change the per-mount flags of a bind mount (recursively when asked and supported).
    Remount {
        /// Mount point.
        target: PathBuf,
        /// New flags.
        flags: MountFlags,
        /// Apply to sub-mounts too (`mount_setattr(AT_RECURSIVE)`).
        recursive: bool,
        /// `ENOENT`/`EINVAL` are not errors.
        optional: bool,
    },
    /// A proc mount (nosuid, nodev, noexec) for the task's pid namespace.
    Proc {
        /// Mount point.
        target: PathBuf,
    },
    /// A private devpts instance.
    Devpts {
        /// Mount point.
        target: PathBuf,
        /// Mount data.
        data: String,
    },
    /// `mknod(path, S_IFCHR | mode, makedev(major, minor))`.
    Mknod {
        /// Device file.
        path: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// `chdir(new_root); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/")`.
    PivotRoot {
        /// The new root (a mount point).
        new_root: PathBuf,
    },
    /// Fallback when pivot_root cannot be used: `mount --move new_root /; chroot .`.
    MoveRoot {
        /// The new root.
        new_root: PathBuf,
    },
}

/// What the plan is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChrootSpec {
    /// Host directory the root tmpfs is mounted on (`<task_dir>/.root`); must exist.
    pub root: PathBuf,
    /// `<A>/<task>` (local/, secrets/, tmp/ inside; must exist).
    pub task_dir: PathBuf,
    /// `<A>/alloc`.
    pub alloc_dir: PathBuf,
    /// `chroot_env`: host source → chroot destination, in any order.
    pub chroot_env: Vec<(String, String)>,
    /// Sources never embedded (the client's alloc dir and mounts dir, like Nomad).
    pub skip_sources: Vec<PathBuf>,
    /// Use pivot_root (else move-mount + chroot, Nomad's `no_pivot_root`).
    pub pivot_root: bool,
}

/// What a host path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symlink with this link text.
    Symlink(PathBuf),
    /// A device, socket or FIFO.
    Other,
}

/// Read-only view of the host file system used while planning.
pub trait HostView {
    /// `lstat`: what `path` is, not following a final symlink; `None` if missing.
    fn lstat(&self, path: &Path) -> Option<HostEntry>;
    /// `realpath`; `None` if it does not resolve.
    fn canonicalize(&self, path: &Path) -> Option<PathBuf>;
}

/// The real host file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl HostView for RealHost {
    fn lstat(&self, path: &Path) -> Option<HostEntry> {
        let meta = std::fs::symlink_metadata(path).ok()?;
        let ft = meta.file_type();
        Some(if ft.is_symlink() {
            HostEntry::Symlink(std::fs::read_link(path).ok()?)
        } else if ft.is_dir() {
            HostEntry::Dir
        } else if ft.is_file() {
            HostEntry::File
        } else {
            HostEntry::Other
        })
    }

    fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
}

/// A plan could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A bad `chroot_env` entry.
    #[error("invalid chroot_env entry {host:?} = {dest:?}: {reason}")]
    ChrootEnv {
        /// Host side.
        host: String,
        /// Chroot side.
        dest: String,
        /// Why.
        reason: String,
    },
    /// A directory the chroot needs does not exist.
    #[error("{what} {path} does not exist or is not a directory")]
    MissingDir {
        /// e.g. `"task local dir"`.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
}

/// The computed plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    /// The new root (host path before pivot).
    pub root: PathBuf,
    /// Steps in execution order.
    pub steps: Vec<MountStep>,
    /// chroot destination → host source of every bind (for binary lookup).
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// chroot symlinks created in the root: link → absolute chroot target.
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Entries skipped and why (missing sources are silently skipped, like Nomad).
    pub warnings: Vec<String>,
}

/// Lexically cleans an absolute path: drops `.`, resolves `..` (never above `/`).
/// `None` for a relative path.
pub fn clean_abs(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// Whether `p` (absolute) contains a `..` component.
pub fn has_parent_component(p: &Path) -> bool {
    p.components().any(|c| matches!(c, Component::ParentDir))
}

/// `root` + absolute chroot path `p`.
fn under(root: &Path, p: &Path) -> PathBuf {
    match p.strip_prefix("/") {
        Ok(rel) if rel.as_os_str().is_empty() => root.to_path_buf(),
        Ok(rel) => root.join(rel),
        Err(_) => root.join(p),
    }
}

/// Ancestors of an absolute path, outermost first, excluding `/` and the path itself.
fn ancestors(p: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = p
        .ancestors()
        .skip(1)
        .filter(|a| a.parent().is_some())
        .map(Path::to_path_buf)
        .collect();
    v.reverse();
    v
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

#[derive(Debug, Clone)]
struct BindEntry {
    dest: PathBuf,
    source: PathBuf,
    kind: Kind,
    /// Source canonicalised (to map symlink targets).
    canonical: PathBuf,
}

struct Builder<'a> {
    spec: &'a ChrootSpec,
    host: &'a dyn HostView,
    steps: Vec<MountStep>,
    made_dirs: std::collections::BTreeSet<PathBuf>,
    warnings: Vec<String>,
}

impl Builder<'_> {
    fn r(&self, p: &Path) -> PathBuf {
        under(&self.spec.root, p)
    }

    /// mkdir every ancestor and (for dirs) the path itself, once, on the root tmpfs.
    fn mkdirs(&mut self, chroot: &Path, include_self: bool) {
        let mut all = ancestors(chroot);
        if include_self {
            all.push(chroot.to_path_buf());
        }
        for d in all {
            if self.made_dirs.insert(d.clone()) {
                let path = self.r(&d);
                self.steps.push(MountStep::Mkdir { path, mode: 0o755 });
            }
        }
    }

    fn bind(&mut self, source: PathBuf, dest: &Path, recursive: bool, flags: MountFlags) {
        let target = self.r(dest);
        self.steps.push(MountStep::Bind {
            source,
            target: target.clone(),
            recursive,
            optional: false,
        });
        self.steps.push(MountStep::Remount {
            target,
            flags,
            recursive,
            optional: false,
        });
    }

    fn require_dir(&self, what: &'static str, path: PathBuf) -> Result<PathBuf, PlanError> {
        match self.host.lstat(&path) {
            Some(HostEntry::Dir) => Ok(path),
            // A symlinked task dir is followed (the client may use one for alloc_dir).
            Some(HostEntry::Symlink(_))
                if self
                    .host
                    .canonicalize(&path)
                    .is_some_and(|c| self.host.lstat(&c) == Some(HostEntry::Dir)) =>
            {
                Ok(path)
            }
            _ => Err(PlanError::MissingDir { what, path }),
        }
    }
}

fn chroot_err(source: &str, dest: &str, reason: impl Into<String>) -> PlanError {
    PlanError::ChrootEnv {
        host: source.to_string(),
        dest: dest.to_string(),
        reason: reason.into(),
    }
}

/// Parses and checks `chroot_env` pairs without touching the host: both sides absolute, the
/// destination not `/` and not inside a reserved directory.
pub fn validate_chroot_env(entries: &[(String, String)]) -> Result<(), PlanError> {
    for (s, d) in entries {
        check_entry(s, d)?;
    }
    Ok(())
}

fn check_entry(s: &str, d: &str) -> Result<(PathBuf, PathBuf), PlanError> {
    let src = clean_abs(Path::new(s))
        .ok_or_else(|| chroot_err(s, d, "the host path must be absolute"))?;
    let dest = clean_abs(Path::new(d))
        .ok_or_else(|| chroot_err(s, d, "the chroot path must be absolute"))?;
    if dest == Path::new("/") {
        return Err(chroot_err(s, d, "cannot replace the chroot root"));
    }
    if let Some(r) = RESERVED_DESTS.iter().find(|r| dest.starts_with(r)) {
        return Err(chroot_err(
            s,
            d,
            format!("{r} is managed by the exec driver"),
        ));
    }
    Ok((src, dest))
}

/// Builds the plan. See the module docs for the resulting layout.
pub fn build_plan(spec: &ChrootSpec, host: &dyn HostView) -> Result<MountPlan, PlanError> {
    let mut b = Builder {
        spec,
        host,
        steps: vec![MountStep::MakePrivate],
        made_dirs: Default::default(),
        warnings: vec![],
    };
    let local = b.require_dir("task local dir", spec.task_dir.join("local"))?;
    let secrets = b.require_dir("task secrets dir", spec.task_dir.join("secrets"))?;
    let tmp = b.require_dir("task tmp dir", spec.task_dir.join("tmp"))?;
    let alloc = b.require_dir("alloc dir", spec.alloc_dir.clone())?;

    // 1. Classify chroot_env entries.
    let mut dirs_and_files: Vec<BindEntry> = vec![];
    let mut symlinks: Vec<(PathBuf, PathBuf, String, String)> = vec![]; // dest, resolved, raw
    let mut seen_dests = std::collections::BTreeSet::new();
    let mut entries: Vec<(PathBuf, PathBuf, &str, &str)> = vec![];
    for (s, d) in &spec.chroot_env {
        let (src, dest) = check_entry(s, d)?;
        if !seen_dests.insert(dest.clone()) {
            return Err(chroot_err(s, d, "duplicate chroot destination"));
        }
        entries.push((src, dest, s, d));
    }
    entries.sort_by(|a, b| a.1.cmp(&b.1));
    for (src, dest, s, d) in entries {
        if spec.skip_sources.iter().any(|k| src.starts_with(k)) {
            b.warnings
                .push(format!("chroot_env {s:?}: skipped (inside the alloc dir)"));
            continue;
        }
        match host.lstat(&src) {
            None => continue, // missing sources are skipped, like Nomad
            Some(HostEntry::Symlink(_)) => match host.canonicalize(&src) {
                Some(resolved) => symlinks.push((dest, resolved, s.to_string(), d.to_string())),
                None => b
                    .warnings
                    .push(format!("chroot_env {s:?}: skipped (dangling symlink)")),
            },
            Some(kind @ (HostEntry::Dir | HostEntry::File)) => {
                let canonical = host.canonicalize(&src).unwrap_or_else(|| src.clone());
                dirs_and_files.push(BindEntry {
                    dest,
                    source: src,
                    kind: if kind == HostEntry::Dir {
                        Kind::Dir
                    } else {
                        Kind::File
                    },
                    canonical,
                });
            }
            Some(_) => b.warnings.push(format!(
                "chroot_env {s:?}: skipped (not a file or directory)"
            )),
        }
    }

    // 2. Symlink sources: a link in the root when the target is visible, else bind the target.
    let mut links: Vec<(PathBuf, PathBuf)> = vec![];
    for (dest, resolved, s, _d) in symlinks {
        let visible = dirs_and_files
            .iter()
            .filter(|e| e.kind == Kind::Dir && resolved.starts_with(&e.canonical))
            .max_by_key(|e| e.canonical.components().count());
        match visible {
            Some(e) => {
                let rel = resolved.strip_prefix(&e.canonical).unwrap_or(Path::new(""));
                let target = if rel.as_os_str().is_empty() {
                    e.dest.clone()
                } else {
                    e.dest.join(rel)
                };
                links.push((dest, target));
            }
            None => match host.lstat(&resolved) {
                Some(kind @ (HostEntry::Dir | HostEntry::File)) => {
                    dirs_and_files.push(BindEntry {
                        dest,
                        source: resolved.clone(),
                        kind: if kind == HostEntry::Dir {
                            Kind::Dir
                        } else {
                            Kind::File
                        },
                        canonical: resolved,
                    });
                }
                _ => b.warnings.push(format!(
                    "chroot_env {s:?}: skipped (symlink to neither a file nor a directory)"
                )),
            },
        }
    }
    dirs_and_files.sort_by(|a, b| a.dest.cmp(&b.dest));

    // 3. Nesting: an entry inside another bind needs its mount point to exist in that source;
    //    nothing can be created inside a symlink or a read-only bind.
    let mut top: Vec<BindEntry> = vec![];
    let mut nested: Vec<BindEntry> = vec![];
    for e in dirs_and_files {
        if let Some((l, _)) = links.iter().find(|(l, _)| e.dest.starts_with(l)) {
            b.warnings.push(format!(
                "chroot_env {}: skipped (its destination is inside the symlink {})",
                e.source.display(),
                l.display()
            ));
            continue;
        }
        match top
            .iter()
            .find(|p| p.kind == Kind::Dir && e.dest.starts_with(&p.dest))
        {
            Some(parent) => {
                let rel = e.dest.strip_prefix(&parent.dest).unwrap_or(Path::new(""));
                let mp = parent.source.join(rel);
                let ok = matches!(
                    (host.lstat(&mp), &e.kind),
                    (Some(HostEntry::Dir), Kind::Dir) | (Some(HostEntry::File), Kind::File)
                );
                if ok {
                    nested.push(e);
                } else {
                    b.warnings.push(format!(
                        "chroot_env {}: skipped (no mount point {} inside {})",
                        e.source.display(),
                        e.dest.display(),
                        parent.dest.display()
                    ));
                }
            }
            None => top.push(e),
        }
    }
    let links_for_check = links.clone();
    let mut binds: Vec<(PathBuf, PathBuf)> = top
        .iter()
        .chain(nested.iter())
        .map(|e| (e.dest.clone(), e.source.clone()))
        .collect();
    for (d, src) in [
        ("/alloc", &alloc),
        ("/local", &local),
        ("/secrets", &secrets),
        ("/tmp", &tmp),
    ] {
        binds.push((PathBuf::from(d), src.clone()));
    }
    let logs = spec.alloc_dir.join("logs");
    let have_logs = host.lstat(&logs) == Some(HostEntry::Dir);
    if have_logs {
        binds.push((PathBuf::from("/alloc/logs"), logs.clone()));
    }

    // 4. Files behind symlinks (/etc/resolv.conf -> /run/...): bind the target where the link
    //    points when the chroot would not show it.
    let mut extra_files: Vec<(PathBuf, PathBuf)> = vec![]; // chroot path, host file
    for f in LINKED_FILES {
        let p = Path::new(f);
        let Some(host_file) = map_path(&binds, &links_for_check, p) else {
            continue;
        };
        let Some(HostEntry::Symlink(text)) = host.lstat(&host_file) else {
            continue;
        };
        let Some(real) = host.canonicalize(&host_file) else {
            continue;
        };
        let Some(in_chroot) = clean_abs(&if text.is_absolute() {
            text.clone()
        } else {
            p.parent().unwrap_or(Path::new("/")).join(&text)
        }) else {
            continue;
        };
        let shown = map_path(&binds, &links_for_check, &in_chroot)
            .and_then(|h| host.canonicalize(&h))
            .is_some_and(|h| h == real);
        if shown {
            continue;
        }
        let on_root_tmpfs = !binds.iter().any(|(d, _)| in_chroot.starts_with(d))
            && !links_for_check
                .iter()
                .any(|(l, _)| in_chroot.starts_with(l))
            && !RESERVED_DESTS.iter().any(|r| in_chroot.starts_with(r));
        if on_root_tmpfs && host.lstat(&real) == Some(HostEntry::File) {
            extra_files.push((in_chroot, real));
        } else {
            b.warnings.push(format!(
                "{f} is a symlink to {} which the chroot does not show",
                text.display()
            ));
        }
    }

    // 5. The steps.
    b.steps.push(MountStep::Tmpfs {
        target: spec.root.clone(),
        data: "mode=755,size=1m".into(),
        flags: MountFlags {
            nosuid: true,
            nodev: true,
            ..Default::default()
        },
    });
    for d in ["/alloc", "/local", "/secrets", "/tmp", "/dev", "/proc"] {
        b.mkdirs(Path::new(d), true);
    }
    for e in &top {
        if e.kind == Kind::Dir {
            b.mkdirs(&e.dest, true);
        } else {
            b.mkdirs(&e.dest, false);
            let path = b.r(&e.dest);
            b.steps.push(MountStep::Touch { path });
        }
    }
    for (link, target) in &links {
        b.mkdirs(link, false);
        let link = b.r(link);
        b.steps.push(MountStep::Symlink {
            target: target.clone(),
            link,
        });
    }
    for (p, _) in &extra_files {
        b.mkdirs(p, false);
        let path = b.r(p);
        b.steps.push(MountStep::Touch { path });
    }
    for e in top.iter().chain(nested.iter()) {
        b.bind(e.source.clone(), &e.dest, true, MountFlags::RO);
    }
    for (p, real) in &extra_files {
        b.bind(real.clone(), p, false, MountFlags::RO);
    }
    b.bind(
        alloc,
        Path::new("/alloc"),
        false,
        MountFlags::RW_NOSUID_NODEV,
    );
    if have_logs {
        b.bind(logs, Path::new("/alloc/logs"), false, MountFlags::ALL);
    }
    b.bind(
        local,
        Path::new("/local"),
        false,
        MountFlags::RW_NOSUID_NODEV,
    );
    b.bind(
        secrets,
        Path::new("/secrets"),
        false,
        MountFlags {
            readonly: false,
            nosuid: true,
            nodev: true,
            noexec: true,
        },
    );
    b.bind(tmp, Path::new("/tmp"), false, MountFlags::RW_NOSUID_NODEV);

    // /dev: a private tmpfs with the minimal device set.
    let dev = b.r(Path::new("/dev"));
    b.steps.push(MountStep::Tmpfs {
        target: dev.clone(),
        data: "mode=755,size=65536k".into(),
        flags: MountFlags {
            nosuid: true,
            ..Default::default()
        },
    });
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        b.steps.push(MountStep::Mknod {
            path: dev.join(name),
            mode: 0o666,
            major,
            minor,
        });
    }
    for d in ["pts", "shm"] {
        b.steps.push(MountStep::Mkdir {
            path: dev.join(d),
            mode: 0o755,
        });
    }
    b.steps.push(MountStep::Devpts {
        target: dev.join("pts"),
        data: "newinstance,ptmxmode=0666,mode=0620,gid=5".into(),
    });
    b.steps.push(MountStep::Tmpfs {
        target: dev.join("shm"),
        data: "mode=1777,size=65536k".into(),
        flags: MountFlags {
            readonly: false,
            nosuid: true,
            nodev: true,
            noexec: true,
        },
    });
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        b.steps.push(MountStep::Symlink {
            target: PathBuf::from(target),
            link: dev.join(link),
        });
    }

    // /proc, with the usual masks.
    let proc_ = b.r(Path::new("/proc"));
    b.steps.push(MountStep::Proc {
        target: proc_.clone(),
    });
    for masked in ["kcore", "keys", "timer_list"] {
        b.steps.push(MountStep::Bind {
            source: dev.join("null"),
            target: proc_.join(masked),
            recursive: false,
            optional: true,
        });
    }
    for ro in ["sys", "sysrq-trigger", "irq", "bus"] {
        let p = proc_.join(ro);
        b.steps.push(MountStep::Bind {
            source: p.clone(),
            target: p.clone(),
            recursive: true,
            optional: true,
        });
        b.steps.push(MountStep::Remount {
            target: p,
            flags: MountFlags::RO,
            recursive: true,
            optional: true,
        });
    }

    // The root itself becomes read-only, then we switch to it.
    b.steps.push(MountStep::Remount {
        target: spec.root.clone(),
        flags: MountFlags {
            readonly: true,
            nosuid: true,
            nodev: true,
            noexec: false,
        },
        recursive: false,
        optional: false,
    });
    b.steps.push(if spec.pivot_root {
        MountStep::PivotRoot {
            new_root: spec.root.clone(),
        }
    } else {
        MountStep::MoveRoot {
            new_root: spec.root.clone(),
        }
    });

    Ok(MountPlan {
        root: spec.root.clone(),
        steps: b.steps,
        binds,
        links,
        warnings: b.warnings,
    })
}

/// Maps a chroot path to the host path behind it through `links` then the longest `binds`.
fn map_path(
    binds: &[(PathBuf, PathBuf)],
    links: &[(PathBuf, PathBuf)],
    p: &Path,
) -> Option<PathBuf> {
    let mut p = clean_abs(p)?;
    for _ in 0..16 {
        if let Some((l, t)) = links.iter().find(|(l, _)| p.starts_with(l)) {
            let rel = p.strip_prefix(l).unwrap_or(Path::new("")).to_path_buf();
            p = if rel.as_os_str().is_empty() {
                t.clone()
            } else {
                t.join(rel)
            };
            continue;
        }
        let (d, s) = binds
            .iter()
            .filter(|(d, _)| p.starts_with(d))
            .max_by_key(|(d, _)| d.components().count())?;
        let rel = p.strip_prefix(d).unwrap_or(Path::new(""));
        return Some(if rel.as_os_str().is_empty() {
            s.clone()
        } else {
            s.join(rel)
        });
    }
    None
}

impl MountPlan {
    /// The host path behind an absolute chroot path (through the plan's symlinks and binds);
    /// `None` when the path is on the root tmpfs, `/dev` or `/proc`.
    pub fn host_path(&self, chroot_path: &Path) -> Option<PathBuf> {
        map_path(&self.binds, &self.links, chroot_path)
    }

    /// The chroot-relative form of a host path under the root, for messages.
    fn chroot_of(&self, p: &Path) -> String {
        match p.strip_prefix(&self.root) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => p.display().to_string(),
        }
    }

    /// A human description of step `i`, used in start errors:
    /// `failed to bind-mount /usr into chroot at /usr: ...`.
    pub fn describe(&self, i: usize) -> String {
        let Some(step) = self.steps.get(i) else {
            return format!("run chroot setup step {i}");
        };
        let c = |p: &Path| self.chroot_of(p);
        match step {
            MountStep::MakePrivate => "make the task's mount tree private".into(),
            MountStep::Tmpfs { target, .. } if *target == self.root => {
                format!("mount the chroot root tmpfs at {}", self.root.display())
            }
            MountStep::Tmpfs { target, .. } => format!("mount tmpfs at {}", c(target)),
            MountStep::Mkdir { path, .. } => format!("create mount point {}", c(path)),
            MountStep::Touch { path } => format!("create mount point {}", c(path)),
            MountStep::Symlink { target, link } => {
                format!("create symlink {} -> {}", c(link), target.display())
            }
            MountStep::Bind { source, target, .. } => format!(
                "bind-mount {} into chroot at {}",
                source.display(),
                c(target)
            ),
            MountStep::Remount { target, flags, .. } => {
                format!("remount {} {}", c(target), flags.describe())
            }
            MountStep::Proc { target } => format!("mount proc at {}", c(target)),
            MountStep::Devpts { target, .. } => format!("mount devpts at {}", c(target)),
            MountStep::Mknod { path, .. } => format!("create device {}", c(path)),
            MountStep::PivotRoot { new_root } => {
                format!("pivot_root into {}", new_root.display())
            }
            MountStep::MoveRoot { new_root } => {
                format!("move-mount and chroot into {}", new_root.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A fake host: paths → entries; canonicalize follows Symlink entries (absolute or
    /// relative) component by component.
    #[derive(Default)]
    struct FakeHost(BTreeMap<PathBuf, HostEntry>);

    impl FakeHost {
        fn dir(mut self, p: &str) -> Self {
            self.0.insert(p.into(), HostEntry::Dir);
            self
        }
        fn file(mut self, p: &str) -> Self {
            self.0.insert(p.into(), HostEntry::File);
            self
        }
        fn link(mut self, p: &str, t: &str) -> Self {
            self.0.insert(p.into(), HostEntry::Symlink(t.into()));
            self
        }
        fn merged_usr() -> Self {
            FakeHost::default()
                .dir("/usr")
                .dir("/usr/bin")
                .dir("/usr/lib")
                .dir("/usr/lib64")
                .dir("/usr/sbin")
                .file("/usr/bin/sh")
                .link("/bin", "usr/bin")
                .link("/lib", "usr/lib")
                .link("/lib64", "usr/lib64")
                .link("/sbin", "usr/sbin")
                .dir("/etc")
                .dir("/t/web/local")
                .dir("/t/web/secrets")
                .dir("/t/web/tmp")
                .dir("/t/web/.root")
                .dir("/t/alloc")
                .dir("/t/alloc/logs")
        }
    }

    impl HostView for FakeHost {
        fn lstat(&self, path: &Path) -> Option<HostEntry> {
            self.0.get(path).cloned()
        }
        fn canonicalize(&self, path: &Path) -> Option<PathBuf> {
            let mut out = PathBuf::from("/");
            let mut todo: Vec<PathBuf> = path
                .components()
                .rev()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(PathBuf::from(n)),
                    Component::ParentDir => Some(PathBuf::from("..")),
                    _ => None,
                })
                .collect();
            let mut hops = 0;
            while let Some(c) = todo.pop() {
                if c == Path::new("..") {
                    out.pop();
                    continue;
                }
                let next = out.join(&c);
                match self.0.get(&next)? {
                    HostEntry::Symlink(t) => {
                        hops += 1;
                        if hops > 16 {
                            return None;
                        }
                        if t.is_absolute() {
                            out = PathBuf::from("/");
                        }
                        for c in t.components().rev() {
                            match c {
                                Component::Normal(n) => todo.push(PathBuf::from(n)),
                                Component::ParentDir => todo.push(PathBuf::from("..")),
                                _ => {}
                            }
                        }
                    }
                    _ => out = next,
                }
            }
            Some(out)
        }
    }

    fn spec(env: &[(&str, &str)]) -> ChrootSpec {
        ChrootSpec {
            root: "/t/web/.root".into(),
            task_dir: "/t/web".into(),
            alloc_dir: "/t/alloc".into(),
            chroot_env: env
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            skip_sources: vec!["/t".into()],
            pivot_root: true,
        }
    }

    fn default_env() -> Vec<(&'static str, &'static str)> {
        DEFAULT_CHROOT_ENV.to_vec()
    }

    fn binds_of(plan: &MountPlan) -> Vec<(String, String, bool)> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                MountStep::Bind {
                    source,
                    target,
                    recursive,
                    optional: false,
                } => Some((
                    source.display().to_string(),
                    target.display().to_string(),
                    *recursive,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn default_env_on_merged_usr_host() {
        let plan = build_plan(&spec(&default_env()), &FakeHost::merged_usr()).expect("plan");
        assert_eq!(plan.steps[0], MountStep::MakePrivate);
        assert!(
            matches!(&plan.steps[1], MountStep::Tmpfs { target, .. } if target == Path::new("/t/web/.root"))
        );
        // Only /etc and /usr are real binds; /bin /lib /lib64 /sbin become links; missing
        // sources (/lib32, /run/...) are skipped.
        assert_eq!(
            binds_of(&plan),
            vec![
                ("/etc".into(), "/t/web/.root/etc".into(), true),
                ("/usr".into(), "/t/web/.root/usr".into(), true),
                ("/t/alloc".into(), "/t/web/.root/alloc".into(), false),
                (
                    "/t/alloc/logs".into(),
                    "/t/web/.root/alloc/logs".into(),
                    false
                ),
                ("/t/web/local".into(), "/t/web/.root/local".into(), false),
                (
                    "/t/web/secrets".into(),
                    "/t/web/.root/secrets".into(),
                    false
                ),
                ("/t/web/tmp".into(), "/t/web/.root/tmp".into(), false),
            ]
        );
        assert!(plan.steps.contains(&MountStep::Symlink {
            target: "/usr/bin".into(),
            link: "/t/web/.root/bin".into()
        }));
        assert!(plan.steps.contains(&MountStep::Symlink {
            target: "/usr/lib64".into(),
            link: "/t/web/.root/lib64".into()
        }));
        // Every bind is followed by its remount; chroot_env is read-only.
        let i = plan
            .steps
            .iter()
            .position(
                |s| matches!(s, MountStep::Bind { source, .. } if source == Path::new("/usr")),
            )
            .expect("usr bind");
        assert_eq!(
            plan.steps[i + 1],
            MountStep::Remount {
                target: "/t/web/.root/usr".into(),
                flags: MountFlags::RO,
                recursive: true,
                optional: false
            }
        );
        // Secrets are noexec; logs are read-only.
        let flags_of = |t: &str| {
            plan.steps.iter().find_map(|s| match s {
                MountStep::Remount { target, flags, .. } if target == Path::new(t) => Some(*flags),
                _ => None,
            })
        };
        assert!(flags_of("/t/web/.root/secrets").expect("secrets").noexec);
        assert!(flags_of("/t/web/.root/alloc/logs").expect("logs").readonly);
        assert!(!flags_of("/t/web/.root/local").expect("local").readonly);
        // Ends with the read-only root and pivot_root.
        let n = plan.steps.len();
        assert!(
            matches!(&plan.steps[n - 2], MountStep::Remount { target, flags, .. } if target == Path::new("/t/web/.root") && flags.readonly)
        );
        assert_eq!(
            plan.steps[n - 1],
            MountStep::PivotRoot {
                new_root: "/t/web/.root".into()
            }
        );
        // Mount points precede their binds; each directory is made once.
        let mkdirs: Vec<&PathBuf> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                MountStep::Mkdir { path, .. } if path.starts_with("/t/web/.root") => Some(path),
                _ => None,
            })
            .collect();
        let unique: std::collections::BTreeSet<_> = mkdirs.iter().collect();
        assert_eq!(unique.len(), mkdirs.len());
        assert!(mkdirs.contains(&&PathBuf::from("/t/web/.root/usr")));
        assert!(!mkdirs.contains(&&PathBuf::from("/t/web/.root/bin")));
    }

    #[test]
    fn plan_is_independent_of_usr_size() {
        let small = build_plan(&spec(&default_env()), &FakeHost::merged_usr()).expect("plan");
        let mut big = FakeHost::merged_usr();
        for i in 0..1000 {
            big = big.file(&format!("/usr/bin/tool{i}"));
        }
        let big = build_plan(&spec(&default_env()), &big).expect("plan");
        assert_eq!(small.steps.len(), big.steps.len());
    }

    #[test]
    fn split_usr_host_binds_every_dir() {
        let host = FakeHost::default()
            .dir("/bin")
            .dir("/lib")
            .dir("/usr")
            .dir("/etc")
            .dir("/t/web/local")
            .dir("/t/web/secrets")
            .dir("/t/web/tmp")
            .dir("/t/alloc");
        let plan = build_plan(&spec(&default_env()), &host).expect("plan");
        let binds: Vec<String> = binds_of(&plan).into_iter().map(|b| b.0).collect();
        assert_eq!(
            &binds[..4],
            &[
                "/bin".to_string(),
                "/etc".into(),
                "/lib".into(),
                "/usr".into()
            ]
        );
        // No logs dir on the host: no logs bind.
        assert!(!binds.contains(&"/t/alloc/logs".to_string()));
    }

    #[test]
    fn symlink_to_invisible_target_is_bound() {
        let host = FakeHost::merged_usr()
            .dir("/opt")
            .dir("/opt/tools")
            .link("/tools", "/opt/tools");
        let plan =
            build_plan(&spec(&[("/usr", "/usr"), ("/tools", "/tools")]), &host).expect("plan");
        assert!(binds_of(&plan).contains(&(
            "/opt/tools".into(),
            "/t/web/.root/tools".into(),
            true
        )));
    }

    #[test]
    fn resolv_conf_symlink_outside_chroot_is_bound_where_it_points() {
        let host = FakeHost::merged_usr()
            .dir("/run")
            .dir("/run/NetworkManager")
            .file("/run/NetworkManager/resolv.conf")
            .link("/etc/resolv.conf", "../run/NetworkManager/resolv.conf");
        let plan = build_plan(&spec(&default_env()), &host).expect("plan");
        assert!(plan.steps.contains(&MountStep::Touch {
            path: "/t/web/.root/run/NetworkManager/resolv.conf".into()
        }));
        assert!(binds_of(&plan).contains(&(
            "/run/NetworkManager/resolv.conf".into(),
            "/t/web/.root/run/NetworkManager/resolv.conf".into(),
            false
        )));
        // When the target is visible (systemd-resolved dir in chroot_env) nothing is added.
        let host = FakeHost::merged_usr()
            .dir("/run")
            .dir("/run/systemd")
            .dir("/run/systemd/resolve")
            .file("/run/systemd/resolve/stub-resolv.conf")
            .link("/etc/resolv.conf", "/run/systemd/resolve/stub-resolv.conf");
        let plan = build_plan(&spec(&default_env()), &host).expect("plan");
        assert!(!plan
            .steps
            .iter()
            .any(|s| matches!(s, MountStep::Touch { .. })));
        assert!(binds_of(&plan)
            .iter()
            .any(|b| b.0 == "/run/systemd/resolve"));
    }

    #[test]
    fn host_path_mapping_for_lookup() {
        let plan = build_plan(&spec(&default_env()), &FakeHost::merged_usr()).expect("plan");
        assert_eq!(
            plan.host_path(Path::new("/bin/sh")),
            Some(PathBuf::from("/usr/bin/sh"))
        );
        assert_eq!(
            plan.host_path(Path::new("/local/run.sh")),
            Some(PathBuf::from("/t/web/local/run.sh"))
        );
        assert_eq!(
            plan.host_path(Path::new("/alloc/logs/x")),
            Some(PathBuf::from("/t/alloc/logs/x"))
        );
        assert_eq!(
            plan.host_path(Path::new("/usr/../local/a")),
            Some(PathBuf::from("/t/web/local/a"))
        );
        assert_eq!(plan.host_path(Path::new("/proc/self")), None);
        assert_eq!(plan.host_path(Path::new("/nope")), None);
    }

    #[test]
    fn bad_entries_are_errors_naming_the_entry() {
        let host = FakeHost::merged_usr();
        let e = build_plan(&spec(&[("usr", "/usr")]), &host).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid chroot_env entry \"usr\" = \"/usr\": the host path must be absolute"
        );
        let e = build_plan(&spec(&[("/usr", "/local/usr")]), &host).unwrap_err();
        assert!(
            e.to_string()
                .contains("/local is managed by the exec driver"),
            "{e}"
        );
        let e = build_plan(&spec(&[("/usr", "/")]), &host).unwrap_err();
        assert!(
            e.to_string().contains("cannot replace the chroot root"),
            "{e}"
        );
        let e = build_plan(&spec(&[("/usr", "/x"), ("/etc", "/x/")]), &host).unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
        assert!(validate_chroot_env(&[("/a".into(), "b".into())]).is_err());
        // Missing task dirs.
        let e = build_plan(&spec(&[]), &FakeHost::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task local dir /t/web/local does not exist or is not a directory"
        );
    }

    #[test]
    fn skipped_and_nested_entries() {
        let host = FakeHost::merged_usr()
            .dir("/t/alloc/data")
            .dir("/opt")
            .dir("/usr/share");
        let plan = build_plan(
            &spec(&[
                ("/usr", "/usr"),
                ("/t/alloc/data", "/data"), // inside the alloc dir: skipped
                ("/opt", "/usr/share"),     // nested, mount point exists: bound
                ("/etc", "/usr/nowhere"),   // nested, no mount point: skipped
                ("/opt", "/bin/opt"),       // under a symlink entry... no /bin entry here
            ]),
            &host,
        )
        .expect("plan");
        let binds: Vec<(String, String, bool)> = binds_of(&plan);
        assert!(binds.contains(&("/opt".into(), "/t/web/.root/usr/share".into(), true)));
        assert!(!binds.iter().any(|b| b.0 == "/t/alloc/data"));
        assert!(!binds.iter().any(|b| b.1.ends_with("/usr/nowhere")));
        // /bin/opt is a plain top-level dir because /bin is not in this chroot_env.
        assert!(binds.contains(&("/opt".into(), "/t/web/.root/bin/opt".into(), true)));
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.contains("inside the alloc dir")));
        assert!(plan.warnings.iter().any(|w| w.contains("no mount point")));
        // The nested bind comes after its parent.
        let pos = |t: &str| binds.iter().position(|b| b.1 == t).expect(t);
        assert!(pos("/t/web/.root/usr") < pos("/t/web/.root/usr/share"));
    }

    #[test]
    fn descriptions_name_the_step() {
        let plan = build_plan(&spec(&default_env()), &FakeHost::merged_usr()).expect("plan");
        let i = plan
            .steps
            .iter()
            .position(
                |s| matches!(s, MountStep::Bind { source, .. } if source == Path::new("/usr")),
            )
            .expect("usr");
        assert_eq!(plan.describe(i), "bind-mount /usr into chroot at /usr");
        assert_eq!(plan.describe(i + 1), "remount /usr ro");
        assert_eq!(plan.describe(0), "make the task's mount tree private");
        assert_eq!(
            plan.describe(plan.steps.len() - 1),
            "pivot_root into /t/web/.root"
        );
        let no_pivot = ChrootSpec {
            pivot_root: false,
            ..spec(&default_env())
        };
        let plan = build_plan(&no_pivot, &FakeHost::merged_usr()).expect("plan");
        assert!(matches!(
            plan.steps.last(),
            Some(MountStep::MoveRoot { .. })
        ));
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_abs(Path::new("/a/./b/../c")), Some("/a/c".into()));
        assert_eq!(clean_abs(Path::new("/../..")), Some("/".into()));
        assert_eq!(clean_abs(Path::new("rel")), None);
        assert!(has_parent_component(Path::new("/a/../b")));
        assert!(!has_parent_component(Path::new("/a/b")));
    }
}
