//! Configuration: `config/default.toml` (or the file named by
//! `CONFAB_CONFIG`), then environment variables, parsed into one typed
//! [`Settings`] and validated before anything starts. A bad value is an
//! error that names its key; the binary prints it and exits non-zero.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::NodeId;

/// Environment variables that override a key, and the key they override.
/// Kept as a table so the README and the code cannot drift apart.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("CONFAB_MIGRATE", "migrate"),
    ("CONFAB_BIND", "bind"),
    ("CONFAB_METRICS_BIND", "metrics_bind"),
    ("CONFAB_JWT_SECRET", "jwt_secret"),
    ("CONFAB_ADMIN_TOKEN", "admin_token"),
    ("CONFAB_DB_POOL_SIZE", "db_pool_size"),
    ("CONFAB_DB_TIMEOUT_MS", "db_timeout_ms"),
    ("CONFAB_DB_REQUEST_TIMEOUT_MS", "db_request_timeout_ms"),
    ("CONFAB_TOKEN_TTL_SECONDS", "token_ttl_seconds"),
    ("CONFAB_MAX_TOKEN_TTL_SECONDS", "max_token_ttl_seconds"),
    ("CONFAB_WORKERS", "workers"),
    ("CONFAB_LOG_FORMAT", "log_format"),
    ("CONFAB_MAX_FRAME_BYTES", "websocket.max_frame_bytes"),
    (
        "CONFAB_HEARTBEAT_INTERVAL_MS",
        "websocket.heartbeat_interval_ms",
    ),
    ("CONFAB_CLIENT_TIMEOUT_MS", "websocket.client_timeout_ms"),
    ("CONFAB_MAX_OUTBOUND_BYTES", "websocket.max_outbound_bytes"),
    (
        "CONFAB_RATE_LIMIT_PER_SECOND",
        "websocket.rate_limit_per_second",
    ),
    ("CONFAB_RATE_LIMIT_BURST", "websocket.rate_limit_burst"),
    ("CONFAB_TYPING_TIMEOUT_MS", "websocket.typing_timeout_ms"),
    ("CONFAB_MAX_SESSIONS", "websocket.max_sessions"),
    (
        "CONFAB_MAX_SESSIONS_PER_USER",
        "websocket.max_sessions_per_user",
    ),
    ("CONFAB_DRAIN_TIMEOUT_MS", "shutdown.drain_timeout_ms"),
    ("CONFAB_BATCH_MAX", "persistence.batch_max"),
    ("CONFAB_BATCH_WINDOW_US", "persistence.batch_window_us"),
    ("CONFAB_COMMITS_IN_FLIGHT", "persistence.commits_in_flight"),
    ("CONFAB_NATS_URL", "cluster.nats_url"),
    ("CONFAB_SUBJECT_PREFIX", "cluster.subject_prefix"),
    ("CONFAB_NODE_ID", "cluster.node_id"),
    (
        "CONFAB_CLUSTER_HEARTBEAT_INTERVAL_MS",
        "cluster.heartbeat_interval_ms",
    ),
    ("CONFAB_CLUSTER_NODE_TIMEOUT_MS", "cluster.node_timeout_ms"),
    ("CONFAB_UPLOADS_DIR", "uploads.dir"),
    ("CONFAB_UPLOADS_MAX_BYTES", "uploads.max_bytes"),
    ("CONFAB_UPLOADS_MAX_PIXELS", "uploads.max_pixels"),
    ("CONFAB_UPLOADS_S3_BUCKET", "uploads.s3_bucket"),
    ("CONFAB_UPLOADS_S3_ENDPOINT", "uploads.s3_endpoint"),
    ("CONFAB_UPLOADS_S3_REGION", "uploads.s3_region"),
    (
        "CONFAB_UPLOADS_S3_ACCESS_KEY_ID",
        "uploads.s3_access_key_id",
    ),
    (
        "CONFAB_UPLOADS_S3_SECRET_ACCESS_KEY",
        "uploads.s3_secret_access_key",
    ),
    ("CONFAB_UPLOADS_S3_ALLOW_HTTP", "uploads.s3_allow_http"),
    ("CONFAB_UPLOADS_COLLECT_AFTER_S", "uploads.collect_after_s"),
    (
        "CONFAB_UPLOADS_COLLECT_INTERVAL_S",
        "uploads.collect_interval_s",
    ),
    ("CONFAB_WEBHOOKS_ALLOW_PRIVATE", "webhooks.allow_private"),
    ("CONFAB_WEBHOOKS_MAX_IN_FLIGHT", "webhooks.max_in_flight"),
    (
        "CONFAB_WEBHOOKS_POLL_INTERVAL_MS",
        "webhooks.poll_interval_ms",
    ),
];

