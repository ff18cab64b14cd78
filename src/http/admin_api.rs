//! /admin: the operator's endpoints, behind the admin token. Changes made
//! here reach live sessions exactly as the same change made by a user.

use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::Admin;
use super::user_api::{self, create_thread_in, NewMember};
use super::AppState;
use crate::domain::{CompanyId, MessageId, ThreadId, UserId};
use crate::error::AppError;
use crate::hub::messages::GetStats;
use crate::metrics::metrics;
use crate::persistence::{
    AddMember, Caller, CreateCompany, CreateUser, DeleteMessage, FindUser, RemoveMember,
};
use crate::protocol::views::{rfc3339_millis, ThreadKind};

const MAX_NAME_CHARS: usize = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/companies", web::post().to(create_company))
        .route("/users", web::post().to(create_user))
        .route("/users/{id}/tokens", web::post().to(mint_token))
        .route("/threads", web::post().to(create_thread))
        .route("/threads/{id}/members", web::post().to(add_member))
        .route(
            "/threads/{id}/members/{user_id}",
            web::delete().to(remove_member),
        )
        .route("/messages/{id}", web::delete().to(moderate_message))
        .route("/stats", web::get().to(stats));
}

fn checked_name(field: &str, name: String) -> Result<String, AppError> {
    let name = name.trim().to_string();
    if name.is_empty() {
        return Err(AppError::bad_request(format!("{field} must not be empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::bad_request(format!(
            "{field} is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(name)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCompany {
    name: String,
}

async fn create_company(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewCompany>,
) -> Result<HttpResponse, AppError> {
    let name = checked_name("name", body.into_inner().name)?;
    Ok(HttpResponse::Created().json(state.ask(CreateCompany { name }).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    company_id: CompanyId,
    display_name: String,
}

async fn create_user(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, AppError> {
    let NewUser {
        company_id,
        display_name,
    } = body.into_inner();
    let display_name = checked_name("display_name", display_name)?;
    Ok(HttpResponse::Created().json(
        state
            .ask(CreateUser {
                company_id,
                display_name,
            })
            .await?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    ttl_seconds: Option<i64>,
}

#[derive(Serialize)]
struct MintedToken {
    token: String,
    #[serde(serialize_with = "rfc3339_millis")]
    expires_at: chrono::DateTime<Utc>,
}

/// The body is optional (no body: the default lifetime), so it is parsed
/// here rather than by the Json extractor.
async fn mint_token(
    _: Admin,
    state: web::Data<AppState>,
    user_id: web::Path<UserId>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    if body.len() > super::MAX_JSON_BODY_BYTES {
        return Err(AppError::PayloadTooLarge);
    }
    let request: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::bad_request(format!("bad JSON body: {e}")))?
    };
    let max = state.settings.max_token_ttl_seconds;
    let ttl = match request.ttl_seconds {
        None => state.settings.token_ttl_seconds,
        Some(ttl) if ttl >= 1 && ttl as u64 <= max => ttl as u64,
        Some(_) => {
            return Err(AppError::bad_request(format!(
                "ttl_seconds must be between 1 and {max}"
            )))
        }
    };
    let user = state.ask(FindUser(user_id.into_inner())).await?;
    let seconds =
        i64::try_from(ttl).map_err(|_| AppError::bad_request("ttl_seconds is too large"))?;
    let expires_at = Utc::now() + Duration::seconds(seconds);
    let token = state.auth.mint(user.id, user.company_id, expires_at)?;
    log::info!(
        "minted a token for user={} valid until {expires_at}",
        user.id
    );
    Ok(HttpResponse::Created().json(MintedToken { token, expires_at }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewThread {
    company_id: CompanyId,
    kind: Option<ThreadKind>,
    title: Option<String>,
    member_ids: Vec<UserId>,
}

async fn create_thread(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewThread>,
) -> Result<HttpResponse, AppError> {
    let NewThread {
        company_id,
        kind,
        title,
        member_ids,
    } = body.into_inner();
    let thread = user_api::NewThread {
        kind,
        title,
        member_ids,
    };
    create_thread_in(&state, company_id, None, thread).await
}

async fn add_member(
    _: Admin,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
    body: web::Json<NewMember>,
) -> Result<HttpResponse, AppError> {
    let (thread_id, user_id) = (thread_id.into_inner(), body.user_id);
    state
        .ask(AddMember {
            caller: Caller::Admin,
            thread_id,
            user_id,
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({ "thread_id": thread_id, "user_id": user_id })))
}

async fn remove_member(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(ThreadId, UserId)>,
) -> Result<HttpResponse, AppError> {
    let (thread_id, user_id) = path.into_inner();
    state
        .ask(RemoveMember {
            caller: Caller::Admin,
            thread_id,
            user_id,
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn moderate_message(
    _: Admin,
    state: web::Data<AppState>,
    message_id: web::Path<MessageId>,
) -> Result<HttpResponse, AppError> {
    let tombstone = state
        .ask(DeleteMessage {
            caller: Caller::Admin,
            message_id: message_id.into_inner(),
        })
        .await?;
    log::info!(
        "operator deleted message={} in thread={}",
        tombstone.id,
        tombstone.thread_id
    );
    Ok(HttpResponse::Ok().json(tombstone))
}

async fn stats(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let hub = state
        .hub
        .send(GetStats)
        .await
        .map_err(|_| AppError::Unavailable)?;
    let m = metrics();
    Ok(HttpResponse::Ok().json(json!({
        "sessions": hub.sessions,
        "users_online": hub.users_online,
        "live_threads": hub.live_threads,
        "messages_persisted": m.messages_persisted.get(),
        "queues": {
            "persistence_in_flight": m.persistence_in_flight.get(),
            "hub_held_messages": hub.held_messages,
            "outbound_queued_bytes": hub.outbound_queued_bytes,
        },
    })))
}
