//! Who a message mentions, as a client gives it.

use std::collections::HashSet;

use super::UserId;
use crate::error::AppError;

/// The most users one message may mention.
pub const MAX_MENTIONS: usize = 50;

/// At most [`MAX_MENTIONS`] user ids, no repeats, in the sender's order.
/// Whether they are members of the thread is checked where the message is
/// written, in its transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mentions(Vec<UserId>);

impl Mentions {
    pub fn parse(ids: Vec<UserId>) -> Result<Self, AppError> {
        if ids.len() > MAX_MENTIONS {
            return Err(AppError::bad_request(format!(
                "mentions may name at most {MAX_MENTIONS} users"
            )));
        }
        let mut seen = HashSet::with_capacity(ids.len());
        if !ids.iter().all(|id| seen.insert(*id)) {
            return Err(AppError::bad_request("mentions must not repeat a user"));
        }
        Ok(Self(ids))
    }

    pub fn ids(&self) -> Vec<uuid::Uuid> {
        self.0.iter().map(|u| u.0).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> Vec<UserId> {
        (0..n).map(|_| UserId(uuid::Uuid::new_v4())).collect()
    }

    #[test]
    fn fifty_distinct_users_may_be_mentioned_in_order() {
        let ids = users(MAX_MENTIONS);
        let mentions = Mentions::parse(ids.clone()).unwrap();
        assert_eq!(mentions.ids(), ids.iter().map(|u| u.0).collect::<Vec<_>>());
        assert!(Mentions::parse(users(MAX_MENTIONS + 1)).is_err());
    }

    #[test]
    fn a_repeated_user_is_refused() {
        let one = UserId(uuid::Uuid::new_v4());
        assert!(Mentions::parse(vec![one, one]).is_err());
    }
}
