//! Domain types parsed at the edge: ids that cannot be mixed up, and
//! message content, names, titles and seqs that have already been
//! validated. Code behind the protocol and HTTP parsers never re-checks
//! them.

mod content;
mod emoji;
mod ids;
mod mentions;
mod names;
mod seq;
mod upload;
mod webhooks;

pub use content::{
    reject_nul, Attachment, AttachmentInput, MessageContent, MessageKind, MessageText, Metadata,
};
pub use emoji::{Emoji, MAX_EMOJI_BYTES, MAX_EMOJI_PER_MESSAGE};
pub use ids::{
    ClientMsgId, CompanyId, MessageId, NodeId, SessionId, ThreadId, UploadId, UserId, WebhookId,
};
pub use mentions::{Mentions, MAX_MENTIONS};
pub use names::{DisplayName, ExternalId, ThreadTitle, MAX_NAME_CHARS};
pub use seq::Seq;
pub use upload::{FileName, MediaType};
pub use webhooks::{EventType, EventTypes, WebhookUrl, MAX_URL_BYTES};

/// The largest number of messages one chat:sync or history page returns.
pub const MAX_PAGE_LIMIT: i64 = 500;
/// The page size when the client names none.
pub const DEFAULT_PAGE_LIMIT: i64 = 100;
