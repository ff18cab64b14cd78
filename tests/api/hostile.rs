//! Hostile input, in bulk: over ten thousand bad frames from eight sessions
//! at once. Each is answered by exactly one chat:error (carrying its ref
//! when it had a usable one), none of them stores or changes anything, the
//! server stays up, and a member of the same threads who reads everything
//! hears nothing of it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::support::ws::{Ending, ARRIVAL, SILENCE};
use crate::support::{spawn_app, WsClient};

/// Sessions sending hostile frames at the same time.
const SESSIONS: usize = 8;
/// Times each session goes through the whole catalogue.
const ROUNDS: usize = 13;
/// Valid-looking requests into a thread the sender is not in, sent back to
/// back to run a session's token bucket dry.
const FLOOD: usize = 300;
/// The default token bucket (config/default.toml), which this test keeps.
const DEFAULT_BURST: f64 = 40.0;
const DEFAULT_PER_SECOND: f64 = 20.0;

// ---- the catalogue --------------------------------------------------------------

/// Whether a reply must carry the frame's ref.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Echo {
    /// The frame is a JSON object with a valid ref: the reply carries it.
    Must,
    /// No usable ref (not JSON, not an object, a ref of the wrong type):
    /// the reply carries none.
    None,
    /// The object names its ref twice; JSON leaves duplicate names
    /// undefined, so the reply may carry the ref or none, but not another.
    Either,
}

#[derive(Clone)]
enum Payload {
    Text(String),
    Binary(Vec<u8>),
    /// One message in several frames: (opcode of the first, parts).
    Fragments(Data, Vec<Vec<u8>>),
}

/// A kind of hostile frame. In `Text` payloads `@REF@` stands for the ref
/// (JSON-encoded), `@T@` for the thread, `@SHORT@` for its id minus the
/// last digit, `@U@` for a thread the sender is not in and `@C@` for a
/// fresh uuid.
#[derive(Clone)]
struct Template {
    what: &'static str,
    payload: Payload,
    echo: Echo,
    code: &'static str,
}

fn t(what: &'static str, raw: impl Into<String>, code: &'static str) -> Template {
    let raw = raw.into();
    let echo = if raw.contains("@REF@") {
        Echo::Must
    } else {
        Echo::None
    };
    Template {
        what,
        payload: Payload::Text(raw),
        echo,
        code,
    }
}

