//! People: a company's directory, one colleague, the host application's
//! ids, and changes to a user. A rename is announced to everyone who
//! shares a thread with the user.

use actix::Message;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::rows::UserRow;
use super::schema::{memberships, users};
use super::{Answer, Db, Query};
use crate::domain::{CompanyId, DisplayName, ExternalId, ThreadId, UserId};
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::protocol::views::UserView;

/// Where a directory page ends: the next page starts after this user in
/// directory order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPosition {
    pub display_name: String,
    pub id: UserId,
}

/// One page of a company's active users, in directory order: the
/// lower-cased name compared byte by byte (collation "C", so the order
/// does not depend on the database's locale), then id.
#[derive(Message)]
#[rtype(result = "Result<DirectoryPage, AppError>")]
pub struct ListDirectory {
    pub company_id: CompanyId,
    /// Matched anywhere in the name, ignoring case (and accents where the
    /// database has `unaccent`). Taken literally: `%` and `_` match
    /// themselves.
    pub search: Option<String>,
    pub limit: i64,
    pub after: Option<DirectoryPosition>,
}

pub struct DirectoryPage {
    pub users: Vec<(UserId, String)>,
    /// Where the next page starts; None on the last page.
    pub next: Option<DirectoryPosition>,
}

#[derive(QueryableByName)]
struct DirectoryRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    display_name: String,
}

/// `text` as a LIKE pattern that matches it literally.
fn like_literal(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

impl Query for ListDirectory {
    type Output = DirectoryPage;
    async fn run(self, db: Db) -> Result<Answer<DirectoryPage>, AppError> {
        let mut conn = db.conn().await?;
        let (after_name, after_id) = match self.after {
            Some(p) => (Some(p.display_name), Some(p.id.0)),
            None => (None, None),
        };
        // One row more than asked tells whether another page follows.
        let mut rows: Vec<DirectoryRow> = diesel::sql_query(
            r#"SELECT id, display_name FROM users
                 WHERE company_id = $1 AND deactivated_at IS NULL
                   AND ($2::text IS NULL
                        OR directory_fold(display_name) LIKE '%' || directory_fold($2) || '%')
                   AND ($3::text IS NULL
                        OR (lower(display_name) COLLATE "C", id) > (lower($3) COLLATE "C", $4::uuid))
                 ORDER BY lower(display_name) COLLATE "C", id
                 LIMIT $5"#,
        )
        .bind::<diesel::sql_types::Uuid, _>(self.company_id.0)
        .bind::<Nullable<Text>, _>(self.search.as_deref().map(like_literal))
        .bind::<Nullable<Text>, _>(after_name)
        .bind::<Nullable<diesel::sql_types::Uuid>, _>(after_id)
        .bind::<BigInt, _>(self.limit + 1)
        .load(&mut conn)
        .await?;
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit.max(0) as usize);
        let next = match rows.last() {
            Some(last) if more => Some(DirectoryPosition {
                display_name: last.display_name.clone(),
                id: last.id.into(),
            }),
            _ => None,
        };
        let users = rows
            .into_iter()
            .map(|r| (r.id.into(), r.display_name))
            .collect();
        Ok(DirectoryPage { users, next }.into())
    }
}

/// A user of `company_id`, deactivated or not; anyone else is not found.
#[derive(Message)]
#[rtype(result = "Result<Colleague, AppError>")]
pub struct FindColleague {
    pub company_id: CompanyId,
    pub user_id: UserId,
}

pub struct Colleague {
    pub id: UserId,
    pub display_name: String,
    pub deactivated_at: Option<DateTime<Utc>>,
}

impl Query for FindColleague {
    type Output = Colleague;
    async fn run(self, db: Db) -> Result<Answer<Colleague>, AppError> {
        let mut conn = db.conn().await?;
        let row: Option<(Uuid, String, Option<DateTime<Utc>>)> = users::table
            .filter(users::id.eq(self.user_id.0))
            .filter(users::company_id.eq(self.company_id.0))
            .select((users::id, users::display_name, users::deactivated_at))
            .first(&mut conn)
            .await
            .optional()?;
        let (id, display_name, deactivated_at) = row.ok_or(AppError::NotFound("user"))?;
        Ok(Colleague {
            id: id.into(),
            display_name,
            deactivated_at,
        }
        .into())
    }
}

