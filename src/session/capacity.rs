//! Session caps, global and per user: checked before the upgrade so an
//! overload is a clear 503, never a process out of file descriptors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::domain::UserId;
use crate::error::AppError;

pub struct SessionCapacity {
    max_total: usize,
    max_per_user: usize,
    open: Mutex<OpenSessions>,
}

#[derive(Default)]
struct OpenSessions {
    total: usize,
    per_user: HashMap<UserId, usize>,
}

/// One admitted session. Dropping it (when the session actor is dropped)
/// frees its place.
pub struct SessionPermit {
    capacity: Arc<SessionCapacity>,
    user: UserId,
}

impl SessionCapacity {
    pub fn new(max_total: usize, max_per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_user,
            open: Mutex::new(OpenSessions::default()),
        })
    }

    pub fn admit(self: &Arc<Self>, user: UserId) -> Result<SessionPermit, AppError> {
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(AppError::Refused(
                "the server is at its session limit, retry later",
            ));
        }
        let mine = open.per_user.entry(user).or_default();
        if *mine >= self.max_per_user {
            return Err(AppError::Refused("too many open sessions for this user"));
        }
        *mine += 1;
        open.total += 1;
        Ok(SessionPermit {
            capacity: self.clone(),
            user,
        })
    }

    pub fn open_sessions(&self) -> usize {
        self.lock().total
    }

    // The counts stay consistent even if a holder panicked: every change is
    // one step, so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, OpenSessions> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let mut open = self.capacity.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId(uuid::Uuid::new_v4())
    }

    #[test]
    fn caps_per_user_and_in_all_and_frees_on_drop() {
        let capacity = SessionCapacity::new(3, 2);
        let (ann, bob) = (user(), user());
        let a1 = capacity.admit(ann).ok();
        let _a2 = capacity.admit(ann).ok();
        assert!(capacity.admit(ann).is_err(), "a third session of one user");
        let _b1 = capacity.admit(bob).ok();
        assert!(capacity.admit(bob).is_err(), "a fourth session in all");
        drop(a1);
        let b2 = capacity.admit(bob);
        assert!(b2.is_ok());
        assert_eq!(capacity.open_sessions(), 3);
    }
}
