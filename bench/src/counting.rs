//! Accounting for every message: what each recipient saw of each thread
//! (duplicates and order checked as frames arrive), and afterwards what it
//! should have seen but did not. Pure functions over plain data, so the
//! rules are unit-tested without a server.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// One recipient's view of one thread.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    /// Highest seq seen so far, kept across measurement steps so a late
    /// frame from an earlier step still counts as out of order.
    last: i64,
    /// Seqs seen in the current step.
    seen: HashSet<i64>,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl SeqTracker {
    /// Records one delivered seq. A seq seen before is a duplicate; a new
    /// seq below one already seen arrived out of order.
    pub fn observe(&mut self, seq: i64) {
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return;
        }
        if seq < self.last {
            self.out_of_order += 1;
        } else {
            self.last = seq;
        }
    }

    pub fn delivered(&self) -> u64 {
        self.seen.len() as u64
    }

    pub fn contains(&self, seq: i64) -> bool {
        self.seen.contains(&seq)
    }

    /// Starts a new step: forgets the seqs seen, keeps the order mark.
    pub fn next_step(&mut self) {
        self.seen.clear();
        self.duplicates = 0;
        self.out_of_order = 0;
    }
}

/// A message the server acknowledged, and who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub thread: usize,
    pub seq: i64,
    pub sender: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Deliveries owed: each acked message to every member session but
    /// its sender.
    pub expected: u64,
    /// Distinct (recipient, seq) pairs received.
    pub delivered: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Delivered seqs the bench never saw acked (a send whose ack was lost
    /// or came after the drain): not an error of the server by itself.
    pub unacked_deliveries: u64,
}

impl Counts {
    /// Any of these breaks a promise of the server.
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.out_of_order == 0
    }
}

/// Compares what was acked with what each member session received.
/// `members[thread]` lists the sessions in that thread; `received` maps
/// (session, thread) to that session's tracker.
pub fn reconcile(
    acked: &[Acked],
    members: &[Vec<usize>],
    received: &HashMap<(usize, usize), SeqTracker>,
) -> Counts {
    let empty = SeqTracker::default();
    let mut counts = Counts::default();
    let mut acked_seqs: HashMap<usize, HashSet<i64>> = HashMap::new();
    for message in acked {
        acked_seqs
            .entry(message.thread)
            .or_default()
            .insert(message.seq);
        let Some(sessions) = members.get(message.thread) else {
            continue;
        };
        for &session in sessions.iter().filter(|&&s| s != message.sender) {
            counts.expected += 1;
            let tracker = received.get(&(session, message.thread)).unwrap_or(&empty);
            if !tracker.contains(message.seq) {
                counts.missing += 1;
            }
        }
    }
    for ((_, thread), tracker) in received {
        counts.delivered += tracker.delivered();
        counts.duplicated += tracker.duplicates;
        counts.out_of_order += tracker.out_of_order;
        let known = acked_seqs.get(thread);
        counts.unacked_deliveries += tracker
            .seen
            .iter()
            .filter(|seq| !known.is_some_and(|k| k.contains(seq)))
            .count() as u64;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(seqs: &[i64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.observe(s);
        }
        t
    }

    fn acked(thread: usize, sender: usize, seqs: impl IntoIterator<Item = i64>) -> Vec<Acked> {
        seqs.into_iter()
            .map(|seq| Acked {
                thread,
                seq,
                sender,
            })
            .collect()
    }

    #[test]
    fn in_order_delivery_is_clean() {
        let t = tracker(&[1, 2, 3, 7]);
        assert_eq!((t.duplicates, t.out_of_order, t.delivered()), (0, 0, 4));
    }

    #[test]
    fn a_repeated_seq_is_a_duplicate_not_out_of_order() {
        let t = tracker(&[1, 2, 2, 3, 1]);
        assert_eq!((t.duplicates, t.out_of_order, t.delivered()), (2, 0, 3));
    }

    #[test]
    fn a_lower_new_seq_is_out_of_order() {
        let t = tracker(&[1, 3, 2, 4]);
        assert_eq!((t.duplicates, t.out_of_order, t.delivered()), (0, 1, 4));
    }

    #[test]
    fn order_is_kept_across_steps_but_seen_seqs_are_not() {
        let mut t = tracker(&[1, 2, 5]);
        t.next_step();
        t.observe(3);
        t.observe(6);
        assert_eq!((t.duplicates, t.out_of_order, t.delivered()), (0, 1, 2));
    }

    #[test]
    fn every_member_but_the_sender_is_owed_each_message() {
        // Thread 0 has sessions 0, 1, 2; session 0 sent seqs 1..=3.
        let members = vec![vec![0, 1, 2]];
        let sent = acked(0, 0, 1..=3);
        let mut received = HashMap::new();
        received.insert((1, 0), tracker(&[1, 2, 3]));
        received.insert((2, 0), tracker(&[1, 3]));
        let counts = reconcile(&sent, &members, &received);
        assert_eq!(counts.expected, 6);
        assert_eq!(counts.delivered, 5);
        assert_eq!(counts.missing, 1);
        assert!(!counts.is_clean());
    }

    #[test]
    fn a_session_that_received_nothing_misses_everything() {
        let members = vec![vec![0, 1]];
        let counts = reconcile(&acked(0, 1, [1, 2]), &members, &HashMap::new());
        assert_eq!((counts.expected, counts.missing), (2, 2));
    }

    #[test]
    fn duplicates_and_disorder_are_summed_over_recipients() {
        let members = vec![vec![0, 1], vec![2, 3]];
        let mut sent = acked(0, 0, 1..=2);
        sent.extend(acked(1, 2, 1..=2));
        let mut received = HashMap::new();
        received.insert((1, 0), tracker(&[1, 2, 2]));
        received.insert((3, 1), tracker(&[2, 1]));
        let counts = reconcile(&sent, &members, &received);
        assert_eq!(counts.missing, 0);
        assert_eq!(counts.duplicated, 1);
        assert_eq!(counts.out_of_order, 1);
        assert!(!counts.is_clean());
    }

    #[test]
    fn a_delivery_never_acked_is_counted_apart() {
        let members = vec![vec![0, 1]];
        let mut received = HashMap::new();
        received.insert((1, 0), tracker(&[1, 2]));
        let counts = reconcile(&acked(0, 0, [1]), &members, &received);
        assert_eq!(counts.unacked_deliveries, 1);
        assert!(counts.is_clean());
    }
}
