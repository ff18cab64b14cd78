//! The user HTTP API (/api): every endpoint's success status and shape, and
//! the errors a client can get from it.

use chrono::Utc;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{http_client, spawn_app, uuid, Reply, TestApp, TestUser};

/// Sends `body` as it is, labelled JSON: for bodies `send_json` cannot make.
async fn raw_request(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: &str,
    body: impl Into<String>,
) -> Reply {
    let res = http_client()
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(bearer)
        .header("content-type", "application/json")
        .body(body.into())
        .send()
        .await
        .expect("the HTTP request completes");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.expect("the HTTP body arrives");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Reply { status, body }
}

/// A JWT with these claims, signed HS256 with `secret`.
fn jwt_with(secret: &str, algorithm: Algorithm, claims: Value) -> String {
    encode(
        &Header::new(algorithm),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a test token")
}

fn claims_for(user: &TestUser, exp_in_seconds: i64) -> Value {
    let now = Utc::now().timestamp();
    json!({"sub": user.id, "company_id": user.company_id, "iat": now, "exp": now + exp_in_seconds})
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    names.sort();
    names
}

fn seqs_of(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages array in {page}"))
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

async fn message_row(app: &TestApp, id: &Value, column: &str) -> i64 {
    let id = uuid(id);
    app.db()
        .await
        .count(&format!(
            "SELECT count(*) FROM messages WHERE id = '{id}' AND {column}"
        ))
        .await
}

// ---- GET /api/me --------------------------------------------------------

#[actix_web::test]
async fn me_answers_the_caller_as_a_user_object() {
    let app = spawn_app().await;
    let company = app.company().await;
    let ann = app.named_user(company, "Ann").await;

    let reply = app.get("/api/me", &ann.token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        keys(&reply.body),
        sorted(&[
            "id",
            "company_id",
            "display_name",
            "created_at",
            "external_id",
            "deactivated_at",
            "updated_at"
        ]),
        "{reply:?}"
    );
    assert_eq!(reply.body["external_id"], serde_json::Value::Null);
    assert_eq!(reply.body["deactivated_at"], serde_json::Value::Null);
    assert_eq!(reply.body["updated_at"], reply.body["created_at"]);
    assert_eq!(uuid(&reply.body["id"]), ann.id);
    assert_eq!(uuid(&reply.body["company_id"]), company);
    assert_eq!(reply.body["display_name"], "Ann");
    let created_at = reply.body["created_at"].as_str().expect("created_at");
    assert!(
        created_at.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(created_at).is_ok(),
        "created_at is RFC 3339 UTC: {created_at}"
    );
}

// ---- GET /api/threads ---------------------------------------------------

#[actix_web::test]
async fn my_threads_list_last_seq_cursors_unread_and_a_null_last_message_when_empty() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, eve) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;

    let reply = app.get("/api/threads", &ann.token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let threads = reply.body["threads"].as_array().expect("threads array");
    assert_eq!(threads.len(), 1, "{reply:?}");
    let item = &threads[0];
    assert_eq!(
        keys(item),
        sorted(&[
            "id",
            "company_id",
            "kind",
            "title",
            "created_by",
            "created_at",
            "last_seq",
            "last_delivered_seq",
            "last_read_seq",
            "unread",
            "last_rev",
            "unread_mentions",
            "last_message",
        ]),
        "{item}"
    );
    assert_eq!(uuid(&item["id"]), thread);
    assert_eq!(uuid(&item["company_id"]), ann.company_id);
    assert_eq!(item["kind"], "group");
    assert_eq!(item["title"], "team");
    assert_eq!(item["last_seq"], 0);
    assert_eq!(item["last_delivered_seq"], 0);
    assert_eq!(item["last_read_seq"], 0);
    assert_eq!(item["unread"], 0);
    assert_eq!(item["last_rev"], 0);
    assert_eq!(item["unread_mentions"], 0);
    assert!(item["last_message"].is_null(), "{item}");

    let eve_reply = app.get("/api/threads", &eve.token).await;
    assert_eq!(eve_reply.status, 200, "{eve_reply:?}");
    assert_eq!(
        eve_reply.body,
        json!({"threads": []}),
        "a non-member sees no thread"
    );
}

#[actix_web::test]
async fn my_threads_count_unread_from_others_and_show_the_newest_message() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    bob_ws.send_message(thread, "one").await;
    let second = bob_ws.send_message(thread, "two").await;
    let third = ann_ws.send_message(thread, "three").await;

    let reply = app.get("/api/threads", &ann.token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let item = &reply.body["threads"][0];
    assert_eq!(item["last_seq"], 3, "{item}");
    assert_eq!(item["unread"], 2, "own messages are not unread: {item}");
    assert_eq!(item["last_message"], third, "the newest message: {item}");

    let bob_view = app.get("/api/threads", &bob.token).await;
    assert_eq!(bob_view.body["threads"][0]["unread"], 1, "{bob_view:?}");

    // A deleted message is not unread any more.
    let deleted = app
        .delete(
            &format!("/api/messages/{}", uuid(&second["id"])),
            &bob.token,
        )
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let reply = app.get("/api/threads", &ann.token).await;
    assert_eq!(reply.body["threads"][0]["unread"], 1, "{reply:?}");

    // Reading moves the cursors the list shows.
    let ack = ann_ws
        .request(
            "chat:mark-read",
            json!({"thread_id": thread, "up_to_seq": 3}),
        )
        .await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    let reply = app.get("/api/threads", &ann.token).await;
    let item = &reply.body["threads"][0];
    assert_eq!(item["unread"], 0, "{item}");
    assert_eq!(item["last_read_seq"], 3, "{item}");
    assert_eq!(item["last_delivered_seq"], 3, "{item}");
}

// ---- POST /api/threads --------------------------------------------------

#[actix_web::test]
async fn creating_a_thread_makes_a_group_with_the_creator_as_a_member() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let mut bob_ws = app.connect(bob).await;

    let reply = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"title": "plans", "member_ids": [bob.id, carl.id]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let thread = uuid(&reply.body["id"]);
    assert_eq!(reply.body["kind"], "group", "group is the default kind");
    assert_eq!(reply.body["title"], "plans");
    assert_eq!(uuid(&reply.body["created_by"]), ann.id);
    assert_eq!(uuid(&reply.body["company_id"]), ann.company_id);
    assert_eq!(reply.body["last_seq"], 0);

    let mut db = app.db().await;
    for member in [ann, bob, carl] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}'",
                member.id
            ))
            .await,
            1,
            "user {} is a member",
            member.id
        );
    }

    let joined = bob_ws.next_event("chat:thread-joined").await;
    assert_eq!(uuid(&joined["thread"]["id"]), thread, "{joined}");
}

