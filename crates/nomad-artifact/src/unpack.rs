//! Unpacking archives into the destination, refusing anything that would land outside it.
//!
//! Tar archives are read twice: a first pass checks every entry (paths, link targets, size and
//! count limits) so a hostile archive writes nothing; the second pass writes. Zip archives are
//! checked from their central directory the same way.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::download::{copy_limited, remove_if_symlink, CopyError};
use crate::paths::{create_dir_inside, link_target_inside, safe_relative, set_mode};
use crate::{ArtifactError, Ctx, FetchOptions};

/// An archive format this crate unpacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    TarBz2,
    Zip,
    /// A single gzip-compressed file.
    Gz,
    /// A single bzip2-compressed file.
    Bz2,
}

impl ArchiveKind {
    /// go-getter's name, as accepted by the `archive` option.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::Tar => "tar",
            ArchiveKind::TarGz => "tar.gz",
            ArchiveKind::TarBz2 => "tar.bz2",
            ArchiveKind::Zip => "zip",
            ArchiveKind::Gz => "gz",
            ArchiveKind::Bz2 => "bz2",
        }
    }

    /// The kind for an `archive` option value or a file extension (without the dot).
    pub fn from_name(name: &str) -> Option<ArchiveKind> {
        Some(match name.to_ascii_lowercase().as_str() {
            "tar" => ArchiveKind::Tar,
            "tar.gz" | "tgz" => ArchiveKind::TarGz,
            "tar.bz2" | "tbz2" | "tbz" => ArchiveKind::TarBz2,
            "zip" => ArchiveKind::Zip,
            "gz" => ArchiveKind::Gz,
            "bz2" => ArchiveKind::Bz2,
            _ => return None,
        })
    }

    /// Detects the kind from a file name's extension.
    pub fn detect(file_name: &str) -> Option<ArchiveKind> {
        let lower = file_name.to_ascii_lowercase();
        // Longest suffixes first: `.tar.gz` before `.gz`.
        for ext in [
            "tar.gz", "tar.bz2", "tgz", "tbz2", "tbz", "tar", "zip", "gz", "bz2",
        ] {
            if lower.len() > ext.len() + 1
                && lower.ends_with(ext)
                && lower[..lower.len() - ext.len()].ends_with('.')
            {
                return ArchiveKind::from_name(ext);
            }
        }
        None
    }
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Extensions go-getter would decompress that this crate cannot.
const UNSUPPORTED: [&str; 6] = ["tar.xz", "txz", "xz", "tar.zst", "tzst", "zst"];

/// The archive kind to unpack as: the `archive` option (`"false"` disables), else the
/// extension. `unpacking` says whether the mode would unpack at all (an unsupported archive is
/// an error only then).
pub(crate) fn choose(
    ctx: &Ctx,
    option: Option<&String>,
    name: &str,
    unpacking: bool,
) -> Result<Option<ArchiveKind>, ArtifactError> {
    match option.map(|s| s.trim()) {
        Some("false") => Ok(None),
        Some(v) if !v.is_empty() => match ArchiveKind::from_name(v) {
            Some(kind) => Ok(Some(kind)),
            None => Err(ArtifactError::InvalidOption {
                artifact: ctx.artifact.clone(),
                key: "archive".into(),
                value: v.to_string(),
                reason: "unsupported archive type (want tar, tar.gz, tgz, tar.bz2, zip, gz, bz2 or false)".into(),
            }),
        },
        _ => {
            let kind = ArchiveKind::detect(name);
            if kind.is_none() && unpacking {
                let lower = name.to_ascii_lowercase();
                if let Some(ext) = UNSUPPORTED.iter().find(|ext| lower.ends_with(&format!(".{ext}"))) {
                    return Err(ArtifactError::InvalidOption {
                        artifact: ctx.artifact.clone(),
                        key: "archive".into(),
                        value: (*ext).to_string(),
                        reason: "unsupported archive type; set archive = \"false\" to download it as is".into(),
                    });
                }
            }
            Ok(kind)
        }
    }
}

