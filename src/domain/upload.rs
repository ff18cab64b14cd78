//! What describes an uploaded file: its name and its media type, checked
//! where the request arrives.

use crate::error::AppError;

/// The most characters a file name may have.
pub const MAX_FILE_NAME_CHARS: usize = 255;
const MAX_MEDIA_TYPE_BYTES: usize = 255;

/// A file name of 1..=255 characters with no `/`, `\` or control
/// character: safe to show, and to put in a `Content-Disposition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    pub fn parse(raw: String) -> Result<Self, AppError> {
        if raw.is_empty() || raw.chars().nth(MAX_FILE_NAME_CHARS).is_some() {
            return Err(AppError::bad_request("name must be 1 to 255 characters"));
        }
        if raw.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
            return Err(AppError::bad_request(
                "name must not contain '/', '\\' or control characters",
            ));
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

/// A media type as a `Content-Type` header gives it (`type/subtype` with
/// any parameters), lower-cased; without a header, bytes of no known kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType(String);

impl MediaType {
    pub const OCTET_STREAM: &'static str = "application/octet-stream";

    /// The four image types a browser shows inline; the rest download.
    pub const INLINE_IMAGES: [&'static str; 4] =
        ["image/jpeg", "image/png", "image/gif", "image/webp"];

    pub fn parse(header: Option<&str>) -> Result<Self, AppError> {
        let Some(raw) = header.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Self(Self::OCTET_STREAM.to_string()));
        };
        let bad = || AppError::bad_request("Content-Type must be a media type like image/png");
        if raw.len() > MAX_MEDIA_TYPE_BYTES
            || !raw.is_ascii()
            || raw.chars().any(|c| c.is_ascii_control())
        {
            return Err(bad());
        }
        let essence = raw.split(';').next().unwrap_or_default().trim();
        let token = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
        };
        match essence.split_once('/') {
            Some((kind, sub)) if token(kind) && token(sub) => Ok(Self(raw.to_ascii_lowercase())),
            _ => Err(bad()),
        }
    }

    /// Trusted text from the database.
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `type/subtype` without parameters.
    pub fn essence(&self) -> &str {
        self.0.split(';').next().unwrap_or_default().trim()
    }

    pub fn is_inline_image(&self) -> bool {
        Self::INLINE_IMAGES.contains(&self.essence())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_paths_and_control_characters() {
        assert!(FileName::parse("report 2026.pdf".into()).is_ok());
        assert!(FileName::parse("é".repeat(255)).is_ok());
        for bad in [
            "",
            "a/b",
            "a\\b",
            "a\u{0}b",
            "tab\there",
            "new\nline",
            "\u{7f}",
        ] {
            assert!(FileName::parse(bad.into()).is_err(), "{bad:?}");
        }
        assert!(FileName::parse("x".repeat(256)).is_err());
    }

    #[test]
    fn media_types_are_checked_and_default_to_bytes() {
        assert_eq!(
            MediaType::parse(None).unwrap().as_str(),
            "application/octet-stream"
        );
        let png = MediaType::parse(Some("Image/PNG")).unwrap();
        assert_eq!(png.as_str(), "image/png");
        assert!(png.is_inline_image());
        let text = MediaType::parse(Some("text/plain; charset=utf-8")).unwrap();
        assert_eq!(text.essence(), "text/plain");
        assert!(!text.is_inline_image());
        for bad in ["png", "image/", "/png", "a b/c", "image/png\r\nX: y"] {
            assert!(MediaType::parse(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
