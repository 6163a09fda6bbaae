//! Allocation and task directories (facts §2.1–2.3).
//!
//! `<A>` is created 0755; every dir Nomad makes with `allocMkdirAll` ends up 0777 (its
//! `dropDirPermissions` ORs 0777 in), `tmp/` dirs 1777, and when the agent runs as root each
//! of them is chowned to `nobody`. As root, `secrets/` (size from `resources { secrets }`,
//! default 1 MB) and `private/` (1 MB) are `noexec` tmpfs mounts (via
//! `nomad_executor::hostmount`), made once (a dir that already is a mount point is left alone,
//! so a restored task keeps its secrets) and unmounted when the alloc dir is destroyed.
//!
//! The alloc dir outlives its tasks: it is removed only by [`AllocDir::destroy`], which the
//! client calls when the servers garbage-collect the alloc.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Default size of the `secrets/` tmpfs in MB (`defaultSecretDirTmpfsSize`).
pub const DEFAULT_SECRETS_MB: u64 = 1;
/// Size of the `private/` tmpfs in MB.
pub const PRIVATE_MB: u64 = 1;

/// Whether the agent runs with effective uid 0 (`/proc/self` is owned by the euid).
pub fn agent_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// uid/gid of `nobody`, when it exists.
fn nobody() -> Option<(u32, u32)> {
    nomad_executor::lookup_user("nobody")
        .ok()
        .map(|u| (u.uid, u.gid))
}

/// How task dirs are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Privileges {
    /// chown target (`nobody`) when running as root.
    owner: Option<(u32, u32)>,
    /// Mount `secrets/` and `private/` as tmpfs.
    tmpfs: bool,
}

impl Privileges {
    fn detect() -> Privileges {
        if agent_is_root() {
            Privileges {
                owner: nobody(),
                tmpfs: true,
            }
        } else {
            Privileges {
                owner: None,
                tmpfs: false,
            }
        }
    }
}

