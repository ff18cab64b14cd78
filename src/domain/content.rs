//! Message content as the contract allows it. A [`MessageContent`] can
//! only be built by [`MessageContent::parse`], so holding one proves the
//! type, body and metadata agree with the contract.

use serde::{Deserialize, Serialize};

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

/// Attachment description carried by `image` and `file` messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// An http(s) URL.
    #[schema(max_length = 2048)]
    pub url: String,
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    #[schema(maximum = 9223372036854775807_u64)]
    pub size: u64,
    /// A MIME type such as image/png.
    #[schema(max_length = 255)]
    pub mime: String,
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

/// What a client may send: text needs a body; image and file need metadata
/// and may carry a caption.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageContent {
    kind: MessageKind,
    body: Option<MessageText>,
    metadata: Option<Metadata>,
}

impl MessageContent {
    pub fn parse(
        kind: Option<MessageKind>,
        body: Option<String>,
        metadata: Option<Metadata>,
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
                    metadata: None,
                })
            }
            MessageKind::Image | MessageKind::File => {
                let metadata = metadata.ok_or_else(|| {
                    AppError::bad_request(
                        "metadata {url, name, size, mime} is required for image and file",
                    )
                })?;
                metadata.validate()?;
                let body = body.map(MessageText::parse).transpose()?;
                Ok(Self {
                    kind,
                    body,
                    metadata: Some(metadata),
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

    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
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
        let meta = Metadata {
            url: "https://cdn.example.com/a.png".into(),
            name: "a.png".into(),
            size: 10,
            mime: "image/png".into(),
        };
        let content = MessageContent::parse(Some(MessageKind::Image), None, Some(meta)).unwrap();
        assert_eq!(content.body(), None);
    }
}
