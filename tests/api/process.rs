//! The real binary, as a newcomer runs it: configuration errors, a fresh
//! database, the generated admin token, and SIGTERM.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::child::{confab, ChildDb, Running};
use crate::support::http_client;

#[test]
fn a_bad_setting_exits_non_zero_with_a_message_naming_its_key() {
    for (var, value, key) in [
        ("CONFAB_BIND", "not-an-address", "bind"),
        ("CONFAB_JWT_SECRET", "too-short", "jwt_secret"),
        ("CONFAB_MAX_FRAME_BYTES", "lots", "max_frame_bytes"),
        ("CONFAB_LOG_FORMAT", "yaml", "log_format"),
    ] {
        let output = confab().env(var, value).output().expect("run confab");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{var}={value} must not start");
        assert!(
            stderr.contains(key),
            "{var}={value}: the message must name {key}, got: {stderr}"
        );
    }
}

#[actix_web::test]
async fn on_a_fresh_database_the_binary_creates_it_logs_its_admin_token_once_and_stops_on_sigterm()
{
    let db = ChildDb::new();
    let mut server = Running::start({
        let mut command = confab();
        command
            .env("DATABASE_URL", &db.url)
            .env("CONFAB_BIND", "127.0.0.1:0");
        command
    });

    let token_line = server.wait_for_line("generated one for this run").await;
    let admin_token = token_line
        .split("generated one for this run: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the admin token is in the line")
        .to_string();
    let listening = server.wait_for_line("listening on http://").await;
    let base = listening
        .split("listening on ")
        .nth(1)
        .expect("an address")
        .trim()
        .to_string();

    // The generated token works, so the migrations ran on the new database.
    let res = http_client()
        .request(Method::POST, format!("{base}/admin/companies"))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "Fresh"}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(res.status().as_u16(), 201);

    server.signal("TERM");
    let exit = server
        .exited_within(Duration::from_secs(30))
        .await
        .expect("the server exits after SIGTERM");
    assert!(exit.success(), "SIGTERM is a clean exit, got {exit:?}");

    let log = server.rest_of_log().await;
    let mentions = log
        .iter()
        .filter(|line| line.contains(&admin_token))
        .count();
    assert_eq!(
        mentions, 1,
        "the admin token is logged exactly once: {log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("created database")),
        "{log:#?}"
    );

    let mut conn = db.connect().await;
    assert_eq!(conn.count("SELECT count(*) FROM companies").await, 1);
}
