//! Client-side endpoints: `/v1/client/fs/*` (logs, ls, stat, cat, readat),
//! `/v1/client/allocation/<id>/<op>` and `/v1/client/stats`.
//!
//! Logs follow Nomad's framing: a concatenation of JSON frames `{"Offset","Data","File",
//! "FileEvent"}` (all omitempty) with `{}` heartbeats while following, or raw bytes with
//! `plain=true`. Log files are `<alloc_dir>/alloc/logs/<task>.<stdout|stderr>.<N>`.
//! `/v1/client/fs/stream` uses the same framing for one file, with `file deleted` /
//! `file truncated` events.
//!
//! Paths: every `?path=` is resolved inside the alloc dir (`..` and symlinks may not leave it:
//! `Path escapes the alloc directory`). Reads (`cat`, `readat`, `stream`) of anything under a
//! task's `secrets/` or `private/` are refused as Nomad refuses them (500 `Reading secret file
//! prohibited: <path>`); `ls` and `stat` show names and sizes only, as in Nomad.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nomad_client::ClientError;
use nomad_structs::Allocation;
use serde::{Deserialize, Serialize};
use serde_json::json as j;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::require_get;
use crate::error::ApiError;
use crate::query::{decode_optional_body, json, parse_go_bool, Meta};
use crate::Ctx;

/// Most bytes in one frame.
const FRAME_SIZE: usize = 64 * 1024;
/// How often a followed file is polled for growth or rotation.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Heartbeat period while idle.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// `/v1/client/fs/<op>/<alloc_id>`.
pub(crate) async fn fs_request(ctx: Ctx, tail: &str) -> Result<Response, ApiError> {
    let (op, alloc_id) = tail.split_once('/').unwrap_or((tail, ""));
    match op {
        "logs" => logs(ctx, alloc_id).await,
        "ls" => ls(ctx, alloc_id).await,
        "stat" => stat(ctx, alloc_id).await,
        "cat" => cat(ctx, alloc_id, false).await,
        "readat" => cat(ctx, alloc_id, true).await,
        "stream" => stream(ctx, alloc_id).await,
        _ => Err(ApiError::no_route()),
    }
}

fn unknown_alloc(id: &str) -> ApiError {
    ApiError::not_found(format!("Unknown allocation \"{id}\""))
}

fn not_started(task: &str) -> ApiError {
    ApiError::not_found(format!(
        "task \"{task}\" not started yet. No logs available"
    ))
}

/// The alloc as this agent knows it: the local client's live view first (its task states are
/// current), else the local server's.
fn lookup_alloc(ctx: &Ctx, alloc_id: &str) -> Option<Arc<Allocation>> {
    if let Some(client) = &ctx.state.client {
        if let Some(a) = client.allocs().into_iter().find(|a| a.id == alloc_id) {
            return Some(Arc::new(a));
        }
    }
    ctx.state
        .server
        .as_ref()
        .and_then(|s| s.state().snapshot().alloc(alloc_id))
}

/// Which client operation failed, for Nomad's per-operation wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientOp {
    Signal,
    Restart,
}

/// Maps the client's alloc-operation errors to Nomad's statuses and messages: an unknown alloc
/// is a 404 `Unknown allocation "<id>"`; everything else is an uncoded (500) error worded as
/// Nomad's alloc runner words it (`Task not found` for signal, `Could not find task runner for
/// task: <t>` for restart, `Task not running`).
pub(crate) fn client_error(e: ClientError, op: ClientOp) -> ApiError {
    // `matches!` rather than an exhaustive `match`: the client may grow variants.
    if matches!(e, ClientError::UnknownAlloc(_)) {
        return ApiError::not_found(e.to_string());
    }
    if let ClientError::UnknownTask(task) = &e {
        return ApiError::internal(match op {
            ClientOp::Signal => "Task not found".to_string(),
            ClientOp::Restart => format!("Could not find task runner for task: {task}"),
        });
    }
    ApiError::internal(e.to_string())
}

#[cfg(test)]
pub(crate) use {client_error as client_error_for_tests, ClientOp as ClientOpForTests};

