//! ChatHub: the one actor per process that knows who is online and routes
//! every server event to exactly the sessions the contract names.
//!
//! Invariants it keeps:
//! - A room holds only online members of its thread (see [`room::Room`]),
//!   so no event reaches a non-member, let alone another company.
//! - chat:message frames of one thread leave in seq order: an early seq
//!   waits in the room's reorder buffer for the ones before it, which are
//!   read back from the database if they do not come (`gap_fill`).
//! - In cluster mode, other nodes' committed events come in through the
//!   same [`Committed`] input; who is online on them, and their typing,
//!   through `cluster`.
//! - Nothing in here waits on the database or does I/O: handlers only
//!   look up maps and hand shared frames to session mailboxes.
//! - A session whose unsent bytes pass the bound is dropped from routing
//!   and told to close with 4008, so one slow reader cannot grow memory.

pub mod cluster;
pub mod events;
mod gap_fill;
pub mod messages;
mod room;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;

use self::cluster::HubCluster;
use self::events::{ChatEvent, Committed, ReceiptRange};
use self::messages::*;
use self::room::{Arrival, Room};
use crate::domain::{CompanyId, SessionId, ThreadId, UserId};
use crate::error::AppError;
use crate::metrics::metrics;
use crate::persistence::LoadMessagesAfter;
use crate::protocol::server::Receipt;
use crate::protocol::{MessageView, ServerEvent, ThreadView};
use crate::session::outbound::OutboundGauge;

/// How long an early chat:message waits for the seqs before it. Commits of
/// one thread are serialized, so in one process a gap closes within
/// microseconds, and across nodes within a bus round trip; this bound
/// only matters if an announcement is lost, and then the missing seqs are
/// read back from the database.
pub const REORDER_HOLD: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct HubSettings {
    pub typing_timeout: Duration,
    pub max_outbound_bytes: usize,
}

struct SessionEntry {
    user_id: UserId,
    addr: Recipient<ToSession>,
    outbound: OutboundGauge,
}

struct OnlineUser {
    #[allow(dead_code)]
    company_id: CompanyId,
    sessions: Vec<SessionId>,
    threads: HashSet<ThreadId>,
}

/// The hub's sessions seen as places to put frames: borrowed apart from
/// the rooms and users being walked, so fan-out allocates nothing per
/// recipient.
struct Outlet<'a> {
    sessions: &'a HashMap<SessionId, SessionEntry>,
    evictions: &'a mut Vec<SessionId>,
    bound: usize,
}

