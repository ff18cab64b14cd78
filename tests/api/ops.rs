//! Operations endpoints: liveness, readiness and Prometheus metrics.
//!
//! The metrics registry belongs to the process, and this test binary runs
//! many servers in one process: counters may grow by other tests' work
//! (so they are checked to grow by at least what this test did), and a
//! gauge holds whatever the last server to update it wrote (so it is
//! checked right after this test's server updated it, retrying when another
//! server wrote in between).

use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::support::child::ChildConfig;
use crate::support::metrics::{self, Scrape};
use crate::support::ws::Ending;
use crate::support::{spawn_app, spawn_app_with, uuid, TestApp, WsClient};

async fn scrape(app: &TestApp) -> Scrape {
    metrics::scrape(&app.base).await
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

// ---- the series an operator expects -------------------------------------------

/// Whether any path segment of `route` is an id: a label must be the route
/// pattern (`/api/threads/{id}`), never the path a client asked for.
fn holds_an_id(route: &str) -> bool {
    route
        .split('/')
        .any(|segment| uuid::Uuid::parse_str(segment).is_ok())
}

#[actix_web::test]
async fn http_requests_are_counted_and_timed_by_route_pattern_and_status() {
    let app = spawn_app().await;
    let users = app.users(1).await;
    let token = users[0].token.clone();
    let thread = app.group(&[&users[0]]).await;
    let route = "/api/threads/{id}/messages";
    let answered = |status: &'static str| [("route", route), ("method", "GET"), ("status", status)];
    let timed = [("route", route), ("method", "GET")];
    let unmatched = [("route", "unmatched"), ("method", "GET"), ("status", "404")];

    let before = scrape(&app).await;
    let count = |s: &Scrape, labels: &[(&str, &str)]| {
        s.find("confab_http_requests_total", labels).unwrap_or(0.0)
    };
    let timed_count = |s: &Scrape| {
        s.find("confab_http_request_duration_seconds_count", &timed)
            .unwrap_or(0.0)
    };

    for _ in 0..3 {
        let page = app
            .get(&format!("/api/threads/{thread}/messages"), &token)
            .await;
        assert_eq!(page.status, 200, "{page:?}");
    }
    let stranger = uuid::Uuid::new_v4();
    let missing = app
        .get(&format!("/api/threads/{stranger}/messages"), &token)
        .await;
    assert_eq!(missing.status, 404, "{missing:?}");
    let nowhere = uuid::Uuid::new_v4();
    let no_route = app.get(&format!("/no/such/{nowhere}"), &token).await;
    assert_eq!(no_route.status, 404, "{no_route:?}");

    let after = scrape(&app).await;
    for (labels, requests) in [
        (&answered("200")[..], 3.0),
        (&answered("404")[..], 1.0),
        (&unmatched[..], 1.0),
    ] {
        let (was, is) = (count(&before, labels), count(&after, labels));
        assert!(
            is >= was + requests,
            "{labels:?} went from {was} to {is} after {requests} requests"
        );
    }
    assert!(
        after
            .text
            .contains("# TYPE confab_http_request_duration_seconds histogram"),
        "{}",
        after.text
    );
    let (was, is) = (timed_count(&before), timed_count(&after));
    assert!(is >= was + 4.0, "timed requests went from {was} to {is}");
    let all = after.value(
        "confab_http_request_duration_seconds_bucket",
        &[timed[0], timed[1], ("le", "+Inf")],
    );
    assert_eq!(all, is, "the +Inf bucket holds every timed request");
    let slowest_bucket = after.value(
        "confab_http_request_duration_seconds_bucket",
        &[timed[0], timed[1], ("le", "10")],
    );
    assert!(slowest_bucket <= all);

    for id in [thread, stranger, nowhere, users[0].id] {
        assert!(
            !after.text.contains(&id.to_string()),
            "an id from a request path reached the metrics: {id}"
        );
    }
    for sample in after.samples() {
        if let Some(route) = sample.labels.get("route") {
            assert!(!holds_an_id(route), "a route label with an id: {sample:?}");
        }
    }
}

#[actix_web::test]
async fn the_pool_gauges_read_the_scraped_servers_own_pool() {
    // A size no other server of this suite uses: the gauges must be this
    // server's, not the process's.
    let app = spawn_app_with(|s| s.db_pool_size = 3).await;
    // Opens at least one pooled connection, kept idle afterwards.
    app.users(1).await;

    let scrape = scrape(&app).await;
    for gauge in [
        "confab_db_pool_max",
        "confab_db_pool_in_use",
        "confab_db_pool_idle",
        "confab_db_pool_waiting",
    ] {
        assert!(
            scrape.text.contains(&format!("# TYPE {gauge} gauge")),
            "{gauge} is exposed:\n{}",
            scrape.text
        );
    }
    assert_eq!(scrape.value("confab_db_pool_max", &[]), 3.0);
    let open =
        scrape.value("confab_db_pool_in_use", &[]) + scrape.value("confab_db_pool_idle", &[]);
    assert!(
        (1.0..=3.0).contains(&open),
        "{open} connections open in a pool of 3 that has served requests"
    );
    assert!(scrape.value("confab_db_pool_waiting", &[]) >= 0.0);
}

#[actix_web::test]
async fn process_cpu_and_memory_are_exposed_under_their_standard_names() {
    let app = spawn_app().await;
    let scrape = scrape(&app).await;
    for (name, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_threads", "gauge"),
    ] {
        assert!(
            scrape.text.contains(&format!("# TYPE {name} {kind}")),
            "{name} is exposed as a {kind}:\n{}",
            scrape.text
        );
    }
    let rss = scrape.value("process_resident_memory_bytes", &[]);
    assert!(rss > 1024.0 * 1024.0, "resident memory of {rss} bytes");
    assert!(scrape.value("process_cpu_seconds_total", &[]) >= 0.0);
    assert!(scrape.value("process_open_fds", &[]) >= 1.0);
}

#[actix_web::test]
async fn websocket_closes_are_counted_by_code() {
    let app = spawn_app_with(|s| s.websocket.max_frame_bytes = 1024).await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    app.group(&[ann, bob]).await;
    let closes = |s: &Scrape, code: &str| s.value("confab_ws_closes_total", &[("code", code)]);
    let before = scrape(&app).await;

    // The client closes with 1000; the server echoes it.
    let mut ann_ws = app.connect(ann).await;
    ann_ws
        .send_raw(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await;
    assert_eq!(ann_ws.ending().await, Ending::Closed(Some(1000)));

    // The server closes with 1009: a frame over max_frame_bytes.
    let mut ann_ws = app.connect(ann).await;
    ann_ws.send_text("x".repeat(2000)).await;
    assert_eq!(ann_ws.ending().await, Ending::Closed(Some(1009)));

    // The connection ends with no close frame at all: 1006. Bob hears Ann
    // go offline once the hub has dropped her last session, which her
    // session counted first.
    let ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    drop(ann_ws);
    bob_ws
        .wait_for(
            |f| {
                f["event"] == "chat:presence"
                    && f["data"] == json!({"user_id": ann.id, "online": false})
            },
            "ann going offline",
        )
        .await;

    let after = scrape(&app).await;
    for code in ["1000", "1009", "1006"] {
        let (was, is) = (closes(&before, code), closes(&after, code));
        assert!(
            is >= was + 1.0,
            "closes with {code} went from {was} to {is} after one"
        );
    }
    // Counted before any has happened, so that a rate over it reads 0.
    closes(&after, "4008");
}

#[actix_web::test]
async fn with_metrics_bind_metrics_are_served_there_and_not_on_the_public_address() {
    let config = ChildConfig::new(&[
        ("CONFAB_METRICS_BIND", "127.0.0.1:0"),
        ("CONFAB_DB_POOL_SIZE", "5"),
    ]);
    let mut server = config.start().await;
    let line = server.process.wait_for_line("metrics on http://").await;
    let metrics_addr = line
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let metrics_base = format!("http://{metrics_addr}");
    assert_ne!(metrics_base, server.base);

    let private = metrics::scrape(&metrics_base).await;
    assert_eq!(private.status, 200, "{}", private.text);
    assert_eq!(private.value("confab_db_pool_max", &[]), 5.0);
    assert!(private.text.contains("# TYPE confab_sessions gauge"));

    let public = server
        .request(reqwest::Method::GET, "/metrics", None, None)
        .await;
    assert_eq!(public.status, 404, "{public:?}");
    // The metrics address serves nothing else.
    let health =
        crate::support::http_request(&metrics_base, reqwest::Method::GET, "/healthz", None, None)
            .await;
    assert_eq!(health.status, 404, "{health:?}");
    // And the public address still serves everything else.
    let health = server
        .request(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(health.status, 200, "{health:?}");
}
