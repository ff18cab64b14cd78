//! Cluster mode: several confab binaries on one database and the local
//! NATS, each a child process. Every test has its own database and its own
//! subject prefix, so parallel tests never hear each other.

mod changes;
mod conversations;
mod delivery;
mod faults;
mod gaps;
mod metrics;
mod people;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::time::{timeout, Instant};
use uuid::Uuid;

use crate::support::child::{ChildConfig, ChildServer};

/// The NATS server every test machine runs (CI starts it).
pub const NATS: &str = "127.0.0.1:4222";
/// A node is dropped after missing fifteen heartbeats: short enough that
/// the expiry tests are quick, long enough that a node starved of CPU for
/// a second on a loaded machine is not taken for dead (its users would go
/// offline in the middle of a test that expects no presence news).
pub const HEARTBEAT_MS: u64 = 200;
pub const NODE_TIMEOUT_MS: u64 = 3000;

pub fn nats_addr() -> SocketAddr {
    NATS.parse().expect("a socket address")
}

/// One database and one subject prefix; nodes started from it form one
/// cluster.
pub fn cluster_config() -> ChildConfig {
    let prefix = format!("t{}", Uuid::new_v4().simple());
    let nats = format!("nats://{NATS}");
    let heartbeat = HEARTBEAT_MS.to_string();
    let timeout = NODE_TIMEOUT_MS.to_string();
    ChildConfig::new(&[
        ("CONFAB_NATS_URL", &nats),
        ("CONFAB_SUBJECT_PREFIX", &prefix),
        ("CONFAB_CLUSTER_HEARTBEAT_INTERVAL_MS", &heartbeat),
        ("CONFAB_CLUSTER_NODE_TIMEOUT_MS", &timeout),
        ("CONFAB_WORKERS", "1"),
        ("CONFAB_DB_POOL_SIZE", "4"),
    ])
}

/// Starts one node of `config`, its bus at `nats_url` if given.
pub async fn start_node(config: &mut ChildConfig, nats_url: Option<String>) -> ChildServer {
    if let Some(url) = &nats_url {
        config.env.push(("CONFAB_NATS_URL".into(), url.clone()));
    }
    let node = config.start().await;
    if nats_url.is_some() {
        config.env.pop();
    }
    node
}

/// `n` nodes, started one by one (the first creates the database), each
/// having heard every other one on the bus before this returns.
pub async fn start_cluster(config: &mut ChildConfig, n: usize) -> Vec<ChildServer> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(start_node(config, None).await);
    }
    for node in &mut nodes {
        await_peers_since_start(node, n - 1).await;
    }
    nodes
}

/// [`await_peers`] for a node just started: peers it heard before it
/// listened were read while waiting for its address, and count.
pub async fn await_peers_since_start(node: &mut ChildServer, peers: usize) {
    let heard = node.process.seen_count("cluster: peer");
    await_peers(node, peers.saturating_sub(heard)).await;
}

/// Waits until the node's hub has heard `peers` other nodes: its
/// subscriptions work and theirs carry its news.
pub async fn await_peers(node: &mut ChildServer, peers: usize) {
    for _ in 0..peers {
        node.process.wait_for_line("cluster: peer").await;
    }
}

pub async fn readyz(node: &ChildServer) -> Value {
    let reply = node.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(reply.status, 200, "readyz must stay 200: {reply:?}");
    reply.body
}

/// Polls /readyz until `status` (a state with no event to wait on);
/// returns how long it took.
pub async fn await_ready_status(node: &ChildServer, status: &str) -> Duration {
    let start = Instant::now();
    timeout(Duration::from_secs(15), async {
        loop {
            if readyz(node).await["status"] == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("readyz never said {status:?}"));
    start.elapsed()
}
