//! Nomad's `artifact` block fetcher: a small subset of go-getter, as a blocking library.
//!
//! [`fetch`] downloads one artifact into a task's sandbox directory:
//!
//! 1. The source is parsed: `http://` / `https://` URLs, local paths (absolute, `file://`, or
//!    relative to the task dir), and go-getter's forced-getter prefix (`http::https://…`,
//!    `file::/path`). The go-getter options `checksum`, `archive` and `filename` are taken out of
//!    the URL's query string and merged with [`ArtifactRequest::options`] (the URL wins, as
//!    go-getter reads the first value of a key and Nomad appends the block's options after the
//!    URL's own).
//! 2. The destination must lie inside [`ArtifactRequest::task_dir`], lexically and after
//!    resolving symlinks.
//! 3. The bytes are streamed into a temporary file inside the task dir, hashed on the way
//!    (when a checksum is asked for) and capped at [`ArtifactRequest::max_size`].
//! 4. In mode `any` or `dir`, an archive (detected by extension or forced with `archive = "…"`)
//!    is unpacked into the destination directory; anything else is placed as one file
//!    (`any`/`dir`: `destination/<basename>`; `file`: the destination is the file path).
//!    Mode `file` never unpacks (go-getter would decompress a single-file archive there).
//!
//! File modes: a file downloaded over HTTP is made `0644`; a local file keeps its permission
//! bits; archive entries keep their permission bits (`mode & 0o777`, so no setuid/setgid/sticky).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

mod checksum;
mod download;
mod paths;
mod source;
mod unpack;

#[cfg(test)]
mod tests;

pub use unpack::ArchiveKind;

/// One artifact to fetch (Nomad's `TaskArtifact`, with the destination already resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRequest {
    /// `GetterSource`, already interpolated.
    pub source: String,
    /// Absolute host path, already joined with the task dir (a relative one is joined here).
    pub destination: PathBuf,
    /// The sandbox root: nothing is written outside it.
    pub task_dir: PathBuf,
    /// `GetterMode`.
    pub mode: GetterMode,
    /// `GetterOptions`: `checksum = "sha256:<hex>"` (also md5, sha1, sha512, or a bare hex digest
    /// whose length names the type); `archive = "false"` disables unpacking, `archive = "zip"` (or
    /// `tar`, `tar.gz`, `tgz`, `tar.bz2`, `tbz2`, `gz`, `bz2`) forces a type; `filename` names the
    /// file in mode `any`.
    pub options: BTreeMap<String, String>,
    /// `GetterHeaders`, sent with HTTP requests.
    pub headers: BTreeMap<String, String>,
    /// `GetterInsecure`: skip TLS certificate verification.
    pub insecure: bool,
    /// Whole-download timeout for HTTP (zero: none).
    pub timeout: Duration,
    /// Largest download in bytes (zero: unlimited).
    pub max_size: u64,
}

/// go-getter's client mode (`GetterMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GetterMode {
    /// Unpack archives into the destination directory; other files go to `destination/<name>`.
    #[default]
    Any,
    /// The destination is the file's own path; nothing is unpacked.
    File,
    /// Like `Any`, for sources that are directories or archives.
    Dir,
}

impl GetterMode {
    /// Nomad's spelling: `any`, `file` or `dir`.
    pub fn as_str(self) -> &'static str {
        match self {
            GetterMode::Any => "any",
            GetterMode::File => "file",
            GetterMode::Dir => "dir",
        }
    }
}

