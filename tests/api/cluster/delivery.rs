//! The single-node promises, re-run with members spread over three nodes:
//! recipients, order, receipts, typing, presence, membership, and a client
//! that comes back through another node.

use futures_util::future::join3;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{cluster_config, start_cluster};
use crate::support::child::ChildServer;
use crate::support::{TestUser, WsClient};

fn presence(user: &TestUser, online: bool) -> Value {
    json!({"user_id": user.id, "online": online})
}

/// `online` of each member as `node` reports it, in `users` order.
async fn online_flags(
    node: &ChildServer,
    thread: Uuid,
    asker: &TestUser,
    users: &[&TestUser],
) -> Vec<bool> {
    let reply = node
        .request(
            Method::GET,
            &format!("/api/threads/{thread}/members"),
            Some(&asker.token),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let members = reply.body["members"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    users
        .iter()
        .map(|u| {
            members
                .iter()
                .find(|m| m["user_id"] == u.id.to_string())
                .and_then(|m| m["online"].as_bool())
                .unwrap_or_else(|| panic!("no online flag for {} in {members:?}", u.id))
        })
        .collect()
}

#[actix_web::test]
async fn events_reach_exactly_the_members_sessions_on_every_node() {
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 3).await;
    let users = nodes[0].users(4).await;
    let (ann, bob, cat, dan) = (&users[0], &users[1], &users[2], &users[3]);
    let outsider = &nodes[1].users(1).await[0];
    let thread = nodes[1].group(&[ann, bob, cat]).await;

    let mut ann_1 = nodes[0].connect(ann).await;
    let mut bob_2 = nodes[1].connect(bob).await;
    let mut cat_3 = nodes[2].connect(cat).await;
    let mut ann_3 = nodes[2].connect(ann).await;
    let mut dan_2 = nodes[1].connect(dan).await;
    let mut outsider_3 = nodes[2].connect(outsider).await;

    let sent = ann_1.send_message(thread, "hello from node 1").await;
    assert_eq!(sent["seq"], 1);
    for member in [&mut bob_2, &mut cat_3, &mut ann_3] {
        assert_eq!(member.next_event("chat:message").await["message"], sent);
    }
    // The sending session gets the ack instead; non-members nothing.
    for other in [&mut ann_1, &mut dan_2, &mut outsider_3] {
        other.assert_no_event("chat:message").await;
    }

    // An edit and a delete made through node 3's HTTP API reach the room
    // on every node.
    let message_id = sent["id"].as_str().unwrap_or_default().to_string();
    let edited = nodes[2]
        .request(
            Method::PATCH,
            &format!("/api/messages/{message_id}"),
            Some(&ann.token),
            Some(json!({"body": "hello, edited"})),
        )
        .await;
    assert_eq!(edited.status, 200, "{edited:?}");
    for member in [&mut ann_1, &mut bob_2, &mut cat_3] {
        let frame = member.next_event("chat:message-edited").await;
        assert_eq!(frame["message"]["body"], "hello, edited", "{frame}");
    }
    let second = ann_1.send_message(thread, "to be deleted").await;
    for member in [&mut bob_2, &mut cat_3, &mut ann_3] {
        assert_eq!(member.next_event("chat:message").await["message"], second);
    }
    let deleted = nodes[1]
        .request(
            Method::DELETE,
            &format!(
                "/api/messages/{}",
                second["id"].as_str().unwrap_or_default()
            ),
            Some(&ann.token),
            None,
        )
        .await;
    assert!(
        deleted.status == 200 || deleted.status == 204,
        "{deleted:?}"
    );
    for member in [&mut ann_1, &mut bob_2, &mut cat_3] {
        let frame = member.next_event("chat:message-deleted").await;
        assert_eq!(frame["seq"], 2, "{frame}");
    }
    for other in [&mut dan_2, &mut outsider_3] {
        other.assert_no_event("chat:message-edited").await;
        other.assert_no_event("chat:message-deleted").await;
    }

    // A read receipt from node 2 reaches the sender's sessions on nodes
    // 1 and 3, and no one else.
    let ack = bob_2
        .request(
            "chat:mark-read",
            json!({"thread_id": thread, "up_to_seq": 2}),
        )
        .await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    for sender in [&mut ann_1, &mut ann_3] {
        let read = sender.next_event("chat:read").await;
        assert_eq!(read["user_id"], bob.id.to_string(), "{read}");
        assert_eq!(read["up_to_seq"], 2, "{read}");
    }
    for other in [&mut cat_3, &mut dan_2, &mut outsider_3] {
        other.assert_no_event("chat:read").await;
    }

    // Typing on node 3 shows on nodes 1 and 2, and ends everywhere with a
    // typing-stop.
    let ack = cat_3
        .request("chat:typing-start", json!({"thread_id": thread}))
        .await;
    assert_ne!(ack["event"], "chat:error", "{ack}");
    let typing = json!({"thread_id": thread, "user_id": cat.id, "typing": true});
    for member in [&mut ann_1, &mut bob_2, &mut ann_3] {
        assert_eq!(member.next_event("chat:typing").await, typing);
    }
    cat_3
        .emit("chat:typing-stop", json!({"thread_id": thread}))
        .await;
    let stopped = json!({"thread_id": thread, "user_id": cat.id, "typing": false});
    for member in [&mut ann_1, &mut bob_2, &mut ann_3] {
        assert_eq!(member.next_event("chat:typing").await, stopped);
    }
    for other in [&mut dan_2, &mut outsider_3] {
        other.assert_no_event("chat:typing").await;
    }
}

/// Three senders on three nodes at once: every listener, wherever it is,
/// gets every seq once, gapless and in order.
#[actix_web::test]
async fn concurrent_senders_on_different_nodes_are_seen_in_one_gapless_order() {
    const PER_SENDER: usize = 25;
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 3).await;
    let users = nodes[0].users(6).await;
    let members: Vec<&TestUser> = users.iter().collect();
    let thread = nodes[0].group(&members).await;

    let mut listeners = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        listeners.push(node.connect(&users[3 + i]).await);
    }
    let mut senders = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        senders.push(node.connect(&users[i]).await);
    }

    async fn send_all(client: &mut WsClient, thread: Uuid, who: usize) {
        for n in 0..PER_SENDER {
            client.send_message(thread, &format!("s{who}-{n}")).await;
        }
    }
    let [s0, s1, s2] = &mut senders[..] else {
        unreachable!("three senders")
    };
    join3(
        send_all(s0, thread, 0),
        send_all(s1, thread, 1),
        send_all(s2, thread, 2),
    )
    .await;

    let total = (3 * PER_SENDER) as i64;
    for (i, listener) in listeners.iter_mut().enumerate() {
        for expected in 1..=total {
            let message = listener.next_event("chat:message").await["message"].clone();
            assert_eq!(message["seq"], expected, "listener on node {}", i + 1);
        }
        listener.assert_no_event("chat:message").await;
    }
    // Each sender sees everyone else's, in increasing seq order.
    for (i, sender) in senders.iter_mut().enumerate() {
        let mut last = 0;
        for _ in 0..2 * PER_SENDER {
            let seq = sender.next_event("chat:message").await["message"]["seq"]
                .as_i64()
                .unwrap_or_default();
            assert!(seq > last, "sender {i}: seq {seq} after {last}");
            last = seq;
        }
        sender.assert_no_event("chat:message").await;
    }
}

