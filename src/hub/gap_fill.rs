//! Reading missed changes back from the database, so a room's members get
//! every change in rev order (and every new message in seq order) even
//! when an announcement never reaches this hub: a gap that outlives the
//! reorder hold, or what a node missed while its bus was away. Each missed
//! rev comes back as the change it was, carrying its message's current
//! state (`persistence::replay`). The hub never waits: the query runs on
//! Persistence and its answer comes back to the hub as a future on its own
//! context.

use actix::prelude::*;

use super::messages::UseGapFill;
use super::ChatHub;
use crate::error::AppError;
use crate::events::{LoadChangesAfter, MessageChange, RevRange};
use crate::metrics::metrics;

/// At most this many changes of one thread are read back at once. A
/// larger gap is skipped past the fill, and its members sync.
pub const FILL_LIMIT: i64 = 1000;

/// Threads read back in one request when catching up.
const CATCH_UP_CHUNK: usize = 500;

/// Why changes are being read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill {
    /// A room's reorder buffer waited out its hold: the revs before the
    /// first held one. The buffer hears when the fill is over.
    Gap,
    /// The bus (re)connected: everything after what each room routed.
    CatchUp,
}

impl ChatHub {
    /// Reads back, for every live room, what was committed after the last
    /// rev it routed: what this node may have missed while cut off.
    pub(super) fn catch_up_all_rooms(&mut self, ctx: &mut Context<Self>) {
        let ranges: Vec<RevRange> = self
            .rooms
            .iter()
            .map(|(&thread_id, room)| {
                let routed = room.reorder.routed_through();
                RevRange {
                    thread_id,
                    after_rev: routed.rev,
                    up_to_rev: i64::MAX,
                }
            })
            .collect();
        for chunk in ranges.chunks(CATCH_UP_CHUNK) {
            self.read_back(chunk.to_vec(), Fill::CatchUp, ctx);
        }
    }

    pub(super) fn read_back(&mut self, ranges: Vec<RevRange>, why: Fill, ctx: &mut Context<Self>) {
        let Some(persistence) = self.gap_fill.clone() else {
            return;
        };
        let reason = match why {
            Fill::Gap => "gap",
            Fill::CatchUp => "catch_up",
        };
        metrics()
            .gap_fill_read_backs
            .with_label_values(&[reason])
            .inc();
        let request = persistence.send(LoadChangesAfter {
            ranges: ranges.clone(),
            limit_per_thread: FILL_LIMIT,
        });
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(request).map(move |answer, hub, ctx| {
                let answer = answer.map_err(|_| AppError::Unavailable).and_then(|r| r);
                hub.filled(ranges, answer, why, ctx);
            }),
        );
    }

    fn filled(
        &mut self,
        ranges: Vec<RevRange>,
        answer: Result<Vec<MessageChange>, AppError>,
        why: Fill,
        ctx: &mut Context<Self>,
    ) {
        match answer {
            Ok(changes) => {
                metrics().gap_fill_messages.inc_by(changes.len() as u64);
                if !changes.is_empty() {
                    log::info!("read back {} change(s) ({why:?})", changes.len());
                }
                // Already routed ones are stale and dropped by the buffer.
                for change in changes {
                    self.change_arrived(change, ctx);
                }
            }
            Err(e) => log::warn!("reading back missed changes failed ({why:?}): {e}"),
        }
        if why == Fill::Gap {
            for range in ranges {
                let thread_id = range.thread_id;
                if let Some(room) = self.rooms.get_mut(&thread_id) {
                    let actions = room.reorder.fill_done(range);
                    self.act(thread_id, actions, ctx);
                }
            }
        }
        self.process_evictions();
    }
}

impl Handler<UseGapFill> for ChatHub {
    type Result = ();

    fn handle(&mut self, UseGapFill(persistence): UseGapFill, _: &mut Self::Context) {
        self.gap_fill = Some(persistence);
    }
}
