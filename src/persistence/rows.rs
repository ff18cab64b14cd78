//! Rows as diesel reads them, and their conversion into the wire views.
//! The conversion is where database text becomes typed again; a value the
//! schema's CHECKs should have made impossible is an `Internal` error.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::schema::{companies, messages, threads, users};
use crate::domain::{MessageKind, Metadata};
use crate::error::AppError;
use crate::protocol::views::{CompanyView, ReactionView, ReplyView, ThreadKind, UserView};
use crate::protocol::{MessageView, ThreadView};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: Uuid,
    pub thread_id: Uuid,
    pub company_id: Uuid,
    pub seq: i64,
    pub sender_id: Uuid,
    pub client_msg_id: Uuid,
    pub kind: String,
    pub body: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub rev: i64,
    pub created_rev: i64,
    pub reply_to: Option<Uuid>,
    pub mentions: Vec<Uuid>,
}

impl MessageRow {
    /// The wire view, with what other tables hold about the message
    /// (see `message_views`, which loads those for a whole page at once).
    pub fn into_view(
        self,
        reply_to: Option<ReplyView>,
        reactions: Vec<ReactionView>,
    ) -> Result<MessageView, AppError> {
        let row = self;
        let metadata = row
            .metadata
            .map(serde_json::from_value::<Metadata>)
            .transpose()
            .map(|metadata| metadata.map(Box::new))
            .map_err(|e| AppError::Internal(format!("message {} metadata: {e}", row.id)))?;
        Ok(MessageView {
            id: row.id.into(),
            thread_id: row.thread_id.into(),
            seq: row.seq,
            sender_id: row.sender_id.into(),
            client_msg_id: row.client_msg_id.into(),
            kind: MessageKind::from_db(&row.kind)?,
            body: row.body,
            metadata,
            created_at: row.created_at,
            edited_at: row.edited_at,
            deleted_at: row.deleted_at,
            reply_to,
            mentions: row.mentions.into_iter().map(Into::into).collect(),
            reactions,
            rev: row.rev,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = threads)]
pub struct ThreadRow {
    pub id: Uuid,
    pub company_id: Uuid,
    pub kind: String,
    pub title: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub last_seq: i64,
    pub last_rev: i64,
}

pub fn thread_kind(kind: &str) -> Result<ThreadKind, AppError> {
    match kind {
        "direct" => Ok(ThreadKind::Direct),
        "group" => Ok(ThreadKind::Group),
        other => Err(AppError::Internal(format!(
            "unknown thread kind {other:?} in database"
        ))),
    }
}

impl ThreadRow {
    /// The thread as a member whose cursors are given sees it.
    pub fn view(
        &self,
        last_delivered_seq: i64,
        last_read_seq: i64,
        unread: i64,
        unread_mentions: i64,
    ) -> Result<ThreadView, AppError> {
        Ok(ThreadView {
            id: self.id.into(),
            company_id: self.company_id.into(),
            kind: thread_kind(&self.kind)?,
            title: self.title.clone(),
            created_by: self.created_by.map(Into::into),
            created_at: self.created_at,
            last_seq: self.last_seq,
            last_delivered_seq,
            last_read_seq,
            unread,
            last_rev: self.last_rev,
            unread_mentions,
        })
    }
}

/// One row of a member's thread list: the thread, that member's cursors and
/// the unread count, computed in one statement.
#[derive(Debug, QueryableByName)]
pub struct ThreadSummaryRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub company_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub kind: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub title: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    pub created_by: Option<Uuid>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub last_seq: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub last_delivered_seq: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub last_read_seq: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub unread: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub last_rev: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub unread_mentions: i64,
}

impl TryFrom<ThreadSummaryRow> for ThreadView {
    type Error = AppError;

    fn try_from(r: ThreadSummaryRow) -> Result<Self, AppError> {
        Ok(ThreadView {
            id: r.id.into(),
            company_id: r.company_id.into(),
            kind: thread_kind(&r.kind)?,
            title: r.title,
            created_by: r.created_by.map(Into::into),
            created_at: r.created_at,
            last_seq: r.last_seq,
            last_delivered_seq: r.last_delivered_seq,
            last_read_seq: r.last_read_seq,
            unread: r.unread,
            last_rev: r.last_rev,
            unread_mentions: r.unread_mentions,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: Uuid,
    pub company_id: Uuid,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    pub external_id: Option<String>,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserRow> for UserView {
    fn from(r: UserRow) -> Self {
        UserView {
            id: r.id.into(),
            company_id: r.company_id.into(),
            display_name: r.display_name,
            created_at: r.created_at,
            external_id: r.external_id,
            deactivated_at: r.deactivated_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = companies)]
pub struct CompanyRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<CompanyRow> for CompanyView {
    fn from(r: CompanyRow) -> Self {
        CompanyView {
            id: r.id.into(),
            name: r.name,
            created_at: r.created_at,
        }
    }
}
