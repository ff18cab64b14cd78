//! The WebSocket layer itself, RFC 6455 to the letter: who may upgrade,
//! fragmentation, control frames, the closing handshake, and the close
//! codes for protocol violations (1002) and bad UTF-8 (1007).

use std::cell::Cell;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, AUTHORIZATION, ORIGIN};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use uuid::Uuid;

use crate::support::ws::{Ending, Socket, ARRIVAL};
use crate::support::{spawn_app, spawn_app_with, TestApp, WsClient};

// ---- helpers ----------------------------------------------------------------

/// The upgrade request for `/ws` with an optional query token and headers.
fn upgrade_request(app: &TestApp, query_token: Option<&str>, headers: &[(&str, &str)]) -> Request {
    let url = match query_token {
        Some(token) => format!("{}?token={token}", app.ws_url),
        None => app.ws_url.clone(),
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .unwrap_or_else(|e| panic!("a client request for {url}: {e}"));
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("header {name}: {value:?}: {e}"));
        let name = match *name {
            "Authorization" => AUTHORIZATION,
            "Origin" => ORIGIN,
            other => panic!("no such header in these tests: {other}"),
        };
        request.headers_mut().insert(name, value);
    }
    request
}

/// The HTTP status the server refused the upgrade with.
async fn refused_status(request: Request) -> u16 {
    let uri = request.uri().path().to_string();
    match timeout(ARRIVAL, tokio_tungstenite::connect_async(request)).await {
        Err(_) => panic!("no answer to the upgrade of {uri} within {ARRIVAL:?}"),
        Ok(Err(WsError::Http(response))) => response.status().as_u16(),
        Ok(Err(other)) => panic!("the upgrade failed without an HTTP answer: {other}"),
        Ok(Ok((_, response))) => panic!(
            "the upgrade was accepted ({}) but must be refused",
            response.status()
        ),
    }
}

/// Opens the upgrade and returns the socket; panics if it is refused.
async fn accepted(request: Request) -> Socket {
    match timeout(ARRIVAL, tokio_tungstenite::connect_async(request)).await {
        Err(_) => panic!("no answer to the upgrade within {ARRIVAL:?}"),
        Ok(Err(WsError::Http(response))) => {
            panic!("the upgrade was refused with {}", response.status())
        }
        Ok(Err(other)) => panic!("the upgrade failed: {other}"),
        Ok(Ok((socket, _))) => socket,
    }
}

