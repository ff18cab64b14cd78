//! Threads and members changing while users are online: creation, adding,
//! leaving, operator changes, and the refusals.

use futures_util::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::db::Db;
use crate::support::{spawn_app, uuid, TestUser};

async fn membership_count(db: &mut Db, thread: Uuid, user: &TestUser) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}'",
        user.id
    ))
    .await
}

fn member_event(thread: Uuid, user: &TestUser) -> Value {
    json!({"thread_id": thread, "user_id": user.id})
}

#[actix_web::test]
async fn creating_a_group_joins_its_online_members_to_the_room_live() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (ann, bob, carl, eve) = (&users[0], &users[1], &users[2], &users[3]);
    let mut ann_ws = app.connect(ann).await;
    let mut bob_phone = app.connect(bob).await;
    let mut bob_laptop = app.connect(bob).await;
    let mut eve_ws = app.connect(eve).await;

    let reply = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"title": "plans", "member_ids": [bob.id, carl.id]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let thread = uuid(&reply.body["id"]);
    assert_eq!(reply.body["kind"], "group", "{reply:?}");
    assert_eq!(reply.body["title"], "plans", "{reply:?}");
    assert_eq!(reply.body["created_by"], ann.id.to_string(), "{reply:?}");
    assert_eq!(reply.body["company_id"], ann.company_id.to_string());
    assert_eq!(reply.body["last_seq"], 0, "{reply:?}");

    for session in [&mut ann_ws, &mut bob_phone, &mut bob_laptop] {
        let joined = session.next_event("chat:thread-joined").await;
        let t = &joined["thread"];
        assert_eq!(t["id"], thread.to_string(), "{joined}");
        assert_eq!(t["kind"], "group", "{joined}");
        assert_eq!(t["title"], "plans", "{joined}");
        assert_eq!(t["last_seq"], 0, "{joined}");
        assert_eq!(t["last_delivered_seq"], 0, "{joined}");
        assert_eq!(t["last_read_seq"], 0, "{joined}");
        assert_eq!(t["unread"], 0, "{joined}");
    }
    eve_ws.assert_no_event("chat:thread-joined").await;

    // In the room from then on, without reconnecting.
    let message = bob_phone.send_message(thread, "first").await;
    for session in [&mut ann_ws, &mut bob_laptop] {
        assert_eq!(session.next_event("chat:message").await["message"], message);
    }
    eve_ws.assert_no_event("chat:message").await;

    // carl was offline: his next session starts with the thread.
    let carl_ws = app.connect(carl).await;
    assert_eq!(
        carl_ws.ready_thread(thread)["last_seq"],
        1,
        "{}",
        carl_ws.ready
    );
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE thread_id = '{thread}'"
        ))
        .await,
        3,
        "the creator is a member too"
    );
}

#[actix_web::test]
async fn creating_a_direct_thread_twice_returns_the_same_thread() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let mut ann_ws = app.connect(ann).await;

    let first = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"kind": "direct", "member_ids": [bob.id]}),
        )
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.body["kind"], "direct", "{first:?}");
    ann_ws.next_event("chat:thread-joined").await;

    let again = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"kind": "direct", "member_ids": [bob.id]}),
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["id"], first.body["id"], "{again:?}");
    let from_bob = app
        .post(
            "/api/threads",
            &bob.token,
            json!({"kind": "direct", "member_ids": [ann.id]}),
        )
        .await;
    assert_eq!(from_bob.status, 200, "{from_bob:?}");
    assert_eq!(from_bob.body["id"], first.body["id"], "{from_bob:?}");
    ann_ws.assert_no_event("chat:thread-joined").await;

    let mut db = app.db().await;
    assert_eq!(
        db.count("SELECT count(*) FROM threads WHERE kind = 'direct'")
            .await,
        1
    );
}

