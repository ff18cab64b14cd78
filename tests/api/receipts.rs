//! Receipts as cursors: chat:delivered and chat:mark-read, who hears of
//! them, and the promises the cursors keep.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::db::Db;
use crate::support::{spawn_app, until_a_statement_waits_for_a_lock, TestUser, WsClient};

/// (last_delivered_seq, last_read_seq) of a membership, from the database.
async fn cursors(db: &mut Db, thread: Uuid, user: &TestUser) -> (i64, i64) {
    let row = format!(
        "FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}'",
        user.id
    );
    (
        db.count(&format!("SELECT last_delivered_seq {row}")).await,
        db.count(&format!("SELECT last_read_seq {row}")).await,
    )
}

/// Sends a cursor event with a ref and returns the ack's data.
async fn advance(client: &mut WsClient, event: &str, thread: Uuid, up_to_seq: i64) -> Value {
    let reply = client
        .request(event, json!({"thread_id": thread, "up_to_seq": up_to_seq}))
        .await;
    assert_eq!(
        reply["event"], "chat:ack",
        "{event} up to {up_to_seq}: {reply}"
    );
    reply["data"].clone()
}

fn assert_receipt(got: &Value, thread: Uuid, reader: &TestUser, up_to_seq: i64) {
    assert_eq!(got["thread_id"], thread.to_string(), "{got}");
    assert_eq!(got["user_id"], reader.id.to_string(), "{got}");
    assert_eq!(got["up_to_seq"], up_to_seq, "{got}");
    assert!(
        got["at"]
            .as_str()
            .is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).is_ok()),
        "`at` must be an RFC 3339 time: {got}"
    );
}

#[actix_web::test]
async fn delivered_advances_the_cursor_and_tells_only_the_senders_of_the_covered_range() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (ann, bob, carl, dan) = (&users[0], &users[1], &users[2], &users[3]);
    let thread = app.group(&[ann, bob, carl, dan]).await;
    let mut ann_phone = app.connect(ann).await;
    let mut ann_laptop = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut carl_ws = app.connect(carl).await;
    let mut dan_ws = app.connect(dan).await;
    ann_phone.send_message(thread, "one").await;
    ann_phone.send_message(thread, "two").await;
    carl_ws.send_message(thread, "three").await;
    let mut db = app.db().await;

    let ack = advance(&mut bob_ws, "chat:delivered", thread, 2).await;
    assert_eq!(ack, json!({"thread_id": thread, "last_delivered_seq": 2}));
    assert_eq!(cursors(&mut db, thread, bob).await, (2, 0));

    for ann_ws in [&mut ann_phone, &mut ann_laptop] {
        let got = ann_ws.next_event("chat:delivered").await;
        assert_receipt(&got, thread, bob, 2);
    }
    // carl's message (3) is not in the range 1..=2; dan sent nothing.
    for session in [&mut bob_ws, &mut carl_ws, &mut dan_ws] {
        session.assert_no_event("chat:delivered").await;
    }

    // Beyond last_seq: clamped to 3; now carl's message is covered.
    let ack = advance(&mut bob_ws, "chat:delivered", thread, 99).await;
    assert_eq!(ack, json!({"thread_id": thread, "last_delivered_seq": 3}));
    assert_eq!(cursors(&mut db, thread, bob).await, (3, 0));
    let got = carl_ws.next_event("chat:delivered").await;
    assert_receipt(&got, thread, bob, 3);
    // ann sent nothing in 3..=3.
    for session in [&mut ann_phone, &mut ann_laptop, &mut bob_ws, &mut dan_ws] {
        session.assert_no_event("chat:delivered").await;
    }
}

#[actix_web::test]
async fn delivered_at_or_below_the_cursor_changes_nothing_and_tells_nobody() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    for body in ["a", "b", "c"] {
        ann_ws.send_message(thread, body).await;
    }
    advance(&mut bob_ws, "chat:delivered", thread, 2).await;
    ann_ws.next_event("chat:delivered").await;
    let mut db = app.db().await;

    for up_to_seq in [2, 1, 0] {
        let ack = advance(&mut bob_ws, "chat:delivered", thread, up_to_seq).await;
        assert_eq!(
            ack,
            json!({"thread_id": thread, "last_delivered_seq": 2}),
            "the current cursor, after asking for {up_to_seq}"
        );
    }
    assert_eq!(cursors(&mut db, thread, bob).await, (2, 0));
    ann_ws.assert_no_event("chat:delivered").await;
    bob_ws.assert_no_event("chat:delivered").await;
}

