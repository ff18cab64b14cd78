//! Client → server frames: `{"event": "...", "ref": ..., "data": {...}}`.
//!
//! Parsing is two steps so that an error can still carry the frame's `ref`:
//! first the envelope, then the event's `data` into its typed struct.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::{
    AttachmentInput, ClientMsgId, Emoji, Mentions, MessageContent, MessageId, MessageKind, Seq,
    ThreadId, UserId, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT,
};
use crate::error::AppError;

/// The client's `ref`, echoed verbatim on the reply. A string or a number.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameRef(pub serde_json::Value);

const MAX_REF_CHARS: usize = 256;

/// One parsed client frame. `event` is the error if the data was bad, so
/// that the reply still finds its `ref`.
#[derive(Debug)]
pub struct ClientFrame {
    pub reference: Option<FrameRef>,
    pub event: Result<ClientEvent, AppError>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    Send(SendRequest),
    Delivered(CursorUpdate),
    MarkRead(CursorUpdate),
    TypingStart { thread_id: ThreadId },
    TypingStop { thread_id: ThreadId },
    Sync(SyncRequest),
    React(ReactRequest),
    Changes(ChangesRequest),
    Ping,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    pub thread_id: ThreadId,
    pub client_msg_id: ClientMsgId,
    pub content: MessageContent,
    pub reply_to: Option<MessageId>,
    pub mentions: Mentions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReactRequest {
    pub thread_id: ThreadId,
    pub message_id: MessageId,
    pub emoji: Emoji,
    pub on: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangesRequest {
    pub thread_id: ThreadId,
    pub after_rev: Seq,
    pub limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CursorUpdate {
    pub thread_id: ThreadId,
    pub up_to_seq: Seq,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncRequest {
    pub thread_id: ThreadId,
    pub after_seq: Seq,
    pub limit: i64,
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    // Raw, so that an ill-typed event fails after the ref is known.
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(rename = "ref")]
    reference: Option<serde_json::Value>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SendData {
    thread_id: ThreadId,
    client_msg_id: ClientMsgId,
    #[serde(rename = "type")]
    kind: Option<MessageKind>,
    body: Option<String>,
    metadata: Option<AttachmentInput>,
    reply_to: Option<MessageId>,
    mentions: Option<Vec<UserId>>,
}

#[derive(Deserialize)]
struct ReactData {
    thread_id: ThreadId,
    message_id: MessageId,
    emoji: String,
    on: bool,
}

#[derive(Deserialize)]
struct ChangesData {
    thread_id: ThreadId,
    after_rev: i64,
    limit: Option<i64>,
}

#[derive(Deserialize)]
struct CursorData {
    thread_id: ThreadId,
    up_to_seq: i64,
}

#[derive(Deserialize)]
struct ThreadData {
    thread_id: ThreadId,
}

#[derive(Deserialize)]
struct SyncData {
    thread_id: ThreadId,
    after_seq: i64,
    limit: Option<i64>,
}

impl ClientFrame {
    /// Parses one text frame. Never fails: a frame that is not even an
    /// envelope comes back as a `bad_request` without a `ref`.
    pub fn parse(text: &str) -> ClientFrame {
        // serde would also take a JSON array as the envelope's fields in
        // order; the contract says a frame is one JSON object.
        if !text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            return ClientFrame {
                reference: None,
                event: Err(AppError::bad_request("frame is not a JSON event object")),
            };
        }
        let envelope: RawFrame = match serde_json::from_str(text) {
            Ok(envelope) => envelope,
            Err(e) => {
                return ClientFrame {
                    reference: None,
                    event: Err(AppError::bad_request(format!(
                        "frame is not a JSON event object: {e}"
                    ))),
                }
            }
        };
        let reference = match envelope.reference {
            None | Some(serde_json::Value::Null) => None,
            Some(value @ serde_json::Value::Number(_)) => Some(FrameRef(value)),
            Some(serde_json::Value::String(s)) if s.chars().count() <= MAX_REF_CHARS => {
                Some(FrameRef(serde_json::Value::String(s)))
            }
            Some(_) => {
                return ClientFrame {
                    reference: None,
                    event: Err(AppError::bad_request(
                        "ref must be a string of at most 256 characters or a number",
                    )),
                }
            }
        };
        let event = match envelope
            .event
            .map(|raw| serde_json::from_str::<String>(raw.get()))
        {
            None => Err(AppError::bad_request("missing field `event`")),
            Some(Err(_)) => Err(AppError::bad_request("event must be a string")),
            Some(Ok(name)) => ClientEvent::parse(&name, envelope.data),
        };
        ClientFrame { reference, event }
    }
}

impl ClientEvent {
    fn parse(name: &str, data: Option<&RawValue>) -> Result<ClientEvent, AppError> {
        match name {
            "chat:send" => {
                let d: SendData = data_of(data)?;
                Ok(ClientEvent::Send(SendRequest {
                    thread_id: d.thread_id,
                    client_msg_id: d.client_msg_id,
                    content: MessageContent::parse(d.kind, d.body, d.metadata)?,
                    reply_to: d.reply_to,
                    mentions: Mentions::parse(d.mentions.unwrap_or_default())?,
                }))
            }
            "chat:react" => {
                let d: ReactData = data_of(data)?;
                Ok(ClientEvent::React(ReactRequest {
                    thread_id: d.thread_id,
                    message_id: d.message_id,
                    emoji: Emoji::parse(d.emoji)?,
                    on: d.on,
                }))
            }
            "chat:changes" => {
                let d: ChangesData = data_of(data)?;
                Ok(ClientEvent::Changes(ChangesRequest {
                    thread_id: d.thread_id,
                    after_rev: Seq::parse("after_rev", d.after_rev)?,
                    limit: strict_page_limit(d.limit)?,
                }))
            }
            "chat:delivered" => Ok(ClientEvent::Delivered(cursor_of(data)?)),
            "chat:mark-read" => Ok(ClientEvent::MarkRead(cursor_of(data)?)),
            "chat:typing-start" => {
                let d: ThreadData = data_of(data)?;
                Ok(ClientEvent::TypingStart {
                    thread_id: d.thread_id,
                })
            }
            "chat:typing-stop" => {
                let d: ThreadData = data_of(data)?;
                Ok(ClientEvent::TypingStop {
                    thread_id: d.thread_id,
                })
            }
            "chat:sync" => {
                let d: SyncData = data_of(data)?;
                let after_seq = Seq::parse("after_seq", d.after_seq)?;
                Ok(ClientEvent::Sync(SyncRequest {
                    thread_id: d.thread_id,
                    after_seq,
                    limit: page_limit(d.limit)?,
                }))
            }
            "ping" => match data.map(RawValue::get) {
                None | Some("null") => Ok(ClientEvent::Ping),
                Some(raw)
                    if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw)
                        .is_ok() =>
                {
                    Ok(ClientEvent::Ping)
                }
                Some(_) => Err(AppError::bad_request("ping data must be an object")),
            },
            other => Err(AppError::UnknownEvent(truncate(other, 64))),
        }
    }
}

/// A page size as clients give it: absent means the default, larger than
/// the maximum is clamped, zero or negative is a mistake.
pub fn page_limit(limit: Option<i64>) -> Result<i64, AppError> {
    match limit {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(n) if n < 1 => Err(AppError::bad_request("limit must be at least 1")),
        Some(n) => Ok(n.min(MAX_PAGE_LIMIT)),
    }
}

/// A page size where the contract gives a range (1..=500): outside it is
/// a mistake, not clamped.
pub fn strict_page_limit(limit: Option<i64>) -> Result<i64, AppError> {
    match limit {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(AppError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE_LIMIT}"
        ))),
    }
}

