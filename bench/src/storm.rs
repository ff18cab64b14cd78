//! `storm`: N clients in threads of M, all disconnected while a writer in
//! each thread sends; then all N reconnect at once and catch up with
//! chat:sync. Every missed message must come back exactly once, in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Behaviour, Command, Counters, Shared};
use crate::counting::reconcile;
use crate::latency::Summary;
use crate::report::{progress, Meters, RunReport, Throughput, Watch};
use crate::world::{collect, connect_all, Admin, Target};
use crate::BenchResult;

const WAIT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Storm {
    pub clients: usize,
    pub members: usize,
    /// Messages each thread's writer sends while its readers are away.
    pub backlog: usize,
    pub concurrency: usize,
    pub body_bytes: usize,
}

async fn wait_for(counter: &std::sync::atomic::AtomicU64, target: u64) -> bool {
    let started = Instant::now();
    while Counters::get(counter) < target {
        if started.elapsed() > WAIT_TIMEOUT {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

pub async fn run(target: &Target, storm: &Storm, watch: &Watch) -> BenchResult<RunReport> {
    let admin = Admin::new(target)?;
    let company = admin.company().await?;
    let m = storm.members.max(1);
    let threads = storm.clients.div_ceil(m);
    let readers = admin.users(company, threads * m).await?;
    let writers = admin.users(company, threads).await?;
    let mut thread_ids = Vec::with_capacity(threads);
    let mut members = Vec::with_capacity(threads);
    for t in 0..threads {
        let mut ids: Vec<_> = readers[t * m..(t + 1) * m].iter().map(|u| u.id).collect();
        ids.push(writers[t].id);
        thread_ids.push(admin.thread(company, &ids).await?);
        // Readers are sessions 0..threads*m, the writer of thread t is
        // session threads*m + t.
        let mut sessions: Vec<usize> = (t * m..(t + 1) * m).collect();
        sessions.push(threads * m + t);
        members.push(sessions);
    }
    let shared = Arc::new(Shared::new(
        thread_ids,
        vec![m + 1; threads],
        storm.body_bytes,
    ));
    let mut everyone = readers.clone();
    everyone.extend(writers.iter().cloned());
    let n_readers = readers.len();
    let (first, _) = connect_all(
        target,
        &everyone,
        &shared,
        |_| Behaviour::default(),
        storm.concurrency,
        || {},
    )
    .await?;
    // Readers go away; writers fill each thread's backlog meanwhile.
    for reader in &first[..n_readers] {
        let _ = reader.send(Command::Close);
    }
    let writer_sessions = &first[n_readers..];
    for _ in 0..storm.backlog {
        for (t, writer) in writer_sessions.iter().enumerate() {
            let _ = writer.send(Command::Send { thread: t });
        }
    }
    let owed_acks = (storm.backlog * threads) as u64;
    if !wait_for(&shared.counters.acked, owed_acks).await {
        return Err("the writers' backlog was not acked in time".into());
    }
    let writers_seen = collect(writer_sessions).await?;

    let meters = Meters::start(watch);
    let bar = progress(Duration::from_secs(10), "storm", shared.clone());
    let started = Instant::now();
    let (again, readies) = connect_all(
        target,
        &readers,
        &shared,
        |_| Behaviour::default(),
        storm.concurrency.max(n_readers),
        || {},
    )
    .await?;
    let reconnect_s = started.elapsed().as_secs_f64();
    let synced_before = Counters::get(&shared.counters.synced);
    let mut syncing = 0u64;
    for (session, ready) in again.iter().zip(&readies) {
        let mut any = false;
        for thread in &ready.threads {
            if let Some(&t) = shared.thread_index.get(&thread.id) {
                // They had seen nothing of it before they left.
                if thread.last_seq > 0 {
                    let _ = session.send(Command::Sync {
                        thread: t,
                        after_seq: 0,
                    });
                    any = true;
                }
            }
        }
        syncing += u64::from(any);
    }
    let all_synced = wait_for(&shared.counters.synced, synced_before + syncing).await;
    let storm_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let resources = meters.finish(Counters::get(&shared.counters.delivered));
    let mut merged = collect(&again).await?;
    merged.acked = writers_seen.acked;
    for session in first.iter().chain(&again) {
        let _ = session.send(Command::Close);
    }
    let counts = reconcile(&merged.acked, &members, &merged.received);
    let mut report = RunReport::new(
        "storm",
        json!({ "clients": n_readers, "members": m, "backlog": storm.backlog,
                "concurrency": storm.concurrency.max(n_readers) }),
    );
    report.duration_s = storm_s;
    report.sent = owed_acks;
    report.acked = merged.acked.len() as u64;
    report.errors = merged.errors;
    report.closed_by_server = merged.closed_by_server;
    report.clean = counts.is_clean() && all_synced;
    report.counts = counts;
    report.throughput = Throughput {
        offered_msgs_per_s: 0.0,
        acked_per_s: 0.0,
        delivered_per_s: counts.delivered as f64 / storm_s,
    };
    report
        .latency
        .insert("sync".into(), Summary::of(&merged.sync));
    report.resources = resources;
    report.extra = json!({
        "reconnect_s": reconnect_s,
        "reconnects_per_s": n_readers as f64 / reconnect_s,
        "all_synced": all_synced,
        "storm_s": storm_s,
    });
    Ok(report)
}
