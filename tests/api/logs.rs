//! The process log as a log collector reads it: `CONFAB_LOG_FORMAT=json`
//! gives one JSON object per line with the ids a line is about as fields,
//! and what users write never reaches it, at the finest level there is.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::child::ChildConfig;

#[actix_web::test]
async fn json_logs_are_one_object_per_line_with_ids_as_fields_and_never_a_message_body() {
    // Trace: every level at once, so no level can leak what this one hides.
    let config = ChildConfig::new(&[("CONFAB_LOG_FORMAT", "json"), ("RUST_LOG", "trace")]);
    let mut server = config.start().await;
    let users = server.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = server.group(&[ann, bob]).await;
    let mut ann_ws = server.connect(ann).await;
    let mut bob_ws = server.connect(bob).await;
    let ann_session = ann_ws.session_id().to_string();

    // A body that cannot occur by chance, sent, delivered and read back.
    let secret = Uuid::new_v4().simple().to_string();
    let body = format!("the launch code is {secret}");
    let sent = ann_ws.send_message(thread, &body).await;
    let delivered = bob_ws.next_event("chat:message").await;
    assert_eq!(delivered["message"]["body"], body.as_str());
    let page = bob_ws
        .request("chat:sync", json!({"thread_id": thread, "after_seq": 0}))
        .await;
    assert_eq!(page["data"]["messages"][0]["body"], body.as_str(), "{page}");
    assert_eq!(sent["body"], body.as_str());
    drop(ann_ws);
    drop(bob_ws);

    server.process.signal("TERM");
    server
        .process
        .exited_within(Duration::from_secs(30))
        .await
        .expect("confab exits after SIGTERM");
    let log = server.process.rest_of_log().await;

    let lines: Vec<Value> = log
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            assert!(
                value.is_object(),
                "a log line that is not an object: {line}"
            );
            for key in ["timestamp", "level", "target", "message"] {
                assert!(value[key].is_string(), "no string {key:?} in {line}");
            }
            assert!(
                chrono::DateTime::parse_from_rfc3339(value["timestamp"].as_str().unwrap_or(""))
                    .is_ok(),
                "the timestamp is not RFC 3339: {line}"
            );
            assert!(
                ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
                    .contains(&value["level"].as_str().unwrap_or("")),
                "unknown level: {line}"
            );
            value
        })
        .collect();

    assert!(
        lines.iter().any(|l| l["level"] == "TRACE"),
        "RUST_LOG=trace must give trace lines: {log:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["session"] == ann_session.as_str() && l["user"] == ann.id.to_string()),
        "no line carries ann's session and user as fields: {log:#?}"
    );
    // As text, or as the bytes a binary query parameter is printed as.
    let as_bytes = secret
        .bytes()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    for line in &log {
        for form in [&secret, &as_bytes] {
            assert!(
                !line.contains(form.as_str()),
                "a message body reached the log: {line}"
            );
        }
    }
}
