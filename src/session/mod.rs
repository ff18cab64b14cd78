//! WsSession: one actor per WebSocket connection.
//!
//! It owns the connection's protocol state (fragments, heartbeat, rate
//! limit, outbound bound), turns client frames into requests to
//! Persistence and the hub, and writes the hub's frames to the socket.
//!
//! Order promises kept here:
//! - chat:ready is the first frame: the connect sequence runs under
//!   `ctx.wait`, which holds back the mailbox (hub frames) and the socket
//!   until it is done.
//! - A session's chat:send frames commit in the order they arrived: they
//!   go to Persistence one at a time.

pub mod capacity;
mod connect;
pub mod inbound;
mod message_requests;
pub mod rate_limit;
pub mod reassembly;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::{CloseCode, CloseReason, Frame, ProtocolError};
use actix_web_actors::ws::{self, WebsocketContext};
use bytestring::ByteString;

use self::capacity::{SessionCapacity, SessionPermit};
use self::inbound::Inbound;
use self::rate_limit::TokenBucket;
use self::reassembly::{Assembled, Reassembler, Violation};
use crate::auth::Claimed;
use crate::domain::{SessionId, ThreadId};
use crate::error::AppError;
use crate::hub::messages::{CloseCause, Disconnect, ToSession, TypingChanged};
use crate::hub::ChatHub;
use crate::metrics::metrics;
use crate::outbound::OutboundGauge;
use crate::persistence::{
    ask, AdvanceCursor, CursorKind, Persistence, SendMessage, ThreadPosition,
};
use crate::protocol::client::{self, CursorUpdate};
use crate::protocol::{Ack, ClientEvent, ClientFrame, FrameRef, ServerEvent};

/// The close code for a slow consumer (private-use range, RFC 6455 §7.4.2).
pub const SLOW_CONSUMER_CLOSE: u16 = 4008;
/// The close code for a user whose tokens were revoked.
pub const TOKENS_REVOKED_CLOSE: u16 = 4001;
/// The close code for a deactivated user.
pub const DEACTIVATED_CLOSE: u16 = 4003;

/// Reads (chat:sync) and cursor writes one session may have outstanding at
/// once; beyond it the session is answered `rate_limited` instead of
/// queueing unbounded work on the database.
const MAX_DB_REQUESTS_IN_FLIGHT: usize = 32;

/// Queued chat:send frames one session may have waiting. The rate limit
/// keeps a well-behaved client far below it.
const MAX_QUEUED_SENDS: usize = 256;

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub max_frame_bytes: usize,
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    pub max_outbound_bytes: usize,
    pub rate_limit_per_second: f64,
    pub rate_limit_burst: u32,
}

/// Everything a session needs from the rest of the process.
#[derive(Clone)]
pub struct SessionDeps {
    pub hub: Addr<ChatHub>,
    pub persistence: Addr<Persistence>,
    pub settings: Arc<SessionSettings>,
    pub capacity: Arc<SessionCapacity>,
}

struct QueuedSend {
    reference: Option<FrameRef>,
    message: client::SendRequest,
    received: Instant,
}

pub struct WsSession {
    id: SessionId,
    user: Claimed,
    deps: SessionDeps,
    outbound: OutboundGauge,
    fragments: Reassembler,
    limiter: TokenBucket,
    last_heard: Instant,
    /// Per thread, the last_rev chat:ready reported: changes to messages
    /// the hub queued for us while we were connecting are dropped if
    /// chat:ready already told the client about them.
    reported_last_rev: HashMap<ThreadId, i64>,
    /// The threads the upgrade found, the connect sequence's first look;
    /// taken when it runs.
    first_look: Vec<ThreadPosition>,
    sends: VecDeque<QueuedSend>,
    sending: bool,
    db_requests: usize,
    /// Set by a graceful shutdown: close with 1001 once in-flight work is done.
    draining: bool,
    closed: bool,
    /// This session's place under the session caps, freed when it is dropped.
    _permit: SessionPermit,
}

