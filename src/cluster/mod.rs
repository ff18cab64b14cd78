//! Cluster mode: several nodes on one database, their hubs joined over NATS.
//!
//! What crosses the bus is in [`wire`]; the connection and its tasks are in
//! [`bus`]; what a hub does with it is in `hub/cluster.rs`. Without a
//! `cluster.nats_url` none of this runs and a node is a single node.

pub mod bus;
pub mod wire;

use std::time::Duration;

use serde::Deserialize;

use crate::domain::ThreadId;

/// Subjects of one kind are split by thread into this many shards, so one
/// thread's events stay on one subject (and in publish order).
pub const SHARDS: u128 = 16;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ClusterSettings {
    pub nats_url: String,
    pub subject_prefix: String,
    pub node_id: String,
    pub heartbeat_interval_ms: u64,
    pub node_timeout_ms: u64,
}

impl ClusterSettings {
    pub fn enabled(&self) -> bool {
        !self.nats_url.is_empty()
    }

    /// Checks what the types cannot: (key, why) of the first bad value.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !token_ok(&self.subject_prefix) {
            return Err((
                "cluster.subject_prefix",
                "must be letters, digits, '-' or '_' (one NATS subject token)",
            ));
        }
        if !self.node_id.is_empty() && !token_ok(&self.node_id) {
            return Err(("cluster.node_id", "must be letters, digits, '-' or '_'"));
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(("cluster.heartbeat_interval_ms", "must be at least 1"));
        }
        if self.node_timeout_ms <= self.heartbeat_interval_ms {
            return Err((
                "cluster.node_timeout_ms",
                "must be longer than heartbeat_interval_ms",
            ));
        }
        Ok(())
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }

    /// The configured node id, or a fresh random one.
    pub fn resolve_node_id(&self) -> NodeId {
        if self.node_id.is_empty() {
            NodeId(uuid::Uuid::new_v4().simple().to_string())
        } else {
            NodeId(self.node_id.clone())
        }
    }
}

/// A node's name on the bus; envelopes carry it so a node can drop its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

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

    fn settings() -> ClusterSettings {
        ClusterSettings {
            nats_url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "confab".into(),
            node_id: String::new(),
            heartbeat_interval_ms: 1000,
            node_timeout_ms: 3000,
        }
    }

    #[test]
    fn a_prefix_must_be_one_subject_token() {
        let mut s = settings();
        assert!(s.check().is_ok());
        s.subject_prefix = "a.b".into();
        assert_eq!(s.check().map_err(|e| e.0), Err("cluster.subject_prefix"));
    }

    #[test]
    fn the_node_timeout_must_outlast_the_heartbeat() {
        let mut s = settings();
        s.node_timeout_ms = s.heartbeat_interval_ms;
        assert_eq!(s.check().map_err(|e| e.0), Err("cluster.node_timeout_ms"));
    }

    #[test]
    fn a_thread_always_maps_to_the_same_shard_subject() {
        let subjects = Subjects::new("p");
        let thread = ThreadId(uuid::Uuid::new_v4());
        assert_eq!(subjects.events(thread), subjects.events(thread));
        assert!(subjects.events(thread).starts_with("p.events."));
        assert!(shard_of(thread) < SHARDS);
    }
}