impl Outlet<'_> {
    fn put_to_user(
        &mut self,
        user: &OnlineUser,
        out: &Outbound,
        except: Option<SessionId>,
    ) -> usize {
        let mut n = 0;
        for &session_id in &user.sessions {
            if Some(session_id) != except {
                self.put_to_session(session_id, out);
                n += 1;
            }
        }
        n
    }

    fn put_to_session(&mut self, session_id: SessionId, out: &Outbound) {
        let Some(entry) = self.sessions.get(&session_id) else {
            return;
        };
        if entry.outbound.would_exceed(out.frame.len(), self.bound) {
            if !self.evictions.contains(&session_id) {
                self.evictions.push(session_id);
            }
            return;
        }
        entry.outbound.add_text(out.frame.len());
        entry.addr.do_send(ToSession::Frame(out.clone()));
        metrics().deliveries.inc();
    }
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
    gap_fill: Option<Recipient<LoadMessagesAfter>>,
    /// Cluster mode: the other nodes' users and the bus to tell them ours.
    cluster: Option<HubCluster>,
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
            cluster: None,
        }
    }

    // ---- delivery -------------------------------------------------------

    /// Every session of `user_id` but `except`. The frame's bytes are
    /// shared, never copied or encoded again per recipient.
    fn deliver_to_user(
        &mut self,
        user_id: UserId,
        out: &Outbound,
        except: Option<SessionId>,
    ) -> usize {
        let Some(user) = self.users.get(&user_id) else {
            return 0;
        };
        let mut outlet = Outlet {
            sessions: &self.sessions,
            evictions: &mut self.evictions,
            bound: self.settings.max_outbound_bytes,
        };
        outlet.put_to_user(user, out, except)
    }

    /// Every session of every member in the room, but `except_user`'s and
    /// the `except_session`.
    fn deliver_to_room(
        &mut self,
        thread_id: ThreadId,
        out: &Outbound,
        except_user: Option<UserId>,
        except_session: Option<SessionId>,
    ) -> usize {
        let Some(room) = self.rooms.get(&thread_id) else {
            return 0;
        };
        let mut outlet = Outlet {
            sessions: &self.sessions,
            evictions: &mut self.evictions,
            bound: self.settings.max_outbound_bytes,
        };
        room.members
            .iter()
            .filter(|u| Some(**u) != except_user)
            .filter_map(|u| self.users.get(u))
            .map(|user| outlet.put_to_user(user, out, except_session))
            .sum()
    }

    fn frame(event: ServerEvent) -> Outbound {
        Outbound {
            frame: event.to_frame(None),
            message_seq: None,
        }
    }

    /// Drops sessions that passed their outbound bound. Evicting can route
    /// (presence, typing) and so evict more; loop until quiet.
    fn process_evictions(&mut self) {
        while let Some(session_id) = self.evictions.pop() {
            if let Some(entry) = self.sessions.get(&session_id) {
                log::info!(
                    "session={session_id} user={} slow consumer, closing with 4008",
                    entry.user_id
                );
                metrics().slow_consumers_closed.inc();
                entry
                    .addr
                    .do_send(ToSession::Close(CloseCause::SlowConsumer));
            }
            self.remove_session(session_id);
        }
    }

    // ---- rooms and presence --------------------------------------------

    fn join_room(&mut self, user_id: UserId, thread_id: ThreadId, last_seq: i64) {
        if let Some(user) = self.users.get_mut(&user_id) {
            user.threads.insert(thread_id);
        }
        self.rooms
            .entry(thread_id)
            .or_insert_with(|| Room::new(last_seq))
            .members
            .insert(user_id);
    }

    /// Users other than `user_id` who share a live room with them.
    fn co_members(&self, user_id: UserId) -> HashSet<UserId> {
        let Some(user) = self.users.get(&user_id) else {
            return HashSet::new();
        };
        user.threads
            .iter()
            .filter_map(|t| self.rooms.get(t))
            .flat_map(|room| room.members.iter().copied())
            .filter(|u| *u != user_id)
            .collect()
    }

    fn announce_presence(&mut self, user_id: UserId, online: bool) {
        let out = Self::frame(ServerEvent::Presence { user_id, online });
        for other in self.co_members(user_id) {
            self.deliver_to_user(other, &out, None);
        }
    }

    fn remove_session(&mut self, session_id: SessionId) {
        let Some(entry) = self.sessions.remove(&session_id) else {
            return;
        };
        let user_id = entry.user_id;
        let last = match self.users.get_mut(&user_id) {
            Some(user) => {
                user.sessions.retain(|s| *s != session_id);
                user.sessions.is_empty()
            }
            None => false,
        };
        if !last {
            return;
        }
        // The user's last session: their typing ends and they go offline.
        let threads: Vec<ThreadId> = self
            .users
            .get(&user_id)
            .map(|u| u.threads.iter().copied().collect())
            .unwrap_or_default();
        for thread_id in &threads {
            self.end_typing(*thread_id, user_id);
        }
        if !self.online_elsewhere(user_id) {
            self.announce_presence(user_id, false);
        }
        self.tell_peers_presence(user_id, false);
        for thread_id in threads {
            self.leave_room(user_id, thread_id);
        }
        self.users.remove(&user_id);
        self.update_gauges();
    }

    fn leave_room(&mut self, user_id: UserId, thread_id: ThreadId) {
        if let Some(user) = self.users.get_mut(&user_id) {
            user.threads.remove(&thread_id);
        }
        if let Some(room) = self.rooms.get_mut(&thread_id) {
            room.members.remove(&user_id);
            room.typing.remove(&user_id);
            if room.members.is_empty() {
                self.rooms.remove(&thread_id);
            }
        }
    }

    fn update_gauges(&self) {
        let m = metrics();
        m.sessions.set(self.sessions.len() as i64);
        m.users_online.set(self.users.len() as i64);
        m.live_threads.set(self.rooms.len() as i64);
    }

    // ---- typing ---------------------------------------------------------

    fn end_typing(&mut self, thread_id: ThreadId, user_id: UserId) {
        let was_typing = self
            .rooms
            .get_mut(&thread_id)
            .and_then(|r| r.typing.remove(&user_id))
            .is_some();
        if was_typing {
            let out = Self::frame(ServerEvent::Typing {
                thread_id,
                user_id,
                typing: false,
            });
            self.deliver_to_room(thread_id, &out, Some(user_id), None);
        }
    }

    /// Shows `user_id` typing in the room (if it was not already) until the
    /// typing timeout, unless a later start renews it. False if no room.
    fn start_typing(
        &mut self,
        thread_id: ThreadId,
        user_id: UserId,
        ctx: &mut Context<Self>,
    ) -> bool {
        self.typing_generation += 1;
        let generation = self.typing_generation;
        let Some(room) = self.rooms.get_mut(&thread_id) else {
            return false;
        };
        let already = room.typing.insert(user_id, generation).is_some();
        ctx.run_later(self.settings.typing_timeout, move |hub, _| {
            hub.typing_expired(thread_id, user_id, generation)
        });
        if !already {
            let out = Self::frame(ServerEvent::Typing {
                thread_id,
                user_id,
                typing: true,
            });
            self.deliver_to_room(thread_id, &out, Some(user_id), None);
        }
        true
    }

    fn typing_expired(&mut self, thread_id: ThreadId, user_id: UserId, generation: u64) {
        let current = self
            .rooms
            .get(&thread_id)
            .and_then(|r| r.typing.get(&user_id))
            .copied();
        if current == Some(generation) {
            self.end_typing(thread_id, user_id);
            self.process_evictions();
        }
    }

    // ---- messages -------------------------------------------------------

    fn message_arrived(
        &mut self,
        message: MessageView,
        origin: Option<SessionId>,
        ctx: &mut Context<Self>,
    ) {
        let thread_id = message.thread_id;
        let Some(room) = self.rooms.get_mut(&thread_id) else {
            return;
        };
        match room.classify(message.seq) {
            Arrival::Stale => {
                log::debug!(
                    "thread={thread_id} seq={} already covered, not routed",
                    message.seq
                );
            }
            Arrival::Early => {
                room.held.insert(message.seq, (message, origin));
                if !room.flush_scheduled {
                    room.flush_scheduled = true;
                    ctx.run_later(REORDER_HOLD, move |hub, ctx| hub.flush_held(thread_id, ctx));
                }
            }
            Arrival::InOrder => {
                room.next_seq += 1;
                let released = room.release_in_order();
                self.route_message(&message, origin);
                for (m, o) in released {
                    self.route_message(&m, o);
                }
            }
        }
    }

    fn flush_held(&mut self, thread_id: ThreadId, ctx: &mut Context<Self>) {
        let Some(room) = self.rooms.get_mut(&thread_id) else {
            return;
        };
        room.flush_scheduled = false;
        if self.fill_gap(thread_id, ctx) {
            return;
        }
        let Some(room) = self.rooms.get_mut(&thread_id) else {
            return;
        };
        let released = room.skip_gap();
        if !room.held.is_empty() {
            room.flush_scheduled = true;
            ctx.run_later(REORDER_HOLD, move |hub, ctx| hub.flush_held(thread_id, ctx));
        }
        for (m, o) in released {
            self.route_message(&m, o);
        }
        self.process_evictions();
    }

    fn route_message(&mut self, message: &MessageView, origin: Option<SessionId>) {
        let out = Outbound {
            frame: ServerEvent::Message {
                message: message.clone(),
            }
            .to_frame(None),
            message_seq: Some((message.thread_id, message.seq)),
        };
        let n = self.deliver_to_room(message.thread_id, &out, None, origin);
        metrics().fanout_size.observe(n as f64);
    }

    fn receipt(
        &mut self,
        thread_id: ThreadId,
        reader: UserId,
        range: &ReceiptRange,
        read: bool,
        at: chrono::DateTime<chrono::Utc>,
        origin: Option<SessionId>,
    ) {
        let receipt = Receipt {
            thread_id,
            user_id: reader,
            up_to_seq: range.up_to_seq,
            at,
        };
        let out = Self::frame(if read {
            ServerEvent::Read(receipt)
        } else {
            ServerEvent::Delivered(receipt)
        });
        for sender in &range.senders {
            if *sender != reader {
                self.deliver_to_user(*sender, &out, None);
            }
        }
        if read {
            // The reader's other devices clear their badges too.
            self.deliver_to_user(reader, &out, origin);
        }
    }

    fn thread_joined(&mut self, user_id: UserId, mut thread: ThreadView) {
        if !self.users.contains_key(&user_id) {
            return;
        }
        self.join_room(user_id, thread.id, thread.last_seq);
        // If messages were routed in the room after this view was read, say
        // so: the client then syncs instead of missing them.
        if let Some(room) = self.rooms.get(&thread.id) {
            thread.last_seq = thread.last_seq.max(room.next_seq - 1);
        }
        let out = Self::frame(ServerEvent::ThreadJoined { thread });
        self.deliver_to_user(user_id, &out, None);
    }

    fn apply(&mut self, event: ChatEvent, ctx: &mut Context<Self>) {
        match event {
            ChatEvent::MessageCreated { message, origin } => {
                let (thread_id, sender) = (message.thread_id, message.sender_id);
                self.message_arrived(message, origin, ctx);
                self.end_typing(thread_id, sender);
            }
            ChatEvent::MessageEdited { message } => {
                let thread_id = message.thread_id;
                let out = Self::frame(ServerEvent::MessageEdited { message });
                self.deliver_to_room(thread_id, &out, None, None);
            }
            ChatEvent::MessageDeleted {
                thread_id,
                message_id,
                seq,
                deleted_at,
            } => {
                let out = Self::frame(ServerEvent::MessageDeleted {
                    thread_id,
                    message_id,
                    seq,
                    deleted_at,
                });
                self.deliver_to_room(thread_id, &out, None, None);
            }
            ChatEvent::CursorAdvanced {
                thread_id,
                user_id,
                origin,
                delivered,
                read,
                at,
            } => {
                if let Some(range) = &delivered {
                    self.receipt(thread_id, user_id, range, false, at, origin);
                }
                if let Some(range) = &read {
                    self.receipt(thread_id, user_id, range, true, at, origin);
                }
            }
            ChatEvent::ThreadCreated { thread, members } => {
                for user_id in members {
                    self.thread_joined(user_id, thread.clone());
                }
            }
            ChatEvent::MemberAdded { thread, user_id } => {
                let thread_id = thread.id;
                self.thread_joined(user_id, thread);
                let out = Self::frame(ServerEvent::MemberJoined { thread_id, user_id });
                self.deliver_to_room(thread_id, &out, Some(user_id), None);
            }
            ChatEvent::MemberRemoved { thread_id, user_id } => {
                self.end_typing(thread_id, user_id);
                let was_online = self
                    .users
                    .get(&user_id)
                    .is_some_and(|u| u.threads.contains(&thread_id));
                self.leave_room(user_id, thread_id);
                if was_online {
                    let out = Self::frame(ServerEvent::ThreadLeft { thread_id });
                    self.deliver_to_user(user_id, &out, None);
                }
                let out = Self::frame(ServerEvent::MemberLeft { thread_id, user_id });
                self.deliver_to_room(thread_id, &out, Some(user_id), None);
            }
        }
        self.process_evictions();
        self.update_gauges();
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
        for (thread_id, last_seq) in msg.threads {
            self.join_room(msg.user_id, thread_id, last_seq);
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
        for (thread_id, last_seq) in msg.join {
            self.join_room(user_id, thread_id, last_seq);
        }
        let routed = msg
            .report
            .into_iter()
            .filter_map(|t| self.rooms.get(&t).map(|room| (t, room.next_seq - 1)))
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
            held_messages: self.rooms.values().map(|r| r.held.len()).sum(),
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
    use crate::domain::{ClientMsgId, MessageId, MessageKind};

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

    fn message(thread_id: ThreadId, seq: i64) -> MessageView {
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
            let frames = Arc::new(Mutex::new(Vec::new()));
            let recorder = Recorder(frames.clone()).start();
            hub.send(Connect {
                session_id: SessionId::new_v4(),
                user_id: UserId(uuid::Uuid::new_v4()),
                company_id: CompanyId(uuid::Uuid::new_v4()),
                threads: vec![(thread_id, 0)],
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
