//! Server → client frames. Each variant is one event of the contract; a
//! frame is serialized once into a shared [`ByteString`] and the same bytes
//! go to every recipient.

use bytestring::ByteString;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::client::FrameRef;
use super::views::{rfc3339_millis, ChangesPage, MessageView, ThreadView};
use crate::domain::{MessageId, SessionId, ThreadId, UserId};
use crate::error::ErrorCode;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", content = "data")]
pub enum ServerEvent {
    #[serde(rename = "chat:ready")]
    Ready {
        user_id: UserId,
        session_id: SessionId,
        threads: Vec<ThreadView>,
    },
    #[serde(rename = "chat:message")]
    Message { message: MessageView },
    #[serde(rename = "chat:delivered")]
    Delivered(Receipt),
    #[serde(rename = "chat:read")]
    Read(Receipt),
    #[serde(rename = "chat:typing")]
    Typing {
        thread_id: ThreadId,
        user_id: UserId,
        typing: bool,
    },
    #[serde(rename = "chat:message-edited")]
    MessageEdited { message: MessageView },
    #[serde(rename = "chat:message-deleted")]
    MessageDeleted {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
        #[serde(serialize_with = "rfc3339_millis")]
        deleted_at: DateTime<Utc>,
        rev: i64,
    },
    #[serde(rename = "chat:reaction")]
    Reaction(ReactionChange),
    #[serde(rename = "chat:thread-joined")]
    ThreadJoined { thread: ThreadView },
    /// A thread's title changed; `thread` is as the recipient sees it.
    #[serde(rename = "chat:thread-updated")]
    ThreadUpdated { thread: ThreadView },
    #[serde(rename = "chat:thread-left")]
    ThreadLeft { thread_id: ThreadId },
    #[serde(rename = "chat:member-joined")]
    MemberJoined {
        thread_id: ThreadId,
        user_id: UserId,
    },
    #[serde(rename = "chat:member-left")]
    MemberLeft {
        thread_id: ThreadId,
        user_id: UserId,
    },
    #[serde(rename = "chat:user-updated")]
    UserUpdated { user: UserChange },
    #[serde(rename = "chat:presence")]
    Presence { user_id: UserId, online: bool },
    #[serde(rename = "chat:ack")]
    Ack(Ack),
    #[serde(rename = "chat:error")]
    Error { code: ErrorCode, message: String },
    #[serde(rename = "pong")]
    Pong {},
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    pub thread_id: ThreadId,
    pub user_id: UserId,
    pub up_to_seq: i64,
    #[serde(serialize_with = "rfc3339_millis")]
    pub at: DateTime<Utc>,
}

/// A reaction added (`on`) or removed, as `chat:reaction` carries it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReactionChange {
    pub thread_id: ThreadId,
    pub message_id: MessageId,
    pub seq: i64,
    pub user_id: UserId,
    pub emoji: String,
    pub on: bool,
    pub rev: i64,
}

/// A user's new public fields, as `chat:user-updated` carries them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserChange {
    pub id: UserId,
    pub display_name: String,
}

/// The data of a `chat:ack`, one shape per request kind.
// Serialized once and dropped: boxing the message would cost an
// allocation per ack to save stack space.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Ack {
    Message {
        message: MessageView,
    },
    Delivered {
        thread_id: ThreadId,
        last_delivered_seq: i64,
    },
    Read {
        thread_id: ThreadId,
        last_read_seq: i64,
    },
    Typing {
        thread_id: ThreadId,
        typing: bool,
    },
    Page {
        messages: Vec<MessageView>,
        has_more: bool,
    },
    Reaction {
        message_id: MessageId,
        emoji: String,
        on: bool,
        rev: i64,
    },
    Changes(ChangesPage),
}

#[derive(Serialize)]
struct FramedEvent<'a> {
    #[serde(flatten)]
    event: &'a ServerEvent,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a serde_json::Value>,
}

impl ServerEvent {
    /// Serializes the frame once. Serialization of these types cannot fail
    /// (no maps with non-string keys, no failing Serialize impls); should it
    /// ever, the client gets an `internal` error frame instead of nothing.
    pub fn to_frame(&self, reference: Option<&FrameRef>) -> ByteString {
        let envelope = FramedEvent {
            event: self,
            reference: reference.map(|r| &r.0),
        };
        match serde_json::to_string(&envelope) {
            Ok(text) => ByteString::from(text),
            Err(e) => {
                log::error!("serializing a server frame failed: {e}");
                ByteString::from_static(
                    r#"{"event":"chat:error","data":{"code":"internal","message":"internal error"}}"#,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn frames_carry_event_data_and_ref() {
        let frame = ServerEvent::Pong {}.to_frame(Some(&FrameRef(serde_json::json!("r1"))));
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "pong", "data": {}, "ref": "r1"})
        );
    }

    #[test]
    fn ack_data_has_the_contract_shape() {
        let t = ThreadId(Uuid::nil());
        let frame = ServerEvent::Ack(Ack::Read {
            thread_id: t,
            last_read_seq: 4,
        })
        .to_frame(None);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["event"], "chat:ack");
        assert_eq!(v["data"]["last_read_seq"], 4);
        assert!(v.get("ref").is_none());
    }
}