/// The shortest HMAC secret accepted for HS256 (RFC 7518 §3.2: a key of at
/// least the hash output size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// The most sends one group commit may take: bind arrays stay far below
/// Postgres's limits and one batch's transaction stays short.
pub const MAX_BATCH: usize = 10_000;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub bind: String,
    /// Empty: /metrics is served on `bind`. An address: only there.
    pub metrics_bind: String,
    pub database_url: String,
    /// Create and migrate the database at start-up. Off (`serve
    /// --no-migrate`) where `confab migrate` runs as a separate step; the
    /// server then only checks that the schema is complete.
    pub migrate: bool,
    pub db_pool_size: usize,
    pub db_timeout_ms: u64,
    pub db_request_timeout_ms: u64,
    pub jwt_secret: String,
    pub admin_token: String,
    pub token_ttl_seconds: u64,
    pub max_token_ttl_seconds: u64,
    pub allowed_origins: Vec<String>,
    pub workers: usize,
    pub log_format: crate::logging::LogFormat,
    pub websocket: WebSocketSettings,
    pub shutdown: ShutdownSettings,
    pub persistence: PersistenceSettings,
    pub cluster: ClusterSettings,
    pub uploads: UploadSettings,
    pub webhooks: WebhookSettings,
}

/// Webhook deliveries (see `webhooks`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhookSettings {
    /// Let webhook URLs reach loopback, private and link-local addresses.
    pub allow_private: bool,
    /// Deliveries this node makes at once; each holds a database
    /// connection of the dispatcher's own pool while it is made.
    pub max_in_flight: usize,
    /// How often the dispatcher looks for due deliveries it was not told
    /// of: retries, and events committed on other nodes.
    pub poll_interval_ms: u64,
}