/// The alloc directory on this node, or `Unknown allocation`.
fn alloc_dir(ctx: &Ctx, alloc_id: &str) -> Result<PathBuf, ApiError> {
    if alloc_id.is_empty() {
        return Err(ApiError::bad_request("must provide a valid alloc id"));
    }
    let client = ctx.client()?;
    client
        .alloc_dir_path(alloc_id)
        .ok_or_else(|| unknown_alloc(alloc_id))
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `offset` bytes from the start of the oldest file.
    Start,
    /// `offset` bytes back from the end of the newest file.
    End,
}

/// What a log stream reads.
#[derive(Debug, Clone)]
pub(crate) struct LogRequest {
    /// `<alloc_dir>/alloc/logs`.
    pub(crate) logs_dir: PathBuf,
    pub(crate) task: String,
    pub(crate) log_type: String,
    pub(crate) follow: bool,
    pub(crate) plain: bool,
    pub(crate) offset: i64,
    pub(crate) origin: Origin,
}

impl LogRequest {
    fn file_name(&self, idx: u64) -> String {
        format!("{}.{}.{idx}", self.task, self.log_type)
    }

    /// Rotation indexes and sizes of this task's log files, oldest first.
    fn files(&self) -> Vec<(u64, u64)> {
        list_log_files(&self.logs_dir, &self.task, &self.log_type)
    }
}

