//! The limits a session lives under: frame size (1009), the rate limit,
//! the heartbeat, the outbound bound (4008) and the graceful shutdown
//! (1001).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

use crate::support::raw::{drain, raw_frames_until_end, Drained};
use crate::support::ws::{Ending, ARRIVAL};
use crate::support::{spawn_app_with, TestApp, TestUser, WsClient};

// ---- helpers ----------------------------------------------------------------

/// A chat:send frame whose serialized form is exactly `len` bytes.
fn send_frame_of_len(thread: Uuid, client_msg_id: Uuid, reference: &str, len: usize) -> String {
    let frame = |body: &str| {
        json!({"event": "chat:send", "ref": reference,
               "data": {"thread_id": thread, "client_msg_id": client_msg_id, "body": body}})
        .to_string()
    };
    let base = frame("").len();
    assert!(len > base, "a frame of {len} bytes cannot hold a body");
    let text = frame(&"x".repeat(len - base));
    assert_eq!(text.len(), len);
    text
}

async fn rows_with(app: &TestApp, client_msg_id: Uuid) -> i64 {
    let mut db = app.db().await;
    db.count(&format!(
        "SELECT count(*) FROM messages WHERE client_msg_id = '{client_msg_id}'"
    ))
    .await
}

async fn assert_still_serving(client: &mut WsClient) {
    let reply = client.request("ping", json!({})).await;
    assert_eq!(
        reply["event"], "pong",
        "the session stopped serving: {reply}"
    );
}

fn addr_of(app: &TestApp) -> SocketAddr {
    app.base
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("the app's address {}: {e}", app.base))
}

/// Reads a live socket for `period`: fails if it closes; returns what came.
async fn listen_for<S>(socket: &mut WebSocketStream<S>, period: Duration) -> Drained
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut heard = Drained::default();
    let deadline = Instant::now() + period;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, socket.next()).await {
            Err(_) => return heard,
            Ok(None) | Ok(Some(Err(_))) => {
                panic!("the connection ended after {heard:?}")
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                panic!("the server closed the connection ({frame:?}) after {heard:?}")
            }
            Ok(Some(Ok(Message::Text(text)))) => heard.texts.push(
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("server sent non-JSON {text}: {e}")),
            ),
            Ok(Some(Ok(Message::Ping(_)))) => heard.pings += 1,
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn seq_of(frame: &Value) -> i64 {
    frame["data"]["message"]["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("no message seq in {frame}"))
}

// ---- frame size ---------------------------------------------------------------------

#[actix_web::test]
async fn a_frame_over_max_frame_bytes_closes_with_1009_and_one_at_the_limit_is_fine() {
    let app = spawn_app_with(|s| s.websocket.max_frame_bytes = 1024).await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut bob = app.connect(&users[1]).await;
    let mut ann = app.connect(&users[0]).await;

    let fits = Uuid::new_v4();
    ann.send_text(send_frame_of_len(thread, fits, "fits", 1024))
        .await;
    let ack = ann.reply_to("fits").await;
    assert_eq!(
        ack["event"], "chat:ack",
        "a 1024-byte frame must be taken: {ack}"
    );
    assert_eq!(bob.next_event("chat:message").await["message"]["seq"], 1);

    let too_big = Uuid::new_v4();
    ann.send_text(send_frame_of_len(thread, too_big, "too-big", 1025))
        .await;
    assert_eq!(ann.ending().await, Ending::Closed(Some(1009)));
    bob.assert_no_event("chat:message").await;
    assert_eq!(rows_with(&app, fits).await, 1);
    assert_eq!(rows_with(&app, too_big).await, 0);
}

#[actix_web::test]
async fn a_fragmented_message_whose_total_passes_the_limit_closes_with_1009() {
    let app = spawn_app_with(|s| s.websocket.max_frame_bytes = 1024).await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut bob = app.connect(&users[1]).await;

    // In fragments, a message of exactly the limit is fine...
    let mut ann = app.connect(&users[0]).await;
    let fits = Uuid::new_v4();
    let text = send_frame_of_len(thread, fits, "fits", 1024).into_bytes();
    for (i, part) in text.chunks(400).enumerate() {
        let is_final = (i + 1) * 400 >= text.len();
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        ann.send_raw(Message::Frame(Frame::message(
            part.to_vec(),
            OpCode::Data(opcode),
            is_final,
        )))
        .await;
    }
    let ack = ann.reply_to("fits").await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    assert_eq!(bob.next_event("chat:message").await["message"]["seq"], 1);

    // ... and one byte more closes, though every fragment is small.
    let too_big = Uuid::new_v4();
    let text = send_frame_of_len(thread, too_big, "too-big", 1025).into_bytes();
    let parts: Vec<&[u8]> = text.chunks(400).collect();
    assert_eq!(parts.len(), 3);
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        ann.send_raw(Message::Frame(Frame::message(
            part.to_vec(),
            OpCode::Data(opcode),
            i == 2,
        )))
        .await;
    }
    assert_eq!(ann.ending().await, Ending::Closed(Some(1009)));
    bob.assert_no_event("chat:message").await;
    assert_eq!(rows_with(&app, too_big).await, 0);
}

