//! Getting the bytes: HTTP(S) and local files, streamed into a temp file in the task dir.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use digest::DynDigest;
use tempfile::NamedTempFile;

use crate::checksum::Expected;
use crate::{ArtifactError, ArtifactRequest, Ctx, FetchResult};

/// Mode given to a single file downloaded over HTTP.
const HTTP_FILE_MODE: u32 = 0o644;

/// A verified download waiting to be placed or unpacked.
pub(crate) struct Downloaded {
    pub(crate) file: NamedTempFile,
    pub(crate) bytes: u64,
    /// Permission bits for the file if it is placed as is.
    pub(crate) mode: u32,
}

pub(crate) enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
    TooLarge,
}

/// Copies `reader` to `writer`, feeding `hasher`, failing once more than `max` bytes have been
/// read.
pub(crate) fn copy_limited(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    mut hasher: Option<&mut Box<dyn DynDigest>>,
    max: Option<u64>,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        total = total.saturating_add(n as u64);
        if max.is_some_and(|max| total > max) {
            return Err(CopyError::TooLarge);
        }
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&buf[..n]);
        }
        writer.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

fn temp_in(ctx: &Ctx, task_dir: &Path) -> Result<NamedTempFile, ArtifactError> {
    tempfile::Builder::new()
        .prefix(".nomad-artifact-")
        .tempfile_in(task_dir)
        .map_err(|e| ctx.io("create temporary file in", task_dir, e))
}

/// Streams `reader` into a new temp file, verifying size and checksum.
fn stream_to_temp(
    ctx: &Ctx,
    reader: &mut dyn Read,
    task_dir: &Path,
    max_size: u64,
    checksum: Option<&Expected>,
    read_error: &dyn Fn(std::io::Error) -> ArtifactError,
) -> Result<(NamedTempFile, u64), ArtifactError> {
    let mut tmp = temp_in(ctx, task_dir)?;
    let mut hasher = checksum.map(|c| c.algo.hasher());
    let bytes = {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        let limit = (max_size != 0).then_some(max_size);
        let n = copy_limited(reader, &mut w, hasher.as_mut(), limit).map_err(|e| match e {
            CopyError::Read(e) => read_error(e),
            CopyError::Write(e) => ctx.io("write", task_dir, e),
            CopyError::TooLarge => ArtifactError::TooLarge {
                artifact: ctx.artifact.clone(),
                max_size,
            },
        })?;
        w.flush().map_err(|e| ctx.io("write", task_dir, e))?;
        n
    };
    if let (Some(expected), Some(h)) = (checksum, hasher) {
        expected.verify(ctx, &h.finalize())?;
    }
    Ok((tmp, bytes))
}

