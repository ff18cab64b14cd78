//! The hub's side of cluster mode: who is online on the other nodes, their
//! typing, and this node's own news for them.
//!
//! The hub knows nothing of NATS. It is told about other nodes through the
//! messages below ([`PeerPresence`], [`PeerTyping`], [`BusConnected`]) and
//! tells them its news through a [`PeerLink`]; `cluster/` implements both
//! ends over the bus.
//!
//! A user is online if they have a session on any node. Each peer node's
//! users are known from its deltas and its heartbeats; a heartbeat replaces
//! what was known of that node, and a node silent for the timeout is
//! dropped with all its users. Presence frames go to local co-members only:
//! every node announces to its own sessions.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;

use serde::{Deserialize, Serialize};

use super::ChatHub;
use crate::domain::{NodeId, ThreadId, UserId};
use crate::protocol::ServerEvent;

/// Who is online on the publishing node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PresenceNews {
    /// The user's first session on that node opened.
    Online {
        user_id: UserId,
        threads: Vec<ThreadId>,
    },
    /// The user's last session on that node closed.
    Offline {
        user_id: UserId,
        threads: Vec<ThreadId>,
    },
    /// Everyone online on that node, replacing what the receiver knew.
    /// `hello` is set on the first heartbeat after (re)connecting: the
    /// others may have missed this node's events and catch up.
    Heartbeat {
        users: Vec<OnlineOnNode>,
        hello: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineOnNode {
    pub user_id: UserId,
    pub threads: Vec<ThreadId>,
}

/// A local user started or stopped typing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypingNews {
    pub thread_id: ThreadId,
    pub user_id: UserId,
    pub typing: bool,
}

/// What this hub tells the other nodes.
#[derive(Debug, Clone)]
pub enum PeerNews {
    Presence(PresenceNews),
    Typing(TypingNews),
}

/// Where the hub puts its news for the other nodes. It must not block:
/// the hub calls it while routing.
pub trait PeerLink: Send + 'static {
    fn tell(&self, news: PeerNews);
}

/// What a hub in cluster mode knows beyond its own sessions.
pub struct PeerNodes {
    node: NodeId,
    link: Box<dyn PeerLink>,
    heartbeat_interval: Duration,
    node_timeout: Duration,
    peers: HashMap<NodeId, Peer>,
}

impl PeerNodes {
    pub fn new(
        node: NodeId,
        link: Box<dyn PeerLink>,
        heartbeat_interval: Duration,
        node_timeout: Duration,
    ) -> Self {
        Self {
            node,
            link,
            heartbeat_interval,
            node_timeout,
            peers: HashMap::new(),
        }
    }
}

struct Peer {
    last_heard: Instant,
    /// Users online there, with the threads they are in.
    users: HashMap<UserId, Vec<ThreadId>>,
}

/// The bus (re)connected: say hello and catch up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BusConnected;

#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerPresence {
    pub from: NodeId,
    pub news: PresenceNews,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerTyping {
    pub from: NodeId,
    pub news: TypingNews,
}

impl ChatHub {
    pub fn in_cluster(mut self, peers: PeerNodes) -> Self {
        self.peers = Some(peers);
        self
    }

    pub(super) fn start_cluster_clock(&self, ctx: &mut Context<Self>) {
        if let Some(cluster) = &self.peers {
            log::info!("hub: cluster node {}", cluster.node);
            ctx.run_interval(cluster.heartbeat_interval, |hub, _| {
                hub.send_heartbeat(false);
                hub.expire_silent_peers();
                hub.process_evictions();
            });
        }
    }

    /// Whether the user has a session on another node.
    pub(super) fn online_elsewhere(&self, user_id: UserId) -> bool {
        self.peers
            .as_ref()
            .is_some_and(|c| c.peers.values().any(|p| p.users.contains_key(&user_id)))
    }

    /// Users with a session on another node who are in any of `threads`.
    pub(super) fn online_elsewhere_in(&self, threads: &HashSet<ThreadId>) -> Vec<UserId> {
        let Some(cluster) = &self.peers else {
            return Vec::new();
        };
        cluster
            .peers
            .values()
            .flat_map(|p| p.users.iter())
            .filter(|(_, in_threads)| in_threads.iter().any(|t| threads.contains(t)))
            .map(|(user, _)| *user)
            .collect()
    }

    pub(super) fn online_anywhere(&self, user_id: UserId) -> bool {
        self.users.contains_key(&user_id) || self.online_elsewhere(user_id)
    }

    fn tell_peers(&self, news: PeerNews) {
        if let Some(cluster) = &self.peers {
            cluster.link.tell(news);
        }
    }

    fn local_threads(&self, user_id: UserId) -> Vec<ThreadId> {
        self.users
            .get(&user_id)
            .map(|u| u.threads.iter().copied().collect())
            .unwrap_or_default()
    }

