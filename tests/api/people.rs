//! People: the company directory, one colleague, renaming yourself with
//! its live chat:user-updated, and the operator's external ids.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app, uuid, Reply, TestApp, TestUser};

/// The ids and names of a directory page, in order.
fn listed(reply: &Reply) -> Vec<(Uuid, String)> {
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users in {reply:?}"))
        .iter()
        .map(|u| {
            (
                uuid(&u["id"]),
                u["display_name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn names(reply: &Reply) -> Vec<String> {
    listed(reply).into_iter().map(|(_, name)| name).collect()
}

async fn admin_get(app: &TestApp, path: &str) -> Reply {
    app.get(path, &app.admin_token.clone()).await
}

async fn admin_patch(app: &TestApp, path: &str, body: Value) -> Reply {
    app.patch(path, &app.admin_token.clone(), body).await
}

async fn new_user(app: &TestApp, company: Uuid, body: Value) -> Reply {
    let mut body = body;
    body["company_id"] = json!(company);
    app.admin_post("/admin/users", body).await
}

#[actix_web::test]
async fn the_directory_finds_any_part_of_a_name_ignoring_case_in_the_callers_company_only() {
    let app = spawn_app().await;
    let company = app.company().await;
    let me = app.named_user(company, "Quentin").await;
    for name in ["Annabelle Smith", "Bob MARSH", "Carol", "50% Dan_"] {
        app.named_user(company, name).await;
    }
    let other_company = app.company().await;
    app.named_user(other_company, "Marsha Elsewhere").await;

    let found = app.get("/api/users?q=arS", &me.token).await;
    assert_eq!(names(&found), ["Bob MARSH"]);
    assert_eq!(
        names(&app.get("/api/users?q=BELLE%20sm", &me.token).await),
        ["Annabelle Smith"]
    );
    // % and _ are the letters themselves, not wildcards.
    assert_eq!(
        names(&app.get("/api/users?q=%25", &me.token).await),
        ["50% Dan_"]
    );
    assert_eq!(
        names(&app.get("/api/users?q=n_", &me.token).await),
        ["50% Dan_"]
    );
    assert!(names(&app.get("/api/users?q=zzz", &me.token).await).is_empty());

    // Without q: everyone active in the company, the caller included, in
    // name order ignoring case; never the other company's Marsha.
    let everyone = app.get("/api/users", &me.token).await;
    assert_eq!(
        names(&everyone),
        [
            "50% Dan_",
            "Annabelle Smith",
            "Bob MARSH",
            "Carol",
            "Quentin"
        ]
    );
    assert_eq!(everyone.body["next"], Value::Null);
    let entry = &everyone.body["users"][0];
    let mut keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["display_name", "id", "online"]);
}

#[actix_web::test]
async fn accents_are_ignored_where_the_database_has_unaccent() {
    let app = spawn_app().await;
    let company = app.company().await;
    let me = app.named_user(company, "Me").await;
    app.named_user(company, "Zoë Éclair").await;
    let unaccent = app
        .db()
        .await
        .count("SELECT count(*) FROM pg_extension WHERE extname = 'unaccent'")
        .await;
    let found = names(&app.get("/api/users?q=zoe%20ecl", &me.token).await);
    if unaccent == 1 {
        assert_eq!(found, ["Zoë Éclair"]);
    } else {
        assert!(found.is_empty(), "{found:?}");
    }
    // Case is ignored either way, accented letters included.
    assert_eq!(
        names(&app.get("/api/users?q=ZOË", &me.token).await),
        ["Zoë Éclair"]
    );
}

#[actix_web::test]
async fn paging_with_next_walks_every_user_once_in_order() {
    let app = spawn_app().await;
    let company = app.company().await;
    let me = app.named_user(company, "me").await;
    // Equal names, names differing only in case: the id breaks ties.
    for name in [
        "kim", "Kim", "kim", "al", "Zed", "bea", "BEA", "carl", "kim",
    ] {
        app.named_user(company, name).await;
    }
    let all = listed(&app.get("/api/users?limit=200", &me.token).await);
    assert_eq!(all.len(), 10);

    for limit in [1, 3, 4] {
        let mut walked = Vec::new();
        let mut path = format!("/api/users?limit={limit}");
        let mut pages = 0;
        loop {
            let page = app.get(&path, &me.token).await;
            let users = listed(&page);
            assert!(users.len() <= limit, "{page:?}");
            walked.extend(users);
            pages += 1;
            match page.body["next"].as_str() {
                Some(next) => path = format!("/api/users?limit={limit}&after={next}"),
                None => break,
            }
            assert!(pages <= all.len(), "paging does not end");
        }
        assert_eq!(
            walked, all,
            "limit {limit}: no duplicates, no gaps, same order"
        );
    }

    // Paging a search keeps the search.
    let first = app.get("/api/users?q=KIM&limit=2", &me.token).await;
    assert_eq!(names(&first).len(), 2);
    let next = first.body["next"].as_str().unwrap().to_string();
    let second = app
        .get(&format!("/api/users?q=KIM&limit=2&after={next}"), &me.token)
        .await;
    assert_eq!(names(&second).len(), 2);
    assert_eq!(second.body["next"], Value::Null);
    let kims: HashSet<Uuid> = listed(&first)
        .into_iter()
        .chain(listed(&second))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(kims.len(), 4);
}

#[actix_web::test]
async fn limit_and_cursor_are_checked() {
    let app = spawn_app().await;
    let me = &app.users(3).await[0];
    for bad in [
        "limit=0",
        "limit=201",
        "limit=-1",
        "limit=many",
        "after=nonsense",
        "after=00",
        // A well-formed id, then a name holding a NUL (was a 500).
        "after=0123456789abcdef0123456789abcdef4100",
    ] {
        let reply = app.get(&format!("/api/users?{bad}"), &me.token).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert_eq!(reply.error_code(), "bad_request");
    }
    assert_eq!(
        listed(&app.get("/api/users?limit=200", &me.token).await).len(),
        3
    );
    let one = app.get("/api/users?limit=1", &me.token).await;
    assert_eq!(listed(&one).len(), 1);
    assert!(one.body["next"].is_string());
    let unauthenticated = app.request(Method::GET, "/api/users", None, None).await;
    assert_eq!(unauthenticated.status, 401);
}

#[actix_web::test]
async fn deactivated_users_leave_the_directory_but_can_still_be_fetched() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let gone = &users[2];
    app.db()
        .await
        .exec(&format!(
            "UPDATE users SET deactivated_at = now() WHERE id = '{}'",
            gone.id
        ))
        .await;
    let listed_ids: Vec<Uuid> = listed(&app.get("/api/users", &users[0].token).await)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(listed_ids.len(), 2);
    assert!(!listed_ids.contains(&gone.id));
    let fetched = app
        .get(&format!("/api/users/{}", gone.id), &users[0].token)
        .await;
    assert_eq!(fetched.status, 200, "{fetched:?}");
    assert!(fetched.body["deactivated_at"].is_string(), "{fetched:?}");
}

#[actix_web::test]
async fn one_user_is_fetched_with_online_only_within_the_company() {
    let app = spawn_app().await;
    let company = app.company().await;
    let me = app.named_user(company, "Me").await;
    let ann = app.named_user(company, "Ann").await;
    let bob = app.named_user(company, "Bob").await;
    let stranger = &app.users(1).await[0];

    let _ann_online = app.connect(&ann).await;
    let ann_seen = app.get(&format!("/api/users/{}", ann.id), &me.token).await;
    assert_eq!(ann_seen.status, 200, "{ann_seen:?}");
    assert_eq!(
        ann_seen.body,
        json!({"id": ann.id, "display_name": "Ann", "online": true, "deactivated_at": null})
    );
    let bob_seen = app.get(&format!("/api/users/{}", bob.id), &me.token).await;
    assert_eq!(bob_seen.body["online"], false);

    let directory = app.get("/api/users", &me.token).await;
    let online: Vec<(String, bool)> = directory.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["display_name"].as_str().unwrap().to_string(),
                u["online"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        online,
        [
            ("Ann".to_string(), true),
            ("Bob".to_string(), false),
            ("Me".to_string(), false)
        ]
    );

    for hidden in [stranger.id, Uuid::new_v4()] {
        let reply = app.get(&format!("/api/users/{hidden}"), &me.token).await;
        assert_eq!(reply.status, 404, "{reply:?}");
        assert_eq!(reply.error_code(), "not_found");
    }
    let not_an_id = app.get("/api/users/not-an-id", &me.token).await;
    assert_eq!(not_an_id.status, 400);
}

fn user_updated(user: &TestUser, name: &str) -> Value {
    json!({"user": {"id": user.id, "display_name": name}})
}

#[actix_web::test]
async fn renaming_yourself_reaches_co_members_and_your_sessions_only() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, cat) = (&users[0], &users[1], &users[2]);
    app.group(&[ann, bob]).await;
    let mut ann_1 = app.connect(ann).await;
    let mut ann_2 = app.connect(ann).await;
    let mut bob_1 = app.connect(bob).await;
    let mut cat_1 = app.connect(cat).await;

    let before = app.get("/api/me", &ann.token).await;
    let renamed = app
        .patch("/api/me", &ann.token, json!({"display_name": "  Ann Lee "}))
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    assert_eq!(renamed.body["display_name"], "Ann Lee");
    assert_eq!(renamed.body["id"], before.body["id"]);
    assert_eq!(renamed.body["created_at"], before.body["created_at"]);
    assert_ne!(renamed.body["updated_at"], before.body["updated_at"]);
    assert_eq!(app.get("/api/me", &ann.token).await.body, renamed.body);

    let expected = user_updated(ann, "Ann Lee");
    for session in [&mut ann_1, &mut ann_2, &mut bob_1] {
        assert_eq!(session.next_event("chat:user-updated").await, expected);
    }
    cat_1.assert_no_event("chat:user-updated").await;

    // The same rules as at creation.
    for bad in [
        json!({"display_name": "   "}),
        json!({"display_name": "x".repeat(201)}),
        json!({}),
        json!({"display_name": "A", "role": "admin"}),
    ] {
        let reply = app.patch("/api/me", &ann.token, bad.clone()).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }
    let unchanged = app.get(&format!("/api/users/{}", ann.id), &cat.token).await;
    assert_eq!(unchanged.body["display_name"], "Ann Lee");
}

