//! Group commit: sends from many sessions and threads share transactions,
//! and every per-send promise still holds inside a batch.
//!
//! Rows written by one transaction share their `xmin`, so the database
//! itself shows which sends were committed together.

use std::collections::{BTreeSet, HashSet};

use futures_util::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{
    spawn_app_with, until_a_statement_waits_for_a_lock, until_count, uuid, TestApp, WsClient,
};

/// A window long enough that sends fired together from many sessions land
/// in one batch even on a loaded machine.
const WIDE_WINDOW_US: u64 = 200_000;

async fn batching_app(batch_max: usize, window_us: u64) -> TestApp {
    spawn_app_with(|s| {
        s.persistence.batch_max = batch_max;
        s.persistence.batch_window_us = window_us;
        s.websocket.rate_limit_per_second = 100_000.0;
        s.websocket.rate_limit_burst = 100_000;
    })
    .await
}

fn send_frame(reference: &str, thread: Uuid, client_msg_id: Uuid, body: &str) -> String {
    json!({"event": "chat:send", "ref": reference,
           "data": {"thread_id": thread, "client_msg_id": client_msg_id, "body": body}})
    .to_string()
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

/// Transactions that wrote the messages of these threads.
async fn transactions(app: &TestApp, threads: &[Uuid]) -> i64 {
    let list = threads
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(",");
    app.db()
        .await
        .count(&format!(
            "SELECT count(DISTINCT xmin::text) FROM messages WHERE thread_id IN ({list})"
        ))
        .await
}

const THREADS: usize = 3;
const MEMBERS: usize = 4;
const SENDS: usize = 10;

/// Fires its sends, then reads until it has every ack and every message
/// of the other members. Each ack's row must already be in the database.
async fn send_and_collect(
    app: &TestApp,
    index: usize,
    client: &mut WsClient,
    thread: Uuid,
) -> (Vec<(i64, String)>, Vec<(i64, String)>) {
    let mut db = app.db().await;
    for i in 0..SENDS {
        client
            .send_text(send_frame(
                &format!("s{index}-{i}"),
                thread,
                Uuid::new_v4(),
                &format!("{index}/{i}"),
            ))
            .await;
    }
    let (mut acked, mut received) = (Vec::new(), Vec::new());
    while acked.len() < SENDS || received.len() < (MEMBERS - 1) * SENDS {
        let frame = client.next_frame().await;
        let message = &frame["data"]["message"];
        let entry = || {
            (
                message["seq"].as_i64().unwrap_or_default(),
                text(&message["id"]).to_string(),
            )
        };
        match frame["event"].as_str() {
            Some("chat:ack") => {
                let id = text(&message["id"]);
                assert_eq!(
                    db.count(&format!("SELECT count(*) FROM messages WHERE id = '{id}'"))
                        .await,
                    1,
                    "session {index}: ack for {id} arrived before its row was committed"
                );
                acked.push(entry());
            }
            Some("chat:message") => {
                assert_eq!(message["thread_id"], thread.to_string());
                received.push(entry());
            }
            Some("chat:presence") => {}
            _ => panic!("session {index}: unexpected frame {frame}"),
        }
    }
    (acked, received)
}

#[actix_web::test]
async fn many_senders_in_many_threads_share_commits_yet_get_gapless_seqs_and_acks_after_commit() {
    many_senders_share_commits(batching_app(256, WIDE_WINDOW_US).await).await;
}

/// The default: no window, one commit at a time. Nobody waits for company,
/// yet sends that arrive while a commit runs share the next one.
#[actix_web::test]
async fn with_no_window_sends_arriving_during_a_commit_share_the_next_one() {
    let app = spawn_app_with(|s| {
        s.persistence.batch_window_us = 0;
        s.persistence.commits_in_flight = 1;
        s.websocket.rate_limit_per_second = 100_000.0;
        s.websocket.rate_limit_burst = 100_000;
    })
    .await;
    many_senders_share_commits(app).await;
}

async fn many_senders_share_commits(app: TestApp) {
    let users = app.users(THREADS * MEMBERS).await;
    let mut threads = Vec::new();
    for group in users.chunks(MEMBERS) {
        threads.push(app.group(&group.iter().collect::<Vec<_>>()).await);
    }
    let mut clients = Vec::new();
    for user in &users {
        clients.push(app.connect(user).await);
    }

    let seen = join_all(
        clients
            .iter_mut()
            .enumerate()
            .map(|(i, c)| send_and_collect(&app, i, c, threads[i / MEMBERS])),
    )
    .await;
    join_all(
        clients
            .iter_mut()
            .map(|c| c.assert_no_event("chat:message")),
    )
    .await;

    let mut db = app.db().await;
    let per_thread = (MEMBERS * SENDS) as i64;
    for thread in &threads {
        assert_eq!(db.seqs(*thread).await, (1..=per_thread).collect::<Vec<_>>());
    }
    for (t, thread) in threads.iter().enumerate() {
        let members = &seen[t * MEMBERS..(t + 1) * MEMBERS];
        let acked: HashSet<(i64, String)> = members
            .iter()
            .flat_map(|(acked, _)| acked.iter().cloned())
            .collect();
        assert_eq!(
            acked.len(),
            per_thread as usize,
            "thread {thread}: one ack per message"
        );
        for (index, (own, received)) in members.iter().enumerate() {
            assert!(
                received.windows(2).all(|w| w[0].0 < w[1].0),
                "member {index} of {thread} received out of seq order"
            );
            let all: BTreeSet<(i64, String)> = own.iter().chain(received).cloned().collect();
            assert_eq!(
                all.len(),
                per_thread as usize,
                "member {index} saw a message twice"
            );
            assert!(
                all.iter().all(|m| acked.contains(m)),
                "a seq carried two ids"
            );
        }
    }
    let total = (THREADS * MEMBERS * SENDS) as i64;
    let commits = transactions(&app, &threads).await;
    assert!(
        commits < total,
        "{total} sends from {} sessions took {commits} transactions: nothing was batched",
        THREADS * MEMBERS
    );
}

#[actix_web::test]
async fn a_non_members_send_in_a_busy_batch_fails_alone() {
    let app = batching_app(256, WIDE_WINDOW_US).await;
    let users = app.users(5).await;
    let members: Vec<_> = users[..4].iter().collect();
    let thread = app.group(&members).await;
    let outsider = &users[4];
    let mut clients = Vec::new();
    for user in &members {
        clients.push(app.connect(user).await);
    }
    let mut stranger = app.connect(outsider).await;

    let sends = clients.iter_mut().enumerate().map(|(i, c)| async move {
        c.send_text(send_frame(
            "m",
            thread,
            Uuid::new_v4(),
            &format!("member {i}"),
        ))
        .await;
        c.reply_to("m").await
    });
    let intrusion = async {
        stranger
            .send_text(send_frame("x", thread, Uuid::new_v4(), "not mine to post"))
            .await;
        stranger.reply_to("x").await
    };
    let (replies, refused) = futures_util::join!(join_all(sends), intrusion);

    assert_eq!(refused["event"], "chat:error", "{refused}");
    assert_eq!(refused["data"]["code"], "not_member", "{refused}");
    for reply in &replies {
        assert_eq!(reply["event"], "chat:ack", "{reply}");
    }
    let mut db = app.db().await;
    assert_eq!(db.seqs(thread).await, vec![1, 2, 3, 4]);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE sender_id = '{}'",
            outsider.id
        ))
        .await,
        0
    );
    // The members' sends were committed together, beside the refused one.
    assert_eq!(transactions(&app, &[thread]).await, 1);
    for client in &mut clients {
        client
            .assert_none(
                |f| f["data"]["message"]["body"] == "not mine to post",
                "the outsider's message",
            )
            .await;
    }
}

