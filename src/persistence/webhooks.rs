//! Webhook subscriptions (the admin API) and the dispatcher's side of the
//! outbox: claiming a due delivery, settling it, and the backlog figures.
//! The rows are written by [`super::outbox`].
//!
//! Deleting a webhook only marks it: the API and the dispatcher ignore it
//! from then on, and [`purge_deleted`] removes it and its rows later. A
//! cascading delete at once would wait on the row lock of any delivery in
//! flight, up to its 10 s timeout, which is exactly when an operator
//! deletes a webhook: its endpoint hangs.
//!
//! Claims are row locks (`FOR UPDATE SKIP LOCKED`) held by the transaction
//! that makes the attempt: another node skips a claimed row, and if the
//! claiming node dies its connection closes, Postgres ends the
//! transaction, and the row is free at once, attempt not counted.

use std::future::Future;

use actix::Message;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::prepared::CachePrepared;
use super::schema::{companies, webhook_deliveries, webhooks};
use super::{Answer, Db, Query};
use crate::auth::random_secret;
use crate::domain::{CompanyId, EventType, EventTypes, WebhookId, WebhookUrl};
use crate::error::AppError;
use crate::protocol::views::{DeliveryView, WebhookView};

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhooks)]
struct WebhookRow {
    id: Uuid,
    company_id: Uuid,
    url: String,
    events: Vec<String>,
    secret: String,
    created_at: DateTime<Utc>,
}

/// The webhooks that are not deleted.
type Live = diesel::dsl::Filter<webhooks::table, diesel::dsl::IsNull<webhooks::deleted_at>>;

fn live() -> Live {
    webhooks::table.filter(webhooks::deleted_at.is_null())
}

impl TryFrom<WebhookRow> for WebhookView {
    type Error = AppError;

    fn try_from(row: WebhookRow) -> Result<Self, AppError> {
        let events = row
            .events
            .iter()
            .map(|name| EventType::parse(name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AppError::Internal(format!("webhook {} events: {e}", row.id)))?;
        Ok(WebhookView {
            id: WebhookId(row.id),
            company_id: CompanyId(row.company_id),
            url: row.url,
            events,
            secret: row.secret,
            created_at: row.created_at,
        })
    }
}

/// POST /admin/webhooks. The URL's address has been checked by the caller.
#[derive(Message)]
#[rtype(result = "Result<WebhookView, AppError>")]
pub struct CreateWebhook {
    pub company_id: CompanyId,
    pub url: WebhookUrl,
    pub events: EventTypes,
}

impl Query for CreateWebhook {
    type Output = WebhookView;
    async fn run(self, db: Db) -> Result<Answer<WebhookView>, AppError> {
        use diesel::result::{DatabaseErrorKind, Error};
        let mut conn = db.conn().await?;
        let row: WebhookRow = diesel::insert_into(webhooks::table)
            .values((
                webhooks::id.eq(Uuid::now_v7()),
                webhooks::company_id.eq(self.company_id.0),
                webhooks::url.eq(self.url.as_str()),
                webhooks::events.eq(self.events.names()),
                webhooks::secret.eq(random_secret(32)),
            ))
            .returning(WebhookRow::as_returning())
            .get_result(&mut conn)
            .await
            .map_err(|e| match e {
                Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                    AppError::NotFound("company")
                }
                other => other.into(),
            })?;
        Ok(WebhookView::try_from(row)?.into())
    }
}

/// GET /admin/webhooks?company_id=: oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<WebhookView>, AppError>")]
pub struct ListWebhooks {
    pub company_id: CompanyId,
}

impl Query for ListWebhooks {
    type Output = Vec<WebhookView>;
    async fn run(self, db: Db) -> Result<Answer<Vec<WebhookView>>, AppError> {
        let mut conn = db.conn().await?;
        let company: Option<Uuid> = companies::table
            .find(self.company_id.0)
            .select(companies::id)
            .first(&mut conn)
            .await
            .optional()?;
        if company.is_none() {
            return Err(AppError::NotFound("company"));
        }
        let rows: Vec<WebhookRow> = live()
            .filter(webhooks::company_id.eq(self.company_id.0))
            .order((webhooks::created_at.asc(), webhooks::id.asc()))
            .select(WebhookRow::as_select())
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(WebhookView::try_from)
            .collect::<Result<Vec<_>, _>>()?
            .into())
    }
}

