//! The command line as an operator uses it: help, migrate, check-config,
//! token and demo, each run as the real binary.

use std::process::Output;

use reqwest::Method;

use crate::support::child::{confab, ChildConfig, ChildDb, Running};
use crate::support::{http_request, uuid, WsClient};

const SUBCOMMANDS: [&str; 5] = ["serve", "migrate", "demo", "token", "check-config"];

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `(name, token)` pairs of `confab demo`'s link lines, and the base
/// URL of the links.
fn demo_links(lines: &[String]) -> Vec<(String, String, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let (name, link) = line.trim().split_once(char::is_whitespace)?;
            let (base, token) = link.trim().split_once("/#token=")?;
            Some((name.to_string(), base.to_string(), token.to_string()))
        })
        .collect()
}

#[test]
fn help_lists_every_subcommand_and_each_has_its_own() {
    let output = confab().arg("--help").output().expect("run confab");
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);
    for name in SUBCOMMANDS {
        assert!(help.contains(name), "--help must list {name}: {help}");
        let sub = confab()
            .args([name, "--help"])
            .output()
            .expect("run confab");
        assert!(sub.status.success(), "{name} --help: {}", stderr(&sub));
        assert!(
            stdout(&sub).contains(&format!("Usage: confab {name}")),
            "{name} --help: {}",
            stdout(&sub)
        );
    }
}

#[actix_web::test]
async fn migrate_creates_a_fresh_database_with_its_tables_and_exits() {
    let db = ChildDb::new();
    let output = confab()
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run confab");
    assert!(output.status.success(), "{}", stderr(&output));
    let mut conn = db.connect().await;
    let tables = conn
        .count(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ('companies', 'users', 'threads', 'memberships', 'messages')",
        )
        .await;
    assert_eq!(tables, 5, "the migrations made every table");
    assert_eq!(conn.count("SELECT count(*) FROM companies").await, 0);
}

#[test]
fn check_config_shows_the_effective_settings_with_secrets_masked() {
    let jwt_secret = "jwt-secret-that-must-not-show-0123456789";
    let output = confab()
        .arg("check-config")
        .env("CONFAB_JWT_SECRET", jwt_secret)
        .env("CONFAB_ADMIN_TOKEN", "admin-token-that-must-not-show")
        .env(
            "DATABASE_URL",
            "postgres://confab:db-password@127.0.0.1:5432/chat",
        )
        .env("CONFAB_MAX_FRAME_BYTES", "4096")
        .output()
        .expect("run confab");
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = stdout(&output);
    for secret in [jwt_secret, "admin-token-that-must-not-show", "db-password"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert!(shown.contains(r#"jwt_secret = "***""#), "{shown}");
    assert!(shown.contains(r#"admin_token = "***""#), "{shown}");
    assert!(shown.contains("127.0.0.1:5432/chat"), "{shown}");
    assert!(
        shown.contains("max_frame_bytes = 4096"),
        "the environment wins: {shown}"
    );
}

#[actix_web::test]
async fn a_minted_token_opens_a_websocket_as_that_user() {
    let config = ChildConfig::new(&[]);
    let server = config.start().await;
    let users = server.users(1).await;
    let output = config
        .command()
        .args(["token", &users[0].id.to_string(), "--ttl", "10m"])
        .output()
        .expect("run confab");
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_string();

    let client = WsClient::connect(&server.ws_url, &token).await;
    assert_eq!(uuid(&client.ready["user_id"]), users[0].id);
}

#[actix_web::test]
async fn a_token_for_an_unknown_user_fails_with_one_line() {
    let config = ChildConfig::new(&[]);
    let server = config.start().await;
    let unknown = uuid::Uuid::new_v4();
    let output = config
        .command()
        .args(["token", &unknown.to_string()])
        .output()
        .expect("run confab");
    assert!(!output.status.success());
    assert_eq!(stdout(&output), "", "no token is printed");
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    assert!(message.contains(&unknown.to_string()), "{message}");
    drop(server);

    let no_secret = confab()
        .args(["token", &unknown.to_string()])
        .env("DATABASE_URL", &config.db.url)
        .output()
        .expect("run confab");
    assert!(!no_secret.status.success());
    let message = stderr(&no_secret);
    assert_eq!(message.lines().count(), 1, "one line: {message}");
    assert!(message.contains("jwt_secret"), "{message}");
}

#[actix_web::test]
async fn demo_twice_reuses_its_company_users_threads_and_messages() {
    let config = ChildConfig::new(&[]);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let output = config
            .command()
            .args(["demo", "--no-serve"])
            .output()
            .expect("run confab");
        assert!(output.status.success(), "{}", stderr(&output));
        let lines: Vec<String> = stdout(&output).lines().map(String::from).collect();
        let links = demo_links(&lines);
        let names: Vec<&str> = links.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(names, ["Ann", "Bob", "Cleo", "Dev"], "{lines:#?}");
        runs.push(links);
    }

    let mut db = config.db.connect().await;
    assert_eq!(db.count("SELECT count(*) FROM companies").await, 1);
    // Ann, Bob, Cleo and Dev, and 16 colleagues for the directory.
    assert_eq!(db.count("SELECT count(*) FROM users").await, 20);
    assert_eq!(db.count("SELECT count(*) FROM threads").await, 3);
    assert_eq!(db.count("SELECT count(*) FROM messages").await, 6);

    // Both runs' links sign in the same users.
    let server = config.start().await;
    for (first, second) in runs[0].iter().zip(&runs[1]) {
        let mut ids = Vec::new();
        for (_, _, token) in [first, second] {
            let me = server
                .request(Method::GET, "/api/me", Some(token), None)
                .await;
            assert_eq!(me.status, 200, "{me:?}");
            assert_eq!(me.body["display_name"], first.0.as_str());
            ids.push(uuid(&me.body["id"]));
        }
        assert_eq!(ids[0], ids[1], "{} is the same user in both runs", first.0);
    }
}

#[actix_web::test]
async fn demo_without_a_configured_secret_serves_and_its_links_connect() {
    let db = ChildDb::new();
    let mut command = confab();
    command
        .arg("demo")
        .env("DATABASE_URL", &db.url)
        .env("CONFAB_BIND", "127.0.0.1:0");
    let mut process = Running::start_reading_stdout(command);
    let mut lines = Vec::new();
    for name in ["Ann", "Bob", "Cleo", "Dev"] {
        lines.push(process.wait_for_line(&format!("{name} ")).await);
    }
    let links = demo_links(&lines);
    assert_eq!(links.len(), 4, "{lines:#?}");
    let base = links[0].1.clone();
    assert!(
        !base.ends_with(":0"),
        "links name the port actually bound: {base}"
    );

    let ann = WsClient::connect(&format!("{}/ws", base.replace("http", "ws")), &links[0].2).await;
    let threads = ann.ready["threads"].as_array().expect("threads").clone();
    assert_eq!(threads.len(), 3, "{threads:#?}");
    let general = threads
        .iter()
        .find(|t| t["title"] == "General")
        .expect("the General thread");
    assert_eq!(general["last_seq"], 3);

    let bob = http_request(&base, Method::GET, "/api/me", Some(&links[1].2), None).await;
    assert_eq!(bob.status, 200, "{bob:?}");
    assert_eq!(bob.body["display_name"], "Bob");
    process.signal("TERM");
}
