//! Reactions (PROTOCOL.md, Edition 2, "Messages"): chat:react, the
//! chat:reaction event, the order of a message's reaction list, and the
//! rules and limits a reaction must keep.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, spawn_app_with, TestApp, WsClient};

async fn react(ws: &mut WsClient, message: &Value, emoji: &str, on: bool) -> Value {
    ws.request(
        "chat:react",
        json!({"thread_id": message["thread_id"], "message_id": message["id"],
               "emoji": emoji, "on": on}),
    )
    .await
}

/// The message as the history shows it now.
async fn current(app: &TestApp, token: &str, message: &Value) -> Value {
    let thread = message["thread_id"].as_str().unwrap_or_default();
    let page = app
        .get(&format!("/api/threads/{thread}/messages"), token)
        .await;
    page.body["messages"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["id"] == message["id"]))
        .cloned()
        .unwrap_or_else(|| panic!("{message} not in {page:?}"))
}

#[actix_web::test]
async fn a_reaction_is_acked_with_its_rev_and_told_to_the_room_but_the_requesting_session() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, eve) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let _other = app.group(&[eve]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_phone = app.connect(bob).await;
    let mut bob_laptop = app.connect(bob).await;
    let mut eve_ws = app.connect(eve).await;
    let message = ann_ws.send_message(thread, "ship it").await;
    bob_phone.next_event("chat:message").await;
    bob_laptop.next_event("chat:message").await;

    let ack = react(&mut bob_phone, &message, "👍", true).await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    assert_eq!(
        ack["data"],
        json!({"message_id": message["id"], "emoji": "👍", "on": true, "rev": 2})
    );
    let expected = json!({"thread_id": thread, "message_id": message["id"], "seq": 1,
                          "user_id": bob.id, "emoji": "👍", "on": true, "rev": 2});
    assert_eq!(ann_ws.next_event("chat:reaction").await, expected);
    assert_eq!(bob_laptop.next_event("chat:reaction").await, expected);
    bob_phone.assert_no_event("chat:reaction").await;
    eve_ws.assert_no_event("chat:reaction").await;

    let shown = current(&app, &ann.token, &message).await;
    assert_eq!(
        shown["reactions"],
        json!([{"emoji": "👍", "user_ids": [bob.id]}])
    );
    assert_eq!(shown["rev"], 2);

    // Removing it is a change too.
    let ack = react(&mut bob_laptop, &message, "👍", false).await;
    assert_eq!(ack["data"]["rev"], 3, "{ack}");
    let off = ann_ws.next_event("chat:reaction").await;
    assert_eq!(off["on"], false);
    assert_eq!(off["rev"], 3);
    assert_eq!(bob_phone.next_event("chat:reaction").await, off);
    assert_eq!(
        current(&app, &ann.token, &message).await["reactions"],
        json!([])
    );
}

#[actix_web::test]
async fn a_reaction_that_changes_nothing_broadcasts_nothing_and_is_acked_with_the_current_rev() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let message = ann_ws.send_message(thread, "hi").await;
    bob_ws.next_event("chat:message").await;

    let never_had = react(&mut bob_ws, &message, "🎉", false).await;
    assert_eq!(never_had["data"]["rev"], 1, "{never_had}");
    react(&mut bob_ws, &message, "🎉", true).await;
    ann_ws.next_event("chat:reaction").await;
    let again = react(&mut bob_ws, &message, "🎉", true).await;
    assert_eq!(
        again["data"],
        json!({"message_id": message["id"], "emoji": "🎉", "on": true, "rev": 2})
    );
    ann_ws.assert_no_event("chat:reaction").await;
    let last_rev = app
        .db()
        .await
        .count(&format!(
            "SELECT last_rev AS n FROM threads WHERE id = '{thread}'"
        ))
        .await;
    assert_eq!(last_rev, 2, "no rev was spent on nothing");
}

#[actix_web::test]
async fn emoji_keep_the_order_they_were_first_added_and_an_emptied_one_goes_to_the_end() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob, carl]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut carl_ws = app.connect(carl).await;
    let message = ann_ws.send_message(thread, "lunch?").await;

    react(&mut ann_ws, &message, "👍", true).await;
    react(&mut carl_ws, &message, "❤️", true).await;
    react(&mut bob_ws, &message, "👍", true).await;
    react(&mut carl_ws, &message, "👍", true).await;
    let shown = current(&app, &ann.token, &message).await["reactions"].clone();
    assert_eq!(
        shown,
        json!([{"emoji": "👍", "user_ids": [ann.id, bob.id, carl.id]},
               {"emoji": "❤️", "user_ids": [carl.id]}])
    );

    // The first reactor leaves: 👍 keeps its place.
    react(&mut ann_ws, &message, "👍", false).await;
    let shown = current(&app, &ann.token, &message).await["reactions"].clone();
    assert_eq!(
        shown,
        json!([{"emoji": "👍", "user_ids": [bob.id, carl.id]},
               {"emoji": "❤️", "user_ids": [carl.id]}])
    );
    // Its last reactors leave: it leaves the list; added again, it is last.
    react(&mut bob_ws, &message, "👍", false).await;
    react(&mut carl_ws, &message, "👍", false).await;
    react(&mut ann_ws, &message, "👍", true).await;
    // A reactor who leaves and comes back goes to the end of the emoji's
    // users; the emoji, never emptied, keeps its place.
    react(&mut bob_ws, &message, "❤️", true).await;
    react(&mut carl_ws, &message, "❤️", false).await;
    react(&mut carl_ws, &message, "❤️", true).await;
    let shown = current(&app, &ann.token, &message).await;
    assert_eq!(
        shown["reactions"],
        json!([{"emoji": "❤️", "user_ids": [bob.id, carl.id]},
               {"emoji": "👍", "user_ids": [ann.id]}])
    );
    assert_eq!(shown["rev"], 12, "one send, eleven reactions");
}

