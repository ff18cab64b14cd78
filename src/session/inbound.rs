//! Client frames off the wire. actix's own frame stream reports invalid
//! UTF-8 like any I/O error; decoding here keeps the causes apart so each
//! gets its RFC 6455 close code (1002 protocol, 1007 bad UTF-8, 1009 size).

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, ProtocolError};
use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

pub enum Inbound {
    Frame(Frame),
    /// The peer broke the protocol; the session closes with this error's code.
    Violation(ProtocolError),
    /// The connection failed underneath us.
    Broken(PayloadError),
}

pub struct InboundFrames<S> {
    payload: Pin<Box<S>>,
    codec: Codec,
    buf: BytesMut,
    ended: bool,
    failed: bool,
}

impl<S> InboundFrames<S> {
    pub fn new(payload: S, max_frame_bytes: usize) -> Self {
        Self {
            payload: Box::pin(payload),
            codec: Codec::new().max_size(max_frame_bytes),
            buf: BytesMut::new(),
            ended: false,
            failed: false,
        }
    }
}

impl<S> Stream for InboundFrames<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>>,
{
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        while !this.ended {
            match this.payload.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    this.failed = true;
                    return Poll::Ready(Some(Inbound::Broken(e)));
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => break,
            }
        }
        let decoded = this.codec.decode(&mut this.buf);
        if this.buf.is_empty() && this.buf.capacity() > 0 {
            // Nothing left over: let go of the allocation (the largest chunk
            // read so far) rather than keep it while the session idles.
            this.buf = BytesMut::new();
        }
        match decoded {
            Ok(Some(frame)) => Poll::Ready(Some(Inbound::Frame(frame))),
            Ok(None) if this.ended => Poll::Ready(None),
            Ok(None) => Poll::Pending,
            Err(e) => {
                this.failed = true;
                Poll::Ready(Some(Inbound::Violation(e)))
            }
        }
    }
}
