//! Prometheus metrics. One registry per process, created on first use; the
//! text exposition is served at `GET /metrics`.

mod db_pool;

use std::sync::OnceLock;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

pub use db_pool::PoolGauge;

pub struct Metrics {
    registry: Registry,
    pub sessions: IntGauge,
    pub users_online: IntGauge,
    pub live_threads: IntGauge,
    pub persistence_in_flight: IntGauge,
    pub messages_persisted: IntCounter,
    pub deliveries: IntCounter,
    pub errors: IntCounterVec,
    pub slow_consumers_closed: IntCounter,
    pub ack_latency_seconds: Histogram,
    pub fanout_size: Histogram,
    pub commit_batch_size: Histogram,
    pub commit_batch_seconds: Histogram,
    pub hub_routing_seconds: Histogram,
    pub outbound_queue_bytes: IntGauge,
    pub persistence_queue_depth: IntGauge,
    pub http_requests: IntCounterVec,
    pub http_request_seconds: HistogramVec,
    pub ws_closes: IntCounterVec,
    pub bus_published: IntCounterVec,
    pub bus_received: IntCounterVec,
    pub bus_dropped: IntCounter,
    pub bus_reconnects: IntCounter,
    pub gap_fill_read_backs: IntCounterVec,
    pub gap_fill_messages: IntCounter,
    pub webhook_events_pending: IntGauge,
    pub webhook_oldest_pending_seconds: Gauge,
    pub webhook_deliveries: IntCounter,
    pub webhook_failed_attempts: IntCounter,
    pub webhook_events_given_up: IntCounter,
    pub notifications_sent: IntCounter,
    pub push_deliveries: IntCounterVec,
    /// The standard `process_*` series, kept apart so that the registry's
    /// `confab_` prefix does not rename them: dashboards expect them as is.
    standard: Registry,
}