impl fmt::Display for GetterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`GetterMode::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid artifact mode {0:?}: must be one of any, file or dir")]
pub struct InvalidGetterMode(pub String);

impl FromStr for GetterMode {
    type Err = InvalidGetterMode;

    /// `""` is `any`, as in Nomad's defaults.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "any" => Ok(GetterMode::Any),
            "file" => Ok(GetterMode::File),
            "dir" => Ok(GetterMode::Dir),
            other => Err(InvalidGetterMode(other.to_string())),
        }
    }
}

/// What [`fetch`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchResult {
    /// Absolute paths of the files (regular files, symlinks and hard links, not directories)
    /// written under the destination, in the order they were written.
    pub files: Vec<PathBuf>,
    /// Bytes read from the source (the archive's size, not the unpacked size).
    pub bytes: u64,
}

/// Extra knobs of [`fetch_with`]; [`fetch`] uses [`FetchOptions::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Largest total unpacked size of an archive in bytes, zero for unlimited (Nomad's client
    /// `artifact.decompression_size_limit`, default 100 GB).
    pub decompression_size_limit: u64,
    /// Most entries unpacked from an archive, zero for unlimited (Nomad's client
    /// `artifact.decompression_file_count_limit`, default 4096).
    pub decompression_file_count_limit: u64,
    /// Directories besides the task dir that local (`file`) sources may be read from, such as
    /// the shared `<alloc>/alloc` directory.
    pub extra_local_roots: Vec<PathBuf>,
    /// Let local sources be read from anywhere on the host (Nomad's
    /// `artifact.disable_filesystem_isolation`). Off by default: a job could otherwise copy any
    /// file the agent can read into its sandbox.
    pub allow_any_local_path: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            decompression_size_limit: 100_000_000_000,
            decompression_file_count_limit: 4096,
            extra_local_roots: Vec::new(),
            allow_any_local_path: false,
        }
    }
}

/// Why an artifact could not be fetched. Every message names the source as given.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The source string cannot be understood.
    #[error("invalid artifact source {artifact:?}: {reason}")]
    InvalidSource { artifact: String, reason: String },
    /// A go-getter getter this crate does not implement (git, hg, s3, gcs, …).
    #[error("failed to download {artifact:?}: unsupported getter {getter:?}")]
    UnsupportedGetter { artifact: String, getter: String },
    /// A bad `options` value (checksum, archive, filename).
    #[error("invalid artifact option {key} = {value:?} for {artifact:?}: {reason}")]
    InvalidOption {
        artifact: String,
        key: String,
        value: String,
        reason: String,
    },
    /// The destination (or the place a file would land) is outside the task dir.
    #[error("artifact destination path escapes the task directory: {}", destination.display())]
    DestinationEscapes { destination: PathBuf },
    /// A local source outside the directories it may be read from.
    #[error("failed to download {artifact:?}: local path {} is outside the task directory", path.display())]
    LocalPathNotAllowed { artifact: String, path: PathBuf },
    /// A transport failure (connect, TLS, timeout, too many redirects, read error, …).
    #[error("failed to download {artifact:?}: {cause}")]
    Download { artifact: String, cause: String },
    /// The server answered with a status of 400 or more.
    #[error("failed to download {artifact:?}: http status {status} {reason}")]
    HttpStatus {
        artifact: String,
        status: u16,
        reason: String,
    },
    /// The download is larger than `max_size`.
    #[error(
        "failed to download {artifact:?}: artifact exceeds the maximum size of {max_size} bytes"
    )]
    TooLarge { artifact: String, max_size: u64 },
    /// The downloaded bytes do not hash to the expected checksum.
    #[error("checksum mismatch for {artifact:?}: expected {kind} {expected}, got {actual}")]
    ChecksumMismatch {
        artifact: String,
        kind: &'static str,
        expected: String,
        actual: String,
    },
    /// An archive entry (or a link target) would land outside the destination.
    #[error("failed to unpack {artifact:?}: archive entry {entry:?} escapes the destination")]
    EntryEscapes { artifact: String, entry: String },
    /// The archive is corrupt, unsupported, or over the decompression limits.
    #[error("failed to unpack {artifact:?} as {kind}: {cause}")]
    Unpack {
        artifact: String,
        kind: ArchiveKind,
        cause: String,
    },
    /// A filesystem operation failed.
    #[error("failed to fetch {artifact:?}: {op} {}: {err}", path.display())]
    Io {
        artifact: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        err: std::io::Error,
    },
}

