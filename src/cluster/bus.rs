//! The NATS connection of a node in cluster mode: one task publishes what
//! the hub and Persistence hand it, one task per subscription feeds what
//! other nodes published into the hub.
//!
//! The hub and Persistence never wait on the bus: they hand [`Outgoing`]s
//! to a bounded queue without blocking. While NATS is away, the queue and
//! async-nats's own buffer hold them until it returns; past the bound they
//! are dropped (with a warning) and the catch-up on reconnect covers what
//! matters, the messages.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use async_nats::{Client, ConnectOptions, Event};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::wire::{Envelope, Outgoing, PresenceNews, TypingNews};
use super::{ClusterSettings, NodeId, Subjects};
use crate::hub::cluster::{BusConnected, PeerPresence, PeerTyping};
use crate::hub::events::{ChatEvent, Committed};
use crate::hub::ChatHub;

/// Events waiting for the bus, beyond which new ones are dropped.
pub const OUTBOX_CAPACITY: usize = 65_536;

/// The slowest retry while NATS is away: a node that comes back is noticed
/// within this.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Where the hub and Persistence hand what the other nodes must hear.
#[derive(Clone)]
pub struct BusLink(mpsc::Sender<Outgoing>);

impl BusLink {
    pub fn publish(&self, outgoing: Outgoing) {
        match self.0.try_send(outgoing) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(dropped)) => {
                log::warn!(
                    "bus queue full ({OUTBOX_CAPACITY}): dropping a {}",
                    kind(&dropped)
                )
            }
            // The bus task is gone: the node is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The other end of [`BusLink`], consumed by [`run`].
pub struct Outbox(mpsc::Receiver<Outgoing>);

pub fn outbox() -> (BusLink, Outbox) {
    let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
    (BusLink(tx), Outbox(rx))
}

/// Whether this node's connection to NATS is up, for /readyz, and when
/// this node last heard its own heartbeat come back through NATS.
#[derive(Clone)]
pub struct BusStatus(Arc<StatusInner>);

struct StatusInner {
    connected: AtomicBool,
    epoch: Instant,
    /// Milliseconds after `epoch`.
    echo_heard_at: AtomicU64,
}

impl Default for BusStatus {
    fn default() -> Self {
        Self(Arc::new(StatusInner {
            connected: AtomicBool::new(false),
            epoch: Instant::now(),
            echo_heard_at: AtomicU64::new(0),
        }))
    }
}

impl BusStatus {
    pub fn connected(&self) -> bool {
        self.0.connected.load(Ordering::SeqCst)
    }

    fn set(&self, connected: bool) {
        self.0.connected.store(connected, Ordering::SeqCst);
        if connected {
            self.echo_heard();
        }
    }

    fn echo_heard(&self) {
        let now = self.0.epoch.elapsed().as_millis() as u64;
        self.0.echo_heard_at.store(now, Ordering::SeqCst);
    }

    fn since_echo(&self) -> Duration {
        let heard = Duration::from_millis(self.0.echo_heard_at.load(Ordering::SeqCst));
        self.0.epoch.elapsed().saturating_sub(heard)
    }
}

/// Connects (in the background, retrying for ever), subscribes, and
/// publishes until the outbox closes.
pub async fn run(
    settings: ClusterSettings,
    node: NodeId,
    hub: Addr<ChatHub>,
    outbox: Outbox,
    status: BusStatus,
) {
    let subjects = Subjects::new(&settings.subject_prefix);
    let client = match connect(&settings, &node, hub.clone(), status.clone()).await {
        Ok(client) => client,
        Err(e) => {
            log::error!(
                "cluster: cannot use NATS at {}: {e}; serving local sessions only",
                settings.nats_url
            );
            return;
        }
    };
    if let Err(e) = subscribe_all(&client, &subjects, &node, &hub, &status).await {
        log::error!("cluster: cannot subscribe: {e}; serving local sessions only");
        return;
    }
    tokio::spawn(watch_echo(
        client.clone(),
        status.clone(),
        settings.node_timeout(),
    ));
    log::info!(
        "cluster: node {node} on {} with prefix {:?}",
        settings.nats_url,
        settings.subject_prefix
    );
    publish_loop(client, subjects, node, outbox, status).await;
}

async fn connect(
    settings: &ClusterSettings,
    node: &NodeId,
    hub: Addr<ChatHub>,
    status: BusStatus,
) -> Result<Client, async_nats::ConnectError> {
    ConnectOptions::new()
        .name(format!("confab-{node}"))
        // A node starts and serves with NATS down; it joins when it can.
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            (Duration::from_millis(100) * attempts as u32).min(MAX_RECONNECT_DELAY)
        })
        .event_callback(move |event| {
            let (hub, status) = (hub.clone(), status.clone());
            async move {
                match event {
                    Event::Connected => {
                        log::info!("cluster: bus connected");
                        status.set(true);
                        hub.do_send(BusConnected);
                    }
                    Event::Disconnected | Event::Closed => {
                        log::warn!("cluster: bus {event}; serving local sessions only");
                        status.set(false);
                    }
                    other => log::warn!("cluster: bus {other}"),
                }
            }
        })
        .connect(settings.nats_url.as_str())
        .await
}

