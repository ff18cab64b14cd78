//! What a session sees on connect (chat:ready) and how it catches up
//! (chat:sync), plus ping/pong.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, WsClient};

/// The seqs of a chat:sync or history page, in the order they came.
fn seqs_of(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages array in {page}"))
        .iter()
        .map(|m| m["seq"].as_i64().unwrap_or_else(|| panic!("no seq in {m}")))
        .collect()
}

/// chat:sync with a ref; returns the ack's data.
async fn sync(client: &mut WsClient, thread: Uuid, after_seq: i64, limit: Option<i64>) -> Value {
    let mut data = json!({"thread_id": thread, "after_seq": after_seq});
    if let Some(limit) = limit {
        data["limit"] = json!(limit);
    }
    let reply = client.request("chat:sync", data).await;
    assert_eq!(reply["event"], "chat:ack", "sync failed: {reply}");
    reply["data"].clone()
}

#[actix_web::test]
async fn ready_lists_every_thread_of_the_user_with_cursors_and_unread() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let busy = app.group(&[ann, bob]).await;
    let quiet = app.group(&[ann, carl]).await;
    let not_ann = app.group(&[bob, carl]).await;

    let mut bob_ws = app.connect(bob).await;
    let mut ann_ws = app.connect(ann).await;
    // busy: 1 bob, 2 bob, 3 ann, 4 bob (deleted later), 5 bob
    bob_ws.send_message(busy, "one").await;
    bob_ws.send_message(busy, "two").await;
    ann_ws.send_message(busy, "three").await;
    let fourth = bob_ws.send_message(busy, "four").await;
    bob_ws.send_message(busy, "five").await;
    bob_ws.send_message(not_ann, "elsewhere").await;
    let deleted = app
        .delete(
            &format!("/api/messages/{}", fourth["id"].as_str().unwrap_or("?")),
            &bob.token,
        )
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let delivered = ann_ws
        .request("chat:delivered", json!({"thread_id": busy, "up_to_seq": 3}))
        .await;
    assert_eq!(delivered["event"], "chat:ack", "{delivered}");
    let read = ann_ws
        .request("chat:mark-read", json!({"thread_id": busy, "up_to_seq": 1}))
        .await;
    assert_eq!(read["event"], "chat:ack", "{read}");

    let fresh = app.connect(ann).await;
    assert_eq!(
        fresh.ready["user_id"],
        ann.id.to_string(),
        "{}",
        fresh.ready
    );
    assert!(
        fresh.ready["session_id"]
            .as_str()
            .is_some_and(|s| Uuid::parse_str(s).is_ok()),
        "session_id must be a uuid: {}",
        fresh.ready
    );
    let threads = fresh.ready["threads"]
        .as_array()
        .unwrap_or_else(|| panic!("threads must be a list: {}", fresh.ready));
    assert_eq!(threads.len(), 2, "exactly ann's two threads: {threads:?}");
    assert_eq!(fresh.ready_thread(not_ann), Value::Null);

    let b = fresh.ready_thread(busy);
    assert_eq!(b["id"], busy.to_string(), "{b}");
    assert_eq!(b["kind"], "group", "{b}");
    assert_eq!(b["title"], "team", "{b}");
    assert_eq!(b["last_seq"], 5, "{b}");
    assert_eq!(b["last_delivered_seq"], 3, "{b}");
    assert_eq!(b["last_read_seq"], 1, "{b}");
    // After read cursor 1: 2 (bob), 3 (ann's own), 4 (deleted), 5 (bob).
    assert_eq!(
        b["unread"], 2,
        "own and deleted messages are not unread: {b}"
    );

    let q = fresh.ready_thread(quiet);
    assert_eq!(q["id"], quiet.to_string(), "{q}");
    assert_eq!(q["kind"], "group", "{q}");
    assert_eq!(q["last_seq"], 0, "{q}");
    assert_eq!(q["last_delivered_seq"], 0, "{q}");
    assert_eq!(q["last_read_seq"], 0, "{q}");
    assert_eq!(q["unread"], 0, "{q}");
}

#[actix_web::test]
async fn ready_for_a_user_without_threads_has_an_empty_list() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    // Others have a thread; this user has none.
    app.group(&[&users[1], &users[2]]).await;
    let loner = app.connect(&users[0]).await;
    assert_eq!(loner.ready["threads"], json!([]), "{}", loner.ready);
    assert_eq!(loner.ready["user_id"], users[0].id.to_string());
}

