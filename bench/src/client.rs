//! One bench WebSocket session: connects, waits for `chat:ready`, then runs
//! as a task that sends what the scenario commands and accounts for every
//! frame that arrives (seq tracking, latencies, errors). Its figures stay
//! in the task until the scenario asks for a report, so the hot path
//! touches no lock; only a few atomic counters feed the progress bar.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::counting::{Acked, SeqTracker};
use crate::latency::{histogram, now_us, record};
use crate::BenchResult;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a session waits for `chat:ready` before the run fails.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What every session of a run shares: the bench's thread table and the
/// live counters behind the progress bar.
pub struct Shared {
    pub thread_ids: Vec<Uuid>,
    pub thread_index: HashMap<Uuid, usize>,
    /// Sessions in each thread, to know how many deliveries an ack owes.
    pub thread_sizes: Vec<usize>,
    /// Padding that brings bodies to the requested size.
    pub body_pad: String,
    pub counters: Counters,
    /// Cleared to stop closed-loop senders (receipts).
    pub running: AtomicBool,
}

impl Shared {
    pub fn new(thread_ids: Vec<Uuid>, thread_sizes: Vec<usize>, body_bytes: usize) -> Self {
        let thread_index = thread_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        Shared {
            thread_ids,
            thread_index,
            thread_sizes,
            body_pad: body_padding(body_bytes),
            counters: Counters::default(),
            running: AtomicBool::new(true),
        }
    }

    /// The id of the bench's thread number `thread` (nil if out of range,
    /// which the server answers `not_member`, counted as an error).
    pub fn thread_id(&self, thread: usize) -> Uuid {
        self.thread_ids.get(thread).copied().unwrap_or_default()
    }
}

/// A body is the send time in microseconds, a space, and padding.
pub fn body_padding(body_bytes: usize) -> String {
    "x".repeat(body_bytes.saturating_sub(12).max(1))
}

pub fn body_sent_us(body: &str) -> Option<u64> {
    body.split(' ').next()?.parse().ok()
}

#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    pub delivered: AtomicU64,
    /// Deliveries owed by the acks so far.
    pub expected: AtomicU64,
    pub receipts: AtomicU64,
    pub synced: AtomicU64,
    pub closed: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

pub enum Command {
    Send {
        thread: usize,
    },
    /// Catch up with `chat:sync` from `after_seq`, paging until done.
    Sync {
        thread: usize,
        after_seq: i64,
    },
    Report(oneshot::Sender<SessionReport>),
    Close,
}

/// How a session answers what it receives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    /// Acknowledge each message with chat:delivered then chat:mark-read.
    pub auto_receipts: bool,
    /// After the read receipt of its last send, send again (while running).
    pub send_on_read: bool,
}

/// What a session saw since its last report.
pub struct SessionReport {
    pub session: usize,
    pub acked: Vec<Acked>,
    pub received: Vec<(usize, SeqTracker)>,
    pub ack: Histogram<u64>,
    pub delivery: Histogram<u64>,
    pub receipt_delivered: Histogram<u64>,
    pub receipt_read: Histogram<u64>,
    pub sync: Histogram<u64>,
    pub errors: HashMap<String, u64>,
    pub closed_by_server: Option<String>,
}

/// `chat:ready` as the bench needs it: each thread's last seq.
#[derive(Debug, Deserialize)]
pub struct Ready {
    pub threads: Vec<ReadyThread>,
}

#[derive(Debug, Deserialize)]
pub struct ReadyThread {
    pub id: Uuid,
    pub last_seq: i64,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(rename = "ref", default, borrow)]
    reference: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireMessage {
    thread_id: Uuid,
    seq: i64,
    body: Option<String>,
}

#[derive(Deserialize)]
struct MessageData {
    message: WireMessage,
}

#[derive(Deserialize)]
struct SyncData {
    messages: Vec<WireMessage>,
    has_more: bool,
}

#[derive(Deserialize)]
struct ErrorData {
    code: String,
}

