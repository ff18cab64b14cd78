//! The NATS connection of a node in cluster mode: one task publishes what
//! the hub and the event forwarder hand it, one task per subscription feeds
//! what other nodes published into the hub's inputs ([`HubInputs`]).
//!
//! Nothing upstream waits on the bus: [`Outgoing`]s go into a bounded
//! queue without blocking. While NATS is away, the queue and
//! async-nats's own buffer hold them until it returns; past the bound they
//! are dropped (with a warning) and the catch-up on reconnect covers what
//! matters, the messages.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Addr, Context, Handler, Recipient};
use async_nats::{Client, ConnectOptions, Event};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::wire::{self, Envelope, Outgoing};
use super::Subjects;
use crate::config::ClusterSettings;
use crate::domain::NodeId;
use crate::events::{ChatEvent, Committed};
use crate::hub::peers::{
    BusConnected, PeerLink, PeerNews, PeerPresence, PeerTyping, PresenceNews, TypingNews,
};
use crate::metrics::metrics;

/// Events waiting for the bus, beyond which new ones are dropped.
pub const OUTBOX_CAPACITY: usize = 65_536;

/// The slowest retry while NATS is away: a node that comes back is noticed
/// within this.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Where the hub and the event forwarder hand what the other nodes must
/// hear.
#[derive(Clone)]
pub struct BusLink(mpsc::Sender<Outgoing>);

impl PeerLink for BusLink {
    fn tell(&self, news: PeerNews) {
        self.publish(match news {
            PeerNews::Presence(news) => Outgoing::Presence(news),
            PeerNews::Typing(news) => Outgoing::Typing(news),
        });
    }
}

impl BusLink {
    pub fn publish(&self, outgoing: Outgoing) {
        match self.0.try_send(outgoing) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(dropped)) => {
                metrics().bus_dropped.inc();
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

/// The hub's inputs the bus feeds: what other nodes committed, their
/// presence and typing, and this node's (re)connection.
#[derive(Clone)]
pub struct HubInputs {
    pub committed: Recipient<Committed>,
    pub presence: Recipient<PeerPresence>,
    pub typing: Recipient<PeerTyping>,
    pub connected: Recipient<BusConnected>,
}

impl HubInputs {
    pub fn of<A>(hub: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<Committed>
            + Handler<PeerPresence>
            + Handler<PeerTyping>
            + Handler<BusConnected>,
    {
        Self {
            committed: hub.clone().recipient(),
            presence: hub.clone().recipient(),
            typing: hub.clone().recipient(),
            connected: hub.clone().recipient(),
        }
    }
}

/// Copies this node's committed events to the bus. Persistence publishes
/// to it beside the hub, so local sessions are served straight from
/// Persistence whether or not the bus is up.
pub struct EventForwarder(pub BusLink);

impl Actor for EventForwarder {
    type Context = Context<Self>;
}

impl Handler<Committed> for EventForwarder {
    type Result = ();

    fn handle(&mut self, Committed(event): Committed, _: &mut Self::Context) {
        self.0.publish(Outgoing::Event(event));
    }
}

/// Connects (in the background, retrying for ever), subscribes, and
/// publishes until the outbox closes.
pub async fn run(
    settings: ClusterSettings,
    node: NodeId,
    hub: HubInputs,
    outbox: Outbox,
    status: BusStatus,
) {
    let subjects = Subjects::new(&settings.subject_prefix);
    // Shown from the start, so that a rate over them reads 0, not nothing.
    for kind in wire::KINDS {
        metrics().bus_published.with_label_values(&[kind]);
        metrics().bus_received.with_label_values(&[kind]);
    }
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
    hub: HubInputs,
    status: BusStatus,
) -> Result<Client, async_nats::ConnectError> {
    let connected_before = Arc::new(AtomicBool::new(false));
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
            let connected_before = connected_before.clone();
            async move {
                match event {
                    Event::Connected => {
                        if connected_before.swap(true, Ordering::SeqCst) {
                            metrics().bus_reconnects.inc();
                        }
                        log::info!("cluster: bus connected");
                        status.set(true);
                        hub.connected.do_send(BusConnected);
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
    hub: &HubInputs,
    status: &BusStatus,
) -> Result<(), async_nats::SubscribeError> {
    let events = client.subscribe(subjects.all_events()).await?;
    let presence = client.subscribe(subjects.presence()).await?;
    let typing = client.subscribe(subjects.all_typing()).await?;
    let (n, h) = (node.clone(), hub.committed.clone());
    tokio::spawn(receive(
        events,
        wire::EVENT,
        n,
        None,
        move |_, event: ChatEvent| h.do_send(Committed(event)),
    ));
    let (n, h) = (node.clone(), hub.presence.clone());
    // The hub's own heartbeats come back here: proof the bus works.
    let echo = Some(status.clone());
    tokio::spawn(receive(
        presence,
        wire::PRESENCE,
        n,
        echo,
        move |from, news: PresenceNews| h.do_send(PeerPresence { from, news }),
    ));
    let (n, h) = (node.clone(), hub.typing.clone());
    tokio::spawn(receive(
        typing,
        wire::TYPING,
        n,
        None,
        move |from, news: TypingNews| h.do_send(PeerTyping { from, news }),
    ));
    Ok(())
}

/// Decodes each message of one subscription and hands it on, skipping this
/// node's own: those were applied locally when they happened. An own
/// message still counts as an `echo`, if one is kept.
async fn receive<T: DeserializeOwned>(
    mut subscriber: async_nats::Subscriber,
    kind: &'static str,
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
            Ok(envelope) => {
                metrics().bus_received.with_label_values(&[kind]).inc();
                deliver(envelope.node, envelope.body)
            }
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
            Outgoing::Event(event) => (subjects.events(event.ordering_key()), encode(&node, event)),
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
        // Counted before it goes: a receiver never counts a message its
        // publisher has not.
        metrics()
            .bus_published
            .with_label_values(&[outgoing.kind()])
            .inc();
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
