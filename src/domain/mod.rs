//! Domain types parsed at the edge: ids that cannot be mixed up, and
//! message content, names, titles and seqs that have already been
//! validated. Code behind the protocol and HTTP parsers never re-checks
//! them.

mod content;
mod ids;
mod names;
mod push;
mod seq;
mod webhooks;

pub use content::{reject_nul, MessageContent, MessageKind, MessageText, Metadata};
pub use ids::{
    ClientMsgId, CompanyId, MessageId, NodeId, PushSubscriptionId, SessionId, ThreadId, UserId,
    WebhookId,
};
pub use names::{DisplayName, ExternalId, ThreadTitle, MAX_NAME_CHARS};
pub use push::{PushEndpoint, PushKeys};
pub use seq::Seq;
pub use webhooks::{EventType, EventTypes, WebhookUrl, MAX_URL_BYTES};

/// The largest number of messages one chat:sync or history page returns.
pub const MAX_PAGE_LIMIT: i64 = 500;
/// The page size when the client names none.
pub const DEFAULT_PAGE_LIMIT: i64 = 100;
