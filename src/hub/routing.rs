//! Routing committed events: which frames each [`ChatEvent`] becomes and
//! which sessions get them. chat:message frames pass through the room's
//! reorder buffer (`reorder.rs`) so they leave in seq order; the buffer's
//! actions are carried out here.

use actix::prelude::*;

use super::gap_fill::Fill;
use super::messages::{CloseCause, Outbound};
use super::reorder::Action;
use super::{ChatHub, REORDER_HOLD};
use crate::domain::{SessionId, ThreadId, UserId};
use crate::events::{ChatEvent, MemberCursors, ReceiptRange};
use crate::metrics::metrics;
use crate::protocol::server::{Receipt, UserChange};
use crate::protocol::{MessageView, ServerEvent, ThreadView};

impl ChatHub {
    pub(super) fn apply(&mut self, event: ChatEvent, ctx: &mut Context<Self>) {
        match event {
            ChatEvent::MessageCreated { message, origin } => {
                self.message_arrived(message, origin, ctx);
            }
            ChatEvent::MessageEdited { message } => {
                let thread_id = message.thread_id;
                let out = Self::frame(ServerEvent::MessageEdited { message });
                self.deliver_to_room(thread_id, &out, None, None);
            }
            ChatEvent::MessageDeleted {
                thread_id,
                message_id,
                seq,
                deleted_at,
            } => {
                let out = Self::frame(ServerEvent::MessageDeleted {
                    thread_id,
                    message_id,
                    seq,
                    deleted_at,
                });
                self.deliver_to_room(thread_id, &out, None, None);
            }
            ChatEvent::CursorAdvanced {
                thread_id,
                user_id,
                origin,
                delivered,
                read,
                at,
            } => {
                if let Some(range) = &delivered {
                    self.receipt(thread_id, user_id, range, false, at, origin);
                }
                if let Some(range) = &read {
                    self.receipt(thread_id, user_id, range, true, at, origin);
                }
            }
            ChatEvent::ThreadCreated { thread, members } => {
                for user_id in members {
                    self.thread_joined(user_id, thread.clone());
                }
            }
            ChatEvent::MemberAdded { thread, user_id } => {
                let thread_id = thread.id;
                self.thread_joined(user_id, thread);
                let out = Self::frame(ServerEvent::MemberJoined { thread_id, user_id });
                self.deliver_to_room(thread_id, &out, Some(user_id), None);
            }
            ChatEvent::MemberRemoved { thread_id, user_id } => {
                self.end_typing(thread_id, user_id);
                let was_online = self
                    .users
                    .get(&user_id)
                    .is_some_and(|u| u.threads.contains(&thread_id));
                self.leave_room(user_id, thread_id);
                if was_online {
                    let out = Self::frame(ServerEvent::ThreadLeft { thread_id });
                    self.deliver_to_user(user_id, &out, None);
                }
                let out = Self::frame(ServerEvent::MemberLeft { thread_id, user_id });
                self.deliver_to_room(thread_id, &out, Some(user_id), None);
            }
            ChatEvent::ThreadUpdated { thread, members } => {
                self.thread_updated(thread, members);
            }
            ChatEvent::UserUpdated {
                user_id,
                display_name,
                threads,
            } => {
                let out = Self::frame(ServerEvent::UserUpdated {
                    user: UserChange {
                        id: user_id,
                        display_name,
                    },
                });
                for recipient in self.sharing_a_room(user_id, &threads) {
                    self.deliver_to_user(recipient, &out, None);
                }
            }
            ChatEvent::UserDeactivated { user_id } => {
                self.close_sessions_of(user_id, CloseCause::Deactivated);
            }
            ChatEvent::TokensRevoked { user_id } => {
                self.close_sessions_of(user_id, CloseCause::TokensRevoked);
            }
        }
        self.process_evictions();
        self.update_gauges();
    }

    /// A committed message, announced or read back. Its sender stops
    /// typing, whether or not it is routed now.
    pub(super) fn message_arrived(
        &mut self,
        message: MessageView,
        origin: Option<SessionId>,
        ctx: &mut Context<Self>,
    ) {
        let (thread_id, sender) = (message.thread_id, message.sender_id);
        if let Some(room) = self.rooms.get_mut(&thread_id) {
            let actions = room.reorder.arrive(message, origin);
            self.act(thread_id, actions, ctx);
        }
        self.end_typing(thread_id, sender);
    }