/// DELETE /admin/webhooks/{id}: the subscription and its delivery log.
/// An attempt in flight finishes; nothing is sent after it. Marked here,
/// purged by the dispatcher.
#[derive(Message)]
#[rtype(result = "Result<(), AppError>")]
pub struct DeleteWebhook(pub WebhookId);

impl Query for DeleteWebhook {
    type Output = ();
    async fn run(self, db: Db) -> Result<Answer<()>, AppError> {
        let mut conn = db.conn().await?;
        let deleted = diesel::update(live().filter(webhooks::id.eq(self.0 .0)))
            .set(webhooks::deleted_at.eq(diesel::dsl::now))
            .execute(&mut conn)
            .await?;
        if deleted == 0 {
            return Err(AppError::NotFound("webhook"));
        }
        Ok(().into())
    }
}

/// GET /admin/webhooks/{id}/deliveries: newest event first.
#[derive(Message)]
#[rtype(result = "Result<Vec<DeliveryView>, AppError>")]
pub struct ListDeliveries {
    pub webhook_id: WebhookId,
    pub limit: i64,
}

type DeliveryRow = (
    Uuid,
    String,
    i32,
    Option<i32>,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

impl Query for ListDeliveries {
    type Output = Vec<DeliveryView>;
    async fn run(self, db: Db) -> Result<Answer<Vec<DeliveryView>>, AppError> {
        let mut conn = db.conn().await?;
        let webhook: Option<Uuid> = live()
            .filter(webhooks::id.eq(self.webhook_id.0))
            .select(webhooks::id)
            .first(&mut conn)
            .await
            .optional()?;
        if webhook.is_none() {
            return Err(AppError::NotFound("webhook"));
        }
        let rows: Vec<DeliveryRow> = webhook_deliveries::table
            .filter(webhook_deliveries::webhook_id.eq(self.webhook_id.0))
            .order(webhook_deliveries::id.desc())
            .limit(self.limit)
            .select((
                webhook_deliveries::event_id,
                webhook_deliveries::kind,
                webhook_deliveries::attempts,
                webhook_deliveries::last_status,
                webhook_deliveries::last_error,
                webhook_deliveries::next_attempt_at,
                webhook_deliveries::delivered_at,
                webhook_deliveries::failed_at,
            ))
            .load(&mut conn)
            .await?;
        rows.into_iter()
            .map(
                |(event_id, kind, attempts, status, error, next, delivered, failed)| {
                    let pending = delivered.is_none() && failed.is_none();
                    Ok(DeliveryView {
                        event_id,
                        kind: EventType::parse(&kind)
                            .map_err(|e| AppError::Internal(format!("delivery {event_id}: {e}")))?,
                        attempts,
                        last_status: status,
                        last_error: error,
                        next_attempt_at: pending.then_some(next),
                        delivered_at: delivered,
                        failed_at: failed,
                    })
                },
            )
            .collect::<Result<Vec<_>, AppError>>()
            .map(Answer::from)
    }
}

/// A delivery that is due, claimed by the transaction that attempts it.
#[derive(Debug, Clone, QueryableByName)]
pub struct DueDelivery {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = SqlUuid)]
    pub event_id: Uuid,
    #[diesel(sql_type = Text)]
    pub body: String,
    /// Attempts before this one.
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Text)]
    pub secret: String,
}

/// How an attempt ended, and so what becomes of the row.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    Delivered {
        status: i32,
    },
    Retry {
        status: Option<i32>,
        error: String,
        at: DateTime<Utc>,
    },
    /// Retries ran out: kept as failed, and its thread's later events go on.
    GaveUp {
        status: Option<i32>,
        error: String,
    },
}

// The oldest due head of any (webhook, thread) lane that no other
// transaction holds: an earlier pending row of the same lane, due or not,
// claimed or not, keeps the later ones back.
const CLAIM_DUE: &str = "
    SELECT d.id, d.event_id, d.body, d.attempts, d.created_at, w.url, w.secret
    FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.deleted_at IS NULL
    WHERE d.delivered_at IS NULL AND d.failed_at IS NULL AND d.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries e
          WHERE e.webhook_id = d.webhook_id AND e.thread_id = d.thread_id AND e.id < d.id
            AND e.delivered_at IS NULL AND e.failed_at IS NULL)
    ORDER BY d.next_attempt_at, d.id
    LIMIT 1
    FOR UPDATE OF d SKIP LOCKED";

