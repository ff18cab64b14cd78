//! Nothing crosses companies: a user of company B naming company A's
//! thread, message or users gets exactly what a made-up id gets, changes
//! nothing, and A's members hear nothing; and the database itself refuses
//! rows that would join two companies.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, uuid, TestApp, TestUser, WsClient};

/// Company A (a1 and a2 in `thread_a`, a3 outside it) and company B (b1
/// and b2 in `thread_b`).
struct Tenants {
    app: TestApp,
    a1: TestUser,
    a2: TestUser,
    a3: TestUser,
    b1: TestUser,
    b2: TestUser,
    thread_a: Uuid,
    thread_b: Uuid,
}

async fn two_companies() -> Tenants {
    let app = spawn_app().await;
    let company_a = app.company().await;
    let company_b = app.company().await;
    let a1 = app.named_user(company_a, "a1").await;
    let a2 = app.named_user(company_a, "a2").await;
    let a3 = app.named_user(company_a, "a3").await;
    let b1 = app.named_user(company_b, "b1").await;
    let b2 = app.named_user(company_b, "b2").await;
    let thread_a = app.group(&[&a1, &a2]).await;
    let thread_b = app.group(&[&b1, &b2]).await;
    Tenants {
        app,
        a1,
        a2,
        a3,
        b1,
        b2,
        thread_a,
        thread_b,
    }
}

async fn connection(app: &TestApp) -> AsyncPgConnection {
    AsyncPgConnection::establish(&app.db_url)
        .await
        .expect("connect to the test database")
}

#[derive(QueryableByName)]
struct Snapshot {
    #[diesel(sql_type = Text)]
    snapshot: String,
}

/// Every row of a thread (the thread, its memberships, its messages) as
/// text, to compare before and after.
async fn snapshot(app: &TestApp, thread: Uuid) -> String {
    let sql = format!(
        "SELECT concat_ws(' | ',
            (SELECT row_to_json(t)::text FROM threads t WHERE t.id = '{thread}'),
            (SELECT string_agg(row_to_json(m)::text, ', ' ORDER BY m.user_id)
               FROM memberships m WHERE m.thread_id = '{thread}'),
            (SELECT string_agg(row_to_json(x)::text, ', ' ORDER BY x.seq)
               FROM messages x WHERE x.thread_id = '{thread}')) AS snapshot"
    );
    let row: Snapshot = diesel::sql_query(&sql)
        .get_result(&mut connection(app).await)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.snapshot
}

/// Runs a statement that must fail, and returns how it failed.
async fn refused(app: &TestApp, sql: &str) -> DieselError {
    match diesel::sql_query(sql)
        .execute(&mut connection(app).await)
        .await
    {
        Ok(rows) => panic!("the database accepted {rows} row(s): {sql}"),
        Err(e) => e,
    }
}

fn assert_foreign_key_violation(error: &DieselError, what: &str) {
    assert!(
        matches!(
            error,
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
        ),
        "{what} must fail on a foreign key, got {error:?}"
    );
}

/// Connects a1 then a2 and waits for the presence a1 gets of a2, so that
/// afterwards any frame either of them gets is news.
async fn connect_company_a(t: &Tenants) -> (WsClient, WsClient) {
    let mut a1 = t.app.connect(&t.a1).await;
    let a2 = t.app.connect(&t.a2).await;
    let presence = a1.next_event("chat:presence").await;
    assert_eq!(
        presence,
        json!({"user_id": t.a2.id, "online": true}),
        "a1 sees a2 come online"
    );
    (a1, a2)
}

/// Every client event that names a thread.
const CLIENT_EVENTS: [&str; 6] = [
    "chat:send",
    "chat:delivered",
    "chat:mark-read",
    "chat:typing-start",
    "chat:typing-stop",
    "chat:sync",
];

/// Valid data for `event` naming `thread`.
fn event_data(event: &str, thread: Uuid) -> Value {
    match event {
        "chat:send" => {
            json!({"thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": "hi A"})
        }
        "chat:delivered" | "chat:mark-read" => json!({"thread_id": thread, "up_to_seq": 2}),
        "chat:sync" => json!({"thread_id": thread, "after_seq": 0}),
        _ => json!({"thread_id": thread}),
    }
}

// ---- WebSocket ----------------------------------------------------------

