//! The promises under real faults: a database that goes away (between
//! requests and in the middle of writes), a crash (SIGKILL), a graceful
//! shutdown (SIGTERM), a consumer that stops reading, and a connection
//! that goes half-open.
//!
//! The database outages put our own TCP proxy (support/proxy.rs) between
//! confab and Postgres; the crash, the shutdown and the memory test run the
//! real binary as a child process (support/child.rs).
//!
//! Each test prints the figures it saw (`cargo test --test api faults:: --
//! --nocapture`): outage length, messages acked at the kill, and so on.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

use crate::support::child::{ChildConfig, ChildServer};
use crate::support::proxy::Proxy;
use crate::support::raw::{drain, raw_frames_until_end_within};
use crate::support::ws::{Ending, ARRIVAL};
use crate::support::{spawn_app_with, uuid, TestApp, TestUser, WsClient};

// ---- helpers ------------------------------------------------------------------

fn postgres_addr() -> SocketAddr {
    let url = url::Url::parse(crate::support::PG_SERVER).expect("PG_SERVER is a URL");
    let host = url.host_str().expect("PG_SERVER names a host");
    let port = url.port().unwrap_or(5432);
    format!("{host}:{port}")
        .parse()
        .expect("PG_SERVER is an IP address and port")
}

/// An app whose every database connection goes through `proxy`, and whose
/// database requests give up after 500 ms.
async fn app_behind(proxy: &Proxy) -> TestApp {
    spawn_app_with(|s| {
        let name = confab::config::database_name(&s.database_url)
            .expect("the harness names the app's database");
        s.database_url = proxy.postgres_url(&name);
        s.db_timeout_ms = 500;
        s.websocket.rate_limit_per_second = 10_000.0;
        s.websocket.rate_limit_burst = 10_000;
    })
    .await
}

fn send_frame(thread: Uuid, client_msg_id: Uuid, reference: &str, body: &str) -> String {
    json!({"event": "chat:send", "ref": reference,
           "data": {"thread_id": thread, "client_msg_id": client_msg_id, "body": body}})
    .to_string()
}

fn error_code(frame: &Value) -> &str {
    frame["data"]["code"].as_str().unwrap_or("<no code>")
}

fn seq_in(frame: &Value) -> i64 {
    frame["data"]["message"]["seq"]
        .as_i64()
        .unwrap_or_else(|| panic!("no message seq in {frame}"))
}

/// A message row as the database has it.
#[derive(QueryableByName, Debug, Clone, PartialEq)]
struct Row {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    sender_id: String,
    #[diesel(sql_type = Text)]
    client_msg_id: String,
}

/// Every message of the thread, by seq.
async fn thread_rows(db_url: &str, thread: Uuid) -> Vec<Row> {
    let mut conn = AsyncPgConnection::establish(db_url)
        .await
        .expect("connect to the test database");
    diesel::sql_query(format!(
        "SELECT seq, sender_id::text AS sender_id, client_msg_id::text AS client_msg_id
         FROM messages WHERE thread_id = '{thread}' ORDER BY seq"
    ))
    .load(&mut conn)
    .await
    .expect("the thread's messages")
}

/// The database's promises, whatever happened: seqs 1..=n without a gap,
/// one row per (sender, client_msg_id). Returns the rows by client_msg_id.
fn assert_gapless_and_unique(rows: &[Row]) -> HashMap<String, Row> {
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let expected: Vec<i64> = (1..=rows.len() as i64).collect();
    assert_eq!(seqs, expected, "seqs must be 1..=n without gaps");
    let mut by_id = HashMap::new();
    for row in rows {
        let key = (row.sender_id.clone(), row.client_msg_id.clone());
        assert!(
            !by_id.contains_key(&row.client_msg_id),
            "a duplicate of (sender, client_msg_id) {key:?}"
        );
        by_id.insert(row.client_msg_id.clone(), row.clone());
    }
    by_id
}

