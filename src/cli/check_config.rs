//! `confab check-config`: the settings the server would run with, after
//! the file and the environment, as TOML-like `key = value` lines. Secrets
//! are never shown: a set one prints as `***`, the database password too.

use serde_json::Value;

use crate::config::Settings;
use crate::persistence::migrate::redact;

const SECRETS: [&str; 2] = ["jwt_secret", "admin_token"];

pub fn render(settings: &Settings) -> String {
    let mut value = serde_json::to_value(settings).unwrap_or(Value::Null);
    let Value::Object(ref mut top) = value else {
        return "# the configuration cannot be shown\n".into();
    };
    for key in SECRETS {
        if let Some(Value::String(secret)) = top.get_mut(key) {
            if !secret.is_empty() {
                *secret = "***".into();
            }
        }
    }
    top.insert(
        "database_url".into(),
        Value::String(redact(&settings.database_url)),
    );
    if let Some(Value::Object(cluster)) = top.get_mut("cluster") {
        if !settings.cluster.nats_url.is_empty() {
            cluster.insert(
                "nats_url".into(),
                Value::String(redact(&settings.cluster.nats_url)),
            );
        }
    }

    let mut out = String::new();
    let mut sections = Vec::new();
    for (key, value) in top.iter() {
        match value {
            Value::Object(table) => sections.push((key, table)),
            _ => push_line(&mut out, key, value),
        }
    }
    for (name, table) in sections {
        out.push_str(&format!("\n[{name}]\n"));
        for (key, value) in table {
            push_line(&mut out, key, value);
        }
    }
    out
}

fn push_line(out: &mut String, key: &str, value: &Value) {
    let note = match value {
        Value::String(s) if s.is_empty() && SECRETS.contains(&key) => {
            "  # empty: a random one is generated at start-up"
        }
        _ => "",
    };
    out.push_str(&format!("{key} = {value}{note}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_the_database_password_are_masked() {
        let mut settings = match Settings::defaults() {
            Ok(settings) => settings,
            Err(e) => panic!("the defaults load: {e}"),
        };
        settings.jwt_secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t".into();
        settings.admin_token = "admin-token-value".into();
        settings.database_url = "postgres://me:hunter2@db:5432/confab".into();
        settings.cluster.nats_url = "nats://bus:swordfish@nats:4222".into();
        let shown = render(&settings);
        assert!(shown.contains("jwt_secret = \"***\""), "{shown}");
        assert!(shown.contains("admin_token = \"***\""), "{shown}");
        for secret in ["s3cr3t", "admin-token-value", "hunter2", "swordfish"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("[websocket]"), "{shown}");
        assert!(shown.contains("max_frame_bytes = 65536"), "{shown}");
    }
}
