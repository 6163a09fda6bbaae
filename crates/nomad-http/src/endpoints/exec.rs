//! `nomad alloc exec` and `nomad job action` over websockets:
//! `GET /v1/client/allocation/<alloc_id>/exec?task=&command=<json array>&tty=&ws_handshake=`
//! and `GET /v1/job/<job_id>/action?action=&allocID=&task=&group=&tty=`.
//!
//! Wire format (Nomad's): text frames of JSON. Client → server `{"stdin":{"data":"<b64>"}}`,
//! `{"stdin":{"close":true}}`, `{"tty_size":{"height":H,"width":W}}`, `{}` (heartbeat).
//! Server → client `{"stdout":{"data":"<b64>"}}` / `{"stdout":{"close":true}}` (same for
//! stderr; with a tty everything comes on stdout), then `{"exited":true,"result":{"exit_code":N}}`
//! with `exit_code` omitted when 0, then a normal close.
//!
//! Ordering: the exit frame is sent only after both output streams reported EOF (or, when a
//! background process the command left behind keeps them open, [`DRAIN_AFTER_EXIT`] after
//! the exit), so every byte the command wrote before exiting arrives before its exit code.
//!
//! Errors: unlike Nomad, which upgrades first and reports everything as a close frame, every
//! check that can run before the upgrade does, and fails as a plain HTTP error with Nomad's
//! status and text. Failures after the upgrade (the command cannot start, a bad handshake)
//! are close frames: 1011 for internal errors, 1008 otherwise, the text as the reason.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::response::Response;
use base64::Engine as _;
use nomad_client::{Client, ClientError};
use nomad_drivers::{Driver, ExecControl, ExecRequest, FsIsolation};
use nomad_structs::{Allocation, Task};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::require_get;
use crate::error::ApiError;
use crate::Ctx;

/// How long output may still drain after the command exited (a daemon it started may hold the
/// pipes open forever).
pub(crate) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long the server waits for the client's close reply after the exit frame.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Bytes per output frame (Nomad reads 4096).
const READ_CHUNK: usize = 4096;
/// Close code for internal errors.
pub(crate) const CLOSE_INTERNAL: u16 = 1011;
/// Close code for refused requests.
pub(crate) const CLOSE_POLICY: u16 = 1008;

// ---------------------------------------------------------------------------------------
// Frames

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// One direction of a stream: data (base64 on the wire) or its close.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamFrame {
    /// Base64 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<String>,
    /// The stream is closed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) close: bool,
}

impl StreamFrame {
    fn data(bytes: &[u8]) -> StreamFrame {
        StreamFrame {
            data: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            close: false,
        }
    }

    fn close() -> StreamFrame {
        StreamFrame {
            data: None,
            close: true,
        }
    }

    /// The decoded data (invalid base64 → none).
    fn bytes(&self) -> Option<Vec<u8>> {
        let d = self.data.as_deref()?;
        base64::engine::general_purpose::STANDARD.decode(d).ok()
    }
}

/// `{"height":H,"width":W}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TtySize {
    #[serde(default)]
    pub(crate) height: i64,
    #[serde(default)]
    pub(crate) width: i64,
}

/// A client → server frame; `{}` is a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClientFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stdin: Option<StreamFrame>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tty_size: Option<TtySize>,
}

/// `result` of the exit frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitResultFrame {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) exit_code: i32,
}

/// A server → client frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServerFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stdout: Option<StreamFrame>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stderr: Option<StreamFrame>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) exited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<ExitResultFrame>,
}

impl ServerFrame {
    pub(crate) fn exit(code: i32) -> ServerFrame {
        ServerFrame {
            exited: true,
            result: Some(ExitResultFrame { exit_code: code }),
            ..Default::default()
        }
    }

    fn to_message(&self) -> Message {
        Message::Text(
            serde_json::to_string(self)
                .expect("frames serialize")
                .into(),
        )
    }
}