#[actix_web::test]
async fn every_client_event_on_another_companys_thread_is_not_member_like_a_made_up_one() {
    let t = two_companies().await;
    let app = &t.app;
    let mut a1 = app.connect(&t.a1).await;
    a1.send_message(t.thread_a, "secret one").await;
    a1.send_message(t.thread_a, "secret two").await;
    let mut a2 = app.connect(&t.a2).await;
    a1.next_event("chat:presence").await;
    let mut b1 = app.connect(&t.b1).await;
    let before = snapshot(app, t.thread_a).await;

    for event in CLIENT_EVENTS {
        let theirs = b1.request(event, event_data(event, t.thread_a)).await;
        let made_up = b1.request(event, event_data(event, Uuid::new_v4())).await;
        assert_eq!(theirs["event"], "chat:error", "{event}: {theirs}");
        assert_eq!(theirs["data"]["code"], "not_member", "{event}: {theirs}");
        assert_eq!(
            theirs["data"], made_up["data"],
            "{event}: another company's thread answers like no thread"
        );
        // Without a ref, the error still comes.
        b1.emit(event, event_data(event, t.thread_a)).await;
        let error = b1.next_event("chat:error").await;
        assert_eq!(error["code"], "not_member", "{event} without ref: {error}");
    }

    a1.assert_silent().await;
    a2.assert_silent().await;
    assert_eq!(
        snapshot(app, t.thread_a).await,
        before,
        "A's thread is untouched"
    );
    assert_eq!(
        app.db()
            .await
            .count(&format!(
                "SELECT count(*) FROM messages WHERE sender_id = '{}'",
                t.b1.id
            ))
            .await,
        0
    );

    // b1's session carries on in its own company.
    let mut b2 = app.connect(&t.b2).await;
    let sent = b1.send_message(t.thread_b, "hi B").await;
    assert_eq!(b2.next_event("chat:message").await["message"], sent);
    a1.assert_no_event("chat:message").await;
}

#[actix_web::test]
async fn presence_of_a_user_never_reaches_another_company() {
    let t = two_companies().await;
    let app = &t.app;
    let (mut a1, mut a2) = connect_company_a(&t).await;
    let mut b2 = app.connect(&t.b2).await;

    let b1 = app.connect(&t.b1).await;
    assert_eq!(
        b2.next_event("chat:presence").await,
        json!({"user_id": t.b1.id, "online": true}),
        "b1's co-member sees b1 come online"
    );
    b1.close().await;
    assert_eq!(
        b2.next_event("chat:presence").await,
        json!({"user_id": t.b1.id, "online": false}),
        "b1's co-member sees b1 go offline"
    );

    a1.assert_silent().await;
    a2.assert_silent().await;
}

// ---- HTTP ---------------------------------------------------------------

#[actix_web::test]
async fn every_thread_and_message_endpoint_answers_another_companys_ids_like_made_up_ones() {
    let t = two_companies().await;
    let app = &t.app;
    let mut a1 = app.connect(&t.a1).await;
    let message_a = a1.send_message(t.thread_a, "A only").await;
    let message_a = uuid(&message_a["id"]);
    let mut a2 = app.connect(&t.a2).await;
    a1.next_event("chat:presence").await;
    let before = snapshot(app, t.thread_a).await;

    let endpoints = |thread: Uuid, message: Uuid| -> Vec<(Method, String, Option<Value>)> {
        vec![
            (Method::GET, format!("/api/threads/{thread}/messages"), None),
            (
                Method::GET,
                format!("/api/threads/{thread}/messages?after_seq=0"),
                None,
            ),
            (Method::GET, format!("/api/threads/{thread}/members"), None),
            (
                Method::POST,
                format!("/api/threads/{thread}/members"),
                Some(json!({"user_id": t.b1.id})),
            ),
            (
                Method::POST,
                format!("/api/threads/{thread}/members"),
                Some(json!({"user_id": t.a3.id})),
            ),
            (
                Method::DELETE,
                format!("/api/threads/{thread}/members/me"),
                None,
            ),
            (
                Method::PATCH,
                format!("/api/messages/{message}"),
                Some(json!({"body": "hijacked"})),
            ),
            (Method::DELETE, format!("/api/messages/{message}"), None),
        ]
    };
    let theirs = endpoints(t.thread_a, message_a);
    let made_up = endpoints(Uuid::new_v4(), Uuid::new_v4());
    for ((method, path, body), (_, made_up_path, _)) in theirs.iter().zip(&made_up) {
        let reply = app
            .request(method.clone(), path, Some(&t.b1.token), body.clone())
            .await;
        let control = app
            .request(
                method.clone(),
                made_up_path,
                Some(&t.b1.token),
                body.clone(),
            )
            .await;
        assert_eq!(reply.status, 404, "{method} {path}: {reply:?}");
        assert_eq!(
            reply.error_code(),
            "not_found",
            "{method} {path}: {reply:?}"
        );
        assert_eq!(
            reply.body, control.body,
            "{method} {path} answers like a made-up id"
        );
    }

    let listed = app.get("/api/threads", &t.b1.token).await;
    let ids: Vec<Uuid> = listed.body["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|th| uuid(&th["id"]))
        .collect();
    assert_eq!(ids, vec![t.thread_b], "b1 lists only B's thread");

    assert_eq!(
        snapshot(app, t.thread_a).await,
        before,
        "A's thread is untouched"
    );
    a1.assert_silent().await;
    a2.assert_silent().await;
}

#[actix_web::test]
async fn a_user_of_another_company_cannot_be_added_to_a_thread_or_put_in_a_new_one() {
    let t = two_companies().await;
    let app = &t.app;
    let before_b = snapshot(app, t.thread_b).await;
    let mut a1 = app.connect(&t.a1).await;

    // Adding A's user to B's own thread: like adding a made-up user.
    let path = format!("/api/threads/{}/members", t.thread_b);
    let foreign = app
        .post(&path, &t.b1.token, json!({"user_id": t.a3.id}))
        .await;
    let made_up = app
        .post(&path, &t.b1.token, json!({"user_id": Uuid::new_v4()}))
        .await;
    assert_eq!(foreign.status, 404, "{foreign:?}");
    assert_eq!(foreign.error_code(), "not_found");
    assert_eq!(foreign.body, made_up.body);

    // Creating a thread with A's user, group or direct.
    for kind in ["group", "direct"] {
        let foreign = app
            .post(
                "/api/threads",
                &t.b1.token,
                json!({"kind": kind, "member_ids": [t.a1.id]}),
            )
            .await;
        let made_up = app
            .post(
                "/api/threads",
                &t.b1.token,
                json!({"kind": kind, "member_ids": [Uuid::new_v4()]}),
            )
            .await;
        assert_eq!(foreign.status, 404, "{kind}: {foreign:?}");
        assert_eq!(foreign.error_code(), "not_found", "{kind}: {foreign:?}");
        assert_eq!(foreign.body, made_up.body, "{kind}");
    }

    let mut db = app.db().await;
    assert_eq!(db.count("SELECT count(*) FROM threads").await, 2);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE user_id IN ('{}', '{}')",
            t.a1.id, t.a3.id
        ))
        .await,
        1,
        "a1 is still only in A's thread, a3 in none"
    );
    assert_eq!(snapshot(app, t.thread_b).await, before_b);
    a1.assert_silent().await;
}

