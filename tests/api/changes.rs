//! `rev` and the change feed (PROTOCOL.md, Edition 2, "Messages"): every
//! change to a thread's messages gets the thread's next rev, gapless and in
//! commit order; live events carry it and reach each session in rev order;
//! chat:changes and GET /api/threads/{id}/changes page the current state of
//! what changed, so a client that was away catches up exactly. The last
//! test is a property: over random interleavings of sends, edits, deletes,
//! reactions, disconnects and edits whose announcement was lost (read back
//! by the hub), a client that applies live events and, on reconnecting,
//! chat:sync and chat:changes holds what the database holds.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, spawn_app_with, TestApp, TestUser, WsClient};

fn id_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The rev a live change event carries.
fn rev_of(frame: &Value) -> i64 {
    let data = &frame["data"];
    data["message"]["rev"]
        .as_i64()
        .or_else(|| data["rev"].as_i64())
        .unwrap_or(-1)
}

fn is_change(frame: &Value) -> bool {
    matches!(
        frame["event"].as_str(),
        Some("chat:message" | "chat:message-edited" | "chat:message-deleted" | "chat:reaction")
    )
}

async fn last_rev(app: &TestApp, thread: Uuid) -> i64 {
    app.db()
        .await
        .count(&format!(
            "SELECT last_rev AS n FROM threads WHERE id = '{thread}'"
        ))
        .await
}

/// Every page of the HTTP change feed after `after_rev`, `limit` at a time.
async fn all_changes(app: &TestApp, user: &TestUser, thread: Uuid, after_rev: i64) -> Vec<Value> {
    let (mut after, mut messages) = (after_rev, Vec::new());
    loop {
        let page = app
            .get(
                &format!("/api/threads/{thread}/changes?after_rev={after}&limit=3"),
                &user.token,
            )
            .await;
        assert_eq!(page.status, 200, "{page:?}");
        messages.extend(
            page.body["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        after = page.body["last_rev"].as_i64().unwrap_or_default();
        if page.body["has_more"] == false {
            return messages;
        }
    }
}

#[actix_web::test]
async fn the_change_feed_pages_current_states_ascending_by_rev() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let one = ann_ws.send_message(thread, "one").await; // rev 1
    let two = ann_ws.send_message(thread, "two").await; // rev 2
    let three = ann_ws.send_message(thread, "three").await; // rev 3
    let edited = app
        .patch(
            &format!("/api/messages/{}", id_of(&one["id"])),
            &ann.token,
            json!({"body": "one, edited"}),
        )
        .await; // rev 4
    assert_eq!(edited.body["rev"], 4);
    let reacted = bob_ws
        .request(
            "chat:react",
            json!({"thread_id": thread, "message_id": three["id"], "emoji": "👍", "on": true}),
        )
        .await; // rev 5
    assert_eq!(reacted["data"]["rev"], 5);
    let deleted = app
        .delete(&format!("/api/messages/{}", id_of(&two["id"])), &ann.token)
        .await; // rev 6
    assert_eq!(deleted.body["rev"], 6);

    let page = bob_ws
        .request("chat:changes", json!({"thread_id": thread, "after_rev": 1}))
        .await;
    assert_eq!(page["event"], "chat:ack", "{page}");
    let messages = page["data"]["messages"].as_array().cloned().unwrap();
    let revs: Vec<i64> = messages
        .iter()
        .map(|m| m["rev"].as_i64().unwrap())
        .collect();
    assert_eq!(revs, [4, 5, 6], "latest change of each message, by rev");
    assert_eq!(messages[0], edited.body);
    assert_eq!(
        messages[1]["reactions"],
        json!([{"emoji": "👍", "user_ids": [bob.id]}])
    );
    assert_eq!(messages[2], deleted.body, "the tombstone is a change too");
    assert_eq!(page["data"]["last_rev"], 6);
    assert_eq!(page["data"]["has_more"], false);

    let first = bob_ws
        .request(
            "chat:changes",
            json!({"thread_id": thread, "after_rev": 0, "limit": 2}),
        )
        .await;
    assert_eq!(first["data"]["has_more"], true, "{first}");
    assert_eq!(first["data"]["last_rev"], 5, "revs 4 and 5: {first}");
    let rest = bob_ws
        .request(
            "chat:changes",
            json!({"thread_id": thread, "after_rev": 5, "limit": 2}),
        )
        .await;
    assert_eq!(rest["data"]["messages"], json!([deleted.body]));
    assert_eq!(rest["data"]["has_more"], false);
    let empty = bob_ws
        .request("chat:changes", json!({"thread_id": thread, "after_rev": 6}))
        .await;
    assert_eq!(
        empty["data"],
        json!({"messages": [], "last_rev": 6, "has_more": false}),
        "an empty page keeps after_rev"
    );
    let http = app
        .get(
            &format!("/api/threads/{thread}/changes?after_rev=1"),
            &bob.token,
        )
        .await;
    assert_eq!(http.status, 200, "{http:?}");
    assert_eq!(http.body, page["data"], "HTTP returns the same");
}

#[actix_web::test]
async fn the_change_feed_refuses_bad_bounds_and_threads_the_caller_is_not_in() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, eve) = (&users[0], &users[1]);
    let thread = app.group(&[ann]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut eve_ws = app.connect(eve).await;
    for (after_rev, limit) in [
        (json!(-1), json!(10)),
        (json!(0), json!(0)),
        (json!(0), json!(501)),
    ] {
        let refused = ann_ws
            .request(
                "chat:changes",
                json!({"thread_id": thread, "after_rev": after_rev, "limit": limit}),
            )
            .await;
        assert_eq!(refused["data"]["code"], "bad_request", "{refused}");
        let path = format!("/api/threads/{thread}/changes?after_rev={after_rev}&limit={limit}");
        assert_eq!(app.get(&path, &ann.token).await.status, 400, "{path}");
    }
    let missing = app
        .get(&format!("/api/threads/{thread}/changes"), &ann.token)
        .await;
    assert_eq!(missing.status, 400, "after_rev is required: {missing:?}");
    let at_max = app
        .get(
            &format!("/api/threads/{thread}/changes?after_rev=0&limit=500"),
            &ann.token,
        )
        .await;
    assert_eq!(at_max.status, 200, "{at_max:?}");

    let not_mine = eve_ws
        .request("chat:changes", json!({"thread_id": thread, "after_rev": 0}))
        .await;
    assert_eq!(not_mine["data"]["code"], "not_member", "{not_mine}");
    for who in [&eve.token, &ann.token] {
        let path = if who == &eve.token {
            format!("/api/threads/{thread}/changes?after_rev=0")
        } else {
            format!("/api/threads/{}/changes?after_rev=0", Uuid::new_v4())
        };
        assert_eq!(app.get(&path, who).await.status, 404, "{path}");
    }
}

