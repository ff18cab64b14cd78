//! confab-bench, the real binary, against a real server: a tiny fan-out
//! run must account for every message and report one JSON line.

// A test that unwraps fails, which is what it should do; the workspace's
// unwrap_used denial is for code that serves.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;

use support::spawn_app_with;

#[tokio::test]
async fn a_small_fanout_run_delivers_every_message_once_in_order_and_reports_a_json_line() {
    let app = spawn_app_with(|s| {
        s.websocket.rate_limit_per_second = 10_000.0;
        s.websocket.rate_limit_burst = 10_000;
    })
    .await;
    let json_out =
        std::env::temp_dir().join(format!("confab-bench-{}.jsonl", uuid::Uuid::new_v4()));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab-bench"))
        .args(["fanout", "--threads", "2", "--members", "3", "--rate", "40"])
        .args(["--duration", "1", "--url", &app.base])
        .args(["--admin-token", &app.admin_token])
        .args(["--server-pid", &std::process::id().to_string()])
        .arg("--json-out")
        .arg(&json_out)
        .env_remove("CONFAB_BENCH_URL")
        .output()
        .await
        .expect("run confab-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "confab-bench failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line per run, got: {stdout}");
    let report: Value = serde_json::from_str(lines[0]).expect("the line is JSON");
    let written = std::fs::read_to_string(&json_out).expect("--json-out was written");
    let _ = std::fs::remove_file(&json_out);
    assert_eq!(written.trim_end(), lines[0], "the file gets the same line");

    assert_eq!(report["scenario"], "fanout");
    let counts = &report["counts"];
    for field in [
        "missing",
        "duplicated",
        "out_of_order",
        "unacked_deliveries",
    ] {
        assert_eq!(counts[field], 0, "{field} in {counts}");
    }
    // 40 msg/s for 1 s, each owed to the 2 other members of its thread.
    let sent = report["sent"].as_u64().expect("sent");
    assert!(sent >= 35, "about 40 sends, got {sent}");
    assert_eq!(report["acked"], sent);
    assert_eq!(counts["expected"], sent * 2);
    assert_eq!(counts["delivered"], sent * 2);
    assert!(report["errors"].as_object().is_some_and(|e| e.is_empty()));
    assert!(report["latency"]["delivery"]["count"].as_u64() == Some(sent * 2));
    assert!(
        report["resources"]["server_rss_bytes"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    assert_eq!(report["clean"], true);
    assert!(stderr.contains("missing 0"), "a human summary on stderr");
}
