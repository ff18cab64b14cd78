//! Every WebSocket error code a client can provoke, and the promise that a
//! bad frame never closes the connection: after each error the session
//! still answers.
//!
//! `internal` is not here: it is a server bug or an unexpected database
//! answer, and nothing a client sends can cause it.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::db::{admin_exec, Db};
use crate::support::{spawn_app, spawn_app_with, TestApp, WsClient, PG_SERVER};

// ---- helpers ----------------------------------------------------------------

/// The session still answers: a ping gets its pong.
async fn assert_still_serving(client: &mut WsClient, after: &str) {
    let reply = client.request("ping", json!({})).await;
    assert_eq!(
        reply["event"], "pong",
        "after {after}, the session must still answer: {reply}"
    );
}

/// Sends a raw text frame carrying `"ref": reference` and returns the
/// reply with that ref, which must be a chat:error with `code`.
async fn error_for(client: &mut WsClient, raw: &str, reference: &str, code: &str) -> Value {
    client.send_text(raw).await;
    let reply = client.reply_to(reference).await;
    assert_eq!(reply["event"], "chat:error", "{raw} -> {reply}");
    assert_eq!(reply["data"]["code"], code, "{raw} -> {reply}");
    assert!(
        reply["data"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error carries a message: {reply}"
    );
    assert_still_serving(client, raw).await;
    reply
}

/// Sends a raw text frame without a usable ref; the reply is the next
/// chat:error, which must carry no ref.
async fn error_without_ref(client: &mut WsClient, raw: &str, code: &str) {
    client.send_text(raw).await;
    // The first frame that answers anything: events like chat:presence
    // stay pending.
    let reply = client
        .wait_for(
            |f| f["event"] == "chat:error" || f["event"] == "chat:ack" || f["event"] == "pong",
            &format!("a reply to {raw:?}"),
        )
        .await;
    assert_eq!(reply["event"], "chat:error", "{raw:?} -> {reply}");
    assert_eq!(reply["data"]["code"], code, "{raw:?} -> {reply}");
    assert!(reply.get("ref").is_none(), "{raw:?} -> {reply}");
    assert_still_serving(client, raw).await;
}

fn frame(event: &str, reference: &str, data: Value) -> String {
    json!({"event": event, "ref": reference, "data": data}).to_string()
}

async fn message_rows(app: &TestApp) -> i64 {
    app.db().await.count("SELECT count(*) FROM messages").await
}

// ---- bad_request --------------------------------------------------------------------

#[actix_web::test]
async fn frames_that_are_not_an_event_object_are_bad_requests_without_ref() {
    let app = spawn_app().await;
    let user = app.user(app.company().await).await;
    let mut client = app.connect(&user).await;

    for raw in [
        "not json",
        "{\"event\": \"ping\"",
        "[{\"event\":\"ping\",\"ref\":\"a\"}]",
        "42",
        "\"chat:send\"",
        "null",
        "",
    ] {
        error_without_ref(&mut client, raw, "bad_request").await;
    }
}

#[actix_web::test]
async fn a_json_array_is_a_bad_request_even_when_its_items_spell_an_envelope() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut client = app.connect(&users[0]).await;
    let mut other = app.connect(&users[1]).await;

    // [event, ref, data] in the envelope's field order: still not an object.
    error_without_ref(&mut client, r#"["ping","arr",null]"#, "bad_request").await;
    let send = json!(["chat:send", "arr-send",
                      {"thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": "x"}]);
    error_without_ref(&mut client, &send.to_string(), "bad_request").await;
    assert_eq!(message_rows(&app).await, 0);
    other.assert_no_event("chat:message").await;
}

#[actix_web::test]
async fn ill_formed_requests_are_bad_requests_that_carry_the_ref() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut client = app.connect(&users[0]).await;
    let mut other = app.connect(&users[1]).await;
    let t = thread.to_string();
    let id = || Uuid::new_v4().to_string();
    let image_meta = json!({"url": "https://files.example.com/a.png", "name": "a.png",
                            "size": 10, "mime": "image/png"});

    let cases: Vec<(&str, String)> = vec![
        ("missing event", json!({"ref": "r", "data": {}}).to_string()),
        (
            "send without data",
            json!({"event": "chat:send", "ref": "r"}).to_string(),
        ),
        (
            "send without client_msg_id",
            frame("chat:send", "r", json!({"thread_id": t, "body": "x"})),
        ),
        (
            "send without thread_id",
            frame(
                "chat:send",
                "r",
                json!({"client_msg_id": id(), "body": "x"}),
            ),
        ),
        (
            "text without body",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id()}),
            ),
        ),
        (
            "delivered without up_to_seq",
            frame("chat:delivered", "r", json!({"thread_id": t})),
        ),
        (
            "typing without thread_id",
            frame("chat:typing-start", "r", json!({})),
        ),
        (
            "sync without after_seq",
            frame("chat:sync", "r", json!({"thread_id": t})),
        ),
        (
            "body as a number",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "body": 42}),
            ),
        ),
        (
            "up_to_seq as a string",
            frame(
                "chat:mark-read",
                "r",
                json!({"thread_id": t, "up_to_seq": "3"}),
            ),
        ),
        (
            "up_to_seq fractional",
            frame(
                "chat:delivered",
                "r",
                json!({"thread_id": t, "up_to_seq": 1.5}),
            ),
        ),
        (
            "thread_id as a number",
            frame("chat:typing-stop", "r", json!({"thread_id": 7})),
        ),
        ("data as an array", frame("chat:sync", "r", json!([t, 0]))),
        (
            "limit as a string",
            frame(
                "chat:sync",
                "r",
                json!({"thread_id": t, "after_seq": 0, "limit": "ten"}),
            ),
        ),
        (
            "bad thread uuid",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": "not-a-uuid", "client_msg_id": id(), "body": "x"}),
            ),
        ),
        (
            "bad client_msg_id",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": "1234", "body": "x"}),
            ),
        ),
        (
            "bad uuid in sync",
            frame(
                "chat:sync",
                "r",
                json!({"thread_id": "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "after_seq": 0}),
            ),
        ),
        (
            "empty body",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "body": ""}),
            ),
        ),
        (
            "whitespace body",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "body": " \n\t\u{3000} "}),
            ),
        ),
        (
            "8001-char body",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "body": "é".repeat(8001)}),
            ),
        ),
        (
            "unknown message type",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "type": "video", "body": "x"}),
            ),
        ),
        (
            "system type from a client",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "type": "system", "body": "x"}),
            ),
        ),
        (
            "image without metadata",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "type": "image"}),
            ),
        ),
        (
            "file with half its metadata",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "type": "file", "metadata": {"url": "https://x.example.com/f"}}),
            ),
        ),
        // Postgres stores no NUL in text or jsonb: refused up front, never
        // a failed insert.
        (
            "text with a NUL",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "body": "a\u{0}b"}),
            ),
        ),
        (
            "image whose file name has a NUL",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "type": "image",
                       "metadata": {"url": "https://files.example.com/a.png", "name": "a\u{0}.png",
                                    "size": 10, "mime": "image/png"}}),
            ),
        ),
        (
            "text with metadata",
            frame(
                "chat:send",
                "r",
                json!({"thread_id": t, "client_msg_id": id(), "body": "x", "metadata": image_meta}),
            ),
        ),
        (
            "negative up_to_seq",
            frame(
                "chat:delivered",
                "r",
                json!({"thread_id": t, "up_to_seq": -1}),
            ),
        ),
        (
            "negative up_to_seq on mark-read",
            frame(
                "chat:mark-read",
                "r",
                json!({"thread_id": t, "up_to_seq": -5}),
            ),
        ),
        (
            "negative after_seq",
            frame("chat:sync", "r", json!({"thread_id": t, "after_seq": -1})),
        ),
        (
            "limit 0 on sync",
            frame(
                "chat:sync",
                "r",
                json!({"thread_id": t, "after_seq": 0, "limit": 0}),
            ),
        ),
        (
            "negative limit on sync",
            frame(
                "chat:sync",
                "r",
                json!({"thread_id": t, "after_seq": 0, "limit": -3}),
            ),
        ),
        ("ping with non-object data", frame("ping", "r", json!(3))),
    ];
    for (i, (what, raw)) in cases.iter().enumerate() {
        // A distinct ref each time, so each reply is matched to its frame.
        let raw = raw.replacen("\"ref\":\"r\"", &format!("\"ref\":\"bad-{i}\""), 1);
        assert!(
            raw.contains(&format!("\"bad-{i}\"")),
            "{what}: no ref in {raw}"
        );
        let reply = error_for(&mut client, &raw, &format!("bad-{i}"), "bad_request").await;
        assert!(reply.get("ref").is_some(), "{what}: {reply}");
    }
    // A numeric ref comes back as the same number.
    let raw = json!({"event": "chat:send", "ref": 77, "data": {"thread_id": t}}).to_string();
    client.send_text(&raw).await;
    let reply = client
        .wait_for(|f| f["ref"] == 77, "a reply with ref 77")
        .await;
    assert_eq!(reply["data"]["code"], "bad_request", "{reply}");

    // None of it was stored or broadcast, and 8000 characters are fine.
    assert_eq!(message_rows(&app).await, 0);
    other.assert_no_event("chat:message").await;
    let longest = client.send_message(thread, &"é".repeat(8000)).await;
    assert_eq!(longest["seq"], 1);
    assert_eq!(
        longest["body"].as_str().map(|b| b.chars().count()),
        Some(8000)
    );
    assert_eq!(other.next_event("chat:message").await["message"], longest);
}

