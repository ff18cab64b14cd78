//! Web Push: users' subscriptions (the user API), the VAPID key pair, and
//! the worker's side of `push_deliveries` (claiming one, removing it once
//! attempted). Rows are queued by [`super::notifications`].

use std::future::Future;

use actix::Message;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use uuid::Uuid;

use super::prepared::CachePrepared;
use super::schema::{push_subscriptions, vapid_keys};
use super::{Answer, Db, Query};
use crate::domain::{PushEndpoint, PushKeys, PushSubscriptionId, UserId};
use crate::error::AppError;

/// How many push subscriptions a user keeps; subscribing another removes
/// the oldest.
pub const MAX_SUBSCRIPTIONS_PER_USER: i64 = 10;

const KEEP_NEWEST: &str = "
    DELETE FROM push_subscriptions WHERE user_id = $1 AND id NOT IN (
        SELECT id FROM push_subscriptions WHERE user_id = $1
        ORDER BY created_at DESC, id DESC LIMIT $2)";

/// POST /api/push-subscriptions: the endpoint's address was checked by the
/// caller. The same browser subscribing again (same endpoint) replaces its
/// keys and keeps its id.
#[derive(Message)]
#[rtype(result = "Result<PushSubscriptionId, AppError>")]
pub struct CreatePushSubscription {
    pub user_id: UserId,
    pub endpoint: PushEndpoint,
    pub keys: PushKeys,
}

impl Query for CreatePushSubscription {
    type Output = PushSubscriptionId;
    async fn run(self, db: Db) -> Result<Answer<PushSubscriptionId>, AppError> {
        let mut conn = db.conn().await?;
        let id: Uuid = diesel::insert_into(push_subscriptions::table)
            .values((
                push_subscriptions::id.eq(Uuid::now_v7()),
                push_subscriptions::user_id.eq(self.user_id.0),
                push_subscriptions::endpoint.eq(self.endpoint.as_str()),
                push_subscriptions::p256dh.eq(URL_SAFE_NO_PAD.encode(&self.keys.p256dh)),
                push_subscriptions::auth.eq(URL_SAFE_NO_PAD.encode(&self.keys.auth)),
            ))
            .on_conflict((push_subscriptions::user_id, push_subscriptions::endpoint))
            .do_update()
            .set((
                push_subscriptions::p256dh.eq(URL_SAFE_NO_PAD.encode(&self.keys.p256dh)),
                push_subscriptions::auth.eq(URL_SAFE_NO_PAD.encode(&self.keys.auth)),
            ))
            .returning(push_subscriptions::id)
            .get_result(&mut conn)
            .await?;
        // The oldest beyond the cap go: browsers that vanished without
        // unsubscribing, and no user can make one message fan out into
        // requests without end.
        diesel::sql_query(KEEP_NEWEST)
            .bind::<SqlUuid, _>(self.user_id.0)
            .bind::<BigInt, _>(MAX_SUBSCRIPTIONS_PER_USER)
            .execute(&mut conn)
            .await?;
        Ok(PushSubscriptionId(id).into())
    }
}

/// DELETE /api/push-subscriptions/{id}: the caller's own only; another
/// user's is not found.
#[derive(Message)]
#[rtype(result = "Result<(), AppError>")]
pub struct DeletePushSubscription {
    pub user_id: UserId,
    pub id: PushSubscriptionId,
}

impl Query for DeletePushSubscription {
    type Output = ();
    async fn run(self, db: Db) -> Result<Answer<()>, AppError> {
        let mut conn = db.conn().await?;
        let deleted = diesel::delete(
            push_subscriptions::table
                .filter(push_subscriptions::id.eq(self.id.0))
                .filter(push_subscriptions::user_id.eq(self.user_id.0)),
        )
        .execute(&mut conn)
        .await?;
        if deleted == 0 {
            return Err(AppError::NotFound("push subscription"));
        }
        Ok(().into())
    }
}

/// The VAPID key pair: PKCS#8 DER of the private key and the uncompressed
/// public point, both base64url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VapidKeys {
    pub private_pkcs8: String,
    pub public_key: String,
}

/// GET /api/push/vapid-public-key, and the worker at start: the stored key
/// pair, generated and stored by whichever node asks first.
#[derive(Message)]
#[rtype(result = "Result<VapidKeys, AppError>")]
pub struct LoadVapidKeys;