#[actix_web::test]
async fn an_added_member_joins_live_with_cursors_at_the_last_seq() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut carl_phone = app.connect(carl).await;
    let mut carl_laptop = app.connect(carl).await;
    for body in ["a", "b", "c"] {
        ann_ws.send_message(thread, body).await;
    }

    let reply = app
        .post(
            &format!("/api/threads/{thread}/members"),
            &ann.token,
            json!({"user_id": carl.id}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.body, member_event(thread, carl), "{reply:?}");

    for session in [&mut carl_phone, &mut carl_laptop] {
        let joined = session.next_event("chat:thread-joined").await;
        let t = &joined["thread"];
        assert_eq!(t["id"], thread.to_string(), "{joined}");
        assert_eq!(t["last_seq"], 3, "{joined}");
        assert_eq!(t["last_delivered_seq"], 3, "{joined}");
        assert_eq!(t["last_read_seq"], 3, "{joined}");
        assert_eq!(t["unread"], 0, "{joined}");
        session.assert_no_event("chat:member-joined").await;
    }
    for session in [&mut ann_ws, &mut bob_ws] {
        assert_eq!(
            session.next_event("chat:member-joined").await,
            member_event(thread, carl)
        );
    }
    let mut db = app.db().await;
    let row = format!(
        "FROM memberships WHERE thread_id = '{thread}' AND user_id = '{}'",
        carl.id
    );
    assert_eq!(
        db.count(&format!("SELECT last_delivered_seq {row}")).await,
        3
    );
    assert_eq!(db.count(&format!("SELECT last_read_seq {row}")).await, 3);

    let message = bob_ws.send_message(thread, "welcome").await;
    for session in [&mut carl_phone, &mut carl_laptop] {
        assert_eq!(session.next_event("chat:message").await["message"], message);
    }
}

#[actix_web::test]
async fn a_member_who_leaves_hears_nothing_more_of_the_thread() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob, carl]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    let mut carl_phone = app.connect(carl).await;
    let mut carl_laptop = app.connect(carl).await;

    let reply = app
        .delete(&format!("/api/threads/{thread}/members/me"), &carl.token)
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    for session in [&mut carl_phone, &mut carl_laptop] {
        assert_eq!(
            session.next_event("chat:thread-left").await,
            json!({"thread_id": thread})
        );
    }
    for session in [&mut ann_ws, &mut bob_ws] {
        assert_eq!(
            session.next_event("chat:member-left").await,
            member_event(thread, carl)
        );
    }
    let mut db = app.db().await;
    assert_eq!(membership_count(&mut db, thread, carl).await, 0);

    let message = ann_ws.send_message(thread, "after carl left").await;
    let typing = ann_ws
        .request("chat:typing-start", json!({"thread_id": thread}))
        .await;
    assert_eq!(typing["event"], "chat:ack", "{typing}");
    assert_eq!(bob_ws.next_event("chat:message").await["message"], message);
    bob_ws.next_event("chat:typing").await;
    for session in [&mut carl_phone, &mut carl_laptop] {
        session
            .assert_none(
                |f| f["event"] != "chat:presence",
                "anything of the thread left",
            )
            .await;
    }
    let send = carl_phone
        .request(
            "chat:send",
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": "back?"}),
        )
        .await;
    assert_eq!(send["event"], "chat:error", "{send}");
    assert_eq!(send["data"]["code"], "not_member", "{send}");
}

/// Sessions that connect while a membership changes end up on one side of
/// it: a session either lists the thread in chat:ready or is told of the
/// change live, and afterwards hears the thread's messages exactly when
/// the user is a member. (The connect sequence chooses its rooms from a
/// snapshot taken at the upgrade and corrects them once registered.)
#[actix_web::test]
async fn sessions_connecting_while_a_membership_changes_see_one_side_of_it() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, carl) = (&users[0], &users[1]);
    let thread = app.group(&[ann]).await;
    let mut ann_ws = app.connect(ann).await;
    let in_thread = |f: &Value| {
        f["event"] == "chat:message" && f["data"]["message"]["thread_id"] == thread.to_string()
    };
    let (members, me) = (
        format!("/api/threads/{thread}/members"),
        format!("/api/threads/{thread}/members/me"),
    );
    for round in 0..3 {
        let connects = join_all((0..6).map(|_| app.connect(carl)));
        let add = app.post(&members, &ann.token, json!({"user_id": carl.id}));
        let (mut joined, reply) = futures_util::join!(connects, add);
        assert_eq!(reply.status, 201, "round {round}: {reply:?}");
        for session in &mut joined {
            if session.ready_thread(thread) == Value::Null {
                session.next_event("chat:thread-joined").await;
            }
        }
        let message = ann_ws.send_message(thread, &format!("in {round}")).await;
        for session in &mut joined {
            let got = session.next_event("chat:message").await;
            assert_eq!(got["message"], message, "round {round}");
        }

        let connects = join_all((0..6).map(|_| app.connect(carl)));
        let remove = app.delete(&me, &carl.token);
        let (mut left, reply) = futures_util::join!(connects, remove);
        assert_eq!(reply.status, 204, "round {round}: {reply:?}");
        for session in &mut left {
            if session.ready_thread(thread) != Value::Null {
                let gone = session.next_event("chat:thread-left").await;
                assert_eq!(gone, json!({"thread_id": thread}), "round {round}");
            }
        }
        ann_ws.send_message(thread, &format!("out {round}")).await;
        join_all(
            joined
                .iter_mut()
                .chain(left.iter_mut())
                .map(|session| session.assert_none(in_thread, "a message after carl left")),
        )
        .await;
    }
}