/// The next text frame on a raw socket, as JSON (control frames skipped).
async fn next_text(socket: &mut Socket) -> Value {
    loop {
        match timeout(ARRIVAL, socket.next()).await {
            Err(_) => panic!("no frame within {ARRIVAL:?}"),
            Ok(None) => panic!("the connection ended while a frame was expected"),
            Ok(Some(Err(e))) => panic!("the connection failed: {e}"),
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

/// Reads the raw socket until a pong arrives; returns its payload and the
/// text frames that came before it.
async fn until_pong(socket: &mut Socket) -> (Vec<u8>, Vec<Value>) {
    let mut texts = Vec::new();
    loop {
        match timeout(ARRIVAL, socket.next()).await {
            Err(_) => panic!("no pong within {ARRIVAL:?}; text frames seen: {texts:?}"),
            Ok(None) | Ok(Some(Err(_))) => {
                panic!("the connection ended before a pong; text frames seen: {texts:?}")
            }
            Ok(Some(Ok(Message::Pong(payload)))) => return (payload, texts),
            Ok(Some(Ok(Message::Text(text)))) => texts.push(
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("server sent non-JSON {text}: {e}")),
            ),
            Ok(Some(Ok(Message::Close(frame)))) => {
                panic!("the server closed ({frame:?}) instead of answering the ping")
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn text_frame(payload: impl Into<Vec<u8>>, is_final: bool) -> Message {
    Message::Frame(Frame::message(
        payload.into(),
        OpCode::Data(Data::Text),
        is_final,
    ))
}

fn continuation(payload: impl Into<Vec<u8>>, is_final: bool) -> Message {
    Message::Frame(Frame::message(
        payload.into(),
        OpCode::Data(Data::Continue),
        is_final,
    ))
}

fn ping_frame(payload: &[u8]) -> Message {
    Message::Frame(Frame::ping(payload.to_vec()))
}

/// An app-level ping still answers: the session is alive and working.
async fn assert_still_serving(client: &mut WsClient) {
    let reply = client.request("ping", json!({})).await;
    assert_eq!(
        reply["event"], "pong",
        "the session stopped serving: {reply}"
    );
}

/// A JWT signed with the app's secret, with the given claims.
fn mint(app: &TestApp, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(app.jwt_secret.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("signing a test token: {e}"))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---- who may upgrade ---------------------------------------------------------

/// The four kinds of bad token, each built for `user` (who exists) or a
/// user that is removed from the database first.
async fn bad_tokens(app: &TestApp) -> Vec<(&'static str, String)> {
    let company = app.company().await;
    let alive = app.user(company).await;
    let gone = app.user(company).await;
    let mut db = app.db().await;
    db.exec(&format!("DELETE FROM users WHERE id = '{}'", gone.id))
        .await;
    let expired = mint(
        app,
        json!({"sub": alive.id, "company_id": company, "iat": now() - 120, "exp": now() - 60}),
    );
    vec![
        ("garbage", "not-a-jwt".to_string()),
        ("expired", expired),
        ("deleted user", gone.token.clone()),
    ]
}

#[actix_web::test]
async fn an_upgrade_without_a_token_is_refused_with_401() {
    let app = spawn_app().await;
    assert_eq!(refused_status(upgrade_request(&app, None, &[])).await, 401);
    assert_eq!(
        refused_status(upgrade_request(&app, Some(""), &[])).await,
        401
    );
    assert_eq!(
        refused_status(upgrade_request(&app, None, &[("Authorization", "Bearer ")])).await,
        401
    );
}

#[actix_web::test]
async fn bad_expired_or_orphaned_query_tokens_are_refused_with_401_before_the_upgrade() {
    let app = spawn_app().await;
    // The control: a token minted here the same way, but valid, is accepted,
    // so the refusals below are about the token and nothing else.
    let user = app.user(app.company().await).await;
    let valid = mint(
        &app,
        json!({"sub": user.id, "company_id": user.company_id, "iat": now(), "exp": now() + 300}),
    );
    let mut socket = accepted(upgrade_request(&app, Some(&valid), &[])).await;
    assert_eq!(next_text(&mut socket).await["event"], "chat:ready");

    for (what, token) in bad_tokens(&app).await {
        let status = refused_status(upgrade_request(&app, Some(&token), &[])).await;
        assert_eq!(
            status, 401,
            "a {what} token in ?token= must be refused with 401"
        );
    }
}

#[actix_web::test]
async fn bad_expired_or_orphaned_bearer_tokens_are_refused_with_401_and_a_good_one_is_accepted() {
    let app = spawn_app().await;
    let user = app.user(app.company().await).await;
    let bearer = format!("Bearer {}", user.token);
    let mut socket = accepted(upgrade_request(&app, None, &[("Authorization", &bearer)])).await;
    let ready = next_text(&mut socket).await;
    assert_eq!(ready["event"], "chat:ready", "{ready}");
    assert_eq!(ready["data"]["user_id"], user.id.to_string());

    for (what, token) in bad_tokens(&app).await {
        let header = format!("Bearer {token}");
        let status =
            refused_status(upgrade_request(&app, None, &[("Authorization", &header)])).await;
        assert_eq!(
            status, 401,
            "a {what} bearer token must be refused with 401"
        );
    }
}

#[actix_web::test]
async fn with_allowed_origins_an_unlisted_origin_is_refused_with_403_and_a_listed_one_accepted() {
    let app = spawn_app_with(|s| {
        s.allowed_origins = vec!["https://chat.example.com".into()];
    })
    .await;
    let user = app.user(app.company().await).await;

    for origin in [
        "https://evil.example.com",
        "http://chat.example.com",
        "https://chat.example.com.evil.net",
    ] {
        let status = refused_status(upgrade_request(
            &app,
            Some(&user.token),
            &[("Origin", origin)],
        ))
        .await;
        assert_eq!(status, 403, "Origin {origin} must be refused");
    }

    let mut socket = accepted(upgrade_request(
        &app,
        Some(&user.token),
        &[("Origin", "https://chat.example.com")],
    ))
    .await;
    let ready = next_text(&mut socket).await;
    assert_eq!(ready["event"], "chat:ready", "{ready}");
}

// ---- fragmentation and control frames ------------------------------------------

#[actix_web::test]
async fn a_text_message_in_three_fragments_with_a_ping_between_is_one_message() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;

    let frame = json!({
        "event": "chat:send",
        "ref": "frag-1",
        "data": {"thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": "price: 5€ total"},
    })
    .to_string()
    .into_bytes();
    // Cut inside the JSON and inside the euro sign's three bytes: only the
    // whole message is text.
    let euro = frame
        .windows(3)
        .position(|w| w == "€".as_bytes())
        .expect("the frame holds a euro sign");
    assert!(euro > 20, "the first cut must come before the euro sign");
    let (first, rest) = frame.split_at(20);
    let (second, third) = rest.split_at(euro + 1 - 20);

    ann.send_raw(text_frame(first, false)).await;
    ann.send_raw(ping_frame(b"between fragments")).await;
    ann.send_raw(continuation(second, false)).await;
    ann.send_raw(continuation(third, true)).await;

    let (pong, before) = until_pong(ann.socket()).await;
    assert_eq!(pong, b"between fragments");
    let ack = match before.into_iter().find(|f| f["ref"] == "frag-1") {
        Some(ack) => ack,
        None => ann.reply_to("frag-1").await,
    };
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    assert_eq!(ack["data"]["message"]["body"], "price: 5€ total");

    let got = bob.next_event("chat:message").await;
    assert_eq!(got["message"]["body"], "price: 5€ total");
    bob.assert_no_event("chat:message").await;
    let mut db = app.db().await;
    assert_eq!(db.seqs(thread).await, vec![1]);
}

/// A session that waits gives its connection's buffers back (the patched
/// actix-http dispatcher, and the session's inbound buffer): whatever comes
/// after the wait must still be read and written whole. Frames several times
/// the 8 KiB those buffers hold: one in a single frame, one in fragments with
/// a ping between, each after a quiet spell, each echoed to a co-member.
#[actix_web::test]
async fn after_going_idle_a_session_still_takes_and_gives_large_and_fragmented_messages() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;
    let quiet = std::time::Duration::from_millis(300);

    // 7,000 three-byte characters: a 21 KB frame each way.
    let large = "€".repeat(7_000);
    tokio::time::sleep(quiet).await;
    ann.send_text(
        json!({"event": "chat:send", "ref": "large",
               "data": {"thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": large}})
        .to_string(),
    )
    .await;
    let ack = ann.reply_to("large").await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    assert_eq!(ack["data"]["message"]["body"], large.as_str());
    let got = bob.next_event("chat:message").await;
    assert_eq!(got["message"]["body"], large.as_str());

    // The same size again, in 1,000-byte fragments (cutting code points)
    // with a ping after the first.
    let fragmented = "ü€".repeat(4_000);
    let frame = json!({"event": "chat:send", "ref": "fragmented",
                       "data": {"thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": fragmented}})
    .to_string()
    .into_bytes();
    tokio::time::sleep(quiet).await;
    let pieces: Vec<&[u8]> = frame.chunks(1_000).collect();
    let last = pieces.len() - 1;
    for (i, piece) in pieces.iter().enumerate() {
        let message = if i == 0 {
            text_frame(*piece, false)
        } else {
            continuation(*piece, i == last)
        };
        ann.send_raw(message).await;
        if i == 0 {
            ann.send_raw(ping_frame(b"mid-message")).await;
        }
    }
    let (pong, before) = until_pong(ann.socket()).await;
    assert_eq!(pong, b"mid-message");
    let ack = match before.into_iter().find(|f| f["ref"] == "fragmented") {
        Some(ack) => ack,
        None => ann.reply_to("fragmented").await,
    };
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    assert_eq!(ack["data"]["message"]["body"], fragmented.as_str());
    let got = bob.next_event("chat:message").await;
    assert_eq!(got["message"]["body"], fragmented.as_str());

    tokio::time::sleep(quiet).await;
    assert_still_serving(&mut ann).await;
    let mut db = app.db().await;
    assert_eq!(db.seqs(thread).await, vec![1, 2]);
}

#[actix_web::test]
async fn a_ping_gets_a_pong_with_the_same_payload() {
    let app = spawn_app().await;
    let user = app.user(app.company().await).await;
    let mut client = app.connect(&user).await;

    for payload in [
        &b"hello-123"[..],
        &b""[..],
        &[0u8, 255, 7, 128][..],
        &[b'x'; 125][..],
    ] {
        client.send_raw(Message::Ping(payload.to_vec())).await;
        let (pong, texts) = until_pong(client.socket()).await;
        assert_eq!(pong, payload, "the pong must echo the ping's payload");
        assert!(texts.is_empty(), "unexpected frames: {texts:?}");
    }
}

#[actix_web::test]
async fn a_close_1000_is_echoed_with_1000_and_the_session_ends() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    app.group(&[&users[0], &users[1]]).await;
    let mut bob = app.connect(&users[1]).await;
    let mut ann = app.connect(&users[0]).await;
    let online = bob.next_event("chat:presence").await;
    assert_eq!(online, json!({"user_id": users[0].id, "online": true}));

    ann.send_raw(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await;
    let echoed = loop {
        match timeout(ARRIVAL, ann.socket().next()).await {
            Err(_) => panic!("no close frame within {ARRIVAL:?}"),
            Ok(None) | Ok(Some(Err(_))) => panic!("the connection ended without a close frame"),
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
        }
    };
    let code = echoed.map(|f| u16::from(f.code));
    assert_eq!(code, Some(1000), "the server must echo the close code");
    // After the handshake nothing more: the stream ends.
    match timeout(ARRIVAL, ann.socket().next()).await {
        Err(_) => panic!("the connection did not end after the closing handshake"),
        Ok(None) | Ok(Some(Err(_))) => {}
        Ok(Some(Ok(m))) => panic!("a frame after the closing handshake: {m:?}"),
    }
    // The server ended the session: the user went offline.
    let offline = bob.next_event("chat:presence").await;
    assert_eq!(offline, json!({"user_id": users[0].id, "online": false}));
}

// ---- protocol violations ---------------------------------------------------------

async fn closes_with(app: &TestApp, frames: Vec<Message>, code: u16, what: &str) {
    let user = app.user(app.company().await).await;
    let mut client = app.connect(&user).await;
    for frame in frames {
        client.send_raw(frame).await;
    }
    assert_eq!(
        client.ending().await,
        Ending::Closed(Some(code)),
        "{what} must close the connection with {code}"
    );
}

#[actix_web::test]
async fn a_continuation_without_a_started_message_closes_with_1002() {
    let app = spawn_app().await;
    closes_with(
        &app,
        vec![continuation(&br#"{"event":"ping"}"#[..], true)],
        1002,
        "a lone final continuation",
    )
    .await;
    closes_with(
        &app,
        vec![continuation(&br#"{"event":"#[..], false)],
        1002,
        "a lone non-final continuation",
    )
    .await;
}

#[actix_web::test]
async fn a_new_text_frame_while_a_fragmented_one_is_open_closes_with_1002() {
    let app = spawn_app().await;
    closes_with(
        &app,
        vec![
            text_frame(&br#"{"event":"#[..], false),
            text_frame(&br#"{"event":"ping"}"#[..], true),
        ],
        1002,
        "an unfragmented text frame inside a fragmented message",
    )
    .await;
    closes_with(
        &app,
        vec![
            text_frame(&br#"{"event":"#[..], false),
            text_frame(&br#""ping"}"#[..], false),
        ],
        1002,
        "a second first-fragment inside a fragmented message",
    )
    .await;
}

#[actix_web::test]
async fn a_frame_with_a_reserved_bit_set_closes_with_1002() {
    let app = spawn_app().await;
    for bit in ["rsv1", "rsv2", "rsv3"] {
        let mut frame = Frame::message(
            br#"{"event":"ping"}"#.to_vec(),
            OpCode::Data(Data::Text),
            true,
        );
        let header = frame.header_mut();
        match bit {
            "rsv1" => header.rsv1 = true,
            "rsv2" => header.rsv2 = true,
            _ => header.rsv3 = true,
        }
        closes_with(&app, vec![Message::Frame(frame)], 1002, bit).await;
    }
}

#[actix_web::test]
async fn a_fragmented_control_frame_closes_with_1002() {
    let app = spawn_app().await;
    let mut ping = Frame::ping(b"part".to_vec());
    ping.header_mut().is_final = false;
    closes_with(&app, vec![Message::Frame(ping)], 1002, "a ping without FIN").await;
}

#[actix_web::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let app = spawn_app().await;
    closes_with(
        &app,
        vec![text_frame(
            &b"{\"event\":\"ping\",\"ref\":\"\xff\xfe\"}"[..],
            true,
        )],
        1007,
        "a text frame with bytes that are never UTF-8",
    )
    .await;
    // Overlong encoding of '/' (0xC0 0xAF) and a UTF-16 surrogate (ED A0 80).
    closes_with(
        &app,
        vec![text_frame(&b"{\"ref\":\"\xc0\xaf\xed\xa0\x80\"}"[..], true)],
        1007,
        "a text frame with an overlong encoding and a surrogate",
    )
    .await;
}

#[actix_web::test]
async fn invalid_utf8_split_across_fragments_closes_with_1007() {
    let app = spawn_app().await;
    // The first fragment ends with the first two bytes of a three-byte
    // sequence (valid so far); the next starts with a non-continuation byte.
    closes_with(
        &app,
        vec![
            text_frame(&b"{\"event\":\"ping\",\"ref\":\"x\xe2\x82"[..], false),
            continuation(&b"A\"}"[..], true),
        ],
        1007,
        "a code point broken across fragments",
    )
    .await;
}

#[actix_web::test]
async fn a_binary_frame_is_a_bad_request_and_the_connection_stays_usable() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;

    let as_binary = json!({"event": "chat:send", "ref": "bin", "data": {
        "thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": "in binary"}})
    .to_string();
    ann.send_raw(Message::Binary(as_binary.into_bytes())).await;
    let error = ann
        .wait_for(
            |f| f["event"] == "chat:error",
            "chat:error for the binary frame",
        )
        .await;
    assert_eq!(error["data"]["code"], "bad_request", "{error}");

    // A fragmented binary message is refused the same way.
    ann.send_raw(Message::Frame(Frame::message(
        b"ab".to_vec(),
        OpCode::Data(Data::Binary),
        false,
    )))
    .await;
    ann.send_raw(continuation(&b"cd"[..], true)).await;
    let error = ann
        .wait_for(
            |f| f["event"] == "chat:error",
            "chat:error for the binary message",
        )
        .await;
    assert_eq!(error["data"]["code"], "bad_request", "{error}");

    assert_still_serving(&mut ann).await;
    let message = ann.send_message(thread, "in text").await;
    assert_eq!(
        message["seq"], 1,
        "the binary frame must not have been stored"
    );
    let got = bob.next_event("chat:message").await;
    assert_eq!(got["message"]["body"], "in text");
    bob.assert_no_event("chat:message").await;
}

// ---- chat:ready first ---------------------------------------------------------------

#[actix_web::test]
async fn while_messages_flow_a_new_session_gets_ready_first_then_every_later_seq_once_in_order() {
    let app = spawn_app_with(|s| {
        s.websocket.rate_limit_per_second = 10_000.0;
        s.websocket.rate_limit_burst = 10_000;
    })
    .await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let done = Cell::new(false);

    let sender = async {
        let mut sent = 0;
        while !done.get() {
            assert!(sent < 5_000, "the receiver never finished");
            ann_ws.send_message(thread, &format!("m{sent}")).await;
            sent += 1;
        }
        sent
    };
    let receiver = async {
        let mut readies = Vec::new();
        for _ in 0..6 {
            // connect() fails unless chat:ready is the very first frame.
            let mut bob_ws = app.connect(bob).await;
            let last_seq = bob_ws.ready_thread(thread)["last_seq"]
                .as_i64()
                .unwrap_or_else(|| panic!("no last_seq in {}", bob_ws.ready));
            readies.push(last_seq);
            for expected in last_seq + 1..=last_seq + 5 {
                let got = bob_ws.next_event("chat:message").await;
                assert_eq!(
                    got["message"]["seq"], expected,
                    "after chat:ready at last_seq {last_seq}, seqs must follow it in order, \
                     without repeats or gaps: {got}"
                );
            }
            // Dropped without a closing handshake, which the server only
            // completes about a second later.
            drop(bob_ws);
        }
        done.set(true);
        readies
    };
    let (sent, readies) = tokio::join!(sender, receiver);
    // The sessions really did connect while messages were being committed.
    assert!(
        readies.windows(2).all(|w| w[0] < w[1]),
        "ready's last_seq must grow between connects: {readies:?}"
    );
    assert!(sent >= 30, "only {sent} messages were sent");
}
