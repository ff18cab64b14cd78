//! A rename and a creator's removal made on one node reach the members'
//! sessions on another.

use reqwest::Method;
use serde_json::json;

use super::{cluster_config, start_cluster};
use crate::support::uuid;

#[actix_web::test]
async fn a_rename_and_a_removal_on_one_node_reach_sessions_on_another() {
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 2).await;
    let users = nodes[0].users(3).await;
    let (ann, bob, eve) = (&users[0], &users[1], &users[2]);
    let created = nodes[0]
        .request(
            Method::POST,
            "/api/threads",
            Some(&ann.token),
            Some(json!({"title": "plans", "member_ids": [bob.id]})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let thread = uuid(&created.body["id"]);
    let mut bob_b = nodes[1].connect(bob).await;
    let mut eve_b = nodes[1].connect(eve).await;

    let renamed = nodes[0]
        .request(
            Method::PATCH,
            &format!("/api/threads/{thread}"),
            Some(&ann.token),
            Some(json!({"title": "Launch"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    let updated = bob_b.next_event("chat:thread-updated").await;
    assert_eq!(updated["thread"]["id"], thread.to_string(), "{updated}");
    assert_eq!(updated["thread"]["title"], "Launch", "{updated}");
    assert_eq!(updated["thread"]["unread"], 0, "{updated}");
    eve_b.assert_no_event("chat:thread-updated").await;

    let removed = nodes[0]
        .request(
            Method::DELETE,
            &format!("/api/threads/{thread}/members/{}", bob.id),
            Some(&ann.token),
            None,
        )
        .await;
    assert_eq!(removed.status, 204, "{removed:?}");
    assert_eq!(
        bob_b.next_event("chat:thread-left").await,
        json!({"thread_id": thread})
    );
}
