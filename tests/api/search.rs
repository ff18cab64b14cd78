//! Search: full-text over the messages a user can read now, newest first,
//! with highlights that are safe to insert as HTML.

use std::collections::HashSet;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, spawn_app_with, uuid, Reply, TestApp, TestUser};

/// `text` as a query-string value.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn search(app: &TestApp, user: &TestUser, query: &str) -> Reply {
    app.get(&format!("/api/search?q={}", encoded(query)), &user.token)
        .await
}

/// The bodies of a results page, newest first.
fn bodies(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {reply:?}"))
        .iter()
        .map(|r| r["message"]["body"].as_str().unwrap().to_string())
        .collect()
}

async fn found(app: &TestApp, user: &TestUser, query: &str) -> Vec<String> {
    bodies(&search(app, user, query).await)
}

/// Sends each body in order over one session; returns the acked messages.
async fn send_all(app: &TestApp, user: &TestUser, thread: Uuid, texts: &[&str]) -> Vec<Value> {
    let mut ws = app.connect(user).await;
    let mut sent = Vec::new();
    for text in texts {
        sent.push(ws.send_message(thread, text).await);
    }
    sent
}

#[actix_web::test]
async fn every_word_must_match_phrases_keep_order_and_minus_excludes() {
    let app = spawn_app().await;
    let [ann, bob] = <[TestUser; 2]>::try_from(app.users(2).await).unwrap();
    let thread = app.group(&[&ann, &bob]).await;
    send_all(
        &app,
        &ann,
        thread,
        &[
            "the quarterly report is late",
            "report the numbers by friday",
            "late lunch today?",
            "quarterly numbers look good",
        ],
    )
    .await;

    // Newest first; both words must be there.
    assert_eq!(
        found(&app, &bob, "report").await,
        [
            "report the numbers by friday",
            "the quarterly report is late"
        ]
    );
    assert_eq!(
        found(&app, &bob, "quarterly report").await,
        ["the quarterly report is late"]
    );
    assert!(found(&app, &bob, "quarterly lunch").await.is_empty());
    // A phrase needs its words side by side, in order.
    assert_eq!(
        found(&app, &bob, "\"numbers look\"").await,
        ["quarterly numbers look good"]
    );
    assert!(found(&app, &bob, "\"look numbers\"").await.is_empty());
    // -word leaves out messages holding it.
    assert_eq!(
        found(&app, &bob, "quarterly -report").await,
        ["quarterly numbers look good"]
    );
    // Case does not matter.
    assert_eq!(found(&app, &bob, "LUNCH").await, ["late lunch today?"]);
}

#[actix_web::test]
async fn english_word_forms_are_stemmed() {
    let app = spawn_app().await;
    let [ann, bob] = <[TestUser; 2]>::try_from(app.users(2).await).unwrap();
    let thread = app.group(&[&ann, &bob]).await;
    send_all(&app, &ann, thread, &["the dogs were running", "a cat sat"]).await;

    assert_eq!(
        found(&app, &bob, "dog run").await,
        ["the dogs were running"]
    );
    assert_eq!(found(&app, &bob, "runs").await, ["the dogs were running"]);
    let reply = search(&app, &bob, "runs").await;
    assert_eq!(
        reply.body["results"][0]["highlight"],
        "the dogs were <mark>running</mark>"
    );
}

