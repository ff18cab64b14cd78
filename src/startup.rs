//! Wiring: prepare the database, start the hub and Persistence on arbiters
//! of their own, then the HTTP server; and the graceful shutdown.
//!
//! This is the one place that knows every actor's concrete type and ties
//! them together: Persistence publishes to the hub (and, in cluster mode,
//! to the bus forwarder) through `Recipient<Committed>`, the bus feeds the
//! hub through its recipients, and the hub reads back through
//! `Recipient<LoadChangesAfter>`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, ErrorHandlers, Logger};
use actix_web::{web, App, HttpServer};

use crate::auth::{random_secret, Auth};
use crate::cluster::bus::{self, BusStatus, EventForwarder, HubInputs};
use crate::config::Settings;
use crate::error::ErrorCode;
use crate::hub::messages::{Shutdown, UseGapFill};
use crate::hub::peers::PeerNodes;
use crate::hub::{ChatHub, HubSettings};
use crate::metrics::PoolGauge;
use crate::persistence::migrate::{prepare_or_check, PrepareError};
use crate::persistence::notifications::Notices;
use crate::persistence::outbox::OutboxSignal;
use crate::persistence::{build_pool, BatchSettings, Persistence, Subscribers};
use crate::session::capacity::SessionCapacity;
use crate::session::{SessionDeps, SessionSettings};
use crate::storage::Storage;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] PrepareError),
    #[error("database pool: {0}")]
    Pool(String),
    #[error("uploads storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    server: Server,
    local_addr: SocketAddr,
    /// Serving /metrics alone when `metrics_bind` is set.
    metrics_server: Option<(Server, SocketAddr)>,
    shutdown: ShutdownHandle,
    admin_token: String,
    jwt_secret: String,
    /// The hub's and Persistence's threads (and the bus's in cluster
    /// mode), stopped with the server.
    arbiters: Vec<Arbiter>,
}

/// Starts a graceful shutdown: stop accepting, let sessions finish what is
/// in flight and close with 1001, then stop (forcibly after the drain time).
#[derive(Clone)]
pub struct ShutdownHandle {
    server: ServerHandle,
    hub: Addr<ChatHub>,
}

impl ShutdownHandle {
    pub async fn shutdown(&self) {
        log::info!("shutting down: refusing new connections, draining sessions");
        self.hub.do_send(Shutdown);
        self.server.stop(true).await;
        log::info!("shut down");
    }
}

