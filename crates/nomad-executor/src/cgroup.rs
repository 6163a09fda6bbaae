//! Task cgroups, v1 and v2, detected at runtime.
//!
//! Layout (relative to the hierarchy root):
//! - v2: `nomad.slice/<alloc_id>.<task>.scope` under the unified mount (`/sys/fs/cgroup`).
//! - v1: `nomad/<alloc_id>.<task>` under each mounted controller among freezer, pids, memory,
//!   cpu and cpuset.
//!
//! All file system access goes through [`CgroupFs`] so the plans (which directories, which files,
//! which order) are unit-tested with a recording fake and no root.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default cgroup mount point.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// v2 parent cgroup for all tasks.
pub const V2_PARENT: &str = "nomad.slice";
/// v1 parent cgroup (inside each controller) for all tasks.
pub const V1_PARENT: &str = "nomad";
/// v1 controllers a task is placed into, when mounted.
pub const V1_CONTROLLERS: &[&str] = &["freezer", "pids", "memory", "cpu", "cpuset"];
/// v2 controllers we try to enable for the task cgroups.
pub const V2_CONTROLLERS: &[&str] = &["cpu", "cpuset", "memory", "pids"];

/// A cgroup operation failure.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable cgroup hierarchy was found.
    #[error("no usable cgroup hierarchy found")]
    Unavailable,
    /// Creating a cgroup directory failed.
    #[error("failed to create cgroup {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading a cgroup file failed.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Writing a cgroup file failed.
    #[error("failed to write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed.
    #[error("failed to remove cgroup {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Processes survived the kill loop.
    #[error("cgroup {cgroup} still has processes {pids:?} after {timeout:?}")]
    KillTimeout {
        /// The cgroup (relative path).
        cgroup: String,
        /// The survivors.
        pids: Vec<i32>,
        /// How long we tried.
        timeout: Duration,
    },
    /// A relative cgroup path from a task handle was not acceptable.
    #[error("invalid cgroup path {0:?}")]
    InvalidPath(String),
}

/// File-system and signal operations used by the cgroup code.
pub trait CgroupFs: Send + Sync + std::fmt::Debug {
    /// `mkdir -p`.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// `rmdir`.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Writes `data` to an existing file (no create, no truncate semantics needed for cgroupfs).
    fn write(&self, path: &Path, data: &str) -> io::Result<()>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Whether the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// `kill(pid, sig)`.
    fn kill(&self, pid: i32, sig: i32) -> io::Result<()>;
}

/// The real host implementation of [`CgroupFs`].
#[derive(Debug, Default, Clone, Copy)]
pub struct HostFs;

impl CgroupFs for HostFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn write(&self, path: &Path, data: &str) -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data.as_bytes())
    }
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn kill(&self, pid: i32, sig: i32) -> io::Result<()> {
        let sig = nix::sys::signal::Signal::try_from(sig).map_err(io::Error::from)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).map_err(io::Error::from)
    }
}

/// Which cgroup hierarchy the host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupMode {
    /// Unified hierarchy mounted at `root`.
    V2 {
        /// Mount point, normally `/sys/fs/cgroup`.
        root: PathBuf,
    },
    /// Legacy hierarchies: controller name -> mount point.
    V1 {
        /// e.g. `"memory" => /sys/fs/cgroup/memory`.
        mounts: BTreeMap<String, PathBuf>,
    },
    /// No cgroups usable.
    Unavailable,
}

impl CgroupMode {
    /// Detects the mode from `/proc/self/mounts`.
    pub fn detect() -> CgroupMode {
        match std::fs::read_to_string("/proc/self/mounts") {
            Ok(text) => Self::from_mounts(&text),
            Err(_) => CgroupMode::Unavailable,
        }
    }

