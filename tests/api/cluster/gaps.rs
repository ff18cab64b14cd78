//! A seq whose announcement never reaches the hub is read back from the
//! database after the reorder hold, not skipped. The same hub code serves
//! a cluster node whose bus lost an event; here the lost announcement is a
//! message written to the database behind the server's back.

use crate::support::metrics::scrape;
use crate::support::spawn_app;

#[actix_web::test]
async fn a_seq_never_announced_is_read_back_and_delivered_in_order() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let mut ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;
    // Other servers in this process read back too: at least one more.
    let gap = [("reason", "gap")];
    let read_backs = scrape(&app.base)
        .await
        .value("confab_gap_fill_read_backs_total", &gap);

    // Committed as chat:send would (a send writes no change-log row), but
    // never announced to the hub.
    unannounced_send(&app, thread, ann.id, "unannounced").await;

    let announced = ann_ws.send_message(thread, "announced").await;
    assert_eq!(announced["seq"], 2);
    let first = bob_ws.next_event("chat:message").await["message"].clone();
    assert_eq!(first["seq"], 1, "{first}");
    assert_eq!(first["body"], "unannounced", "{first}");
    assert_eq!(
        bob_ws.next_event("chat:message").await["message"],
        announced
    );
    bob_ws.assert_no_event("chat:message").await;
    let after = scrape(&app.base)
        .await
        .value("confab_gap_fill_read_backs_total", &gap);
    assert!(
        after >= read_backs + 1.0,
        "gap read-backs went from {read_backs} to {after}"
    );
}

/// A message whose creation was never announced and which was then edited
/// through the API: its row's rev is now the edit's, so only the creation
/// row the edit logged says what its first rev was. The read-back must
/// deliver the creation (with the current body), then the edit.
#[actix_web::test]
async fn an_unannounced_message_edited_later_is_read_back_at_its_creation_rev() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let (ann, bob) = (&users[0], &users[1]);
    let thread = app.group(&[ann, bob]).await;
    let _ann_ws = app.connect(ann).await;
    let mut bob_ws = app.connect(bob).await;

    let message_id = unannounced_send(&app, thread, ann.id, "first draft").await;
    let edited = app
        .patch(
            &format!("/api/messages/{message_id}"),
            &ann.token,
            serde_json::json!({"body": "final"}),
        )
        .await;
    assert_eq!(edited.status, 200, "{:?}", edited.body);
    assert_eq!(edited.body["rev"], 2, "{:?}", edited.body);

    let created = bob_ws.next_event("chat:message").await["message"].clone();
    assert_eq!(created["seq"], 1, "{created}");
    assert_eq!(created["rev"], 1, "{created}");
    assert_eq!(created["body"], "final", "current state: {created}");
    let edit = bob_ws.next_event("chat:message-edited").await;
    assert_eq!(edit["message"]["rev"], 2, "{edit}");
    bob_ws.assert_no_event("chat:message").await;
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM message_changes
             WHERE message_id = '{message_id}' AND kind = 'created' AND rev = 1"
        ))
        .await,
        1,
        "the edit logged the creation"
    );
}

/// Inserts a message as the group commit does (next seq and rev, no
/// change-log row) without telling the hub; returns its id.
async fn unannounced_send(
    app: &crate::support::TestApp,
    thread: impl std::fmt::Display,
    sender: uuid::Uuid,
    body: &str,
) -> String {
    let id = uuid::Uuid::now_v7();
    app.db()
        .await
        .exec(&format!(
            "WITH bumped AS (
                 UPDATE threads SET last_seq = last_seq + 1, last_rev = last_rev + 1
                 WHERE id = '{thread}'
                 RETURNING id, company_id, last_seq, last_rev)
             INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind,
                                   body, rev, created_rev)
             SELECT '{id}', id, company_id, last_seq, '{sender}', gen_random_uuid(), 'text',
                    '{body}', last_rev, last_rev
             FROM bumped"
        ))
        .await;
    id.to_string()
}
