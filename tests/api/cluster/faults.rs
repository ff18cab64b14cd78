//! Faults of a cluster: a node cut off from NATS, and a node killed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    await_peers, await_peers_since_start, await_ready_status, cluster_config, nats_addr, readyz,
    start_cluster, start_node, NODE_TIMEOUT_MS,
};
use crate::support::metrics::scrape;
use crate::support::proxy::Proxy;
use crate::support::WsClient;

/// The next `n` chat:message frames, then none: exactly these, once.
async fn exactly_messages(client: &mut WsClient, n: usize) -> Vec<Value> {
    let mut messages = Vec::with_capacity(n);
    for _ in 0..n {
        messages.push(client.next_event("chat:message").await["message"].clone());
    }
    client.assert_no_event("chat:message").await;
    messages
}

#[actix_web::test]
async fn a_node_cut_from_the_bus_serves_its_own_sessions_and_everyone_catches_up_once() {
    bus_outage(Outage::Cut).await;
}

#[actix_web::test]
async fn a_node_silently_partitioned_from_the_bus_catches_up_once_when_it_heals() {
    bus_outage(Outage::Partition).await;
}

/// How node 3 loses NATS: its connection closed and new ones refused, or
/// every byte held with nothing closed (noticed only by missed pongs).
#[derive(Debug, Clone, Copy)]
enum Outage {
    Cut,
    Partition,
}

async fn bus_outage(outage: Outage) {
    let mut config = cluster_config();
    let mut nodes = start_cluster(&mut config, 2).await;
    // Node 3 reaches NATS through a proxy the test can cut.
    let proxy = Proxy::start(nats_addr());
    let mut node_3 = start_node(&mut config, Some(format!("nats://{}", proxy.addr()))).await;
    await_peers_since_start(&mut node_3, 2).await;
    for node in &mut nodes {
        await_peers(node, 1).await;
    }
    assert_eq!(
        readyz(&node_3).await,
        json!({"status": "ready", "bus": "connected"})
    );

    let users = nodes[0].users(3).await;
    let (ann, cat, dan) = (&users[0], &users[1], &users[2]);
    let thread = nodes[0].group(&[ann, cat, dan]).await;
    let mut ann_1 = nodes[0].connect(ann).await;
    let mut cat_3 = node_3.connect(cat).await;
    let mut dan_3 = node_3.connect(dan).await;

    match outage {
        Outage::Cut => proxy.cut().await,
        Outage::Partition => proxy.blackhole(),
    }
    let took = await_ready_status(&node_3, "degraded").await;
    assert_eq!(
        readyz(&node_3).await,
        json!({"status": "degraded", "bus": "disconnected"})
    );
    eprintln!("{outage:?}: node 3 reported degraded after {took:?}");
    let cut_off = scrape(&node_3.base).await;

    // Cut off, node 3 still commits, acks and delivers locally.
    let c1 = cat_3.send_message(thread, "c1 during the outage").await;
    let c2 = cat_3.send_message(thread, "c2 during the outage").await;
    assert_eq!(
        exactly_messages(&mut dan_3, 2).await,
        vec![c1.clone(), c2.clone()]
    );
    // Node 1 goes on too; the two sides cannot hear each other.
    let a3 = ann_1.send_message(thread, "a3 during the outage").await;
    assert_eq!(a3["seq"], 3);
    ann_1.assert_no_event("chat:message").await;
    cat_3.assert_no_event("chat:message").await;

    proxy.restore();
    await_ready_status(&node_3, "ready").await;
    // Each side gets what it missed, once, in seq order.
    assert_eq!(exactly_messages(&mut ann_1, 2).await, vec![c1, c2]);
    assert_eq!(exactly_messages(&mut cat_3, 1).await, vec![a3.clone()]);
    assert_eq!(exactly_messages(&mut dan_3, 1).await, vec![a3]);
    // Node 3's metrics tell the story: its bus came back, and it read
    // back what it had missed.
    let healed = scrape(&node_3.base).await;
    for (name, labels) in [
        ("confab_bus_reconnects_total", &[][..]),
        (
            "confab_gap_fill_read_backs_total",
            &[("reason", "catch_up")][..],
        ),
    ] {
        let (was, is) = (cut_off.value(name, labels), healed.value(name, labels));
        assert!(
            is >= was + 1.0,
            "{name} {labels:?} went from {was} to {is} over the outage"
        );
    }

    // And live again both ways.
    let a4 = ann_1.send_message(thread, "a4 after").await;
    assert_eq!(exactly_messages(&mut cat_3, 1).await, vec![a4]);
    let c5 = cat_3.send_message(thread, "c5 after").await;
    assert_eq!(exactly_messages(&mut ann_1, 1).await, vec![c5]);
}