/// `(index, size)` of `<task>.<type>.<N>` files in `dir`, sorted by index.
pub(crate) fn list_log_files(dir: &Path, task: &str, log_type: &str) -> Vec<(u64, u64)> {
    let prefix = format!("{task}.{log_type}.");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, u64)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let idx: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
            let meta = e.metadata().ok()?;
            meta.is_file().then_some((idx, meta.len()))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Picks the file position and in-file offset `offset` bytes from the start (counting forward
/// across files) or from the end (counting back across rotated files).
pub(crate) fn find_closest(files: &[(u64, u64)], offset: i64, origin: Origin) -> (usize, u64) {
    let mut rem = offset.max(0).unsigned_abs();
    if files.is_empty() {
        return (0, 0);
    }
    match origin {
        Origin::Start => {
            for (i, &(_, size)) in files.iter().enumerate() {
                if rem < size || i + 1 == files.len() {
                    return (i, rem.min(size));
                }
                rem -= size;
            }
            (files.len() - 1, 0)
        }
        Origin::End => {
            for (i, &(_, size)) in files.iter().enumerate().rev() {
                if rem <= size {
                    return (i, size - rem);
                }
                rem -= size;
            }
            (0, 0)
        }
    }
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StreamFrame<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    data: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    file: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    file_event: &'a str,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn encode_frame(f: &StreamFrame<'_>) -> Bytes {
    Bytes::from(serde_json::to_vec(f).expect("a frame of strings and integers always serializes"))
}

/// Streams the log files into `tx` until the end (or forever when following, until the
/// receiver goes away).
pub(crate) async fn run_log_stream(
    req: LogRequest,
    start_idx: u64,
    start_offset: u64,
    tx: mpsc::Sender<Bytes>,
) {
    let mut idx = start_idx;
    let mut offset = start_offset;
    let mut buf = vec![0u8; FRAME_SIZE];
    let mut idle = Duration::ZERO;
    'files: loop {
        let name = req.file_name(idx);
        let rel = format!("alloc/logs/{name}");
        let path = req.logs_dir.join(&name);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(_) => {
                // Deleted (rotated away): go on with the next newer file, if any.
                match req.files().into_iter().find(|(i, _)| *i > idx) {
                    Some((next, _)) => {
                        idx = next;
                        offset = 0;
                        continue 'files;
                    }
                    None => return,
                }
            }
        };
        if offset > 0 && file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
            return;
        }
        let mut draining = false;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(file = %path.display(), error = %e, "log stream read failed");
                    return;
                }
            };
            if n > 0 {
                offset += n as u64;
                idle = Duration::ZERO;
                draining = false;
                let chunk = if req.plain {
                    Bytes::copy_from_slice(&buf[..n])
                } else {
                    let data = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
                    encode_frame(&StreamFrame {
                        offset,
                        data,
                        file: &rel,
                        file_event: "",
                    })
                };
                if tx.send(chunk).await.is_err() {
                    return;
                }
                continue;
            }
            // End of this file. A newer file means rotation: read what is left, then move on.
            if let Some((next, _)) = req.files().into_iter().find(|(i, _)| *i > idx) {
                if draining {
                    idx = next;
                    offset = 0;
                    continue 'files;
                }
                draining = true;
                continue;
            }
            if !req.follow {
                return;
            }
            if let Ok(meta) = tokio::fs::metadata(&path).await {
                if meta.len() < offset {
                    offset = 0;
                    if file.seek(std::io::SeekFrom::Start(0)).await.is_err() {
                        return;
                    }
                    if !req.plain {
                        let f = StreamFrame {
                            file: &rel,
                            file_event: "file truncated",
                            ..Default::default()
                        };
                        if tx.send(encode_frame(&f)).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
            idle += POLL_INTERVAL;
            // Plain streams get no heartbeats (they would add bytes); a closed receiver is
            // still noticed through `is_closed` above.
            if idle >= HEARTBEAT && !req.plain {
                idle = Duration::ZERO;
                if tx.send(Bytes::from_static(b"{}")).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Starts streaming `req` as a response body. Errors found before the first byte (no files)
/// are returned as statuses.
pub(crate) fn log_response(req: LogRequest) -> Result<Response, ApiError> {
    let files = req.files();
    if files.is_empty() {
        return Err(not_started(&req.task));
    }
    let (pos, off) = find_closest(&files, req.offset, req.origin);
    let start_idx = files[pos].0;
    let plain = req.plain;
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(run_log_stream(req, start_idx, off, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let ct = if plain {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(resp)
}

fn parse_bool_field(ctx: &Ctx, key: &str) -> Result<bool, ApiError> {
    match ctx.params.get(key) {
        None | Some("") => Ok(false),
        Some(v) => parse_go_bool(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "failed to parse {key} field to boolean: strconv.ParseBool: parsing {v:?}: invalid syntax"
            ))
        }),
    }
}

/// `GET /v1/client/fs/logs/<alloc_id>`.
async fn logs(ctx: Ctx, alloc_id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    if alloc_id.is_empty() {
        return Err(ApiError::bad_request("must provide a valid alloc id"));
    }
    let task = ctx.params.str("task").to_string();
    if task.is_empty() {
        return Err(ApiError::bad_request("must provide task name"));
    }
    let log_type = ctx.params.str("type").to_string();
    if log_type != "stdout" && log_type != "stderr" {
        return Err(ApiError::bad_request(
            "must provide log type (stdout/stderr)",
        ));
    }
    let follow = parse_bool_field(&ctx, "follow")?;
    let plain = parse_bool_field(&ctx, "plain")?;
    let offset = match ctx.params.get("offset") {
        None | Some("") => 0,
        Some(v) => v.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "failed to parse offset field to integer: strconv.ParseInt: parsing {v:?}: invalid syntax"
            ))
        })?,
    };
    let origin = match ctx.params.str("origin") {
        "" | "start" => Origin::Start,
        "end" => Origin::End,
        _ => return Err(ApiError::bad_request("origin must be start or end")),
    };

    let client = ctx.client()?;
    let dir = client.alloc_dir_path(alloc_id);
    match lookup_alloc(&ctx, alloc_id) {
        Some(alloc) => {
            if let Some(job) = alloc.job.as_deref() {
                let known = job
                    .lookup_task_group(&alloc.task_group)
                    .is_some_and(|tg| tg.lookup_task(&task).is_some());
                if !known {
                    return Err(ApiError::bad_request(format!("unknown task name {task:?}")));
                }
            }
            let started = alloc
                .task_states
                .as_ref()
                .and_then(|s| s.get(&task))
                .and_then(|s| s.started_at.as_deref())
                .is_some_and(|s| !s.is_empty() && !s.starts_with("0001-01-01"));
            if !started {
                return Err(not_started(&task));
            }
        }
        None => {
            // No server-side record here: the alloc dir is the source of truth; every task of
            // the alloc has its own directory in it.
            let Some(dir) = dir.as_ref() else {
                return Err(unknown_alloc(alloc_id));
            };
            if task == "alloc" || !dir.join(&task).is_dir() {
                return Err(ApiError::bad_request(format!("unknown task name {task:?}")));
            }
        }
    }
    let Some(dir) = dir else {
        return Err(not_started(&task));
    };
    log_response(LogRequest {
        logs_dir: dir.join("alloc").join("logs"),
        task,
        log_type,
        follow,
        plain,
        offset,
        origin,
    })
}