// ---- the database -------------------------------------------------------

#[actix_web::test]
async fn the_database_refuses_a_membership_joining_two_companies() {
    let t = two_companies().await;
    let app = &t.app;
    let (company_a, company_b) = (t.a1.company_id, t.b1.company_id);

    for company in [company_a, company_b] {
        let error = refused(
            app,
            &format!(
                "INSERT INTO memberships (thread_id, user_id, company_id)
                 VALUES ('{}', '{}', '{company}')",
                t.thread_a, t.b1.id
            ),
        )
        .await;
        assert_foreign_key_violation(
            &error,
            &format!("B's user in A's thread, labelled company {company}"),
        );
    }

    // The same statement for a user of A goes in: the refusal was the
    // company's, not the statement's.
    let inserted = diesel::sql_query(format!(
        "INSERT INTO memberships (thread_id, user_id, company_id) VALUES ('{}', '{}', '{company_a}')",
        t.thread_a, t.a3.id
    ))
    .execute(&mut connection(app).await)
    .await
    .expect("a same-company membership goes in");
    assert_eq!(inserted, 1);

    assert_eq!(
        app.db()
            .await
            .count(&format!(
                "SELECT count(*) FROM memberships WHERE user_id = '{}'",
                t.b1.id
            ))
            .await,
        1,
        "b1 is only in B's thread"
    );
}

#[actix_web::test]
async fn the_database_refuses_a_message_whose_sender_is_of_another_company() {
    let t = two_companies().await;
    let app = &t.app;
    let (company_a, company_b) = (t.a1.company_id, t.b1.company_id);
    let insert = |company: Uuid, sender: Uuid, seq: i64| {
        format!(
            "INSERT INTO messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind, body,
                                   rev, created_rev)
             VALUES (gen_random_uuid(), '{}', '{company}', {seq}, '{sender}', gen_random_uuid(), 'text', 'x',
                     {seq}, {seq})",
            t.thread_a
        )
    };

    for company in [company_a, company_b] {
        let error = refused(app, &insert(company, t.b1.id, 1)).await;
        assert_foreign_key_violation(
            &error,
            &format!("B's sender in A's thread, labelled company {company}"),
        );
    }

    let inserted = diesel::sql_query(insert(company_a, t.a1.id, 1))
        .execute(&mut connection(app).await)
        .await
        .expect("a same-company message goes in");
    assert_eq!(inserted, 1);

    assert_eq!(
        app.db()
            .await
            .count(&format!(
                "SELECT count(*) FROM messages WHERE sender_id = '{}'",
                t.b1.id
            ))
            .await,
        0
    );
}
