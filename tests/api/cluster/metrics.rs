//! The bus as a node's metrics show it: what one node publishes, the others
//! count as received. Each node is its own process, so its counters are its
//! own.

use super::{cluster_config, start_cluster};
use crate::support::metrics::scrape;

#[actix_web::test]
async fn a_cross_node_message_is_counted_published_on_its_node_and_received_on_the_other() {
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 2).await;
    let users = nodes[0].users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = nodes[0].group(&[ann, bob]).await;
    let mut ann_1 = nodes[0].connect(ann).await;
    let mut bob_2 = nodes[1].connect(bob).await;
    // Heartbeats cross the bus all the time; a message is an `event`.
    let event = [("kind", "event")];
    let published_before = scrape(&nodes[0].base)
        .await
        .value("confab_bus_published_total", &event);
    let received_before = scrape(&nodes[1].base)
        .await
        .value("confab_bus_received_total", &event);

    let sent = ann_1.send_message(thread, "across the bus").await;
    assert_eq!(bob_2.next_event("chat:message").await["message"], sent);

    let published_after = scrape(&nodes[0].base)
        .await
        .value("confab_bus_published_total", &event);
    let received_after = scrape(&nodes[1].base)
        .await
        .value("confab_bus_received_total", &event);
    assert!(
        published_after >= published_before + 1.0,
        "node 1 published events: {published_before} then {published_after}"
    );
    assert!(
        received_after >= received_before + 1.0,
        "node 2 received events: {received_before} then {received_after}"
    );
    // Both nodes' heartbeats have crossed by now (start_cluster waited for
    // them): presence is counted apart.
    let presence = scrape(&nodes[1].base)
        .await
        .value("confab_bus_received_total", &[("kind", "presence")]);
    assert!(presence >= 1.0, "node 2 heard {presence} presence messages");
}