/// The whole thread by chat:sync, page after page.
async fn sync_all(client: &mut WsClient, thread: Uuid, limit: u32) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut after_seq = 0;
    loop {
        let page = client
            .request(
                "chat:sync",
                json!({"thread_id": thread, "after_seq": after_seq, "limit": limit}),
            )
            .await;
        assert_eq!(page["event"], "chat:ack", "{page}");
        let batch = page["data"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for message in batch {
            assert_eq!(
                message["seq"],
                after_seq + 1,
                "sync must be gapless: {message}"
            );
            after_seq += 1;
            messages.push(message);
        }
        if page["data"]["has_more"] != true {
            return messages;
        }
    }
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

// ---- raw sockets, for sessions that must outlive their server -----------------

type Socket = crate::support::ws::Socket;

/// Sends a text frame; false if the connection is gone.
async fn send_raw(socket: &mut Socket, text: String) -> bool {
    socket.send(Message::Text(text)).await.is_ok()
}

/// The reply carrying `reference`; None if the connection ends first.
/// Other frames are dropped.
async fn reply_raw(socket: &mut Socket, reference: &str) -> Option<Value> {
    loop {
        match timeout(ARRIVAL, socket.next()).await {
            Err(_) => panic!("no reply to {reference} within {ARRIVAL:?}"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("server sent non-JSON {text}: {e}"));
                if frame["ref"] == reference {
                    return Some(frame);
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

// ---- a. database outage between requests ----------------------------------------

#[actix_web::test]
async fn a_database_outage_between_requests_is_unavailable_everywhere_and_heals_without_a_restart()
{
    let proxy = Proxy::start(postgres_addr());
    let app = app_behind(&proxy).await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let before = ann_ws.send_message(thread, "before the outage").await;
    assert_eq!(bob_ws.next_event("chat:message").await["message"], before);

    proxy.cut().await;
    let outage = Instant::now();

    // chat:send: unavailable, and nothing reaches the other member.
    let retried = Uuid::new_v4();
    let data = json!({"thread_id": thread, "client_msg_id": retried, "body": "during"});
    let reply = ann_ws.request("chat:send", data.clone()).await;
    assert_eq!(reply["event"], "chat:error", "{reply}");
    assert_eq!(error_code(&reply), "unavailable", "{reply}");
    bob_ws.assert_no_event("chat:message").await;

    // HTTP: 503 with the contract's body, for readiness, users and admins.
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.error_code(), "unavailable", "{ready:?}");
    let page = app
        .get(&format!("/api/threads/{thread}/messages"), &ann.token)
        .await;
    assert_eq!(page.status, 503, "{page:?}");
    assert_eq!(page.error_code(), "unavailable", "{page:?}");
    let company = app
        .admin_post("/admin/companies", json!({"name": "During"}))
        .await;
    assert_eq!(company.status, 503, "{company:?}");
    assert_eq!(company.error_code(), "unavailable", "{company:?}");
    // A new session needs the database to start: refused before the upgrade.
    match WsClient::open(&app.ws_url, &bob.token).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 503),
        Err(other) => panic!("a new session during the outage: {other}"),
        Ok(_) => panic!("a new session cannot start without the database"),
    }

    // The open sessions stay connected and keep answering.
    for ws in [&mut ann_ws, &mut bob_ws] {
        let pong = ws.request("ping", json!({})).await;
        assert_eq!(pong["event"], "pong", "{pong}");
    }
    assert!(
        proxy.refused() > 0,
        "the server must have tried to reach the database through the proxy"
    );
    let mut db = app.db().await;
    assert_eq!(db.seqs(thread).await, vec![1], "nothing was written");

    proxy.restore();
    let outage = outage.elapsed();

    // Back: everything works, without a restart.
    let ready = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let reply = ann_ws.request("chat:send", data.clone()).await;
    assert_eq!(reply["event"], "chat:ack", "the retry must land: {reply}");
    let landed = reply["data"]["message"].clone();
    assert_eq!(landed["seq"], 2, "{landed}");
    assert_eq!(landed["client_msg_id"], retried.to_string());
    assert_eq!(bob_ws.next_event("chat:message").await["message"], landed);
    // Retried once more: the same message, and no second broadcast.
    let again = ann_ws.request("chat:send", data).await;
    assert_eq!(again["event"], "chat:ack", "{again}");
    assert_eq!(again["data"]["message"], landed);
    bob_ws.assert_no_event("chat:message").await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE client_msg_id = '{retried}'"
        ))
        .await,
        1
    );
    let page = app
        .get(&format!("/api/threads/{thread}/messages"), &ann.token)
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    let after = ann_ws.send_message(thread, "after the outage").await;
    assert_eq!(after["seq"], 3);
    assert_eq!(bob_ws.next_event("chat:message").await["message"], after);
    assert_eq!(db.seqs(thread).await, vec![1, 2, 3]);
    eprintln!(
        "outage between requests: {outage:?} down, {} connection attempts refused",
        proxy.refused()
    );
}

// ---- b. database outage in the middle of writes ---------------------------------

