//! Companies and users: created by the operator, looked up to authenticate.

use actix::Message;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::people::external_id_taken;
use super::rows::{CompanyRow, UserRow};
use super::schema::{companies, users};
use super::{Answer, Db, Query};
use crate::auth::VerifiedToken;
use crate::domain::{CompanyId, DisplayName, ExternalId, UserId};
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
        if row.deactivated_at.is_some() {
            return Err(AppError::Unauthorized("the token's user is deactivated"));
        }
        if let Some(after) = valid_after {
            if issued_at.is_none_or(|iat| iat < after.timestamp()) {
                return Err(AppError::Unauthorized("the token was revoked"));
            }
        }
        Ok(UserView::from(row).into())
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
