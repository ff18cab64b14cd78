//! The transaction of one batch: lock its threads, then in one statement
//! look up each send's standing (a resend? a member? a valid reply and
//! mentions?) and insert the rest with their seqs and revs; read what
//! their views need, and commit.

use std::collections::HashMap;
use std::time::Duration;

use diesel::connection::TransactionManagerStatus;
use diesel::result::DatabaseErrorKind;
use diesel::sql_types::{Array, BigInt, Bool, Double, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, TransactionManager};
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

// Locks every thread the batch names, in id order: the same order every
// batch uses, and the same row lock (FOR NO KEY UPDATE) the seq bump takes,
// so foreign-key checks (KEY SHARE) of other writers are not blocked.
const LOCK_THREADS: &str = "
    SELECT id FROM threads WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

// LOCK_THREADS for a batch of one thread, with a scalar: Postgres keeps its
// generic plan, where it re-plans the array form at every bind (0.1 ms).
const LOCK_THREAD: &str = "SELECT id FROM threads WHERE id = $1 FOR NO KEY UPDATE";

const FIND_EXISTING: &str = concat!(
    "SELECT ",
    crate::message_columns!(),
    " FROM messages m
    JOIN unnest($1::uuid[], $2::uuid[]) AS k(sender_id, client_msg_id)
      ON m.sender_id = k.sender_id AND m.client_msg_id = k.client_msg_id"
);

// One statement per batch, after the threads are locked: each send's
// standing, and the insert of those that pass.
// - Standing: a (sender, client_msg_id) that already has a message is a
//   resend; the sender must be a member of a thread of their company; a
//   reply_to must be a message of the thread, and the mentioned users its
//   members; `hooked` says the company has a webhook for message.created.
// - Seqs and revs are numbered in the database: each thread's last_seq and
//   last_rev move by the number of the batch's accepted messages for it,
//   and the messages take the numbers just below the new values, in
//   arrival order.
// - There is no ON CONFLICT: a key another writer inserted after this
//   statement's snapshot fails the statement (a unique violation), and the
//   batch is rolled back and tried again, so a seq is never skipped.
// - A creation is not written to `message_changes`: until the message
//   changes, its row's rev is its created_rev, which is what the read-back
//   looks for (see `super::super::replay` and `super::super::edits`).
// - Members offline at commit, or mentioned, get the message on their
//   pending notification (`schedule_notifications_cte`: $11 the users
//   online, $12 the delay in seconds).
macro_rules! send_batch {
    ($input:literal) => {
        concat!(
            $input,
            "
    standing AS (
        SELECT i.*,
               EXISTS (SELECT 1 FROM messages m
                       WHERE m.sender_id = i.sender_id
                         AND m.client_msg_id = i.client_msg_id) AS sent,
               (EXISTS (SELECT 1 FROM threads t
                        WHERE t.id = i.thread_id AND t.company_id = i.company_id)
                AND EXISTS (SELECT 1 FROM memberships ms
                            WHERE ms.thread_id = i.thread_id
                              AND ms.user_id = i.sender_id)) AS member,
               (i.reply_to IS NULL
                OR EXISTS (SELECT 1 FROM messages r
                           WHERE r.id = i.reply_to AND r.thread_id = i.thread_id)) AS reply_ok,
               (SELECT count(*) FROM memberships ms
                 WHERE ms.thread_id = i.thread_id AND ms.user_id = ANY (i.mentions::uuid[]))
                = cardinality(i.mentions::uuid[]) AS mentions_ok,
               EXISTS (SELECT 1 FROM webhooks w
                       WHERE w.company_id = i.company_id AND w.deleted_at IS NULL
                         AND 'message.created' = ANY (w.events)) AS hooked
        FROM input i
    ),
    accepted AS (
        SELECT * FROM standing WHERE NOT sent AND member AND reply_ok AND mentions_ok
    ),
    numbered AS (
        SELECT accepted.*, row_number() OVER (PARTITION BY thread_id ORDER BY ord) AS k
        FROM accepted
    ),
    counts AS (
        SELECT thread_id, count(*) AS n FROM accepted GROUP BY thread_id
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
        RETURNING id, thread_id, company_id, seq, sender_id, client_msg_id, kind, body, metadata,
                  created_at, edited_at, deleted_at, rev, created_rev, reply_to, mentions
    ),
    ",
            crate::schedule_notifications_cte!(),
            "
    SELECT s.ord, s.sent, s.member, s.reply_ok, s.mentions_ok, s.hooked,
           (SELECT count(*) FROM scheduled) AS scheduled_rows,
           ins.id, ins.thread_id, ins.company_id, ins.seq, ins.sender_id, ins.client_msg_id,
           ins.kind, ins.body, ins.metadata, ins.created_at, ins.edited_at, ins.deleted_at,
           ins.rev, ins.created_rev, ins.reply_to, ins.mentions
    FROM standing s
    LEFT JOIN inserted ins
      ON ins.sender_id = s.sender_id AND ins.client_msg_id = s.client_msg_id"
        )
    };
}

