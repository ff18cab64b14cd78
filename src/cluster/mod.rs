//! Cluster mode: several nodes on one database, their hubs joined over NATS.
//!
//! What crosses the bus is in [`wire`]; the connection and its tasks are in
//! [`bus`]; what a hub does with it is in `hub/peers.rs`; the settings are
//! `config::ClusterSettings`. Without a
//! `cluster.nats_url` none of this runs and a node is a single node.

pub mod bus;
pub mod wire;

use uuid::Uuid;

use crate::domain::ThreadId;

/// Subjects of one kind are split by key (a thread, or for events about a
/// person, the person) into this many shards, so one key's events stay on
/// one subject (and in publish order).
pub const SHARDS: u128 = 16;

pub fn shard_of(key: Uuid) -> u128 {
    key.as_u128() % SHARDS
}

/// The subjects of one cluster.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// Events of this [`ordering_key`](crate::events::ChatEvent::ordering_key).
    pub fn events(&self, key: Uuid) -> String {
        format!("{}.events.{}", self.prefix, shard_of(key))
    }

    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    pub fn typing(&self, thread_id: ThreadId) -> String {
        format!("{}.typing.{}", self.prefix, shard_of(thread_id.0))
    }

    pub fn all_typing(&self) -> String {
        format!("{}.typing.>", self.prefix)
    }

    pub fn presence(&self) -> String {
        format!("{}.presence", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_always_maps_to_the_same_shard_subject() {
        let subjects = Subjects::new("p");
        let thread = ThreadId(uuid::Uuid::new_v4());
        assert_eq!(subjects.events(thread.0), subjects.events(thread.0));
        assert!(subjects.events(thread.0).starts_with("p.events."));
        assert!(shard_of(thread.0) < SHARDS);
    }
}
