//! A real confab in this process, on a random port, against a fresh
//! database of its own: the server suite's set-up (tests/api/support), cut
//! to what a run of the load tool needs.

use std::sync::mpsc;
use std::thread::JoinHandle;

use confab::config::Settings;
use confab::startup::Application;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use uuid::Uuid;

const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

pub struct TestApp {
    pub base: String,
    pub admin_token: String,
    db_name: String,
    system: actix_rt::System,
    thread: Option<JoinHandle<()>>,
}

/// Starts the server with settings changed by `tweak`; it creates and
/// migrates its database itself, as `confab serve` does.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    // Named like the server suite's databases (`confab_test_<pid>_…`), so
    // that suite's sweep drops one an interrupted run left behind.
    let db_name = format!(
        "confab_test_{}_bench_{}",
        std::process::id(),
        Uuid::new_v4().simple()
    );
    let mut settings = Settings::defaults().expect("default settings");
    settings.bind = "127.0.0.1:0".into();
    settings.database_url = format!("{PG_SERVER}/{db_name}");
    settings.admin_token = format!("admin-{}", Uuid::new_v4());
    settings.jwt_secret = format!("test-secret-{}-{}", Uuid::new_v4(), Uuid::new_v4());
    settings.db_pool_size = 8;
    settings.workers = 1;
    tweak(&mut settings);
    settings.validate().expect("test settings are valid");

    // Its own thread and actix system, like the real binary; the test
    // talks to it only over the network.
    let (tx, rx) = mpsc::channel();
    let server_settings = settings.clone();
    let thread = std::thread::spawn(move || {
        let system = actix_rt::System::new();
        let handle = actix_rt::System::current();
        system.block_on(async move {
            let app = Application::build(server_settings)
                .await
                .expect("the server starts");
            let _ = tx.send((app.local_addr(), handle));
            actix_rt::spawn(app.run_until_stopped(false));
        });
        let _ = system.run();
    });
    let (addr, system) = rx.recv().expect("the server thread reports its address");
    TestApp {
        base: format!("http://{addr}"),
        admin_token: settings.admin_token,
        db_name,
        system,
        thread: Some(thread),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db_name);
        // A thread and runtime of its own: Drop may run inside the test's.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&format!("{PG_SERVER}/postgres"))
                    .await
                    .expect("connect to postgres");
                conn.batch_execute(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            })
        })
        .join();
    }
}
