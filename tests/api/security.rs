//! Security: who may do what (an authorization matrix over every client
//! event and every HTTP endpoint), which tokens are accepted (HS256 only,
//! exp required, no leeway), that no token reaches the log, that
//! permessage-deflate is never negotiated, and the Origin allowlist.
//!
//! A JWT secret shorter than 32 bytes refusing to start is proved with the
//! real binary in process.rs (a_bad_setting_exits_non_zero_...).

use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::header::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use uuid::Uuid;

use crate::support::child::ChildConfig;
use crate::support::ws::{Socket, ARRIVAL};
use crate::support::{http_client, spawn_app, spawn_app_with, uuid, Reply, TestApp, TestUser};

// ---- helpers ----------------------------------------------------------------

/// An upgrade request for `url` with `?token=` (if any) and extra headers.
fn upgrade_request(url: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Request {
    let url = match token {
        Some(token) => format!("{url}?token={token}"),
        None => url.to_string(),
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .unwrap_or_else(|e| panic!("a client request for {url}: {e}"));
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("header name {name}: {e}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("header {name}: {value:?}: {e}"));
        request.headers_mut().insert(name, value);
    }
    request
}

/// The upgrade's outcome: the socket and the 101 response, or the status
/// it was refused with.
async fn upgrade(request: Request) -> Result<(Socket, Response), u16> {
    match timeout(ARRIVAL, tokio_tungstenite::connect_async(request)).await {
        Err(_) => panic!("no answer to the upgrade within {ARRIVAL:?}"),
        Ok(Err(WsError::Http(response))) => Err(response.status().as_u16()),
        Ok(Err(other)) => panic!("the upgrade failed without an HTTP answer: {other}"),
        Ok(Ok(accepted)) => Ok(accepted),
    }
}

/// The next text frame of a raw socket, as JSON. tungstenite fails the
/// read if a frame has RSV1 set (a compressed frame) without an extension.
async fn next_text(socket: &mut Socket) -> Value {
    loop {
        match timeout(ARRIVAL, socket.next()).await {
            Err(_) => panic!("no frame within {ARRIVAL:?}"),
            Ok(None) => panic!("the connection ended while a frame was expected"),
            Ok(Some(Err(e))) => panic!("reading a frame failed: {e}"),
            Ok(Some(Ok(Message::Text(text)))) => {
                return serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("server sent non-JSON {text}: {e}"))
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                panic!("the server closed ({frame:?}) while a frame was expected")
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// An HTTP request with arbitrary headers (TestApp::request sets none).
async fn http(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut req = http_client().request(method, format!("{base}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("the HTTP request completes");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.expect("the HTTP body arrives");
    Reply {
        status,
        body: serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into())),
    }
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// A JWT with any header, signed with `alg` (an HMAC) and `secret`, or
/// unsigned if `alg` is None.
fn jwt(header: Value, claims: &Value, signing: Option<(Algorithm, &[u8])>) -> String {
    let message = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let signature = match signing {
        None => String::new(),
        Some((alg, secret)) => {
            jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), alg)
                .unwrap_or_else(|e| panic!("signing a test token: {e}"))
        }
    };
    format!("{message}.{signature}")
}

/// A standard JWT of `alg` with these claims.
fn standard_jwt(alg: Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .unwrap_or_else(|e| panic!("signing a test token: {e}"))
}

// ---- authorization matrix: client events -----------------------------------------

/// Valid data for a client event naming `thread`.
type DataFor = fn(Uuid) -> Value;

/// Every client event that acts on a thread, with valid data for it.
const CLIENT_EVENTS: [(&str, DataFor); 8] = [
    (
        "chat:send",
        |t| json!({"thread_id": t, "client_msg_id": Uuid::new_v4(), "body": "let me in"}),
    ),
    (
        "chat:delivered",
        |t| json!({"thread_id": t, "up_to_seq": 2}),
    ),
    (
        "chat:mark-read",
        |t| json!({"thread_id": t, "up_to_seq": 2}),
    ),
    ("chat:typing-start", |t| json!({"thread_id": t})),
    ("chat:typing-stop", |t| json!({"thread_id": t})),
    ("chat:sync", |t| json!({"thread_id": t, "after_seq": 0})),
    ("chat:changes", |t| json!({"thread_id": t, "after_rev": 0})),
    // Membership is checked before the message is looked for: any id.
    (
        "chat:react",
        |t| json!({"thread_id": t, "message_id": Uuid::now_v7(), "emoji": "👍", "on": true}),
    ),
];

/// Company A: ann and bob in `thread` (two messages, bob has read one),
/// carl outside it; company B: dave.
struct Cast {
    app: TestApp,
    ann: TestUser,
    bob: TestUser,
    carl: TestUser,
    dave: TestUser,
    thread: Uuid,
    message: Uuid,
}

async fn cast() -> Cast {
    let app = spawn_app().await;
    let company_a = app.company().await;
    let ann = app.named_user(company_a, "ann").await;
    let bob = app.named_user(company_a, "bob").await;
    let carl = app.named_user(company_a, "carl").await;
    let dave = app.named_user(app.company().await, "dave").await;
    let thread = app.group(&[&ann, &bob]).await;
    // Sessions opened and closed here, so the members' sessions of the
    // test start with nothing pending.
    let mut seeder = app.connect(&ann).await;
    let message = uuid(&seeder.send_message(thread, "secret plans").await["id"]);
    seeder.send_message(thread, "more secret plans").await;
    seeder.close().await;
    let mut seeder = app.connect(&bob).await;
    let read = seeder
        .request(
            "chat:mark-read",
            json!({"thread_id": thread, "up_to_seq": 1}),
        )
        .await;
    assert_eq!(read["event"], "chat:ack", "{read}");
    seeder.close().await;
    Cast {
        app,
        ann,
        bob,
        carl,
        dave,
        thread,
        message,
    }
}

#[actix_web::test]
async fn every_client_event_from_another_company_a_non_member_or_nobody_is_refused_without_effect()
{
    let c = cast().await;
    let app = &c.app;
    // The callers first: they share no thread with ann and bob, so their
    // coming online is nobody's news.
    let mut dave_ws = app.connect(&c.dave).await;
    let mut carl_ws = app.connect(&c.carl).await;
    let mut ann_ws = app.connect(&c.ann).await;
    let mut bob_ws = app.connect(&c.bob).await;
    let presence = ann_ws.next_event("chat:presence").await;
    assert_eq!(presence, json!({"user_id": c.bob.id, "online": true}));
    let before = crate::support::db::database_state(&app.db_url).await;

    for (event, data) in CLIENT_EVENTS {
        let mut answers = Vec::new();
        for (caller, client) in [
            ("a user of another company", &mut dave_ws),
            ("a non-member of the same company", &mut carl_ws),
        ] {
            let reply = client.request(event, data(c.thread)).await;
            assert_eq!(reply["event"], "chat:error", "{event} by {caller}: {reply}");
            assert_eq!(
                reply["data"]["code"], "not_member",
                "{event} by {caller}: {reply}"
            );
            answers.push(reply["data"].clone());
            // Without a ref, the same error, without one.
            client.emit(event, data(c.thread)).await;
            let error = client
                .wait_for(|f| f["event"] == "chat:error", "chat:error")
                .await;
            assert_eq!(error["data"]["code"], "not_member", "{event}: {error}");
            assert!(error.get("ref").is_none(), "{event}: {error}");
        }
        assert_eq!(
            answers[0], answers[1],
            "{event}: another company and a non-member get the same answer"
        );
    }

    // Nobody: the upgrade itself is refused, so no event can be sent.
    for (what, token) in [
        ("no token", None),
        ("a token that is not a JWT", Some("nope")),
    ] {
        let refused = upgrade(upgrade_request(&app.ws_url, token, &[])).await;
        assert!(
            matches!(refused, Err(401)),
            "an upgrade with {what} must be refused with 401, got {:?}",
            refused.map(|(_, r)| r.status())
        );
    }

    ann_ws.assert_silent().await;
    bob_ws.assert_silent().await;
    assert_eq!(
        crate::support::db::database_state(&app.db_url).await,
        before,
        "refused events change no row and no cursor"
    );
    // The refused sessions still work.
    for client in [&mut dave_ws, &mut carl_ws] {
        let pong = client.request("ping", json!({})).await;
        assert_eq!(pong["event"], "pong", "{pong}");
    }
    // And the control: a member's event does reach the other member.
    let sent = ann_ws.send_message(c.thread, "members only").await;
    assert_eq!(bob_ws.next_event("chat:message").await["message"], sent);
}

// ---- authorization matrix: HTTP ---------------------------------------------------

/// What a caller must get from an endpoint.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// This status and error code.
    Refused(u16, &'static str),
    /// 200 with the caller's own data, which mentions nothing of the
    /// thread, its message or its members.
    Own,
    /// Legitimate for this caller (an operator on /admin, a member on
    /// /api, any user starting a thread with colleagues): not part of the
    /// matrix, whose every request must be refused or harmless.
    Allowed,
}

const NOT_FOUND: Answer = Answer::Refused(404, "not_found");
const UNAUTHORIZED: Answer = Answer::Refused(401, "unauthorized");

/// One endpoint and what each caller gets.
struct Row {
    method: Method,
    path: String,
    body: Option<Value>,
    foreign: Answer,
    outsider: Answer,
    anonymous: Answer,
    member: Answer,
    admin: Answer,
}

/// Which of a row's answers applies to a caller.
type Column = fn(&Row) -> Answer;

/// A user API endpoint: no token or the admin token is 401.
fn api(
    method: Method,
    path: String,
    body: Option<Value>,
    foreign: Answer,
    outsider: Answer,
) -> Row {
    Row {
        method,
        path,
        body,
        foreign,
        outsider,
        anonymous: UNAUTHORIZED,
        member: Answer::Allowed,
        admin: UNAUTHORIZED,
    }
}

/// An admin endpoint: every user token, and none, is 401.
fn admin(method: Method, path: String, body: Option<Value>) -> Row {
    Row {
        method,
        path,
        body,
        foreign: UNAUTHORIZED,
        outsider: UNAUTHORIZED,
        anonymous: UNAUTHORIZED,
        member: UNAUTHORIZED,
        admin: Answer::Allowed,
    }
}

#[actix_web::test]
async fn every_http_endpoint_answers_another_company_a_non_member_and_nobody_as_the_contract_says()
{
    let c = cast().await;
    let app = &c.app;
    let (t, m, company) = (c.thread, c.message, c.ann.company_id);
    let (ann, bob, carl) = (c.ann.id, c.bob.id, c.carl.id);
    use Answer::{Allowed, Own};
    #[rustfmt::skip]
    let rows = vec![
        api(Method::GET, "/api/me".into(), None, Own, Own),
        api(Method::GET, "/api/threads".into(), None, Own, Own),
        api(Method::POST, "/api/threads".into(), Some(json!({"member_ids": [ann, bob]})), NOT_FOUND, Allowed),
        api(Method::GET, format!("/api/threads/{t}/messages"), None, NOT_FOUND, NOT_FOUND),
        api(Method::GET, format!("/api/threads/{t}/messages?after_seq=0"), None, NOT_FOUND, NOT_FOUND),
        api(Method::GET, format!("/api/threads/{t}/changes?after_rev=0"), None, NOT_FOUND, NOT_FOUND),
        api(Method::GET, format!("/api/threads/{t}/members"), None, NOT_FOUND, NOT_FOUND),
        api(Method::POST, format!("/api/threads/{t}/members"), Some(json!({"user_id": carl})), NOT_FOUND, NOT_FOUND),
        api(Method::DELETE, format!("/api/threads/{t}/members/me"), None, NOT_FOUND, NOT_FOUND),
        api(Method::PATCH, format!("/api/messages/{m}"), Some(json!({"body": "hijacked"})), NOT_FOUND, NOT_FOUND),
        api(Method::PATCH, format!("/api/messages/{m}"), Some(json!({"body": "hijacked", "mentions": [carl]})), NOT_FOUND, NOT_FOUND),
        api(Method::DELETE, format!("/api/messages/{m}"), None, NOT_FOUND, NOT_FOUND),
        admin(Method::POST, "/admin/companies".into(), Some(json!({"name": "Evil"}))),
        admin(Method::POST, "/admin/users".into(), Some(json!({"company_id": company, "display_name": "Mallory"}))),
        admin(Method::POST, format!("/admin/users/{carl}/tokens"), Some(json!({}))),
        admin(Method::POST, "/admin/threads".into(), Some(json!({"company_id": company, "member_ids": [ann, carl]}))),
        admin(Method::POST, format!("/admin/threads/{t}/members"), Some(json!({"user_id": carl}))),
        admin(Method::DELETE, format!("/admin/threads/{t}/members/{bob}"), None),
        admin(Method::DELETE, format!("/admin/messages/{m}"), None),
        admin(Method::GET, "/admin/stats".into(), None),
    ];
    let mut ann_ws = app.connect(&c.ann).await;
    let mut bob_ws = app.connect(&c.bob).await;
    ann_ws.next_event("chat:presence").await;
    let before = crate::support::db::database_state(&app.db_url).await;
    // What no answer to an outsider may contain.
    let secrets = [
        t.to_string(),
        m.to_string(),
        ann.to_string(),
        bob.to_string(),
        "secret plans".to_string(),
    ];

    let admin_token = app.admin_token.clone();
    #[rustfmt::skip]
    let callers: [(&str, Option<&str>, Option<Uuid>, Column); 5] = [
        ("a user of another company", Some(c.dave.token.as_str()), Some(c.dave.id), |r| r.foreign),
        ("a non-member of the same company", Some(c.carl.token.as_str()), Some(carl), |r| r.outsider),
        ("an anonymous caller", None, None, |r| r.anonymous),
        ("a member (user JWT)", Some(c.ann.token.as_str()), Some(ann), |r| r.member),
        ("the admin token", Some(admin_token.as_str()), None, |r| r.admin),
    ];
    let mut checked = 0;
    for row in &rows {
        for (caller, token, caller_id, answer) in &callers {
            let expected = answer(row);
            if matches!(expected, Allowed) {
                continue;
            }
            let reply = app
                .request(row.method.clone(), &row.path, *token, row.body.clone())
                .await;
            let what = format!("{} {} by {caller}", row.method, row.path);
            match expected {
                Answer::Refused(status, code) => {
                    assert_eq!(reply.status, status, "{what}: {reply:?}");
                    assert_eq!(reply.error_code(), code, "{what}: {reply:?}");
                }
                Own => {
                    assert_eq!(reply.status, 200, "{what}: {reply:?}");
                    let text = reply.body.to_string();
                    for secret in &secrets {
                        assert!(
                            !text.contains(secret.as_str()),
                            "{what} reveals {secret}: {text}"
                        );
                    }
                    if row.path == "/api/me" {
                        assert_eq!(reply.body["id"], json!(caller_id), "{what}: {reply:?}");
                    }
                }
                Allowed => unreachable!(),
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 70,
        "only {checked} cells of the matrix were checked"
    );

    assert_eq!(
        crate::support::db::database_state(&app.db_url).await,
        before,
        "refused requests change no row and no cursor"
    );
    ann_ws.assert_silent().await;
    bob_ws.assert_silent().await;
    // The control: the member's own token does work where the others failed.
    let history = app
        .get(&format!("/api/threads/{t}/messages"), &c.ann.token)
        .await;
    assert_eq!(history.status, 200, "{history:?}");
    assert_eq!(history.body["messages"][0]["body"], "secret plans");
}

// ---- JWT ------------------------------------------------------------------------------

#[actix_web::test]
async fn only_hs256_tokens_with_exp_and_a_plausible_iat_are_accepted_on_the_api_and_the_upgrade() {
    let app = spawn_app().await;
    let users = app.users(1).await;
    let ann = &users[0];
    let other_company = app.company().await;
    let secret = app.jwt_secret.as_bytes();
    let claims = |changes: Value| {
        let mut claims = json!({"sub": ann.id, "company_id": ann.company_id,
                                "iat": now(), "exp": now() + 600});
        let map = claims.as_object_mut().expect("an object");
        for (key, value) in changes.as_object().expect("an object") {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.clone(), value.clone());
            }
        }
        claims
    };
    let hs256 = |changes: Value| standard_jwt(Algorithm::HS256, &claims(changes), secret);
    let valid = claims(json!({}));
    let valid_signature = hs256(json!({}))
        .rsplit('.')
        .next()
        .expect("a signature")
        .to_string();

    let cases: Vec<(&str, String, bool)> = vec![
        ("HS256 with the right secret", hs256(json!({})), true),
        (
            "iat 30 s ahead, within the 60 s of clock skew",
            hs256(json!({"iat": now() + 30})),
            true,
        ),
        (
            "HS256 built by hand like the forgeries below (their control)",
            jwt(
                json!({"alg": "HS256", "typ": "JWT"}),
                &valid,
                Some((Algorithm::HS256, secret)),
            ),
            true,
        ),
        (
            "alg none, unsigned",
            jwt(json!({"alg": "none", "typ": "JWT"}), &valid, None),
            false,
        ),
        (
            "alg none, with a valid signature",
            format!(
                "{}{valid_signature}",
                jwt(json!({"alg": "none", "typ": "JWT"}), &valid, None)
            ),
            false,
        ),
        (
            "HS256 with the signature stripped",
            jwt(json!({"alg": "HS256", "typ": "JWT"}), &valid, None),
            false,
        ),
        (
            "HS384 with the right secret",
            standard_jwt(Algorithm::HS384, &valid, secret),
            false,
        ),
        (
            "HS512 with the right secret",
            standard_jwt(Algorithm::HS512, &valid, secret),
            false,
        ),
        (
            "an RS256 header over an HMAC of the secret",
            jwt(
                json!({"alg": "RS256", "typ": "JWT"}),
                &valid,
                Some((Algorithm::HS256, secret)),
            ),
            false,
        ),
        (
            "a lower-case hs256 header",
            jwt(
                json!({"alg": "hs256", "typ": "JWT"}),
                &valid,
                Some((Algorithm::HS256, secret)),
            ),
            false,
        ),
        (
            "HS256 with a wrong key",
            standard_jwt(
                Algorithm::HS256,
                &valid,
                b"not-the-secret-not-the-secret-not-the-secret",
            ),
            false,
        ),
        ("no exp", hs256(json!({"exp": null})), false),
        (
            "exp a string",
            hs256(json!({"exp": (now() + 600).to_string()})),
            false,
        ),
        (
            "exp 1 second ago (no leeway)",
            hs256(json!({"exp": now() - 1})),
            false,
        ),
        (
            "iat an hour ahead",
            hs256(json!({"iat": now() + 3600})),
            false,
        ),
        ("sub not a uuid", hs256(json!({"sub": "admin"})), false),
        ("no sub", hs256(json!({"sub": null})), false),
        (
            "a sub that is no user",
            hs256(json!({"sub": Uuid::new_v4()})),
            false,
        ),
        (
            "company_id of another company",
            hs256(json!({"company_id": other_company})),
            false,
        ),
        ("no company_id", hs256(json!({"company_id": null})), false),
    ];

    for (what, token, accepted) in &cases {
        let me = app.request(Method::GET, "/api/me", Some(token), None).await;
        let upgraded = upgrade(upgrade_request(&app.ws_url, Some(token), &[])).await;
        if *accepted {
            assert_eq!(me.status, 200, "{what} must be accepted on /api/me: {me:?}");
            assert_eq!(me.body["id"], json!(ann.id), "{what}");
            let (mut socket, _) = upgraded
                .unwrap_or_else(|status| panic!("{what} must be accepted on /ws, got {status}"));
            let ready = next_text(&mut socket).await;
            assert_eq!(ready["event"], "chat:ready", "{what}: {ready}");
            assert_eq!(ready["data"]["user_id"], json!(ann.id), "{what}");
        } else {
            assert_eq!(me.status, 401, "{what} must be refused on /api/me: {me:?}");
            assert_eq!(me.error_code(), "unauthorized", "{what}: {me:?}");
            match upgraded {
                Err(status) => assert_eq!(status, 401, "{what} on /ws"),
                Ok((_, response)) => {
                    panic!("{what} must be refused on /ws, got {}", response.status())
                }
            }
        }
    }
}

// ---- tokens never reach the log ---------------------------------------------------------

#[actix_web::test]
async fn no_token_reaches_the_log_even_at_debug_level() {
    // Fixed admin token and JWT secret: nothing is generated, so neither
    // has any reason to appear in the log at all.
    let config = ChildConfig::new(&[("RUST_LOG", "debug")]);
    let (admin_token, jwt_secret) = (config.admin_token.clone(), config.jwt_secret.clone());
    let mut server = config.start().await;
    let bearer = |token: &str| format!("Bearer {token}");

    // A user, and a token minted for them by the admin API.
    let users = server.users(1).await;
    let (user_id, company_id) = (users[0].id, users[0].company_id);
    let minted = users[0].token.clone();

    let claims =
        json!({"sub": user_id, "company_id": company_id, "iat": now(), "exp": now() + 600});
    let own = standard_jwt(Algorithm::HS256, &claims, jwt_secret.as_bytes());
    let wrong_key = standard_jwt(
        Algorithm::HS256,
        &claims,
        b"a-wrong-key-a-wrong-key-a-wrong-key!",
    );
    let expired = standard_jwt(
        Algorithm::HS256,
        &json!({"sub": user_id, "company_id": company_id, "iat": now() - 120, "exp": now() - 60}),
        jwt_secret.as_bytes(),
    );
    let unsigned = jwt(json!({"alg": "none", "typ": "JWT"}), &claims, None);
    let garbage = format!("garbage-{}", Uuid::new_v4().simple());
    let wrong_admin = format!("admin-{}", Uuid::new_v4());

    // Connects that work, with ?token= and with a bearer header.
    for request in [
        upgrade_request(&server.ws_url, Some(&minted), &[]),
        upgrade_request(
            &server.ws_url,
            None,
            &[("Authorization", bearer(&own).as_str())],
        ),
    ] {
        let (mut socket, _) = upgrade(request)
            .await
            .unwrap_or_else(|status| panic!("a valid token was refused with {status}"));
        assert_eq!(next_text(&mut socket).await["event"], "chat:ready");
    }
    // Failed logins: connects and API calls with bad tokens.
    for token in [&wrong_key, &expired, &unsigned, &garbage] {
        let refused = upgrade(upgrade_request(&server.ws_url, Some(token), &[])).await;
        assert!(matches!(refused, Err(401)), "a bad ?token= must be refused");
        let header = bearer(token);
        let refused = upgrade(upgrade_request(
            &server.ws_url,
            None,
            &[("Authorization", &header)],
        ))
        .await;
        assert!(matches!(refused, Err(401)), "a bad bearer must be refused");
        let me = server
            .request(Method::GET, "/api/me", Some(token), None)
            .await;
        assert_eq!(me.status, 401, "{me:?}");
    }
    // Good tokens on the API, a token in a query string where none belongs,
    // a user token on /admin and a wrong admin token.
    for token in [&minted, &own] {
        let me = server
            .request(Method::GET, "/api/me", Some(token), None)
            .await;
        assert_eq!(me.status, 200, "{me:?}");
    }
    let me = server
        .request(Method::GET, &format!("/api/me?token={minted}"), None, None)
        .await;
    assert_eq!(me.status, 401, "{me:?}");
    for token in [&minted, &wrong_admin] {
        let stats = server
            .request(Method::GET, "/admin/stats", Some(token), None)
            .await;
        assert_eq!(stats.status, 401, "{stats:?}");
    }

    server.process.signal("TERM");
    let exit = server
        .process
        .exited_within(Duration::from_secs(30))
        .await
        .expect("confab exits after SIGTERM");
    assert!(exit.success(), "SIGTERM is a clean exit, got {exit:?}");
    let log = server.process.rest_of_log().await;

    // The log is the one asked for: debug lines, and a line per request.
    assert!(
        log.iter().any(|l| l.contains("DEBUG")),
        "RUST_LOG=debug must give debug lines: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("GET /ws") && l.contains(" 401 ")),
        "refused upgrades are logged: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("GET /api/me") && l.contains(" 200 ")),
        "API calls are logged: {log:#?}"
    );
    let mut secrets = vec![
        ("the admin token", admin_token),
        ("the JWT secret", jwt_secret),
        ("a wrong admin token", wrong_admin),
        ("a garbage token", garbage),
    ];
    for (what, token) in [
        ("the minted token", &minted),
        ("a valid token", &own),
        ("a token signed with a wrong key", &wrong_key),
        ("an expired token", &expired),
        ("an unsigned token", &unsigned),
    ] {
        secrets.push((what, token.clone()));
        // Its claims and its signature, alone, are secrets too.
        for part in token.split('.').skip(1).filter(|p| !p.is_empty()) {
            secrets.push((what, part.to_string()));
        }
    }
    for line in &log {
        for (what, secret) in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "{what} is in the log: {line}"
            );
        }
    }
}

// ---- permessage-deflate -----------------------------------------------------------------

#[actix_web::test]
async fn permessage_deflate_offered_by_a_client_is_not_negotiated_and_frames_arrive_uncompressed() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;

    let offer = [(
        "Sec-WebSocket-Extensions",
        "permessage-deflate; client_max_window_bits, permessage-deflate",
    )];
    let (mut socket, response) = upgrade(upgrade_request(&app.ws_url, Some(&bob.token), &offer))
        .await
        .unwrap_or_else(|status| panic!("the upgrade was refused with {status}"));
    assert_eq!(response.status().as_u16(), 101);
    assert!(
        response.headers().get("sec-websocket-extensions").is_none(),
        "no extension may be accepted: {:?}",
        response.headers()
    );
    assert_eq!(next_text(&mut socket).await["event"], "chat:ready");

    // A large, very compressible message: a compressing server would set
    // RSV1 on it, and tungstenite (which negotiated nothing) would fail.
    let mut ann_ws = app.connect(ann).await;
    let body = "all work and no play ".repeat(380);
    let sent = ann_ws.send_message(thread, &body).await;
    let got = loop {
        let frame = next_text(&mut socket).await;
        if frame["event"] == "chat:message" {
            break frame;
        }
    };
    assert_eq!(got["data"]["message"], sent);
    assert_eq!(got["data"]["message"]["body"], body.as_str());
}

// ---- Origin allowlist --------------------------------------------------------------------
// websocket.rs proves an unlisted origin is refused with 403 and a listed
// one accepted; here: how origins compare, and that only /ws looks at them.

#[actix_web::test]
async fn allowed_origins_compare_without_case_or_trailing_slash_and_only_the_upgrade_checks_them() {
    let app = spawn_app_with(|s| {
        s.allowed_origins = vec![
            "https://chat.example.com".into(),
            "https://app.example.com/".into(),
        ];
    })
    .await;
    let user = app.user(app.company().await).await;

    let accepted: [(&str, Option<&str>); 6] = [
        ("the listed origin", Some("https://chat.example.com")),
        ("upper case", Some("HTTPS://CHAT.EXAMPLE.COM")),
        (
            "mixed case and a trailing slash",
            Some("https://Chat.Example.com/"),
        ),
        (
            "an entry listed with a trailing slash",
            Some("https://app.example.com"),
        ),
        ("the same with one", Some("https://app.example.com/")),
        ("no Origin (not a browser page)", None),
    ];
    for (what, origin) in accepted {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        let (mut socket, _) = upgrade(upgrade_request(&app.ws_url, Some(&user.token), &headers))
            .await
            .unwrap_or_else(|status| panic!("{what} must be accepted, got {status}"));
        assert_eq!(
            next_text(&mut socket).await["event"],
            "chat:ready",
            "{what}"
        );
    }
    for origin in [
        "null",
        "",
        "https://chat.example.com:8443",
        "https://chat.example.com.",
        "https://app.example.com.evil.net",
        "https://evil.example.com/https://chat.example.com",
    ] {
        let refused = upgrade(upgrade_request(
            &app.ws_url,
            Some(&user.token),
            &[("Origin", origin)],
        ))
        .await;
        assert!(
            matches!(refused, Err(403)),
            "Origin {origin:?} must be refused with 403, got {:?}",
            refused.map(|(_, r)| r.status())
        );
    }

    // HTTP endpoints do not look at Origin: a bearer token is not sent by
    // a browser on its own, so a foreign page gains nothing.
    let evil = ("Origin", "https://evil.example.com");
    let as_user = format!("Bearer {}", user.token);
    let as_admin = format!("Bearer {}", app.admin_token);
    for (path, auth) in [
        ("/api/me", Some(as_user.as_str())),
        ("/api/threads", Some(as_user.as_str())),
        ("/admin/stats", Some(as_admin.as_str())),
        ("/healthz", None),
    ] {
        let mut headers = vec![evil];
        headers.extend(auth.map(|a| ("Authorization", a)));
        let reply = http(&app.base, Method::GET, path, &headers, None).await;
        assert_eq!(reply.status, 200, "{path} with a foreign Origin: {reply:?}");
    }
}

// ---- HTTP/2 ---------------------------------------------------------------------------

/// confab serves HTTP/1.1 only (no HTTP/2 code is in the server: see
/// docs/GUARANTEES.md, "Dependencies"), so HTTP/2 frame handling cannot be
/// reached. A client speaking HTTP/2 with prior knowledge on the plain port
/// gets an HTTP/1.1 error and a closed connection, never a SETTINGS frame.
#[actix_web::test]
async fn an_http2_prior_knowledge_preface_is_refused_not_served_as_http2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app().await;
    let mut socket = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect to the server");
    // The connection preface, then an empty SETTINGS frame (length 0,
    // type 4, no flags, stream 0), as an HTTP/2 client opens.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    socket.write_all(&preface).await.expect("send the preface");

    let mut answer = Vec::new();
    timeout(ARRIVAL, socket.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "an HTTP/1.1 400, not HTTP/2 frames; got {answer:?}"
    );
    assert_eq!(
        http(&app.base, Method::GET, "/healthz", &[], None)
            .await
            .status,
        200,
        "the server serves on"
    );
}
