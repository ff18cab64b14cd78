//! Counts and times every HTTP request by the route pattern it matched
//! (`/api/threads/{id}`), never by its path: ids in labels would make a
//! series per thread and user, and put them in the metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;

use crate::metrics::metrics;

/// The label of a request that matched no route (the 404 fallback).
const UNMATCHED: &str = "unmatched";

/// Use with `actix_web::middleware::from_fn`, outermost, so that the status
/// counted is the one the client gets.
pub async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req.match_pattern();
    let route = route.as_deref().unwrap_or(UNMATCHED);
    let method = method_label(req.method());
    let result = next.call(req).await;
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    let m = metrics();
    m.http_requests
        .with_label_values(&[route, method, status.as_str()])
        .inc();
    m.http_request_seconds
        .with_label_values(&[route, method])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// HTTP allows any token as a method; an unknown one is `other`, so a
/// client cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