#[actix_web::test]
async fn a_database_outage_in_the_middle_of_a_burst_loses_nothing_acked_and_duplicates_nothing() {
    const BURST: usize = 40;
    let proxy = Proxy::start(postgres_addr());
    let app = app_behind(&proxy).await;
    let users = app.users(3).await;
    let (ann, carl, bob) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, carl, bob]).await;
    let mut bob_ws = app.connect(bob).await;
    let mut senders: Vec<(&TestUser, WsClient)> = vec![
        (ann, app.connect(ann).await),
        (carl, app.connect(carl).await),
    ];

    // Both senders put their whole burst on the wire at once.
    let mut burst: Vec<Vec<(String, Uuid)>> = Vec::new();
    for (_, ws) in senders.iter_mut() {
        let mut sent = Vec::new();
        for k in 0..BURST {
            let (reference, cmid) = (format!("b{k}"), Uuid::new_v4());
            ws.send_text(send_frame(thread, cmid, &reference, &format!("burst {k}")))
                .await;
            sent.push((reference, cmid));
        }
        burst.push(sent);
    }
    // The first acks come, and the database goes away under the rest.
    const ACKED_FIRST: usize = 5;
    let mut first = HashMap::new();
    for (reference, _) in &burst[0][..ACKED_FIRST] {
        let reply = senders[0].1.reply_to(reference).await;
        assert_eq!(reply["event"], "chat:ack", "{reply}");
        first.insert(reference.clone(), reply);
    }
    proxy.cut().await;
    let outage = Instant::now();

    // Every send gets exactly one reply: an ack, or unavailable.
    let mut acked: HashMap<Uuid, i64> = HashMap::new();
    let mut unacked: Vec<Vec<Uuid>> = vec![Vec::new(), Vec::new()];
    for (i, (_, ws)) in senders.iter_mut().enumerate() {
        for (reference, cmid) in &burst[i] {
            let reply = match first.get(reference) {
                Some(reply) if i == 0 => reply.clone(),
                _ => ws.reply_to(reference).await,
            };
            match reply["event"].as_str() {
                Some("chat:ack") => {
                    assert_eq!(
                        reply["data"]["message"]["client_msg_id"],
                        cmid.to_string(),
                        "{reply}"
                    );
                    acked.insert(*cmid, seq_in(&reply));
                }
                Some("chat:error") => {
                    assert_eq!(error_code(&reply), "unavailable", "{reply}");
                    unacked[i].push(*cmid);
                }
                _ => panic!("a send must be answered with an ack or an error: {reply}"),
            }
        }
        let refs: HashSet<String> = burst[i].iter().map(|(r, _)| r.clone()).collect();
        ws.assert_none(
            |f| f["ref"].as_str().is_some_and(|r| refs.contains(r)),
            "a second reply to a send",
        )
        .await;
    }
    let unacked_total = unacked.iter().map(Vec::len).sum::<usize>();
    assert!(
        unacked_total > 0,
        "the cut must fall in the middle of the burst (all {} were acked)",
        2 * BURST
    );
    // What the database holds of the unacked ones: commits whose answer
    // the cut lost. They must not come back as a second row.
    let during = thread_rows(&app.db_url, thread).await;
    let during_ids = assert_gapless_and_unique(&during);
    for (cmid, seq) in &acked {
        let row = during_ids
            .get(&cmid.to_string())
            .unwrap_or_else(|| panic!("acked {cmid} (seq {seq}) is not in the database"));
        assert_eq!(row.seq, *seq, "acked {cmid}");
    }
    let committed_unacked = unacked
        .iter()
        .flatten()
        .filter(|cmid| during_ids.contains_key(&cmid.to_string()))
        .count();

    proxy.restore();
    let outage = outage.elapsed();

    // Every send that was not acked is retried with its client_msg_id.
    for (i, (_, ws)) in senders.iter_mut().enumerate() {
        for (k, cmid) in unacked[i].iter().enumerate() {
            let reference = format!("retry{k}");
            ws.send_text(send_frame(thread, *cmid, &reference, "retried"))
                .await;
            let reply = ws.reply_to(&reference).await;
            assert_eq!(reply["event"], "chat:ack", "the retry must land: {reply}");
            assert_eq!(
                reply["data"]["message"]["client_msg_id"],
                cmid.to_string(),
                "{reply}"
            );
            if let Some(row) = during_ids.get(&cmid.to_string()) {
                assert_eq!(
                    seq_in(&reply),
                    row.seq,
                    "a commit whose ack was lost keeps its seq"
                );
            }
            acked.insert(*cmid, seq_in(&reply));
        }
    }
    let marker = senders[0].1.send_message(thread, "the last one").await;
    let total = 2 * BURST as i64 + 1;
    assert_eq!(marker["seq"], total);

    let rows = thread_rows(&app.db_url, thread).await;
    let by_id = assert_gapless_and_unique(&rows);
    assert_eq!(rows.len() as i64, total);
    for (cmid, seq) in &acked {
        let row = by_id
            .get(&cmid.to_string())
            .unwrap_or_else(|| panic!("acked {cmid} is not in the database"));
        assert_eq!(
            row.seq, *seq,
            "{cmid} is in the database under its acked seq"
        );
    }
    for (i, (sender, _)) in senders.iter().enumerate() {
        for (_, cmid) in &burst[i] {
            assert_eq!(by_id[&cmid.to_string()].sender_id, sender.id.to_string());
        }
    }

    // The other member: live messages in strictly increasing seq, each the
    // database's row at its seq; the final chat:sync fills what was never
    // broadcast (commits whose answer the cut lost), once each.
    let mut live: Vec<Value> = Vec::new();
    loop {
        let message = bob_ws.next_event("chat:message").await["message"].clone();
        let seq = message["seq"].as_i64().unwrap_or_default();
        if let Some(last) = live.last() {
            assert!(
                seq > last["seq"].as_i64().unwrap_or_default(),
                "live messages out of order or repeated: {seq} after {last}"
            );
        }
        let row = &rows[usize::try_from(seq - 1).expect("a positive seq")];
        assert_eq!(message["client_msg_id"], row.client_msg_id.as_str());
        live.push(message);
        if seq == total {
            break;
        }
    }
    bob_ws.assert_no_event("chat:message").await;
    let synced = sync_all(&mut bob_ws, thread, 500).await;
    assert_eq!(synced.len() as i64, total);
    for (message, row) in synced.iter().zip(&rows) {
        assert_eq!(message["seq"], row.seq);
        assert_eq!(message["client_msg_id"], row.client_msg_id.as_str());
    }
    for message in &live {
        let seq = usize::try_from(message["seq"].as_i64().unwrap_or_default() - 1)
            .expect("a positive seq");
        assert_eq!(message, &synced[seq], "live and synced copies differ");
    }
    eprintln!(
        "outage mid-burst: {outage:?} down; {} sends: {} acked before the cut, {unacked_total} \
         unavailable ({committed_unacked} of them committed anyway), {} seen live by the \
         other member, {} only through chat:sync",
        2 * BURST,
        2 * BURST - unacked_total,
        live.len(),
        total as usize - live.len()
    );
}

// ---- c. crash -------------------------------------------------------------------

/// What one loaded session did: every client_msg_id it sent, the acks it
/// got, and the read cursor the server acked last.
#[derive(Debug, Default)]
struct Load {
    user: usize,
    sent: Vec<Uuid>,
    acked: Vec<(Uuid, i64)>,
    read_acked: i64,
}

