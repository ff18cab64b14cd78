//! Changes to old messages (edits, deletions, reactions) reach every node
//! in rev order, and one whose announcement was lost is read back and
//! delivered, as a lost new message is: across a bus outage (catch-up) and
//! within a node (a rev gap past the reorder hold; the same hub code serves
//! a cluster node whose bus lost one event).

use reqwest::Method;
use serde_json::{json, Value};

use super::{
    await_peers, await_ready_status, cluster_config, nats_addr, start_cluster, start_node,
};
use crate::support::proxy::Proxy;
use crate::support::{spawn_app, WsClient};

fn is_change(frame: &Value) -> bool {
    matches!(
        frame["event"].as_str(),
        Some("chat:message" | "chat:message-edited" | "chat:message-deleted" | "chat:reaction")
    )
}

/// The next frame that is a change to a message, whatever its kind.
async fn next_change(client: &mut WsClient) -> Value {
    client.wait_for(is_change, "a change to a message").await
}

fn rev_of(change: &Value) -> &Value {
    match change["event"].as_str() {
        Some("chat:message" | "chat:message-edited") => &change["data"]["message"]["rev"],
        _ => &change["data"]["rev"],
    }
}

#[actix_web::test]
async fn changes_a_node_missed_while_cut_from_the_bus_arrive_in_rev_order_when_it_heals() {
    let mut config = cluster_config();
    let mut nodes = start_cluster(&mut config, 1).await;
    let proxy = Proxy::start(nats_addr());
    let mut node_2 = start_node(&mut config, Some(format!("nats://{}", proxy.addr()))).await;
    await_peers(&mut node_2, 1).await;
    await_peers(&mut nodes[0], 1).await;
    let node_1 = &nodes[0];

    let users = node_1.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = node_1.group(&[ann, bob]).await;
    let mut ann_1 = node_1.connect(ann).await;
    let mut bob_2 = node_2.connect(bob).await;
    let first = ann_1.send_message(thread, "first").await;
    let second = ann_1.send_message(thread, "second").await;
    assert_eq!(bob_2.next_event("chat:message").await["message"], first);
    assert_eq!(bob_2.next_event("chat:message").await["message"], second);
    // Live across nodes: a reaction on node 2 reaches node 1.
    let ack = bob_2
        .request(
            "chat:react",
            json!({"thread_id": thread, "message_id": first["id"], "emoji": "👍", "on": true}),
        )
        .await;
    assert_eq!(ack["data"]["rev"], 3, "{ack}");
    assert_eq!(ann_1.next_event("chat:reaction").await["rev"], 3);

    proxy.cut().await;
    await_ready_status(&node_2, "degraded").await;
    // On node 1, while node 2 hears nothing: an edit (rev 4), a reaction
    // (rev 5) and the deletion of the message it was on (rev 6).
    let first_id = first["id"].as_str().unwrap_or_default();
    let edited = node_1
        .request(
            Method::PATCH,
            &format!("/api/messages/{first_id}"),
            Some(&ann.token),
            Some(json!({"body": "first, edited"})),
        )
        .await;
    assert_eq!(edited.body["rev"], 4, "{edited:?}");
    let ack = ann_1
        .request(
            "chat:react",
            json!({"thread_id": thread, "message_id": second["id"], "emoji": "🎉", "on": true}),
        )
        .await;
    assert_eq!(ack["data"]["rev"], 5, "{ack}");
    let second_id = second["id"].as_str().unwrap_or_default();
    let deleted = node_1
        .request(
            Method::DELETE,
            &format!("/api/messages/{second_id}"),
            Some(&ann.token),
            None,
        )
        .await;
    assert_eq!(deleted.body["rev"], 6, "{deleted:?}");
    bob_2.assert_silent().await;

    proxy.restore();
    await_ready_status(&node_2, "ready").await;
    // Node 2 reads back what it missed, every rev in order, each change
    // carrying its message as it is now.
    let change = next_change(&mut bob_2).await;
    assert_eq!(change["event"], "chat:message-edited", "{change}");
    assert_eq!(change["data"]["message"], edited.body);
    assert_eq!(
        change["data"]["message"]["reactions"],
        json!([{"emoji": "👍", "user_ids": [bob.id]}])
    );
    let change = next_change(&mut bob_2).await;
    assert_eq!(
        change,
        json!({"event": "chat:reaction",
               "data": {"thread_id": thread, "message_id": second["id"], "seq": 2,
                        "user_id": ann.id, "emoji": "🎉", "on": true, "rev": 5}})
    );
    let change = next_change(&mut bob_2).await;
    assert_eq!(
        change,
        json!({"event": "chat:message-deleted",
               "data": {"thread_id": thread, "message_id": second["id"], "seq": 2,
                        "deleted_at": deleted.body["deleted_at"], "rev": 6}})
    );
    bob_2.assert_silent().await;

    // And live again, in order.
    let ack = ann_1
        .request(
            "chat:react",
            json!({"thread_id": thread, "message_id": first["id"], "emoji": "👍", "on": true}),
        )
        .await;
    assert_eq!(ack["data"]["rev"], 7, "{ack}");
    let change = next_change(&mut bob_2).await;
    assert_eq!(change["event"], "chat:reaction");
    assert_eq!(rev_of(&change), 7);
}

