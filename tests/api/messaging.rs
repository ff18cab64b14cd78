//! chat:send and chat:message: persistence, acks, recipients, idempotency.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, WsClient};

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

/// The text of a JSON string field, for building paths.
fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

/// chat:sync from seq 0; returns the messages.
async fn history(client: &mut WsClient, thread: Uuid) -> Vec<Value> {
    let reply = client
        .request("chat:sync", json!({"thread_id": thread, "after_seq": 0}))
        .await;
    assert_eq!(reply["event"], "chat:ack", "sync failed: {reply}");
    reply["data"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no messages in {reply}"))
}

fn attachment(name: &str, mime: &str) -> Value {
    json!({"url": format!("https://cdn.example.com/{name}"), "name": name, "size": 12345, "mime": mime})
}

#[actix_web::test]
async fn image_and_file_messages_carry_their_metadata_unchanged() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;

    let image_meta = attachment("cat.png", "image/png");
    let reply = ann
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "type": "image",
                   "body": "look", "metadata": image_meta}),
        )
        .await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    let image = reply["data"]["message"].clone();
    assert_eq!(image["type"], "image", "{image}");
    assert_eq!(image["body"], "look", "{image}");
    assert_eq!(image["metadata"], image_meta, "{image}");

    let file_meta = attachment("report.pdf", "application/pdf");
    let reply = ann
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "type": "file",
                   "metadata": file_meta}),
        )
        .await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    let file = reply["data"]["message"].clone();
    assert_eq!(file["type"], "file", "{file}");
    assert_eq!(file["body"], Value::Null, "{file}");
    assert_eq!(file["metadata"], file_meta, "{file}");

    assert_eq!(bob.next_event("chat:message").await["message"], image);
    assert_eq!(bob.next_event("chat:message").await["message"], file);
    assert_eq!(
        history(&mut bob, thread).await,
        vec![image.clone(), file.clone()]
    );
    let page = app
        .get(&format!("/api/threads/{thread}/messages"), &users[1].token)
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.body["messages"], json!([image, file]), "{page:?}");
}

#[actix_web::test]
async fn a_resend_hours_later_from_another_session_is_acked_with_the_original_and_changes_nothing()
{
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_phone = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    let client_msg_id = Uuid::new_v4();
    let first = ann_phone
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": client_msg_id, "body": "once"}),
        )
        .await;
    assert_eq!(first["event"], "chat:ack", "{first}");
    let original_id = text(&first["data"]["message"]["id"]).to_string();
    bob_ws.next_event("chat:message").await;

    let mut db = app.db().await;
    db.exec(&format!(
        "UPDATE messages SET created_at = now() - interval '5 hours' WHERE id = '{original_id}'"
    ))
    .await;
    let original = history(&mut bob_ws, thread).await.remove(0);
    assert_eq!(original["id"], original_id.as_str());
    assert_ne!(
        original["created_at"], first["data"]["message"]["created_at"],
        "the row was moved five hours back"
    );

    let mut ann_laptop = app.connect(ann).await;
    let again = ann_laptop
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": client_msg_id, "body": "twice?"}),
        )
        .await;
    assert_eq!(again["event"], "chat:ack", "{again}");
    let acked = &again["data"]["message"];
    assert_eq!(*acked, original, "the original message, as stored");
    assert_eq!(acked["seq"], 1);
    assert_eq!(acked["body"], "once");

    for session in [&mut bob_ws, &mut ann_phone, &mut ann_laptop] {
        session.assert_no_event("chat:message").await;
    }
    assert_eq!(db.count("SELECT count(*) FROM messages").await, 1);
    assert_eq!(
        db.count(&format!(
            "SELECT last_seq FROM threads WHERE id = '{thread}'"
        ))
        .await,
        1
    );
    // The next new message follows without a gap.
    assert_eq!(ann_laptop.send_message(thread, "next").await["seq"], 2);
}

