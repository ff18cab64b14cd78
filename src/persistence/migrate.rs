//! Start-up preparation: create the database if it is missing and run the
//! migrations embedded in the binary, so `cargo run` needs no other step.

use diesel::sql_types::Text;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::database_name;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("database_url: {0}")]
    BadUrl(String),
    #[error("cannot reach Postgres at {url}: {source}")]
    Connect {
        url: String,
        source: diesel::ConnectionError,
    },
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
    create_database_if_missing(database_url).await?;
    run_migrations(database_url.to_string()).await
}

/// Connects to the server's `postgres` database and creates ours. Safe to
/// race with another process doing the same.
pub async fn create_database_if_missing(database_url: &str) -> Result<(), PrepareError> {
    let name = database_name(database_url)
        .ok_or_else(|| PrepareError::BadUrl("names no database".into()))?;
    let mut admin_url =
        url::Url::parse(database_url).map_err(|e| PrepareError::BadUrl(e.to_string()))?;
    admin_url.set_path("/postgres");
    let mut conn = AsyncPgConnection::establish(admin_url.as_str())
        .await
        .map_err(|source| PrepareError::Connect {
            url: redact(database_url),
            source,
        })?;

    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        #[allow(dead_code)]
        one: i32,
    }
    let exists = diesel::sql_query("SELECT 1 AS one FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(&name)
        .load::<Found>(&mut conn)
        .await
        .map_err(|source| PrepareError::Create {
            name: name.clone(),
            source,
        })?;
    if !exists.is_empty() {
        return Ok(());
    }
    match conn
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
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
        Err(source) => Err(PrepareError::Create { name, source }),
    }
}

/// Runs the embedded migrations. Diesel's migration harness is synchronous,
/// so it runs on a thread of its own over the async connection wrapper.
pub async fn run_migrations(database_url: String) -> Result<(), PrepareError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            use diesel::Connection;
            let mut conn =
                <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&database_url)
                    .map_err(|e| PrepareError::Connect {
                        url: redact(&database_url),
                        source: e,
                    })?;
            conn.run_pending_migrations(MIGRATIONS)
                .map(|done| {
                    for m in done {
                        log::info!("applied migration {m}");
                    }
                })
                .map_err(|e| PrepareError::Migrate(e.to_string()))
        })();
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
