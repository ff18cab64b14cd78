//! A room: the online members of one thread, the typing state, and the
//! reorder buffer that makes chat:message leave in seq order.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::domain::{SessionId, UserId};
use crate::protocol::MessageView;

pub struct Room {
    /// Online users who are members. Only members are ever in here: users
    /// enter from their own membership list (connect) or from a committed
    /// membership change, and leave on removal or when they go offline.
    pub members: HashSet<UserId>,
    /// The seq the next routed chat:message must have.
    pub next_seq: i64,
    /// Messages that arrived before an earlier seq did.
    pub held: BTreeMap<i64, (MessageView, Option<SessionId>)>,
    pub flush_scheduled: bool,
    /// Users typing here, with the generation of their latest typing-start.
    pub typing: HashMap<UserId, u64>,
}

/// What to do with an arriving message.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Route it now (and then whatever it released).
    InOrder,
    /// An earlier seq is missing: hold it.
    Early,
    /// Already covered: every session in the room was told a last_seq at or
    /// past it when it joined.
    Stale,
}

impl Room {
    pub fn new(last_seq: i64) -> Self {
        Self {
            members: HashSet::new(),
            next_seq: last_seq + 1,
            held: BTreeMap::new(),
            flush_scheduled: false,
            typing: HashMap::new(),
        }
    }

    pub fn classify(&self, seq: i64) -> Arrival {
        use std::cmp::Ordering::*;
        match seq.cmp(&self.next_seq) {
            Equal => Arrival::InOrder,
            Greater => Arrival::Early,
            Less => Arrival::Stale,
        }
    }

    /// Takes the held messages that are now in order.
    pub fn release_in_order(&mut self) -> Vec<(MessageView, Option<SessionId>)> {
        let mut out = Vec::new();
        while let Some(entry) = self.held.remove(&self.next_seq) {
            self.next_seq += 1;
            out.push(entry);
        }
        out
    }

    /// Gives up waiting for a missing seq: skips to the first held one.
    /// Reached only when the gap could not be read back from the database;
    /// its members recover it with chat:sync.
    pub fn skip_gap(&mut self) -> Vec<(MessageView, Option<SessionId>)> {
        if let Some((&first, _)) = self.held.iter().next() {
            log::warn!(
                "seq gap: waited for {}, moving on to {first}",
                self.next_seq
            );
            self.next_seq = first;
        }
        self.release_in_order()
    }
}
