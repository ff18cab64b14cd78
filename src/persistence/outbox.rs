//! The transactional outbox of webhook events.
//!
//! A change and the webhook events it makes commit together: a query hands
//! the events it is about to return to [`record`] inside its transaction,
//! which writes one `webhook_deliveries` row per (event, subscribed
//! webhook). So a crash can neither lose an event (it is in the same
//! commit as the change) nor invent one (a rolled-back change takes its
//! rows with it). The dispatcher (`crate::webhooks`) delivers the rows.
//!
//! Order: rows get their `id` from a sequence while the writer holds the
//! row lock of the event's thread (taken here if the query did not already
//! hold it), so within a thread `id` order is commit order, which is what
//! the dispatcher delivers by.
//!
//! A company without webhooks pays one index probe: the insert joins the
//! events with the company's webhooks and writes nothing.

use std::sync::Arc;

use chrono::Utc;
use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};
use tokio::sync::Notify;
use uuid::Uuid;

use super::prepared::CachePrepared;
use crate::domain::{CompanyId, EventType, ThreadId, UserId};
use crate::events::ChatEvent;
use crate::protocol::server::{ReactionChange, ServerEvent};
use crate::protocol::views::rfc3339_millis;

/// Rings the local dispatcher after a commit that wrote outbox rows, so it
/// need not wait for its next poll. Other nodes find the rows by polling.
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next [`wake`](Self::wake) (or at once if one came
    /// while nobody waited).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// A query's events after [`record`]: what to publish, and whether any
/// webhook is waiting for them.
pub struct Recorded {
    pub events: Vec<ChatEvent>,
    pub outboxed: bool,
}

/// The webhook event a committed change is, if it is one: its type, the
/// thread it is ordered in, and its `data`, which is the data of the
/// WebSocket frame that announces the same change (so a webhook shows the
/// message, thread or membership exactly as a client sees it).
///
/// Adding a type is one arm here, plus a call to [`record`] in the query
/// that commits it. `user.notified` is no change to the chat: its payload
/// is [`user_notified`].
pub fn payload(event: &ChatEvent) -> Option<(EventType, ThreadId, Value)> {
    let frame_data = |frame: ServerEvent| {
        let mut value = serde_json::to_value(frame).unwrap_or(Value::Null);
        value
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null)
    };
    Some(match event {
        ChatEvent::MessageCreated { message, .. } => (
            EventType::MessageCreated,
            message.thread_id,
            frame_data(ServerEvent::Message {
                message: message.clone(),
            }),
        ),
        ChatEvent::MessageEdited { message } => (
            EventType::MessageEdited,
            message.thread_id,
            frame_data(ServerEvent::MessageEdited {
                message: message.clone(),
            }),
        ),
        ChatEvent::MessageDeleted {
            thread_id,
            message_id,
            seq,
            deleted_at,
            rev,
        } => (
            EventType::MessageDeleted,
            *thread_id,
            frame_data(ServerEvent::MessageDeleted {
                thread_id: *thread_id,
                message_id: *message_id,
                seq: *seq,
                deleted_at: *deleted_at,
                rev: *rev,
            }),
        ),
        ChatEvent::ReactionChanged {
            thread_id,
            message_id,
            seq,
            user_id,
            emoji,
            on,
            rev,
            origin: _,
        } => (
            EventType::ReactionChanged,
            *thread_id,
            frame_data(ServerEvent::Reaction(ReactionChange {
                thread_id: *thread_id,
                message_id: *message_id,
                seq: *seq,
                user_id: *user_id,
                emoji: emoji.clone(),
                on: *on,
                rev: *rev,
            })),
        ),
        ChatEvent::ThreadCreated { thread, members } => {
            let mut data = frame_data(ServerEvent::ThreadJoined {
                thread: thread.clone(),
            });
            // The WebSocket tells each member alone; a host wants them all.
            data["member_ids"] = json!(members);
            (EventType::ThreadCreated, thread.id, data)
        }
        ChatEvent::MemberAdded { thread, user_id } => (
            EventType::MemberJoined,
            thread.id,
            frame_data(ServerEvent::MemberJoined {
                thread_id: thread.id,
                user_id: *user_id,
            }),
        ),
        ChatEvent::MemberRemoved { thread_id, user_id } => (
            EventType::MemberLeft,
            *thread_id,
            frame_data(ServerEvent::MemberLeft {
                thread_id: *thread_id,
                user_id: *user_id,
            }),
        ),
        ChatEvent::CursorAdvanced { .. }
        | ChatEvent::ThreadUpdated { .. }
        | ChatEvent::UserUpdated { .. }
        | ChatEvent::UserDeactivated { .. }
        | ChatEvent::TokensRevoked { .. } => return None,
    })
}

