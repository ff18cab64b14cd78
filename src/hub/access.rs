//! A user who may no longer be here: their sessions on this node close at
//! once, and leave routing now, so presence shows them offline without
//! waiting for each session to report its own end.

use super::messages::{CloseCause, ToSession};
use super::ChatHub;
use crate::domain::UserId;

impl ChatHub {
    pub(super) fn close_sessions_of(&mut self, user_id: UserId, cause: CloseCause) {
        let sessions = self
            .users
            .get(&user_id)
            .map(|user| user.sessions.clone())
            .unwrap_or_default();
        for session_id in sessions {
            if let Some(entry) = self.sessions.get(&session_id) {
                log::info!(
                    session:% = session_id, user:% = user_id;
                    "closing: {cause:?}"
                );
                entry.addr.do_send(ToSession::Close(cause));
            }
            self.remove_session(session_id);
        }
    }
}
