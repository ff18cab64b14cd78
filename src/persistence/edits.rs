//! Changes to existing messages: edit and delete. Each is one transaction
//! that takes the thread's next rev (see [`next_rev`]), makes the change
//! and logs what the rev was (see [`log_change`]); its event is built from
//! what the transaction wrote.
//!
//! Rev invariant: a change's rev is taken by incrementing
//! `threads.last_rev` in the transaction that makes the change, under the
//! thread's row lock, and the change's row is stamped with it. So revs are
//! gapless (a transaction that rolls back gives its rev back) and follow
//! commit order, as seqs do.

use actix::Message;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::message_views::message_view;
use super::outbox::{self, Recorded};
use super::prepared::CachePrepared;
use super::rows::MessageRow;
use super::schema::{memberships, messages, threads};
use super::{Answer, Caller, Db, Query};
use crate::auth::Claimed;
use crate::domain::{CompanyId, Mentions, MessageId, MessageText};
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::protocol::MessageView;

/// Takes the thread's next rev: locks the thread's row until commit (the
/// same lock the group commit takes, FOR NO KEY UPDATE) and increments
/// its `last_rev`.
pub(super) async fn next_rev(conn: &mut AsyncPgConnection, thread_id: Uuid) -> QueryResult<i64> {
    diesel::update(threads::table.find(thread_id))
        .set(threads::last_rev.eq(threads::last_rev + 1))
        .returning(threads::last_rev)
        .get_result(conn)
        .await
}

/// What a rev was, as `message_changes` records it.
pub(super) enum Change<'a> {
    Edited,
    Deleted,
    Reaction {
        user_id: Uuid,
        emoji: &'a str,
        on: bool,
    },
}

/// Records what `rev` of the thread was, in the transaction that made the
/// change: the hub's read-back replays missed revs from this log.
///
/// Sends do not log their creation (it would cost every send a row). A
/// message that never changed is found by the read-back through its row,
/// whose rev is still its created_rev; its first change ends that, so the
/// same statement logs the creation too (a no-op once it is logged).
const LOG_CHANGE: &str = "
    WITH creation AS (
        INSERT INTO message_changes (thread_id, rev, message_id, kind)
        SELECT thread_id, created_rev, id, 'created' FROM messages WHERE id = $3
        ON CONFLICT (thread_id, rev) DO NOTHING
    )
    INSERT INTO message_changes (thread_id, rev, message_id, kind, user_id, emoji, reaction_on)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(super) async fn log_change(
    conn: &mut AsyncPgConnection,
    thread_id: Uuid,
    rev: i64,
    message_id: Uuid,
    change: Change<'_>,
) -> QueryResult<()> {
    let (kind, user_id, emoji, on) = match change {
        Change::Edited => ("edited", None, None, None),
        Change::Deleted => ("deleted", None, None, None),
        Change::Reaction { user_id, emoji, on } => {
            ("reaction", Some(user_id), Some(emoji), Some(on))
        }
    };
    diesel::sql_query(LOG_CHANGE)
        .bind::<SqlUuid, _>(thread_id)
        .bind::<BigInt, _>(rev)
        .bind::<SqlUuid, _>(message_id)
        .bind::<Text, _>(kind)
        .bind::<Nullable<SqlUuid>, _>(user_id)
        .bind::<Nullable<Text>, _>(emoji)
        .bind::<Nullable<diesel::sql_types::Bool>, _>(on)
        .cached()
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether every one of `mentions` is a member of the thread.
pub(super) async fn all_members(
    conn: &mut AsyncPgConnection,
    thread_id: Uuid,
    mentions: &Mentions,
) -> Result<(), AppError> {
    if mentions.is_empty() {
        return Ok(());
    }
    let ids = mentions.ids();
    let found: i64 = memberships::table
        .filter(memberships::thread_id.eq(thread_id))
        .filter(memberships::user_id.eq_any(&ids))
        .count()
        .get_result(conn)
        .await?;
    if found as usize != ids.len() {
        return Err(AppError::bad_request(
            "mentions must be members of the thread",
        ));
    }
    Ok(())
}

/// PATCH /api/messages/{id}: the sender edits their own live message, and
/// with it, if given, the list of who it mentions.
#[derive(Message)]
#[rtype(result = "Result<MessageView, AppError>")]
pub struct EditMessage {
    pub editor: Claimed,
    pub message_id: MessageId,
    pub body: MessageText,
    /// None keeps the old list.
    pub mentions: Option<Mentions>,
}

const EDIT: &str = "
    UPDATE messages SET body = $1, mentions = coalesce($2, mentions),
                        edited_at = clock_timestamp(), rev = $3
    WHERE id = $4 AND deleted_at IS NULL
    RETURNING id, thread_id, company_id, seq, sender_id, client_msg_id, kind, body,
              metadata, created_at, edited_at, deleted_at, rev, created_rev, reply_to, mentions";

impl Query for EditMessage {
    type Output = MessageView;
    async fn run(self, db: Db) -> Result<Answer<MessageView>, AppError> {
        let mut conn = db.conn().await?;
        let editor = self.editor;
        let message = conn
            .transaction::<_, AppError, _>(async |conn| {
                let thread_id = own_live_message(conn, editor, self.message_id).await?;
                let rev = next_rev(conn, thread_id).await?;
                if let Some(mentions) = &self.mentions {
                    all_members(conn, thread_id, mentions).await?;
                }
                // Deleted while we waited for the lock: as if never found
                // (the rollback gives the rev back).
                let row: MessageRow = diesel::sql_query(EDIT)
                    .bind::<Text, _>(self.body.as_str())
                    .bind::<Nullable<Array<SqlUuid>>, _>(self.mentions.as_ref().map(Mentions::ids))
                    .bind::<BigInt, _>(rev)
                    .bind::<SqlUuid, _>(self.message_id.0)
                    .cached()
                    .get_result(conn)
                    .await
                    .optional()?
                    .ok_or(AppError::NotFound("message"))?;
                log_change(conn, thread_id, rev, row.id, Change::Edited).await?;
                let message = message_view(conn, row).await?;
                let edited = ChatEvent::MessageEdited {
                    message: message.clone(),
                };
                let recorded = outbox::record(conn, editor.company_id, vec![edited]).await?;
                Ok((message, recorded))
            })
            .await?;
        let (message, recorded) = message;
        Ok(Answer::recorded(message, recorded))
    }
}

/// The thread of `editor`'s own live message, if they are still a member.
async fn own_live_message(
    conn: &mut AsyncPgConnection,
    editor: Claimed,
    message_id: MessageId,
) -> Result<Uuid, AppError> {
    let membership = memberships::table
        .filter(memberships::thread_id.eq(messages::thread_id))
        .filter(memberships::user_id.eq(editor.user_id.0));
    messages::table
        .filter(messages::id.eq(message_id.0))
        .filter(messages::sender_id.eq(editor.user_id.0))
        .filter(messages::company_id.eq(editor.company_id.0))
        .filter(messages::deleted_at.is_null())
        .filter(diesel::dsl::exists(membership))
        .select(messages::thread_id)
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound("message"))
}

