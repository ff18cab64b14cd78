//! The transaction of one batch: lock its threads, look up each send's
//! standing (a resend? a member? a valid reply and mentions?), insert the
//! rest with their seqs and revs, and read what their views need.

use std::collections::HashMap;
use std::time::Duration;

use diesel::sql_types::{Array, BigInt, Bool, Double, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::super::message_views::{message_views, reply_targets};
use super::super::outbox;
use super::super::prepared::CachePrepared;
use super::super::rows::MessageRow;
use crate::domain::CompanyId;
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::protocol::MessageView;

/// A send as the statements see it: the first of the batch with its
/// (sender, client_msg_id).
pub(super) struct Candidate {
    pub index: usize,
    pub id: Uuid,
    pub thread_id: Uuid,
    pub company_id: Uuid,
    pub sender_id: Uuid,
    pub client_msg_id: Uuid,
    pub kind: &'static str,
    pub body: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub reply_to: Option<Uuid>,
    /// A Postgres array literal of the mentioned ids: one text per send
    /// crosses `unnest`, where an array of arrays would be flattened.
    pub mentions: String,
}

pub(super) enum BatchError {
    Database(diesel::result::Error),
    /// A row that did not convert to its view: the batch rolls back.
    App(AppError),
    Raced,
}

impl From<diesel::result::Error> for BatchError {
    fn from(e: diesel::result::Error) -> Self {
        BatchError::Database(e)
    }
}

impl From<AppError> for BatchError {
    fn from(e: AppError) -> Self {
        BatchError::App(e)
    }
}

/// `{a,b,c}`: uuids need no quoting.
pub(super) fn array_literal(ids: &[Uuid]) -> String {
    let items: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    format!("{{{}}}", items.join(","))
}

/// What one batch's transaction wrote and found, by (sender, client_msg_id).
pub(super) struct Written {
    /// Resends: the message as it is now, and the rev it was created at.
    pub existing: HashMap<(Uuid, Uuid), (MessageView, i64)>,
    pub inserted: HashMap<(Uuid, Uuid), MessageView>,
    /// Sends the thread's state refused (`bad_request`), and why.
    pub refused: HashMap<(Uuid, Uuid), &'static str>,
    /// Webhook deliveries were written.
    pub outboxed: bool,
    /// Notifications were scheduled.
    pub scheduled: bool,
}

/// What the batch's look-up says about one candidate.
#[derive(QueryableByName)]
struct Standing {
    #[diesel(sql_type = BigInt)]
    ord: i64,
    /// Its (sender, client_msg_id) already has a message: a resend.
    #[diesel(sql_type = Bool)]
    sent: bool,
    /// The thread is the sender's company's and the sender is a member.
    #[diesel(sql_type = Bool)]
    member: bool,
    /// No reply_to, or a message of the same thread.
    #[diesel(sql_type = Bool)]
    reply_ok: bool,
    /// Every mentioned user is a member of the thread.
    #[diesel(sql_type = Bool)]
    mentions_ok: bool,
    /// The sender's company has a webhook for `message.created`.
    #[diesel(sql_type = Bool)]
    hooked: bool,
}

// Locks every thread the batch names, in id order: the same order every
// batch uses, and the same row lock (FOR NO KEY UPDATE) the seq bump takes,
// so foreign-key checks (KEY SHARE) of other writers are not blocked.
const LOCK_THREADS: &str = "
    SELECT id FROM threads WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

const FIND_EXISTING: &str = concat!(
    "SELECT ",
    crate::message_columns!(),
    " FROM messages m
    JOIN unnest($1::uuid[], $2::uuid[]) AS k(sender_id, client_msg_id)
      ON m.sender_id = k.sender_id AND m.client_msg_id = k.client_msg_id"
);

// One round trip for the common case: resends are rare, so their rows are
// fetched (FIND_EXISTING) only when this finds any.
const LOOK_UP: &str = "
    SELECT i.ord,
           EXISTS (SELECT 1 FROM messages m
                   WHERE m.sender_id = i.sender_id AND m.client_msg_id = i.client_msg_id) AS sent,
           (EXISTS (SELECT 1 FROM threads t
                    WHERE t.id = i.thread_id AND t.company_id = i.company_id)
            AND EXISTS (SELECT 1 FROM memberships m
                        WHERE m.thread_id = i.thread_id AND m.user_id = i.sender_id)) AS member,
           (i.reply_to IS NULL
            OR EXISTS (SELECT 1 FROM messages r
                       WHERE r.id = i.reply_to AND r.thread_id = i.thread_id)) AS reply_ok,
           (SELECT count(*) FROM memberships m
             WHERE m.thread_id = i.thread_id AND m.user_id = ANY(i.mentions::uuid[]))
            = cardinality(i.mentions::uuid[]) AS mentions_ok,
           EXISTS (SELECT 1 FROM webhooks w
                   WHERE w.company_id = i.company_id AND w.deleted_at IS NULL
                     AND 'message.created' = ANY (w.events)) AS hooked
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[])
         WITH ORDINALITY AS i(thread_id, company_id, sender_id, client_msg_id, reply_to, mentions,
                              ord)";

