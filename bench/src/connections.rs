//! `connections`: N idle sessions. How fast they connect (each counted
//! when its `chat:ready` arrives) and what each costs the server in RSS,
//! sampled as they come so RSS can be plotted against sessions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Behaviour, Shared};
use crate::report::{progress, Meters, RunReport, Watch};
use crate::world::{collect, connect_all, Admin, Target};
use crate::BenchResult;

/// RSS is sampled this often while sessions connect.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Time for the server to settle before the final RSS reading.
const SETTLE: Duration = Duration::from_secs(1);

pub struct Idle {
    pub sessions: usize,
    pub sessions_per_user: usize,
    /// Users per thread, so each chat:ready carries a thread.
    pub members: usize,
    pub hold: Duration,
    pub concurrency: usize,
}

pub async fn run(target: &Target, idle: &Idle, watch: &Watch) -> BenchResult<RunReport> {
    let admin = Admin::new(target)?;
    let company = admin.company().await?;
    let per_user = idle.sessions_per_user.max(1);
    let users = admin
        .users(company, idle.sessions.div_ceil(per_user))
        .await?;
    let thread_ids = admin.threads(company, &users, idle.members.max(1)).await?;
    let sizes = vec![idle.members * per_user; thread_ids.len()];
    let shared = Arc::new(Shared::new(thread_ids, sizes, 16));
    let sessions: Vec<_> = (0..idle.sessions)
        .map(|i| users[i % users.len()].clone())
        .collect();
    let rss_before = watch.server.rss();
    let connected = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(u64, u64)>::new()));
    let sampler = {
        let (connected, samples, server) =
            (connected.clone(), samples.clone(), watch.server.clone());
        tokio::spawn(async move {
            loop {
                if let (Some(rss), Ok(mut s)) = (server.rss(), samples.lock()) {
                    s.push((connected.load(Ordering::Relaxed), rss));
                }
                tokio::time::sleep(RSS_SAMPLE_EVERY).await;
            }
        })
    };
    let meters = Meters::start(watch);
    let bar = progress(Duration::from_secs(10), "connections", shared.clone());
    let started = Instant::now();
    let (senders, _) = connect_all(
        target,
        &sessions,
        &shared,
        |_| Behaviour::default(),
        idle.concurrency,
        || {
            connected.fetch_add(1, Ordering::Relaxed);
        },
    )
    .await?;
    let connect_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    tokio::time::sleep(SETTLE).await;
    let rss_after = watch.server.rss();
    if let (Some(rss), Ok(mut s)) = (rss_after, samples.lock()) {
        s.push((connected.load(Ordering::Relaxed), rss));
    }
    sampler.abort();
    tokio::time::sleep(idle.hold).await;
    let resources = meters.finish(0);
    let merged = collect(&senders).await?;
    for sender in &senders {
        let _ = sender.send(crate::client::Command::Close);
    }
    let n = idle.sessions as f64;
    let rss_per_session = match (rss_before, rss_after) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 / n),
        _ => None,
    };
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let mut report = RunReport::new(
        "connections",
        json!({ "sessions": idle.sessions, "sessions_per_user": per_user,
                "members": idle.members, "concurrency": idle.concurrency }),
    );
    report.duration_s = started.elapsed().as_secs_f64();
    report.errors = merged.errors;
    report.closed_by_server = merged.closed_by_server;
    report.resources = resources;
    report.extra = json!({
        "connect_s": connect_s,
        "connects_per_s": n / connect_s,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_per_session_bytes": rss_per_session,
        "rss_samples": samples,
    });
    Ok(report)
}
