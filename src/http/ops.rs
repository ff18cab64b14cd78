//! Health, readiness and metrics, for load balancers and Prometheus.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::responses::Unavailable;
use super::AppState;
use crate::error::AppError;
use crate::persistence::CheckDatabase;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").get(healthz))
        .service(web::resource("/readyz").get(readyz));
}

pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").get(metrics));
}

#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// Always `ok`.
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Readiness {
    /// `ready`, or `degraded` when a cluster node has lost the bus but
    /// still serves its own sessions.
    #[schema(example = "ready")]
    status: &'static str,
    /// Cluster mode only: `connected` or `disconnected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    bus: Option<&'static str>,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The database answers: this node can take traffic. In cluster mode a
/// node cut off from the bus still serves its own sessions correctly, so it
/// stays ready (200, for the load balancer) but says it is degraded.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses((status = 200, body = Readiness), Unavailable)
)]
pub(super) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    state.ask(CheckDatabase).await?;
    let body = match &state.bus {
        None => Readiness {
            status: "ready",
            bus: None,
        },
        Some(bus) if bus.connected() => Readiness {
            status: "ready",
            bus: Some("connected"),
        },
        Some(_) => Readiness {
            status: "degraded",
            bus: Some("disconnected"),
        },
    };
    Ok(HttpResponse::Ok().json(body))
}

/// Prometheus metrics in the text exposition format. Served on the main
/// address unless `metrics_bind` names one of its own (then 404 here).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"))
)]
pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render(&[&state.db_pool]))
}