// LOOK_UP for a batch of one send (most batches at everyday load), with
// scalar parameters. Postgres re-plans LOOK_UP at every execution (its
// custom plan over a one-row unnest looks cheaper than the generic one),
// which cost 0.6 ms of the ~2.4 ms of Postgres time of a batch at 380
// msg/s; this statement's generic plan is the same index probes as its
// custom plan, so after a few executions Postgres keeps it.
const LOOK_UP_ONE: &str = "
    SELECT 1::bigint AS ord,
           EXISTS (SELECT 1 FROM messages m
                   WHERE m.sender_id = $3 AND m.client_msg_id = $4) AS sent,
           (EXISTS (SELECT 1 FROM threads t WHERE t.id = $1 AND t.company_id = $2)
            AND EXISTS (SELECT 1 FROM memberships m
                        WHERE m.thread_id = $1 AND m.user_id = $3)) AS member,
           ($5::uuid IS NULL
            OR EXISTS (SELECT 1 FROM messages r WHERE r.id = $5 AND r.thread_id = $1)) AS reply_ok,
           (SELECT count(*) FROM memberships m
             WHERE m.thread_id = $1 AND m.user_id = ANY($6::uuid[]))
            = cardinality($6::uuid[]) AS mentions_ok,
           EXISTS (SELECT 1 FROM webhooks w
                   WHERE w.company_id = $2 AND w.deleted_at IS NULL
                     AND 'message.created' = ANY (w.events)) AS hooked";

// Seqs and revs are numbered in the database: each thread's last_seq and
// last_rev move by the number of the batch's messages for it, and the
// messages take the numbers just below the new values, in the batch's order.
// A creation is not written to `message_changes`: until the message changes,
// its row's rev is its created_rev, which is what the read-back looks for
// (see `super::super::replay` and `super::super::edits::log_change`).
// Members offline at commit, or mentioned, get the message on their pending
// notification in the same statement (`schedule_notifications_cte`).
const INSERT_MESSAGES: &str = concat!(
    "
    WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                             $6::text[], $7::text[], $8::jsonb[], $9::uuid[], $10::text[])
            WITH ORDINALITY
            AS i(id, thread_id, company_id, sender_id, client_msg_id, kind, body, metadata,
                 reply_to, mentions, ord)
    ),
    numbered AS (
        SELECT input.*, row_number() OVER (PARTITION BY thread_id ORDER BY ord) AS k
        FROM input
    ),
    counts AS (
        SELECT thread_id, count(*) AS n FROM input GROUP BY thread_id
    ),
    bumped AS (
        UPDATE threads t SET last_seq = t.last_seq + counts.n, last_rev = t.last_rev + counts.n
        FROM counts WHERE t.id = counts.thread_id
        RETURNING t.id, t.last_seq - counts.n AS base, t.last_rev - counts.n AS rev_base
    ),
    inserted AS (
        INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind,
                              body, metadata, rev, created_rev, reply_to, mentions)
        SELECT n.id, n.thread_id, n.company_id, bumped.base + n.k, n.sender_id, n.client_msg_id,
               n.kind, n.body, n.metadata, bumped.rev_base + n.k, bumped.rev_base + n.k,
               n.reply_to, n.mentions::uuid[]
        FROM numbered n JOIN bumped ON bumped.id = n.thread_id
        ORDER BY n.ord
        ON CONFLICT (sender_id, client_msg_id) DO NOTHING
        RETURNING id, thread_id, company_id, seq, sender_id, client_msg_id, kind, body, metadata,
                  created_at, edited_at, deleted_at, rev, created_rev, reply_to, mentions
    ),
    ",
    crate::schedule_notifications_cte!(),
    "
    SELECT inserted.*, (SELECT count(*) FROM scheduled) AS scheduled_rows FROM inserted"
);