impl WsSession {
    pub fn new(
        user: Claimed,
        first_look: Vec<ThreadPosition>,
        deps: SessionDeps,
        outbound: OutboundGauge,
        permit: SessionPermit,
    ) -> Self {
        let settings = &deps.settings;
        Self {
            id: SessionId::new_v4(),
            user,
            outbound,
            fragments: Reassembler::new(settings.max_frame_bytes),
            limiter: TokenBucket::new(settings.rate_limit_per_second, settings.rate_limit_burst),
            last_heard: Instant::now(),
            reported_last_rev: HashMap::new(),
            first_look,
            sends: VecDeque::new(),
            sending: false,
            db_requests: 0,
            draining: false,
            closed: false,
            _permit: permit,
            deps,
        }
    }

    // ---- writing --------------------------------------------------------

    /// Writes a frame of our own (ack, error, pong), counted against the
    /// outbound bound like the hub's.
    fn write(&mut self, frame: ByteString, ctx: &mut WebsocketContext<Self>) {
        if self.closed {
            return;
        }
        if self.reserve_outbound(frame.len(), ctx) {
            ctx.text(frame);
        }
    }

    /// Counts a frame of ours against the outbound bound; false (and the
    /// session closing with 4008) if it does not fit.
    fn reserve_outbound(&mut self, payload_len: usize, ctx: &mut WebsocketContext<Self>) -> bool {
        let bound = self.deps.settings.max_outbound_bytes;
        let reserved = self.outbound.try_reserve(payload_len, bound);
        if !reserved {
            self.close_slow_consumer(ctx);
        }
        reserved
    }

    fn reply(
        &mut self,
        event: ServerEvent,
        reference: Option<&FrameRef>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        self.write(event.to_frame(reference), ctx);
    }

    fn reply_error(
        &mut self,
        error: AppError,
        reference: Option<&FrameRef>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        error.log();
        let event = ServerEvent::Error {
            code: error.code(),
            message: error.client_message(),
        };
        self.reply(event, reference, ctx);
    }

    fn close(&mut self, code: CloseCode, description: &str, ctx: &mut WebsocketContext<Self>) {
        if self.closed {
            return;
        }
        self.closed = true;
        crate::metrics::record_ws_close(code.into());
        ctx.close(Some(CloseReason {
            code,
            description: Some(description.to_string()),
        }));
        ctx.stop();
    }

    fn close_slow_consumer(&mut self, ctx: &mut WebsocketContext<Self>) {
        log::info!(
            session:% = self.id, user:% = self.user.user_id;
            "outbound queue over its bound, closing"
        );
        self.close(
            CloseCode::Other(SLOW_CONSUMER_CLOSE),
            "slow consumer: reconnect and chat:sync",
            ctx,
        );
    }

    fn start_heartbeat(&self, ctx: &mut WebsocketContext<Self>) {
        let settings = self.deps.settings.clone();
        ctx.run_interval(settings.heartbeat_interval, move |session, ctx| {
            if session.last_heard.elapsed() > settings.client_timeout {
                log::info!(
                    session:% = session.id, user:% = session.user.user_id;
                    "heartbeat timed out"
                );
                session.close(CloseCode::Away, "heartbeat timeout", ctx);
                return;
            }
            if session.reserve_outbound(0, ctx) {
                ctx.ping(b"");
            }
        });
    }

    // ---- client frames --------------------------------------------------

    fn on_frame(&mut self, frame: Frame, ctx: &mut WebsocketContext<Self>) {
        let assembled = match frame {
            Frame::Text(payload) => self.fragments.text(payload),
            Frame::Binary(payload) => self.fragments.binary(&payload),
            Frame::Continuation(item) => self.fragments.fragment(item),
            Frame::Ping(payload) => {
                if self.reserve_outbound(payload.len(), ctx) {
                    ctx.pong(&payload);
                }
                return;
            }
            Frame::Pong(_) => return,
            Frame::Close(reason) => {
                // Echo the peer's code and finish the closing handshake.
                self.closed = true;
                // 1005: the close frame carried no code (RFC 6455 §7.1.5).
                crate::metrics::record_ws_close(reason.as_ref().map_or(1005, |r| r.code.into()));
                ctx.close(reason.map(|r| CloseReason {
                    code: r.code,
                    description: None,
                }));
                ctx.stop();
                return;
            }
        };
        match assembled {
            Ok(Assembled::Text(text)) => self.on_text(&text, ctx),
            Ok(Assembled::Binary) => {
                let error = AppError::bad_request(
                    "binary frames are not accepted: send JSON in text frames",
                );
                self.reply_error(error, None, ctx);
            }
            Ok(Assembled::Partial) => {}
            Err(Violation::Protocol(why)) => self.close(CloseCode::Protocol, why, ctx),
            Err(Violation::InvalidUtf8) => {
                self.close(CloseCode::Invalid, "text message is not valid UTF-8", ctx)
            }
            Err(Violation::TooBig) => self.close(CloseCode::Size, "message too big", ctx),
        }
    }

