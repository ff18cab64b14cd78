//! Receipt cursors: `last_delivered_seq` and `last_read_seq` per member,
//! moved by chat:delivered and chat:mark-read.
//!
//! Invariant: `0 <= last_read_seq <= last_delivered_seq <= threads.last_seq`
//! and neither ever decreases. The statement clamps each request and only
//! ever raises a cursor; the table's CHECK and trigger refuse anything else.
//!
//! Every recipient answers every message with one or two receipts, so they
//! are most of what a busy server writes. They are group-committed the way
//! sends are: an advance is written at once, with whatever is already
//! waiting, when no batch of receipts is being written; while one is,
//! advances gather and the next batch takes them all. A batch is one
//! statement in its own implicit transaction (`write.rs`): one round trip
//! and one commit for the lot.
//!
//! A batch holds at most one advance per membership: a second one for the
//! same member and thread waits for the next batch, so each sees the
//! cursors the one before it committed, in arrival order. One batch is
//! written at a time, and it locks its memberships in (thread, user) order,
//! so batches of several servers cannot deadlock either.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use actix::Message;
use tokio::sync::{mpsc, oneshot};

use super::{enqueue, Db, Subscribers};
use crate::auth::Claimed;
use crate::domain::{Seq, SessionId, ThreadId, UserId};
use crate::error::AppError;
use crate::metrics::metrics;

mod write;

/// The most advances one statement carries.
const BATCH_MAX: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    Delivered,
    /// Reading also delivers: the delivered cursor is raised to match.
    Read,
}

/// chat:delivered and chat:mark-read.
#[derive(Message)]
#[rtype(result = "Result<CursorOutcome, AppError>")]
pub struct AdvanceCursor {
    pub member: Claimed,
    pub thread_id: ThreadId,
    pub kind: CursorKind,
    pub up_to_seq: Seq,
    pub origin: Option<SessionId>,
}

impl AdvanceCursor {
    fn membership(&self) -> (ThreadId, UserId) {
        (self.thread_id, self.member.user_id)
    }
}

/// The cursors after the request (unchanged if it asked for nothing new).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorOutcome {
    pub last_delivered_seq: i64,
    pub last_read_seq: i64,
}

type Reply = oneshot::Sender<Result<CursorOutcome, AppError>>;

struct PendingAdvance {
    request: AdvanceCursor,
    reply: Reply,
}

/// The way into the receipt batcher. Dropping every clone ends it once the
/// advances already queued are written.
#[derive(Clone)]
pub struct CursorBatcher {
    queue: mpsc::UnboundedSender<PendingAdvance>,
}

impl CursorBatcher {
    /// Starts the batcher on the current arbiter, beside the pool's other
    /// users. A batch that takes longer than `deadline` is abandoned and
    /// each of its advances answers `unavailable`.
    pub fn start(db: Db, subscribers: Subscribers, deadline: Duration) -> Self {
        let (queue, incoming) = mpsc::unbounded_channel();
        actix::spawn(gather(incoming, db, subscribers, deadline));
        Self { queue }
    }

    /// Queues an advance; the answer comes after its batch's commit.
    pub fn submit(
        &self,
        request: AdvanceCursor,
    ) -> oneshot::Receiver<Result<CursorOutcome, AppError>> {
        let (reply, answer) = oneshot::channel();
        enqueue(&self.queue, PendingAdvance { request, reply });
        answer
    }
}

async fn gather(
    mut incoming: mpsc::UnboundedReceiver<PendingAdvance>,
    db: Db,
    subscribers: Subscribers,
    deadline: Duration,
) {
    // Advances that arrived but did not fit in a batch, in arrival order.
    let mut waiting = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match incoming.recv().await {
                Some(first) => waiting.push_back(first),
                None => return,
            }
        }
        while let Ok(next) = incoming.try_recv() {
            waiting.push_back(next);
        }
        let batch = take_batch(&mut waiting);
        metrics().persistence_queue_depth.sub(batch.len() as i64);
        write_and_answer(batch, &db, &subscribers, deadline).await;
    }
}

/// The next batch: waiting advances in arrival order, at most one per
/// membership and `BATCH_MAX` in all. Once a membership's advance stays
/// behind, every later one of that membership stays behind too.
fn take_batch(waiting: &mut VecDeque<PendingAdvance>) -> Vec<PendingAdvance> {
    let mut batch = Vec::new();
    let mut taken = HashSet::new();
    let mut later = VecDeque::new();
    for pending in waiting.drain(..) {
        let fresh = taken.insert(pending.request.membership());
        if fresh && batch.len() < BATCH_MAX {
            batch.push(pending);
        } else {
            later.push_back(pending);
        }
    }
    *waiting = later;
    batch
}

async fn write_and_answer(
    batch: Vec<PendingAdvance>,
    db: &Db,
    subscribers: &Subscribers,
    deadline: Duration,
) {
    let requests: Vec<&AdvanceCursor> = batch.iter().map(|p| &p.request).collect();
    let written = tokio::time::timeout(deadline, write::advance_all(db, &requests))
        .await
        .unwrap_or(Err(AppError::Unavailable));
    match written {
        Ok(advanced) => {
            let (outcomes, events): (Vec<_>, Vec<_>) = advanced
                .into_iter()
                .map(|a| match a {
                    Ok(a) => (Ok(a.outcome), a.event),
                    Err(e) => (Err(e), None),
                })
                .unzip();
            // Events first, as for any other write: by the time a session
            // acks, the hub has the receipt.
            subscribers.publish(events.into_iter().flatten().collect());
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                let _ = pending.reply.send(outcome);
            }
        }
        Err(error) => {
            log::warn!(
                "a batch of {} receipts was not written: {error}",
                batch.len()
            );
            for pending in batch {
                let _ = pending.reply.send(Err(AppError::Unavailable));
            }
        }
    }
}