/// The browser handshake `{"version":1,"auth_token":"..."}` (`ws_handshake=true`).
#[derive(Debug, Clone, Default, Deserialize)]
struct Handshake {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    auth_token: String,
}

// ---------------------------------------------------------------------------------------
// Checks (before the upgrade)

/// What a check needs to know about the target once it is resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExecTarget<'a> {
    /// The allocation.
    pub(crate) alloc: &'a Allocation,
    /// The driver's file system isolation.
    pub(crate) fs_isolation: FsIsolation,
}

/// Permission to exec on this node. Called twice: with `None` before anything is looked up,
/// and with the resolved target.
///
/// Today: the client's `disable_remote_exec` refuses with 403 `Permission denied` (Nomad's
/// node-side check, done first). The token checks plug in here, with the token from
/// `ctx.headers` (`X-Nomad-Token`):
/// - with `Some(target)`: the token needs `alloc-exec` on `target.alloc.namespace`;
/// - and when `target.fs_isolation == FsIsolation::None` (raw_exec, java): also
///   `alloc-node-exec` in that namespace (for `job action`, `run-action` suffices);
/// - both failing as 403 `Permission denied`.
///
/// The ACL middleware (`crate::auth::enforce`, with `check_exec_permission` /
/// `check_action_permission`) currently makes those checks by path before the request gets
/// here; moving them into this function, where the resolved alloc and the driver's actual
/// isolation are known, is the intended end state.
pub(crate) fn authorize_exec(
    ctx: &Ctx,
    client: &Client,
    target: Option<ExecTarget<'_>>,
) -> Result<(), ApiError> {
    if client.config().disable_remote_exec {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "Permission denied",
        ));
    }
    // ACLs (the router's middleware already checked before the upgrade; this re-checks with
    // the live driver's isolation): alloc-exec (+ alloc-node-exec without FS isolation); a
    // job action (`?action=`) may use run-action instead. See `crate::auth`.
    if let Some(t) = target {
        let who = crate::auth::caller(ctx)?;
        let fs_none = t.fs_isolation == FsIsolation::None;
        if ctx.params.has("action") {
            crate::auth::check_action_permission(&who.acl, &t.alloc.namespace, fs_none)?;
        } else {
            crate::auth::check_exec_permission(&who.acl, &t.alloc.namespace, fs_none)?;
        }
    }
    Ok(())
}

/// Parses `command=<JSON array of strings>`.
pub(crate) fn parse_command(raw: Option<&str>) -> Result<Vec<String>, ApiError> {
    let raw = match raw {
        None | Some("") => return Err(ApiError::bad_request("command is not present")),
        Some(r) => r,
    };
    let cmd: Vec<String> = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("failed to parse command: {e}")))?;
    if cmd.is_empty() || cmd[0].is_empty() {
        return Err(ApiError::bad_request("command is not present"));
    }
    Ok(cmd)
}

/// The alloc as this client runs it (with current client status and task states).
fn client_alloc(client: &Client, alloc_id: &str) -> Result<Allocation, ApiError> {
    if alloc_id.is_empty() {
        return Err(ApiError::bad_request("missing allocation ID"));
    }
    client
        .allocs()
        .into_iter()
        .find(|a| a.id == alloc_id)
        .ok_or_else(|| ApiError::not_found(format!("Unknown allocation \"{alloc_id}\"")))
}

/// The task of the alloc's group, if the alloc carries its job.
fn alloc_task<'a>(alloc: &'a Allocation, task: &str) -> Option<&'a Task> {
    alloc
        .job
        .as_ref()?
        .lookup_task_group(&alloc.task_group)?
        .tasks
        .iter()
        .find(|t| t.name == task)
}

/// Everything a session needs, resolved before the upgrade.
pub(crate) struct Prepared {
    driver: Arc<dyn Driver>,
    task_id: String,
    req: ExecRequest,
    handshake: bool,
    header_token: String,
}