#[actix_web::test]
async fn only_threads_the_caller_is_a_member_of_now_in_their_company_are_searched() {
    let app = spawn_app().await;
    let company = app.company().await;
    let ann = app.user(company).await;
    let bob = app.user(company).await;
    let carol = app.user(company).await;
    let ours = app.group(&[&ann, &bob]).await;
    let theirs = app.group(&[&bob, &carol]).await;
    let other_company = app.company().await;
    let (mallory, trent) = (app.user(other_company).await, app.user(other_company).await);
    let elsewhere = app.group(&[&mallory, &trent]).await;

    send_all(&app, &ann, ours, &["pineapple in ours"]).await;
    send_all(&app, &carol, theirs, &["pineapple in theirs"]).await;
    send_all(&app, &mallory, elsewhere, &["pineapple elsewhere"]).await;

    assert_eq!(found(&app, &ann, "pineapple").await, ["pineapple in ours"]);
    assert_eq!(
        found(&app, &bob, "pineapple").await,
        ["pineapple in theirs", "pineapple in ours"]
    );
    assert_eq!(
        found(&app, &mallory, "pineapple").await,
        ["pineapple elsewhere"]
    );

    // Having left a thread, bob no longer finds what it holds.
    let left = app
        .delete(&format!("/api/threads/{theirs}/members/me"), &bob.token)
        .await;
    assert!((200..300).contains(&left.status), "{left:?}");
    assert_eq!(found(&app, &bob, "pineapple").await, ["pineapple in ours"]);
}

#[actix_web::test]
async fn thread_id_narrows_and_a_thread_the_caller_cannot_see_is_not_found() {
    let app = spawn_app().await;
    let company = app.company().await;
    let ann = app.user(company).await;
    let bob = app.user(company).await;
    let carol = app.user(company).await;
    let first = app.group(&[&ann, &bob]).await;
    let second = app.group(&[&ann, &bob]).await;
    let without_ann = app.group(&[&bob, &carol]).await;
    send_all(&app, &bob, first, &["budget one"]).await;
    send_all(&app, &bob, second, &["budget two"]).await;
    send_all(&app, &bob, without_ann, &["budget three"]).await;

    let narrowed = app
        .get(
            &format!("/api/search?q=budget&thread_id={first}"),
            &ann.token,
        )
        .await;
    assert_eq!(bodies(&narrowed), ["budget one"]);
    for thread in [without_ann, Uuid::new_v4()] {
        let hidden = app
            .get(
                &format!("/api/search?q=budget&thread_id={thread}"),
                &ann.token,
            )
            .await;
        assert_eq!(hidden.status, 404, "{hidden:?}");
        assert_eq!(hidden.error_code(), "not_found");
    }
    let malformed = app
        .get("/api/search?q=budget&thread_id=nope", &ann.token)
        .await;
    assert_eq!(malformed.status, 400, "{malformed:?}");
}

#[actix_web::test]
async fn deleted_messages_never_match_and_edited_ones_match_their_new_body_only() {
    let app = spawn_app().await;
    let [ann, bob] = <[TestUser; 2]>::try_from(app.users(2).await).unwrap();
    let thread = app.group(&[&ann, &bob]).await;
    let sent = send_all(
        &app,
        &ann,
        thread,
        &["walrus to be deleted", "walrus to be edited", "walrus kept"],
    )
    .await;
    let deleted = app
        .delete(
            &format!("/api/messages/{}", uuid(&sent[0]["id"])),
            &ann.token,
        )
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let edited = app
        .patch(
            &format!("/api/messages/{}", uuid(&sent[1]["id"])),
            &ann.token,
            json!({"body": "penguin now"}),
        )
        .await;
    assert_eq!(edited.status, 200, "{edited:?}");

    assert_eq!(found(&app, &bob, "walrus").await, ["walrus kept"]);
    assert!(found(&app, &bob, "deleted").await.is_empty());
    assert!(found(&app, &bob, "edited").await.is_empty());
    let penguin = search(&app, &bob, "penguin").await;
    assert_eq!(bodies(&penguin), ["penguin now"]);
    let hit = &penguin.body["results"][0]["message"];
    assert_eq!(uuid(&hit["id"]), uuid(&sent[1]["id"]));
    assert!(hit["edited_at"].is_string(), "{hit}");
}

