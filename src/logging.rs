//! The process log: `env_logger` filtered by `RUST_LOG`, written to stderr
//! as text (the default) or as one JSON object per line for a log
//! collector. Call sites name the ids a line is about as key-values
//! (`log::info!(session:% = id, user:% = user_id; "ready")`), so both
//! formats carry them as fields rather than buried in the message.
//!
//! Whatever `RUST_LOG` asks for, a few dependencies are held back at the
//! levels where they would write what users wrote: see [`WITHHELD`].

use std::io::Write;

use chrono::{SecondsFormat, Utc};
use log::kv::{self, Key, Value as KvValue, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogFormat {
    /// `env_logger`'s human-readable lines, key-values appended as `k=v`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`,
    /// `message`, then each key-value of the call site.
    Json,
}

/// `config` does not name the key of a value that a type's own parsing
/// refuses (it does for numbers and booleans), so the message names it.
impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "log_format: must be \"text\" or \"json\", not {value:?}"
            )),
        }
    }
}

/// Targets capped at a level, whatever `RUST_LOG` says, because below it
/// they log the content of messages:
/// - `tokio_postgres` logs every statement's parameters at debug, and a
///   `chat:send` inserts the body as a parameter;
/// - `async_nats` logs every protocol operation, payload included, at
///   trace, and in cluster mode the bus carries messages.
pub const WITHHELD: &[(&str, LevelFilter)] = &[
    ("tokio_postgres", LevelFilter::Info),
    ("async_nats", LevelFilter::Debug),
];

/// The JSON keys every line has; a call site's key-value of the same name
/// is written as `field.<name>` instead of replacing it.
const RESERVED: [&str; 4] = ["timestamp", "level", "target", "message"];

/// Installs the process logger. `default_filter` applies when `RUST_LOG`
/// is unset. A second call (a logger is already installed) changes nothing.
pub fn init(format: LogFormat, default_filter: &str) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    if format == LogFormat::Json {
        builder
            .write_style(env_logger::WriteStyle::Never)
            .format(write_json_line);
    }
    let inner = builder.build();
    let max_level = inner.filter();
    if log::set_boxed_logger(Box::new(Withholding { inner })).is_ok() {
        log::set_max_level(max_level);
    }
}

/// Is a record of this target and level held back by [`WITHHELD`]?
fn is_withheld(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    WITHHELD.iter().any(|(prefix, cap)| {
        let under = target
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        under && metadata.level() > *cap
    })
}

/// `env_logger`, minus what [`WITHHELD`] holds back. Its filters are
/// directives a more specific `RUST_LOG` entry could override; this check
/// comes after them and cannot be.
struct Withholding {
    inner: env_logger::Logger,
}

impl Log for Withholding {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !is_withheld(metadata) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !is_withheld(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn write_json_line(
    out: &mut env_logger::fmt::Formatter,
    record: &Record<'_>,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &json_line(record, Utc::now()))?;
    writeln!(out)
}

/// The JSON object of one record.
fn json_line(record: &Record<'_>, now: chrono::DateTime<Utc>) -> Value {
    let mut line = Map::new();
    line.insert(
        "timestamp".into(),
        now.to_rfc3339_opts(SecondsFormat::Micros, true).into(),
    );
    line.insert("level".into(), record.level().as_str().into());
    line.insert("target".into(), record.target().into());
    line.insert("message".into(), record.args().to_string().into());
    // A visitor cannot fail here: it only inserts into a map.
    let _ = record.key_values().visit(&mut Fields(&mut line));
    Value::Object(line)
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: KvValue<'kvs>) -> Result<(), kv::Error> {
        let name = key.as_str();
        let name = if RESERVED.contains(&name) {
            format!("field.{name}")
        } else {
            name.to_string()
        };
        self.0.insert(name, json_value(&value));
        Ok(())
    }
}

/// Numbers and booleans stay JSON numbers and booleans; anything else
/// (ids, durations, errors) is written as its display string.
fn json_value(value: &KvValue<'_>) -> Value {
    if let Some(b) = value.to_bool() {
        Value::Bool(b)
    } else if let Some(n) = value.to_u64() {
        n.into()
    } else if let Some(n) = value.to_i64() {
        n.into()
    } else if let Some(n) = value.to_f64().and_then(serde_json::Number::from_f64) {
        Value::Number(n)
    } else {
        Value::String(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    fn metadata(target: &str, level: Level) -> Metadata<'_> {
        Metadata::builder().target(target).level(level).build()
    }

    #[test]
    fn postgres_parameters_are_withheld_at_every_finer_level() {
        for level in [Level::Debug, Level::Trace] {
            assert!(is_withheld(&metadata("tokio_postgres::query", level)));
            assert!(is_withheld(&metadata("tokio_postgres", level)));
        }
        assert!(!is_withheld(&metadata(
            "tokio_postgres::connection",
            Level::Info
        )));
        assert!(is_withheld(&metadata(
            "async_nats::connection",
            Level::Trace
        )));
        assert!(!is_withheld(&metadata("async_nats", Level::Debug)));
        // A prefix of a name is not the crate.
        assert!(!is_withheld(&metadata(
            "tokio_postgres_extra",
            Level::Trace
        )));
        assert!(!is_withheld(&metadata("confab::session", Level::Trace)));
    }

    #[test]
    fn a_json_line_has_the_four_keys_and_the_key_values_as_fields() {
        let session = uuid::Uuid::new_v4();
        let kvs: [(&str, KvValue); 4] = [
            ("session", KvValue::from_display(&session)),
            ("threads", KvValue::from(3u64)),
            ("message", KvValue::from("shadowed")),
            ("ok", KvValue::from(true)),
        ];
        let now = Utc::now();
        let line = json_line(
            &Record::builder()
                .args(format_args!("ready"))
                .level(Level::Info)
                .target("confab::session")
                .key_values(&kvs)
                .build(),
            now,
        );
        assert_eq!(line["message"], "ready");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "confab::session");
        assert_eq!(
            line["timestamp"],
            now.to_rfc3339_opts(SecondsFormat::Micros, true)
        );
        assert_eq!(line["session"], session.to_string());
        assert_eq!(line["threads"], 3);
        assert_eq!(line["ok"], true);
        assert_eq!(line["field.message"], "shadowed");
    }
}