/// Nomad's `allocMkdirAll` + `dropDirPermissions`: make, chmod, chown to nobody when root.
fn mkdir_mode(p: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    std::fs::create_dir_all(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
    }
    Ok(())
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
        let owner = Privileges::detect().owner;
        std::fs::create_dir_all(&self.root)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o755))?;
        let shared = self.shared_dir();
        mkdir_mode(&shared, 0o777, owner)?;
        for d in ["data", "logs"] {
            mkdir_mode(&shared.join(d), 0o777, owner)?;
        }
        mkdir_mode(&shared.join("tmp"), 0o1777, owner)
    }

    /// Creates `<T>` with `local/`, `secrets/`, `private/`, `tmp/`; as root `secrets/` is a
    /// `secrets_mb` MB tmpfs (0 = the 1 MB default) and `private/` a 1 MB tmpfs.
    pub fn build_task(&self, task: &str, secrets_mb: u64) -> io::Result<PathBuf> {
        self.build_task_as(task, secrets_mb, Privileges::detect())
    }

    fn build_task_as(&self, task: &str, secrets_mb: u64, p: Privileges) -> io::Result<PathBuf> {
        let t = self.task_dir(task);
        mkdir_mode(&t, 0o777, p.owner)?;
        mkdir_mode(&t.join("local"), 0o777, p.owner)?;
        mkdir_mode(&t.join("tmp"), 0o1777, p.owner)?;
        let secrets_mb = if secrets_mb == 0 {
            DEFAULT_SECRETS_MB
        } else {
            secrets_mb
        };
        for (d, size) in [("secrets", secrets_mb), ("private", PRIVATE_MB)] {
            let dir = t.join(d);
            std::fs::create_dir_all(&dir)?;
            if p.tmpfs && !nomad_executor::hostmount::is_mount_point(&dir) {
                let (uid, gid) = p.owner.unwrap_or((0, 0));
                nomad_executor::hostmount::mount_secrets_tmpfs(&dir, size, uid, gid).map_err(
                    |e| {
                        io::Error::new(
                            e.kind(),
                            format!("failed to mount tmpfs on {}: {e}", dir.display()),
                        )
                    },
                )?;
            }
            // (quirk, copied) Nomad leaves secrets/ and private/ 0777 as well.
            mkdir_mode(&dir, 0o777, p.owner)?;
        }
        Ok(t)
    }

    /// Unmounts the tasks' `secrets/`/`private/` tmpfs mounts and removes the whole alloc dir.
    pub fn destroy(&self) -> io::Result<()> {
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                if e.file_name() == "alloc" || !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                for d in ["secrets", "private"] {
                    let p = e.path().join(d);
                    if nomad_executor::hostmount::is_mount_point(&p) {
                        if let Err(err) = nomad_executor::hostmount::unmount_detach(&p) {
                            tracing::warn!(path = %p.display(), error = %err, "failed to unmount");
                        }
                    }
                }
            }
        }
        match std::fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: PathBuf) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn layout_and_modes() {
        let d = tempfile::tempdir().expect("tmp");
        let ad = AllocDir::new(d.path(), "a1");
        ad.build().expect("build");
        let unprivileged = Privileges {
            owner: None,
            tmpfs: false,
        };
        ad.build_task_as("web", 0, unprivileged).expect("task");
        assert_eq!(mode(ad.root.clone()), 0o755);
        assert_eq!(mode(ad.shared_dir()), 0o777);
        assert_eq!(mode(ad.logs_dir()), 0o777);
        assert_eq!(mode(ad.shared_dir().join("data")), 0o777);
        assert_eq!(mode(ad.shared_dir().join("tmp")), 0o1777);
        assert_eq!(mode(ad.task_dir("web")), 0o777);
        assert_eq!(mode(ad.task_dir("web").join("local")), 0o777);
        assert_eq!(mode(ad.task_dir("web").join("secrets")), 0o777);
        assert_eq!(mode(ad.task_dir("web").join("private")), 0o777);
        assert_eq!(mode(ad.task_dir("web").join("tmp")), 0o1777);
        // Idempotent (task restarts, restore).
        ad.build_task_as("web", 0, unprivileged).expect("again");
        ad.destroy().expect("destroy");
        assert!(!ad.root.exists());
        ad.destroy().expect("destroy twice");
    }

    #[test]
    fn root_mounts_tmpfs_and_chowns() {
        if !agent_is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let ad = AllocDir::new(d.path(), "a1");
        ad.build().expect("build");
        let t = ad.build_task("web", 2).expect("task");
        let secrets = t.join("secrets");
        assert!(nomad_executor::hostmount::is_mount_point(&secrets));
        assert!(nomad_executor::hostmount::is_mount_point(
            &t.join("private")
        ));
        assert!(!nomad_executor::hostmount::is_mount_point(&t.join("local")));
        let info = nomad_executor::procfs::read_mountinfo("self").expect("mountinfo");
        let canon = std::fs::canonicalize(&secrets).expect("canon");
        let m = info
            .iter()
            .rev()
            .find(|m| m.mount_point == canon)
            .expect("mount entry");
        assert_eq!(m.source, nomad_executor::hostmount::SECRETS_SOURCE);
        assert_eq!(mode(secrets.clone()), 0o777);
        if let Some((uid, _)) = nobody() {
            assert_eq!(std::fs::metadata(&secrets).expect("stat").uid(), uid);
            assert_eq!(std::fs::metadata(t.join("local")).expect("stat").uid(), uid);
            assert_eq!(std::fs::metadata(ad.logs_dir()).expect("stat").uid(), uid);
        }
        // A file in the tmpfs survives a rebuild (no second mount on top).
        std::fs::write(secrets.join("token"), "s3cr3t").expect("write");
        ad.build_task("web", 2).expect("rebuild");
        assert_eq!(
            std::fs::read_to_string(secrets.join("token")).expect("read"),
            "s3cr3t"
        );
        ad.destroy().expect("destroy");
        assert!(!ad.root.exists());
        assert!(!nomad_executor::hostmount::is_mount_point(&secrets));
    }
}
