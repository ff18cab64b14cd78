//! Messages: send, pages, edit, delete.
//!
//! Seq invariant: a message's seq is taken by incrementing
//! `threads.last_seq` in the same transaction that inserts it, under the
//! thread's row lock, so seqs are gapless and follow commit order however
//! many processes write. Sends are committed in groups; see
//! [`super::group_commit`].

use actix::Message;
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::outbox;
use super::prepared::CachePrepared;
use super::rows::{message_views, MessageRow};
use super::schema::messages;
use super::threads::require_member;
use super::{Answer, Caller, Db, Query};
use crate::auth::Claimed;
use crate::domain::{
    ClientMsgId, CompanyId, MessageContent, MessageId, MessageText, Seq, SessionId, ThreadId,
};
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::protocol::views::MessagePage;
use crate::protocol::MessageView;

/// chat:send. Answers after commit with the message, or with the original
/// one if this (sender, client_msg_id) was seen before. Not a [`Query`]:
/// Persistence hands it to the group commit.
#[derive(Message)]
#[rtype(result = "Result<SendOutcome, AppError>")]
pub struct SendMessage {
    pub sender: Claimed,
    pub thread_id: ThreadId,
    pub client_msg_id: ClientMsgId,
    pub content: MessageContent,
    pub origin: Option<SessionId>,
}

#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub message: MessageView,
    /// False when this was a resend: nothing changed, nothing broadcast.
    pub created: bool,
}

/// Which slice of a thread a page covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PageBounds {
    /// The newest messages, optionally only those below `before_seq`.
    Newest { before_seq: Option<Seq> },
    /// The oldest messages above `after_seq`, optionally below `before_seq`.
    After {
        after_seq: Seq,
        before_seq: Option<Seq>,
    },
}

/// chat:sync and GET /api/threads/{id}/messages: a page, ascending,
/// tombstones included, with `has_more` in the page's direction.
#[derive(Message)]
#[rtype(result = "Result<MessagePage, AppError>")]
pub struct FetchMessages {
    pub reader: Claimed,
    pub thread_id: ThreadId,
    pub bounds: PageBounds,
    pub limit: i64,
}

impl Query for FetchMessages {
    type Output = MessagePage;
    async fn run(self, db: Db) -> Result<Answer<MessagePage>, AppError> {
        let mut conn = db.conn().await?;
        require_member(&mut conn, self.reader, self.thread_id).await?;
        let mut query = messages::table
            .filter(messages::thread_id.eq(self.thread_id.0))
            .select(MessageRow::as_select())
            .limit(self.limit + 1)
            .into_boxed();
        let ascending = match self.bounds {
            PageBounds::Newest { before_seq } => {
                if let Some(before) = before_seq {
                    query = query.filter(messages::seq.lt(before.get()));
                }
                query = query.order(messages::seq.desc());
                false
            }
            PageBounds::After {
                after_seq,
                before_seq,
            } => {
                query = query.filter(messages::seq.gt(after_seq.get()));
                if let Some(before) = before_seq {
                    query = query.filter(messages::seq.lt(before.get()));
                }
                query = query.order(messages::seq.asc());
                true
            }
        };
        let mut rows: Vec<MessageRow> = query.load(&mut conn).await?;
        let has_more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        if !ascending {
            rows.reverse();
        }
        let page = MessagePage {
            messages: message_views(rows)?,
            has_more,
        };
        Ok(page.into())
    }
}

/// PATCH /api/messages/{id}: the sender edits their own live message.
#[derive(Message)]
#[rtype(result = "Result<MessageView, AppError>")]
pub struct EditMessage {
    pub editor: Claimed,
    pub message_id: MessageId,
    pub body: MessageText,
}