// ---- unknown_event --------------------------------------------------------------------

#[actix_web::test]
async fn an_unknown_event_is_answered_unknown_event_with_its_ref() {
    let app = spawn_app().await;
    let user = app.user(app.company().await).await;
    let mut client = app.connect(&user).await;

    for (i, event) in ["chat:dance", "chat:SEND", "", "chat:send ", "ping2"]
        .iter()
        .enumerate()
    {
        let reference = format!("u{i}");
        let raw = frame(event, &reference, json!({}));
        error_for(&mut client, &raw, &reference, "unknown_event").await;
    }
    // Without a ref the error still comes, without one.
    error_without_ref(
        &mut client,
        &json!({"event": "chat:dance", "data": {}}).to_string(),
        "unknown_event",
    )
    .await;
}

/// The data of a request into a given thread.
type DataFor = fn(Uuid) -> Value;

// ---- not_member -----------------------------------------------------------------------------

#[actix_web::test]
async fn requests_into_foreign_unjoined_or_unknown_threads_are_not_member_and_indistinguishable() {
    let app = spawn_app().await;
    let ours = app.users(3).await;
    let theirs = app.users(2).await;
    let (ann, bob, carl) = (&ours[0], &ours[1], &ours[2]);
    app.group(&[ann, bob]).await;
    let unjoined = app.group(&[bob, carl]).await;
    let foreign = app.group(&[&theirs[0], &theirs[1]]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut carl_ws = app.connect(carl).await;
    let mut dave_ws = app.connect(&theirs[0]).await;

    let targets = [
        ("another company's thread", foreign),
        ("a thread ann is not in", unjoined),
        ("a thread that does not exist", Uuid::new_v4()),
    ];
    let requests: Vec<(&str, DataFor)> = vec![
        (
            "chat:send",
            |t| json!({"thread_id": t, "client_msg_id": Uuid::new_v4(), "body": "psst"}),
        ),
        (
            "chat:delivered",
            |t| json!({"thread_id": t, "up_to_seq": 1}),
        ),
        (
            "chat:mark-read",
            |t| json!({"thread_id": t, "up_to_seq": 1}),
        ),
        ("chat:typing-start", |t| json!({"thread_id": t})),
        ("chat:typing-stop", |t| json!({"thread_id": t})),
        ("chat:sync", |t| json!({"thread_id": t, "after_seq": 0})),
        ("chat:changes", |t| json!({"thread_id": t, "after_rev": 0})),
        (
            "chat:react",
            |t| json!({"thread_id": t, "message_id": Uuid::now_v7(), "emoji": "👀", "on": true}),
        ),
    ];
    for (event, data) in &requests {
        let mut answers = Vec::new();
        for (what, thread) in &targets {
            let reply = ann_ws.request(event, data(*thread)).await;
            assert_eq!(reply["event"], "chat:error", "{event} into {what}: {reply}");
            assert_eq!(
                reply["data"]["code"], "not_member",
                "{event} into {what}: {reply}"
            );
            assert!(reply["ref"].is_string(), "{event} into {what}: {reply}");
            answers.push(reply["data"].clone());
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{event}: the answers must not tell the three cases apart: {answers:?}"
        );
        assert_still_serving(&mut ann_ws, event).await;
    }

    // Nothing reached the members of those threads, nothing was stored.
    for client in [&mut carl_ws, &mut dave_ws] {
        client
            .assert_none(
                |f| {
                    matches!(
                        f["event"].as_str(),
                        Some("chat:message" | "chat:typing" | "chat:delivered" | "chat:read")
                    )
                },
                "an event caused by a non-member",
            )
            .await;
    }
    assert_eq!(message_rows(&app).await, 0);
}

// ---- unavailable ------------------------------------------------------------------------------

async fn set_connections_allowed(app: &TestApp, allowed: bool) {
    admin_exec(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS {allowed}",
        app.db_name
    ))
    .await;
}