#[actix_web::test]
async fn a_direct_thread_is_created_once_and_then_returned_for_the_pair() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);

    let first = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"kind": "direct", "member_ids": [bob.id]}),
        )
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.body["kind"], "direct");
    let thread = uuid(&first.body["id"]);

    let again = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"kind": "direct", "member_ids": [bob.id]}),
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(uuid(&again.body["id"]), thread);

    let from_bob = app
        .post(
            "/api/threads",
            &bob.token,
            json!({"kind": "direct", "member_ids": [ann.id]}),
        )
        .await;
    assert_eq!(from_bob.status, 200, "{from_bob:?}");
    assert_eq!(uuid(&from_bob.body["id"]), thread);

    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM threads").await, 1);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE thread_id = '{thread}'"
        ))
        .await,
        2
    );
}

#[actix_web::test]
async fn a_direct_thread_needs_exactly_one_other_member() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);

    for member_ids in [json!([]), json!([ann.id]), json!([bob.id, carl.id])] {
        let reply = app
            .post(
                "/api/threads",
                &ann.token,
                json!({"kind": "direct", "member_ids": member_ids}),
            )
            .await;
        assert_eq!(reply.status, 400, "member_ids {member_ids}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "{reply:?}");
    }
    assert_eq!(
        app.db().await.count("SELECT count(*) FROM threads").await,
        0
    );
}

