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
//!   company, or none) gets `not_member`, alone;
//! - the rest are inserted with seqs counted from each thread's `last_seq`,
//!   in arrival order.
//!
//! - a new message of a company with a webhook for `message.created` gets
//!   its outbox row in the same transaction (the look-up says which
//!   companies have one, so others pay no extra statement);
//! - members who were offline (the hub is asked first) or are mentioned
//!   get the message on their pending notification (`notifications.rs`).
//!
//! Replies and events wait for the commit. If the transaction fails, every
//! send of the batch answers `unavailable` and nothing is published.

mod batcher;

use std::collections::HashMap;
use std::time::Duration;

use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::messages::{SendMessage, SendOutcome};
use super::notifications::{self, NewMessage, Notices};
use super::outbox;
use super::prepared::CachePrepared;
use super::rows::MessageRow;
use super::Db;
use crate::domain::{CompanyId, MessageId};
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::metrics::metrics;
use crate::protocol::MessageView;

pub use batcher::GroupCommit;

/// What one committed batch answers and announces.
struct BatchOutcome {
    /// One per request, in the batch's order.
    outcomes: Vec<Result<SendOutcome, AppError>>,
    /// New messages and re-announced resends, in seq order per thread.
    announcements: Vec<(MessageView, Option<crate::domain::SessionId>)>,
    /// Webhook deliveries were written.
    outboxed: bool,
    /// Notifications were scheduled.
    scheduled: bool,
}

/// A send as the statements see it: the first of the batch with its
/// (sender, client_msg_id).
struct Candidate {
    index: usize,
    id: Uuid,
    thread_id: Uuid,
    company_id: Uuid,
    sender_id: Uuid,
    client_msg_id: Uuid,
    kind: &'static str,
    body: Option<String>,
    metadata: Option<serde_json::Value>,
    mentions: Vec<Uuid>,
}

/// How often a batch is tried when another writer inserted one of its keys
/// between the look-up and the insert; the next look-up sees that row.
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
        let metadata = match request
            .content
            .metadata()
            .map(serde_json::to_value)
            .transpose()
        {
            Ok(metadata) => metadata,
            Err(e) => {
                outcomes[index] = Some(Err(AppError::Internal(format!("encoding metadata: {e}"))));
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
            mentions: Vec::new(), // mentions: wired when the messages branch lands
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
        let candidates = &candidates;
        let result = conn
            .transaction::<_, BatchError, _>(async |conn| {
                write_batch(conn, candidates, (&online, notices.delay)).await
            })
            .await;
        match result {
            Ok(written) => break written,
            Err(BatchError::Raced) if attempt < ATTEMPTS => continue,
            Err(BatchError::Raced) => {
                return Err(AppError::Internal(
                    "group commit kept racing another writer on the same keys".into(),
                ))
            }
            Err(BatchError::Database(e)) => return Err(e.into()),
            Err(BatchError::Invalid(e)) => return Err(e),
        }
    };

    let mut announcements = Vec::new();
    for candidate in &candidates {
        let request = &requests[candidate.index];
        let key = (candidate.sender_id, candidate.client_msg_id);
        // A row the schema should not allow fails its own send only: the
        // batch is committed, and its other sends must hear so.
        let outcome = if let Some(row) = written.existing.get(&key) {
            // If the first attempt committed but its outcome was lost (a
            // timeout, a dropped connection), its message was never
            // announced. The hub routes it now if it is the room's next seq
            // and drops it as stale otherwise, so this never delivers a
            // message twice.
            MessageView::try_from(row.clone()).map(|message| {
                announcements.push((message.clone(), request.origin));
                SendOutcome {
                    message,
                    created: false,
                }
            })
        } else if let Some(row) = written.inserted.get(&key) {
            metrics().messages_persisted.inc();
            MessageView::try_from(row.clone()).map(|message| {
                announcements.push((message.clone(), request.origin));
                SendOutcome {
                    message,
                    created: true,
                }
            })
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
            Some(Err(_)) => Err(AppError::Internal(
                "the first copy of this send failed".into(),
            )),
        };
        outcomes[copy] = Some(outcome);
    }
    announcements.sort_by_key(|(m, _)| (m.thread_id.0, m.seq));
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

enum BatchError {
    Database(diesel::result::Error),
    /// A row the schema should not allow.
    Invalid(AppError),
    Raced,
}

impl From<diesel::result::Error> for BatchError {
    fn from(e: diesel::result::Error) -> Self {
        BatchError::Database(e)
    }
}

struct Written {
    existing: HashMap<(Uuid, Uuid), MessageRow>,
    inserted: HashMap<(Uuid, Uuid), MessageRow>,
    outboxed: bool,
    scheduled: bool,
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
    /// The sender's company has a webhook for `message.created`.
    #[diesel(sql_type = Bool)]
    hooked: bool,
}

// Locks every thread the batch names, in id order: the same order every
// batch uses, and the same row lock (FOR NO KEY UPDATE) the seq bump takes,
// so foreign-key checks (KEY SHARE) of other writers are not blocked.
const LOCK_THREADS: &str = "
    SELECT id FROM threads WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

const FIND_EXISTING: &str = "
    SELECT m.id, m.thread_id, m.company_id, m.seq, m.sender_id, m.client_msg_id, m.kind,
           m.body, m.metadata, m.created_at, m.edited_at, m.deleted_at
    FROM messages m
    JOIN unnest($1::uuid[], $2::uuid[]) AS k(sender_id, client_msg_id)
      ON m.sender_id = k.sender_id AND m.client_msg_id = k.client_msg_id";

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
           EXISTS (SELECT 1 FROM webhooks w
                   WHERE w.company_id = i.company_id AND w.deleted_at IS NULL
                     AND 'message.created' = ANY (w.events)) AS hooked
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[]) WITH ORDINALITY
         AS i(thread_id, company_id, sender_id, client_msg_id, ord)";

