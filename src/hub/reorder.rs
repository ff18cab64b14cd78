//! The reorder buffer of one room, as a state machine: chat:message frames
//! of a thread leave in seq order, whatever order their announcements
//! arrive in.
//!
//! It never routes, sleeps or queries itself. Each input returns the
//! [`Action`]s the hub must take, in order: route a message, start the
//! hold timer, or read missing seqs back from the database. So every path
//! through it is testable without actors, and the timer state (one hold
//! or one read-back at a time) lives in one private field.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::domain::{SessionId, ThreadId};
use crate::events::SeqRange;
use crate::protocol::MessageView;

/// What the hub must do, in the order given.
// Actions are consumed as soon as they are returned; boxing the message
// would cost an allocation per routed message to save stack space.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Route this message to the room now (`origin` gets no copy).
    Route(MessageView, Option<SessionId>),
    /// Call [`Reorder::hold_expired`] after the reorder hold.
    StartHold,
    /// Read these seqs back from the database, feed what comes through
    /// [`Reorder::arrive`], then call [`Reorder::fill_done`].
    ReadBack(SeqRange),
}

/// The one timer a buffer may have running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Nothing,
    /// Early messages are held until the hold ends.
    Hold,
    /// The seqs before the held ones are being read back.
    ReadBack,
}

pub struct Reorder {
    thread_id: ThreadId,
    /// The seq the next routed chat:message must have.
    next_seq: i64,
    /// Messages that arrived before an earlier seq did.
    held: BTreeMap<i64, (MessageView, Option<SessionId>)>,
    waiting: Waiting,
}

impl Reorder {
    /// A buffer whose members were all told `last_seq` already.
    pub fn new(thread_id: ThreadId, last_seq: i64) -> Self {
        Self {
            thread_id,
            next_seq: last_seq + 1,
            held: BTreeMap::new(),
            waiting: Waiting::Nothing,
        }
    }

    /// The highest seq routed or passed over: a session joining now has
    /// missed nothing up to here.
    pub fn routed_through(&self) -> i64 {
        self.next_seq - 1
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// A committed message was announced (or read back).
    pub fn arrive(&mut self, message: MessageView, origin: Option<SessionId>) -> Vec<Action> {
        match message.seq.cmp(&self.next_seq) {
            // Every session in the room was told a last_seq at or past it
            // when it joined, or it was routed already.
            Ordering::Less => {
                log::debug!(
                    thread:% = self.thread_id, seq = message.seq;
                    "already covered, not routed"
                );
                Vec::new()
            }
            Ordering::Greater => {
                self.held.insert(message.seq, (message, origin));
                if self.waiting == Waiting::Nothing {
                    self.waiting = Waiting::Hold;
                    vec![Action::StartHold]
                } else {
                    Vec::new()
                }
            }
            Ordering::Equal => {
                self.next_seq += 1;
                let mut actions = vec![Action::Route(message, origin)];
                self.release_in_order(&mut actions);
                actions
            }
        }
    }

    /// The hold ended. With `can_read_back`, the missing seqs are asked
    /// for; without, the gap is skipped (its members recover it with
    /// chat:sync) and whatever waits behind a newer gap is held again.
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
            return vec![Action::ReadBack(SeqRange {
                thread_id: self.thread_id,
                after_seq: self.next_seq - 1,
                up_to_seq: first_held - 1,
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
    pub fn fill_done(&mut self, range: SeqRange) -> Vec<Action> {
        self.waiting = Waiting::Nothing;
        let mut actions = Vec::new();
        if self.next_seq <= range.up_to_seq {
            self.skip_gap(&mut actions);
        }
        self.hold_again_if_needed(&mut actions);
        actions
    }

    fn release_in_order(&mut self, actions: &mut Vec<Action>) {
        while let Some((message, origin)) = self.held.remove(&self.next_seq) {
            self.next_seq += 1;
            actions.push(Action::Route(message, origin));
        }
    }

    fn skip_gap(&mut self, actions: &mut Vec<Action>) {
        if let Some(&first) = self.held.keys().next() {
            log::warn!(
                thread:% = self.thread_id;
                "seq gap: waited for {}, moving on to {first}",
                self.next_seq
            );
            self.next_seq = first;
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

    /// The seqs routed, and whether a hold was started, in order.
    fn summary(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Route(m, _) => format!("route {}", m.seq),
                Action::StartHold => "hold".to_string(),
                Action::ReadBack(r) => format!("read {}..={}", r.after_seq + 1, r.up_to_seq),
            })
            .collect()
    }

    fn arrive(buffer: &mut Reorder, seq: i64) -> Vec<String> {
        let thread_id = buffer.thread_id;
        summary(&buffer.arrive(message(thread_id, seq), None))
    }

    #[test]
    fn in_order_messages_are_routed_at_once() {
        let mut buffer = Reorder::new(thread(), 0);
        assert_eq!(arrive(&mut buffer, 1), ["route 1"]);
        assert_eq!(arrive(&mut buffer, 2), ["route 2"]);
        assert_eq!(buffer.routed_through(), 2);
    }

    #[test]
    fn an_early_message_waits_for_the_ones_before_it_and_one_hold_starts() {
        let mut buffer = Reorder::new(thread(), 0);
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
        let mut buffer = Reorder::new(thread(), 5);
        assert!(arrive(&mut buffer, 5).is_empty());
        assert!(arrive(&mut buffer, 2).is_empty());
        assert_eq!(arrive(&mut buffer, 6), ["route 6"]);
        assert!(arrive(&mut buffer, 6).is_empty(), "a duplicate is dropped");
    }

    #[test]
    fn without_read_back_a_gap_is_skipped_and_a_newer_gap_held_again() {
        let mut buffer = Reorder::new(thread(), 0);
        arrive(&mut buffer, 2);
        arrive(&mut buffer, 3);
        arrive(&mut buffer, 6);
        assert_eq!(
            summary(&buffer.hold_expired(false)),
            ["route 2", "route 3", "hold"]
        );
        assert_eq!(summary(&buffer.hold_expired(false)), ["route 6"]);
        assert_eq!(buffer.routed_through(), 6);
        assert_eq!(
            arrive(&mut buffer, 1),
            Vec::<String>::new(),
            "late is stale"
        );
    }

    #[test]
    fn with_read_back_the_exact_missing_range_is_asked_for_once() {
        let mut buffer = Reorder::new(thread(), 1);
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
        let mut buffer = Reorder::new(thread_id, 1);
        arrive(&mut buffer, 4);
        arrive(&mut buffer, 7);
        let Action::ReadBack(range) = buffer.hold_expired(true).remove(0) else {
            panic!("a read-back was expected");
        };
        assert_eq!(arrive(&mut buffer, 2), ["route 2"]);
        assert_eq!(arrive(&mut buffer, 3), ["route 3", "route 4"]);
        // 5 and 6 are behind a newer gap: a new hold, no skip.
        assert_eq!(summary(&buffer.fill_done(range)), ["hold"]);
        assert_eq!(buffer.routed_through(), 4);
    }

    #[test]
    fn a_read_back_that_failed_skips_the_gap() {
        let mut buffer = Reorder::new(thread(), 0);
        arrive(&mut buffer, 3);
        let Action::ReadBack(range) = buffer.hold_expired(true).remove(0) else {
            panic!("a read-back was expected");
        };
        assert_eq!(summary(&buffer.fill_done(range)), ["route 3"]);
        assert_eq!(buffer.held_count(), 0);
    }
}
