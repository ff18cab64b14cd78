//! /admin: the operator's endpoints, behind the admin token. Changes made
//! here reach live sessions exactly as the same change made by a user.

use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::Admin;
use super::responses::{
    BadRequest, Conflict, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
};
use super::threads::{self, Membership, NewMember, ThreadFields};
use super::AppState;
use crate::domain::{CompanyId, DisplayName, ExternalId, MessageId, ThreadId, UserId};
use crate::error::AppError;
use crate::hub::messages::GetStats;
use crate::metrics::metrics;
use crate::persistence::{
    Caller, CreateCompany, CreateUser, DeleteMessage, FindByExternalId, RevokeTokens,
    SetDeactivated, TokenSubject, UpdateUser,
};
use crate::protocol::views::{rfc3339_millis, CompanyView, ThreadKind, UserView};
use crate::protocol::{MessageView, ThreadView};

pub fn routes(cfg: &mut web::ServiceConfig) {
    // One resource per path, so that another method answers 405.
    cfg.service(web::resource("/companies").post(create_company))
        .service(web::resource("/users").post(create_user).get(find_users))
        .service(web::resource("/users/{id}").patch(update_user))
        .service(web::resource("/users/{id}/tokens").post(mint_token))
        .service(web::resource("/users/{id}/tokens/revoke").post(revoke_tokens))
        .service(web::resource("/threads").post(create_thread))
        .service(web::resource("/threads/{id}/members").post(add_member))
        .service(web::resource("/threads/{id}/members/{user_id}").delete(remove_member))
        .service(web::resource("/messages/{id}").delete(moderate_message))
        .service(web::resource("/stats").get(stats));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCompany {
    /// Trimmed; 1 to 200 characters, not all whitespace, no NUL.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    name: String,
}

/// Creates a company (a tenant).
#[utoipa::path(
    post,
    path = "/admin/companies",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = NewCompany,
    responses((status = 201, body = CompanyView), BadRequest, Unauthorized, PayloadTooLarge, Unavailable)
)]
pub(super) async fn create_company(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewCompany>,
) -> Result<HttpResponse, AppError> {
    let name = DisplayName::parse("name", body.into_inner().name)?;
    Ok(HttpResponse::Created().json(state.ask(CreateCompany { name }).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    company_id: CompanyId,
    /// Trimmed; 1 to 200 characters, not all whitespace, no NUL.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    display_name: String,
    /// The host application's own id for the user: 1 to 200 characters,
    /// no NUL, unique in the company.
    #[schema(min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    external_id: Option<String>,
}

/// Creates a user in a company.
#[utoipa::path(
    post,
    path = "/admin/users",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = NewUser,
    responses(
        (status = 201, body = UserView),
        BadRequest, Unauthorized, NotFound, Conflict, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn create_user(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, AppError> {
    let NewUser {
        company_id,
        display_name,
        external_id,
    } = body.into_inner();
    let display_name = DisplayName::parse("display_name", display_name)?;
    let external_id = external_id.map(ExternalId::parse).transpose()?;
    Ok(HttpResponse::Created().json(
        state
            .ask(CreateUser {
                company_id,
                display_name,
                external_id,
            })
            .await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserLookup {
    company_id: CompanyId,
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    external_id: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct UserList {
    /// The user with that external id, or none.
    users: Vec<UserView>,
}

/// Finds a company's user by the host application's id.
#[utoipa::path(
    get,
    path = "/admin/users",
    operation_id = "admin_find_users",
    tag = "admin",
    security(("admin_token" = [])),
    params(UserLookup),
    responses((status = 200, body = UserList), BadRequest, Unauthorized, Unavailable)
)]
pub(super) async fn find_users(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<UserLookup>,
) -> Result<HttpResponse, AppError> {
    let UserLookup {
        company_id,
        external_id,
    } = query.into_inner();
    let external_id = ExternalId::parse(external_id)?;
    let users = state
        .ask(FindByExternalId {
            company_id,
            external_id,
        })
        .await?;
    Ok(HttpResponse::Ok().json(UserList { users }))
}

/// `null` and absent differ here: absent leaves the field as it is,
/// `null` clears it.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UserChanges {
    /// Trimmed; 1 to 200 characters, not all whitespace, no NUL.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    display_name: Option<String>,
    /// 1 to 200 characters, no NUL, unique in the company; null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200, pattern = r"^[^\x00]*$")]
    external_id: Option<Option<String>>,
    /// true: every session closes (4003) and every token issued so far is
    /// refused; false: the user is restored, older tokens stay refused.
    deactivated: Option<bool>,
}

/// Changes a user. A new display name reaches everyone sharing a thread
/// with them as `chat:user-updated`.
#[utoipa::path(
    patch,
    path = "/admin/users/{id}",
    operation_id = "admin_update_user",
    tag = "admin",
    security(("admin_token" = [])),
    params(("id" = UserId, Path, description = "The user")),
    request_body = UserChanges,
    responses(
        (status = 200, body = UserView),
        BadRequest, Unauthorized, NotFound, Conflict, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn update_user(
    _: Admin,
    state: web::Data<AppState>,
    user_id: web::Path<UserId>,
    body: web::Json<UserChanges>,
) -> Result<HttpResponse, AppError> {
    let UserChanges {
        display_name,
        external_id,
        deactivated,
    } = body.into_inner();
    let display_name = display_name
        .map(|name| DisplayName::parse("display_name", name))
        .transpose()?;
    let external_id = match external_id {
        Some(Some(id)) => Some(Some(ExternalId::parse(id)?)),
        Some(None) => Some(None),
        None => None,
    };
    let user_id = user_id.into_inner();
    let mut user = state
        .ask(UpdateUser {
            user_id,
            company_id: None,
            display_name,
            external_id,
        })
        .await?;
    if let Some(deactivated) = deactivated {
        user = state
            .ask(SetDeactivated {
                user_id,
                deactivated,
            })
            .await?;
    }
    Ok(HttpResponse::Ok().json(user))
}

/// Refuses every token issued to the user up to now (401) and closes
/// their sessions with 4001 on every node. Tokens minted afterwards work.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/tokens/revoke",
    operation_id = "admin_revoke_tokens",
    tag = "admin",
    security(("admin_token" = [])),
    params(("id" = UserId, Path, description = "The user")),
    responses(
        (status = 204, description = "Revoked"),
        BadRequest, Unauthorized, NotFound, Unavailable
    )
)]
pub(super) async fn revoke_tokens(
    _: Admin,
    state: web::Data<AppState>,
    user_id: web::Path<UserId>,
) -> Result<HttpResponse, AppError> {
    let user_id = user_id.into_inner();
    state.ask(RevokeTokens(user_id)).await?;
    log::info!("revoked the tokens of user={user_id}");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRequest {
    /// Default: token_ttl_seconds; at most max_token_ttl_seconds (both
    /// configured, 86400 and 2592000 by default).
    #[schema(minimum = 1)]
    ttl_seconds: Option<i64>,
}

/// The body as the document allows it: an object, or null for the
/// defaults. serde would also read a struct from an array (`[null]` as
/// `{"ttl_seconds": null}`), so the shape is checked first.
fn token_request(body: &[u8]) -> Result<TokenRequest, AppError> {
    let bad = |e: serde_json::Error| AppError::bad_request(format!("bad JSON body: {e}"));
    match serde_json::from_slice(body).map_err(bad)? {
        serde_json::Value::Null => Ok(TokenRequest::default()),
        object @ serde_json::Value::Object(_) => serde_json::from_value(object).map_err(bad),
        _ => Err(AppError::bad_request("the body must be a JSON object")),
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct MintedToken {
    /// An HS256 JWT for /api and /ws.
    token: String,
    #[serde(serialize_with = "rfc3339_millis")]
    expires_at: chrono::DateTime<Utc>,
}

/// Mints a user token. The body is optional (no body: the default
/// lifetime), so it is parsed here rather than by the Json extractor.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/tokens",
    tag = "admin",
    security(("admin_token" = [])),
    params(("id" = UserId, Path, description = "The user")),
    request_body(content = Option<TokenRequest>, description = "Optional"),
    responses(
        (status = 201, body = MintedToken),
        BadRequest, Unauthorized, NotFound, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn mint_token(
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
        token_request(&body)?
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
    let (user, valid_after) = state.ask(TokenSubject(user_id.into_inner())).await?;
    let seconds =
        i64::try_from(ttl).map_err(|_| AppError::bad_request("ttl_seconds is too large"))?;
    let expires_at = Utc::now() + Duration::seconds(seconds);
    let token = state
        .auth
        .mint(user.id, user.company_id, expires_at, valid_after)?;
    log::info!(
        "minted a token for user={} valid until {expires_at}",
        user.id
    );
    Ok(HttpResponse::Created().json(MintedToken { token, expires_at }))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = AdminNewThread)]
#[serde(deny_unknown_fields)]
pub(super) struct NewThread {
    company_id: CompanyId,
    /// Default: group.
    kind: Option<ThreadKind>,
    /// Trimmed; empty means none. No NUL.
    #[schema(max_length = 200, pattern = r"^[^\x00]*$")]
    title: Option<String>,
    /// Users of that company; a direct thread has exactly two.
    #[schema(min_items = 1, max_items = 1000)]
    member_ids: Vec<UserId>,
}

/// Creates a thread in any company, with no creator.
#[utoipa::path(
    post,
    path = "/admin/threads",
    // Unique across the document: the user API has its own create_thread.
    operation_id = "admin_create_thread",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = NewThread,
    responses(
        (status = 201, description = "Created", body = ThreadView),
        (status = 200, description = "The direct thread of this pair already exists", body = ThreadView),
        BadRequest, Unauthorized, NotFound, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn create_thread(
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
    let fields = ThreadFields {
        kind,
        title,
        member_ids,
    };
    threads::create_thread(&state, company_id, None, fields).await
}

/// Adds a user of the thread's company to a group thread.
#[utoipa::path(
    post,
    path = "/admin/threads/{id}/members",
    // Unique across the document: the user API has its own add_member.
    operation_id = "admin_add_member",
    tag = "admin",
    security(("admin_token" = [])),
    params(("id" = ThreadId, Path, description = "The thread")),
    request_body = NewMember,
    responses(
        (status = 201, body = Membership),
        BadRequest, Unauthorized, NotFound, Conflict, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn add_member(
    _: Admin,
    state: web::Data<AppState>,
    thread_id: web::Path<ThreadId>,
    body: web::Json<NewMember>,
) -> Result<HttpResponse, AppError> {
    threads::add_member(
        &state,
        Caller::Admin,
        thread_id.into_inner(),
        body.into_inner(),
    )
    .await
}

/// Removes a member from a group thread.
#[utoipa::path(
    delete,
    path = "/admin/threads/{id}/members/{user_id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(
        ("id" = ThreadId, Path, description = "The thread"),
        ("user_id" = UserId, Path, description = "The member")
    ),
    responses(
        (status = 204, description = "Removed"),
        BadRequest, Unauthorized, NotFound, Conflict, Unavailable
    )
)]
pub(super) async fn remove_member(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(ThreadId, UserId)>,
) -> Result<HttpResponse, AppError> {
    let (thread_id, user_id) = path.into_inner();
    threads::remove_member(&state, Caller::Admin, thread_id, user_id).await
}

/// Deletes any message (moderation): it becomes a tombstone.
#[utoipa::path(
    delete,
    path = "/admin/messages/{id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("id" = MessageId, Path, description = "The message")),
    responses((status = 200, body = MessageView), BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn moderate_message(
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

#[derive(Serialize, ToSchema)]
pub(super) struct Stats {
    sessions: usize,
    users_online: usize,
    live_threads: usize,
    messages_persisted: u64,
    queues: QueueStats,
}

#[derive(Serialize, ToSchema)]
pub(super) struct QueueStats {
    persistence_in_flight: i64,
    hub_held_messages: usize,
    outbound_queued_bytes: usize,
}

/// Live figures of this node.
#[utoipa::path(
    get,
    path = "/admin/stats",
    tag = "admin",
    security(("admin_token" = [])),
    responses((status = 200, body = Stats), Unauthorized, Unavailable)
)]
pub(super) async fn stats(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let hub = state
        .hub()
        .send(GetStats)
        .await
        .map_err(|_| AppError::Unavailable)?;
    let m = metrics();
    Ok(HttpResponse::Ok().json(Stats {
        sessions: hub.sessions,
        users_online: hub.users_online,
        live_threads: hub.live_threads,
        messages_persisted: m.messages_persisted.get(),
        queues: QueueStats {
            persistence_in_flight: m.persistence_in_flight.get(),
            hub_held_messages: hub.held_messages,
            outbound_queued_bytes: hub.outbound_queued_bytes,
        },
    }))
}