impl WebhookSettings {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebSocketSettings {
    pub max_frame_bytes: usize,
    pub heartbeat_interval_ms: u64,
    pub client_timeout_ms: u64,
    pub max_outbound_bytes: usize,
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: u32,
    pub typing_timeout_ms: u64,
    pub max_sessions: usize,
    pub max_sessions_per_user: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ShutdownSettings {
    pub drain_timeout_ms: u64,
}

/// Group commit of chat:send: how many sends one transaction may take, how
/// many transactions may commit at once, and how long the first send of a
/// batch waits for company beyond that.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PersistenceSettings {
    pub batch_max: usize,
    pub batch_window_us: u64,
    pub commits_in_flight: usize,
}

impl PersistenceSettings {
    pub fn batch_window(&self) -> Duration {
        Duration::from_micros(self.batch_window_us)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A value that a check outside this module (one that needs what only
    /// that module knows) found wrong.
    pub fn invalid(key: &str, why: &str) -> Self {
        ConfigError(format!("{key}: {why}"))
    }
}

impl Settings {
    /// Loads the base file and the environment. `CONFAB_CONFIG` names another
    /// base file; by default `config/default.toml` beside the crate, so the
    /// binary works from any working directory of a checkout.
    pub fn load() -> Result<Self, ConfigError> {
        let path = std::env::var_os("CONFAB_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/default.toml")
            });
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from(path.clone()).required(false));
        for (var, key) in ENV_OVERRIDES {
            if let Ok(value) = std::env::var(var) {
                builder = builder
                    .set_override(*key, value)
                    .map_err(|e| ConfigError(format!("{key} (from {var}): {e}")))?;
            }
        }
        if let Ok(value) = std::env::var("CONFAB_ALLOWED_ORIGINS") {
            let origins: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            builder = builder
                .set_override("allowed_origins", origins)
                .map_err(|e| ConfigError(format!("allowed_origins: {e}")))?;
        }
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(format!("{e} (file {})", path.display())))?;
        settings.validate()?;
        Ok(settings)
    }

    /// The checked-in defaults alone, ignoring files and the environment
    /// (tests start from these and change what they need).
    pub fn defaults() -> Result<Self, ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks what the types alone cannot. Each message starts with the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if self.bind.parse::<SocketAddr>().is_err() {
            return fail("bind", "must be an address like 127.0.0.1:8080");
        }
        if !self.metrics_bind.is_empty() && self.metrics_bind.parse::<SocketAddr>().is_err() {
            return fail(
                "metrics_bind",
                "must be empty or an address like 127.0.0.1:9100",
            );
        }
        if url::Url::parse(&self.database_url).map_or(true, |u| {
            !matches!(u.scheme(), "postgres" | "postgresql")
                || database_name(&self.database_url).is_none()
        }) {
            return fail(
                "database_url",
                "must be a postgres:// URL naming a database",
            );
        }
        if self.db_pool_size == 0 {
            return fail("db_pool_size", "must be at least 1");
        }
        if self.db_timeout_ms == 0 {
            return fail("db_timeout_ms", "must be at least 1");
        }
        if self.db_request_timeout_ms < self.db_timeout_ms {
            return fail("db_request_timeout_ms", "must be at least db_timeout_ms");
        }
        if !self.jwt_secret.is_empty() && self.jwt_secret.len() < MIN_JWT_SECRET_BYTES {
            return fail(
                "jwt_secret",
                "must be at least 32 bytes (or empty to generate one)",
            );
        }
        if self.token_ttl_seconds == 0 || self.token_ttl_seconds > self.max_token_ttl_seconds {
            return fail(
                "token_ttl_seconds",
                "must be between 1 and max_token_ttl_seconds",
            );
        }
        for origin in &self.allowed_origins {
            if url::Url::parse(origin).is_err() {
                return fail(
                    "allowed_origins",
                    "each entry must be an origin like https://chat.example.com",
                );
            }
        }
        let ws = &self.websocket;
        if ws.max_frame_bytes < 1024 {
            return fail("websocket.max_frame_bytes", "must be at least 1024");
        }
        if ws.heartbeat_interval_ms == 0 {
            return fail("websocket.heartbeat_interval_ms", "must be at least 1");
        }
        if ws.client_timeout_ms <= ws.heartbeat_interval_ms {
            return fail(
                "websocket.client_timeout_ms",
                "must be longer than heartbeat_interval_ms",
            );
        }
        if ws.max_outbound_bytes < ws.max_frame_bytes {
            return fail(
                "websocket.max_outbound_bytes",
                "must be at least max_frame_bytes",
            );
        }
        if !(ws.rate_limit_per_second.is_finite() && ws.rate_limit_per_second > 0.0) {
            return fail(
                "websocket.rate_limit_per_second",
                "must be a positive number",
            );
        }
        if ws.rate_limit_burst == 0 {
            return fail("websocket.rate_limit_burst", "must be at least 1");
        }
        if ws.typing_timeout_ms == 0 {
            return fail("websocket.typing_timeout_ms", "must be at least 1");
        }
        if ws.max_sessions == 0 {
            return fail("websocket.max_sessions", "must be at least 1");
        }
        if ws.max_sessions_per_user == 0 {
            return fail("websocket.max_sessions_per_user", "must be at least 1");
        }
        let persistence = &self.persistence;
        if !(1..=MAX_BATCH).contains(&persistence.batch_max) {
            return fail("persistence.batch_max", "must be between 1 and 10000");
        }
        // The window adds to every send's latency and counts against the
        // request deadline; a second would already be absurd.
        if persistence.batch_window_us > 1_000_000 {
            return fail("persistence.batch_window_us", "must be at most 1000000");
        }
        if persistence.commits_in_flight == 0 {
            return fail("persistence.commits_in_flight", "must be at least 1");
        }
        if !(1..=64).contains(&self.webhooks.max_in_flight) {
            return fail("webhooks.max_in_flight", "must be between 1 and 64");
        }
        if !(10..=60_000).contains(&self.webhooks.poll_interval_ms) {
            return fail("webhooks.poll_interval_ms", "must be between 10 and 60000");
        }
        if let Err((key, why)) = self.cluster.check() {
            return fail(key, why);
        }
        if let Err((key, why)) = self.uploads.check() {
            return fail(key, why);
        }
        Ok(())
    }

    pub fn bind_addr(&self) -> SocketAddr {
        // validate() has parsed it already.
        self.bind
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    /// Where /metrics is served when not on the main address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        // validate() has parsed it already.
        self.metrics_bind.parse().ok()
    }

    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    pub fn db_request_timeout(&self) -> Duration {
        Duration::from_millis(self.db_request_timeout_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown.drain_timeout_ms)
    }
}

