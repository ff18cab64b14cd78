//! Receipt cursors: `last_delivered_seq` and `last_read_seq` per member.
//!
//! Invariant: `0 <= last_read_seq <= last_delivered_seq <= threads.last_seq`
//! and neither ever decreases. The request is clamped here, the UPDATE only
//! ever raises, and the table's CHECK and trigger refuse anything else.

use actix::Message;
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::prepared::CachePrepared;
use super::{Answer, Db, DbConn, Query};
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

#[derive(QueryableByName)]
struct CursorRow {
    #[diesel(sql_type = BigInt)]
    last_delivered_seq: i64,
    #[diesel(sql_type = BigInt)]
    last_read_seq: i64,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

#[derive(QueryableByName)]
struct SenderRow {
    #[diesel(sql_type = SqlUuid)]
    sender_id: Uuid,
}

struct Advanced {
    outcome: CursorOutcome,
    delivered: Option<ReceiptRange>,
    read: Option<ReceiptRange>,
}

impl Query for AdvanceCursor {
    type Output = CursorOutcome;
    async fn run(self, db: Db) -> Result<Answer<CursorOutcome>, AppError> {
        let mut conn = db.conn().await?;
        let (member, thread_id, kind, up_to_seq) =
            (self.member, self.thread_id, self.kind, self.up_to_seq);
        let advanced = conn
            .transaction::<_, AppError, _>(async move |conn| {
                let current: CursorRow = diesel::sql_query(
                    "SELECT m.last_delivered_seq, m.last_read_seq, t.last_seq
                         FROM memberships m JOIN threads t ON t.id = m.thread_id
                         WHERE m.thread_id = $1 AND m.user_id = $2 AND t.company_id = $3
                         FOR UPDATE OF m",
                )
                .bind::<SqlUuid, _>(thread_id.0)
                .bind::<SqlUuid, _>(member.user_id.0)
                .bind::<SqlUuid, _>(member.company_id.0)
                .cached()
                .get_result(conn)
                .await
                .optional()?
                .ok_or(AppError::NotMember)?;

                let target = up_to_seq.get().min(current.last_seq);
                let old = CursorOutcome {
                    last_delivered_seq: current.last_delivered_seq,
                    last_read_seq: current.last_read_seq,
                };
                let new = match kind {
                    CursorKind::Delivered => CursorOutcome {
                        last_delivered_seq: old.last_delivered_seq.max(target),
                        last_read_seq: old.last_read_seq,
                    },
                    CursorKind::Read => {
                        let read = old.last_read_seq.max(target);
                        CursorOutcome {
                            last_delivered_seq: old.last_delivered_seq.max(read),
                            last_read_seq: read,
                        }
                    }
                };
                if new == old {
                    return Ok(Advanced {
                        outcome: old,
                        delivered: None,
                        read: None,
                    });
                }
                diesel::sql_query(
                    "UPDATE memberships SET last_delivered_seq = $3, last_read_seq = $4
                         WHERE thread_id = $1 AND user_id = $2",
                )
                .bind::<SqlUuid, _>(thread_id.0)
                .bind::<SqlUuid, _>(member.user_id.0)
                .bind::<BigInt, _>(new.last_delivered_seq)
                .bind::<BigInt, _>(new.last_read_seq)
                .cached()
                .execute(conn)
                .await?;
                let delivered = if new.last_delivered_seq > old.last_delivered_seq {
                    Some(ReceiptRange {
                        up_to_seq: new.last_delivered_seq,
                        senders: senders_between(
                            conn,
                            thread_id,
                            member.user_id,
                            old.last_delivered_seq,
                            new.last_delivered_seq,
                        )
                        .await?,
                    })
                } else {
                    None
                };
                let read = if new.last_read_seq > old.last_read_seq {
                    Some(ReceiptRange {
                        up_to_seq: new.last_read_seq,
                        senders: senders_between(
                            conn,
                            thread_id,
                            member.user_id,
                            old.last_read_seq,
                            new.last_read_seq,
                        )
                        .await?,
                    })
                } else {
                    None
                };
                Ok(Advanced {
                    outcome: new,
                    delivered,
                    read,
                })
            })
            .await?;
        let mut events = Vec::new();
        if advanced.delivered.is_some() || advanced.read.is_some() {
            events.push(ChatEvent::CursorAdvanced {
                thread_id,
                user_id: member.user_id,
                origin: self.origin,
                delivered: advanced.delivered,
                read: advanced.read,
                at: Utc::now(),
            });
        }
        Ok(Answer::with_events(advanced.outcome, events))
    }
}

/// Distinct current members other than `reader` who sent a message with
/// `after < seq <= up_to`: the people a receipt for that range concerns.
async fn senders_between(
    conn: &mut DbConn,
    thread_id: ThreadId,
    reader: UserId,
    after: i64,
    up_to: i64,
) -> Result<Vec<UserId>, AppError> {
    let rows: Vec<SenderRow> = diesel::sql_query(
        "SELECT DISTINCT msg.sender_id
         FROM messages msg
         JOIN memberships mm ON mm.thread_id = msg.thread_id AND mm.user_id = msg.sender_id
         WHERE msg.thread_id = $1 AND msg.seq > $2 AND msg.seq <= $3 AND msg.sender_id <> $4",
    )
    .bind::<SqlUuid, _>(thread_id.0)
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(up_to)
    .bind::<SqlUuid, _>(reader.0)
    .cached()
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| UserId(r.sender_id)).collect())
}