#[actix_web::test]
async fn a_thread_with_an_unknown_user_or_one_of_another_company_is_not_found() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let elsewhere = app.user(app.company().await).await;

    for body in [
        json!({"member_ids": [bob.id, Uuid::new_v4()]}),
        json!({"member_ids": [bob.id, elsewhere.id]}),
        json!({"kind": "direct", "member_ids": [Uuid::new_v4()]}),
        json!({"kind": "direct", "member_ids": [elsewhere.id]}),
    ] {
        let reply = app.post("/api/threads", &ann.token, body.clone()).await;
        assert_eq!(reply.status, 404, "{body}: {reply:?}");
        assert_eq!(reply.error_code(), "not_found", "{body}: {reply:?}");
    }
    assert_eq!(
        app.db().await.count("SELECT count(*) FROM threads").await,
        0
    );
}

#[actix_web::test]
async fn a_malformed_or_ill_typed_thread_body_is_a_bad_request() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);

    let bob_id = bob.id;
    for raw in [
        "{\"member_ids\": [".to_string(),
        "not json".to_string(),
        String::new(),
        "[]".to_string(),
        "{\"member_ids\": \"everyone\"}".to_string(),
        "{\"member_ids\": [\"not-a-uuid\"]}".to_string(),
        "{\"member_ids\": [42]}".to_string(),
        format!("{{\"title\": 5, \"member_ids\": [\"{bob_id}\"]}}"),
        format!("{{\"kind\": \"triangle\", \"member_ids\": [\"{bob_id}\"]}}"),
        format!("{{\"kind\": 1, \"member_ids\": [\"{bob_id}\"]}}"),
        "{\"title\": \"no members\"}".to_string(),
        format!("{{\"title\": \"a\\u0000b\", \"member_ids\": [\"{bob_id}\"]}}"),
    ] {
        let reply = raw_request(&app, Method::POST, "/api/threads", &ann.token, raw.clone()).await;
        assert_eq!(reply.status, 400, "body {raw:?}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "body {raw:?}: {reply:?}");
    }
    // The same endpoint with a good body works: the failures were the body's.
    let ok = app
        .post("/api/threads", &ann.token, json!({"member_ids": [bob.id]}))
        .await;
    assert_eq!(ok.status, 201, "{ok:?}");
    assert_eq!(
        app.db().await.count("SELECT count(*) FROM threads").await,
        1
    );
}

#[actix_web::test]
async fn a_json_body_over_64_kib_is_refused_as_too_large() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);

    let reply = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"title": "x".repeat(70 * 1024), "member_ids": [bob.id]}),
        )
        .await;
    assert_eq!(reply.status, 413, "{:?}", reply.status);
    assert_eq!(reply.error_code(), "payload_too_large", "{reply:?}");
    assert_eq!(
        app.db().await.count("SELECT count(*) FROM threads").await,
        0
    );
}

// ---- GET /api/threads/{id}/messages -------------------------------------

#[actix_web::test]
async fn history_is_the_newest_page_by_default_in_ascending_order() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut sent = Vec::new();
    for i in 1..=5 {
        sent.push(ann_ws.send_message(thread, &format!("m{i}")).await);
    }

    let all = app
        .get(&format!("/api/threads/{thread}/messages"), &bob.token)
        .await;
    assert_eq!(all.status, 200, "{all:?}");
    assert_eq!(keys(&all.body), sorted(&["messages", "has_more"]));
    assert_eq!(all.body["messages"], json!(sent), "the messages as acked");
    assert_eq!(all.body["has_more"], false);

    let newest = app
        .get(
            &format!("/api/threads/{thread}/messages?limit=2"),
            &bob.token,
        )
        .await;
    assert_eq!(newest.status, 200, "{newest:?}");
    assert_eq!(seqs_of(&newest.body), vec![4, 5]);
    assert_eq!(newest.body["has_more"], true);
}

