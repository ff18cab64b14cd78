//! Group commit for chat:send.
//!
//! Concurrent sends, from any sessions and any threads, are gathered into
//! one transaction. Batching is natural: a send commits at once, with what
//! is already waiting, when fewer than `in_flight` batches are committing;
//! while they all are, sends gather and the next batch takes them all (up
//! to `batch_max`). So at everyday load a send waits for nobody, and under
//! load batches grow by themselves to what the database can commit. An
//! optional `batch_window` makes a batch wait for company after its first
//! send even when it could commit.
//!
//! Inside the transaction every send keeps the rules it has alone:
//! - the threads are locked first, in id order, so two batches (or a batch
//!   and any other writer of `threads`) cannot deadlock, and each thread's
//!   seqs are handed out by one transaction at a time: gapless, in commit
//!   order;
//! - a (sender, client_msg_id) that already has a message answers with it
//!   (a resend) and takes no seq; two sends with the same key in one batch
//!   become one message, answered to both;
//! - a sender who is not a member of the thread (or a thread of another
//!   company, or none) gets `not_member`, alone; a `reply_to` that is not
//!   a message of the thread, or a mention of a non-member, gets
//!   `bad_request`, alone;
//! - the rest are inserted with seqs counted from each thread's `last_seq`,
//!   and revs from its `last_rev` (a new message is a change too), in
//!   arrival order;
//! - a new message of a company with a webhook for `message.created` gets
//!   its outbox row in the same transaction (the send statement says which
//!   companies have one, so others pay no extra statement);
//! - members who were offline (the hub is asked first) or are mentioned
//!   get the message on their pending notification (`notifications.rs`).
//!
//! The look-up and the insert are one statement, sent together with BEGIN
//! and the locks (`write.rs`): a batch is two round trips to Postgres.
//! Replies and events wait for the commit. If the transaction fails, every
//! send of the batch answers `unavailable` and nothing is published.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::batch_settings::BatchSettings;
use super::messages::{SendMessage, SendOutcome};
use super::notifications::Notices;
use super::outbox::OutboxSignal;
use super::{enqueue, Db, Subscribers};
use crate::domain::MessageId;
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::metrics::metrics;
use crate::protocol::MessageView;
use write::{array_literal, write_batch, BatchError, Candidate};

mod write;

type Reply = oneshot::Sender<Result<SendOutcome, AppError>>;

struct PendingSend {
    request: SendMessage,
    arrived: Instant,
    reply: Reply,
}

/// The way into the batcher. Dropping every clone ends the batcher once the
/// batches already gathered are committed.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<PendingSend>,
}

impl GroupCommit {
    /// Starts the batcher on the current arbiter, so that its connections
    /// live on the same runtime as the rest of the pool's.
    pub fn start(
        db: Db,
        subscribers: Subscribers,
        outbox: OutboxSignal,
        notices: Notices,
        settings: BatchSettings,
    ) -> Self {
        let (queue, incoming) = mpsc::unbounded_channel();
        actix::spawn(gather(incoming, db, subscribers, outbox, notices, settings));
        Self { queue }
    }

    /// Queues a send; the answer comes after its batch's commit.
    pub fn submit(&self, request: SendMessage) -> oneshot::Receiver<Result<SendOutcome, AppError>> {
        let (reply, answer) = oneshot::channel();
        let pending = PendingSend {
            request,
            arrived: Instant::now(),
            reply,
        };
        enqueue(&self.queue, pending);
        answer
    }
}