#[actix_web::test]
async fn an_operator_adds_and_removes_members_live() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut carl_ws = app.connect(carl).await;

    let reply = app
        .admin_post(
            &format!("/admin/threads/{thread}/members"),
            json!({"user_id": carl.id}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let joined = carl_ws.next_event("chat:thread-joined").await;
    assert_eq!(joined["thread"]["id"], thread.to_string(), "{joined}");
    assert_eq!(
        ann_ws.next_event("chat:member-joined").await,
        member_event(thread, carl)
    );
    let message = ann_ws.send_message(thread, "hi carl").await;
    assert_eq!(carl_ws.next_event("chat:message").await["message"], message);

    let reply = app
        .admin_delete(&format!("/admin/threads/{thread}/members/{}", carl.id))
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(
        carl_ws.next_event("chat:thread-left").await,
        json!({"thread_id": thread})
    );
    assert_eq!(
        ann_ws.next_event("chat:member-left").await,
        member_event(thread, carl)
    );
    ann_ws.send_message(thread, "bye carl").await;
    carl_ws.assert_no_event("chat:message").await;
    let mut db = app.db().await;
    assert_eq!(membership_count(&mut db, thread, carl).await, 0);
}

#[actix_web::test]
async fn adding_a_user_of_another_company_is_not_found() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let outsider = app.user(app.company().await).await;
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut outsider_ws = app.connect(&outsider).await;

    let reply = app
        .post(
            &format!("/api/threads/{thread}/members"),
            &ann.token,
            json!({"user_id": outsider.id}),
        )
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(reply.error_code(), "not_found", "{reply:?}");
    let reply = app
        .admin_post(
            &format!("/admin/threads/{thread}/members"),
            json!({"user_id": outsider.id}),
        )
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(reply.error_code(), "not_found", "{reply:?}");

    outsider_ws.assert_no_event("chat:thread-joined").await;
    ann_ws.assert_no_event("chat:member-joined").await;
    let mut db = app.db().await;
    assert_eq!(membership_count(&mut db, thread, &outsider).await, 0);
}

#[actix_web::test]
async fn a_non_member_cannot_add_members() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (ann, bob, carl, dan) = (&users[0], &users[1], &users[2], &users[3]);
    let thread = app.group(&[ann, bob]).await;
    let mut dan_ws = app.connect(dan).await;

    for user in [carl, dan] {
        let reply = app
            .post(
                &format!("/api/threads/{thread}/members"),
                &carl.token,
                json!({"user_id": user.id}),
            )
            .await;
        assert_eq!(reply.status, 404, "{reply:?}");
        assert_eq!(reply.error_code(), "not_found", "{reply:?}");
    }
    dan_ws.assert_no_event("chat:thread-joined").await;
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE thread_id = '{thread}'"
        ))
        .await,
        2
    );
}

#[actix_web::test]
async fn direct_threads_refuse_member_changes_and_existing_members_conflict() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let direct = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"kind": "direct", "member_ids": [bob.id]}),
        )
        .await;
    assert_eq!(direct.status, 201, "{direct:?}");
    let direct = uuid(&direct.body["id"]);
    let group = app.group(&[ann, bob]).await;

    let conflicts = [
        app.post(
            &format!("/api/threads/{direct}/members"),
            &ann.token,
            json!({"user_id": carl.id}),
        )
        .await,
        app.delete(&format!("/api/threads/{direct}/members/me"), &ann.token)
            .await,
        app.admin_post(
            &format!("/admin/threads/{direct}/members"),
            json!({"user_id": carl.id}),
        )
        .await,
        app.admin_delete(&format!("/admin/threads/{direct}/members/{}", bob.id))
            .await,
        app.post(
            &format!("/api/threads/{group}/members"),
            &ann.token,
            json!({"user_id": bob.id}),
        )
        .await,
        app.admin_post(
            &format!("/admin/threads/{group}/members"),
            json!({"user_id": bob.id}),
        )
        .await,
    ];
    for reply in conflicts {
        assert_eq!(reply.status, 409, "{reply:?}");
        assert_eq!(reply.error_code(), "conflict", "{reply:?}");
    }
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE thread_id = '{direct}'"
        ))
        .await,
        2
    );
    assert_eq!(membership_count(&mut db, direct, carl).await, 0);
}
