//! The reorder buffer of one room, as a state machine: the changes to a
//! thread's messages (chat:message, chat:message-edited,
//! chat:message-deleted, chat:reaction) leave in rev order, whatever order
//! their announcements arrive in. A new message is a change too, and seqs
//! grow with revs, so chat:message frames also leave in seq order.
//!
//! It never routes, sleeps or queries itself. Each input returns the
//! [`Action`]s the hub must take, in order: route a change, start the
//! hold timer, or read missing revs back from the database. So every path
//! through it is testable without actors, and the timer state (one hold
//! or one read-back at a time) lives in one private field.
//!
//! A read-back answers every committed rev of its range (see
//! `persistence::replay`); what it could not answer (the database
//! unreachable, a gap past the fill limit) is skipped, and the room's
//! members recover it with chat:sync and chat:changes.

use std::cmp::Ordering;
use std::collections::BTreeMap;

pub use super::messages::Routed;
use crate::domain::ThreadId;
use crate::events::{MessageChange, RevRange};

/// What the hub must do, in the order given.
// Actions are consumed as soon as they are returned; boxing the change
// would cost an allocation per routed change to save stack space.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Route this change to the room now.
    Route(MessageChange),
    /// Call [`Reorder::hold_expired`] after the reorder hold.
    StartHold,
    /// Read these revs back from the database, feed what comes through
    /// [`Reorder::arrive`], then call [`Reorder::fill_done`].
    ReadBack(RevRange),
}

/// The one timer a buffer may have running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Nothing,
    /// Early changes are held until the hold ends.
    Hold,
    /// The revs before the held ones are being read back.
    ReadBack,
}

pub struct Reorder {
    thread_id: ThreadId,
    /// The rev the next routed change must have.
    next_rev: i64,
    /// The highest seq routed as a new message (or covered when the room
    /// was made).
    routed_seq: i64,
    /// Changes that arrived before an earlier rev did.
    held: BTreeMap<i64, MessageChange>,
    waiting: Waiting,
}

impl Reorder {
    /// A buffer whose members were all told everything up to `from`.
    pub fn new(thread_id: ThreadId, from: Routed) -> Self {
        Self {
            thread_id,
            next_rev: from.rev + 1,
            routed_seq: from.seq,
            held: BTreeMap::new(),
            waiting: Waiting::Nothing,
        }
    }

