//! Search: the messages a user can read now whose body matches a query,
//! newest first (by message id: UUIDv7, so by creation time to the
//! millisecond), with highlights.
//!
//! Who may see what is decided in the statement itself: the caller's
//! company, and the threads they are a member of at this moment (a
//! thread they left is no longer searched). The words are matched by
//! Postgres full-text search over `messages.search_words`, a generated
//! column (see the migration for the language and what is read as a
//! word), through `websearch_to_tsquery`: every word must match,
//! `"quoted phrase"` and `-word` work, and query words are stemmed as the
//! bodies are.
//!
//! The page and the messages' views are read in one repeatable-read
//! snapshot, so a highlight always belongs to the body it is sent with;
//! the views come from [`message_views`], as history pages' do.

mod highlight;

use actix::Message;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::message_views::message_views;
use super::rows::MessageRow;
use super::schema::messages;
use super::threads::require_member;
use super::{Answer, Db, Query};
use crate::auth::Claimed;
use crate::domain::{MessageId, ThreadId};
use crate::error::AppError;
use crate::protocol::views::SearchResult;

/// Where a results page ends: the next page holds the matches older than
/// this message. Message ids are UUIDv7, whose leading bits are the time
/// the server made them, so "newest first" is id order, and the primary
/// key is the index that walks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchPosition(pub MessageId);

/// GET /api/search.
#[derive(Message)]
#[rtype(result = "Result<SearchPage, AppError>")]
pub struct SearchMessages {
    pub reader: Claimed,
    /// As the user typed it, not blank (`websearch_to_tsquery` syntax).
    pub words: String,
    /// Only this thread, which the reader must be a member of.
    pub thread_id: Option<ThreadId>,
    pub limit: i64,
    pub before: Option<SearchPosition>,
}

pub struct SearchPage {
    pub results: Vec<SearchResult>,
    /// Where the next page starts; None on the last page.
    pub next: Option<SearchPosition>,
}

#[derive(QueryableByName)]
struct Hit {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    marked: String,
}

/// The matches are found and ordered in the inner query, and only the
/// page's rows are highlighted (ts_headline parses the body again). One
/// row more than asked tells whether another page follows.
///
/// Postgres picks the plan by how common the words are: a rare word
/// through the GIN index, then a sort of its few matches; a common one by
/// walking the primary key newest first and stopping at the page's end.
const SEARCH: &str = r#"
    SELECT h.id,
           ts_headline('english'::regconfig,
                       translate(h.body, E'<>&\x01\x02', '     '),
                       websearch_to_tsquery('english'::regconfig, translate($3, '<>&', '   ')),
                       E'HighlightAll=true, StartSel="\x01", StopSel="\x02"') AS marked
    FROM (
        SELECT m.id, m.body
        FROM messages m
        WHERE m.company_id = $1
          AND m.deleted_at IS NULL
          AND m.search_words @@ websearch_to_tsquery('english'::regconfig,
                                                     translate($3, '<>&', '   '))
          AND m.thread_id IN (SELECT ms.thread_id FROM memberships ms
                              WHERE ms.user_id = $2 AND ms.company_id = $1)
          AND ($4::uuid IS NULL OR m.thread_id = $4)
          AND ($5::uuid IS NULL OR m.id < $5)
        ORDER BY m.id DESC
        LIMIT $6
    ) h
    ORDER BY h.id DESC"#;

impl Query for SearchMessages {
    type Output = SearchPage;
    async fn run(self, db: Db) -> Result<Answer<SearchPage>, AppError> {
        let mut conn = db.conn().await?;
        if let Some(thread_id) = self.thread_id {
            // Narrowing to a thread the reader cannot see is the same
            // not_found as for one that does not exist. (The search
            // checks membership again, in its snapshot.)
            require_member(&mut conn, self.reader, thread_id).await?;
        }
        let page = conn
            .build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, AppError, _>(async |conn| {
                let mut hits: Vec<Hit> = diesel::sql_query(SEARCH)
                    .bind::<SqlUuid, _>(self.reader.company_id.0)
                    .bind::<SqlUuid, _>(self.reader.user_id.0)
                    .bind::<Text, _>(&self.words)
                    .bind::<Nullable<SqlUuid>, _>(self.thread_id.map(|t| t.0))
                    .bind::<Nullable<SqlUuid>, _>(self.before.map(|p| p.0 .0))
                    .bind::<BigInt, _>(self.limit + 1)
                    .load(conn)
                    .await?;
                let more = hits.len() as i64 > self.limit;
                hits.truncate(self.limit.max(0) as usize);
                let ids: Vec<Uuid> = hits.iter().map(|h| h.id).collect();
                let mut rows: Vec<MessageRow> = messages::table
                    .filter(messages::id.eq_any(&ids))
                    .select(MessageRow::as_select())
                    .load(conn)
                    .await?;
                // Back into the page's order.
                rows.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
                let next = match rows.last() {
                    Some(last) if more => Some(SearchPosition(last.id.into())),
                    _ => None,
                };
                let views = message_views(conn, rows).await?;
                if views.len() != hits.len() {
                    return Err(AppError::Internal(
                        "a matching message vanished inside one snapshot".into(),
                    ));
                }
                let results = views
                    .into_iter()
                    .zip(hits)
                    .map(|(message, hit)| SearchResult {
                        highlight: highlight::highlight(
                            message.body.as_deref().unwrap_or_default(),
                            &hit.marked,
                        ),
                        message,
                    })
                    .collect();
                Ok(SearchPage { results, next })
            })
            .await?;
        Ok(page.into())
    }
}