/// The common checks of exec and action after the command is known, in Nomad's order.
fn prepare(
    ctx: &Ctx,
    client: &Client,
    alloc: &Allocation,
    task: &str,
    command: Vec<String>,
) -> Result<Prepared, ApiError> {
    if command.is_empty() || command[0].is_empty() {
        return Err(ApiError::bad_request("command is not present"));
    }
    let tty = ctx.params.bool_or("tty", false)?;
    let Some(state) = client.task_state(&alloc.id, task) else {
        return Err(ApiError::bad_request(format!("unknown task name {task:?}")));
    };
    if state.started_at.as_deref().unwrap_or("").is_empty() {
        return Err(ApiError::not_found(format!(
            "task {task:?} not started yet."
        )));
    }
    let (driver, handle) = client.task_driver(&alloc.id, task).map_err(|e| match e {
        ClientError::UnknownAlloc(id) => {
            ApiError::not_found(format!("Unknown allocation \"{id}\""))
        }
        ClientError::UnknownTask(t) => ApiError::bad_request(format!("unknown task name {t:?}")),
        ClientError::TaskNotRunning => {
            ApiError::not_found(format!("task {task:?} is not running."))
        }
        other => ApiError::internal(other.to_string()),
    })?;
    let caps = driver.capabilities();
    authorize_exec(
        ctx,
        client,
        Some(ExecTarget {
            alloc,
            fs_isolation: caps.fs_isolation,
        }),
    )?;
    if !caps.exec {
        return Err(ApiError::bad_request(format!(
            "{} driver does not support exec",
            driver.name()
        )));
    }
    let spec = alloc_task(alloc, task);
    let cwd = client.alloc_dir_path(&alloc.id).map(|dir| {
        let task_dir = dir.join(task);
        match spec
            .and_then(|t| t.config.as_ref())
            .and_then(|c| c.get("work_dir"))
            .and_then(|w| w.as_str())
            .filter(|w| !w.is_empty())
        {
            Some(w) => task_dir.join(w),
            None => task_dir,
        }
    });
    let user = spec.map(|t| t.user.clone()).filter(|u| !u.is_empty());
    let handshake = ctx.params.bool_or("ws_handshake", false)?;
    let header_token = ctx
        .headers
        .get("X-Nomad-Token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Ok(Prepared {
        driver,
        task_id: handle.task_id,
        req: ExecRequest {
            command,
            tty,
            tty_size: None,
            env: None,
            cwd,
            user,
        },
        handshake,
        header_token,
    })
}

/// Nomad's terminal-alloc refusal.
fn refuse_terminal(alloc: &Allocation) -> Result<(), ApiError> {
    if alloc.client_terminal() {
        return Err(ApiError::bad_request(format!(
            "exec not possible, client status of allocation {} is {}",
            alloc.id, alloc.client_status
        )));
    }
    Ok(())
}

/// `GET /v1/client/allocation/<alloc_id>/exec`.
pub(crate) async fn alloc_exec(ctx: Ctx, alloc_id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let client = ctx.client()?.clone();
    authorize_exec(&ctx, &client, None)?;
    let alloc = client_alloc(&client, alloc_id)?;
    refuse_terminal(&alloc)?;
    let task = ctx.params.str("task").to_string();
    if task.is_empty() {
        return Err(ApiError::bad_request("must provide task name"));
    }
    let command = parse_command(ctx.params.get("command"))?;
    let prepared = prepare(&ctx, &client, &alloc, &task, command)?;
    upgrade(ctx, prepared)
}

