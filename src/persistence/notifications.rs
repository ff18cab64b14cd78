//! Notifications of unread messages: scheduled in the send's transaction,
//! fired by the notification worker (`crate::notifications`).
//!
//! The rule (PROTOCOL.md, "Notifications"): a member is told of a message
//! they have not read `notifications.delay_ms` after its commit, if they
//! had no session on any node when it was committed, or it mentions them.
//!
//! - **Scheduling.** Before a batch commits, group commit asks the hub
//!   which members of the batch's threads have a session anywhere
//!   ([`Notices::online_in`]). Inside the batch's transaction, every other
//!   member (and every mentioned one) gets the message's seq added to their
//!   one `pending_notifications` row for the thread, due `delay` later if
//!   it was not already due. So a crash or restart during the delay loses
//!   nothing: the row is as durable as the message.
//! - **Firing.** The worker claims a due row (`FOR UPDATE SKIP LOCKED`: in
//!   a cluster one node takes it) and reads the member's cursor then:
//!   covered seqs they have read are dropped (reading cancels); if the
//!   oldest seq not yet notified is younger than the delay (the row was
//!   due for an earlier message they have since read), the row waits for
//!   it; otherwise one notification covers every unread seq, recorded as a
//!   `user.notified` webhook event and one `push_deliveries` row per Web
//!   Push subscription, all in the claiming transaction.
//! - **One at a time.** After firing, the row stays with the seqs still
//!   unread and is due again only when a new message arrives; the next
//!   notification covers the older unread seqs too (and replaces the first
//!   at the push service and on screen: same Topic, same tag).

use std::time::Duration;

use actix::Recipient;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use super::outbox::{self, OutboxSignal};
use super::prepared::CachePrepared;
use crate::domain::{CompanyId, ThreadId, UserId};
use crate::error::AppError;
use crate::events::OnlineIn;

/// How long group commit waits for the hub's answer before it takes
/// everyone for offline (a notification too many beats one missed).
const PRESENCE_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest `body` of a push payload, in characters.
pub const MAX_PUSH_BODY_CHARS: usize = 200;

/// What group commit needs for notifications: who is online, the delay,
/// and the worker to wake when it scheduled some.
#[derive(Clone, Default)]
pub struct Notices {
    /// None for the command line: nobody is online there.
    pub presence: Option<Recipient<OnlineIn>>,
    pub delay: Duration,
    pub signal: OutboxSignal,
}

impl Notices {
    /// The users with a session on any node in any of these threads' rooms.
    pub async fn online_in(&self, threads: Vec<ThreadId>) -> Vec<Uuid> {
        let Some(presence) = &self.presence else {
            return Vec::new();
        };
        let asked = presence.send(OnlineIn { threads });
        match tokio::time::timeout(PRESENCE_TIMEOUT, asked).await {
            Ok(Ok(users)) => users.into_iter().map(|u| u.0).collect(),
            Ok(Err(_)) | Err(_) => {
                log::warn!("notifications: the hub did not say who is online; taking all offline");
                Vec::new()
            }
        }
    }
}

/// Scheduling, as a step of group commit's insert statement (one round
/// trip per batch instead of two): a CTE over its `inserted` rows, with
/// the users the hub saw online as `$11` and the delay in seconds as `$12`.
/// Every member but the sender who was not online (or is mentioned) gets
/// the seq on their row. The batch holds its threads' locks, so rows of one
/// thread are written by one transaction at a time; they are written in
/// (user, thread) order. Mentions of non-members find no membership row and
/// are ignored.
#[macro_export]
macro_rules! schedule_notifications_cte {
    () => {
        "scheduled AS (
        INSERT INTO pending_notifications AS p
            (user_id, thread_id, company_id, seqs, mentioned_seqs, due_at)
        SELECT ms.user_id, i.thread_id, i.company_id,
               array_agg(i.seq ORDER BY i.seq),
               coalesce(array_agg(i.seq ORDER BY i.seq)
                            FILTER (WHERE ms.user_id = ANY (i.mentions)), '{}'),
               clock_timestamp() + make_interval(secs => $12)
        FROM inserted i JOIN memberships ms ON ms.thread_id = i.thread_id
        WHERE ms.user_id <> i.sender_id
          AND (ms.user_id = ANY (i.mentions) OR NOT (ms.user_id = ANY ($11::uuid[])))
        GROUP BY ms.user_id, i.thread_id, i.company_id
        ORDER BY ms.user_id, i.thread_id
        ON CONFLICT (user_id, thread_id) DO UPDATE SET
            seqs = p.seqs || EXCLUDED.seqs,
            mentioned_seqs = p.mentioned_seqs || EXCLUDED.mentioned_seqs,
            due_at = coalesce(p.due_at, EXCLUDED.due_at)
        RETURNING 1
    )"
    };
}

