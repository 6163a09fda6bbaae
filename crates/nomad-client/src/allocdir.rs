//! Allocation and task directories (facts §2.1–2.2).
//!
//! `<A>` is created 0755; every dir Nomad makes with `allocMkdirAll` ends up 0777 (its
//! `dropDirPermissions` ORs 0777 in), `tmp/` dirs 1777. No tmpfs for `secrets/` (needs root and
//! mount(2), which this crate cannot call) and no chown to `nobody`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn mkdir_mode(p: &Path, mode: u32) -> io::Result<()> {
    std::fs::create_dir_all(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// Paths of an alloc dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocDir {
    /// `<alloc_dir>/<alloc_id>`.
    pub root: PathBuf,
}

impl AllocDir {
    /// The alloc dir of `alloc_id` under the client's alloc root.
    pub fn new(alloc_root: &Path, alloc_id: &str) -> AllocDir {
        AllocDir {
            root: alloc_root.join(alloc_id),
        }
    }

    /// `<A>/alloc`.
    pub fn shared_dir(&self) -> PathBuf {
        self.root.join("alloc")
    }

    /// `<A>/alloc/logs`.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("alloc").join("logs")
    }

    /// `<A>/<task>`.
    pub fn task_dir(&self, task: &str) -> PathBuf {
        self.root.join(task)
    }

    /// Creates `<A>` and the shared `alloc/{data,logs,tmp}`.
    pub fn build(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o755))?;
        let shared = self.shared_dir();
        mkdir_mode(&shared, 0o777)?;
        for d in ["data", "logs"] {
            mkdir_mode(&shared.join(d), 0o777)?;
        }
        mkdir_mode(&shared.join("tmp"), 0o1777)
    }

    /// Creates `<T>` with `local/`, `secrets/`, `private/`, `tmp/`.
    pub fn build_task(&self, task: &str) -> io::Result<PathBuf> {
        let t = self.task_dir(task);
        mkdir_mode(&t, 0o777)?;
        for d in ["local", "secrets", "private"] {
            mkdir_mode(&t.join(d), 0o777)?;
        }
        mkdir_mode(&t.join("tmp"), 0o1777)?;
        Ok(t)
    }

    /// Removes the whole alloc dir.
    pub fn destroy(&self) -> io::Result<()> {
        match std::fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_modes() {
        let d = tempfile::tempdir().expect("tmp");
        let ad = AllocDir::new(d.path(), "a1");
        ad.build().expect("build");
        ad.build_task("web").expect("task");
        let mode = |p: PathBuf| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(ad.root.clone()), 0o755);
        assert_eq!(mode(ad.shared_dir()), 0o777);
        assert_eq!(mode(ad.logs_dir()), 0o777);
        assert_eq!(mode(ad.shared_dir().join("data")), 0o777);
        assert_eq!(mode(ad.shared_dir().join("tmp")), 0o1777);
        assert_eq!(mode(ad.task_dir("web").join("local")), 0o777);
        assert_eq!(mode(ad.task_dir("web").join("secrets")), 0o777);
        assert_eq!(mode(ad.task_dir("web").join("tmp")), 0o1777);
        ad.destroy().expect("destroy");
        assert!(!ad.root.exists());
    }
}