/// GETs `url` (headers, redirects, timeout, TLS options from `req`) into a temp file.
pub(crate) fn http_to_temp(
    ctx: &Ctx,
    req: &ArtifactRequest,
    url: &str,
    task_dir: &Path,
    checksum: Option<&Expected>,
) -> Result<Downloaded, ArtifactError> {
    let download_err = |cause: String| ArtifactError::Download {
        artifact: ctx.artifact.clone(),
        cause,
    };
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(req.insecure)
        .build();
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(10)
        .user_agent("nomad-rs-artifact")
        .tls_config(tls);
    if !req.timeout.is_zero() {
        config = config.timeout_global(Some(req.timeout));
    }
    let agent = ureq::Agent::new_with_config(config.build());
    let mut request = agent.get(url);
    for (k, v) in &req.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let response = request.call().map_err(|e| download_err(e.to_string()))?;
    let status = response.status();
    if status.as_u16() >= 400 {
        return Err(ArtifactError::HttpStatus {
            artifact: ctx.artifact.clone(),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_string(),
        });
    }
    if status.as_u16() >= 300 {
        return Err(download_err(format!(
            "unexpected http status {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )));
    }
    let body = response.into_body();
    if let (Some(len), true) = (body.content_length(), req.max_size != 0) {
        if len > req.max_size {
            return Err(ArtifactError::TooLarge {
                artifact: ctx.artifact.clone(),
                max_size: req.max_size,
            });
        }
    }
    let mut reader = body.into_reader();
    let (file, bytes) = stream_to_temp(ctx, &mut reader, task_dir, req.max_size, checksum, &|e| {
        download_err(e.to_string())
    })?;
    Ok(Downloaded {
        file,
        bytes,
        mode: HTTP_FILE_MODE,
    })
}

/// Copies a local regular file into a temp file; it keeps its permission bits.
pub(crate) fn local_to_temp(
    ctx: &Ctx,
    path: &Path,
    task_dir: &Path,
    max_size: u64,
    checksum: Option<&Expected>,
) -> Result<Downloaded, ArtifactError> {
    let mut src = File::open(path).map_err(|e| ctx.io("open", path, e))?;
    let meta = src.metadata().map_err(|e| ctx.io("stat", path, e))?;
    if !meta.is_file() {
        return Err(ArtifactError::InvalidSource {
            artifact: ctx.artifact.clone(),
            reason: "source is not a regular file".into(),
        });
    }
    let (file, bytes) = stream_to_temp(ctx, &mut src, task_dir, max_size, checksum, &|e| {
        ctx.io("read", path, e)
    })?;
    Ok(Downloaded {
        file,
        bytes,
        mode: file_mode(&meta),
    })
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn file_mode(_meta: &std::fs::Metadata) -> u32 {
    HTTP_FILE_MODE
}

/// Copies a local directory tree into `dest` (regular files and directories; symlinks are
/// skipped so nothing outside the source tree is pulled in). `max_size` caps the total.
pub(crate) fn copy_dir(
    ctx: &Ctx,
    src: &Path,
    dest: &Path,
    max_size: u64,
) -> Result<FetchResult, ArtifactError> {
    let mut result = FetchResult::default();
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(src.to_path_buf(), dest.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        let entries = std::fs::read_dir(&from).map_err(|e| ctx.io("read directory", &from, e))?;
        let mut entries: Vec<_> = entries
            .collect::<Result<_, _>>()
            .map_err(|e| ctx.io("read directory", &from, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let kind = entry
                .file_type()
                .map_err(|e| ctx.io("stat", &entry.path(), e))?;
            let target = to.join(entry.file_name());
            if kind.is_dir() {
                match std::fs::create_dir(&target) {
                    Ok(()) => {}
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AlreadyExists
                            && target.is_dir()
                            && !target.is_symlink() => {}
                    Err(e) => return Err(ctx.io("create directory", &target, e)),
                }
                stack.push((entry.path(), target));
            } else if kind.is_file() {
                let path = entry.path();
                let mut input = File::open(&path).map_err(|e| ctx.io("open", &path, e))?;
                let meta = input.metadata().map_err(|e| ctx.io("stat", &path, e))?;
                remove_if_symlink(ctx, &target)?;
                let mut out = File::create(&target).map_err(|e| ctx.io("create", &target, e))?;
                let remaining = (max_size != 0).then(|| max_size.saturating_sub(result.bytes));
                let n =
                    copy_limited(&mut input, &mut out, None, remaining).map_err(|e| match e {
                        CopyError::Read(e) => ctx.io("read", &path, e),
                        CopyError::Write(e) => ctx.io("write", &target, e),
                        CopyError::TooLarge => ArtifactError::TooLarge {
                            artifact: ctx.artifact.clone(),
                            max_size,
                        },
                    })?;
                crate::paths::set_mode(ctx, &target, file_mode(&meta))?;
                result.bytes += n;
                result.files.push(target);
            }
        }
    }
    Ok(result)
}

/// Removes `path` if it is a symlink, so a write never follows one.
pub(crate) fn remove_if_symlink(ctx: &Ctx, path: &Path) -> Result<(), ArtifactError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::remove_file(path).map_err(|e| ctx.io("remove", path, e))
        }
        _ => Ok(()),
    }
}
