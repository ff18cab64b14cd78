//! Who is online where: sessions and users joining and leaving rooms, and
//! the chat:presence frames that follow. A user is online while they have
//! a session here or (in cluster mode, see `peers.rs`) on another node.

use std::collections::HashSet;

use actix::{Handler, MessageResult};

use super::messages::Routed;
use super::room::Room;
use super::ChatHub;
use crate::domain::{SessionId, ThreadId, UserId};
use crate::events::OnlineIn;
use crate::protocol::ServerEvent;

impl Handler<OnlineIn> for ChatHub {
    type Result = MessageResult<OnlineIn>;

    fn handle(&mut self, msg: OnlineIn, _: &mut Self::Context) -> Self::Result {
        let threads: HashSet<ThreadId> = msg.threads.into_iter().collect();
        let mut online: HashSet<UserId> = threads
            .iter()
            .filter_map(|t| self.rooms.get(t))
            .flat_map(|room| room.members.iter().copied())
            .collect();
        online.extend(self.online_elsewhere_in(&threads));
        MessageResult(online.into_iter().collect())
    }
}

impl ChatHub {
    pub(super) fn join_room(&mut self, user_id: UserId, thread_id: ThreadId, from: Routed) {
        if let Some(user) = self.users.get_mut(&user_id) {
            user.threads.insert(thread_id);
        }
        self.rooms
            .entry(thread_id)
            .or_insert_with(|| Room::new(thread_id, from))
            .members
            .insert(user_id);
    }

    pub(super) fn leave_room(&mut self, user_id: UserId, thread_id: ThreadId) {
        if let Some(user) = self.users.get_mut(&user_id) {
            user.threads.remove(&thread_id);
        }
        if let Some(room) = self.rooms.get_mut(&thread_id) {
            room.members.remove(&user_id);
            room.typing.remove(&user_id);
            if room.members.is_empty() {
                self.rooms.remove(&thread_id);
            }
        }
    }

    /// Users other than `user_id` who share a live room with them.
    fn co_members(&self, user_id: UserId) -> HashSet<UserId> {
        let Some(user) = self.users.get(&user_id) else {
            return HashSet::new();
        };
        user.threads
            .iter()
            .filter_map(|t| self.rooms.get(t))
            .flat_map(|room| room.members.iter().copied())
            .filter(|u| *u != user_id)
            .collect()
    }

    /// `user_id` and every user sharing a live room with them: through
    /// `threads` (theirs, as the database knew them) as well as the rooms
    /// they are in here, since they may be online on another node only.
    pub(super) fn sharing_a_room(&self, user_id: UserId, threads: &[ThreadId]) -> HashSet<UserId> {
        let mut users: HashSet<UserId> = threads
            .iter()
            .filter_map(|t| self.rooms.get(t))
            .flat_map(|room| room.members.iter().copied())
            .collect();
        users.extend(self.co_members(user_id));
        users.insert(user_id);
        users
    }

    pub(super) fn announce_presence(&mut self, user_id: UserId, online: bool) {
        let out = Self::frame(ServerEvent::Presence { user_id, online });
        for other in self.co_members(user_id) {
            self.deliver_to_user(other, &out, None);
        }
    }

    pub(super) fn remove_session(&mut self, session_id: SessionId) {
        let Some(entry) = self.sessions.remove(&session_id) else {
            return;
        };
        let user_id = entry.user_id;
        let last = match self.users.get_mut(&user_id) {
            Some(user) => {
                user.sessions.retain(|s| *s != session_id);
                user.sessions.is_empty()
            }
            None => false,
        };
        if !last {
            return;
        }
        // The user's last session: their typing ends and they go offline.
        let threads: Vec<ThreadId> = self
            .users
            .get(&user_id)
            .map(|u| u.threads.iter().copied().collect())
            .unwrap_or_default();
        for thread_id in &threads {
            self.end_typing(*thread_id, user_id);
        }
        if !self.online_elsewhere(user_id) {
            self.announce_presence(user_id, false);
        }
        self.tell_peers_presence(user_id, false);
        for thread_id in threads {
            self.leave_room(user_id, thread_id);
        }
        self.users.remove(&user_id);
        self.update_gauges();
    }
}
