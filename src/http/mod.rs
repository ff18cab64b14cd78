//! The HTTP surface: the user API, the admin API, operations endpoints and
//! the WebSocket upgrade. Handlers are thin: they check who is asking
//! ([`extract`]), ask Persistence or the hub, and shape the answer. Every
//! error leaves through `AppError`'s one mapping to status and body.

mod admin_api;
pub mod extract;
pub mod metrics_middleware;
pub mod metrics_server;
pub mod openapi;
mod ops;
mod people;
mod ranges;
pub mod responses;
mod search;
mod threads;
pub mod uploads;
mod user_api;
mod web_client;
mod webhooks;
mod ws;

use std::future::Future;
use std::sync::Arc;

use actix::{Addr, Handler};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{web, HttpRequest};

use crate::auth::Auth;
use crate::config::Settings;
use crate::error::{AppError, ErrorCode};
use crate::hub::ChatHub;
use crate::metrics::PoolGauge;
use crate::persistence::{self, Persistence};
use crate::session::SessionDeps;
use crate::storage::Storage;

/// The largest JSON body any endpoint accepts (a message edit is the
/// biggest legitimate one: 8000 characters of up to 4 bytes each).
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;

pub struct AppState {
    pub settings: Arc<Settings>,
    pub auth: Auth,
    /// What a WebSocket session is started with; the handlers reach the
    /// hub and Persistence through it too, so the process holds them once.
    pub sessions: SessionDeps,
    /// Cluster mode only: whether this node's bus connection is up.
    pub bus: Option<crate::cluster::bus::BusStatus>,
    /// This server's database pool, read when /metrics is scraped.
    pub db_pool: PoolGauge,
    /// Where uploaded files are kept.
    pub storage: Storage,
}

impl AppState {
    pub fn hub(&self) -> &Addr<ChatHub> {
        &self.sessions.hub
    }

    /// Runs a query on Persistence, as [`persistence::ask`] does.
    pub fn ask<Q, T>(&self, query: Q) -> impl Future<Output = Result<T, AppError>> + 'static
    where
        Q: actix::Message<Result = Result<T, AppError>> + Send + 'static,
        T: Send + 'static,
        Persistence: Handler<Q>,
    {
        persistence::ask(&self.sessions.persistence, query)
    }
}

/// Every route; `/metrics` only with `serve_metrics` (when `metrics_bind`
/// is set it is served on that address instead, see [`metrics_routes`]).
pub fn routes(serve_metrics: bool) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if serve_metrics {
            cfg.configure(ops::metrics_routes);
        }
        all_but_metrics(cfg);
    }
}

/// `/metrics` alone, for the listener at `metrics_bind`.
pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    ops::metrics_routes(cfg);
}

fn all_but_metrics(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_JSON_BODY_BYTES)
            .error_handler(|err: JsonPayloadError, _: &HttpRequest| json_error(err).into()),
    )
    .app_data(web::QueryConfig::default().error_handler(
        |err: QueryPayloadError, _: &HttpRequest| {
            AppError::bad_request(format!("bad query string: {err}")).into()
        },
    ))
    .app_data(
        web::PathConfig::default().error_handler(|err: PathError, _: &HttpRequest| {
            AppError::bad_request(format!("bad path: {err}")).into()
        }),
    )
    .configure(ops::routes)
    .configure(ws::routes)
    .configure(web_client::routes)
    .configure(openapi::routes)
    .service(web::scope("/api").configure(user_api::routes))
    .service(
        web::scope("/admin")
            .configure(admin_api::routes)
            .configure(webhooks::routes),
    )
    .default_service(web::to(|| async {
        Err::<actix_web::HttpResponse, _>(AppError::NotFound("route"))
    }));
}

fn json_error(err: JsonPayloadError) -> AppError {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            AppError::PayloadTooLarge
        }
        JsonPayloadError::ContentType => {
            AppError::bad_request("expected Content-Type: application/json")
        }
        JsonPayloadError::Deserialize(e) => AppError::bad_request(format!("bad JSON body: {e}")),
        other => AppError::bad_request(format!("bad body: {other}")),
    }
}

/// Errors that actix raises itself (a plain GET on /ws, a body over the
/// payload limit) carry no body of ours; this gives every error response
/// the same `{"error": {code, message}}` shape. Used with `ErrorHandlers`.
pub fn json_error_body<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 | 405 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    };
    let message = status.canonical_reason().unwrap_or("error").to_lowercase();
    let body = serde_json::json!({"error": {"code": code.as_str(), "message": message}});
    let (req, mut res) = res.into_parts();
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let res = ServiceResponse::new(req, res.set_body(body.to_string()));
    Ok(ErrorHandlerResponse::Response(
        res.map_into_boxed_body().map_into_right_body(),
    ))
}
