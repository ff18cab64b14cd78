//! Arbitrary bytes off the wire through the path a session's input takes:
//! actix's WebSocket codec in server mode with the default 64 KiB limit
//! (`session/inbound.rs`), the fragment `Reassembler` and, for each whole
//! text message, `ClientFrame::parse` (`session/mod.rs`, `on_frame` and
//! `on_text`). Nothing on this path may panic, and the limits must hold:
//! no frame or reassembled message over 64 KiB gets through.
//!
//! The first input byte picks how the rest arrives: all at once (0) or in
//! chunks of 1..=255 bytes, as TCP may split it, so partial headers and
//! payloads are decoded too.

#![no_main]

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame};
use bytes::BytesMut;
use confab::protocol::client::ClientFrame;
use confab::session::reassembly::{Assembled, Reassembler};
use libfuzzer_sys::fuzz_target;

const MAX_FRAME_BYTES: usize = 65536;

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, wire)) = data.split_first() else {
        return;
    };
    let chunk = if chunking == 0 { wire.len().max(1) } else { chunking as usize };

    let mut codec = Codec::new().max_size(MAX_FRAME_BYTES);
    let mut fragments = Reassembler::new(MAX_FRAME_BYTES);
    let mut buf = BytesMut::new();
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if !on_frame(frame, &mut fragments) {
                        return; // the session closes the connection
                    }
                }
                Ok(None) => break, // wait for more bytes
                Err(_) => return,  // 1002 or 1009: the connection closes
            }
        }
    }
});

/// What `WsSession::on_frame` does with one frame; false once the session
/// would close the connection.
fn on_frame(frame: Frame, fragments: &mut Reassembler) -> bool {
    let assembled = match frame {
        Frame::Text(payload) => {
            assert!(payload.len() <= MAX_FRAME_BYTES, "oversize text frame decoded");
            fragments.text(payload)
        }
        Frame::Binary(payload) => {
            assert!(payload.len() <= MAX_FRAME_BYTES, "oversize binary frame decoded");
            fragments.binary(&payload)
        }
        Frame::Continuation(item) => fragments.fragment(item),
        Frame::Ping(payload) => {
            assert!(payload.len() <= 125, "control frame over 125 bytes decoded");
            return true;
        }
        Frame::Pong(_) => return true,
        Frame::Close(_) => return false,
    };
    match assembled {
        Ok(Assembled::Text(text)) => {
            assert!(text.len() <= MAX_FRAME_BYTES, "oversize message reassembled");
            let text: &str = &text;
            // The whole message, as on_text parses it.
            let _ = ClientFrame::parse(text);
            true
        }
        Ok(Assembled::Binary) | Ok(Assembled::Partial) => true,
        Err(_) => false,
    }
}