#[actix_web::test]
async fn history_pages_back_with_before_seq_and_forward_with_after_seq() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    for i in 1..=5 {
        ann_ws.send_message(thread, &format!("m{i}")).await;
    }

    for (query, seqs, has_more) in [
        ("before_seq=4&limit=2", vec![2, 3], true),
        ("before_seq=2&limit=2", vec![1], false),
        ("before_seq=1", vec![], false),
        ("after_seq=1&limit=2", vec![2, 3], true),
        ("after_seq=3&limit=2", vec![4, 5], false),
        ("after_seq=0", vec![1, 2, 3, 4, 5], false),
        ("after_seq=5", vec![], false),
        ("after_seq=99", vec![], false),
    ] {
        let page = app
            .get(
                &format!("/api/threads/{thread}/messages?{query}"),
                &bob.token,
            )
            .await;
        assert_eq!(page.status, 200, "{query}: {page:?}");
        assert_eq!(seqs_of(&page.body), seqs, "{query}: {page:?}");
        assert_eq!(page.body["has_more"], has_more, "{query}: {page:?}");
    }
}

#[actix_web::test]
async fn history_clamps_limit_to_500_and_refuses_a_limit_below_one() {
    let app = spawn_app().await;
    let users = app.users(1).await;
    let ann = &users[0];
    let thread = app.group(&[ann]).await;
    // 501 messages, faster than sending them one by one.
    app.db()
        .await
        .exec(&format!(
            "INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind, body,
                                   rev, created_rev)
             SELECT gen_random_uuid(), '{thread}', '{company}', s, '{ann}', gen_random_uuid(), 'text', 'm' || s,
                    s, s
             FROM generate_series(1, 501) s;
             UPDATE threads SET last_seq = 501, last_rev = 501 WHERE id = '{thread}';",
            company = ann.company_id,
            ann = ann.id
        ))
        .await;

    let page = app
        .get(
            &format!("/api/threads/{thread}/messages?limit=1000"),
            &ann.token,
        )
        .await;
    assert_eq!(page.status, 200, "{:?}", page.status);
    let seqs = seqs_of(&page.body);
    assert_eq!(seqs, (2..=501).collect::<Vec<i64>>(), "the newest 500");
    assert_eq!(page.body["has_more"], true);

    let default = app
        .get(&format!("/api/threads/{thread}/messages"), &ann.token)
        .await;
    assert_eq!(
        seqs_of(&default.body),
        (402..=501).collect::<Vec<i64>>(),
        "the default page is 100"
    );

    for limit in ["0", "-1"] {
        let reply = app
            .get(
                &format!("/api/threads/{thread}/messages?limit={limit}"),
                &ann.token,
            )
            .await;
        assert_eq!(reply.status, 400, "limit={limit}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request");
    }
}

#[actix_web::test]
async fn history_refuses_bad_ids_and_seqs_and_hides_threads_from_non_members() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, eve) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;

    for path in [
        "/api/threads/not-a-uuid/messages".to_string(),
        format!("/api/threads/{thread}/messages?before_seq=-1"),
        format!("/api/threads/{thread}/messages?after_seq=-1"),
        format!("/api/threads/{thread}/messages?limit=many"),
        format!("/api/threads/{thread}/messages?after_seq=x"),
    ] {
        let reply = app.get(&path, &ann.token).await;
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "{path}: {reply:?}");
    }

    let not_member = app
        .get(&format!("/api/threads/{thread}/messages"), &eve.token)
        .await;
    assert_eq!(not_member.status, 404, "{not_member:?}");
    assert_eq!(not_member.error_code(), "not_found");
    let missing = app
        .get(
            &format!("/api/threads/{}/messages", Uuid::new_v4()),
            &eve.token,
        )
        .await;
    assert_eq!(
        missing.body, not_member.body,
        "a thread one is not in looks like no thread"
    );
}

