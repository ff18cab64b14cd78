//! A WebSocket client as a test sees it: frames in, frames out, and waits
//! that either see the expected event or fail with what did arrive.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for a frame that must arrive.
pub const ARRIVAL: Duration = Duration::from_secs(10);
/// How long a test listens to be sure a frame does NOT arrive. Events are
/// routed in microseconds; this is many times the slowest routing seen.
pub const SILENCE: Duration = Duration::from_millis(300);

pub struct WsClient {
    socket: Socket,
    /// Frames read while waiting for another kind; later waits see them.
    pending: VecDeque<Value>,
    pub ready: Value,
    next_ref: u64,
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum Ending {
    Closed(Option<u16>),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl WsClient {
    /// Connects and waits for chat:ready, which must be the first frame.
    pub async fn connect(url: &str, token: &str) -> Self {
        let socket = Self::open(url, token)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let mut client = WsClient {
            socket,
            pending: VecDeque::new(),
            ready: Value::Null,
            next_ref: 0,
        };
        let first = client.next_frame().await;
        assert_eq!(
            first["event"], "chat:ready",
            "the first frame must be chat:ready, got {first}"
        );
        client.ready = first["data"].clone();
        client
    }

    pub async fn open(
        url: &str,
        token: &str,
    ) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let request = format!("{url}?token={token}").into_client_request()?;
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(socket)
    }

    pub fn session_id(&self) -> &str {
        self.ready["session_id"].as_str().unwrap_or_default()
    }

    /// The thread as chat:ready described it.
    pub fn ready_thread(&self, thread_id: Uuid) -> Value {
        self.ready["threads"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["id"] == thread_id.to_string()))
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send a frame");
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.send_raw(Message::Text(text.into())).await;
    }

    pub async fn emit(&mut self, event: &str, data: Value) {
        self.send_text(json!({"event": event, "data": data}).to_string())
            .await;
    }

    /// Sends with a fresh ref and returns the reply (chat:ack, chat:error
    /// or pong) that carries it. Other frames stay pending.
    pub async fn request(&mut self, event: &str, data: Value) -> Value {
        self.next_ref += 1;
        let reference = format!("r{}", self.next_ref);
        self.send_text(json!({"event": event, "ref": reference, "data": data}).to_string())
            .await;
        self.reply_to(&reference).await
    }

    pub async fn reply_to(&mut self, reference: &str) -> Value {
        self.wait_for(
            |f| f["ref"] == reference,
            &format!("a reply with ref {reference}"),
        )
        .await
    }

    /// chat:send with a new client_msg_id; returns the acked message.
    pub async fn send_message(&mut self, thread_id: Uuid, body: &str) -> Value {
        let reply = self
            .request(
                "chat:send",
                json!({"thread_id": thread_id, "client_msg_id": Uuid::new_v4(), "body": body}),
            )
            .await;
        assert_eq!(reply["event"], "chat:ack", "send failed: {reply}");
        reply["data"]["message"].clone()
    }

    /// The next text frame as JSON, pending ones first.
    pub async fn next_frame(&mut self) -> Value {
        if let Some(frame) = self.pending.pop_front() {
            return frame;
        }
        match timeout(ARRIVAL, self.read_json()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => panic!("the connection ended while a frame was expected"),
            Err(_) => panic!("no frame within {ARRIVAL:?}"),
        }
    }

    /// The next frame of this event; frames of other events stay pending.
    pub async fn next_event(&mut self, event: &str) -> Value {
        let frame = self.wait_for(|f| f["event"] == event, event).await;
        frame["data"].clone()
    }

    pub async fn wait_for(&mut self, wanted: impl Fn(&Value) -> bool, what: &str) -> Value {
        if let Some(i) = self.pending.iter().position(&wanted) {
            return self.pending.remove(i).unwrap_or_default();
        }
        let deadline = Instant::now() + ARRIVAL;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.read_json()).await {
                Ok(Some(frame)) if wanted(&frame) => return frame,
                Ok(Some(frame)) => self.pending.push_back(frame),
                Ok(None) => panic!(
                    "connection ended while waiting for {what}; pending: {:?}",
                    self.pending
                ),
                Err(_) => panic!(
                    "no {what} within {ARRIVAL:?}; got instead: {:?}",
                    self.pending
                ),
            }
        }
    }

    /// Fails if a frame of this event is pending or arrives within SILENCE.
    pub async fn assert_no_event(&mut self, event: &str) {
        self.assert_none(|f| f["event"] == event, event).await;
    }

    /// Fails if any frame is pending or arrives within SILENCE.
    pub async fn assert_silent(&mut self) {
        self.assert_none(|_| true, "any frame").await;
    }

    pub async fn assert_none(&mut self, unwanted: impl Fn(&Value) -> bool, what: &str) {
        if let Some(frame) = self.pending.iter().find(|f| unwanted(f)) {
            panic!("{what} must not arrive, but got {frame}");
        }
        let deadline = Instant::now() + SILENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.read_json()).await {
                Ok(Some(frame)) if unwanted(&frame) => {
                    panic!("{what} must not arrive, but got {frame}")
                }
                Ok(Some(frame)) => self.pending.push_back(frame),
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Drops frames already received and not yet looked at.
    /// The first frame already read that `wanted` accepts, without
    /// waiting for more.
    pub fn take_pending(&mut self, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let at = self.pending.iter().position(wanted)?;
        self.pending.remove(at)
    }

    pub fn forget_pending(&mut self) {
        self.pending.clear();
    }

    /// Reads until the connection ends; returns how it ended.
    pub async fn ending(&mut self) -> Ending {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.socket.next()).await {
                Err(_) => panic!("the connection did not end"),
                Ok(None) | Ok(Some(Err(_))) => return Ending::Dropped,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ending::Closed(frame.map(|f| u16::from(f.code)))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        // Wait for the server's side of the closing handshake.
        let _ = timeout(ARRIVAL, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }

    pub fn socket(&mut self) -> &mut Socket {
        &mut self.socket
    }

    async fn read_json(&mut self) -> Option<Value> {
        loop {
            match self.socket.next().await? {
                Ok(Message::Text(text)) => {
                    return Some(
                        serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("server sent non-JSON {text}: {e}")),
                    )
                }
                Ok(Message::Close(frame)) => {
                    let code = frame
                        .map(|f| u16::from(f.code))
                        .unwrap_or(CloseCode::Status.into());
                    self.pending
                        .push_back(json!({"event": "<closed>", "code": code}));
                    return None;
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}