/// A new message's row, and how many pending notifications its batch wrote
/// (the same on every row).
#[derive(QueryableByName)]
struct InsertedRow {
    #[diesel(embed)]
    message: MessageRow,
    #[diesel(sql_type = BigInt)]
    scheduled_rows: i64,
}

pub(super) async fn write_batch(
    conn: &mut AsyncPgConnection,
    candidates: &[Candidate],
    (online, delay): (&[Uuid], Duration),
) -> Result<Written, BatchError> {
    let mut thread_ids: Vec<Uuid> = candidates.iter().map(|c| c.thread_id).collect();
    thread_ids.sort_unstable();
    thread_ids.dedup();
    // The lock and the look-up go out together (pipelined: one round trip
    // less per batch). Postgres runs them in the order they were sent, and
    // the look-up's snapshot is taken when it starts, after the locks are
    // held. try_join polls the lock first, and both statements enter a
    // connection's cache in its first batch, so the lock is always sent
    // first.
    // Shared references: diesel-async pipelines queries issued through
    // `&AsyncPgConnection` concurrently.
    let (mut lock_conn, mut look_up_conn) = (&*conn, &*conn);
    let lock = diesel::sql_query(LOCK_THREADS)
        .bind::<Array<SqlUuid>, _>(&thread_ids)
        .cached()
        .execute(&mut lock_conn);
    let look_up = async {
        if let [one] = candidates {
            return diesel::sql_query(LOOK_UP_ONE)
                .bind::<SqlUuid, _>(one.thread_id)
                .bind::<SqlUuid, _>(one.company_id)
                .bind::<SqlUuid, _>(one.sender_id)
                .bind::<SqlUuid, _>(one.client_msg_id)
                .bind::<Nullable<SqlUuid>, _>(one.reply_to)
                .bind::<Text, _>(one.mentions.as_str())
                .cached()
                .load::<Standing>(&mut look_up_conn)
                .await;
        }
        diesel::sql_query(LOOK_UP)
            .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.thread_id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.company_id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.sender_id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(
                candidates
                    .iter()
                    .map(|c| c.client_msg_id)
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<SqlUuid>>, _>(
                candidates.iter().map(|c| c.reply_to).collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(
                candidates
                    .iter()
                    .map(|c| c.mentions.as_str())
                    .collect::<Vec<_>>(),
            )
            .cached()
            .load::<Standing>(&mut look_up_conn)
            .await
    };
    let (_, mut standings) = futures_util::try_join!(lock, look_up)?;
    // Seqs follow arrival order, which is the order of the arrays.
    standings.sort_unstable_by_key(|s| s.ord);
    // WITH ORDINALITY counts from 1.
    let candidate_at = |ord: i64| {
        usize::try_from(ord - 1)
            .ok()
            .and_then(|i| candidates.get(i))
    };
    let resent: Vec<&Candidate> = standings
        .iter()
        .filter(|s| s.sent)
        .filter_map(|s| candidate_at(s.ord))
        .collect();
    let mut refused = HashMap::new();
    for standing in standings.iter().filter(|s| !s.sent && s.member) {
        let Some(c) = candidate_at(standing.ord) else {
            continue;
        };
        let why = if !standing.reply_ok {
            "reply_to must be a message of the same thread"
        } else if !standing.mentions_ok {
            "mentions must be members of the thread"
        } else {
            continue;
        };
        refused.insert((c.sender_id, c.client_msg_id), why);
    }
    let to_insert: Vec<&Candidate> = standings
        .iter()
        .filter(|s| !s.sent && s.member && s.reply_ok && s.mentions_ok)
        .filter_map(|s| candidate_at(s.ord))
        .collect();
    let existing: HashMap<(Uuid, Uuid), (MessageView, i64)> = if resent.is_empty() {
        HashMap::new()
    } else {
        let rows: Vec<MessageRow> = diesel::sql_query(FIND_EXISTING)
            .bind::<Array<SqlUuid>, _>(resent.iter().map(|c| c.sender_id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(resent.iter().map(|c| c.client_msg_id).collect::<Vec<_>>())
            .cached()
            .load(conn)
            .await?;
        let created_revs: Vec<i64> = rows.iter().map(|r| r.created_rev).collect();
        message_views(conn, rows)
            .await?
            .into_iter()
            .zip(created_revs)
            .map(|(view, created_rev)| {
                (
                    (view.sender_id.0, view.client_msg_id.0),
                    (view, created_rev),
                )
            })
            .collect()
    };
    if to_insert.is_empty() {
        return Ok(Written {
            existing,
            inserted: HashMap::new(),
            refused,
            outboxed: false,
            scheduled: false,
        });
    }
    let inserted: Vec<InsertedRow> = diesel::sql_query(INSERT_MESSAGES)
        .bind::<Array<SqlUuid>, _>(to_insert.iter().map(|c| c.id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(to_insert.iter().map(|c| c.thread_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(to_insert.iter().map(|c| c.company_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(to_insert.iter().map(|c| c.sender_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(
            to_insert
                .iter()
                .map(|c| c.client_msg_id)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(to_insert.iter().map(|c| c.kind).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            to_insert
                .iter()
                .map(|c| c.body.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Jsonb>>, _>(
            to_insert
                .iter()
                .map(|c| c.metadata.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<SqlUuid>>, _>(
            to_insert.iter().map(|c| c.reply_to).collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            to_insert
                .iter()
                .map(|c| c.mentions.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<SqlUuid>, _>(online)
        .bind::<Double, _>(delay.as_secs_f64())
        .cached()
        .load(conn)
        .await?;
    // A key that has a row now but did not at the look-up was inserted by
    // another writer in between: its seq bump must not survive.
    if inserted.len() != to_insert.len() {
        return Err(BatchError::Raced);
    }
    let scheduled = inserted.first().is_some_and(|row| row.scheduled_rows > 0);
    let inserted: Vec<MessageRow> = inserted.into_iter().map(|row| row.message).collect();
    // A new message has no reactions yet: only its reply target is read,
    // and only when the batch has replies.
    let mut targets: Vec<Uuid> = inserted.iter().filter_map(|r| r.reply_to).collect();
    targets.sort_unstable();
    targets.dedup();
    let replies = reply_targets(conn, targets).await?;
    let mut views = HashMap::with_capacity(inserted.len());
    for row in inserted {
        let key = (row.sender_id, row.client_msg_id);
        let reply = row.reply_to.and_then(|id| replies.get(&id).cloned());
        views.insert(key, row.into_view(reply, Vec::new())?);
    }
    // In arrival order, which is rev order within each thread.
    let hooked: Vec<(CompanyId, ChatEvent)> = standings
        .iter()
        .filter(|s| !s.sent && s.member && s.reply_ok && s.mentions_ok && s.hooked)
        .filter_map(|s| candidate_at(s.ord))
        .filter_map(|c| {
            let message = views.get(&(c.sender_id, c.client_msg_id))?.clone();
            let event = ChatEvent::MessageCreated {
                message,
                origin: None,
            };
            Some((CompanyId(c.company_id), event))
        })
        .collect();
    let outboxed = if hooked.is_empty() {
        false
    } else {
        let tagged: Vec<(CompanyId, &ChatEvent)> = hooked.iter().map(|(c, e)| (*c, e)).collect();
        outbox::record_all(conn, &tagged).await? > 0
    };
    Ok(Written {
        existing,
        inserted: views,
        refused,
        outboxed,
        scheduled,
    })
}
