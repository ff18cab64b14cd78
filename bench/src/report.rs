//! What a run prints: a human summary on stderr, one JSON line on stdout
//! (and appended to `--json-out`), a loud line when a message went
//! missing, came twice or out of order; and the progress bar meanwhile.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::client::{Counters, Shared};
use crate::counting::Counts;
use crate::latency::Summary;
use crate::procstat::{cpu_pressure_avg10, CpuMeter, CpuUse, Watched};
use crate::BenchResult;

/// Where the processes to watch are.
#[derive(Debug, Clone)]
pub struct Watch {
    pub server: Watched,
    pub postgres: Watched,
}

/// CPU meters over one measurement window.
pub struct Meters {
    server: CpuMeter,
    postgres: CpuMeter,
    bench: CpuMeter,
    server_watched: Watched,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Resources {
    pub server_rss_bytes: Option<u64>,
    pub server_cpu: Option<CpuUse>,
    pub postgres_cpu: Option<CpuUse>,
    pub bench_cpu: Option<CpuUse>,
    pub server_cpu_ms_per_1000_deliveries: Option<f64>,
    pub postgres_cpu_ms_per_1000_deliveries: Option<f64>,
    /// Percent of the last 10 s some task waited for a CPU, machine-wide.
    pub cpu_pressure_avg10: Option<f64>,
}

impl Meters {
    pub fn start(watch: &Watch) -> Self {
        Meters {
            server: CpuMeter::start(watch.server.clone()),
            postgres: CpuMeter::start(watch.postgres.clone()),
            bench: CpuMeter::start(Watched::Myself),
            server_watched: watch.server.clone(),
        }
    }

    /// Figures since start; costs per delivery use `deliveries`.
    pub fn finish(&self, deliveries: u64) -> Resources {
        let server_cpu = self.server.finish();
        let postgres_cpu = self.postgres.finish();
        let per_1000 = |cpu: Option<CpuUse>| {
            cpu.filter(|_| deliveries > 0)
                .map(|c| c.cpu_ms * 1000.0 / deliveries as f64)
        };
        Resources {
            server_rss_bytes: self.server_watched.rss(),
            server_cpu,
            postgres_cpu,
            bench_cpu: self.bench.finish(),
            server_cpu_ms_per_1000_deliveries: per_1000(server_cpu),
            postgres_cpu_ms_per_1000_deliveries: per_1000(postgres_cpu),
            cpu_pressure_avg10: cpu_pressure_avg10(),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Throughput {
    /// 0 when the run sent as fast as the in-flight window allowed.
    pub offered_msgs_per_s: f64,
    pub acked_per_s: f64,
    pub delivered_per_s: f64,
}

/// One run (or one ramp step), as the JSON line reports it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub unix_time: u64,
    pub params: Value,
    pub duration_s: f64,
    pub sent: u64,
    pub acked: u64,
    pub errors: BTreeMap<String, u64>,
    pub closed_by_server: BTreeMap<String, u64>,
    pub counts: Counts,
    pub throughput: Throughput,
    pub latency: BTreeMap<String, Summary>,
    pub resources: Resources,
    /// What only this scenario measures (connect rate, ceilings, ...).
    pub extra: Value,
    /// No message missing, duplicated or out of order.
    pub clean: bool,
}

impl RunReport {
    pub fn new(scenario: &str, params: Value) -> Self {
        RunReport {
            scenario: scenario.to_string(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            params,
            duration_s: 0.0,
            sent: 0,
            acked: 0,
            errors: BTreeMap::new(),
            closed_by_server: BTreeMap::new(),
            counts: Counts::default(),
            throughput: Throughput::default(),
            latency: BTreeMap::new(),
            resources: Resources::default(),
            extra: Value::Null,
            clean: true,
        }
    }

    pub fn p99_ms(&self, name: &str) -> f64 {
        self.latency.get(name).map_or(0.0, |s| s.p99_ms)
    }

    /// The human summary, on stderr so stdout stays one JSON line a run.
    pub fn print_summary(&self) {
        let mut lines = vec![format!(
            "== {} {} ({:.1} s)",
            self.scenario, self.params, self.duration_s
        )];
        let c = &self.counts;
        lines.push(format!(
            "messages   sent {}  acked {}  deliveries expected {}  delivered {}  missing {}  duplicated {}  out-of-order {}  unacked-deliveries {}",
            self.sent, self.acked, c.expected, c.delivered, c.missing, c.duplicated, c.out_of_order, c.unacked_deliveries
        ));
        let t = &self.throughput;
        lines.push(format!(
            "throughput offered {:.0} msg/s  acked {:.0} msg/s  delivered {:.0} /s",
            t.offered_msgs_per_s, t.acked_per_s, t.delivered_per_s
        ));
        for (name, summary) in &self.latency {
            lines.push(summary.line(name));
        }
        let r = &self.resources;
        let cpu = |c: Option<CpuUse>| c.map_or("-".into(), |c| format!("{:.2} cores", c.share));
        lines.push(format!(
            "resources  server {} rss {}  postgres {}  bench {}  server ms/1000 deliveries {}  pg ms/1000 {}  cpu pressure {}%",
            cpu(r.server_cpu),
            r.server_rss_bytes.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
            cpu(r.postgres_cpu),
            cpu(r.bench_cpu),
            r.server_cpu_ms_per_1000_deliveries.map_or("-".into(), |v| format!("{v:.1}")),
            r.postgres_cpu_ms_per_1000_deliveries.map_or("-".into(), |v| format!("{v:.1}")),
            r.cpu_pressure_avg10.map_or("-".into(), |v| format!("{v:.0}")),
        ));
        if !self.errors.is_empty() {
            lines.push(format!("errors     {:?}", self.errors));
        }
        if !self.closed_by_server.is_empty() {
            lines.push(format!("closed     {:?}", self.closed_by_server));
        }
        if !self.extra.is_null() {
            lines.push(format!("extra      {}", self.extra));
        }
        if !self.clean {
            lines.push(format!(
                "!!!!! FAILURE: {} missing, {} duplicated, {} out of order — the server broke a delivery promise !!!!!",
                c.missing, c.duplicated, c.out_of_order
            ));
        }
        eprintln!("{}", lines.join("\n"));
    }
}

/// Prints the JSON line and appends it to `json_out` if given.
pub fn emit(report: &RunReport, json_out: Option<&PathBuf>) -> BenchResult<()> {
    report.print_summary();
    let line = serde_json::to_string(report)?;
    println!("{line}");
    if let Some(path) = json_out {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(file, "{line}")?;
    }
    Ok(())
}

/// A progress bar over `duration` showing the live counters.
pub fn progress(duration: Duration, label: &str, shared: Arc<Shared>) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis() as u64);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {msg}")
    {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_string());
    let ticker = bar.clone();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        while !ticker.is_finished() {
            let c = &shared.counters;
            ticker.set_position(started.elapsed().as_millis() as u64);
            ticker.set_message(format!(
                "sent {} acked {} delivered {} errors {} closed {}",
                Counters::get(&c.sent),
                Counters::get(&c.acked),
                Counters::get(&c.delivered),
                Counters::get(&c.errors),
                Counters::get(&c.closed),
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    bar
}