async fn send_once(client: &mut WsClient, thread: Uuid, cmid: Uuid) -> Value {
    client
        .send_text(send_frame("d", thread, cmid, "once"))
        .await;
    client.reply_to("d").await
}

#[actix_web::test]
async fn one_client_msg_id_sent_at_once_from_two_sessions_is_one_message_acked_to_both() {
    let app = batching_app(256, WIDE_WINDOW_US).await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut phone = app.connect(&users[0]).await;
    let mut laptop = app.connect(&users[0]).await;
    let mut friend = app.connect(&users[1]).await;
    let earlier = phone.send_message(thread, "earlier").await;
    let earlier_cmid = uuid(&earlier["client_msg_id"]);
    friend.next_event("chat:message").await;
    laptop.next_event("chat:message").await;

    let cmid = Uuid::new_v4();
    // Both copies of one new key, and the friend's own send beside them.
    let (a, b, c) = futures_util::join!(
        send_once(&mut phone, thread, cmid),
        send_once(&mut laptop, thread, cmid),
        async {
            friend
                .send_text(send_frame("f", thread, Uuid::new_v4(), "meanwhile"))
                .await;
            friend.reply_to("f").await
        }
    );
    for reply in [&a, &b, &c] {
        assert_eq!(reply["event"], "chat:ack", "{reply}");
    }
    assert_eq!(a["data"]["message"]["id"], b["data"]["message"]["id"]);
    assert_eq!(a["data"]["message"]["seq"], b["data"]["message"]["seq"]);

    // A resend of the earlier message gets the original back, unchanged.
    let resend = phone
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": earlier_cmid, "body": "earlier"}),
        )
        .await;
    assert_eq!(resend["data"]["message"]["id"], earlier["id"], "{resend}");
    assert_eq!(resend["data"]["message"]["seq"], 1, "{resend}");

    let mut db = app.db().await;
    assert_eq!(db.seqs(thread).await, vec![1, 2, 3]);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages WHERE client_msg_id = '{cmid}'"
        ))
        .await,
        1
    );
    let got = friend.next_event("chat:message").await;
    assert_eq!(got["message"]["id"], a["data"]["message"]["id"]);
    friend
        .assert_none(
            |f| f["event"] == "chat:message" && f["data"]["message"]["body"] == "once",
            "a second copy of the duplicated message",
        )
        .await;
}