    /// Carries out what a room's reorder buffer asked for.
    pub(super) fn act(
        &mut self,
        thread_id: ThreadId,
        actions: Vec<Action>,
        ctx: &mut Context<Self>,
    ) {
        for action in actions {
            match action {
                Action::Route(message, origin) => self.route_message(&message, origin),
                Action::StartHold => {
                    ctx.run_later(REORDER_HOLD, move |hub, ctx| {
                        hub.hold_expired(thread_id, ctx)
                    });
                }
                Action::ReadBack(range) => {
                    log::info!(
                        thread:% = thread_id;
                        "seqs {}..={} did not arrive within the hold: reading them back",
                        range.after_seq + 1,
                        range.up_to_seq
                    );
                    self.read_back(vec![range], Fill::Gap, ctx);
                }
            }
        }
    }

    fn hold_expired(&mut self, thread_id: ThreadId, ctx: &mut Context<Self>) {
        let can_read_back = self.gap_fill.is_some();
        let Some(room) = self.rooms.get_mut(&thread_id) else {
            return;
        };
        let actions = room.reorder.hold_expired(can_read_back);
        self.act(thread_id, actions, ctx);
        self.process_evictions();
    }

    fn route_message(&mut self, message: &MessageView, origin: Option<SessionId>) {
        let out = Outbound {
            frame: ServerEvent::Message {
                message: message.clone(),
            }
            .to_frame(None),
            message_seq: Some((message.thread_id, message.seq)),
        };
        let n = self.deliver_to_room(message.thread_id, &out, None, origin);
        metrics().fanout_size.observe(n as f64);
    }

    fn receipt(
        &mut self,
        thread_id: ThreadId,
        reader: UserId,
        range: &ReceiptRange,
        read: bool,
        at: chrono::DateTime<chrono::Utc>,
        origin: Option<SessionId>,
    ) {
        let receipt = Receipt {
            thread_id,
            user_id: reader,
            up_to_seq: range.up_to_seq,
            at,
        };
        let out = Self::frame(if read {
            ServerEvent::Read(receipt)
        } else {
            ServerEvent::Delivered(receipt)
        });
        for sender in &range.senders {
            if *sender != reader {
                self.deliver_to_user(*sender, &out, None);
            }
        }
        if read {
            // The reader's other devices clear their badges too.
            self.deliver_to_user(reader, &out, origin);
        }
    }

    /// Each online member gets the thread with their own cursors. Only the
    /// room's members are told: the event's list may name members who are
    /// offline here (or on another node).
    fn thread_updated(&mut self, mut thread: ThreadView, members: Vec<MemberCursors>) {
        let Some(room) = self.rooms.get(&thread.id) else {
            return;
        };
        // As for a join: a message routed after the view was read raises
        // last_seq, so the client syncs rather than thinks it has it all.
        thread.last_seq = thread.last_seq.max(room.reorder.routed_through());
        let online: Vec<MemberCursors> = members
            .into_iter()
            .filter(|m| room.members.contains(&m.user_id))
            .collect();
        for member in online {
            let view = ThreadView {
                last_delivered_seq: member.last_delivered_seq,
                last_read_seq: member.last_read_seq,
                unread: member.unread,
                ..thread.clone()
            };
            let out = Self::frame(ServerEvent::ThreadUpdated { thread: view });
            self.deliver_to_user(member.user_id, &out, None);
        }
    }

    fn thread_joined(&mut self, user_id: UserId, mut thread: ThreadView) {
        if !self.users.contains_key(&user_id) {
            return;
        }
        self.join_room(user_id, thread.id, thread.last_seq);
        // If messages were routed in the room after this view was read, say
        // so: the client then syncs instead of missing them.
        if let Some(room) = self.rooms.get(&thread.id) {
            thread.last_seq = thread.last_seq.max(room.reorder.routed_through());
        }
        let out = Self::frame(ServerEvent::ThreadJoined { thread });
        self.deliver_to_user(user_id, &out, None);
    }
}