/// Sends as fast as acks come, and every fifth ack marks the thread read up
/// to it, until the connection ends.
async fn load_session(
    mut ws: WsClient,
    user: usize,
    thread: Uuid,
    progress: &watch::Sender<usize>,
) -> Load {
    let mut load = Load {
        user,
        ..Load::default()
    };
    let socket = ws.socket();
    for k in 0.. {
        let (reference, cmid) = (format!("s{k}"), Uuid::new_v4());
        load.sent.push(cmid);
        if !send_raw(
            socket,
            send_frame(thread, cmid, &reference, &format!("load {k}")),
        )
        .await
        {
            break;
        }
        let Some(reply) = reply_raw(socket, &reference).await else {
            break;
        };
        assert_eq!(
            reply["event"], "chat:ack",
            "under load, before the kill: {reply}"
        );
        let seq = seq_in(&reply);
        load.acked.push((cmid, seq));
        progress.send_modify(|n| *n += 1);
        if load.acked.len().is_multiple_of(5) {
            let reference = format!("r{k}");
            let frame = json!({"event": "chat:mark-read", "ref": reference,
                               "data": {"thread_id": thread, "up_to_seq": seq}});
            if !send_raw(socket, frame.to_string()).await {
                break;
            }
            let Some(reply) = reply_raw(socket, &reference).await else {
                break;
            };
            assert_eq!(reply["event"], "chat:ack", "{reply}");
            let read = reply["data"]["last_read_seq"].as_i64().unwrap_or_default();
            assert!(read >= seq, "marked read up to {seq}, acked {reply}");
            load.read_acked = load.read_acked.max(read);
        }
    }
    load
}

#[actix_web::test]
async fn after_a_sigkill_under_load_every_acked_message_is_there_once_and_resends_duplicate_nothing(
) {
    const USERS: usize = 5;
    const SESSIONS_PER_USER: usize = 2;
    const KILL_AFTER_ACKS: usize = 300;
    let config = ChildConfig::new(&[
        ("CONFAB_RATE_LIMIT_PER_SECOND", "100000"),
        ("CONFAB_RATE_LIMIT_BURST", "100000"),
    ]);
    let mut server = config.start().await;
    let users = server.users(USERS).await;
    let members: Vec<&TestUser> = users.iter().collect();
    let thread = server.group(&members).await;

    let (progress, mut acks) = watch::channel(0usize);
    let mut sessions = Vec::new();
    for (i, user) in users.iter().enumerate() {
        for _ in 0..SESSIONS_PER_USER {
            sessions.push((i, server.connect(user).await));
        }
    }
    let loads = futures_util::future::join_all(
        sessions
            .into_iter()
            .map(|(i, ws)| load_session(ws, i, thread, &progress)),
    );
    let kill = async {
        acks.wait_for(|n| *n >= KILL_AFTER_ACKS)
            .await
            .expect("the load reports progress");
        let at_kill = *acks.borrow();
        let status = server.process.kill().await;
        (at_kill, status)
    };
    let (loads, (acked_at_kill, status)) = tokio::join!(loads, kill);
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    let sent: usize = loads.iter().map(|l| l.sent.len()).sum();
    let acked: HashMap<Uuid, (usize, i64)> = loads
        .iter()
        .flat_map(|l| l.acked.iter().map(|(cmid, seq)| (*cmid, (l.user, *seq))))
        .collect();
    let mut read_acked = [0i64; USERS];
    for load in &loads {
        read_acked[load.user] = read_acked[load.user].max(load.read_acked);
    }

    // The same database, a new process.
    let server = config.start().await;
    let after_restart = thread_rows(&config.db.url, thread).await;
    let before_resend = assert_gapless_and_unique(&after_restart);
    for (cmid, (_, seq)) in &acked {
        let row = before_resend
            .get(&cmid.to_string())
            .unwrap_or_else(|| panic!("acked {cmid} (seq {seq}) was lost in the crash"));
        assert_eq!(row.seq, *seq, "acked {cmid} changed seq");
    }
    let committed_unacked = after_restart.len() - acked.len();

    // Cursors never went backwards: what the server acked is what it has.
    let mut db = config.db.connect().await;
    let last_seq = db
        .count(&format!(
            "SELECT last_seq FROM threads WHERE id = '{thread}'"
        ))
        .await;
    assert_eq!(last_seq, after_restart.len() as i64);
    let mut clients = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let read = db
            .count(&format!(
                "SELECT last_read_seq FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}'",
                user.id
            ))
            .await;
        let delivered = db
            .count(&format!(
                "SELECT last_delivered_seq FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}'",
                user.id
            ))
            .await;
        assert!(
            read >= read_acked[i],
            "user {i}: read cursor {read} went below the acked {}",
            read_acked[i]
        );
        assert!(
            read <= delivered && delivered <= last_seq,
            "{read} {delivered} {last_seq}"
        );
        let ws = server.connect(user).await;
        assert_eq!(ws.ready_thread(thread)["last_read_seq"], read);
        assert_eq!(ws.ready_thread(thread)["last_seq"], last_seq);
        clients.push(ws);
    }

    // Every client_msg_id sent, acked or not, is sent again by its user.
    let mut resent: HashMap<Uuid, i64> = HashMap::new();
    for load in &loads {
        let ws = &mut clients[load.user];
        for (k, cmid) in load.sent.iter().enumerate() {
            ws.send_text(send_frame(thread, *cmid, &format!("again{k}"), "again"))
                .await;
        }
        for (k, cmid) in load.sent.iter().enumerate() {
            let reply = ws.reply_to(&format!("again{k}")).await;
            assert_eq!(
                reply["event"], "chat:ack",
                "a resend after the restart: {reply}"
            );
            assert_eq!(reply["data"]["message"]["client_msg_id"], cmid.to_string());
            resent.insert(*cmid, seq_in(&reply));
        }
    }
    for (cmid, (_, seq)) in &acked {
        assert_eq!(resent[cmid], *seq, "a resent acked message keeps its seq");
    }
    let rows = thread_rows(&config.db.url, thread).await;
    let by_id = assert_gapless_and_unique(&rows);
    assert_eq!(
        rows.len(),
        sent,
        "each sent client_msg_id exists exactly once"
    );
    for (cmid, seq) in &resent {
        assert_eq!(by_id[&cmid.to_string()].seq, *seq);
    }
    for (cmid, (user, _)) in &acked {
        assert_eq!(
            by_id[&cmid.to_string()].sender_id,
            users[*user].id.to_string()
        );
    }
    eprintln!(
        "crash: SIGKILL at {acked_at_kill} acks ({} sessions); {} acked in all, {sent} sent, \
         {committed_unacked} committed without an ack; after resending: {} messages, seq 1..={}",
        USERS * SESSIONS_PER_USER,
        acked.len(),
        rows.len(),
        rows.len()
    );
}