/// Unpacks `archive` (a file of `kind`) into `dest` (canonical, existing, inside the sandbox).
/// `name` is the source's file name (single-file decompression strips its extension).
pub(crate) fn unpack(
    ctx: &Ctx,
    kind: ArchiveKind,
    archive: &Path,
    dest: &Path,
    name: &str,
    opts: &FetchOptions,
) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut u = Unpacker {
        ctx,
        kind,
        dest,
        opts,
        files: Vec::new(),
        dirs: Vec::new(),
    };
    match kind {
        ArchiveKind::Tar | ArchiveKind::TarGz | ArchiveKind::TarBz2 => {
            u.check_tar(archive)?;
            u.write_tar(archive)?;
        }
        ArchiveKind::Zip => u.zip(archive)?,
        ArchiveKind::Gz | ArchiveKind::Bz2 => u.single(archive, name)?,
    }
    // Directory modes last (deepest first), so a read-only directory does not block its files.
    for (dir, mode) in u.dirs.iter().rev() {
        set_mode(ctx, dir, *mode)?;
    }
    Ok(u.files)
}

struct Unpacker<'a> {
    ctx: &'a Ctx,
    kind: ArchiveKind,
    dest: &'a Path,
    opts: &'a FetchOptions,
    files: Vec<PathBuf>,
    dirs: Vec<(PathBuf, u32)>,
}

/// Running totals checked against the decompression limits.
#[derive(Default)]
struct Budget {
    bytes: u64,
    count: u64,
}

impl<'a> Unpacker<'a> {
    fn fail(&self, cause: impl fmt::Display) -> ArtifactError {
        ArtifactError::Unpack {
            artifact: self.ctx.artifact.clone(),
            kind: self.kind,
            cause: cause.to_string(),
        }
    }

    fn escapes(&self, entry: impl fmt::Display) -> ArtifactError {
        ArtifactError::EntryEscapes {
            artifact: self.ctx.artifact.clone(),
            entry: entry.to_string(),
        }
    }

    fn charge(&self, budget: &mut Budget, bytes: u64) -> Result<(), ArtifactError> {
        budget.count += 1;
        budget.bytes = budget.bytes.saturating_add(bytes);
        let limit = self.opts.decompression_file_count_limit;
        if limit != 0 && budget.count > limit {
            return Err(self.fail(format!("archive has more than {limit} entries")));
        }
        let limit = self.opts.decompression_size_limit;
        if limit != 0 && budget.bytes > limit {
            return Err(self.fail(format!("unpacked size exceeds the limit of {limit} bytes")));
        }
        Ok(())
    }

    /// The directory `rel`'s parent resolves to, created and checked inside `dest`.
    fn parent_dir(&self, rel: &Path) -> Result<PathBuf, ArtifactError> {
        let parent = self.dest.join(rel.parent().unwrap_or(Path::new("")));
        create_dir_inside(self.ctx, &parent, self.dest)
            .map_err(|e| e.unwrap_or_else(|| self.escapes(rel.display())))
    }

