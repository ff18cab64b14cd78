//! Reading a connection to its end: through a WebSocket client, or as raw
//! bytes off the TCP stream when the test must never write (a client would
//! answer pings and the close, and hide what the server sent last).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::ws::ARRIVAL;

/// What a raw socket delivered until it ended.
#[derive(Debug, Default)]
pub struct Drained {
    pub texts: Vec<Value>,
    pub pings: usize,
    /// `Some(code)` if a close frame came (code 1005 if it had none).
    pub close: Option<u16>,
}

/// Reads everything until the connection ends (completing the closing
/// handshake if the server starts it).
pub async fn drain<S>(socket: &mut WebSocketStream<S>) -> Drained
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut drained = Drained::default();
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, socket.next()).await {
            Err(_) => panic!("the connection did not end; got so far: {drained:?}"),
            Ok(None) | Ok(Some(Err(_))) => return drained,
            Ok(Some(Ok(Message::Text(text)))) => drained.texts.push(
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("server sent non-JSON {text}: {e}")),
            ),
            Ok(Some(Ok(Message::Ping(_)))) => drained.pings += 1,
            Ok(Some(Ok(Message::Close(frame)))) => {
                drained.close = Some(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Server frames read straight off the TCP stream until it ends, without
/// ever writing: a WebSocket client answers pings and close frames, and a
/// write to a connection the server has closed fails the read after it,
/// hiding what the server sent last.
pub async fn raw_frames_until_end<S>(stream: &mut S) -> Drained
where
    S: tokio::io::AsyncRead + Unpin,
{
    raw_frames_until_end_within(stream, ARRIVAL).await
}

/// [`raw_frames_until_end`] for a connection with megabytes queued behind
/// a tiny receive window: each few kilobytes wait for this task to be
/// scheduled, so on a loaded machine the whole takes far longer than one
/// frame's [`ARRIVAL`].
pub async fn raw_frames_until_end_within<S>(stream: &mut S, limit: Duration) -> Drained
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut bytes = Vec::new();
    let deadline = Instant::now() + limit;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "the connection did not end within {limit:?} ({} bytes read)",
                bytes.len()
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    let mut drained = Drained::default();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let (first, second) = (bytes[at], bytes[at + 1]);
        assert_eq!(second & 0x80, 0, "a server frame must not be masked");
        let (len, header) = match second & 0x7f {
            126 if at + 4 <= bytes.len() => (
                usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])),
                4,
            ),
            127 if at + 10 <= bytes.len() => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&bytes[at + 2..at + 10]);
                (
                    usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                    10,
                )
            }
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        let Some(end) = (at + header).checked_add(len).filter(|&e| e <= bytes.len()) else {
            break; // cut off by the end of the connection
        };
        let payload = &bytes[at + header..end];
        match first & 0x0f {
            0x1 => drained.texts.push(
                serde_json::from_slice(payload)
                    .unwrap_or_else(|e| panic!("server sent non-JSON text: {e}")),
            ),
            0x8 => {
                drained.close = Some(match payload {
                    [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                    _ => 1005,
                })
            }
            0x9 => drained.pings += 1,
            _ => {}
        }
        at = end;
    }
    drained
}