#[actix_web::test]
async fn concurrent_changes_from_several_sessions_get_gapless_revs_seen_in_rev_order() {
    let app = spawn_app_with(|s| {
        s.websocket.rate_limit_burst = 10_000;
        s.websocket.rate_limit_per_second = 10_000.0;
    })
    .await;
    let users = app.users(4).await;
    let watcher = &users[3];
    let thread = app.group(&[&users[0], &users[1], &users[2], watcher]).await;
    let mut watcher_ws = app.connect(watcher).await;
    let mut second_watcher = app.connect(watcher).await;
    // Each writer has messages of their own to edit, delete and react to.
    let mut writers = Vec::new();
    for user in &users[..3] {
        let mut ws = app.connect(user).await;
        let mut own = Vec::new();
        for i in 0..4 {
            own.push(ws.send_message(thread, &format!("m{i}")).await);
        }
        writers.push((user.clone(), ws, own));
    }
    let before = last_rev(&app, thread).await;
    assert_eq!(before, 12);

    // Every writer at once: reactions on everyone's messages over the
    // WebSocket, and edits and deletes of their own over HTTP.
    let all: Vec<Value> = writers.iter().flat_map(|(_, _, own)| own.clone()).collect();
    let runs = writers.into_iter().map(|(user, mut ws, own)| {
        let (app, all) = (&app, all.clone());
        async move {
            let mut revs = Vec::new();
            for (i, message) in all.iter().enumerate() {
                let ack = ws
                    .request(
                        "chat:react",
                        json!({"thread_id": thread, "message_id": message["id"],
                               "emoji": format!("e{i}"), "on": true}),
                    )
                    .await;
                // A reaction to a message deleted meanwhile is refused.
                revs.push(ack["data"]["rev"].as_i64().unwrap_or(0));
                if i < own.len() {
                    let path = format!("/api/messages/{}", id_of(&own[i]["id"]));
                    let reply = if i == 3 {
                        app.delete(&path, &user.token).await
                    } else {
                        app.patch(&path, &user.token, json!({"body": format!("edit {i}")}))
                            .await
                    };
                    assert_eq!(reply.status, 200, "{reply:?}");
                    revs.push(reply.body["rev"].as_i64().unwrap());
                }
            }
            revs
        }
    });
    let mut revs: Vec<i64> = join_all(runs).await.into_iter().flatten().collect();
    revs.sort_unstable();
    let after = last_rev(&app, thread).await;
    // 3 writers x (12 reactions, some on deleted messages, + 4 own changes).
    assert!(after > before, "{after}");
    let expected: Vec<i64> = ((before + 1)..=after).collect();
    // Only acked changes are counted: no rev twice, none missing.
    let acked: Vec<i64> = revs.into_iter().filter(|r| *r > 0).collect();
    assert_eq!(acked, expected, "gapless and without repeats");

    // Both watching sessions saw every change, once, in rev order.
    for ws in [&mut watcher_ws, &mut second_watcher] {
        let mut seen = Vec::new();
        while seen.last().copied().unwrap_or(0) < after {
            let frame = ws.wait_for(is_change, "a change").await;
            seen.push(rev_of(&frame));
        }
        assert_eq!(seen, (1..=after).collect::<Vec<_>>());
    }
}