/// The user of a company with this external id: none or one.
#[derive(Message)]
#[rtype(result = "Result<Vec<UserView>, AppError>")]
pub struct FindByExternalId {
    pub company_id: CompanyId,
    pub external_id: ExternalId,
}

impl Query for FindByExternalId {
    type Output = Vec<UserView>;
    async fn run(self, db: Db) -> Result<Answer<Vec<UserView>>, AppError> {
        let mut conn = db.conn().await?;
        let rows: Vec<UserRow> = users::table
            .filter(users::company_id.eq(self.company_id.0))
            .filter(users::external_id.eq(self.external_id.into_string()))
            .select(UserRow::as_select())
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(UserView::from)
            .collect::<Vec<_>>()
            .into())
    }
}

/// A taken external id is the client's conflict, not a server error.
pub(super) fn external_id_taken(e: DieselError) -> AppError {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            AppError::Conflict("external_id is taken by another user of the company".into())
        }
        other => other.into(),
    }
}

/// Changes a user's display name and external id. A user renaming
/// themselves names their company; the operator names none.
#[derive(Message)]
#[rtype(result = "Result<UserView, AppError>")]
pub struct UpdateUser {
    pub user_id: UserId,
    pub company_id: Option<CompanyId>,
    pub display_name: Option<DisplayName>,
    /// None: unchanged; Some(None): cleared.
    pub external_id: Option<Option<ExternalId>>,
}

#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChanges {
    display_name: Option<String>,
    external_id: Option<Option<String>>,
}

impl Query for UpdateUser {
    type Output = UserView;
    async fn run(self, db: Db) -> Result<Answer<UserView>, AppError> {
        let mut conn = db.conn().await?;
        let UpdateUser {
            user_id,
            company_id,
            display_name,
            external_id,
        } = self;
        let changes = UserChanges {
            display_name: display_name.map(DisplayName::into_string),
            external_id: external_id.map(|id| id.map(ExternalId::into_string)),
        };
        let (row, renamed) = conn
            .transaction::<_, AppError, _>(async move |conn| {
                let (owner, old_name): (Uuid, String) = users::table
                    .find(user_id.0)
                    .select((users::company_id, users::display_name))
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?
                    .ok_or(AppError::NotFound("user"))?;
                if company_id.is_some_and(|c| c.0 != owner) {
                    return Err(AppError::NotFound("user"));
                }
                let renamed = changes
                    .display_name
                    .as_ref()
                    .is_some_and(|new| *new != old_name);
                let row: UserRow = diesel::update(users::table.find(user_id.0))
                    .set((&changes, users::updated_at.eq(diesel::dsl::now)))
                    .returning(UserRow::as_returning())
                    .get_result(conn)
                    .await
                    .map_err(external_id_taken)?;
                // Read under the user's row lock, with the rename: every
                // thread they are in when it commits.
                let threads: Vec<Uuid> = if renamed {
                    memberships::table
                        .filter(memberships::user_id.eq(user_id.0))
                        .select(memberships::thread_id)
                        .load(conn)
                        .await?
                } else {
                    Vec::new()
                };
                Ok((row, renamed.then_some(threads)))
            })
            .await?;
        let events = match renamed {
            Some(threads) => vec![ChatEvent::UserUpdated {
                user_id: row.id.into(),
                display_name: row.display_name.clone(),
                threads: threads.into_iter().map(ThreadId).collect(),
            }],
            None => Vec::new(),
        };
        Ok(Answer::with_events(UserView::from(row), events))
    }
}

#[cfg(test)]
mod tests {
    use super::like_literal;

    #[test]
    fn search_text_matches_literally() {
        assert_eq!(like_literal("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(like_literal("Ann"), "Ann");
    }
}
