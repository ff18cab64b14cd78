//! Reading back committed changes for the hub, when their announcements
//! did not reach it: a rev gap that outlived the reorder hold, or whatever
//! a node missed while its bus was away. Internal: no caller, no scoping;
//! the hub only routes the result to members of each thread's room.
//!
//! `message_changes` says what each rev was (a message's creation only once
//! the message has changed; until then its own row says it); the database
//! keeps only each message's current state. So a missed rev is answered as the change it
//! was, carrying the message as it is now: a new message or an edit with
//! its current state (which may already hold later changes, each of which
//! follows at its own rev), a deletion, or a reaction exactly as made.
//! Applying them in rev order leaves a client holding each message's
//! current state.

use std::collections::HashMap;

use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::message_views::message_views;
use super::prepared::CachePrepared;
use super::rows::MessageRow;
use super::{Answer, Db, Query};
use crate::error::AppError;
use crate::events::{LoadChangesAfter, MessageChange};

#[derive(QueryableByName)]
struct ChangeRow {
    #[diesel(sql_type = BigInt)]
    place: i64,
    #[diesel(sql_type = Text)]
    change_kind: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    reactor: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    emoji: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    reaction_on: Option<bool>,
    #[diesel(embed)]
    message: MessageRow,
}

// A thread's revs in a range are its logged changes, and the creations of
// messages that have not changed since (their row's rev is their
// created_rev; a message's first change logs its creation, see
// `edits::log_change`). Both are read through (thread_id, rev) indexes.
// UNION, not UNION ALL: a creation logged by a node of an earlier version
// (which logged every send) is also found through its unchanged row.
const LOAD_RANGES: &str = concat!(
    "SELECT c.rev AS place, c.kind AS change_kind, c.user_id AS reactor, c.emoji, c.reaction_on, ",
    crate::message_columns!(),
    " FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS r(thread_id, after_rev, up_to_rev)
    CROSS JOIN LATERAL (
        SELECT * FROM (
            SELECT l.thread_id, l.rev, l.message_id, l.kind, l.user_id, l.emoji, l.reaction_on
            FROM message_changes l
            WHERE l.thread_id = r.thread_id AND l.rev > r.after_rev AND l.rev <= r.up_to_rev
            UNION
            SELECT u.thread_id, u.rev, u.id, 'created', NULL::uuid, NULL::text, NULL::boolean
            FROM messages u
            WHERE u.thread_id = r.thread_id AND u.rev > r.after_rev AND u.rev <= r.up_to_rev
              AND u.rev = u.created_rev
        ) changes
        ORDER BY changes.rev
        LIMIT $4
    ) c
    JOIN messages m ON m.id = c.message_id
    ORDER BY c.thread_id, c.rev"
);

impl Query for LoadChangesAfter {
    type Output = Vec<MessageChange>;
    async fn run(self, db: Db) -> Result<Answer<Vec<MessageChange>>, AppError> {
        if self.ranges.is_empty() {
            return Ok(Vec::new().into());
        }
        let mut conn = db.conn().await?;
        let threads: Vec<Uuid> = self.ranges.iter().map(|r| r.thread_id.0).collect();
        let after_rev: Vec<i64> = self.ranges.iter().map(|r| r.after_rev).collect();
        let up_to_rev: Vec<i64> = self.ranges.iter().map(|r| r.up_to_rev).collect();
        let rows: Vec<ChangeRow> = diesel::sql_query(LOAD_RANGES)
            .bind::<Array<SqlUuid>, _>(threads)
            .bind::<Array<BigInt>, _>(after_rev)
            .bind::<Array<BigInt>, _>(up_to_rev)
            .bind::<BigInt, _>(self.limit_per_thread)
            .cached()
            .load(&mut conn)
            .await?;
        // Each message's view once, however many of its revs were missed.
        let mut unique: HashMap<Uuid, MessageRow> = HashMap::new();
        let mut changes = Vec::with_capacity(rows.len());
        for row in rows {
            unique
                .entry(row.message.id)
                .or_insert_with(|| row.message.clone());
            let detail = (row.reactor, row.emoji, row.reaction_on);
            changes.push((row.place, row.change_kind, detail, row.message.id));
        }
        let views: HashMap<Uuid, _> = message_views(&mut conn, unique.into_values().collect())
            .await?
            .into_iter()
            .map(|view| (view.id.0, view))
            .collect();
        let mut missed = Vec::with_capacity(changes.len());
        for (rev, kind, detail, message_id) in changes {
            let Some(view) = views.get(&message_id) else {
                continue;
            };
            let mut message = view.clone();
            message.rev = rev;
            missed.push(match (kind.as_str(), detail) {
                ("created", _) => MessageChange::Created {
                    message,
                    origin: None,
                },
                ("deleted", _) => match message.deleted_at {
                    Some(deleted_at) => MessageChange::Deleted {
                        thread_id: message.thread_id,
                        message_id: message.id,
                        seq: message.seq,
                        deleted_at,
                        rev,
                    },
                    None => MessageChange::Edited { message },
                },
                ("reaction", (Some(user_id), Some(emoji), Some(on))) => MessageChange::Reaction {
                    thread_id: message.thread_id,
                    message_id: message.id,
                    seq: message.seq,
                    user_id: user_id.into(),
                    emoji,
                    on,
                    rev,
                    origin: None,
                },
                _ => MessageChange::Edited { message },
            });
        }
        Ok(missed.into())
    }
}
