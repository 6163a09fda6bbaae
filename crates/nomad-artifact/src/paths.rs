//! Path helpers: lexical normalization, sandbox checks, permissions.

use std::path::{Component, Path, PathBuf};

use crate::{ArtifactError, Ctx};

/// Removes `.` components and applies `..` lexically (never above the root).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A relative archive path made safe: only normal components. `None` when the path is absolute
/// or climbs out with `..` (even `a/../b` is refused: archives have no business doing that).
pub(crate) fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a symlink at `link_rel` (relative to the destination root) pointing at `target`
/// stays inside the root, judged lexically.
pub(crate) fn link_target_inside(link_rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = Vec::new();
    if let Some(parent) = link_rel.parent() {
        for comp in parent.components() {
            if let Component::Normal(c) = comp {
                depth.push(c);
            }
        }
    }
    for comp in target.components() {
        match comp {
            Component::Normal(c) => depth.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// A `filename` option: one normal path component.
pub(crate) fn single_component(name: &str) -> Option<String> {
    let path = Path::new(name);
    let mut comps = path.components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(c)), None) if !name.contains('/') => {
            Some(c.to_string_lossy().into_owned())
        }
        _ => None,
    }
}

/// Creates `dir` (and its parents) after checking that its deepest existing ancestor, with
/// symlinks resolved, is inside `root` (canonical). Returns the canonical directory.
/// `Err(None)` means the directory escapes `root`.
pub(crate) fn create_dir_inside(
    ctx: &Ctx,
    dir: &Path,
    root: &Path,
) -> Result<PathBuf, Option<ArtifactError>> {
    let mut existing = dir.to_path_buf();
    let mut missing: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match std::fs::symlink_metadata(&existing) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(name) = existing.file_name() else {
                    return Err(Some(ctx.io("create directory", dir, e)));
                };
                missing.push(name.to_os_string());
                if !existing.pop() {
                    return Err(Some(ctx.io("create directory", dir, e)));
                }
            }
            Err(e) => return Err(Some(ctx.io("create directory", &existing, e))),
        }
    }
    let mut real =
        std::fs::canonicalize(&existing).map_err(|e| Some(ctx.io("resolve", &existing, e)))?;
    if !real.starts_with(root) {
        return Err(None);
    }
    if !real.is_dir() {
        return Err(Some(ctx.io(
            "create directory",
            &real,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        )));
    }
    for name in missing.iter().rev() {
        real.push(name);
        match std::fs::create_dir(&real) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && real.is_dir() => {}
            Err(e) => return Err(Some(ctx.io("create directory", &real, e))),
        }
    }
    // Re-check: something may have raced a symlink into place.
    let real = std::fs::canonicalize(&real).map_err(|e| Some(ctx.io("resolve", &real, e)))?;
    if !real.starts_with(root) {
        return Err(None);
    }
    Ok(real)
}

/// Sets a file's permission bits.
pub(crate) fn set_mode(ctx: &Ctx, path: &Path, mode: u32) -> Result<(), ArtifactError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| ctx.io("set permissions on", path, e))
    }
    #[cfg(not(unix))]
    {
        let _ = (ctx, path, mode);
        Ok(())
    }
}

/// Hides a URL's password (`user:pass@host` → `user:xxxxx@host`) for error messages.
pub(crate) fn redact(source: &str) -> String {
    let Some(scheme_end) = source.find("://") else {
        return source.to_string();
    };
    let rest = &source[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return source.to_string();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return source.to_string();
    };
    format!(
        "{}{}:xxxxx{}",
        &source[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_safe_relative() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize(Path::new("/../x")), PathBuf::from("/x"));
        assert_eq!(
            safe_relative(Path::new("./a/b")),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(safe_relative(Path::new("../evil")), None);
        assert_eq!(safe_relative(Path::new("a/../../evil")), None);
        assert_eq!(safe_relative(Path::new("/etc/passwd")), None);
    }

    #[test]
    fn link_targets() {
        assert!(link_target_inside(Path::new("a/link"), Path::new("../b")));
        assert!(link_target_inside(Path::new("a/link"), Path::new("c/d")));
        assert!(!link_target_inside(
            Path::new("a/link"),
            Path::new("../../b")
        ));
        assert!(!link_target_inside(
            Path::new("link"),
            Path::new("/etc/passwd")
        ));
        assert!(!link_target_inside(Path::new("link"), Path::new("..")));
    }

    #[test]
    fn single_components() {
        assert_eq!(single_component("a.txt").as_deref(), Some("a.txt"));
        assert_eq!(single_component("../a"), None);
        assert_eq!(single_component("a/b"), None);
        assert_eq!(single_component(".."), None);
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("https://bob:secret@example.com/x?y=1"),
            "https://bob:xxxxx@example.com/x?y=1"
        );
        assert_eq!(redact("https://example.com/a@b"), "https://example.com/a@b");
        assert_eq!(redact("/local/file"), "/local/file");
    }
}