    /// The highest rev (and seq) routed or passed over: a session joining
    /// now has missed nothing up to here.
    pub fn routed_through(&self) -> Routed {
        Routed {
            seq: self.routed_seq,
            rev: self.next_rev - 1,
        }
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// A committed change was announced (or read back).
    pub fn arrive(&mut self, change: MessageChange) -> Vec<Action> {
        let rev = change.rev();
        match rev.cmp(&self.next_rev) {
            // Every session in the room was told a last_rev at or past it
            // when it joined, or it was routed already.
            Ordering::Less => {
                log::debug!(thread:% = self.thread_id, rev; "already covered, not routed");
                Vec::new()
            }
            Ordering::Greater => {
                self.held.insert(rev, change);
                if self.waiting == Waiting::Nothing {
                    self.waiting = Waiting::Hold;
                    vec![Action::StartHold]
                } else {
                    Vec::new()
                }
            }
            Ordering::Equal => {
                let mut actions = Vec::new();
                self.route(change, &mut actions);
                self.release_in_order(&mut actions);
                actions
            }
        }
    }

    /// The hold ended. With `can_read_back`, the missing revs are asked
    /// for; without, the gap is skipped (its members recover it with
    /// chat:sync and chat:changes) and whatever waits behind a newer gap is
    /// held again.
    pub fn hold_expired(&mut self, can_read_back: bool) -> Vec<Action> {
        if self.waiting != Waiting::Hold {
            return Vec::new();
        }
        self.waiting = Waiting::Nothing;
        let Some(&first_held) = self.held.keys().next() else {
            return Vec::new();
        };
        if can_read_back {
            self.waiting = Waiting::ReadBack;
            return vec![Action::ReadBack(RevRange {
                thread_id: self.thread_id,
                after_rev: self.next_rev - 1,
                up_to_rev: first_held - 1,
            })];
        }
        let mut actions = Vec::new();
        self.skip_gap(&mut actions);
        self.hold_again_if_needed(&mut actions);
        actions
    }

    /// The read-back of `range` is over and what it found went through
    /// [`Reorder::arrive`]. A gap it could not close (the database
    /// unreachable, a gap past the fill limit) is skipped.
    pub fn fill_done(&mut self, range: RevRange) -> Vec<Action> {
        self.waiting = Waiting::Nothing;
        let mut actions = Vec::new();
        if self.next_rev <= range.up_to_rev {
            self.skip_gap(&mut actions);
        }
        self.hold_again_if_needed(&mut actions);
        actions
    }

    fn route(&mut self, change: MessageChange, actions: &mut Vec<Action>) {
        self.next_rev = change.rev() + 1;
        if let MessageChange::Created { message, .. } = &change {
            // A new message at or below what was routed is a copy (a
            // resend's re-announcement): its place passes, it is not sent.
            if message.seq <= self.routed_seq {
                return;
            }
            self.routed_seq = message.seq;
        }
        actions.push(Action::Route(change));
    }

    fn release_in_order(&mut self, actions: &mut Vec<Action>) {
        while let Some(change) = self.held.remove(&self.next_rev) {
            self.route(change, actions);
        }
    }

    fn skip_gap(&mut self, actions: &mut Vec<Action>) {
        if let Some(&first) = self.held.keys().next() {
            log::warn!(
                thread:% = self.thread_id;
                "rev gap: waited for {}, moving on to {first}",
                self.next_rev
            );
            self.next_rev = first;
        }
        self.release_in_order(actions);
    }

    fn hold_again_if_needed(&mut self, actions: &mut Vec<Action>) {
        if !self.held.is_empty() {
            self.waiting = Waiting::Hold;
            actions.push(Action::StartHold);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::tests::message;

    fn thread() -> ThreadId {
        ThreadId(uuid::Uuid::new_v4())
    }

    /// The revs routed, and whether a hold was started, in order.
    fn summary(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Route(c) => format!("route {}", c.rev()),
                Action::StartHold => "hold".to_string(),
                Action::ReadBack(r) => format!("read {}..={}", r.after_rev + 1, r.up_to_rev),
            })
            .collect()
    }

    fn at(rev: i64) -> Routed {
        Routed { seq: rev, rev }
    }

    /// A new message whose seq and rev are both `seq`.
    fn arrive(buffer: &mut Reorder, seq: i64) -> Vec<String> {
        let thread_id = buffer.thread_id;
        let message = message(thread_id, seq);
        summary(&buffer.arrive(MessageChange::Created {
            message,
            origin: None,
        }))
    }

    fn edit(buffer: &mut Reorder, seq: i64, rev: i64) -> Vec<String> {
        let mut message = message(buffer.thread_id, seq);
        message.rev = rev;
        summary(&buffer.arrive(MessageChange::Edited { message }))
    }

    #[test]
    fn edits_and_new_messages_leave_in_rev_order() {
        let mut buffer = Reorder::new(thread(), at(2));
        assert_eq!(edit(&mut buffer, 1, 5), ["hold"]);
        let mut late = message(buffer.thread_id, 3);
        late.rev = 4;
        assert!(buffer
            .arrive(MessageChange::Created {
                message: late,
                origin: None
            })
            .is_empty());
        assert_eq!(edit(&mut buffer, 2, 3), ["route 3", "route 4", "route 5"]);
        assert_eq!(buffer.routed_through(), Routed { seq: 3, rev: 5 });
    }

    #[test]
    fn a_new_message_already_routed_passes_its_place_without_a_copy() {
        let mut buffer = Reorder::new(thread(), Routed { seq: 4, rev: 6 });
        let mut copy = message(buffer.thread_id, 4);
        copy.rev = 7;
        let routed = buffer.arrive(MessageChange::Created {
            message: copy,
            origin: None,
        });
        assert!(routed.is_empty());
        assert_eq!(buffer.routed_through(), Routed { seq: 4, rev: 7 });
    }

    #[test]
    fn in_order_messages_are_routed_at_once() {
        let mut buffer = Reorder::new(thread(), at(0));
        assert_eq!(arrive(&mut buffer, 1), ["route 1"]);
        assert_eq!(arrive(&mut buffer, 2), ["route 2"]);
        assert_eq!(buffer.routed_through(), at(2));
    }

    #[test]
    fn an_early_message_waits_for_the_ones_before_it_and_one_hold_starts() {
        let mut buffer = Reorder::new(thread(), at(0));
        assert_eq!(arrive(&mut buffer, 3), ["hold"]);
        assert_eq!(
            arrive(&mut buffer, 4),
            Vec::<String>::new(),
            "one timer only"
        );
        assert_eq!(arrive(&mut buffer, 1), ["route 1"]);
        assert_eq!(arrive(&mut buffer, 2), ["route 2", "route 3", "route 4"]);
        assert_eq!(buffer.held_count(), 0);
        // The hold that was started finds nothing to do.
        assert!(buffer.hold_expired(true).is_empty());
    }

    #[test]
    fn a_covered_seq_is_dropped() {
        let mut buffer = Reorder::new(thread(), at(5));
        assert!(arrive(&mut buffer, 5).is_empty());
        assert!(arrive(&mut buffer, 2).is_empty());
        assert_eq!(arrive(&mut buffer, 6), ["route 6"]);
        assert!(arrive(&mut buffer, 6).is_empty(), "a duplicate is dropped");
    }

    #[test]
    fn without_read_back_a_gap_is_skipped_and_a_newer_gap_held_again() {
        let mut buffer = Reorder::new(thread(), at(0));
        arrive(&mut buffer, 2);
        arrive(&mut buffer, 3);
        arrive(&mut buffer, 6);
        assert_eq!(
            summary(&buffer.hold_expired(false)),
            ["route 2", "route 3", "hold"]
        );
        assert_eq!(summary(&buffer.hold_expired(false)), ["route 6"]);
        assert_eq!(buffer.routed_through(), at(6));
        assert_eq!(
            arrive(&mut buffer, 1),
            Vec::<String>::new(),
            "late is stale"
        );
    }

    #[test]
    fn with_read_back_the_exact_missing_range_is_asked_for_once() {
        let mut buffer = Reorder::new(thread(), at(1));
        arrive(&mut buffer, 5);
        assert_eq!(summary(&buffer.hold_expired(true)), ["read 2..=4"]);
        // While the read-back runs, new early messages start no timer and
        // a stray hold expiry does nothing.
        assert!(arrive(&mut buffer, 7).is_empty());
        assert!(buffer.hold_expired(true).is_empty());
    }

    #[test]
    fn a_read_back_that_closed_the_gap_releases_in_order_then_holds_the_rest() {
        let thread_id = thread();
        let mut buffer = Reorder::new(thread_id, at(1));
        arrive(&mut buffer, 4);
        arrive(&mut buffer, 7);
        let Action::ReadBack(range) = buffer.hold_expired(true).remove(0) else {
            panic!("a read-back was expected");
        };
        assert_eq!(arrive(&mut buffer, 2), ["route 2"]);
        assert_eq!(arrive(&mut buffer, 3), ["route 3", "route 4"]);
        // 5 and 6 are behind a newer gap: a new hold, no skip.
        assert_eq!(summary(&buffer.fill_done(range)), ["hold"]);
        assert_eq!(buffer.routed_through(), at(4));
    }

    #[test]
    fn a_read_back_that_failed_skips_the_gap() {
        let mut buffer = Reorder::new(thread(), at(0));
        arrive(&mut buffer, 3);
        let Action::ReadBack(range) = buffer.hold_expired(true).remove(0) else {
            panic!("a read-back was expected");
        };
        assert_eq!(summary(&buffer.fill_done(range)), ["route 3"]);
        assert_eq!(buffer.held_count(), 0);
    }
}
