//! The webhook dispatcher: delivers the outbox rows that commits wrote
//! (`persistence::outbox`) to the companies' endpoints.
//!
//! - **At least once, never lost.** A row is claimed by the transaction
//!   that makes the attempt (`FOR UPDATE SKIP LOCKED`) and settled in it:
//!   delivered on a 2xx, otherwise retried with backoff (1 s doubling,
//!   capped at 10 min) for 24 h, then kept as failed. A node that dies
//!   mid-attempt loses its connection, Postgres rolls the claim back, and
//!   the row is due again for any node: sent again, never dropped.
//! - **Order per thread, no head-of-line blocking.** Only the oldest
//!   pending row of a (webhook, thread) lane can be claimed, so a failing
//!   event holds back the later ones of its thread and nothing else.
//! - **One node per event.** Every node runs a dispatcher; the row lock
//!   keeps two from sending the same row at once.
//!
//! `max_in_flight` workers run on an arbiter of their own, each with one
//! connection of the dispatcher's own pool while it works. A commit that
//! wrote rows wakes one worker ([`OutboxSignal`]); a worker that claims a
//! row wakes another, so a backlog is worked in parallel; the first
//! worker also polls every `poll_interval_ms` for retries that fell due
//! and for rows other nodes committed, and refreshes the backlog gauges.

pub mod address;
mod delivery;
mod signature;

use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use chrono::Utc;

use crate::config::Settings;
use crate::error::AppError;
use crate::metrics::metrics;
use crate::persistence::outbox::OutboxSignal;
use crate::persistence::webhooks::{
    attempt_next, backlog, prune_delivered, purge_deleted, Settlement,
};
use crate::persistence::{build_pool, DbPool};
use delivery::Sender;

pub use delivery::{retry_delay, ATTEMPT_TIMEOUT, RETRY_FOR};

/// How long a delivered event stays in the delivery log.
pub const DELIVERED_KEPT: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How often the polling worker prunes the log, and how much at a time.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: i64 = 10_000;
pub use signature::signature_header;

/// Starts the dispatcher on an arbiter of its own, woken by `signal`.
pub fn start(settings: &Settings, signal: OutboxSignal) -> Result<Arbiter, AppError> {
    let webhooks = &settings.webhooks;
    let pool = build_pool(
        &settings.database_url,
        webhooks.max_in_flight,
        settings.db_timeout(),
    )?;
    let sender = Sender::new(webhooks.allow_private)
        .map_err(|e| AppError::Internal(format!("webhook HTTP client: {e}")))?;
    let sender = Arc::new(sender);
    let arbiter = Arbiter::new();
    for index in 0..webhooks.max_in_flight {
        let worker = Worker {
            polls: index == 0,
            pool: pool.clone(),
            sender: sender.clone(),
            signal: signal.clone(),
            poll_interval: webhooks.poll_interval(),
            pruned_at: None,
        };
        arbiter.spawn(worker.run());
    }
    Ok(arbiter)
}

struct Worker {
    /// The one worker that also polls and samples the backlog.
    polls: bool,
    pool: DbPool,
    sender: Arc<Sender>,
    signal: OutboxSignal,
    poll_interval: Duration,
    pruned_at: Option<tokio::time::Instant>,
}

impl Worker {
    async fn run(mut self) {
        let mut sampled_at: Option<tokio::time::Instant> = None;
        loop {
            let worked = match self.attempt_one().await {
                Ok(worked) => worked,
                Err(AppError::Unavailable) => {
                    log::debug!("webhooks: database unavailable");
                    false
                }
                Err(e) => {
                    log::warn!("webhooks: {e}");
                    false
                }
            };
            if !self.polls {
                if !worked {
                    self.signal.woken().await;
                }
                continue;
            }
            // On a clock, not only when idle: a busy dispatcher's gauges
            // are the ones that matter.
            let now = tokio::time::Instant::now();
            if sampled_at.is_none_or(|at| now - at >= self.poll_interval) {
                sampled_at = Some(now);
                self.sample_backlog().await;
                self.prune().await;
            }
            if !worked {
                tokio::select! {
                    _ = self.signal.woken() => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        }
    }

    /// Claims, attempts and settles one due delivery; false if none was due.
    async fn attempt_one(&self) -> Result<bool, AppError> {
        let mut conn = self.pool.get().await?;
        let (sender, signal) = (self.sender.clone(), self.signal.clone());
        let settled = attempt_next(&mut conn, move |due| async move {
            // More may be due: another worker looks while this one sends.
            signal.wake();
            sender.attempt(&due).await
        })
        .await?;
        let Some(settlement) = settled else {
            return Ok(false);
        };
        let m = metrics();
        match settlement {
            Settlement::Delivered { .. } => m.webhook_deliveries.inc(),
            Settlement::Retry { error, .. } => {
                m.webhook_failed_attempts.inc();
                log::debug!("webhooks: attempt failed, will retry: {error}");
            }
            Settlement::GaveUp { error, .. } => {
                m.webhook_failed_attempts.inc();
                m.webhook_events_given_up.inc();
                log::warn!("webhooks: gave up on a delivery after 24 h: {error}");
            }
        }
        Ok(true)
    }

    /// Purges deleted webhooks and keeps the delivery log to
    /// [`DELIVERED_KEPT`]; every node does it, and the deletes do not
    /// conflict.
    async fn prune(&mut self) {
        let now = tokio::time::Instant::now();
        if self.pruned_at.is_some_and(|at| now - at < PRUNE_EVERY) {
            return;
        }
        self.pruned_at = Some(now);
        let pruned = async {
            let mut conn = self.pool.get().await?;
            let purged = purge_deleted(&mut conn, PRUNE_BATCH).await?;
            Ok::<_, AppError>(
                purged + prune_delivered(&mut conn, DELIVERED_KEPT, PRUNE_BATCH).await?,
            )
        }
        .await;
        match pruned {
            Ok(0) => {}
            Ok(n) => log::info!(
                "webhooks: pruned {n} deliveries (of deleted webhooks, or delivered over 7 days ago)"
            ),
            Err(e) => log::debug!("webhooks: pruning the delivery log: {e}"),
        }
    }

    async fn sample_backlog(&self) {
        let sampled = async {
            let mut conn = self.pool.get().await?;
            backlog(&mut conn).await
        }
        .await;
        match sampled {
            Ok((pending, oldest)) => {
                let m = metrics();
                m.webhook_events_pending.set(pending);
                let age = oldest.map_or(0.0, |t| {
                    (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
                });
                m.webhook_oldest_pending_seconds.set(age);
            }
            Err(e) => log::debug!("webhooks: sampling the backlog: {e}"),
        }
    }
}
