//! The browser client: `web/` compiled into the binary and served at `/`
//! and `/static/…`, so a fresh `confab` needs no files beside it.
//!
//! Every answer carries a strict Content-Security-Policy: the page may load
//! only its own scripts and styles and open sockets only to the host that
//! served it, so an injected message body can never run as code. Images
//! come from the server or from `blob:` URLs: uploads need the bearer token,
//! so the page fetches them itself and shows the bytes from a blob
//! (web/files.js); no image from elsewhere is ever loaded.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::AppError;

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file the client is made of. The names are the ones index.html and
/// the modules import, under `/static/`.
const ASSETS: [Asset; 12] = [
    Asset {
        path: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "connection.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/connection.js"),
    },
    Asset {
        path: "people.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/people.js"),
    },
    Asset {
        path: "notify.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/notify.js"),
    },
    // The service worker that shows Web Push notifications. It lives under
    // /static/ like every asset and is allowed the scope "/" (the
    // Service-Worker-Allowed header below), so it covers the page.
    Asset {
        path: "sw.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/sw.js"),
    },
    Asset {
        path: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/api.js"),
    },
    Asset {
        path: "search.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/search.js"),
    },
    Asset {
        path: "messages-extras.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/messages-extras.js"),
    },
    Asset {
        path: "files.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/files.js"),
    },
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
    },
    Asset {
        path: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../web/icon.svg"),
    },
];

/// The asset registered as the service worker, with scope "/".
const SERVICE_WORKER: &str = "sw.js";

pub fn routes(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that another method answers 405 as the
    // API's paths do.
    cfg.service(web::resource("/").get(index))
        .service(web::resource("/static/{name}").get(asset));
}

/// The browser client's page. Sign in with a `#token=<jwt>` link (see
/// `confab demo`) or by pasting a token.
#[utoipa::path(
    get,
    path = "/",
    tag = "web",
    responses(
        (status = 200, description = "The page, under a strict Content-Security-Policy",
         body = String, content_type = "text/html; charset=utf-8"),
        (status = 304, description = "Unchanged since the ETag in If-None-Match")
    )
)]
pub(super) async fn index(req: HttpRequest) -> Result<HttpResponse, AppError> {
    serve(&req, "index.html")
}

/// One of the client's scripts, its stylesheet or its icon.
#[utoipa::path(
    get,
    path = "/static/{name}",
    tag = "web",
    params(("name" = String, Path, description = "File name, e.g. app.js")),
    responses(
        (status = 200, description = "The file with its content type",
         content(
            (String = "text/javascript; charset=utf-8"),
            (String = "text/css; charset=utf-8"),
            (String = "image/svg+xml")
         )),
        (status = 304, description = "Unchanged since the ETag in If-None-Match"),
        (status = 404, description = "No such file", body = crate::error::HttpErrorBody)
    )
)]
pub(super) async fn asset(
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    serve(&req, &name)
}

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, AppError> {
    let (index, asset) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, a)| a.path == name)
        .ok_or(AppError::NotFound("route"))?;
    let etag = &etags()[index];
    // The files are not fingerprinted, so the browser revalidates every
    // time; an unchanged binary answers 304 without the body.
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(req),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if asset.path == SERVICE_WORKER {
        response.insert_header(("Service-Worker-Allowed", "/"));
    }
    if fresh {
        return Ok(response.finish());
    }
    Ok(response
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        .body(asset.body))
}

/// One strong validator per asset, from its bytes (FNV-1a: no crate needed
/// for a tag that only has to change when the file does).
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let hash = asset.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                format!("\"{hash:016x}\"")
            })
            .collect()
    })
}

/// `'self'` covers `ws:`/`wss:` to the same host only in newer browsers, so
/// the socket's origin is named outright, built from the Host the browser
/// used. A Host that is not a plain `host[:port]` is left out rather than
/// copied into a header.
fn content_security_policy(req: &HttpRequest) -> HeaderValue {
    let host = req.connection_info().host().to_owned();
    let plain_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    let sockets = if plain_host {
        format!(" ws://{host} wss://{host}")
    } else {
        String::new()
    };
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; \
         connect-src 'self'{sockets}; img-src 'self' blob:; worker-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self' blob:; worker-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
    ))
}
