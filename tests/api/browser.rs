//! The web client in a real browser: two headless chromium sessions chat
//! through confab's own page (`e2e/chat.spec.mjs`, playwright-core), with
//! the Origin allowlist on. This test sets the scene over the admin API and
//! the WebSocket, runs the spec, and then checks from the server's side
//! that what the browsers did really happened.
//!
//! Needs node, Debian's chromium and e2e's pinned playwright-core; the test
//! installs the last two when missing (support/tools.rs). Screenshots land
//! in target/e2e-screenshots/.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::Command;

use crate::support::{spawn_app_with, tools, TestApp, TestUser};

const HISTORY_SIZE: usize = 75;
/// More colleagues than one directory page of the client (25) holds.
const COLLEAGUES: usize = 30;
const SPEC_TIMEOUT: Duration = Duration::from_secs(240);

/// The allowlist must name the page's own origin, which includes the port,
/// so the port is chosen before the server starts. Another process could
/// take it in between; the OS hands out ephemeral ports round-robin, so
/// that is unlikely enough for a test.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

async fn titled_group(app: &TestApp, title: &str, members: &[&TestUser]) -> uuid::Uuid {
    let ids: Vec<_> = members.iter().map(|u| u.id).collect();
    let reply = app
        .admin_post(
            "/admin/threads",
            json!({"company_id": members[0].company_id, "title": title, "member_ids": ids}),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    crate::support::uuid(&reply.body["id"])
}

#[actix_rt::test]
async fn two_people_chat_in_two_browser_sessions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = tools::chromium();
    tools::playwright(root);

    let port = free_port();
    let app = spawn_app_with(|settings| {
        settings.bind = format!("127.0.0.1:{port}");
        settings.allowed_origins = vec![format!("http://127.0.0.1:{port}")];
        // Seeding the history sends faster than a person types.
        settings.websocket.rate_limit_burst = 1000;
    })
    .await;

    let company = app.company().await;
    let alice = app.named_user(company, "Alice").await;
    let bob = app.named_user(company, "Bob").await;
    let carol = app.named_user(company, "Carol").await;
    let dave = app.named_user(company, "Dave").await;
    let erin = app.named_user(company, "Erin").await;
    for n in 1..=COLLEAGUES {
        app.named_user(company, &format!("Colleague {n:02}")).await;
    }
    // Erin is deactivated during the spec; her name stays in this list.
    let alumni = titled_group(&app, "alumni", &[&alice, &bob, &erin]).await;
    let history = titled_group(&app, "archive", &[&alice, &bob]).await;
    let side = titled_group(&app, "random", &[&alice, &bob]).await;
    let team = titled_group(&app, "team", &[&alice, &bob]).await;
    // Bob never opens this one.
    let quiet = titled_group(&app, "plans", &[&alice, &bob]).await;

    let mut seeder = app.connect(&alice).await;
    for n in 1..=HISTORY_SIZE {
        seeder.send_message(history, &format!("history {n}")).await;
    }
    seeder.close().await;

    let screenshots = root.join("target/e2e-screenshots");
    let spec = Command::new("node")
        .arg("e2e/chat.spec.mjs")
        .current_dir(root)
        .env("BASE_URL", &app.base)
        .env("ADMIN_TOKEN", &app.admin_token)
        .env("USER_A_ID", alice.id.to_string())
        .env("TOKEN_A", &alice.token)
        .env("NAME_A", "Alice")
        .env("TOKEN_B", &bob.token)
        .env("NAME_B", "Bob")
        .env("USER_B_ID", bob.id.to_string())
        .env("USER_C_ID", carol.id.to_string())
        .env("NAME_C", "Carol")
        .env("TOKEN_C", &carol.token)
        .env("USER_D_ID", dave.id.to_string())
        .env("NAME_D", "Dave")
        .env("USER_E_ID", erin.id.to_string())
        .env("TOKEN_E", &erin.token)
        .env("NAME_E", "Erin")
        .env("ALUMNI_THREAD_ID", alumni.to_string())
        // Alice, Bob, Carol, Dave and the colleagues; not Erin.
        .env("DIRECTORY_SIZE", (4 + COLLEAGUES).to_string())
        .env("TEAM_THREAD_ID", team.to_string())
        .env("SIDE_THREAD_ID", side.to_string())
        .env("QUIET_THREAD_ID", quiet.to_string())
        .env("HISTORY_THREAD_ID", history.to_string())
        .env("HISTORY_SIZE", HISTORY_SIZE.to_string())
        .env("SCREENSHOT_DIR", &screenshots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SPEC_TIMEOUT, spec)
        .await
        .expect("the browser spec finishes in time")
        .expect("node runs (is it installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Shown on success too: each step and how long it took.
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the browser spec failed ({})",
        output.status
    );
    assert!(
        stdout.contains(" passed, 0 failed"),
        "no summary line:\n{stdout}"
    );

    // What the browsers did is what the server stored.
    let page = app
        .get(&format!("/api/threads/{team}/messages"), &alice.token)
        .await;
    assert_eq!(page.status, 200, "{page:?}");
    let messages = page.body["messages"].as_array().expect("messages");
    // Files (e2e: filesSteps): four uploads, each its own message.
    let files: Vec<(&Value, &Value)> = messages
        .iter()
        .filter(|m| m["metadata"]["upload_id"].is_string())
        .map(|m| (&m["type"], &m["metadata"]["name"]))
        .collect();
    assert_eq!(
        files,
        [
            (&json!("image"), &json!("photo.png")),
            (&json!("file"), &json!("report.pdf")),
            (&json!("file"), &json!("dropped.txt")),
            (&json!("file"), &json!("pasted.txt")),
        ],
        "{messages:#?}"
    );
    let messages: Vec<&Value> = messages
        .iter()
        .filter(|m| !m["metadata"]["upload_id"].is_string())
        .collect();
    let bodies: Vec<&Value> = messages.iter().map(|m| &m["body"]).collect();
    assert_eq!(
        bodies,
        [
            &json!("Hello B, this is A (edited)\nand a second line"),
            &Value::Null,
            &json!("Yes, typing a reply right now"),
            &json!("Sent while B was offline"),
            &json!("Queued while offline"),
            &json!("Yes, here: replying to that"),
            &json!("Thanks @Bob can you check this (edited while B was away)"),
            &json!("Sent from a narrow screen"),
        ],
        "{messages:#?}"
    );
    assert!(messages[0]["edited_at"].is_string());
    assert!(messages[1]["deleted_at"].is_string());
    // Bob's reply, Alice's mention of Bob (kept through her edit), and the
    // reactions left once Alice took hers back.
    assert_eq!(messages[5]["reply_to"]["id"], messages[3]["id"]);
    assert_eq!(messages[6]["mentions"], json!([bob.id]));
    assert_eq!(
        messages[5]["reactions"],
        json!([
            {"emoji": "👍", "user_ids": [bob.id]},
            {"emoji": "🚀", "user_ids": [bob.id]},
        ])
    );

    let members = app
        .get(&format!("/api/threads/{team}/members"), &alice.token)
        .await;
    let bob_cursor = member(&members.body, bob.id);
    // Seq 4 is Alice's last message; Bob's own (5) needs no reading.
    assert!(
        bob_cursor["last_read_seq"].as_i64() >= Some(4),
        "Bob's client read everything it was shown: {bob_cursor}"
    );
    assert!(
        !members.body["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["user_id"] == json!(carol.id)),
        "the operator removed Carol again"
    );
    let bobs = app.get("/api/threads", &bob.token).await;
    let bob_threads: Vec<_> = bobs.body["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| crate::support::uuid(&t["id"]))
        .collect();
    assert!(!bob_threads.contains(&side), "{bob_threads:?}");

    // Bob's client, reconnecting twice and signing in once more, never
    // reported the message it was only told about in "plans" (seq 2) as
    // delivered: only the one it got live (seq 1).
    let plans = app
        .get(&format!("/api/threads/{quiet}/messages"), &alice.token)
        .await;
    let plans_bodies: Vec<&Value> = plans.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| &m["body"])
        .collect();
    assert_eq!(
        plans_bodies,
        [&Value::Null, &json!("Sent to plans while B was away")],
        "{plans:?}"
    );
    let plans_members = app
        .get(&format!("/api/threads/{quiet}/members"), &alice.token)
        .await;
    let bob_in_plans = member(&plans_members.body, bob.id);
    assert_eq!(
        bob_in_plans["last_delivered_seq"],
        json!(1),
        "{bob_in_plans}"
    );
    assert_eq!(bob_in_plans["last_read_seq"], json!(0), "{bob_in_plans}");

    // Bob left the untitled group from the page; Alice is still in it.
    let alices = app.get("/api/threads", &alice.token).await;
    let untitled_group = alices.body["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["kind"] == json!("group") && t["title"].is_null())
        .expect("Alice's untitled group");
    let group = crate::support::uuid(&untitled_group["id"]);
    assert!(!bob_threads.contains(&group), "{bob_threads:?}");
    let group_members = app
        .get(&format!("/api/threads/{group}/members"), &alice.token)
        .await;
    let ids: Vec<&Value> = group_members.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| &m["user_id"])
        .collect();
    assert_eq!(ids, [&json!(alice.id)], "{group_members:?}");

    // The group Alice started from the people panel, that Bob renamed and
    // Alice added Dave to and removed Carol from.
    let launch = alices.body["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["title"] == json!("launch crew"))
        .unwrap_or_else(|| panic!("the renamed group: {alices:?}"));
    assert_eq!(launch["kind"], json!("group"), "{launch}");
    assert_eq!(launch["created_by"], json!(alice.id), "{launch}");
    let launch = crate::support::uuid(&launch["id"]);
    assert_eq!(
        member_ids(&app, launch, &alice).await,
        [alice.id, bob.id, dave.id].into_iter().collect()
    );
    let mut db = app.db().await;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM memberships WHERE thread_id = '{launch}' AND user_id = '{}'",
            carol.id
        ))
        .await,
        0,
        "Carol's membership row is gone"
    );

    // Direct threads started from the page: Alice and Carol (with Alice's
    // message), Bob and Dave (from the narrow screen); Bob messaging Alice
    // opened their existing one instead of a second.
    assert_eq!(
        direct_partners(&app, &alice).await,
        [bob.id, carol.id].into_iter().collect(),
        "Alice's direct threads"
    );
    assert_eq!(
        direct_partners(&app, &bob).await,
        [alice.id, dave.id].into_iter().collect(),
        "Bob's direct threads"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM messages m JOIN threads t ON t.id = m.thread_id \
             WHERE t.kind = 'direct' AND m.sender_id = '{}' AND m.body = 'Hi Carol, a direct message'",
            alice.id
        ))
        .await,
        1
    );

    // Carol renamed herself, then her tokens were revoked; Erin was deactivated.
    let carol_now = app
        .get(&format!("/api/users/{}", carol.id), &alice.token)
        .await;
    assert_eq!(
        carol_now.body["display_name"],
        json!("Carol Jones"),
        "{carol_now:?}"
    );
    assert_eq!(app.get("/api/me", &carol.token).await.status, 401);
    let erin_now = app
        .get(&format!("/api/users/{}", erin.id), &alice.token)
        .await;
    assert!(erin_now.body["deactivated_at"].is_string(), "{erin_now:?}");
    assert_eq!(
        member_ids(&app, alumni, &alice).await,
        [alice.id, bob.id, erin.id].into_iter().collect(),
        "a deactivated member stays in the thread"
    );
}

