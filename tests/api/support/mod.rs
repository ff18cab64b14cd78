//! Test support: a real confab on a random port against its own fresh
//! database, a real HTTP client and a real WebSocket client.

pub mod child;
pub mod db;
pub mod metrics;
pub mod proxy;
pub mod push_service;
pub mod raw;
pub mod receiver;
pub mod tools;
pub mod ws;

use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;

use confab::config::Settings;
use confab::startup::{Application, ShutdownHandle};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

pub use self::ws::WsClient;

pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
/// Every database of this run is named `confab_test_<pid>_…`, so runs side
/// by side never touch each other's, and a later run can tell which ones
/// an interrupted run left behind: those whose process is gone.
fn run_prefix() -> String {
    format!("confab_test_{}_", std::process::id())
}

/// Migrates this run's template database once; each test clones it, which
/// is much faster than migrating a database per test.
fn template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    // Its own thread: the caller is inside an async runtime.
    TEMPLATE.get_or_init(|| {
        let name = format!("{}template", run_prefix());
        let url = format!("{PG_SERVER}/{name}");
        std::thread::spawn(move || {
            db::block_on(async {
                for leftover in db::leftover_test_databases().await {
                    db::admin_exec(&format!(
                        "DROP DATABASE IF EXISTS \"{leftover}\" WITH (FORCE)"
                    ))
                    .await;
                }
                confab::persistence::migrate::prepare_database(&url)
                    .await
                    .expect("migrating the template database");
            })
        })
        .join()
        .expect("preparing the template database");
        name
    })
}

pub struct TestApp {
    pub base: String,
    pub ws_url: String,
    pub admin_token: String,
    pub jwt_secret: String,
    pub db_name: String,
    pub db_url: String,
    pub settings: Settings,
    shutdown: ShutdownHandle,
    system: actix_rt::System,
    thread: Option<JoinHandle<()>>,
}

/// A user with a valid token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub company_id: Uuid,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the server with settings changed by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let template = template();
    let db_name = format!("{}{}", run_prefix(), Uuid::new_v4().simple());
    db::admin_exec(&format!("CREATE DATABASE {db_name} TEMPLATE {template}")).await;
    let db_url = format!("{PG_SERVER}/{db_name}");

    let mut settings = Settings::defaults().expect("default settings");
    settings.bind = "127.0.0.1:0".into();
    settings.database_url = db_url.clone();
    settings.admin_token = format!("admin-{}", Uuid::new_v4());
    settings.jwt_secret = format!("test-secret-{}-{}", Uuid::new_v4(), Uuid::new_v4());
    settings.db_pool_size = 8;
    settings.workers = 1;
    settings.uploads.dir = uploads_dir_for(&db_name).to_string_lossy().into_owned();
    // Webhook tests deliver to a receiver on 127.0.0.1.
    settings.webhooks.allow_private = true;
    tweak(&mut settings);
    settings.validate().expect("test settings are valid");

    // The server runs on its own thread and actix system, like the real
    // binary; the test talks to it only over the network.
    let (tx, rx) = mpsc::channel();
    let server_settings = settings.clone();
    let thread = std::thread::spawn(move || {
        let system = actix_rt::System::new();
        let handle = actix_rt::System::current();
        system.block_on(async move {
            let app = Application::build(server_settings)
                .await
                .expect("the server starts");
            let _ = tx.send((app.local_addr(), app.shutdown_handle(), handle));
            actix_rt::spawn(app.run_until_stopped(false));
        });
        // Serves until the test drops the app and stops this system.
        let _ = system.run();
    });
    let (addr, shutdown, system) = rx.recv().expect("the server thread reports its address");
    TestApp {
        base: format!("http://{addr}"),
        ws_url: format!("ws://{addr}/ws"),
        admin_token: settings.admin_token.clone(),
        jwt_secret: settings.jwt_secret.clone(),
        db_name,
        db_url,
        settings,
        shutdown,
        system,
        thread: Some(thread),
    }
}

