//! JSON views of records, shared by WebSocket events and HTTP responses.
//! Times are RFC 3339 UTC with milliseconds, as the contract fixes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use crate::domain::{
    ClientMsgId, CompanyId, EventType, MessageId, MessageKind, Metadata, ThreadId, UploadId,
    UserId, WebhookId,
};

pub fn rfc3339_millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn rfc3339_millis_opt<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339_millis(t, s),
        None => s.serialize_none(),
    }
}

/// Deserialize: in cluster mode messages cross between nodes in this shape.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct MessageView {
    pub id: MessageId,
    pub thread_id: ThreadId,
    pub seq: i64,
    pub sender_id: UserId,
    pub client_msg_id: ClientMsgId,
    #[serde(rename = "type")]
    pub kind: MessageKind,
    // Always present, null when absent: `required` says so.
    #[schema(required = true)]
    pub body: Option<String>,
    // Boxed: most messages have none, and every event carries a view.
    #[schema(required = true)]
    pub metadata: Option<Box<Metadata>>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_millis_opt")]
    #[schema(required = true)]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_millis_opt")]
    #[schema(required = true)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The message this one answers, null if none.
    #[schema(required = true)]
    pub reply_to: Option<ReplyView>,
    /// Members the message mentions, in the order the sender gave them.
    pub mentions: Vec<UserId>,
    /// One entry per distinct emoji, in the order each was first added.
    pub reactions: Vec<ReactionView>,
    /// The thread's rev of this message's latest change.
    pub rev: i64,
}

/// The message a reply answers, as the reply shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ReplyView {
    pub id: MessageId,
    pub seq: i64,
    pub sender_id: UserId,
    /// The target's body, cut to at most 200 characters; null once the
    /// target is deleted (or for an attachment without a body).
    #[schema(required = true)]
    pub body: Option<String>,
}

/// The most characters of a reply target's body a reply shows.
pub const REPLY_BODY_CHARS: usize = 200;

/// One emoji on a message and who put it there, in the order they did.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ReactionView {
    pub emoji: String,
    pub user_ids: Vec<UserId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThreadKind {
    Direct,
    Group,
}

impl ThreadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadKind::Direct => "direct",
            ThreadKind::Group => "group",
        }
    }
}

/// A thread as one member sees it: the record plus that member's cursors.
/// This is the shape of `chat:ready` threads, `chat:thread-joined` and the
/// HTTP thread endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct ThreadView {
    pub id: ThreadId,
    pub company_id: CompanyId,
    pub kind: ThreadKind,
    #[schema(required = true)]
    pub title: Option<String>,
    /// None for threads an operator created through the admin API.
    #[schema(required = true)]
    pub created_by: Option<UserId>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    pub last_seq: i64,
    pub last_delivered_seq: i64,
    pub last_read_seq: i64,
    /// Messages after the read cursor that others sent and that are not
    /// deleted: what a badge should show.
    pub unread: i64,
    /// The thread's highest rev: a client that has applied every change
    /// up to it holds the thread's current state.
    pub last_rev: i64,
    /// Messages after the read cursor that mention this member and are
    /// not deleted.
    pub unread_mentions: i64,
}

// A thread in a member's list (GET /api/threads): the thread as they see
// it, and its newest message when the list was asked with it. (Plain
// comments: a doc comment would change the OpenAPI document.)
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ThreadListItem {
    #[serde(flatten)]
    pub thread: ThreadView,
    /// The newest message, null in a thread without messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<MessageView>)]
    pub last_message: Option<Option<MessageView>>,
}

// A member of a thread with their cursors; `online` comes from the hub.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: UserId,
    pub display_name: String,
    /// Set while the user is deactivated; they stay a member.
    #[serde(serialize_with = "rfc3339_millis_opt")]
    #[schema(required = true)]
    pub deactivated_at: Option<DateTime<Utc>>,
    pub online: bool,
    #[serde(serialize_with = "rfc3339_millis")]
    pub joined_at: DateTime<Utc>,
    pub last_delivered_seq: i64,
    pub last_read_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub company_id: CompanyId,
    pub display_name: String,
    #[serde(serialize_with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    /// The host application's own id for the user, unique in the company.
    #[schema(required = true)]
    pub external_id: Option<String>,
    #[serde(serialize_with = "rfc3339_millis_opt")]
    #[schema(required = true)]
    pub deactivated_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub updated_at: DateTime<Utc>,
}

// A user in the company directory (GET /api/users); `online` comes from
// the hub.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DirectoryEntry {
    pub id: UserId,
    pub display_name: String,
    pub online: bool,
}

// One user of the caller's company (GET /api/users/{id}).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PersonView {
    pub id: UserId,
    pub display_name: String,
    pub online: bool,
    #[serde(serialize_with = "rfc3339_millis_opt")]
    #[schema(required = true)]
    pub deactivated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CompanyView {
    pub id: CompanyId,
    pub name: String,
    #[serde(serialize_with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
}

/// One search hit (GET /api/search).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SearchResult {
    /// The message as history pages show it.
    pub message: MessageView,
    /// The body, HTML-escaped, with each matching word wrapped in
    /// `<mark>`…`</mark>`: safe to insert as HTML.
    pub highlight: String,
}

/// One page of messages, ascending by seq.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    pub has_more: bool,
}

/// One page of the change feed: messages in their current state, ascending
/// by rev. `last_rev` is the page's highest rev (the request's `after_rev`
/// when the page is empty): the next page's `after_rev`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChangesPage {
    pub messages: Vec<MessageView>,
    pub last_rev: i64,
    pub has_more: bool,
}

/// A stored file (POST /api/uploads).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UploadView {
    pub id: UploadId,
    pub name: String,
    pub size: u64,
    /// The `Content-Type` it was sent with, served back as is.
    pub mime: String,
    /// Lower-case hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    #[serde(serialize_with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    /// Where the bytes are: `/api/uploads/{id}`.
    pub url: String,
    /// `/api/uploads/{id}/thumbnail`, or null when the file is not a JPEG,
    /// PNG, GIF or WebP image that decodes.
    #[schema(required = true)]
    pub thumbnail_url: Option<String>,
}

impl UploadView {
    pub fn url_of(id: UploadId) -> String {
        format!("/api/uploads/{id}")
    }

    pub fn thumbnail_url_of(id: UploadId) -> String {
        format!("/api/uploads/{id}/thumbnail")
    }
}

// A webhook subscription (POST and GET /admin/webhooks).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: WebhookId,
    pub company_id: CompanyId,
    pub url: String,
    pub events: Vec<EventType>,
    /// The HMAC-SHA256 key of `Confab-Signature` (64 hex digits).
    pub secret: String,
    #[serde(serialize_with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
}

// One event's delivery to one webhook (GET /admin/webhooks/{id}/deliveries).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The `Confab-Event-Id` header and the body's `id`.
    pub event_id: uuid::Uuid,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Attempts made so far (0: not tried yet).
    pub attempts: i32,
    /// The HTTP status of the last attempt; null if it got no answer.
    #[schema(required = true)]
    pub last_status: Option<i32>,
    /// Why the last attempt failed (a status, a timeout, a refused address).
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When the next attempt is due; null once delivered or given up.
    #[serde(serialize_with = "rfc3339_millis_opt")]
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_millis_opt")]
    #[schema(required = true)]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Set when retries ran out (after 24 h); the event is not sent again.
    #[serde(serialize_with = "rfc3339_millis_opt")]
    #[schema(required = true)]
    pub failed_at: Option<DateTime<Utc>>,
}
