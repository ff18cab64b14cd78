//! Presence: who hears that a user came online or went offline, and what
//! the members endpoint shows.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, TestApp, TestUser};

fn presence(user: &TestUser, online: bool) -> Value {
    json!({"user_id": user.id, "online": online})
}

/// `online` of each member, as GET /api/threads/{id}/members shows it.
async fn online_flags(app: &TestApp, thread: Uuid, asker: &TestUser) -> Vec<(String, bool)> {
    let reply = app
        .get(&format!("/api/threads/{thread}/members"), &asker.token)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let members = reply.body["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members list: {reply:?}"));
    let mut flags: Vec<(String, bool)> = members
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap_or("?").to_string(),
                m["online"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("online must be a bool: {m}")),
            )
        })
        .collect();
    flags.sort();
    flags
}

#[actix_web::test]
async fn the_first_session_and_the_last_close_are_announced_to_users_sharing_a_thread() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    app.group(&[ann, bob]).await;
    // carl shares a thread with bob but not with ann.
    app.group(&[bob, carl]).await;
    let outsiders = app.users(2).await;
    app.group(&[&outsiders[0], &outsiders[1]]).await;

    let mut carl_ws = app.connect(carl).await;
    let mut outsider_ws = app.connect(&outsiders[0]).await;
    let mut bob_phone = app.connect(bob).await;
    assert_eq!(
        carl_ws.next_event("chat:presence").await,
        presence(bob, true)
    );
    // bob's second session is not news to anyone.
    let mut bob_laptop = app.connect(bob).await;
    carl_ws.assert_no_event("chat:presence").await;
    outsider_ws.assert_no_event("chat:presence").await;

    let ann_phone = app.connect(ann).await;
    for bob_ws in [&mut bob_phone, &mut bob_laptop] {
        assert_eq!(
            bob_ws.next_event("chat:presence").await,
            presence(ann, true)
        );
    }
    let ann_laptop = app.connect(ann).await;
    bob_phone.assert_no_event("chat:presence").await;
    bob_laptop.assert_no_event("chat:presence").await;

    ann_laptop.close().await;
    bob_phone.assert_no_event("chat:presence").await;
    bob_laptop.assert_no_event("chat:presence").await;

    ann_phone.close().await;
    for bob_ws in [&mut bob_phone, &mut bob_laptop] {
        assert_eq!(
            bob_ws.next_event("chat:presence").await,
            presence(ann, false)
        );
    }
    for stranger in [&mut carl_ws, &mut outsider_ws] {
        stranger
            .assert_none(
                |f| f["event"] == "chat:presence" && f["data"]["user_id"] == ann.id.to_string(),
                "ann's presence",
            )
            .await;
    }
}

#[actix_web::test]
async fn the_members_endpoint_shows_who_is_online() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob, carl]).await;
    let mut carl_ws = app.connect(carl).await;

    let ann_ws = app.connect(ann).await;
    assert_eq!(
        carl_ws.next_event("chat:presence").await,
        presence(ann, true)
    );
    let mut expected = vec![
        (ann.id.to_string(), true),
        (bob.id.to_string(), false),
        (carl.id.to_string(), true),
    ];
    expected.sort();
    assert_eq!(online_flags(&app, thread, bob).await, expected);

    let reply = app
        .get(&format!("/api/threads/{thread}/members"), &bob.token)
        .await;
    let member = reply.body["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["user_id"] == ann.id.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("ann is a member: {reply:?}"));
    assert_eq!(member["display_name"], "user0", "{member}");
    assert_eq!(member["last_delivered_seq"], 0, "{member}");
    assert_eq!(member["last_read_seq"], 0, "{member}");
    assert!(member["joined_at"].is_string(), "{member}");

    ann_ws.close().await;
    assert_eq!(
        carl_ws.next_event("chat:presence").await,
        presence(ann, false)
    );
    let mut expected = vec![
        (ann.id.to_string(), false),
        (bob.id.to_string(), false),
        (carl.id.to_string(), true),
    ];
    expected.sort();
    assert_eq!(online_flags(&app, thread, bob).await, expected);
}