/// DELETE /api/messages/{id} (own message) and DELETE /admin/messages/{id}
/// (any). The message becomes a tombstone with the same seq; it loses its
/// reactions and mentions. Deleting a tombstone again answers the
/// tombstone and changes (and broadcasts) nothing.
#[derive(Message)]
#[rtype(result = "Result<MessageView, AppError>")]
pub struct DeleteMessage {
    pub caller: Caller,
    pub message_id: MessageId,
}

enum Deleted {
    Now(MessageView, Recorded),
    Already(MessageView),
}

impl Query for DeleteMessage {
    type Output = MessageView;
    async fn run(self, db: Db) -> Result<Answer<MessageView>, AppError> {
        let mut conn = db.conn().await?;
        let (caller, message_id) = (self.caller, self.message_id);
        let outcome = conn
            .transaction::<_, AppError, _>(async |conn| {
                let existing = deletable(conn, caller, message_id).await?;
                if existing.deleted_at.is_some() {
                    return Ok(Deleted::Already(message_view(conn, existing).await?));
                }
                // The rev is taken before the tombstone is checked: under
                // the lock, a delete that raced ours is visible.
                let rev = next_rev(conn, existing.thread_id).await?;
                let row: Option<MessageRow> = diesel::update(
                    messages::table
                        .filter(messages::id.eq(existing.id))
                        .filter(messages::deleted_at.is_null()),
                )
                .set((
                    messages::body.eq(None::<String>),
                    messages::metadata.eq(None::<serde_json::Value>),
                    messages::mentions.eq(Vec::<Uuid>::new()),
                    messages::deleted_at.eq(diesel::dsl::now),
                    messages::rev.eq(rev),
                ))
                .returning(MessageRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
                match row {
                    Some(row) => {
                        diesel::delete(
                            super::schema::reactions::table
                                .filter(super::schema::reactions::message_id.eq(row.id)),
                        )
                        .execute(conn)
                        .await?;
                        log_change(conn, row.thread_id, rev, row.id, Change::Deleted).await?;
                        let company = CompanyId(row.company_id);
                        let message = message_view(conn, row).await?;
                        let event =
                            message
                                .deleted_at
                                .map(|deleted_at| ChatEvent::MessageDeleted {
                                    thread_id: message.thread_id,
                                    message_id: message.id,
                                    seq: message.seq,
                                    deleted_at,
                                    rev: message.rev,
                                });
                        let recorded =
                            outbox::record(conn, company, event.into_iter().collect()).await?;
                        Ok(Deleted::Now(message, recorded))
                    }
                    // Deleted by someone else while we waited for the lock
                    // (that delete broadcast): roll the rev back.
                    None => Err(AppError::Conflict("already deleted".into())),
                }
            })
            .await;
        let deleted = match outcome {
            Ok(deleted) => deleted,
            Err(AppError::Conflict(_)) => {
                let row: MessageRow = messages::table
                    .find(message_id.0)
                    .select(MessageRow::as_select())
                    .first(&mut conn)
                    .await?;
                Deleted::Already(message_view(&mut conn, row).await?)
            }
            Err(e) => return Err(e),
        };
        match deleted {
            Deleted::Already(message) => Ok(message.into()),
            Deleted::Now(message, recorded) => Ok(Answer::recorded(message, recorded)),
        }
    }
}

/// The message `caller` may delete: their own in a thread they are a
/// member of, or for the operator any.
async fn deletable(
    conn: &mut AsyncPgConnection,
    caller: Caller,
    message_id: MessageId,
) -> Result<MessageRow, AppError> {
    let mut target = messages::table
        .filter(messages::id.eq(message_id.0))
        .into_boxed();
    if let Caller::User(user) = caller {
        let membership = memberships::table
            .filter(memberships::thread_id.eq(messages::thread_id))
            .filter(memberships::user_id.eq(user.user_id.0));
        target = target
            .filter(messages::sender_id.eq(user.user_id.0))
            .filter(messages::company_id.eq(user.company_id.0))
            .filter(diesel::dsl::exists(membership));
    }
    target
        .select(MessageRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotFound("message"))
}