// ---- d. graceful shutdown --------------------------------------------------------

#[actix_web::test]
async fn sigterm_during_a_burst_acks_what_was_read_closes_with_1001_and_exits_0_in_the_drain_time()
{
    const BEFORE: usize = 40;
    const AFTER: usize = 10;
    let drain_time = Duration::from_millis(5000);
    let config = ChildConfig::new(&[
        ("CONFAB_RATE_LIMIT_PER_SECOND", "100000"),
        ("CONFAB_RATE_LIMIT_BURST", "100000"),
        ("CONFAB_DRAIN_TIMEOUT_MS", "5000"),
    ]);
    let mut server = config.start().await;
    let users = server.users(3).await;
    let (ann, carl, bob) = (&users[0], &users[1], &users[2]);
    let thread = server.group(&[ann, carl, bob]).await;
    let mut bob_ws = server.connect(bob).await;
    let mut senders = [
        (ann, server.connect(ann).await),
        (carl, server.connect(carl).await),
    ];

    // A burst on each session, then a ping: its pong means the server has
    // read every send before it (frames are handled in order).
    let mut before: Vec<Vec<(String, Uuid)>> = Vec::new();
    for (_, ws) in senders.iter_mut() {
        let mut sent = Vec::new();
        for k in 0..BEFORE {
            let (reference, cmid) = (format!("a{k}"), Uuid::new_v4());
            ws.send_text(send_frame(thread, cmid, &reference, &format!("before {k}")))
                .await;
            sent.push((reference, cmid));
        }
        before.push(sent);
    }
    for (_, ws) in senders.iter_mut() {
        let pong = ws.request("ping", json!({})).await;
        assert_eq!(pong["event"], "pong", "{pong}");
    }

    server.process.signal("TERM");
    let signalled = Instant::now();
    // The burst goes on; these may be read before or after the drain
    // starts, or not at all.
    let mut after: Vec<Vec<(String, Uuid)>> = Vec::new();
    for (_, ws) in senders.iter_mut() {
        let mut sent = Vec::new();
        for k in 0..AFTER {
            let (reference, cmid) = (format!("z{k}"), Uuid::new_v4());
            if !send_raw(ws.socket(), send_frame(thread, cmid, &reference, "after")).await {
                break;
            }
            sent.push((reference, cmid));
        }
        after.push(sent);
    }
    let mut endings = Vec::new();
    for (_, ws) in senders.iter_mut() {
        endings.push(drain(ws.socket()).await);
    }
    let bob_end = drain(bob_ws.socket()).await;
    let closed_after = signalled.elapsed();
    assert_eq!(bob_end.close, Some(1001), "{bob_end:?}");

    // No new connections once the server is shutting down.
    let refused = timeout(ARRIVAL, WsClient::open(&server.ws_url, &bob.token)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a connection after SIGTERM must be refused: {refused:?}"
    );

    let exit = server
        .process
        .exited_within(drain_time.saturating_sub(signalled.elapsed()))
        .await
        .unwrap_or_else(|| panic!("confab did not exit within the drain time {drain_time:?}"));
    let exited_after = signalled.elapsed();
    assert!(exit.success(), "SIGTERM is a clean exit, got {exit:?}");

    let rows = thread_rows(&config.db.url, thread).await;
    let by_id = assert_gapless_and_unique(&rows);
    let (mut acked_after, mut in_flight_at_signal) = (0, 0);
    for (i, (_, ws)) in senders.iter_mut().enumerate() {
        let ending = &endings[i];
        assert_eq!(
            ending.close,
            Some(1001),
            "sessions are closed with 1001: {ending:?}"
        );
        // Every send read before the signal is acked before the close
        // (acks read before the pong wait among the client's frames).
        for (reference, cmid) in &before[i] {
            let ack = match ending.texts.iter().find(|f| f["ref"] == reference.as_str()) {
                Some(ack) => {
                    in_flight_at_signal += 1;
                    ack.clone()
                }
                None => ws.reply_to(reference).await,
            };
            assert_eq!(
                ack["event"], "chat:ack",
                "a send in flight at SIGTERM: {ack}"
            );
            let row = by_id
                .get(&cmid.to_string())
                .unwrap_or_else(|| panic!("acked {cmid} is not in the database"));
            assert_eq!(row.seq, seq_in(&ack));
        }
        // After the signal: acked and committed, or refused and absent.
        for (reference, cmid) in &after[i] {
            let reply = ending.texts.iter().find(|f| f["ref"] == reference.as_str());
            match reply {
                Some(ack) if ack["event"] == "chat:ack" => {
                    acked_after += 1;
                    let row = by_id
                        .get(&cmid.to_string())
                        .unwrap_or_else(|| panic!("acked {cmid} is not in the database"));
                    assert_eq!(row.seq, seq_in(ack));
                }
                Some(error) => {
                    assert_eq!(error_code(error), "unavailable", "{error}");
                    assert!(
                        !by_id.contains_key(&cmid.to_string()),
                        "refused {cmid} was stored"
                    );
                }
                None => assert!(
                    !by_id.contains_key(&cmid.to_string()),
                    "{cmid} was stored but never acked before the close"
                ),
            }
        }
    }
    assert_eq!(rows.len(), 2 * BEFORE + acked_after);
    eprintln!(
        "SIGTERM: {} sends read before the signal all acked ({in_flight_at_signal} of them \
         after it), {acked_after} of {} later sends acked; sessions closed with 1001 after \
         {closed_after:?}, exit 0 after {exited_after:?} (drain time {drain_time:?})",
        2 * BEFORE,
        after.iter().map(Vec::len).sum::<usize>()
    );
}

