//! Migrations as a deployment runs them: several nodes starting at once on
//! a fresh database, and servers that leave migrating to `confab migrate`.

use std::process::{Command, Output};

use confab::persistence::migrate::MIGRATIONS;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use reqwest::Method;

use crate::support::child::{listening_addr, ChildConfig, Running};
use crate::support::db::Db;
use crate::support::{http_request, PG_SERVER};

/// The migrations this binary carries: (version as diesel records it, name).
fn embedded() -> Vec<(String, String)> {
    MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .expect("the embedded migrations")
        .iter()
        .map(|m| (m.name().version().to_string(), m.name().to_string()))
        .collect()
}

/// Waits for a started server to listen, and returns its base URL.
async fn base_url(process: &mut Running) -> String {
    format!("http://{}", listening_addr(process).await)
}

async fn assert_ready(base: &str) {
    let ready = http_request(base, Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{base}: {ready:?}");
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one line the binary ends with on a failure.
fn failure_line(output: &Output) -> String {
    let message = stderr(output);
    let lines: Vec<&str> = message
        .lines()
        .filter(|line| line.starts_with("confab: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line: {message}");
    lines[0].to_string()
}

async fn maintenance() -> Db {
    Db::connect(&format!("{PG_SERVER}/postgres")).await
}

/// Starts three servers on `config` before waiting for any, so they race
/// for the database's creation and its migrations; all must become ready,
/// with each migration applied once.
async fn three_at_once(config: &ChildConfig) {
    let mut nodes: Vec<Running> = (0..3).map(|_| Running::start(config.command())).collect();
    for node in &mut nodes {
        let base = base_url(node).await;
        assert_ready(&base).await;
    }

    let mut db = config.db.connect().await;
    let migrations = embedded();
    assert!(!migrations.is_empty());
    for (version, name) in &migrations {
        let recorded = db
            .count(&format!(
                "SELECT count(*) FROM __diesel_schema_migrations WHERE version = '{version}'"
            ))
            .await;
        assert_eq!(recorded, 1, "{name} is recorded exactly once");
    }
    let all = db
        .count("SELECT count(*) FROM __diesel_schema_migrations")
        .await;
    assert_eq!(all, migrations.len() as i64, "and nothing else is");
}

/// Without the creation lock, two of them fail on
/// `pg_database_datname_index`.
#[actix_web::test]
async fn three_nodes_started_at_once_without_a_database_create_it_once_and_all_become_ready() {
    three_at_once(&ChildConfig::new(&[])).await;
}

/// Without the migration lock, two of them fail on `pg_type_typname_nsp_index`
/// (each creates the same tables).
#[actix_web::test]
async fn three_nodes_started_at_once_on_an_empty_database_migrate_it_once_and_all_become_ready() {
    let config = ChildConfig::new(&[]);
    maintenance()
        .await
        .exec(&format!("CREATE DATABASE {}", config.db.name))
        .await;
    three_at_once(&config).await;
}

#[actix_web::test]
async fn with_migrate_off_a_fresh_database_is_left_alone_and_the_server_says_why_it_stops() {
    let config = ChildConfig::new(&[]);
    let name = config.db.name.clone();
    let serve_no_migrate = || {
        let mut command: Command = config.command();
        command.args(["serve", "--no-migrate"]);
        command
    };

    // No database at all: not created.
    let output = serve_no_migrate().output().expect("run confab");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let line = failure_line(&output);
    assert!(
        line.contains(&format!("database {name} does not exist")),
        "{line}"
    );
    assert!(line.contains("run `confab migrate` first"), "{line}");
    let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'");
    assert_eq!(maintenance().await.count(&exists).await, 0, "not created");

    // An empty database (CONFAB_MIGRATE=false this time): not migrated.
    maintenance()
        .await
        .exec(&format!("CREATE DATABASE {name}"))
        .await;
    let output = config
        .command()
        .env("CONFAB_MIGRATE", "false")
        .output()
        .expect("run confab");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let line = failure_line(&output);
    assert!(
        line.contains(&format!("database {name} is not migrated")),
        "{line}"
    );
    for (_, migration) in embedded() {
        assert!(line.contains(&migration), "names {migration}: {line}");
    }
    let mut db = config.db.connect().await;
    let tables = db
        .count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        .await;
    assert_eq!(tables, 0, "no table was made, not even diesel's own");

    // Once `confab migrate` has run, the same server starts and is ready.
    let migrate = config
        .command()
        .arg("migrate")
        .output()
        .expect("run confab");
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    let mut server = Running::start(serve_no_migrate());
    server
        .wait_for_line("migrations are up to date (not migrating")
        .await;
    let base = base_url(&mut server).await;
    assert_ready(&base).await;
}

/// The richer-messages migration on a database that already holds
/// messages: a message never changed gets rev = seq, an edited or deleted
/// one a rev after the thread's last seq (in the order of those changes),
/// every rev is logged, and each thread's last_rev is its highest. Then
/// the lazy-creation-log migration keeps only the creations of changed
/// messages.
#[actix_web::test]
async fn the_rev_migration_numbers_existing_messages_gaplessly() {
    let name = format!(
        "confab_test_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    crate::support::db::admin_exec(&format!("CREATE DATABASE {name}")).await;
    let mut db = Db::connect(&format!("{PG_SERVER}/{name}")).await;
    for sql in [
        include_str!("../../migrations/2026-11-25-000001_core/up.sql"),
        include_str!("../../migrations/2026-12-04-180000_people/up.sql"),
        include_str!("../../migrations/2026-12-04-190000_token_revocation/up.sql"),
    ] {
        db.exec(sql).await;
    }
    let c = "00000000-0000-0000-0000-000000000001";
    let a = "00000000-0000-0000-0000-0000000000a1";
    let t = "00000000-0000-0000-0000-0000000000f1";
    db.exec(&format!(
        "INSERT INTO companies (id, name) VALUES ('{c}', 'c');
         INSERT INTO users (id, company_id, display_name) VALUES ('{a}', '{c}', 'ann');
         INSERT INTO threads (id, company_id, kind, last_seq) VALUES ('{t}', '{c}', 'group', 4);
         INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind,
                               body, edited_at, deleted_at)
         SELECT gen_random_uuid(), '{t}', '{c}', s, '{a}', gen_random_uuid(), 'text',
                CASE WHEN s = 3 THEN NULL ELSE 'm' END,
                CASE WHEN s = 1 THEN now() - interval '1 minute' END,
                CASE WHEN s = 3 THEN now() - interval '2 minutes' END
         FROM generate_series(1, 4) s;"
    ))
    .await;
    db.exec(include_str!(
        "../../migrations/2026-12-07-100000_messages_rev/up.sql"
    ))
    .await;

    let rev = |seq: i64| format!("SELECT rev AS n FROM messages WHERE seq = {seq}");
    // 3 was deleted before 1 was edited: revs 5 and 6.
    for (seq, expected) in [(1, 6), (2, 2), (3, 5), (4, 4)] {
        assert_eq!(db.count(&rev(seq)).await, expected, "seq {seq}");
    }
    assert_eq!(
        db.count("SELECT last_rev AS n FROM threads").await,
        6,
        "last_rev"
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM message_changes WHERE rev BETWEEN 1 AND 6")
            .await,
        6,
        "every rev logged once"
    );
    // Sends stopped logging creations: the rows of messages never changed
    // go, those of changed messages stay (their row's rev moved on).
    db.exec(include_str!(
        "../../migrations/2026-12-08-100000_lazy_creation_log/up.sql"
    ))
    .await;
    assert_eq!(
        db.count("SELECT count(*) AS n FROM message_changes WHERE kind = 'created'")
            .await,
        2,
        "creation rows of the edited and the deleted message"
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM message_changes").await,
        4,
        "two creations, an edit and a deletion"
    );
    drop(db);
    crate::support::db::admin_exec(&format!("DROP DATABASE {name} WITH (FORCE)")).await;
}