#[actix_web::test]
async fn the_same_client_msg_id_from_another_user_is_another_message() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;
    let client_msg_id = Uuid::new_v4();

    let from_ann = ann
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": client_msg_id, "body": "ann's"}),
        )
        .await;
    assert_eq!(from_ann["event"], "chat:ack", "{from_ann}");
    let from_bob = bob
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": client_msg_id, "body": "bob's"}),
        )
        .await;
    assert_eq!(from_bob["event"], "chat:ack", "{from_bob}");
    let (a, b) = (&from_ann["data"]["message"], &from_bob["data"]["message"]);
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["seq"], 1);
    assert_eq!(b["seq"], 2);
    assert_eq!(b["sender_id"], users[1].id.to_string());
    assert_eq!(b["body"], "bob's");

    let got = ann.next_event("chat:message").await;
    assert_eq!(got["message"], *b);
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE client_msg_id = '{client_msg_id}'"
        ))
        .await,
        2
    );
}

#[actix_web::test]
async fn the_ack_and_the_broadcast_come_only_after_the_row_is_committed() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;
    let mut db = app.db().await;

    for i in 0..20 {
        let message = ann.send_message(thread, &format!("durable {i}")).await;
        let id = text(&message["id"]).to_string();
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM messages WHERE id = '{id}'"))
                .await,
            1,
            "message {i} was acked before its row was visible"
        );
        // A second message: bob's frame, checked as soon as it arrives.
        ann.emit(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": "seen"}),
        )
        .await;
        // Bob gets the acked one first, then the unacked one.
        let got = bob.next_event("chat:message").await;
        assert_eq!(got["message"]["id"], id.as_str());
        let got = bob.next_event("chat:message").await;
        let seen = text(&got["message"]["id"]).to_string();
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM messages WHERE id = '{seen}'"
            ))
            .await,
            1,
            "chat:message for {seen} arrived before its row was visible"
        );
    }
}

#[actix_web::test]
async fn a_burst_of_sends_is_acked_in_order_and_received_in_seq_order() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;

    const BURST: i64 = 30;
    for i in 0..BURST {
        ann.send_text(
            json!({"event": "chat:send", "ref": format!("burst-{i}"),
                   "data": {"thread_id": thread, "client_msg_id": Uuid::new_v4(),
                            "body": format!("b{i}")}})
            .to_string(),
        )
        .await;
    }
    let mut acks = Vec::new();
    while acks.len() < BURST as usize {
        let frame = ann.next_frame().await;
        if frame["ref"].is_null() {
            continue;
        }
        assert_eq!(frame["event"], "chat:ack", "{frame}");
        acks.push(frame);
    }
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack["ref"], format!("burst-{i}"), "acks come in send order");
        assert_eq!(ack["data"]["message"]["seq"], i as i64 + 1, "{ack}");
        assert_eq!(ack["data"]["message"]["body"], format!("b{i}"), "{ack}");
    }
    for i in 0..BURST {
        let got = bob.next_event("chat:message").await;
        assert_eq!(got["message"]["seq"], i + 1, "{got}");
        assert_eq!(got["message"]["body"], format!("b{i}"), "{got}");
    }
}

