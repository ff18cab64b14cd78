//! The outbound bound (slow consumers, 4008): bytes queued toward one
//! socket, shared by the hub (which routes to it), the session (which
//! writes its own replies) and the HTTP layer (which takes the bytes).
//!
//! A session's frames queue in three places: its mailbox, its context's
//! write buffer, and the HTTP layer's socket buffer. The last stops taking
//! bytes when the client stops reading, and then the first two grow. The
//! gauge counts bytes handed to the session (by the hub or the session
//! itself) minus bytes the HTTP layer has taken; [`MeteredStream`] sits
//! between the context and the HTTP layer to do the subtraction.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use crate::metrics::metrics;

/// One session's queued bytes. Every change is mirrored into the
/// process-wide `outbound_queue_bytes` gauge, and whatever is still queued
/// when the session's last handle goes is taken back out of it.
#[derive(Debug, Clone, Default)]
pub struct OutboundGauge(Arc<QueuedBytes>);

#[derive(Debug, Default)]
struct QueuedBytes(AtomicUsize);

impl Drop for QueuedBytes {
    fn drop(&mut self) {
        let left = *self.0.get_mut();
        metrics().outbound_queue_bytes.sub(gauge_value(left));
    }
}

fn gauge_value(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Bytes of an unmasked server frame carrying `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    let header = match payload_len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    header + payload_len
}

impl OutboundGauge {
    pub fn queued(&self) -> usize {
        self.0 .0.load(Ordering::Relaxed)
    }

    /// Counts a text or control frame of `payload_len` bytes as queued,
    /// unless that would take the queue past `bound`: then nothing is
    /// counted and the caller must close the session (4008). Check and add
    /// are one atomic step, so the hub's thread and the session's worker
    /// cannot both pass the bound with the last free bytes.
    #[must_use = "a frame that does not fit must not be queued"]
    pub fn try_reserve(&self, payload_len: usize, bound: usize) -> bool {
        let bytes = encoded_len(payload_len);
        let reserved = self
            .0
             .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| {
                queued.checked_add(bytes).filter(|total| *total <= bound)
            })
            .is_ok();
        if reserved {
            metrics().outbound_queue_bytes.add(gauge_value(bytes));
        }
        reserved
    }

    /// A queued frame of `payload_len` bytes was dropped before writing.
    pub fn dropped(&self, payload_len: usize) {
        self.taken(encoded_len(payload_len));
    }

    fn taken(&self, n: usize) {
        let before = self
            .0
             .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(n))
            })
            .unwrap_or_else(|q| q);
        metrics()
            .outbound_queue_bytes
            .sub(gauge_value(before.min(n)));
    }
}

/// The session's encoded output on its way to the socket.
pub struct MeteredStream<S> {
    inner: Pin<Box<S>>,
    gauge: OutboundGauge,
}

impl<S> MeteredStream<S> {
    pub fn new(inner: S, gauge: OutboundGauge) -> Self {
        Self {
            inner: Box::pin(inner),
            gauge,
        }
    }
}

impl<S, E> Stream for MeteredStream<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &polled {
            self.gauge.taken(bytes.len());
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_follow_rfc6455() {
        assert_eq!(encoded_len(0), 2);
        assert_eq!(encoded_len(125), 127);
        assert_eq!(encoded_len(126), 130);
        assert_eq!(encoded_len(65536), 65546);
    }

    #[test]
    fn gauge_never_underflows() {
        let g = OutboundGauge::default();
        assert!(g.try_reserve(10, 1000));
        g.taken(100);
        assert_eq!(g.queued(), 0);
    }

    #[test]
    fn a_frame_that_would_pass_the_bound_is_not_counted() {
        let g = OutboundGauge::default();
        assert!(g.try_reserve(8, 20), "10 of 20 bytes");
        assert!(!g.try_reserve(9, 20), "21 of 20 bytes");
        assert_eq!(g.queued(), 10, "the refused frame left no trace");
        assert!(g.try_reserve(8, 20), "exactly 20 of 20 bytes");
    }

    /// Two threads (the hub's and a session's worker) race for the last
    /// free frame's worth of the bound: exactly one may win, every round.
    #[test]
    fn two_threads_racing_at_the_bound_cannot_both_pass() {
        use std::sync::Barrier;
        const ROUNDS: usize = 2_000;
        let frame = 100;
        let bound = encoded_len(frame) * 3;
        for _ in 0..ROUNDS {
            let g = OutboundGauge::default();
            assert!(g.try_reserve(frame, bound));
            assert!(g.try_reserve(frame, bound));
            let barrier = Arc::new(Barrier::new(2));
            let racers: Vec<_> = (0..2)
                .map(|_| {
                    let (g, barrier) = (g.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        g.try_reserve(frame, bound)
                    })
                })
                .collect();
            let winners = racers
                .into_iter()
                .map(|r| r.join().unwrap_or(false))
                .filter(|won| *won)
                .count();
            assert_eq!(winners, 1, "one frame fit; {winners} were counted");
            assert!(g.queued() <= bound);
        }
    }
}
