//! Companies and users: created by the operator, looked up to authenticate.

use actix::Message;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::people::external_id_taken;
use super::prepared::CachePrepared;
use super::rows::{CompanyRow, UserRow};
use super::schema::{companies, users};
use super::{Answer, Db, Query};
use crate::auth::VerifiedToken;
use crate::domain::{CompanyId, DisplayName, ExternalId, ThreadId, UserId};
use crate::error::AppError;
use crate::protocol::views::{CompanyView, UserView};

/// Is the database reachable? (GET /readyz)
#[derive(Message)]
#[rtype(result = "Result<(), AppError>")]
pub struct CheckDatabase;

impl Query for CheckDatabase {
    type Output = ();
    async fn run(self, db: Db) -> Result<Answer<()>, AppError> {
        let mut conn = db.conn().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(().into())
    }
}

#[derive(Message)]
#[rtype(result = "Result<CompanyView, AppError>")]
pub struct CreateCompany {
    pub name: DisplayName,
}

impl Query for CreateCompany {
    type Output = CompanyView;
    async fn run(self, db: Db) -> Result<Answer<CompanyView>, AppError> {
        let mut conn = db.conn().await?;
        let row: CompanyRow = diesel::insert_into(companies::table)
            .values((
                companies::id.eq(Uuid::now_v7()),
                companies::name.eq(self.name.into_string()),
            ))
            .returning(CompanyRow::as_returning())
            .get_result(&mut conn)
            .await?;
        Ok(CompanyView::from(row).into())
    }
}

#[derive(Message)]
#[rtype(result = "Result<UserView, AppError>")]
pub struct CreateUser {
    pub company_id: CompanyId,
    pub display_name: DisplayName,
    pub external_id: Option<ExternalId>,
}

impl Query for CreateUser {
    type Output = UserView;
    async fn run(self, db: Db) -> Result<Answer<UserView>, AppError> {
        use diesel::result::{DatabaseErrorKind, Error};
        let mut conn = db.conn().await?;
        let row: UserRow = diesel::insert_into(users::table)
            .values((
                users::id.eq(Uuid::now_v7()),
                users::company_id.eq(self.company_id.0),
                users::display_name.eq(self.display_name.into_string()),
                users::external_id.eq(self.external_id.map(ExternalId::into_string)),
            ))
            .returning(UserRow::as_returning())
            .get_result(&mut conn)
            .await
            .map_err(|e| match e {
                Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                    AppError::NotFound("company")
                }
                other => external_id_taken(other),
            })?;
        Ok(UserView::from(row).into())
    }
}

/// The user a token names, if they still exist in that company, are not
/// deactivated, and the token was not issued before their last revocation.
///
/// `tokens_valid_after` is a whole second, the revocation's rounded up,
/// and a token with `iat` before it is refused: every token issued up to
/// the revocation (same second included) is, and the mint endpoint issues
/// `iat` no earlier than it, so tokens minted afterwards work. A token
/// without `iat` is refused once the user has a revocation.
#[derive(Message)]
#[rtype(result = "Result<UserView, AppError>")]
pub struct LoadUser(pub VerifiedToken);

impl Query for LoadUser {
    type Output = UserView;
    async fn run(self, db: Db) -> Result<Answer<UserView>, AppError> {
        let mut conn = db.conn().await?;
        let VerifiedToken { claimed, issued_at } = self.0;
        let row: Option<(UserRow, Option<DateTime<Utc>>)> = users::table
            .filter(users::id.eq(claimed.user_id.0))
            .filter(users::company_id.eq(claimed.company_id.0))
            .select((UserRow::as_select(), users::tokens_valid_after))
            .first(&mut conn)
            .await
            .optional()?;
        let (row, valid_after) =
            row.ok_or(AppError::Unauthorized("the token's user does not exist"))?;
        admit_token(row.deactivated_at, valid_after, issued_at)?;
        Ok(UserView::from(row).into())
    }
}

/// `LoadUser`'s rule, given the user's row: refused if deactivated or if
/// the token was issued before the last revocation.
fn admit_token(
    deactivated_at: Option<DateTime<Utc>>,
    valid_after: Option<DateTime<Utc>>,
    issued_at: Option<i64>,
) -> Result<(), AppError> {
    if deactivated_at.is_some() {
        return Err(AppError::Unauthorized("the token's user is deactivated"));
    }
    if let Some(after) = valid_after {
        if issued_at.is_none_or(|iat| iat < after.timestamp()) {
            return Err(AppError::Unauthorized("the token was revoked"));
        }
    }
    Ok(())
}

