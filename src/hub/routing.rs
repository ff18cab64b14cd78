//! Routing committed events: which frames each [`ChatEvent`] becomes and
//! which sessions get them. Changes to messages (new, edited, deleted,
//! reactions) pass through the room's reorder buffer (`reorder.rs`) so they
//! leave in rev order; the buffer's actions are carried out here.

use actix::prelude::*;

use super::gap_fill::Fill;
use super::messages::{CloseCause, Outbound, Routed};
use super::reorder::Action;
use super::{ChatHub, REORDER_HOLD};
use crate::domain::{SessionId, ThreadId, UserId};
use crate::events::{ChatEvent, MemberCursors, MessageChange, ReceiptRange};
use crate::metrics::metrics;
use crate::protocol::server::{ReactionChange, Receipt, UserChange};
use crate::protocol::{ServerEvent, ThreadView};

impl ChatHub {
    pub(super) fn apply(&mut self, event: ChatEvent, ctx: &mut Context<Self>) {
        if event.is_message_change() {
            if let Some(change) = event.into_message_change() {
                self.change_arrived(change, ctx);
            }
            self.process_evictions();
            self.update_gauges();
            return;
        }
        match event {
            ChatEvent::MessageCreated { .. }
            | ChatEvent::MessageEdited { .. }
            | ChatEvent::MessageDeleted { .. }
            | ChatEvent::ReactionChanged { .. } => {}
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
                self.remember_removal(user_id, thread_id);
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

    /// A committed change to a message, announced or read back. The
    /// sender of a new message stops typing, whether or not it is routed
    /// now.
    pub(super) fn change_arrived(&mut self, change: MessageChange, ctx: &mut Context<Self>) {
        let thread_id = change.thread_id();
        let sender = match &change {
            MessageChange::Created { message, .. } => Some(message.sender_id),
            _ => None,
        };
        if let Some(room) = self.rooms.get_mut(&thread_id) {
            let actions = room.reorder.arrive(change);
            self.act(thread_id, actions, ctx);
        }
        if let Some(sender) = sender {
            self.end_typing(thread_id, sender);
        }
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
                Action::Route(change) => self.route_change(change),
                Action::StartHold => {
                    ctx.run_later(REORDER_HOLD, move |hub, ctx| {
                        hub.hold_expired(thread_id, ctx)
                    });
                }
                Action::ReadBack(range) => {
                    log::info!(
                        thread:% = thread_id;
                        "revs {}..={} did not arrive within the hold: reading them back",
                        range.after_rev + 1,
                        range.up_to_rev
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

    /// The frame a change becomes, to the room but its origin session.
    fn route_change(&mut self, change: MessageChange) {
        let (thread_id, rev) = (change.thread_id(), change.rev());
        let (event, origin, new_message) = match change {
            MessageChange::Created { message, origin } => {
                (ServerEvent::Message { message }, origin, true)
            }
            MessageChange::Edited { message } => {
                (ServerEvent::MessageEdited { message }, None, false)
            }
            MessageChange::Deleted {
                thread_id,
                message_id,
                seq,
                deleted_at,
                rev,
            } => (
                ServerEvent::MessageDeleted {
                    thread_id,
                    message_id,
                    seq,
                    deleted_at,
                    rev,
                },
                None,
                false,
            ),
            MessageChange::Reaction {
                thread_id,
                message_id,
                seq,
                user_id,
                emoji,
                on,
                rev,
                origin,
            } => (
                ServerEvent::Reaction(ReactionChange {
                    thread_id,
                    message_id,
                    seq,
                    user_id,
                    emoji,
                    on,
                    rev,
                }),
                origin,
                false,
            ),
        };
        let out = Outbound {
            frame: event.to_frame(None),
            change_rev: Some((thread_id, rev)),
        };
        let n = self.deliver_to_room(thread_id, &out, None, origin);
        if new_message {
            metrics().fanout_size.observe(n as f64);
        }
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
        // As for a join: a change routed after the view was read raises
        // last_seq and last_rev, so the client syncs rather than thinks it
        // has it all.
        let routed = room.reorder.routed_through();
        thread.last_seq = thread.last_seq.max(routed.seq);
        thread.last_rev = thread.last_rev.max(routed.rev);
        let online: Vec<MemberCursors> = members
            .into_iter()
            .filter(|m| room.members.contains(&m.user_id))
            .collect();
        for member in online {
            let view = ThreadView {
                last_delivered_seq: member.last_delivered_seq,
                last_read_seq: member.last_read_seq,
                unread: member.unread,
                unread_mentions: member.unread_mentions,
                ..thread.clone()
            };
            let out = Self::frame(ServerEvent::ThreadUpdated { thread: view });
            self.deliver_to_user(member.user_id, &out, None);
        }
    }

    fn thread_joined(&mut self, user_id: UserId, mut thread: ThreadView) {
        self.forget_removal(user_id, thread.id);
        if !self.users.contains_key(&user_id) {
            return;
        }
        let from = Routed {
            seq: thread.last_seq,
            rev: thread.last_rev,
        };
        self.join_room(user_id, thread.id, from);
        // If changes were routed in the room after this view was read, say
        // so: the client then syncs instead of missing them.
        if let Some(room) = self.rooms.get(&thread.id) {
            let routed = room.reorder.routed_through();
            thread.last_seq = thread.last_seq.max(routed.seq);
            thread.last_rev = thread.last_rev.max(routed.rev);
        }
        let out = Self::frame(ServerEvent::ThreadJoined { thread });
        self.deliver_to_user(user_id, &out, None);
    }
}