// Only events some webhook wants are kept, and only their threads are
// locked: a company without webhooks writes and locks nothing. The locks
// are taken before any row gets its id (the uncorrelated subquery is a
// one-time filter that runs first); a thread the query already holds is
// locked again at no cost.
const RECORD: &str = "
    WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[])
            WITH ORDINALITY AS e(event_id, company_id, type, thread_id, body, ord)
    ),
    matched AS MATERIALIZED (
        SELECT w.id AS webhook_id, e.*
        FROM input e JOIN webhooks w ON w.company_id = e.company_id AND e.type = ANY (w.events)
        WHERE w.deleted_at IS NULL
    ),
    locked AS MATERIALIZED (
        SELECT t.id FROM threads t WHERE t.id IN (SELECT thread_id FROM matched)
        ORDER BY t.id FOR NO KEY UPDATE
    )
    INSERT INTO webhook_deliveries (webhook_id, event_id, type, thread_id, body)
    SELECT m.webhook_id, m.event_id, m.type, m.thread_id, m.body
    FROM matched m
    WHERE (SELECT count(*) FROM locked) >= 0
    ORDER BY m.ord, m.webhook_id";

/// Writes the outbox rows of these events, each of its company, inside the
/// caller's transaction. Answers how many rows were written.
pub async fn record_all(
    conn: &mut AsyncPgConnection,
    events: &[(CompanyId, &ChatEvent)],
) -> Result<usize, diesel::result::Error> {
    let payloads: Vec<Payload> = events
        .iter()
        .filter_map(|(company, event)| {
            let (kind, thread_id, data) = payload(event)?;
            Some(Payload {
                company: *company,
                kind,
                thread_id,
                data,
            })
        })
        .collect();
    record_payloads(conn, payloads).await
}

/// One webhook event to record: of a company, ordered in a thread.
pub struct Payload {
    pub company: CompanyId,
    pub kind: EventType,
    pub thread_id: ThreadId,
    pub data: Value,
}

/// The `user.notified` event: not a change to the chat but a decision of
/// the notification worker, recorded in the transaction that makes it.
pub fn user_notified(
    company: CompanyId,
    user_id: UserId,
    thread_id: ThreadId,
    seqs: &[i64],
    mentioned: bool,
) -> Payload {
    Payload {
        company,
        kind: EventType::UserNotified,
        thread_id,
        data: json!({
            "user_id": user_id,
            "thread_id": thread_id,
            "seqs": seqs,
            "mentioned": mentioned,
        }),
    }
}

/// Writes the outbox rows of these payloads inside the caller's
/// transaction. Answers how many rows were written.
pub async fn record_payloads(
    conn: &mut AsyncPgConnection,
    payloads: Vec<Payload>,
) -> Result<usize, diesel::result::Error> {
    let created_at = Utc::now();
    let mut ids = Vec::new();
    let mut companies = Vec::new();
    let mut types = Vec::new();
    let mut threads = Vec::new();
    let mut bodies = Vec::new();
    for Payload {
        company,
        kind,
        thread_id,
        data,
    } in payloads
    {
        let id = Uuid::now_v7();
        let body = EventBody {
            id,
            kind: kind.as_str(),
            company_id: company,
            created_at,
            data,
        };
        let body = serde_json::to_string(&body)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        ids.push(id);
        companies.push(company.0);
        types.push(kind.as_str());
        threads.push(thread_id.0);
        bodies.push(body);
    }
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::sql_query(RECORD)
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<SqlUuid>, _>(companies)
        .bind::<Array<Text>, _>(types)
        .bind::<Array<SqlUuid>, _>(threads)
        .bind::<Array<Text>, _>(bodies)
        .cached()
        .execute(conn)
        .await
}

/// [`record_all`] for a query whose events are all of one company.
pub async fn record(
    conn: &mut AsyncPgConnection,
    company: CompanyId,
    events: Vec<ChatEvent>,
) -> Result<Recorded, diesel::result::Error> {
    let tagged: Vec<(CompanyId, &ChatEvent)> = events.iter().map(|e| (company, e)).collect();
    let written = record_all(conn, &tagged).await?;
    Ok(Recorded {
        events,
        outboxed: written > 0,
    })
}

/// What a delivery's body is: `{id, type, company_id, created_at, data}`.
#[derive(serde::Serialize)]
struct EventBody {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    company_id: CompanyId,
    #[serde(serialize_with = "rfc3339_millis")]
    created_at: chrono::DateTime<Utc>,
    data: Value,
}
