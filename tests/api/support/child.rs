//! The real binary (`CARGO_BIN_EXE_confab`) as a child process: started
//! with only the environment a test gives it, its log read line by line,
//! signalled (SIGTERM, SIGKILL) and watched (exit status, memory) like an
//! operator would.
//!
//! Its database is named like the harness's (`confab_test_<pid>_…`), so a
//! run that dies leaves nothing the next run does not clean, and
//! [`ChildDb`] drops it when the test ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use uuid::Uuid;

use super::{db, uuid, Reply, TestUser, WsClient, PG_SERVER};

/// The binary with a clean environment: nothing leaks in from the caller.
pub fn confab() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_confab"));
    for (var, _) in confab::config::ENV_OVERRIDES {
        command.env_remove(var);
    }
    command
        .env_remove("CONFAB_ALLOWED_ORIGINS")
        .env_remove("CONFAB_CONFIG")
        .env("RUST_LOG", "info");
    command
}

/// A running child: its log lines as they come, and its exit.
pub struct Running {
    pid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    exit: watch::Receiver<Option<ExitStatus>>,
}

impl Running {
    pub fn start(command: Command) -> Self {
        Self::spawn(command, false)
    }

    /// Like [`Running::start`], with what the child prints on stdout (the
    /// links of `confab demo`) among the lines too.
    pub fn start_reading_stdout(command: Command) -> Self {
        Self::spawn(command, true)
    }

    fn spawn(mut command: Command, read_stdout: bool) -> Self {
        let stdout = if read_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(stdout)
            .spawn()
            .expect("spawn confab");
        let pid = child.id();
        let stderr = child.stderr.take().expect("stderr is piped");
        let (line_tx, lines) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            let line_tx = line_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line_tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // One thread owns the child and reaps it; everyone else watches.
        let (exit_tx, exit) = watch::channel(None);
        std::thread::spawn(move || {
            let status = child.wait().expect("wait for confab");
            let _ = exit_tx.send(Some(status));
        });
        Running {
            pid,
            lines,
            seen: Vec::new(),
            exit,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits (up to 60 s) for a log line containing `needle`.
    pub async fn wait_for_line(&mut self, needle: &str) -> String {
        loop {
            match timeout(Duration::from_secs(60), self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "confab's log ended without {needle:?}; log: {:#?}",
                    self.seen
                ),
                Err(_) => panic!("no log line with {needle:?}; log so far: {:#?}", self.seen),
            }
        }
    }

    /// Every line logged so far and until the log ends (or stays quiet
    /// for 5 s).
    pub async fn rest_of_log(&mut self) -> Vec<String> {
        while let Ok(Some(line)) = timeout(Duration::from_secs(5), self.lines.recv()).await {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Sends a signal (`"TERM"`, `"KILL"`) unless the child has exited.
    pub fn signal(&self, name: &str) {
        if self.has_exited() {
            return;
        }
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(
            status.success() || self.has_exited(),
            "kill -{name} {} failed",
            self.pid
        );
    }

    /// SIGKILL, then waits for the child to be gone.
    pub async fn kill(&mut self) -> ExitStatus {
        self.signal("KILL");
        self.exited_within(Duration::from_secs(10))
            .await
            .expect("a killed process exits")
    }

    /// The exit status, if the child exits within `limit`.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        match timeout(limit, self.exit.wait_for(Option::is_some)).await {
            Ok(Ok(status)) => *status,
            _ => None,
        }
    }

    /// A `kB` figure of /proc/<pid>/status, in bytes (VmRSS, VmHWM).
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("/proc/{}/status: {e}", self.pid));
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid))
    }

    /// Resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        self.memory("VmRSS")
    }

    /// Starts VmHWM (peak resident memory) over from the current RSS.
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")
            .unwrap_or_else(|e| panic!("reset the peak RSS of {}: {e}", self.pid));
    }

    /// Peak resident memory since start or the last reset, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.memory("VmHWM")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // No assertion here: a panic while unwinding would abort the run.
        if !self.has_exited() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// A database for a child, dropped when the test ends. The child creates
/// it (and migrates it) on its first start.
pub struct ChildDb {
    pub name: String,
    pub url: String,
}

impl ChildDb {
    pub fn new() -> Self {
        let name = format!(
            "confab_test_{}_{}",
            std::process::id(),
            Uuid::new_v4().simple()
        );
        let url = format!("{PG_SERVER}/{name}");
        ChildDb { name, url }
    }

