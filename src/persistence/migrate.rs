//! Start-up preparation: create the database if it is missing and run the
//! migrations embedded in the binary, so `cargo run` needs no other step.
//! Every connection here goes through [`PgConnector`], with the TLS that
//! `DATABASE_URL` asks for.
//!
//! Several nodes may start at once on a fresh database. Creating it and
//! migrating it are each done under a Postgres advisory lock, so one node
//! does the work while the others wait and then find nothing left to do;
//! without it they race, and all but one fail on duplicate catalog rows.
//! Deployments that migrate as a separate step (`confab migrate`) start the
//! servers with `migrate = false`, which only checks that the schema is
//! there.

use std::collections::HashSet;

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool, Integer, Text};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::connect::{ConnectError, PgConnector};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock held while migrating, on the target database (advisory
/// locks are per database, so one fixed key serves every database). The
/// bytes spell "confab".
const MIGRATION_LOCK: i64 = 0x636f_6e66_6162;
/// The first half of the two-part lock held on the maintenance database
/// while creating one; the second half is the hash of the database's name,
/// so creating different databases does not serialize. The bytes spell
/// "cfdb".
const CREATION_LOCK_SPACE: i32 = 0x6366_6462;

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
    #[error("taking the migration lock on {name}: {source}")]
    Lock {
        name: String,
        source: diesel::result::Error,
    },
    #[error("running migrations: {0}")]
    Migrate(String),
    #[error("database {name} does not exist, and migrate is off (--no-migrate or CONFAB_MIGRATE=false): run `confab migrate` first")]
    Missing { name: String },
    #[error("database {name} is not migrated ({} pending: {}), and migrate is off (--no-migrate or CONFAB_MIGRATE=false): run `confab migrate` first", pending.len(), pending.join(", "))]
    NotMigrated { name: String, pending: Vec<String> },
}

/// What start-up does with the database: prepare it, or with `migrate`
/// off, only check that the schema is complete, so a server never serves
/// a half-made schema.
pub async fn prepare_or_check(database_url: &str, migrate: bool) -> Result<(), PrepareError> {
    if migrate {
        prepare_database(database_url).await
    } else {
        check_migrated(database_url).await
    }
}

/// Creates the database named by `database_url` if it does not exist, then
/// runs pending migrations.
pub async fn prepare_database(database_url: &str) -> Result<(), PrepareError> {
    let target = connector(database_url)?;
    let conn = match target.connect().await {
        Ok(conn) => conn,
        Err(e) if e.is_missing_database() => {
            create_database(&target, database_url).await?;
            target
                .connect()
                .await
                .map_err(connect_error(database_url))?
        }
        Err(e) => return Err(connect_error(database_url)(e)),
    };
    run_migrations(conn, database_name(&target)?).await
}

