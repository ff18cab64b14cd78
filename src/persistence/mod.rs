//! Persistence: the actor that owns the Postgres pool and every query.
//!
//! What "acked" means: a request's reply is sent only after its
//! transaction has committed, and only then are the resulting events
//! published to the [`Subscribers`] wired at start-up. A request whose
//! commit failed or whose outcome is unknown answers `unavailable`,
//! publishes nothing, and can be retried: chat:send is idempotent on
//! (sender, client_msg_id), cursors only move forward.
//!
//! "Publish only after commit" is structural: a query cannot reach the
//! subscribers. It returns its events in its [`Answer`], and the one
//! generic handler publishes them after `run` has returned, i.e. after its
//! transaction committed.
//!
//! Each request is one struct named for its intent, implementing [`Query`]
//! next to the SQL it runs. The actor runs requests concurrently on its own
//! arbiter, so every pooled connection lives on one runtime. chat:send is
//! the exception: it is the hot path, and concurrent sends are committed
//! together by [`group_commit`].

mod access;
mod accounts;
mod batch_settings;
pub mod connect;
mod cursors;
mod edits;
mod group_commit;
mod message_views;
mod messages;
pub mod migrate;
pub mod notifications;
pub mod outbox;
mod people;
mod pooled;
mod prepared;
pub mod push;
mod reactions;
mod replay;
pub mod rows;
pub mod schema;
mod search;
mod thread_updates;
mod threads;
mod uploads;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use actix::prelude::*;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;

pub use access::{RevokeTokens, SetDeactivated, TokenSubject};
pub use accounts::{
    AdmitSession, CheckDatabase, CompanyUsers, CreateCompany, CreateUser, FindCompanyByName,
    FindUser, LoadUser, ThreadPosition,
};
pub use cursors::{AdvanceCursor, CursorBatcher, CursorKind, CursorOutcome};
pub use edits::{DeleteMessage, EditMessage};
pub use messages::{FetchChanges, FetchMessages, PageBounds, SendMessage, SendOutcome};
pub use people::{
    DirectoryPage, DirectoryPosition, FindByExternalId, FindColleague, ListDirectory, UpdateUser,
};
pub use reactions::{React, Reacted};
pub use search::{SearchMessages, SearchPage, SearchPosition};
pub use thread_updates::RenameThread;
pub use threads::{AddMember, CreateThread, ListMembers, LoadThreads, RemoveMember};
pub use uploads::{CollectUploads, FindReadableUpload, RecordUpload, StoredUpload};
pub use webhooks::{CreateWebhook, DeleteWebhook, ListDeliveries, ListWebhooks};

pub use batch_settings::BatchSettings;
pub use push::{CreatePushSubscription, DeletePushSubscription, LoadVapidKeys, VapidKeys};

use crate::auth::Claimed;
use crate::domain::CompanyId;
use crate::error::AppError;
use crate::events::{ChatEvent, Committed};
use crate::metrics::metrics;
use group_commit::GroupCommit;
use notifications::Notices;
use outbox::{OutboxSignal, Recorded};

pub type DbPool = Pool<AsyncPgConnection>;
pub use pooled::DbConn;

/// Who is asking for a change: a user (limited to their company and their
/// threads) or the operator (any company, any thread).
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    User(Claimed),
    Admin,
}

impl Caller {
    pub fn company(&self) -> Option<CompanyId> {
        match self {
            Caller::User(c) => Some(c.company_id),
            Caller::Admin => None,
        }
    }
}

/// Who hears of committed events: wired at start-up (the hub, and in
/// cluster mode the bus forwarder too); none for the command line.
#[derive(Clone, Default)]
pub struct Subscribers(Vec<Recipient<Committed>>);

impl Subscribers {
    pub fn new(recipients: Vec<Recipient<Committed>>) -> Self {
        Self(recipients)
    }

    /// Hands every event, in order, to every subscriber. Only the generic
    /// query handler and group commit call it, after their commit.
    fn publish(&self, events: Vec<ChatEvent>) {
        let Some((last, others)) = self.0.split_last() else {
            return;
        };
        for event in events {
            // The last subscriber takes the event itself: on a single node
            // (one subscriber) nothing is copied.
            for subscriber in others {
                subscriber.do_send(Committed(event.clone()));
            }
            last.do_send(Committed(event));
        }
    }
}

