//! Direct access to the test's database, to check the rows a user's
//! action left and to set up states (like "hours ago") the API cannot.

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::PG_SERVER;

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

pub async fn admin_exec(sql: &str) {
    let mut conn = AsyncPgConnection::establish(&format!("{PG_SERVER}/postgres"))
        .await
        .expect("connect to postgres");
    conn.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    datname: String,
}

/// Test databases of runs whose process no longer exists.
pub async fn leftover_test_databases() -> Vec<String> {
    let mut conn = AsyncPgConnection::establish(&format!("{PG_SERVER}/postgres"))
        .await
        .expect("connect to postgres");
    let names: Vec<Name> =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'confab\\_test\\_%'")
            .load(&mut conn)
            .await
            .expect("list databases");
    names
        .into_iter()
        .map(|n| n.datname)
        .filter(|name| {
            let pid = name
                .trim_start_matches("confab_test_")
                .split('_')
                .next()
                .unwrap_or_default();
            match pid.parse::<u32>() {
                Ok(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                // Named by an older scheme: no run owns it.
                Err(_) => true,
            }
        })
        .collect()
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub struct Db(AsyncPgConnection);

impl Db {
    pub async fn connect(url: &str) -> Self {
        Db(AsyncPgConnection::establish(url)
            .await
            .expect("connect to the test database"))
    }

    /// `SELECT count(*)`-style queries: the first column, as i64.
    pub async fn count(&mut self, sql: &str) -> i64 {
        let wrapped = format!("SELECT ({sql})::bigint AS n");
        let row: Count = diesel::sql_query(&wrapped)
            .get_result(&mut self.0)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.n
    }

    pub async fn exec(&mut self, sql: &str) {
        self.0
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Seqs of a thread, ascending.
    pub async fn seqs(&mut self, thread_id: uuid::Uuid) -> Vec<i64> {
        #[derive(QueryableByName)]
        struct Seq {
            #[diesel(sql_type = BigInt)]
            seq: i64,
        }
        let rows: Vec<Seq> = diesel::sql_query(format!(
            "SELECT seq FROM messages WHERE thread_id = '{thread_id}' ORDER BY seq"
        ))
        .load(&mut self.0)
        .await
        .expect("seqs");
        rows.into_iter().map(|r| r.seq).collect()
    }
}

#[derive(QueryableByName)]
struct State {
    #[diesel(sql_type = Text)]
    state: String,
}

/// Every row of every table, as text (row counts, bodies, cursors, all),
/// to compare a database before and after something that must change nothing.
pub async fn database_state(db_url: &str) -> String {
    let mut conn = AsyncPgConnection::establish(db_url)
        .await
        .expect("connect to the test database");
    let table = |name: &str, order: &str| {
        format!(
            "(SELECT '{name}: ' || count(*) || ' ' || coalesce(string_agg(row_to_json(x)::text, ', ' ORDER BY {order}), '') FROM {name} x)"
        )
    };
    let sql = format!(
        "SELECT concat_ws(E'\\n', {}, {}, {}, {}, {}) AS state",
        table("companies", "x.id"),
        table("users", "x.id"),
        table("threads", "x.id"),
        table("memberships", "x.thread_id, x.user_id"),
        table("messages", "x.id"),
    );
    let row: State = diesel::sql_query(&sql)
        .get_result(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.state
}