#[actix_web::test]
async fn sync_returns_the_messages_after_a_seq_ascending_with_has_more_and_tombstones() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.push(ann_ws.send_message(thread, &format!("m{i}")).await);
    }
    let gone = app
        .delete(
            &format!("/api/messages/{}", sent[2]["id"].as_str().unwrap_or("?")),
            &ann.token,
        )
        .await;
    assert_eq!(gone.status, 200, "{gone:?}");

    let mut bob_ws = app.connect(bob).await;
    let page = sync(&mut bob_ws, thread, 1, Some(2)).await;
    assert_eq!(seqs_of(&page), vec![2, 3], "{page}");
    assert_eq!(page["has_more"], true, "{page}");
    assert_eq!(
        page["messages"][0], sent[1],
        "sync returns the message as acked"
    );
    let tombstone = &page["messages"][1];
    assert_eq!(tombstone["id"], sent[2]["id"], "{tombstone}");
    assert_eq!(tombstone["body"], Value::Null, "{tombstone}");
    assert_eq!(tombstone["metadata"], Value::Null, "{tombstone}");
    assert!(tombstone["deleted_at"].is_string(), "{tombstone}");

    let page = sync(&mut bob_ws, thread, 3, Some(2)).await;
    assert_eq!(seqs_of(&page), vec![4, 5], "{page}");
    assert_eq!(page["has_more"], false, "{page}");

    let page = sync(&mut bob_ws, thread, 0, None).await;
    assert_eq!(seqs_of(&page), vec![1, 2, 3, 4, 5], "{page}");
    assert_eq!(page["has_more"], false, "{page}");

    let page = sync(&mut bob_ws, thread, 5, None).await;
    assert_eq!(page["messages"], json!([]), "{page}");
    assert_eq!(page["has_more"], false, "{page}");
}

#[actix_web::test]
async fn sync_limit_defaults_to_100_and_is_clamped_to_500() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut db = app.db().await;
    db.exec(&format!(
        "INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind, body,
                               rev, created_rev)
         SELECT gen_random_uuid(), '{thread}', '{company}', g, '{sender}', gen_random_uuid(),
                'text', 'bulk ' || g, g, g
         FROM generate_series(1, 600) AS g;
         UPDATE threads SET last_seq = 600, last_rev = 600 WHERE id = '{thread}';",
        company = ann.company_id,
        sender = ann.id,
    ))
    .await;

    let mut bob_ws = app.connect(bob).await;
    assert_eq!(bob_ws.ready_thread(thread)["last_seq"], 600);

    let page = sync(&mut bob_ws, thread, 0, None).await;
    assert_eq!(seqs_of(&page), (1..=100).collect::<Vec<_>>(), "default 100");
    assert_eq!(page["has_more"], true);

    let page = sync(&mut bob_ws, thread, 0, Some(600)).await;
    assert_eq!(
        seqs_of(&page),
        (1..=500).collect::<Vec<_>>(),
        "clamped to 500"
    );
    assert_eq!(page["has_more"], true);
    assert_eq!(page["messages"][499]["body"], "bulk 500");

    let page = sync(&mut bob_ws, thread, 500, Some(600)).await;
    assert_eq!(seqs_of(&page), (501..=600).collect::<Vec<_>>());
    assert_eq!(page["has_more"], false);

    let page = sync(&mut bob_ws, thread, 400, Some(200)).await;
    assert_eq!(seqs_of(&page), (401..=600).collect::<Vec<_>>());
    assert_eq!(page["has_more"], false, "exactly the rest is not more");
}

#[actix_web::test]
async fn sync_is_answered_with_and_without_a_ref() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    ann.send_message(thread, "hi").await;

    ann.emit("chat:sync", json!({"thread_id": thread, "after_seq": 0}))
        .await;
    let reply = ann
        .wait_for(|f| f["event"] == "chat:ack", "the sync reply")
        .await;
    assert!(
        reply["ref"].is_null(),
        "no ref was sent, none comes back: {reply}"
    );
    assert_eq!(seqs_of(&reply["data"]), vec![1], "{reply}");
    assert_eq!(reply["data"]["has_more"], false, "{reply}");

    let reply = ann
        .request("chat:sync", json!({"thread_id": thread, "after_seq": 0}))
        .await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    assert_eq!(seqs_of(&reply["data"]), vec![1], "{reply}");
}

#[actix_web::test]
async fn ping_is_answered_with_pong_carrying_the_same_ref() {
    let app = spawn_app().await;
    let users = app.users(1).await;
    let mut ann = app.connect(&users[0]).await;

    let reply = ann.request("ping", json!({})).await;
    assert_eq!(reply["event"], "pong", "{reply}");

    ann.send_text(r#"{"event":"ping","ref":"no-data"}"#).await;
    let reply = ann.reply_to("no-data").await;
    assert_eq!(reply["event"], "pong", "{reply}");

    ann.send_text(r#"{"event":"ping","ref":42,"data":{}}"#)
        .await;
    let reply = ann
        .wait_for(|f| f["ref"] == 42, "a reply with ref 42")
        .await;
    assert_eq!(
        reply["event"], "pong",
        "a numeric ref comes back as it was: {reply}"
    );

    ann.emit("ping", json!({})).await;
    let reply = ann.wait_for(|f| f["event"] == "pong", "a pong").await;
    assert!(
        reply["ref"].is_null(),
        "no ref was sent, none comes back: {reply}"
    );
    ann.assert_silent().await;
}