#[actix_web::test]
async fn bad_emoji_and_the_fifty_first_emoji_are_bad_requests() {
    let app = spawn_app_with(|s| {
        s.websocket.rate_limit_burst = 1000;
        s.websocket.rate_limit_per_second = 1000.0;
    })
    .await;
    let users = app.users(1).await;
    let ann = &users[0];
    let thread = app.group(&[ann]).await;
    let mut ws = app.connect(ann).await;
    let message = ws.send_message(thread, "react to me").await;
    let too_long = "a".repeat(33);
    for bad in ["", " ", "a b", "x\n", "\u{7}", too_long.as_str(), "👍 "] {
        let refused = react(&mut ws, &message, bad, true).await;
        assert_eq!(refused["data"]["code"], "bad_request", "{bad:?}: {refused}");
    }
    let refused = ws
        .request(
            "chat:react",
            json!({"thread_id": thread, "message_id": message["id"], "emoji": "👍"}),
        )
        .await;
    assert_eq!(refused["data"]["code"], "bad_request", "`on` is required");

    for n in 0..50 {
        let ack = react(&mut ws, &message, &format!(":e{n}:"), true).await;
        assert_eq!(ack["event"], "chat:ack", "{ack}");
    }
    let refused = react(&mut ws, &message, ":one-too-many:", true).await;
    assert_eq!(refused["data"]["code"], "bad_request", "{refused}");
    // An emoji already there may still gain reactors.
    let thread2_user = app.user(ann.company_id).await;
    let added = app
        .post(
            &format!("/api/threads/{thread}/members"),
            &ann.token,
            json!({"user_id": thread2_user.id}),
        )
        .await;
    assert_eq!(added.status, 201, "{added:?}");
    let mut other = app.connect(&thread2_user).await;
    let ack = react(&mut other, &message, ":e7:", true).await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    let shown = current(&app, &ann.token, &message).await;
    assert_eq!(shown["reactions"].as_array().map(Vec::len), Some(50));
}

#[actix_web::test]
async fn deleted_unknown_and_other_thread_messages_are_not_found_and_a_tombstone_has_no_reactions()
{
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, eve) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let other = app.group(&[ann, bob]).await;
    let elsewhere = app.group(&[eve]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut eve_ws = app.connect(eve).await;
    let message = ann_ws.send_message(thread, "soon gone").await;
    let there = ann_ws.send_message(other, "over there").await;
    react(&mut bob_ws, &message, "👀", true).await;
    ann_ws.next_event("chat:reaction").await;

    let deleted = app
        .delete(
            &format!("/api/messages/{}", message["id"].as_str().unwrap()),
            &ann.token,
        )
        .await;
    assert_eq!(deleted.body["reactions"], json!([]), "{deleted:?}");
    assert_eq!(deleted.body["rev"], 3, "send, reaction, delete");
    let reactions = app
        .db()
        .await
        .count(&format!(
            "SELECT count(*) AS n FROM reactions WHERE message_id = '{}'",
            message["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reactions, 0, "a tombstone keeps no reactions");

    let on_deleted = react(&mut bob_ws, &message, "👀", true).await;
    assert_eq!(on_deleted["data"]["code"], "not_found", "{on_deleted}");
    let unknown = json!({"id": Uuid::now_v7(), "thread_id": thread});
    let on_unknown = react(&mut bob_ws, &unknown, "👀", true).await;
    assert_eq!(on_unknown["data"]["code"], "not_found", "{on_unknown}");
    let wrong_thread = json!({"id": there["id"], "thread_id": thread});
    let on_wrong = react(&mut bob_ws, &wrong_thread, "👀", true).await;
    assert_eq!(on_wrong["data"]["code"], "not_found", "{on_wrong}");
    // A thread the reactor is not in looks like none at all.
    let not_mine = json!({"id": there["id"], "thread_id": elsewhere});
    let refused = react(&mut bob_ws, &not_mine, "👀", true).await;
    assert_eq!(refused["data"]["code"], "not_member", "{refused}");
    let foreign = react(&mut eve_ws, &there, "👀", true).await;
    assert_eq!(foreign["data"]["code"], "not_member", "{foreign}");
    ann_ws.assert_no_event("chat:reaction").await;
}

#[actix_web::test]
async fn reactions_count_against_the_send_rate_limit() {
    let app = spawn_app_with(|s| {
        s.websocket.rate_limit_burst = 3;
        s.websocket.rate_limit_per_second = 0.01;
    })
    .await;
    let users = app.users(1).await;
    let ann = &users[0];
    let thread = app.group(&[ann]).await;
    let mut ws = app.connect(ann).await;
    let message = ws.send_message(thread, "one token spent").await;
    assert_eq!(
        react(&mut ws, &message, "a", true).await["event"],
        "chat:ack"
    );
    assert_eq!(
        react(&mut ws, &message, "b", true).await["event"],
        "chat:ack"
    );
    let limited = react(&mut ws, &message, "c", true).await;
    assert_eq!(limited["data"]["code"], "rate_limited", "{limited}");
    let shown = current(&app, &ann.token, &message).await;
    assert_eq!(shown["reactions"].as_array().map(Vec::len), Some(2));
}