// ---- the property ---------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Send {
        user: u8,
    },
    Reply {
        user: u8,
        pick: u8,
    },
    Edit {
        pick: u8,
        mention: bool,
    },
    Delete {
        pick: u8,
    },
    React {
        user: u8,
        pick: u8,
        emoji: u8,
        on: bool,
    },
    /// An edit committed behind the hub's back, as if its announcement
    /// were lost: the hub must read it back when the next change arrives.
    LostEdit {
        pick: u8,
    },
    WatcherAway,
    WatcherBack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(|user| Op::Send { user }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(user, pick)| Op::Reply { user, pick }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(pick, mention)| Op::Edit { pick, mention }),
        1 => any::<u8>().prop_map(|pick| Op::Delete { pick }),
        5 => (any::<u8>(), any::<u8>(), 0u8..3, any::<bool>())
            .prop_map(|(user, pick, emoji, on)| Op::React { user, pick, emoji, on }),
        1 => any::<u8>().prop_map(|pick| Op::LostEdit { pick }),
        1 => Just(Op::WatcherAway),
        1 => Just(Op::WatcherBack),
    ]
}

/// What a client holds of one thread: messages by id, and the highest rev
/// and seq it has applied.
#[derive(Debug, Default)]
struct Replica {
    messages: BTreeMap<String, Value>,
    rev: i64,
    seq: i64,
}

impl Replica {
    fn put(&mut self, message: &Value) {
        self.seq = self.seq.max(message["seq"].as_i64().unwrap_or(0));
        self.messages.insert(id_of(&message["id"]), message.clone());
    }

    /// A reply quotes its target as it is now: a client keeps quotes
    /// current from the targets' own changes (the reply's rev does not
    /// move when its target changes).
    fn refresh_quotes(&mut self) {
        let bodies: BTreeMap<String, Value> = self
            .messages
            .iter()
            .map(|(id, m)| {
                let body = m["body"].as_str().map_or(Value::Null, |b| {
                    json!(b.chars().take(200).collect::<String>())
                });
                (id.clone(), body)
            })
            .collect();
        for m in self.messages.values_mut() {
            let target = id_of(&m["reply_to"]["id"]);
            if let Some(body) = bodies.get(&target) {
                m["reply_to"]["body"] = body.clone();
            }
        }
    }

    /// A live event: one already covered by a page is passed over, any
    /// other must be the next rev.
    fn apply(&mut self, frame: &Value) -> Result<(), String> {
        let rev = rev_of(frame);
        if rev <= self.rev {
            return Ok(());
        }
        if rev != self.rev + 1 {
            return Err(format!("rev {rev} after {}: {frame}", self.rev));
        }
        self.rev = rev;
        self.apply_change(frame)?;
        self.refresh_quotes();
        Ok(())
    }