/// The close codes confab sends or expects, exposed from the start so that
/// a rate over them reads 0 rather than nothing.
const WS_CLOSE_CODES: [u16; 9] = [1000, 1001, 1002, 1005, 1006, 1007, 1009, 1013, 4008];

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("confab".into()), None)?;
    let m = Metrics {
        sessions: IntGauge::new("sessions", "Open WebSocket sessions")?,
        users_online: IntGauge::new("users_online", "Users with at least one session")?,
        live_threads: IntGauge::new("live_threads", "Threads with at least one online member")?,
        persistence_in_flight: IntGauge::new(
            "persistence_in_flight",
            "Requests waiting on or running in Persistence",
        )?,
        messages_persisted: IntCounter::new(
            "messages_persisted_total",
            "Messages committed by this process",
        )?,
        deliveries: IntCounter::new("deliveries_total", "Frames routed by the hub to sessions")?,
        errors: IntCounterVec::new(
            Opts::new("errors_total", "Errors answered, by contract code"),
            &["code"],
        )?,
        slow_consumers_closed: IntCounter::new(
            "slow_consumers_closed_total",
            "Sessions closed with 4008",
        )?,
        ack_latency_seconds: Histogram::with_opts(
            HistogramOpts::new(
                "ack_latency_seconds",
                "chat:send frame received to chat:ack written",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?,
        fanout_size: Histogram::with_opts(
            HistogramOpts::new("fanout_size", "Sessions one chat:message was routed to").buckets(
                vec![0.0, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0],
            ),
        )?,
        commit_batch_size: Histogram::with_opts(
            HistogramOpts::new("commit_batch_size", "chat:send requests per group commit").buckets(
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0],
            ),
        )?,
        commit_batch_seconds: Histogram::with_opts(
            HistogramOpts::new(
                "commit_batch_seconds",
                "One group commit, from taking a connection to the commit's answer",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?,
        hub_routing_seconds: Histogram::with_opts(
            HistogramOpts::new(
                "hub_routing_seconds",
                "Time the hub spends handling one committed event",
            )
            .buckets(vec![
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                0.05,
            ]),
        )?,
        outbound_queue_bytes: IntGauge::new(
            "outbound_queue_bytes",
            "Bytes queued for all sessions and not yet taken by their sockets",
        )?,
        persistence_queue_depth: IntGauge::new(
            "persistence_queue_depth",
            "chat:send requests waiting for a group commit or inside one",
        )?,
        http_requests: IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by matched route pattern, method and status",
            ),
            &["route", "method", "status"],
        )?,
        http_request_seconds: HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request received to response head ready, by route pattern and method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route", "method"],
        )?,
        ws_closes: IntCounterVec::new(
            Opts::new(
                "ws_closes_total",
                "WebSocket sessions ended, by close code (1006: no close frame)",
            ),
            &["code"],
        )?,
        bus_published: IntCounterVec::new(
            Opts::new(
                "bus_published_total",
                "Cluster mode: messages this node handed to NATS, by kind",
            ),
            &["kind"],
        )?,
        bus_received: IntCounterVec::new(
            Opts::new(
                "bus_received_total",
                "Cluster mode: messages from other nodes received on NATS, by kind",
            ),
            &["kind"],
        )?,
        bus_dropped: IntCounter::new(
            "bus_dropped_total",
            "Cluster mode: outgoing messages dropped because the bus queue was full",
        )?,
        bus_reconnects: IntCounter::new(
            "bus_reconnects_total",
            "Cluster mode: times the NATS connection came back after it was lost",
        )?,
        gap_fill_read_backs: IntCounterVec::new(
            Opts::new(
                "gap_fill_read_backs_total",
                "Missed messages read back from the database, by reason (gap, catch_up)",
            ),
            &["reason"],
        )?,
        gap_fill_messages: IntCounter::new(
            "gap_fill_messages_total",
            "Messages returned by read-backs (some may already have been routed)",
        )?,
        webhook_events_pending: IntGauge::new(
            "webhook_events_pending",
            "Webhook deliveries not yet made nor given up, of every node (sampled by the dispatcher)",
        )?,
        webhook_oldest_pending_seconds: Gauge::new(
            "webhook_oldest_pending_seconds",
            "Age of the oldest pending webhook delivery, 0 when none (sampled by the dispatcher)",
        )?,
        webhook_deliveries: IntCounter::new(
            "webhook_deliveries_total",
            "Webhook deliveries this node made that the endpoint accepted (2xx)",
        )?,
        webhook_failed_attempts: IntCounter::new(
            "webhook_failed_attempts_total",
            "Webhook attempts this node made that failed (non-2xx, timeout, refused)",
        )?,
        webhook_events_given_up: IntCounter::new(
            "webhook_events_failed_total",
            "Webhook deliveries this node gave up on after 24 h of retries",
        )?,
        notifications_sent: IntCounter::new(
            "notifications_sent_total",
            "Notifications this node fired (each a user.notified event and its pushes)",
        )?,
        push_deliveries: IntCounterVec::new(
            Opts::new(
                "push_deliveries_total",
                "Web Push requests this node made, by outcome: delivered, gone (404/410, the subscription was removed), failed",
            ),
            &["outcome"],
        )?,
        standard: standard_registry()?,
        registry,
    };
    m.registry.register(Box::new(m.sessions.clone()))?;
    m.registry.register(Box::new(m.users_online.clone()))?;
    m.registry.register(Box::new(m.live_threads.clone()))?;
    m.registry
        .register(Box::new(m.persistence_in_flight.clone()))?;
    m.registry
        .register(Box::new(m.messages_persisted.clone()))?;
    m.registry.register(Box::new(m.deliveries.clone()))?;
    m.registry.register(Box::new(m.errors.clone()))?;
    m.registry
        .register(Box::new(m.slow_consumers_closed.clone()))?;
    m.registry
        .register(Box::new(m.ack_latency_seconds.clone()))?;
    m.registry.register(Box::new(m.fanout_size.clone()))?;
    m.registry.register(Box::new(m.commit_batch_size.clone()))?;
    m.registry
        .register(Box::new(m.commit_batch_seconds.clone()))?;
    m.registry
        .register(Box::new(m.hub_routing_seconds.clone()))?;
    m.registry
        .register(Box::new(m.outbound_queue_bytes.clone()))?;
    m.registry
        .register(Box::new(m.persistence_queue_depth.clone()))?;
    m.registry.register(Box::new(m.http_requests.clone()))?;
    m.registry
        .register(Box::new(m.http_request_seconds.clone()))?;
    m.registry.register(Box::new(m.ws_closes.clone()))?;
    m.registry.register(Box::new(m.bus_published.clone()))?;
    m.registry.register(Box::new(m.bus_received.clone()))?;
    m.registry.register(Box::new(m.bus_dropped.clone()))?;
    m.registry.register(Box::new(m.bus_reconnects.clone()))?;
    m.registry
        .register(Box::new(m.gap_fill_read_backs.clone()))?;
    m.registry.register(Box::new(m.gap_fill_messages.clone()))?;
    m.registry
        .register(Box::new(m.webhook_events_pending.clone()))?;
    m.registry
        .register(Box::new(m.webhook_oldest_pending_seconds.clone()))?;
    m.registry
        .register(Box::new(m.webhook_deliveries.clone()))?;
    m.registry
        .register(Box::new(m.webhook_failed_attempts.clone()))?;
    m.registry
        .register(Box::new(m.webhook_events_given_up.clone()))?;
    m.registry
        .register(Box::new(m.notifications_sent.clone()))?;
    m.registry.register(Box::new(m.push_deliveries.clone()))?;
    for outcome in ["delivered", "gone", "failed"] {
        m.push_deliveries.with_label_values(&[outcome]);
    }
    for code in WS_CLOSE_CODES {
        m.ws_closes.with_label_values(&[&code.to_string()]);
    }
    for reason in ["gap", "catch_up"] {
        m.gap_fill_read_backs.with_label_values(&[reason]);
    }
    Ok(m)
}

