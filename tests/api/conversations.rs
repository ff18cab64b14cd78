//! Members running their own group threads: renaming one (live
//! chat:thread-updated), and its creator removing members.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, uuid, TestApp, TestUser};

/// A group thread `creator` makes through the user API, so it has a
/// creator (the operator's threads have none).
async fn group_by(app: &TestApp, creator: &TestUser, others: &[&TestUser]) -> Uuid {
    let ids: Vec<Uuid> = others.iter().map(|u| u.id).collect();
    let reply = app
        .post(
            "/api/threads",
            &creator.token,
            json!({"title": "plans", "member_ids": ids}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    uuid(&reply.body["id"])
}

async fn rename(
    app: &TestApp,
    thread: Uuid,
    who: &TestUser,
    title: Value,
) -> crate::support::Reply {
    app.patch(
        &format!("/api/threads/{thread}"),
        &who.token,
        json!({ "title": title }),
    )
    .await
}

async fn membership_count(app: &TestApp, thread: Uuid) -> i64 {
    app.db()
        .await
        .count(&format!(
            "SELECT count(*) FROM memberships WHERE thread_id = '{thread}'"
        ))
        .await
}

#[actix_web::test]
async fn a_rename_reaches_every_members_sessions_as_each_of_them_sees_the_thread() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (ann, bob, carl, eve) = (&users[0], &users[1], &users[2], &users[3]);
    let thread = group_by(&app, ann, &[bob, carl]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_phone = app.connect(bob).await;
    let mut bob_laptop = app.connect(bob).await;
    let mut eve_ws = app.connect(eve).await;
    // ann has one unread message from bob; bob has none.
    let sent = bob_phone.send_message(thread, "hello").await;
    assert_eq!(ann_ws.next_event("chat:message").await["message"], sent);

    let reply = rename(&app, thread, bob, json!("  Launch plan ")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["id"], thread.to_string(), "{reply:?}");
    assert_eq!(reply.body["title"], "Launch plan", "{reply:?}");
    assert_eq!(reply.body["kind"], "group", "{reply:?}");
    assert_eq!(reply.body["last_seq"], 1, "{reply:?}");
    assert_eq!(reply.body["unread"], 0, "{reply:?}");

    for session in [&mut bob_phone, &mut bob_laptop] {
        let updated = session.next_event("chat:thread-updated").await;
        assert_eq!(updated["thread"], reply.body, "bob sees it as the answer");
    }
    let updated = ann_ws.next_event("chat:thread-updated").await;
    let seen = &updated["thread"];
    assert_eq!(seen["id"], thread.to_string(), "{updated}");
    assert_eq!(seen["title"], "Launch plan", "{updated}");
    assert_eq!(seen["created_by"], ann.id.to_string(), "{updated}");
    assert_eq!(seen["last_seq"], 1, "{updated}");
    assert_eq!(seen["unread"], 1, "ann's own unread count: {updated}");
    assert_eq!(seen["last_read_seq"], 0, "{updated}");
    eve_ws.assert_no_event("chat:thread-updated").await;

    // carl was offline: the list shows the new title.
    let list = app.get("/api/threads", &carl.token).await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.body["threads"][0]["title"], "Launch plan", "{list:?}");

    // null clears the title, for everyone.
    let cleared = rename(&app, thread, ann, Value::Null).await;
    assert_eq!(cleared.status, 200, "{cleared:?}");
    assert_eq!(cleared.body["title"], Value::Null, "{cleared:?}");
    let updated = bob_laptop.next_event("chat:thread-updated").await;
    assert_eq!(updated["thread"]["title"], Value::Null, "{updated}");
    let carl_ws = app.connect(carl).await;
    assert_eq!(carl_ws.ready_thread(thread)["title"], Value::Null);
}

#[actix_web::test]
async fn a_title_must_be_one_to_two_hundred_characters_or_null() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = group_by(&app, ann, &[bob]).await;
    let mut bob_ws = app.connect(bob).await;

    let longest = "é".repeat(200);
    let reply = rename(&app, thread, ann, json!(format!(" {longest} "))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["title"], longest.as_str());
    bob_ws.next_event("chat:thread-updated").await;

    for refused in [
        json!(""),
        json!("   \n"),
        json!("é".repeat(201)),
        json!("a\u{0}b"),
        json!(42),
    ] {
        let reply = rename(&app, thread, ann, refused.clone()).await;
        assert_eq!(reply.status, 400, "{refused}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "{refused}: {reply:?}");
    }
    let path = format!("/api/threads/{thread}");
    for body in [json!({}), json!({"title": "x", "kind": "direct"})] {
        let reply = app.patch(&path, &ann.token, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
    }
    bob_ws.assert_no_event("chat:thread-updated").await;
    let list = app.get("/api/threads", &bob.token).await;
    assert_eq!(
        list.body["threads"][0]["title"],
        longest.as_str(),
        "unchanged"
    );
}

#[actix_web::test]
async fn a_direct_thread_cannot_be_renamed_nor_a_thread_one_cannot_see() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, eve) = (&users[0], &users[1], &users[2]);
    let stranger = app.user(app.company().await).await;
    let direct = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"kind": "direct", "member_ids": [bob.id]}),
        )
        .await;
    let direct = uuid(&direct.body["id"]);
    let group = group_by(&app, ann, &[bob]).await;
    let mut bob_ws = app.connect(bob).await;

    let reply = rename(&app, direct, ann, json!("us")).await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert_eq!(reply.error_code(), "conflict", "{reply:?}");

    for (who, thread) in [(eve, group), (&stranger, group), (ann, Uuid::new_v4())] {
        let reply = rename(&app, thread, who, json!("mine now")).await;
        assert_eq!(reply.status, 404, "{reply:?}");
        assert_eq!(reply.error_code(), "not_found", "{reply:?}");
    }
    bob_ws.assert_no_event("chat:thread-updated").await;
    let list = app.get("/api/threads", &bob.token).await;
    for thread in list.body["threads"].as_array().unwrap() {
        assert_ne!(thread["title"], "mine now", "{list:?}");
        assert_ne!(thread["title"], "us", "{list:?}");
    }
}