/// Resolves `?path=` inside the alloc dir, refusing escapes.
fn resolve_in_alloc(dir: &Path, rel: &str) -> Result<PathBuf, ApiError> {
    let mut out = dir.to_path_buf();
    for comp in Path::new(rel).components() {
        match comp {
            std::path::Component::Normal(c) => out.push(c),
            std::path::Component::CurDir | std::path::Component::RootDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() || !out.starts_with(dir) {
                    return Err(escapes());
                }
            }
            std::path::Component::Prefix(_) => return Err(ApiError::bad_request("invalid path")),
        }
    }
    if !out.starts_with(dir) {
        return Err(escapes());
    }
    Ok(out)
}

fn escapes() -> ApiError {
    ApiError::internal("Path escapes the alloc directory")
}

/// Refuses reads under a task's `secrets/` or `private/` directory. Like Nomad, the test is a
/// case-insensitive prefix test on the directory name (`web/Secrets/x`, `web/secrets.bak` are
/// refused too); the shared `alloc/` directory has neither.
fn refuse_task_private(dir: &Path, target: &Path, rel: &str) -> Result<(), ApiError> {
    let Ok(inner) = target.strip_prefix(dir) else {
        return Ok(());
    };
    let mut comps = inner.components();
    let (Some(task), Some(sub)) = (comps.next(), comps.next()) else {
        return Ok(());
    };
    if task.as_os_str() == "alloc" {
        return Ok(());
    }
    let sub = sub.as_os_str().to_string_lossy().to_lowercase();
    if sub.starts_with("secrets") {
        return Err(ApiError::internal(format!(
            "Reading secret file prohibited: {rel}"
        )));
    }
    if sub.starts_with("private") {
        return Err(ApiError::internal(format!(
            "Reading private file prohibited: {rel}"
        )));
    }
    Ok(())
}

/// Resolves `rel` inside `dir` for an fs endpoint: no `..` or symlink may lead outside the alloc
/// dir, and with `read` the task-private directories are refused (also through symlinks).
fn checked_path(dir: &Path, rel: &str, read: bool) -> Result<PathBuf, ApiError> {
    let target = resolve_in_alloc(dir, rel)?;
    if read {
        refuse_task_private(dir, &target, rel)?;
    }
    if let Ok(real) = std::fs::canonicalize(&target) {
        let real_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !real.starts_with(&real_dir) {
            return Err(escapes());
        }
        if read {
            refuse_task_private(&real_dir, &real, rel)?;
        }
    }
    Ok(target)
}

fn file_mode_string(meta: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode()
    };
    #[cfg(not(unix))]
    let mode: u32 = if meta.permissions().readonly() {
        0o444
    } else {
        0o644
    };
    let kind = if meta.is_dir() {
        'd'
    } else if meta.file_type().is_symlink() {
        'L'
    } else {
        '-'
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

fn file_info(name: String, meta: &std::fs::Metadata) -> serde_json::Value {
    let mod_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    j!({
        "Name": name,
        "IsDir": meta.is_dir(),
        "Size": meta.len(),
        "FileMode": file_mode_string(meta),
        "ModTime": nomad_structs::rfc3339_nanos(mod_ns),
    })
}

async fn ls(ctx: Ctx, alloc_id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let dir = alloc_dir(&ctx, alloc_id)?;
    let rel = ctx
        .params
        .get("path")
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let target = checked_path(&dir, rel, false)?;
    let rd =
        std::fs::read_dir(&target).map_err(|e| ApiError::internal(format!("open {}: {e}", rel)))?;
    let mut out: Vec<serde_json::Value> = rd
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some(file_info(
                e.file_name().to_string_lossy().into_owned(),
                &meta,
            ))
        })
        .collect();
    out.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
    json(&out, ctx.pretty(), Meta::None)
}