    /// Decides the mode from the text of `/proc/mounts`: v2 when `/sys/fs/cgroup` itself is a
    /// `cgroup2` mount; otherwise v1 when any of our controllers is mounted (a hybrid host with
    /// `cgroup2` at `/sys/fs/cgroup/unified` counts as v1, as the controllers live in v1).
    pub fn from_mounts(text: &str) -> CgroupMode {
        let mut v1 = BTreeMap::new();
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() < 4 {
                continue;
            }
            let (mount_point, fstype, opts) = (parts[1], parts[2], parts[3]);
            match fstype {
                "cgroup2" if mount_point == CGROUP_ROOT => {
                    return CgroupMode::V2 {
                        root: PathBuf::from(mount_point),
                    };
                }
                "cgroup" => {
                    for opt in opts.split(',') {
                        if V1_CONTROLLERS.contains(&opt) {
                            v1.entry(opt.to_string())
                                .or_insert_with(|| PathBuf::from(mount_point));
                        }
                    }
                }
                _ => {}
            }
        }
        if v1.is_empty() {
            CgroupMode::Unavailable
        } else {
            CgroupMode::V1 { mounts: v1 }
        }
    }

    /// The path, relative to the hierarchy root, of a task's cgroup.
    pub fn task_cgroup_rel(&self, alloc_id: &str, task: &str) -> Option<String> {
        let name = format!("{}.{}", sanitize(alloc_id), sanitize(task));
        match self {
            CgroupMode::V2 { .. } => Some(format!("{V2_PARENT}/{name}.scope")),
            CgroupMode::V1 { .. } => Some(format!("{V1_PARENT}/{name}")),
            CgroupMode::Unavailable => None,
        }
    }
}

/// Makes a string safe as one path component.
fn sanitize(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    if cleaned == "." || cleaned == ".." {
        cleaned.replace('.', "_")
    } else {
        cleaned
    }
}

/// Resource limits written into a task cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Hard memory limit in bytes.
    pub memory_max_bytes: Option<u64>,
    /// Soft memory limit (v2 `memory.low`, v1 `memory.soft_limit_in_bytes`) in bytes.
    pub memory_soft_bytes: Option<u64>,
    /// CPU shares (v1 `cpu.shares`; converted to v2 `cpu.weight`). Nomad uses the MHz value.
    pub cpu_shares: Option<u64>,
    /// Reserved cores for `cpuset.cpus`, e.g. `"0,2"`.
    pub cpuset_cpus: Option<String>,
}

impl CgroupLimits {
    /// Builds limits from Nomad task resources: `memory_mb`, `memory_max_mb` (0 = unset),
    /// `cpu_mhz` and reserved `cores`. With `memory_max_mb > memory_mb` the hard limit is
    /// `memory_max_mb` and `memory_mb` becomes the soft limit.
    pub fn from_resources(cpu_mhz: u64, memory_mb: u64, memory_max_mb: u64, cores: &[u32]) -> Self {
        const MIB: u64 = 1024 * 1024;
        let (hard, soft) = if memory_max_mb > memory_mb && memory_mb > 0 {
            (Some(memory_max_mb * MIB), Some(memory_mb * MIB))
        } else if memory_mb > 0 {
            (Some(memory_mb * MIB), None)
        } else if memory_max_mb > 0 {
            (Some(memory_max_mb * MIB), None)
        } else {
            (None, None)
        };
        let cpuset = if cores.is_empty() {
            None
        } else {
            Some(
                cores
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        };
        CgroupLimits {
            memory_max_bytes: hard,
            memory_soft_bytes: soft,
            cpu_shares: (cpu_mhz > 0).then_some(cpu_mhz.max(2)),
            cpuset_cpus: cpuset,
        }
    }
}

/// Converts v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000) with the quadratic
/// (in log space) mapping of current OCI runtimes, which Nomad uses: 0 → 0, ≤ 2 → 1,
/// ≥ 262144 → 10000, else `ceil(10^((l² + 125·l) / 612 − 7/34))` with `l = log2(shares)`, so
/// that 1024 shares (the v1 default) map to 100 (the v2 default).
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            // Guard against the last-ulp error of pow/log2 pushing an exact value (1024 →
            // 100) over the next integer.
            let w = 10f64.powf(exponent);
            let rounded = w.round();
            let v = if (w - rounded).abs() < 1e-9 {
                rounded
            } else {
                w.ceil()
            };
            (v as u64).clamp(1, 10_000)
        }
    }
}

/// One directory of a task cgroup (one per v1 controller mount, or the single v2 directory).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupDir {
    /// Controllers served by this directory (v1), empty for v2.
    controllers: Vec<String>,
    /// Hierarchy root (mount point).
    root: PathBuf,
    /// Absolute path of the task cgroup.
    path: PathBuf,
}

/// A task cgroup (created or re-opened).
#[derive(Debug, Clone)]
pub struct Cgroup {
    version: u8,
    rel: String,
    dirs: Vec<CgroupDir>,
    fs: Arc<dyn CgroupFs>,
}

