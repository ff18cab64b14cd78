//! The operator's HTTP API (/admin): companies, users, tokens, threads,
//! members, moderation and live figures; and that only the admin token
//! opens it.

use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, uuid, Reply, TestApp};

/// POST with the admin token and no body at all.
async fn admin_post_without_body(app: &TestApp, path: &str) -> Reply {
    app.request(Method::POST, path, Some(&app.admin_token), None)
        .await
}

async fn stats(app: &TestApp) -> Value {
    let reply = app.get("/admin/stats", &app.admin_token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

fn rfc3339_millis(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    let millis = text
        .strip_suffix('Z')
        .and_then(|t| t.rsplit_once('.'))
        .map(|(_, fraction)| fraction.len());
    assert_eq!(millis, Some(3), "{text} is RFC 3339 UTC with milliseconds");
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

/// The claims of a token the server minted, checked with its secret.
fn claims(app: &TestApp, token: &str) -> Value {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    decode::<Value>(
        token,
        &DecodingKey::from_secret(app.jwt_secret.as_bytes()),
        &validation,
    )
    .unwrap_or_else(|e| panic!("the minted token verifies with the secret: {e}"))
    .claims
}

// ---- companies and users ------------------------------------------------

#[actix_web::test]
async fn creating_a_company_answers_201_with_it_and_an_empty_name_is_refused() {
    let app = spawn_app().await;

    let reply = app
        .admin_post("/admin/companies", json!({"name": "Initech"}))
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let id = uuid(&reply.body["id"]);
    assert_eq!(reply.body["name"], "Initech");
    rfc3339_millis(&reply.body["created_at"]);
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM companies WHERE id = '{id}' AND name = 'Initech'"
        ))
        .await,
        1
    );

    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({}),
        json!({"name": 7}),
        json!({"name": "a\u{0}b"}),
    ] {
        let reply = app.admin_post("/admin/companies", body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "{body}: {reply:?}");
    }
    assert_eq!(db.count("SELECT count(*) FROM companies").await, 1);
}

