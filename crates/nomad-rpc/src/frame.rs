//! Frames of the Nomad RPC protocol (0x01): a u32 big-endian length, then that many bytes of
//! JSON. Requests are [`RequestFrame`]s, answers [`ResponseFrame`]s with the request's id.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame (either direction) accepted or sent: 64 MiB.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// One request: `{"id": 7, "method": "Node.Register", "body": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the caller, unique among its requests in flight on the connection.
    pub id: u64,
    /// `Service.Method`, e.g. `Node.GetClientAllocs`.
    pub method: String,
    /// The method's argument.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// One answer: `{"id": 7, "error": null, "body": {...}}`; `error` set means `body` is null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The id of the request this answers.
    pub id: u64,
    /// The method's error, as its message.
    #[serde(default)]
    pub error: Option<String>,
    /// The method's result.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The length prefix is over [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME} byte limit")]
    TooLarge(usize),
    /// The rest of a started frame did not arrive in time.
    #[error("timed out reading a frame body of {0} bytes")]
    Timeout(usize),
    /// The body is not the expected JSON.
    #[error("malformed frame: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The transport failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as one frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, msg).map_err(FrameError::Malformed)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
    buf[..4].copy_from_slice(&len32.to_be_bytes());
    Ok(buf)
}

/// Writes an already encoded frame and flushes.
pub async fn write_raw<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

/// Reads one frame's bytes. Waits as long as needed for the length prefix (the caller
/// decides about idle connections); once a frame has started, its body must arrive within
/// `body_timeout`. The body buffer grows with the data actually received, so a lying length
/// prefix costs no memory.
pub async fn read_raw<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    body_timeout: Duration,
) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let first = r.read(&mut len).await?;
    if first == 0 {
        return Err(FrameError::Closed);
    }
    let rest = async {
        if first < 4 {
            r.read_exact(&mut len[first..]).await?;
        }
        let n = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
        if n > MAX_FRAME {
            return Err(FrameError::TooLarge(n));
        }
        let mut body = Vec::with_capacity(n.min(64 * 1024));
        let got = (&mut *r).take(n as u64).read_to_end(&mut body).await?;
        if got < n {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(body)
    };
    match tokio::time::timeout(body_timeout, rest).await {
        Ok(res) => res,
        Err(_) => Err(FrameError::Timeout(u32::from_be_bytes(len) as usize)),
    }
}

/// Reads and decodes one frame.
pub async fn read<T: serde::de::DeserializeOwned, R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    body_timeout: Duration,
) -> Result<T, FrameError> {
    let raw = read_raw(r, body_timeout).await?;
    serde_json::from_slice(&raw).map_err(FrameError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip() {
        let req = RequestFrame {
            id: 3,
            method: "Status.Ping".into(),
            body: serde_json::json!({"a": 1}),
        };
        let bytes = encode(&req).unwrap();
        assert_eq!(
            u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
            bytes.len() - 4
        );
        let mut r = &bytes[..];
        let back: RequestFrame = read(&mut r, Duration::from_secs(1)).await.unwrap();
        assert_eq!(back, req);
        // Nothing left: a clean close.
        assert!(matches!(
            read::<RequestFrame, _>(&mut r, Duration::from_secs(1)).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let huge = (MAX_FRAME as u32 + 1).to_be_bytes();
        let mut r = &huge[..];
        assert!(matches!(
            read_raw(&mut r, Duration::from_secs(1)).await,
            Err(FrameError::TooLarge(_))
        ));
        let mut short = 10u32.to_be_bytes().to_vec();
        short.extend_from_slice(b"{}");
        let mut r = &short[..];
        assert!(matches!(
            read_raw(&mut r, Duration::from_secs(1)).await,
            Err(FrameError::Io(_))
        ));
        let mut bad = 3u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"{{{");
        let mut r = &bad[..];
        assert!(matches!(
            read::<RequestFrame, _>(&mut r, Duration::from_secs(1)).await,
            Err(FrameError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn response_defaults() {
        let r: ResponseFrame = serde_json::from_str(r#"{"id": 1}"#).unwrap();
        assert_eq!(r.error, None);
        assert!(r.body.is_null());
    }
}
