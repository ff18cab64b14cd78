//! Latency histograms (HDR, microseconds) and their summary.

use std::sync::OnceLock;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The bench's one clock: microseconds since it started. Senders write it
/// into message bodies, receivers subtract it from their own reading, so a
/// delivery latency needs no clock shared with the server.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Up to an hour, 3 significant digits.
const HIGHEST_US: u64 = 3_600_000_000;

pub fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3)
}

pub fn record(h: &mut Histogram<u64>, micros: u64) {
    // saturating_record clamps to the highest trackable value instead of
    // failing on an outlier.
    h.saturating_record(micros.max(1));
}

/// Milliseconds, as a report shows them.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    pub fn line(&self, name: &str) -> String {
        format!(
            "{name:<10} n={:<9} p50 {:>8.2} ms  p90 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2}",
            self.count, self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        )
    }
}
