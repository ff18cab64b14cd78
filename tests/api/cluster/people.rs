//! People across nodes: a rename reaches co-members wherever they are
//! connected, even from a node where the renamed user is not.

use reqwest::Method;
use serde_json::json;

use super::{cluster_config, start_cluster};

#[actix_web::test]
async fn a_rename_on_one_node_reaches_co_members_on_another() {
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 2).await;
    let users = nodes[0].users(3).await;
    let (ann, bob, cat) = (&users[0], &users[1], &users[2]);
    nodes[0].group(&[ann, bob]).await;
    // Ann is online nowhere: node 2 knows nothing of her threads but what
    // the event carries.
    let mut bob_2 = nodes[1].connect(bob).await;
    let mut cat_2 = nodes[1].connect(cat).await;

    let renamed = nodes[0]
        .request(
            Method::PATCH,
            "/api/me",
            Some(&ann.token),
            Some(json!({"display_name": "Ann from node 1"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    let expected = json!({"user": {"id": ann.id, "display_name": "Ann from node 1"}});
    assert_eq!(bob_2.next_event("chat:user-updated").await, expected);
    cat_2.assert_no_event("chat:user-updated").await;

    // And her own session on the other node hears of an operator's rename.
    let mut ann_2 = nodes[1].connect(ann).await;
    let reply = nodes[0]
        .request(
            Method::PATCH,
            &format!("/admin/users/{}", ann.id),
            Some(&config.admin_token),
            Some(json!({"display_name": "Ann again"})),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let expected = json!({"user": {"id": ann.id, "display_name": "Ann again"}});
    assert_eq!(ann_2.next_event("chat:user-updated").await, expected);
    assert_eq!(bob_2.next_event("chat:user-updated").await, expected);
}

#[actix_web::test]
async fn deactivation_and_revocation_on_one_node_close_sessions_on_another() {
    use crate::support::ws::Ending;
    let mut config = cluster_config();
    let nodes = start_cluster(&mut config, 2).await;
    let users = nodes[0].users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let mut ann_2 = nodes[1].connect(ann).await;
    let mut bob_2 = nodes[1].connect(bob).await;

    let reply = nodes[0]
        .request(
            Method::PATCH,
            &format!("/admin/users/{}", ann.id),
            Some(&config.admin_token),
            Some(json!({"deactivated": true})),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(ann_2.ending().await, Ending::Closed(Some(4003)));

    let reply = nodes[0]
        .request(
            Method::POST,
            &format!("/admin/users/{}/tokens/revoke", bob.id),
            Some(&config.admin_token),
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert_eq!(bob_2.ending().await, Ending::Closed(Some(4001)));
}