// ---- rate limit ------------------------------------------------------------------------

async fn rate_limited_app() -> TestApp {
    spawn_app_with(|s| {
        s.websocket.rate_limit_burst = 3;
        s.websocket.rate_limit_per_second = 0.001;
    })
    .await
}

#[actix_web::test]
async fn the_send_past_the_burst_is_rate_limited_with_its_ref_and_not_persisted() {
    let app = rate_limited_app().await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;
    let mut bob = app.connect(&users[1]).await;

    for i in 1..=3 {
        let message = ann.send_message(thread, &format!("within burst {i}")).await;
        assert_eq!(message["seq"], i);
        assert_eq!(bob.next_event("chat:message").await["message"]["seq"], i);
    }
    let fourth = Uuid::new_v4();
    let reply = ann
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": fourth, "body": "one too many"}),
        )
        .await;
    assert_eq!(reply["event"], "chat:error", "{reply}");
    assert_eq!(reply["data"]["code"], "rate_limited", "{reply}");

    bob.assert_no_event("chat:message").await;
    assert_eq!(rows_with(&app, fourth).await, 0);
    let mut db = app.db().await;
    assert_eq!(db.seqs(thread).await, vec![1, 2, 3]);
    // Limited, not closed: other requests are still answered.
    assert_still_serving(&mut ann).await;
}

#[actix_web::test]
async fn typing_events_count_against_the_same_rate_limit() {
    let app = rate_limited_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob, carl]).await;
    let mut bob_ws = app.connect(bob).await;

    // Typing uses up ann's bucket; then her send is refused.
    let mut ann_ws = app.connect(ann).await;
    for (event, typing) in [
        ("chat:typing-start", true),
        ("chat:typing-stop", false),
        ("chat:typing-start", true),
    ] {
        let reply = ann_ws.request(event, json!({"thread_id": thread})).await;
        assert_eq!(reply["event"], "chat:ack", "{event}: {reply}");
        let seen = bob_ws.next_event("chat:typing").await;
        assert_eq!(seen["typing"], typing, "{seen}");
    }
    let refused = Uuid::new_v4();
    let reply = ann_ws
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": refused, "body": "no tokens left"}),
        )
        .await;
    assert_eq!(reply["event"], "chat:error", "{reply}");
    assert_eq!(reply["data"]["code"], "rate_limited", "{reply}");
    assert_eq!(rows_with(&app, refused).await, 0);
    bob_ws.assert_no_event("chat:message").await;

    // Sends use up carl's bucket; then his typing is refused, not broadcast.
    let mut carl_ws = app.connect(carl).await;
    for i in 0..3 {
        carl_ws.send_message(thread, &format!("m{i}")).await;
    }
    let reply = carl_ws
        .request("chat:typing-start", json!({"thread_id": thread}))
        .await;
    assert_eq!(reply["event"], "chat:error", "{reply}");
    assert_eq!(reply["data"]["code"], "rate_limited", "{reply}");
    bob_ws
        .assert_none(
            |f| f["event"] == "chat:typing" && f["data"]["user_id"] == carl.id.to_string(),
            "a typing event from carl",
        )
        .await;
    assert_still_serving(&mut carl_ws).await;
}

// ---- heartbeat ------------------------------------------------------------------------------

