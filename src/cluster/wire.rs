//! What nodes tell each other, as JSON on NATS. Every body travels in an
//! [`Envelope`] naming the node that published it.

use serde::{Deserialize, Serialize};

use super::NodeId;
use crate::domain::{ThreadId, UserId};
use crate::hub::events::ChatEvent;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub node: NodeId,
    pub body: T,
}

/// Who is online on the publishing node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PresenceNews {
    /// The user's first session on that node opened.
    Online {
        user_id: UserId,
        threads: Vec<ThreadId>,
    },
    /// The user's last session on that node closed.
    Offline {
        user_id: UserId,
        threads: Vec<ThreadId>,
    },
    /// Everyone online on that node, replacing what the receiver knew.
    /// `hello` is set on the first heartbeat after (re)connecting: the
    /// others may have missed this node's events and catch up.
    Heartbeat {
        users: Vec<OnlineOnNode>,
        hello: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineOnNode {
    pub user_id: UserId,
    pub threads: Vec<ThreadId>,
}

/// A local user started or stopped typing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypingNews {
    pub thread_id: ThreadId,
    pub user_id: UserId,
    pub typing: bool,
}

/// What a node hands its bus task to publish.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Event(ChatEvent),
    Presence(PresenceNews),
    Typing(TypingNews),
}