// The sends of a batch, one row each (`ord` counts from 1 in arrival
// order): $1 id, $2 thread_id, $3 company_id, $4 sender_id, $5
// client_msg_id, $6 kind, $7 body, $8 metadata, $9 reply_to, $10 mentions
// (an array literal), as arrays ...
const SEND_MANY: &str = send_batch!(
    "
    WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                             $6::text[], $7::text[], $8::jsonb[], $9::uuid[], $10::text[])
            WITH ORDINALITY
            AS i(id, thread_id, company_id, sender_id, client_msg_id, kind, body, metadata,
                 reply_to, mentions, ord)
    ),"
);

// ... or, for a batch of one send (most batches at everyday load), as
// scalars. Postgres re-plans a statement over `unnest` of its parameters at
// every execution (its custom plan for a one-row array looks cheaper than
// the generic one): 0.6 ms of planning per batch for the look-up alone.
// With scalars the generic plan is the same index probes as the custom
// one, and after a few executions Postgres keeps it.
const SEND_ONE: &str = send_batch!(
    "
    WITH input AS (
        SELECT $1::uuid AS id, $2::uuid AS thread_id, $3::uuid AS company_id,
               $4::uuid AS sender_id, $5::uuid AS client_msg_id, $6::text AS kind,
               $7::text AS body, $8::jsonb AS metadata, $9::uuid AS reply_to,
               $10::text AS mentions, 1::bigint AS ord
    ),"
);

/// What the batch's statement says about one candidate.
#[derive(QueryableByName)]
struct Sent {
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
    /// Pending notifications the batch wrote (the same on every row).
    #[diesel(sql_type = BigInt)]
    scheduled_rows: i64,
    /// The new message, when it was inserted.
    #[diesel(embed)]
    message: Option<MessageRow>,
}

impl Sent {
    fn accepted(&self) -> bool {
        !self.sent && self.member && self.reply_ok && self.mentions_ok
    }
}

/// One batch's transaction, in two round trips: BEGIN, the thread locks
/// and the send statement go out together (pipelined); then whatever the
/// rows ask for (resends' current rows, reply targets, webhook deliveries)
/// and COMMIT.
pub(super) async fn write_batch(
    conn: &mut AsyncPgConnection,
    candidates: &[Candidate],
    presence: (&[Uuid], Duration),
) -> Result<Written, BatchError> {
    // The transaction is opened by hand, because diesel's transaction
    // manager waits for BEGIN's answer before the first statement. Until it
    // is closed the manager is marked broken: if this future is dropped
    // midway (the batch's deadline), the connection is closed instead of
    // going back to the pool inside a transaction (`super::super::pooled`).
    AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
    let outcome = send_in_transaction(conn, candidates, presence).await;
    let end = if outcome.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    // COMMIT answers an error when the commit failed; ROLLBACK of a
    // transaction an error aborted succeeds. Either failing leaves the
    // connection marked broken.
    diesel::sql_query(end).cached().execute(conn).await?;
    *AnsiTransactionManager::transaction_manager_status_mut(conn) =
        TransactionManagerStatus::default();
    outcome
}

/// Another writer inserted one of the batch's keys after the statement's
/// snapshot: the batch is tried again, and its next look sees that row.
fn raced(error: diesel::result::Error) -> BatchError {
    match error {
        diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            BatchError::Raced
        }
        other => BatchError::Database(other),
    }
}