// ---- GET/POST /api/threads/{id}/members ---------------------------------

#[actix_web::test]
async fn members_show_display_name_presence_and_cursors() {
    let app = spawn_app().await;
    let company = app.company().await;
    let ann = app.named_user(company, "Ann").await;
    let bob = app.named_user(company, "Bob").await;
    let carl = app.named_user(company, "Carl").await;
    let eve = app.named_user(company, "Eve").await;
    let thread = app.group(&[&ann, &bob, &carl]).await;
    let mut ann_ws = app.connect(&ann).await;
    let mut bob_ws = app.connect(&bob).await;
    ann_ws.send_message(thread, "one").await;
    ann_ws.send_message(thread, "two").await;
    let delivered = bob_ws
        .request(
            "chat:delivered",
            json!({"thread_id": thread, "up_to_seq": 2}),
        )
        .await;
    assert_eq!(delivered["event"], "chat:ack", "{delivered}");
    let read = bob_ws
        .request(
            "chat:mark-read",
            json!({"thread_id": thread, "up_to_seq": 1}),
        )
        .await;
    assert_eq!(read["event"], "chat:ack", "{read}");

    let reply = app
        .get(&format!("/api/threads/{thread}/members"), &ann.token)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let members = reply.body["members"].as_array().expect("members array");
    assert_eq!(members.len(), 3, "{reply:?}");
    let member = |user: &TestUser| {
        members
            .iter()
            .find(|m| m["user_id"] == user.id.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("{} missing from {reply:?}", user.id))
    };
    for m in members {
        assert_eq!(
            keys(m),
            sorted(&[
                "user_id",
                "display_name",
                "deactivated_at",
                "online",
                "joined_at",
                "last_delivered_seq",
                "last_read_seq"
            ]),
            "{m}"
        );
    }
    let (a, b, c) = (member(&ann), member(&bob), member(&carl));
    assert_eq!(a["display_name"], "Ann");
    assert_eq!(a["online"], true, "{a}");
    assert_eq!(b["display_name"], "Bob");
    assert_eq!(b["online"], true, "{b}");
    assert_eq!(b["last_delivered_seq"], 2, "{b}");
    assert_eq!(b["last_read_seq"], 1, "{b}");
    assert_eq!(c["display_name"], "Carl");
    assert_eq!(c["online"], false, "{c}");
    assert_eq!(c["last_delivered_seq"], 0, "{c}");
    assert_eq!(c["last_read_seq"], 0, "{c}");

    let hidden = app
        .get(&format!("/api/threads/{thread}/members"), &eve.token)
        .await;
    assert_eq!(hidden.status, 404, "{hidden:?}");
    assert_eq!(hidden.error_code(), "not_found");
}

#[actix_web::test]
async fn adding_a_member_answers_201_and_their_cursors_start_at_last_seq() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    ann_ws.send_message(thread, "before carl").await;
    ann_ws.send_message(thread, "still before carl").await;

    let reply = app
        .post(
            &format!("/api/threads/{thread}/members"),
            &ann.token,
            json!({"user_id": carl.id}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.body, json!({"thread_id": thread, "user_id": carl.id}));

    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}'
               AND last_delivered_seq = 2 AND last_read_seq = 2",
            carl.id
        ))
        .await,
        1
    );
    let history = app
        .get(&format!("/api/threads/{thread}/messages"), &carl.token)
        .await;
    assert_eq!(history.status, 200, "the new member reads: {history:?}");
}

#[actix_web::test]
async fn adding_an_unknown_user_or_an_existing_member_fails() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let elsewhere = app.user(app.company().await).await;
    let path = format!("/api/threads/{thread}/members");

    for stranger in [Uuid::new_v4(), elsewhere.id] {
        let reply = app
            .post(&path, &ann.token, json!({"user_id": stranger}))
            .await;
        assert_eq!(reply.status, 404, "{stranger}: {reply:?}");
        assert_eq!(reply.error_code(), "not_found");
    }

    let existing = app
        .post(&path, &ann.token, json!({"user_id": bob.id}))
        .await;
    assert_eq!(existing.status, 409, "{existing:?}");
    assert_eq!(existing.error_code(), "conflict");

    let bad = app
        .post(&path, &ann.token, json!({"user_id": "not-a-uuid"}))
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(
        app.db()
            .await
            .count(&format!(
                "SELECT count(*) FROM memberships WHERE thread_id = '{thread}'"
            ))
            .await,
        2
    );
}