impl Query for LoadVapidKeys {
    type Output = VapidKeys;
    async fn run(self, db: Db) -> Result<Answer<VapidKeys>, AppError> {
        let mut conn = db.conn().await?;
        Ok(vapid_keys(&mut conn).await?.into())
    }
}

pub async fn vapid_keys(conn: &mut AsyncPgConnection) -> Result<VapidKeys, AppError> {
    let stored = || {
        vapid_keys::table
            .filter(vapid_keys::id.eq(1))
            .select((vapid_keys::private_key, vapid_keys::public_key))
    };
    if let Some((private_pkcs8, public_key)) =
        stored().first::<(String, String)>(conn).await.optional()?
    {
        return Ok(VapidKeys {
            private_pkcs8,
            public_key,
        });
    }
    let generated = generate_vapid_keys()?;
    // Two nodes starting at once: the first insert wins, both read it.
    diesel::insert_into(vapid_keys::table)
        .values((
            vapid_keys::id.eq(1),
            vapid_keys::private_key.eq(&generated.private_pkcs8),
            vapid_keys::public_key.eq(&generated.public_key),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    let (private_pkcs8, public_key) = stored().first::<(String, String)>(conn).await?;
    Ok(VapidKeys {
        private_pkcs8,
        public_key,
    })
}

fn generate_vapid_keys() -> Result<VapidKeys, AppError> {
    let rng = SystemRandom::new();
    let failed = |_| AppError::Internal("generating the VAPID key pair failed".into());
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(failed)?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| AppError::Internal("reading the new VAPID key pair failed".into()))?;
    Ok(VapidKeys {
        private_pkcs8: URL_SAFE_NO_PAD.encode(pkcs8.as_ref()),
        public_key: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
    })
}

/// A queued Web Push message, claimed by the transaction that sends it.
#[derive(Debug, Clone, QueryableByName)]
pub struct DuePush {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub payload: String,
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: Uuid,
    #[diesel(sql_type = Text)]
    pub endpoint: String,
    #[diesel(sql_type = Text)]
    pub p256dh: String,
    #[diesel(sql_type = Text)]
    pub auth: String,
}

/// How a push attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    Delivered,
    /// 404 or 410: the subscription is no more; it is removed.
    Gone,
    /// Anything else: logged, not retried (the next notification of the
    /// thread covers these messages again).
    Failed(String),
}

const CLAIM_PUSH: &str = "
    SELECT d.id, d.payload, d.topic, s.id AS subscription_id, s.endpoint, s.p256dh, s.auth
    FROM push_deliveries d JOIN push_subscriptions s ON s.id = d.subscription_id
    ORDER BY d.id
    LIMIT 1
    FOR UPDATE OF d SKIP LOCKED";

/// Claims one queued push, lets `attempt` send it, and removes it, in one
/// transaction; a subscription the push service says is gone is removed
/// after. None when nothing is queued.
pub async fn push_next<F, Fut>(
    conn: &mut AsyncPgConnection,
    attempt: F,
) -> Result<Option<PushOutcome>, AppError>
where
    F: FnOnce(DuePush) -> Fut + Send,
    Fut: Future<Output = PushOutcome> + Send,
{
    let settled = conn
        .transaction::<_, AppError, _>(async move |conn| {
            let due: Option<DuePush> = diesel::sql_query(CLAIM_PUSH)
                .cached()
                .get_result(conn)
                .await
                .optional()?;
            let Some(due) = due else {
                return Ok(None);
            };
            let (id, subscription) = (due.id, due.subscription_id);
            let outcome = attempt(due).await;
            diesel::sql_query("DELETE FROM push_deliveries WHERE id = $1")
                .bind::<BigInt, _>(id)
                .cached()
                .execute(conn)
                .await?;
            Ok(Some((outcome, subscription)))
        })
        .await?;
    let Some((outcome, subscription)) = settled else {
        return Ok(None);
    };
    if outcome == PushOutcome::Gone {
        // Outside the claim: its other queued pushes may be claimed by
        // another worker right now, and this waits for them.
        diesel::delete(push_subscriptions::table.filter(push_subscriptions::id.eq(subscription)))
            .execute(conn)
            .await?;
    }
    Ok(Some(outcome))
}
