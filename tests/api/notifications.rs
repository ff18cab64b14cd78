//! Notifications of unread messages: each test has a real Web Push service
//! on a local port (`support::push_service`) and a "browser" holding the
//! subscription's keys, which decrypts what arrives and checks its VAPID
//! signature, as a push service and a browser would.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use crate::support::child::{ChildConfig, ChildServer};
use crate::support::push_service::{assert_vapid, Browser, PushService};
use crate::support::receiver::Receiver;
use crate::support::{spawn_app_with, TestApp, TestUser};

const DELAY_MS: u64 = 300;

async fn app() -> TestApp {
    app_with_delay(DELAY_MS).await
}

async fn app_with_delay(delay_ms: u64) -> TestApp {
    spawn_app_with(|s| {
        s.notifications.delay_ms = delay_ms;
        s.webhooks.poll_interval_ms = 100;
    })
    .await
}

/// The served VAPID key.
async fn vapid_key(base: &str, user: &TestUser) -> String {
    let reply = crate::support::http_request(
        base,
        reqwest::Method::GET,
        "/api/push/vapid-public-key",
        Some(&user.token),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["key"].as_str().expect("a key").to_string()
}

/// Subscribes `user` from a new browser on `service`.
async fn subscribe(base: &str, user: &TestUser, service: &PushService) -> (Browser, Uuid) {
    let browser = Browser::new(service.endpoint());
    let reply = crate::support::http_request(
        base,
        reqwest::Method::POST,
        "/api/push-subscriptions",
        Some(&user.token),
        Some(browser.subscription()),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let id = crate::support::uuid(&reply.body["id"]);
    (browser, id)
}

async fn pending_rows(app: &TestApp, user: &TestUser) -> i64 {
    app.db()
        .await
        .count(&format!(
            "SELECT count(*) FROM pending_notifications WHERE user_id = '{}'",
            user.id
        ))
        .await
}

/// Polls the database until `sql` counts `want` (a state with no event to
/// wait on).
async fn await_count(app: &TestApp, sql: &str, want: i64) {
    let mut db = app.db().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while db.count(sql).await != want {
        assert!(Instant::now() < deadline, "{sql} never counted {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_member_offline_at_commit_gets_an_encrypted_signed_push_after_the_delay() {
    let app = app().await;
    let mut service = PushService::start().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let key = vapid_key(&app.base, bob).await;
    let (browser, _) = subscribe(&app.base, bob, &service).await;

    let mut ws = app.connect(ann).await;
    let sent_at = Instant::now();
    ws.send_message(thread, "lunch at noon?").await;
    let push = service.next().await;
    assert!(
        sent_at.elapsed() >= Duration::from_millis(DELAY_MS - 50),
        "not before the delay: {:?}",
        sent_at.elapsed()
    );
    assert_eq!(
        push.path,
        browser.endpoint.trim_start_matches(&service.origin)
    );
    assert_vapid(&push, &key, &service.origin);
    assert!(push.header("ttl").parse::<u32>().is_ok(), "{push:?}");
    assert_eq!(push.header("topic"), thread.simple().to_string());
    assert_eq!(
        browser.decrypt(&push),
        json!({"thread_id": thread, "seq": 1, "title": "team", "body": "user0: lunch at noon?"})
    );
    // Told once: the row waits for news, and nothing more comes.
    await_count(
        &app,
        &format!(
            "SELECT count(*) FROM pending_notifications WHERE user_id = '{}' AND due_at IS NULL",
            bob.id
        ),
        1,
    )
    .await;
    assert!(service.already_arrived().is_none());
}

#[actix_web::test]
async fn a_member_online_at_commit_is_not_notified() {
    let app = app().await;
    let mut service = PushService::start().await;
    let users = app.users(3).await;
    let (ann, bob, cat) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob, cat]).await;
    let (_bob_browser, _) = subscribe(&app.base, bob, &service).await;
    let (cat_browser, _) = subscribe(&app.base, cat, &service).await;

    let _bob_ws = app.connect(bob).await;
    let mut ws = app.connect(ann).await;
    ws.send_message(thread, "hi").await;
    // Decided in the send's transaction: Bob had a session, Cat had none.
    assert_eq!(pending_rows(&app, bob).await, 0);
    assert_eq!(pending_rows(&app, cat).await, 1);
    let push = service.next().await;
    assert_eq!(
        push.path,
        cat_browser.endpoint.trim_start_matches(&service.origin)
    );
    assert!(service.already_arrived().is_none(), "Bob was online");
}

#[actix_web::test]
async fn reading_before_the_delay_cancels_the_notification() {
    let app = app_with_delay(1_000).await;
    let mut service = PushService::start().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    subscribe(&app.base, bob, &service).await;

    let mut ws = app.connect(ann).await;
    ws.send_message(thread, "one").await;
    ws.send_message(thread, "two").await;
    assert_eq!(pending_rows(&app, bob).await, 1);
    // Bob comes online after the commit and reads both.
    let mut bob_ws = app.connect(bob).await;
    let ack = bob_ws
        .request(
            "chat:mark-read",
            json!({"thread_id": thread, "up_to_seq": 2}),
        )
        .await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    // When the row falls due the worker finds it read and drops it.
    await_count(
        &app,
        &format!(
            "SELECT count(*) FROM pending_notifications WHERE user_id = '{}'",
            bob.id
        ),
        0,
    )
    .await;
    assert!(service.already_arrived().is_none(), "nothing was sent");
}

#[actix_web::test]
async fn one_notification_covers_every_unread_message_and_is_a_user_notified_webhook_event() {
    let app = app_with_delay(1_000).await;
    let mut service = PushService::start().await;
    let mut hook = Receiver::start().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let reply = app
        .admin_post(
            "/admin/webhooks",
            json!({"company_id": ann.company_id, "url": hook.url, "events": ["user.notified"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let thread = app.group(&[ann, bob]).await;
    let (browser, _) = subscribe(&app.base, bob, &service).await;

    let mut ws = app.connect(ann).await;
    for body in ["one", "two", "three"] {
        ws.send_message(thread, body).await;
    }
    let push = service.next().await;
    let payload = browser.decrypt(&push);
    assert_eq!(payload["seq"], 3, "the newest message: {payload}");
    assert_eq!(payload["body"], "user0: three");

    let event = hook.next().await;
    assert_eq!(event.json["type"], "user.notified");
    assert_eq!(event.json["company_id"], ann.company_id.to_string());
    assert_eq!(
        event.json["data"],
        json!({"user_id": bob.id, "thread_id": thread, "seqs": [1, 2, 3], "mentioned": false})
    );
    assert!(
        service.already_arrived().is_none(),
        "one push for three messages"
    );
}

#[actix_web::test]
async fn a_mentioned_member_is_notified_even_when_online() {
    let app = app().await;
    let mut service = PushService::start().await;
    let mut hook = Receiver::start().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let reply = app
        .admin_post(
            "/admin/webhooks",
            json!({"company_id": ann.company_id, "url": hook.url, "events": ["user.notified"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let thread = app.group(&[ann, bob]).await;
    let (browser, _) = subscribe(&app.base, bob, &service).await;

    let _bob_ws = app.connect(bob).await;
    let mut ws = app.connect(ann).await;
    let reply = ws
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(),
                   "body": "@user1 look", "mentions": [bob.id]}),
        )
        .await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    let push = service.next().await;
    assert_eq!(browser.decrypt(&push)["seq"], 1);
    let event = hook.next().await;
    assert_eq!(event.json["data"]["mentioned"], true);
}

#[actix_web::test]
async fn a_push_service_answering_410_removes_the_subscription() {
    let app = app().await;
    let mut service = PushService::start().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let (browser, id) = subscribe(&app.base, bob, &service).await;
    service.answer(&browser.endpoint, 410);

    let mut ws = app.connect(ann).await;
    ws.send_message(thread, "anyone?").await;
    service.next().await;
    await_count(
        &app,
        &format!("SELECT count(*) FROM push_subscriptions WHERE id = '{id}'"),
        0,
    )
    .await;
    // The counters are the process's, shared with the tests running beside
    // this one: at least this test's.
    let scrape = crate::support::metrics::scrape(&app.base).await;
    assert!(scrape.value("confab_push_deliveries_total", &[("outcome", "gone")]) >= 1.0);
    assert!(scrape.value("confab_notifications_sent_total", &[]) >= 1.0);
}

#[actix_web::test]
async fn subscriptions_are_the_users_own_and_endpoints_keep_the_address_rule() {
    let app = spawn_app_with(|s| s.webhooks.allow_private = false).await;
    let ann = &app.users(1).await[0];
    let browser = |endpoint: &str| Browser::new(endpoint.to_string()).subscription();
    for endpoint in [
        "https://127.0.0.1:8443/push/x",
        "https://localhost/push/x",
        "https://[::1]/push/x",
        "https://169.254.169.254/latest",
        "http://push.example.com/push/x",
        "ftp://push.example.com/x",
    ] {
        let reply = app
            .post("/api/push-subscriptions", &ann.token, browser(endpoint))
            .await;
        assert_eq!(reply.status, 400, "{endpoint}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request");
    }
    let mut bad_keys = browser("https://push.example.com/x");
    bad_keys["keys"]["auth"] = json!("c2hvcnQ");
    let reply = app
        .post("/api/push-subscriptions", &ann.token, bad_keys)
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");

    // With private addresses allowed (as the other tests run), one is
    // made; only its owner can remove it.
    let open = app_with_delay(DELAY_MS).await;
    let users = open.users(2).await;
    let service = PushService::start().await;
    let (_, id) = subscribe(&open.base, &users[0], &service).await;
    let path = format!("/api/push-subscriptions/{id}");
    assert_eq!(open.delete(&path, &users[1].token).await.status, 404);
    assert_eq!(open.delete(&path, &users[0].token).await.status, 204);
    assert_eq!(open.delete(&path, &users[0].token).await.status, 404);

    // Ten browsers at most: the eleventh replaces the oldest.
    let mut ids = Vec::new();
    for _ in 0..11 {
        ids.push(subscribe(&open.base, &users[1], &service).await.1);
    }
    let mut db = open.db().await;
    let kept = format!(
        "SELECT count(*) FROM push_subscriptions WHERE user_id = '{}'",
        users[1].id
    );
    assert_eq!(db.count(&kept).await, 10);
    let first = format!(
        "SELECT count(*) FROM push_subscriptions WHERE id = '{}'",
        ids[0]
    );
    assert_eq!(db.count(&first).await, 0, "the oldest went");
}

// ---- the real binary: a restart, and two nodes --------------------------

fn child_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CONFAB_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("CONFAB_WEBHOOKS_POLL_INTERVAL_MS", "100"),
        ("CONFAB_WORKERS", "1"),
        ("CONFAB_DB_POOL_SIZE", "4"),
    ]
}

#[actix_web::test]
async fn a_notification_due_across_a_restart_is_still_sent() {
    let mut env = child_env();
    env.push(("CONFAB_NOTIFICATIONS_DELAY_MS", "2000"));
    let config = ChildConfig::new(&env);
    let mut service = PushService::start().await;
    let mut node = config.start().await;
    let users: Vec<TestUser> = node.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = node.group(&[ann, bob]).await;
    let (browser, _) = subscribe(&node.base, bob, &service).await;

    let mut ws = node.connect(ann).await;
    ws.send_message(thread, "before the crash").await;
    let mut db = config.db.connect().await;
    assert_eq!(
        db.count("SELECT count(*) FROM pending_notifications WHERE due_at IS NOT NULL")
            .await,
        1
    );
    node.process.kill().await;
    assert!(
        service.already_arrived().is_none(),
        "killed within the delay"
    );

    let _restarted: ChildServer = config.start().await;
    let push = service.next().await;
    assert_eq!(browser.decrypt(&push)["body"], "user0: before the crash");
}

#[actix_web::test]
async fn a_member_online_on_another_node_only_is_not_notified() {
    let mut config = crate::cluster::cluster_config();
    for (key, value) in child_env() {
        config.env.push((key.into(), value.into()));
    }
    config
        .env
        .push(("CONFAB_NOTIFICATIONS_DELAY_MS".into(), DELAY_MS.to_string()));
    let mut service = PushService::start().await;
    let nodes = crate::cluster::start_cluster(&mut config, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let users = a.users(3).await;
    let (ann, bob, cat) = (&users[0], &users[1], &users[2]);
    let thread = a.group(&[ann, bob, cat]).await;
    subscribe(&a.base, bob, &service).await;
    let (cat_browser, _) = subscribe(&a.base, cat, &service).await;

    let mut ann_ws = a.connect(ann).await;
    let _bob_ws = b.connect(bob).await;
    // Node A knows Bob is online (on B): Ann hears it from A.
    ann_ws
        .wait_for(
            |f| f["event"] == "chat:presence" && f["data"]["user_id"] == bob.id.to_string(),
            "Bob's presence from node B",
        )
        .await;
    ann_ws.send_message(thread, "who is around?").await;
    let mut db = config.db.connect().await;
    let rows = |user: &TestUser| {
        format!(
            "SELECT count(*) FROM pending_notifications WHERE user_id = '{}'",
            user.id
        )
    };
    assert_eq!(db.count(&rows(bob)).await, 0, "Bob was online on node B");
    assert_eq!(db.count(&rows(cat)).await, 1, "Cat was online nowhere");
    let push = service.next().await;
    assert_eq!(
        push.path,
        cat_browser.endpoint.trim_start_matches(&service.origin)
    );
    assert!(service.already_arrived().is_none());
}