impl ArtifactError {
    /// Whether retrying (per the task's restart policy) may help: transport, status, size,
    /// checksum and filesystem failures are recoverable; a bad source, option or destination is
    /// not.
    pub fn is_recoverable(&self) -> bool {
        match self {
            ArtifactError::Download { .. }
            | ArtifactError::HttpStatus { .. }
            | ArtifactError::ChecksumMismatch { .. }
            | ArtifactError::Io { .. } => true,
            ArtifactError::InvalidSource { .. }
            | ArtifactError::UnsupportedGetter { .. }
            | ArtifactError::InvalidOption { .. }
            | ArtifactError::DestinationEscapes { .. }
            | ArtifactError::LocalPathNotAllowed { .. }
            | ArtifactError::TooLarge { .. }
            | ArtifactError::EntryEscapes { .. }
            | ArtifactError::Unpack { .. } => false,
        }
    }
}

/// Fetches one artifact with [`FetchOptions::default`]. Blocking: run it on a blocking thread.
pub fn fetch(req: &ArtifactRequest) -> Result<FetchResult, ArtifactError> {
    fetch_with(req, &FetchOptions::default())
}

/// Fetches one artifact. Blocking: run it on a blocking thread.
pub fn fetch_with(
    req: &ArtifactRequest,
    opts: &FetchOptions,
) -> Result<FetchResult, ArtifactError> {
    let ctx = Ctx {
        artifact: paths::redact(&req.source),
    };
    let parsed = source::parse(&ctx, &req.source, &req.options)?;

    let task_dir = ctx.canonicalize(&req.task_dir, "resolve task directory")?;
    let destination = if req.destination.is_absolute() {
        req.destination.clone()
    } else {
        req.task_dir.join(&req.destination)
    };
    // The lexical check first, so that nothing is created outside before the real check.
    let lexical_dest = paths::normalize(&destination);
    if !lexical_dest.starts_with(paths::normalize(&req.task_dir))
        && !lexical_dest.starts_with(&task_dir)
    {
        return Err(ArtifactError::DestinationEscapes { destination });
    }

    let checksum = match parsed.options.get("checksum") {
        Some(v) if !v.is_empty() => Some(checksum::Expected::parse(&ctx, v)?),
        _ => None,
    };
    let archive = unpack::choose(
        &ctx,
        parsed.options.get("archive"),
        &parsed.name,
        req.mode != GetterMode::File,
    )?;
    let unpacking = archive.is_some() && req.mode != GetterMode::File;

    // Where the bytes go: a directory to unpack into, or a file path.
    let (dest_dir, dest_file) = match req.mode {
        GetterMode::File => {
            let parent = lexical_dest
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| lexical_dest.clone());
            (parent, Some(lexical_dest.clone()))
        }
        GetterMode::Any | GetterMode::Dir => {
            let file = if unpacking {
                None
            } else {
                let name = match parsed.options.get("filename") {
                    Some(n) if !n.is_empty() => {
                        paths::single_component(n).ok_or_else(|| ArtifactError::InvalidOption {
                            artifact: ctx.artifact.clone(),
                            key: "filename".into(),
                            value: n.clone(),
                            reason: "must be a plain file name".into(),
                        })?
                    }
                    _ if !parsed.name.is_empty() => parsed.name.clone(),
                    _ => {
                        return Err(ArtifactError::InvalidSource {
                            artifact: ctx.artifact.clone(),
                            reason: "cannot tell a file name from the source; set the filename \
                                     option or use mode file"
                                .into(),
                        })
                    }
                };
                Some(lexical_dest.join(name))
            };
            (lexical_dest.clone(), file)
        }
    };
    let dest_dir = paths::create_dir_inside(&ctx, &dest_dir, &task_dir).map_err(|e| {
        e.unwrap_or(ArtifactError::DestinationEscapes {
            destination: destination.clone(),
        })
    })?;
    let plan = Plan {
        name: parsed.name.clone(),
        archive,
        unpacking,
        dest_dir: dest_dir.clone(),
        dest_file,
    };

    match &parsed.source {
        source::Source::File(path) => {
            let path = if path.is_absolute() {
                path.clone()
            } else {
                req.task_dir.join(path)
            };
            let path = ctx.canonicalize(&path, "read local source")?;
            if !opts.allow_any_local_path
                && !path.starts_with(&task_dir)
                && !opts.extra_local_roots.iter().any(|root| {
                    std::fs::canonicalize(root).is_ok_and(|root| path.starts_with(root))
                })
            {
                return Err(ArtifactError::LocalPathNotAllowed {
                    artifact: ctx.artifact.clone(),
                    path,
                });
            }
            if path.is_dir() {
                if req.mode == GetterMode::File {
                    return Err(ArtifactError::InvalidSource {
                        artifact: ctx.artifact.clone(),
                        reason: "source is a directory but mode is file".into(),
                    });
                }
                if checksum.is_some() {
                    return Err(ArtifactError::InvalidOption {
                        artifact: ctx.artifact.clone(),
                        key: "checksum".into(),
                        value: parsed.options.get("checksum").cloned().unwrap_or_default(),
                        reason: "a directory source cannot be checksummed".into(),
                    });
                }
                return download::copy_dir(&ctx, &path, &dest_dir, req.max_size);
            }
            let tmp =
                download::local_to_temp(&ctx, &path, &task_dir, req.max_size, checksum.as_ref())?;
            finish(&ctx, tmp, &plan, opts)
        }
        source::Source::Http(url) => {
            let tmp = download::http_to_temp(&ctx, req, url, &task_dir, checksum.as_ref())?;
            finish(&ctx, tmp, &plan, opts)
        }
    }
}

