//! A TCP proxy of our own, to put faults between confab and a peer: the
//! database (confab → proxy → Postgres) or a client (client → proxy →
//! confab).
//!
//! Three modes:
//! - **forward**: bytes flow both ways, as if the proxy were not there;
//! - **cut** ([`Proxy::cut`]): every open connection is closed (FIN to
//!   both ends) and every new one is reset as soon as it is accepted.
//!   That is what a peer that went down looks like: Postgres killed or
//!   restarted closes its sockets, and a port nobody listens on refuses
//!   connections at once. Requests fail fast rather than hang, which is
//!   the outage confab must answer with `unavailable` right away;
//! - **blackhole** ([`Proxy::blackhole`]): connections stay open but no
//!   byte goes through in either direction, and new connections are
//!   accepted but never reach the target: a half-open connection or a
//!   network partition. Nothing is lost, only held: [`Proxy::restore`]
//!   delivers what was held, as TCP does when a partition heals.
//!
//! It runs on a runtime of its own (one worker thread), so it keeps
//! forwarding while the test's thread blocks (spawn_app waits on a channel
//! while the server migrates through this very proxy).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Cut,
    Blackhole,
}

pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
}

struct Shared {
    mode: watch::Sender<Mode>,
    /// One task per proxied connection; aborting it closes both sockets.
    connections: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-proxy")
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("the proxy binds a free port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the proxy's address");
        let (mode, _) = watch::channel(Mode::Forward);
        let shared = Arc::new(Shared {
            mode,
            connections: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let accepting = shared.clone();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a tokio listener");
            accept_loop(listener, target, accepting).await;
        });
        Proxy {
            addr,
            target,
            shared,
            runtime: Some(runtime),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// A Postgres URL for database `name` that goes through this proxy.
    pub fn postgres_url(&self, name: &str) -> String {
        format!("postgres://postgres@{}/{name}", self.addr)
    }

    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Closes every open connection (both ends see the connection end) and
    /// resets every new one until [`Proxy::restore`]. When this returns,
    /// every socket of the connections that were open is closed.
    pub async fn cut(&self) {
        self.shared.mode.send_replace(Mode::Cut);
        let open: Vec<JoinHandle<()>> = self
            .shared
            .connections
            .lock()
            .expect("the proxy's connection list")
            .drain(..)
            .collect();
        for task in &open {
            task.abort();
        }
        for task in open {
            // Cancelled, or finished on its own: either way its sockets
            // are dropped once the handle resolves.
            let _ = task.await;
        }
    }

    /// Stops forwarding in both directions without closing anything.
    /// At most a chunk already being written still goes through.
    pub fn blackhole(&self) {
        self.shared.mode.send_replace(Mode::Blackhole);
    }

    /// Forwards again: new connections reach the target, and connections
    /// held by a blackhole resume with what they had sent.
    pub fn restore(&self) {
        self.shared.mode.send_replace(Mode::Forward);
    }

    /// Connections accepted and forwarded (or held) so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections reset because the proxy was cut.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Proxied connections whose both directions are still open.
    pub fn open_connections(&self) -> usize {
        self.shared
            .connections
            .lock()
            .expect("the proxy's connection list")
            .iter()
            .filter(|task| !task.is_finished())
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Not a blocking shutdown: Drop may run inside the test's runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *shared.mode.borrow() == Mode::Cut {
            // A reset, as from a port nobody listens on.
            let _ = client.set_zero_linger();
            drop(client);
            shared.refused.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let mode = shared.mode.subscribe();
        let task = tokio::spawn(proxy_connection(client, target, mode));
        let mut connections = shared
            .connections
            .lock()
            .expect("the proxy's connection list");
        connections.retain(|task| !task.is_finished());
        connections.push(task);
    }
}

async fn proxy_connection(client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // A blackhole holds new connections too: accepted, never forwarded.
    if mode.wait_for(|m| *m == Mode::Forward).await.is_err() {
        return;
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    tokio::join!(
        pump(client_read, upstream_write, mode.clone()),
        pump(upstream_read, client_write, mode),
    );
}

/// Copies one direction while the mode is Forward; holds while it is not.
/// An end of stream is passed on as a half-close.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if mode.wait_for(|m| *m == Mode::Forward).await.is_err() {
            return;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // Blackholed while the read was pending: hold what was read.
        if mode.wait_for(|m| *m == Mode::Forward).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
