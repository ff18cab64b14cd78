//! Cluster mode: several nodes on one database, their hubs joined over NATS.
//!
//! What crosses the bus is in [`wire`]; the connection and its tasks are in
//! [`bus`]; what a hub does with it is in `hub/peers.rs`; the settings are
//! `config::ClusterSettings`. Without a
//! `cluster.nats_url` none of this runs and a node is a single node.

pub mod bus;
pub mod wire;

use crate::domain::ThreadId;

/// Subjects of one kind are split by thread into this many shards, so one
/// thread's events stay on one subject (and in publish order).
pub const SHARDS: u128 = 16;

pub fn shard_of(thread_id: ThreadId) -> u128 {
    thread_id.0.as_u128() % SHARDS
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

    pub fn events(&self, thread_id: ThreadId) -> String {
        format!("{}.events.{}", self.prefix, shard_of(thread_id))
    }

    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    pub fn typing(&self, thread_id: ThreadId) -> String {
        format!("{}.typing.{}", self.prefix, shard_of(thread_id))
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
        assert_eq!(subjects.events(thread), subjects.events(thread));
        assert!(subjects.events(thread).starts_with("p.events."));
        assert!(shard_of(thread) < SHARDS);
    }
}
