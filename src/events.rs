//! What was committed: the vocabulary shared by the modules that make,
//! carry and route changes, and owned by none of them.
//!
//! - [`Committed`] wraps a [`ChatEvent`], a change that is already durable
//!   in Postgres. Persistence publishes it after commit to whoever was
//!   wired to it at start-up (the hub; in cluster mode also the bus
//!   forwarder), and the bus delivers other nodes' events to the hub as the
//!   same message, so the hub cannot tell the difference.
//! - [`LoadChangesAfter`] over [`RevRange`]s is the read-back request: the
//!   hub asks for the changes whose announcement never reached it, and
//!   Persistence answers them as the events the hub missed.
//! - [`OnlineIn`] is the presence question group commit asks the hub
//!   before a batch, for the notification rule ("no session anywhere when
//!   it was committed").
//!
//! In cluster mode the events cross NATS as JSON. `origin` is not sent: the
//! session it names lives on the publishing node only, so on every other
//! node the event has no origin.

use actix::Message;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{MessageId, SessionId, ThreadId, UserId};
use crate::error::AppError;
use crate::protocol::{MessageView, ThreadView};

#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Committed(pub ChatEvent);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A new message. `origin` is the session that sent it: it gets the ack
    /// and no copy of the message. `message.rev` is the rev it was created
    /// at (its place in the thread's changes), even when the view was read
    /// later and shows a newer state.
    MessageCreated {
        message: MessageView,
        #[serde(skip)]
        origin: Option<SessionId>,
    },
    /// `message.rev` is the edit's rev.
    MessageEdited { message: MessageView },
    MessageDeleted {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        deleted_at: DateTime<Utc>,
        rev: i64,
    },
    /// A member's reaction was added (`on`) or removed. `origin` got the ack.
    ReactionChanged {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        user_id: UserId,
        emoji: String,
        on: bool,
        rev: i64,
        #[serde(skip)]
        origin: Option<SessionId>,
    },
    /// A member's cursors moved. A range is present only if that cursor
    /// moved; `senders` are the members (other than the reader) who sent a
    /// message inside the newly covered range.
    CursorAdvanced {
        thread_id: ThreadId,
        user_id: UserId,
        #[serde(skip)]
        origin: Option<SessionId>,
        delivered: Option<ReceiptRange>,
        read: Option<ReceiptRange>,
        at: DateTime<Utc>,
    },
    /// A thread was created with these members. `thread` has the cursors a
    /// new member starts with.
    ThreadCreated {
        thread: ThreadView,
        members: Vec<UserId>,
    },
    /// `user_id` was added to an existing thread; `thread` is as they see it.
    MemberAdded { thread: ThreadView, user_id: UserId },
    MemberRemoved {
        thread_id: ThreadId,
        user_id: UserId,
    },
    /// A thread's shared fields changed (its title). `thread` is as the
    /// member who changed it sees it; `members` holds every member's own
    /// cursors, read in the same transaction, so each member is told of the
    /// thread as they see it.
    ThreadUpdated {
        thread: ThreadView,
        members: Vec<MemberCursors>,
    },
    /// A user was renamed. `threads` are every thread they belong to, read
    /// in the renaming transaction: a node where the user is not online
    /// finds the co-members to tell through those threads' rooms.
    UserUpdated {
        user_id: UserId,
        display_name: String,
        threads: Vec<ThreadId>,
    },
    /// The user was deactivated: their sessions close on every node.
    UserDeactivated { user_id: UserId },
    /// Every token issued to the user so far was revoked: their sessions
    /// close on every node.
    TokensRevoked { user_id: UserId },
}

impl ChatEvent {
    /// What the event's order matters within: its thread, or for a change
    /// to a person, that person. In cluster mode events of one key travel
    /// on one subject, so they arrive in publish order.
    pub fn ordering_key(&self) -> Uuid {
        match self {
            ChatEvent::UserUpdated { user_id, .. }
            | ChatEvent::UserDeactivated { user_id }
            | ChatEvent::TokensRevoked { user_id } => user_id.0,
            ChatEvent::MessageCreated { message, .. } | ChatEvent::MessageEdited { message } => {
                message.thread_id.0
            }
            ChatEvent::MessageDeleted { thread_id, .. }
            | ChatEvent::ReactionChanged { thread_id, .. }
            | ChatEvent::CursorAdvanced { thread_id, .. }
            | ChatEvent::MemberRemoved { thread_id, .. } => thread_id.0,
            ChatEvent::ThreadCreated { thread, .. }
            | ChatEvent::MemberAdded { thread, .. }
            | ChatEvent::ThreadUpdated { thread, .. } => thread.id.0,
        }
    }
}

