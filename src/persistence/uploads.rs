//! Uploads: the rows that index stored files, and who may read them.
//!
//! Reading rule (PROTOCOL.md, "Files"): the uploader, and every current
//! member of a thread that holds a live message carrying the upload. A
//! deleted message's metadata is NULL, so it stops granting access by
//! itself; another message carrying the same upload still grants it.

use actix::Message;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::schema::uploads;
use super::{Answer, Db, Query};
use crate::auth::Claimed;
use crate::domain::{FileName, MediaType, Metadata, UploadId};
use crate::error::AppError;
use crate::protocol::views::UploadView;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = uploads)]
struct UploadRow {
    id: Uuid,
    name: String,
    size: i64,
    mime: String,
    sha256: String,
    thumbnail_mime: Option<String>,
    thumbnail_size: Option<i64>,
    created_at: DateTime<Utc>,
}

/// An upload as the download handlers need it.
#[derive(Debug, Clone)]
pub struct StoredUpload {
    pub id: UploadId,
    pub name: String,
    pub size: u64,
    pub mime: MediaType,
    pub sha256: String,
    /// Its media type (`image/png` or `image/jpeg`) and size, when there
    /// is a thumbnail.
    pub thumbnail: Option<(String, u64)>,
    pub created_at: DateTime<Utc>,
}

impl From<UploadRow> for StoredUpload {
    fn from(row: UploadRow) -> Self {
        StoredUpload {
            id: row.id.into(),
            name: row.name,
            // The schema's CHECK keeps it non-negative.
            size: u64::try_from(row.size).unwrap_or_default(),
            mime: MediaType::from_stored(row.mime),
            sha256: row.sha256,
            thumbnail: row
                .thumbnail_mime
                .zip(row.thumbnail_size)
                .map(|(mime, size)| (mime, u64::try_from(size).unwrap_or_default())),
            created_at: row.created_at,
        }
    }
}

impl StoredUpload {
    fn thumbnail_url(&self) -> Option<String> {
        self.thumbnail
            .as_ref()
            .map(|_| UploadView::thumbnail_url_of(self.id))
    }

    pub fn view(&self) -> UploadView {
        UploadView {
            id: self.id,
            name: self.name.clone(),
            size: self.size,
            mime: self.mime.as_str().to_string(),
            sha256: self.sha256.clone(),
            created_at: self.created_at,
            url: UploadView::url_of(self.id),
            thumbnail_url: self.thumbnail_url(),
        }
    }

    /// What a message carrying this upload shows.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            upload_id: Some(self.id),
            url: UploadView::url_of(self.id),
            name: self.name.clone(),
            size: self.size,
            mime: self.mime.as_str().to_string(),
            thumbnail_url: Some(self.thumbnail_url()),
        }
    }
}