const SETTLE: &str = "
    UPDATE webhook_deliveries
    SET attempts = attempts + 1, last_status = $2, last_error = $3,
        delivered_at = CASE WHEN $4 = 'delivered' THEN clock_timestamp() END,
        failed_at = CASE WHEN $4 = 'gave_up' THEN clock_timestamp() END,
        next_attempt_at = coalesce($5, next_attempt_at)
    WHERE id = $1";

/// Claims the next due delivery, lets `attempt` make it, and records how
/// it went, all in one transaction. `None` when nothing is due.
pub async fn attempt_next<F, Fut>(
    conn: &mut AsyncPgConnection,
    attempt: F,
) -> Result<Option<Settlement>, AppError>
where
    F: FnOnce(DueDelivery) -> Fut + Send,
    Fut: Future<Output = Settlement> + Send,
{
    conn.transaction::<_, AppError, _>(async move |conn| {
        let due: Option<DueDelivery> = diesel::sql_query(CLAIM_DUE)
            .cached()
            .get_result(conn)
            .await
            .optional()?;
        let Some(due) = due else {
            return Ok(None);
        };
        let id = due.id;
        let settlement = attempt(due).await;
        let (state, status, error, at) = match &settlement {
            Settlement::Delivered { status } => ("delivered", Some(*status), None, None),
            Settlement::Retry { status, error, at } => {
                ("retry", *status, Some(error.as_str()), Some(*at))
            }
            Settlement::GaveUp { status, error } => {
                ("gave_up", *status, Some(error.as_str()), None)
            }
        };
        diesel::sql_query(SETTLE)
            .bind::<BigInt, _>(id)
            .bind::<Nullable<Int4>, _>(status)
            .bind::<Nullable<Text>, _>(error)
            .bind::<Text, _>(state)
            .bind::<Nullable<Timestamptz>, _>(at)
            .cached()
            .execute(conn)
            .await?;
        Ok(Some(settlement))
    })
    .await
}

// Oldest first by id, which follows time: the scan stops early.
const PRUNE: &str = "
    DELETE FROM webhook_deliveries WHERE id IN (
        SELECT id FROM webhook_deliveries
        WHERE delivered_at < now() - make_interval(secs => $1)
        ORDER BY id LIMIT $2)";

/// Forgets up to `limit` deliveries made more than `kept` ago (the log
/// would otherwise grow with every event); failed ones stay. Answers how
/// many went.
pub async fn prune_delivered(
    conn: &mut AsyncPgConnection,
    kept: std::time::Duration,
    limit: i64,
) -> Result<usize, AppError> {
    Ok(diesel::sql_query(PRUNE)
        .bind::<diesel::sql_types::Double, _>(kept.as_secs_f64())
        .bind::<BigInt, _>(limit)
        .cached()
        .execute(conn)
        .await?)
}

// Rows first, a batch at a time and skipping any still locked by an
// attempt in flight; then the webhooks left with none. Only a minute after
// the deletion: a transaction that saw the webhook live just before may
// still be adding a row for it (commits are bounded by the request
// timeout), and must not fail its foreign key check.
const PURGE_ROWS: &str = "
    DELETE FROM webhook_deliveries WHERE id IN (
        SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
        WHERE w.deleted_at < now() - interval '1 minute'
        LIMIT $1
        FOR UPDATE OF d SKIP LOCKED)";

const PURGE_WEBHOOKS: &str = "
    DELETE FROM webhooks w WHERE w.deleted_at < now() - interval '1 minute'
      AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.webhook_id = w.id)";

/// Removes deleted webhooks' rows (up to `limit`) and the deleted webhooks
/// that have none left. Answers how many rows went.
pub async fn purge_deleted(conn: &mut AsyncPgConnection, limit: i64) -> Result<usize, AppError> {
    let rows = diesel::sql_query(PURGE_ROWS)
        .bind::<BigInt, _>(limit)
        .cached()
        .execute(conn)
        .await?;
    diesel::sql_query(PURGE_WEBHOOKS)
        .cached()
        .execute(conn)
        .await?;
    Ok(rows)
}

/// Deliveries still to make, of every webhook, and the creation time of
/// the oldest: the dispatcher's gauges.
pub async fn backlog(
    conn: &mut AsyncPgConnection,
) -> Result<(i64, Option<DateTime<Utc>>), AppError> {
    Ok(webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq_any(live().select(webhooks::id)))
        .filter(webhook_deliveries::delivered_at.is_null())
        .filter(webhook_deliveries::failed_at.is_null())
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::min(webhook_deliveries::created_at),
        ))
        .first(conn)
        .await?)
}
