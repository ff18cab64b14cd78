//! chat:send and chat:message: persistence, acks, recipients, idempotency.

use serde_json::json;
use uuid::Uuid;

use crate::support::spawn_app;

#[actix_web::test]
async fn a_sent_message_is_acked_to_the_sender_and_delivered_to_every_other_session() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, eve) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_phone = app.connect(ann).await;
    let mut ann_laptop = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut eve_ws = app.connect(eve).await;

    let message = ann_phone.send_message(thread, "hello").await;
    assert_eq!(message["seq"], 1);
    assert_eq!(message["body"], "hello");
    assert_eq!(message["type"], "text");

    for other in [&mut ann_laptop, &mut bob_ws] {
        let got = other.next_event("chat:message").await;
        assert_eq!(got["message"], message);
    }
    ann_phone.assert_no_event("chat:message").await;
    eve_ws.assert_no_event("chat:message").await;

    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE thread_id = '{thread}'"
        ))
        .await,
        1
    );
}

#[actix_web::test]
async fn a_send_without_ref_is_persisted_and_broadcast_without_an_ack() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;

    ann.emit(
        "chat:send",
        json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": "no ref"}),
    )
    .await;
    let got = bob.next_event("chat:message").await;
    assert_eq!(got["message"]["body"], "no ref");
    ann.assert_no_event("chat:ack").await;
}
