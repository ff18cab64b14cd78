//! The session's requests about messages other than sending them:
//! chat:sync, chat:changes (reads) and chat:react.

use actix::prelude::*;
use actix_web_actors::ws::WebsocketContext;
use bytestring::ByteString;

use super::{WsSession, MAX_DB_REQUESTS_IN_FLIGHT};
use crate::error::AppError;
use crate::persistence::{ask, FetchChanges, FetchMessages, PageBounds, React};
use crate::protocol::client::{ChangesRequest, ReactRequest, SyncRequest};
use crate::protocol::{Ack, FrameRef, ServerEvent};

impl WsSession {
    pub(super) fn on_sync(
        &mut self,
        request: SyncRequest,
        reference: Option<FrameRef>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if self.db_requests >= MAX_DB_REQUESTS_IN_FLIGHT {
            return self.reply_error(AppError::RateLimited, reference.as_ref(), ctx);
        }
        self.db_requests += 1;
        let query = FetchMessages {
            reader: self.user,
            thread_id: request.thread_id,
            bounds: PageBounds::After {
                after_seq: request.after_seq,
                before_seq: None,
            },
            limit: request.limit,
        };
        let page = ask(&self.deps.persistence, query);
        ctx.spawn(page.into_actor(self).map(move |result, session, ctx| {
            session.db_requests -= 1;
            match result {
                Ok(page) => {
                    let budget = session.deps.settings.max_outbound_bytes / 2;
                    let ack = Ack::Page {
                        messages: page.messages,
                        has_more: page.has_more,
                    };
                    let frame = page_frame(ack, reference.as_ref(), budget);
                    session.write(frame, ctx);
                }
                Err(error) => session.reply_error(error, reference.as_ref(), ctx),
            }
            session.finish_draining(ctx);
        }));
    }

    /// A reaction is a write a client can repeat quickly: it takes a token
    /// of the send rate limit, and counts as a database request in flight.
    pub(super) fn on_react(
        &mut self,
        request: ReactRequest,
        reference: Option<FrameRef>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if self.db_requests >= MAX_DB_REQUESTS_IN_FLIGHT || !self.limiter.try_take() {
            return self.reply_error(AppError::RateLimited, reference.as_ref(), ctx);
        }
        self.db_requests += 1;
        let ReactRequest {
            thread_id,
            message_id,
            emoji,
            on,
        } = request;
        let query = React {
            reactor: self.user,
            thread_id,
            message_id,
            emoji: emoji.clone(),
            on,
            origin: Some(self.id),
        };
        let committed = ask(&self.deps.persistence, query);
        ctx.spawn(committed.into_actor(self).map(move |result, session, ctx| {
            session.db_requests -= 1;
            match result {
                Ok(reacted) => {
                    if reference.is_some() {
                        let ack = Ack::Reaction {
                            message_id,
                            emoji: emoji.into_string(),
                            on,
                            rev: reacted.rev,
                        };
                        session.reply(ServerEvent::Ack(ack), reference.as_ref(), ctx);
                    }
                }
                Err(error) => session.reply_error(error, reference.as_ref(), ctx),
            }
            session.finish_draining(ctx);
        }));
    }

    pub(super) fn on_changes(
        &mut self,
        request: ChangesRequest,
        reference: Option<FrameRef>,
        ctx: &mut WebsocketContext<Self>,
    ) {
        if self.db_requests >= MAX_DB_REQUESTS_IN_FLIGHT {
            return self.reply_error(AppError::RateLimited, reference.as_ref(), ctx);
        }
        self.db_requests += 1;
        let query = FetchChanges {
            reader: self.user,
            thread_id: request.thread_id,
            after_rev: request.after_rev,
            limit: request.limit,
        };
        let page = ask(&self.deps.persistence, query);
        ctx.spawn(page.into_actor(self).map(move |result, session, ctx| {
            session.db_requests -= 1;
            match result {
                Ok(page) => {
                    let budget = session.deps.settings.max_outbound_bytes / 2;
                    let frame = page_frame(Ack::Changes(page), reference.as_ref(), budget);
                    session.write(frame, ctx);
                }
                Err(error) => session.reply_error(error, reference.as_ref(), ctx),
            }
            session.finish_draining(ctx);
        }));
    }
}

/// A chat:sync or chat:changes reply that fits in `budget` bytes: a page
/// as large as the outbound bound would close the very session that is
/// catching up, so it is cut short (with `has_more`, and for changes the
/// `last_rev` of what is kept) and the client asks for the rest.
fn page_frame(ack: Ack, reference: Option<&FrameRef>, budget: usize) -> ByteString {
    let mut event = ServerEvent::Ack(ack);
    loop {
        let frame = event.to_frame(reference);
        let ServerEvent::Ack(ack) = &mut event else {
            return frame;
        };
        let (messages, has_more) = match ack {
            Ack::Page { messages, has_more } => (messages, has_more),
            Ack::Changes(page) => (&mut page.messages, &mut page.has_more),
            _ => return frame,
        };
        if frame.len() <= budget || messages.len() <= 1 {
            return frame;
        }
        messages.truncate(messages.len() / 2);
        *has_more = true;
        if let Ack::Changes(page) = ack {
            if let Some(last) = page.messages.last() {
                page.last_rev = last.rev;
            }
        }
    }
}
