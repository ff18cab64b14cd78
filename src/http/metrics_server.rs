//! The listener at `metrics_bind`: `GET /metrics` alone, so that an
//! operator can keep metrics off the public address (a private interface,
//! a firewall rule) without a proxy in front of confab.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};

use super::AppState;

/// Binds `addr` and builds the server; like the main one, it serves once
/// awaited. Returns the address actually bound (port 0 picks one).
pub fn bind(addr: SocketAddr, state: web::Data<AppState>) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let local_addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(super::metrics_routes)
    })
    // One scrape every few seconds needs no more.
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, local_addr))
}