    /// A local user's first session opened (`online`) or last one closed.
    pub(super) fn tell_peers_presence(&self, user_id: UserId, online: bool) {
        if self.peers.is_none() {
            return;
        }
        let threads = self.local_threads(user_id);
        self.tell_peers(PeerNews::Presence(if online {
            PresenceNews::Online { user_id, threads }
        } else {
            PresenceNews::Offline { user_id, threads }
        }));
    }

    pub(super) fn tell_peers_typing(&self, thread_id: ThreadId, user_id: UserId, typing: bool) {
        self.tell_peers(PeerNews::Typing(TypingNews {
            thread_id,
            user_id,
            typing,
        }));
    }

    fn send_heartbeat(&self, hello: bool) {
        if self.peers.is_none() {
            return;
        }
        let users = self
            .users
            .iter()
            .map(|(&user_id, user)| OnlineOnNode {
                user_id,
                threads: user.threads.iter().copied().collect(),
            })
            .collect();
        self.tell_peers(PeerNews::Presence(PresenceNews::Heartbeat { users, hello }));
    }

    /// chat:presence for a user of another node, to the local members of
    /// the threads they are in.
    fn announce_remote_presence(&mut self, user_id: UserId, threads: &[ThreadId], online: bool) {
        let recipients: HashSet<UserId> = threads
            .iter()
            .filter_map(|t| self.rooms.get(t))
            .flat_map(|room| room.members.iter().copied())
            .filter(|u| *u != user_id)
            .collect();
        let out = Self::frame(ServerEvent::Presence { user_id, online });
        for other in recipients {
            self.deliver_to_user(other, &out, None);
        }
    }

    fn remote_user_online(&mut self, from: &NodeId, user_id: UserId, threads: Vec<ThreadId>) {
        let was_online = self.online_anywhere(user_id);
        if let Some(peer) = self.peer_mut(from) {
            peer.users.insert(user_id, threads.clone());
        }
        if !was_online {
            self.announce_remote_presence(user_id, &threads, true);
        }
    }

    /// A user of another node is gone from there: if they are online
    /// nowhere now, their typing ends and co-members see them offline.
    fn remote_user_gone(&mut self, user_id: UserId, threads: &[ThreadId]) {
        if self.online_anywhere(user_id) {
            return;
        }
        for thread_id in threads {
            self.end_typing(*thread_id, user_id);
        }
        self.announce_remote_presence(user_id, threads, false);
    }

    fn peer_mut(&mut self, node: &NodeId) -> Option<&mut Peer> {
        let cluster = self.peers.as_mut()?;
        let peer = cluster.peers.entry(node.clone()).or_insert_with(|| {
            log::info!("cluster: peer {node} joined");
            Peer {
                last_heard: Instant::now(),
                users: HashMap::new(),
            }
        });
        peer.last_heard = Instant::now();
        Some(peer)
    }

    fn heartbeat_from(&mut self, from: &NodeId, users: Vec<OnlineOnNode>) {
        let Some(peer) = self.peer_mut(from) else {
            return;
        };
        let before = std::mem::take(&mut peer.users);
        let now: HashMap<UserId, Vec<ThreadId>> =
            users.into_iter().map(|u| (u.user_id, u.threads)).collect();
        // With this node's users set aside, online_anywhere says whether
        // each one is online elsewhere.
        let arrived: Vec<(UserId, Vec<ThreadId>)> = now
            .iter()
            .filter(|(u, _)| !before.contains_key(u) && !self.online_anywhere(**u))
            .map(|(u, t)| (*u, t.clone()))
            .collect();
        if let Some(peer) = self.peer_mut(from) {
            peer.users = now;
        }
        for (user_id, threads) in arrived {
            self.announce_remote_presence(user_id, &threads, true);
        }
        let online_there = |u: &UserId| {
            self.peers
                .as_ref()
                .and_then(|c| c.peers.get(from))
                .is_some_and(|p| p.users.contains_key(u))
        };
        let departed: Vec<(UserId, Vec<ThreadId>)> = before
            .into_iter()
            .filter(|(u, _)| !online_there(u))
            .collect();
        for (user_id, threads) in departed {
            self.remote_user_gone(user_id, &threads);
        }
    }

    fn expire_silent_peers(&mut self) {
        let Some(cluster) = self.peers.as_mut() else {
            return;
        };
        let timeout = cluster.node_timeout;
        let silent: Vec<NodeId> = cluster
            .peers
            .iter()
            .filter(|(_, p)| p.last_heard.elapsed() > timeout)
            .map(|(n, _)| n.clone())
            .collect();
        let mut gone = Vec::new();
        for node in silent {
            if let Some(peer) = cluster.peers.remove(&node) {
                log::warn!(
                    "cluster: node {node} silent for {timeout:?}: its {} user(s) go offline",
                    peer.users.len()
                );
                gone.extend(peer.users);
            }
        }
        for (user_id, threads) in gone {
            self.remote_user_gone(user_id, &threads);
        }
    }
}

