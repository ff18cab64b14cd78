//! Start-up preparation: create the database if it is missing and run the
//! migrations embedded in the binary, so `cargo run` needs no other step.
//! Every connection here goes through [`PgConnector`], with the TLS that
//! `DATABASE_URL` asks for.

use diesel::sql_types::{Integer, Text};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::connect::{ConnectError, PgConnector};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("database_url: {0}")]
    BadUrl(String),
    #[error("connecting to Postgres at {url}: {source}")]
    Connect { url: String, source: ConnectError },
    #[error("creating database {name}: {source}")]
    Create {
        name: String,
        source: diesel::result::Error,
    },
    #[error("running migrations: {0}")]
    Migrate(String),
}

/// Creates the database named by `database_url` if it does not exist, then
/// runs pending migrations.
pub async fn prepare_database(database_url: &str) -> Result<(), PrepareError> {
    let target = connector(database_url)?;
    create_database_if_missing(&target, database_url).await?;
    let conn = target
        .connect()
        .await
        .map_err(connect_error(database_url))?;
    run_migrations(conn).await
}

fn connector(database_url: &str) -> Result<PgConnector, PrepareError> {
    PgConnector::from_url(database_url).map_err(connect_error(database_url))
}

fn connect_error(database_url: &str) -> impl Fn(ConnectError) -> PrepareError + '_ {
    move |source| match source {
        ConnectError::BadUrl(why) => PrepareError::BadUrl(why),
        source => PrepareError::Connect {
            url: redact(database_url),
            source,
        },
    }
}

fn database_name(target: &PgConnector) -> Result<String, PrepareError> {
    target
        .database()
        .map(String::from)
        .ok_or_else(|| PrepareError::BadUrl("names no database".into()))
}

/// Connects to the server's `postgres` database and creates ours. Safe to
/// race with another process doing the same.
async fn create_database_if_missing(
    target: &PgConnector,
    database_url: &str,
) -> Result<(), PrepareError> {
    let name = database_name(target)?;
    let mut conn = target
        .to_database("postgres")
        .connect()
        .await
        .map_err(connect_error(database_url))?;
    create_unless_present(&mut conn, &name)
        .await
        .map_err(|source| PrepareError::Create { name, source })
}

async fn create_unless_present(
    conn: &mut AsyncPgConnection,
    name: &str,
) -> Result<(), diesel::result::Error> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = Integer)]
        #[allow(dead_code)]
        one: i32,
    }
    let exists = diesel::sql_query("SELECT 1 AS one FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .load::<Found>(conn)
        .await?;
    if !exists.is_empty() {
        return Ok(());
    }
    match conn
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
        .await
    {
        Ok(()) => {
            log::info!("created database {name}");
            Ok(())
        }
        // Someone else created it between our check and our CREATE.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Runs the embedded migrations on `conn`. Diesel's migration harness is
/// synchronous, so it runs on a thread of its own over the async
/// connection wrapper; the connection's I/O stays on the caller's runtime,
/// which is free while it waits for the thread.
async fn run_migrations(conn: AsyncPgConnection) -> Result<(), PrepareError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        let result = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|done| {
                for m in done {
                    log::info!("applied migration {m}");
                }
            })
            .map_err(|e| PrepareError::Migrate(e.to_string()));
        let _ = tx.send(result);
    });
    rx.await
        .map_err(|_| PrepareError::Migrate("the migration thread died".into()))?
}

/// Double-quotes an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The URL without its password, for messages.
pub fn redact(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable url>".into(),
    }
}
