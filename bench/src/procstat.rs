//! CPU time and RSS of processes by pid, read from /proc (Linux): the
//! server's, Postgres's and the bench's own, so a result says what each
//! delivery cost and whether the bench itself was the bottleneck.

use std::collections::HashMap;
use std::fs;
use std::time::Instant;

use serde::Serialize;

/// Kernel clock ticks per second for utime/stime. 100 on every Linux
/// configuration this runs on (USER_HZ is fixed for the /proc ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of one process, in ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), so utime (14) and stime (15)
    // are at 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Pids whose command name is exactly `name` (e.g. every postgres backend).
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

/// A set of processes watched together.
#[derive(Debug, Clone)]
pub enum Watched {
    Pids(Vec<u32>),
    /// Looked up again at each sample, since Postgres starts and ends
    /// backends as connections come and go.
    Named(String),
    Myself,
}

impl Watched {
    fn pids(&self) -> Vec<String> {
        match self {
            Watched::Pids(p) => p.iter().map(u32::to_string).collect(),
            Watched::Named(n) => pids_named(n).iter().map(u32::to_string).collect(),
            Watched::Myself => vec!["self".into()],
        }
    }

    /// CPU ticks so far of each watched process.
    fn ticks(&self) -> HashMap<String, u64> {
        self.pids()
            .into_iter()
            .filter_map(|p| cpu_ticks(&p).map(|t| (p, t)))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pids().is_empty()
    }

    pub fn rss(&self) -> Option<u64> {
        match self {
            Watched::Pids(p) if !p.is_empty() => p.iter().map(|&pid| rss_bytes(pid)).sum(),
            _ => None,
        }
    }
}

/// CPU used by a watched set between `start` and `finish`, counted per
/// process: a process that ends during the run (another client's Postgres
/// backend) must not make the total go down, and one that starts counts
/// from zero.
pub struct CpuMeter {
    watched: Watched,
    ticks: HashMap<String, u64>,
    at: Instant,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct CpuUse {
    pub cpu_ms: f64,
    /// Cores' worth of CPU: 1.0 is one core busy the whole time.
    pub share: f64,
}

impl CpuMeter {
    pub fn start(watched: Watched) -> Self {
        let ticks = watched.ticks();
        CpuMeter {
            watched,
            ticks,
            at: Instant::now(),
        }
    }

    pub fn finish(&self) -> Option<CpuUse> {
        if self.watched.is_empty() {
            return None;
        }
        let ticks: u64 = self
            .watched
            .ticks()
            .iter()
            .map(|(pid, now)| now.saturating_sub(self.ticks.get(pid).copied().unwrap_or(0)))
            .sum();
        let seconds = self.at.elapsed().as_secs_f64();
        let cpu_s = ticks as f64 / TICKS_PER_SECOND;
        Some(CpuUse {
            cpu_ms: cpu_s * 1000.0,
            share: if seconds > 0.0 { cpu_s / seconds } else { 0.0 },
        })
    }
}

/// The share of the last 10 s in which some runnable task waited for a
/// CPU (Linux PSI, /proc/pressure/cpu "some avg10", in percent). High
/// values mean other work on the machine competed with the run.
pub fn cpu_pressure_avg10() -> Option<f64> {
    let text = fs::read_to_string("/proc/pressure/cpu").ok()?;
    let some = text.lines().find(|l| l.starts_with("some"))?;
    some.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}