#[derive(Deserialize)]
struct CursorEvent {
    thread_id: Uuid,
    up_to_seq: i64,
}

/// Opens a session and waits for its `chat:ready`.
pub async fn open(ws_url: &str, token: &str) -> BenchResult<(Ws, Ready)> {
    let url = format!("{ws_url}?token={token}");
    let (mut ws, _) = tokio::time::timeout(
        READY_TIMEOUT,
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .map_err(|_| "timed out opening a WebSocket")?
    .map_err(|e| format!("opening a WebSocket to {ws_url}: {e}"))?;
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "no chat:ready within the timeout")?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                let frame: Frame = serde_json::from_str(&text)?;
                if frame.event == "chat:ready" {
                    let data = frame.data.ok_or("chat:ready without data")?;
                    return Ok((ws, serde_json::from_str(data.get())?));
                }
                return Err(
                    format!("first frame was {} instead of chat:ready", frame.event).into(),
                );
            }
            Some(Ok(Message::Close(close))) => {
                return Err(format!("closed before chat:ready: {close:?}").into())
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("before chat:ready: {e}").into()),
            None => return Err("connection ended before chat:ready".into()),
        }
    }
}

enum Pending {
    Send { thread: usize, sent_us: u64 },
    Sync { thread: usize },
}

struct Session {
    index: usize,
    shared: Arc<Shared>,
    behaviour: Behaviour,
    next_ref: u64,
    pending: HashMap<u64, Pending>,
    trackers: HashMap<usize, SeqTracker>,
    acked: Vec<Acked>,
    ack: Histogram<u64>,
    delivery: Histogram<u64>,
    receipt_delivered: Histogram<u64>,
    receipt_read: Histogram<u64>,
    sync: Histogram<u64>,
    errors: HashMap<String, u64>,
    closed_by_server: Option<String>,
    /// Sends whose delivered / read receipt has not come back yet.
    awaiting_delivered: BTreeMap<(usize, i64), u64>,
    awaiting_read: BTreeMap<(usize, i64), u64>,
    syncs_open: usize,
    sync_started_us: u64,
}

