//! The browser client's files: served from the binary at `/` and
//! `/static/…` with their content types and the security headers that keep
//! a message body from ever running as code.

use crate::support::{http_client, spawn_app, TestApp};

struct Fetched {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

async fn fetch(app: &TestApp, path: &str, if_none_match: Option<&str>) -> Fetched {
    let mut req = http_client().get(format!("{}{path}", app.base));
    if let Some(tag) = if_none_match {
        req = req.header("If-None-Match", tag);
    }
    let res = req.send().await.expect("the request completes");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.expect("the body arrives");
    Fetched {
        status,
        headers,
        body: body.to_vec(),
    }
}

#[actix_rt::test]
async fn the_page_is_html_under_a_strict_content_security_policy() {
    let app = spawn_app().await;
    let page = fetch(&app, "/", None).await;

    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let csp = page.header("content-security-policy");
    let host = app.base.trim_start_matches("http://");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        &format!("connect-src 'self' ws://{host} wss://{host}"),
        "img-src 'self' blob:",
        "worker-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.split(';').any(|d| d.trim() == directive),
            "{directive:?} missing from {csp:?}"
        );
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("referrer-policy"), "no-referrer");
    assert_eq!(page.header("cache-control"), "no-cache");
    let html = String::from_utf8(page.body).expect("utf-8");
    assert!(html.contains(r#"<script type="module" src="/static/app.js">"#));
    // CSP would block inline code; there must be none to block.
    assert!(!html.contains("<script>") && !html.contains("style="));
}

#[actix_rt::test]
async fn each_asset_has_its_content_type_and_the_same_headers() {
    let app = spawn_app().await;
    for (path, content_type) in [
        ("/static/index.html", "text/html; charset=utf-8"),
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/connection.js", "text/javascript; charset=utf-8"),
        ("/static/api.js", "text/javascript; charset=utf-8"),
        ("/static/search.js", "text/javascript; charset=utf-8"),
        ("/static/files.js", "text/javascript; charset=utf-8"),
        ("/static/people.js", "text/javascript; charset=utf-8"),
        ("/static/notify.js", "text/javascript; charset=utf-8"),
        ("/static/sw.js", "text/javascript; charset=utf-8"),
        (
            "/static/messages-extras.js",
            "text/javascript; charset=utf-8",
        ),
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/icon.svg", "image/svg+xml"),
    ] {
        let asset = fetch(&app, path, None).await;
        assert_eq!(asset.status, 200, "{path}");
        assert_eq!(asset.header("content-type"), content_type, "{path}");
        assert!(!asset.body.is_empty(), "{path}");
        assert!(asset
            .header("content-security-policy")
            .contains("default-src 'none'"));
        assert_eq!(asset.header("x-content-type-options"), "nosniff");
    }
}

#[actix_rt::test]
async fn the_service_worker_may_control_the_whole_client() {
    let app = spawn_app().await;
    let worker = fetch(&app, "/static/sw.js", None).await;
    assert_eq!(worker.status, 200);
    // Registered from /static/ with scope "/": the page at / is in it.
    assert_eq!(worker.header("service-worker-allowed"), "/");
    let script = fetch(&app, "/static/app.js", None).await;
    assert!(script.headers.get("service-worker-allowed").is_none());
}

#[actix_rt::test]
async fn an_unchanged_asset_is_revalidated_without_its_body() {
    let app = spawn_app().await;
    let first = fetch(&app, "/static/app.js", None).await;
    let etag = first.header("etag").to_owned();

    let again = fetch(&app, "/static/app.js", Some(&etag)).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), etag);

    let stale = fetch(&app, "/static/app.js", Some("\"0000\"")).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, first.body);
}

#[actix_rt::test]
async fn an_unknown_static_path_is_the_usual_json_404() {
    let app = spawn_app().await;
    for path in [
        "/static/nope.js",
        "/static/../Cargo.toml",
        "/static/%2e%2e%2fCargo.toml",
        "/static/",
        "/index.html",
    ] {
        let reply = app.request(reqwest::Method::GET, path, None, None).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        assert_eq!(reply.error_code(), "not_found", "{path}");
    }
}

#[actix_rt::test]
async fn the_page_answers_only_get() {
    let app = spawn_app().await;
    let reply = app
        .request(
            reqwest::Method::POST,
            "/",
            None,
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.error_code(), "not_found");
}