/// A due row, claimed, with the member's standing now.
#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    thread_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    company_id: Uuid,
    #[diesel(sql_type = Array<BigInt>)]
    seqs: Vec<i64>,
    #[diesel(sql_type = Array<BigInt>)]
    mentioned_seqs: Vec<i64>,
    #[diesel(sql_type = BigInt)]
    notified_through: i64,
    /// None: no longer a member.
    #[diesel(sql_type = Nullable<BigInt>)]
    last_read_seq: Option<i64>,
    #[diesel(sql_type = Bool)]
    active: bool,
}

const CLAIM_DUE: &str = "
    SELECT p.user_id, p.thread_id, p.company_id, p.seqs, p.mentioned_seqs, p.notified_through,
           m.last_read_seq, (u.deactivated_at IS NULL) AS active
    FROM pending_notifications p
    JOIN users u ON u.id = p.user_id
    LEFT JOIN memberships m ON m.thread_id = p.thread_id AND m.user_id = p.user_id
    WHERE p.due_at <= clock_timestamp()
    ORDER BY p.due_at
    LIMIT 1
    FOR UPDATE OF p SKIP LOCKED";

const FORGET: &str = "DELETE FROM pending_notifications WHERE user_id = $1 AND thread_id = $2";

const KEEP: &str = "
    UPDATE pending_notifications
    SET seqs = $3, mentioned_seqs = $4, notified_through = $5, due_at = $6
    WHERE user_id = $1 AND thread_id = $2";

const OLDEST_NEWS: &str = "
    SELECT min(created_at) AS at FROM messages WHERE thread_id = $1 AND seq = ANY ($2)";

#[derive(QueryableByName)]
struct At {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

/// The newest covered message, for the push payload.
#[derive(QueryableByName)]
struct Newest {
    #[diesel(sql_type = Nullable<Text>)]
    body: Option<String>,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Text)]
    sender: String,
    #[diesel(sql_type = Nullable<Text>)]
    title: Option<String>,
}

const NEWEST: &str = "
    SELECT m.body, (m.deleted_at IS NOT NULL) AS deleted, s.display_name AS sender, t.title
    FROM messages m JOIN users s ON s.id = m.sender_id JOIN threads t ON t.id = m.thread_id
    WHERE m.thread_id = $1 AND m.seq = $2";

const QUEUE_PUSHES: &str = "
    INSERT INTO push_deliveries (subscription_id, payload, topic)
    SELECT id, $2, $3 FROM push_subscriptions WHERE user_id = $1 ORDER BY id";

/// What the worker did with the row it claimed.
#[derive(Debug, Clone, PartialEq)]
pub enum Fired {
    /// Everything covered was read (or the member left, or was
    /// deactivated): nothing sent, the row is gone.
    Cancelled,
    /// Nothing new since the last notification, or the oldest news is
    /// still inside the delay.
    Waiting,
    Notified {
        user_id: UserId,
        thread_id: ThreadId,
        seqs: Vec<i64>,
        /// Web Push messages queued.
        pushes: usize,
        /// A webhook wants `user.notified`.
        outboxed: bool,
    },
}

/// The decrypted Web Push payload.
#[derive(Serialize)]
struct PushPayload<'a> {
    thread_id: ThreadId,
    seq: i64,
    title: &'a str,
    body: String,
}

/// Claims one due notification and settles it, in one transaction. None
/// when nothing is due.
pub async fn fire_next(
    conn: &mut AsyncPgConnection,
    delay: Duration,
) -> Result<Option<Fired>, AppError> {
    conn.transaction::<_, AppError, _>(async move |conn| {
        let due: Option<Due> = diesel::sql_query(CLAIM_DUE)
            .cached()
            .get_result(conn)
            .await
            .optional()?;
        let Some(due) = due else {
            return Ok(None);
        };
        Ok(Some(settle(conn, due, delay).await?))
    })
    .await
}

