//! Deactivation and token revocation: the user's sessions close at once
//! (4003, 4001), their tokens are refused on HTTP and before the upgrade,
//! and tokens minted afterwards work again (after reactivation, for a
//! deactivated user).

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Error as WsError;
use uuid::Uuid;

use crate::support::ws::Ending;
use crate::support::{spawn_app, TestApp, TestUser};

async fn set_deactivated(app: &TestApp, user: &TestUser, deactivated: bool) -> Value {
    let reply = app
        .patch(
            &format!("/admin/users/{}", user.id),
            &app.admin_token.clone(),
            json!({ "deactivated": deactivated }),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

async fn fresh_token(app: &TestApp, user: &TestUser) -> String {
    let reply = app
        .admin_post(&format!("/admin/users/{}/tokens", user.id), json!({}))
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    reply.body["token"].as_str().unwrap().to_string()
}

/// The token is refused with 401 on HTTP and on the WebSocket upgrade.
async fn assert_refused(app: &TestApp, token: &str) {
    let reply = app.get("/api/threads", token).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    match crate::support::ws::WsClient::open(&app.ws_url, token).await {
        Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        Err(other) => panic!("the upgrade must be refused with 401: {other}"),
        Ok(_) => panic!("the upgrade must be refused"),
    }
}

async fn assert_accepted(app: &TestApp, token: &str) {
    let reply = app.get("/api/threads", token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

fn member<'a>(members: &'a Value, user: &TestUser) -> &'a Value {
    members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == json!(user.id))
        .unwrap_or_else(|| panic!("{} is no longer a member: {members}", user.id))
}

#[actix_web::test]
async fn deactivation_closes_every_session_with_4003_and_refuses_every_token() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, carl) = (&users[0], &users[1], &users[2]);
    let thread = app.group(&[ann, bob]).await;
    let mut bob_ws = app.connect(bob).await;
    let mut ann_phone = app.connect(ann).await;
    let mut ann_laptop = app.connect(ann).await;
    assert_eq!(
        bob_ws.next_event("chat:presence").await,
        json!({"user_id": ann.id, "online": true})
    );

    let view = set_deactivated(&app, ann, true).await;
    assert!(view["deactivated_at"].is_string(), "{view}");

    assert_eq!(ann_phone.ending().await, Ending::Closed(Some(4003)));
    assert_eq!(ann_laptop.ending().await, Ending::Closed(Some(4003)));
    assert_eq!(
        bob_ws.next_event("chat:presence").await,
        json!({"user_id": ann.id, "online": false})
    );
    assert_refused(&app, &ann.token).await;

    // Still a member, marked; not in the directory; cannot be added again.
    let members = app
        .get(&format!("/api/threads/{thread}/members"), &bob.token)
        .await;
    assert_eq!(members.status, 200, "{members:?}");
    assert!(member(&members.body, ann)["deactivated_at"].is_string());
    assert!(member(&members.body, bob)["deactivated_at"].is_null());
    let directory = app.get("/api/users", &bob.token).await;
    let listed: Vec<Uuid> = directory.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| crate::support::uuid(&u["id"]))
        .collect();
    assert!(!listed.contains(&ann.id), "{directory:?}");
    let other = app.group(&[bob, carl]).await;
    let added = app
        .post(
            &format!("/api/threads/{other}/members"),
            &bob.token,
            json!({"user_id": ann.id}),
        )
        .await;
    assert_eq!(added.status, 409, "{added:?}");
    let added = app
        .admin_post(
            &format!("/admin/threads/{other}/members"),
            json!({"user_id": ann.id}),
        )
        .await;
    assert_eq!(added.status, 409, "{added:?}");

    // Even a token minted while deactivated is refused.
    assert_refused(&app, &fresh_token(&app, ann).await).await;

    // Reactivation: the old token stays refused, a new one works.
    let view = set_deactivated(&app, ann, false).await;
    assert!(view["deactivated_at"].is_null(), "{view}");
    assert_refused(&app, &ann.token).await;
    let token = fresh_token(&app, ann).await;
    assert_accepted(&app, &token).await;
    let back = TestUser {
        token,
        ..ann.clone()
    };
    app.connect(&back).await;
    let members = app
        .get(&format!("/api/threads/{thread}/members"), &bob.token)
        .await;
    assert!(member(&members.body, ann)["deactivated_at"].is_null());
}

#[actix_web::test]
async fn revocation_closes_sessions_with_4001_and_only_later_tokens_work() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    let reply = app
        .admin_post(&format!("/admin/users/{}/tokens/revoke", ann.id), json!({}))
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(ann_ws.ending().await, Ending::Closed(Some(4001)));
    assert_refused(&app, &ann.token).await;

    // Minted right after, in the same second: it works.
    let token = fresh_token(&app, ann).await;
    assert_accepted(&app, &token).await;
    // Others are untouched.
    assert_accepted(&app, &bob.token).await;
    let pong = bob_ws.request("ping", json!({})).await;
    assert_eq!(pong["event"], "pong", "{pong}");
}

#[actix_web::test]
async fn unknown_users_are_404() {
    let app = spawn_app().await;
    let nobody = Uuid::now_v7();
    let reply = app
        .admin_post(&format!("/admin/users/{nobody}/tokens/revoke"), json!({}))
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    let reply = app
        .patch(
            &format!("/admin/users/{nobody}"),
            &app.admin_token.clone(),
            json!({"deactivated": true}),
        )
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
}