    /// Clears `target` for a new file or link: symlinks and files go, directories stay (error).
    fn clear(&self, target: &Path) -> Result<(), ArtifactError> {
        match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => Err(self.ctx.io(
                "write",
                target,
                std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "a directory is in the way",
                ),
            )),
            Ok(_) => std::fs::remove_file(target).map_err(|e| self.ctx.io("remove", target, e)),
            Err(_) => Ok(()),
        }
    }

    fn add_dir(&mut self, rel: &Path, mode: u32) -> Result<(), ArtifactError> {
        let dir = create_dir_inside(self.ctx, &self.dest.join(rel), self.dest)
            .map_err(|e| e.unwrap_or_else(|| self.escapes(rel.display())))?;
        self.dirs.push((dir, mode & 0o777));
        Ok(())
    }

    fn add_symlink(&mut self, rel: &Path, target: &Path) -> Result<(), ArtifactError> {
        if rel.as_os_str().is_empty() || !link_target_inside(rel, target) {
            return Err(self.escapes(format!("{} -> {}", rel.display(), target.display())));
        }
        let parent = self.parent_dir(rel)?;
        let Some(file_name) = rel.file_name() else {
            return Err(self.escapes(rel.display()));
        };
        let path = parent.join(file_name);
        self.clear(&path)?;
        make_symlink(target, &path).map_err(|e| self.ctx.io("create symlink", &path, e))?;
        // The lexical check cannot see through other links; the real one can.
        if let Ok(real) = std::fs::canonicalize(&path) {
            if !real.starts_with(self.dest) {
                let _ = std::fs::remove_file(&path);
                return Err(self.escapes(format!("{} -> {}", rel.display(), target.display())));
            }
        }
        self.files.push(self.dest.join(rel));
        Ok(())
    }

    fn add_hard_link(&mut self, rel: &Path, target_rel: &Path) -> Result<(), ArtifactError> {
        let escapes = || self.escapes(format!("{} => {}", rel.display(), target_rel.display()));
        let Some(target_rel) = safe_relative(target_rel) else {
            return Err(escapes());
        };
        let src = std::fs::canonicalize(self.dest.join(&target_rel)).map_err(|_| escapes())?;
        if !src.starts_with(self.dest) || !src.is_file() {
            return Err(escapes());
        }
        let parent = self.parent_dir(rel)?;
        let Some(file_name) = rel.file_name() else {
            return Err(escapes());
        };
        let path = parent.join(file_name);
        if path == src {
            return Ok(());
        }
        self.clear(&path)?;
        std::fs::hard_link(&src, &path).map_err(|e| self.ctx.io("create hard link", &path, e))?;
        self.files.push(self.dest.join(rel));
        Ok(())
    }

    // ---- tar ----

    fn tar_reader(&self, archive: &Path) -> Result<tar::Archive<Box<dyn Read>>, ArtifactError> {
        let file =
            BufReader::new(File::open(archive).map_err(|e| self.ctx.io("open", archive, e))?);
        let reader: Box<dyn Read> = match self.kind {
            ArchiveKind::TarGz => Box::new(flate2::read::MultiGzDecoder::new(file)),
            ArchiveKind::TarBz2 => {
                bz2_reader(file).ok_or_else(|| self.fail("bzip2 support is not built in"))?
            }
            _ => Box::new(file),
        };
        let mut ar = tar::Archive::new(reader);
        // Permission bits are kept, masked to 0o777; owners and xattrs are not.
        ar.set_preserve_permissions(false);
        ar.set_preserve_ownerships(false);
        ar.set_unpack_xattrs(false);
        ar.set_overwrite(true);
        Ok(ar)
    }

    fn check_tar(&self, archive: &Path) -> Result<(), ArtifactError> {
        let mut ar = self.tar_reader(archive)?;
        let mut budget = Budget::default();
        for entry in ar.entries().map_err(|e| self.fail(e))? {
            let entry = entry.map_err(|e| self.fail(e))?;
            let raw = entry.path().map_err(|e| self.fail(e))?.into_owned();
            let Some(rel) = safe_relative(&raw) else {
                return Err(self.escapes(raw.display()));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    if rel.as_os_str().is_empty() {
                        return Err(self.fail(format!(
                            "file entry {:?} has no name",
                            raw.display().to_string()
                        )));
                    }
                    self.charge(&mut budget, entry.size())?;
                }
                tar::EntryType::Directory => self.charge(&mut budget, 0)?,
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(|e| self.fail(e))?
                        .ok_or_else(|| {
                            self.fail(format!(
                                "symlink {:?} has no target",
                                raw.display().to_string()
                            ))
                        })?;
                    if rel.as_os_str().is_empty() || !link_target_inside(&rel, &target) {
                        return Err(self.escapes(format!(
                            "{} -> {}",
                            raw.display(),
                            target.display()
                        )));
                    }
                    self.charge(&mut budget, 0)?;
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(|e| self.fail(e))?
                        .ok_or_else(|| {
                            self.fail(format!(
                                "hard link {:?} has no target",
                                raw.display().to_string()
                            ))
                        })?;
                    if rel.as_os_str().is_empty() || safe_relative(&target).is_none() {
                        return Err(self.escapes(format!(
                            "{} => {}",
                            raw.display(),
                            target.display()
                        )));
                    }
                    self.charge(&mut budget, 0)?;
                }
                // Devices, FIFOs and global headers are skipped.
                _ => {}
            }
        }
        Ok(())
    }

    fn write_tar(&mut self, archive: &Path) -> Result<(), ArtifactError> {
        let mut ar = self.tar_reader(archive)?;
        let entries = ar.entries().map_err(|e| self.fail(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.fail(e))?;
            let raw = entry.path().map_err(|e| self.fail(e))?.into_owned();
            let Some(rel) = safe_relative(&raw) else {
                return Err(self.escapes(raw.display()));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let parent = self.parent_dir(&rel)?;
                    if let Some(file_name) = rel.file_name() {
                        self.clear(&parent.join(file_name))?;
                    }
                    let written = entry.unpack_in(self.dest).map_err(|e| self.fail(e))?;
                    if !written {
                        return Err(self.escapes(raw.display()));
                    }
                    self.files.push(self.dest.join(&rel));
                }
                tar::EntryType::Directory => {
                    let mode = entry.header().mode().unwrap_or(0o755);
                    self.add_dir(&rel, mode)?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(|e| self.fail(e))?
                        .ok_or_else(|| self.fail("symlink has no target"))?
                        .into_owned();
                    self.add_symlink(&rel, &target)?;
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(|e| self.fail(e))?
                        .ok_or_else(|| self.fail("hard link has no target"))?
                        .into_owned();
                    self.add_hard_link(&rel, &target)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    // ---- zip ----

    fn zip(&mut self, archive: &Path) -> Result<(), ArtifactError> {
        let file =
            BufReader::new(File::open(archive).map_err(|e| self.ctx.io("open", archive, e))?);
        let mut zip = zip::ZipArchive::new(file).map_err(|e| self.fail(e))?;

        // Check everything first.
        let mut budget = Budget::default();
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| self.fail(e))?;
            let name = entry.name().map_err(|e| self.fail(e))?.into_owned();
            let Some(rel) = safe_relative(Path::new(&name)) else {
                return Err(self.escapes(name));
            };
            if entry.is_symlink() {
                let target = read_link_target(&mut entry).map_err(|e| self.fail(e))?;
                if rel.as_os_str().is_empty() || !link_target_inside(&rel, Path::new(&target)) {
                    return Err(self.escapes(format!("{name} -> {target}")));
                }
                self.charge(&mut budget, 0)?;
            } else if entry.is_dir() {
                self.charge(&mut budget, 0)?;
            } else {
                if rel.as_os_str().is_empty() {
                    return Err(self.fail(format!("file entry {name:?} has no name")));
                }
                self.charge(&mut budget, entry.size())?;
            }
        }

        let mut written: u64 = 0;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| self.fail(e))?;
            let name = entry.name().map_err(|e| self.fail(e))?.into_owned();
            let Some(rel) = safe_relative(Path::new(&name)) else {
                return Err(self.escapes(name));
            };
            let mode = entry.unix_mode().map(|m| m & 0o777);
            if entry.is_symlink() {
                let target = read_link_target(&mut entry).map_err(|e| self.fail(e))?;
                self.add_symlink(&rel, Path::new(&target))?;
            } else if entry.is_dir() {
                self.add_dir(&rel, mode.unwrap_or(0o755))?;
            } else {
                let parent = self.parent_dir(&rel)?;
                let Some(file_name) = rel.file_name() else {
                    return Err(self.escapes(name));
                };
                let path = parent.join(file_name);
                self.clear(&path)?;
                let mut out = File::create(&path).map_err(|e| self.ctx.io("create", &path, e))?;
                let limit = self.opts.decompression_size_limit;
                let remaining = (limit != 0).then(|| limit.saturating_sub(written));
                let n =
                    copy_limited(&mut entry, &mut out, None, remaining).map_err(|e| match e {
                        CopyError::Read(e) => self.fail(e),
                        CopyError::Write(e) => self.ctx.io("write", &path, e),
                        CopyError::TooLarge => {
                            self.fail(format!("unpacked size exceeds the limit of {limit} bytes"))
                        }
                    })?;
                written += n;
                drop(out);
                set_mode(self.ctx, &path, mode.unwrap_or(0o644))?;
                self.files.push(self.dest.join(&rel));
            }
        }
        Ok(())
    }

    // ---- single-file gzip / bzip2 ----

    fn single(&mut self, archive: &Path, name: &str) -> Result<(), ArtifactError> {
        let file =
            BufReader::new(File::open(archive).map_err(|e| self.ctx.io("open", archive, e))?);
        let mut reader: Box<dyn Read> = match self.kind {
            ArchiveKind::Bz2 => {
                bz2_reader(file).ok_or_else(|| self.fail("bzip2 support is not built in"))?
            }
            _ => Box::new(flate2::read::MultiGzDecoder::new(file)),
        };
        let ext = format!(".{}", self.kind.as_str());
        let out_name = match name.len().checked_sub(ext.len()) {
            Some(cut)
                if cut > 0
                    && name.is_char_boundary(cut)
                    && name[cut..].eq_ignore_ascii_case(&ext) =>
            {
                &name[..cut]
            }
            _ if !name.is_empty() => name,
            _ => "artifact",
        };
        let path = self.dest.join(out_name);
        remove_if_symlink(self.ctx, &path)?;
        let mut out = File::create(&path).map_err(|e| self.ctx.io("create", &path, e))?;
        let limit = self.opts.decompression_size_limit;
        copy_limited(&mut reader, &mut out, None, (limit != 0).then_some(limit)).map_err(|e| {
            match e {
                CopyError::Read(e) => self.fail(e),
                CopyError::Write(e) => self.ctx.io("write", &path, e),
                CopyError::TooLarge => {
                    self.fail(format!("unpacked size exceeds the limit of {limit} bytes"))
                }
            }
        })?;
        drop(out);
        set_mode(self.ctx, &path, 0o644)?;
        self.files.push(path);
        Ok(())
    }
}