    pub async fn connect(&self) -> db::Db {
        db::Db::connect(&self.url).await
    }
}

impl Default for ChildDb {
    fn default() -> Self {
        Self::new()
    }
}

impl ChildDb {
    /// The directory a child keeps uploads in: one per database, so a
    /// restarted child finds its files again.
    pub fn uploads_dir(&self) -> std::path::PathBuf {
        super::uploads_dir_for(&self.name)
    }
}

impl Drop for ChildDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.uploads_dir());
        let name = self.name.clone();
        // A separate thread: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            db::block_on(db::admin_exec(&format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
        })
        .join();
    }
}

/// How to start confab: its database, fixed secrets (so tokens survive a
/// restart) and any other `CONFAB_*` settings. Start it as often as needed.
pub struct ChildConfig {
    pub db: ChildDb,
    pub admin_token: String,
    pub jwt_secret: String,
    pub env: Vec<(String, String)>,
}

impl ChildConfig {
    pub fn new(env: &[(&str, &str)]) -> Self {
        ChildConfig {
            db: ChildDb::new(),
            admin_token: format!("admin-{}", Uuid::new_v4()),
            jwt_secret: format!("child-secret-{}-{}", Uuid::new_v4(), Uuid::new_v4()),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn command(&self) -> Command {
        let mut command = confab();
        command
            .env("DATABASE_URL", &self.db.url)
            .env("CONFAB_BIND", "127.0.0.1:0")
            .env("CONFAB_ADMIN_TOKEN", &self.admin_token)
            .env("CONFAB_JWT_SECRET", &self.jwt_secret)
            .env("CONFAB_UPLOADS_DIR", self.db.uploads_dir());
        for (var, value) in &self.env {
            command.env(var, value);
        }
        command
    }

    /// Starts the binary and waits until it listens.
    pub async fn start(&self) -> ChildServer {
        let mut process = Running::start(self.command());
        let addr = listening_addr(&mut process).await;
        ChildServer {
            process,
            addr,
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/ws"),
            admin_token: self.admin_token.clone(),
        }
    }
}

/// A started binary and how to reach it.
pub struct ChildServer {
    pub process: Running,
    pub addr: SocketAddr,
    pub base: String,
    pub ws_url: String,
    pub admin_token: String,
}

impl ChildServer {
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        super::http_request(&self.base, method, path, bearer, body).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(&self.admin_token), Some(body))
            .await
    }

    /// `n` users of one new company.
    pub async fn users(&self, n: usize) -> Vec<TestUser> {
        let company = self
            .admin_post("/admin/companies", json!({"name": "Child Co"}))
            .await;
        assert_eq!(company.status, 201, "{company:?}");
        let company_id = uuid(&company.body["id"]);
        let mut users = Vec::with_capacity(n);
        for i in 0..n {
            let user = self
                .admin_post(
                    "/admin/users",
                    json!({"company_id": company_id, "display_name": format!("user{i}")}),
                )
                .await;
            assert_eq!(user.status, 201, "{user:?}");
            let id = uuid(&user.body["id"]);
            let token = self
                .admin_post(&format!("/admin/users/{id}/tokens"), json!({}))
                .await;
            assert_eq!(token.status, 201, "{token:?}");
            users.push(TestUser {
                id,
                company_id,
                token: token.body["token"].as_str().expect("token").to_string(),
            });
        }
        users
    }

    /// A group thread of these users, made by the operator.
    pub async fn group(&self, members: &[&TestUser]) -> Uuid {
        let ids: Vec<Uuid> = members.iter().map(|u| u.id).collect();
        let reply = self
            .admin_post(
                "/admin/threads",
                json!({"company_id": members[0].company_id, "title": "team", "member_ids": ids}),
            )
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
        uuid(&reply.body["id"])
    }

    pub async fn connect(&self, user: &TestUser) -> WsClient {
        WsClient::connect(&self.ws_url, &user.token).await
    }
}

/// Waits until a started binary says it listens, and returns the address.
pub async fn listening_addr(process: &mut Running) -> SocketAddr {
    let listening = process.wait_for_line("listening on http://").await;
    // The address ends the text, or a JSON string (CONFAB_LOG_FORMAT=json).
    listening
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c == '"' || c.is_whitespace()).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening:?}"))
}
