//! Receipt cursors: `last_delivered_seq` and `last_read_seq` per member.
//!
//! Invariant: `0 <= last_read_seq <= last_delivered_seq <= threads.last_seq`
//! and neither ever decreases. The statement clamps the request and only
//! ever raises a cursor; the table's CHECK and trigger refuse anything else.
//!
//! A receipt is one statement in its own implicit transaction: one round
//! trip and one commit. Every recipient answers every message with
//! `chat:delivered` (and later `chat:mark-read`), so receipts are most of
//! what a busy server writes; as a transaction of five statements (BEGIN,
//! lock, update, senders, COMMIT) they cost Postgres more than the sends.

use actix::Message;
use chrono::Utc;
use diesel::sql_types::{BigInt, Bool, Nullable, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::prepared::CachePrepared;
use super::{Answer, Db, Query};
use crate::auth::Claimed;
use crate::domain::{Seq, SessionId, ThreadId, UserId};
use crate::error::AppError;
use crate::events::{ChatEvent, ReceiptRange};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    Delivered,
    /// Reading also delivers: the delivered cursor is raised to match.
    Read,
}

/// chat:delivered and chat:mark-read.
#[derive(Message)]
#[rtype(result = "Result<CursorOutcome, AppError>")]
pub struct AdvanceCursor {
    pub member: Claimed,
    pub thread_id: ThreadId,
    pub kind: CursorKind,
    pub up_to_seq: Seq,
    pub origin: Option<SessionId>,
}

/// The cursors after the request (unchanged if it asked for nothing new).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorOutcome {
    pub last_delivered_seq: i64,
    pub last_read_seq: i64,
}

// $1 thread, $2 user, $3 company, $4 up_to_seq, $5 "read" (else delivered).
// - `current` locks the membership row. In READ COMMITTED a locked row is
//   its latest committed version, even when another advance committed after
//   this statement's snapshot; so the new cursors are computed from the
//   values they replace, and two advances of one cursor never report the
//   same range twice.
// - The update is skipped when nothing moves: an advance at or below the
//   cursors writes nothing and tells nobody.
// - `senders` are the current members other than the reader who sent a
//   message in a range that moved: the people its receipt concerns. A read
//   range always covers the delivered range it moves (delivered follows
//   read), so one index range scan of the thread's seqs serves both.
// - No row at all: not a member of a thread of the caller's company.
const ADVANCE: &str = "
    WITH current AS (
        SELECT m.thread_id, m.user_id, m.last_delivered_seq AS old_delivered,
               m.last_read_seq AS old_read, LEAST($4::bigint, t.last_seq) AS up_to
        FROM memberships m JOIN threads t ON t.id = m.thread_id
        WHERE m.thread_id = $1 AND m.user_id = $2 AND t.company_id = $3
        FOR UPDATE OF m
    ),
    target AS (
        SELECT c.*,
               CASE WHEN $5::boolean THEN GREATEST(c.old_delivered, c.old_read, c.up_to)
                    ELSE GREATEST(c.old_delivered, c.up_to) END AS new_delivered,
               CASE WHEN $5::boolean THEN GREATEST(c.old_read, c.up_to)
                    ELSE c.old_read END AS new_read
        FROM current c
    ),
    updated AS (
        UPDATE memberships m
        SET last_delivered_seq = n.new_delivered, last_read_seq = n.new_read
        FROM target n
        WHERE m.thread_id = n.thread_id AND m.user_id = n.user_id
          AND (n.new_delivered > n.old_delivered OR n.new_read > n.old_read)
    ),
    senders AS (
        SELECT msg.sender_id,
               bool_or(msg.seq > n.old_delivered AND msg.seq <= n.new_delivered) AS delivered,
               bool_or(msg.seq > n.old_read AND msg.seq <= n.new_read) AS read
        FROM target n
        JOIN messages msg ON msg.thread_id = n.thread_id
         AND msg.seq > CASE WHEN n.new_read > n.old_read THEN n.old_read
                            ELSE n.old_delivered END
         AND msg.seq <= CASE WHEN n.new_read > n.old_read THEN n.new_read
                             ELSE n.new_delivered END
        JOIN memberships mm ON mm.thread_id = msg.thread_id AND mm.user_id = msg.sender_id
        WHERE msg.sender_id <> $2
        GROUP BY msg.sender_id
    )
    SELECT n.old_delivered, n.old_read, n.new_delivered, n.new_read,
           s.sender_id, s.delivered, s.read
    FROM target n LEFT JOIN senders s ON true";

/// The cursors before and after, once per sender the advance concerns (or
/// once with no sender).
#[derive(QueryableByName)]
struct AdvanceRow {
    #[diesel(sql_type = BigInt)]
    old_delivered: i64,
    #[diesel(sql_type = BigInt)]
    old_read: i64,
    #[diesel(sql_type = BigInt)]
    new_delivered: i64,
    #[diesel(sql_type = BigInt)]
    new_read: i64,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    sender_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Bool>)]
    delivered: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    read: Option<bool>,
}

impl Query for AdvanceCursor {
    type Output = CursorOutcome;
    async fn run(self, db: Db) -> Result<Answer<CursorOutcome>, AppError> {
        let mut conn = db.conn().await?;
        let rows: Vec<AdvanceRow> = diesel::sql_query(ADVANCE)
            .bind::<SqlUuid, _>(self.thread_id.0)
            .bind::<SqlUuid, _>(self.member.user_id.0)
            .bind::<SqlUuid, _>(self.member.company_id.0)
            .bind::<BigInt, _>(self.up_to_seq.get())
            .bind::<Bool, _>(self.kind == CursorKind::Read)
            .cached()
            .load(&mut conn)
            .await?;
        let first = rows.first().ok_or(AppError::NotMember)?;
        let outcome = CursorOutcome {
            last_delivered_seq: first.new_delivered,
            last_read_seq: first.new_read,
        };
        // Who a moved cursor concerns, if it moved.
        let range = |moved: bool, up_to_seq: i64, covers: fn(&AdvanceRow) -> bool| {
            moved.then(|| ReceiptRange {
                up_to_seq,
                senders: rows
                    .iter()
                    .filter(|row| covers(row))
                    .filter_map(|row| row.sender_id.map(UserId))
                    .collect(),
            })
        };
        let delivered = range(
            first.new_delivered > first.old_delivered,
            first.new_delivered,
            |row| row.delivered == Some(true),
        );
        let read = range(first.new_read > first.old_read, first.new_read, |row| {
            row.read == Some(true)
        });
        let mut events = Vec::new();
        if delivered.is_some() || read.is_some() {
            events.push(ChatEvent::CursorAdvanced {
                thread_id: self.thread_id,
                user_id: self.member.user_id,
                origin: self.origin,
                delivered,
                read,
                at: Utc::now(),
            });
        }
        Ok(Answer::with_events(outcome, events))
    }
}