async fn send_in_transaction(
    conn: &mut AsyncPgConnection,
    candidates: &[Candidate],
    (online, delay): (&[Uuid], Duration),
) -> Result<Written, BatchError> {
    let mut thread_ids: Vec<Uuid> = candidates.iter().map(|c| c.thread_id).collect();
    thread_ids.sort_unstable();
    thread_ids.dedup();
    // BEGIN, the locks and the send go out together, and Postgres runs them
    // in the order they were sent: the send's snapshot is taken when it
    // starts, after the locks are held. join! polls them in this order and
    // each is sent at its first poll (a connection's first batch prepares
    // them first, in the same order, and their answers come back in order).
    // Shared references: diesel-async pipelines queries issued through
    // `&AsyncPgConnection` concurrently.
    let (mut begin_conn, mut lock_conn, mut send_conn) = (&*conn, &*conn, &*conn);
    let begin = diesel::sql_query("BEGIN").cached().execute(&mut begin_conn);
    let lock = async {
        if let [one] = thread_ids[..] {
            return diesel::sql_query(LOCK_THREAD)
                .bind::<SqlUuid, _>(one)
                .cached()
                .execute(&mut lock_conn)
                .await;
        }
        diesel::sql_query(LOCK_THREADS)
            .bind::<Array<SqlUuid>, _>(&thread_ids)
            .cached()
            .execute(&mut lock_conn)
            .await
    };
    let send = async {
        if let [one] = candidates {
            return diesel::sql_query(SEND_ONE)
                .bind::<SqlUuid, _>(one.id)
                .bind::<SqlUuid, _>(one.thread_id)
                .bind::<SqlUuid, _>(one.company_id)
                .bind::<SqlUuid, _>(one.sender_id)
                .bind::<SqlUuid, _>(one.client_msg_id)
                .bind::<Text, _>(one.kind)
                .bind::<Nullable<Text>, _>(one.body.as_deref())
                .bind::<Nullable<Jsonb>, _>(one.metadata.as_ref())
                .bind::<Nullable<SqlUuid>, _>(one.reply_to)
                .bind::<Text, _>(one.mentions.as_str())
                .bind::<Array<SqlUuid>, _>(online)
                .bind::<Double, _>(delay.as_secs_f64())
                .cached()
                .load::<Sent>(&mut send_conn)
                .await;
        }
        diesel::sql_query(SEND_MANY)
            .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.thread_id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.company_id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.sender_id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(
                candidates
                    .iter()
                    .map(|c| c.client_msg_id)
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(candidates.iter().map(|c| c.kind).collect::<Vec<_>>())
            .bind::<Array<Nullable<Text>>, _>(
                candidates
                    .iter()
                    .map(|c| c.body.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Jsonb>>, _>(
                candidates
                    .iter()
                    .map(|c| c.metadata.as_ref())
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
            .bind::<Array<SqlUuid>, _>(online)
            .bind::<Double, _>(delay.as_secs_f64())
            .cached()
            .load::<Sent>(&mut send_conn)
            .await
    };
    // All three are awaited: none is dropped while its answer is on the way.
    let (begun, locked, sent) = tokio::join!(begin, lock, send);
    begun?;
    locked?;
    let mut sent = sent.map_err(raced)?;
    // Seqs follow arrival order, which is the order of the arrays.
    sent.sort_unstable_by_key(|s| s.ord);
    // `ord` counts from 1.
    let candidate_at = |ord: i64| {
        usize::try_from(ord - 1)
            .ok()
            .and_then(|i| candidates.get(i))
    };
    let resent: Vec<&Candidate> = sent
        .iter()
        .filter(|s| s.sent)
        .filter_map(|s| candidate_at(s.ord))
        .collect();
    let mut refused = HashMap::new();
    for standing in sent.iter().filter(|s| !s.sent && s.member) {
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
    if sent.iter().any(|s| s.accepted() != s.message.is_some()) {
        return Err(AppError::Internal("a send's standing and its insert disagree".into()).into());
    }
    let scheduled = sent.first().is_some_and(|s| s.scheduled_rows > 0);
    // With whether its company has a webhook for it, in arrival order,
    // which is rev order within each thread.
    let inserted: Vec<(bool, MessageRow)> = sent
        .into_iter()
        .filter_map(|s| Some((s.hooked, s.message?)))
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
    if inserted.is_empty() {
        return Ok(Written {
            existing,
            inserted: HashMap::new(),
            refused,
            outboxed: false,
            scheduled: false,
        });
    }
    // A new message has no reactions yet: only its reply target is read,
    // and only when the batch has replies.
    let mut targets: Vec<Uuid> = inserted.iter().filter_map(|(_, r)| r.reply_to).collect();
    targets.sort_unstable();
    targets.dedup();
    let replies = reply_targets(conn, targets).await?;
    let mut views = Vec::with_capacity(inserted.len());
    for (hooked, row) in inserted {
        let company = CompanyId(row.company_id);
        let reply = row.reply_to.and_then(|id| replies.get(&id).cloned());
        views.push((hooked, company, row.into_view(reply, Vec::new())?));
    }
    let hooked: Vec<(CompanyId, ChatEvent)> = views
        .iter()
        .filter(|(hooked, _, _)| *hooked)
        .map(|(_, company, message)| {
            let event = ChatEvent::MessageCreated {
                message: message.clone(),
                origin: None,
            };
            (*company, event)
        })
        .collect();
    let outboxed = if hooked.is_empty() {
        false
    } else {
        let tagged: Vec<(CompanyId, &ChatEvent)> = hooked.iter().map(|(c, e)| (*c, e)).collect();
        outbox::record_all(conn, &tagged).await? > 0
    };
    let inserted = views
        .into_iter()
        .map(|(_, _, view)| ((view.sender_id.0, view.client_msg_id.0), view))
        .collect();
    Ok(Written {
        existing,
        inserted,
        refused,
        outboxed,
        scheduled,
    })
}