#[actix_web::test]
async fn the_creator_removes_a_member_who_is_told_while_the_others_see_them_go() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = group_by(&app, ann, &[bob, carl]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_phone = app.connect(bob).await;
    let mut bob_laptop = app.connect(bob).await;
    let mut carl_ws = app.connect(carl).await;

    let reply = app
        .delete(
            &format!("/api/threads/{thread}/members/{}", bob.id),
            &ann.token,
        )
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    for session in [&mut bob_phone, &mut bob_laptop] {
        assert_eq!(
            session.next_event("chat:thread-left").await,
            json!({"thread_id": thread})
        );
    }
    for session in [&mut ann_ws, &mut carl_ws] {
        assert_eq!(
            session.next_event("chat:member-left").await,
            json!({"thread_id": thread, "user_id": bob.id})
        );
    }
    assert_eq!(membership_count(&app, thread).await, 2);

    // Gone from the room: the next message does not reach bob.
    let sent = carl_ws.send_message(thread, "without bob").await;
    assert_eq!(ann_ws.next_event("chat:message").await["message"], sent);
    bob_phone.assert_no_event("chat:message").await;

    // Someone no longer (or never) in the thread: 404.
    for absent in [bob.id, Uuid::new_v4()] {
        let reply = app
            .delete(
                &format!("/api/threads/{thread}/members/{absent}"),
                &ann.token,
            )
            .await;
        assert_eq!(reply.status, 404, "{reply:?}");
    }

    // The creator naming themself leaves, as with members/me.
    let reply = app
        .delete(
            &format!("/api/threads/{thread}/members/{}", ann.id),
            &ann.token,
        )
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(
        ann_ws.next_event("chat:thread-left").await,
        json!({"thread_id": thread})
    );
    assert_eq!(
        carl_ws.next_event("chat:member-left").await,
        json!({"thread_id": thread, "user_id": ann.id})
    );
    assert_eq!(membership_count(&app, thread).await, 1);
}

#[actix_web::test]
async fn only_the_creator_may_remove_others_and_never_from_a_direct_thread() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (ann, bob, carl, eve) = (&users[0], &users[1], &users[2], &users[3]);
    let stranger = app.user(app.company().await).await;
    let thread = group_by(&app, ann, &[bob, carl]).await;
    let by_operator = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;

    let remove = |thread: Uuid, user: Uuid| format!("/api/threads/{thread}/members/{user}");
    for (who, path) in [
        (bob, remove(thread, carl.id)),
        (bob, remove(thread, ann.id)),
        // Nobody created the operator's thread: no member may remove.
        (ann, remove(by_operator, bob.id)),
    ] {
        let reply = app.delete(&path, &who.token).await;
        assert_eq!(reply.status, 403, "{path}: {reply:?}");
        assert_eq!(reply.error_code(), "forbidden", "{reply:?}");
    }
    for (who, path) in [
        (eve, remove(thread, carl.id)),
        (&stranger, remove(thread, carl.id)),
        (ann, remove(Uuid::new_v4(), carl.id)),
    ] {
        let reply = app.delete(&path, &who.token).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        assert_eq!(reply.error_code(), "not_found", "{reply:?}");
    }
    let direct = app
        .post(
            "/api/threads",
            &ann.token,
            json!({"kind": "direct", "member_ids": [bob.id]}),
        )
        .await;
    let direct = uuid(&direct.body["id"]);
    let reply = app.delete(&remove(direct, bob.id), &ann.token).await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert_eq!(reply.error_code(), "conflict", "{reply:?}");

    ann_ws.assert_no_event("chat:member-left").await;
    assert_eq!(membership_count(&app, thread).await, 3);
    assert_eq!(membership_count(&app, by_operator).await, 2);
    assert_eq!(membership_count(&app, direct).await, 2);
    // members/me still means the caller.
    let reply = app
        .delete(&format!("/api/threads/{thread}/members/me"), &bob.token)
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(membership_count(&app, thread).await, 2);
}