#[actix_web::test]
async fn a_direct_thread_refuses_adding_and_leaving_with_409() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let direct = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"kind": "direct", "member_ids": [bob.id]}),
        )
        .await;
    assert_eq!(direct.status, 201, "{direct:?}");
    let thread = uuid(&direct.body["id"]);

    let add = app
        .post(
            &format!("/api/threads/{thread}/members"),
            &ann.token,
            json!({"user_id": carl.id}),
        )
        .await;
    assert_eq!(add.status, 409, "{add:?}");
    assert_eq!(add.error_code(), "conflict");

    let leave = app
        .delete(&format!("/api/threads/{thread}/members/me"), &ann.token)
        .await;
    assert_eq!(leave.status, 409, "{leave:?}");
    assert_eq!(leave.error_code(), "conflict");

    assert_eq!(
        app.db()
            .await
            .count(&format!(
                "SELECT count(*) FROM memberships WHERE thread_id = '{thread}'"
            ))
            .await,
        2
    );
}

// ---- DELETE /api/threads/{id}/members/me --------------------------------

#[actix_web::test]
async fn leaving_answers_204_and_leaving_again_is_not_found() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let path = format!("/api/threads/{thread}/members/me");

    let reply = app.delete(&path, &bob.token).await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert!(reply.body.is_null(), "204 has no body: {reply:?}");
    assert_eq!(
        app.db()
            .await
            .count(&format!(
                "SELECT count(*) FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}'",
                bob.id
            ))
            .await,
        0
    );
    let history = app
        .get(&format!("/api/threads/{thread}/messages"), &bob.token)
        .await;
    assert_eq!(history.status, 404, "{history:?}");

    let again = app.delete(&path, &bob.token).await;
    assert_eq!(again.status, 404, "{again:?}");
    assert_eq!(again.error_code(), "not_found");
}

// ---- PATCH /api/messages/{id} -------------------------------------------

