//! Threads and memberships: lists with cursors and unread counts, creation
//! (one direct thread per pair), and members joining and leaving.

use std::collections::BTreeSet;

use actix::Message;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::message_views::message_views;
use super::outbox::{self, Recorded};
use super::prepared::CachePrepared;
use super::rows::{MessageRow, ThreadRow, ThreadSummaryRow};
use super::schema::{memberships, threads, users};
use super::{Answer, Caller, Db, DbConn, Query};
use crate::auth::Claimed;
use crate::domain::{CompanyId, ThreadId, ThreadTitle, UserId};
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::protocol::views::{MemberView, ThreadKind, ThreadListItem};
use crate::protocol::ThreadView;

/// The most members one create request may name.
pub const MAX_MEMBERS_PER_REQUEST: usize = 10_000;

/// Fails with `NotMember` unless `who` is a member of `thread_id` in their
/// own company: a thread of another company looks like no thread at all.
pub(super) async fn require_member(
    conn: &mut diesel_async::AsyncPgConnection,
    who: Claimed,
    thread_id: ThreadId,
) -> Result<ThreadRow, AppError> {
    threads::table
        .inner_join(memberships::table)
        .filter(threads::id.eq(thread_id.0))
        .filter(threads::company_id.eq(who.company_id.0))
        .filter(memberships::user_id.eq(who.user_id.0))
        .select(ThreadRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(AppError::NotMember)
}

/// The company is checked on the membership, which the foreign key
/// (company_id, thread_id) ties to its thread's company: the same rows as
/// `t.company_id = $2`, but the planner then starts from the user's
/// memberships even when the statistics are stale (a freshly filled
/// database), instead of scanning every thread of the company.
const THREAD_SUMMARIES: &str = "
    SELECT t.id, t.company_id, t.kind, t.title, t.created_by, t.created_at, t.last_seq,
           m.last_delivered_seq, m.last_read_seq,
           (SELECT count(*) FROM messages x
             WHERE x.thread_id = t.id AND x.seq > m.last_read_seq
               AND x.sender_id <> m.user_id AND x.deleted_at IS NULL) AS unread,
           t.last_rev,
           (SELECT count(*) FROM messages x
             WHERE x.thread_id = t.id AND x.seq > m.last_read_seq
               AND m.user_id = ANY(x.mentions) AND x.deleted_at IS NULL) AS unread_mentions
    FROM memberships m JOIN threads t ON t.id = m.thread_id
    WHERE m.user_id = $1 AND m.company_id = $2
    ORDER BY t.last_seq DESC, t.id";

/// A member's threads with their cursors and unread counts (chat:ready,
/// GET /api/threads), and with the last message of each when asked.
#[derive(Message)]
#[rtype(result = "Result<Vec<ThreadListItem>, AppError>")]
pub struct LoadThreads {
    pub member: Claimed,
    pub with_last_message: bool,
}

impl Query for LoadThreads {
    type Output = Vec<ThreadListItem>;
    async fn run(self, db: Db) -> Result<Answer<Vec<ThreadListItem>>, AppError> {
        let mut conn = db.conn().await?;
        let rows: Vec<ThreadSummaryRow> = diesel::sql_query(THREAD_SUMMARIES)
            .bind::<SqlUuid, _>(self.member.user_id.0)
            .bind::<SqlUuid, _>(self.member.company_id.0)
            .cached()
            .load(&mut conn)
            .await?;
        let views = rows
            .into_iter()
            .map(ThreadView::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        if !self.with_last_message {
            let items: Vec<ThreadListItem> = views
                .into_iter()
                .map(|thread| ThreadListItem {
                    thread,
                    last_message: None,
                })
                .collect();
            return Ok(items.into());
        }
        // Seqs are gapless, so a thread's last message is the one whose
        // seq is the thread's last_seq.
        let ids: Vec<Uuid> = views.iter().map(|t| t.id.0).collect();
        let last: Vec<MessageRow> = diesel::sql_query(concat!(
            "SELECT ",
            crate::message_columns!(),
            " FROM threads t JOIN messages m ON m.thread_id = t.id AND m.seq = t.last_seq
             WHERE t.id = ANY($1)"
        ))
        .bind::<Array<SqlUuid>, _>(ids)
        .cached()
        .load(&mut conn)
        .await?;
        let mut last = message_views(&mut conn, last).await?;
        Ok(views
            .into_iter()
            .map(|thread| {
                let found = last
                    .iter()
                    .position(|m| m.thread_id == thread.id)
                    .map(|i| last.swap_remove(i));
                ThreadListItem {
                    thread,
                    last_message: Some(found),
                }
            })
            .collect::<Vec<_>>()
            .into())
    }
}

/// POST /api/threads and POST /admin/threads. A direct thread that already
/// exists for the pair is returned as it is (`created: false`).
#[derive(Message)]
#[rtype(result = "Result<CreatedThread, AppError>")]
pub struct CreateThread {
    pub company_id: CompanyId,
    pub creator: Option<UserId>,
    pub kind: ThreadKind,
    pub title: Option<ThreadTitle>,
    pub member_ids: Vec<UserId>,
}

#[derive(Debug, Clone)]
pub struct CreatedThread {
    /// As a new member sees it (cursors at 0 for a new thread; the
    /// creator's own cursors for an existing direct thread).
    pub thread: ThreadView,
    pub created: bool,
}

impl Query for CreateThread {
    type Output = CreatedThread;
    async fn run(self, db: Db) -> Result<Answer<CreatedThread>, AppError> {
        let members: BTreeSet<Uuid> = self
            .member_ids
            .iter()
            .map(|u| u.0)
            .chain(self.creator.map(|u| u.0))
            .collect();
        if members.is_empty() {
            return Err(AppError::bad_request(
                "member_ids must name at least one user",
            ));
        }
        if members.len() > MAX_MEMBERS_PER_REQUEST {
            return Err(AppError::bad_request(format!(
                "at most {MAX_MEMBERS_PER_REQUEST} members per request"
            )));
        }
        let direct_pair = match self.kind {
            ThreadKind::Direct => {
                let pair: Vec<Uuid> = members.iter().copied().collect();
                if pair.len() != 2 {
                    return Err(AppError::bad_request(
                        "a direct thread has exactly two members",
                    ));
                }
                Some((pair[0], pair[1]))
            }
            ThreadKind::Group => None,
        };
        let mut conn = db.conn().await?;
        let member_list: Vec<Uuid> = members.iter().copied().collect();
        let company = self.company_id.0;
        let found: i64 = users::table
            .filter(users::company_id.eq(company))
            .filter(users::id.eq_any(&member_list))
            .count()
            .get_result(&mut conn)
            .await?;
        if found as usize != member_list.len() {
            return Err(AppError::NotFound("user"));
        }
        let (kind, title, creator) = (self.kind, self.title, self.creator);
        let outcome = conn
            .transaction::<_, AppError, _>(async move |conn| {
                let inserted: Option<ThreadRow> = diesel::insert_into(threads::table)
                    .values((
                        threads::id.eq(Uuid::now_v7()),
                        threads::company_id.eq(company),
                        threads::kind.eq(kind.as_str()),
                        threads::title.eq(title.map(ThreadTitle::into_string)),
                        threads::created_by.eq(creator.map(|c| c.0)),
                        threads::direct_user_low.eq(direct_pair.map(|p| p.0)),
                        threads::direct_user_high.eq(direct_pair.map(|p| p.1)),
                    ))
                    .on_conflict_do_nothing()
                    .returning(ThreadRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
                let Some(thread) = inserted else {
                    let (low, high) = direct_pair.ok_or_else(|| {
                        AppError::Internal("group thread insert conflicted".into())
                    })?;
                    let existing: ThreadRow = threads::table
                        .filter(threads::company_id.eq(company))
                        .filter(threads::kind.eq("direct"))
                        .filter(threads::direct_user_low.eq(low))
                        .filter(threads::direct_user_high.eq(high))
                        .select(ThreadRow::as_select())
                        .first(conn)
                        .await?;
                    return Ok((existing, None));
                };
                let rows: Vec<_> = member_list
                    .iter()
                    .map(|u| {
                        (
                            memberships::thread_id.eq(thread.id),
                            memberships::user_id.eq(*u),
                            memberships::company_id.eq(company),
                        )
                    })
                    .collect();
                diesel::insert_into(memberships::table)
                    .values(rows)
                    .execute(conn)
                    .await?;
                let event = ChatEvent::ThreadCreated {
                    thread: thread.view(0, 0, 0, 0)?,
                    members: member_list.into_iter().map(UserId).collect(),
                };
                let recorded = outbox::record(conn, CompanyId(company), vec![event]).await?;
                Ok((thread, Some(recorded)))
            })
            .await?;
        let (row, recorded) = outcome;
        if let Some(recorded) = recorded {
            let thread = row.view(0, 0, 0, 0)?;
            return Ok(Answer::recorded(
                CreatedThread {
                    thread,
                    created: true,
                },
                recorded,
            ));
        }
        let created = false;
        // The existing direct thread, as the creator (or, for the operator,
        // a fresh member) sees it.
        let thread = match creator {
            Some(user) => {
                let claimed = Claimed {
                    user_id: user,
                    company_id: self.company_id,
                };
                let items = LoadThreads {
                    member: claimed,
                    with_last_message: false,
                }
                .run(db)
                .await?;
                items
                    .value
                    .into_iter()
                    .map(|i| i.thread)
                    .find(|t| t.id.0 == row.id)
                    .ok_or_else(|| AppError::Internal("direct thread without its creator".into()))?
            }
            None => row.view(0, 0, 0, 0)?,
        };
        Ok(CreatedThread { thread, created }.into())
    }
}

/// GET /api/threads/{id}/members (without `online`: the hub adds it).
#[derive(Message)]
#[rtype(result = "Result<Vec<MemberView>, AppError>")]
pub struct ListMembers {
    pub reader: Claimed,
    pub thread_id: ThreadId,
}

/// id, display_name, deactivated_at, joined_at, last_delivered_seq,
/// last_read_seq.
type MemberRow = (Uuid, String, Option<DateTime<Utc>>, DateTime<Utc>, i64, i64);

impl Query for ListMembers {
    type Output = Vec<MemberView>;
    async fn run(self, db: Db) -> Result<Answer<Vec<MemberView>>, AppError> {
        let mut conn = db.conn().await?;
        require_member(&mut conn, self.reader, self.thread_id).await?;
        let rows: Vec<MemberRow> = memberships::table
            .inner_join(users::table)
            .filter(memberships::thread_id.eq(self.thread_id.0))
            .select((
                users::id,
                users::display_name,
                users::deactivated_at,
                memberships::joined_at,
                memberships::last_delivered_seq,
                memberships::last_read_seq,
            ))
            .order(memberships::joined_at.asc())
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, display_name, deactivated_at, joined_at, d, r)| MemberView {
                    user_id: UserId(id),
                    display_name,
                    deactivated_at,
                    online: false,
                    joined_at,
                    last_delivered_seq: d,
                    last_read_seq: r,
                },
            )
            .collect::<Vec<_>>()
            .into())
    }
}