async fn subscribe_all(
    client: &Client,
    subjects: &Subjects,
    node: &NodeId,
    hub: &Addr<ChatHub>,
    status: &BusStatus,
) -> Result<(), async_nats::SubscribeError> {
    let events = client.subscribe(subjects.all_events()).await?;
    let presence = client.subscribe(subjects.presence()).await?;
    let typing = client.subscribe(subjects.all_typing()).await?;
    let (n, h) = (node.clone(), hub.clone());
    tokio::spawn(receive(events, n, None, move |_, event: ChatEvent| {
        h.do_send(Committed(event))
    }));
    let (n, h) = (node.clone(), hub.clone());
    // The hub's own heartbeats come back here: proof the bus works.
    let echo = Some(status.clone());
    tokio::spawn(receive(
        presence,
        n,
        echo,
        move |from, news: PresenceNews| h.do_send(PeerPresence { from, news }),
    ));
    let (n, h) = (node.clone(), hub.clone());
    tokio::spawn(receive(typing, n, None, move |from, news: TypingNews| {
        h.do_send(PeerTyping { from, news })
    }));
    Ok(())
}

/// Decodes each message of one subscription and hands it on, skipping this
/// node's own: those were applied locally when they happened. An own
/// message still counts as an `echo`, if one is kept.
async fn receive<T: DeserializeOwned>(
    mut subscriber: async_nats::Subscriber,
    me: NodeId,
    echo: Option<BusStatus>,
    deliver: impl Fn(NodeId, T),
) {
    while let Some(message) = subscriber.next().await {
        match serde_json::from_slice::<Envelope<T>>(&message.payload) {
            Ok(envelope) if envelope.node == me => {
                if let Some(status) = &echo {
                    status.echo_heard();
                }
            }
            Ok(envelope) => deliver(envelope.node, envelope.body),
            Err(e) => log::warn!("cluster: undecodable message on {}: {e}", message.subject),
        }
    }
}

/// async-nats notices a dead connection by unanswered pings, but every
/// publish postpones its next ping, and the hub publishes a heartbeat each
/// interval: a silent partition would go unnoticed for ever. So the node
/// checks end to end instead: its own heartbeats must come back through
/// NATS within `timeout`, or the connection is taken for dead and renewed.
async fn watch_echo(client: Client, status: BusStatus, timeout: Duration) {
    let mut tick = tokio::time::interval(timeout / 4);
    loop {
        tick.tick().await;
        if status.connected() && status.since_echo() > timeout {
            log::warn!(
                "cluster: own heartbeats not heard back for {timeout:?}; reconnecting to NATS"
            );
            status.set(false);
            if let Err(e) = client.force_reconnect().await {
                log::warn!("cluster: cannot force a reconnect: {e}");
            }
        }
    }
}

async fn publish_loop(
    client: Client,
    subjects: Subjects,
    node: NodeId,
    mut outbox: Outbox,
    status: BusStatus,
) {
    while let Some(outgoing) = outbox.0.recv().await {
        // Presence and typing only matter now: held through an outage they
        // would replay stale states. The hello heartbeat after reconnecting
        // tells the others the present. Committed events are kept.
        if !status.connected() && !matches!(outgoing, Outgoing::Event(_)) {
            continue;
        }
        let (subject, payload) = match &outgoing {
            Outgoing::Event(event) => (subjects.events(event.thread_id()), encode(&node, event)),
            Outgoing::Presence(news) => (subjects.presence(), encode(&node, news)),
            Outgoing::Typing(news) => (subjects.typing(news.thread_id), encode(&node, news)),
        };
        let payload = match payload {
            Ok(payload) => payload,
            Err(e) => {
                log::error!(
                    "cluster: cannot encode a {} for {subject}: {e}",
                    kind(&outgoing)
                );
                continue;
            }
        };
        // While disconnected this waits in async-nats's buffer; the
        // reconnect sends it.
        if let Err(e) = client.publish(subject, payload.into()).await {
            log::warn!("cluster: publish failed: {e}");
        }
    }
}

/// What an update is, for the log. Never its content: a chat event holds
/// the message body.
fn kind(outgoing: &Outgoing) -> &'static str {
    match outgoing {
        Outgoing::Event(_) => "chat event",
        Outgoing::Presence(_) => "presence update",
        Outgoing::Typing(_) => "typing update",
    }
}

fn encode<T: Serialize>(node: &NodeId, body: &T) -> serde_json::Result<Vec<u8>> {
    /// [`Envelope`] borrowing its parts, so nothing is cloned to send it.
    #[derive(Serialize)]
    struct Sending<'a, T> {
        node: &'a NodeId,
        body: &'a T,
    }
    serde_json::to_vec(&Sending { node, body })
}
