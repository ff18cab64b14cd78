//! ChatHub: the one actor per process that knows who is online and routes
//! every server event to exactly the sessions the contract names.
//!
//! Invariants it keeps:
//! - A room holds only online members of its thread (see [`room::Room`]),
//!   so no event reaches a non-member, let alone another company.
//! - Changes to one thread's messages (chat:message, chat:message-edited,
//!   chat:message-deleted, chat:reaction) leave in rev order, and so new
//!   messages in seq order: an early rev waits in the room's reorder
//!   buffer for the ones before it, which are read back from the database
//!   if they do not come (`gap_fill`).
//! - In cluster mode, other nodes' committed events come in through the
//!   same [`Committed`] input; who is online on them, and their typing,
//!   through `peers`.
//! - Nothing in here waits on the database or does I/O: handlers only
//!   look up maps and hand shared frames to session mailboxes.
//! - A session whose unsent bytes pass the bound is dropped from routing
//!   and told to close with 4008, so one slow reader cannot grow memory.

mod access;
mod delivery;
mod gap_fill;
pub mod messages;
pub mod peers;
mod presence;
mod reorder;
mod room;
mod routing;
mod typing;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;

use self::delivery::{OnlineUser, SessionEntry};
use self::messages::*;
use self::peers::PeerNodes;
use self::room::Room;
use crate::domain::{SessionId, ThreadId, UserId};
use crate::error::AppError;
use crate::events::{Committed, LoadChangesAfter};
use crate::metrics::metrics;

/// How long an early change waits for the revs before it. Commits of
/// one thread are serialized, so in one process a gap closes within
/// microseconds, and across nodes within a bus round trip; this bound
/// only matters if an announcement is lost, and then the missing seqs are
/// read back from the database.
pub const REORDER_HOLD: Duration = Duration::from_millis(500);

/// How long the hub remembers that a user was removed from a thread: far
/// longer than a connect sequence's first look can be old at Connect.
const REMOVAL_MEMORY: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct HubSettings {
    pub typing_timeout: Duration,
    pub max_outbound_bytes: usize,
}

pub struct ChatHub {
    settings: HubSettings,
    sessions: HashMap<SessionId, SessionEntry>,
    users: HashMap<UserId, OnlineUser>,
    rooms: HashMap<ThreadId, Room>,
    typing_generation: u64,
    /// Sessions over their outbound bound, dropped after the current
    /// handler finishes routing.
    evictions: Vec<SessionId>,
    /// Where missed messages are read back from (see `gap_fill`); without
    /// it a gap is skipped after the hold.
    gap_fill: Option<Recipient<LoadChangesAfter>>,
    /// Cluster mode: the other nodes' users and the bus to tell them ours.
    peers: Option<PeerNodes>,
    /// (user, thread) pairs whose latest membership event here was a
    /// removal, and when. A connecting session's first look may predate
    /// the removal; Connect does not enter those rooms, and the second look
    /// (JoinThreads) enters them if the user is in fact a member again.
    recent_removals: HashMap<(UserId, ThreadId), Instant>,
    removals_sweep_at: usize,
}

impl ChatHub {
    pub fn new(settings: HubSettings) -> Self {
        Self {
            settings,
            sessions: HashMap::new(),
            users: HashMap::new(),
            rooms: HashMap::new(),
            typing_generation: 0,
            evictions: Vec::new(),
            gap_fill: None,
            peers: None,
            recent_removals: HashMap::new(),
            removals_sweep_at: 1024,
        }
    }

    fn remember_removal(&mut self, user_id: UserId, thread_id: ThreadId) {
        let now = Instant::now();
        // Old entries go when the map has doubled since the last sweep, so
        // a burst of removals costs amortized O(1) each.
        if self.recent_removals.len() >= self.removals_sweep_at {
            self.recent_removals
                .retain(|_, at| now.duration_since(*at) < REMOVAL_MEMORY);
            self.removals_sweep_at = (self.recent_removals.len() * 2).max(1024);
        }
        self.recent_removals.insert((user_id, thread_id), now);
    }

    fn forget_removal(&mut self, user_id: UserId, thread_id: ThreadId) {
        self.recent_removals.remove(&(user_id, thread_id));
    }
}

impl Actor for ChatHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Connects from many workers at once should queue, not fail.
        ctx.set_mailbox_capacity(16_384);
        self.start_cluster_clock(ctx);
    }
}

impl Handler<Connect> for ChatHub {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Self::Context) {
        let first = !self.users.contains_key(&msg.user_id);
        self.sessions.insert(
            msg.session_id,
            SessionEntry {
                user_id: msg.user_id,
                addr: msg.addr,
                outbound: msg.outbound,
            },
        );
        self.users
            .entry(msg.user_id)
            .or_insert_with(|| OnlineUser {
                company_id: msg.company_id,
                sessions: Vec::new(),
                threads: HashSet::new(),
            })
            .sessions
            .push(msg.session_id);
        for (thread_id, from) in msg.threads {
            // Entering a room the user has since left would route its
            // frames to this session until JoinThreads corrects the rooms.
            if self.recent_removals.contains_key(&(msg.user_id, thread_id)) {
                continue;
            }
            self.join_room(msg.user_id, thread_id, from);
        }
        if first {
            if !self.online_elsewhere(msg.user_id) {
                self.announce_presence(msg.user_id, true);
            }
            self.tell_peers_presence(msg.user_id, true);
        }
        self.process_evictions();
        self.update_gauges();
    }
}

