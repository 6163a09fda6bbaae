//! Host-side mounts the exec driver manages outside the task's namespace: the `secrets/`
//! tmpfs (Nomad mounts it on the host so the client can write secrets the task reads), and
//! its teardown.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::procfs::{read_mountinfo, MountInfo};

/// Source name given to the tmpfs mounts this module creates (shows in mountinfo).
pub const SECRETS_SOURCE: &str = "nomad-secrets";

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Whether `path` is a mount point in the agent's mount namespace.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(path) else {
        return false;
    };
    read_mountinfo("self")
        .map(|m| m.iter().any(|e| e.mount_point == canon))
        .unwrap_or(false)
}

/// Mounts a `noexec,nosuid,nodev` tmpfs of `size_mb` MiB on `path`, owned by `uid:gid` with
/// mode 0700. Existing entries of the directory are copied into it first so nothing the client
/// put there is hidden.
pub fn mount_secrets_tmpfs(path: &Path, size_mb: u64, uid: u32, gid: u32) -> io::Result<()> {
    let stage = stash(path)?;
    let target = cpath(path)?;
    let source = CString::new(SECRETS_SOURCE).expect("literal has no NUL");
    let fstype = c"tmpfs";
    let mut result = Ok(());
    for data in [
        format!("size={size_mb}m,mode=0700,uid={uid},gid={gid},noswap"),
        format!("size={size_mb}m,mode=0700,uid={uid},gid={gid}"),
    ] {
        let data = CString::new(data).expect("formatted data has no NUL");
        // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
        let ret = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        if ret == 0 {
            result = Ok(());
            break;
        }
        // Kernels before 6.4 reject `noswap`; retry without it.
        result = Err(io::Error::last_os_error());
    }
    if let Some(stage) = stage {
        if result.is_ok() {
            copy_tree(&stage, path)?;
        }
        let _ = std::fs::remove_dir_all(&stage);
    }
    result
}

/// Moves a non-empty directory's content aside (to `<dir>.stage`) so it can be copied into
/// the tmpfs; `None` when the directory is empty.
fn stash(path: &Path) -> io::Result<Option<PathBuf>> {
    if std::fs::read_dir(path)?.next().is_none() {
        return Ok(None);
    }
    let mut stage = path.as_os_str().to_owned();
    stage.push(".stage");
    let stage = PathBuf::from(stage);
    let _ = std::fs::remove_dir_all(&stage);
    copy_tree(path, &stage)?;
    Ok(Some(stage))
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let dst = to.join(entry.file_name());
        if ft.is_dir() {
            copy_tree(&entry.path(), &dst)?;
        } else if ft.is_file() {
            std::fs::copy(entry.path(), &dst)?;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(entry.path())?;
            let _ = std::os::unix::fs::symlink(t, &dst);
        }
    }
    Ok(())
}

/// Lazily unmounts `path`; "not mounted" and "missing" count as success.
pub fn unmount_detach(path: &Path) -> io::Result<()> {
    let target = cpath(path)?;
    // SAFETY: valid NUL-terminated path; plain syscall.
    let ret = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if ret == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
        _ => Err(e),
    }
}

/// For a running isolated task, the host mount point of the mount the task sees at
/// `task_path` (matched by device and source in the host's mountinfo); used after an agent
/// restart to find the task's host-side secrets tmpfs.
pub fn host_mount_of(pid: u32, task_path: &Path, source: &str) -> Option<PathBuf> {
    let inside = read_mountinfo(&pid.to_string()).ok()?;
    let m: &MountInfo = inside
        .iter()
        .rev()
        .find(|m| m.mount_point == task_path && m.source == source)?;
    let host = read_mountinfo("self").ok()?;
    host.iter()
        .rev()
        .find(|h| h.dev == m.dev && h.source == source && h.root == m.root)
        .map(|h| h.mount_point.clone())
}

/// Creates a FIFO at `path` with `mode` (the task's stdout/stderr pipe to the log collector).
/// An existing FIFO is kept; anything else at the path is an error.
pub fn make_fifo(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_fifo() {
            return Ok(());
        }
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a FIFO", path.display()),
        ));
    }
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(mode))
        .map_err(io::Error::from)
}

#[cfg(test)]
mod fifo_tests {
    use super::*;

    #[test]
    fn makes_a_fifo_and_keeps_an_existing_one() {
        use std::os::unix::fs::FileTypeExt;
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("f");
        make_fifo(&p, 0o600).expect("mkfifo");
        assert!(std::fs::symlink_metadata(&p)
            .expect("stat")
            .file_type()
            .is_fifo());
        make_fifo(&p, 0o600).expect("existing fifo is fine");
        let file = d.path().join("regular");
        std::fs::write(&file, "x").expect("write");
        assert!(make_fifo(&file, 0o600).is_err());
    }
}