/// Hands a request to a batcher (group commit of sends or of receipts),
/// counted in the queue-depth gauge until a batch takes it. When the
/// batcher is gone (shutting down), the request is dropped with its reply's
/// sender, which [`batched_answer`] reads as unavailable.
fn enqueue<P>(queue: &tokio::sync::mpsc::UnboundedSender<P>, pending: P) {
    metrics().persistence_queue_depth.inc();
    if queue.send(pending).is_err() {
        metrics().persistence_queue_depth.dec();
    }
}

/// A batcher's answer, or `unavailable` when there is no batcher, it
/// dropped the request, or the deadline passed.
async fn batched_answer<T>(
    answer: Option<tokio::sync::oneshot::Receiver<Result<T, AppError>>>,
    deadline: Duration,
) -> Result<T, AppError> {
    match answer {
        Some(answer) => match tokio::time::timeout(deadline, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) | Err(_) => Err(AppError::Unavailable),
        },
        None => Err(AppError::Unavailable),
    }
}

/// What a query gets to work with: the pool, and nothing to publish with.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
}

impl Db {
    pub async fn conn(&self) -> Result<DbConn, AppError> {
        Ok(DbConn::new(self.pool.get().await?))
    }
}

/// What a query answers, and the events of what it committed.
pub struct Answer<T> {
    pub value: T,
    pub events: Vec<ChatEvent>,
    /// Its transaction wrote webhook deliveries: the dispatcher is woken.
    pub outboxed: bool,
}

impl<T> Answer<T> {
    pub fn with_events(value: T, events: Vec<ChatEvent>) -> Self {
        Self {
            value,
            events,
            outboxed: false,
        }
    }

    /// Events that [`outbox::record`] has written for webhooks too.
    pub fn recorded(value: T, recorded: Recorded) -> Self {
        Self {
            value,
            events: recorded.events,
            outboxed: recorded.outboxed,
        }
    }
}

/// An answer that changed nothing anyone must hear of.
impl<T> From<T> for Answer<T> {
    fn from(value: T) -> Self {
        Self {
            value,
            events: Vec::new(),
            outboxed: false,
        }
    }
}

/// One request to Persistence. `run` commits before it returns; the
/// events in its answer are published after that.
pub trait Query: Send + 'static {
    type Output: Send + 'static;
    fn run(self, db: Db) -> impl Future<Output = Result<Answer<Self::Output>, AppError>> + 'static;
}

pub struct Persistence {
    db: Db,
    subscribers: Subscribers,
    batches: BatchSettings,
    /// Started with the actor, on its arbiter.
    group_commit: Option<GroupCommit>,
    /// Started with the actor too: receipts are batched like sends.
    cursors: Option<CursorBatcher>,
    /// The longest one request may take, waiting for a connection included.
    /// A database that stops answering without closing its sockets must
    /// still give `unavailable`, not a reply that never comes.
    request_timeout: Duration,
    /// Rung after a commit that wrote webhook deliveries.
    outbox: OutboxSignal,
    /// What group commit needs to schedule notifications.
    notices: Notices,
}

impl Persistence {
    pub fn new(
        pool: DbPool,
        subscribers: Subscribers,
        request_timeout: Duration,
        batches: BatchSettings,
    ) -> Self {
        Self {
            db: Db { pool },
            subscribers,
            batches,
            group_commit: None,
            cursors: None,
            request_timeout,
            outbox: OutboxSignal::default(),
            notices: Notices::default(),
        }
    }

    /// Wakes this dispatcher after commits that gave it work.
    pub fn waking(mut self, outbox: OutboxSignal) -> Self {
        self.outbox = outbox;
        self
    }

    /// Schedules notifications with this presence, delay and worker.
    pub fn notifying(mut self, notices: Notices) -> Self {
        self.notices = notices;
        self
    }
}

impl Actor for Persistence {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Requests are answered concurrently; the mailbox only needs to
        // absorb bursts between polls.
        ctx.set_mailbox_capacity(4096);
        self.group_commit = Some(GroupCommit::start(
            self.db.clone(),
            self.subscribers.clone(),
            self.outbox.clone(),
            self.notices.clone(),
            self.batches,
        ));
        self.cursors = Some(CursorBatcher::start(
            self.db.clone(),
            self.subscribers.clone(),
            self.request_timeout,
        ));
    }
}

impl Handler<AdvanceCursor> for Persistence {
    type Result = ResponseFuture<Result<CursorOutcome, AppError>>;