    fn on_violation(&mut self, error: ProtocolError, ctx: &mut WebsocketContext<Self>) {
        log::debug!(session:% = self.id; "protocol violation: {error}");
        match error {
            ProtocolError::Overflow => self.close(CloseCode::Size, "frame too big", ctx),
            _ => self.close(CloseCode::Protocol, "protocol error", ctx),
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut WebsocketContext<Self>) {
        let ClientFrame { reference, event } = ClientFrame::parse(text);
        let event = match event {
            Ok(event) => event,
            Err(error) => return self.reply_error(error, reference.as_ref(), ctx),
        };
        if self.draining && !matches!(event, ClientEvent::Ping) {
            let error = AppError::Refused("the server is shutting down, reconnect shortly");
            return self.reply_error(error, reference.as_ref(), ctx);
        }
        match event {
            ClientEvent::Send(message) => self.on_send(message, reference, ctx),
            ClientEvent::Delivered(update) => {
                self.on_cursor(CursorKind::Delivered, update, reference, ctx)
            }
            ClientEvent::MarkRead(update) => {
                self.on_cursor(CursorKind::Read, update, reference, ctx)
            }
            ClientEvent::TypingStart { thread_id } => {
                self.on_typing(thread_id, true, reference, ctx)
            }
            ClientEvent::TypingStop { thread_id } => {
                self.on_typing(thread_id, false, reference, ctx)
            }
            ClientEvent::Sync(request) => self.on_sync(request, reference, ctx),
            ClientEvent::React(request) => self.on_react(request, reference, ctx),
            ClientEvent::Changes(request) => self.on_changes(request, reference, ctx),
            ClientEvent::Ping => self.reply(ServerEvent::Pong {}, reference.as_ref(), ctx),
        }
    }

    fn on_send(
        &mut self,
        message: client::SendRequest,
        reference: Option<FrameRef>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if self.sends.len() >= MAX_QUEUED_SENDS || !self.limiter.try_take() {
            return self.reply_error(AppError::RateLimited, reference.as_ref(), ctx);
        }
        self.sends.push_back(QueuedSend {
            reference,
            message,
            received: Instant::now(),
        });
        self.send_next(ctx);
    }

    /// Starts the oldest queued send unless one is in flight.
    fn send_next(&mut self, ctx: &mut WebsocketContext<Self>) {
        if self.sending {
            return;
        }
        let Some(QueuedSend {
            reference,
            message,
            received,
        }) = self.sends.pop_front()
        else {
            return self.finish_draining(ctx);
        };
        self.sending = true;
        let request = SendMessage {
            sender: self.user,
            thread_id: message.thread_id,
            client_msg_id: message.client_msg_id,
            content: message.content,
            reply_to: message.reply_to,
            mentions: message.mentions,
            origin: Some(self.id),
        };
        let committed = ask(&self.deps.persistence, request);
        ctx.spawn(committed.into_actor(self).map(move |result, session, ctx| {
            session.sending = false;
            match result {
                Ok(outcome) => {
                    metrics()
                        .ack_latency_seconds
                        .observe(received.elapsed().as_secs_f64());
                    if reference.is_some() {
                        let ack = ServerEvent::Ack(Ack::Message {
                            message: outcome.message,
                        });
                        session.reply(ack, reference.as_ref(), ctx);
                    }
                }
                Err(error) => session.reply_error(error, reference.as_ref(), ctx),
            }
            session.send_next(ctx);
        }));
    }

    fn on_cursor(
        &mut self,
        kind: CursorKind,
        update: CursorUpdate,
        reference: Option<FrameRef>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if self.db_requests >= MAX_DB_REQUESTS_IN_FLIGHT {
            return self.reply_error(AppError::RateLimited, reference.as_ref(), ctx);
        }
        self.db_requests += 1;
        let request = AdvanceCursor {
            member: self.user,
            thread_id: update.thread_id,
            kind,
            up_to_seq: update.up_to_seq,
            origin: Some(self.id),
        };
        let committed = ask(&self.deps.persistence, request);
        ctx.spawn(committed.into_actor(self).map(move |result, session, ctx| {
            session.db_requests -= 1;
            match result {
                Ok(cursors) => {
                    if reference.is_some() {
                        let thread_id = update.thread_id;
                        let ack = match kind {
                            CursorKind::Delivered => Ack::Delivered {
                                thread_id,
                                last_delivered_seq: cursors.last_delivered_seq,
                            },
                            CursorKind::Read => Ack::Read {
                                thread_id,
                                last_read_seq: cursors.last_read_seq,
                            },
                        };
                        session.reply(ServerEvent::Ack(ack), reference.as_ref(), ctx);
                    }
                }
                Err(error) => session.reply_error(error, reference.as_ref(), ctx),
            }
            session.finish_draining(ctx);
        }));
    }

    fn on_typing(
        &mut self,
        thread_id: ThreadId,
        typing: bool,
        reference: Option<FrameRef>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if !self.limiter.try_take() {
            return self.reply_error(AppError::RateLimited, reference.as_ref(), ctx);
        }
        let request = TypingChanged {
            session_id: self.id,
            thread_id,
            typing,
        };
        let hub = self.deps.hub.clone();
        let routed = async move { hub.send(request).await.map_err(|_| AppError::Unavailable)? };
        ctx.spawn(
            routed
                .into_actor(self)
                .map(move |result, session, ctx| match result {
                    Ok(()) => {
                        if reference.is_some() {
                            session.reply(
                                ServerEvent::Ack(Ack::Typing { thread_id, typing }),
                                reference.as_ref(),
                                ctx,
                            );
                        }
                    }
                    Err(error) => session.reply_error(error, reference.as_ref(), ctx),
                }),
        );
    }

    /// During a graceful shutdown, closes with 1001 once nothing is in flight.
    fn finish_draining(&mut self, ctx: &mut WebsocketContext<Self>) {
        if self.draining && !self.sending && self.sends.is_empty() && self.db_requests == 0 {
            self.close(CloseCode::Away, "server shutting down", ctx);
        }
    }
}

impl Actor for WsSession {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_heartbeat(ctx);
        self.connect(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if !self.closed {
            // 1006: the connection ended without a close frame.
            crate::metrics::record_ws_close(1006);
        }
        // Harmless if the hub never registered us.
        self.deps.hub.do_send(Disconnect {
            session_id: self.id,
        });
        log::debug!(session:% = self.id, user:% = self.user.user_id; "closed");
    }
}

impl StreamHandler<Inbound> for WsSession {
    fn handle(&mut self, item: Inbound, ctx: &mut Self::Context) {
        if self.closed {
            return;
        }
        self.last_heard = Instant::now();
        match item {
            Inbound::Frame(frame) => self.on_frame(frame, ctx),
            Inbound::Violation(error) => self.on_violation(error, ctx),
            Inbound::Broken(error) => {
                log::debug!(session:% = self.id; "connection broken: {error}");
                ctx.stop();
            }
        }
    }
}

/// Required by `WebsocketContext`, which is handed an empty stream: client
/// frames come through [`Inbound`] instead, decoded by our own codec.
impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, _: Result<ws::Message, ws::ProtocolError>, _: &mut Self::Context) {}
}

impl Handler<ToSession> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: ToSession, ctx: &mut Self::Context) {
        match msg {
            ToSession::Frame(out) => {
                let covered = out.change_rev.is_some_and(|(thread, rev)| {
                    self.reported_last_rev
                        .get(&thread)
                        .is_some_and(|&last| rev <= last)
                });
                if covered || self.closed {
                    self.outbound.dropped(out.frame.len());
                    return;
                }
                ctx.text(out.frame);
            }
            ToSession::Close(CloseCause::SlowConsumer) => self.close_slow_consumer(ctx),
            ToSession::Close(CloseCause::Deactivated) => {
                self.close(CloseCode::Other(DEACTIVATED_CLOSE), "user deactivated", ctx);
            }
            ToSession::Close(CloseCause::TokensRevoked) => {
                self.close(CloseCode::Other(TOKENS_REVOKED_CLOSE), "token revoked", ctx);
            }
            ToSession::Close(CloseCause::Shutdown) => {
                self.draining = true;
                self.finish_draining(ctx);
            }
        }
    }
}
