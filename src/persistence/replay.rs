//! Reading back committed changes for the hub, when their announcements
//! did not reach it: a rev gap that outlived the reorder hold, or whatever
//! a node missed while its bus was away. Internal: no caller, no scoping;
//! the hub only routes the result to members of each thread's room.
//!
//! The database keeps each message's current state, not its history, so a
//! range is answered with the current state of the messages changed in it,
//! each at its place in the rev order:
//! - a message created in the range (and not yet announced as new: seq
//!   above what the room routed) is a new message at the rev it was
//!   created at, in the state it has now;
//! - a message whose latest change is in the range is, at that rev, a
//!   deletion if it is a tombstone, else an edit carrying its whole
//!   current state (which also covers a lost reaction: the view holds
//!   the message's reactions);
//! - a rev in the range that neither names was superseded by a later
//!   change of the same message, which carries its effect and is
//!   announced (or read back) at its own, higher rev.
//!
//! So a room's members get, in rev order, changes that leave them holding
//! each message's current state.

use std::collections::HashMap;

use diesel::sql_types::{Array, BigInt, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;

use super::message_views::message_views;
use super::prepared::CachePrepared;
use super::rows::MessageRow;
use super::{Answer, Db, Query};
use crate::domain::ThreadId;
use crate::error::AppError;
use crate::events::{LoadChangesAfter, MessageChange, RevRange};

// A message is read back if it was created in the range and not yet
// announced, or if its latest change is in the range; the earliest of
// those places orders (and limits) the rows.
const LOAD_RANGES: &str = concat!(
    "SELECT ",
    crate::message_columns!(),
    " FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[])
         AS r(thread_id, after_rev, up_to_rev, after_seq)
    CROSS JOIN LATERAL (
        SELECT *,
               CASE WHEN messages.seq > r.after_seq AND messages.created_rev > r.after_rev
                    THEN messages.created_rev ELSE messages.rev END AS place
        FROM messages
        WHERE messages.thread_id = r.thread_id
          AND ((messages.rev > r.after_rev AND messages.rev <= r.up_to_rev)
               OR (messages.seq > r.after_seq AND messages.created_rev > r.after_rev
                   AND messages.created_rev <= r.up_to_rev))
        ORDER BY place
        LIMIT $5
    ) m
    ORDER BY m.thread_id, m.place"
);

impl Query for LoadChangesAfter {
    type Output = Vec<MessageChange>;
    async fn run(self, db: Db) -> Result<Answer<Vec<MessageChange>>, AppError> {
        if self.ranges.is_empty() {
            return Ok(Vec::new().into());
        }
        let mut conn = db.conn().await?;
        let threads: Vec<uuid::Uuid> = self.ranges.iter().map(|r| r.thread_id.0).collect();
        let after_rev: Vec<i64> = self.ranges.iter().map(|r| r.after_rev).collect();
        let up_to_rev: Vec<i64> = self.ranges.iter().map(|r| r.up_to_rev).collect();
        let after_seq: Vec<i64> = self.ranges.iter().map(|r| r.after_seq).collect();
        let rows: Vec<MessageRow> = diesel::sql_query(LOAD_RANGES)
            .bind::<Array<SqlUuid>, _>(threads)
            .bind::<Array<BigInt>, _>(after_rev)
            .bind::<Array<BigInt>, _>(up_to_rev)
            .bind::<Array<BigInt>, _>(after_seq)
            .bind::<BigInt, _>(self.limit_per_thread)
            .cached()
            .load(&mut conn)
            .await?;
        let created_revs: Vec<i64> = rows.iter().map(|r| r.created_rev).collect();
        let views = message_views(&mut conn, rows).await?;
        let ranges: HashMap<ThreadId, RevRange> =
            self.ranges.iter().map(|r| (r.thread_id, *r)).collect();
        let mut changes = Vec::new();
        for (message, created_rev) in views.into_iter().zip(created_revs) {
            let Some(range) = ranges.get(&message.thread_id) else {
                continue;
            };
            let in_range = |rev: i64| rev > range.after_rev && rev <= range.up_to_rev;
            let latest = message.rev;
            let created_here = message.seq > range.after_seq && in_range(created_rev);
            let changed_here = in_range(latest) && latest != created_rev;
            if created_here {
                let mut created = message.clone();
                created.rev = created_rev;
                changes.push(MessageChange::Created {
                    message: created,
                    origin: None,
                });
            }
            if changed_here {
                changes.push(match message.deleted_at {
                    Some(deleted_at) => MessageChange::Deleted {
                        thread_id: message.thread_id,
                        message_id: message.id,
                        seq: message.seq,
                        deleted_at,
                        rev: latest,
                    },
                    None => MessageChange::Edited { message },
                });
            }
        }
        changes.sort_by_key(|c| (c.thread_id().0, c.rev()));
        Ok(changes.into())
    }
}
