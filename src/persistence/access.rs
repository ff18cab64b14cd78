//! Who may still get in: deactivation and token revocation. Both move the
//! user's `tokens_valid_after` (see `LoadUser` for the rule), and both are
//! announced so that every node closes the user's open sessions.

use actix::Message;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::rows::UserRow;
use super::schema::users;
use super::{Answer, Db, Query};
use crate::domain::UserId;
use crate::error::AppError;
use crate::events::ChatEvent;
use crate::protocol::views::UserView;

/// The instant from which a revocation made now lets tokens in again: the
/// next whole second, because `iat` counts whole seconds and every token
/// issued up to now, in this second too, must be refused.
fn revocation_boundary(now: DateTime<Utc>) -> Result<DateTime<Utc>, AppError> {
    DateTime::from_timestamp(now.timestamp() + 1, 0)
        .ok_or_else(|| AppError::Internal("the clock is out of range".into()))
}

/// Deactivates (refusing every token issued so far, and closing the
/// user's sessions) or reactivates a user. Reactivation leaves the
/// revocation in place: tokens minted before the deactivation stay refused.
#[derive(Message)]
#[rtype(result = "Result<UserView, AppError>")]
pub struct SetDeactivated {
    pub user_id: UserId,
    pub deactivated: bool,
}

impl Query for SetDeactivated {
    type Output = UserView;
    async fn run(self, db: Db) -> Result<Answer<UserView>, AppError> {
        let mut conn = db.conn().await?;
        let target = users::table.find(self.user_id.0);
        let row: Option<UserRow> = if self.deactivated {
            let since = diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
                "coalesce(deactivated_at, now())",
            );
            diesel::update(target)
                .set((
                    users::deactivated_at.eq(since.nullable()),
                    users::tokens_valid_after.eq(Some(revocation_boundary(Utc::now())?)),
                    users::updated_at.eq(diesel::dsl::now),
                ))
                .returning(UserRow::as_returning())
                .get_result(&mut conn)
                .await
                .optional()?
        } else {
            diesel::update(target)
                .set((
                    users::deactivated_at.eq(None::<DateTime<Utc>>),
                    users::updated_at.eq(diesel::dsl::now),
                ))
                .returning(UserRow::as_returning())
                .get_result(&mut conn)
                .await
                .optional()?
        };
        let row = row.ok_or(AppError::NotFound("user"))?;
        let events = if self.deactivated {
            vec![ChatEvent::UserDeactivated {
                user_id: row.id.into(),
            }]
        } else {
            Vec::new()
        };
        Ok(Answer::with_events(UserView::from(row), events))
    }
}

/// Refuses every token issued to the user up to now and closes their
/// sessions.
#[derive(Message)]
#[rtype(result = "Result<(), AppError>")]
pub struct RevokeTokens(pub UserId);

impl Query for RevokeTokens {
    type Output = ();
    async fn run(self, db: Db) -> Result<Answer<()>, AppError> {
        let mut conn = db.conn().await?;
        let updated = diesel::update(users::table.find(self.0 .0))
            .set(users::tokens_valid_after.eq(Some(revocation_boundary(Utc::now())?)))
            .execute(&mut conn)
            .await?;
        if updated == 0 {
            return Err(AppError::NotFound("user"));
        }
        Ok(Answer::with_events(
            (),
            vec![ChatEvent::TokensRevoked { user_id: self.0 }],
        ))
    }
}

/// A user to mint a token for, with the instant their tokens must not be
/// issued before.
#[derive(Message)]
#[rtype(result = "Result<(UserView, Option<DateTime<Utc>>), AppError>")]
pub struct TokenSubject(pub UserId);

impl Query for TokenSubject {
    type Output = (UserView, Option<DateTime<Utc>>);
    async fn run(self, db: Db) -> Result<Answer<(UserView, Option<DateTime<Utc>>)>, AppError> {
        let mut conn = db.conn().await?;
        let row: Option<(UserRow, Option<DateTime<Utc>>)> = users::table
            .find(self.0 .0)
            .select((UserRow::as_select(), users::tokens_valid_after))
            .first(&mut conn)
            .await
            .optional()?;
        let (row, valid_after) = row.ok_or(AppError::NotFound("user"))?;
        Ok((UserView::from(row), valid_after).into())
    }
}