#[actix_web::test]
async fn with_batch_max_one_every_send_commits_alone_and_seqs_stay_gapless() {
    let app = batching_app(1, WIDE_WINDOW_US).await;
    let users = app.users(4).await;
    let thread = app.group(&users.iter().collect::<Vec<_>>()).await;
    let mut clients = Vec::new();
    for user in &users {
        clients.push(app.connect(user).await);
    }
    let replies = join_all(clients.iter_mut().enumerate().map(|(i, c)| async move {
        let mut acks = Vec::new();
        for n in 0..5 {
            let reference = format!("r{n}");
            c.send_text(send_frame(
                &reference,
                thread,
                Uuid::new_v4(),
                &format!("{i}/{n}"),
            ))
            .await;
            acks.push(c.reply_to(&reference).await);
        }
        acks
    }))
    .await;
    for reply in replies.iter().flatten() {
        assert_eq!(reply["event"], "chat:ack", "{reply}");
    }
    let mut db = app.db().await;
    assert_eq!(db.seqs(thread).await, (1..=20).collect::<Vec<_>>());
    assert_eq!(transactions(&app, &[thread]).await, 20);
}

/// A send whose key another writer inserts after the batch looked (here a
/// transaction the test holds open, writing the key into another thread
/// the way a batch would) waits for that writer; when it commits, the
/// batch is tried again and the send is answered with that writer's
/// message. Its own thread takes no seq, so seqs stay gapless.
#[actix_web::test]
async fn a_key_another_writer_commits_during_the_batch_is_answered_with_its_message_and_takes_no_seq(
) {
    let app = batching_app(256, 0).await;
    let users = app.users(2).await;
    let (alice, bob) = (&users[0], &users[1]);
    let here = app.group(&[alice, bob]).await;
    let there = app.group(&[alice, bob]).await;
    let mut phone = app.connect(alice).await;
    let mut friend = app.connect(bob).await;
    phone.send_message(here, "first").await;
    friend.next_event("chat:message").await;

    let (cmid, theirs) = (Uuid::new_v4(), Uuid::new_v4());
    let mut other = app.db().await;
    other.exec("BEGIN").await;
    other
        .exec(&format!(
            "WITH bumped AS (
                 UPDATE threads SET last_seq = last_seq + 1, last_rev = last_rev + 1
                 WHERE id = '{there}' RETURNING company_id, last_seq, last_rev)
             INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id,
                                   kind, body, rev, created_rev)
             SELECT '{theirs}', '{there}', company_id, last_seq, '{alice}', '{cmid}',
                    'text', 'theirs', last_rev, last_rev
             FROM bumped",
            alice = alice.id
        ))
        .await;
    phone.send_text(send_frame("r", here, cmid, "ours")).await;
    until_a_statement_waits_for_a_lock(&app).await;
    other.exec("COMMIT").await;

    let reply = phone.reply_to("r").await;
    assert_eq!(reply["event"], "chat:ack", "{reply}");
    assert_eq!(
        reply["data"]["message"]["id"],
        theirs.to_string(),
        "{reply}"
    );
    assert_eq!(reply["data"]["message"]["body"], "theirs", "{reply}");
    let mut db = app.db().await;
    assert_eq!(db.seqs(here).await, vec![1], "the raced send took a seq");
    let next = phone.send_message(here, "next").await;
    assert_eq!(next["seq"], 2, "{next}");
    let got = friend
        .wait_for(
            |f| {
                f["event"] == "chat:message"
                    && f["data"]["message"]["thread_id"] == here.to_string()
            },
            "the next message here",
        )
        .await;
    assert_eq!(got["data"]["message"]["body"], "next", "{got}");
}