impl Cgroup {
    /// Builds the handle for `rel` (relative path as from [`CgroupMode::task_cgroup_rel`])
    /// without touching the file system.
    pub fn open(
        mode: &CgroupMode,
        rel: &str,
        fs: Arc<dyn CgroupFs>,
    ) -> Result<Cgroup, CgroupError> {
        let rel_path = Path::new(rel);
        if rel.is_empty()
            || rel_path.is_absolute()
            || rel_path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(CgroupError::InvalidPath(rel.to_string()));
        }
        match mode {
            CgroupMode::V2 { root } => Ok(Cgroup {
                version: 2,
                rel: rel.to_string(),
                dirs: vec![CgroupDir {
                    controllers: vec![],
                    root: root.clone(),
                    path: root.join(rel),
                }],
                fs,
            }),
            CgroupMode::V1 { mounts } => {
                // Controllers co-mounted (e.g. cpu,cpuacct) share one directory.
                let mut by_root: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
                for ctrl in V1_CONTROLLERS {
                    if let Some(root) = mounts.get(*ctrl) {
                        by_root
                            .entry(root.clone())
                            .or_default()
                            .push(ctrl.to_string());
                    }
                }
                let mut dirs: Vec<CgroupDir> = by_root
                    .into_iter()
                    .map(|(root, controllers)| CgroupDir {
                        path: root.join(rel),
                        root,
                        controllers,
                    })
                    .collect();
                // Keep the freezer first: kill loops read and freeze through it.
                dirs.sort_by_key(|d| !d.controllers.iter().any(|c| c == "freezer"));
                if dirs.is_empty() {
                    return Err(CgroupError::Unavailable);
                }
                Ok(Cgroup {
                    version: 1,
                    rel: rel.to_string(),
                    dirs,
                    fs,
                })
            }
            CgroupMode::Unavailable => Err(CgroupError::Unavailable),
        }
    }

    /// Creates the task cgroup for `alloc_id`/`task` and writes the limits. Limit write failures
    /// are logged and ignored (best effort); directory creation failures are errors (the caller
    /// then degrades to process-group mode).
    pub fn create(
        mode: &CgroupMode,
        alloc_id: &str,
        task: &str,
        limits: &CgroupLimits,
        fs: Arc<dyn CgroupFs>,
    ) -> Result<Cgroup, CgroupError> {
        let rel = mode
            .task_cgroup_rel(alloc_id, task)
            .ok_or(CgroupError::Unavailable)?;
        let cg = Cgroup::open(mode, &rel, fs)?;
        if cg.version == 2 {
            cg.create_v2()?;
        } else {
            cg.create_v1()?;
        }
        cg.apply_limits(limits);
        Ok(cg)
    }

    fn mkdir(&self, path: &Path) -> Result<(), CgroupError> {
        self.fs
            .create_dir_all(path)
            .map_err(|source| CgroupError::Create {
                path: path.to_path_buf(),
                source,
            })
    }

    fn create_v2(&self) -> Result<(), CgroupError> {
        let dir = &self.dirs[0];
        let parent = dir
            .path
            .parent()
            .expect("a v2 task cgroup always has the nomad.slice parent")
            .to_path_buf();
        // Enable controllers top-down so the scope gets memory/cpu/pids files. Best effort:
        // a controller may be missing or already delegated elsewhere.
        self.enable_v2_controllers(&dir.root);
        self.mkdir(&parent)?;
        self.enable_v2_controllers(&parent);
        self.mkdir(&dir.path)
    }

    fn enable_v2_controllers(&self, cgroup: &Path) {
        let available = self
            .fs
            .read(&cgroup.join("cgroup.controllers"))
            .unwrap_or_default();
        let enabled = self
            .fs
            .read(&cgroup.join("cgroup.subtree_control"))
            .unwrap_or_default();
        let available: BTreeSet<&str> = available.split_whitespace().collect();
        let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
        for ctrl in V2_CONTROLLERS {
            if available.contains(ctrl) && !enabled.contains(ctrl) {
                let file = cgroup.join("cgroup.subtree_control");
                if let Err(error) = self.fs.write(&file, &format!("+{ctrl}")) {
                    tracing::debug!(path = %file.display(), controller = ctrl, %error, "could not enable cgroup controller");
                }
            }
        }
    }

    fn create_v1(&self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            let parent = dir
                .path
                .parent()
                .expect("a v1 task cgroup always has the nomad parent")
                .to_path_buf();
            self.mkdir(&parent)?;
            if dir.controllers.iter().any(|c| c == "cpuset") {
                // A v1 cpuset cgroup accepts no task until cpus and mems are set.
                self.inherit_cpuset(&dir.root, &parent);
            }
            self.mkdir(&dir.path)?;
            if dir.controllers.iter().any(|c| c == "cpuset") {
                self.inherit_cpuset(&parent, &dir.path);
            }
        }
        Ok(())
    }

    fn inherit_cpuset(&self, from: &Path, to: &Path) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = self.fs.read(&to.join(file)).unwrap_or_default();
            if !current.trim().is_empty() {
                continue;
            }
            match self.fs.read(&from.join(file)) {
                Ok(v) if !v.trim().is_empty() => {
                    if let Err(error) = self.fs.write(&to.join(file), v.trim()) {
                        tracing::warn!(path = %to.join(file).display(), %error, "could not initialise cpuset");
                    }
                }
                _ => {}
            }
        }
    }

    fn write_limit(&self, path: PathBuf, value: &str) {
        if let Err(error) = self.fs.write(&path, value) {
            tracing::warn!(path = %path.display(), value, %error, "could not write cgroup limit");
        }
    }

    fn apply_limits(&self, limits: &CgroupLimits) {
        for dir in &self.dirs {
            let has = |c: &str| self.version == 2 || dir.controllers.iter().any(|x| x == c);
            if has("memory") {
                if let Some(max) = limits.memory_max_bytes {
                    if self.version == 2 {
                        self.write_limit(dir.path.join("memory.max"), &max.to_string());
                    } else {
                        self.write_limit(dir.path.join("memory.limit_in_bytes"), &max.to_string());
                    }
                }
                if let Some(soft) = limits.memory_soft_bytes {
                    if self.version == 2 {
                        self.write_limit(dir.path.join("memory.low"), &soft.to_string());
                    } else {
                        self.write_limit(
                            dir.path.join("memory.soft_limit_in_bytes"),
                            &soft.to_string(),
                        );
                    }
                }
            }
            if has("cpu") {
                if let Some(shares) = limits.cpu_shares {
                    if self.version == 2 {
                        self.write_limit(
                            dir.path.join("cpu.weight"),
                            &shares_to_weight(shares).to_string(),
                        );
                    } else {
                        self.write_limit(dir.path.join("cpu.shares"), &shares.to_string());
                    }
                }
            }
            if has("cpuset") {
                if let Some(cpus) = &limits.cpuset_cpus {
                    self.write_limit(dir.path.join("cpuset.cpus"), cpus);
                }
            }
        }
    }

    /// The relative path (`nomad.slice/<alloc>.<task>.scope` or `nomad/<alloc>.<task>`), as
    /// stored in task handles and given back to [`Cgroup::open`].
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// 1 or 2.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Absolute directories of this cgroup (one per v1 mount, or one for v2).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// The `cgroup.procs` files a new process must be written into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|d| d.path.join("cgroup.procs"))
            .collect()
    }

    /// All pids in the cgroup (union over v1 controllers). A missing cgroup has no pids.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for dir in &self.dirs {
            let file = dir.path.join("cgroup.procs");
            match self.fs.read(&file) {
                Ok(text) => pids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(CgroupError::Read { path: file, source }),
            }
        }
        Ok(pids.into_iter().collect())
    }

    fn freezer_dir(&self) -> Option<&CgroupDir> {
        if self.version == 2 {
            let d = &self.dirs[0];
            return self.fs.exists(&d.path.join("cgroup.freeze")).then_some(d);
        }
        self.dirs
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == "freezer"))
    }

    fn set_frozen(&self, frozen: bool) {
        let Some(dir) = self.freezer_dir() else {
            return;
        };
        let (file, value) = match (self.version, frozen) {
            (2, true) => ("cgroup.freeze", "1"),
            (2, false) => ("cgroup.freeze", "0"),
            (_, true) => ("freezer.state", "FROZEN"),
            (_, false) => ("freezer.state", "THAWED"),
        };
        let path = dir.path.join(file);
        if let Err(error) = self.fs.write(&path, value) {
            tracing::debug!(path = %path.display(), value, %error, "could not change freezer state");
            return;
        }
        if frozen && self.version == 1 {
            // FREEZING -> FROZEN is asynchronous; wait a little so no task forks meanwhile.
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                match self.fs.read(&path) {
                    Ok(s) if s.trim() == "FROZEN" => break,
                    Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
        }
    }

    /// Kills every process in the cgroup and waits until it is empty: v2 `cgroup.kill` when
    /// present, otherwise freeze, SIGKILL each pid, thaw, repeated until no pid remains.
    pub fn kill_all(&self, timeout: Duration) -> Result<(), CgroupError> {
        let deadline = Instant::now() + timeout;
        let kill_file = self.dirs[0].path.join("cgroup.kill");
        let use_kill_file = self.version == 2 && self.fs.exists(&kill_file);
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::KillTimeout {
                    cgroup: self.rel.clone(),
                    pids,
                    timeout,
                });
            }
            if use_kill_file {
                self.fs
                    .write(&kill_file, "1")
                    .map_err(|source| CgroupError::Write {
                        path: kill_file.clone(),
                        source,
                    })?;
            } else {
                self.set_frozen(true);
                // Re-read while frozen: nothing can fork now.
                for pid in self.pids()? {
                    if let Err(error) = self.fs.kill(pid, libc::SIGKILL) {
                        if error.raw_os_error() != Some(libc::ESRCH) {
                            tracing::debug!(pid, %error, "kill failed");
                        }
                    }
                }
                self.set_frozen(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the kernel OOM-killed a process in this cgroup (v2 `memory.events` `oom_kill`,
    /// v1 `memory.oom_control` `oom_kill`). Best effort: false when unreadable.
    pub fn oom_killed(&self) -> bool {
        let file = if self.version == 2 {
            self.dirs[0].path.join("memory.events")
        } else {
            match self
                .dirs
                .iter()
                .find(|d| d.controllers.iter().any(|c| c == "memory"))
            {
                Some(d) => d.path.join("memory.oom_control"),
                None => return false,
            }
        };
        match self.fs.read(&file) {
            Ok(text) => parse_oom_kill_count(&text) > 0,
            Err(_) => false,
        }
    }

    /// Removes the cgroup directories (not the `nomad` parents). Missing directories are fine;
    /// `EBUSY` (processes just exiting) is retried for up to a second.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                match self.fs.remove_dir(&dir.path) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(source) => {
                        return Err(CgroupError::Remove {
                            path: dir.path.clone(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads the `oom_kill N` line of `memory.events` / `memory.oom_control`.
pub fn parse_oom_kill_count(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .next()
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod fake {
    //! A recording in-memory [`CgroupFs`].
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    pub struct FakeFs {
        pub files: Mutex<BTreeMap<PathBuf, String>>,
        pub dirs: Mutex<BTreeSet<PathBuf>>,
        pub log: Mutex<Vec<String>>,
        /// Paths whose writes fail with EACCES.
        pub fail_writes: Mutex<BTreeSet<PathBuf>>,
    }

    impl FakeFs {
        pub fn set(&self, path: impl Into<PathBuf>, v: &str) {
            self.files
                .lock()
                .unwrap()
                .insert(path.into(), v.to_string());
        }
        pub fn get(&self, path: impl AsRef<Path>) -> Option<String> {
            self.files.lock().unwrap().get(path.as_ref()).cloned()
        }
        pub fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    impl CgroupFs for FakeFs {
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("mkdir {}", path.display()));
            self.dirs.lock().unwrap().insert(path.to_path_buf());
            Ok(())
        }
        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("rmdir {}", path.display()));
            if self.dirs.lock().unwrap().remove(path) {
                Ok(())
            } else {
                Err(io::ErrorKind::NotFound.into())
            }
        }
        fn write(&self, path: &Path, data: &str) -> io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("write {} {}", path.display(), data));
            if self.fail_writes.lock().unwrap().contains(path) {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            if path.file_name().is_some_and(|f| f == "cgroup.kill") {
                // Emulate the kernel: everyone in the cgroup dies.
                let procs = path.with_file_name("cgroup.procs");
                self.files.lock().unwrap().insert(procs, String::new());
                return Ok(());
            }
            self.files
                .lock()
                .unwrap()
                .insert(path.to_path_buf(), data.to_string());
            Ok(())
        }
        fn read(&self, path: &Path) -> io::Result<String> {
            self.files
                .lock()
                .unwrap()
                .get(path)
                .cloned()
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }
        fn exists(&self, path: &Path) -> bool {
            self.files.lock().unwrap().contains_key(path)
                || self.dirs.lock().unwrap().contains(path)
        }
        fn kill(&self, pid: i32, sig: i32) -> io::Result<()> {
            self.log.lock().unwrap().push(format!("kill {pid} {sig}"));
            // Remove the pid from every procs file.
            let mut files = self.files.lock().unwrap();
            for (p, v) in files.iter_mut() {
                if p.file_name().is_some_and(|f| f == "cgroup.procs") {
                    *v = v
                        .split_whitespace()
                        .filter(|x| *x != pid.to_string())
                        .collect::<Vec<_>>()
                        .join("\n");
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeFs;
    use super::*;

    const HYBRID: &str = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    fn v1_mode() -> CgroupMode {
        CgroupMode::from_mounts(HYBRID)
    }

    fn v2_mode() -> CgroupMode {
        CgroupMode::V2 {
            root: PathBuf::from("/cg"),
        }
    }

    #[test]
    fn detects_v2() {
        let m = CgroupMode::from_mounts(
            "proc /proc proc rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n",
        );
        assert_eq!(
            m,
            CgroupMode::V2 {
                root: PathBuf::from("/sys/fs/cgroup")
            }
        );
    }

    #[test]
    fn detects_hybrid_as_v1() {
        let CgroupMode::V1 { mounts } = v1_mode() else {
            panic!("expected v1");
        };
        assert_eq!(mounts["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(mounts["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(!mounts.contains_key("cpuacct"));
        assert_eq!(mounts.len(), 5);
    }

    #[test]
    fn detects_nothing() {
        assert_eq!(
            CgroupMode::from_mounts("proc /proc proc rw 0 0\n"),
            CgroupMode::Unavailable
        );
    }

    #[test]
    fn task_paths() {
        assert_eq!(
            v2_mode().task_cgroup_rel("a1", "web").as_deref(),
            Some("nomad.slice/a1.web.scope")
        );
        assert_eq!(
            v1_mode().task_cgroup_rel("a1", "we/b").as_deref(),
            Some("nomad/a1.we_b")
        );
        assert_eq!(CgroupMode::Unavailable.task_cgroup_rel("a", "b"), None);
    }

    #[test]
    fn open_rejects_escaping_paths() {
        let fs: Arc<dyn CgroupFs> = Arc::new(FakeFs::default());
        for bad in ["", "/abs", "../x", "nomad/../../x", "./x"] {
            assert!(Cgroup::open(&v2_mode(), bad, fs.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_from_resources() {
        let l = CgroupLimits::from_resources(500, 256, 0, &[]);
        assert_eq!(l.memory_max_bytes, Some(256 << 20));
        assert_eq!(l.memory_soft_bytes, None);
        assert_eq!(l.cpu_shares, Some(500));
        assert_eq!(l.cpuset_cpus, None);
        let l = CgroupLimits::from_resources(0, 256, 512, &[0, 3]);
        assert_eq!(l.memory_max_bytes, Some(512 << 20));
        assert_eq!(l.memory_soft_bytes, Some(256 << 20));
        assert_eq!(l.cpu_shares, None);
        assert_eq!(l.cpuset_cpus.as_deref(), Some("0,3"));
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(shares_to_weight(1_000_000), 10000);
        // Samples from opencontainers/cgroups (facts 4.8).
        for (shares, weight) in [
            (100, 17),
            (250, 34),
            (500, 58),
            (1000, 99),
            (1024, 100),
            (2000, 170),
            (4000, 297),
        ] {
            assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
        }
    }

    #[test]
    fn v2_create_plan() {
        let fs = Arc::new(FakeFs::default());
        fs.set("/cg/cgroup.controllers", "cpuset cpu io memory pids");
        fs.set("/cg/cgroup.subtree_control", "memory");
        fs.set(
            "/cg/nomad.slice/cgroup.controllers",
            "cpuset cpu memory pids",
        );
        let limits = CgroupLimits::from_resources(1024, 100, 0, &[]);
        let cg = Cgroup::create(&v2_mode(), "a1", "web", &limits, fs.clone()).expect("create");
        assert_eq!(cg.rel(), "nomad.slice/a1.web.scope");
        assert_eq!(
            cg.procs_files(),
            vec![PathBuf::from("/cg/nomad.slice/a1.web.scope/cgroup.procs")]
        );
        assert_eq!(
            fs.log(),
            vec![
                "write /cg/cgroup.subtree_control +cpu",
                "write /cg/cgroup.subtree_control +cpuset",
                "write /cg/cgroup.subtree_control +pids",
                "mkdir /cg/nomad.slice",
                "write /cg/nomad.slice/cgroup.subtree_control +cpu",
                "write /cg/nomad.slice/cgroup.subtree_control +cpuset",
                "write /cg/nomad.slice/cgroup.subtree_control +memory",
                "write /cg/nomad.slice/cgroup.subtree_control +pids",
                "mkdir /cg/nomad.slice/a1.web.scope",
                "write /cg/nomad.slice/a1.web.scope/memory.max 104857600",
                "write /cg/nomad.slice/a1.web.scope/cpu.weight 100",
            ]
        );
    }

    #[test]
    fn v1_create_plan() {
        let fs = Arc::new(FakeFs::default());
        fs.set("/sys/fs/cgroup/cpuset/cpuset.cpus", "0-3\n");
        fs.set("/sys/fs/cgroup/cpuset/cpuset.mems", "0\n");
        let limits = CgroupLimits::from_resources(300, 64, 128, &[]);
        let cg = Cgroup::create(&v1_mode(), "a1", "web", &limits, fs.clone()).expect("create");
        assert_eq!(cg.rel(), "nomad/a1.web");
        let procs = cg.procs_files();
        assert_eq!(
            procs[0],
            PathBuf::from("/sys/fs/cgroup/freezer/nomad/a1.web/cgroup.procs")
        );
        assert_eq!(procs.len(), 5);
        assert_eq!(
            fs.get("/sys/fs/cgroup/cpuset/nomad/cpuset.cpus").as_deref(),
            Some("0-3")
        );
        assert_eq!(
            fs.get("/sys/fs/cgroup/cpuset/nomad/a1.web/cpuset.cpus")
                .as_deref(),
            Some("0-3")
        );
        assert_eq!(
            fs.get("/sys/fs/cgroup/cpuset/nomad/a1.web/cpuset.mems")
                .as_deref(),
            Some("0")
        );
        assert_eq!(
            fs.get("/sys/fs/cgroup/memory/nomad/a1.web/memory.limit_in_bytes")
                .as_deref(),
            Some("134217728")
        );
        assert_eq!(
            fs.get("/sys/fs/cgroup/memory/nomad/a1.web/memory.soft_limit_in_bytes")
                .as_deref(),
            Some("67108864")
        );
        assert_eq!(
            fs.get("/sys/fs/cgroup/cpu,cpuacct/nomad/a1.web/cpu.shares")
                .as_deref(),
            Some("300")
        );
    }

    #[test]
    fn limit_write_failure_is_not_fatal() {
        let fs = Arc::new(FakeFs::default());
        fs.fail_writes
            .lock()
            .unwrap()
            .insert(PathBuf::from("/cg/nomad.slice/a.t.scope/memory.max"));
        let limits = CgroupLimits::from_resources(0, 10, 0, &[]);
        assert!(Cgroup::create(&v2_mode(), "a", "t", &limits, fs).is_ok());
    }

    #[test]
    fn v2_kill_uses_cgroup_kill() {
        let fs = Arc::new(FakeFs::default());
        let cg = Cgroup::open(&v2_mode(), "nomad.slice/a.t.scope", fs.clone()).expect("open");
        fs.set("/cg/nomad.slice/a.t.scope/cgroup.procs", "10\n11\n");
        fs.set("/cg/nomad.slice/a.t.scope/cgroup.kill", "");
        cg.kill_all(Duration::from_secs(1)).expect("kill");
        assert_eq!(
            fs.log(),
            vec!["write /cg/nomad.slice/a.t.scope/cgroup.kill 1"]
        );
    }

    #[test]
    fn v2_kill_without_cgroup_kill_freezes() {
        let fs = Arc::new(FakeFs::default());
        let cg = Cgroup::open(&v2_mode(), "nomad.slice/a.t.scope", fs.clone()).expect("open");
        fs.set("/cg/nomad.slice/a.t.scope/cgroup.procs", "10\n11\n");
        fs.set("/cg/nomad.slice/a.t.scope/cgroup.freeze", "0");
        cg.kill_all(Duration::from_secs(1)).expect("kill");
        assert_eq!(
            fs.log(),
            vec![
                "write /cg/nomad.slice/a.t.scope/cgroup.freeze 1",
                "kill 10 9",
                "kill 11 9",
                "write /cg/nomad.slice/a.t.scope/cgroup.freeze 0",
            ]
        );
    }

    #[test]
    fn v1_kill_freezes_kills_thaws() {
        let fs = Arc::new(FakeFs::default());
        let cg = Cgroup::open(&v1_mode(), "nomad/a.t", fs.clone()).expect("open");
        fs.set("/sys/fs/cgroup/freezer/nomad/a.t/cgroup.procs", "7");
        fs.set("/sys/fs/cgroup/memory/nomad/a.t/cgroup.procs", "7\n8");
        fs.set("/sys/fs/cgroup/freezer/nomad/a.t/freezer.state", "THAWED");
        cg.kill_all(Duration::from_secs(1)).expect("kill");
        let log = fs.log();
        assert_eq!(
            log[0],
            "write /sys/fs/cgroup/freezer/nomad/a.t/freezer.state FROZEN"
        );
        assert_eq!(log[1], "kill 7 9");
        assert_eq!(log[2], "kill 8 9");
        assert_eq!(
            log[3],
            "write /sys/fs/cgroup/freezer/nomad/a.t/freezer.state THAWED"
        );
    }

    #[test]
    fn kill_times_out_when_pids_survive() {
        #[derive(Debug, Default)]
        struct Immortal(FakeFs);
        impl CgroupFs for Immortal {
            fn create_dir_all(&self, p: &Path) -> io::Result<()> {
                self.0.create_dir_all(p)
            }
            fn remove_dir(&self, p: &Path) -> io::Result<()> {
                self.0.remove_dir(p)
            }
            fn write(&self, p: &Path, d: &str) -> io::Result<()> {
                self.0.write(p, d)
            }
            fn read(&self, p: &Path) -> io::Result<String> {
                self.0.read(p)
            }
            fn exists(&self, p: &Path) -> bool {
                self.0.exists(p)
            }
            fn kill(&self, _: i32, _: i32) -> io::Result<()> {
                Ok(())
            }
        }
        let fs = Arc::new(Immortal::default());
        fs.0.set("/cg/nomad.slice/a.t.scope/cgroup.procs", "5");
        let cg = Cgroup::open(&v2_mode(), "nomad.slice/a.t.scope", fs).expect("open");
        let err = cg.kill_all(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, CgroupError::KillTimeout { ref pids, .. } if pids == &vec![5]));
    }

    #[test]
    fn oom_detection() {
        assert_eq!(
            parse_oom_kill_count("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n"),
            2
        );
        assert_eq!(
            parse_oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"),
            0
        );
        assert_eq!(parse_oom_kill_count(""), 0);
        let fs = Arc::new(FakeFs::default());
        fs.set(
            "/cg/nomad.slice/a.t.scope/memory.events",
            "oom 1\noom_kill 1\n",
        );
        let cg = Cgroup::open(&v2_mode(), "nomad.slice/a.t.scope", fs.clone()).expect("open");
        assert!(cg.oom_killed());
        let cg1 = Cgroup::open(&v1_mode(), "nomad/a.t", fs.clone()).expect("open");
        assert!(!cg1.oom_killed());
        fs.set(
            "/sys/fs/cgroup/memory/nomad/a.t/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        assert!(cg1.oom_killed());
    }

    #[test]
    fn destroy_removes_task_dirs_only() {
        let fs = Arc::new(FakeFs::default());
        let cg = Cgroup::create(&v1_mode(), "a", "t", &CgroupLimits::default(), fs.clone())
            .expect("create");
        fs.log.lock().unwrap().clear();
        cg.destroy().expect("destroy");
        let log = fs.log();
        assert_eq!(log.len(), 5);
        assert!(log
            .iter()
            .all(|l| l.starts_with("rmdir ") && l.ends_with("/nomad/a.t")));
        // Idempotent.
        cg.destroy().expect("destroy again");
    }
}