impl Application {
    /// Prepares everything and binds, without serving yet. Must run inside
    /// an actix system.
    pub async fn build(mut settings: Settings) -> Result<Self, StartError> {
        prepare_or_check(&settings.database_url, settings.migrate).await?;

        if settings.admin_token.is_empty() {
            settings.admin_token = random_secret(32);
            log::warn!(
                "no admin_token configured; generated one for this run: {} (set CONFAB_ADMIN_TOKEN to choose it)",
                settings.admin_token
            );
        }
        if settings.jwt_secret.is_empty() {
            settings.jwt_secret = random_secret(48);
            log::warn!("no jwt_secret configured; generated one for this run: user tokens end with the process");
        }
        let settings = Arc::new(settings);
        let ws = &settings.websocket;

        crate::metrics::preregister_errors(ErrorCode::ALL.map(ErrorCode::as_str));

        let hub_arbiter = Arbiter::new();
        let hub_settings = HubSettings {
            typing_timeout: settings.websocket.typing_timeout(),
            max_outbound_bytes: ws.max_outbound_bytes,
        };
        let cluster = settings.cluster.clone();
        let node_id = cluster.resolve_node_id();
        let (bus_link, outbox) = bus::outbox();
        let peer_nodes = cluster.enabled().then(|| {
            PeerNodes::new(
                node_id.clone(),
                Box::new(bus_link.clone()),
                cluster.heartbeat_interval(),
                cluster.node_timeout(),
            )
        });
        let hub = ChatHub::start_in_arbiter(&hub_arbiter.handle(), move |_| {
            let hub = ChatHub::new(hub_settings);
            match peer_nodes {
                Some(peers) => hub.in_cluster(peers),
                None => hub,
            }
        });
        let mut arbiters = vec![hub_arbiter];

        // The local hub hears of commits straight from Persistence, so local
        // sessions are served whether or not the bus is up.
        let mut subscribers = vec![hub.clone().recipient()];
        let bus_status = cluster.enabled().then(BusStatus::default);
        if let Some(status) = bus_status.clone() {
            // Its own thread: decoding the other nodes' traffic does not
            // delay routing or queries.
            let bus_arbiter = Arbiter::new();
            let forwarder = EventForwarder::start_in_arbiter(&bus_arbiter.handle(), |_| {
                EventForwarder(bus_link)
            });
            subscribers.push(forwarder.recipient());
            bus_arbiter.spawn(bus::run(
                cluster,
                node_id,
                HubInputs::of(&hub),
                outbox,
                status,
            ));
            arbiters.push(bus_arbiter);
        }

        let pool = build_pool(
            &settings.database_url,
            settings.db_pool_size,
            settings.db_timeout(),
        )
        .map_err(|e| StartError::Pool(e.to_string()))?;
        let db_pool = PoolGauge::new({
            let pool = pool.clone();
            move || pool.status()
        });
        let request_timeout = settings.db_request_timeout();
        let persistence_arbiter = Arbiter::new();
        let subscribers = Subscribers::new(subscribers);
        let batches = BatchSettings::from_settings(&settings);
        let outbox = OutboxSignal::default();
        let wakes = outbox.clone();
        let notified = OutboxSignal::default();
        let notices = Notices {
            presence: Some(hub.clone().recipient()),
            delay: settings.notifications.delay(),
            signal: notified.clone(),
        };
        let persistence = Persistence::start_in_arbiter(&persistence_arbiter.handle(), move |_| {
            Persistence::new(pool, subscribers, request_timeout, batches)
                .waking(wakes)
                .notifying(notices)
        });
        hub.do_send(UseGapFill(persistence.clone().recipient()));
        arbiters.push(persistence_arbiter);
        arbiters.push(
            crate::notifications::start(&settings, notified, outbox.clone())
                .map_err(|e| StartError::Pool(e.to_string()))?,
        );
        arbiters.push(
            crate::webhooks::start(&settings, outbox)
                .map_err(|e| StartError::Pool(e.to_string()))?,
        );

        let sessions = SessionDeps {
            hub: hub.clone(),
            persistence: persistence.clone(),
            settings: Arc::new(SessionSettings {
                max_frame_bytes: ws.max_frame_bytes,
                heartbeat_interval: settings.websocket.heartbeat_interval(),
                client_timeout: settings.websocket.client_timeout(),
                max_outbound_bytes: ws.max_outbound_bytes,
                rate_limit_per_second: ws.rate_limit_per_second,
                rate_limit_burst: ws.rate_limit_burst,
            }),
            capacity: SessionCapacity::new(ws.max_sessions, ws.max_sessions_per_user),
        };
        let storage = Storage::from_settings(&settings.uploads)?;
        if let Some(idle_for) = settings.uploads.collect_after() {
            actix::spawn(crate::storage::collector::run(
                persistence.clone(),
                storage.clone(),
                settings.uploads.collect_interval(),
                idle_for,
            ));
        }
        let state = web::Data::new(crate::http::AppState {
            auth: Auth::new(settings.jwt_secret.as_bytes(), settings.admin_token.clone()),
            settings: settings.clone(),
            sessions,
            bus: bus_status,
            db_pool,
            storage,
        });
        let metrics_server = match settings.metrics_addr() {
            Some(addr) => Some(
                crate::http::metrics_server::bind(addr, state.clone())
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        let metrics_here = metrics_server.is_none();

        let addr = settings.bind_addr();
        let listener =
            TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let drain_seconds = settings.drain_timeout().as_secs().max(1);
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                // %U is the path without the query: `?token=` never reaches the log.
                .wrap(
                    Logger::new(r#"%a "%{method}xi %U" %s %b %Dms"#)
                        .custom_request_replace("method", |req| req.method().to_string()),
                )
                .wrap(ErrorHandlers::new().default_handler(crate::http::json_error_body))
                .wrap(from_fn(crate::http::metrics_middleware::record_request))
                .configure(crate::http::routes(metrics_here))
        })
        .disable_signals()
        // Chat frames are small and latency-bound: with Nagle's algorithm a
        // frame written while the previous one is unacknowledged waits for
        // the client's (delayed) ACK. actix leaves the OS default (on).
        .tcp_nodelay(true)
        .shutdown_timeout(drain_seconds);
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartError::Bind { addr, source })?
            .run();
        log::info!("confab listening on http://{local_addr}");
        if let Some((_, addr)) = &metrics_server {
            log::info!("metrics on http://{addr}/metrics (not on the main address)");
        }

        Ok(Application {
            shutdown: ShutdownHandle {
                server: server.handle(),
                hub,
            },
            server,
            local_addr,
            metrics_server,
            admin_token: settings.admin_token.clone(),
            jwt_secret: settings.jwt_secret.clone(),
            arbiters,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn jwt_secret(&self) -> &str {
        &self.jwt_secret
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until stopped by [`ShutdownHandle`] or, with
    /// `handle_signals`, by SIGTERM or SIGINT.
    pub async fn run_until_stopped(self, handle_signals: bool) -> std::io::Result<()> {
        if handle_signals {
            let shutdown = self.shutdown.clone();
            actix_web::rt::spawn(async move {
                wait_for_signal().await;
                shutdown.shutdown().await;
            });
        }
        // Metrics stay up while the main server drains: the drain shows.
        let metrics = self.metrics_server.map(|(server, _)| {
            let handle = server.handle();
            actix_web::rt::spawn(server);
            handle
        });
        let result = self.server.await;
        if let Some(metrics) = metrics {
            metrics.stop(false).await;
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        result
    }
}

/// Raises the open-file soft limit to the hard limit: every session is a
/// socket, and the default soft limit (often 1024) would cap sessions far
/// below what `websocket.max_sessions` promises.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::info!("open-file limit: {limit}"),
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => log::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => log::info!("SIGINT received"),
                }
            }
            Err(e) => {
                log::warn!("cannot listen for SIGTERM ({e}); only SIGINT will stop the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