#[actix_web::test]
async fn a_change_never_announced_is_read_back_and_delivered_before_the_next_one() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let message = ann_ws.send_message(thread, "before").await;
    bob_ws.next_event("chat:message").await;

    // An edit committed as PATCH would, but never announced to the hub.
    let mut db = app.db().await;
    db.exec(&format!(
        "WITH bumped AS (
             UPDATE threads SET last_rev = last_rev + 1 WHERE id = '{thread}'
             RETURNING id, last_rev),
         edited AS (
             UPDATE messages SET body = 'after, unannounced', edited_at = now(),
                                 rev = (SELECT last_rev FROM bumped)
             WHERE id = '{message_id}'),
         creation AS (
             INSERT INTO message_changes (thread_id, rev, message_id, kind)
             SELECT thread_id, created_rev, id, 'created' FROM messages
             WHERE id = '{message_id}' ON CONFLICT DO NOTHING)
         INSERT INTO message_changes (thread_id, rev, message_id, kind)
         SELECT id, last_rev, '{message_id}', 'edited' FROM bumped",
        message_id = message["id"].as_str().unwrap_or_default()
    ))
    .await;

    // The next change, announced, waits for it.
    let ack = ann_ws
        .request(
            "chat:react",
            json!({"thread_id": thread, "message_id": message["id"], "emoji": "✅", "on": true}),
        )
        .await;
    assert_eq!(ack["data"]["rev"], 3, "{ack}");
    let read_back = next_change(&mut bob_ws).await;
    assert_eq!(read_back["event"], "chat:message-edited", "{read_back}");
    assert_eq!(read_back["data"]["message"]["body"], "after, unannounced");
    // Read after the reaction committed: the state it carries is current.
    let live = next_change(&mut bob_ws).await;
    assert_eq!(live["event"], "chat:reaction", "{live}");
    assert_eq!(live["data"]["rev"], 3);
    let revs = [rev_of(&read_back).clone(), rev_of(&live).clone()];
    assert_eq!(revs, [json!(2), json!(3)], "in rev order");
    bob_ws.assert_silent().await;
}

#[actix_web::test]
async fn concurrent_changes_on_different_nodes_are_seen_in_one_gapless_rev_order() {
    const PER_WRITER: usize = 15;
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 2).await;
    let users = nodes[0].users(4).await;
    let thread = nodes[0]
        .group(&[&users[0], &users[1], &users[2], &users[3]])
        .await;
    let mut watchers = [
        nodes[0].connect(&users[2]).await,
        nodes[1].connect(&users[3]).await,
    ];
    let mut first = nodes[0].connect(&users[0]).await;
    let mut second = nodes[1].connect(&users[1]).await;
    let target = first.send_message(thread, "react to me").await;

    // Reactions (each a change) and sends from both nodes at once.
    async fn write(client: &mut WsClient, thread: uuid::Uuid, target: &Value, who: usize) {
        for n in 0..PER_WRITER {
            let ack = client
                .request(
                    "chat:react",
                    json!({"thread_id": thread, "message_id": target["id"],
                           "emoji": format!("w{who}-{n}"), "on": true}),
                )
                .await;
            assert_eq!(ack["event"], "chat:ack", "{ack}");
            client.send_message(thread, &format!("w{who}-{n}")).await;
        }
    }
    futures_util::future::join(
        write(&mut first, thread, &target, 0),
        write(&mut second, thread, &target, 1),
    )
    .await;

    let total = 1 + 2 * 2 * PER_WRITER as i64;
    for (i, watcher) in watchers.iter_mut().enumerate() {
        for expected in 1..=total {
            let change = next_change(watcher).await;
            assert_eq!(rev_of(&change), expected, "watcher on node {}", i + 1);
        }
        watcher.assert_none(is_change, "a change more").await;
    }
}