#[actix_web::test]
async fn a_silent_client_is_closed_with_1001_and_goes_offline_while_one_answering_pings_stays() {
    let app = spawn_app_with(|s| {
        s.websocket.heartbeat_interval_ms = 100;
        s.websocket.client_timeout_ms = 500;
    })
    .await;
    let users = app.users(2).await;
    let (silent, lively) = (&users[0], &users[1]);
    let thread = app.group(&[silent, lively]).await;
    let mut lively_ws = app.connect(lively).await;
    // connect() reads up to chat:ready; from here on nobody reads this
    // socket, so it neither answers pings nor sends anything.
    let mut silent_ws = app.connect(silent).await;
    let started = Instant::now();

    // The lively client reads (tungstenite answers pings while reading)
    // for three client timeouts and must stay connected throughout.
    let heard = listen_for(lively_ws.socket(), Duration::from_millis(1500)).await;
    assert!(
        heard.pings >= 5,
        "the server must ping every 100 ms; heard {} pings in {:?}",
        heard.pings,
        started.elapsed()
    );
    let presence: Vec<&Value> = heard
        .texts
        .iter()
        .filter(|f| f["event"] == "chat:presence")
        .collect();
    assert_eq!(
        presence,
        vec![
            &json!({"event": "chat:presence",
                     "data": {"user_id": silent.id, "online": true}}),
            &json!({"event": "chat:presence",
                     "data": {"user_id": silent.id, "online": false}})
        ],
        "the silent user must come online and then go offline"
    );
    assert_still_serving(&mut lively_ws).await;

    let drained = raw_frames_until_end(silent_ws.socket().get_mut()).await;
    assert_eq!(
        drained.close,
        Some(1001),
        "a heartbeat timeout closes with 1001; got {drained:?}"
    );
    let members = app
        .get(&format!("/api/threads/{thread}/members"), &lively.token)
        .await;
    let silent_member = members.body["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["user_id"] == silent.id.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("no silent member in {members:?}"));
    assert_eq!(silent_member["online"], false, "{members:?}");
}

// ---- slow consumer ---------------------------------------------------------------------------

/// A WebSocket whose TCP receive window is tiny, so that a few unread
/// frames fill the path between the server and it.
async fn narrow_socket(app: &TestApp, user: &TestUser) -> WebSocketStream<TcpStream> {
    let socket = TcpSocket::new_v4().expect("a TCP socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let stream = socket
        .connect(addr_of(app))
        .await
        .expect("connect to the app");
    let request = format!("{}?token={}", app.ws_url, user.token)
        .into_client_request()
        .expect("a client request");
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the upgrade");
    ws
}

#[actix_web::test]
async fn a_session_that_stops_reading_is_closed_with_4008_and_catches_up_with_sync() {
    let app = spawn_app_with(|s| {
        s.websocket.max_frame_bytes = 48 * 1024;
        s.websocket.max_outbound_bytes = 64 * 1024;
        s.websocket.rate_limit_per_second = 10_000.0;
        s.websocket.rate_limit_burst = 10_000;
    })
    .await;
    let users = app.users(3).await;
    let (ann, slow, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, slow, carl]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut carl_ws = app.connect(carl).await;
    let mut slow_ws = narrow_socket(&app, slow).await;
    let first = loop {
        match timeout(ARRIVAL, slow_ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => break text,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no chat:ready for the slow session: {other:?}"),
        }
    };
    assert!(first.contains("\"chat:ready\""), "first frame: {first}");
    // From here on the slow session reads nothing.

    // 8000 four-byte characters: 32 KB per frame fill the buffers quickly.
    let body = "😀".repeat(8000);
    let mut expected_seq = 1;
    let mut evicted = false;
    while !evicted {
        assert!(
            expected_seq <= 2000,
            "2000 messages of 32 KB and the unread session was never closed"
        );
        let message = ann_ws.send_message(thread, &body).await;
        let seq = message["seq"].as_i64().unwrap_or_default();
        // Carl reads everything as it comes, in order, and sees the slow
        // user go offline when the server drops the session.
        while expected_seq <= seq {
            let frame = carl_ws.next_frame().await;
            match frame["event"].as_str() {
                Some("chat:message") => {
                    assert_eq!(seq_of(&frame), expected_seq, "carl's messages out of order");
                    expected_seq += 1;
                }
                Some("chat:presence") if frame["data"]["online"] == true => {}
                Some("chat:presence") => {
                    assert_eq!(
                        frame["data"],
                        json!({"user_id": slow.id, "online": false}),
                        "{frame}"
                    );
                    evicted = true;
                }
                _ => panic!("unexpected frame for carl: {frame}"),
            }
        }
    }
    let last_before = expected_seq - 1;
    // The server no longer counts the slow session.
    let stats = app.get("/admin/stats", &app.admin_token).await;
    assert_eq!(stats.status, 200, "{stats:?}");
    assert_eq!(stats.body["sessions"], 2, "{stats:?}");
    assert_eq!(stats.body["users_online"], 2, "{stats:?}");

    // Others go on as before.
    let after = ann_ws.send_message(thread, "after the slow one left").await;
    let got = carl_ws.next_event("chat:message").await;
    assert_eq!(got["message"], after);
    let total = after["seq"].as_i64().unwrap_or_default();
    assert_eq!(total, last_before + 1);

    // What the slow session still finds in its socket: messages in order
    // from seq 1 without gaps, then a close frame with 4008.
    let drained = raw_frames_until_end(slow_ws.get_mut()).await;
    let seqs: Vec<i64> = drained
        .texts
        .iter()
        .map(|f| {
            assert_eq!(f["event"], "chat:message", "{f}");
            seq_of(f)
        })
        .collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "the frames before the close are in order");
    assert!(
        (seqs.len() as i64) < total,
        "the slow session cannot have received everything"
    );
    assert_eq!(
        drained.close,
        Some(4008),
        "after the frames it had queued, a slow consumer gets a close frame with 4008"
    );

    // It reconnects and catches up with chat:sync.
    let mut back = app.connect(slow).await;
    assert_eq!(back.ready_thread(thread)["last_seq"], total);
    let mut after_seq = seqs.len() as i64;
    loop {
        // One 32 KB message per page keeps each reply under the bound.
        let page = back
            .request(
                "chat:sync",
                json!({"thread_id": thread, "after_seq": after_seq, "limit": 1}),
            )
            .await;
        assert_eq!(page["event"], "chat:ack", "{page}");
        let messages = page["data"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for m in &messages {
            assert_eq!(m["seq"], after_seq + 1, "{m}");
            after_seq += 1;
        }
        if page["data"]["has_more"] != true {
            break;
        }
    }
    assert_eq!(after_seq, total, "chat:sync returned everything missed");
}

// ---- graceful shutdown ---------------------------------------------------------------------

#[actix_web::test]
async fn shutdown_acks_sends_in_flight_then_closes_sessions_with_1001_and_refuses_new_ones() {
    let app = spawn_app_with(|s| s.shutdown.drain_timeout_ms = 5000).await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut bob = app.connect(&users[1]).await;
    let mut ann = app.connect(&users[0]).await;

    // Five sends, then an app-level ping: when its pong comes, the server
    // has read all five (frames are handled in order), and some are still
    // waiting for their commit.
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        ann.send_text(
            json!({"event": "chat:send", "ref": format!("s{i}"),
                   "data": {"thread_id": thread, "client_msg_id": id, "body": format!("m{i}")}})
            .to_string(),
        )
        .await;
    }
    let pong = ann.request("ping", json!({})).await;
    assert_eq!(pong["event"], "pong");

    let (_, ann_end, bob_end) =
        tokio::join!(app.shutdown(), drain(ann.socket()), drain(bob.socket()));
    assert_eq!(ann_end.close, Some(1001), "{ann_end:?}");
    assert_eq!(bob_end.close, Some(1001), "{bob_end:?}");
    for (i, id) in ids.iter().enumerate() {
        let reference = format!("s{i}");
        let ack = match ann_end
            .texts
            .iter()
            .find(|f| f["ref"] == reference.as_str())
        {
            Some(ack) => ack.clone(),
            // An ack that came before the pong is among the pending frames.
            None => ann.reply_to(&reference).await,
        };
        assert_eq!(ack["event"], "chat:ack", "{ack}");
        assert_eq!(ack["data"]["message"]["client_msg_id"], id.to_string());
    }
    let mut db = app.db().await;
    for id in &ids {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM messages WHERE client_msg_id = '{id}'"
            ))
            .await,
            1,
            "a send read before the shutdown must be committed"
        );
    }
    assert_eq!(db.seqs(thread).await, vec![1, 2, 3, 4, 5]);

    let refused = timeout(ARRIVAL, WsClient::open(&app.ws_url, &users[0].token)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a new connection after shutdown must be refused"
    );
}
