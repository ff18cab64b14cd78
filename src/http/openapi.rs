//! The OpenAPI 3 description of the HTTP surface, generated from the
//! handlers' `#[utoipa::path]` attributes and the views' `ToSchema`
//! derives, so it changes with the code. Served at GET /api/openapi.json.
//!
//! This module only collects: it imports the handlers, and nothing it
//! defines is imported by them (their error answers are in
//! [`super::responses`]).

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use serde_json::Value;

use super::AppState;
use crate::config::Settings;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/openapi.json").get(openapi_json));
}

/// The name of the user JWT scheme in `security(...)`.
pub const USER_TOKEN: &str = "user_token";
/// The name of the operator's bearer token scheme.
pub const ADMIN_TOKEN: &str = "admin_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "confab",
        description = "Real-time chat: the HTTP side. Live traffic is the WebSocket at /ws \
                       (see PROTOCOL.md); these endpoints list, page, edit and administer."
    ),
    paths(
        openapi_json,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
        super::ws::upgrade,
        super::user_api::me,
        super::user_api::list_threads,
        super::user_api::create_thread,
        super::user_api::messages,
        super::user_api::changes,
        super::user_api::members,
        super::user_api::add_member,
        super::user_api::leave,
        super::user_api::remove_member,
        super::user_api::rename_thread,
        super::user_api::edit_message,
        super::user_api::delete_message,
        super::people::directory,
        super::people::colleague,
        super::people::update_me,
        super::search::search,
        super::uploads::upload,
        super::uploads::download,
        super::uploads::download_thumbnail,
        super::admin_api::create_company,
        super::admin_api::create_user,
        super::admin_api::find_users,
        super::admin_api::update_user,
        super::admin_api::mint_token,
        super::admin_api::revoke_tokens,
        super::admin_api::create_thread,
        super::admin_api::add_member,
        super::admin_api::remove_member,
        super::admin_api::moderate_message,
        super::admin_api::stats,
        super::webhooks::create_webhook,
        super::webhooks::list_webhooks,
        super::webhooks::delete_webhook,
        super::webhooks::deliveries,
        super::web_client::index,
        super::web_client::asset,
    ),
    modifiers(&BearerSchemes),
    tags(
        (name = "user", description = "What a signed-in user may see and do (user JWT)"),
        (name = "admin", description = "The operator's endpoints (admin token)"),
        (name = "ops", description = "Health, readiness, metrics and this document"),
        (name = "web", description = "The browser client, embedded in the binary"),
    )
)]
pub struct ApiDoc;

struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            USER_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user token (HS256 JWT with sub, company_id, exp) from \
                         POST /admin/users/{id}/tokens or `confab token`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The configured admin_token"))
                    .build(),
            ),
        );
    }
}

/// The document for a server with these settings. Built per request: it
/// is fetched rarely, and a process (the test suite) may run servers with
/// different settings.
pub fn document(settings: &Settings) -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    // A configured limit, so not known when the attributes are compiled.
    if let Some(ttl) = doc.pointer_mut("/components/schemas/TokenRequest/properties/ttl_seconds") {
        ttl["maximum"] = settings.max_token_ttl_seconds.into();
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document(&state.settings))
}