/// `GET /v1/job/<job_id>/action`: the named action of a task as an exec session.
pub(crate) async fn job_action(ctx: Ctx, job_id: &str) -> Result<Response, ApiError> {
    require_get(&ctx)?;
    let client = ctx.client()?.clone();
    authorize_exec(&ctx, &client, None)?;
    let ns = ctx.opts.namespace().to_string();
    if let Some(server) = &ctx.state.server {
        if server.state().snapshot().job(&ns, job_id).is_none() {
            return Err(ApiError::not_found(format!(
                "job {job_id} not found in namespace {ns}"
            )));
        }
    }
    let alloc_id = ctx.params.str("allocID").to_string();
    let alloc = client_alloc(&client, &alloc_id)?;
    refuse_terminal(&alloc)?;
    if alloc.job_id != job_id {
        return Err(ApiError::bad_request(format!(
            "job {job_id} does not have allocation {}",
            alloc.id
        )));
    }
    let task = ctx.params.str("task").to_string();
    if task.is_empty() {
        return Err(ApiError::bad_request("must provide task name"));
    }
    let Some(spec) = alloc_task(&alloc, &task) else {
        return Err(ApiError::bad_request(format!(
            "task {task} not found in allocation {}",
            alloc.id
        )));
    };
    let action_name = ctx.params.str("action");
    let Some(action) = spec
        .actions
        .iter()
        .flatten()
        .find(|a| a.name == action_name)
    else {
        return Err(ApiError::bad_request(format!(
            "action {action_name} not found in task {task}"
        )));
    };
    let mut command = vec![action.command.clone()];
    command.extend(action.args.iter().flatten().cloned());
    let prepared = prepare(&ctx, &client, &alloc, &task, command)?;
    upgrade(ctx, prepared)
}

fn upgrade(ctx: Ctx, prepared: Prepared) -> Result<Response, ApiError> {
    let Some(ws) = ctx.ws else {
        return Err(ApiError::bad_request(
            "websocket: the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header",
        ));
    };
    Ok(ws
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| run_session(socket, prepared)))
}

// ---------------------------------------------------------------------------------------
// The session (after the upgrade)

/// Output of the reader threads.
#[derive(Debug)]
enum Output {
    Stdout(Vec<u8>),
    StdoutClosed,
    Stderr(Vec<u8>),
    StderrClosed,
}

/// Input for the stdin writer thread.
enum Input {
    Data(Vec<u8>),
    Close,
}

async fn close_with(mut socket: WebSocket, code: u16, reason: &str) {
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason[..end].to_string().into(),
        })))
        .await;
    linger(&mut socket).await;
}

/// Reads the browser handshake; `Err` = (close code, text).
async fn read_handshake(socket: &mut WebSocket, header_token: &str) -> Result<(), String> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => {
                let h: Handshake = serde_json::from_str(t.as_str())
                    .map_err(|e| format!("failed to parse handshake: {e}"))?;
                if h.version != 1 {
                    return Err(format!("unexpected handshake value: {}", h.version));
                }
                if !header_token.is_empty() && header_token != h.auth_token {
                    return Err("handshake auth token mismatched auth header token".to_string());
                }
                return Ok(());
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return Err("websocket closed before handshake".to_string()),
        }
    }
}

fn spawn_reader(
    name: &str,
    mut file: std::fs::File,
    tx: mpsc::Sender<Output>,
    data: fn(Vec<u8>) -> Output,
    closed: Output,
) {
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(data(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // EIO from a pty master: the terminal's last user is gone (= EOF).
                    Err(_) => break,
                }
            }
            let _ = tx.blocking_send(closed);
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "exec: could not start an output reader");
    }
}