/// Files (see `storage`): where they are kept and how big they may be.
/// An empty `s3_bucket` means the local directory `dir`.
#[derive(Clone, Deserialize, Serialize)]
pub struct UploadSettings {
    pub dir: String,
    pub max_bytes: u64,
    /// The most pixels an image may decode to for its thumbnail.
    pub max_pixels: u64,
    pub s3_bucket: String,
    /// Empty: AWS itself. Otherwise the URL of an S3-compatible service.
    pub s3_endpoint: String,
    pub s3_region: String,
    /// Empty: taken from the environment as the AWS SDKs do.
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
    /// Allow an `http://` endpoint (a store on a private network).
    pub s3_allow_http: bool,
    /// An upload no message carries, made or last sent longer ago than
    /// this, is deleted. 0: never.
    pub collect_after_s: u64,
    /// How often the collector looks.
    pub collect_interval_s: u64,
}

impl UploadSettings {
    pub fn uses_s3(&self) -> bool {
        !self.s3_bucket.is_empty()
    }

    /// How long an upload nobody carries is kept, if it is ever collected.
    pub fn collect_after(&self) -> Option<Duration> {
        (self.collect_after_s > 0).then(|| Duration::from_secs(self.collect_after_s))
    }

    pub fn collect_interval(&self) -> Duration {
        Duration::from_secs(self.collect_interval_s)
    }

    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_bytes == 0 {
            return Err(("uploads.max_bytes", "must be at least 1"));
        }
        if self.max_pixels == 0 {
            return Err(("uploads.max_pixels", "must be at least 1"));
        }
        if self.collect_interval_s == 0 {
            return Err(("uploads.collect_interval_s", "must be at least 1"));
        }
        if !self.uses_s3() && self.dir.trim().is_empty() {
            return Err((
                "uploads.dir",
                "must name a directory (or set uploads.s3_bucket)",
            ));
        }
        if self.uses_s3()
            && !self.s3_endpoint.is_empty()
            && url::Url::parse(&self.s3_endpoint).is_err()
        {
            return Err(("uploads.s3_endpoint", "must be empty or a URL"));
        }
        Ok(())
    }
}

/// The secret stays out of `{:?}` (and so out of any log of the settings).
impl std::fmt::Debug for UploadSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadSettings")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("max_pixels", &self.max_pixels)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_allow_http", &self.s3_allow_http)
            .field("collect_after_s", &self.collect_after_s)
            .field("collect_interval_s", &self.collect_interval_s)
            .finish_non_exhaustive()
    }
}

/// Cluster mode (see `cluster`): empty `nats_url` means a single node.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ClusterSettings {
    pub nats_url: String,
    pub subject_prefix: String,
    pub node_id: String,
    pub heartbeat_interval_ms: u64,
    pub node_timeout_ms: u64,
}

impl ClusterSettings {
    pub fn enabled(&self) -> bool {
        !self.nats_url.is_empty()
    }

