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
//!   companies have one, so others pay no extra statement).
//!
//! Replies and events wait for the commit. If the transaction fails, every
//! send of the batch answers `unavailable` and nothing is published.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::messages::{SendMessage, SendOutcome};
use super::outbox::{self, OutboxSignal};
use super::prepared::CachePrepared;
use super::rows::MessageRow;
use super::{Db, Subscribers};
use crate::domain::{CompanyId, MessageId};
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::metrics::metrics;
use crate::protocol::MessageView;

/// How batches are formed and how many may commit at once.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub max: usize,
    pub window: Duration,
    pub in_flight: usize,
    /// The request deadline, counted from the oldest send of a batch.
    pub request_timeout: Duration,
}

impl BatchSettings {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            max: settings.persistence.batch_max,
            window: settings.persistence.batch_window(),
            // At least a quarter of the pool stays free for reads,
            // cursors and membership changes while sends are at full tilt.
            in_flight: settings
                .persistence
                .commits_in_flight
                .min(settings.db_pool_size * 3 / 4)
                .max(1),
            request_timeout: settings.db_request_timeout(),
        }
    }
}

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
        settings: BatchSettings,
    ) -> Self {
        let (queue, incoming) = mpsc::unbounded_channel();
        actix::spawn(gather(incoming, db, subscribers, outbox, settings));
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
    let committed = tokio::time::timeout(time_left, commit_batch(&db, &requests))
        .await
        .unwrap_or(Err(AppError::Unavailable));
    timer.observe_duration();
    drop(permit);
    match committed {
        Ok(committed) => {
            if committed.outboxed {
                outbox.wake();
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
    /// New messages and re-announced resends, in seq order per thread.
    announcements: Vec<(MessageView, Option<crate::domain::SessionId>)>,
    /// Webhook deliveries were written.
    outboxed: bool,
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
}

/// How often a batch is tried when another writer inserted one of its keys
/// between the look-up and the insert; the next look-up sees that row.
const ATTEMPTS: usize = 3;

async fn commit_batch(db: &Db, requests: &[SendMessage]) -> Result<BatchOutcome, AppError> {
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
        });
    }

    let mut conn = db.conn().await?;
    let mut attempt = 0;
    let written = loop {
        attempt += 1;
        let candidates = &candidates;
        let result = conn
            .transaction::<_, BatchError, _>(async |conn| write_batch(conn, candidates).await)
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
    Ok(Written {
        existing,
        inserted,
        outboxed,
    })
}
