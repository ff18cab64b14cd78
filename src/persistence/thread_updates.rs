//! Changing a thread's own fields after creation: today its title. Every
//! member hears of the change with the thread as they see it, so the
//! cursors of all members are read under the same row lock as the change.

use actix::Message;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::prepared::CachePrepared;
use super::rows::ThreadRow;
use super::schema::threads;
use super::threads::require_member;
use super::{Answer, Db, Query};
use crate::auth::Claimed;
use crate::domain::{ThreadId, ThreadTitle, UserId};
use crate::error::AppError;
use crate::events::{ChatEvent, MemberCursors};
use crate::protocol::ThreadView;

/// PATCH /api/threads/{id}: a member renames a group thread; `None`
/// clears the title. Answers the thread as the renamer sees it.
#[derive(Message)]
#[rtype(result = "Result<ThreadView, AppError>")]
pub struct RenameThread {
    pub renamer: Claimed,
    pub thread_id: ThreadId,
    pub title: Option<ThreadTitle>,
}

#[derive(QueryableByName)]
struct CursorRow {
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = BigInt)]
    last_delivered_seq: i64,
    #[diesel(sql_type = BigInt)]
    last_read_seq: i64,
    #[diesel(sql_type = BigInt)]
    unread: i64,
    #[diesel(sql_type = BigInt)]
    unread_mentions: i64,
}

// The unread count as the thread list computes it (THREAD_SUMMARIES).
const MEMBER_CURSORS: &str = "
    SELECT m.user_id, m.last_delivered_seq, m.last_read_seq,
           (SELECT count(*) FROM messages x
             WHERE x.thread_id = m.thread_id AND x.seq > m.last_read_seq
               AND x.sender_id <> m.user_id AND x.deleted_at IS NULL) AS unread,
           (SELECT count(*) FROM messages x
             WHERE x.thread_id = m.thread_id AND x.seq > m.last_read_seq
               AND m.user_id = ANY(x.mentions) AND x.deleted_at IS NULL) AS unread_mentions
    FROM memberships m
    WHERE m.thread_id = $1";

impl Query for RenameThread {
    type Output = ThreadView;
    async fn run(self, db: Db) -> Result<Answer<ThreadView>, AppError> {
        let mut conn = db.conn().await?;
        let (renamer, thread_id) = (self.renamer, self.thread_id);
        let title = self.title.map(ThreadTitle::into_string);
        let (view, members) = conn
            .transaction::<_, AppError, _>(async move |conn| {
                let found = require_member(conn, renamer, thread_id).await?;
                if found.kind == "direct" {
                    return Err(AppError::Conflict(
                        "a direct thread has no title to change".into(),
                    ));
                }
                // The update holds the row lock to commit: a member joining
                // or leaving meanwhile waits, so `members` is exactly who
                // belongs to the thread as renamed.
                let thread: ThreadRow = diesel::update(threads::table.find(found.id))
                    .set(threads::title.eq(title))
                    .returning(ThreadRow::as_returning())
                    .get_result(conn)
                    .await?;
                let rows: Vec<CursorRow> = diesel::sql_query(MEMBER_CURSORS)
                    .bind::<SqlUuid, _>(thread.id)
                    .cached()
                    .load(conn)
                    .await?;
                let members: Vec<MemberCursors> = rows
                    .into_iter()
                    .map(|r| MemberCursors {
                        user_id: UserId(r.user_id),
                        last_delivered_seq: r.last_delivered_seq,
                        last_read_seq: r.last_read_seq,
                        unread: r.unread,
                        unread_mentions: r.unread_mentions,
                    })
                    .collect();
                // Removed while the update waited for the lock: as if they
                // had never been a member, and nothing is changed.
                let own = members
                    .iter()
                    .find(|m| m.user_id == renamer.user_id)
                    .ok_or(AppError::NotMember)?;
                let view = thread.view(
                    own.last_delivered_seq,
                    own.last_read_seq,
                    own.unread,
                    own.unread_mentions,
                )?;
                Ok((view, members))
            })
            .await?;
        let event = ChatEvent::ThreadUpdated {
            thread: view.clone(),
            members,
        };
        Ok(Answer::with_events(view, vec![event]))
    }
}
