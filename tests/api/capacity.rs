//! Session caps answered before the upgrade, and the open-file limit.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::support::ws::{Socket, WsClient};
use crate::support::{db, spawn_app_with, TestApp, TestUser, PG_SERVER};

/// The open socket, or the HTTP status of a refused upgrade.
async fn upgrade(app: &TestApp, user: &TestUser) -> Result<Socket, u16> {
    match WsClient::open(&app.ws_url, &user.token).await {
        Ok(socket) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(
                body["error"]["code"], "unavailable",
                "a refused upgrade says why: {body}"
            );
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

/// Waits until the server has let go of a closed session's place; the
/// admitted socket is kept open (dropping it would hold a place again
/// until the server notices).
async fn until_admitted(app: &TestApp, user: &TestUser) -> Socket {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match upgrade(app, user).await {
            Ok(socket) => return socket,
            Err(status) => assert_eq!(status, 503),
        }
        assert!(
            Instant::now() < deadline,
            "the closed session's place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn a_user_past_the_per_user_cap_is_refused_with_503_before_the_upgrade() {
    let app = spawn_app_with(|s| s.websocket.max_sessions_per_user = 2).await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let first = app.connect(ann).await;
    let _second = app.connect(ann).await;

    assert_eq!(upgrade(&app, ann).await.err(), Some(503));
    // Another user is not affected.
    let _bob = app.connect(bob).await;

    first.close().await;
    let _again = until_admitted(&app, ann).await;
}

#[actix_web::test]
async fn past_the_global_cap_everyone_is_refused_with_503() {
    let app = spawn_app_with(|s| s.websocket.max_sessions = 2).await;
    let users = app.users(3).await;
    let first = app.connect(&users[0]).await;
    let _second = app.connect(&users[1]).await;

    assert_eq!(upgrade(&app, &users[2]).await.err(), Some(503));
    assert_eq!(upgrade(&app, &users[0]).await.err(), Some(503));

    first.close().await;
    let _third = until_admitted(&app, &users[2]).await;
}

/// `(soft, hard)` "Max open files" of a process.
fn open_files_limits(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    Some((fields.get(3)?.to_string(), fields.get(4)?.to_string()))
}

#[actix_web::test]
async fn the_binary_raises_its_open_file_soft_limit_to_the_hard_limit() {
    let db_name = format!(
        "confab_test_{}_{}",
        std::process::id(),
        Uuid::new_v4().simple()
    );
    // Start it with a soft limit far below the hard one.
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -S -n 256 && exec {}",
            env!("CARGO_BIN_EXE_confab")
        ))
        .env("DATABASE_URL", format!("{PG_SERVER}/{db_name}"))
        .env("CONFAB_BIND", "127.0.0.1:0")
        .env("CONFAB_ADMIN_TOKEN", "capacity-test-admin-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start confab");
    let pid = child.id();

    let deadline = Instant::now() + Duration::from_secs(30);
    let raised = loop {
        match open_files_limits(pid) {
            Some((soft, hard)) if soft == hard => break Some(soft),
            _ if Instant::now() > deadline => break None,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    db::admin_exec(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).await;

    let soft = raised.expect("the soft limit reached the hard limit");
    assert_ne!(soft, "256");
}
