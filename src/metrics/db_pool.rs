//! The database pool's occupancy, sampled when /metrics is scraped.
//!
//! A pool belongs to one server, and a process may run several (the test
//! suite does): so these series are not in the process's registry but
//! rendered with the scrape of the server that owns the pool.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::IntGauge;

type StatusFn = dyn Fn() -> deadpool::Status + Send + Sync;

pub struct PoolGauge {
    status: Box<StatusFn>,
    max: IntGauge,
    in_use: IntGauge,
    idle: IntGauge,
    waiting: IntGauge,
}

impl PoolGauge {
    /// `status` reads the pool (`Pool::status`); it must not block.
    pub fn new(status: impl Fn() -> deadpool::Status + Send + Sync + 'static) -> Self {
        let gauge = |name: &str, help: &str| {
            IntGauge::new(name, help).expect("a valid metric name (checked by unit test)")
        };
        Self {
            status: Box::new(status),
            max: gauge(
                "confab_db_pool_max",
                "Connections the database pool may open (db_pool_size)",
            ),
            in_use: gauge(
                "confab_db_pool_in_use",
                "Pool connections lent out to a query or a group commit",
            ),
            idle: gauge(
                "confab_db_pool_idle",
                "Open pool connections waiting to be lent",
            ),
            waiting: gauge(
                "confab_db_pool_waiting",
                "Requests waiting for a pool connection",
            ),
        }
    }

    fn gauges(&self) -> [&IntGauge; 4] {
        [&self.max, &self.in_use, &self.idle, &self.waiting]
    }
}

impl Collector for PoolGauge {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges().into_iter().flat_map(|g| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let status = (self.status)();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.max.set(count(status.max_size));
        self.in_use
            .set(count(status.size.saturating_sub(status.available)));
        self.idle.set(count(status.available));
        self.waiting.set(count(status.waiting));
        self.gauges()
            .into_iter()
            .flat_map(|g| g.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;

    #[test]
    fn a_pool_with_connections_lent_reads_them_in_use() {
        let gauge = super::PoolGauge::new(|| deadpool::Status {
            max_size: 8,
            size: 5,
            available: 2,
            waiting: 1,
        });
        let text = crate::metrics::render(&[&gauge as &dyn Collector]);
        for line in [
            "confab_db_pool_max 8",
            "confab_db_pool_in_use 3",
            "confab_db_pool_idle 2",
            "confab_db_pool_waiting 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