/// A change to a thread's messages and its place in the thread's order:
/// what the hub's reorder buffer orders by rev.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageChange {
    Created {
        message: MessageView,
        origin: Option<SessionId>,
    },
    Edited {
        message: MessageView,
    },
    Deleted {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        deleted_at: DateTime<Utc>,
        rev: i64,
    },
    Reaction {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        user_id: UserId,
        emoji: String,
        on: bool,
        rev: i64,
        origin: Option<SessionId>,
    },
}

impl MessageChange {
    pub fn thread_id(&self) -> ThreadId {
        match self {
            MessageChange::Created { message, .. } | MessageChange::Edited { message } => {
                message.thread_id
            }
            MessageChange::Deleted { thread_id, .. }
            | MessageChange::Reaction { thread_id, .. } => *thread_id,
        }
    }

    /// Its place in the thread's changes.
    pub fn rev(&self) -> i64 {
        match self {
            MessageChange::Created { message, .. } | MessageChange::Edited { message } => {
                message.rev
            }
            MessageChange::Deleted { rev, .. } | MessageChange::Reaction { rev, .. } => *rev,
        }
    }
}

impl ChatEvent {
    /// Whether the event is a change to a thread's messages: one the
    /// hub's reorder buffer orders by rev.
    pub fn is_message_change(&self) -> bool {
        matches!(
            self,
            ChatEvent::MessageCreated { .. }
                | ChatEvent::MessageEdited { .. }
                | ChatEvent::MessageDeleted { .. }
                | ChatEvent::ReactionChanged { .. }
        )
    }

    /// The event as a change to a thread's messages; None for any other
    /// kind of event.
    pub fn into_message_change(self) -> Option<MessageChange> {
        Some(match self {
            ChatEvent::MessageCreated { message, origin } => {
                MessageChange::Created { message, origin }
            }
            ChatEvent::MessageEdited { message } => MessageChange::Edited { message },
            ChatEvent::MessageDeleted {
                thread_id,
                message_id,
                seq,
                deleted_at,
                rev,
            } => MessageChange::Deleted {
                thread_id,
                message_id,
                seq,
                deleted_at,
                rev,
            },
            ChatEvent::ReactionChanged {
                thread_id,
                message_id,
                seq,
                user_id,
                emoji,
                on,
                rev,
                origin,
            } => MessageChange::Reaction {
                thread_id,
                message_id,
                seq,
                user_id,
                emoji,
                on,
                rev,
                origin,
            },
            _ => return None,
        })
    }
}

/// One member's own part of a [`ThreadView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCursors {
    pub user_id: UserId,
    pub last_delivered_seq: i64,
    pub last_read_seq: i64,
    pub unread: i64,
    pub unread_mentions: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptRange {
    pub up_to_seq: i64,
    pub senders: Vec<UserId>,
}

/// The changes of a thread with `after_rev < rev <= up_to_rev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevRange {
    pub thread_id: ThreadId,
    pub after_rev: i64,
    pub up_to_rev: i64,
}

/// Several threads' ranges in one statement; at most `limit_per_thread`
/// changes each (the lowest revs), ascending by thread, then rev. The
/// answer is what the room missed, as the changes it would have been told
/// of, each carrying its message's current state (see
/// `persistence::replay`).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<MessageChange>, AppError>")]
pub struct LoadChangesAfter {
    pub ranges: Vec<RevRange>,
    pub limit_per_thread: i64,
}

/// Which users, of those with a session on any node, are in the live rooms
/// of these threads. Answered by the hub from its own rooms and what the
/// other nodes last told it.
#[derive(Debug, Message)]
#[rtype(result = "Vec<UserId>")]
pub struct OnlineIn {
    pub threads: Vec<ThreadId>,
}