/// The process's metrics. Building them only fails on a programming error
/// (a duplicate or malformed name), which the unit test below catches.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| build().expect("metric definitions are valid (checked by unit test)"))
}

/// Counts one error answered to a client, by its contract code.
pub fn record_error(code: &str) {
    metrics().errors.with_label_values(&[code]).inc();
}

/// Shows a zero for each of these codes before the first error of each:
/// a rate over a series that does not exist yet is no rate at all.
pub fn preregister_errors<'a>(codes: impl IntoIterator<Item = &'a str>) {
    for code in codes {
        metrics().errors.with_label_values(&[code]);
    }
}

/// Counts a WebSocket session's end. Codes outside the ones RFC 6455 and
/// IANA define and confab's own 4008 are counted as `other`: a client
/// chooses its close code, and must not grow the label set at will.
pub fn record_ws_close(code: u16) {
    let label = match code {
        1000..=1015 | 4008 => code.to_string(),
        _ => "other".to_string(),
    };
    metrics().ws_closes.with_label_values(&[&label]).inc();
}

/// CPU, memory, open files and threads of this process, from /proc.
#[cfg(target_os = "linux")]
fn standard_registry() -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(registry)
}

/// The process collector reads /proc: elsewhere there is nothing to add.
#[cfg(not(target_os = "linux"))]
fn standard_registry() -> Result<Registry, prometheus::Error> {
    Ok(Registry::new())
}

/// The exposition: the process's series, and `local` ones that belong to
/// the server being scraped (its pool), sampled now.
pub fn render(local: &[&dyn Collector]) -> String {
    let m = metrics();
    let mut families = m.registry.gather();
    families.extend(m.standard.gather());
    families.extend(local.iter().flat_map(|c| c.collect()));
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        log::error!("encoding metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_definitions_are_valid() {
        super::build().expect("metrics build");
        super::preregister_errors(["bad_request"]);
        assert!(super::render(&[]).contains("confab_errors_total"));
    }
}