impl Handler<BusConnected> for ChatHub {
    type Result = ();

    fn handle(&mut self, _: BusConnected, ctx: &mut Self::Context) {
        self.send_heartbeat(true);
        self.catch_up_all_rooms(ctx);
    }
}

impl Handler<PeerPresence> for ChatHub {
    type Result = ();

    fn handle(&mut self, PeerPresence { from, news }: PeerPresence, ctx: &mut Self::Context) {
        match news {
            PresenceNews::Online { user_id, threads } => {
                self.remote_user_online(&from, user_id, threads)
            }
            PresenceNews::Offline { user_id, threads } => {
                if let Some(peer) = self.peer_mut(&from) {
                    peer.users.remove(&user_id);
                }
                self.remote_user_gone(user_id, &threads);
            }
            PresenceNews::Heartbeat { users, hello } => {
                self.heartbeat_from(&from, users);
                if hello {
                    // It was away: what it published meanwhile may not
                    // have reached this node.
                    log::info!("cluster: node {from} (re)connected: catching up");
                    self.catch_up_all_rooms(ctx);
                }
            }
        }
        self.process_evictions();
    }
}

impl Handler<PeerTyping> for ChatHub {
    type Result = ();

    fn handle(&mut self, PeerTyping { news, .. }: PeerTyping, ctx: &mut Self::Context) {
        if news.typing {
            self.start_typing(news.thread_id, news.user_id, ctx);
        } else {
            self.end_typing(news.thread_id, news.user_id);
        }
        self.process_evictions();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::hub::tests::{settings, Listener};

    /// The bus is not under test: news for other nodes goes nowhere.
    struct Nowhere;

    impl PeerLink for Nowhere {
        fn tell(&self, _: PeerNews) {}
    }

    const TIMEOUT: Duration = Duration::from_millis(150);

    /// A cluster hub with one local user online in a thread.
    struct Node(Listener);

    impl Node {
        async fn start(thread_id: ThreadId) -> Self {
            let cluster = PeerNodes::new(
                NodeId("here".into()),
                Box::new(Nowhere),
                Duration::from_millis(20),
                TIMEOUT,
            );
            let hub = ChatHub::new(settings()).in_cluster(cluster).start();
            Node(Listener::join(hub, thread_id).await)
        }

        async fn peer_says(&self, news: PresenceNews) {
            let from = NodeId("there".into());
            self.0.hub.send(PeerPresence { from, news }).await.ok();
        }

        /// The chat:presence frames routed so far.
        async fn presence(&self) -> Vec<Value> {
            self.0
                .frames()
                .await
                .into_iter()
                .filter(|f| f["event"] == "chat:presence")
                .map(|f| f["data"].clone())
                .collect()
        }
    }

    #[actix_rt::test]
    async fn a_heartbeat_without_a_user_is_their_offline() {
        let thread_id = ThreadId(uuid::Uuid::new_v4());
        let node = Node::start(thread_id).await;
        let bob = UserId(uuid::Uuid::new_v4());
        node.peer_says(PresenceNews::Online {
            user_id: bob,
            threads: vec![thread_id],
        })
        .await;
        // A heartbeat that still lists bob is no news.
        let listed = vec![OnlineOnNode {
            user_id: bob,
            threads: vec![thread_id],
        }];
        node.peer_says(PresenceNews::Heartbeat {
            users: listed,
            hello: false,
        })
        .await;
        // The offline delta was lost; the next heartbeat corrects it.
        node.peer_says(PresenceNews::Heartbeat {
            users: vec![],
            hello: false,
        })
        .await;
        assert_eq!(
            node.presence().await,
            vec![
                json!({"user_id": bob, "online": true}),
                json!({"user_id": bob, "online": false})
            ]
        );
    }

    #[actix_rt::test]
    async fn a_silent_nodes_users_go_offline_after_the_timeout() {
        let thread_id = ThreadId(uuid::Uuid::new_v4());
        let node = Node::start(thread_id).await;
        let bob = UserId(uuid::Uuid::new_v4());
        node.peer_says(PresenceNews::Online {
            user_id: bob,
            threads: vec![thread_id],
        })
        .await;
        assert_eq!(node.presence().await.len(), 1);
        // The expiry is the behaviour under test, so the test waits it out.
        actix_rt::time::sleep(TIMEOUT * 3).await;
        assert_eq!(
            node.presence().await,
            vec![
                json!({"user_id": bob, "online": true}),
                json!({"user_id": bob, "online": false})
            ]
        );
    }
}
