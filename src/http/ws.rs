//! GET /ws: authenticate, check the Origin, then upgrade. Everything that
//! can be refused is refused here with an HTTP status, before the upgrade.

use actix::AsyncContext;
use actix_web::http::header::ORIGIN;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, WebsocketContext};
use bytes::Bytes;

use super::extract::bearer_token;
use super::responses::{Forbidden, Unauthorized};
use super::AppState;
use crate::error::{AppError, HttpErrorBody};
use crate::outbound::{MeteredStream, OutboundGauge};
use crate::persistence::AdmitSession;
use crate::session::inbound::InboundFrames;
use crate::session::WsSession;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").get(upgrade));
}

/// The WebSocket: JSON frames as PROTOCOL.md describes. Browsers pass the
/// token as `?token=` (they cannot set headers on a WebSocket).
#[utoipa::path(
    get,
    path = "/ws",
    tag = "user",
    security(("user_token" = [])),
    params(("token" = Option<String>, Query, description = "A user token, instead of the Authorization header")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; chat:ready is the first frame"),
        (status = 400, description = "Not a WebSocket upgrade request (`bad_request`)", body = HttpErrorBody),
        Unauthorized, Forbidden,
        (status = 503, description = "Too many sessions, shutting down, or the database is unavailable (`unavailable`)", body = HttpErrorBody)
    )
)]
pub(super) async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    check_origin(&req, &state.settings.allowed_origins)?;
    let token = token(&req).ok_or(AppError::Unauthorized(
        "missing token: use ?token= or a bearer header",
    ))?;
    // AuthUser's checks, and the user's threads for the connect
    // sequence's first look, in one query.
    let verified = state.auth.verify_user(&token)?;
    let claimed = verified.claimed;
    let threads = state.ask(AdmitSession(verified)).await?;
    let permit = state.sessions.capacity.admit(claimed.user_id)?;
    let mut response = ws::handshake(&req)?;

    let outbound = OutboundGauge::default();
    let session = WsSession::new(
        claimed,
        threads,
        state.sessions.clone(),
        outbound.clone(),
        permit,
    );
    let max_frame_bytes = state.sessions.settings.max_frame_bytes;
    // The context gets an empty stream: frames are decoded by our own
    // codec (see session::inbound) so that each violation keeps its cause.
    let idle = futures_util::stream::pending::<Result<Bytes, actix_web::error::PayloadError>>();
    let frames = WebsocketContext::with_factory(idle, move |ctx| {
        ctx.add_stream(InboundFrames::new(payload, max_frame_bytes));
        session
    });
    Ok(response.streaming(MeteredStream::new(frames, outbound)))
}

/// Browsers cannot set headers on a WebSocket, hence `?token=`.
fn token(req: &HttpRequest) -> Option<String> {
    if let Some(token) = bearer_token(req) {
        return Some(token.to_owned());
    }
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
        .filter(|t| !t.is_empty())
}

/// With an allowlist configured, a browser upgrade from any other page is
/// refused. A request without an Origin is not from a browser page and
/// cannot be a cross-site hijack; it still needs a valid token.
fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), AppError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let Some(origin) = req.headers().get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        Ok(())
    } else {
        Err(AppError::Forbidden("origin not allowed"))
    }
}