/// Cuts the server off its database: no new connections, and the ones it
/// holds are terminated. Returns once Postgres reports none left.
async fn cut_database(app: &TestApp) {
    set_connections_allowed(app, false).await;
    admin_exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        app.db_name
    ))
    .await;
    let mut admin = Db::connect(&format!("{PG_SERVER}/postgres")).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = admin
            .count(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'",
                app.db_name
            ))
            .await;
        if left == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} connections to the database survived termination"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn with_the_database_unreachable_sends_are_unavailable_and_a_retry_later_lands_once() {
    let app = spawn_app_with(|s| s.db_timeout_ms = 500).await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    // Warm up: the server holds live connections when they are cut.
    ann_ws.send_message(thread, "before").await;
    bob_ws.next_event("chat:message").await;

    cut_database(&app).await;

    let client_msg_id = Uuid::new_v4();
    let send = json!({"thread_id": thread, "client_msg_id": client_msg_id, "body": "during"});
    for attempt in 0..2 {
        let reply = ann_ws.request("chat:send", send.clone()).await;
        assert_eq!(reply["event"], "chat:error", "attempt {attempt}: {reply}");
        assert_eq!(
            reply["data"]["code"], "unavailable",
            "attempt {attempt}: {reply}"
        );
    }
    bob_ws.assert_no_event("chat:message").await;

    let ready = app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.error_code(), "unavailable", "{ready:?}");
    let api = app.get("/api/threads", &ann.token).await;
    assert_eq!(api.status, 503, "{api:?}");
    assert_eq!(api.error_code(), "unavailable", "{api:?}");
    // The sessions themselves stay up.
    assert_still_serving(&mut ann_ws, "the outage").await;
    assert_still_serving(&mut bob_ws, "the outage").await;

    set_connections_allowed(&app, true).await;

    let ready = app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let reply = ann_ws.request("chat:send", send.clone()).await;
    assert_eq!(reply["event"], "chat:ack", "the retry must land: {reply}");
    let message = reply["data"]["message"].clone();
    assert_eq!(message["seq"], 2);
    assert_eq!(message["client_msg_id"], client_msg_id.to_string());
    // A second retry is acked with the same message and changes nothing.
    let again = ann_ws.request("chat:send", send).await;
    assert_eq!(again["data"]["message"], message, "{again}");

    assert_eq!(bob_ws.next_event("chat:message").await["message"], message);
    bob_ws.assert_no_event("chat:message").await;
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE client_msg_id = '{client_msg_id}'"
        ))
        .await,
        1
    );
    assert_eq!(db.seqs(thread).await, vec![1, 2]);
}