#[actix_web::test]
async fn editing_my_message_answers_it_with_edited_at_set() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let original = ann_ws.send_message(thread, "helo").await;
    assert!(original["edited_at"].is_null());

    let reply = app
        .patch(
            &format!("/api/messages/{}", uuid(&original["id"])),
            &ann.token,
            json!({"body": "hello"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let edited = &reply.body;
    assert_eq!(edited["body"], "hello");
    assert!(edited["edited_at"].is_string(), "{edited}");
    assert!(edited["deleted_at"].is_null(), "{edited}");
    for same in [
        "id",
        "thread_id",
        "seq",
        "sender_id",
        "client_msg_id",
        "type",
        "created_at",
    ] {
        assert_eq!(edited[same], original[same], "{same} is unchanged");
    }
    let page = app
        .get(&format!("/api/threads/{thread}/messages"), &bob.token)
        .await;
    assert_eq!(page.body["messages"][0], *edited, "history shows the edit");
}

#[actix_web::test]
async fn an_edit_needs_a_body_of_1_to_8000_characters() {
    let app = spawn_app().await;
    let users = app.users(1).await;
    let ann = &users[0];
    let thread = app.group(&[ann]).await;
    let mut ann_ws = app.connect(ann).await;
    let message = ann_ws.send_message(thread, "original").await;
    let path = format!("/api/messages/{}", uuid(&message["id"]));

    for body in [
        json!({"body": ""}),
        json!({"body": " \n\t "}),
        json!({"body": "a".repeat(8001)}),
        json!({"body": "é".repeat(8001)}),
        json!({"body": 5}),
        json!({}),
        // Postgres stores no NUL: refused, never a failed update.
        json!({"body": "a\u{0}b"}),
    ] {
        let reply = app.patch(&path, &ann.token, body.clone()).await;
        assert_eq!(reply.status, 400, "{reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "{reply:?}");
    }
    assert_eq!(
        message_row(
            &app,
            &message["id"],
            "body = 'original' AND edited_at IS NULL"
        )
        .await,
        1,
        "a refused edit changes nothing"
    );

    // 8000 characters is allowed, counted as characters, not bytes.
    let longest = "é".repeat(8000);
    let reply = app.patch(&path, &ann.token, json!({"body": longest})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.status);
    assert_eq!(reply.body["body"], longest);

    let bad_id = app
        .patch("/api/messages/not-a-uuid", &ann.token, json!({"body": "x"}))
        .await;
    assert_eq!(bad_id.status, 400, "{bad_id:?}");
}

#[actix_web::test]
async fn editing_someone_elses_or_a_deleted_message_is_not_found() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let bobs = bob_ws.send_message(thread, "bob's").await;
    let gone = ann_ws.send_message(thread, "soon gone").await;
    let deleted = app
        .delete(&format!("/api/messages/{}", uuid(&gone["id"])), &ann.token)
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    bob_ws.next_event("chat:message-deleted").await;

    for id in [uuid(&bobs["id"]), uuid(&gone["id"]), Uuid::new_v4()] {
        let reply = app
            .patch(
                &format!("/api/messages/{id}"),
                &ann.token,
                json!({"body": "mine now"}),
            )
            .await;
        assert_eq!(reply.status, 404, "{id}: {reply:?}");
        assert_eq!(reply.error_code(), "not_found");
    }
    assert_eq!(
        message_row(&app, &bobs["id"], "body = 'bob''s' AND edited_at IS NULL").await,
        1
    );
    assert_eq!(
        message_row(&app, &gone["id"], "body IS NULL AND edited_at IS NULL").await,
        1
    );
    bob_ws.assert_no_event("chat:message-edited").await;
}

// ---- DELETE /api/messages/{id} ------------------------------------------

#[actix_web::test]
async fn deleting_my_message_answers_a_tombstone_and_a_second_delete_the_same_one() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let message = ann_ws.send_message(thread, "oops").await;
    let path = format!("/api/messages/{}", uuid(&message["id"]));

    let reply = app.delete(&path, &ann.token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let tombstone = reply.body.clone();
    assert!(tombstone["body"].is_null(), "{tombstone}");
    assert!(tombstone["metadata"].is_null(), "{tombstone}");
    assert!(tombstone["deleted_at"].is_string(), "{tombstone}");
    for same in [
        "id",
        "thread_id",
        "seq",
        "sender_id",
        "client_msg_id",
        "type",
        "created_at",
    ] {
        assert_eq!(tombstone[same], message[same], "{same} is unchanged");
    }
    assert_eq!(
        message_row(
            &app,
            &message["id"],
            "body IS NULL AND deleted_at IS NOT NULL"
        )
        .await,
        1
    );
    let event = bob_ws.next_event("chat:message-deleted").await;
    assert_eq!(event["deleted_at"], tombstone["deleted_at"], "{event}");

    let again = app.delete(&path, &ann.token).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body, tombstone, "the same tombstone");
    bob_ws.assert_no_event("chat:message-deleted").await;
}

#[actix_web::test]
async fn deleting_someone_elses_message_is_not_found() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut bob_ws = app.connect(bob).await;
    let bobs = bob_ws.send_message(thread, "keep me").await;

    for id in [uuid(&bobs["id"]), Uuid::new_v4()] {
        let reply = app.delete(&format!("/api/messages/{id}"), &ann.token).await;
        assert_eq!(reply.status, 404, "{id}: {reply:?}");
        assert_eq!(reply.error_code(), "not_found");
    }
    let bad_id = app.delete("/api/messages/not-a-uuid", &ann.token).await;
    assert_eq!(bad_id.status, 400, "{bad_id:?}");
    assert_eq!(
        message_row(&app, &bobs["id"], "body = 'keep me' AND deleted_at IS NULL").await,
        1
    );
    bob_ws.assert_no_event("chat:message-deleted").await;
}