impl Handler<JoinThreads> for ChatHub {
    type Result = MessageResult<JoinThreads>;

    fn handle(&mut self, msg: JoinThreads, _: &mut Self::Context) -> Self::Result {
        let Some(user_id) = self.sessions.get(&msg.session_id).map(|s| s.user_id) else {
            return MessageResult(HashMap::new());
        };
        for thread_id in msg.leave {
            self.end_typing(thread_id, user_id);
            self.leave_room(user_id, thread_id);
        }
        for (thread_id, from) in msg.join {
            self.join_room(user_id, thread_id, from);
        }
        let routed = msg
            .report
            .into_iter()
            .filter_map(|t| {
                self.rooms
                    .get(&t)
                    .map(|room| (t, room.reorder.routed_through()))
            })
            .collect();
        self.process_evictions();
        self.update_gauges();
        MessageResult(routed)
    }
}

impl Handler<Disconnect> for ChatHub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Self::Context) {
        self.remove_session(msg.session_id);
        self.process_evictions();
        self.update_gauges();
    }
}

impl Handler<TypingChanged> for ChatHub {
    type Result = Result<(), AppError>;

    fn handle(&mut self, msg: TypingChanged, ctx: &mut Self::Context) -> Self::Result {
        let user_id = self
            .sessions
            .get(&msg.session_id)
            .map(|s| s.user_id)
            .ok_or(AppError::NotMember)?;
        let is_member = self
            .users
            .get(&user_id)
            .is_some_and(|u| u.threads.contains(&msg.thread_id));
        if !is_member {
            return Err(AppError::NotMember);
        }
        let thread_id = msg.thread_id;
        if !msg.typing {
            self.end_typing(thread_id, user_id);
            self.tell_peers_typing(thread_id, user_id, false);
            self.process_evictions();
            return Ok(());
        }
        if !self.start_typing(thread_id, user_id, ctx) {
            return Err(AppError::NotMember);
        }
        // Every start goes out, not only the first: it restarts the
        // other nodes' expiry timers too.
        self.tell_peers_typing(thread_id, user_id, true);
        self.process_evictions();
        Ok(())
    }
}

impl Handler<Committed> for ChatHub {
    type Result = ();

    fn handle(&mut self, Committed(event): Committed, ctx: &mut Self::Context) {
        let _timer = metrics().hub_routing_seconds.start_timer();
        self.apply(event, ctx);
    }
}

impl Handler<OnlineAmong> for ChatHub {
    type Result = MessageResult<OnlineAmong>;

    fn handle(&mut self, OnlineAmong(users): OnlineAmong, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            users
                .into_iter()
                .filter(|u| self.online_anywhere(*u))
                .collect(),
        )
    }
}

impl Handler<GetStats> for ChatHub {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(HubStats {
            sessions: self.sessions.len(),
            users_online: self.users.len(),
            live_threads: self.rooms.len(),
            held_messages: self.rooms.values().map(|r| r.reorder.held_count()).sum(),
            outbound_queued_bytes: self.sessions.values().map(|s| s.outbound.queued()).sum(),
        })
    }
}

