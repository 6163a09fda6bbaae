//! The client side of an exec session (`nomad alloc exec`, `nomad job action`): a websocket
//! (tungstenite, blocking) on the main thread, a stdin reader thread, and the process-wide
//! signal watcher (SIGINT/SIGTERM cancel, SIGWINCH resizes).
//!
//! Frames as Nomad's Go client sends and reads them: `{"stdin":{"data":b64}}`,
//! `{"stdin":{"close":true}}`, `{"tty_size":{"height":H,"width":W}}` (at start and on resize
//! with a tty), `{}` every 10 s; output frames are written as they come, the exit frame
//! returns the exit code. The socket reads with a short timeout so the main thread can also
//! send what the other threads queue.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, Once};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::escape::EscapeFilter;
use crate::terminal;

/// Heartbeat period (Nomad's client: 10 s).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Socket read timeout: the latency of forwarding stdin and resizes.
const POLL: Duration = Duration::from_millis(15);
/// Largest stdin chunk per frame (Nomad's client reads 2048).
const STDIN_CHUNK: usize = 2048;

/// The error text of a cancelled session (Ctrl-C / SIGTERM / `~.`), as Nomad prints it after
/// `failed to exec into task: `.
pub const CANCELED: &str = "context canceled";

// ---------------------------------------------------------------------------------------
// Frames

fn is_false(b: &bool) -> bool {
    !*b
}

/// One direction of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFrame {
    /// Base64 data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Closed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub close: bool,
}

/// Terminal size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySize {
    /// Rows.
    pub height: u16,
    /// Columns.
    pub width: u16,
}

/// Client → server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFrame {
    /// stdin data / close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<StreamFrame>,
    /// Resize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty_size: Option<TtySize>,
}

impl InputFrame {
    /// `{"stdin":{"data":...}}`.
    pub fn stdin_data(d: &[u8]) -> InputFrame {
        InputFrame {
            stdin: Some(StreamFrame {
                data: Some(base64::engine::general_purpose::STANDARD.encode(d)),
                close: false,
            }),
            tty_size: None,
        }
    }

    /// `{"stdin":{"close":true}}`.
    pub fn stdin_close() -> InputFrame {
        InputFrame {
            stdin: Some(StreamFrame {
                data: None,
                close: true,
            }),
            tty_size: None,
        }
    }

    /// `{"tty_size":{...}}`.
    pub fn resize(rows: u16, cols: u16) -> InputFrame {
        InputFrame {
            stdin: None,
            tty_size: Some(TtySize {
                height: rows,
                width: cols,
            }),
        }
    }

    fn to_message(&self) -> Message {
        Message::text(serde_json::to_string(self).expect("frames serialize"))
    }
}

/// The exit result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct ExitResult {
    /// Omitted (0) on success.
    #[serde(default)]
    pub exit_code: i32,
}

/// Server → client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OutputFrame {
    /// stdout data / close.
    #[serde(default)]
    pub stdout: Option<StreamFrame>,
    /// stderr data / close.
    #[serde(default)]
    pub stderr: Option<StreamFrame>,
    /// The command exited.
    #[serde(default)]
    pub exited: bool,
    /// Its result.
    #[serde(default)]
    pub result: Option<ExitResult>,
}

fn decode(d: &Option<String>) -> Vec<u8> {
    d.as_deref()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Signals (installed once per process)

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static WINCH: AtomicU64 = AtomicU64::new(0);

/// Watches SIGINT/SIGTERM (→ cancel) and SIGWINCH (→ resize) on a helper thread.
fn install_signals() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("exec-signals".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                else {
                    let _ = ready_tx.send(());
                    return;
                };
                rt.block_on(async move {
                    use tokio::signal::unix::{signal, SignalKind};
                    let int = signal(SignalKind::interrupt());
                    let term = signal(SignalKind::terminate());
                    let winch = signal(SignalKind::window_change());
                    let _ = ready_tx.send(());
                    let (Ok(mut int), Ok(mut term), Ok(mut winch)) = (int, term, winch) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = int.recv() => INTERRUPTED.store(true, Ordering::SeqCst),
                            _ = term.recv() => INTERRUPTED.store(true, Ordering::SeqCst),
                            _ = winch.recv() => { WINCH.fetch_add(1, Ordering::SeqCst); }
                        }
                    }
                });
            });
        if spawned.is_ok() {
            let _ = ready_rx.recv_timeout(Duration::from_secs(1));
        }
    });
}

