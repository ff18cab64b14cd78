//! A browser's Web Push subscription as it hands it over (its
//! `PushSubscription.toJSON()`): the push service endpoint, and the keys a
//! message to it is encrypted to (RFC 8291). The address rule for the
//! endpoint needs DNS and lives with the webhooks (`webhooks::address`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::webhooks::WebhookUrl;
use crate::error::AppError;

/// A push service endpoint: an absolute http(s) URL (https only unless
/// `webhooks.allow_private`, checked with the address rule), at most 2000
/// bytes, no credentials, no fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEndpoint(WebhookUrl);

impl PushEndpoint {
    pub fn parse(raw: &str, allow_private: bool) -> Result<Self, AppError> {
        let url =
            WebhookUrl::parse(raw).map_err(|e| AppError::bad_request(format!("endpoint: {e}")))?;
        if url.url().scheme() != "https" && !allow_private {
            return Err(AppError::bad_request(
                "endpoint must be https (plain http only with webhooks.allow_private)",
            ));
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &WebhookUrl {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// The subscription's keys: the browser's P-256 public key (uncompressed,
/// 65 bytes) and its 16-byte authentication secret, both base64url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushKeys {
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

impl PushKeys {
    pub fn parse(p256dh: &str, auth: &str) -> Result<Self, AppError> {
        let p256dh = decode("keys.p256dh", p256dh)?;
        if p256dh.len() != 65 || p256dh[0] != 0x04 {
            return Err(AppError::bad_request(
                "keys.p256dh must be an uncompressed P-256 point (65 bytes, base64url)",
            ));
        }
        let auth = decode("keys.auth", auth)?;
        if auth.len() != 16 {
            return Err(AppError::bad_request(
                "keys.auth must be 16 bytes, base64url",
            ));
        }
        Ok(Self { p256dh, auth })
    }
}

/// base64url with or without padding, as browsers differ.
pub fn decode(field: &str, text: &str) -> Result<Vec<u8>, AppError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| AppError::bad_request(format!("{field} is not base64url")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_unless_private_is_allowed() {
        assert!(PushEndpoint::parse("https://push.example.com/send/abc", false).is_ok());
        assert!(PushEndpoint::parse("http://push.example.com/send/abc", false).is_err());
        assert!(PushEndpoint::parse("http://127.0.0.1:9/send", true).is_ok());
        assert!(PushEndpoint::parse("ftp://push.example.com/", true).is_err());
    }

    #[test]
    fn keys_have_their_sizes() {
        let point = URL_SAFE_NO_PAD.encode([4u8; 65]);
        let auth = URL_SAFE_NO_PAD.encode([1u8; 16]);
        assert!(PushKeys::parse(&point, &auth).is_ok());
        assert!(PushKeys::parse(&point, &format!("{auth}==")).is_ok());
        assert!(PushKeys::parse(&auth, &auth).is_err());
        assert!(PushKeys::parse(&point, &point).is_err());
        assert!(PushKeys::parse("!!", &auth).is_err());
    }
}
