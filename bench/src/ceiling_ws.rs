//! `ceiling-ws`: the most fan-out this machine's network stack gives. An
//! in-process WebSocket broadcaster with no chat logic (no auth, no
//! database, no hub) pushes frames shaped and sized like confab's
//! `chat:message` to the same number of bench clients, in the same thread
//! layout, as fast as an in-flight window allows. The clients are the
//! bench's own, so both sides of the ratio pay the same client cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::client::{self, Behaviour, Counters, Shared};
use crate::counting::{reconcile, Acked};
use crate::latency::{now_us, Summary};
use crate::procstat::{CpuMeter, CpuUse, Watched};
use crate::report::progress;
use crate::world::collect;
use crate::BenchResult;

/// Frames a slow client may fall behind before the broadcaster drops it.
const CHANNEL_FRAMES: usize = 65536;
/// Most frames one connection writes before a flush.
const WRITE_BATCH_FRAMES: usize = 64;
const PACER_TICK: Duration = Duration::from_millis(1);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize)]
pub struct CeilingWs {
    pub threads: usize,
    pub members: usize,
    pub messages: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub missing: u64,
    pub delivery: Summary,
    /// The bench process's CPU while it ran (broadcaster and clients).
    pub bench_cpu: Option<CpuUse>,
}

/// The bare server: each connection names its thread in the path
/// (`/t/<n>`) and gets every frame broadcast to that thread.
async fn serve(listener: TcpListener, rooms: Arc<Vec<broadcast::Sender<Arc<String>>>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let mut path = String::new();
            // The error type is tungstenite's Callback contract, not ours.
            #[allow(clippy::result_large_err)]
            let callback = |request: &Request, response: Response| {
                path = request.uri().path().to_string();
                Ok(response)
            };
            let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                return;
            };
            let frames = path
                .strip_prefix("/t/")
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| rooms.get(n))
                .map(broadcast::Sender::subscribe);
            // Only the pacer keeps the senders, so its end ends this task.
            drop(rooms);
            let Some(mut frames) = frames else {
                return;
            };
            let ready = r#"{"event":"chat:ready","data":{"threads":[]}}"#.to_string();
            if ws.send(Message::Text(ready)).await.is_err() {
                return;
            }
            // Frames queued together go out in one write, as any decent
            // server would do; the ceiling must not be held down by a
            // syscall per frame.
            while let Ok(frame) = frames.recv().await {
                let mut batch = vec![frame];
                while batch.len() < WRITE_BATCH_FRAMES {
                    match frames.try_recv() {
                        Ok(frame) => batch.push(frame),
                        Err(_) => break,
                    }
                }
                for frame in batch {
                    if ws
                        .feed(Message::Text(frame.as_ref().clone()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A frame with the shape and size of confab's chat:message.
fn message_frame(thread_id: Uuid, seq: i64, sender: Uuid, pad: &str) -> String {
    format!(
        r#"{{"event":"chat:message","data":{{"message":{{"id":"{}","thread_id":"{thread_id}","seq":{seq},"sender_id":"{sender}","client_msg_id":"{}","type":"text","body":"{} {pad}","metadata":null,"created_at":"2026-01-01T00:00:00.000Z","edited_at":null,"deleted_at":null}}}}}}"#,
        Uuid::now_v7(),
        Uuid::new_v4(),
        now_us(),
    )
}

pub async fn run(
    threads: usize,
    members: usize,
    duration: Duration,
    window: u64,
    body_bytes: usize,
    concurrency: usize,
) -> BenchResult<CeilingWs> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let rooms: Arc<Vec<_>> = Arc::new(
        (0..threads)
            .map(|_| broadcast::channel(CHANNEL_FRAMES).0)
            .collect(),
    );
    let server = tokio::spawn(serve(listener, rooms.clone()));
    let thread_ids: Vec<Uuid> = (0..threads).map(|_| Uuid::new_v4()).collect();
    let shared = Arc::new(Shared::new(
        thread_ids.clone(),
        vec![members + 1; threads],
        body_bytes,
    ));
    let sessions = {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let opened: Vec<_> = stream::iter(0..threads * members)
            .map(|i| async move {
                let (ws, _) = client::open(&format!("ws://{addr}/t/{}", i / members), "-").await?;
                Ok::<_, crate::BenchError>((i, ws))
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        let mut opened = opened;
        opened.sort_by_key(|(i, _)| *i);
        let mut sessions = Vec::with_capacity(opened.len());
        for (i, ws) in opened {
            sessions.push(client::spawn(i, ws, shared.clone(), Behaviour::default())?);
        }
        sessions
    };
    let sender = Uuid::new_v4();
    let counters = &shared.counters;
    let bar = progress(duration, "ceiling-ws", shared.clone());
    let cpu = CpuMeter::start(Watched::Myself);
    let started = Instant::now();
    let mut seqs = vec![0i64; threads];
    let mut issued: u64 = 0;
    let mut acked = Vec::new();
    let mut ticker = tokio::time::interval(PACER_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started.elapsed() < duration {
        ticker.tick().await;
        // A message counts as answered once all its members have it.
        let answered = Counters::get(&counters.delivered) / members.max(1) as u64;
        let room_for = window.saturating_sub(issued.saturating_sub(answered));
        for _ in 0..room_for {
            let thread = (issued % threads.max(1) as u64) as usize;
            seqs[thread] += 1;
            let frame = message_frame(thread_ids[thread], seqs[thread], sender, &shared.body_pad);
            let _ = rooms[thread].send(Arc::new(frame));
            acked.push(Acked {
                thread,
                seq: seqs[thread],
                sender: usize::MAX,
            });
            issued += 1;
        }
    }
    let owed = issued * members as u64;
    let drain = Instant::now();
    while Counters::get(&counters.delivered) < owed && drain.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bench_cpu = cpu.finish();
    bar.finish_and_clear();
    let merged = collect(&sessions).await?;
    let layout: Vec<Vec<usize>> = (0..threads)
        .map(|t| (t * members..(t + 1) * members).collect())
        .collect();
    let counts = reconcile(&acked, &layout, &merged.received);
    for session in &sessions {
        let _ = session.send(client::Command::Close);
    }
    server.abort();
    Ok(CeilingWs {
        threads,
        members,
        messages: issued,
        deliveries: counts.delivered,
        deliveries_per_s: counts.delivered as f64 / elapsed,
        missing: counts.missing,
        delivery: Summary::of(&merged.delivery),
        bench_cpu,
    })
}
