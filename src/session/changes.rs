//! The session's side of richer messages: chat:react and chat:changes.

use actix::prelude::*;
use actix_web_actors::ws::WebsocketContext;

use super::{page_frame_with, WsSession, MAX_DB_REQUESTS_IN_FLIGHT};
use crate::error::AppError;
use crate::persistence::{ask, FetchChanges, React};
use crate::protocol::client::{ChangesRequest, ReactRequest};
use crate::protocol::{Ack, FrameRef, ServerEvent};

impl WsSession {
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
                    let frame = page_frame_with(Ack::Changes(page), reference.as_ref(), budget);
                    session.write(frame, ctx);
                }
                Err(error) => session.reply_error(error, reference.as_ref(), ctx),
            }
            session.finish_draining(ctx);
        }));
    }
}