    fn apply_change(&mut self, frame: &Value) -> Result<(), String> {
        let rev = rev_of(frame);
        let data = &frame["data"];
        match frame["event"].as_str() {
            Some("chat:message" | "chat:message-edited") => self.put(&data["message"]),
            Some("chat:message-deleted") => {
                let m = self.known(&data["message_id"])?;
                m["body"] = Value::Null;
                m["metadata"] = Value::Null;
                m["mentions"] = json!([]);
                m["reactions"] = json!([]);
                m["deleted_at"] = data["deleted_at"].clone();
                m["rev"] = json!(rev);
            }
            Some("chat:reaction") => {
                let m = self.known(&data["message_id"])?;
                let list = m["reactions"].as_array_mut().ok_or("no reactions")?;
                let (emoji, user) = (&data["emoji"], &data["user_id"]);
                let at = list.iter().position(|r| r["emoji"] == *emoji);
                if data["on"] == true {
                    match at {
                        Some(i) => {
                            let users = list[i]["user_ids"].as_array_mut().ok_or("no users")?;
                            if !users.contains(user) {
                                users.push(user.clone());
                            }
                        }
                        None => list.push(json!({"emoji": emoji, "user_ids": [user]})),
                    }
                } else if let Some(i) = at {
                    let users = list[i]["user_ids"].as_array_mut().ok_or("no users")?;
                    users.retain(|u| u != user);
                    if users.is_empty() {
                        list.remove(i);
                    }
                }
                m["rev"] = json!(rev);
            }
            other => return Err(format!("not a change: {other:?}")),
        }
        Ok(())
    }

    fn known(&mut self, id: &Value) -> Result<&mut Value, String> {
        self.messages
            .get_mut(&id_of(id))
            .ok_or_else(|| format!("a change to unknown message {id}"))
    }

    /// Applies every live change that has arrived.
    async fn drain(&mut self, ws: &mut WsClient) -> Result<(), String> {
        ws.request("ping", json!({})).await;
        while let Some(frame) = ws.take_pending(is_change) {
            self.apply(&frame)?;
        }
        Ok(())
    }

    /// Reconnected: what chat:ready says was missed, through chat:sync
    /// (new messages) then chat:changes (everything else).
    async fn catch_up(&mut self, ws: &mut WsClient, thread: Uuid) -> Result<(), String> {
        loop {
            let page = ws
                .request(
                    "chat:sync",
                    json!({"thread_id": thread, "after_seq": self.seq, "limit": 2}),
                )
                .await;
            for m in page["data"]["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                self.put(&m);
            }
            if page["data"]["has_more"] != true {
                break;
            }
        }
        loop {
            let page = ws
                .request(
                    "chat:changes",
                    json!({"thread_id": thread, "after_rev": self.rev, "limit": 3}),
                )
                .await;
            for m in page["data"]["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                self.put(&m);
            }
            self.rev = page["data"]["last_rev"].as_i64().unwrap_or(self.rev);
            if page["data"]["has_more"] != true {
                break;
            }
        }
        self.refresh_quotes();
        let told = ws.ready_thread(thread)["last_rev"].as_i64().unwrap_or(0);
        if self.rev < told {
            return Err(format!("caught up to {} of {told}", self.rev));
        }
        Ok(())
    }
}

#[actix_web::test]
async fn a_client_rebuilt_with_sync_and_changes_holds_what_the_database_holds() {
    let app = spawn_app_with(|s| {
        s.websocket.rate_limit_burst = 100_000;
        s.websocket.rate_limit_per_second = 100_000.0;
    })
    .await;
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(8);
    let mut runner = TestRunner::new(Config::with_cases(cases));
    let strategy = vec(op(), 10..=40);
    for _ in 0..cases {
        let ops = strategy
            .new_tree(&mut runner)
            .expect("proptest draws a case")
            .current();
        if let Err(failure) = run_case(&app, &ops).await {
            panic!("{failure}\n---- ops ----\n{ops:#?}");
        }
    }
}

