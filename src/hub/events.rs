//! The hub's one input for things that happened: [`Committed`]. Every
//! variant describes a change that is already durable in Postgres.
//! Persistence sends them after commit; a cross-node bus can feed the same
//! message later without the hub knowing the difference.

use actix::Message;
use chrono::{DateTime, Utc};

use crate::domain::{MessageId, SessionId, ThreadId, UserId};
use crate::protocol::{MessageView, ThreadView};

#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Committed(pub ChatEvent);

#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// A new message. `origin` is the session that sent it: it gets the ack
    /// and no copy of the message.
    MessageCreated {
        message: MessageView,
        origin: Option<SessionId>,
    },
    MessageEdited {
        message: MessageView,
    },
    MessageDeleted {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        deleted_at: DateTime<Utc>,
    },
    /// A member's cursors moved. A range is present only if that cursor
    /// moved; `senders` are the members (other than the reader) who sent a
    /// message inside the newly covered range.
    CursorAdvanced {
        thread_id: ThreadId,
        user_id: UserId,
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
    MemberAdded {
        thread: ThreadView,
        user_id: UserId,
    },
    MemberRemoved {
        thread_id: ThreadId,
        user_id: UserId,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRange {
    pub up_to_seq: i64,
    pub senders: Vec<UserId>,
}