async fn stat(ctx: Ctx, alloc_id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let dir = alloc_dir(&ctx, alloc_id)?;
    let rel = ctx.params.str("path");
    if rel.is_empty() {
        return Err(ApiError::bad_request("must provide a file name"));
    }
    let target = checked_path(&dir, rel, false)?;
    let meta =
        std::fs::metadata(&target).map_err(|e| ApiError::internal(format!("stat {rel}: {e}")))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    json(&file_info(name, &meta), ctx.pretty(), Meta::None)
}

async fn cat(ctx: Ctx, alloc_id: &str, ranged: bool) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let dir = alloc_dir(&ctx, alloc_id)?;
    let rel = ctx.params.str("path");
    if rel.is_empty() {
        return Err(ApiError::bad_request("must provide a file name"));
    }
    let target = checked_path(&dir, rel, true)?;
    let (offset, limit) = if ranged {
        let offset: u64 = ctx
            .params
            .str("offset")
            .parse()
            .map_err(|_| ApiError::bad_request("must provide a valid offset"))?;
        // Go clients send `limit=-1` for "to the end"; only a positive limit limits.
        let limit: Option<u64> = match ctx.params.get("limit").filter(|s| !s.is_empty()) {
            Some(v) => {
                let l: i64 = v
                    .parse()
                    .map_err(|_| ApiError::bad_request("must provide a valid limit"))?;
                (l > 0).then_some(l.unsigned_abs())
            }
            None => None,
        };
        (offset, limit)
    } else {
        (0, None)
    };
    let meta =
        std::fs::metadata(&target).map_err(|e| ApiError::internal(format!("stat {rel}: {e}")))?;
    if meta.is_dir() {
        return Err(ApiError::bad_request(format!(
            "file {rel:?} is a directory"
        )));
    }
    let mut f = tokio::fs::File::open(&target)
        .await
        .map_err(|e| ApiError::internal(format!("open {rel}: {e}")))?;
    if offset > 0 {
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
    }
    let mut data = Vec::new();
    match limit {
        Some(l) => {
            f.take(l)
                .read_to_end(&mut data)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        None => {
            f.read_to_end(&mut data)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
    }
    let mut resp = (StatusCode::OK, data).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// What one `/v1/client/fs/stream` reads.
#[derive(Debug, Clone)]
pub(crate) struct FileStream {
    /// Host path of the file.
    pub(crate) path: PathBuf,
    /// The path as the caller gave it (sent back as `File`).
    pub(crate) rel: String,
    /// Byte offset to start at.
    pub(crate) offset: u64,
    /// Keep streaming at the end of the file.
    pub(crate) follow: bool,
    /// Stop after this many bytes (0 = no limit).
    pub(crate) limit: u64,
}

#[cfg(unix)]
fn file_identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_identity(_meta: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// Streams one file as frames into `tx`: data as it is read, `{}` heartbeats while idle, a
/// `file truncated` event (and a restart from offset 0) when the file shrinks, and a final
/// `file deleted` event when it disappears or is replaced by another file. Without `follow`
/// the stream ends at the end of the file.
pub(crate) async fn run_file_stream(req: FileStream, tx: mpsc::Sender<Bytes>) {
    let mut file = match tokio::fs::File::open(&req.path).await {
        Ok(f) => f,
        Err(_) => return,
    };
    let identity = match file.metadata().await {
        Ok(m) => file_identity(&m),
        Err(_) => return,
    };
    let mut offset = req.offset;
    if offset > 0 && file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return;
    }
    let mut remaining = if req.limit > 0 { req.limit } else { u64::MAX };
    let mut buf = vec![0u8; FRAME_SIZE];
    let mut idle = Duration::ZERO;
    let send_event = |event: &'static str, offset: u64| {
        encode_frame(&StreamFrame {
            offset,
            file: &req.rel,
            file_event: event,
            ..Default::default()
        })
    };
    loop {
        if remaining == 0 {
            return;
        }
        let want = usize::try_from(remaining.min(FRAME_SIZE as u64)).unwrap_or(FRAME_SIZE);
        let n = match file.read(&mut buf[..want]).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(file = %req.path.display(), error = %e, "fs stream read failed");
                return;
            }
        };
        if n > 0 {
            offset += n as u64;
            remaining -= n as u64;
            idle = Duration::ZERO;
            let frame = encode_frame(&StreamFrame {
                offset,
                data: base64::engine::general_purpose::STANDARD.encode(&buf[..n]),
                file: &req.rel,
                file_event: "",
            });
            if tx.send(frame).await.is_err() {
                return;
            }
            continue;
        }
        if !req.follow {
            return;
        }
        // At the end: look for deletion, replacement or truncation, then wait.
        match tokio::fs::metadata(&req.path).await {
            Ok(meta) if file_identity(&meta) != identity => {
                let _ = tx.send(send_event("file deleted", offset)).await;
                return;
            }
            Ok(meta) if meta.len() < offset => {
                offset = 0;
                if file.seek(std::io::SeekFrom::Start(0)).await.is_err() {
                    return;
                }
                if tx.send(send_event("file truncated", 0)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(_) => {
                let _ = tx.send(send_event("file deleted", offset)).await;
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        idle += POLL_INTERVAL;
        if idle >= HEARTBEAT {
            idle = Duration::ZERO;
            if tx.send(Bytes::from_static(b"{}")).await.is_err() {
                return;
            }
        }
    }
}

fn parse_int_field(ctx: &Ctx, key: &str) -> Result<i64, ApiError> {
    match ctx.params.get(key) {
        None | Some("") => Ok(0),
        Some(v) => v.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "error parsing {key}: strconv.ParseInt: parsing {v:?}: invalid syntax"
            ))
        }),
    }
}

