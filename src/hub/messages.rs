//! What the hub can be asked, one struct per intent, with its result type.

use std::collections::{HashMap, HashSet};

use actix::{Message, Recipient};
use bytestring::ByteString;
use serde::Serialize;

use crate::domain::{CompanyId, SessionId, ThreadId, UserId};
use crate::error::AppError;
use crate::outbound::OutboundGauge;

/// How far a room has told its members, or a session was told at
/// connect: every change up to `rev`, every new message up to `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Routed {
    pub seq: i64,
    pub rev: i64,
}

/// A session joins: it is routed to from now on, in the rooms of
/// `threads` (each with the thread's last_seq and last_rev as the session
/// saw them).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub company_id: CompanyId,
    pub threads: Vec<(ThreadId, Routed)>,
    pub addr: Recipient<ToSession>,
    pub outbound: OutboundGauge,
}

/// The second look at a connecting session's memberships, taken after
/// [`Connect`]: it closes the window in which a membership change was
/// routed before the hub knew the user was online. The user joins the
/// rooms of `join` and leaves those of `leave`. The answer is, for each of
/// `report`, the highest seq and rev the hub has routed or passed over in
/// that room, so chat:ready never claims less than the session may have
/// missed.
#[derive(Message)]
#[rtype(result = "HashMap<ThreadId, Routed>")]
pub struct JoinThreads {
    pub session_id: SessionId,
    pub join: Vec<(ThreadId, Routed)>,
    pub leave: Vec<ThreadId>,
    pub report: Vec<ThreadId>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session_id: SessionId,
}

/// chat:typing-start / chat:typing-stop. `not_member` unless the session's
/// user is in the thread.
#[derive(Message)]
#[rtype(result = "Result<(), AppError>")]
pub struct TypingChanged {
    pub session_id: SessionId,
    pub thread_id: ThreadId,
    pub typing: bool,
}

/// Which of these users have at least one session (members list).
#[derive(Message)]
#[rtype(result = "HashSet<UserId>")]
pub struct OnlineAmong(pub Vec<UserId>);

#[derive(Message)]
#[rtype(result = "HubStats")]
pub struct GetStats;

#[derive(Debug, Clone, Serialize)]
pub struct HubStats {
    pub sessions: usize,
    pub users_online: usize,
    pub live_threads: usize,
    /// Changes waiting for an earlier rev before they can be routed.
    pub held_messages: usize,
    /// Bytes routed to sessions and not yet taken by their sockets.
    pub outbound_queued_bytes: usize,
}

/// Graceful shutdown: every session is asked to finish and close with 1001.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// What the hub (or the HTTP layer) tells a session.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum ToSession {
    Frame(Outbound),
    Close(CloseCause),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The outbound queue passed its bound: close with 4008.
    SlowConsumer,
    /// The server is shutting down: finish in-flight writes, close with 1001.
    Shutdown,
    /// The user was deactivated: close with 4003.
    Deactivated,
    /// The user's tokens were revoked: close with 4001.
    TokensRevoked,
}

/// A frame serialized once and shared by every recipient.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub frame: ByteString,
    /// Set for changes to messages (chat:message, chat:message-edited,
    /// chat:message-deleted, chat:reaction): the thread and the change's
    /// rev. Lets a session that is still connecting drop what its
    /// chat:ready already covers.
    pub change_rev: Option<(ThreadId, i64)>,
}

/// From now on, gaps that outlive the reorder hold are read back from the
/// database through this (Persistence) instead of being skipped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseGapFill(pub Recipient<crate::events::LoadChangesAfter>);