/// A batch abandoned at its deadline with its transaction open (here: its
/// lock waits behind a transaction the test holds) must not leave that
/// transaction on a pooled connection, where the next batch would commit
/// it. The connection is discarded instead: once the test lets go, the
/// abandoned statements find no client, nothing they wrote is committed,
/// and no backend stays idle inside a transaction.
#[actix_web::test]
async fn a_batch_abandoned_at_its_deadline_leaves_no_open_transaction_behind() {
    let app = spawn_app_with(|s| {
        s.db_timeout_ms = 500;
        s.db_request_timeout_ms = 1000;
    })
    .await;
    let users = app.users(2).await;
    let thread = app.group(&[&users[0], &users[1]]).await;
    let mut ann = app.connect(&users[0]).await;

    let mut holder = app.db().await;
    holder.exec("BEGIN").await;
    holder
        .exec(&format!(
            "SELECT id FROM threads WHERE id = '{thread}' FOR UPDATE"
        ))
        .await;
    let cmid = Uuid::new_v4();
    ann.send_text(send_frame("late", thread, cmid, "abandoned"))
        .await;
    until_a_statement_waits_for_a_lock(&app).await;
    let reply = ann.reply_to("late").await;
    assert_eq!(reply["event"], "chat:error", "{reply}");
    assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
    holder.exec("ROLLBACK").await;

    until_count(
        &app,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND (state LIKE 'idle in transaction%' OR wait_event_type = 'Lock')",
        |open| open == 0,
        "backends still hold an abandoned transaction",
    )
    .await;
    let mut watcher = app.db().await;
    assert_eq!(
        watcher
            .count(&format!(
                "SELECT count(*) FROM messages WHERE client_msg_id = '{cmid}'"
            ))
            .await,
        0,
        "the abandoned send was committed"
    );
    let retry = ann
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": cmid, "body": "abandoned"}),
        )
        .await;
    assert_eq!(retry["event"], "chat:ack", "{retry}");
    assert_eq!(retry["data"]["message"]["seq"], 1, "{retry}");
}
