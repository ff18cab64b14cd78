//! What nodes tell each other, as JSON on NATS. Every body travels in an
//! [`Envelope`] naming the node that published it: committed events (from
//! `events`) and the hubs' presence and typing news (from `hub::peers`).

use serde::{Deserialize, Serialize};

use crate::domain::NodeId;
use crate::events::ChatEvent;
use crate::hub::peers::{PresenceNews, TypingNews};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub node: NodeId,
    pub body: T,
}

/// What a node hands its bus task to publish.
// Each is serialized as soon as the bus task takes it; boxing the event
// would cost an allocation per published event to save queue space.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Outgoing {
    Event(ChatEvent),
    Presence(PresenceNews),
    Typing(TypingNews),
}

impl Outgoing {
    /// Its `kind` label in the bus metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Outgoing::Event(_) => EVENT,
            Outgoing::Presence(_) => PRESENCE,
            Outgoing::Typing(_) => TYPING,
        }
    }
}

/// The kinds of bus traffic, as metrics label them.
pub const EVENT: &str = "event";
pub const PRESENCE: &str = "presence";
pub const TYPING: &str = "typing";
pub const KINDS: [&str; 3] = [EVENT, PRESENCE, TYPING];

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::{ClientMsgId, MessageId, MessageKind, SessionId, ThreadId, UserId};
    use crate::hub::peers::OnlineOnNode;
    use crate::protocol::MessageView;

    #[test]
    fn a_message_crosses_without_its_origin_session() {
        let message = MessageView {
            id: MessageId::new_v7(),
            thread_id: ThreadId(uuid::Uuid::new_v4()),
            seq: 7,
            sender_id: UserId(uuid::Uuid::new_v4()),
            client_msg_id: ClientMsgId(uuid::Uuid::new_v4()),
            kind: MessageKind::Text,
            body: Some("hi".into()),
            metadata: None,
            // Whole milliseconds: the wire keeps what clients are shown.
            created_at: chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
                .unwrap_or_default(),
            edited_at: None,
            deleted_at: None,
            reply_to: None,
            mentions: vec![UserId(uuid::Uuid::new_v4())],
            reactions: Vec::new(),
            rev: 9,
        };
        let event = ChatEvent::MessageCreated {
            message: message.clone(),
            origin: Some(SessionId::new_v4()),
        };
        let json = serde_json::to_string(&event).unwrap_or_default();
        assert!(!json.contains("origin"), "{json}");
        match serde_json::from_str::<ChatEvent>(&json) {
            Ok(ChatEvent::MessageCreated {
                message: received,
                origin,
            }) => {
                assert_eq!(received, message);
                assert_eq!(origin, None);
            }
            other => panic!("{other:?} from {json}"),
        }
    }

    #[test]
    fn presence_news_round_trips() {
        let news = PresenceNews::Heartbeat {
            users: vec![OnlineOnNode {
                user_id: UserId(uuid::Uuid::new_v4()),
                threads: vec![ThreadId(uuid::Uuid::new_v4())],
            }],
            hello: true,
        };
        let json = serde_json::to_string(&news).unwrap_or_default();
        assert_eq!(serde_json::from_str::<PresenceNews>(&json).ok(), Some(news));
    }
}
