//! Data frames into messages (RFC 6455 §5.4): a fragmented text message is
//! one message, however many frames and pings it spans, and its size limit
//! applies to the whole.

use actix_http::ws::Item;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    Text(ByteString),
    Binary,
    /// A fragment was taken; the message is not complete yet.
    Partial,
}

/// Why the connection must close, with the RFC 6455 code for it.
#[derive(Debug, PartialEq, Eq)]
pub enum Violation {
    /// 1002: fragments out of order.
    Protocol(&'static str),
    /// 1007: a text message that is not UTF-8.
    InvalidUtf8,
    /// 1009: a message over the limit.
    TooBig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

pub struct Reassembler {
    max_message_bytes: usize,
    open: Option<Kind>,
    buf: BytesMut,
}

impl Reassembler {
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            max_message_bytes,
            open: None,
            buf: BytesMut::new(),
        }
    }

    /// An unfragmented text frame.
    pub fn text(&mut self, payload: Bytes) -> Result<Assembled, Violation> {
        self.refuse_if_open()?;
        self.check_size(0, payload.len())?;
        ByteString::try_from(payload)
            .map(Assembled::Text)
            .map_err(|_| Violation::InvalidUtf8)
    }

    /// An unfragmented binary frame.
    pub fn binary(&mut self, payload: &Bytes) -> Result<Assembled, Violation> {
        self.refuse_if_open()?;
        self.check_size(0, payload.len())?;
        Ok(Assembled::Binary)
    }

    pub fn fragment(&mut self, item: Item) -> Result<Assembled, Violation> {
        match item {
            Item::FirstText(b) => self.start(Kind::Text, &b),
            Item::FirstBinary(b) => self.start(Kind::Binary, &b),
            Item::Continue(b) => {
                self.append(&b)?;
                Ok(Assembled::Partial)
            }
            Item::Last(b) => {
                self.append(&b)?;
                let kind = self.open.take();
                let whole = std::mem::take(&mut self.buf).freeze();
                match kind {
                    Some(Kind::Text) => ByteString::try_from(whole)
                        .map(Assembled::Text)
                        .map_err(|_| Violation::InvalidUtf8),
                    _ => Ok(Assembled::Binary),
                }
            }
        }
    }

    fn start(&mut self, kind: Kind, first: &Bytes) -> Result<Assembled, Violation> {
        self.refuse_if_open()?;
        self.check_size(0, first.len())?;
        self.open = Some(kind);
        if kind == Kind::Text {
            self.buf.extend_from_slice(first);
        }
        Ok(Assembled::Partial)
    }

    fn append(&mut self, more: &Bytes) -> Result<(), Violation> {
        match self.open {
            None => Err(Violation::Protocol(
                "continuation frame without a message to continue",
            )),
            Some(kind) => {
                self.check_size(self.buf.len(), more.len())?;
                // A binary message is refused whole; only its size matters.
                if kind == Kind::Text {
                    self.buf.extend_from_slice(more);
                }
                Ok(())
            }
        }
    }

    fn refuse_if_open(&self) -> Result<(), Violation> {
        match self.open {
            Some(_) => Err(Violation::Protocol(
                "a new message began before the fragmented one ended",
            )),
            None => Ok(()),
        }
    }

    fn check_size(&self, have: usize, adding: usize) -> Result<(), Violation> {
        if have.saturating_add(adding) > self.max_message_bytes {
            Err(Violation::TooBig)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn fragments_make_one_text_message() {
        let mut r = Reassembler::new(64);
        assert_eq!(
            r.fragment(Item::FirstText(b("{\"ev"))),
            Ok(Assembled::Partial)
        );
        assert_eq!(
            r.fragment(Item::Continue(b("ent\":"))),
            Ok(Assembled::Partial)
        );
        assert_eq!(
            r.fragment(Item::Last(b("1}"))),
            Ok(Assembled::Text("{\"event\":1}".into()))
        );
        // And the next message starts afresh.
        assert_eq!(r.text(b("x")), Ok(Assembled::Text("x".into())));
    }

    #[test]
    fn a_code_point_split_across_fragments_is_valid() {
        let mut r = Reassembler::new(64);
        let euro = "€".as_bytes();
        r.fragment(Item::FirstText(Bytes::copy_from_slice(&euro[..1])))
            .ok();
        let done = r.fragment(Item::Last(Bytes::copy_from_slice(&euro[1..])));
        assert_eq!(done, Ok(Assembled::Text("€".into())));
    }

    #[test]
    fn out_of_order_fragments_are_protocol_errors() {
        let mut r = Reassembler::new(64);
        assert!(matches!(
            r.fragment(Item::Continue(b("x"))),
            Err(Violation::Protocol(_))
        ));
        r.fragment(Item::FirstText(b("a"))).ok();
        assert!(matches!(r.text(b("b")), Err(Violation::Protocol(_))));
    }

    #[test]
    fn the_limit_applies_to_the_whole_message() {
        let mut r = Reassembler::new(4);
        r.fragment(Item::FirstText(b("ab"))).ok();
        r.fragment(Item::Continue(b("cd"))).ok();
        assert_eq!(r.fragment(Item::Last(b("e"))), Err(Violation::TooBig));
        assert_eq!(Reassembler::new(4).text(b("abcde")), Err(Violation::TooBig));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut r = Reassembler::new(64);
        assert_eq!(
            r.text(Bytes::from_static(&[0xff, 0xfe])),
            Err(Violation::InvalidUtf8)
        );
    }
}