    fn handle(&mut self, request: AdvanceCursor, _: &mut Self::Context) -> Self::Result {
        let answer = self.cursors.as_ref().map(|batcher| batcher.submit(request));
        // The batch gives up at the same deadline; this one also covers the
        // wait for the batch before it.
        let deadline = self.request_timeout * 2;
        metrics().persistence_in_flight.inc();
        Box::pin(async move {
            let outcome = batched_answer(answer, deadline).await;
            metrics().persistence_in_flight.dec();
            outcome
        })
    }
}

impl Handler<SendMessage> for Persistence {
    type Result = ResponseFuture<Result<SendOutcome, AppError>>;

    fn handle(&mut self, request: SendMessage, _: &mut Self::Context) -> Self::Result {
        let batcher = self.group_commit.clone();
        let db = self.db.clone();
        // The batch gives up at the same deadline counted from its oldest
        // send; this one only covers a batcher that is gone.
        let deadline = self.request_timeout + self.batches.window;
        let lookup_deadline = self.request_timeout;
        metrics().persistence_in_flight.inc();
        Box::pin(async move {
            // An upload is looked up before the send joins a batch, so
            // the batch's transaction stays one statement per step. The
            // row cannot go away in between: uploads are only collected
            // once no message carries them and they are no longer recent.
            let request = match request.content.upload_to_resolve() {
                None => Ok(request),
                Some(upload_id) => tokio::time::timeout(
                    lookup_deadline,
                    uploads::own_upload_metadata(&db, request.sender, upload_id),
                )
                .await
                .unwrap_or(Err(AppError::Unavailable))
                .map(|metadata| SendMessage {
                    content: request.content.with_upload(metadata),
                    ..request
                }),
            };
            let answer = match request {
                Ok(request) => batcher.as_ref().map(|batcher| batcher.submit(request)),
                Err(error) => {
                    metrics().persistence_in_flight.dec();
                    return Err(error);
                }
            };
            let outcome = batched_answer(answer, deadline).await;
            metrics().persistence_in_flight.dec();
            outcome
        })
    }
}

impl<Q> Handler<Q> for Persistence
where
    Q: Query + Message<Result = Result<<Q as Query>::Output, AppError>>,
{
    type Result = ResponseFuture<Result<Q::Output, AppError>>;

    fn handle(&mut self, query: Q, _: &mut Self::Context) -> Self::Result {
        let (db, deadline) = (self.db.clone(), self.request_timeout);
        let subscribers = self.subscribers.clone();
        let outbox = self.outbox.clone();
        metrics().persistence_in_flight.inc();
        Box::pin(async move {
            // Dropping a request mid-flight is safe: a connection left inside
            // a transaction is closed, not reused (`pooled`), and the client
            // retries idempotently.
            let result = tokio::time::timeout(deadline, query.run(db))
                .await
                .unwrap_or(Err(AppError::Unavailable))
                .map(
                    |Answer {
                         value,
                         events,
                         outboxed,
                     }| {
                        if outboxed {
                            outbox.wake();
                        }
                        subscribers.publish(events);
                        value
                    },
                );
            metrics().persistence_in_flight.dec();
            result
        })
    }
}

/// Sends a query to Persistence and waits for its answer. A mailbox
/// failure means Persistence is gone or swamped: to a client, "unavailable".
pub fn ask<Q, T>(
    persistence: &Addr<Persistence>,
    query: Q,
) -> impl Future<Output = Result<T, AppError>> + 'static
where
    Q: Message<Result = Result<T, AppError>> + Send + 'static,
    T: Send + 'static,
    Persistence: Handler<Q>,
{
    let request = persistence.send(query);
    async move { request.await.map_err(|_| AppError::Unavailable)? }
}

/// Builds the pool. Connections are made lazily, so this succeeds with the
/// database down; requests then answer `unavailable` until it is back.
pub fn build_pool(database_url: &str, size: usize, timeout: Duration) -> Result<DbPool, AppError> {
    let mut config = ManagerConfig::default();
    // A connection whose socket died is dropped on checkout (is_broken); a
    // live one is handed out without a round trip.
    config.recycling_method = RecyclingMethod::Fast;
    // With the TLS that DATABASE_URL's sslmode and sslrootcert ask for.
    config.custom_setup = connect::PgConnector::from_url(database_url)
        .map_err(|e| AppError::Internal(format!("database_url: {e}")))?
        .pool_setup();
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| AppError::Internal(format!("building the pool: {e}")))
}