#[actix_web::test]
async fn presence_is_per_user_across_nodes_and_members_count_every_node() {
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 3).await;
    let users = nodes[0].users(4).await;
    let (ann, bob, cat, dan) = (&users[0], &users[1], &users[2], &users[3]);
    let thread = nodes[0].group(&[ann, bob, cat, dan]).await;

    let mut ann_1 = nodes[0].connect(ann).await;
    let mut cat_3 = nodes[2].connect(cat).await;
    assert_eq!(ann_1.next_event("chat:presence").await, presence(cat, true));

    let bob_2 = nodes[1].connect(bob).await;
    assert_eq!(ann_1.next_event("chat:presence").await, presence(bob, true));
    assert_eq!(cat_3.next_event("chat:presence").await, presence(bob, true));
    // Node 3 has heard of bob (cat got the frame): its members list says so.
    assert_eq!(
        online_flags(&nodes[2], thread, cat, &[ann, bob, cat]).await,
        vec![true, true, true]
    );

    // A second session elsewhere is no news; closing one of two is not
    // going offline.
    let bob_3 = nodes[2].connect(bob).await;
    // Node 1 must have heard of bob's session on node 3 before the one on
    // node 2 closes, or it rightly takes bob for gone; on a loaded machine
    // node 3's news can come after node 2's. Node 3 tells its presence
    // news in order, so once ann hears dan come online there, node 1 knows.
    let _dan_3 = nodes[2].connect(dan).await;
    assert_eq!(ann_1.next_event("chat:presence").await, presence(dan, true));
    assert_eq!(cat_3.next_event("chat:presence").await, presence(dan, true));
    bob_2.close().await;
    ann_1.assert_no_event("chat:presence").await;
    bob_3.close().await;
    assert_eq!(
        ann_1.next_event("chat:presence").await,
        presence(bob, false)
    );
    assert_eq!(
        cat_3.next_event("chat:presence").await,
        presence(bob, false)
    );
    assert_eq!(
        online_flags(&nodes[0], thread, ann, &[ann, bob, cat]).await,
        vec![true, false, true]
    );
}

