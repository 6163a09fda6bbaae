//! A server's `/v1/client/...` requests for allocations on other nodes, forwarded to the node
//! that runs them, as Nomad's servers do: API users (python-nomad, the web UI, the Go `api`
//! package falling back when it may not read the node) can send logs, files, stats, signals
//! and exec to any server. Plain requests are relayed with their streaming bodies; exec and
//! action websockets are bridged frame by frame. The caller's token goes along, and the node
//! checks it again.
//!
//! With `tls { http = true }` the node is reached over HTTPS, trusting the agent's CA and
//! presenting the agent's own certificate (for `verify_https_client`); the node's certificate
//! must name the address the node advertises.

use axum::body::Body;
use axum::extract::ws::{Message as AxMessage, WebSocket};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message as TMessage;

use crate::error::ApiError;
use crate::relay::PASSED;
use crate::Ctx;

/// The node's HTTP address when `alloc_id` runs on another node than this agent's own
/// client and this agent is a server that knows where that node is.
pub(crate) fn target(ctx: &Ctx, alloc_id: &str) -> Option<String> {
    let server = ctx.state.server.as_ref()?;
    let snap = server.state().snapshot();
    let alloc = snap.alloc(alloc_id)?;
    if let Some(c) = &ctx.state.client {
        if c.node_id() == alloc.node_id {
            return None;
        }
    }
    let node = snap.node(&alloc.node_id)?;
    (!node.http_addr.is_empty()).then(|| node.http_addr.clone())
}

/// A connection to the node: plain TCP, or TLS over it.
trait NodeStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> NodeStream for T {}

async fn connect(ctx: &Ctx, node: &str) -> Result<Box<dyn NodeStream>, ApiError> {
    let tcp = tokio::net::TcpStream::connect(node)
        .await
        .map_err(|e| ApiError::internal(format!("failed to reach node {node}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &ctx.state.agent.node_tls else {
        return Ok(Box::new(tcp));
    };
    let fail = |e: String| ApiError::internal(format!("TLS to node {node}: {e}"));
    let config = nomad_tls::client_config(tls).map_err(|e| fail(e.to_string()))?;
    let host = node.rsplit_once(':').map_or(node, |(h, _)| h);
    let name = tls
        .rustls_server_name(host)
        .map_err(|e| fail(e.to_string()))?;
    let stream = nomad_tls::tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(Box::new(stream))
}

/// Relays the request to `node` (`host:port`) and its answer back.
pub(crate) async fn forward(ctx: Ctx, node: &str) -> Result<Response, ApiError> {
    let failed =
        |e: &dyn std::fmt::Display| ApiError::internal(format!("forwarding to node {node}: {e}"));
    let path = ctx.path_and_query.clone();
    let stream = connect(&ctx, node).await?;
    if let Some(ws) = ctx.ws {
        let scheme = if ctx.state.agent.node_tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        let url = format!("{scheme}://{node}{path}");
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                url.as_str(),
            )
            .map_err(|e| failed(&e))?;
        for h in PASSED {
            if let Some(v) = ctx.headers.get(*h) {
                req.headers_mut().insert(*h, v.clone());
            }
        }
        // The handshake first, so a refusal (403, 404) reaches the caller as an HTTP answer.
        let (upstream, _) = match tokio_tungstenite::client_async(req, stream).await {
            Ok(ok) => ok,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = StatusCode::from_u16(resp.status().as_u16())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Err(ApiError::new(status, body.trim().to_string()));
            }
            Err(e) => return Err(failed(&e)),
        };
        return Ok(ws.on_upgrade(move |socket| bridge(socket, upstream)));
    }

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "forwarded connection ended");
        }
    });
    let mut req = Request::builder().method(ctx.method.clone()).uri(path);
    for h in PASSED {
        if let Some(v) = ctx.headers.get(*h) {
            req = req.header(*h, v.clone());
        }
    }
    let req = req
        .header(
            "host",
            HeaderValue::from_str(node).unwrap_or(HeaderValue::from_static("node")),
        )
        .body(http_body_util::Full::new(ctx.body))
        .map_err(|e| failed(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| failed(&e))?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}

/// Copies frames both ways, close frames included; once one side has closed, the other gets
/// a few seconds to finish its close handshake (so the caller reads the exit frame and a clean
/// close, not a reset).
async fn bridge(
    socket: WebSocket,
    upstream: tokio_tungstenite::WebSocketStream<Box<dyn NodeStream>>,
) {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame as TClose;
    let (mut down_tx, mut down_rx) = socket.split();
    let (mut up_tx, mut up_rx) = upstream.split();
    let to_node = async move {
        while let Some(Ok(m)) = down_rx.next().await {
            let (m, last) = match m {
                AxMessage::Text(t) => (TMessage::text(t.as_str()), false),
                AxMessage::Binary(b) => (TMessage::binary(b), false),
                AxMessage::Ping(p) => (TMessage::Ping(p), false),
                AxMessage::Pong(p) => (TMessage::Pong(p), false),
                AxMessage::Close(f) => (
                    TMessage::Close(f.map(|f| TClose {
                        code: f.code.into(),
                        reason: f.reason.as_str().into(),
                    })),
                    true,
                ),
            };
            if up_tx.send(m).await.is_err() || last {
                break;
            }
        }
        let _ = up_tx.close().await;
    };
    let to_caller = async move {
        while let Some(Ok(m)) = up_rx.next().await {
            let (m, last) = match m {
                TMessage::Text(t) => (AxMessage::Text(t.as_str().into()), false),
                TMessage::Binary(b) => (AxMessage::Binary(b), false),
                TMessage::Ping(p) => (AxMessage::Ping(p), false),
                TMessage::Pong(p) => (AxMessage::Pong(p), false),
                TMessage::Close(f) => (
                    AxMessage::Close(f.map(|f| axum::extract::ws::CloseFrame {
                        code: f.code.into(),
                        reason: f.reason.as_str().into(),
                    })),
                    true,
                ),
                TMessage::Frame(_) => continue,
            };
            if down_tx.send(m).await.is_err() || last {
                break;
            }
        }
        let _ = down_tx.close().await;
    };
    tokio::pin!(to_node);
    tokio::pin!(to_caller);
    let grace = std::time::Duration::from_secs(5);
    tokio::select! {
        () = &mut to_node => { let _ = tokio::time::timeout(grace, to_caller).await; }
        () = &mut to_caller => { let _ = tokio::time::timeout(grace, to_node).await; }
    }
}
