//! The error answers as the OpenAPI document lists them: one type per
//! status, each with the common error body ([`HttpErrorBody`]), for the
//! handlers' `responses(...)`. Documentation only: what a handler really
//! answers comes from `AppError`'s one mapping in `crate::error`.

use utoipa::IntoResponses;

use crate::error::HttpErrorBody;

#[derive(IntoResponses)]
#[response(
    status = 400,
    description = "A malformed id, query or body (`bad_request`)"
)]
pub struct BadRequest(pub HttpErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "Missing, invalid or expired token (`unauthorized`)"
)]
pub struct Unauthorized(pub HttpErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "The Origin is not on the allowlist (`forbidden`)"
)]
pub struct Forbidden(pub HttpErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "Only the thread's creator may remove other members (`forbidden`)"
)]
pub struct NotCreator(pub HttpErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "No such record visible to the caller; another company's looks the same (`not_found`)"
)]
pub struct NotFound(pub HttpErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 409,
    description = "The change contradicts the current state (`conflict`)"
)]
pub struct Conflict(pub HttpErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 413,
    description = "The body is over 64 KiB (`payload_too_large`)"
)]
pub struct PayloadTooLarge(pub HttpErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "The database is unavailable or the server is refusing work; retry (`unavailable`)"
)]
pub struct Unavailable(pub HttpErrorBody);