// ---------------------------------------------------------------------------------------
// Output

/// Where a session's output goes.
#[derive(Debug, Clone)]
pub enum OutputMode {
    /// Straight to our stdout / stderr.
    Direct,
    /// Line by line, each line prefixed (e.g. `"0b6e7f63: "`) — for `job action -all`.
    Prefixed(String),
}

/// Serialises prefixed lines of concurrent sessions.
static LINE_LOCK: Mutex<()> = Mutex::new(());

struct Sink {
    mode: OutputMode,
    out_buf: Vec<u8>,
    err_buf: Vec<u8>,
}

impl Sink {
    fn write(&mut self, stderr: bool, data: &[u8]) {
        match &self.mode {
            OutputMode::Direct => {
                if stderr {
                    let mut e = std::io::stderr().lock();
                    let _ = e.write_all(data);
                    let _ = e.flush();
                } else {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(data);
                    let _ = o.flush();
                }
            }
            OutputMode::Prefixed(prefix) => {
                let prefix = prefix.clone();
                let buf = if stderr {
                    &mut self.err_buf
                } else {
                    &mut self.out_buf
                };
                buf.extend_from_slice(data);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    emit_line(stderr, &prefix, &line);
                }
            }
        }
    }

    fn flush(&mut self) {
        if let OutputMode::Prefixed(prefix) = &self.mode {
            let prefix = prefix.clone();
            for (stderr, buf) in [(false, &mut self.out_buf), (true, &mut self.err_buf)] {
                if !buf.is_empty() {
                    let mut line = std::mem::take(buf);
                    line.push(b'\n');
                    emit_line(stderr, &prefix, &line);
                }
            }
        }
    }
}

fn emit_line(stderr: bool, prefix: &str, line: &[u8]) {
    let _g = LINE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let mut whole = prefix.as_bytes().to_vec();
    whole.extend_from_slice(line);
    if stderr {
        let _ = std::io::stderr().lock().write_all(&whole);
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(&whole);
        let _ = o.flush();
    }
}

// ---------------------------------------------------------------------------------------
// The session

/// How to run one session.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// `ws://host:port/v1/...?...`.
    pub url: String,
    /// `X-Nomad-Token`.
    pub token: String,
    /// `user[:pass]` for basic auth (`NOMAD_HTTP_AUTH`).
    pub http_auth: String,
    /// A remote tty: local raw mode, resizes, escape character.
    pub tty: bool,
    /// Forward our stdin (`-i`); otherwise the command's stdin is closed at once.
    pub stdin: bool,
    /// The escape character (tty sessions only).
    pub escape: Option<u8>,
    /// Output destination.
    pub output: OutputMode,
}

enum Event {
    Stdin(Vec<u8>),
    StdinEof,
    Disconnect,
}

/// `http://h:p` → `ws://h:p` (TLS addresses are refused: this CLI speaks plain HTTP only).
pub fn ws_url(http_url: &str) -> Result<String, String> {
    if let Some(rest) = http_url.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if http_url.starts_with("https://") {
        Err("exec over https is not supported by this CLI yet".to_string())
    } else {
        Err(format!("unsupported address {http_url:?}"))
    }
}

fn host_port(ws: &str) -> String {
    let rest = ws.split_once("://").map(|(_, r)| r).unwrap_or(ws);
    let hp = rest.split(['/', '?']).next().unwrap_or(rest);
    if hp
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hp.to_string()
    } else {
        format!("{hp}:80")
    }
}

