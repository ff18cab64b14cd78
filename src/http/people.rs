//! /api people: the caller's company directory, one colleague, and
//! renaming yourself. Nothing here reaches another company: every query
//! is scoped to the caller's.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::AuthUser;
use super::responses::{BadRequest, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use super::AppState;
use crate::domain::{DisplayName, UserId, MAX_NAME_CHARS};
use crate::error::AppError;
use crate::hub::messages::OnlineAmong;
use crate::persistence::{DirectoryPosition, FindColleague, ListDirectory, UpdateUser};
use crate::protocol::views::{DirectoryEntry, PersonView, UserView};

/// The directory page size when the client names none, and the largest.
pub const DEFAULT_DIRECTORY_LIMIT: i64 = 50;
pub const MAX_DIRECTORY_LIMIT: i64 = 200;
/// Longer than any cursor this server gives: 32 hex digits of id and two
/// per byte of a name of at most 200 characters.
const MAX_CURSOR_LEN: usize = 2000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").get(directory))
        .service(web::resource("/users/{id}").get(colleague));
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DirectoryQuery {
    /// Matched anywhere in the display name, ignoring case (and accents
    /// where the database can).
    #[param(max_length = 200, pattern = r"^[^\x00]*$")]
    q: Option<String>,
    /// Default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// The `next` of the previous page.
    #[param(max_length = 2000, pattern = "^[0-9a-f]*$")]
    after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Directory {
    /// Ordered by display name ignoring case, then id.
    pub users: Vec<DirectoryEntry>,
    /// Pass as `after` for the next page; null on the last page.
    #[schema(required = true)]
    pub next: Option<String>,
}

/// A position as the opaque cursor clients pass back: the id's 32 hex
/// digits, then the name's UTF-8 bytes in hex.
fn encode_cursor(position: &DirectoryPosition) -> String {
    let mut cursor = position.id.0.simple().to_string();
    for byte in position.display_name.as_bytes() {
        cursor.push_str(&format!("{byte:02x}"));
    }
    cursor
}

fn decode_cursor(cursor: &str) -> Result<DirectoryPosition, AppError> {
    let bad = || AppError::bad_request("after is not a cursor this server gave");
    if !cursor.is_ascii()
        || cursor.len() < 32
        || cursor.len() > MAX_CURSOR_LEN
        || !cursor.len().is_multiple_of(2)
    {
        return Err(bad());
    }
    let (id, name) = cursor.split_at(32);
    let id = uuid::Uuid::try_parse(id).map_err(|_| bad())?;
    let bytes = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&name[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    let display_name = String::from_utf8(bytes).map_err(|_| bad())?;
    // No name holds a NUL, and Postgres refuses one in text: a made-up
    // cursor with one must be a 400, not a database error.
    if display_name.contains('\0') {
        return Err(bad());
    }
    Ok(DirectoryPosition {
        display_name,
        id: UserId(id),
    })
}

/// The caller's company directory: active users, a page at a time.
#[utoipa::path(
    get,
    path = "/api/users",
    operation_id = "list_directory",
    tag = "user",
    security(("user_token" = [])),
    params(DirectoryQuery),
    responses((status = 200, body = Directory), BadRequest, Unauthorized, Unavailable)
)]
pub(super) async fn directory(
    caller: AuthUser,
    state: web::Data<AppState>,
    query: web::Query<DirectoryQuery>,
) -> Result<HttpResponse, AppError> {
    let DirectoryQuery { q, limit, after } = query.into_inner();
    let limit = limit.unwrap_or(DEFAULT_DIRECTORY_LIMIT);
    if !(1..=MAX_DIRECTORY_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(format!(
            "limit must be between 1 and {MAX_DIRECTORY_LIMIT}"
        )));
    }
    if let Some(q) = &q {
        crate::domain::reject_nul("q", q)?;
        if q.chars().count() > MAX_NAME_CHARS {
            return Err(AppError::bad_request(format!(
                "q is longer than {MAX_NAME_CHARS} characters"
            )));
        }
    }
    let after = after.as_deref().map(decode_cursor).transpose()?;
    let page = state
        .ask(ListDirectory {
            company_id: caller.claimed.company_id,
            search: q.filter(|q| !q.is_empty()),
            limit,
            after,
        })
        .await?;
    let online = online_among(&state, page.users.iter().map(|(id, _)| *id).collect()).await?;
    let users = page
        .users
        .into_iter()
        .map(|(id, display_name)| DirectoryEntry {
            online: online.contains(&id),
            id,
            display_name,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Directory {
        users,
        next: page.next.as_ref().map(encode_cursor),
    }))
}

async fn online_among(
    state: &AppState,
    users: Vec<UserId>,
) -> Result<std::collections::HashSet<UserId>, AppError> {
    state
        .hub()
        .send(OnlineAmong(users))
        .await
        .map_err(|_| AppError::Unavailable)
}

/// One user of the caller's company, deactivated or not.
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    operation_id = "get_colleague",
    tag = "user",
    security(("user_token" = [])),
    params(("id" = UserId, Path, description = "The user")),
    responses((status = 200, body = PersonView), BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn colleague(
    caller: AuthUser,
    state: web::Data<AppState>,
    user_id: web::Path<UserId>,
) -> Result<HttpResponse, AppError> {
    let found = state
        .ask(FindColleague {
            company_id: caller.claimed.company_id,
            user_id: user_id.into_inner(),
        })
        .await?;
    let online = online_among(&state, vec![found.id]).await?;
    Ok(HttpResponse::Ok().json(PersonView {
        online: online.contains(&found.id),
        id: found.id,
        display_name: found.display_name,
        deactivated_at: found.deactivated_at,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MyChanges {
    /// Trimmed; 1 to 200 characters, not all whitespace, no NUL.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    display_name: String,
}

/// Renames the caller. Everyone sharing a thread with them, and their
/// own sessions, get `chat:user-updated`.
#[utoipa::path(
    patch,
    path = "/api/me",
    operation_id = "update_me",
    tag = "user",
    security(("user_token" = [])),
    request_body = MyChanges,
    responses((status = 200, body = UserView), BadRequest, Unauthorized, PayloadTooLarge, Unavailable)
)]
pub(super) async fn update_me(
    caller: AuthUser,
    state: web::Data<AppState>,
    body: web::Json<MyChanges>,
) -> Result<HttpResponse, AppError> {
    let display_name = DisplayName::parse("display_name", body.into_inner().display_name)?;
    let user = state
        .ask(UpdateUser {
            user_id: caller.claimed.user_id,
            company_id: Some(caller.claimed.company_id),
            display_name: Some(display_name),
            external_id: None,
        })
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let position = DirectoryPosition {
            display_name: "Zoë 🦊".into(),
            id: UserId(uuid::Uuid::new_v4()),
        };
        assert_eq!(
            decode_cursor(&encode_cursor(&position)).ok(),
            Some(position)
        );
        for bad in [
            "",
            "zz",
            "é",
            &"0".repeat(31),
            &format!("{}ff", "0".repeat(32)),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
