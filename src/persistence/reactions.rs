//! chat:react: a member adds or removes their reaction to a live message.
//! One transaction; a reaction that changes something takes the thread's
//! next rev (see [`super::edits`]) and stamps the message with it.
//!
//! The list's order lives in the rows: `since` is the rev at which the
//! emoji entered the message's list (copied to every later reactor of it,
//! so it survives the first reactor leaving), `added` the rev of each
//! user's reaction. An emoji whose last reactor leaves has no rows left;
//! added again, it gets a new, higher `since`: the end of the list.

use actix::Message;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::edits::{log_change, Change};
use super::outbox::{self, Recorded};
use super::schema::{messages, reactions, threads};
use super::threads::require_member;
use super::{Answer, Db, Query};
use crate::auth::Claimed;
use crate::domain::{Emoji, MessageId, SessionId, ThreadId, MAX_EMOJI_PER_MESSAGE};
use crate::error::AppError;
use crate::events::ChatEvent;

#[derive(Message)]
#[rtype(result = "Result<Reacted, AppError>")]
pub struct React {
    pub reactor: Claimed,
    pub thread_id: ThreadId,
    pub message_id: MessageId,
    pub emoji: Emoji,
    pub on: bool,
    /// The requesting session: it gets the ack, not chat:reaction.
    pub origin: Option<SessionId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reacted {
    /// The change's rev; for a reaction that changed nothing, the
    /// message's current rev.
    pub rev: i64,
}

/// What the transaction found and did.
struct Outcome {
    rev: i64,
    /// The change's event, written to the outbox; None if nothing changed.
    recorded: Option<Recorded>,
}

impl Query for React {
    type Output = Reacted;
    async fn run(self, db: Db) -> Result<Answer<Reacted>, AppError> {
        let mut conn = db.conn().await?;
        let (reactor, thread_id, message_id) = (self.reactor, self.thread_id, self.message_id);
        let (emoji, on, origin) = (self.emoji.as_str(), self.on, self.origin);
        let outcome = conn
            .transaction::<_, AppError, _>(async |conn| {
                require_member(conn, reactor, thread_id).await?;
                // The thread's lock first: reactions, edits, deletes and
                // sends of one thread take their revs one at a time.
                let last_rev: i64 = threads::table
                    .find(thread_id.0)
                    .select(threads::last_rev)
                    .for_no_key_update()
                    .first(conn)
                    .await?;
                let (seq, current_rev): (i64, i64) = messages::table
                    .filter(messages::id.eq(message_id.0))
                    .filter(messages::thread_id.eq(thread_id.0))
                    .filter(messages::deleted_at.is_null())
                    .select((messages::seq, messages::rev))
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or(AppError::NotFound("message"))?;
                let rev = last_rev + 1;
                let mine = reactions::table
                    .filter(reactions::message_id.eq(message_id.0))
                    .filter(reactions::emoji.eq(emoji));
                let changed = if on {
                    add(conn, message_id, emoji, reactor, rev).await?
                } else {
                    diesel::delete(mine.filter(reactions::user_id.eq(reactor.user_id.0)))
                        .execute(conn)
                        .await?
                        > 0
                };
                if !changed {
                    return Ok(Outcome {
                        rev: current_rev,
                        recorded: None,
                    });
                }
                diesel::update(threads::table.find(thread_id.0))
                    .set(threads::last_rev.eq(rev))
                    .execute(conn)
                    .await?;
                diesel::update(messages::table.find(message_id.0))
                    .set(messages::rev.eq(rev))
                    .execute(conn)
                    .await?;
                let change = Change::Reaction {
                    user_id: reactor.user_id.0,
                    emoji,
                    on,
                };
                log_change(conn, thread_id.0, rev, message_id.0, change).await?;
                let event = ChatEvent::ReactionChanged {
                    thread_id,
                    message_id,
                    seq,
                    user_id: reactor.user_id,
                    emoji: emoji.to_owned(),
                    on,
                    rev,
                    origin,
                };
                let recorded = outbox::record(conn, reactor.company_id, vec![event]).await?;
                Ok(Outcome {
                    rev,
                    recorded: Some(recorded),
                })
            })
            .await?;
        let reacted = Reacted { rev: outcome.rev };
        match outcome.recorded {
            Some(recorded) => Ok(Answer::recorded(reacted, recorded)),
            None => Ok(reacted.into()),
        }
    }
}

/// Adds the reaction unless the user has it; false if they had.
async fn add(
    conn: &mut diesel_async::AsyncPgConnection,
    message_id: MessageId,
    emoji: &str,
    reactor: Claimed,
    rev: i64,
) -> Result<bool, AppError> {
    let on_message = reactions::table.filter(reactions::message_id.eq(message_id.0));
    let reactors: Vec<(uuid::Uuid, i64)> = on_message
        .filter(reactions::emoji.eq(emoji))
        .select((reactions::user_id, reactions::since))
        .load(conn)
        .await?;
    if reactors.iter().any(|(u, _)| *u == reactor.user_id.0) {
        return Ok(false);
    }
    let since = match reactors.first() {
        Some(&(_, since)) => since,
        None => {
            let distinct: i64 = on_message
                .select(diesel::dsl::count(reactions::emoji).aggregate_distinct())
                .first(conn)
                .await?;
            if distinct >= MAX_EMOJI_PER_MESSAGE {
                return Err(AppError::bad_request(format!(
                    "a message holds at most {MAX_EMOJI_PER_MESSAGE} distinct emoji"
                )));
            }
            rev
        }
    };
    diesel::insert_into(reactions::table)
        .values((
            reactions::message_id.eq(message_id.0),
            reactions::emoji.eq(emoji),
            reactions::user_id.eq(reactor.user_id.0),
            reactions::since.eq(since),
            reactions::added.eq(rev),
        ))
        .execute(conn)
        .await?;
    Ok(true)
}