// ---- authentication and routing -----------------------------------------

#[actix_web::test]
async fn every_user_endpoint_refuses_a_missing_or_bad_token_with_401() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let message = ann_ws.send_message(thread, "untouched").await;
    let message_id = uuid(&message["id"]);
    let other_company = app.company().await;

    let gone = app.user(ann.company_id).await;
    app.db()
        .await
        .exec(&format!("DELETE FROM users WHERE id = '{}'", gone.id))
        .await;

    let secret = app.jwt_secret.as_str();
    let now = Utc::now().timestamp();
    let bad_tokens: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not a JWT", Some("not-a-jwt".into())),
        (
            "wrong signature",
            Some(jwt_with(
                "another-secret-another-secret-another",
                Algorithm::HS256,
                claims_for(ann, 600),
            )),
        ),
        (
            "another algorithm",
            Some(jwt_with(secret, Algorithm::HS512, claims_for(ann, 600))),
        ),
        (
            "expired",
            Some(jwt_with(secret, Algorithm::HS256, claims_for(ann, -10))),
        ),
        (
            "no exp",
            Some(jwt_with(
                secret,
                Algorithm::HS256,
                json!({"sub": ann.id, "company_id": ann.company_id, "iat": now}),
            )),
        ),
        (
            "user in another company",
            Some(jwt_with(
                secret,
                Algorithm::HS256,
                json!({"sub": ann.id, "company_id": other_company, "iat": now, "exp": now + 600}),
            )),
        ),
        ("deleted user", Some(gone.token.clone())),
        ("admin token", Some(app.admin_token.clone())),
    ];
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/me".into(), None),
        (Method::GET, "/api/threads".into(), None),
        (
            Method::POST,
            "/api/threads".into(),
            Some(json!({"member_ids": [bob.id]})),
        ),
        (Method::GET, format!("/api/threads/{thread}/messages"), None),
        (Method::GET, format!("/api/threads/{thread}/members"), None),
        (
            Method::POST,
            format!("/api/threads/{thread}/members"),
            Some(json!({"user_id": carl.id})),
        ),
        (
            Method::DELETE,
            format!("/api/threads/{thread}/members/me"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/messages/{message_id}"),
            Some(json!({"body": "changed"})),
        ),
        (Method::DELETE, format!("/api/messages/{message_id}"), None),
    ];

    for (what, token) in &bad_tokens {
        for (method, path, body) in &endpoints {
            let reply = app
                .request(method.clone(), path, token.as_deref(), body.clone())
                .await;
            assert_eq!(reply.status, 401, "{what} on {method} {path}: {reply:?}");
            assert_eq!(
                reply.error_code(),
                "unauthorized",
                "{what} on {method} {path}: {reply:?}"
            );
        }
    }

    // None of it did anything.
    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM threads").await, 1);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE thread_id = '{thread}'"
        ))
        .await,
        2
    );
    assert_eq!(
        message_row(
            &app,
            &message["id"],
            "body = 'untouched' AND deleted_at IS NULL"
        )
        .await,
        1
    );
    // And a good token still works on the same endpoint.
    assert_eq!(app.get("/api/me", &ann.token).await.status, 200);
}

#[actix_web::test]
async fn an_unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    let users = app.users(1).await;
    let ann = &users[0];

    for (path, token) in [
        ("/api/nothing-here", Some(ann.token.as_str())),
        ("/nothing-here", None),
        ("/api/threads/x/y/z", Some(ann.token.as_str())),
    ] {
        let reply = app.request(Method::GET, path, token, None).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        assert_eq!(reply.error_code(), "not_found", "{path}: {reply:?}");
    }
}
