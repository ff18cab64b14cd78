//! `fanout` and `ramp`: T threads of M members, each member one session;
//! messages are sent round-robin over the threads, and within a thread
//! round-robin over its members, at an offered rate (or as fast as an
//! in-flight window allows), then every delivery is reconciled.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Command, Counters};
use crate::counting::reconcile;
use crate::latency::Summary;
use crate::report::{progress, Meters, RunReport, Throughput, Watch};
use crate::world::World;
use crate::BenchResult;

/// How often the pacer wakes to send what is due.
const PACER_TICK: Duration = Duration::from_millis(1);
/// Server RSS is sampled this often during a load, to show it flat (or not).
const RSS_SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// After sending stops, how long to wait for the last acks and deliveries.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// One measured period of load on an already built world.
pub struct Load {
    /// Messages per second over all threads; 0 = as fast as `window` lets.
    pub rate: f64,
    pub duration: Duration,
    /// Messages sent but not yet acked, at most (rate 0 only).
    pub window: u64,
}

pub async fn run_load(
    world: &World,
    load: &Load,
    scenario: &str,
    params: serde_json::Value,
    watch: &Watch,
) -> BenchResult<RunReport> {
    let counters = &world.shared.counters;
    let threads = world.members.len().max(1) as u64;
    let start_sent = Counters::get(&counters.sent);
    let start_acked = Counters::get(&counters.acked) + Counters::get(&counters.errors);
    let start_delivered = Counters::get(&counters.delivered);
    let start_expected = Counters::get(&counters.expected);
    let meters = Meters::start(watch);
    let bar = progress(load.duration, scenario, world.shared.clone());
    let started = Instant::now();
    let mut issued: u64 = 0;
    let mut rss_samples: Vec<(f64, u64)> = Vec::new();
    let mut next_rss_sample = Duration::ZERO;
    let mut ticker = tokio::time::interval(PACER_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started.elapsed() < load.duration {
        ticker.tick().await;
        if started.elapsed() >= next_rss_sample {
            if let Some(rss) = watch.server.rss() {
                rss_samples.push((started.elapsed().as_secs_f64(), rss));
            }
            next_rss_sample += RSS_SAMPLE_EVERY;
        }
        let due = if load.rate > 0.0 {
            (started.elapsed().as_secs_f64() * load.rate) as u64
        } else {
            let answered =
                Counters::get(&counters.acked) + Counters::get(&counters.errors) - start_acked;
            let in_flight = issued.saturating_sub(answered);
            issued + load.window.saturating_sub(in_flight)
        };
        while issued < due {
            let thread = (issued % threads) as usize;
            let members = &world.members[thread];
            let turn = (issued / threads) as usize % members.len().max(1);
            if let Some(&session) = members.get(turn) {
                let _ = world.sessions[session].send(Command::Send { thread });
            }
            issued += 1;
        }
    }
    let sending = started.elapsed();
    // Drain: every send answered and every owed delivery in, or time out.
    let drain_started = Instant::now();
    while drain_started.elapsed() < DRAIN_TIMEOUT {
        let answered =
            Counters::get(&counters.acked) + Counters::get(&counters.errors) - start_acked;
        let delivered = Counters::get(&counters.delivered) - start_delivered;
        let owed = Counters::get(&counters.expected) - start_expected;
        if answered >= issued && delivered >= owed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let delivered = Counters::get(&counters.delivered) - start_delivered;
    let resources = meters.finish(delivered);
    let merged = world.collect().await?;
    let counts = reconcile(&merged.acked, &world.members, &merged.received);
    let mut report = RunReport::new(scenario, params);
    report.duration_s = elapsed.as_secs_f64();
    report.sent = Counters::get(&counters.sent) - start_sent;
    report.acked = merged.acked.len() as u64;
    report.errors = merged.errors;
    report.closed_by_server = merged.closed_by_server;
    report.clean = counts.is_clean();
    report.counts = counts;
    report.throughput = Throughput {
        offered_msgs_per_s: load.rate,
        acked_per_s: report.acked as f64 / elapsed.as_secs_f64(),
        delivered_per_s: counts.delivered as f64 / elapsed.as_secs_f64(),
    };
    report
        .latency
        .insert("ack".into(), Summary::of(&merged.ack));
    report
        .latency
        .insert("delivery".into(), Summary::of(&merged.delivery));
    report.resources = resources;
    report.extra = json!({
        "sending_s": sending.as_secs_f64(),
        "drain_s": elapsed.as_secs_f64() - sending.as_secs_f64(),
        "rss_samples": rss_samples,
    });
    Ok(report)
}

/// Whether a ramp step held its offered rate.
pub fn sustained(report: &RunReport, p99_bound_ms: f64) -> bool {
    let offered_deliveries = report.throughput.offered_msgs_per_s * report.counts.expected as f64
        / report.acked.max(1) as f64;
    report.clean
        && report.counts.missing == 0
        && report.errors.is_empty()
        && report.closed_by_server.is_empty()
        && report.p99_ms("delivery") <= p99_bound_ms
        && report.acked >= report.sent
        && report.throughput.delivered_per_s >= 0.9 * offered_deliveries
}