fn cursor_of(data: Option<&RawValue>) -> Result<CursorUpdate, AppError> {
    let d: CursorData = data_of(data)?;
    Ok(CursorUpdate {
        thread_id: d.thread_id,
        up_to_seq: Seq::parse("up_to_seq", d.up_to_seq)?,
    })
}

fn data_of<T: DeserializeOwned>(data: Option<&RawValue>) -> Result<T, AppError> {
    let raw = data.ok_or_else(|| AppError::bad_request("missing field `data`"))?;
    serde_json::from_str(raw.get()).map_err(|e| AppError::bad_request(format!("invalid data: {e}")))
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ill_typed_event_keeps_the_ref() {
        let frame = ClientFrame::parse(r#"{"event": 7, "ref": "r9"}"#);
        assert_eq!(frame.reference, Some(FrameRef(serde_json::json!("r9"))));
        assert!(matches!(frame.event, Err(AppError::BadRequest(_))));
    }

    #[test]
    fn an_array_is_not_an_envelope() {
        let frame = ClientFrame::parse(r#"["ping", "r1", null]"#);
        assert!(frame.reference.is_none());
        assert!(matches!(frame.event, Err(AppError::BadRequest(_))));
    }
    use crate::error::ErrorCode;

    const T: &str = "0192f0c1-0000-7000-8000-000000000001";

    #[test]
    fn keeps_the_ref_when_data_is_bad() {
        let frame =
            ClientFrame::parse(r#"{"event":"chat:send","ref":"c-1","data":{"thread_id":"nope"}}"#);
        assert_eq!(frame.reference, Some(FrameRef(serde_json::json!("c-1"))));
        assert_eq!(frame.event.unwrap_err().code(), ErrorCode::BadRequest);
    }

    #[test]
    fn unknown_events_are_named_as_such() {
        let frame = ClientFrame::parse(r#"{"event":"chat:dance","ref":7}"#);
        assert_eq!(frame.event.unwrap_err().code(), ErrorCode::UnknownEvent);
        assert_eq!(frame.reference, Some(FrameRef(serde_json::json!(7))));
    }

    #[test]
    fn not_json_is_a_bad_request_without_ref() {
        for text in ["", "   ", "nope", "[]", "42", "{\"event\":", "null"] {
            let frame = ClientFrame::parse(text);
            assert_eq!(
                frame.event.unwrap_err().code(),
                ErrorCode::BadRequest,
                "{text:?}"
            );
        }
    }

    #[test]
    fn negative_and_huge_numbers_are_rejected() {
        let neg =
            format!(r#"{{"event":"chat:delivered","data":{{"thread_id":"{T}","up_to_seq":-1}}}}"#);
        assert!(ClientFrame::parse(&neg).event.is_err());
        let huge = format!(
            r#"{{"event":"chat:delivered","data":{{"thread_id":"{T}","up_to_seq":1e400}}}}"#
        );
        assert!(ClientFrame::parse(&huge).event.is_err());
    }

    #[test]
    fn sync_limit_defaults_and_clamps() {
        let f = format!(r#"{{"event":"chat:sync","data":{{"thread_id":"{T}","after_seq":0}}}}"#);
        assert!(matches!(
            ClientFrame::parse(&f).event,
            Ok(ClientEvent::Sync(SyncRequest { limit: 100, .. }))
        ));
        let f = format!(
            r#"{{"event":"chat:sync","data":{{"thread_id":"{T}","after_seq":0,"limit":9999}}}}"#
        );
        assert!(matches!(
            ClientFrame::parse(&f).event,
            Ok(ClientEvent::Sync(SyncRequest { limit: 500, .. }))
        ));
    }

    #[test]
    fn ping_takes_no_data_or_an_object() {
        assert!(matches!(
            ClientFrame::parse(r#"{"event":"ping"}"#).event,
            Ok(ClientEvent::Ping)
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"event":"ping","data":{}}"#).event,
            Ok(ClientEvent::Ping)
        ));
        assert!(ClientFrame::parse(r#"{"event":"ping","data":3}"#)
            .event
            .is_err());
    }
}
