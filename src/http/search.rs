//! GET /api/search: the messages the caller can read now whose body
//! matches their words, newest first, a page at a time.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::AuthUser;
use super::responses::{BadRequest, NotFound, Unauthorized, Unavailable};
use super::AppState;
use crate::domain::{MessageId, ThreadId};
use crate::error::AppError;
use crate::persistence::{SearchMessages, SearchPosition};
use crate::protocol::views::SearchResult;

/// The page size when the client names none, and the largest.
pub const DEFAULT_SEARCH_LIMIT: i64 = 20;
pub const MAX_SEARCH_LIMIT: i64 = 100;
/// The longest query: far beyond any words someone types, short enough
/// that parsing it costs nothing.
pub const MAX_QUERY_CHARS: usize = 1000;
/// A cursor is the last message's id as 32 hex digits.
const CURSOR_LEN: usize = 32;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/search").get(search));
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The words, every one of which must match (word forms count:
    /// "run" finds "running"). `"a phrase"` matches the words in that
    /// order; `-word` leaves out messages with the word; `or` between
    /// words matches either. Not blank.
    #[param(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    )]
    q: String,
    /// Only this thread (one the caller is a member of, else 404).
    thread_id: Option<ThreadId>,
    /// Default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `next` of the previous page.
    #[param(min_length = 32, max_length = 32, pattern = "^[0-9a-f]*$")]
    before: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    /// Newest first.
    pub results: Vec<SearchResult>,
    /// Pass as `before` for the next (older) page; null on the last page.
    #[schema(required = true)]
    pub next: Option<String>,
}

fn encode_cursor(position: &SearchPosition) -> String {
    position.0 .0.simple().to_string()
}

fn decode_cursor(cursor: &str) -> Result<SearchPosition, AppError> {
    let bad = || AppError::bad_request("before is not a cursor this server gave");
    if cursor.len() != CURSOR_LEN || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let id = uuid::Uuid::try_parse(cursor).map_err(|_| bad())?;
    Ok(SearchPosition(MessageId(id)))
}

/// Full-text search over the messages the caller can read now: their
/// company's, in threads they are a member of. Deleted messages never
/// match; an edited one matches its current body.
#[utoipa::path(
    get,
    path = "/api/search",
    operation_id = "search_messages",
    tag = "user",
    security(("user_token" = [])),
    params(SearchQuery),
    responses((status = 200, body = SearchResults), BadRequest, Unauthorized, NotFound, Unavailable)
)]
pub(super) async fn search(
    caller: AuthUser,
    state: web::Data<AppState>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, AppError> {
    let SearchQuery {
        q,
        thread_id,
        limit,
        before,
    } = query.into_inner();
    let limit = limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
    if !(1..=MAX_SEARCH_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(format!(
            "limit must be between 1 and {MAX_SEARCH_LIMIT}"
        )));
    }
    crate::domain::reject_nul("q", &q)?;
    if q.trim().is_empty() {
        return Err(AppError::bad_request("q must hold at least one word"));
    }
    if q.chars().nth(MAX_QUERY_CHARS).is_some() {
        return Err(AppError::bad_request(format!(
            "q is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    let before = before.as_deref().map(decode_cursor).transpose()?;
    let page = state
        .ask(SearchMessages {
            reader: caller.claimed,
            words: q,
            thread_id,
            limit,
            before,
        })
        .await?;
    Ok(HttpResponse::Ok().json(SearchResults {
        results: page.results,
        next: page.next.as_ref().map(encode_cursor),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let position = SearchPosition(MessageId(uuid::Uuid::now_v7()));
        assert_eq!(
            decode_cursor(&encode_cursor(&position)).ok(),
            Some(position)
        );
        for bad in [
            String::new(),
            "zz".into(),
            "0".repeat(31),
            "0".repeat(33),
            format!("+{}", "0".repeat(31)),
            format!("{}-", "0".repeat(31)),
            "é".repeat(16),
        ] {
            assert!(decode_cursor(&bad).is_err(), "{bad:?}");
        }
    }
}