fn send_data(fields: &str) -> String {
    format!(r#"{{"event":"chat:send","ref":@REF@,"data":{{{fields}}}}}"#)
}

fn event_with(event: &str, data: &str) -> String {
    format!(r#"{{"event":"{event}","ref":@REF@,"data":{data}}}"#)
}

fn catalogue() -> Vec<Template> {
    const BAD: &str = "bad_request";
    const UNKNOWN: &str = "unknown_event";
    let ids = r#""thread_id":"@T@","client_msg_id":"@C@""#;
    let deep_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(5_000), "}".repeat(5_000));
    let image =
        |metadata: &str| send_data(&format!(r#"{ids},"type":"image","metadata":{metadata}"#));
    vec![
        // Bodies: empty, blank, one past the limit, of the wrong type.
        t("empty body", send_data(&format!(r#"{ids},"body":"""#)), BAD),
        t(
            "whitespace body",
            send_data(&format!(r#"{ids},"body":" \t\n\r\u3000\u00a0 ""#)),
            BAD,
        ),
        t(
            "8001 ascii characters",
            send_data(&format!(r#"{ids},"body":"{}""#, "x".repeat(8001))),
            BAD,
        ),
        t(
            "8001 two-byte characters",
            send_data(&format!(r#"{ids},"body":"{}""#, "é".repeat(8001))),
            BAD,
        ),
        t("body a number", send_data(&format!(r#"{ids},"body":42"#)), BAD),
        t("body null", send_data(&format!(r#"{ids},"body":null"#)), BAD),
        t("body an array", send_data(&format!(r#"{ids},"body":["hi"]"#)), BAD),
        t("body an object", send_data(&format!(r#"{ids},"body":{{"text":"hi"}}"#)), BAD),
        t("body true", send_data(&format!(r#"{ids},"body":true"#)), BAD),
        // Ids.
        t(
            "thread_id not a uuid",
            send_data(r#""thread_id":"not-a-uuid","client_msg_id":"@C@","body":"x""#),
            BAD,
        ),
        t(
            "thread_id one digit short",
            send_data(r#""thread_id":"@SHORT@","client_msg_id":"@C@","body":"x""#),
            BAD,
        ),
        t(
            "thread_id with a non-hex digit",
            send_data(r#""thread_id":"zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz","client_msg_id":"@C@","body":"x""#),
            BAD,
        ),
        t(
            "thread_id empty",
            send_data(r#""thread_id":"","client_msg_id":"@C@","body":"x""#),
            BAD,
        ),
        t(
            "thread_id a number",
            send_data(r#""thread_id":12345,"client_msg_id":"@C@","body":"x""#),
            BAD,
        ),
        t(
            "thread_id null",
            send_data(r#""thread_id":null,"client_msg_id":"@C@","body":"x""#),
            BAD,
        ),
        t(
            "client_msg_id not a uuid",
            send_data(r#""thread_id":"@T@","client_msg_id":"1234","body":"x""#),
            BAD,
        ),
        t(
            "client_msg_id missing",
            send_data(r#""thread_id":"@T@","body":"x""#),
            BAD,
        ),
        t(
            "client_msg_id an array",
            send_data(r#""thread_id":"@T@","client_msg_id":["@C@"],"body":"x""#),
            BAD,
        ),
        // Types and metadata.
        t("type system", send_data(&format!(r#"{ids},"type":"system","body":"x""#)), BAD),
        t("type video", send_data(&format!(r#"{ids},"type":"video","body":"x""#)), BAD),
        t("type a number", send_data(&format!(r#"{ids},"type":7,"body":"x""#)), BAD),
        t("image without metadata", send_data(&format!(r#"{ids},"type":"image""#)), BAD),
        t(
            "metadata of nulls",
            image(r#"{"url":null,"name":null,"size":null,"mime":null}"#),
            BAD,
        ),
        t(
            "metadata size past i64",
            image(r#"{"url":"https://x.example.com/a.png","name":"a.png","size":9223372036854775808,"mime":"image/png"}"#),
            BAD,
        ),
        t(
            "metadata size negative",
            image(r#"{"url":"https://x.example.com/a.png","name":"a.png","size":-1,"mime":"image/png"}"#),
            BAD,
        ),
        t(
            "metadata size 1e400",
            image(r#"{"url":"https://x.example.com/a.png","name":"a.png","size":1e400,"mime":"image/png"}"#),
            BAD,
        ),
        t(
            "metadata javascript url",
            image(r#"{"url":"javascript:alert(1)","name":"a.png","size":1,"mime":"image/png"}"#),
            BAD,
        ),
        t(
            "metadata with an extra field",
            image(r#"{"url":"https://x.example.com/a.png","name":"a.png","size":1,"mime":"image/png","admin":true}"#),
            BAD,
        ),
        // Huge, negative and ill-typed numbers.
        t(
            "up_to_seq past i64",
            event_with("chat:delivered", r#"{"thread_id":"@T@","up_to_seq":9223372036854775808}"#),
            BAD,
        ),
        t(
            "up_to_seq 1e400",
            event_with("chat:delivered", r#"{"thread_id":"@T@","up_to_seq":1e400}"#),
            BAD,
        ),
        t(
            "up_to_seq -1",
            event_with("chat:delivered", r#"{"thread_id":"@T@","up_to_seq":-1}"#),
            BAD,
        ),
        t(
            "up_to_seq below i64",
            event_with("chat:mark-read", r#"{"thread_id":"@T@","up_to_seq":-9223372036854775809}"#),
            BAD,
        ),
        t(
            "mark-read up_to_seq 1e400",
            event_with("chat:mark-read", r#"{"thread_id":"@T@","up_to_seq":1e400}"#),
            BAD,
        ),
        t(
            "mark-read up_to_seq -1",
            event_with("chat:mark-read", r#"{"thread_id":"@T@","up_to_seq":-1}"#),
            BAD,
        ),
        t(
            "up_to_seq a string",
            event_with("chat:mark-read", r#"{"thread_id":"@T@","up_to_seq":"3"}"#),
            BAD,
        ),
        t(
            "up_to_seq fractional",
            event_with("chat:delivered", r#"{"thread_id":"@T@","up_to_seq":1.5}"#),
            BAD,
        ),
        t(
            "up_to_seq null",
            event_with("chat:delivered", r#"{"thread_id":"@T@","up_to_seq":null}"#),
            BAD,
        ),
        t(
            "after_seq -1",
            event_with("chat:sync", r#"{"thread_id":"@T@","after_seq":-1}"#),
            BAD,
        ),
        t(
            "after_seq a string",
            event_with("chat:sync", r#"{"thread_id":"@T@","after_seq":"0"}"#),
            BAD,
        ),
        t(
            "limit 0",
            event_with("chat:sync", r#"{"thread_id":"@T@","after_seq":0,"limit":0}"#),
            BAD,
        ),
        t(
            "limit -3",
            event_with("chat:sync", r#"{"thread_id":"@T@","after_seq":0,"limit":-3}"#),
            BAD,
        ),
        t(
            "limit 1e400",
            event_with("chat:sync", r#"{"thread_id":"@T@","after_seq":0,"limit":1e400}"#),
            BAD,
        ),
        t(
            "limit past u64",
            event_with("chat:sync", r#"{"thread_id":"@T@","after_seq":0,"limit":99999999999999999999}"#),
            BAD,
        ),
        t(
            "typing thread_id a number",
            event_with("chat:typing-start", r#"{"thread_id":7}"#),
            BAD,
        ),
        t(
            "typing thread_id null",
            event_with("chat:typing-stop", r#"{"thread_id":null}"#),
            BAD,
        ),
        t("typing data an array", event_with("chat:typing-start", "[]"), BAD),
        // Deep nesting: serde_json's recursion limit, never the stack.
        t(
            "10,000 nested arrays as metadata",
            image(&deep_arrays),
            BAD,
        ),
        t(
            "10,000 nested arrays inside ping data",
            event_with("ping", &format!(r#"{{"x":{deep_arrays}}}"#)),
            BAD,
        ),
        t("10,000 nested arrays as sync data", event_with("chat:sync", &deep_arrays), BAD),
        t(
            "5,000 nested objects as up_to_seq",
            event_with(
                "chat:delivered",
                &format!(r#"{{"thread_id":"@T@","up_to_seq":{deep_objects}}}"#),
            ),
            BAD,
        ),
        t(
            "deep unknown field beside bad data",
            format!(
                r#"{{"event":"chat:send","ref":@REF@,"junk":{deep_arrays},"data":{{{ids},"body":""}}}}"#
            ),
            BAD,
        ),
        // Duplicate keys in data: either copy would make a valid request.
        t(
            "thread_id twice",
            send_data(r#""thread_id":"@T@","thread_id":"@T@","client_msg_id":"@C@","body":"dup""#),
            BAD,
        ),
        t(
            "body twice",
            send_data(&format!(r#"{ids},"body":"one","body":"two""#)),
            BAD,
        ),
        t(
            "up_to_seq twice",
            event_with("chat:delivered", r#"{"thread_id":"@T@","up_to_seq":1,"up_to_seq":2}"#),
            BAD,
        ),
        // Nulls and missing parts.
        t(
            "nulls everywhere",
            send_data(r#""thread_id":null,"client_msg_id":null,"type":null,"body":null,"metadata":null"#),
            BAD,
        ),
        t("send data null", event_with("chat:send", "null"), BAD),
        t("send data a string", event_with("chat:send", r#""@T@""#), BAD),
        t("delivered data a number", event_with("chat:delivered", "5"), BAD),
        t("typing without data", r#"{"event":"chat:typing-start","ref":@REF@}"#, BAD),
        t("event null", r#"{"event":null,"ref":@REF@,"data":{}}"#, BAD),
        t("event missing", r#"{"ref":@REF@,"data":{}}"#, BAD),
        t("ping data a number", event_with("ping", "3"), BAD),
        t("ping data an array", event_with("ping", "[]"), BAD),
        // An event name of the wrong type still leaves the ref readable.
        t("event a number", r#"{"event":5,"ref":@REF@,"data":{}}"#, BAD),
        t("event an object", r#"{"event":{"name":"chat:send"},"ref":@REF@}"#, BAD),
        t("event an array", r#"{"event":["chat:send"],"ref":@REF@}"#, BAD),
        t("event true", r#"{"event":true,"ref":@REF@}"#, BAD),
        // Unknown events.
        t("chat:dance", event_with("chat:dance", "{}"), UNKNOWN),
        t("CHAT:SEND", event_with("CHAT:SEND", "{}"), UNKNOWN),
        t("chat:send with a NUL", event_with("chat:send\\u0000", "{}"), UNKNOWN),
        t("a server event", event_with("chat:message", "{}"), UNKNOWN),
        t("another server event", event_with("chat:ack", "{}"), UNKNOWN),
        t("__proto__", event_with("__proto__", "{}"), UNKNOWN),
        t("empty event", event_with("", "{}"), UNKNOWN),
        t("long event name", event_with(&"x".repeat(2000), "{}"), UNKNOWN),
        // No usable ref: not JSON, not an object, a ref of the wrong type.
        t("not json", "not json", BAD),
        t("empty frame", "", BAD),
        t("spaces", "   ", BAD),
        t("whitespace", "\n\t\r ", BAD),
        t("open brace", "{", BAD),
        t("close brace", "}", BAD),
        t("empty array", "[]", BAD),
        t("an array of an envelope", r#"[{"event":"ping","ref":"a"}]"#, BAD),
        t("a number", "42", BAD),
        t("a huge number", "1e400", BAD),
        t("null", "null", BAD),
        t("true", "true", BAD),
        t("a string", r#""chat:send""#, BAD),
        t("trailing garbage", r#"{"event":"ping","ref":"g"} x"#, BAD),
        t("trailing comma", r#"{"event":"ping","ref":"g",}"#, BAD),
        t("single quotes", "{'event':'ping','ref':'g'}", BAD),
        t("unterminated string", r#"{"event":"ping","ref":"g}"#, BAD),
        t(
            "NaN",
            r#"{"event":"chat:delivered","ref":"g","data":{"thread_id":"@T@","up_to_seq":NaN}}"#,
            BAD,
        ),
        t("ref an object", r#"{"event":"ping","ref":{"id":1}}"#, BAD),
        t("ref an array", r#"{"event":"ping","ref":["r"]}"#, BAD),
        t("ref true", r#"{"event":"ping","ref":true}"#, BAD),
        t("ref 1e400", r#"{"event":"ping","ref":1e400}"#, BAD),
        t(
            "ref of 257 characters",
            format!(r#"{{"event":"ping","ref":"{}"}}"#, "r".repeat(257)),
            BAD,
        ),
        t(
            "ref 10,000 arrays deep",
            format!(r#"{{"event":"ping","ref":{deep_arrays}}}"#),
            BAD,
        ),
        t("ref null", r#"{"event":"chat:send","ref":null,"data":null}"#, BAD),
        t("no ref, unknown event", r#"{"event":"chat:dance","data":{}}"#, UNKNOWN),
        t("no ref, empty send", r#"{"event":"chat:send","data":{}}"#, BAD),
        t("empty object", "{}", BAD),
        // Duplicate names at the top level.
        Template {
            what: "ref twice",
            payload: Payload::Text(
                r#"{"event":"chat:sync","ref":@REF@,"ref":@REF@,"data":{"thread_id":"x","after_seq":0}}"#.into(),
            ),
            echo: Echo::Either,
            code: BAD,
        },
        Template {
            what: "event twice",
            payload: Payload::Text(
                r#"{"event":"chat:sync","event":"chat:sync","ref":@REF@,"data":{"thread_id":"x","after_seq":0}}"#.into(),
            ),
            echo: Echo::Either,
            code: BAD,
        },
        // Binary frames, whatever they hold.
        Template {
            what: "a valid send in a binary frame",
            payload: Payload::Binary(
                send_data(&format!(r#"{ids},"body":"in binary""#)).into_bytes(),
            ),
            echo: Echo::None,
            code: BAD,
        },
        Template {
            what: "random bytes in a binary frame",
            payload: Payload::Binary(vec![0xff, 0x00, 0xfe, 0x7b, 0x22, 0x80]),
            echo: Echo::None,
            code: BAD,
        },
        Template {
            what: "an empty binary frame",
            payload: Payload::Binary(Vec::new()),
            echo: Echo::None,
            code: BAD,
        },
        Template {
            what: "a fragmented binary message",
            payload: Payload::Fragments(Data::Binary, vec![b"{\"ev".to_vec(), b"ent\":\"ping\"}".to_vec()]),
            echo: Echo::None,
            code: BAD,
        },
        Template {
            what: "a fragmented text message that is not JSON",
            payload: Payload::Fragments(
                Data::Text,
                vec![b"not ".to_vec(), b"json ".to_vec(), b"at all".to_vec()],
            ),
            echo: Echo::None,
            code: BAD,
        },
    ]
}

/// The flood: alternately a send and a typing-start into a thread the
/// sender is not in. Each passes validation, so each takes a token.
fn flood_frame(i: usize) -> String {
    if i.is_multiple_of(2) {
        send_data(r#""thread_id":"@U@","client_msg_id":"@C@","body":"let me in""#)
    } else {
        event_with("chat:typing-start", r#"{"thread_id":"@U@"}"#)
    }
}

// ---- one session's run ------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    Code(&'static str),
    /// A flood frame: not_member while the bucket has tokens, then rate_limited.
    Flood,
}

struct Sent {
    what: &'static str,
    message: Vec<Message>,
    reference: Option<Value>,
    echo: Echo,
    expect: Expect,
}

/// What came back to one session.
#[derive(Default)]
struct Replies {
    by_ref: HashMap<String, Vec<Value>>,
    without_ref: Vec<Value>,
    /// When the last reply to a flood frame arrived.
    last_flood_reply: Option<Instant>,
}

fn fill(raw: &str, reference: &Value, thread: Uuid, short: &str, foreign: Uuid) -> String {
    raw.replace("@REF@", &reference.to_string())
        .replace("@SHORT@", short)
        .replace("@T@", &thread.to_string())
        .replace("@U@", &foreign.to_string())
        .replace("@C@", &Uuid::new_v4().to_string())
}

/// The frames session `s` sends: the flood first (while the bucket is
/// fresh, so the count of frames let through is tightly bounded), then
/// `ROUNDS` times the catalogue.
fn frames_for(s: usize, catalogue: &[Template], thread: Uuid, foreign: Uuid) -> Vec<Sent> {
    let thread_text = thread.to_string();
    let short = &thread_text[..thread_text.len() - 1];
    let mut n = 0u64;
    let mut next_ref = |numeric: bool| {
        n += 1;
        if numeric {
            json!(1_000_000_000_000u64 + n)
        } else {
            json!(format!("s{s}-{n}"))
        }
    };
    let mut frames = Vec::new();
    for i in 0..FLOOD {
        let reference = next_ref(false);
        frames.push(Sent {
            what: "flood",
            message: vec![Message::Text(fill(
                &flood_frame(i),
                &reference,
                thread,
                short,
                foreign,
            ))],
            reference: Some(reference),
            echo: Echo::Must,
            expect: Expect::Flood,
        });
    }
    for round in 0..ROUNDS {
        for template in catalogue {
            let reference = next_ref(round % 3 == 1);
            let message = match &template.payload {
                Payload::Text(raw) => {
                    vec![Message::Text(fill(raw, &reference, thread, short, foreign))]
                }
                Payload::Binary(bytes) => vec![Message::Binary(bytes.clone())],
                Payload::Fragments(first, parts) => parts
                    .iter()
                    .enumerate()
                    .map(|(i, part)| {
                        let opcode = if i == 0 { *first } else { Data::Continue };
                        Message::Frame(Frame::message(
                            part.clone(),
                            OpCode::Data(opcode),
                            i + 1 == parts.len(),
                        ))
                    })
                    .collect(),
            };
            frames.push(Sent {
                what: template.what,
                message,
                reference: (template.echo != Echo::None).then_some(reference),
                echo: template.echo,
                expect: Expect::Code(template.code),
            });
        }
    }
    frames
}

/// Sends every frame while reading the replies, then an app-level ping;
/// reads until the pong and every reply that must come have arrived, and
/// listens a while longer for replies that must not.
async fn run_session(client: &mut WsClient, frames: &[Sent]) -> Replies {
    let must: HashSet<String> = frames
        .iter()
        .filter(|f| f.echo == Echo::Must)
        .filter_map(|f| f.reference.as_ref().map(Value::to_string))
        .collect();
    let flood_refs: HashSet<String> = frames
        .iter()
        .filter(|f| f.expect == Expect::Flood)
        .filter_map(|f| f.reference.as_ref().map(Value::to_string))
        .collect();
    let end_ref = json!("end-of-hostile-frames");
    let (mut sink, mut stream) = client.socket().split();

    let sender = async {
        for frame in frames {
            for message in &frame.message {
                sink.feed(message.clone())
                    .await
                    .expect("send a hostile frame");
            }
        }
        sink.send(Message::Text(
            json!({"event": "ping", "ref": end_ref}).to_string(),
        ))
        .await
        .expect("send the closing ping");
    };
    let receiver = async {
        let mut replies = Replies::default();
        let mut pong = false;
        let mut missing = must.len();
        // Until the pong: every frame before it has been read. Replies
        // still missing then get ARRIVAL more; check_session says which.
        let mut deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut listen_until: Option<tokio::time::Instant> = None;
        loop {
            let until = listen_until.unwrap_or(deadline);
            let next = match timeout(
                until.saturating_duration_since(tokio::time::Instant::now()),
                stream.next(),
            )
            .await
            {
                Err(_) if pong => break,
                Err(_) => panic!("no pong within 60 s; {missing} replies with a ref missing"),
                Ok(next) => next,
            };
            let frame: Value = match next {
                Some(Ok(Message::Text(text))) => serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("server sent non-JSON {text}: {e}")),
                Some(Ok(Message::Close(close))) => {
                    panic!("the server closed a hostile session: {close:?}")
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("a hostile session failed: {e}"),
                None => panic!("a hostile session ended"),
            };
            match frame["event"].as_str() {
                Some("pong") if frame["ref"] == end_ref => {
                    pong = true;
                    deadline = tokio::time::Instant::now() + ARRIVAL;
                }
                Some("chat:error") => match frame.get("ref") {
                    Some(reference) => {
                        let key = reference.to_string();
                        if flood_refs.contains(&key) {
                            replies.last_flood_reply = Some(Instant::now());
                        }
                        let seen = replies.by_ref.entry(key.clone()).or_default();
                        seen.push(frame.clone());
                        if seen.len() == 1 && must.contains(&key) {
                            missing -= 1;
                        }
                    }
                    None => replies.without_ref.push(frame),
                },
                // Others coming online in the same thread is news, not a reply.
                Some("chat:presence") => {}
                _ => panic!("a hostile frame got an answer other than chat:error: {frame}"),
            }
            if pong && missing == 0 && listen_until.is_none() {
                listen_until = Some(tokio::time::Instant::now() + SILENCE);
            }
        }
        replies
    };
    let ((), replies) = tokio::join!(sender, receiver);
    replies
}

/// Checks one session's replies against what it sent; returns the count of
/// flood frames let through (answered not_member rather than rate_limited).
fn check_session(s: usize, frames: &[Sent], replies: &Replies, started: Instant) -> usize {
    let mut expected_without_ref: HashMap<&str, usize> = HashMap::new();
    let mut sent_refs = Vec::new();
    let mut let_through = 0;
    let mut limited = 0;
    let mut wrong: HashMap<&str, usize> = HashMap::new();
    for frame in frames {
        let key = frame.reference.as_ref().map(Value::to_string);
        let got = key
            .as_ref()
            .and_then(|k| replies.by_ref.get(k))
            .cloned()
            .unwrap_or_default();
        if let Some(key) = &key {
            sent_refs.push(key.clone());
        }
        let code = match frame.expect {
            Expect::Code(code) => code,
            Expect::Flood => "",
        };
        let fits = match frame.echo {
            Echo::Must => got.len() == 1,
            Echo::Either => got.len() <= 1,
            Echo::None => true,
        };
        if !fits {
            // Gathered, so a failure names every kind of frame that failed.
            *wrong.entry(frame.what).or_default() += 1;
            continue;
        }
        if got.is_empty() {
            *expected_without_ref.entry(code).or_default() += 1;
        }
        for reply in &got {
            let message = reply["data"]["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "an error carries a message: {reply}");
            let got_code = reply["data"]["code"].as_str().unwrap_or_default();
            match frame.expect {
                Expect::Code(code) => {
                    assert_eq!(got_code, code, "session {s}: {} -> {reply}", frame.what)
                }
                Expect::Flood => match got_code {
                    "not_member" => let_through += 1,
                    "rate_limited" => limited += 1,
                    other => panic!("session {s}: a flood frame got {other}: {reply}"),
                },
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "session {s}: frames that did not get exactly one chat:error with their ref \
         (kind: how many): {wrong:?}; errors without a ref: {:?}",
        replies
            .without_ref
            .iter()
            .map(|r| r["data"]["message"].as_str().unwrap_or_default())
            .collect::<HashSet<_>>()
    );
    for key in replies.by_ref.keys() {
        assert!(
            sent_refs.contains(key),
            "session {s}: a reply carries ref {key}, which no frame had"
        );
    }
    let mut got_without_ref: HashMap<&str, usize> = HashMap::new();
    for reply in &replies.without_ref {
        let code = reply["data"]["code"].as_str().unwrap_or("<none>");
        let code = expected_without_ref
            .keys()
            .find(|c| **c == code)
            .copied()
            .unwrap_or_else(|| panic!("session {s}: an unexpected error without ref: {reply}"));
        *got_without_ref.entry(code).or_default() += 1;
    }
    assert_eq!(
        got_without_ref, expected_without_ref,
        "session {s}: errors without a ref, by code"
    );

    // The flood: the bucket lets through at most its burst plus what it
    // refilled since the session began, and refuses the rest.
    assert!(limited > 0, "session {s}: the flood was never rate_limited");
    let flood_secs = replies
        .last_flood_reply
        .map(|at| at.duration_since(started).as_secs_f64())
        .unwrap_or_default();
    let allowed = DEFAULT_BURST + DEFAULT_PER_SECOND * flood_secs + 1.0;
    assert!(
        (let_through as f64) <= allowed,
        "session {s}: {let_through} flood frames got through in {flood_secs:.2} s; \
         the bucket allows at most {allowed:.0}"
    );
    let_through
}

// ---- the database, all of it -------------------------------------------------------

// ---- the test ----------------------------------------------------------------------

#[actix_web::test]
async fn ten_thousand_hostile_frames_each_get_one_error_and_change_nothing_anyone_can_see() {
    // The default rate limit: only the flood takes tokens (every other
    // frame fails validation first), and the flood is the point.
    let app = spawn_app().await;
    let company = app.company().await;
    let observer = app.named_user(company, "observer").await;
    let outsider = app.named_user(company, "outsider").await;
    let mut hostile_users = Vec::new();
    for i in 0..SESSIONS {
        hostile_users.push(app.named_user(company, &format!("hostile{i}")).await);
    }
    let mut members: Vec<_> = hostile_users.iter().collect();
    members.push(&observer);
    let thread = app.group(&members).await;
    let foreign = app.group(&[&observer, &outsider]).await;

    // History and cursors worth protecting, left by a session now closed.
    let mut seeder = app.connect(&observer).await;
    for i in 0..3 {
        seeder.send_message(thread, &format!("before {i}")).await;
    }
    seeder.send_message(foreign, "private").await;
    let read = seeder
        .request(
            "chat:mark-read",
            json!({"thread_id": thread, "up_to_seq": 2}),
        )
        .await;
    assert_eq!(read["event"], "chat:ack", "{read}");
    seeder.close().await;

    let catalogue = catalogue();
    let mut sessions = Vec::new();
    let mut plans = Vec::new();
    let started = Instant::now();
    for (s, user) in hostile_users.iter().enumerate() {
        sessions.push(app.connect(user).await);
        plans.push(frames_for(s, &catalogue, thread, foreign));
    }
    // Connected last, so no presence of the others reaches it: from here
    // on, anything it receives is a leak.
    let mut observer_ws = app.connect(&observer).await;
    // A second session of a hostile user, for the oversize frame: its
    // owner stays online, so closing it is no news to anyone.
    let mut oversize = app.connect(&hostile_users[0]).await;
    let before = crate::support::db::database_state(&app.db_url).await;

    let frames_sent: usize = plans.iter().map(Vec::len).sum::<usize>() + 1;
    assert!(frames_sent >= 10_000, "only {frames_sent} hostile frames");
    let phase = Instant::now();
    let runs = sessions
        .iter_mut()
        .zip(&plans)
        .map(|(client, frames)| run_session(client, frames));
    let too_big = async {
        let max = app.settings.websocket.max_frame_bytes;
        let mut text = json!({"event": "chat:send", "ref": "too-big", "data": {
            "thread_id": thread, "client_msg_id": Uuid::new_v4(), "body": ""}})
        .to_string();
        let pad = "x".repeat(max + 1 - text.len());
        text = text.replacen("\"body\":\"\"", &format!("\"body\":\"{pad}\""), 1);
        assert_eq!(text.len(), max + 1);
        oversize.send_text(text).await;
        oversize.ending().await
    };
    let (all_replies, oversize_end) = tokio::join!(futures_util::future::join_all(runs), too_big);
    let took = phase.elapsed();
    assert_eq!(
        oversize_end,
        Ending::Closed(Some(1009)),
        "a frame one byte over max_frame_bytes closes with 1009"
    );

    let mut let_through = 0;
    for (s, (frames, replies)) in plans.iter().zip(&all_replies).enumerate() {
        let_through += check_session(s, frames, replies, started);
    }

    // Nobody noticed, nothing changed.
    observer_ws.assert_silent().await;
    assert_eq!(
        crate::support::db::database_state(&app.db_url).await,
        before,
        "no hostile frame may create or change a row"
    );

    // The server is up, every hostile session still works, and a normal
    // message still reaches the observer.
    let health = app
        .request(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(health.status, 200, "{health:?}");
    for client in &mut sessions {
        let pong = client.request("ping", json!({})).await;
        assert_eq!(pong["event"], "pong", "{pong}");
    }
    let message = sessions[1].send_message(thread, "still here").await;
    assert_eq!(message["seq"], 4);
    let got = observer_ws.next_event("chat:message").await;
    assert_eq!(got["message"], message);
    observer_ws.assert_silent().await;

    println!(
        "hostile frames: {frames_sent} over {} connections in {:.2} s \
         ({} catalogue kinds x {ROUNDS} rounds + {FLOOD} flood per session, \
         {let_through} flood frames within the rate limit)",
        SESSIONS + 1,
        took.as_secs_f64(),
        catalogue.len(),
    );
}