fn connect(spec: &SessionSpec) -> Result<WebSocket<TcpStream>, String> {
    let mut req = spec
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("invalid exec URL: {e}"))?;
    if !spec.token.is_empty() {
        let v = spec
            .token
            .parse()
            .map_err(|_| "invalid token".to_string())?;
        req.headers_mut().insert("X-Nomad-Token", v);
    }
    if !spec.http_auth.is_empty() {
        let enc = base64::engine::general_purpose::STANDARD.encode(spec.http_auth.as_bytes());
        if let Ok(v) = format!("Basic {enc}").parse() {
            req.headers_mut().insert("Authorization", v);
        }
    }
    let hp = host_port(&spec.url);
    let stream = TcpStream::connect(&hp).map_err(|e| match e.kind() {
        ErrorKind::ConnectionRefused => format!("dial tcp {hp}: connect: connection refused"),
        _ => format!("dial tcp {hp}: {e}"),
    })?;
    let _ = stream.set_nodelay(true);
    let (ws, _) = tungstenite::client(req, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).trim_end().to_string())
                .unwrap_or_default();
            format!(
                "Unexpected response code: {} ({body})",
                resp.status().as_u16()
            )
        }
        tungstenite::HandshakeError::Failure(other) => other.to_string(),
        tungstenite::HandshakeError::Interrupted(_) => {
            "websocket handshake interrupted".to_string()
        }
    })?;
    ws.get_ref()
        .set_read_timeout(Some(POLL))
        .map_err(|e| format!("failed to configure the connection: {e}"))?;
    Ok(ws)
}

