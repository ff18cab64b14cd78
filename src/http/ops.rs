//! Health, readiness and metrics, for load balancers and Prometheus.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::AppError;
use crate::persistence::CheckDatabase;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// The process is up and serving HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers: this node can take traffic. In cluster mode a
/// node cut off from the bus still serves its own sessions correctly, so it
/// stays ready (200, for the load balancer) but says it is degraded.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    state.ask(CheckDatabase).await?;
    let body = match &state.bus {
        None => json!({"status": "ready"}),
        Some(bus) if bus.connected() => json!({"status": "ready", "bus": "connected"}),
        Some(_) => json!({"status": "degraded", "bus": "disconnected"}),
    };
    Ok(HttpResponse::Ok().json(body))
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::render())
}
