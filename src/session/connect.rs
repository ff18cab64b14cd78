//! The connect sequence: from an accepted upgrade to chat:ready.

use std::collections::HashSet;

use actix::prelude::*;
use actix_http::ws::CloseCode;
use actix_web_actors::ws::WebsocketContext;

use super::WsSession;
use crate::domain::ThreadId;
use crate::error::AppError;
use crate::hub::messages::{Connect, JoinThreads, Routed};
use crate::persistence::{ask, LoadThreads};
use crate::protocol::{ServerEvent, ThreadView};

impl WsSession {
    /// Registers with the hub, loads the user's threads, and sends
    /// chat:ready. Two looks because a membership can change while we
    /// register: the first (the thread positions the upgrade read, see
    /// `persistence::AdmitSession`) decides the rooms we enter; the second
    /// (the full views, taken once the hub routes to us, so no later
    /// change can be missed) corrects them and is what chat:ready reports.
    pub(super) fn connect(&mut self, ctx: &mut WebsocketContext<Self>) {
        let deps = self.deps.clone();
        let (session_id, user) = (self.id, self.user);
        let addr = ctx.address().recipient();
        let outbound = self.outbound.clone();
        let first = std::mem::take(&mut self.first_look);
        let sequence = async move {
            deps.hub
                .send(Connect {
                    session_id,
                    user_id: user.user_id,
                    company_id: user.company_id,
                    threads: first
                        .iter()
                        .map(|t| {
                            let routed = Routed {
                                seq: t.last_seq,
                                rev: t.last_rev,
                            };
                            (t.id, routed)
                        })
                        .collect(),
                    addr,
                    outbound,
                })
                .await
                .map_err(|_| AppError::Unavailable)?;
            let query = LoadThreads {
                member: user,
                with_last_message: false,
            };
            let items = ask(&deps.persistence, query).await?;
            let mut second: Vec<ThreadView> = items.into_iter().map(|i| i.thread).collect();
            let before: HashSet<ThreadId> = first.iter().map(|t| t.id).collect();
            let now: HashSet<ThreadId> = second.iter().map(|t| t.id).collect();
            let routed = deps
                .hub
                .send(JoinThreads {
                    session_id,
                    join: second
                        .iter()
                        .filter(|t| !before.contains(&t.id))
                        .map(|t| (t.id, routed_of(t)))
                        .collect(),
                    leave: before.difference(&now).copied().collect(),
                    report: now.iter().copied().collect(),
                })
                .await
                .map_err(|_| AppError::Unavailable)?;
            for thread in &mut second {
                if let Some(routed) = routed.get(&thread.id) {
                    thread.last_seq = thread.last_seq.max(routed.seq);
                    thread.last_rev = thread.last_rev.max(routed.rev);
                }
            }
            Ok::<Vec<ThreadView>, AppError>(second)
        };
        ctx.wait(
            sequence
                .into_actor(self)
                .map(|result, session, ctx| match result {
                    Ok(threads) => {
                        session.reported_last_rev =
                            threads.iter().map(|t| (t.id, t.last_rev)).collect();
                        log::info!(
                            session:% = session.id,
                            user:% = session.user.user_id,
                            threads = threads.len();
                            "session ready"
                        );
                        let ready = ServerEvent::Ready {
                            user_id: session.user.user_id,
                            session_id: session.id,
                            threads,
                        };
                        session.reply(ready, None, ctx);
                    }
                    Err(error) => {
                        session.reply_error(error, None, ctx);
                        session.close(
                            CloseCode::Again,
                            "cannot load your threads, retry later",
                            ctx,
                        );
                    }
                }),
        );
    }
}

/// What a thread view says the session was told.
fn routed_of(thread: &ThreadView) -> Routed {
    Routed {
        seq: thread.last_seq,
        rev: thread.last_rev,
    }
}
