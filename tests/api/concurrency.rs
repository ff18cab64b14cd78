//! Many sessions sending into one thread at once: seqs stay gapless and
//! unique, and every session sees every message in seq order.

use std::collections::{BTreeSet, HashMap};

use futures_util::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{spawn_app_with, WsClient};

const USERS: usize = 16;
/// The first users have a second session each: 16 + 4 = 20 sessions.
const SECOND_SESSIONS: usize = 4;
const SENDS_PER_SESSION: usize = 50;
const TOTAL: i64 = ((USERS + SECOND_SESSIONS) * SENDS_PER_SESSION) as i64;

/// What one session saw: its acks in arrival order and the seqs (with
/// message ids) of the chat:message frames it received, in arrival order.
struct Seen {
    acked: Vec<(i64, String)>,
    received: Vec<(i64, String)>,
}

/// Sends all its messages without waiting, then reads until it has every
/// ack and every other session's message.
async fn run_session(index: usize, client: &mut WsClient, thread: Uuid) -> Seen {
    for i in 0..SENDS_PER_SESSION {
        client
            .send_text(
                json!({"event": "chat:send", "ref": format!("s{index}-{i}"),
                       "data": {"thread_id": thread, "client_msg_id": Uuid::new_v4(),
                                "body": format!("session {index} message {i}")}})
                .to_string(),
            )
            .await;
    }
    let expected_received = TOTAL as usize - SENDS_PER_SESSION;
    let mut seen = Seen {
        acked: Vec::new(),
        received: Vec::new(),
    };
    while seen.acked.len() < SENDS_PER_SESSION || seen.received.len() < expected_received {
        let frame = client.next_frame().await;
        let id_and_seq = |m: &Value| {
            (
                m["seq"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("no seq: {frame}")),
                m["id"].as_str().unwrap_or_default().to_string(),
            )
        };
        match frame["event"].as_str() {
            Some("chat:ack") => {
                assert_eq!(
                    frame["ref"],
                    format!("s{index}-{}", seen.acked.len()),
                    "session {index}: acks in send order"
                );
                seen.acked.push(id_and_seq(&frame["data"]["message"]));
            }
            Some("chat:message") => seen.received.push(id_and_seq(&frame["data"]["message"])),
            Some("chat:presence") => {}
            _ => panic!("session {index}: unexpected frame {frame}"),
        }
    }
    seen
}

#[actix_web::test]
async fn twenty_sessions_sending_at_once_get_gapless_seqs_and_see_everything_in_order() {
    let app = spawn_app_with(|s| {
        s.websocket.rate_limit_per_second = 100_000.0;
        s.websocket.rate_limit_burst = 100_000;
    })
    .await;
    let users = app.users(USERS).await;
    let members: Vec<_> = users.iter().collect();
    let thread = app.group(&members).await;

    let mut clients = Vec::new();
    for user in users.iter().chain(users.iter().take(SECOND_SESSIONS)) {
        clients.push(app.connect(user).await);
    }
    let seen: Vec<Seen> = join_all(
        clients
            .iter_mut()
            .enumerate()
            .map(|(index, client)| run_session(index, client, thread)),
    )
    .await;

    // Nothing more arrives: no message twice.
    join_all(
        clients
            .iter_mut()
            .map(|client| client.assert_no_event("chat:message")),
    )
    .await;

    let mut db = app.db().await;
    assert_eq!(db.seqs(thread).await, (1..=TOTAL).collect::<Vec<_>>());
    assert_eq!(
        db.count(&format!(
            "SELECT last_seq FROM threads WHERE id = '{thread}'"
        ))
        .await,
        TOTAL
    );

    // Every message has one id, whoever reports its seq.
    let mut id_of_seq: HashMap<i64, String> = HashMap::new();
    for s in &seen {
        for (seq, id) in &s.acked {
            assert!(
                id_of_seq.insert(*seq, id.clone()).is_none(),
                "seq {seq} was acked twice"
            );
        }
    }
    assert_eq!(id_of_seq.len(), TOTAL as usize);

    for (index, s) in seen.iter().enumerate() {
        assert!(
            s.acked.windows(2).all(|w| w[0].0 < w[1].0),
            "session {index}: its own acks carry increasing seqs"
        );
        assert!(
            s.received.windows(2).all(|w| w[0].0 < w[1].0),
            "session {index}: received out of seq order: {:?}",
            s.received.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        for (seq, id) in &s.received {
            assert_eq!(
                id_of_seq.get(seq),
                Some(id),
                "session {index}: seq {seq} carries another message"
            );
        }
        let all: BTreeSet<i64> = s
            .acked
            .iter()
            .chain(s.received.iter())
            .map(|(seq, _)| *seq)
            .collect();
        assert_eq!(
            s.acked.len() + s.received.len(),
            TOTAL as usize,
            "session {index}: a message was seen twice"
        );
        assert_eq!(all, (1..=TOTAL).collect::<BTreeSet<_>>(), "session {index}");
    }
}
