//! Names people give things: a thread's title, a user's display name, a
//! company's name. Each can only be built by its `parse`, so holding one
//! proves it follows the rules; what Postgres stores is already checked.

use super::content::reject_nul;
use crate::error::AppError;

/// The most Unicode scalar values a name or a title may hold.
pub const MAX_NAME_CHARS: usize = 200;

/// A thread's title: trimmed, at most 200 characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadTitle(String);

impl ThreadTitle {
    /// A title as a client gives it: absent, empty or all whitespace means
    /// the thread has none.
    pub fn parse(raw: Option<String>) -> Result<Option<Self>, AppError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        reject_nul("title", &raw)?;
        let title = raw.trim();
        if title.chars().count() > MAX_NAME_CHARS {
            return Err(AppError::bad_request(format!(
                "title is longer than {MAX_NAME_CHARS} characters"
            )));
        }
        if title.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self(title.to_string())))
    }

    /// A new title for an existing thread: null clears it, but a string
    /// must keep 1 to 200 characters after trimming. An empty one is
    /// refused rather than read as null, so a client that sends an empty
    /// input box by mistake learns of it instead of losing the title.
    pub fn parse_rename(raw: Option<String>) -> Result<Option<Self>, AppError> {
        let blank = raw.as_deref().is_some_and(|t| t.trim().is_empty());
        let title = Self::parse(raw)?;
        if blank {
            return Err(AppError::bad_request(
                "title must not be empty; send null to clear it",
            ));
        }
        Ok(title)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A user's display name or a company's name: trimmed, 1 to 200
/// characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// `field` is the name the client used for it, for the error message.
    pub fn parse(field: &str, raw: String) -> Result<Self, AppError> {
        reject_nul(field, &raw)?;
        let name = raw.trim();
        if name.is_empty() {
            return Err(AppError::bad_request(format!("{field} must not be empty")));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(AppError::bad_request(format!(
                "{field} is longer than {MAX_NAME_CHARS} characters"
            )));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The host application's own id for a user: 1 to 200 characters, no
/// NUL, kept exactly as given (an id is not trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(raw: String) -> Result<Self, AppError> {
        reject_nul("external_id", &raw)?;
        if raw.is_empty() {
            return Err(AppError::bad_request("external_id must not be empty"));
        }
        if raw.chars().count() > MAX_NAME_CHARS {
            return Err(AppError::bad_request(format!(
                "external_id is longer than {MAX_NAME_CHARS} characters"
            )));
        }
        Ok(Self(raw))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(error: AppError) -> String {
        error.client_message()
    }

    #[test]
    fn a_title_is_trimmed_and_a_blank_one_is_none() {
        let title = ThreadTitle::parse(Some("  Launch plan \n".into())).unwrap();
        assert_eq!(
            title.map(ThreadTitle::into_string).as_deref(),
            Some("Launch plan")
        );
        assert_eq!(ThreadTitle::parse(None).unwrap(), None);
        assert_eq!(ThreadTitle::parse(Some(String::new())).unwrap(), None);
        assert_eq!(ThreadTitle::parse(Some(" \t\n ".into())).unwrap(), None);
    }

    #[test]
    fn a_title_counts_characters_after_trimming() {
        let longest = format!("  {}  ", "é".repeat(MAX_NAME_CHARS));
        assert!(ThreadTitle::parse(Some(longest)).unwrap().is_some());
        let too_long = ThreadTitle::parse(Some("é".repeat(MAX_NAME_CHARS + 1))).unwrap_err();
        assert_eq!(message(too_long), "title is longer than 200 characters");
    }

    #[test]
    fn a_title_with_nul_is_refused_even_if_trimming_would_drop_it() {
        for raw in ["a\0b", "\0", "  \0"] {
            let refused = ThreadTitle::parse(Some(raw.into())).unwrap_err();
            assert_eq!(message(refused), "title must not contain NUL characters");
        }
    }

    #[test]
    fn a_rename_clears_with_null_but_refuses_a_blank_title() {
        assert_eq!(ThreadTitle::parse_rename(None).unwrap(), None);
        let renamed = ThreadTitle::parse_rename(Some(" Launch ".into())).unwrap();
        assert_eq!(
            renamed.map(ThreadTitle::into_string).as_deref(),
            Some("Launch")
        );
        for blank in ["", "  \n"] {
            let refused = ThreadTitle::parse_rename(Some(blank.into())).unwrap_err();
            assert_eq!(
                message(refused),
                "title must not be empty; send null to clear it"
            );
        }
        let nul = ThreadTitle::parse_rename(Some("\0".into())).unwrap_err();
        assert_eq!(message(nul), "title must not contain NUL characters");
        let too_long = ThreadTitle::parse_rename(Some("x".repeat(MAX_NAME_CHARS + 1)));
        assert!(too_long.is_err());
    }

    #[test]
    fn a_name_is_trimmed_and_must_not_be_blank() {
        let name = DisplayName::parse("display_name", "  Ann ".into()).unwrap();
        assert_eq!(name.as_str(), "Ann");
        for blank in ["", "   ", "\n\t"] {
            let refused = DisplayName::parse("display_name", blank.into()).unwrap_err();
            assert_eq!(message(refused), "display_name must not be empty");
        }
    }

    #[test]
    fn a_name_error_names_the_field_the_client_used() {
        let too_long = DisplayName::parse("name", "x".repeat(MAX_NAME_CHARS + 1)).unwrap_err();
        assert_eq!(message(too_long), "name is longer than 200 characters");
        assert!(DisplayName::parse("name", "é".repeat(MAX_NAME_CHARS)).is_ok());
        let nul = DisplayName::parse("name", "Acme\0".into()).unwrap_err();
        assert_eq!(message(nul), "name must not contain NUL characters");
    }

    #[test]
    fn an_external_id_is_kept_exactly_and_bounded() {
        let id = ExternalId::parse(" crm-42 ".into()).unwrap();
        assert_eq!(id.into_string(), " crm-42 ");
        assert!(ExternalId::parse("é".repeat(MAX_NAME_CHARS)).is_ok());
        let long = ExternalId::parse("x".repeat(MAX_NAME_CHARS + 1)).unwrap_err();
        assert_eq!(message(long), "external_id is longer than 200 characters");
        let empty = ExternalId::parse(String::new()).unwrap_err();
        assert_eq!(message(empty), "external_id must not be empty");
        assert!(ExternalId::parse("a\0".into()).is_err());
    }
}
