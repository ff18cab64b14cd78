//! /api/push: a user's Web Push subscriptions and the VAPID public key
//! their browser subscribes with. The pushes themselves are sent by
//! `crate::notifications`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::AuthUser;
use super::responses::{BadRequest, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use super::AppState;
use crate::domain::{PushEndpoint, PushKeys, PushSubscriptionId};
use crate::error::AppError;
use crate::persistence::{CreatePushSubscription, DeletePushSubscription, LoadVapidKeys};
use crate::webhooks::address::check_new_url;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/push/vapid-public-key").get(vapid_public_key))
        .service(web::resource("/push-subscriptions").post(subscribe))
        .service(web::resource("/push-subscriptions/{id}").delete(unsubscribe));
}

#[derive(Serialize, ToSchema)]
pub(super) struct VapidPublicKey {
    /// The uncompressed P-256 public key, base64url without padding: the
    /// `applicationServerKey` of `PushManager.subscribe`.
    key: String,
}

/// The key browsers subscribe with (VAPID, RFC 8292).
#[utoipa::path(
    get,
    path = "/api/push/vapid-public-key",
    tag = "user",
    security(("user_token" = [])),
    responses((status = 200, body = VapidPublicKey), Unauthorized, Unavailable)
)]
pub(super) async fn vapid_public_key(
    _: AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let keys = state.ask(LoadVapidKeys).await?;
    Ok(HttpResponse::Ok().json(VapidPublicKey {
        key: keys.public_key,
    }))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct SubscriptionKeys {
    /// The browser's P-256 public key (65 bytes uncompressed), base64url.
    #[schema(min_length = 1, max_length = 100)]
    p256dh: String,
    /// The 16-byte authentication secret, base64url.
    #[schema(min_length = 1, max_length = 100)]
    auth: String,
}

/// A browser's `PushSubscription.toJSON()` (other fields, such as
/// `expirationTime`, are ignored).
#[derive(Deserialize, ToSchema)]
pub(super) struct NewSubscription {
    /// The push service URL: https (plain http only with
    /// `webhooks.allow_private`), at most 2000 bytes; unless
    /// `webhooks.allow_private`, its host must resolve to public addresses
    /// only.
    #[schema(min_length = 1, max_length = 2000)]
    endpoint: String,
    keys: SubscriptionKeys,
}

#[derive(Serialize, ToSchema)]
pub(super) struct SubscriptionCreated {
    id: PushSubscriptionId,
}

/// Subscribes the caller's browser to Web Push notifications. The same
/// endpoint again replaces its keys and answers the same id.
#[utoipa::path(
    post,
    path = "/api/push-subscriptions",
    tag = "user",
    security(("user_token" = [])),
    request_body = NewSubscription,
    responses(
        (status = 201, body = SubscriptionCreated),
        BadRequest, Unauthorized, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn subscribe(
    caller: AuthUser,
    state: web::Data<AppState>,
    body: web::Json<NewSubscription>,
) -> Result<HttpResponse, AppError> {
    let NewSubscription { endpoint, keys } = body.into_inner();
    let allow_private = state.settings.webhooks.allow_private;
    let endpoint = PushEndpoint::parse(&endpoint, allow_private)?;
    let keys = PushKeys::parse(&keys.p256dh, &keys.auth)?;
    check_new_url(endpoint.as_url(), allow_private)
        .await
        .map_err(|e| AppError::bad_request(format!("endpoint: {e}")))?;
    let id = state
        .ask(CreatePushSubscription {
            user_id: caller.user.id,
            endpoint,
            keys,
        })
        .await?;
    Ok(HttpResponse::Created().json(SubscriptionCreated { id }))
}

/// Removes one of the caller's push subscriptions.
#[utoipa::path(
    delete,
    path = "/api/push-subscriptions/{id}",
    tag = "user",
    security(("user_token" = [])),
    params(("id" = PushSubscriptionId, Path, description = "The subscription")),
    responses(
        (status = 204, description = "Removed"),
        BadRequest, Unauthorized, NotFound, Unavailable
    )
)]
pub(super) async fn unsubscribe(
    caller: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<PushSubscriptionId>,
) -> Result<HttpResponse, AppError> {
    state
        .ask(DeletePushSubscription {
            user_id: caller.user.id,
            id: id.into_inner(),
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