/// Where a test server keeps its uploads: a directory of its own, removed
/// with it.
pub fn uploads_dir_for(db_name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("confab-uploads-{db_name}"))
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.settings.uploads.dir);
        let db_name = self.db_name.clone();
        // A separate thread: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            db::block_on(db::admin_exec(&format!(
                "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
            )))
        })
        .join();
    }
}

/// An HTTP answer: status and JSON body (Null if the body was empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

/// One HTTP request to a server at `base`, answered as status and JSON.
/// Shared by the in-process app and the child-process server.
pub async fn http_request(
    base: &str,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = http_client().request(method, format!("{base}{path}"));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("the HTTP request completes");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.expect("the HTTP body arrives");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Reply { status, body }
}

/// The tests' HTTP client: HTTP/1.1 only, as confab serves, and never
/// through a proxy the environment may name.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

impl TestApp {
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        http_request(&self.base, method, path, bearer, body).await
    }

    pub async fn get(&self, path: &str, bearer: &str) -> Reply {
        self.request(Method::GET, path, Some(bearer), None).await
    }

    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(bearer), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, bearer: &str, body: Value) -> Reply {
        self.request(Method::PATCH, path, Some(bearer), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, bearer: &str) -> Reply {
        self.request(Method::DELETE, path, Some(bearer), None).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Reply {
        self.post(path, &self.admin_token.clone(), body).await
    }

    pub async fn admin_delete(&self, path: &str) -> Reply {
        self.delete(path, &self.admin_token.clone()).await
    }

    // ---- fixtures -------------------------------------------------------

    pub async fn company(&self) -> Uuid {
        let reply = self
            .admin_post("/admin/companies", json!({"name": "Acme"}))
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
        uuid(&reply.body["id"])
    }

    pub async fn user(&self, company_id: Uuid) -> TestUser {
        self.named_user(company_id, "someone").await
    }

    pub async fn named_user(&self, company_id: Uuid, name: &str) -> TestUser {
        let reply = self
            .admin_post(
                "/admin/users",
                json!({"company_id": company_id, "display_name": name}),
            )
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let id = uuid(&reply.body["id"]);
        let token = self
            .admin_post(&format!("/admin/users/{id}/tokens"), json!({}))
            .await;
        assert_eq!(token.status, 201, "{token:?}");
        TestUser {
            id,
            company_id,
            token: token.body["token"].as_str().expect("token").to_string(),
        }
    }

    /// `n` users of one new company.
    pub async fn users(&self, n: usize) -> Vec<TestUser> {
        let company = self.company().await;
        let mut users = Vec::with_capacity(n);
        for i in 0..n {
            users.push(self.named_user(company, &format!("user{i}")).await);
        }
        users
    }

    /// A group thread of these users, made by the operator.
    pub async fn group(&self, members: &[&TestUser]) -> Uuid {
        let company_id = members[0].company_id;
        let ids: Vec<Uuid> = members.iter().map(|u| u.id).collect();
        let reply = self
            .admin_post(
                "/admin/threads",
                json!({"company_id": company_id, "title": "team", "member_ids": ids}),
            )
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
        uuid(&reply.body["id"])
    }

    pub async fn connect(&self, user: &TestUser) -> WsClient {
        WsClient::connect(&self.ws_url, &user.token).await
    }

    /// Starts a graceful shutdown (what SIGTERM does).
    pub async fn shutdown(&self) {
        self.shutdown.shutdown().await;
    }

    pub async fn db(&self) -> db::Db {
        db::Db::connect(&self.db_url).await
    }
}

/// Polls `sql` (a count) on a connection of its own until `done` holds,
/// failing with `what` after 10 s.
pub async fn until_count(app: &TestApp, sql: &str, done: impl Fn(i64) -> bool, what: &str) {
    let mut watcher = app.db().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let count = watcher.count(sql).await;
        if done(count) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} (count {count})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until some statement of this database waits for a lock.
pub async fn until_a_statement_waits_for_a_lock(app: &TestApp) {
    until_count(
        app,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
        |waiting| waiting > 0,
        "no statement came to wait for the lock",
    )
    .await;
}

pub fn uuid(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("not a uuid: {value}"))
}