async fn gather(
    mut incoming: mpsc::UnboundedReceiver<PendingSend>,
    db: Db,
    subscribers: Subscribers,
    outbox: OutboxSignal,
    notices: Notices,
    settings: BatchSettings,
) {
    let permits = Arc::new(Semaphore::new(settings.in_flight.max(1)));
    let max = settings.max.max(1);
    while let Some(first) = incoming.recv().await {
        let closes_at = tokio::time::Instant::from_std(first.arrived + settings.window);
        let mut batch = vec![first];
        take_waiting(&mut incoming, &mut batch, max);
        // Without a window nothing waits on the timer: tokio's timer counts
        // whole milliseconds, so even a deadline already past would hold
        // the batch until its next tick (measured: 1.1 ms of a 2.7 ms ack).
        if !settings.window.is_zero() {
            while batch.len() < max {
                match tokio::time::timeout_at(closes_at, incoming.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        // Sends that arrived while every connection was busy ride along.
        take_waiting(&mut incoming, &mut batch, max);
        actix::spawn(commit_and_answer(
            batch,
            db.clone(),
            subscribers.clone(),
            outbox.clone(),
            notices.clone(),
            settings.request_timeout,
            permit,
        ));
    }
}

/// Adds the sends already queued to `batch`, up to `max`, without waiting.
fn take_waiting(
    incoming: &mut mpsc::UnboundedReceiver<PendingSend>,
    batch: &mut Vec<PendingSend>,
    max: usize,
) {
    while batch.len() < max {
        match incoming.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
}

async fn commit_and_answer(
    batch: Vec<PendingSend>,
    db: Db,
    subscribers: Subscribers,
    outbox: OutboxSignal,
    notices: Notices,
    request_timeout: Duration,
    permit: OwnedSemaphorePermit,
) {
    let size = batch.len();
    metrics().commit_batch_size.observe(size as f64);
    let oldest = batch
        .iter()
        .map(|p| p.arrived)
        .min()
        .unwrap_or_else(Instant::now);
    let time_left = (oldest + request_timeout).saturating_duration_since(Instant::now());
    let (requests, replies): (Vec<SendMessage>, Vec<Reply>) =
        batch.into_iter().map(|p| (p.request, p.reply)).unzip();
    let timer = metrics().commit_batch_seconds.start_timer();
    // Dropping the transaction mid-flight is safe: a connection left inside
    // a transaction is closed, not reused (see `write_batch` and
    // `super::pooled`), and clients retry idempotently.
    let committed = tokio::time::timeout(time_left, commit_batch(&db, &requests, &notices))
        .await
        .unwrap_or(Err(AppError::Unavailable));
    timer.observe_duration();
    drop(permit);
    match committed {
        Ok(committed) => {
            if committed.outboxed {
                outbox.wake();
            }
            if committed.scheduled {
                notices.signal.wake();
            }
            subscribers.publish(
                committed
                    .announcements
                    .into_iter()
                    .map(|(message, origin)| ChatEvent::MessageCreated { message, origin })
                    .collect(),
            );
            for (reply, outcome) in replies.into_iter().zip(committed.outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            if !matches!(error, AppError::Unavailable) {
                log::error!("group commit of {size} sends failed: {error}");
            }
            for reply in replies {
                let _ = reply.send(Err(AppError::Unavailable));
            }
        }
    }
    metrics()
        .persistence_queue_depth
        .sub(i64::try_from(size).unwrap_or(i64::MAX));
}

/// What one committed batch answers and announces.
struct BatchOutcome {
    /// One per request, in the batch's order.
    outcomes: Vec<Result<SendOutcome, AppError>>,
    /// New messages and re-announced resends, in rev order per thread.
    announcements: Vec<(MessageView, Option<crate::domain::SessionId>)>,
    /// Webhook deliveries were written.
    outboxed: bool,
    /// Notifications were scheduled.
    scheduled: bool,
}

/// How often a batch is tried when another writer inserted one of its keys
/// after the send statement's snapshot; the next try sees that row.
const ATTEMPTS: usize = 3;

async fn commit_batch(
    db: &Db,
    requests: &[SendMessage],
    notices: &Notices,
) -> Result<BatchOutcome, AppError> {
    let mut outcomes: Vec<Option<Result<SendOutcome, AppError>>> =
        (0..requests.len()).map(|_| None).collect();
    let mut candidates = Vec::new();
    let mut first_with_key: HashMap<(Uuid, Uuid), usize> = HashMap::new();
    let mut copies: Vec<(usize, usize)> = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let key = (request.sender.user_id.0, request.client_msg_id.0);
        if let Some(&first) = first_with_key.get(&key) {
            copies.push((index, first));
            continue;
        }
        first_with_key.insert(key, index);
        let metadata = match request.content.stored_metadata() {
            Ok(metadata) => metadata,
            Err(error) => {
                outcomes[index] = Some(Err(error));
                continue;
            }
        };
        candidates.push(Candidate {
            index,
            id: MessageId::new_v7().0,
            thread_id: request.thread_id.0,
            company_id: request.sender.company_id.0,
            sender_id: request.sender.user_id.0,
            client_msg_id: request.client_msg_id.0,
            kind: request.content.kind().as_str(),
            body: request.content.body().map(str::to_owned),
            metadata,
            reply_to: request.reply_to.map(|id| id.0),
            mentions: array_literal(&request.mentions.ids()),
        });
    }

    // "Offline when it was committed" is read just before the transaction,
    // while a connection is being checked out.
    let threads = requests.iter().map(|r| r.thread_id).collect();
    let (online, conn) = tokio::join!(notices.online_in(threads), db.conn());
    let mut conn = conn?;
    let mut attempt = 0;
    let written = loop {
        attempt += 1;
        match write_batch(&mut conn, &candidates, (&online, notices.delay)).await {
            Ok(written) => break written,
            Err(BatchError::Raced) if attempt < ATTEMPTS => continue,
            Err(BatchError::Raced) => {
                return Err(AppError::Internal(
                    "group commit kept racing another writer on the same keys".into(),
                ))
            }
            Err(BatchError::Database(e)) => return Err(e.into()),
            Err(BatchError::App(e)) => return Err(e),
        }
    };

    let mut announcements = Vec::new();
    for candidate in &candidates {
        let request = &requests[candidate.index];
        let key = (candidate.sender_id, candidate.client_msg_id);
        // A row the schema should not allow fails its own send only: the
        // batch is committed, and its other sends must hear so.
        let outcome = if let Some((message, created_rev)) = written.existing.get(&key) {
            // If the first attempt committed but its outcome was lost (a
            // timeout, a dropped connection), its message was never
            // announced. It is announced at the rev it was created at: the
            // hub routes it now if that is the room's next rev and drops it
            // as stale otherwise, so this never delivers a message twice.
            let mut announced = message.clone();
            announced.rev = *created_rev;
            announcements.push((announced, request.origin));
            Ok(SendOutcome {
                message: message.clone(),
                created: false,
            })
        } else if let Some(message) = written.inserted.get(&key) {
            metrics().messages_persisted.inc();
            announcements.push((message.clone(), request.origin));
            Ok(SendOutcome {
                message: message.clone(),
                created: true,
            })
        } else if let Some(why) = written.refused.get(&key) {
            Err(AppError::bad_request(*why))
        } else {
            Err(AppError::NotMember)
        };
        outcomes[candidate.index] = Some(outcome);
    }
    for (copy, first) in copies {
        let outcome = match &outcomes[first] {
            Some(Ok(first)) => Ok(SendOutcome {
                message: first.message.clone(),
                created: false,
            }),
            Some(Err(AppError::NotMember)) | None => Err(AppError::NotMember),
            Some(Err(AppError::BadRequest(why))) => Err(AppError::BadRequest(why.clone())),
            Some(Err(_)) => Err(AppError::Internal(
                "the first copy of this send failed".into(),
            )),
        };
        outcomes[copy] = Some(outcome);
    }
    announcements.sort_by_key(|(m, _)| (m.thread_id.0, m.rev));
    Ok(BatchOutcome {
        outcomes: outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(AppError::NotMember)))
            .collect(),
        announcements,
        outboxed: written.outboxed,
        scheduled: written.scheduled,
    })
}
