//! One attempt: the signed POST, what its answer means, and when the next
//! attempt is due.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::CONTENT_TYPE;
use reqwest::redirect::Policy;

use super::address::{check_literal_host, GuardedResolver};
use super::signature::signature_header;
use crate::persistence::webhooks::{DueDelivery, Settlement};

/// The longest one attempt may take, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry waits this long; each next one twice as long...
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// ...up to this.
const LONGEST_RETRY: Duration = Duration::from_secs(600);
/// An event is retried for this long after it was committed, then given
/// up on (kept as failed).
pub const RETRY_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// How much of a refusing endpoint's answer goes into `last_error`.
const ERROR_BODY_BYTES: usize = 512;

/// The HTTP client all attempts share.
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    pub fn new(allow_private: bool) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A redirect is an answer like any other non-2xx: followed, it
            // could lead anywhere, past the address rule included.
            .redirect(Policy::none())
            // A proxy would connect on our behalf, out of the resolver's
            // sight.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent(concat!("confab-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// Makes the attempt and says what becomes of the delivery.
    pub async fn attempt(&self, due: &DueDelivery) -> Settlement {
        let outcome = self.post(due).await;
        settle(outcome, due.attempts + 1, due.created_at, Utc::now())
    }

    /// The status of a 2xx answer, or the status (if any) and why not.
    async fn post(&self, due: &DueDelivery) -> Result<i32, (Option<i32>, String)> {
        let url = url::Url::parse(&due.url).map_err(|e| (None, format!("bad url: {e}")))?;
        check_literal_host(&url, self.allow_private).map_err(|e| (None, e))?;
        let signature = signature_header(&due.secret, Utc::now().timestamp(), &due.body);
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("Confab-Event-Id", due.event_id.to_string())
            .header("Confab-Signature", signature)
            .body(due.body.clone())
            .send()
            .await
            .map_err(|e| (None, describe(e)))?;
        let status = i32::from(response.status().as_u16());
        if response.status().is_success() {
            // The body is not read: nothing in it matters.
            return Ok(status);
        }
        let mut response = response;
        let mut excerpt = Vec::new();
        while excerpt.len() < ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        excerpt.truncate(ERROR_BODY_BYTES);
        let excerpt = String::from_utf8_lossy(&excerpt);
        let excerpt = excerpt.trim();
        let error = if excerpt.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {excerpt}")
        };
        Err((Some(status), error))
    }
}

/// A request error with its causes: reqwest's own text alone ("error
/// sending request") does not say whether it was DNS, the address rule, a
/// refused connection or the timeout.
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("timed out after {} s", ATTEMPT_TIMEOUT.as_secs());
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The wait after the `attempts`-th failed attempt: 1 s, 2 s, 4 s, … 10 min.
pub fn retry_delay(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    (FIRST_RETRY * 2u32.pow(doublings)).min(LONGEST_RETRY)
}

/// What an attempt's outcome makes of the delivery: delivered, retried
/// after the backoff, or given up once it is older than [`RETRY_FOR`].
fn settle(
    outcome: Result<i32, (Option<i32>, String)>,
    attempts: i32,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Settlement {
    let (status, error) = match outcome {
        Ok(status) => return Settlement::Delivered { status },
        Err(failure) => failure,
    };
    let retry_for = chrono::Duration::from_std(RETRY_FOR).unwrap_or(chrono::Duration::MAX);
    if now - created_at >= retry_for {
        return Settlement::GaveUp { status, error };
    }
    let delay = chrono::Duration::from_std(retry_delay(attempts))
        .unwrap_or_else(|_| chrono::Duration::seconds(600));
    Settlement::Retry {
        status,
        error,
        at: now + delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_ten_minutes() {
        let secs: Vec<u64> = (1..=12).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(retry_delay(10_000).as_secs(), 600);
    }

    #[test]
    fn a_failure_is_retried_for_a_day_then_given_up() {
        let created = Utc::now();
        let failed = || Err((Some(500), "HTTP 500".to_string()));
        match settle(failed(), 3, created, created + chrono::Duration::hours(23)) {
            Settlement::Retry { at, status, .. } => {
                assert_eq!(status, Some(500));
                assert_eq!(
                    at,
                    created + chrono::Duration::hours(23) + chrono::Duration::seconds(4)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            settle(
                failed(),
                200,
                created,
                created + chrono::Duration::hours(24)
            ),
            Settlement::GaveUp { .. }
        ));
        assert_eq!(
            settle(Ok(204), 1, created, created),
            Settlement::Delivered { status: 204 }
        );
    }
}
