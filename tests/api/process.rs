//! The real binary, as a newcomer runs it: configuration errors, a fresh
//! database, the generated admin token, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use awc::http::Method;
use serde_json::json;
use uuid::Uuid;

use crate::support::{db, PG_SERVER};

fn confab() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_confab"));
    // Only what the test sets: no configuration leaks in from the caller.
    for (var, _) in confab::config::ENV_OVERRIDES {
        command.env_remove(var);
    }
    command
        .env_remove("CONFAB_ALLOWED_ORIGINS")
        .env_remove("CONFAB_CONFIG")
        .env("RUST_LOG", "info");
    command
}

#[test]
fn a_bad_setting_exits_non_zero_with_a_message_naming_its_key() {
    for (var, value, key) in [
        ("CONFAB_BIND", "not-an-address", "bind"),
        ("CONFAB_JWT_SECRET", "too-short", "jwt_secret"),
        ("CONFAB_MAX_FRAME_BYTES", "lots", "max_frame_bytes"),
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

/// The child's log lines, as they come.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn confab");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn wait_for_line(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needle:?}; log so far: {:#?}", self.seen),
            }
        }
    }

    fn rest_of_log(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn on_a_fresh_database_the_binary_creates_it_logs_its_admin_token_once_and_stops_on_sigterm()
{
    let db_name = format!(
        "confab_test_{}_{}",
        std::process::id(),
        Uuid::new_v4().simple()
    );
    let mut server = Running::start({
        let mut command = confab();
        command
            .env("DATABASE_URL", format!("{PG_SERVER}/{db_name}"))
            .env("CONFAB_BIND", "127.0.0.1:0");
        command
    });

    let token_line = server.wait_for_line("generated one for this run");
    let admin_token = token_line
        .split("generated one for this run: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the admin token is in the line")
        .to_string();
    let listening = server.wait_for_line("listening on http://");
    let base = listening
        .split("listening on ")
        .nth(1)
        .expect("an address")
        .trim()
        .to_string();

    // The generated token works, so the migrations ran on the new database.
    let client = awc::Client::default();
    let res = client
        .request(Method::POST, format!("{base}/admin/companies"))
        .bearer_auth(&admin_token)
        .send_json(&json!({"name": "Fresh"}))
        .await
        .expect("the server answers");
    assert_eq!(res.status().as_u16(), 201);

    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let exit = server.child.wait().expect("the server exits");
    assert!(exit.success(), "SIGTERM is a clean exit, got {exit:?}");

    let log = server.rest_of_log();
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

    let mut conn = db::Db::connect(&format!("{PG_SERVER}/{db_name}")).await;
    assert_eq!(conn.count("SELECT count(*) FROM companies").await, 1);
    drop(conn);
    db::admin_exec(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).await;
}
