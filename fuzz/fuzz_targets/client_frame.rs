//! Arbitrary text through `ClientFrame::parse`, the parser behind every
//! client event's validation. It must never panic, must answer the same
//! text the same way every time, may only refuse with `bad_request` or
//! `unknown_event`, and everything it accepts must obey the contract's
//! rules and survive a round trip: re-encoded canonically, it parses to
//! the same event and ref.

#![no_main]

use confab::domain::{MessageKind, Metadata};
use confab::error::ErrorCode;
use confab::protocol::client::{ClientEvent, ClientFrame, FrameRef};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fuzz_target!(|data: &[u8]| {
    // Every input is used: invalid UTF-8 is cut at its first bad byte
    // (the session never parses invalid UTF-8: it closes with 1007).
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).expect("valid prefix"),
    };
    check(text);
});

fn check(text: &str) {
    let frame = ClientFrame::parse(text);
    let again = ClientFrame::parse(text);
    assert_eq!(
        format!("{frame:?}"),
        format!("{again:?}"),
        "the same text parsed twice gave two answers"
    );

    if let Some(FrameRef(reference)) = &frame.reference {
        match reference {
            Value::Number(_) => {}
            Value::String(s) => assert!(s.chars().count() <= 256, "ref too long: {s:?}"),
            other => panic!("ref accepted as {other}"),
        }
        // A ref is only ever taken from a JSON object's "ref" field. (A
        // lone surrogate escape such as "\ud800" is valid JSON grammar
        // (RFC 8259 §8.2) but serde_json's Value refuses it; the envelope
        // reads `data` raw, so such a frame can carry a ref that Value
        // cannot show. Compare where Value can read the frame.)
        if let Ok(object) = serde_json::from_str::<Value>(text) {
            assert_eq!(&object["ref"], reference, "the ref is not the frame's");
        }
    }

    let event = match frame.event {
        Err(error) => {
            let code = error.code();
            assert!(
                matches!(code, ErrorCode::BadRequest | ErrorCode::UnknownEvent),
                "parsing refused {text:?} with {code:?}"
            );
            return;
        }
        Ok(event) => event,
    };
    // Only a JSON object is a frame.
    assert!(
        text.trim_start().starts_with('{'),
        "accepted a non-object: {text:?}"
    );
    if let Ok(object) = serde_json::from_str::<Value>(text) {
        assert!(object.is_object(), "accepted a non-object: {text:?}");
    }

    validate(&event);

    // Round trip through the canonical encoding.
    let (name, data) = encode(&event);
    let mut canonical = Map::new();
    canonical.insert("event".into(), Value::String(name.into()));
    if let Some(data) = data {
        canonical.insert("data".into(), data);
    }
    if let Some(FrameRef(reference)) = &frame.reference {
        canonical.insert("ref".into(), reference.clone());
    }
    let canonical = Value::Object(canonical).to_string();
    let reparsed = ClientFrame::parse(&canonical);
    match reparsed.event {
        Ok(ref back) => assert_eq!(
            back, &event,
            "{text:?} → {canonical} parsed to another event"
        ),
        Err(e) => panic!("{text:?} was accepted, its canonical form {canonical} is refused: {e}"),
    }
    assert_eq!(reparsed.reference, frame.reference, "the ref changed in {canonical}");
}

/// What holding a parsed event promises.
fn validate(event: &ClientEvent) {
    match event {
        ClientEvent::Send(send) => {
            let content = &send.content;
            if let Some(body) = content.body() {
                assert!(!body.trim().is_empty(), "blank body accepted");
                assert!(body.chars().count() <= 8000, "body over 8000 chars accepted");
            }
            match content.kind() {
                MessageKind::System => panic!("a client sent a system message"),
                MessageKind::Text => {
                    assert!(content.body().is_some(), "text without body");
                    assert!(content.metadata().is_none(), "text with metadata");
                }
                MessageKind::Image | MessageKind::File => {
                    let meta = content.metadata().expect("an attachment has metadata");
                    validate_metadata(meta);
                }
            }
        }
        ClientEvent::Delivered(c) | ClientEvent::MarkRead(c) => {
            assert!(c.up_to_seq >= 0, "negative up_to_seq accepted")
        }
        ClientEvent::Sync(s) => {
            assert!(s.after_seq >= 0, "negative after_seq accepted");
            assert!((1..=500).contains(&s.limit), "limit {} accepted", s.limit);
        }
        ClientEvent::TypingStart { .. } | ClientEvent::TypingStop { .. } | ClientEvent::Ping => {}
    }
}

fn validate_metadata(meta: &Metadata) {
    let scheme = url::Url::parse(&meta.url).map(|u| u.scheme().to_owned());
    assert!(
        matches!(scheme.as_deref(), Ok("http" | "https")),
        "url {:?} accepted ({scheme:?})",
        meta.url
    );
    assert!(meta.url.len() <= 2048, "url over 2048 bytes accepted");
    assert!(!meta.name.trim().is_empty() && meta.name.chars().count() <= 255);
    assert!(!meta.mime.trim().is_empty() && meta.mime.len() <= 255 && meta.mime.contains('/'));
    assert!(meta.size <= i64::MAX as u64, "size over 2^63-1 accepted");
}

/// The event as a well-behaved client would write it.
fn encode(event: &ClientEvent) -> (&'static str, Option<Value>) {
    match event {
        ClientEvent::Send(send) => {
            let content = &send.content;
            let mut data = json!({
                "thread_id": send.thread_id,
                "client_msg_id": send.client_msg_id,
                "type": content.kind().as_str(),
            });
            if let Some(body) = content.body() {
                data["body"] = Value::String(body.to_owned());
            }
            if let Some(meta) = content.metadata() {
                data["metadata"] = serde_json::to_value(meta).expect("metadata serializes");
            }
            ("chat:send", Some(data))
        }
        ClientEvent::Delivered(c) => (
            "chat:delivered",
            Some(json!({"thread_id": c.thread_id, "up_to_seq": c.up_to_seq})),
        ),
        ClientEvent::MarkRead(c) => (
            "chat:mark-read",
            Some(json!({"thread_id": c.thread_id, "up_to_seq": c.up_to_seq})),
        ),
        ClientEvent::TypingStart { thread_id } => {
            ("chat:typing-start", Some(json!({"thread_id": thread_id})))
        }
        ClientEvent::TypingStop { thread_id } => {
            ("chat:typing-stop", Some(json!({"thread_id": thread_id})))
        }
        ClientEvent::Sync(s) => (
            "chat:sync",
            Some(json!({"thread_id": s.thread_id, "after_seq": s.after_seq, "limit": s.limit})),
        ),
        ClientEvent::Ping => ("ping", None),
    }
}