#[actix_web::test]
async fn mark_read_moves_both_cursors_and_tells_the_senders_and_the_readers_other_sessions() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob, carl]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_phone = app.connect(bob).await;
    let mut bob_laptop = app.connect(bob).await;
    let mut carl_ws = app.connect(carl).await;
    ann_ws.send_message(thread, "one").await;
    ann_ws.send_message(thread, "two").await;
    let mut db = app.db().await;

    let ack = advance(&mut bob_phone, "chat:mark-read", thread, 2).await;
    assert_eq!(ack, json!({"thread_id": thread, "last_read_seq": 2}));
    assert_eq!(cursors(&mut db, thread, bob).await, (2, 2));

    assert_receipt(&ann_ws.next_event("chat:read").await, thread, bob, 2);
    // Reading also delivered: the sender hears of both.
    assert_receipt(&ann_ws.next_event("chat:delivered").await, thread, bob, 2);
    assert_receipt(&bob_laptop.next_event("chat:read").await, thread, bob, 2);

    bob_phone.assert_no_event("chat:read").await;
    carl_ws.assert_no_event("chat:read").await;
    carl_ws.assert_no_event("chat:delivered").await;
    // bob is the reader, not a sender: no chat:delivered on any of his sessions.
    bob_phone.assert_no_event("chat:delivered").await;
    bob_laptop.assert_no_event("chat:delivered").await;

    // Reading again at or below the cursor tells nobody.
    let ack = advance(&mut bob_laptop, "chat:mark-read", thread, 1).await;
    assert_eq!(ack, json!({"thread_id": thread, "last_read_seq": 2}));
    for session in [&mut ann_ws, &mut bob_phone, &mut bob_laptop] {
        session.assert_no_event("chat:read").await;
    }
}

#[actix_web::test]
async fn read_never_passes_delivered_and_neither_cursor_moves_backwards() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    for body in ["a", "b", "c", "d"] {
        ann_ws.send_message(thread, body).await;
    }
    let mut db = app.db().await;

    let ack = advance(&mut bob_ws, "chat:delivered", thread, 3).await;
    assert_eq!(ack["last_delivered_seq"], 3, "{ack}");
    let ack = advance(&mut bob_ws, "chat:mark-read", thread, 2).await;
    assert_eq!(ack["last_read_seq"], 2, "{ack}");
    assert_eq!(
        cursors(&mut db, thread, bob).await,
        (3, 2),
        "reading up to 2 does not pull delivered back from 3"
    );

    let ack = advance(&mut bob_ws, "chat:mark-read", thread, 1).await;
    assert_eq!(ack["last_read_seq"], 2, "{ack}");
    let ack = advance(&mut bob_ws, "chat:delivered", thread, 1).await;
    assert_eq!(ack["last_delivered_seq"], 3, "{ack}");
    assert_eq!(cursors(&mut db, thread, bob).await, (3, 2), "lower values");

    let ack = advance(&mut bob_ws, "chat:mark-read", thread, 50).await;
    assert_eq!(ack["last_read_seq"], 4, "clamped to last_seq: {ack}");
    assert_eq!(
        cursors(&mut db, thread, bob).await,
        (4, 4),
        "reading past delivered pulls delivered along"
    );
    let ack = advance(&mut bob_ws, "chat:delivered", thread, 2).await;
    assert_eq!(ack["last_delivered_seq"], 4, "{ack}");
    assert_eq!(cursors(&mut db, thread, bob).await, (4, 4));
    assert_eq!(
        db.count("SELECT count(*) FROM memberships WHERE last_read_seq > last_delivered_seq")
            .await,
        0
    );
}

#[actix_web::test]
async fn cursors_of_a_thread_the_user_is_not_in_are_not_member() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let outsiders = app.users(2).await;
    let foreign = app.group(&[&outsiders[0], &outsiders[1]]).await;
    let mut ann_ws = app.connect(ann).await;
    ann_ws.send_message(thread, "members only").await;
    let mut carl_ws = app.connect(carl).await;

    for target in [thread, foreign, Uuid::new_v4()] {
        for event in ["chat:delivered", "chat:mark-read"] {
            let reply = carl_ws
                .request(event, json!({"thread_id": target, "up_to_seq": 1}))
                .await;
            assert_eq!(reply["event"], "chat:error", "{event} on {target}: {reply}");
            assert_eq!(reply["data"]["code"], "not_member", "{reply}");
        }
    }
    ann_ws
        .assert_none(
            |f| f["event"] == "chat:delivered" || f["event"] == "chat:read",
            "a receipt",
        )
        .await;
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE user_id = '{}'",
            carl.id
        ))
        .await,
        0
    );
}

/// Sends `event` up to each seq of `seqs` without waiting, then waits for
/// every ack.
async fn advance_all(client: &mut WsClient, event: &str, thread: Uuid, seqs: &[i64], tag: &str) {
    for seq in seqs {
        let frame = json!({"event": event, "ref": format!("{tag}{seq}"),
                           "data": {"thread_id": thread, "up_to_seq": seq}});
        client.send_text(frame.to_string()).await;
    }
    for seq in seqs {
        let reply = client.reply_to(&format!("{tag}{seq}")).await;
        assert_eq!(reply["event"], "chat:ack", "{event} up to {seq}: {reply}");
    }
}

/// The up_to_seq of each `event` the client receives, until one reaches `last`.
async fn receipts_until(client: &mut WsClient, event: &str, last: i64) -> Vec<i64> {
    let mut seen = Vec::new();
    while !seen.contains(&last) {
        let got = client.next_event(event).await;
        let up_to = got["up_to_seq"].as_i64().expect("up_to_seq is a number");
        seen.push(up_to);
    }
    seen
}

