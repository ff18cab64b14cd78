//! The notification worker: fires due notifications
//! (`persistence::notifications`) and sends their Web Push messages.
//!
//! - **One node per notification.** A due row is claimed with `FOR UPDATE
//!   SKIP LOCKED` by the transaction that fires it; the `user.notified`
//!   webhook event and the queued pushes commit with it. A node that dies
//!   mid-way rolls back and the row is due again for any node.
//! - **Pushes at least once.** Each queued push is claimed the same way by
//!   the transaction that sends it and removed by it; a node dying
//!   mid-send leaves it for another. A push service answering 404 or 410
//!   removes the subscription; any other failure is logged and the push
//!   dropped: the thread's next notification covers the same messages.
//! - **On time.** An idle worker sleeps until the next row is due, at most
//!   `webhooks.poll_interval_ms` (for rows other nodes scheduled); a send
//!   on this node that scheduled one, or a fired notification with pushes
//!   to send, wakes one.

mod encryption;
mod sender;

use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use chrono::Utc;
use tokio::sync::OnceCell;

use crate::config::Settings;
use crate::error::AppError;
use crate::metrics::metrics;
use crate::persistence::notifications::{fire_next, next_due, Fired};
use crate::persistence::outbox::OutboxSignal;
use crate::persistence::push::{push_next, vapid_keys, PushOutcome};
use crate::persistence::{build_pool, DbPool};
use encryption::Vapid;
use sender::PushSender;

pub use encryption::{encrypt, PushCryptoError};

/// A row that is due but claimed elsewhere is looked at again this soon,
/// not in a busy loop.
const MIN_SLEEP: Duration = Duration::from_millis(10);

/// Starts the workers on an arbiter of their own. `signal` wakes them
/// (group commit rings it); `webhooks` is the webhook dispatcher's, rung
/// when a notification wrote a `user.notified` delivery.
pub fn start(
    settings: &Settings,
    signal: OutboxSignal,
    webhooks: OutboxSignal,
) -> Result<Arbiter, AppError> {
    let workers = settings.webhooks.max_in_flight;
    let pool = build_pool(&settings.database_url, workers, settings.db_timeout())?;
    let sender = PushSender::new(settings.webhooks.allow_private)
        .map_err(|e| AppError::Internal(format!("push HTTP client: {e}")))?;
    let shared = Arc::new(Shared {
        pool,
        sender,
        vapid: OnceCell::new(),
        subject: settings.notifications.vapid_subject.clone(),
        delay: settings.notifications.delay(),
        signal,
        webhooks,
        poll_interval: settings.webhooks.poll_interval(),
    });
    let arbiter = Arbiter::new();
    for _ in 0..workers {
        arbiter.spawn(run(shared.clone()));
    }
    Ok(arbiter)
}

struct Shared {
    pool: DbPool,
    sender: PushSender,
    /// Read from the database at the first push.
    vapid: OnceCell<Vapid>,
    subject: String,
    delay: Duration,
    signal: OutboxSignal,
    webhooks: OutboxSignal,
    poll_interval: Duration,
}

async fn run(shared: Arc<Shared>) {
    loop {
        let fired = shared.fire_one().await.unwrap_or_else(|e| {
            log::debug!("notifications: firing: {e}");
            false
        });
        let pushed = shared.push_one().await.unwrap_or_else(|e| {
            log::debug!("notifications: pushing: {e}");
            false
        });
        if fired || pushed {
            continue;
        }
        let sleep = shared.until_next_due().await;
        tokio::select! {
            _ = shared.signal.woken() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

impl Shared {
    async fn fire_one(&self) -> Result<bool, AppError> {
        let mut conn = self.pool.get().await?;
        let Some(fired) = fire_next(&mut conn, self.delay).await? else {
            return Ok(false);
        };
        if let Fired::Notified {
            user_id,
            thread_id,
            pushes,
            outboxed,
            ..
        } = &fired
        {
            log::debug!("notifications: notified user={user_id} of thread={thread_id}");
            metrics().notifications_sent.inc();
            if *outboxed {
                self.webhooks.wake();
            }
            if *pushes > 0 {
                // Another worker may take the pushes while this one fires on.
                self.signal.wake();
            }
        }
        Ok(true)
    }

    async fn push_one(&self) -> Result<bool, AppError> {
        let mut conn = self.pool.get().await?;
        let vapid = self
            .vapid
            .get_or_try_init(|| async {
                let keys = vapid_keys(&mut conn).await?;
                Vapid::from_pkcs8(&keys.private_pkcs8, &self.subject)
                    .map_err(|e| AppError::Internal(format!("VAPID key: {e}")))
            })
            .await?;
        let sender = &self.sender;
        let outcome = push_next(&mut conn, |due| async move {
            sender.attempt(vapid, &due, Utc::now().timestamp()).await
        })
        .await?;
        let pushes = &metrics().push_deliveries;
        match outcome {
            None => return Ok(false),
            Some(PushOutcome::Delivered) => pushes.with_label_values(&["delivered"]).inc(),
            Some(PushOutcome::Gone) => {
                pushes.with_label_values(&["gone"]).inc();
                log::info!("notifications: a push subscription is gone; removed it");
            }
            Some(PushOutcome::Failed(error)) => {
                pushes.with_label_values(&["failed"]).inc();
                log::warn!("notifications: a push failed: {error}");
            }
        }
        Ok(true)
    }

    /// How long to sleep: until the next due row, at most the poll
    /// interval.
    async fn until_next_due(&self) -> Duration {
        let next = async {
            let mut conn = self.pool.get().await?;
            next_due(&mut conn).await
        }
        .await;
        match next {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(MIN_SLEEP, self.poll_interval),
            Ok(None) => self.poll_interval,
            Err(e) => {
                log::debug!("notifications: reading the next due time: {e}");
                self.poll_interval
            }
        }
    }
}