#[actix_web::test]
async fn highlights_escape_the_body_and_mark_only_the_matches() {
    let app = spawn_app().await;
    let [ann, bob] = <[TestUser; 2]>::try_from(app.users(2).await).unwrap();
    let thread = app.group(&[&ann, &bob]).await;
    let body = "<script>alert('pwned')</script> & \"alert\" <mark>x</mark> \u{1}alert\u{2}";
    let sent = send_all(&app, &ann, thread, &[body]).await;

    let reply = search(&app, &bob, "alert").await;
    assert_eq!(bodies(&reply), [body]);
    let result = &reply.body["results"][0];
    // The message is the one sent, as history shows it.
    assert_eq!(result["message"], sent[0]);
    assert_eq!(
        result["highlight"],
        "&lt;script&gt;<mark>alert</mark>(&#39;pwned&#39;)&lt;/script&gt; &amp; \
         &quot;<mark>alert</mark>&quot; &lt;mark&gt;x&lt;/mark&gt; \u{1}<mark>alert</mark>\u{2}"
    );
    // Words inside what looks like a tag are words too.
    assert_eq!(found(&app, &bob, "script").await, [body]);
    assert_eq!(found(&app, &bob, "pwned").await, [body]);
}

#[actix_web::test]
async fn pages_walk_every_match_newest_first_without_repeats_or_gaps() {
    // 46 sends in a row: more than the default burst, so a fast machine
    // would meet the rate limit, which is not what this test is about.
    let app = spawn_app_with(|s| s.websocket.rate_limit_burst = 100).await;
    let [ann, bob] = <[TestUser; 2]>::try_from(app.users(2).await).unwrap();
    let first = app.group(&[&ann, &bob]).await;
    let second = app.group(&[&ann, &bob]).await;
    let mut ws = app.connect(&ann).await;
    let mut expected = Vec::new();
    for i in 0..23 {
        let thread = if i % 2 == 0 { first } else { second };
        let message = ws.send_message(thread, &format!("ticket {i}")).await;
        expected.push(uuid(&message["id"]));
        ws.send_message(thread, &format!("noise {i}")).await;
    }
    expected.reverse();

    let mut seen = Vec::new();
    let mut path = "/api/search?q=ticket&limit=5".to_string();
    let mut pages = 0;
    loop {
        let page = app.get(&path, &bob.token).await;
        assert_eq!(page.status, 200, "{page:?}");
        pages += 1;
        seen.extend(
            page.body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| uuid(&r["message"]["id"])),
        );
        match page.body["next"].as_str() {
            Some(next) => path = format!("/api/search?q=ticket&limit=5&before={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, expected);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 23);

    // The default page is 20.
    let default = app.get("/api/search?q=ticket", &bob.token).await;
    assert_eq!(default.body["results"].as_array().unwrap().len(), 20);
    assert!(default.body["next"].is_string());
    let all = app.get("/api/search?q=ticket&limit=100", &bob.token).await;
    assert_eq!(all.body["results"].as_array().unwrap().len(), 23);
    assert!(all.body["next"].is_null());
}

#[actix_web::test]
async fn blank_queries_bad_limits_and_made_up_cursors_are_bad_requests() {
    let app = spawn_app().await;
    let ann = app.users(1).await.remove(0);
    for path in [
        "/api/search",
        "/api/search?q=",
        "/api/search?q=%20%09%0A",
        "/api/search?q=a%00b",
        "/api/search?q=x&limit=0",
        "/api/search?q=x&limit=101",
        "/api/search?q=x&limit=many",
        "/api/search?q=x&before=",
        "/api/search?q=x&before=zz",
        "/api/search?q=x&before=0000000000000000000000000000000g",
    ] {
        let reply = app.get(path, &ann.token).await;
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request", "{path}");
    }
    let long = "a".repeat(1001);
    assert_eq!(search(&app, &ann, &long).await.status, 400);
    for path in ["/api/search?q=x&limit=1", "/api/search?q=x&limit=100"] {
        assert_eq!(app.get(path, &ann.token).await.status, 200, "{path}");
    }
    // Words the index leaves out (English stop words) or punctuation
    // alone find nothing rather than fail.
    assert!(found(&app, &ann, "the").await.is_empty());
    assert!(found(&app, &ann, "!!! \"").await.is_empty());
    assert_eq!(app.get("/api/search?q=x", "nonsense").await.status, 401);
}