/// A zip symlink's target is its (small) content.
fn read_link_target(entry: &mut dyn Read) -> std::io::Result<String> {
    let mut buf = Vec::new();
    entry.take(4096).read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "symlink target is not UTF-8",
        )
    })
}

#[cfg(feature = "bzip2")]
fn bz2_reader(file: BufReader<File>) -> Option<Box<dyn Read>> {
    Some(Box::new(bzip2::read::MultiBzDecoder::new(file)))
}

#[cfg(not(feature = "bzip2"))]
fn bz2_reader(_file: BufReader<File>) -> Option<Box<dyn Read>> {
    None
}

#[cfg(unix)]
fn make_symlink(target: &Path, path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, _path: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "symlinks are not supported here",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(ArchiveKind::detect("a.tar.gz"), Some(ArchiveKind::TarGz));
        assert_eq!(ArchiveKind::detect("A.TGZ"), Some(ArchiveKind::TarGz));
        assert_eq!(ArchiveKind::detect("a.tar"), Some(ArchiveKind::Tar));
        assert_eq!(ArchiveKind::detect("a.zip"), Some(ArchiveKind::Zip));
        assert_eq!(ArchiveKind::detect("a.txt.gz"), Some(ArchiveKind::Gz));
        assert_eq!(ArchiveKind::detect("a.tar.bz2"), Some(ArchiveKind::TarBz2));
        assert_eq!(ArchiveKind::detect("a.bz2"), Some(ArchiveKind::Bz2));
        assert_eq!(ArchiveKind::detect("a.txt"), None);
        assert_eq!(ArchiveKind::detect("zip"), None);
        assert_eq!(ArchiveKind::detect(".zip"), None);
        assert_eq!(ArchiveKind::detect("agz"), None);
    }

    #[test]
    fn choosing() {
        let ctx = Ctx {
            artifact: "s".into(),
        };
        assert_eq!(
            choose(&ctx, Some(&"false".into()), "a.zip", true).unwrap(),
            None
        );
        assert_eq!(
            choose(&ctx, Some(&"tgz".into()), "a", true).unwrap(),
            Some(ArchiveKind::TarGz)
        );
        assert_eq!(
            choose(&ctx, None, "a.zip", true).unwrap(),
            Some(ArchiveKind::Zip)
        );
        assert!(choose(&ctx, Some(&"rar".into()), "a", true).is_err());
        assert!(choose(&ctx, None, "a.tar.xz", true).is_err());
        assert_eq!(choose(&ctx, None, "a.tar.xz", false).unwrap(), None);
    }
}