/// Unpacks or places a downloaded temp file.
fn finish(
    ctx: &Ctx,
    tmp: download::Downloaded,
    plan: &Plan,
    opts: &FetchOptions,
) -> Result<FetchResult, ArtifactError> {
    let bytes = tmp.bytes;
    let dest_dir = &plan.dest_dir;
    if let (true, Some(kind)) = (plan.unpacking, plan.archive) {
        let files = unpack::unpack(ctx, kind, tmp.file.path(), dest_dir, &plan.name, opts)?;
        return Ok(FetchResult { files, bytes });
    }
    let Some(target) = &plan.dest_file else {
        // Unreachable: a file target is chosen whenever nothing is unpacked.
        return Err(ArtifactError::InvalidSource {
            artifact: ctx.artifact.clone(),
            reason: "no destination file".into(),
        });
    };
    let target = dest_dir.join(target.file_name().unwrap_or(target.as_os_str()));
    if target.is_dir() && !target.is_symlink() {
        return Err(ArtifactError::Io {
            artifact: ctx.artifact.clone(),
            op: "write",
            path: target,
            err: std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "destination is a directory",
            ),
        });
    }
    paths::set_mode(ctx, tmp.file.path(), tmp.mode)?;
    tmp.file.persist(&target).map_err(|e| ArtifactError::Io {
        artifact: ctx.artifact.clone(),
        op: "write",
        path: target.clone(),
        err: e.error,
    })?;
    Ok(FetchResult {
        files: vec![target],
        bytes,
    })
}

/// Where a fetched artifact goes.
struct Plan {
    /// The source's file name.
    name: String,
    archive: Option<ArchiveKind>,
    /// Unpack (an archive, in mode any or dir) rather than place one file.
    unpacking: bool,
    /// Canonical directory to unpack into, or holding the file.
    dest_dir: PathBuf,
    /// The file path, when placing one file (only its file name is used, under `dest_dir`).
    dest_file: Option<PathBuf>,
}

/// Per-fetch context: the (redacted) source for error messages.
pub(crate) struct Ctx {
    pub(crate) artifact: String,
}

impl Ctx {
    pub(crate) fn io(&self, op: &'static str, path: &Path, err: std::io::Error) -> ArtifactError {
        ArtifactError::Io {
            artifact: self.artifact.clone(),
            op,
            path: path.to_path_buf(),
            err,
        }
    }

    pub(crate) fn canonicalize(
        &self,
        path: &Path,
        op: &'static str,
    ) -> Result<PathBuf, ArtifactError> {
        std::fs::canonicalize(path).map_err(|e| self.io(op, path, e))
    }
}
