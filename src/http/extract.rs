//! Who is asking: extractors that authenticate a request before its
//! handler runs. Tokens are read here and never logged.

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

use super::AppState;
use crate::auth::Claimed;
use crate::error::AppError;
use crate::persistence::LoadUser;
use crate::protocol::views::UserView;

/// The token of `Authorization: Bearer <token>`, if the header is there.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::Internal("app state missing".into()))
}

/// A user whose JWT checked out and who still exists in that company.
pub struct AuthUser {
    pub claimed: Claimed,
    pub user: UserView,
}

impl AuthUser {
    /// Authenticates a user token, wherever it came from.
    pub async fn from_token(state: &AppState, token: &str) -> Result<Self, AppError> {
        let verified = state.auth.verify_user(token)?;
        let claimed = verified.claimed;
        let user = state.ask(LoadUser(verified)).await?;
        Ok(AuthUser { claimed, user })
    }
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req).map(str::to_owned);
        let state = state(req);
        Box::pin(async move {
            let token = token.ok_or(AppError::Unauthorized("missing bearer token"))?;
            AuthUser::from_token(&*state?, &token).await
        })
    }
}

/// The operator, by the configured admin token.
pub struct Admin;

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = (|| {
            let token = bearer_token(req).ok_or(AppError::Unauthorized("missing bearer token"))?;
            state(req)?.auth.verify_admin(token)?;
            Ok(Admin)
        })();
        ready(checked)
    }
}
