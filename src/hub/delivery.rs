//! Delivery: putting routed frames into session mailboxes under the
//! outbound bound, and evicting the sessions that pass it.
//!
//! Routing (`routing.rs`) decides who gets a frame; this module only puts
//! it there. A frame is serialized once and its bytes shared by every
//! recipient. A session whose queue would pass the bound gets nothing more
//! and is evicted after the current handler: told to close with 4008 and
//! dropped from routing.

use std::collections::{HashMap, HashSet};

use actix::Recipient;

use super::messages::{CloseCause, Outbound, ToSession};
use super::ChatHub;
use crate::domain::{CompanyId, SessionId, ThreadId, UserId};
use crate::metrics::metrics;
use crate::outbound::OutboundGauge;
use crate::protocol::ServerEvent;

pub(super) struct SessionEntry {
    pub user_id: UserId,
    pub addr: Recipient<ToSession>,
    pub outbound: OutboundGauge,
}

pub(super) struct OnlineUser {
    #[allow(dead_code)]
    pub company_id: CompanyId,
    pub sessions: Vec<SessionId>,
    pub threads: HashSet<ThreadId>,
}

/// The hub's sessions seen as places to put frames: borrowed apart from
/// the rooms and users being walked, so fan-out allocates nothing per
/// recipient.
struct Outlet<'a> {
    sessions: &'a HashMap<SessionId, SessionEntry>,
    evictions: &'a mut Vec<SessionId>,
    bound: usize,
}

impl Outlet<'_> {
    fn put_to_user(
        &mut self,
        user: &OnlineUser,
        out: &Outbound,
        except: Option<SessionId>,
    ) -> usize {
        let mut n = 0;
        for &session_id in &user.sessions {
            if Some(session_id) != except {
                self.put_to_session(session_id, out);
                n += 1;
            }
        }
        n
    }

    fn put_to_session(&mut self, session_id: SessionId, out: &Outbound) {
        let Some(entry) = self.sessions.get(&session_id) else {
            return;
        };
        if !entry.outbound.try_reserve(out.frame.len(), self.bound) {
            if !self.evictions.contains(&session_id) {
                self.evictions.push(session_id);
            }
            return;
        }
        entry.addr.do_send(ToSession::Frame(out.clone()));
        metrics().deliveries.inc();
    }
}

impl ChatHub {
    /// Every session of `user_id` but `except`.
    pub(super) fn deliver_to_user(
        &mut self,
        user_id: UserId,
        out: &Outbound,
        except: Option<SessionId>,
    ) -> usize {
        let Some(user) = self.users.get(&user_id) else {
            return 0;
        };
        let mut outlet = Outlet {
            sessions: &self.sessions,
            evictions: &mut self.evictions,
            bound: self.settings.max_outbound_bytes,
        };
        outlet.put_to_user(user, out, except)
    }

    /// Every session of every member in the room, but `except_user`'s and
    /// the `except_session`.
    pub(super) fn deliver_to_room(
        &mut self,
        thread_id: ThreadId,
        out: &Outbound,
        except_user: Option<UserId>,
        except_session: Option<SessionId>,
    ) -> usize {
        let Some(room) = self.rooms.get(&thread_id) else {
            return 0;
        };
        let mut outlet = Outlet {
            sessions: &self.sessions,
            evictions: &mut self.evictions,
            bound: self.settings.max_outbound_bytes,
        };
        room.members
            .iter()
            .filter(|u| Some(**u) != except_user)
            .filter_map(|u| self.users.get(u))
            .map(|user| outlet.put_to_user(user, out, except_session))
            .sum()
    }

    pub(super) fn frame(event: ServerEvent) -> Outbound {
        Outbound {
            frame: event.to_frame(None),
            change_rev: None,
        }
    }

    /// Drops sessions that passed their outbound bound. Evicting can route
    /// (presence, typing) and so evict more; loop until quiet.
    pub(super) fn process_evictions(&mut self) {
        while let Some(session_id) = self.evictions.pop() {
            if let Some(entry) = self.sessions.get(&session_id) {
                log::info!(
                    session:% = session_id, user:% = entry.user_id;
                    "slow consumer, closing with 4008"
                );
                metrics().slow_consumers_closed.inc();
                entry
                    .addr
                    .do_send(ToSession::Close(CloseCause::SlowConsumer));
            }
            self.remove_session(session_id);
        }
    }

    pub(super) fn update_gauges(&self) {
        let m = metrics();
        m.sessions.set(self.sessions.len() as i64);
        m.users_online.set(self.users.len() as i64);
        m.live_threads.set(self.rooms.len() as i64);
    }
}
