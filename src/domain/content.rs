//! Message content as the contract allows it. A [`MessageContent`] can
//! only be built by [`MessageContent::parse`], so holding one proves the
//! type, body and metadata agree with the contract.

use serde::{Deserialize, Serialize};

use super::UploadId;
use crate::error::AppError;

/// The most Unicode scalar values a body may hold.
pub const MAX_BODY_CHARS: usize = 8000;
const MAX_METADATA_TEXT_CHARS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Text,
    Image,
    File,
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::File => "file",
            MessageKind::System => "system",
        }
    }

    pub fn from_db(s: &str) -> Result<Self, AppError> {
        match s {
            "text" => Ok(MessageKind::Text),
            "image" => Ok(MessageKind::Image),
            "file" => Ok(MessageKind::File),
            "system" => Ok(MessageKind::System),
            other => Err(AppError::Internal(format!(
                "unknown message kind {other:?} in database"
            ))),
        }
    }
}

/// Postgres stores neither `text` nor `jsonb` with a NUL character, so
/// text that would hold one is refused as bad input before it gets there
/// (otherwise the insert fails and the client sees an internal error).
pub fn reject_nul(field: &str, value: &str) -> Result<(), AppError> {
    if value.contains('\0') {
        return Err(AppError::bad_request(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// A body of 1..=8000 characters that is not all whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct MessageText(String);

impl MessageText {
    pub fn parse(raw: String) -> Result<Self, AppError> {
        if raw.trim().is_empty() {
            return Err(AppError::bad_request(
                "body must not be empty or all whitespace",
            ));
        }
        reject_nul("body", &raw)?;
        // Count lazily: stop as soon as the limit is passed.
        if raw.chars().nth(MAX_BODY_CHARS).is_some() {
            return Err(AppError::bad_request(format!(
                "body must be at most {MAX_BODY_CHARS} characters"
            )));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Attachment description carried by `image` and `file` messages, as
/// every message view shows it. A file hosted elsewhere (Edition 1) has
/// `{url, name, size, mime}`; an upload of ours also has `upload_id` and
/// `thumbnail_url` (null when it has no thumbnail), filled by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Metadata {
    /// Present for an upload (POST /api/uploads), absent for a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<UploadId>,
    /// An http(s) URL, or for an upload its path `/api/uploads/{id}`.
    #[schema(max_length = 2048)]
    pub url: String,
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    #[schema(maximum = 9223372036854775807_u64)]
    pub size: u64,
    /// A MIME type such as image/png.
    #[schema(max_length = 255)]
    pub mime: String,
    /// Present (maybe null) for an upload, absent for a link.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[schema(value_type = Option<String>)]
    pub thumbnail_url: Option<Option<String>>,
}

/// A field that is there, even as null, is `Some`: `Some(None)` is null.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl Metadata {
    fn validate(&self) -> Result<(), AppError> {
        reject_nul("metadata.url", &self.url)?;
        reject_nul("metadata.name", &self.name)?;
        reject_nul("metadata.mime", &self.mime)?;
        let url_ok = url::Url::parse(&self.url)
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !url_ok || self.url.len() > MAX_METADATA_TEXT_CHARS {
            return Err(AppError::bad_request("metadata.url must be an http(s) URL"));
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 255 {
            return Err(AppError::bad_request(
                "metadata.name must be 1..=255 characters",
            ));
        }
        if self.mime.trim().is_empty() || self.mime.len() > 255 || !self.mime.contains('/') {
            return Err(AppError::bad_request("metadata.mime must be a MIME type"));
        }
        if self.size > i64::MAX as u64 {
            return Err(AppError::bad_request("metadata.size is too large"));
        }
        Ok(())
    }
}

/// `metadata` as a client sends it: `{upload_id}` for an upload of its
/// own, or `{url, name, size, mime}` for a file hosted elsewhere. With
/// `upload_id`, the fields the server fills are ignored, so a client may
/// forward a message's metadata as it received it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentInput {
    pub upload_id: Option<UploadId>,
    pub url: Option<String>,
    pub name: Option<String>,
    pub size: Option<u64>,
    pub mime: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub thumbnail_url: Option<Option<String>>,
}

/// What an `image` or `file` message carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Attachment {
    /// An upload named by the client; Persistence checks it is the
    /// sender's and replaces it with its [`Metadata`] before the send is
    /// committed.
    Upload(UploadId),
    Described(Metadata),
}

impl AttachmentInput {
    fn parse(self) -> Result<Attachment, AppError> {
        if let Some(upload_id) = self.upload_id {
            return Ok(Attachment::Upload(upload_id));
        }
        if self.thumbnail_url.is_some() {
            return Err(AppError::bad_request(
                "metadata.thumbnail_url comes with an upload_id only",
            ));
        }
        let missing = || {
            AppError::bad_request(
                "metadata must be {upload_id} or {url, name, size, mime} for image and file",
            )
        };
        let metadata = Metadata {
            upload_id: None,
            url: self.url.ok_or_else(missing)?,
            name: self.name.ok_or_else(missing)?,
            size: self.size.ok_or_else(missing)?,
            mime: self.mime.ok_or_else(missing)?,
            thumbnail_url: None,
        };
        metadata.validate()?;
        Ok(Attachment::Described(metadata))
    }
}

/// What a client may send: text needs a body; image and file need metadata
/// and may carry a caption.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageContent {
    kind: MessageKind,
    body: Option<MessageText>,
    attachment: Option<Attachment>,
}

impl MessageContent {
    pub fn parse(
        kind: Option<MessageKind>,
        body: Option<String>,
        metadata: Option<AttachmentInput>,
    ) -> Result<Self, AppError> {
        let kind = kind.unwrap_or(MessageKind::Text);
        match kind {
            MessageKind::System => Err(AppError::bad_request(
                "type system is written by the server only",
            )),
            MessageKind::Text => {
                if metadata.is_some() {
                    return Err(AppError::bad_request("text messages carry no metadata"));
                }
                let body = body.ok_or_else(|| AppError::bad_request("body is required"))?;
                Ok(Self {
                    kind,
                    body: Some(MessageText::parse(body)?),
                    attachment: None,
                })
            }
            MessageKind::Image | MessageKind::File => {
                let metadata = metadata.ok_or_else(|| {
                    AppError::bad_request(
                        "metadata {upload_id} or {url, name, size, mime} is required for image and file",
                    )
                })?;
                let attachment = metadata.parse()?;
                let body = body.map(MessageText::parse).transpose()?;
                Ok(Self {
                    kind,
                    body,
                    attachment: Some(attachment),
                })
            }
        }
    }

    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    pub fn body(&self) -> Option<&str> {
        self.body.as_ref().map(MessageText::as_str)
    }

    /// The upload whose metadata must be filled in before the commit.
    pub fn upload_to_resolve(&self) -> Option<UploadId> {
        match self.attachment {
            Some(Attachment::Upload(id)) => Some(id),
            _ => None,
        }
    }

    /// Fills in the upload's metadata (from the sender's own upload).
    pub fn with_upload(self, metadata: Metadata) -> Self {
        Self {
            attachment: Some(Attachment::Described(metadata)),
            ..self
        }
    }

    /// The metadata as the database stores it (JSON).
    pub fn stored_metadata(&self) -> Result<Option<serde_json::Value>, AppError> {
        self.metadata()?
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| AppError::Internal(format!("encoding metadata: {e}")))
    }

    /// The metadata as stored. An upload not yet resolved is a bug in the
    /// send path, never stored as an empty attachment.
    pub fn metadata(&self) -> Result<Option<&Metadata>, AppError> {
        match &self.attachment {
            None => Ok(None),
            Some(Attachment::Described(metadata)) => Ok(Some(metadata)),
            Some(Attachment::Upload(id)) => Err(AppError::Internal(format!(
                "upload {id} was not resolved before the commit"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_limits_count_characters_not_bytes() {
        assert!(MessageText::parse("é".repeat(MAX_BODY_CHARS)).is_ok());
        assert!(MessageText::parse("é".repeat(MAX_BODY_CHARS + 1)).is_err());
        assert!(MessageText::parse(" \n\t ".into()).is_err());
        assert!(MessageText::parse(String::new()).is_err());
    }

    #[test]
    fn clients_cannot_send_system_messages() {
        assert!(MessageContent::parse(Some(MessageKind::System), Some("x".into()), None).is_err());
    }

    #[test]
    fn attachments_need_metadata() {
        assert!(MessageContent::parse(Some(MessageKind::Image), None, None).is_err());
        let meta = AttachmentInput {
            url: Some("https://cdn.example.com/a.png".into()),
            name: Some("a.png".into()),
            size: Some(10),
            mime: Some("image/png".into()),
            ..AttachmentInput::default()
        };
        let content = MessageContent::parse(Some(MessageKind::Image), None, Some(meta)).unwrap();
        assert_eq!(content.body(), None);
        assert_eq!(content.upload_to_resolve(), None);
    }

    #[test]
    fn an_upload_is_named_by_its_id_alone_and_filled_in_later() {
        let id = UploadId::new_v7();
        let forwarded = AttachmentInput {
            upload_id: Some(id),
            url: Some("/api/uploads/whatever".into()),
            thumbnail_url: Some(None),
            ..AttachmentInput::default()
        };
        let content =
            MessageContent::parse(Some(MessageKind::File), None, Some(forwarded)).unwrap();
        assert_eq!(content.upload_to_resolve(), Some(id));
        assert!(
            content.metadata().is_err(),
            "unresolved uploads are never stored"
        );
    }

    #[test]
    fn link_metadata_reads_and_writes_without_the_upload_fields() {
        let json = serde_json::json!({"url": "https://x.example.com/a", "name": "a", "size": 1, "mime": "a/b"});
        let metadata: Metadata = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&metadata).unwrap(), json);
        let upload = serde_json::json!({"upload_id": UploadId::new_v7(), "url": "/api/uploads/x",
                                        "name": "a", "size": 1, "mime": "a/b", "thumbnail_url": null});
        let metadata: Metadata = serde_json::from_value(upload.clone()).unwrap();
        assert_eq!(metadata.thumbnail_url, Some(None));
        assert_eq!(serde_json::to_value(&metadata).unwrap(), upload);
    }
}
