//! `receipts`: pairs of users, each pair a thread. One side sends; the
//! other answers every message with chat:delivered and chat:mark-read; the
//! sender times send → ack, send → its chat:delivered, send → its
//! chat:read, then sends the next (a closed loop per pair).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Behaviour, Command, Counters};
use crate::counting::reconcile;
use crate::latency::Summary;
use crate::report::{progress, Meters, RunReport, Throughput, Watch};
use crate::world::{Target, World};
use crate::BenchResult;

const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(
    target: &Target,
    pairs: usize,
    duration: Duration,
    body_bytes: usize,
    concurrency: usize,
    watch: &Watch,
) -> BenchResult<RunReport> {
    let behaviour = |i: usize| {
        if i.is_multiple_of(2) {
            Behaviour {
                send_on_read: true,
                ..Behaviour::default()
            }
        } else {
            Behaviour {
                auto_receipts: true,
                ..Behaviour::default()
            }
        }
    };
    let world = World::build(target, pairs, 2, body_bytes, behaviour, concurrency).await?;
    let counters = &world.shared.counters;
    let meters = Meters::start(watch);
    let bar = progress(duration, "receipts", world.shared.clone());
    let started = Instant::now();
    for (thread, members) in world.members.iter().enumerate() {
        if let Some(&sender) = members.first() {
            let _ = world.sessions[sender].send(Command::Send { thread });
        }
    }
    tokio::time::sleep(duration).await;
    world.shared.running.store(false, Ordering::Relaxed);
    let drain = Instant::now();
    while drain.elapsed() < DRAIN_TIMEOUT
        && Counters::get(&counters.receipts) + Counters::get(&counters.errors)
            < Counters::get(&counters.sent)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let delivered = Counters::get(&counters.delivered);
    let resources = meters.finish(delivered);
    let merged = world.collect().await?;
    world.close();
    let counts = reconcile(&merged.acked, &world.members, &merged.received);
    let mut report = RunReport::new(
        "receipts",
        json!({ "pairs": pairs, "duration_s": duration.as_secs_f64(), "body_bytes": body_bytes }),
    );
    report.duration_s = elapsed;
    report.sent = Counters::get(&counters.sent);
    report.acked = merged.acked.len() as u64;
    report.errors = merged.errors;
    report.closed_by_server = merged.closed_by_server;
    report.clean = counts.is_clean();
    report.counts = counts;
    report.throughput = Throughput {
        offered_msgs_per_s: 0.0,
        acked_per_s: report.acked as f64 / elapsed,
        delivered_per_s: counts.delivered as f64 / elapsed,
    };
    for (name, h) in [
        ("ack", &merged.ack),
        ("delivery", &merged.delivery),
        ("receipt_delivered", &merged.receipt_delivered),
        ("receipt_read", &merged.receipt_read),
    ] {
        report.latency.insert(name.into(), Summary::of(h));
    }
    report.resources = resources;
    report.extra = json!({
        "round_trips": Counters::get(&counters.receipts),
        "round_trips_per_s": Counters::get(&counters.receipts) as f64 / elapsed,
    });
    Ok(report)
}
