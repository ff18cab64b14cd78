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

    // Committed as chat:send would, but never announced to the hub.
    let mut db = app.db().await;
    db.exec(&format!(
        "WITH bumped AS (
             UPDATE threads SET last_seq = last_seq + 1, last_rev = last_rev + 1 WHERE id = '{thread}'
             RETURNING id, company_id, last_seq, last_rev),
         inserted AS (
             INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind,
                                   body, rev, created_rev)
             SELECT gen_random_uuid(), id, company_id, last_seq, '{}', gen_random_uuid(), 'text',
                    'unannounced', last_rev, last_rev
             FROM bumped
             RETURNING id, thread_id, rev)
         INSERT INTO message_changes (thread_id, rev, message_id, kind)
         SELECT thread_id, rev, id, 'created' FROM inserted",
        ann.id
    ))
    .await;

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