/// Starts the session's task; the returned sender commands it.
pub fn spawn(
    index: usize,
    ws: Ws,
    shared: Arc<Shared>,
    behaviour: Behaviour,
) -> BenchResult<mpsc::UnboundedSender<Command>> {
    let session = Session {
        index,
        shared,
        behaviour,
        next_ref: 0,
        pending: HashMap::new(),
        trackers: HashMap::new(),
        acked: Vec::new(),
        ack: histogram()?,
        delivery: histogram()?,
        receipt_delivered: histogram()?,
        receipt_read: histogram()?,
        sync: histogram()?,
        errors: HashMap::new(),
        closed_by_server: None,
        awaiting_delivered: BTreeMap::new(),
        awaiting_read: BTreeMap::new(),
        syncs_open: 0,
        sync_started_us: 0,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(session.run(ws, rx));
    Ok(tx)
}

impl Session {
    async fn run(mut self, mut ws: Ws, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut out: Vec<String> = Vec::new();
        let mut open = true;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Send { thread }) => out.push(self.send_frame(thread)),
                    Some(Command::Sync { thread, after_seq }) => {
                        if self.syncs_open == 0 {
                            self.sync_started_us = now_us();
                        }
                        self.syncs_open += 1;
                        out.push(self.sync_frame(thread, after_seq));
                    }
                    Some(Command::Report(reply)) => {
                        let _ = reply.send(self.report());
                    }
                    Some(Command::Close) | None => {
                        if open {
                            let _ = ws.close(None).await;
                        }
                        return;
                    }
                },
                frame = ws.next(), if open => match frame {
                    Some(Ok(Message::Text(text))) => self.on_text(&text, &mut out),
                    Some(Ok(Message::Close(close))) => {
                        self.closed_by_server = Some(close.map_or_else(
                            || "closed".to_string(),
                            |c| format!("{} {}", u16::from(c.code), c.reason),
                        ));
                        bump(&self.shared.counters.closed, 1);
                        open = false;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.closed_by_server = Some(e.to_string());
                        bump(&self.shared.counters.closed, 1);
                        open = false;
                    }
                    None => {
                        self.closed_by_server = Some("connection ended".into());
                        bump(&self.shared.counters.closed, 1);
                        open = false;
                    }
                },
            }
            if open && !out.is_empty() {
                for frame in out.drain(..) {
                    if ws.feed(Message::Text(frame)).await.is_err() {
                        open = false;
                        break;
                    }
                }
                if open && ws.flush().await.is_err() {
                    open = false;
                }
            }
            out.clear();
        }
    }

    fn new_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    fn send_frame(&mut self, thread: usize) -> String {
        let reference = self.new_ref();
        let sent_us = now_us();
        self.pending
            .insert(reference, Pending::Send { thread, sent_us });
        bump(&self.shared.counters.sent, 1);
        let thread_id = self.shared.thread_id(thread);
        format!(
            r#"{{"event":"chat:send","ref":"{reference}","data":{{"thread_id":"{thread_id}","client_msg_id":"{}","body":"{sent_us} {}"}}}}"#,
            Uuid::new_v4(),
            self.shared.body_pad
        )
    }

    fn sync_frame(&mut self, thread: usize, after_seq: i64) -> String {
        let reference = self.new_ref();
        self.pending.insert(reference, Pending::Sync { thread });
        let thread_id = self.shared.thread_id(thread);
        format!(
            r#"{{"event":"chat:sync","ref":"{reference}","data":{{"thread_id":"{thread_id}","after_seq":{after_seq},"limit":500}}}}"#
        )
    }

    fn on_text(&mut self, text: &str, out: &mut Vec<String>) {
        let Ok(frame) = serde_json::from_str::<Frame>(text) else {
            self.count_error("unparsable frame");
            return;
        };
        let data = frame.data.map_or("null", RawValue::get);
        match frame.event.as_ref() {
            "chat:message" => {
                if let Ok(MessageData { message }) = serde_json::from_str(data) {
                    self.on_message(&message, out);
                }
            }
            "chat:ack" => {
                let pending = frame
                    .reference
                    .and_then(|r| r.parse::<u64>().ok())
                    .and_then(|r| self.pending.remove(&r));
                match pending {
                    Some(Pending::Send { thread, sent_us }) => {
                        self.on_send_ack(thread, sent_us, data)
                    }
                    Some(Pending::Sync { thread }) => self.on_sync_page(thread, data, out),
                    None => {}
                }
            }
            "chat:error" => {
                if let Some(r) = frame.reference.and_then(|r| r.parse::<u64>().ok()) {
                    if let Some(Pending::Sync { .. }) = self.pending.remove(&r) {
                        self.finish_sync_stream();
                    }
                }
                let code = serde_json::from_str::<ErrorData>(data)
                    .map_or_else(|_| "unknown".to_string(), |e| e.code);
                self.count_error(&code);
            }
            "chat:delivered" => {
                if let Ok(event) = serde_json::from_str::<CursorEvent>(data) {
                    self.on_receipt(&event, false, out);
                }
            }
            "chat:read" => {
                if let Ok(event) = serde_json::from_str::<CursorEvent>(data) {
                    self.on_receipt(&event, true, out);
                }
            }
            _ => {}
        }
    }

    fn count_error(&mut self, code: &str) {
        *self.errors.entry(code.to_string()).or_default() += 1;
        bump(&self.shared.counters.errors, 1);
    }

    fn on_message(&mut self, message: &WireMessage, out: &mut Vec<String>) {
        let Some(&thread) = self.shared.thread_index.get(&message.thread_id) else {
            return;
        };
        let now = now_us();
        self.trackers
            .entry(thread)
            .or_default()
            .observe(message.seq);
        bump(&self.shared.counters.delivered, 1);
        if let Some(sent) = message.body.as_deref().and_then(body_sent_us) {
            record(&mut self.delivery, now.saturating_sub(sent));
        }
        if self.behaviour.auto_receipts {
            for event in ["chat:delivered", "chat:mark-read"] {
                out.push(format!(
                    r#"{{"event":"{event}","data":{{"thread_id":"{}","up_to_seq":{}}}}}"#,
                    message.thread_id, message.seq
                ));
            }
        }
    }

    fn on_send_ack(&mut self, thread: usize, sent_us: u64, data: &str) {
        let Ok(MessageData { message }) = serde_json::from_str(data) else {
            self.count_error("ack without a message");
            return;
        };
        let now = now_us();
        record(&mut self.ack, now.saturating_sub(sent_us));
        self.acked.push(Acked {
            thread,
            seq: message.seq,
            sender: self.index,
        });
        let counters = &self.shared.counters;
        bump(&counters.acked, 1);
        let owed = self
            .shared
            .thread_sizes
            .get(thread)
            .map_or(0, |n| n.saturating_sub(1));
        bump(&counters.expected, owed as u64);
        if self.behaviour.send_on_read {
            self.awaiting_delivered
                .insert((thread, message.seq), sent_us);
            self.awaiting_read.insert((thread, message.seq), sent_us);
        }
    }

    fn on_sync_page(&mut self, thread: usize, data: &str, out: &mut Vec<String>) {
        let Ok(page) = serde_json::from_str::<SyncData>(data) else {
            self.count_error("sync page unparsable");
            self.finish_sync_stream();
            return;
        };
        let tracker = self.trackers.entry(thread).or_default();
        let mut last = None;
        for message in &page.messages {
            tracker.observe(message.seq);
            last = Some(message.seq);
        }
        bump(&self.shared.counters.delivered, page.messages.len() as u64);
        match (page.has_more, last) {
            (true, Some(after_seq)) => out.push(self.sync_frame(thread, after_seq)),
            _ => self.finish_sync_stream(),
        }
    }

    fn finish_sync_stream(&mut self) {
        self.syncs_open = self.syncs_open.saturating_sub(1);
        if self.syncs_open == 0 {
            record(
                &mut self.sync,
                now_us().saturating_sub(self.sync_started_us),
            );
            bump(&self.shared.counters.synced, 1);
        }
    }

    fn on_receipt(&mut self, event: &CursorEvent, read: bool, out: &mut Vec<String>) {
        let Some(&thread) = self.shared.thread_index.get(&event.thread_id) else {
            return;
        };
        let now = now_us();
        let (awaiting, histogram) = if read {
            (&mut self.awaiting_read, &mut self.receipt_read)
        } else {
            (&mut self.awaiting_delivered, &mut self.receipt_delivered)
        };
        let covered: Vec<(usize, i64)> = awaiting
            .range((thread, i64::MIN)..=(thread, event.up_to_seq))
            .map(|(k, _)| *k)
            .collect();
        for key in covered {
            if let Some(sent) = awaiting.remove(&key) {
                record(histogram, now.saturating_sub(sent));
                if read {
                    bump(&self.shared.counters.receipts, 1);
                }
            }
        }
        if read
            && self.behaviour.send_on_read
            && self.awaiting_read.is_empty()
            && self.shared.running.load(Ordering::Relaxed)
        {
            out.push(self.send_frame(thread));
        }
    }

    fn report(&mut self) -> SessionReport {
        let received = self
            .trackers
            .iter_mut()
            .map(|(&thread, tracker)| {
                let snapshot = tracker.clone();
                tracker.next_step();
                (thread, snapshot)
            })
            .collect();
        let take = |h: &mut Histogram<u64>| {
            let copy = h.clone();
            h.reset();
            copy
        };
        SessionReport {
            session: self.index,
            acked: std::mem::take(&mut self.acked),
            received,
            ack: take(&mut self.ack),
            delivery: take(&mut self.delivery),
            receipt_delivered: take(&mut self.receipt_delivered),
            receipt_read: take(&mut self.receipt_read),
            sync: take(&mut self.sync),
            errors: std::mem::take(&mut self.errors),
            closed_by_server: self.closed_by_server.clone(),
        }
    }
}