#[actix_web::test]
async fn racing_advances_from_two_devices_report_each_cursor_value_once() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_phone = app.connect(bob).await;
    let mut bob_laptop = app.connect(bob).await;
    const MESSAGES: i64 = 12;
    for i in 0..MESSAGES {
        ann_ws.send_message(thread, &format!("m{i}")).await;
    }

    // Both devices race over the same cursors: every advance locks the
    // membership and moves from the value another just committed.
    let seqs: Vec<i64> = (1..=MESSAGES).collect();
    tokio::join!(
        advance_all(&mut bob_phone, "chat:delivered", thread, &seqs, "d"),
        advance_all(&mut bob_laptop, "chat:mark-read", thread, &seqs, "r"),
    );

    let mut db = app.db().await;
    assert_eq!(cursors(&mut db, thread, bob).await, (MESSAGES, MESSAGES));
    for event in ["chat:delivered", "chat:read"] {
        let seen = receipts_until(&mut ann_ws, event, MESSAGES).await;
        let mut distinct = seen.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "a {event} value came twice: {seen:?}"
        );
        ann_ws.assert_no_event(event).await;
    }
}

fn delivered_frame(reference: &str, thread: Uuid, up_to_seq: i64) -> String {
    json!({"event": "chat:delivered", "ref": reference,
           "data": {"thread_id": thread, "up_to_seq": up_to_seq}})
    .to_string()
}

/// Receipts that arrive while a batch of receipts is being written are
/// written together by the next one, in one statement and one commit (the
/// rows they update carry one transaction id), and each keeps its own
/// answer: an outsider's receipt in that batch is `not_member` alone.
#[actix_web::test]
async fn receipts_that_arrive_during_a_write_share_the_next_commit_and_keep_their_own_answers() {
    let app = spawn_app().await;
    let users = app.users(7).await;
    let (ann, first, others) = (&users[0], &users[1], &users[2..]);
    let members: Vec<&TestUser> = users.iter().collect();
    let thread = app.group(&members).await;
    let outsider = &app.users(1).await[0];
    let mut ann_ws = app.connect(ann).await;
    ann_ws.send_message(thread, "hello").await;
    let mut first_ws = app.connect(first).await;
    let mut others_ws = Vec::new();
    for user in others {
        others_ws.push(app.connect(user).await);
    }
    let mut outsider_ws = app.connect(outsider).await;

    // The first receipt's batch waits for a lock the test holds.
    let mut holder = app.db().await;
    holder.exec("BEGIN").await;
    holder
        .exec(&format!(
            "SELECT 1 FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}' FOR UPDATE",
            first.id
        ))
        .await;
    first_ws
        .send_text(delivered_frame("first", thread, 1))
        .await;
    until_a_statement_waits_for_a_lock(&app).await;

    // The others queue behind it. A sync answered on the same session has
    // passed Persistence's mailbox after the receipt: it is then queued.
    for session in others_ws.iter_mut().chain([&mut outsider_ws]) {
        session.send_text(delivered_frame("late", thread, 1)).await;
    }
    for session in &mut others_ws {
        let reply = session
            .request("chat:sync", json!({"thread_id": thread, "after_seq": 0}))
            .await;
        assert_eq!(reply["event"], "chat:ack", "{reply}");
    }
    let reply = outsider_ws
        .request(
            "chat:sync",
            json!({"thread_id": Uuid::new_v4(), "after_seq": 0}),
        )
        .await;
    assert_eq!(reply["data"]["code"], "not_member", "{reply}");
    holder.exec("ROLLBACK").await;

    let reply = first_ws.reply_to("first").await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    for session in &mut others_ws {
        let reply = session.reply_to("late").await;
        assert_eq!(
            reply["data"],
            json!({"thread_id": thread, "last_delivered_seq": 1}),
            "{reply}"
        );
    }
    let reply = outsider_ws.reply_to("late").await;
    assert_eq!(reply["data"]["code"], "not_member", "{reply}");

    let ids = others
        .iter()
        .map(|u| format!("'{}'", u.id))
        .collect::<Vec<_>>()
        .join(",");
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(DISTINCT xmin::text) FROM memberships
             WHERE thread_id = '{thread}' AND user_id IN ({ids}) AND last_delivered_seq = 1"
        ))
        .await,
        1,
        "the queued receipts were committed by one transaction"
    );
    let mut readers: Vec<String> = Vec::new();
    for _ in 0..users.len() - 1 {
        let got = ann_ws.next_event("chat:delivered").await;
        readers.push(got["user_id"].as_str().unwrap_or_default().to_string());
    }
    readers.sort();
    let mut expected: Vec<String> = users[1..].iter().map(|u| u.id.to_string()).collect();
    expected.sort();
    assert_eq!(readers, expected, "one receipt per reader");
    ann_ws.assert_no_event("chat:delivered").await;
}
