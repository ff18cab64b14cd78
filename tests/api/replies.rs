//! Replies and mentions (PROTOCOL.md, Edition 2, "Messages"), and the
//! `unread_mentions` count of thread views ("Conversations").

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, uuid, TestApp, TestUser, WsClient};

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

async fn send(ws: &mut WsClient, data: Value) -> Value {
    let mut data = data;
    data["client_msg_id"] = json!(Uuid::new_v4());
    ws.request("chat:send", data).await
}

async fn last_seq(app: &TestApp, thread: Uuid) -> i64 {
    app.db()
        .await
        .count(&format!(
            "SELECT last_seq AS n FROM threads WHERE id = '{thread}'"
        ))
        .await
}

async fn thread_view(app: &TestApp, user: &TestUser, thread: Uuid) -> Value {
    let reply = app.get("/api/threads", &user.token).await;
    reply.body["threads"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["id"] == thread.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("{thread} not in {reply:?}"))
}

#[actix_web::test]
async fn a_reply_shows_its_target_cut_to_200_characters_everywhere() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    let long = "é".repeat(300);
    let target = ann_ws.send_message(thread, &long).await;
    bob_ws.next_event("chat:message").await;
    let ack = send(
        &mut bob_ws,
        json!({"thread_id": thread, "body": "agreed", "reply_to": target["id"]}),
    )
    .await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    let reply = ack["data"]["message"].clone();
    let expected = json!({"id": target["id"], "seq": 1, "sender_id": ann.id,
                          "body": "é".repeat(200)});
    assert_eq!(reply["reply_to"], expected, "{reply}");
    assert_eq!(reply["mentions"], json!([]));
    assert_eq!(reply["reactions"], json!([]));
    assert_eq!(reply["rev"], 2);

    let live = ann_ws.next_event("chat:message").await["message"].clone();
    assert_eq!(live, reply, "the room sees what the sender was acked");
    let history = app
        .get(&format!("/api/threads/{thread}/messages"), &ann.token)
        .await;
    assert_eq!(history.body["messages"][1], reply, "{history:?}");
    assert!(
        history.body["messages"][0]["reply_to"].is_null(),
        "no reply: null"
    );

    // Once the target is deleted, the reply shows it without its body.
    let deleted = app
        .delete(
            &format!("/api/messages/{}", text(&target["id"])),
            &ann.token,
        )
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let sync = bob_ws
        .request("chat:sync", json!({"thread_id": thread, "after_seq": 1}))
        .await;
    let shown = &sync["data"]["messages"][0]["reply_to"];
    assert_eq!(
        *shown,
        json!({"id": target["id"], "seq": 1, "sender_id": ann.id, "body": null})
    );

    // A deleted message may still be replied to.
    let ack = send(
        &mut bob_ws,
        json!({"thread_id": thread, "body": "too late", "reply_to": target["id"]}),
    )
    .await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    assert!(ack["data"]["message"]["reply_to"]["body"].is_null());
}

#[actix_web::test]
async fn a_reply_to_a_message_of_another_thread_or_none_is_refused_and_not_stored() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let here = app.group(&[ann, bob]).await;
    let there = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let elsewhere = ann_ws.send_message(there, "over there").await;
    bob_ws.next_event("chat:message").await;

    for reply_to in [elsewhere["id"].clone(), json!(Uuid::now_v7())] {
        let refused = send(
            &mut ann_ws,
            json!({"thread_id": here, "body": "hi", "reply_to": reply_to}),
        )
        .await;
        assert_eq!(refused["event"], "chat:error", "{refused}");
        assert_eq!(refused["data"]["code"], "bad_request", "{refused}");
    }
    let refused = send(
        &mut ann_ws,
        json!({"thread_id": here, "body": "hi", "reply_to": "not-a-uuid"}),
    )
    .await;
    assert_eq!(refused["data"]["code"], "bad_request", "{refused}");
    assert_eq!(last_seq(&app, here).await, 0, "nothing was stored");
    bob_ws.assert_no_event("chat:message").await;
}

#[actix_web::test]
async fn mentions_are_members_in_the_senders_order_at_most_fifty_without_repeats() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (ann, bob, carl, eve) = (&users[0], &users[1], &users[2], &users[3]);
    let thread = app.group(&[ann, bob, carl]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    let ack = send(
        &mut ann_ws,
        json!({"thread_id": thread, "body": "@carl @bob", "mentions": [carl.id, bob.id]}),
    )
    .await;
    assert_eq!(
        ack["data"]["message"]["mentions"],
        json!([carl.id, bob.id]),
        "{ack}"
    );
    let live = bob_ws.next_event("chat:message").await;
    assert_eq!(live["message"]["mentions"], json!([carl.id, bob.id]));

    let fifty_one: Vec<Uuid> = (0..51).map(|_| Uuid::new_v4()).collect();
    let refusals = [
        json!([eve.id]),
        json!([bob.id, eve.id]),
        json!([bob.id, bob.id]),
        json!(fifty_one),
        json!(["nope"]),
        json!(bob.id),
    ];
    for mentions in refusals {
        let refused = send(
            &mut ann_ws,
            json!({"thread_id": thread, "body": "hi", "mentions": mentions}),
        )
        .await;
        assert_eq!(
            refused["data"]["code"], "bad_request",
            "{mentions}: {refused}"
        );
    }
    assert_eq!(last_seq(&app, thread).await, 1, "none was stored");
    bob_ws.assert_no_event("chat:message").await;
}