async fn settle(
    conn: &mut AsyncPgConnection,
    due: Due,
    delay: Duration,
) -> Result<Fired, AppError> {
    let forget = async |conn: &mut AsyncPgConnection| {
        diesel::sql_query(FORGET)
            .bind::<SqlUuid, _>(due.user_id)
            .bind::<SqlUuid, _>(due.thread_id)
            .cached()
            .execute(conn)
            .await
    };
    let read = match due.last_read_seq {
        Some(read) if due.active => read,
        _ => {
            forget(conn).await?;
            return Ok(Fired::Cancelled);
        }
    };
    let mut unread: Vec<i64> = due.seqs.iter().copied().filter(|s| *s > read).collect();
    unread.sort_unstable();
    unread.dedup();
    if unread.is_empty() {
        forget(conn).await?;
        return Ok(Fired::Cancelled);
    }
    let mentioned: Vec<i64> = due
        .mentioned_seqs
        .iter()
        .copied()
        .filter(|s| unread.contains(s))
        .collect();
    let news: Vec<i64> = unread
        .iter()
        .copied()
        .filter(|s| *s > due.notified_through)
        .collect();
    let keep = async |conn: &mut AsyncPgConnection, through: i64, due_at: Option<DateTime<Utc>>| {
        diesel::sql_query(KEEP)
            .bind::<SqlUuid, _>(due.user_id)
            .bind::<SqlUuid, _>(due.thread_id)
            .bind::<Array<BigInt>, _>(&unread)
            .bind::<Array<BigInt>, _>(&mentioned)
            .bind::<BigInt, _>(through)
            .bind::<Nullable<Timestamptz>, _>(due_at)
            .cached()
            .execute(conn)
            .await
    };
    if news.is_empty() {
        keep(conn, due.notified_through, None).await?;
        return Ok(Fired::Waiting);
    }
    // The row fell due for a message that has been read since: the
    // oldest unread news gets its own full delay.
    let oldest: At = diesel::sql_query(OLDEST_NEWS)
        .bind::<SqlUuid, _>(due.thread_id)
        .bind::<Array<BigInt>, _>(&news)
        .cached()
        .get_result(conn)
        .await?;
    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    if let Some(at) = oldest.at {
        let ready = at.checked_add_signed(delay).unwrap_or(at);
        if ready > Utc::now() {
            keep(conn, due.notified_through, Some(ready)).await?;
            return Ok(Fired::Waiting);
        }
    }
    let newest_seq = unread.last().copied().unwrap_or(read);
    let newest: Newest = diesel::sql_query(NEWEST)
        .bind::<SqlUuid, _>(due.thread_id)
        .bind::<BigInt, _>(newest_seq)
        .cached()
        .get_result(conn)
        .await?;
    let title = newest.title.as_deref().unwrap_or(&newest.sender);
    let text = if newest.deleted {
        "(deleted)"
    } else {
        newest.body.as_deref().unwrap_or("(attachment)")
    };
    let payload = PushPayload {
        thread_id: ThreadId(due.thread_id),
        seq: newest_seq,
        title,
        body: push_body(&newest.sender, text),
    };
    let payload = serde_json::to_string(&payload)
        .map_err(|e| AppError::Internal(format!("encoding a push payload: {e}")))?;
    let pushes = diesel::sql_query(QUEUE_PUSHES)
        .bind::<SqlUuid, _>(due.user_id)
        .bind::<Text, _>(payload)
        .bind::<Text, _>(topic(due.thread_id))
        .cached()
        .execute(conn)
        .await?;
    let event = outbox::user_notified(
        CompanyId(due.company_id),
        UserId(due.user_id),
        ThreadId(due.thread_id),
        &unread,
        !mentioned.is_empty(),
    );
    let outboxed = outbox::record_payloads(conn, vec![event]).await? > 0;
    keep(conn, newest_seq, None).await?;
    Ok(Fired::Notified {
        user_id: UserId(due.user_id),
        thread_id: ThreadId(due.thread_id),
        seqs: unread.clone(),
        pushes,
        outboxed,
    })
}

/// "Sender: text", cut to [`MAX_PUSH_BODY_CHARS`] characters.
pub fn push_body(sender: &str, text: &str) -> String {
    let full = format!("{sender}: {text}");
    if full.chars().count() <= MAX_PUSH_BODY_CHARS {
        return full;
    }
    let mut cut: String = full.chars().take(MAX_PUSH_BODY_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The Web Push Topic of a thread's notifications: at most 32 characters
/// of the URL-safe base64 alphabet (RFC 8030 5.4), so the thread id's 32
/// hex digits.
fn topic(thread_id: Uuid) -> String {
    thread_id.simple().to_string()
}

/// When the next row falls due, for the worker's sleep.
pub async fn next_due(conn: &mut AsyncPgConnection) -> Result<Option<DateTime<Utc>>, AppError> {
    let next: At = diesel::sql_query(
        "SELECT min(due_at) AS at FROM pending_notifications WHERE due_at IS NOT NULL",
    )
    .cached()
    .get_result(conn)
    .await?;
    Ok(next.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_bodies_are_cut_to_200_characters() {
        assert_eq!(push_body("Ann", "hi"), "Ann: hi");
        let long = "é".repeat(500);
        let body = push_body("Ann", &long);
        assert_eq!(body.chars().count(), MAX_PUSH_BODY_CHARS);
        assert!(body.starts_with("Ann: é") && body.ends_with('…'));
    }

    #[test]
    fn topics_fit_web_push() {
        let t = topic(Uuid::now_v7());
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
