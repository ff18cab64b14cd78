//! Typing indicators: a typing-start shows until the typing timeout unless
//! a later start renews it; a stop, a message from the typist, or their
//! going offline ends it at once.

use actix::prelude::*;

use super::ChatHub;
use crate::domain::{ThreadId, UserId};
use crate::protocol::ServerEvent;

impl ChatHub {
    pub(super) fn end_typing(&mut self, thread_id: ThreadId, user_id: UserId) {
        let was_typing = self
            .rooms
            .get_mut(&thread_id)
            .and_then(|r| r.typing.remove(&user_id))
            .is_some();
        if was_typing {
            let out = Self::frame(ServerEvent::Typing {
                thread_id,
                user_id,
                typing: false,
            });
            self.deliver_to_room(thread_id, &out, Some(user_id), None);
        }
    }

    /// Shows `user_id` typing in the room (if it was not already) until the
    /// typing timeout, unless a later start renews it. False if no room.
    pub(super) fn start_typing(
        &mut self,
        thread_id: ThreadId,
        user_id: UserId,
        ctx: &mut Context<Self>,
    ) -> bool {
        self.typing_generation += 1;
        let generation = self.typing_generation;
        let Some(room) = self.rooms.get_mut(&thread_id) else {
            return false;
        };
        let already = room.typing.insert(user_id, generation).is_some();
        ctx.run_later(self.settings.typing_timeout, move |hub, _| {
            hub.typing_expired(thread_id, user_id, generation)
        });
        if !already {
            let out = Self::frame(ServerEvent::Typing {
                thread_id,
                user_id,
                typing: true,
            });
            self.deliver_to_room(thread_id, &out, Some(user_id), None);
        }
        true
    }

    fn typing_expired(&mut self, thread_id: ThreadId, user_id: UserId, generation: u64) {
        let current = self
            .rooms
            .get(&thread_id)
            .and_then(|r| r.typing.get(&user_id))
            .copied();
        if current == Some(generation) {
            self.end_typing(thread_id, user_id);
            self.process_evictions();
        }
    }
}