    /// Checks what the types cannot: (key, why) of the first bad value.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !token_ok(&self.subject_prefix) {
            return Err((
                "cluster.subject_prefix",
                "must be letters, digits, '-' or '_' (one NATS subject token)",
            ));
        }
        if !self.node_id.is_empty() && !token_ok(&self.node_id) {
            return Err(("cluster.node_id", "must be letters, digits, '-' or '_'"));
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(("cluster.heartbeat_interval_ms", "must be at least 1"));
        }
        if self.node_timeout_ms <= self.heartbeat_interval_ms {
            return Err((
                "cluster.node_timeout_ms",
                "must be longer than heartbeat_interval_ms",
            ));
        }
        Ok(())
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms)
    }

    /// The configured node id, or a fresh random one.
    pub fn resolve_node_id(&self) -> NodeId {
        if self.node_id.is_empty() {
            NodeId(uuid::Uuid::new_v4().simple().to_string())
        } else {
            NodeId(self.node_id.clone())
        }
    }
}

impl WebSocketSettings {
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }
    pub fn typing_timeout(&self) -> Duration {
        Duration::from_millis(self.typing_timeout_ms)
    }
}

/// The database name of a Postgres URL (its path without the slash).
pub fn database_name(database_url: &str) -> Option<String> {
    let url = url::Url::parse(database_url).ok()?;
    let name = url.path().trim_start_matches('/');
    (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
}

/// The same settings the checked-in file has, compiled in, so that an
/// installed binary without the file still starts with sane values.
const DEFAULTS: &str = include_str!("../config/default.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("the compiled-in defaults parse")
    }

    fn cluster_settings() -> ClusterSettings {
        ClusterSettings {
            nats_url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "confab".into(),
            node_id: String::new(),
            heartbeat_interval_ms: 1000,
            node_timeout_ms: 3000,
        }
    }

    #[test]
    fn a_prefix_must_be_one_subject_token() {
        let mut s = cluster_settings();
        assert!(s.check().is_ok());
        s.subject_prefix = "a.b".into();
        assert_eq!(s.check().map_err(|e| e.0), Err("cluster.subject_prefix"));
    }

    #[test]
    fn the_node_timeout_must_outlast_the_heartbeat() {
        let mut s = cluster_settings();
        s.node_timeout_ms = s.heartbeat_interval_ms;
        assert_eq!(s.check().map_err(|e| e.0), Err("cluster.node_timeout_ms"));
    }

    #[test]
    fn defaults_are_valid() {
        defaults().validate().expect("defaults validate");
    }

    #[test]
    fn short_jwt_secret_names_its_key() {
        let mut s = defaults();
        s.jwt_secret = "short".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("jwt_secret"), "{err}");
    }

    #[test]
    fn bad_bind_names_its_key() {
        let mut s = defaults();
        s.bind = "nowhere".into();
        assert!(s.validate().unwrap_err().to_string().contains("bind"));
    }

    #[test]
    fn bad_metrics_bind_names_its_key() {
        let mut s = defaults();
        s.metrics_bind = "nowhere".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("metrics_bind"), "{err}");
        s.metrics_bind = "127.0.0.1:9100".into();
        s.validate().expect("an address is valid");
    }

    #[test]
    fn batch_bounds_name_their_keys() {
        let mut s = defaults();
        s.persistence.batch_max = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("persistence.batch_max"), "{err}");
        let mut s = defaults();
        s.persistence.batch_window_us = 5_000_000;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("persistence.batch_window_us"), "{err}");
    }

    #[test]
    fn webhook_bounds_name_their_keys() {
        let mut s = defaults();
        assert!(
            !s.webhooks.allow_private,
            "inward URLs are refused by default"
        );
        s.webhooks.max_in_flight = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("webhooks.max_in_flight"), "{err}");
        let mut s = defaults();
        s.webhooks.poll_interval_ms = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("webhooks.poll_interval_ms"), "{err}");
    }

    #[test]
    fn database_name_is_the_path() {
        assert_eq!(
            database_name("postgres://u@h:5432/confab").as_deref(),
            Some("confab")
        );
        assert_eq!(database_name("postgres://u@h:5432/"), None);
    }
}