async fn run_case(app: &TestApp, ops: &[Op]) -> Result<(), String> {
    let users = app.users(3).await;
    let watcher = &users[2];
    let thread = app.group(&[&users[0], &users[1], watcher]).await;
    let mut writers = [app.connect(&users[0]).await, app.connect(&users[1]).await];
    let mut replica = Replica::default();
    let mut watching = Some(app.connect(watcher).await);
    // (message, its sender's index), in send order.
    let mut sent: Vec<(Value, usize)> = Vec::new();
    for op in ops {
        let pick = |pick: u8| (!sent.is_empty()).then(|| sent[pick as usize % sent.len()].clone());
        match *op {
            Op::Send { user } | Op::Reply { user, .. } => {
                let u = user as usize % 2;
                let mut data = json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(),
                                      "body": format!("from {u}"), "mentions": [watcher.id]});
                if let Op::Reply { pick: p, .. } = op {
                    if let Some((target, _)) = pick(*p) {
                        data["reply_to"] = target["id"].clone();
                    }
                }
                let ack = writers[u].request("chat:send", data).await;
                sent.push((ack["data"]["message"].clone(), u));
            }
            Op::Edit { pick: p, mention } => {
                if let Some((message, u)) = pick(p) {
                    let mentions = if mention {
                        json!([users[u].id])
                    } else {
                        json!([])
                    };
                    app.patch(
                        &format!("/api/messages/{}", id_of(&message["id"])),
                        &users[u].token,
                        json!({"body": "edited", "mentions": mentions}),
                    )
                    .await;
                }
            }
            Op::Delete { pick: p } => {
                if let Some((message, u)) = pick(p) {
                    app.delete(
                        &format!("/api/messages/{}", id_of(&message["id"])),
                        &users[u].token,
                    )
                    .await;
                }
            }
            Op::React {
                user,
                pick: p,
                emoji,
                on,
            } => {
                if let Some((message, _)) = pick(p) {
                    let u = user as usize % 2;
                    let emoji = ["👍", "🎉", "👀"][emoji as usize % 3];
                    writers[u]
                        .request(
                            "chat:react",
                            json!({"thread_id": thread, "message_id": message["id"],
                                   "emoji": emoji, "on": on}),
                        )
                        .await;
                }
            }
            Op::LostEdit { pick: p } => {
                if let Some((message, _)) = pick(p) {
                    lost_edit(app, &id_of(&message["id"])).await;
                }
            }
            Op::WatcherAway => {
                if let Some(mut ws) = watching.take() {
                    replica.drain(&mut ws).await?;
                    ws.close().await;
                }
            }
            Op::WatcherBack => {
                if watching.is_none() {
                    let mut ws = app.connect(watcher).await;
                    replica.catch_up(&mut ws, thread).await?;
                    watching = Some(ws);
                }
            }
        }
        if let Some(ws) = watching.as_mut() {
            replica.drain(ws).await?;
        }
    }
    let mut ws = match watching {
        Some(ws) => ws,
        None => {
            let mut ws = app.connect(watcher).await;
            replica.catch_up(&mut ws, thread).await?;
            ws
        }
    };
    // One more announced change, so a lost edit at the end is read back.
    writers[0].send_message(thread, "last").await;
    let last = last_rev(app, thread).await;
    while replica.rev < last {
        let frame = ws.wait_for(is_change, "a change still in flight").await;
        replica.apply(&frame)?;
    }
    let database: BTreeMap<String, Value> = all_changes(app, watcher, thread, 0)
        .await
        .into_iter()
        .map(|m| (id_of(&m["id"]), m))
        .collect();
    if replica.messages != database {
        return Err(format!(
            "the client holds\n{:#?}\nthe database\n{database:#?}",
            replica.messages
        ));
    }
    Ok(())
}

/// Edits a live message as PATCH would (next rev, logged), without telling
/// the hub.
async fn lost_edit(app: &TestApp, message_id: &str) {
    app.db()
        .await
        .exec(&format!(
            "WITH target AS (
                 SELECT id, thread_id FROM messages WHERE id = '{message_id}' AND deleted_at IS NULL),
             bumped AS (
                 UPDATE threads SET last_rev = last_rev + 1
                 WHERE id = (SELECT thread_id FROM target) RETURNING id, last_rev),
             edited AS (
                 UPDATE messages SET body = 'edited unannounced', edited_at = now(),
                                     rev = (SELECT last_rev FROM bumped)
                 WHERE id = (SELECT id FROM target)),
             creation AS (
                 INSERT INTO message_changes (thread_id, rev, message_id, kind)
                 SELECT thread_id, created_rev, id, 'created' FROM messages
                 WHERE id = '{message_id}' ON CONFLICT DO NOTHING)
             INSERT INTO message_changes (thread_id, rev, message_id, kind)
             SELECT id, last_rev, '{message_id}', 'edited' FROM bumped"
        ))
        .await;
}
