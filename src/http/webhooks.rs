//! /admin/webhooks: a company's webhook subscriptions and their delivery
//! log. Deliveries themselves are made by `crate::webhooks`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::Admin;
use super::responses::{BadRequest, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use super::AppState;
use crate::domain::{CompanyId, EventType, EventTypes, WebhookId, WebhookUrl};
use crate::error::AppError;
use crate::persistence::{CreateWebhook, DeleteWebhook, ListDeliveries, ListWebhooks};
use crate::protocol::views::{DeliveryView, WebhookView};
use crate::webhooks::address::check_new_url;

/// The delivery log page size when the request names none, and the largest.
pub const DEFAULT_DELIVERIES_LIMIT: i64 = 50;
pub const MAX_DELIVERIES_LIMIT: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/webhooks")
            .post(create_webhook)
            .get(list_webhooks),
    )
    .service(web::resource("/webhooks/{id}").delete(delete_webhook))
    .service(web::resource("/webhooks/{id}/deliveries").get(deliveries));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewWebhook {
    company_id: CompanyId,
    /// An http or https URL (no credentials, no fragment), at most 2000
    /// bytes. Unless `webhooks.allow_private`, its host must resolve to
    /// public addresses only.
    #[schema(min_length = 1, max_length = 2000)]
    url: String,
    /// The event types to receive; repeats count once.
    #[schema(min_items = 1)]
    events: Vec<EventType>,
}

/// Subscribes a company's endpoint to events. The answer carries the
/// secret that signs every delivery.
#[utoipa::path(
    post,
    path = "/admin/webhooks",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = NewWebhook,
    responses(
        (status = 201, body = WebhookView),
        BadRequest, Unauthorized, NotFound, PayloadTooLarge, Unavailable
    )
)]
pub(super) async fn create_webhook(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<NewWebhook>,
) -> Result<HttpResponse, AppError> {
    let NewWebhook {
        company_id,
        url,
        events,
    } = body.into_inner();
    let url = WebhookUrl::parse(&url)?;
    let events = EventTypes::new(events)?;
    check_new_url(&url, state.settings.webhooks.allow_private).await?;
    let webhook = state
        .ask(CreateWebhook {
            company_id,
            url,
            events,
        })
        .await?;
    log::info!(
        "created webhook={} for company={}",
        webhook.id,
        webhook.company_id
    );
    Ok(HttpResponse::Created().json(webhook))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebhookQuery {
    company_id: CompanyId,
}

#[derive(Serialize, ToSchema)]
pub(super) struct WebhookList {
    /// Oldest first.
    webhooks: Vec<WebhookView>,
}

/// A company's webhooks.
#[utoipa::path(
    get,
    path = "/admin/webhooks",
    operation_id = "admin_list_webhooks",
    tag = "admin",
    security(("admin_token" = [])),
    params(WebhookQuery),
    responses((status = 200, body = WebhookList), BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn list_webhooks(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<WebhookQuery>,
) -> Result<HttpResponse, AppError> {
    let company_id = query.into_inner().company_id;
    let webhooks = state.ask(ListWebhooks { company_id }).await?;
    Ok(HttpResponse::Ok().json(WebhookList { webhooks }))
}

/// Deletes a webhook and its delivery log: nothing more is sent to it.
#[utoipa::path(
    delete,
    path = "/admin/webhooks/{id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("id" = WebhookId, Path, description = "The webhook")),
    responses(
        (status = 204, description = "Deleted"),
        BadRequest, Unauthorized, NotFound, Unavailable
    )
)]
pub(super) async fn delete_webhook(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<WebhookId>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    state.ask(DeleteWebhook(id)).await?;
    log::info!("deleted webhook={id}");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeliveryList {
    /// Newest event first.
    deliveries: Vec<DeliveryView>,
}

/// A webhook's latest deliveries and how each went.
#[utoipa::path(
    get,
    path = "/admin/webhooks/{id}/deliveries",
    tag = "admin",
    security(("admin_token" = [])),
    params(("id" = WebhookId, Path, description = "The webhook"), DeliveriesQuery),
    responses((status = 200, body = DeliveryList), BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn deliveries(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<WebhookId>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, AppError> {
    let limit = query.into_inner().limit.unwrap_or(DEFAULT_DELIVERIES_LIMIT);
    if !(1..=MAX_DELIVERIES_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(format!(
            "limit must be between 1 and {MAX_DELIVERIES_LIMIT}"
        )));
    }
    let deliveries = state
        .ask(ListDeliveries {
            webhook_id: id.into_inner(),
            limit,
        })
        .await?;
    Ok(HttpResponse::Ok().json(DeliveryList { deliveries }))
}
