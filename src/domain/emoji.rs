//! A reaction's emoji, as a client gives it.

use crate::error::AppError;

/// The most bytes (UTF-8) of one emoji.
pub const MAX_EMOJI_BYTES: usize = 32;
/// The most distinct emoji one message may hold.
pub const MAX_EMOJI_PER_MESSAGE: i64 = 50;

/// 1..=32 bytes of UTF-8 without whitespace or control characters. Any
/// short string: clients draw it, so the server does not judge whether it
/// is "an emoji".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji(String);

impl Emoji {
    pub fn parse(raw: String) -> Result<Self, AppError> {
        if raw.is_empty() || raw.len() > MAX_EMOJI_BYTES {
            return Err(AppError::bad_request(format!(
                "emoji must be 1 to {MAX_EMOJI_BYTES} bytes of UTF-8"
            )));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AppError::bad_request(
                "emoji must not hold whitespace or control characters",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_without_spaces_are_emoji() {
        for ok in ["👍", "🏳️‍🌈", ":party:", "x", &"a".repeat(32)] {
            assert!(Emoji::parse(ok.to_string()).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn empty_long_spaced_or_control_strings_are_not() {
        for bad in [
            "",
            " ",
            "a b",
            "\u{0}",
            "a\n",
            "\u{a0}",
            &"a".repeat(33),
            &"é".repeat(17),
        ] {
            assert!(Emoji::parse(bad.to_string()).is_err(), "{bad:?}");
        }
    }
}
