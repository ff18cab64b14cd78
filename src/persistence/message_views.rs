//! Message rows become wire views. What a view shows from other rows (the
//! reply target, the reactions) is loaded for a whole page at once: one
//! statement for every reply target of the page and one for every
//! reaction, however many messages it holds, so no page is N+1.

use std::collections::HashMap;

use diesel::sql_types::{Array, BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::prepared::CachePrepared;
use super::rows::MessageRow;
use crate::error::AppError;
use crate::protocol::views::{ReactionView, ReplyView, REPLY_BODY_CHARS};
use crate::protocol::MessageView;

/// Every column of `messages` a [`MessageRow`] reads, prefixed `m.`, for
/// hand-written statements.
#[macro_export]
macro_rules! message_columns {
    () => {
        "m.id, m.thread_id, m.company_id, m.seq, m.sender_id, m.client_msg_id, m.kind, \
         m.body, m.metadata, m.created_at, m.edited_at, m.deleted_at, m.rev, m.created_rev, \
         m.reply_to, m.mentions"
    };
}

#[derive(QueryableByName)]
struct ReplyRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = SqlUuid)]
    sender_id: Uuid,
    #[diesel(sql_type = Nullable<Text>)]
    body: Option<String>,
}

// Cut in the database: a long target body is not shipped whole to be cut.
const REPLY_TARGETS: &str = "
    SELECT id, seq, sender_id, left(body, 200) AS body
    FROM messages WHERE id = ANY($1)";

#[derive(QueryableByName)]
struct ReactionRow {
    #[diesel(sql_type = SqlUuid)]
    message_id: Uuid,
    #[diesel(sql_type = Text)]
    emoji: String,
    #[diesel(sql_type = Array<SqlUuid>)]
    user_ids: Vec<Uuid>,
}

const REACTIONS: &str = "
    SELECT message_id, emoji, array_agg(user_id ORDER BY added) AS user_ids
    FROM reactions WHERE message_id = ANY($1)
    GROUP BY message_id, emoji
    ORDER BY message_id, min(since)";

/// Reply targets by id, as replies show them.
pub async fn reply_targets(
    conn: &mut AsyncPgConnection,
    ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, ReplyView>, AppError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<ReplyRow> = diesel::sql_query(REPLY_TARGETS)
        .bind::<Array<SqlUuid>, _>(ids)
        .cached()
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            // left() counts characters as Rust does (code points); the cut
            // is repeated here so the promise holds whatever the database.
            let body = r.body.map(|b| b.chars().take(REPLY_BODY_CHARS).collect());
            let view = ReplyView {
                id: r.id.into(),
                seq: r.seq,
                sender_id: r.sender_id.into(),
                body,
            };
            (r.id, view)
        })
        .collect())
}

/// Reactions by message id, each list in the contract's order.
async fn reactions(
    conn: &mut AsyncPgConnection,
    ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, Vec<ReactionView>>, AppError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<ReactionRow> = diesel::sql_query(REACTIONS)
        .bind::<Array<SqlUuid>, _>(ids)
        .cached()
        .load(conn)
        .await?;
    let mut by_message: HashMap<Uuid, Vec<ReactionView>> = HashMap::new();
    for row in rows {
        by_message
            .entry(row.message_id)
            .or_default()
            .push(ReactionView {
                emoji: row.emoji,
                user_ids: row.user_ids.into_iter().map(Into::into).collect(),
            });
    }
    Ok(by_message)
}

/// The views of `rows`, in their order, with reply targets and reactions.
pub async fn message_views(
    conn: &mut AsyncPgConnection,
    rows: Vec<MessageRow>,
) -> Result<Vec<MessageView>, AppError> {
    let mut targets: Vec<Uuid> = rows.iter().filter_map(|r| r.reply_to).collect();
    targets.sort_unstable();
    targets.dedup();
    let replies = reply_targets(conn, targets).await?;
    // A tombstone has no reactions: none are looked for.
    let live: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.deleted_at.is_none())
        .map(|r| r.id)
        .collect();
    let mut reactions = reactions(conn, live).await?;
    rows.into_iter()
        .map(|row| {
            let reply = row.reply_to.and_then(|id| replies.get(&id).cloned());
            let own = reactions.remove(&row.id).unwrap_or_default();
            row.into_view(reply, own)
        })
        .collect()
}

/// The view of one row.
pub async fn message_view(
    conn: &mut AsyncPgConnection,
    row: MessageRow,
) -> Result<MessageView, AppError> {
    message_views(conn, vec![row])
        .await?
        .pop()
        .ok_or_else(|| AppError::Internal("a message view went missing".into()))
}