fn spawn_stdin_reader(tx: mpsc::Sender<Event>, filter: Option<EscapeFilter>) {
    let _ = std::thread::Builder::new()
        .name("exec-stdin".into())
        .spawn(move || {
            let mut filter = filter;
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; STDIN_CHUNK];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => {
                        if let Some(esc) = filter.as_ref().and_then(|f| f.pending()) {
                            let _ = tx.send(Event::Stdin(vec![esc]));
                        }
                        let _ = tx.send(Event::StdinEof);
                        return;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        let _ = tx.send(Event::StdinEof);
                        return;
                    }
                };
                match filter.as_mut() {
                    Some(f) => {
                        let r = f.feed(&buf[..n]);
                        if !r.data.is_empty() && tx.send(Event::Stdin(r.data)).is_err() {
                            return;
                        }
                        if r.disconnect {
                            let _ = tx.send(Event::Disconnect);
                            return;
                        }
                    }
                    None => {
                        if tx.send(Event::Stdin(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
}

fn send(ws: &mut WebSocket<TcpStream>, f: &InputFrame) -> Result<(), String> {
    let mut res = ws.send(f.to_message());
    // A signal (SIGWINCH) can interrupt the write; the frame stays queued, flush again.
    for _ in 0..100 {
        match &res {
            Err(tungstenite::Error::Io(e)) if is_transient(e.kind()) => res = ws.flush(),
            _ => break,
        }
    }
    res.map_err(|e| format!("failed to send input: {e}"))
}

fn is_transient(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

fn close(ws: &mut WebSocket<TcpStream>) {
    let _ = ws.close(None);
    let _ = ws.flush();
}

/// Runs one session to its end: `Ok(exit code)` of the remote command, or the error text
/// (printed by the caller after `failed to exec into task: `).
pub fn run(spec: &SessionSpec) -> Result<i32, String> {
    install_signals();
    let mut ws = connect(spec)?;
    let mut sink = Sink {
        mode: spec.output.clone(),
        out_buf: Vec::new(),
        err_buf: Vec::new(),
    };
    let _raw = if spec.tty {
        Some(terminal::RawMode::enable()?)
    } else {
        None
    };
    let result = session_loop(&mut ws, spec, &mut sink);
    sink.flush();
    terminal::restore();
    result
}

fn session_loop(
    ws: &mut WebSocket<TcpStream>,
    spec: &SessionSpec,
    sink: &mut Sink,
) -> Result<i32, String> {
    let (tx, rx) = mpsc::channel::<Event>();
    if spec.stdin {
        let filter = (spec.tty && spec.escape.is_some()).then(|| EscapeFilter::new(spec.escape));
        spawn_stdin_reader(tx, filter);
    } else {
        let _ = tx.send(Event::StdinEof);
    }
    let mut winch_seen = WINCH.load(Ordering::SeqCst);
    if spec.tty {
        if let Some((rows, cols)) = terminal::window_size() {
            send(ws, &InputFrame::resize(rows, cols))?;
        }
    }
    let mut last_heartbeat = Instant::now();
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            close(ws);
            return Err(CANCELED.to_string());
        }
        if spec.tty {
            let w = WINCH.load(Ordering::SeqCst);
            if w != winch_seen {
                winch_seen = w;
                if let Some((rows, cols)) = terminal::window_size() {
                    send(ws, &InputFrame::resize(rows, cols))?;
                }
            }
        }
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::Stdin(d) => send(ws, &InputFrame::stdin_data(&d))?,
                Event::StdinEof => send(ws, &InputFrame::stdin_close())?,
                Event::Disconnect => {
                    terminal::restore();
                    let _ = std::io::stderr().write_all(b"\nConnection closed\n");
                    close(ws);
                    return Err(CANCELED.to_string());
                }
            }
        }
        if last_heartbeat.elapsed() >= HEARTBEAT {
            last_heartbeat = Instant::now();
            send(ws, &InputFrame::default())?;
        }
        let msg = match ws.read() {
            Ok(m) => m,
            // The poll timeout, or a signal (SIGWINCH) interrupting the read.
            Err(tungstenite::Error::Io(e)) if is_transient(e.kind()) => continue,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Err("websocket closed before receiving exit code".to_string())
            }
            Err(e) => return Err(e.to_string()),
        };
        let text = match msg {
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Binary(b) => b.to_vec(),
            Message::Close(frame) => {
                return Err(match frame {
                    Some(f) if f.code != CloseCode::Normal && !f.reason.is_empty() => {
                        f.reason.to_string()
                    }
                    Some(f) if f.code != CloseCode::Normal => {
                        format!("websocket closed with code {}", u16::from(f.code))
                    }
                    _ => "websocket closed before receiving exit code".to_string(),
                })
            }
            _ => continue,
        };
        let Ok(frame) = serde_json::from_slice::<OutputFrame>(&text) else {
            continue;
        };
        if let Some(s) = &frame.stdout {
            let d = decode(&s.data);
            if !d.is_empty() {
                sink.write(false, &d);
            }
        } else if let Some(s) = &frame.stderr {
            let d = decode(&s.data);
            if !d.is_empty() {
                sink.write(true, &d);
            }
        } else if frame.exited {
            if let Some(r) = frame.result {
                close(ws);
                return Ok(r.exit_code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_frames() {
        assert_eq!(
            serde_json::to_string(&InputFrame::stdin_data(b"hi\n")).unwrap(),
            r#"{"stdin":{"data":"aGkK"}}"#
        );
        assert_eq!(
            serde_json::to_string(&InputFrame::stdin_close()).unwrap(),
            r#"{"stdin":{"close":true}}"#
        );
        assert_eq!(
            serde_json::to_string(&InputFrame::resize(40, 120)).unwrap(),
            r#"{"tty_size":{"height":40,"width":120}}"#
        );
        assert_eq!(serde_json::to_string(&InputFrame::default()).unwrap(), "{}");
    }

    #[test]
    fn output_frames() {
        let f: OutputFrame = serde_json::from_str(r#"{"exited":true,"result":{}}"#).unwrap();
        assert!(f.exited);
        assert_eq!(f.result.unwrap().exit_code, 0);
        let f: OutputFrame =
            serde_json::from_str(r#"{"exited":true,"result":{"exit_code":137}}"#).unwrap();
        assert_eq!(f.result.unwrap().exit_code, 137);
        let f: OutputFrame = serde_json::from_str(r#"{"stdout":{"data":"aGkK"}}"#).unwrap();
        assert_eq!(decode(&f.stdout.unwrap().data), b"hi\n");
        let f: OutputFrame = serde_json::from_str(r#"{"stderr":{"close":true}}"#).unwrap();
        assert!(f.stderr.unwrap().close);
    }

    #[test]
    fn urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:4646/v1/x?a=b").unwrap(),
            "ws://127.0.0.1:4646/v1/x?a=b"
        );
        assert!(ws_url("https://h:1").is_err());
        assert_eq!(host_port("ws://127.0.0.1:4646/v1/x"), "127.0.0.1:4646");
        assert_eq!(host_port("ws://[::1]:4646/v1/x"), "[::1]:4646");
        assert_eq!(host_port("ws://example/v1"), "example:80");
    }
}