// Seqs are numbered in the database: each thread's last_seq moves by the
// number of the batch's messages for it, and the messages take the seqs
// just below the new value, in the batch's order.
const INSERT_MESSAGES: &str = "
    WITH input AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                             $6::text[], $7::text[], $8::jsonb[]) WITH ORDINALITY
            AS i(id, thread_id, company_id, sender_id, client_msg_id, kind, body, metadata, ord)
    ),
    numbered AS (
        SELECT input.*, row_number() OVER (PARTITION BY thread_id ORDER BY ord) AS k
        FROM input
    ),
    counts AS (
        SELECT thread_id, count(*) AS n FROM input GROUP BY thread_id
    ),
    bumped AS (
        UPDATE threads t SET last_seq = t.last_seq + counts.n
        FROM counts WHERE t.id = counts.thread_id
        RETURNING t.id, t.last_seq - counts.n AS base
    )
    INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind, body,
                          metadata)
    SELECT n.id, n.thread_id, n.company_id, bumped.base + n.k, n.sender_id, n.client_msg_id,
           n.kind, n.body, n.metadata
    FROM numbered n JOIN bumped ON bumped.id = n.thread_id
    ORDER BY n.ord
    ON CONFLICT (sender_id, client_msg_id) DO NOTHING
    RETURNING id, thread_id, company_id, seq, sender_id, client_msg_id, kind, body, metadata,
              created_at, edited_at, deleted_at";

async fn write_batch(
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
    let look_up = diesel::sql_query(LOOK_UP)
        .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.thread_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.company_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(candidates.iter().map(|c| c.sender_id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(
            candidates
                .iter()
                .map(|c| c.client_msg_id)
                .collect::<Vec<_>>(),
        )
        .cached()
        .load::<Standing>(&mut look_up_conn);
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
    let to_insert: Vec<&Candidate> = standings
        .iter()
        .filter(|s| !s.sent && s.member)
        .filter_map(|s| candidate_at(s.ord))
        .collect();
    let existing: HashMap<(Uuid, Uuid), MessageRow> = if resent.is_empty() {
        HashMap::new()
    } else {
        let rows: Vec<MessageRow> = diesel::sql_query(FIND_EXISTING)
            .bind::<Array<SqlUuid>, _>(resent.iter().map(|c| c.sender_id).collect::<Vec<_>>())
            .bind::<Array<SqlUuid>, _>(resent.iter().map(|c| c.client_msg_id).collect::<Vec<_>>())
            .cached()
            .load(conn)
            .await?;
        rows.into_iter()
            .map(|row| ((row.sender_id, row.client_msg_id), row))
            .collect()
    };
    if to_insert.is_empty() {
        return Ok(Written {
            existing,
            inserted: HashMap::new(),
            outboxed: false,
            scheduled: false,
        });
    }
    let inserted: Vec<MessageRow> = diesel::sql_query(INSERT_MESSAGES)
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
        .cached()
        .load(conn)
        .await?;
    // A key that has a row now but did not at the look-up was inserted by
    // another writer in between: its seq bump must not survive.
    if inserted.len() != to_insert.len() {
        return Err(BatchError::Raced);
    }
    let inserted: HashMap<(Uuid, Uuid), MessageRow> = inserted
        .into_iter()
        .map(|row| ((row.sender_id, row.client_msg_id), row))
        .collect();
    let hooked: Vec<(CompanyId, ChatEvent)> = standings
        .iter()
        .filter(|s| !s.sent && s.member && s.hooked)
        .filter_map(|s| candidate_at(s.ord))
        .filter_map(|c| {
            let row = inserted.get(&(c.sender_id, c.client_msg_id))?;
            Some(MessageView::try_from(row.clone()).map(|message| {
                let event = ChatEvent::MessageCreated {
                    message,
                    origin: None,
                };
                (CompanyId(c.company_id), event)
            }))
        })
        .collect::<Result<_, _>>()
        .map_err(BatchError::Invalid)?;
    let outboxed = if hooked.is_empty() {
        false
    } else {
        // In arrival order, which is seq order within each thread.
        let tagged: Vec<(CompanyId, &ChatEvent)> = hooked.iter().map(|(c, e)| (*c, e)).collect();
        outbox::record_all(conn, &tagged).await? > 0
    };
    let news: Vec<NewMessage> = to_insert
        .iter()
        .filter_map(|c| {
            let row = inserted.get(&(c.sender_id, c.client_msg_id))?;
            let (thread_id, company_id, sender_id) = (c.thread_id, c.company_id, c.sender_id);
            let (seq, mentions) = (row.seq, c.mentions.as_slice());
            Some(NewMessage {
                thread_id,
                company_id,
                seq,
                sender_id,
                mentions,
            })
        })
        .collect();
    let scheduled = notifications::schedule(conn, &news, online, delay).await? > 0;
    Ok(Written {
        existing,
        inserted,
        outboxed,
        scheduled,
    })
}