#[actix_web::test]
async fn creating_a_user_answers_201_and_needs_a_known_company_and_a_name() {
    let app = spawn_app().await;
    let company = app.company().await;

    let reply = app
        .admin_post(
            "/admin/users",
            json!({"company_id": company, "display_name": "Ann"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let id = uuid(&reply.body["id"]);
    assert_eq!(uuid(&reply.body["company_id"]), company);
    assert_eq!(reply.body["display_name"], "Ann");
    rfc3339_millis(&reply.body["created_at"]);

    let unknown = app
        .admin_post(
            "/admin/users",
            json!({"company_id": Uuid::new_v4(), "display_name": "Nobody"}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.error_code(), "not_found");

    for body in [
        json!({"company_id": company, "display_name": ""}),
        json!({"company_id": company, "display_name": "  "}),
        json!({"company_id": company}),
        json!({"company_id": "not-a-uuid", "display_name": "Ann"}),
    ] {
        let reply = app.admin_post("/admin/users", body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "{body}: {reply:?}");
    }
    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM users").await, 1);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM users WHERE id = '{id}' AND company_id = '{company}'"
        ))
        .await,
        1
    );
}

// ---- tokens -------------------------------------------------------------

#[actix_web::test]
async fn a_minted_token_is_an_hs256_jwt_whose_exp_is_expires_at_and_it_signs_in() {
    let app = spawn_app().await;
    let company = app.company().await;
    let user = app.named_user(company, "Ann").await;

    for with_body in [false, true] {
        let path = format!("/admin/users/{}/tokens", user.id);
        let reply = if with_body {
            app.admin_post(&path, json!({})).await
        } else {
            admin_post_without_body(&app, &path).await
        };
        assert_eq!(reply.status, 201, "body {with_body}: {reply:?}");
        let token = reply.body["token"].as_str().expect("token").to_string();
        let expires_at = rfc3339_millis(&reply.body["expires_at"]);

        let header = decode_header(&token).expect("a JWT header");
        assert_eq!(header.alg, Algorithm::HS256);
        let claims = claims(&app, &token);
        assert_eq!(claims["sub"], user.id.to_string(), "{claims}");
        assert_eq!(claims["company_id"], company.to_string(), "{claims}");
        assert_eq!(
            claims["exp"].as_i64(),
            Some(expires_at.timestamp()),
            "exp is expires_at: {claims}"
        );
        assert!(claims["iat"].is_i64(), "{claims}");
        let ttl = expires_at.timestamp() - Utc::now().timestamp();
        let default = app.settings.token_ttl_seconds as i64;
        assert!(
            (default - 60..=default).contains(&ttl),
            "the default lifetime is {default}s, got {ttl}s"
        );

        let me = app.get("/api/me", &token).await;
        assert_eq!(me.status, 200, "{me:?}");
        assert_eq!(uuid(&me.body["id"]), user.id);
    }
}

#[actix_web::test]
async fn a_token_lifetime_can_be_chosen_between_1_second_and_the_maximum() {
    let app = spawn_app().await;
    let user = app.user(app.company().await).await;
    let path = format!("/admin/users/{}/tokens", user.id);
    let max = app.settings.max_token_ttl_seconds as i64;

    for ttl in [1, 60, max] {
        let reply = app.admin_post(&path, json!({"ttl_seconds": ttl})).await;
        assert_eq!(reply.status, 201, "ttl {ttl}: {reply:?}");
        let expires_at = rfc3339_millis(&reply.body["expires_at"]);
        let left = (expires_at - Utc::now()).num_seconds();
        assert!(
            (ttl - 60..=ttl).contains(&left),
            "ttl {ttl}: expires in {left}s"
        );
        let token = reply.body["token"].as_str().expect("token");
        assert_eq!(
            claims(&app, token)["exp"].as_i64(),
            Some(expires_at.timestamp())
        );
    }

    for ttl in [json!(0), json!(-5), json!(max + 1), json!("60")] {
        let reply = app.admin_post(&path, json!({"ttl_seconds": ttl})).await;
        assert_eq!(reply.status, 400, "ttl {ttl}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "ttl {ttl}: {reply:?}");
    }
}

#[actix_web::test]
async fn a_token_request_body_is_an_object_or_null_never_an_array() {
    let app = spawn_app().await;
    let user = app.user(app.company().await).await;
    let path = format!("/admin/users/{}/tokens", user.id);
    for body in [json!([null]), json!([60]), json!(60), json!("x")] {
        let reply = app.admin_post(&path, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "{body}: {reply:?}");
    }
    let reply = app.admin_post(&path, Value::Null).await;
    assert_eq!(reply.status, 201, "null means the defaults: {reply:?}");
}

#[actix_web::test]
async fn minting_for_an_unknown_user_is_not_found() {
    let app = spawn_app().await;

    let reply = app
        .admin_post(
            &format!("/admin/users/{}/tokens", Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(reply.error_code(), "not_found");

    let bad = app
        .admin_post("/admin/users/not-a-uuid/tokens", json!({}))
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(bad.error_code(), "bad_request");
}

// ---- threads and members ------------------------------------------------

#[actix_web::test]
async fn an_operators_thread_has_no_creator_and_its_online_members_join_it_live() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (ann, bob, carl, eve) = (&users[0], &users[1], &users[2], &users[3]);
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut eve_ws = app.connect(eve).await;

    let reply = app
        .admin_post(
            "/admin/threads",
            json!({"company_id": ann.company_id, "title": "ops", "member_ids": [ann.id, bob.id, carl.id]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let thread = uuid(&reply.body["id"]);
    assert!(reply.body["created_by"].is_null(), "{reply:?}");
    assert_eq!(reply.body["kind"], "group");
    assert_eq!(reply.body["title"], "ops");
    assert_eq!(uuid(&reply.body["company_id"]), ann.company_id);
    assert_eq!(
        app.db()
            .await
            .count(&format!(
                "SELECT count(*) FROM memberships WHERE thread_id = '{thread}'"
            ))
            .await,
        3
    );

    for ws in [&mut ann_ws, &mut bob_ws] {
        let joined = ws.next_event("chat:thread-joined").await;
        let t = &joined["thread"];
        assert_eq!(uuid(&t["id"]), thread, "{joined}");
        assert_eq!(t["kind"], "group", "{joined}");
        assert_eq!(t["title"], "ops", "{joined}");
        assert_eq!(t["last_seq"], 0, "{joined}");
        assert_eq!(t["last_delivered_seq"], 0, "{joined}");
        assert_eq!(t["last_read_seq"], 0, "{joined}");
        assert_eq!(t["unread"], 0, "{joined}");
    }
    // They are in the room from then on.
    let sent = ann_ws.send_message(thread, "we're live").await;
    assert_eq!(bob_ws.next_event("chat:message").await["message"], sent);
    eve_ws.assert_silent().await;

    let foreign = app.user(app.company().await).await;
    let mixed = app
        .admin_post(
            "/admin/threads",
            json!({"company_id": ann.company_id, "member_ids": [ann.id, foreign.id]}),
        )
        .await;
    assert_eq!(mixed.status, 404, "{mixed:?}");
    assert_eq!(mixed.error_code(), "not_found");
}

#[actix_web::test]
async fn an_operator_adds_and_removes_members_live() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut carl_ws = app.connect(carl).await;
    let path = format!("/admin/threads/{thread}/members");

    let added = app.admin_post(&path, json!({"user_id": carl.id})).await;
    assert_eq!(added.status, 201, "{added:?}");
    assert_eq!(added.body, json!({"thread_id": thread, "user_id": carl.id}));
    let joined = carl_ws.next_event("chat:thread-joined").await;
    assert_eq!(uuid(&joined["thread"]["id"]), thread, "{joined}");
    for ws in [&mut ann_ws, &mut bob_ws] {
        let event = ws.next_event("chat:member-joined").await;
        assert_eq!(event, json!({"thread_id": thread, "user_id": carl.id}));
    }
    carl_ws.assert_no_event("chat:member-joined").await;

    let again = app.admin_post(&path, json!({"user_id": carl.id})).await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.error_code(), "conflict");

    let removed = app
        .admin_delete(&format!("/admin/threads/{thread}/members/{}", carl.id))
        .await;
    assert_eq!(removed.status, 204, "{removed:?}");
    let left = carl_ws.next_event("chat:thread-left").await;
    assert_eq!(left, json!({"thread_id": thread}));
    for ws in [&mut ann_ws, &mut bob_ws] {
        let event = ws.next_event("chat:member-left").await;
        assert_eq!(event, json!({"thread_id": thread, "user_id": carl.id}));
    }
    assert_eq!(
        app.db()
            .await
            .count(&format!(
                "SELECT count(*) FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}'",
                carl.id
            ))
            .await,
        0
    );

    // Carl hears nothing of the thread any more.
    let sent = ann_ws.send_message(thread, "without carl").await;
    assert_eq!(bob_ws.next_event("chat:message").await["message"], sent);
    carl_ws.assert_no_event("chat:message").await;
}

#[actix_web::test]
async fn operator_membership_changes_need_a_known_thread_and_user() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let nowhere = Uuid::new_v4();

    let add = app
        .admin_post(
            &format!("/admin/threads/{nowhere}/members"),
            json!({"user_id": carl.id}),
        )
        .await;
    assert_eq!(add.status, 404, "{add:?}");
    assert_eq!(add.error_code(), "not_found");
    let remove = app
        .admin_delete(&format!("/admin/threads/{nowhere}/members/{}", ann.id))
        .await;
    assert_eq!(remove.status, 404, "{remove:?}");
    assert_eq!(remove.error_code(), "not_found");

    let unknown_user = app
        .admin_post(
            &format!("/admin/threads/{thread}/members"),
            json!({"user_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(unknown_user.status, 404, "{unknown_user:?}");
    let foreign = app.user(app.company().await).await;
    let foreign_user = app
        .admin_post(
            &format!("/admin/threads/{thread}/members"),
            json!({"user_id": foreign.id}),
        )
        .await;
    assert_eq!(foreign_user.status, 404, "{foreign_user:?}");
    let not_member = app
        .admin_delete(&format!("/admin/threads/{thread}/members/{}", carl.id))
        .await;
    assert_eq!(not_member.status, 404, "{not_member:?}");

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

// ---- moderation ---------------------------------------------------------

#[actix_web::test]
async fn an_operator_deletes_any_message_as_a_tombstone_seen_live() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let message = bob_ws.send_message(thread, "spam").await;
    ann_ws.next_event("chat:message").await;
    let id = uuid(&message["id"]);

    let reply = app.admin_delete(&format!("/admin/messages/{id}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let tombstone = &reply.body;
    assert_eq!(uuid(&tombstone["id"]), id);
    assert_eq!(tombstone["seq"], message["seq"]);
    assert!(tombstone["body"].is_null(), "{tombstone}");
    assert!(tombstone["metadata"].is_null(), "{tombstone}");
    rfc3339_millis(&tombstone["deleted_at"]);

    for ws in [&mut ann_ws, &mut bob_ws] {
        let event = ws.next_event("chat:message-deleted").await;
        assert_eq!(
            event,
            json!({"thread_id": thread, "message_id": id, "seq": message["seq"],
                   "deleted_at": tombstone["deleted_at"], "rev": 2})
        );
    }
    assert_eq!(
        app.db()
            .await
            .count(&format!(
                "SELECT count(*) FROM messages WHERE id = '{id}' AND body IS NULL AND deleted_at IS NOT NULL"
            ))
            .await,
        1
    );

    let unknown = app
        .admin_delete(&format!("/admin/messages/{}", Uuid::new_v4()))
        .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.error_code(), "not_found");
    let bad = app.admin_delete("/admin/messages/not-a-uuid").await;
    assert_eq!(bad.status, 400, "{bad:?}");
}

// ---- stats --------------------------------------------------------------

#[actix_web::test]
async fn stats_count_the_connected_sessions_and_online_users() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    app.group(&[ann, bob]).await;

    let idle = stats(&app).await;
    for key in [
        "sessions",
        "users_online",
        "live_threads",
        "messages_persisted",
    ] {
        assert!(idle[key].is_u64(), "{key} in {idle}");
    }
    assert!(idle["queues"].is_object(), "{idle}");
    assert_eq!(idle["sessions"], 0, "{idle}");
    assert_eq!(idle["users_online"], 0, "{idle}");
    assert_eq!(idle["live_threads"], 0, "{idle}");

    let mut ann_phone = app.connect(ann).await;
    let _ann_laptop = app.connect(ann).await;
    let bob_ws = app.connect(bob).await;
    let busy = stats(&app).await;
    assert_eq!(busy["sessions"], 3, "{busy}");
    assert_eq!(busy["users_online"], 2, "{busy}");
    assert_eq!(busy["live_threads"], 1, "{busy}");

    bob_ws.close().await;
    // Bob's last session is gone once Ann is told he is offline.
    let presence = ann_phone
        .wait_for(
            |f| f["event"] == "chat:presence" && f["data"]["online"] == false,
            "bob going offline",
        )
        .await;
    assert_eq!(uuid(&presence["data"]["user_id"]), bob.id);
    let later = stats(&app).await;
    assert_eq!(later["sessions"], 2, "{later}");
    assert_eq!(later["users_online"], 1, "{later}");
}

#[actix_web::test]
async fn stats_messages_persisted_grows_with_each_message() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ws = app.connect(&users[0]).await;

    let before = stats(&app).await["messages_persisted"]
        .as_u64()
        .expect("messages_persisted");
    for i in 0..3 {
        ws.send_message(thread, &format!("m{i}")).await;
    }
    let after = stats(&app).await["messages_persisted"]
        .as_u64()
        .expect("messages_persisted");
    // The figure is the process's counter; other servers in this test
    // process may add to it, never take from it.
    assert!(
        after >= before + 3,
        "messages_persisted went from {before} to {after} after 3 sends"
    );
}

// ---- authentication -----------------------------------------------------

#[actix_web::test]
async fn every_admin_endpoint_refuses_a_user_token_or_none_with_401() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let message = ann_ws.send_message(thread, "stays").await;
    let message_id = uuid(&message["id"]);
    let company = ann.company_id;

    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/admin/companies".into(),
            Some(json!({"name": "Evil"})),
        ),
        (
            Method::POST,
            "/admin/users".into(),
            Some(json!({"company_id": company, "display_name": "Mallory"})),
        ),
        (
            Method::POST,
            format!("/admin/users/{}/tokens", carl.id),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/admin/threads".into(),
            Some(json!({"company_id": company, "member_ids": [ann.id, carl.id]})),
        ),
        (
            Method::POST,
            format!("/admin/threads/{thread}/members"),
            Some(json!({"user_id": carl.id})),
        ),
        (
            Method::DELETE,
            format!("/admin/threads/{thread}/members/{}", bob.id),
            None,
        ),
        (
            Method::DELETE,
            format!("/admin/messages/{message_id}"),
            None,
        ),
        (Method::GET, "/admin/stats".into(), None),
    ];
    let wrong_admin = format!("{}x", app.admin_token);
    for (what, token) in [
        ("a user token", Some(ann.token.as_str())),
        ("no token", None),
        ("a wrong admin token", Some(wrong_admin.as_str())),
    ] {
        for (method, path, body) in &endpoints {
            let reply = app.request(method.clone(), path, token, body.clone()).await;
            assert_eq!(reply.status, 401, "{what} on {method} {path}: {reply:?}");
            assert_eq!(
                reply.error_code(),
                "unauthorized",
                "{what} on {method} {path}: {reply:?}"
            );
        }
    }

    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM companies").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM users").await, 3);
    assert_eq!(db.count("SELECT count(*) FROM threads").await, 1);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE thread_id = '{thread}'"
        ))
        .await,
        2
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE id = '{message_id}' AND deleted_at IS NULL"
        ))
        .await,
        1
    );
}