fn spawn_writer(mut file: std::fs::File, rx: std::sync::mpsc::Receiver<Input>) {
    let spawned = std::thread::Builder::new()
        .name("exec-stdin".to_string())
        .spawn(move || {
            while let Ok(msg) = rx.recv() {
                match msg {
                    Input::Data(d) => {
                        if file.write_all(&d).is_err() {
                            return;
                        }
                    }
                    Input::Close => return,
                }
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "exec: could not start the stdin writer");
    }
}

fn clamp(v: i64) -> u16 {
    u16::try_from(v.max(0)).unwrap_or(u16::MAX)
}

/// Runs one exec session on an upgraded socket until the command exits (then output, close
/// frames and the exit frame are sent, in that order) or the client goes away (then the
/// command's process group is killed).
async fn run_session(mut socket: WebSocket, p: Prepared) {
    if p.handshake {
        if let Err(text) = read_handshake(&mut socket, &p.header_token).await {
            close_with(socket, CLOSE_POLICY, &text).await;
            return;
        }
    }
    let Prepared {
        driver,
        task_id,
        req,
        ..
    } = p;
    let tty = req.tty;
    let started = tokio::task::spawn_blocking(move || driver.exec_task(&task_id, req)).await;
    let mut session = match started {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            close_with(socket, CLOSE_INTERNAL, &e.to_string()).await;
            return;
        }
        Err(e) => {
            close_with(socket, CLOSE_INTERNAL, &format!("exec failed: {e}")).await;
            return;
        }
    };
    let control = session.control();
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(16);
    let mut stdout_open = false;
    let mut stderr_open = false;
    if let Some(f) = session.stdout.take() {
        stdout_open = true;
        spawn_reader(
            "exec-stdout",
            f,
            out_tx.clone(),
            Output::Stdout,
            Output::StdoutClosed,
        );
    }
    if let Some(f) = session.stderr.take() {
        stderr_open = true;
        spawn_reader(
            "exec-stderr",
            f,
            out_tx.clone(),
            Output::Stderr,
            Output::StderrClosed,
        );
    }
    drop(out_tx);
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Input>();
    if let Some(f) = session.stdin.take() {
        spawn_writer(f, in_rx);
    }
    let (exit_tx, mut exit_rx) = tokio::sync::oneshot::channel::<i32>();
    let waiter = std::thread::Builder::new()
        .name("exec-wait".to_string())
        .spawn(move || {
            let _ = exit_tx.send(session.wait().exit_code);
        });
    if waiter.is_err() {
        control.kill();
        close_with(socket, CLOSE_INTERNAL, "failed to wait for the command").await;
        return;
    }

    let mut exit_code: Option<i32> = None;
    let drain = tokio::time::sleep(Duration::from_secs(3600 * 24 * 365));
    tokio::pin!(drain);
    loop {
        if exit_code.is_some() && !stdout_open && !stderr_open {
            break;
        }
        tokio::select! {
            out = out_rx.recv() => {
                let frame = match out {
                    Some(Output::Stdout(d)) => ServerFrame { stdout: Some(StreamFrame::data(&d)), ..Default::default() },
                    Some(Output::Stderr(d)) => ServerFrame { stderr: Some(StreamFrame::data(&d)), ..Default::default() },
                    Some(Output::StdoutClosed) => { stdout_open = false; ServerFrame { stdout: Some(StreamFrame::close()), ..Default::default() } }
                    Some(Output::StderrClosed) => { stderr_open = false; ServerFrame { stderr: Some(StreamFrame::close()), ..Default::default() } }
                    None => { stdout_open = false; stderr_open = false; continue; }
                };
                if socket.send(frame.to_message()).await.is_err() {
                    control.kill();
                    return;
                }
            }
            code = &mut exit_rx, if exit_code.is_none() => {
                exit_code = Some(code.unwrap_or(-2));
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            }
            () = &mut drain, if exit_code.is_some() => {
                tracing::debug!("exec: output still open after the command exited; not waiting for it");
                // Whatever was already read still goes out before the exit frame.
                while let Ok(out) = out_rx.try_recv() {
                    let frame = match out {
                        Output::Stdout(d) => ServerFrame { stdout: Some(StreamFrame::data(&d)), ..Default::default() },
                        Output::Stderr(d) => ServerFrame { stderr: Some(StreamFrame::data(&d)), ..Default::default() },
                        Output::StdoutClosed | Output::StderrClosed => continue,
                    };
                    if socket.send(frame.to_message()).await.is_err() {
                        return;
                    }
                }
                break;
            }
            msg = socket.recv() => {
                match msg {
                    Some(Ok(Message::Text(t))) => handle_client_frame(t.as_bytes(), tty, &control, &in_tx),
                    Some(Ok(Message::Binary(b))) => handle_client_frame(&b, tty, &control, &in_tx),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    // The client went away (closed, `~.`, Ctrl-C): the command goes too.
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        control.kill();
                        return;
                    }
                }
            }
        }
    }
    let frames = [
        (
            stdout_open,
            ServerFrame {
                stdout: Some(StreamFrame::close()),
                ..Default::default()
            },
        ),
        (
            stderr_open,
            ServerFrame {
                stderr: Some(StreamFrame::close()),
                ..Default::default()
            },
        ),
    ];
    for (still_open, f) in frames {
        if still_open && socket.send(f.to_message()).await.is_err() {
            return;
        }
    }
    let code = exit_code.unwrap_or(-2);
    if socket
        .send(ServerFrame::exit(code).to_message())
        .await
        .is_err()
    {
        return;
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    linger(&mut socket).await;
}

