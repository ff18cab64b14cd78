//! One Web Push request (RFC 8030): the encrypted body, the VAPID
//! authorization, and what the push service's answer means.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use super::encryption::{encrypt, Vapid};
use crate::persistence::push::{DuePush, PushOutcome};
use crate::webhooks::address::{check_literal_host, GuardedResolver};

/// The longest one push request may take, connecting included.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a push service keeps an undelivered message (RFC 8030 5.2): a
/// day, as long as a notification stays news.
const TTL_SECS: u32 = 24 * 60 * 60;

/// The HTTP client every push shares: the webhooks' address rule applies
/// (a subscription's endpoint is user input), no redirects, no proxy.
pub struct PushSender {
    client: reqwest::Client,
    allow_private: bool,
}

impl PushSender {
    pub fn new(allow_private: bool) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(PUSH_TIMEOUT)
            .redirect(Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent(concat!("confab-push/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    pub async fn attempt(&self, vapid: &Vapid, due: &DuePush, now: i64) -> PushOutcome {
        match self.send(vapid, due, now).await {
            Ok(status) if status.is_success() => PushOutcome::Delivered,
            Ok(StatusCode::NOT_FOUND | StatusCode::GONE) => PushOutcome::Gone,
            Ok(status) => PushOutcome::Failed(format!("push service answered {status}")),
            Err(error) => PushOutcome::Failed(error),
        }
    }

    async fn send(&self, vapid: &Vapid, due: &DuePush, now: i64) -> Result<StatusCode, String> {
        let url = url::Url::parse(&due.endpoint).map_err(|e| format!("bad endpoint: {e}"))?;
        check_literal_host(&url, self.allow_private)?;
        let keys = (
            URL_SAFE_NO_PAD.decode(&due.p256dh),
            URL_SAFE_NO_PAD.decode(&due.auth),
        );
        let (Ok(p256dh), Ok(auth)) = keys else {
            return Err("the subscription's keys are not base64url".into());
        };
        let body = encrypt(&p256dh, &auth, due.payload.as_bytes()).map_err(|e| e.to_string())?;
        let authorization = vapid.authorization(&url, now).map_err(|e| e.to_string())?;
        let response = self
            .client
            .post(url)
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("TTL", TTL_SECS.to_string())
            .header("Topic", &due.topic)
            .header("Urgency", "normal")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("timed out after {} s", PUSH_TIMEOUT.as_secs())
                } else {
                    e.without_url().to_string()
                }
            })?;
        // The body is not read: nothing in it matters.
        Ok(response.status())
    }
}