#[actix_web::test]
async fn an_edit_is_broadcast_to_the_whole_room_including_the_editor() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, eve) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_phone = app.connect(ann).await;
    let mut ann_laptop = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut eve_ws = app.connect(eve).await;
    let message = ann_phone.send_message(thread, "typo").await;
    ann_laptop.next_event("chat:message").await;
    bob_ws.next_event("chat:message").await;

    let reply = app
        .patch(
            &format!("/api/messages/{}", text(&message["id"])),
            &ann.token,
            json!({"body": "fixed"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let edited = reply.body;
    assert_eq!(edited["id"], message["id"]);
    assert_eq!(edited["seq"], message["seq"]);
    assert_eq!(edited["body"], "fixed");
    assert!(edited["edited_at"].is_string(), "{edited}");
    assert_eq!(edited["created_at"], message["created_at"]);

    for session in [&mut ann_phone, &mut ann_laptop, &mut bob_ws] {
        let got = session.next_event("chat:message-edited").await;
        assert_eq!(got["message"], edited);
    }
    eve_ws.assert_no_event("chat:message-edited").await;
    assert_eq!(history(&mut bob_ws, thread).await, vec![edited]);
}

#[actix_web::test]
async fn a_delete_is_broadcast_and_leaves_a_tombstone_with_the_same_seq() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, eve) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_phone = app.connect(ann).await;
    let mut ann_laptop = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut eve_ws = app.connect(eve).await;
    ann_phone.send_message(thread, "stays").await;
    let reply = ann_phone
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "type": "image",
                   "body": "oops", "metadata": attachment("x.png", "image/png")}),
        )
        .await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    let message = reply["data"]["message"].clone();

    let reply = app
        .delete(
            &format!("/api/messages/{}", text(&message["id"])),
            &ann.token,
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let tombstone = reply.body;
    assert_eq!(tombstone["id"], message["id"]);
    assert_eq!(tombstone["seq"], 2);
    assert_eq!(tombstone["body"], Value::Null, "{tombstone}");
    assert_eq!(tombstone["metadata"], Value::Null, "{tombstone}");
    assert!(tombstone["deleted_at"].is_string(), "{tombstone}");

    let expected = json!({"thread_id": thread, "message_id": message["id"], "seq": 2,
                          "deleted_at": tombstone["deleted_at"], "rev": tombstone["rev"]});
    assert_eq!(
        tombstone["rev"], 3,
        "two sends, then the delete: {tombstone}"
    );
    for session in [&mut ann_phone, &mut ann_laptop, &mut bob_ws] {
        assert_eq!(session.next_event("chat:message-deleted").await, expected);
    }
    eve_ws.assert_no_event("chat:message-deleted").await;

    let messages = history(&mut bob_ws, thread).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0]["body"], "stays");
    assert_eq!(messages[1], tombstone, "sync shows the tombstone");
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE thread_id = '{thread}' AND seq = 2
             AND body IS NULL AND metadata IS NULL AND deleted_at IS NOT NULL"
        ))
        .await,
        1
    );
}

#[actix_web::test]
async fn editing_or_deleting_someone_elses_message_is_not_found_and_broadcasts_nothing() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let outsider = app.user(app.company().await).await;
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let message = ann_ws.send_message(thread, "mine").await;
    bob_ws.next_event("chat:message").await;
    let path = format!("/api/messages/{}", text(&message["id"]));

    for intruder in [bob, &outsider] {
        let edit = app
            .patch(&path, &intruder.token, json!({"body": "hijacked"}))
            .await;
        assert_eq!(edit.status, 404, "{edit:?}");
        assert_eq!(edit.error_code(), "not_found", "{edit:?}");
        let delete = app.delete(&path, &intruder.token).await;
        assert_eq!(delete.status, 404, "{delete:?}");
        assert_eq!(delete.error_code(), "not_found", "{delete:?}");
    }
    for session in [&mut ann_ws, &mut bob_ws] {
        session
            .assert_none(
                |f| f["event"] == "chat:message-edited" || f["event"] == "chat:message-deleted",
                "an edit or delete broadcast",
            )
            .await;
    }
    assert_eq!(history(&mut bob_ws, thread).await, vec![message]);
}

#[actix_web::test]
async fn an_operator_can_delete_any_message_live() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let message = ann_ws.send_message(thread, "against the rules").await;

    let reply = app
        .admin_delete(&format!("/admin/messages/{}", text(&message["id"])))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["id"], message["id"]);
    assert_eq!(reply.body["body"], Value::Null, "{reply:?}");
    assert!(reply.body["deleted_at"].is_string(), "{reply:?}");

    for session in [&mut ann_ws, &mut bob_ws] {
        let got = session.next_event("chat:message-deleted").await;
        assert_eq!(got["message_id"], message["id"], "{got}");
        assert_eq!(got["thread_id"], thread.to_string(), "{got}");
        assert_eq!(got["seq"], 1, "{got}");
        assert_eq!(got["deleted_at"], reply.body["deleted_at"], "{got}");
    }
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE id = '{}' AND body IS NULL AND deleted_at IS NOT NULL",
            text(&message["id"])
        ))
        .await,
        1
    );
}
