//! What a webhook subscription names: the event types of the contract, and
//! an endpoint URL. Both are checked here, at the edge; the address rule
//! (no loopback, private or link-local targets) needs DNS and lives with
//! the dispatcher (`crate::webhooks::address`).

use serde::{Deserialize, Serialize};

use super::content::reject_nul;
use crate::error::AppError;

/// Every event type a webhook may subscribe to. A type is added here (one
/// variant and its name), then given its payload in
/// `persistence::outbox::payload`; subscribing to a type confab does not
/// emit yet is allowed, as the contract lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "message.created")]
    MessageCreated,
    #[serde(rename = "message.edited")]
    MessageEdited,
    #[serde(rename = "message.deleted")]
    MessageDeleted,
    #[serde(rename = "reaction.changed")]
    ReactionChanged,
    #[serde(rename = "thread.created")]
    ThreadCreated,
    #[serde(rename = "member.joined")]
    MemberJoined,
    #[serde(rename = "member.left")]
    MemberLeft,
    #[serde(rename = "user.notified")]
    UserNotified,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::MessageCreated,
        EventType::MessageEdited,
        EventType::MessageDeleted,
        EventType::ReactionChanged,
        EventType::ThreadCreated,
        EventType::MemberJoined,
        EventType::MemberLeft,
        EventType::UserNotified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MessageCreated => "message.created",
            EventType::MessageEdited => "message.edited",
            EventType::MessageDeleted => "message.deleted",
            EventType::ReactionChanged => "reaction.changed",
            EventType::ThreadCreated => "thread.created",
            EventType::MemberJoined => "member.joined",
            EventType::MemberLeft => "member.left",
            EventType::UserNotified => "user.notified",
        }
    }

    pub fn parse(name: &str) -> Result<Self, AppError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| AppError::bad_request(format!("unknown event type {name:?}")))
    }
}

/// A non-empty set of event types, in the order first named, no repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypes(Vec<EventType>);

impl EventTypes {
    pub fn parse(names: &[String]) -> Result<Self, AppError> {
        let types = names
            .iter()
            .map(|name| EventType::parse(name))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(types)
    }

    pub fn new(given: Vec<EventType>) -> Result<Self, AppError> {
        let mut types: Vec<EventType> = Vec::with_capacity(given.len());
        for t in given {
            if !types.contains(&t) {
                types.push(t);
            }
        }
        if types.is_empty() {
            return Err(AppError::bad_request("events must name at least one type"));
        }
        Ok(Self(types))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|t| t.as_str()).collect()
    }
}

/// The longest webhook URL accepted.
pub const MAX_URL_BYTES: usize = 2000;

/// An absolute `http` or `https` URL with a host, no credentials and no
/// fragment, at most 2000 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        reject_nul("url", raw)?;
        if raw.len() > MAX_URL_BYTES {
            return Err(AppError::bad_request(format!(
                "url is longer than {MAX_URL_BYTES} bytes"
            )));
        }
        let url = url::Url::parse(raw)
            .map_err(|e| AppError::bad_request(format!("url is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AppError::bad_request("url must be http or https"));
        }
        if url.host().is_none() {
            return Err(AppError::bad_request("url must name a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(AppError::bad_request("url must not carry credentials"));
        }
        if url.fragment().is_some() {
            return Err(AppError::bad_request("url must not have a fragment"));
        }
        Ok(Self(url))
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()).unwrap(), t);
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(t.as_str())
            );
        }
        assert!(EventType::parse("message.exploded").is_err());
    }

    #[test]
    fn a_set_of_types_is_not_empty_and_has_no_repeats() {
        assert!(EventTypes::parse(&[]).is_err());
        let names = ["member.left".to_string(), "member.left".to_string()];
        assert_eq!(EventTypes::parse(&names).unwrap().names(), ["member.left"]);
    }

    #[test]
    fn only_plain_http_and_https_urls() {
        assert!(WebhookUrl::parse("https://hooks.example.com/confab?x=1").is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/").is_ok());
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "https://user:pw@example.com/",
            "https://example.com/#top",
            "file:///etc/passwd",
            "",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