async fn member_ids(app: &TestApp, thread: uuid::Uuid, viewer: &TestUser) -> BTreeSet<uuid::Uuid> {
    let reply = app
        .get(&format!("/api/threads/{thread}/members"), &viewer.token)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| crate::support::uuid(&m["user_id"]))
        .collect()
}

/// The other member of each of `user`'s direct threads.
async fn direct_partners(app: &TestApp, user: &TestUser) -> BTreeSet<uuid::Uuid> {
    let threads = app.get("/api/threads", &user.token).await;
    let mut partners = BTreeSet::new();
    let mut directs = 0;
    for thread in threads.body["threads"].as_array().expect("threads") {
        if thread["kind"] != json!("direct") {
            continue;
        }
        directs += 1;
        let id = crate::support::uuid(&thread["id"]);
        partners.extend(
            member_ids(app, id, user)
                .await
                .into_iter()
                .filter(|m| *m != user.id),
        );
    }
    assert_eq!(directs, partners.len(), "one direct thread per partner");
    partners
}

fn member(members: &Value, user: uuid::Uuid) -> Value {
    members["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["user_id"] == json!(user))
        .unwrap_or_else(|| panic!("{user} is a member: {members}"))
        .clone()
}

/// Notifications in the browser (`e2e/push.spec.mjs`): this test is the
/// push service. It subscribes Bob with keys of its own, has Alice send
/// while Bob is offline, and decrypts the server's push; the spec delivers
/// that payload to the page's service worker (headless chromium cannot
/// subscribe to a push service itself) and checks the notification, the
/// unread count in the title, and the link a click opens.
#[actix_rt::test]
async fn notifications_reach_the_service_worker_and_the_tab_title() {
    use crate::support::push_service::{Browser, PushService};

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = tools::chromium();
    tools::playwright(root);
    let app = spawn_app_with(|settings| settings.notifications.delay_ms = 300).await;
    let company = app.company().await;
    let alice = app.named_user(company, "Alice").await;
    let bob = app.named_user(company, "Bob").await;
    let team = titled_group(&app, "team", &[&alice, &bob]).await;
    let quiet = titled_group(&app, "quiet", &[&alice, &bob]).await;

    let mut service = PushService::start().await;
    let browser = Browser::new(service.endpoint());
    let reply = app
        .post(
            "/api/push-subscriptions",
            &bob.token,
            browser.subscription(),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let mut alice_ws = app.connect(&alice).await;
    alice_ws.send_message(team, "are you there?").await;
    let payload = browser.decrypt(&service.next().await);
    assert_eq!(payload["body"], "Alice: are you there?");
    alice_ws.close().await;

    let spec = Command::new("node")
        .arg("e2e/push.spec.mjs")
        .current_dir(root)
        .env("BASE_URL", &app.base)
        .env("TOKEN_A", &alice.token)
        .env("NAME_A", "Alice")
        .env("TOKEN_B", &bob.token)
        .env("TEAM_THREAD_ID", team.to_string())
        .env("QUIET_THREAD_ID", quiet.to_string())
        .env("PUSH_PAYLOAD", payload.to_string())
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SPEC_TIMEOUT, spec)
        .await
        .expect("the browser spec finishes in time")
        .expect("node runs (is it installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the push spec failed ({})",
        output.status
    );
    assert!(
        stdout.contains(" passed, 0 failed"),
        "no summary line:\n{stdout}"
    );
}
