//! The OpenAPI document against the server it describes: every route is
//! in it with exactly its methods, openapi-spec-validator (PyPI) finds it
//! valid, and schemathesis (PyPI) fuzzes the real binary from it and finds
//! nothing.

use std::collections::BTreeMap;
use std::process::Command;

use reqwest::Method;
use serde_json::Value;

use crate::support::child::{ChildConfig, ChildServer};
use crate::support::{spawn_app, spawn_app_with, tools, uuid};

/// Every route the server has, and its methods. A route added to the code
/// but not here (or to the document) fails the first test.
const ROUTES: [(&str, &[&str]); 35] = [
    ("/", &["get"]),
    ("/static/{name}", &["get"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
    ("/ws", &["get"]),
    ("/api/openapi.json", &["get"]),
    ("/api/me", &["get", "patch"]),
    ("/api/users", &["get"]),
    ("/api/users/{id}", &["get"]),
    ("/api/search", &["get"]),
    ("/api/threads", &["get", "post"]),
    ("/api/threads/{id}", &["patch"]),
    ("/api/threads/{id}/messages", &["get"]),
    ("/api/threads/{id}/changes", &["get"]),
    ("/api/threads/{id}/members", &["get", "post"]),
    ("/api/threads/{id}/members/me", &["delete"]),
    ("/api/threads/{id}/members/{user_id}", &["delete"]),
    ("/api/messages/{id}", &["delete", "patch"]),
    ("/api/uploads", &["post"]),
    ("/api/uploads/{id}", &["get"]),
    ("/api/uploads/{id}/thumbnail", &["get"]),
    ("/admin/companies", &["post"]),
    ("/admin/users", &["get", "post"]),
    ("/admin/users/{id}", &["patch"]),
    ("/admin/users/{id}/tokens", &["post"]),
    ("/admin/users/{id}/tokens/revoke", &["post"]),
    ("/admin/threads", &["post"]),
    ("/admin/threads/{id}/members", &["post"]),
    ("/admin/threads/{id}/members/{user_id}", &["delete"]),
    ("/admin/messages/{id}", &["delete"]),
    ("/admin/stats", &["get"]),
    ("/admin/webhooks", &["get", "post"]),
    ("/admin/webhooks/{id}", &["delete"]),
    ("/admin/webhooks/{id}/deliveries", &["get"]),
];

const ALL_METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn documented_routes(doc: &Value) -> BTreeMap<String, Vec<String>> {
    doc["paths"]
        .as_object()
        .expect("the document has paths")
        .iter()
        .map(|(path, item)| {
            let mut methods: Vec<String> = item
                .as_object()
                .expect("a path item is an object")
                .keys()
                .filter(|k| ALL_METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            methods.sort();
            (path.clone(), methods)
        })
        .collect()
}

#[actix_web::test]
async fn the_document_is_public_and_lists_every_route_with_exactly_its_methods() {
    let app = spawn_app().await;
    let reply = app
        .request(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(reply.status, 200, "no token needed: {reply:?}");
    let doc = reply.body;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "an OpenAPI 3 document: {}",
        doc["openapi"]
    );

    let expected: BTreeMap<String, Vec<String>> = ROUTES
        .iter()
        .map(|(path, methods)| {
            let mut methods: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
            methods.sort();
            (path.to_string(), methods)
        })
        .collect();
    assert_eq!(documented_routes(&doc), expected);

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["user_token"]["scheme"], "bearer");
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["HttpErrorBody"].is_object());

    // Fields the server always sends, null or not, are required.
    let required = |schema: &str| -> Vec<String> {
        serde_json::from_value(doc["components"]["schemas"][schema]["required"].clone())
            .unwrap_or_else(|e| panic!("{schema}.required: {e}"))
    };
    for field in ["body", "metadata", "edited_at", "deleted_at", "created_at"] {
        assert!(
            required("MessageView").contains(&field.to_string()),
            "{field}"
        );
    }
    for field in ["title", "created_by", "unread", "last_read_seq"] {
        assert!(
            required("ThreadView").contains(&field.to_string()),
            "{field}"
        );
    }
}

#[actix_web::test]
async fn the_token_lifetime_limit_in_the_document_is_the_configured_one() {
    let app = spawn_app_with(|s| {
        s.token_ttl_seconds = 600;
        s.max_token_ttl_seconds = 3600;
    })
    .await;
    let doc = app
        .request(Method::GET, "/api/openapi.json", None, None)
        .await
        .body;
    let ttl = &doc["components"]["schemas"]["TokenRequest"]["properties"]["ttl_seconds"];
    assert_eq!(ttl["maximum"], 3600, "{ttl}");
}

/// A valid OpenAPI document, as openapi-spec-validator (a full validator
/// of the specification, where schemathesis only needs a usable document)
/// checks it. Generated clients name their methods after operationIds, so
/// two operations sharing one is an error; it is checked here first to
/// name every duplicate at once.
#[actix_web::test]
async fn the_served_document_is_valid_openapi_with_unique_operation_ids() {
    let app = spawn_app().await;
    let doc = app
        .request(Method::GET, "/api/openapi.json", None, None)
        .await
        .body;

    let mut operations: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("the document has paths") {
        for method in ALL_METHODS {
            if let Some(operation) = item.get(method) {
                let id = operation["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                operations
                    .entry(id.to_string())
                    .or_default()
                    .push(format!("{method} {path}"));
            }
        }
    }
    let shared: BTreeMap<_, _> = operations.iter().filter(|(_, ops)| ops.len() > 1).collect();
    assert!(
        shared.is_empty(),
        "operationIds used more than once: {shared:?}"
    );

    let file = std::env::temp_dir().join(format!("confab-openapi-{}.json", app.db_name));
    std::fs::write(
        &file,
        serde_json::to_vec_pretty(&doc).expect("the document as JSON"),
    )
    .expect("write the document");
    let checked = file.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tools::openapi_spec_validator())
            .args(["--validation-errors", "all"])
            .arg(&checked)
            .output()
    })
    .await
    .expect("the validator thread")
    .unwrap_or_else(|e| panic!("cannot run openapi-spec-validator: {e}"));
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "openapi-spec-validator rejects the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The server agrees with the list: a documented method reaches a handler
/// (it is neither 404 nor 405), any other method on the path is 405.
#[actix_web::test]
async fn the_server_serves_each_documented_method_and_refuses_the_others_with_405() {
    let app = spawn_app().await;
    let some_id = uuid::Uuid::new_v4().to_string();
    for (path, methods) in ROUTES {
        let concrete = path
            .replace("{id}", &some_id)
            .replace("{user_id}", &some_id)
            .replace("{name}", "app.js");
        for method in ALL_METHODS {
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
            let reply = app.request(verb, &concrete, None, None).await;
            if methods.contains(&method) {
                assert!(
                    ![404, 405].contains(&reply.status),
                    "{method} {path} is documented but answered {reply:?}"
                );
            } else {
                assert_eq!(
                    reply.status, 405,
                    "{method} {path} is not documented: {reply:?}"
                );
            }
        }
    }
}