impl Handler<Shutdown> for ChatHub {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {
        for entry in self.sessions.values() {
            entry.addr.do_send(ToSession::Close(CloseCause::Shutdown));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::Utc;

    use super::*;
    use crate::domain::{ClientMsgId, CompanyId, MessageId, MessageKind};
    use crate::events::ChatEvent;
    use crate::outbound::OutboundGauge;
    use crate::protocol::MessageView;

    /// Stands in for a session: records the frames the hub routes to it.
    pub(super) struct Recorder(pub(super) Arc<Mutex<Vec<serde_json::Value>>>);

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    /// Answered after every frame queued before it: a barrier.
    #[derive(Message)]
    #[rtype(result = "()")]
    pub(super) struct Flush;

    impl Handler<Flush> for Recorder {
        type Result = ();
        fn handle(&mut self, _: Flush, _: &mut Self::Context) {}
    }

    impl Handler<ToSession> for Recorder {
        type Result = ();
        fn handle(&mut self, msg: ToSession, _: &mut Self::Context) {
            if let ToSession::Frame(out) = msg {
                if let Ok(frame) = serde_json::from_str(&out.frame) {
                    self.0.lock().map(|mut frames| frames.push(frame)).ok();
                }
            }
        }
    }

    /// A committed text message of a fresh sender.
    pub(super) fn message(thread_id: ThreadId, seq: i64) -> MessageView {
        MessageView {
            id: MessageId::new_v7(),
            thread_id,
            seq,
            sender_id: UserId(uuid::Uuid::new_v4()),
            client_msg_id: ClientMsgId(uuid::Uuid::new_v4()),
            kind: MessageKind::Text,
            body: Some(format!("m{seq}")),
            metadata: None,
            created_at: Utc::now(),
            edited_at: None,
            deleted_at: None,
            reply_to: None,
            mentions: Vec::new(),
            reactions: Vec::new(),
            rev: seq,
        }
    }

    /// One recording session of a fresh user, online in one thread.
    pub(super) struct Listener {
        pub(super) hub: Addr<ChatHub>,
        recorder: Addr<Recorder>,
        frames: Arc<Mutex<Vec<serde_json::Value>>>,
    }

    impl Listener {
        pub(super) async fn join(hub: Addr<ChatHub>, thread_id: ThreadId) -> Self {
            Self::join_as(hub, UserId(uuid::Uuid::new_v4()), thread_id).await
        }

        /// A session of `user_id` whose first look lists `thread_id`.
        pub(super) async fn join_as(
            hub: Addr<ChatHub>,
            user_id: UserId,
            thread_id: ThreadId,
        ) -> Self {
            let frames = Arc::new(Mutex::new(Vec::new()));
            let recorder = Recorder(frames.clone()).start();
            hub.send(Connect {
                session_id: SessionId::new_v4(),
                user_id,
                company_id: CompanyId(uuid::Uuid::new_v4()),
                threads: vec![(thread_id, Routed::default())],
                addr: recorder.clone().recipient(),
                outbound: OutboundGauge::default(),
            })
            .await
            .ok();
            Listener {
                hub,
                recorder,
                frames,
            }
        }

        /// Every frame routed to this session so far.
        pub(super) async fn frames(&self) -> Vec<serde_json::Value> {
            // Everything the hub routed before answering is in the
            // recorder's mailbox, ahead of the flush.
            self.hub.send(GetStats).await.ok();
            self.recorder.send(Flush).await.ok();
            self.frames.lock().map(|f| f.clone()).unwrap_or_default()
        }

        /// The seqs of chat:message frames routed so far.
        async fn seqs(&self) -> Vec<i64> {
            self.frames()
                .await
                .iter()
                .filter_map(|f| f["data"]["message"]["seq"].as_i64())
                .collect()
        }

        async fn created(&self, thread_id: ThreadId, seq: i64) {
            let event = ChatEvent::MessageCreated {
                message: message(thread_id, seq),
                origin: None,
            };
            self.hub.send(Committed(event)).await.ok();
        }
    }

    pub(super) fn settings() -> HubSettings {
        HubSettings {
            typing_timeout: Duration::from_secs(5),
            max_outbound_bytes: 1 << 20,
        }
    }

    async fn hub_with_listener(thread_id: ThreadId) -> Listener {
        Listener::join(ChatHub::new(settings()).start(), thread_id).await
    }

    /// A session whose first look still lists a thread the user was just
    /// removed from (the removal reached the hub before Connect) does not
    /// enter its room: the room's messages are not routed to it.
    #[actix_rt::test]
    async fn connect_with_a_stale_first_look_does_not_enter_a_room_just_left() {
        let thread_id = ThreadId(uuid::Uuid::new_v4());
        let member = hub_with_listener(thread_id).await;
        let hub = member.hub.clone();
        let user_id = UserId(uuid::Uuid::new_v4());
        let removed = ChatEvent::MemberRemoved { thread_id, user_id };
        hub.send(Committed(removed)).await.ok();

        let removed_user = Listener::join_as(hub, user_id, thread_id).await;
        member.created(thread_id, 1).await;
        assert_eq!(member.seqs().await, vec![1], "the member still gets it");
        let leaked = removed_user.frames().await;
        assert!(
            leaked
                .iter()
                .all(|f| f["data"]["message"]["thread_id"].is_null()),
            "a removed user's session got the room's message: {leaked:?}"
        );
    }

    #[actix_rt::test]
    async fn messages_announced_out_of_order_leave_in_seq_order() {
        let thread_id = ThreadId(uuid::Uuid::new_v4());
        let listener = hub_with_listener(thread_id).await;
        for seq in [3, 1, 4, 2] {
            listener.created(thread_id, seq).await;
        }
        assert_eq!(listener.seqs().await, vec![1, 2, 3, 4]);
    }

    #[actix_rt::test]
    async fn a_seq_that_never_comes_is_skipped_after_the_hold() {
        let thread_id = ThreadId(uuid::Uuid::new_v4());
        let listener = hub_with_listener(thread_id).await;
        listener.created(thread_id, 2).await;
        listener.created(thread_id, 3).await;
        actix_rt::time::sleep(REORDER_HOLD / 2).await;
        assert!(
            listener.seqs().await.is_empty(),
            "held while seq 1 may still come"
        );
        // The hold is the behaviour under test, so the test waits it out.
        actix_rt::time::sleep(REORDER_HOLD).await;
        assert_eq!(listener.seqs().await, vec![2, 3]);
        // A late seq 1 is stale: its members were told past it.
        listener.created(thread_id, 1).await;
        assert_eq!(listener.seqs().await, vec![2, 3]);
    }
}