#[actix_web::test]
async fn the_operator_sets_finds_and_changes_external_ids() {
    let app = spawn_app().await;
    let company = app.company().await;
    let other = app.company().await;

    let created = new_user(
        &app,
        company,
        json!({"display_name": "Ann", "external_id": "crm-1"}),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["external_id"], "crm-1");
    assert_eq!(created.body["deactivated_at"], Value::Null);
    assert!(created.body["updated_at"].is_string());
    let ann = uuid(&created.body["id"]);

    let taken = new_user(
        &app,
        company,
        json!({"display_name": "Imposter", "external_id": "crm-1"}),
    )
    .await;
    assert_eq!(taken.status, 409, "{taken:?}");
    assert_eq!(taken.error_code(), "conflict");
    // Unique per company only.
    let elsewhere = new_user(
        &app,
        other,
        json!({"display_name": "Ann", "external_id": "crm-1"}),
    )
    .await;
    assert_eq!(elsewhere.status, 201, "{elsewhere:?}");
    let plain = new_user(&app, company, json!({"display_name": "Bob"})).await;
    assert_eq!(plain.body["external_id"], Value::Null);
    let bob = uuid(&plain.body["id"]);
    for bad in ["", &"x".repeat(201)] {
        let reply = new_user(
            &app,
            company,
            json!({"display_name": "C", "external_id": bad}),
        )
        .await;
        assert_eq!(reply.status, 400, "{reply:?}");
    }

    let found = admin_get(
        &app,
        &format!("/admin/users?company_id={company}&external_id=crm-1"),
    )
    .await;
    assert_eq!(found.status, 200, "{found:?}");
    assert_eq!(found.body["users"], json!([created.body]));
    let none = admin_get(
        &app,
        &format!("/admin/users?company_id={company}&external_id=crm-2"),
    )
    .await;
    assert_eq!(none.body, json!({"users": []}));
    let missing = admin_get(&app, "/admin/users").await;
    assert_eq!(missing.status, 400);

    // Bob cannot take Ann's id; Ann gives hers up, then he can.
    let clash = admin_patch(
        &app,
        &format!("/admin/users/{bob}"),
        json!({"external_id": "crm-1"}),
    )
    .await;
    assert_eq!(clash.status, 409, "{clash:?}");
    let cleared = admin_patch(
        &app,
        &format!("/admin/users/{ann}"),
        json!({"external_id": null}),
    )
    .await;
    assert_eq!(cleared.status, 200, "{cleared:?}");
    assert_eq!(cleared.body["external_id"], Value::Null);
    assert_eq!(cleared.body["display_name"], "Ann");
    let moved = admin_patch(
        &app,
        &format!("/admin/users/{bob}"),
        json!({"external_id": "crm-1"}),
    )
    .await;
    assert_eq!(moved.body["external_id"], "crm-1");
    let now_bob = admin_get(
        &app,
        &format!("/admin/users?company_id={company}&external_id=crm-1"),
    )
    .await;
    assert_eq!(now_bob.body["users"][0]["id"], json!(bob));

    // Leaving external_id out leaves it as it is.
    let renamed = admin_patch(
        &app,
        &format!("/admin/users/{bob}"),
        json!({"display_name": "Robert"}),
    )
    .await;
    assert_eq!(renamed.body["display_name"], "Robert");
    assert_eq!(renamed.body["external_id"], "crm-1");

    let unknown = admin_patch(
        &app,
        &format!("/admin/users/{}", Uuid::new_v4()),
        json!({"display_name": "X"}),
    )
    .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    // Unknown fields are refused, as everywhere in the API.
    let extra = admin_patch(
        &app,
        &format!("/admin/users/{bob}"),
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(extra.status, 400, "{extra:?}");
    let not_admin = app
        .request(
            Method::PATCH,
            &format!("/admin/users/{bob}"),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(not_admin.status, 401);
}

#[actix_web::test]
async fn an_operators_rename_is_announced_like_a_users_own() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let (ann, bob, cat) = (&users[0], &users[1], &users[2]);
    app.group(&[ann, bob]).await;
    let mut ann_1 = app.connect(ann).await;
    let mut bob_1 = app.connect(bob).await;
    let mut cat_1 = app.connect(cat).await;

    let reply = admin_patch(
        &app,
        &format!("/admin/users/{}", ann.id),
        json!({"display_name": "Annie"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    for session in [&mut ann_1, &mut bob_1] {
        assert_eq!(
            session.next_event("chat:user-updated").await,
            user_updated(ann, "Annie")
        );
    }
    cat_1.assert_no_event("chat:user-updated").await;

    // A change that is not a rename announces nothing.
    let reply = admin_patch(
        &app,
        &format!("/admin/users/{}", ann.id),
        json!({"external_id": "e-1", "display_name": "Annie"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    bob_1.assert_no_event("chat:user-updated").await;
}