impl Query for EditMessage {
    type Output = MessageView;
    async fn run(self, db: Db) -> Result<Answer<MessageView>, AppError> {
        let mut conn = db.conn().await?;
        let (editor, message_id, body) = (self.editor, self.message_id, self.body);
        let recorded = conn
            .transaction::<_, AppError, _>(async move |conn| {
                let row: Option<MessageRow> = diesel::sql_query(
                    "UPDATE messages SET body = $1, edited_at = clock_timestamp()
                     WHERE id = $2 AND sender_id = $3 AND company_id = $4 AND deleted_at IS NULL
                       AND EXISTS (SELECT 1 FROM memberships m
                                   WHERE m.thread_id = messages.thread_id AND m.user_id = $3)
                     RETURNING id, thread_id, company_id, seq, sender_id, client_msg_id, kind,
                               body, metadata, created_at, edited_at, deleted_at",
                )
                .bind::<Text, _>(body.as_str())
                .bind::<SqlUuid, _>(message_id.0)
                .bind::<SqlUuid, _>(editor.user_id.0)
                .bind::<SqlUuid, _>(editor.company_id.0)
                .cached()
                .get_result(conn)
                .await
                .optional()?;
                let message = MessageView::try_from(row.ok_or(AppError::NotFound("message"))?)?;
                let edited = ChatEvent::MessageEdited { message };
                Ok(outbox::record(conn, editor.company_id, vec![edited]).await?)
            })
            .await?;
        let message = match recorded.events.first() {
            Some(ChatEvent::MessageEdited { message }) => message.clone(),
            _ => return Err(AppError::Internal("an edit without its event".into())),
        };
        Ok(Answer::recorded(message, recorded))
    }
}

/// DELETE /api/messages/{id} (own message) and DELETE /admin/messages/{id}
/// (any). The message becomes a tombstone with the same seq. Deleting a
/// tombstone again answers the tombstone and broadcasts nothing.
#[derive(Message)]
#[rtype(result = "Result<MessageView, AppError>")]
pub struct DeleteMessage {
    pub caller: Caller,
    pub message_id: MessageId,
}

impl Query for DeleteMessage {
    type Output = MessageView;
    async fn run(self, db: Db) -> Result<Answer<MessageView>, AppError> {
        let mut conn = db.conn().await?;
        let mut target = messages::table
            .filter(messages::id.eq(self.message_id.0))
            .into_boxed();
        if let Caller::User(user) = self.caller {
            let membership = super::schema::memberships::table
                .filter(super::schema::memberships::thread_id.eq(messages::thread_id))
                .filter(super::schema::memberships::user_id.eq(user.user_id.0));
            target = target
                .filter(messages::sender_id.eq(user.user_id.0))
                .filter(messages::company_id.eq(user.company_id.0))
                .filter(diesel::dsl::exists(membership));
        }
        let existing: MessageRow = target
            .select(MessageRow::as_select())
            .first(&mut conn)
            .await
            .optional()?
            .ok_or(AppError::NotFound("message"))?;
        if existing.deleted_at.is_some() {
            return Ok(MessageView::try_from(existing)?.into());
        }
        let (id, company) = (existing.id, CompanyId(existing.company_id));
        let deleted = conn
            .transaction::<_, AppError, _>(async move |conn| {
                let row: Option<MessageRow> = diesel::update(
                    messages::table
                        .filter(messages::id.eq(id))
                        .filter(messages::deleted_at.is_null()),
                )
                .set((
                    messages::body.eq(None::<String>),
                    messages::metadata.eq(None::<serde_json::Value>),
                    messages::deleted_at.eq(diesel::dsl::now),
                ))
                .returning(MessageRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let message = MessageView::try_from(row)?;
                let events = message
                    .deleted_at
                    .map(|deleted_at| ChatEvent::MessageDeleted {
                        thread_id: message.thread_id,
                        message_id: message.id,
                        seq: message.seq,
                        deleted_at,
                    })
                    .into_iter()
                    .collect();
                let recorded = outbox::record(conn, company, events).await?;
                Ok(Some((message, recorded)))
            })
            .await?;
        match deleted {
            Some((message, recorded)) => Ok(Answer::recorded(message, recorded)),
            // Deleted concurrently by someone else: that delete broadcast.
            None => {
                let row: MessageRow = messages::table
                    .find(existing.id)
                    .select(MessageRow::as_select())
                    .first(&mut conn)
                    .await?;
                Ok(MessageView::try_from(row)?.into())
            }
        }
    }
}