/// Finds the thread a caller may change membership of: a user must be a
/// member (of their company's thread); the operator may touch any thread.
async fn thread_for(
    conn: &mut DbConn,
    caller: Caller,
    thread_id: ThreadId,
) -> Result<ThreadRow, AppError> {
    match caller {
        Caller::User(who) => require_member(conn, who, thread_id).await,
        Caller::Admin => threads::table
            .find(thread_id.0)
            .select(ThreadRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or(AppError::NotFound("thread")),
    }
}

/// POST /api/threads/{id}/members and POST /admin/threads/{id}/members.
/// The new member's cursors start at the thread's last_seq.
#[derive(Message)]
#[rtype(result = "Result<ThreadView, AppError>")]
pub struct AddMember {
    pub caller: Caller,
    pub thread_id: ThreadId,
    pub user_id: UserId,
}

impl Query for AddMember {
    type Output = ThreadView;
    async fn run(self, db: Db) -> Result<Answer<ThreadView>, AppError> {
        let mut conn = db.conn().await?;
        let (caller, thread_id, user_id) = (self.caller, self.thread_id, self.user_id);
        let thread = conn
            .transaction::<_, AppError, _>(async move |conn| {
                let thread = thread_for(conn, caller, thread_id).await?;
                if thread.kind == "direct" {
                    return Err(AppError::Conflict(
                        "a direct thread has exactly two members".into(),
                    ));
                }
                // Lock the thread so no message commits between reading
                // last_seq and the membership row that starts there.
                let thread: ThreadRow = threads::table
                    .find(thread.id)
                    .select(ThreadRow::as_select())
                    .for_update()
                    .first(conn)
                    .await?;
                // Locked against a deactivation committing in between.
                let deactivated_at: Option<DateTime<Utc>> = users::table
                    .filter(users::id.eq(user_id.0))
                    .filter(users::company_id.eq(thread.company_id))
                    .select(users::deactivated_at)
                    .for_share()
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or(AppError::NotFound("user"))?;
                if deactivated_at.is_some() {
                    return Err(AppError::Conflict("the user is deactivated".into()));
                }
                let inserted = diesel::insert_into(memberships::table)
                    .values((
                        memberships::thread_id.eq(thread.id),
                        memberships::user_id.eq(user_id.0),
                        memberships::company_id.eq(thread.company_id),
                        memberships::last_delivered_seq.eq(thread.last_seq),
                        memberships::last_read_seq.eq(thread.last_seq),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if inserted == 0 {
                    return Err(AppError::Conflict("already a member".into()));
                }
                let view = thread.view(thread.last_seq, thread.last_seq, 0, 0)?;
                let event = ChatEvent::MemberAdded {
                    thread: view.clone(),
                    user_id,
                };
                let company = CompanyId(thread.company_id);
                Ok((view, outbox::record(conn, company, vec![event]).await?))
            })
            .await?;
        let (view, recorded) = thread;
        Ok(Answer::recorded(view, recorded))
    }
}

/// DELETE /api/threads/{id}/members/me, DELETE
/// /api/threads/{id}/members/{user_id} and
/// DELETE /admin/threads/{id}/members/{user_id}. A user may remove
/// themself (leave); only the thread's creator may remove someone else.
#[derive(Message)]
#[rtype(result = "Result<(), AppError>")]
pub struct RemoveMember {
    pub caller: Caller,
    pub thread_id: ThreadId,
    pub user_id: UserId,
}

impl Query for RemoveMember {
    type Output = ();
    async fn run(self, db: Db) -> Result<Answer<()>, AppError> {
        let mut conn = db.conn().await?;
        let thread = thread_for(&mut conn, self.caller, self.thread_id).await?;
        if thread.kind == "direct" {
            return Err(AppError::Conflict(
                "a direct thread has exactly two members".into(),
            ));
        }
        if let Caller::User(who) = self.caller {
            let creator = thread.created_by == Some(who.user_id.0);
            if who.user_id != self.user_id && !creator {
                return Err(AppError::Forbidden(
                    "only the thread's creator may remove other members",
                ));
            }
        }
        let (thread_id, user_id) = (thread.id, self.user_id.0);
        let company = CompanyId(thread.company_id);
        let event = ChatEvent::MemberRemoved {
            thread_id: self.thread_id,
            user_id: self.user_id,
        };
        let recorded: Recorded = conn
            .transaction::<_, AppError, _>(async move |conn| {
                // Lock the thread as a send does: a message either commits
                // before the removal (and the member saw it) or after it
                // (and its event follows this one to the hub).
                threads::table
                    .find(thread_id)
                    .select(threads::id)
                    .for_update()
                    .first::<Uuid>(conn)
                    .await?;
                let removed = diesel::delete(
                    memberships::table
                        .filter(memberships::thread_id.eq(thread_id))
                        .filter(memberships::user_id.eq(user_id)),
                )
                .execute(conn)
                .await?;
                if removed == 0 {
                    return Err(AppError::NotFound("member"));
                }
                Ok(outbox::record(conn, company, vec![event]).await?)
            })
            .await?;
        Ok(Answer::recorded((), recorded))
    }
}
