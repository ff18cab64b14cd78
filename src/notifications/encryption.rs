//! Web Push message encryption (RFC 8291, `aes128gcm` of RFC 8188) and the
//! VAPID signature (RFC 8292), with ring.
//!
//! Encryption, for one message to one subscription:
//! - a fresh P-256 key pair (the application server's) and its ECDH secret
//!   with the browser's public key (`p256dh`);
//! - `IKM = HKDF(salt = auth, ikm = ecdh, info = "WebPush: info\0" || ua_public || as_public, 32)`;
//! - a random 16-byte salt; `CEK = HKDF(salt, IKM, "Content-Encoding: aes128gcm\0", 16)`,
//!   `NONCE = HKDF(salt, IKM, "Content-Encoding: nonce\0", 12)`;
//! - one record: `AES-128-GCM(CEK, NONCE, payload || 0x02)`, after the
//!   header `salt || rs (4096, u32 BE) || idlen (65) || as_public`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use ring::hkdf::{KeyType, Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

/// The record size announced in the header; one record holds a payload
/// of up to 4096 - 16 (tag) - 1 (delimiter) bytes.
const RECORD_SIZE: u32 = 4096;

/// Why a message could not be encrypted or signed.
#[derive(Debug, thiserror::Error)]
pub enum PushCryptoError {
    #[error("the subscription's keys are not usable")]
    BadSubscriptionKeys,
    #[error("the payload is too large for one record")]
    TooLarge,
    #[error("the VAPID key is not usable")]
    BadVapidKey,
    #[error("the system's random source failed")]
    Random,
}

/// A length for ring's HKDF expansion.
struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], len: usize) -> Result<Vec<u8>, PushCryptoError> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(ikm);
    let okm = prk
        .expand(info, Len(len))
        .map_err(|_| PushCryptoError::BadSubscriptionKeys)?;
    let mut out = vec![0u8; len];
    okm.fill(&mut out)
        .map_err(|_| PushCryptoError::BadSubscriptionKeys)?;
    Ok(out)
}

/// The `aes128gcm` body of `payload` for the browser key `ua_public` and
/// authentication secret `auth`.
pub fn encrypt(ua_public: &[u8], auth: &[u8], payload: &[u8]) -> Result<Vec<u8>, PushCryptoError> {
    if payload.len() + 17 > RECORD_SIZE as usize {
        return Err(PushCryptoError::TooLarge);
    }
    let rng = SystemRandom::new();
    let private =
        EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| PushCryptoError::Random)?;
    let as_public = private
        .compute_public_key()
        .map_err(|_| PushCryptoError::Random)?;
    let as_public = as_public.as_ref().to_vec();
    let ecdh = agree_ephemeral(
        private,
        &UnparsedPublicKey::new(&ECDH_P256, ua_public),
        |secret| secret.to_vec(),
    )
    .map_err(|_| PushCryptoError::BadSubscriptionKeys)?;
    let ikm = hkdf(
        auth,
        &ecdh,
        &[b"WebPush: info\0", ua_public, &as_public],
        32,
    )?;
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| PushCryptoError::Random)?;
    let cek = hkdf(&salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], 16)?;
    let nonce = hkdf(&salt, &ikm, &[b"Content-Encoding: nonce\0"], 12)?;
    let key =
        UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| PushCryptoError::BadSubscriptionKeys)?;
    let nonce = Nonce::try_assume_unique_for_key(&nonce)
        .map_err(|_| PushCryptoError::BadSubscriptionKeys)?;
    let mut record = payload.to_vec();
    // The last (and only) record's delimiter; no padding.
    record.push(0x02);
    LessSafeKey::new(key)
        .seal_in_place_append_tag(nonce, Aad::empty(), &mut record)
        .map_err(|_| PushCryptoError::TooLarge)?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// The application server's VAPID identity: its P-256 key pair.
pub struct Vapid {
    pair: EcdsaKeyPair,
    /// The public key as browsers subscribe with it (base64url).
    public_key: String,
    /// The `sub` claim, if configured.
    subject: Option<String>,
}

/// How long a VAPID token is valid (RFC 8292 caps it at 24 h).
const TOKEN_LIFETIME_SECS: i64 = 12 * 60 * 60;

impl Vapid {
    /// From the stored PKCS#8 DER (base64url).
    pub fn from_pkcs8(private_pkcs8: &str, subject: &str) -> Result<Self, PushCryptoError> {
        let der = URL_SAFE_NO_PAD
            .decode(private_pkcs8)
            .map_err(|_| PushCryptoError::BadVapidKey)?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
                .map_err(|_| PushCryptoError::BadVapidKey)?;
        let public_key = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        Ok(Self {
            pair,
            public_key,
            subject: (!subject.is_empty()).then(|| subject.to_string()),
        })
    }

    /// The `Authorization` header for a push to `endpoint`: `vapid t=<JWT
    /// ES256, aud = the endpoint's origin>, k=<public key>`.
    pub fn authorization(&self, endpoint: &url::Url, now: i64) -> Result<String, PushCryptoError> {
        // The origin keeps a port that is not the scheme's default.
        let audience = endpoint.origin().ascii_serialization();
        let mut claims = json!({ "aud": audience, "exp": now + TOKEN_LIFETIME_SECS });
        if let Some(subject) = &self.subject {
            claims["sub"] = json!(subject);
        }
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .map_err(|_| PushCryptoError::BadVapidKey)?;
        let signature = URL_SAFE_NO_PAD.encode(signature.as_ref());
        Ok(format!(
            "vapid t={signed}.{signature}, k={}",
            self.public_key
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_the_rfc_8188_header() {
        let rng = SystemRandom::new();
        let browser = EphemeralPrivateKey::generate(&ECDH_P256, &rng).unwrap();
        let ua_public = browser.compute_public_key().unwrap();
        let body = encrypt(ua_public.as_ref(), &[7u8; 16], b"hello").unwrap();
        assert_eq!(&body[16..20], &4096u32.to_be_bytes());
        assert_eq!(body[20], 65);
        assert_eq!(body[21], 0x04);
        // header, then "hello" + delimiter + 16-byte tag
        assert_eq!(body.len(), 21 + 65 + 5 + 1 + 16);
    }

    #[test]
    fn a_bad_browser_key_is_refused() {
        assert!(encrypt(&[4u8; 65], &[7u8; 16], b"x").is_err());
    }

    #[test]
    fn the_audience_keeps_a_non_default_port() {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let vapid = Vapid::from_pkcs8(&URL_SAFE_NO_PAD.encode(pkcs8.as_ref()), "").unwrap();
        let url = url::Url::parse("http://127.0.0.1:8443/push/x").unwrap();
        let header = vapid.authorization(&url, 1_000).unwrap();
        let token = header
            .strip_prefix("vapid t=")
            .unwrap()
            .split(", k=")
            .next()
            .unwrap();
        let claims = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["aud"], "http://127.0.0.1:8443");
        assert_eq!(claims["exp"], 1_000 + TOKEN_LIFETIME_SECS);
        assert!(claims.get("sub").is_none());
    }
}
