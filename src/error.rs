//! The error policy, in one place.
//!
//! Every failure a client can see is an [`AppError`]. Each variant maps to
//! exactly one contract error code (WebSocket `chat:error.code`) and one
//! HTTP status; the mapping lives in [`AppError::code`] and
//! [`AppError::status`] and nowhere else.
//!
//! - Client mistakes (`bad_request`, `not_found`, `not_member`, ...) are
//!   answered and not logged above debug: they are normal traffic.
//! - A thread the caller may not see is `NotMember`: `not_member` on the
//!   WebSocket and a plain 404 `not_found` over HTTP, identical to a thread
//!   that does not exist, so nothing leaks across companies.
//! - `Unavailable` means the database cannot be reached. It is logged at
//!   warn, answered with 503 / `unavailable`, and the client is expected to
//!   retry (chat:send with the same `client_msg_id`).
//! - `Internal` is a bug or an unexpected database answer. Its detail is
//!   logged at error and never sent to the client.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// The contract's error codes (WebSocket) plus the HTTP-only ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownEvent,
    NotMember,
    NotFound,
    RateLimited,
    Unavailable,
    Internal,
    Unauthorized,
    Forbidden,
    Conflict,
    PayloadTooLarge,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownEvent,
        ErrorCode::NotMember,
        ErrorCode::NotFound,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownEvent => "unknown_event",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    /// The thread does not exist, belongs to another company, or the caller
    /// is not a member: all three look the same from outside.
    #[error("thread not found")]
    NotMember,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("rate limit exceeded, slow down")]
    RateLimited,
    #[error("the database is unavailable, retry later")]
    Unavailable,
    /// The server takes no new work for now (a session cap, a shutdown
    /// under way): `unavailable` to the client, with the reason.
    #[error("{0}")]
    Refused(&'static str),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    /// Logged with its detail; the client only sees "internal error".
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        AppError::BadRequest(message.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::BadRequest(_) => ErrorCode::BadRequest,
            AppError::UnknownEvent(_) => ErrorCode::UnknownEvent,
            AppError::NotMember => ErrorCode::NotMember,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::RateLimited => ErrorCode::RateLimited,
            AppError::Unavailable | AppError::Refused(_) => ErrorCode::Unavailable,
            AppError::Unauthorized(_) => ErrorCode::Unauthorized,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::Conflict(_) => ErrorCode::Conflict,
            AppError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            AppError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The code as HTTP shows it: a hidden thread is just "not found".
    pub fn http_code(&self) -> ErrorCode {
        match self {
            AppError::NotMember => ErrorCode::NotFound,
            other => other.code(),
        }
    }

    /// The message a client may see. Internal details stay in the log.
    pub fn client_message(&self) -> String {
        match self {
            AppError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }

    /// Logs the error at the level the policy gives it. Called once, where
    /// the error is turned into a reply.
    pub fn log(&self) {
        crate::metrics::record_error(self.code().as_str());
        match self {
            AppError::Internal(detail) => log::error!("internal error: {detail}"),
            AppError::Unavailable => log::warn!("database unavailable"),
            AppError::Refused(why) => log::warn!("refused: {why}"),
            other => log::debug!("client error: {other}"),
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match err {
            Error::NotFound => AppError::NotFound("record"),
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | Error::BrokenTransactionManager => AppError::Unavailable,
            Error::DatabaseError(_, info) if is_connection_failure(info.message()) => {
                AppError::Unavailable
            }
            other => AppError::Internal(format!("database: {other}")),
        }
    }
}

/// Postgres answers some outages as ordinary errors (the server shutting
/// down, too many clients); they are still "unavailable" to a client.
fn is_connection_failure(message: &str) -> bool {
    const MARKERS: [&str; 4] = [
        "terminating connection",
        "the database system is",
        "too many clients",
        "server closed the connection",
    ];
    MARKERS.iter().any(|m| message.contains(m))
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppError {
    fn from(err: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        log::debug!("pool: {err}");
        AppError::Unavailable
    }
}

/// The body of every HTTP error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HttpErrorBody {
    pub error: HttpErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HttpErrorDetail {
    pub code: ErrorCode,
    /// For people, not programs: it may change.
    pub message: String,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) | AppError::UnknownEvent(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotMember | AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable | AppError::Refused(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        HttpResponse::build(self.status_code()).json(HttpErrorBody {
            error: HttpErrorDetail {
                code: self.http_code(),
                message: self.client_message(),
            },
        })
    }
}