#[actix_web::test]
async fn a_killed_nodes_users_go_offline_and_its_clients_catch_up_elsewhere() {
    let mut config = cluster_config();
    let mut nodes = start_cluster(&mut config, 3).await;
    let users = nodes[0].users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = nodes[0].group(&[ann, bob]).await;
    let mut ann_1 = nodes[0].connect(ann).await;
    let mut bob_2 = nodes[1].connect(bob).await;
    assert_eq!(
        ann_1.next_event("chat:presence").await,
        json!({"user_id": bob.id, "online": true})
    );
    let first = ann_1.send_message(thread, "before the crash").await;
    assert_eq!(bob_2.next_event("chat:message").await["message"], first);

    // Bob is typing when his node dies: the indicator must not stay.
    let ack = bob_2
        .request("chat:typing-start", json!({"thread_id": thread}))
        .await;
    assert_ne!(ack["event"], "chat:error", "{ack}");
    assert_eq!(
        ann_1.next_event("chat:typing").await,
        json!({"thread_id": thread, "user_id": bob.id, "typing": true})
    );

    let killed_at = Instant::now();
    nodes[1].process.kill().await;
    assert_eq!(
        ann_1.next_event("chat:typing").await,
        json!({"thread_id": thread, "user_id": bob.id, "typing": false})
    );
    assert_eq!(
        ann_1.next_event("chat:presence").await,
        json!({"user_id": bob.id, "online": false})
    );
    let expired_after = killed_at.elapsed();
    eprintln!("a killed node's user went offline after {expired_after:?}");
    // The node timeout plus at most one heartbeat tick and some slack.
    assert!(
        expired_after < Duration::from_millis(NODE_TIMEOUT_MS * 3),
        "{expired_after:?}"
    );

    let missed = ann_1.send_message(thread, "while bob was away").await;
    let mut bob_3 = nodes[2].connect(bob).await;
    assert_eq!(
        ann_1.next_event("chat:presence").await,
        json!({"user_id": bob.id, "online": true})
    );
    assert_eq!(bob_3.ready_thread(thread)["last_seq"], 2);
    let sync = bob_3
        .request("chat:sync", json!({"thread_id": thread, "after_seq": 1}))
        .await;
    assert_eq!(sync["data"]["messages"], json!([missed]), "{sync}");
    let live = ann_1.send_message(thread, "welcome back").await;
    assert_eq!(bob_3.next_event("chat:message").await["message"], live);
}

#[actix_web::test]
async fn a_node_starts_and_serves_alone_while_nats_is_unreachable() {
    let mut config = cluster_config();
    let proxy = Proxy::start(nats_addr());
    proxy.cut().await;
    let node = start_node(&mut config, Some(format!("nats://{}", proxy.addr()))).await;
    assert_eq!(
        readyz(&node).await,
        json!({"status": "degraded", "bus": "disconnected"})
    );
    let users = node.users(2).await;
    let thread = node.group(&[&users[0], &users[1]]).await;
    let mut ann = node.connect(&users[0]).await;
    let mut bob = node.connect(&users[1]).await;
    let sent = ann.send_message(thread, "no bus, still served").await;
    assert_eq!(bob.next_event("chat:message").await["message"], sent);

    proxy.restore();
    await_ready_status(&node, "ready").await;
}