/// POST /api/uploads, once the bytes are stored: the row that makes them
/// an upload.
#[derive(Message)]
#[rtype(result = "Result<StoredUpload, AppError>")]
pub struct RecordUpload {
    pub id: UploadId,
    pub uploader: Claimed,
    pub name: FileName,
    pub size: u64,
    pub mime: MediaType,
    pub sha256: String,
    /// Media type and size of the thumbnail made for it.
    pub thumbnail: Option<(&'static str, u64)>,
}

impl Query for RecordUpload {
    type Output = StoredUpload;
    async fn run(self, db: Db) -> Result<Answer<StoredUpload>, AppError> {
        let mut conn = db.conn().await?;
        let too_big = |_| AppError::Internal("upload size past i64".into());
        let size = i64::try_from(self.size).map_err(too_big)?;
        let (thumbnail_mime, thumbnail_size) = match self.thumbnail {
            Some((mime, size)) => (Some(mime), Some(i64::try_from(size).map_err(too_big)?)),
            None => (None, None),
        };
        let row: UploadRow = diesel::insert_into(uploads::table)
            .values((
                uploads::id.eq(self.id.0),
                uploads::company_id.eq(self.uploader.company_id.0),
                uploads::uploader_id.eq(self.uploader.user_id.0),
                uploads::name.eq(self.name.as_str()),
                uploads::size.eq(size),
                uploads::mime.eq(self.mime.as_str()),
                uploads::sha256.eq(&self.sha256),
                uploads::thumbnail_mime.eq(thumbnail_mime),
                uploads::thumbnail_size.eq(thumbnail_size),
            ))
            .returning(UploadRow::as_returning())
            .get_result(&mut conn)
            .await?;
        Ok(StoredUpload::from(row).into())
    }
}

/// GET /api/uploads/{id}[/thumbnail]: the upload, if the reader may read
/// it; anything else (another company's, nobody's) is not found.
#[derive(Message)]
#[rtype(result = "Result<StoredUpload, AppError>")]
pub struct FindReadableUpload {
    pub reader: Claimed,
    pub upload_id: UploadId,
}

impl Query for FindReadableUpload {
    type Output = StoredUpload;
    async fn run(self, db: Db) -> Result<Answer<StoredUpload>, AppError> {
        let mut conn = db.conn().await?;
        let row: Option<UploadRow> = diesel::sql_query(
            "SELECT u.id, u.name, u.size, u.mime, u.sha256, u.thumbnail_mime,
                    u.thumbnail_size, u.created_at
             FROM uploads u
             WHERE u.id = $1 AND u.company_id = $2
               AND (u.uploader_id = $3
                    OR EXISTS (SELECT 1 FROM messages m
                               JOIN memberships mb ON mb.thread_id = m.thread_id
                               WHERE m.metadata ? 'upload_id'
                                 AND m.metadata ->> 'upload_id' = u.id::text
                                 AND m.deleted_at IS NULL
                                 AND m.company_id = $2
                                 AND mb.user_id = $3))",
        )
        .bind::<SqlUuid, _>(self.upload_id.0)
        .bind::<SqlUuid, _>(self.reader.company_id.0)
        .bind::<SqlUuid, _>(self.reader.user_id.0)
        .get_result(&mut conn)
        .await
        .optional()?;
        let row = row.ok_or(AppError::NotFound("upload"))?;
        Ok(StoredUpload::from(row).into())
    }
}

/// chat:send with `metadata: {upload_id}`: the metadata of the sender's
/// own upload. Anyone else's, or none, is a bad request (the id is the
/// client's mistake, not a record it may learn about).
///
/// It also stamps `last_sent_at`, in the same statement: the collector
/// spares what was stamped within its grace period, so an upload cannot be
/// collected between this look-up and the commit of the message that
/// carries it (which takes seconds at most, the grace period a day).
pub(super) async fn own_upload_metadata(
    db: &Db,
    sender: Claimed,
    upload_id: UploadId,
) -> Result<Metadata, AppError> {
    let mut conn = db.conn().await?;
    let row: Option<UploadRow> = diesel::update(
        uploads::table
            .filter(uploads::id.eq(upload_id.0))
            .filter(uploads::uploader_id.eq(sender.user_id.0))
            .filter(uploads::company_id.eq(sender.company_id.0)),
    )
    .set(uploads::last_sent_at.eq(diesel::dsl::now))
    .returning(UploadRow::as_returning())
    .get_result(&mut conn)
    .await
    .optional()?;
    let row = row.ok_or_else(|| {
        AppError::bad_request("metadata.upload_id must name an upload of your own")
    })?;
    Ok(StoredUpload::from(row).metadata())
}

/// Garbage: uploads that no message carries (a deleted message carries
/// nothing) and that were neither made nor named by a chat:send within
/// `idle_for`. Their rows are deleted, at most `batch` at a time, and their
/// ids returned so the caller deletes their bytes after: a row never
/// outlives its bytes.
#[derive(Message)]
#[rtype(result = "Result<Vec<UploadId>, AppError>")]
pub struct CollectUploads {
    pub idle_for: std::time::Duration,
    pub batch: i64,
}

#[derive(QueryableByName)]
struct CollectedRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

impl Query for CollectUploads {
    type Output = Vec<UploadId>;
    async fn run(self, db: Db) -> Result<Answer<Vec<UploadId>>, AppError> {
        let mut conn = db.conn().await?;
        let idle_seconds = self.idle_for.as_secs_f64();
        // A send stamping last_sent_at concurrently either commits first
        // (then the DELETE re-checks the row and keeps it) or finds the row
        // gone (and is refused): no message ever names a collected upload.
        let rows: Vec<CollectedRow> = diesel::sql_query(
            "DELETE FROM uploads
             WHERE id IN (
                 SELECT u.id FROM uploads u
                 WHERE u.last_sent_at < now() - make_interval(secs => $1)
                   AND NOT EXISTS (SELECT 1 FROM messages m
                                   WHERE m.metadata ? 'upload_id'
                                     AND m.metadata ->> 'upload_id' = u.id::text)
                 LIMIT $2)
               AND last_sent_at < now() - make_interval(secs => $1)
             RETURNING id",
        )
        .bind::<diesel::sql_types::Double, _>(idle_seconds)
        .bind::<diesel::sql_types::BigInt, _>(self.batch)
        .load(&mut conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| UploadId::from(row.id))
            .collect::<Vec<_>>()
            .into())
    }
}
