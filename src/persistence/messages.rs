//! Messages: send, history pages and the change feed. Edits and deletes
//! are in [`super::edits`], reactions in [`super::reactions`].
//!
//! Seq invariant: a message's seq is taken by incrementing
//! `threads.last_seq` in the same transaction that inserts it, under the
//! thread's row lock, so seqs are gapless and follow commit order however
//! many processes write. Sends are committed in groups; see
//! [`super::group_commit`].

use actix::Message;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::message_views::message_views;
use super::rows::MessageRow;
use super::schema::messages;
use super::threads::require_member;
use super::{Answer, Db, Query};
use crate::auth::Claimed;
use crate::domain::{ClientMsgId, Mentions, MessageContent, MessageId, Seq, SessionId, ThreadId};
use crate::error::AppError;
use crate::protocol::views::{ChangesPage, MessagePage};
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
    /// A message of the same thread (checked in the commit's transaction).
    pub reply_to: Option<MessageId>,
    /// Members of the thread (checked in the commit's transaction).
    pub mentions: Mentions,
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
            messages: message_views(&mut conn, rows).await?,
            has_more,
        };
        Ok(page.into())
    }
}

/// chat:changes and GET /api/threads/{id}/changes: every message whose
/// latest change has `rev > after_rev`, in its current state, ascending by
/// rev. Reading a page takes no lock: a change committing meanwhile has a
/// higher rev than any the page holds, so the next page finds it.
#[derive(Message)]
#[rtype(result = "Result<ChangesPage, AppError>")]
pub struct FetchChanges {
    pub reader: Claimed,
    pub thread_id: ThreadId,
    pub after_rev: Seq,
    pub limit: i64,
}

impl Query for FetchChanges {
    type Output = ChangesPage;
    async fn run(self, db: Db) -> Result<Answer<ChangesPage>, AppError> {
        let mut conn = db.conn().await?;
        require_member(&mut conn, self.reader, self.thread_id).await?;
        let mut rows: Vec<MessageRow> = messages::table
            .filter(messages::thread_id.eq(self.thread_id.0))
            .filter(messages::rev.gt(self.after_rev.get()))
            .order(messages::rev.asc())
            .limit(self.limit + 1)
            .select(MessageRow::as_select())
            .load(&mut conn)
            .await?;
        let has_more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let last_rev = rows.last().map_or(self.after_rev.get(), |r| r.rev);
        let page = ChangesPage {
            messages: message_views(&mut conn, rows).await?,
            last_rev,
            has_more,
        };
        Ok(page.into())
    }
}