/// Finishes the close handshake after our close frame: dropping the connection while the
/// client's last frames (stdin close, resize, its close reply) are unread makes the kernel
/// answer with a reset, which can destroy the exit frame or close reason still in the
/// client's receive buffer.
async fn linger(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

fn handle_client_frame(
    raw: &[u8],
    _tty: bool,
    control: &ExecControl,
    stdin: &std::sync::mpsc::Sender<Input>,
) {
    let frame: ClientFrame = match serde_json::from_slice(raw) {
        Ok(f) => f,
        Err(error) => {
            tracing::debug!(%error, "exec: ignoring an unparseable frame");
            return;
        }
    };
    if let Some(s) = frame.stdin {
        if let Some(d) = s.bytes().filter(|d| !d.is_empty()) {
            let _ = stdin.send(Input::Data(d));
        }
        if s.close {
            let _ = stdin.send(Input::Close);
        }
    }
    if let Some(size) = frame.tty_size {
        if let Err(error) =
            nomad_drivers::exec_session::resize(control, clamp(size.height), clamp(size.width))
        {
            tracing::debug!(%error, "exec: resize failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_frame_omits_zero() {
        assert_eq!(
            serde_json::to_string(&ServerFrame::exit(0)).unwrap(),
            r#"{"exited":true,"result":{}}"#
        );
        assert_eq!(
            serde_json::to_string(&ServerFrame::exit(137)).unwrap(),
            r#"{"exited":true,"result":{"exit_code":137}}"#
        );
    }

    #[test]
    fn output_frames() {
        let f = ServerFrame {
            stdout: Some(StreamFrame::data(b"hi\n")),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"stdout":{"data":"aGkK"}}"#
        );
        let f = ServerFrame {
            stderr: Some(StreamFrame::close()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"stderr":{"close":true}}"#
        );
    }

    #[test]
    fn client_frames_parse() {
        let f: ClientFrame = serde_json::from_str(r#"{"stdin":{"data":"aGkK"}}"#).unwrap();
        assert_eq!(f.stdin.unwrap().bytes().unwrap(), b"hi\n");
        let f: ClientFrame = serde_json::from_str(r#"{"stdin":{"close":true}}"#).unwrap();
        assert!(f.stdin.unwrap().close);
        let f: ClientFrame =
            serde_json::from_str(r#"{"tty_size":{"height":40,"width":120}}"#).unwrap();
        assert_eq!(
            f.tty_size,
            Some(TtySize {
                height: 40,
                width: 120
            })
        );
        let f: ClientFrame = serde_json::from_str("{}").unwrap();
        assert_eq!(f, ClientFrame::default());
        assert_eq!(clamp(-3), 0);
        assert_eq!(clamp(70000), u16::MAX);
    }

    #[test]
    fn command_parsing() {
        assert_eq!(
            parse_command(Some(r#"["/bin/sh","-c","ls"]"#)).unwrap(),
            vec!["/bin/sh", "-c", "ls"]
        );
        for bad in [None, Some(""), Some("[]"), Some(r#"[""]"#)] {
            let e = parse_command(bad).unwrap_err();
            assert_eq!(e.message, "command is not present");
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
        assert!(parse_command(Some("not json"))
            .unwrap_err()
            .message
            .starts_with("failed to parse command"));
    }
}