#[actix_web::test]
async fn an_edit_replaces_mentions_when_given_and_keeps_them_otherwise() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (ann, bob, carl, eve) = (&users[0], &users[1], &users[2], &users[3]);
    let thread = app.group(&[ann, bob, carl]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let ack = send(
        &mut ann_ws,
        json!({"thread_id": thread, "body": "@bob", "mentions": [bob.id]}),
    )
    .await;
    let id = text(&ack["data"]["message"]["id"]);
    bob_ws.next_event("chat:message").await;
    let path = format!("/api/messages/{id}");

    let kept = app
        .patch(&path, &ann.token, json!({"body": "@bob again"}))
        .await;
    assert_eq!(kept.status, 200, "{kept:?}");
    assert_eq!(kept.body["mentions"], json!([bob.id]));
    assert_eq!(kept.body["rev"], 2);

    let replaced = app
        .patch(
            &path,
            &ann.token,
            json!({"body": "@carl @bob", "mentions": [carl.id, bob.id]}),
        )
        .await;
    assert_eq!(replaced.status, 200, "{replaced:?}");
    assert_eq!(replaced.body["mentions"], json!([carl.id, bob.id]));
    assert_eq!(replaced.body["rev"], 3);
    let edited = bob_ws.next_event("chat:message-edited").await;
    assert_eq!(edited["message"]["rev"], 2);
    let edited = bob_ws.next_event("chat:message-edited").await;
    assert_eq!(edited["message"], replaced.body);

    for mentions in [json!([eve.id]), json!([bob.id, bob.id])] {
        let refused = app
            .patch(
                &path,
                &ann.token,
                json!({"body": "x", "mentions": mentions}),
            )
            .await;
        assert_eq!(refused.status, 400, "{mentions}: {refused:?}");
    }
    let cleared = app
        .patch(&path, &ann.token, json!({"body": "nobody", "mentions": []}))
        .await;
    assert_eq!(cleared.body["mentions"], json!([]));
    assert_eq!(cleared.body["rev"], 4, "the refused edits took no rev");
}

#[actix_web::test]
async fn unread_mentions_count_live_messages_after_the_read_cursor_that_mention_me() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob, carl]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut mentions_bob = Vec::new();
    for body in ["@bob one", "@bob two", "@bob three"] {
        let ack = send(
            &mut ann_ws,
            json!({"thread_id": thread, "body": body, "mentions": [bob.id]}),
        )
        .await;
        mentions_bob.push(ack["data"]["message"].clone());
    }
    send(
        &mut ann_ws,
        json!({"thread_id": thread, "body": "@carl", "mentions": [carl.id]}),
    )
    .await;
    let deleted = app
        .delete(
            &format!("/api/messages/{}", text(&mentions_bob[2]["id"])),
            &ann.token,
        )
        .await;
    assert_eq!(deleted.status, 200);

    let listed = thread_view(&app, bob, thread).await;
    assert_eq!(listed["unread_mentions"], 2, "{listed}");
    assert_eq!(listed["last_rev"], 5, "four sends and a delete: {listed}");
    assert_eq!(thread_view(&app, carl, thread).await["unread_mentions"], 1);
    assert_eq!(thread_view(&app, ann, thread).await["unread_mentions"], 0);

    let mut bob_ws = app.connect(bob).await;
    let ready = bob_ws.ready_thread(thread);
    assert_eq!(ready["unread_mentions"], 2, "{ready}");
    assert_eq!(ready["last_rev"], 5, "{ready}");
    let read = bob_ws
        .request(
            "chat:mark-read",
            json!({"thread_id": thread, "up_to_seq": 1}),
        )
        .await;
    assert_eq!(read["event"], "chat:ack");

    // A rename tells each member of the thread as they see it.
    let renamed = app
        .patch(
            &format!("/api/threads/{thread}"),
            &ann.token,
            json!({"title": "mentions"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    assert_eq!(renamed.body["unread_mentions"], 0);
    let updated = bob_ws.next_event("chat:thread-updated").await;
    assert_eq!(updated["thread"]["unread_mentions"], 1, "{updated}");
    assert_eq!(updated["thread"]["last_rev"], 5, "{updated}");
    assert_eq!(uuid(&updated["thread"]["id"]), thread);
}
