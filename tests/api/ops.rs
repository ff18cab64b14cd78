//! Operations endpoints: liveness, readiness and Prometheus metrics.
//!
//! The metrics registry belongs to the process, and this test binary runs
//! many servers in one process: counters may grow by other tests' work
//! (so they are checked to grow by at least what this test did), and a
//! gauge holds whatever the last server to update it wrote (so it is
//! checked right after this test's server updated it, retrying when another
//! server wrote in between).

use serde_json::json;

use crate::support::{http_client, spawn_app, uuid, TestApp, WsClient};

struct Scrape {
    status: u16,
    content_type: String,
    text: String,
}

async fn scrape(app: &TestApp) -> Scrape {
    let res = http_client()
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("GET /metrics completes");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = res.bytes().await.expect("the metrics body arrives");
    Scrape {
        status,
        content_type,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The value of one sample, `name` including its labels as exposed
/// (`confab_errors_total{code="not_found"}`).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

async fn value_of(app: &TestApp, name: &str) -> f64 {
    sample(&scrape(app).await.text, name)
}

/// Waits until the gauges read `expected` right after `poke` made this
/// test's server write them (another server in this process may overwrite
/// them between the poke and the scrape).
async fn gauges_read(
    app: &TestApp,
    poker: &mut WsClient,
    thread: uuid::Uuid,
    expected: &[(&str, f64)],
) {
    let mut last = String::new();
    // Well inside the per-session send rate limit.
    for _ in 0..20 {
        // A committed message makes the hub write its gauges.
        poker.send_message(thread, "poke").await;
        let text = scrape(app).await.text;
        if expected.iter().all(|(name, v)| sample(&text, name) == *v) {
            return;
        }
        last = text;
    }
    panic!("the gauges never read {expected:?}; last scrape:\n{last}");
}

#[actix_web::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    let reply = app
        .request(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[actix_web::test]
async fn readyz_answers_200_when_the_database_is_up() {
    let app = spawn_app().await;
    let reply = app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

#[actix_web::test]
async fn metrics_are_prometheus_text_with_confab_names() {
    let app = spawn_app().await;
    let scrape = scrape(&app).await;
    assert_eq!(scrape.status, 200, "{}", scrape.text);
    assert!(
        scrape.content_type.starts_with("text/plain"),
        "content type {}",
        scrape.content_type
    );
    for name in [
        "confab_sessions",
        "confab_users_online",
        "confab_live_threads",
        "confab_messages_persisted_total",
    ] {
        assert!(
            scrape.text.contains(&format!("# TYPE {name} ")),
            "{name} is exposed:\n{}",
            scrape.text
        );
        sample(&scrape.text, name);
    }
    assert!(
        scrape.text.contains("# TYPE confab_errors_total counter"),
        "{}",
        scrape.text
    );
    sample(&scrape.text, "confab_errors_total{code=\"not_found\"}");
}

#[actix_web::test]
async fn the_sessions_gauge_follows_connected_sessions() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let bob_ws = app.connect(bob).await;

    gauges_read(
        &app,
        &mut ann_ws,
        thread,
        &[("confab_sessions", 2.0), ("confab_users_online", 2.0)],
    )
    .await;

    bob_ws.close().await;
    let presence = ann_ws
        .wait_for(
            |f| f["event"] == "chat:presence" && f["data"]["online"] == false,
            "bob going offline",
        )
        .await;
    assert_eq!(uuid(&presence["data"]["user_id"]), bob.id);
    gauges_read(
        &app,
        &mut ann_ws,
        thread,
        &[("confab_sessions", 1.0), ("confab_users_online", 1.0)],
    )
    .await;
}

#[actix_web::test]
async fn the_messages_persisted_counter_grows_with_each_message() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ws = app.connect(&users[0]).await;

    let before = value_of(&app, "confab_messages_persisted_total").await;
    for i in 0..3 {
        ws.send_message(thread, &format!("m{i}")).await;
    }
    let after = value_of(&app, "confab_messages_persisted_total").await;
    assert!(
        after >= before + 3.0,
        "messages persisted went from {before} to {after} after 3 sends"
    );
}

#[actix_web::test]
async fn the_errors_counter_grows_by_code_with_each_error_answered() {
    let app = spawn_app().await;
    let users = app.users(1).await;
    let mut ws = app.connect(&users[0]).await;
    let conflict = "confab_errors_total{code=\"conflict\"}";
    let unknown_event = "confab_errors_total{code=\"unknown_event\"}";

    let before_conflict = value_of(&app, conflict).await;
    let before_unknown = value_of(&app, unknown_event).await;

    // Three HTTP conflicts: adding an existing member.
    let thread = app.group(&[&users[0]]).await;
    for _ in 0..3 {
        let reply = app
            .post(
                &format!("/api/threads/{thread}/members"),
                &users[0].token,
                json!({"user_id": users[0].id}),
            )
            .await;
        assert_eq!(reply.status, 409, "{reply:?}");
    }
    // Two WebSocket errors: an event nobody knows.
    for _ in 0..2 {
        let reply = ws.request("chat:nonsense", json!({})).await;
        assert_eq!(reply["data"]["code"], "unknown_event", "{reply}");
    }

    let after_conflict = value_of(&app, conflict).await;
    let after_unknown = value_of(&app, unknown_event).await;
    assert!(
        after_conflict >= before_conflict + 3.0,
        "{conflict} went from {before_conflict} to {after_conflict} after 3 conflicts"
    );
    assert!(
        after_unknown >= before_unknown + 2.0,
        "{unknown_event} went from {before_unknown} to {after_unknown} after 2 unknown events"
    );
}

#[actix_web::test]
async fn a_send_shows_in_the_group_commit_and_hub_series() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;

    ann.send_message(thread, "counted").await;
    // Routed: the hub has handled the committed event.
    bob.next_event("chat:message").await;

    let text = scrape(&app).await.text;
    for histogram in [
        "confab_commit_batch_size",
        "confab_commit_batch_seconds",
        "confab_hub_routing_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram} is exposed:\n{text}"
        );
        let count = sample(&text, &format!("{histogram}_count"));
        assert!(count >= 1.0, "{histogram}_count is {count} after a send");
    }
    assert!(sample(&text, "confab_commit_batch_size_sum") >= 1.0);
    for gauge in [
        "confab_outbound_queue_bytes",
        "confab_persistence_queue_depth",
    ] {
        assert!(
            text.contains(&format!("# TYPE {gauge} gauge")),
            "{gauge} is exposed:\n{text}"
        );
        // Gauges are shared by every server in this process: only sane.
        assert!(sample(&text, gauge) >= 0.0, "{gauge} went negative");
    }
}
