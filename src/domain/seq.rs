//! A message's position in its thread, as a client names it.

use crate::error::AppError;

/// A seq from a client: never negative. Seqs start at 1 and have no gaps,
/// so 0 means "before the first message". Seqs the server reads from its
/// own database stay plain `i64`; this type marks the ones it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(i64);

impl Seq {
    /// None if `raw` is negative.
    pub fn new(raw: i64) -> Option<Self> {
        (raw >= 0).then_some(Self(raw))
    }

    /// `field` is the name the client used for it, for the error message.
    pub fn parse(field: &str, raw: i64) -> Result<Self, AppError> {
        Self::new(raw).ok_or_else(|| AppError::bad_request(format!("{field} must be at least 0")))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_up_are_seqs() {
        assert_eq!(Seq::new(0).map(Seq::get), Some(0));
        assert_eq!(Seq::new(i64::MAX).map(Seq::get), Some(i64::MAX));
        assert_eq!(Seq::parse("after_seq", 7).unwrap().get(), 7);
    }

    #[test]
    fn a_negative_seq_is_refused_with_the_field_name() {
        assert_eq!(Seq::new(-1), None);
        assert_eq!(Seq::new(i64::MIN), None);
        let refused = Seq::parse("up_to_seq", -1).unwrap_err();
        assert_eq!(refused.client_message(), "up_to_seq must be at least 0");
    }
}