#[actix_web::test]
async fn a_membership_change_on_one_node_reaches_a_session_on_another() {
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 3).await;
    let users = nodes[0].users(3).await;
    let (ann, bob, cat) = (&users[0], &users[1], &users[2]);
    let thread = nodes[0].group(&[ann, bob]).await;
    let mut ann_1 = nodes[0].connect(ann).await;
    let mut cat_3 = nodes[2].connect(cat).await;

    let reply = nodes[1]
        .admin_post(
            &format!("/admin/threads/{thread}/members"),
            json!({"user_id": cat.id}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let joined = cat_3.next_event("chat:thread-joined").await;
    assert_eq!(joined["thread"]["id"], thread.to_string(), "{joined}");
    let message = ann_1.send_message(thread, "welcome cat").await;
    assert_eq!(cat_3.next_event("chat:message").await["message"], message);

    let reply = nodes[1]
        .request(
            Method::DELETE,
            &format!("/admin/threads/{thread}/members/{}", cat.id),
            Some(&nodes[1].admin_token),
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(
        cat_3.next_event("chat:thread-left").await,
        json!({"thread_id": thread})
    );
    ann_1.send_message(thread, "cat is gone").await;
    cat_3.assert_no_event("chat:message").await;
}

#[actix_web::test]
async fn a_client_back_on_another_node_is_ready_and_syncs_what_it_missed() {
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 3).await;
    let users = nodes[0].users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = nodes[0].group(&[ann, bob]).await;
    let mut ann_1 = nodes[0].connect(ann).await;
    let mut bob_2 = nodes[1].connect(bob).await;

    for n in 1..=3 {
        let sent = ann_1.send_message(thread, &format!("m{n}")).await;
        assert_eq!(bob_2.next_event("chat:message").await["message"], sent);
    }
    bob_2.close().await;
    let mut missed = Vec::new();
    for n in 4..=6 {
        missed.push(ann_1.send_message(thread, &format!("m{n}")).await);
    }

    let mut bob_3 = nodes[2].connect(bob).await;
    assert_eq!(bob_3.ready_thread(thread)["last_seq"], 6);
    let sync = bob_3
        .request("chat:sync", json!({"thread_id": thread, "after_seq": 3}))
        .await;
    assert_eq!(sync["event"], "chat:ack", "{sync}");
    assert_eq!(sync["data"]["messages"], json!(missed));
    // Live again, through node 3.
    let live = ann_1.send_message(thread, "m7").await;
    assert_eq!(bob_3.next_event("chat:message").await["message"], live);
    bob_3.assert_no_event("chat:message").await;
}
