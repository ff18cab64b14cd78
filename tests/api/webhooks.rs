//! Webhooks: each test delivers to a real HTTP endpoint on a local port
//! (`support::receiver`) and checks what arrives there, signature and all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::time::Instant;
use uuid::Uuid;

use crate::support::child::{ChildConfig, ChildServer};
use crate::support::receiver::{Received, Receiver};
use crate::support::{spawn_app_with, TestApp, TestUser};

const ALL_EVENTS: [&str; 8] = [
    "message.created",
    "message.edited",
    "message.deleted",
    "reaction.changed",
    "thread.created",
    "member.joined",
    "member.left",
    "user.notified",
];

/// An app whose dispatcher polls often, so retries are prompt.
async fn app() -> TestApp {
    spawn_app_with(|s| s.webhooks.poll_interval_ms = 100).await
}

async fn create_webhook(app: &TestApp, company: Uuid, url: &str, events: &[&str]) -> Value {
    let reply = app
        .admin_post(
            "/admin/webhooks",
            json!({"company_id": company, "url": url, "events": events}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body
}

/// Checks `Confab-Signature` the way a host application would.
fn assert_signed(request: &Received, secret: &str) {
    let header = request.header("confab-signature");
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("a signature header like t=..,v1=..: {header:?}"));
    let sent_at: i64 = t.parse().expect("t is unix seconds");
    let now = chrono::Utc::now().timestamp();
    assert!((now - sent_at).abs() < 60, "t={t} is now");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", request.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "the signature verifies with the secret");
}

fn thread_of(request: &Received) -> Value {
    let data = &request.json["data"];
    if data["message"].is_object() {
        data["message"]["thread_id"].clone()
    } else {
        data["thread_id"].clone()
    }
}

#[actix_web::test]
async fn every_event_type_arrives_signed_with_the_data_the_websocket_shows() {
    let app = app().await;
    let mut receiver = Receiver::start().await;
    let users = app.users(3).await;
    let (a, c) = (&users[0], &users[2]);
    let company = a.company_id;
    let hook = create_webhook(&app, company, &receiver.url, &ALL_EVENTS).await;
    let secret = hook["secret"].as_str().unwrap().to_string();

    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ws = app.connect(a).await;
    let message = ws.send_message(thread, "hello hooks").await;
    let message_id = message["id"].as_str().unwrap().to_string();
    let edited = app
        .patch(
            &format!("/api/messages/{message_id}"),
            &a.token,
            json!({"body": "hello again"}),
        )
        .await;
    assert_eq!(edited.status, 200, "{edited:?}");
    let deleted = app
        .delete(&format!("/api/messages/{message_id}"), &a.token)
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let joined = app
        .admin_post(
            &format!("/admin/threads/{thread}/members"),
            json!({"user_id": c.id}),
        )
        .await;
    assert_eq!(joined.status, 201, "{joined:?}");
    let left = app
        .admin_delete(&format!("/admin/threads/{thread}/members/{}", c.id))
        .await;
    assert_eq!(left.status, 204, "{left:?}");

    let got = receiver
        .collect_until(Duration::from_secs(20), |r| r.len() == 6)
        .await;
    let types: Vec<&str> = got
        .iter()
        .map(|r| r.json["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "thread.created",
            "message.created",
            "message.edited",
            "message.deleted",
            "member.joined",
            "member.left"
        ],
        "one thread's events arrive in commit order"
    );
    for request in &got {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("confab-event-id"), request.json["id"]);
        assert_eq!(request.json["company_id"], company.to_string());
        assert!(
            chrono::DateTime::parse_from_rfc3339(request.json["created_at"].as_str().unwrap())
                .is_ok()
        );
        assert_signed(request, &secret);
    }
    let data = |i: usize| &got[i].json["data"];
    assert_eq!(data(0)["thread"]["id"], thread.to_string());
    let mut members: Vec<String> = data(0)["member_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    members.sort();
    let mut expected = vec![users[0].id.to_string(), users[1].id.to_string()];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(
        data(1),
        &json!({"message": message}),
        "as chat:message shows it"
    );
    assert_eq!(data(2)["message"]["body"], "hello again");
    assert_eq!(data(2), &json!({"message": edited.body}));
    assert_eq!(data(3)["message_id"], message_id.as_str());
    assert_eq!(data(3)["seq"], message["seq"]);
    assert_eq!(data(3)["deleted_at"], deleted.body["deleted_at"]);
    let membership = json!({"thread_id": thread, "user_id": c.id});
    assert_eq!(data(4), &membership);
    assert_eq!(data(5), &membership);
    let ids: std::collections::HashSet<&str> =
        got.iter().map(|r| r.json["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 6, "every event has its own id");
}

#[actix_web::test]
async fn a_webhook_hears_only_its_types_of_its_own_company() {
    let app = app().await;
    let mut receiver = Receiver::start().await;
    let ours = app.users(2).await;
    let theirs = app.users(2).await;
    create_webhook(
        &app,
        ours[0].company_id,
        &receiver.url,
        &["message.created"],
    )
    .await;
    let our_thread = app.group(&[&ours[0], &ours[1]]).await;
    let their_thread = app.group(&[&theirs[0], &theirs[1]]).await;

    let mut them = app.connect(&theirs[0]).await;
    them.send_message(their_thread, "not yours").await;
    let mut us = app.connect(&ours[0]).await;
    let sent = us.send_message(our_thread, "yours").await;
    let first = receiver.next().await;
    assert_eq!(first.json["type"], "message.created");
    assert_eq!(first.json["data"]["message"], sent);
    // Not the other company's message, and not the thread's creation.
    receiver.assert_quiet(Duration::from_millis(500)).await;
}

#[actix_web::test]
async fn a_refused_delivery_is_retried_with_backoff_and_the_same_event_id() {
    let app = app().await;
    let mut receiver = Receiver::start().await;
    let users = app.users(2).await;
    let hook = create_webhook(
        &app,
        users[0].company_id,
        &receiver.url,
        &["message.created"],
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    receiver.answer_with(move |_| (counter.fetch_add(1, Ordering::SeqCst) < 2).then_some(500));
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ws = app.connect(&users[0]).await;
    ws.send_message(thread, "try, try again").await;

    let mut attempts = Vec::new();
    for _ in 0..3 {
        let request = receiver.next().await;
        attempts.push((Instant::now(), request));
    }
    let id = attempts[0].1.json["id"].clone();
    for (_, request) in &attempts {
        assert_eq!(request.json["id"], id, "the same event every time");
        assert_eq!(request.header("confab-event-id"), id);
        assert_signed(request, hook["secret"].as_str().unwrap());
    }
    let first_wait = attempts[1].0 - attempts[0].0;
    let second_wait = attempts[2].0 - attempts[1].0;
    assert!(first_wait >= Duration::from_millis(900), "{first_wait:?}");
    assert!(
        second_wait >= Duration::from_millis(1900),
        "{second_wait:?}"
    );
    receiver.assert_quiet(Duration::from_millis(500)).await;

    // The log says so too, once the third attempt is settled.
    let path = format!(
        "/admin/webhooks/{}/deliveries",
        hook["id"].as_str().unwrap()
    );
    let log = wait_for_delivery(&app, &path).await;
    let entry = &log["deliveries"][0];
    assert_eq!(entry["event_id"], id);
    assert_eq!(entry["type"], "message.created");
    assert_eq!(entry["attempts"], 3);
    assert_eq!(entry["last_status"], 200);
    assert_eq!(entry["next_attempt_at"], Value::Null);

    let metrics = app
        .request(Method::GET, "/metrics", None, None)
        .await
        .body
        .as_str()
        .unwrap_or_default()
        .to_string();
    for series in [
        "confab_webhook_deliveries_total",
        "confab_webhook_failed_attempts_total",
        "confab_webhook_events_pending",
        "confab_webhook_oldest_pending_seconds",
    ] {
        assert!(metrics.contains(series), "{series} in /metrics");
    }
}

/// Polls the delivery log until its newest entry is delivered.
async fn wait_for_delivery(app: &TestApp, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = app.get(path, &app.admin_token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if !reply.body["deliveries"][0]["delivered_at"].is_null() {
            return reply.body;
        }
        assert!(Instant::now() < deadline, "never delivered: {reply:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_failing_thread_holds_back_only_its_own_later_events() {
    let app = app().await;
    let mut receiver = Receiver::start().await;
    let users = app.users(2).await;
    create_webhook(
        &app,
        users[0].company_id,
        &receiver.url,
        &["message.created"],
    )
    .await;
    let stuck = app.group(&[&users[0], &users[1]]).await;
    let flowing = app.group(&[&users[0], &users[1]]).await;
    let stuck_id = json!(stuck);
    receiver.answer_with(move |r| (thread_of(r) == stuck_id).then_some(503));

    let mut ws = app.connect(&users[0]).await;
    let s1 = ws.send_message(stuck, "s1").await;
    let s2 = ws.send_message(stuck, "s2").await;
    let mut flowed = Vec::new();
    for i in 1..=3 {
        flowed.push(ws.send_message(flowing, &format!("f{i}")).await);
    }
    let got = receiver
        .collect_until(Duration::from_secs(10), |r| {
            r.iter().filter(|r| thread_of(r) == json!(flowing)).count() == 3
        })
        .await;
    let flowing_got: Vec<&Value> = got
        .iter()
        .filter(|r| thread_of(r) == json!(flowing))
        .map(|r| &r.json["data"]["message"])
        .collect();
    assert_eq!(
        flowing_got,
        flowed.iter().collect::<Vec<_>>(),
        "the other thread flows, in order"
    );
    for request in got.iter().filter(|r| thread_of(r) == json!(stuck)) {
        assert_eq!(
            request.json["data"]["message"], s1,
            "s2 waits while s1 fails"
        );
    }

    receiver.answer_ok();
    let rest = receiver
        .collect_until(Duration::from_secs(20), |r| {
            r.iter().any(|r| r.json["data"]["message"] == s2)
        })
        .await;
    let bodies: Vec<&Value> = rest.iter().map(|r| &r.json["data"]["message"]).collect();
    let last = bodies.len() - 1;
    assert_eq!(bodies[last], &s2);
    assert!(
        last >= 1 && bodies[last - 1] == &s1,
        "s1 is delivered before s2: {bodies:#?}"
    );
    assert!(bodies[..last].iter().all(|b| *b == &s1), "{bodies:#?}");
    receiver.assert_quiet(Duration::from_millis(500)).await;
}

#[actix_web::test]
async fn without_allow_private_inward_urls_are_refused_at_creation_and_at_delivery() {
    let app = spawn_app_with(|s| {
        s.webhooks.allow_private = false;
        s.webhooks.poll_interval_ms = 100;
    })
    .await;
    let mut receiver = Receiver::start().await;
    let users = app.users(2).await;
    let company = users[0].company_id;
    for url in [
        receiver.url.as_str(),
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hook",
    ] {
        let reply = app
            .admin_post(
                "/admin/webhooks",
                json!({"company_id": company, "url": url, "events": ["message.created"]}),
            )
            .await;
        assert_eq!(reply.status, 400, "{url}: {reply:?}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not a public address"),
            "{reply:?}"
        );
    }

    // A name that pointed outward when the webhook was made and inward
    // now (stored directly, as DNS would have changed under it) is
    // refused when it resolves at delivery.
    let inward = receiver.url.replace("127.0.0.1", "localhost");
    let hook = Uuid::new_v4();
    app.db()
        .await
        .exec(&format!(
            "INSERT INTO webhooks (id, company_id, url, events, secret)
             VALUES ('{hook}', '{company}', '{inward}', ARRAY['message.created'], 'secret')"
        ))
        .await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    app.connect(&users[0])
        .await
        .send_message(thread, "psst")
        .await;
    let path = format!("/admin/webhooks/{hook}/deliveries");
    let deadline = Instant::now() + Duration::from_secs(10);
    let entry = loop {
        let reply = app.get(&path, &app.admin_token).await;
        let entry = reply.body["deliveries"][0].clone();
        if entry["attempts"].as_i64().unwrap_or(0) >= 1 {
            break entry;
        }
        assert!(Instant::now() < deadline, "no attempt: {reply:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{entry}"
    );
    assert_eq!(entry["last_status"], Value::Null);
    assert_eq!(entry["delivered_at"], Value::Null);
    assert!(
        entry["next_attempt_at"].is_string(),
        "retried later: {entry}"
    );
    receiver.assert_quiet(Duration::from_millis(300)).await;
}

#[actix_web::test]
async fn the_admin_endpoints_validate_what_they_take_and_hide_what_is_not_there() {
    let app = app().await;
    let receiver = Receiver::start().await;
    let company = app.company().await;
    let post = |body: Value| {
        let app = &app;
        async move { app.admin_post("/admin/webhooks", body).await }
    };
    for (body, status) in [
        (
            json!({"company_id": company, "url": "ftp://example.com/", "events": ["member.left"]}),
            400,
        ),
        (
            json!({"company_id": company, "url": "not a url", "events": ["member.left"]}),
            400,
        ),
        (
            json!({"company_id": company, "url": receiver.url, "events": []}),
            400,
        ),
        (
            json!({"company_id": company, "url": receiver.url, "events": ["message.exploded"]}),
            400,
        ),
        (json!({"company_id": company, "url": receiver.url}), 400),
        (
            json!({"company_id": "nope", "url": receiver.url, "events": ["member.left"]}),
            400,
        ),
        (
            json!({"company_id": Uuid::new_v4(), "url": receiver.url, "events": ["member.left"]}),
            404,
        ),
    ] {
        let reply = post(body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {reply:?}");
    }
    let user = app.user(company).await;
    let as_user = app
        .post(
            "/admin/webhooks",
            &user.token,
            json!({"company_id": company, "url": receiver.url, "events": ["member.left"]}),
        )
        .await;
    assert_eq!(as_user.status, 401);

    let hook = create_webhook(
        &app,
        company,
        &receiver.url,
        &["member.left", "message.created", "member.left"],
    )
    .await;
    assert_eq!(hook["company_id"], company.to_string());
    assert_eq!(hook["url"], receiver.url);
    assert_eq!(hook["events"], json!(["member.left", "message.created"]));
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.len() == 64 && secret.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(hook["created_at"].is_string());
    let id = hook["id"].as_str().unwrap();

    let admin = app.admin_token.clone();
    let list = app
        .get(&format!("/admin/webhooks?company_id={company}"), &admin)
        .await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body, json!({"webhooks": [hook]}));
    let other = app.company().await;
    let none = app
        .get(&format!("/admin/webhooks?company_id={other}"), &admin)
        .await;
    assert_eq!(none.body, json!({"webhooks": []}));
    for (path, status) in [
        (
            format!("/admin/webhooks?company_id={}", Uuid::new_v4()),
            404,
        ),
        ("/admin/webhooks".to_string(), 400),
        (format!("/admin/webhooks/{id}/deliveries"), 200),
        (format!("/admin/webhooks/{id}/deliveries?limit=200"), 200),
        (format!("/admin/webhooks/{id}/deliveries?limit=0"), 400),
        (format!("/admin/webhooks/{id}/deliveries?limit=201"), 400),
        (
            format!("/admin/webhooks/{}/deliveries", Uuid::new_v4()),
            404,
        ),
        ("/admin/webhooks/nope/deliveries".to_string(), 400),
    ] {
        let reply = app.get(&path, &admin).await;
        assert_eq!(reply.status, status, "{path}: {reply:?}");
    }
    let empty = app
        .get(&format!("/admin/webhooks/{id}/deliveries"), &admin)
        .await;
    assert_eq!(empty.body, json!({"deliveries": []}));

    assert_eq!(
        app.admin_delete(&format!("/admin/webhooks/{}", Uuid::new_v4()))
            .await
            .status,
        404
    );
    assert_eq!(app.admin_delete("/admin/webhooks/nope").await.status, 400);
    assert_eq!(
        app.admin_delete(&format!("/admin/webhooks/{id}"))
            .await
            .status,
        204
    );
    assert_eq!(
        app.admin_delete(&format!("/admin/webhooks/{id}"))
            .await
            .status,
        404
    );
    let gone = app
        .get(&format!("/admin/webhooks/{id}/deliveries"), &admin)
        .await;
    assert_eq!(gone.status, 404);
    let list = app
        .get(&format!("/admin/webhooks?company_id={company}"), &admin)
        .await;
    assert_eq!(list.body, json!({"webhooks": []}));
}

// ---- the real binary: restarts and two nodes ---------------------------

fn child_config() -> ChildConfig {
    ChildConfig::new(&[
        ("CONFAB_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("CONFAB_WEBHOOKS_POLL_INTERVAL_MS", "100"),
        ("CONFAB_WORKERS", "1"),
        ("CONFAB_DB_POOL_SIZE", "4"),
    ])
}

async fn child_webhook(node: &ChildServer, company: Uuid, url: &str) {
    let reply = node
        .admin_post(
            "/admin/webhooks",
            json!({"company_id": company, "url": url, "events": ["message.created"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
}

fn message_ids(requests: &[Received]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            r.json["data"]["message"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[actix_web::test]
async fn events_pending_when_confab_is_killed_mid_delivery_arrive_after_the_restart() {
    let config = child_config();
    let mut receiver = Receiver::start().await;
    let mut node = config.start().await;
    let users: Vec<TestUser> = node.users(2).await;
    child_webhook(&node, users[0].company_id, &receiver.url).await;
    let thread = node.group(&[&users[0], &users[1]]).await;

    receiver.hold(true);
    let mut ws = node.connect(&users[0]).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let message = ws.send_message(thread, &format!("m{i}")).await;
        sent.push(message["id"].as_str().unwrap().to_string());
    }
    // The first is on the wire, unanswered, the rest wait behind it.
    let in_flight = receiver.next().await;
    assert_eq!(message_ids(&[in_flight]), [sent[0].clone()]);
    node.process.kill().await;
    receiver.hold(false);

    let _restarted = config.start().await;
    let got = receiver
        .collect_until(Duration::from_secs(30), |r| {
            let ids = message_ids(r);
            sent.iter().all(|id| ids.contains(id))
        })
        .await;
    let ids = message_ids(&got);
    // At least once: the interrupted one is sent again, then the rest in
    // order.
    let firsts: Vec<&String> = sent
        .iter()
        .map(|id| ids.iter().find(|x| *x == id).unwrap())
        .collect();
    let positions: Vec<usize> = firsts
        .iter()
        .map(|id| ids.iter().position(|x| &x == id).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in thread order: {ids:#?}"
    );
}

#[actix_web::test]
async fn two_nodes_share_the_outbox_and_a_killed_nodes_claim_goes_out_from_the_other() {
    let config = child_config();
    let mut receiver = Receiver::start().await;

    // Node A alone claims the event and is killed mid-delivery; node B,
    // started meanwhile, delivers it.
    let mut a = config.start().await;
    let users: Vec<TestUser> = a.users(2).await;
    child_webhook(&a, users[0].company_id, &receiver.url).await;
    let threads = [
        a.group(&[&users[0], &users[1]]).await,
        a.group(&[&users[0], &users[1]]).await,
        a.group(&[&users[0], &users[1]]).await,
    ];
    receiver.hold(true);
    let claimed = a
        .connect(&users[0])
        .await
        .send_message(threads[0], "claimed by a")
        .await;
    let held = receiver.next().await;
    assert_eq!(held.json["data"]["message"], claimed);
    let b = config.start().await;
    a.process.kill().await;
    receiver.hold(false);
    let again = receiver.next_within(Duration::from_secs(20)).await;
    assert_eq!(again.json["id"], held.json["id"], "the same event, from b");
    receiver.assert_quiet(Duration::from_millis(500)).await;

    // Both live: every event goes out once, each thread in order.
    let a = config.start().await;
    let mut on_a = a.connect(&users[0]).await;
    let mut on_b = b.connect(&users[1]).await;
    let mut sent: Vec<Value> = Vec::new();
    for i in 0..30 {
        let thread = threads[i % 3];
        let message = if i % 2 == 0 {
            on_a.send_message(thread, &format!("n{i}")).await
        } else {
            on_b.send_message(thread, &format!("n{i}")).await
        };
        sent.push(message);
    }
    let got = receiver
        .collect_until(Duration::from_secs(30), |r| r.len() >= sent.len())
        .await;
    receiver.assert_quiet(Duration::from_secs(1)).await;
    assert_eq!(got.len(), sent.len(), "no event twice");
    let mut ids = message_ids(&got);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), sent.len(), "each event exactly once");
    for thread in threads {
        let seqs: Vec<i64> = got
            .iter()
            .filter(|r| r.json["data"]["message"]["thread_id"] == json!(thread))
            .map(|r| r.json["data"]["message"]["seq"].as_i64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
}

#[actix_web::test]
async fn the_delivery_log_forgets_deliveries_made_a_week_ago_and_deleted_webhooks() {
    use diesel_async::{AsyncConnection, AsyncPgConnection};

    let app = app().await;
    let company = app.company().await;
    let hook = create_webhook(&app, company, "http://127.0.0.1:9/hook", &["member.left"]).await;
    let hook = hook["id"].as_str().unwrap();
    let mut db = app.db().await;
    db.exec(&format!(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, type, thread_id, body, delivered_at, failed_at)
         VALUES ('{hook}', gen_random_uuid(), 'member.left', gen_random_uuid(), '{{}}', now() - interval '8 days', NULL),
                ('{hook}', gen_random_uuid(), 'member.left', gen_random_uuid(), '{{}}', now() - interval '6 days', NULL),
                ('{hook}', gen_random_uuid(), 'member.left', gen_random_uuid(), '{{}}', NULL, now() - interval '8 days')"
    ))
    .await;
    let mut conn = AsyncPgConnection::establish(&app.db_url).await.unwrap();
    let pruned = confab::persistence::webhooks::prune_delivered(
        &mut conn,
        confab::webhooks::DELIVERED_KEPT,
        100,
    )
    .await
    .unwrap();
    assert_eq!(pruned, 1, "only the week-old delivered one");
    assert_eq!(
        db.count("SELECT count(*) FROM webhook_deliveries").await,
        2,
        "a recent delivery and a failed one stay"
    );

    // A webhook deleted over a minute ago goes, with its rows.
    db.exec(&format!(
        "UPDATE webhooks SET deleted_at = now() - interval '2 minutes' WHERE id = '{hook}'"
    ))
    .await;
    let purged = confab::persistence::webhooks::purge_deleted(&mut conn, 100)
        .await
        .unwrap();
    assert_eq!(purged, 2);
    assert_eq!(db.count("SELECT count(*) FROM webhooks").await, 0);
}

#[actix_web::test]
async fn a_webhook_is_deleted_at_once_even_while_its_endpoint_hangs() {
    let app = app().await;
    let mut receiver = Receiver::start().await;
    let users = app.users(2).await;
    let hook = create_webhook(
        &app,
        users[0].company_id,
        &receiver.url,
        &["message.created"],
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    let thread = app.group(&[&users[0], &users[1]]).await;
    receiver.hold(true);
    let mut ws = app.connect(&users[0]).await;
    ws.send_message(thread, "into the void").await;
    receiver.next().await;

    // The attempt is on the wire and its row locked; deleting waits for
    // neither.
    let started = Instant::now();
    let deleted = app.admin_delete(&format!("/admin/webhooks/{id}")).await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let log = app
        .get(
            &format!("/admin/webhooks/{id}/deliveries"),
            &app.admin_token,
        )
        .await;
    assert_eq!(log.status, 404);

    receiver.hold(false);
    ws.send_message(thread, "after the deletion").await;
    receiver.assert_quiet(Duration::from_millis(700)).await;
}