/// schemathesis generates requests from the document (valid and invalid)
/// against the real binary with real tokens, and checks every answer
/// against it: no 5xx, only documented status codes, bodies that match
/// their schemas, invalid input refused, auth enforced. The exceptions are
/// in tests/schemathesis/schemathesis.toml, each with its reason. The seed
/// is fixed so a failure reproduces; CONFAB_SCHEMATHESIS_SEED picks another.
#[actix_web::test]
async fn schemathesis_finds_no_problem() {
    let config = ChildConfig::new(&[]);
    // The demo's data gives the fuzzer a company, users and threads.
    let demo = config
        .command()
        .args(["demo", "--no-serve"])
        .output()
        .expect("run confab demo");
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let user_token = String::from_utf8_lossy(&demo.stdout)
        .lines()
        .find_map(|line| {
            line.split_once("#token=")
                .map(|(_, t)| t.trim().to_string())
        })
        .expect("a demo link");
    let server = config.start().await;
    let ids = DemoIds::of(&server, &user_token).await;

    let settings = format!(
        "{}/tests/schemathesis/schemathesis.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let seed = std::env::var("CONFAB_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261203".into());
    let work_dir = std::env::temp_dir().join(format!("confab-schemathesis-{}", server.addr.port()));
    std::fs::create_dir_all(&work_dir).expect("a working directory");
    let (base, admin_token) = (server.base.clone(), config.admin_token.clone());
    let run = tokio::task::spawn_blocking(move || {
        let schemathesis = tools::schemathesis();
        Command::new(schemathesis)
            .current_dir(&work_dir)
            .env("CONFAB_USER_TOKEN", &user_token)
            .env("CONFAB_ADMIN_TOKEN", &admin_token)
            .env("CONFAB_USER_ID", ids.user.to_string())
            .env("CONFAB_THREAD_ID", ids.general.to_string())
            .env("CONFAB_LEAVE_THREAD_ID", ids.launch_plan.to_string())
            .env("CONFAB_EDIT_MESSAGE_ID", ids.edited.to_string())
            .env("CONFAB_DELETE_MESSAGE_ID", ids.deleted.to_string())
            .args(["--no-color", "--config-file", &settings, "run"])
            .arg(format!("{base}/api/openapi.json"))
            .args(["--max-examples", "25", "--max-time", "45", "--seed", &seed])
            .output()
    })
    .await
    .expect("the schemathesis thread");
    let output = run.unwrap_or_else(|e| {
        panic!("cannot run schemathesis ({e}); install it: pip install 'schemathesis>=4,<5'")
    });
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let operations: usize = ROUTES.iter().map(|(_, methods)| methods.len()).sum();
    assert!(
        report.contains(&format!("Tested: {operations}")),
        "every one of the {operations} operations is tested:\n{report}"
    );
    drop(server);
}

/// Ann's ids in the demo data, for schemathesis's path parameters.
struct DemoIds {
    user: uuid::Uuid,
    general: uuid::Uuid,
    launch_plan: uuid::Uuid,
    /// Ann's message in General.
    edited: uuid::Uuid,
    /// Ann's message in Launch plan.
    deleted: uuid::Uuid,
}

impl DemoIds {
    async fn of(server: &ChildServer, ann_token: &str) -> Self {
        let token = Some(ann_token);
        let me = server.request(Method::GET, "/api/me", token, None).await;
        let user = uuid(&me.body["id"]);
        let threads = server
            .request(Method::GET, "/api/threads", token, None)
            .await;
        let thread = |title: &str| {
            threads.body["threads"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["title"] == title))
                .map(|t| uuid(&t["id"]))
                .unwrap_or_else(|| panic!("no {title} thread in {threads:?}"))
        };
        let (general, launch_plan) = (thread("General"), thread("Launch plan"));
        let mut own_message = Vec::new();
        for thread_id in [general, launch_plan] {
            let page = server
                .request(
                    Method::GET,
                    &format!("/api/threads/{thread_id}/messages"),
                    token,
                    None,
                )
                .await;
            let mine = page.body["messages"]
                .as_array()
                .and_then(|ms| ms.iter().find(|m| m["sender_id"] == user.to_string()))
                .map(|m| uuid(&m["id"]))
                .unwrap_or_else(|| panic!("no message of Ann's in {page:?}"));
            own_message.push(mine);
        }
        DemoIds {
            user,
            general,
            launch_plan,
            edited: own_message[0],
            deleted: own_message[1],
        }
    }
}