// ---- e. slow consumer ------------------------------------------------------------

/// A WebSocket whose TCP receive window is tiny, so that a few unread
/// frames fill the path between the server and it.
async fn narrow_socket(server: &ChildServer, user: &TestUser) -> WebSocketStream<TcpStream> {
    let socket = TcpSocket::new_v4().expect("a TCP socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let stream = socket
        .connect(server.addr)
        .await
        .expect("connect to confab");
    let request = format!("{}?token={}", server.ws_url, user.token)
        .into_client_request()
        .expect("a client request");
    let (ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the upgrade");
    ws
}

/// Carl reads until he has `seq` of `thread`, checking that each thread's
/// messages come in order (`next_seq`: the next one expected of each).
/// True if the slow user went offline meanwhile.
async fn carl_reads_up_to(
    carl_ws: &mut WsClient,
    next_seq: &mut HashMap<Uuid, i64>,
    (thread, seq): (Uuid, i64),
    slow: Uuid,
) -> bool {
    let mut went_offline = false;
    while next_seq[&thread] <= seq {
        let frame = carl_ws.next_frame().await;
        match frame["event"].as_str() {
            Some("chat:message") => {
                let of = uuid(&frame["data"]["message"]["thread_id"]);
                let expected = next_seq
                    .get_mut(&of)
                    .unwrap_or_else(|| panic!("a message of another thread: {frame}"));
                assert_eq!(seq_in(&frame), *expected, "carl's messages out of order");
                *expected += 1;
            }
            Some("chat:presence") if frame["data"]["online"] == true => {}
            Some("chat:presence") => {
                assert_eq!(
                    frame["data"],
                    json!({"user_id": slow, "online": false}),
                    "{frame}"
                );
                assert!(!went_offline, "offline twice: {frame}");
                went_offline = true;
            }
            _ => panic!("unexpected frame for carl: {frame}"),
        }
    }
    went_offline
}

/// A slow consumer on a machine under any load: nothing here races the
/// clock. Each ack and frame is awaited with the suite's deadline, the
/// slow session's socket is drained with a deadline sized for megabytes,
/// the heartbeat cannot close the silent session however long the flood
/// takes, and "others were not slowed" compares acks into the slow
/// session's thread with acks into a control thread taken in turn with
/// them, so both see the same load.
#[actix_web::test]
async fn a_consumer_that_stops_reading_is_closed_with_4008_and_the_servers_memory_stays_bounded() {
    const BOUND: u64 = 1024 * 1024;
    const WARM_UP: usize = 20;
    const FLOOD: usize = 512;
    // Every CONTROL_EVERY-th flood message is followed by one into the
    // control thread.
    const CONTROL_EVERY: usize = 2;
    let config = ChildConfig::new(&[
        ("CONFAB_MAX_OUTBOUND_BYTES", "1048576"),
        ("CONFAB_RATE_LIMIT_PER_SECOND", "100000"),
        ("CONFAB_RATE_LIMIT_BURST", "100000"),
        // The slow session never answers a ping. Only its outbound bound
        // may close it, however long a loaded machine takes to reach it
        // (heartbeat timeouts have their own test below).
        ("CONFAB_CLIENT_TIMEOUT_MS", "3600000"),
    ]);
    let server = config.start().await;
    let users = server.users(3).await;
    let (ann, slow, carl) = (&users[0], &users[1], &users[2]);
    let thread = server.group(&[ann, slow, carl]).await;
    let control = server.group(&[ann, carl]).await;
    let mut ann_ws = server.connect(ann).await;
    let mut carl_ws = server.connect(carl).await;
    // 8000 four-byte characters: a 32 KB body, a frame just over that.
    let body = "😀".repeat(8000);

    // Warm-up with everyone reading: the allocator's pools in their
    // working size, and the baseline ack latency (reported, not compared:
    // the load may change between now and the flood).
    let mut baseline = Vec::new();
    for i in 1..=WARM_UP as i64 {
        let started = Instant::now();
        let message = ann_ws.send_message(thread, &body).await;
        baseline.push(started.elapsed());
        assert_eq!(message["seq"], i);
        assert_eq!(
            carl_ws.next_event("chat:message").await["message"]["seq"],
            i
        );
    }
    let message = ann_ws.send_message(control, &body).await;
    assert_eq!(message["seq"], 1);
    assert_eq!(
        carl_ws.next_event("chat:message").await["message"]["seq"],
        1
    );
    let rss_before = server.process.rss();
    server.process.reset_peak_rss();

    // The slow user connects, reads chat:ready, and never reads again.
    let mut slow_ws = narrow_socket(&server, slow).await;
    let ready = loop {
        match timeout(ARRIVAL, slow_ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => break text,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no chat:ready for the slow session: {other:?}"),
        }
    };
    assert!(ready.contains("\"chat:ready\""), "first frame: {ready}");

    let mut next_seq = HashMap::from([(thread, WARM_UP as i64 + 1), (control, 2)]);

    // Every ack below arrives while the slow session reads nothing: none
    // waits for it (each wait has the suite's deadline, ARRIVAL).
    let mut flood_latency = Vec::new();
    let mut control_latency = Vec::new();
    // The slow thread's last seq when carl saw the slow user go offline.
    let mut evicted_at = None;
    for round in 0..FLOOD {
        let started = Instant::now();
        let message = ann_ws.send_message(thread, &body).await;
        flood_latency.push(started.elapsed());
        let mut reads = vec![(thread, message["seq"].as_i64().unwrap_or_default())];
        if round % CONTROL_EVERY == 0 {
            let started = Instant::now();
            let message = ann_ws.send_message(control, &body).await;
            control_latency.push(started.elapsed());
            reads.push((control, message["seq"].as_i64().unwrap_or_default()));
        }
        for read in reads {
            if carl_reads_up_to(&mut carl_ws, &mut next_seq, read, slow.id).await {
                assert!(evicted_at.is_none(), "offline twice, round {round}");
                evicted_at = Some(next_seq[&thread] - 1);
            }
        }
    }
    let total = next_seq[&thread] - 1;
    assert_eq!(total, (WARM_UP + FLOOD) as i64);
    let rss_after = server.process.rss();
    let peak = server.process.peak_rss();
    let evicted_at = evicted_at.unwrap_or_else(|| {
        panic!("{FLOOD} messages of 32 KB and the unread session was never closed")
    });

    // What the slow session still finds in its socket: messages in order,
    // then a close frame with 4008. Megabytes wait there behind a 4 KB
    // window, so the drain gets minutes, not a frame's ARRIVAL.
    let drained = raw_frames_until_end_within(slow_ws.get_mut(), Duration::from_secs(300)).await;
    let seqs: Vec<i64> = drained
        .texts
        .iter()
        .map(|f| {
            assert_eq!(f["event"], "chat:message", "{f}");
            seq_in(f)
        })
        .collect();
    let expected: Vec<i64> = (WARM_UP as i64 + 1..).take(seqs.len()).collect();
    assert_eq!(seqs, expected, "the frames before the close are in order");
    assert_eq!(
        drained.close,
        Some(4008),
        "a slow consumer is closed with 4008"
    );

    // Memory: the slow session may hold at most BOUND bytes of frames. The
    // flood pushed FLOOD × 32 KB (16 MB) past it; had the server queued
    // them for the session that never read, the peak would have grown by
    // that much. The peak may grow by less than 4 × BOUND: the bound
    // itself, a few 32 KB frames in flight (from ann, to carl, the ack),
    // and what the allocator keeps of freed buffers.
    let flooded = (FLOOD * body.len()) as u64;
    let growth = peak.saturating_sub(rss_before);
    assert!(
        growth < 4 * BOUND,
        "peak RSS grew by {growth} bytes (from {rss_before}, peak {peak}, now {rss_after}) \
         while {flooded} bytes were flooded past a bound of {BOUND}"
    );

    // Others were not slowed: acks into the slow session's thread take
    // about as long as acks into the control thread, which the slow
    // session is not in, taken in turn with them (medians, so a scheduler
    // hiccup on a busy machine does not decide).
    let base = median(&mut baseline);
    let worst = flood_latency.iter().max().copied().unwrap_or_default();
    let during = median(&mut flood_latency);
    let beside = median(&mut control_latency);
    assert!(
        during <= beside * 5 + Duration::from_millis(20),
        "median ack latency {during:?} into the slow session's thread, \
         {beside:?} into the control thread at the same time"
    );

    // Back again: chat:sync brings everything it missed.
    let mut back = server.connect(slow).await;
    assert_eq!(back.ready_thread(thread)["last_seq"], total);
    let missed = {
        let mut after_seq = WARM_UP as i64 + seqs.len() as i64;
        let from = after_seq;
        loop {
            let page = back
                .request(
                    "chat:sync",
                    json!({"thread_id": thread, "after_seq": after_seq, "limit": 16}),
                )
                .await;
            assert_eq!(page["event"], "chat:ack", "{page}");
            for m in page["data"]["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                assert_eq!(m["seq"], after_seq + 1, "{m}");
                after_seq += 1;
            }
            if page["data"]["has_more"] != true {
                break;
            }
        }
        assert_eq!(after_seq, total, "chat:sync returned everything missed");
        total - from
    };
    eprintln!(
        "slow consumer: closed with 4008 by seq {evicted_at} after {} frames reached it; \
         RSS {rss_before} before, peak {peak} (+{growth}), {rss_after} after {flooded} bytes \
         flooded; ack latency median {base:?} before, {during:?} during ({beside:?} into the \
         control thread), worst {worst:?}; {missed} messages caught up by chat:sync",
        seqs.len()
    );
}

// ---- f. heartbeat, half-open -----------------------------------------------------

#[actix_web::test]
async fn a_half_open_connection_is_closed_by_the_heartbeat_and_its_presence_and_typing_end() {
    let heartbeat = Duration::from_millis(200);
    let client_timeout = Duration::from_millis(1500);
    let app = spawn_app_with(|s| {
        s.websocket.heartbeat_interval_ms = heartbeat.as_millis() as u64;
        s.websocket.client_timeout_ms = client_timeout.as_millis() as u64;
        // Long enough that only the session's end can stop the typing.
        s.websocket.typing_timeout_ms = 60_000;
    })
    .await;
    let users = app.users(2).await;
    let (half, watcher) = (&users[0], &users[1]);
    let thread = app.group(&[half, watcher]).await;
    let mut watcher_ws = app.connect(watcher).await;

    let app_addr: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("the app's address");
    let proxy = Proxy::start(app_addr);
    let mut half_ws = WsClient::connect(&format!("ws://{}/ws", proxy.addr()), &half.token).await;
    assert_eq!(proxy.open_connections(), 1);
    assert_eq!(
        watcher_ws.next_event("chat:presence").await,
        json!({"user_id": half.id, "online": true})
    );
    let ack = half_ws
        .request("chat:typing-start", json!({"thread_id": thread}))
        .await;
    assert_eq!(ack["event"], "chat:ack", "{ack}");
    assert_eq!(
        watcher_ws.next_event("chat:typing").await,
        json!({"thread_id": thread, "user_id": half.id, "typing": true})
    );
    // Alive and heard just now; then the path goes silent both ways.
    let pong = half_ws.request("ping", json!({})).await;
    assert_eq!(pong["event"], "pong");
    proxy.blackhole();
    let silent = Instant::now();

    let typing = watcher_ws.next_event("chat:typing").await;
    assert_eq!(
        typing,
        json!({"thread_id": thread, "user_id": half.id, "typing": false})
    );
    let presence = watcher_ws.next_event("chat:presence").await;
    let took = silent.elapsed();
    assert_eq!(presence, json!({"user_id": half.id, "online": false}));
    assert!(
        took >= client_timeout / 2,
        "closed after {took:?}: before the client timeout {client_timeout:?}"
    );
    assert!(
        took <= client_timeout + Duration::from_secs(3),
        "closed only after {took:?} (client timeout {client_timeout:?})"
    );
    // The watcher, who answers pings, is still served; only one session is left.
    let pong = watcher_ws.request("ping", json!({})).await;
    assert_eq!(pong["event"], "pong");
    let stats = app.get("/admin/stats", &app.admin_token).await;
    assert_eq!(stats.body["sessions"], 1, "{stats:?}");
    assert_eq!(stats.body["users_online"], 1, "{stats:?}");

    // When the path heals, what the server sent last reaches the client:
    // the close for the heartbeat timeout.
    proxy.restore();
    assert_eq!(half_ws.ending().await, Ending::Closed(Some(1001)));
    eprintln!(
        "half-open: closed {took:?} after the path went silent (heartbeat {heartbeat:?}, \
         client timeout {client_timeout:?})"
    );
}

#[actix_web::test]
async fn a_database_that_goes_silent_answers_unavailable_within_the_request_deadline() {
    let proxy = Proxy::start(postgres_addr());
    let app = spawn_app_with(|s| {
        let name = confab::config::database_name(&s.database_url)
            .expect("the harness names the app's database");
        s.database_url = proxy.postgres_url(&name);
        s.db_timeout_ms = 300;
        s.db_request_timeout_ms = 1000;
    })
    .await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    ann_ws.send_message(thread, "before").await;
    bob_ws.next_event("chat:message").await;

    // Sockets stay open, bytes stop: a partition, or a database that hangs.
    proxy.blackhole();
    let client_msg_id = Uuid::new_v4();
    let data = json!({"thread_id": thread, "client_msg_id": client_msg_id, "body": "during"});
    let started = Instant::now();
    let reply = ann_ws.request("chat:send", data.clone()).await;
    let waited = started.elapsed();
    println!("silent database: unavailable after {waited:?}");
    assert_eq!(reply["event"], "chat:error", "{reply}");
    assert_eq!(error_code(&reply), "unavailable");
    assert!(waited < Duration::from_secs(4), "the reply took {waited:?}");
    bob_ws.assert_no_event("chat:message").await;

    proxy.restore();
    let retry = ann_ws.request("chat:send", data).await;
    assert_eq!(retry["event"], "chat:ack", "{retry}");
    assert_eq!(seq_in(&retry), 2);
    let got = bob_ws.next_event("chat:message").await;
    assert_eq!(got["message"]["client_msg_id"], client_msg_id.to_string());
    bob_ws.assert_no_event("chat:message").await;
    let rows = thread_rows(&app.db_url, thread).await;
    assert_gapless_and_unique(&rows);
    assert_eq!(rows.len(), 2);
}