/// Where one of a user's threads stood when a session was admitted: all
/// the connect sequence's first look needs to choose the rooms to enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadPosition {
    pub id: ThreadId,
    pub last_seq: i64,
    pub last_rev: i64,
}

/// GET /ws: `LoadUser`'s checks and the user's threads (ids and
/// positions only), in one statement. The threads are the connect
/// sequence's first look (see `session::connect`): any snapshot taken
/// before the session registers with the hub serves, since the full look
/// taken after registering corrects it and is what chat:ready reports.
#[derive(Message)]
#[rtype(result = "Result<Vec<ThreadPosition>, AppError>")]
pub struct AdmitSession(pub VerifiedToken);

/// One row per membership in the user's company, or one row of NULL
/// threads for a user without any; no row if the user does not exist.
/// The company is checked on the membership, as in `THREAD_SUMMARIES`.
const ADMIT_SESSION: &str = "
    SELECT u.deactivated_at, u.tokens_valid_after,
           t.id AS thread_id, t.last_seq, t.last_rev
    FROM users u
    LEFT JOIN (memberships m JOIN threads t ON t.id = m.thread_id)
           ON m.user_id = u.id AND m.company_id = u.company_id
    WHERE u.id = $1 AND u.company_id = $2";

#[derive(QueryableByName)]
struct AdmitRow {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    deactivated_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    tokens_valid_after: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    thread_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_seq: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_rev: Option<i64>,
}

impl Query for AdmitSession {
    type Output = Vec<ThreadPosition>;
    async fn run(self, db: Db) -> Result<Answer<Vec<ThreadPosition>>, AppError> {
        let mut conn = db.conn().await?;
        let VerifiedToken { claimed, issued_at } = self.0;
        let rows: Vec<AdmitRow> = diesel::sql_query(ADMIT_SESSION)
            .bind::<SqlUuid, _>(claimed.user_id.0)
            .bind::<SqlUuid, _>(claimed.company_id.0)
            .cached()
            .load(&mut conn)
            .await?;
        let first = rows
            .first()
            .ok_or(AppError::Unauthorized("the token's user does not exist"))?;
        admit_token(first.deactivated_at, first.tokens_valid_after, issued_at)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(ThreadPosition {
                    id: ThreadId(r.thread_id?),
                    last_seq: r.last_seq?,
                    last_rev: r.last_rev?,
                })
            })
            .collect::<Vec<_>>()
            .into())
    }
}

/// Any user by id, for the operator.
#[derive(Message)]
#[rtype(result = "Result<UserView, AppError>")]
pub struct FindUser(pub UserId);

impl Query for FindUser {
    type Output = UserView;
    async fn run(self, db: Db) -> Result<Answer<UserView>, AppError> {
        let mut conn = db.conn().await?;
        let row: Option<UserRow> = users::table
            .find(self.0 .0)
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()?;
        row.map(|row| UserView::from(row).into())
            .ok_or(AppError::NotFound("user"))
    }
}

/// The oldest company of this name, if any (`confab demo` reuses it).
#[derive(Message)]
#[rtype(result = "Result<Option<CompanyView>, AppError>")]
pub struct FindCompanyByName(pub String);

impl Query for FindCompanyByName {
    type Output = Option<CompanyView>;
    async fn run(self, db: Db) -> Result<Answer<Option<CompanyView>>, AppError> {
        let mut conn = db.conn().await?;
        let row: Option<CompanyRow> = companies::table
            .filter(companies::name.eq(self.0))
            .order((companies::created_at, companies::id))
            .select(CompanyRow::as_select())
            .first(&mut conn)
            .await
            .optional()?;
        Ok(row.map(CompanyView::from).into())
    }
}

/// Every user of a company, oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<UserView>, AppError>")]
pub struct CompanyUsers(pub CompanyId);

impl Query for CompanyUsers {
    type Output = Vec<UserView>;
    async fn run(self, db: Db) -> Result<Answer<Vec<UserView>>, AppError> {
        let mut conn = db.conn().await?;
        let rows: Vec<UserRow> = users::table
            .filter(users::company_id.eq(self.0 .0))
            .order((users::created_at, users::id))
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
