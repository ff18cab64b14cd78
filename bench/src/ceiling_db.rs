//! `ceiling-db`: the most durable message rows this Postgres takes. Rows
//! like confab's (same table, same columns, same body size, seqs taken
//! from `threads.last_seq` as the server does) go straight in, in batches,
//! through a pool built by confab's own `build_pool`, each batch one
//! committed statement (synchronous_commit as configured: durable by
//! default). The threads are the bench's own, created through the admin
//! API and never joined by a session, so the server's rooms never see
//! their seqs move.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use uuid::Uuid;

use crate::client::body_padding;
use crate::latency::{histogram, now_us, record, Summary};
use crate::world::{Admin, Target};
use crate::BenchResult;

const POOL_TIMEOUT: Duration = Duration::from_secs(10);

// Seqs and revs as the server numbers them (a new message is a change too).
const INSERT_BATCH: &str = "
    WITH bumped AS (
        UPDATE threads SET last_seq = last_seq + $3, last_rev = last_rev + $3 WHERE id = $1
        RETURNING last_seq, last_rev
    )
    INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind, body,
                          rev, created_rev)
    SELECT m.id, $1, $2, bumped.last_seq - $3 + m.ord, $4, m.cmid, 'text', m.body,
           bumped.last_rev - $3 + m.ord, bumped.last_rev - $3 + m.ord
    FROM bumped, unnest($5::uuid[], $6::uuid[], $7::text[]) WITH ORDINALITY AS m(id, cmid, body, ord)";

#[derive(Debug, Clone, Serialize)]
pub struct CeilingDb {
    pub threads: usize,
    pub pool_size: usize,
    pub batch: usize,
    pub rows: u64,
    pub commits: u64,
    pub rows_per_s: f64,
    pub commits_per_s: f64,
    pub commit: Summary,
}

pub struct DbLoad {
    pub threads: usize,
    pub pool_size: usize,
    pub batch: usize,
    pub duration: Duration,
    pub body_bytes: usize,
}

pub async fn run(target: &Target, database_url: &str, load: &DbLoad) -> BenchResult<CeilingDb> {
    let admin = Admin::new(target)?;
    let company = admin.company().await?;
    let users = admin.users(company, load.threads.max(1)).await?;
    let mut threads = Vec::with_capacity(users.len());
    for user in &users {
        threads.push((admin.thread(company, &[user.id]).await?, user.id));
    }
    let pool = confab::persistence::build_pool(database_url, load.pool_size.max(1), POOL_TIMEOUT)?;
    let rows = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..load.pool_size.max(1) {
        let (pool, rows, threads) = (pool.clone(), rows.clone(), threads.clone());
        let (batch, duration) = (load.batch.max(1), load.duration);
        let pad = body_padding(load.body_bytes);
        workers.push(tokio::spawn(async move {
            let mut commits = histogram()?;
            // Each worker keeps to one thread; with more workers than
            // threads they queue on its row lock, as senders do in confab.
            let (thread, sender) = threads[worker % threads.len()];
            while started.elapsed() < duration {
                let ids: Vec<Uuid> = (0..batch).map(|_| Uuid::now_v7()).collect();
                let cmids: Vec<Uuid> = (0..batch).map(|_| Uuid::new_v4()).collect();
                let began = now_us();
                let bodies: Vec<String> = (0..batch).map(|_| format!("{began} {pad}")).collect();
                let mut conn = pool.get().await?;
                let inserted = diesel::sql_query(INSERT_BATCH)
                    .bind::<SqlUuid, _>(thread)
                    .bind::<SqlUuid, _>(company)
                    .bind::<BigInt, _>(batch as i64)
                    .bind::<SqlUuid, _>(sender)
                    .bind::<Array<SqlUuid>, _>(ids)
                    .bind::<Array<SqlUuid>, _>(cmids)
                    .bind::<Array<Text>, _>(bodies)
                    .execute(&mut *conn)
                    .await?;
                record(&mut commits, now_us().saturating_sub(began));
                rows.fetch_add(inserted as u64, Ordering::Relaxed);
            }
            Ok::<_, crate::BenchError>(commits)
        }));
    }
    let mut commit = histogram()?;
    for worker in workers {
        commit.add(&worker.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rows = AtomicU64::load(&rows, Ordering::Relaxed);
    Ok(CeilingDb {
        threads: threads.len(),
        pool_size: load.pool_size,
        batch: load.batch,
        rows,
        commits: commit.len(),
        rows_per_s: rows as f64 / elapsed,
        commits_per_s: commit.len() as f64 / elapsed,
        commit: Summary::of(&commit),
    })
}
