//! The batcher: gathers sends into batches, hands each to
//! [`super::commit_batch`] when a commit slot is free, and answers and
//! publishes after the commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::super::batch_settings::BatchSettings;
use super::super::messages::{SendMessage, SendOutcome};
use super::super::notifications::Notices;
use super::super::outbox::OutboxSignal;
use super::super::{Db, Subscribers};
use super::commit_batch;
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::metrics::metrics;

type Reply = oneshot::Sender<Result<SendOutcome, AppError>>;

struct PendingSend {
    request: SendMessage,
    arrived: Instant,
    reply: Reply,
}

/// The way into the batcher. Dropping it ends the batcher once the batches
/// already gathered are committed.
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
        metrics().persistence_queue_depth.inc();
        if let Err(mpsc::error::SendError(lost)) = self.queue.send(pending) {
            // The batcher is gone (shutting down): the answer's sender is
            // dropped with `lost`, which the caller reads as unavailable.
            metrics().persistence_queue_depth.dec();
            drop(lost);
        }
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
        while batch.len() < max {
            // A timeout polls the channel before its clock, so a window of
            // zero still takes what is already waiting.
            match tokio::time::timeout_at(closes_at, incoming.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        // Sends that arrived while every connection was busy ride along.
        while batch.len() < max {
            match incoming.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
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
    // a transaction counts as broken and is not reused, and clients retry
    // idempotently.
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
