//! Where uploaded files live: one interface, [`Storage`], over a local
//! directory (the default) or an S3-compatible object store, both through
//! the `object_store` crate's `ObjectStore` trait. Nothing above this
//! module knows which one is configured.
//!
//! Keys are `files/<upload id>` and `thumbnails/<upload id>`; the database
//! row (persistence/uploads.rs) is the only index of what exists. A file
//! is written before its row and deleted after it, so a row always has
//! its bytes; a failure in between can leave bytes without a row, never
//! the reverse (see docs/PROTOCOL.md, "Files", on collecting them).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::config::UploadSettings;

pub mod collector;

/// Buffered before a part is sent; also S3's smallest multipart part.
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts being sent at once. With the one being filled, an upload holds
/// at most (1 + this) × [`PART_BYTES`] of the file in memory.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no such object")]
    NotFound,
    #[error("storage: {0}")]
    Failed(String),
}

impl From<object_store::Error> for StorageError {
    fn from(err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { .. } => StorageError::NotFound,
            other => StorageError::Failed(other.to_string()),
        }
    }
}

/// Which object of an upload: the file itself or its thumbnail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blob {
    File(Uuid),
    Thumbnail(Uuid),
}

impl Blob {
    fn key(self) -> Key {
        match self {
            Blob::File(id) => Key::from(format!("files/{id}")),
            Blob::Thumbnail(id) => Key::from(format!("thumbnails/{id}")),
        }
    }
}

/// The configured store. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

impl Storage {
    /// The store `settings` name: S3 when a bucket is set, else the
    /// directory, created if missing.
    pub fn from_settings(settings: &UploadSettings) -> Result<Self, StorageError> {
        if settings.uses_s3() {
            // reqwest's rustls is built without a provider of its own (so
            // aws-lc is not compiled in): ring's, which the rest of the
            // server uses too. Installing it again is a harmless no-op.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(&settings.s3_bucket)
                .with_region(&settings.s3_region)
                .with_allow_http(settings.s3_allow_http);
            if !settings.s3_endpoint.is_empty() {
                builder = builder.with_endpoint(&settings.s3_endpoint);
            }
            if !settings.s3_access_key_id.is_empty() {
                builder = builder
                    .with_access_key_id(&settings.s3_access_key_id)
                    .with_secret_access_key(&settings.s3_secret_access_key);
            }
            Ok(Self::over(Arc::new(builder.build()?)))
        } else {
            std::fs::create_dir_all(&settings.dir).map_err(|e| {
                StorageError::Failed(format!("creating uploads.dir {:?}: {e}", settings.dir))
            })?;
            Ok(Self::over(Arc::new(LocalFileSystem::new_with_prefix(
                &settings.dir,
            )?)))
        }
    }

    pub fn over(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Starts writing `blob`. Nothing is visible under its key until
    /// [`BlobWriter::finish`]; a writer dropped or aborted before that
    /// leaves nothing behind in the directory (its staging file is
    /// removed) and, on S3, an incomplete multipart upload that the
    /// writer aborts (or, if the process dies, the bucket's lifecycle rule
    /// removes).
    pub fn writer(&self, blob: Blob) -> BlobWriter {
        BlobWriter {
            inner: Some(
                BufWriter::with_capacity(self.store.clone(), blob.key(), PART_BYTES)
                    .with_max_concurrency(PARTS_IN_FLIGHT),
            ),
        }
    }

    /// Stores a small object (a thumbnail) in one piece.
    pub async fn put(&self, blob: Blob, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&blob.key(), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// The bytes of `blob` in `range` (all of it without one), as a stream.
    pub async fn read(
        &self,
        blob: Blob,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        // The caller checked the range against the size it has on record.
        let result = self.store.get_opts(&blob.key(), options).await?;
        Ok(result.into_stream().map(|r| r.map_err(Into::into)).boxed())
    }

    /// The whole of `blob` in memory (an image, to make its thumbnail).
    pub async fn read_all(&self, blob: Blob) -> Result<Bytes, StorageError> {
        Ok(self.store.get(&blob.key()).await?.bytes().await?)
    }

    /// Removes `blob`; one that is already gone is not an error.
    pub async fn delete(&self, blob: Blob) -> Result<(), StorageError> {
        match self.store.delete(&blob.key()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }
}

/// One object being written, a chunk at a time.
pub struct BlobWriter {
    /// None once finished or aborted.
    inner: Option<BufWriter>,
}

impl BlobWriter {
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        match self.inner.as_mut() {
            Some(writer) => Ok(writer.put(chunk).await?),
            None => Err(StorageError::Failed("write after finish".into())),
        }
    }

    /// Makes the object visible under its key, complete.
    pub async fn finish(mut self) -> Result<(), StorageError> {
        match self.inner.take() {
            Some(mut writer) => writer
                .shutdown()
                .await
                .map_err(|e| StorageError::Failed(e.to_string())),
            None => Err(StorageError::Failed("finished twice".into())),
        }
    }

    /// Gives the object up: nothing of it stays.
    pub async fn abort(mut self) {
        if let Some(mut writer) = self.inner.take() {
            if let Err(e) = writer.abort().await {
                log::warn!("aborting an upload: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_settings(endpoint: &str) -> UploadSettings {
        UploadSettings {
            dir: String::new(),
            max_bytes: 1,
            max_pixels: 1,
            s3_bucket: "files".into(),
            s3_endpoint: endpoint.into(),
            s3_region: "eu-west-1".into(),
            s3_access_key_id: "key".into(),
            s3_secret_access_key: "secret".into(),
            s3_allow_http: false,
            collect_after_s: 0,
            collect_interval_s: 1,
        }
    }

    /// The https client is built with ring's rustls provider: no aws-lc,
    /// and no panic for want of a provider. (The round trip itself is in
    /// tests/api/uploads/s3.rs, against moto over http.)
    #[test]
    fn an_https_store_builds_with_the_ring_provider() {
        assert!(Storage::from_settings(&s3_settings("https://s3.example.com")).is_ok());
    }

    #[tokio::test]
    async fn plain_http_needs_allow_http() {
        let storage = Storage::from_settings(&s3_settings("http://127.0.0.1:9")).unwrap();
        let refused = storage.read_all(Blob::File(Uuid::nil())).await;
        assert!(refused.is_err(), "http without allow_http is refused");
    }
}