/// `GET /v1/client/fs/stream/<alloc_id>?path=&follow=&offset=&origin=&limit=`: one file as
/// framed JSON; `follow` defaults to true.
async fn stream(ctx: Ctx, alloc_id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    if alloc_id.is_empty() {
        return Err(ApiError::bad_request("must provide a valid alloc id"));
    }
    let rel = ctx.params.str("path").to_string();
    if rel.is_empty() {
        return Err(ApiError::bad_request("must provide a file name"));
    }
    let offset = parse_int_field(&ctx, "offset")?;
    let limit = parse_int_field(&ctx, "limit")?;
    let follow = match ctx.params.get("follow") {
        None | Some("") => true,
        Some(_) => parse_bool_field(&ctx, "follow")?,
    };
    let origin = match ctx.params.str("origin") {
        "" | "start" => Origin::Start,
        "end" => Origin::End,
        _ => return Err(ApiError::bad_request("origin must be start or end")),
    };
    let dir = alloc_dir(&ctx, alloc_id)?;
    let path = checked_path(&dir, &rel, false)?;
    let meta =
        std::fs::metadata(&path).map_err(|e| ApiError::bad_request(format!("stat {rel}: {e}")))?;
    if meta.is_dir() {
        return Err(ApiError::bad_request(format!(
            "file {rel:?} is a directory"
        )));
    }
    checked_path(&dir, &rel, true)?;
    let size = meta.len();
    let start = match origin {
        Origin::Start => offset.max(0).unsigned_abs().min(size),
        Origin::End => size.saturating_sub(offset.max(0).unsigned_abs()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(run_file_stream(
        FileStream {
            path,
            rel,
            offset: start,
            follow,
            limit: limit.max(0).unsigned_abs(),
        },
        tx,
    ));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// `/v1/client/allocation/<id>/<op>`: exactly two tokens.
pub(crate) async fn client_alloc(ctx: Ctx, tail: &str) -> Result<Response, ApiError> {
    let tokens: Vec<&str> = tail.split('/').collect();
    if tokens.len() != 2 {
        return Err(ApiError::not_found("resource not found"));
    }
    let (id, op) = (tokens[0], tokens[1]);
    match op {
        "stats" => alloc_stats(ctx, id).await,
        "restart" => restart(ctx, id).await,
        "signal" => signal(ctx, id).await,
        "checks" => {
            require_get(&ctx)?;
            json(&j!({}), ctx.pretty(), Meta::None)
        }
        "gc" => Err(ApiError::not_supported("Allocation garbage collection")),
        "pause" => Err(ApiError::not_supported("Pausing tasks")),
        "exec" => super::exec::alloc_exec(ctx, id).await,
        "snapshot" => Err(ApiError::not_supported("Alloc snapshots")),
        _ => Err(ApiError::not_found("resource not found")),
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn empty_resource_usage() -> serde_json::Value {
    j!({
        "MemoryStats": {
            "RSS": 0, "Cache": 0, "Swap": 0, "MappedFile": 0, "Usage": 0, "MaxUsage": 0,
            "KernelUsage": 0, "KernelMaxUsage": 0, "Measured": null
        },
        "CpuStats": {
            "SystemMode": 0.0, "UserMode": 0.0, "TotalTicks": 0.0, "ThrottledPeriods": 0,
            "ThrottledTime": 0, "Percent": 0.0, "Measured": null
        },
        "DeviceStats": []
    })
}

/// `GET /v1/client/allocation/<id>/stats`: resource usage is not measured yet, so every task
/// reports zeros in the right shape.
async fn alloc_stats(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let dir = ctx.client()?.alloc_dir_path(id);
    let tasks: Vec<String> = match lookup_alloc(&ctx, id) {
        Some(a) => a
            .job
            .as_deref()
            .and_then(|j| j.lookup_task_group(&a.task_group))
            .map(|tg| tg.tasks.iter().map(|t| t.name.clone()).collect())
            .unwrap_or_default(),
        None => {
            let dir = dir.ok_or_else(|| unknown_alloc(id))?;
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != "alloc")
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        }
    };
    let only = ctx.params.str("task");
    let now = now_nanos();
    let task_stats: serde_json::Map<String, serde_json::Value> = tasks
        .into_iter()
        .filter(|t| only.is_empty() || t == only)
        .map(|t| {
            (
                t,
                j!({"ResourceUsage": empty_resource_usage(), "Timestamp": now, "Pids": null}),
            )
        })
        .collect();
    let body = j!({"ResourceUsage": empty_resource_usage(), "Tasks": task_stats, "Timestamp": now});
    json(&body, ctx.pretty(), Meta::None)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartRequest {
    task_name: Option<String>,
    all_tasks: Option<bool>,
}

/// `/v1/client/allocation/<id>/restart` (any method, empty body allowed).
async fn restart(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    let client = ctx.client()?;
    let req: RestartRequest = decode_optional_body(&ctx.body)?;
    let task = req.task_name.filter(|t| !t.is_empty());
    if task.is_some() && req.all_tasks == Some(true) {
        return Err(ApiError::internal(
            "task name cannot be set when restarting all tasks",
        ));
    }
    client
        .restart_alloc(id, task.as_deref())
        .await
        .map_err(|e| client_error(e, ClientOp::Restart))?;
    json(&j!({"Index": 0}), ctx.pretty(), Meta::None)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SignalRequest {
    task: Option<String>,
    signal: Option<String>,
}

/// `PUT /v1/client/allocation/<id>/signal`; the signal defaults to `SIGKILL` as in Nomad.
async fn signal(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    super::require_write(&ctx)?;
    let client = ctx.client()?;
    let req: SignalRequest = decode_optional_body(&ctx.body)?;
    let task = req.task.filter(|t| !t.is_empty());
    let sig = req
        .signal
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "SIGKILL".into());
    client
        .signal_task(id, task.as_deref(), &sig)
        .await
        .map_err(|e| client_error(e, ClientOp::Signal))?;
    json(&j!({"Index": 0}), ctx.pretty(), Meta::None)
}

fn read_meminfo() -> (u64, u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    };
    (
        field("MemTotal:"),
        field("MemAvailable:"),
        field("MemFree:"),
    )
}

/// `GET /v1/client/stats`: host memory and uptime from `/proc`; the rest zero-shaped.
pub(crate) async fn client_stats(ctx: Ctx) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let _ = ctx.client()?;
    let (total, available, free) = read_meminfo();
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|u| u.parse::<f64>().ok())
        })
        .map_or(0, |u| u as u64);
    let body = j!({
        "Memory": {"Total": total, "Available": available, "Used": total.saturating_sub(available), "Free": free},
        "CPU": [],
        "DiskStats": [],
        "AllocDirStats": null,
        "DeviceStats": [],
        "Uptime": uptime,
        "Timestamp": now_nanos(),
        "CPUTicksConsumed": 0.0,
    });
    json(&body, ctx.pretty(), Meta::None)
}