/// For servers that do not migrate: the database must exist and have every
/// migration of this binary applied. Waits for a migration in progress
/// (the shared side of the migration lock) rather than fail on it.
pub async fn check_migrated(database_url: &str) -> Result<(), PrepareError> {
    let target = connector(database_url)?;
    let name = database_name(&target)?;
    let mut conn = match target.connect().await {
        Ok(conn) => conn,
        Err(e) if e.is_missing_database() => return Err(PrepareError::Missing { name }),
        Err(e) => return Err(connect_error(database_url)(e)),
    };
    let lock_error = |source| PrepareError::Lock {
        name: name.clone(),
        source,
    };
    diesel::sql_query("SELECT pg_advisory_lock_shared($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .await
        .map_err(lock_error)?;
    let applied = applied_versions(&mut conn).await;
    diesel::sql_query("SELECT pg_advisory_unlock_shared($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .await
        .map_err(lock_error)?;
    let applied = applied.map_err(|e| PrepareError::Migrate(e.to_string()))?;

    let known = MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map_err(|e| PrepareError::Migrate(e.to_string()))?;
    let pending: Vec<String> = known
        .iter()
        .filter(|m| !applied.contains(&m.name().version().to_string()))
        .map(|m| m.name().to_string())
        .collect();
    if pending.is_empty() {
        log::info!("database {name}: migrations are up to date (not migrating: migrate is off)");
        Ok(())
    } else {
        Err(PrepareError::NotMigrated { name, pending })
    }
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

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Connects to the server's `postgres` database and creates ours, holding
/// the creation lock so that nodes starting together create it once.
async fn create_database(target: &PgConnector, database_url: &str) -> Result<(), PrepareError> {
    let name = database_name(target)?;
    let mut conn = target
        .to_database("postgres")
        .connect()
        .await
        .map_err(connect_error(database_url))?;
    let create_error = |source| PrepareError::Create {
        name: name.clone(),
        source,
    };

    let lock = |function: &'static str| {
        diesel::sql_query(format!("SELECT {function}($1, hashtext($2)) AS locked"))
            .bind::<Integer, _>(CREATION_LOCK_SPACE)
            .bind::<Text, _>(name.clone())
    };
    let got: Locked = lock("pg_try_advisory_lock")
        .get_result(&mut conn)
        .await
        .map_err(create_error)?;
    if !got.locked {
        log::info!("another process is creating database {name}; waiting for it");
        diesel::sql_query("SELECT pg_advisory_lock($1, hashtext($2))")
            .bind::<Integer, _>(CREATION_LOCK_SPACE)
            .bind::<Text, _>(name.clone())
            .execute(&mut conn)
            .await
            .map_err(create_error)?;
    }
    let created = create_unless_present(&mut conn, &name).await;
    // Closing the session would release the lock too; releasing it here
    // lets the next node go on before this connection is torn down.
    lock("pg_advisory_unlock")
        .get_result::<Locked>(&mut conn)
        .await
        .map_err(create_error)?;
    created.map_err(create_error)
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
        // Created by a process that does not take the lock (an older
        // confab, an operator) between our check and our CREATE.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Runs the embedded migrations on `conn` under the migration lock. Diesel's
/// migration harness is synchronous, so it runs on a thread of its own over
/// the async connection wrapper; the connection's I/O stays on the caller's
/// runtime, which is free while it waits for the thread.
async fn run_migrations(mut conn: AsyncPgConnection, name: String) -> Result<(), PrepareError> {
    let got: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .get_result(&mut conn)
        .await
        .map_err(|source| PrepareError::Lock {
            name: name.clone(),
            source,
        })?;
    if !got.locked {
        log::info!("another process is migrating database {name}; waiting for it");
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<BigInt, _>(MIGRATION_LOCK)
            .execute(&mut conn)
            .await
            .map_err(|source| PrepareError::Lock {
                name: name.clone(),
                source,
            })?;
    }

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
        // As above: the session's end would release it too.
        let unlocked = diesel::connection::SimpleConnection::batch_execute(
            &mut conn,
            &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"),
        )
        .map_err(|source| PrepareError::Lock { name, source });
        let _ = tx.send(result.and(unlocked));
    });
    rx.await
        .map_err(|_| PrepareError::Migrate("the migration thread died".into()))?
}

/// The versions recorded in diesel's bookkeeping table; none if the table
/// is not there yet (creating it is the migrator's job).
async fn applied_versions(
    conn: &mut AsyncPgConnection,
) -> Result<HashSet<String>, diesel::result::Error> {
    #[derive(diesel::QueryableByName)]
    struct Present {
        #[diesel(sql_type = Bool)]
        present: bool,
    }
    #[derive(diesel::QueryableByName)]
    struct Applied {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let table: Present = diesel::sql_query(
        "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS present",
    )
    .get_result(conn)
    .await?;
    if !table.present {
        return Ok(HashSet::new());
    }
    let rows: Vec<Applied> = diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.version).collect())
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
