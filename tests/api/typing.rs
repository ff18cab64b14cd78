//! Typing indicators: who sees them, and the four ways typing ends.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, spawn_app_with, TestUser, WsClient};

async fn start(client: &mut WsClient, thread: Uuid) {
    let reply = client
        .request("chat:typing-start", json!({"thread_id": thread}))
        .await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    assert_eq!(
        reply["data"],
        json!({"thread_id": thread, "typing": true}),
        "{reply}"
    );
}

async fn stop(client: &mut WsClient, thread: Uuid) {
    let reply = client
        .request("chat:typing-stop", json!({"thread_id": thread}))
        .await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    assert_eq!(
        reply["data"],
        json!({"thread_id": thread, "typing": false}),
        "{reply}"
    );
}

fn typing(thread: Uuid, user: &TestUser, on: bool) -> Value {
    json!({"thread_id": thread, "user_id": user.id, "typing": on})
}

/// No chat:typing for at least `period` (in SILENCE-long looks).
async fn assert_no_typing_for(client: &mut WsClient, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        client.assert_no_event("chat:typing").await;
    }
}

#[actix_web::test]
async fn typing_reaches_the_room_but_not_the_typers_own_sessions() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (ann, bob, carl, eve) = (&users[0], &users[1], &users[2], &users[3]);
    let thread = app.group(&[ann, bob, carl]).await;
    let mut ann_phone = app.connect(ann).await;
    let mut ann_laptop = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut carl_ws = app.connect(carl).await;
    let mut eve_ws = app.connect(eve).await;

    start(&mut ann_phone, thread).await;
    for other in [&mut bob_ws, &mut carl_ws] {
        assert_eq!(
            other.next_event("chat:typing").await,
            typing(thread, ann, true)
        );
    }
    for session in [&mut ann_phone, &mut ann_laptop, &mut eve_ws] {
        session.assert_no_event("chat:typing").await;
    }
}

#[actix_web::test]
async fn a_repeated_typing_start_is_not_broadcast_again_and_stop_ends_it_once() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    start(&mut ann_ws, thread).await;
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, true)
    );
    start(&mut ann_ws, thread).await;
    start(&mut ann_ws, thread).await;
    bob_ws.assert_no_event("chat:typing").await;

    stop(&mut ann_ws, thread).await;
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, false)
    );
    stop(&mut ann_ws, thread).await;
    bob_ws.assert_no_event("chat:typing").await;
}

#[actix_web::test]
async fn typing_stop_when_not_typing_broadcasts_nothing() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;

    stop(&mut ann, thread).await;
    ann.emit("chat:typing-stop", json!({"thread_id": thread}))
        .await;
    bob.assert_no_event("chat:typing").await;
    // No ack without a ref, and no typing frame for ann herself.
    ann.assert_none(
        |f| f["event"] != "chat:presence",
        "a reply or a typing frame",
    )
    .await;
}

#[actix_web::test]
async fn typing_ends_by_itself_after_the_timeout_and_a_repeat_extends_it() {
    let app = spawn_app_with(|s| s.websocket.typing_timeout_ms = 500).await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    let started = Instant::now();
    start(&mut ann_ws, thread).await;
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, true)
    );
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, false)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "typing ended after {:?}, before the 500 ms timeout",
        started.elapsed()
    );

    // A repeat 300 ms in pushes the end to ~800 ms; without it, ~500 ms.
    start(&mut ann_ws, thread).await;
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, true)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    start(&mut ann_ws, thread).await;
    let repeated = Instant::now();
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, false),
        "the repeat is not broadcast; the next typing frame is the end"
    );
    assert!(
        repeated.elapsed() >= Duration::from_millis(400),
        "typing ended {:?} after a repeat, the repeat did not extend it",
        repeated.elapsed()
    );
    // Ended once: no second typing:false from a stale timer.
    assert_no_typing_for(&mut bob_ws, Duration::from_millis(600)).await;
}

#[actix_web::test]
async fn sending_a_message_ends_typing_once() {
    // Long enough that an end by timeout cannot pass for the send's.
    let app = spawn_app_with(|s| s.websocket.typing_timeout_ms = 1500).await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let other = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    start(&mut ann_ws, thread).await;
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, true)
    );
    // A message in another thread does not end typing in this one.
    ann_ws.send_message(other, "elsewhere").await;
    bob_ws.next_event("chat:message").await;
    bob_ws.assert_no_event("chat:typing").await;

    let sent = Instant::now();
    ann_ws.send_message(thread, "done typing").await;
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, false)
    );
    assert!(
        sent.elapsed() < Duration::from_millis(700),
        "typing ended {:?} after the send: that was the timeout, not the send",
        sent.elapsed()
    );
    bob_ws.next_event("chat:message").await;
    // Once: the timeout that would have fired later does not end it again.
    assert_no_typing_for(&mut bob_ws, Duration::from_millis(1500)).await;
}

#[actix_web::test]
async fn typing_ends_when_the_typers_last_session_closes_not_before() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_phone = app.connect(ann).await;
    let ann_laptop = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    start(&mut ann_phone, thread).await;
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, true)
    );
    ann_phone.close().await;
    bob_ws.assert_no_event("chat:typing").await;

    ann_laptop.close().await;
    assert_eq!(
        bob_ws.next_event("chat:typing").await,
        typing(thread, ann, false)
    );
    bob_ws.assert_no_event("chat:typing").await;
}

#[actix_web::test]
async fn typing_in_a_thread_the_user_is_not_in_is_not_member() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut carl_ws = app.connect(carl).await;

    for event in ["chat:typing-start", "chat:typing-stop"] {
        for target in [thread, Uuid::new_v4()] {
            let reply = carl_ws.request(event, json!({"thread_id": target})).await;
            assert_eq!(reply["event"], "chat:error", "{event}: {reply}");
            assert_eq!(reply["data"]["code"], "not_member", "{reply}");
        }
    }
    ann_ws.assert_no_event("chat:typing").await;
}
