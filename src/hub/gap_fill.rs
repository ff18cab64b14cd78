//! Reading missed messages back from the database, so a room's members get
//! every seq in order even when an announcement never reaches this hub: a
//! gap that outlives the reorder hold, or what a node missed while its bus
//! was away. The hub never waits: the query runs on Persistence and its
//! answer comes back to the hub as a future on its own context.

use actix::prelude::*;

use super::messages::UseGapFill;
use super::ChatHub;
use crate::domain::ThreadId;
use crate::error::AppError;
use crate::metrics::metrics;
use crate::persistence::{LoadMessagesAfter, SeqRange};
use crate::protocol::MessageView;

/// At most this many messages of one thread are read back at once. A
/// larger gap is skipped past the fill, and its members sync.
pub const FILL_LIMIT: i64 = 1000;

/// Why messages are being read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// An early seq waited out its hold: the seqs before it.
    Gap,
    /// The bus (re)connected: everything after what each room routed.
    CatchUp,
}

impl ChatHub {
    /// Called when a room's reorder hold ends with messages still held.
    /// Returns false if there is nothing to fill from (no Persistence),
    /// and the caller skips the gap as it always did.
    pub(super) fn fill_gap(&mut self, thread_id: ThreadId, ctx: &mut Context<Self>) -> bool {
        if self.gap_fill.is_none() {
            return false;
        }
        let Some(room) = self.rooms.get_mut(&thread_id) else {
            return true;
        };
        let Some(&first_held) = room.held.keys().next() else {
            return true;
        };
        let range = SeqRange {
            thread_id,
            after_seq: room.next_seq - 1,
            up_to_seq: first_held - 1,
        };
        // No other hold ends while this fill runs; `filled` reschedules.
        room.flush_scheduled = true;
        log::info!(
            "thread={thread_id} seqs {}..={} did not arrive within the hold: reading them back",
            range.after_seq + 1,
            range.up_to_seq
        );
        self.read_back(vec![range], Fill::Gap, ctx);
        true
    }

    /// Reads back, for every live room, what was committed after the last
    /// seq it routed: what this node may have missed while cut off.
    pub(super) fn catch_up_all_rooms(&mut self, ctx: &mut Context<Self>) {
        let ranges: Vec<SeqRange> = self
            .rooms
            .iter()
            .map(|(&thread_id, room)| SeqRange {
                thread_id,
                after_seq: room.next_seq - 1,
                up_to_seq: i64::MAX,
            })
            .collect();
        for chunk in ranges.chunks(500) {
            self.read_back(chunk.to_vec(), Fill::CatchUp, ctx);
        }
    }

    fn read_back(&mut self, ranges: Vec<SeqRange>, why: Fill, ctx: &mut Context<Self>) {
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
        let request = persistence.send(LoadMessagesAfter {
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
        ranges: Vec<SeqRange>,
        answer: Result<Vec<MessageView>, AppError>,
        why: Fill,
        ctx: &mut Context<Self>,
    ) {
        match answer {
            Ok(messages) => {
                metrics().gap_fill_messages.inc_by(messages.len() as u64);
                if !messages.is_empty() {
                    log::info!("read back {} message(s) ({why:?})", messages.len());
                }
                for message in messages {
                    let (thread_id, sender) = (message.thread_id, message.sender_id);
                    // Already routed ones are stale and dropped here.
                    self.message_arrived(message, None, ctx);
                    self.end_typing(thread_id, sender);
                }
            }
            Err(e) => log::warn!("reading back missed messages failed ({why:?}): {e}"),
        }
        if why == Fill::Gap {
            for range in ranges {
                self.after_gap_fill(range, ctx);
            }
        }
        self.process_evictions();
    }

    /// A gap the fill could not close (the database unreachable, a gap
    /// past FILL_LIMIT) is skipped as before. Whatever is still held behind
    /// a newer gap waits out a hold of its own.
    fn after_gap_fill(&mut self, range: SeqRange, ctx: &mut Context<Self>) {
        let thread_id = range.thread_id;
        let Some(room) = self.rooms.get_mut(&thread_id) else {
            return;
        };
        room.flush_scheduled = false;
        let released = if room.next_seq <= range.up_to_seq {
            room.skip_gap()
        } else {
            Vec::new()
        };
        if !room.held.is_empty() {
            room.flush_scheduled = true;
            ctx.run_later(super::REORDER_HOLD, move |hub, ctx| {
                hub.flush_held(thread_id, ctx)
            });
        }
        for (message, origin) in released {
            self.route_message(&message, origin);
        }
    }
}

impl Handler<UseGapFill> for ChatHub {
    type Result = ();

    fn handle(&mut self, UseGapFill(persistence): UseGapFill, _: &mut Self::Context) {
        self.gap_fill = Some(persistence);
    }
}
