//! A Web Push service and a browser, for real: an HTTP/1.1 server on a
//! random local port that records every push it gets and answers as the
//! test says, and [`Browser`], which holds a subscription's keys (a P-256
//! key pair and an auth secret, made as a browser makes them), decrypts
//! pushes (RFC 8291 `aes128gcm`) and checks their VAPID header (RFC 8292).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::hkdf::{KeyType, Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// One push as the service saw it.
#[derive(Debug, Clone)]
pub struct Push {
    pub path: String,
    /// Lower-cased names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Push {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

pub struct PushService {
    /// `http://127.0.0.1:port`.
    pub origin: String,
    pushes: mpsc::UnboundedReceiver<Push>,
    /// Status per path (default 201).
    statuses: Arc<Mutex<HashMap<String, u16>>>,
}

impl PushService {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (tx, pushes) = mpsc::unbounded_channel();
        let statuses: Arc<Mutex<HashMap<String, u16>>> = Arc::default();
        let shared = statuses.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, tx.clone(), shared.clone()));
            }
        });
        PushService {
            origin: format!("http://{addr}"),
            pushes,
            statuses,
        }
    }

    /// A new endpoint on this service.
    pub fn endpoint(&self) -> String {
        format!("{}/push/{}", self.origin, uuid::Uuid::new_v4().simple())
    }

    /// Pushes to `endpoint` are answered with `status`.
    pub fn answer(&self, endpoint: &str, status: u16) {
        let path = endpoint.trim_start_matches(&self.origin).to_string();
        self.statuses.lock().unwrap().insert(path, status);
    }

    pub async fn next_within(&mut self, within: Duration) -> Push {
        timeout(within, self.pushes.recv())
            .await
            .unwrap_or_else(|_| panic!("no push within {within:?}"))
            .expect("the push service runs")
    }

    pub async fn next(&mut self) -> Push {
        self.next_within(Duration::from_secs(20)).await
    }

    /// A push that has already arrived, if any (no waiting).
    pub fn already_arrived(&mut self) -> Option<Push> {
        self.pushes.try_recv().ok()
    }
}

async fn serve(
    stream: TcpStream,
    pushes: mpsc::UnboundedSender<Push>,
    statuses: Arc<Mutex<HashMap<String, u16>>>,
) {
    let mut reader = BufReader::new(stream);
    while let Some(push) = read_request(&mut reader).await {
        let status = statuses
            .lock()
            .unwrap()
            .get(&push.path)
            .copied()
            .unwrap_or(201);
        let _ = pushes.send(push);
        let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if reader
            .get_mut()
            .write_all(response.as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Push> {
    let raw = super::receiver::read_raw_request(reader).await?;
    Some(Push {
        path: raw.path,
        headers: raw.headers,
        body: raw.body,
    })
}

/// A browser's side of one push subscription.
pub struct Browser {
    pub endpoint: String,
    secret: SecretKey,
    auth: [u8; 16],
}

impl Browser {
    pub fn new(endpoint: String) -> Self {
        let rng = SystemRandom::new();
        let secret = loop {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes).unwrap();
            if let Ok(key) = SecretKey::from_slice(&bytes) {
                break key;
            }
        };
        let mut auth = [0u8; 16];
        rng.fill(&mut auth).unwrap();
        Browser {
            endpoint,
            secret,
            auth,
        }
    }

    fn public_bytes(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// `PushSubscription.toJSON()`.
    pub fn subscription(&self) -> Value {
        json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": {
                "p256dh": URL_SAFE_NO_PAD.encode(self.public_bytes()),
                "auth": URL_SAFE_NO_PAD.encode(self.auth),
            }
        })
    }

    /// Decrypts an `aes128gcm` body (one record) to its JSON payload.
    pub fn decrypt(&self, push: &Push) -> Value {
        assert_eq!(push.header("content-encoding"), "aes128gcm");
        let body = &push.body;
        let salt = &body[..16];
        let record_size = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
        let id_len = body[20] as usize;
        let as_public = &body[21..21 + id_len];
        let ciphertext = &body[21 + id_len..];
        assert!(ciphertext.len() <= record_size, "one record");
        let server = PublicKey::from_sec1_bytes(as_public).expect("the keyid is a P-256 point");
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), server.as_affine());
        let ua_public = self.public_bytes();
        let ikm = hkdf(
            &self.auth,
            shared.raw_secret_bytes().as_slice(),
            &[b"WebPush: info\0", &ua_public, as_public],
            32,
        );
        let cek = hkdf(salt, &ikm, &[b"Content-Encoding: aes128gcm\0"], 16);
        let nonce = hkdf(salt, &ikm, &[b"Content-Encoding: nonce\0"], 12);
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).unwrap());
        let mut record = ciphertext.to_vec();
        let plain = key
            .open_in_place(
                Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                Aad::empty(),
                &mut record,
            )
            .expect("the push decrypts with the subscription's keys");
        let end = plain.iter().rposition(|b| *b != 0).expect("a delimiter");
        assert_eq!(plain[end], 0x02, "the last record's delimiter");
        serde_json::from_slice(&plain[..end]).expect("the payload is JSON")
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], len: usize) -> Vec<u8> {
    let okm = Salt::new(HKDF_SHA256, salt).extract(ikm);
    let okm = okm.expand(info, Len(len)).unwrap();
    let mut out = vec![0u8; len];
    okm.fill(&mut out).unwrap();
    out
}

/// Checks `Authorization: vapid t=<JWT>, k=<key>` as a push service does:
/// `k` is the key the server serves, the JWT is ES256-signed with it, its
/// `aud` is the endpoint's origin and it has not expired.
pub fn assert_vapid(push: &Push, served_key: &str, origin: &str) {
    let header = push.header("authorization");
    let rest = header
        .strip_prefix("vapid ")
        .unwrap_or_else(|| panic!("a vapid Authorization header: {header:?}"));
    let mut token = None;
    let mut key = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(t) = part.strip_prefix("t=") {
            token = Some(t);
        } else if let Some(k) = part.strip_prefix("k=") {
            key = Some(k);
        }
    }
    let (token, key) = (token.expect("t="), key.expect("k="));
    assert_eq!(key, served_key, "k is the served VAPID public key");
    let point = URL_SAFE_NO_PAD.decode(key).unwrap();
    assert_eq!(point.len(), 65);
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(&point[1..33]),
        &URL_SAFE_NO_PAD.encode(&point[33..65]),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[origin]);
    validation.set_required_spec_claims(&["exp", "aud"]);
    let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .unwrap_or_else(|e| panic!("the VAPID JWT verifies: {e}"))
        .claims;
    let exp = claims["exp"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        exp > now && exp <= now + 24 * 3600,
        "exp within 24 h: {claims}"
    );
}
