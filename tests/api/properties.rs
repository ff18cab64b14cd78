//! Order and state as properties: proptest generates random interleavings
//! of sends, resends, receipts, typing, membership changes, disconnects and
//! reconnects across the users and devices of one company, while a user of
//! another company is connected beside them; after each run the database,
//! every session's stream of frames and every ack are checked against the
//! contract's promises.
//!
//! One server serves every case; each case gets its own companies, users
//! and threads on it, so a case costs about half a second. proptest's runner is
//! synchronous, so the cases are drawn from its strategies up front (a
//! `TestRunner` seeded from `CONFAB_PROPTEST_SEED`, or at random) and run
//! one by one on the test's runtime. A failing case is shrunk with its
//! value tree for at most `SHRINK_BUDGET` (or
//! `CONFAB_PROPTEST_SHRINK_SECS`), then reported with the seed, the
//! ops of the original and of the smallest failing case, and a trace of
//! what each op did. Every op waits for its own reply, and membership
//! changes for their `chat:thread-joined`/`chat:thread-left` on the user's
//! sessions, so a run is deterministic given its ops.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::{FutureExt, StreamExt};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::support::ws::ARRIVAL;
use crate::support::{spawn_app_with, uuid, TestApp, TestUser, WsClient};

/// Cases per test when `PROPTEST_CASES` does not say otherwise.
const CASES: u32 = 12;
/// How long a failing case may be shrunk before it is reported, unless
/// `CONFAB_PROPTEST_SHRINK_SECS` says otherwise (0: report it as drawn).
const SHRINK_BUDGET: Duration = Duration::from_secs(90);

// ---- the generated input ------------------------------------------------

/// Indexes are taken modulo what exists when the op runs, so every op
/// stays meaningful when shrinking removes others.
#[derive(Debug, Clone)]
enum Op {
    /// chat:send with a new client_msg_id, to the `thread`-th of the
    /// user's threads, or with `anywhere` of all threads (refused where
    /// the user is not a member).
    Send {
        user: u8,
        device: u8,
        thread: u8,
        anywhere: bool,
    },
    /// chat:send with a client_msg_id used before (acked or refused), from
    /// the user who used it or, with `as_other_user`, from `user`.
    Resend {
        user: u8,
        device: u8,
        pick: u8,
        as_other_user: bool,
    },
    Delivered {
        user: u8,
        device: u8,
        thread: u8,
        to: SeqPick,
    },
    MarkRead {
        user: u8,
        device: u8,
        thread: u8,
        to: SeqPick,
    },
    Typing {
        user: u8,
        device: u8,
        thread: u8,
        on: bool,
    },
    /// POST /admin/threads/{id}/members.
    AddMember {
        user: u8,
        thread: u8,
    },
    /// DELETE /admin/threads/{id}/members/{user}.
    RemoveMember {
        user: u8,
        thread: u8,
    },
    Disconnect {
        user: u8,
        device: u8,
    },
    /// Connects a disconnected device (a connected one drops and comes
    /// back), then chat:syncs each thread from the last seq it saw.
    Reconnect {
        user: u8,
        device: u8,
        sync_limit: Option<u8>,
    },
    /// The other company's user reaches for one of the threads.
    Intrude {
        thread: u8,
        how: Intrusion,
    },
}

/// An `up_to_seq` relative to the cursor and the thread's last seq.
#[derive(Debug, Clone, Copy)]
enum SeqPick {
    Zero,
    BelowCursor(u8),
    AtCursor,
    Between(u8),
    Last,
    Beyond(u8),
    Max,
}

#[derive(Debug, Clone, Copy)]
enum Intrusion {
    Send,
    /// chat:send with a client_msg_id a member used.
    StolenClientMsgId(u8),
    Delivered,
    MarkRead,
    Typing,
    Sync,
    HttpHistory,
    HttpJoin,
}

#[derive(Debug, Clone)]
struct Case {
    /// Devices per user of the company: 3 or 4 users, 1 or 2 devices each.
    devices: Vec<u8>,
    /// Initial members of each thread, as a bit mask over the users.
    threads: Vec<u8>,
    ops: Vec<Op>,
}

impl Case {
    /// One op a line, numbered as the trace numbers them.
    fn describe(&self) -> String {
        let mut out = format!(
            "devices per user {:?}, thread member masks {:?}\n",
            self.devices, self.threads
        );
        for (i, op) in self.ops.iter().enumerate() {
            out.push_str(&format!("  {i:>2}: {op:?}\n"));
        }
        out
    }
}

fn seq_pick() -> impl Strategy<Value = SeqPick> {
    prop_oneof![
        Just(SeqPick::Zero),
        any::<u8>().prop_map(SeqPick::BelowCursor),
        Just(SeqPick::AtCursor),
        any::<u8>().prop_map(SeqPick::Between),
        Just(SeqPick::Last),
        any::<u8>().prop_map(SeqPick::Beyond),
        Just(SeqPick::Max),
    ]
}

fn intrusion() -> impl Strategy<Value = Intrusion> {
    prop_oneof![
        Just(Intrusion::Send),
        any::<u8>().prop_map(Intrusion::StolenClientMsgId),
        Just(Intrusion::Delivered),
        Just(Intrusion::MarkRead),
        Just(Intrusion::Typing),
        Just(Intrusion::Sync),
        Just(Intrusion::HttpHistory),
        Just(Intrusion::HttpJoin),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let ud = (any::<u8>(), any::<u8>());
    prop_oneof![
        10 => (ud, any::<u8>(), prop::bool::weighted(0.1)).prop_map(
            |((user, device), thread, anywhere)| Op::Send { user, device, thread, anywhere }
        ),
        3 => (ud, any::<u8>(), prop::bool::weighted(0.25)).prop_map(
            |((user, device), pick, as_other_user)| Op::Resend { user, device, pick, as_other_user }
        ),
        3 => (ud, any::<u8>(), seq_pick())
            .prop_map(|((user, device), thread, to)| Op::Delivered { user, device, thread, to }),
        3 => (ud, any::<u8>(), seq_pick())
            .prop_map(|((user, device), thread, to)| Op::MarkRead { user, device, thread, to }),
        2 => (ud, any::<u8>(), any::<bool>())
            .prop_map(|((user, device), thread, on)| Op::Typing { user, device, thread, on }),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(user, thread)| Op::AddMember { user, thread }),
        2 => (any::<u8>(), any::<u8>())
            .prop_map(|(user, thread)| Op::RemoveMember { user, thread }),
        2 => ud.prop_map(|(user, device)| Op::Disconnect { user, device }),
        2 => (ud, prop::option::of(1u8..=4)).prop_map(|((user, device), sync_limit)| {
            Op::Reconnect { user, device, sync_limit }
        }),
        1 => (any::<u8>(), intrusion()).prop_map(|(thread, how)| Op::Intrude { thread, how }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    // 20 to 60 ops; each may shrink to nothing, so a failing case can
    // shrink below 20.
    let ops = vec(prop::option::weighted(0.999, op()), 20..=60);
    (vec(1u8..=2, 3..=4), vec(1u8..16, 1..=2), ops).prop_map(|(devices, threads, ops)| Case {
        devices,
        threads,
        ops: ops.into_iter().flatten().collect(),
    })
}

// ---- the tests ----------------------------------------------------------

#[actix_web::test]
async fn random_interleavings_keep_streams_gapless_cursors_monotonic_and_tenants_apart() {
    run_property("a").await;
}

#[actix_web::test]
async fn more_random_interleavings_keep_streams_gapless_cursors_monotonic_and_tenants_apart() {
    run_property("b").await;
}

async fn run_property(label: &str) {
    let app = spawn_app_with(|s| {
        // The model predicts every reply; the rate limit and the typing
        // timeout would add replies and events that depend on timing.
        s.websocket.rate_limit_burst = 100_000;
        s.websocket.rate_limit_per_second = 100_000.0;
        s.websocket.typing_timeout_ms = 600_000;
    })
    .await;
    let mut db = AsyncPgConnection::establish(&app.db_url)
        .await
        .expect("connect to the test database");

    let seed: [u8; 32] = match std::env::var("CONFAB_PROPTEST_SEED") {
        Ok(hex) => parse_seed(&hex),
        Err(_) => rand::random(),
    };
    let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES);
    println!("[{label}] CONFAB_PROPTEST_SEED={seed_hex} cases={cases}");
    // Each test draws from its own stream of the seed.
    let mut test_seed = seed;
    test_seed[0] ^= label.as_bytes()[0];
    let mut runner = TestRunner::new_with_rng(
        Config::with_cases(cases),
        TestRng::from_seed(RngAlgorithm::ChaCha, &test_seed),
    );
    let strategy = case();
    let started = Instant::now();
    let mut totals = Stats::default();
    for index in 0..cases {
        let mut tree = strategy
            .new_tree(&mut runner)
            .expect("proptest generates a case");
        let original = tree.current();
        match run_case(&app, &mut db, &original).await {
            Ok(stats) => totals.add(&stats),
            Err(failure) => {
                let (minimal, minimal_failure, runs) =
                    shrink(&app, &mut db, &mut tree, original.clone(), failure.clone()).await;
                panic!(
                    "[{label}] case {index} of {cases} failed \
                     (rerun: CONFAB_PROPTEST_SEED={seed_hex} cargo test --test api properties::)\n\
                     ---- failure ----\n{failure}\n\
                     ---- case ----\n{}\n\
                     ---- smallest failing case after {runs} shrink runs ----\n{}\n\
                     ---- its failure ----\n{minimal_failure}",
                    original.describe(),
                    minimal.describe(),
                );
            }
        }
    }
    println!(
        "[{label}] {cases} cases in {:.1?}: {totals:?}",
        started.elapsed()
    );
}

fn parse_seed(hex: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..(i + 2).min(hex.len())], 16))
        .collect::<Result<_, _>>()
        .expect("CONFAB_PROPTEST_SEED is 64 hex digits");
    bytes
        .try_into()
        .expect("CONFAB_PROPTEST_SEED is 64 hex digits")
}

/// proptest's shrinking loop, run asynchronously and within a time budget.
async fn shrink(
    app: &TestApp,
    db: &mut AsyncPgConnection,
    tree: &mut impl ValueTree<Value = Case>,
    mut smallest: Case,
    mut failure: String,
) -> (Case, String, usize) {
    let budget = std::env::var("CONFAB_PROPTEST_SHRINK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(SHRINK_BUDGET, Duration::from_secs);
    let deadline = Instant::now() + budget;
    let mut runs = 0;
    let mut failing = true;
    while Instant::now() < deadline {
        let moved = if failing {
            tree.simplify()
        } else {
            tree.complicate()
        };
        if !moved {
            break;
        }
        let candidate = tree.current();
        runs += 1;
        match run_case(app, db, &candidate).await {
            Ok(_) => failing = false,
            Err(f) => {
                failing = true;
                smallest = candidate;
                failure = f;
            }
        }
    }
    (smallest, failure, runs)
}

/// Runs one case; a panic or a broken property becomes the error, with the
/// trace of what the ops did.
async fn run_case(app: &TestApp, db: &mut AsyncPgConnection, case: &Case) -> Result<Stats, String> {
    let mut trace = Vec::new();
    let outcome = AssertUnwindSafe(execute(app, db, case, &mut trace))
        .catch_unwind()
        .await;
    let failure = match outcome {
        Ok(Ok(stats)) => return Ok(stats),
        Ok(Err(violations)) => {
            let shown: Vec<&String> = violations.iter().take(25).collect();
            format!(
                "{} properties broken:\n  {}",
                violations.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            format!("panicked: {message}")
        }
    };
    Err(format!("{failure}\n---- trace ----\n{}", trace.join("\n")))
}

#[derive(Debug, Default, Clone)]
struct Stats {
    ops: usize,
    skipped: usize,
    messages: usize,
    refused_sends: usize,
    resends_acked_with_original: usize,
    cursor_acks: usize,
    typing: usize,
    joins: usize,
    removals: usize,
    disconnects: usize,
    reconnects: usize,
    sync_pages: usize,
    intrusions: usize,
    frames_checked: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.ops += o.ops;
        self.skipped += o.skipped;
        self.messages += o.messages;
        self.refused_sends += o.refused_sends;
        self.resends_acked_with_original += o.resends_acked_with_original;
        self.cursor_acks += o.cursor_acks;
        self.typing += o.typing;
        self.joins += o.joins;
        self.removals += o.removals;
        self.disconnects += o.disconnects;
        self.reconnects += o.reconnects;
        self.sync_pages += o.sync_pages;
        self.intrusions += o.intrusions;
        self.frames_checked += o.frames_checked;
    }
}

// ---- sessions and their logs -------------------------------------------

/// What a request was, for reading the stream afterwards.
#[derive(Debug, Clone)]
enum Req {
    /// A chat:send the model expects to create a message.
    CreatingSend {
        thread: Uuid,
    },
    /// A catch-up sync (part of the stream) or the final check (not).
    Sync {
        thread: Uuid,
        after: i64,
        final_check: bool,
    },
    Other,
}

/// Everything a session received, in arrival order, with notes.
#[derive(Debug, Clone)]
enum Entry {
    Ready(Value),
    Event(Value),
    Reply {
        req: Req,
        frame: Value,
    },
    /// The thread-left just logged ended a membership at this last_seq.
    LeftAt {
        thread: Uuid,
        last_seq: i64,
    },
    /// Every event routed before the final barrier has arrived.
    Barrier,
    Closed,
}

#[derive(Debug, Clone)]
struct Log {
    name: String,
    /// Index into the company's users; None for the other company's user.
    user: Option<usize>,
    entries: Vec<Entry>,
}

struct Session {
    client: WsClient,
    log: Log,
    next_ref: u64,
}

impl Session {
    async fn open(app: &TestApp, user: &TestUser, name: String, index: Option<usize>) -> Self {
        let client = app.connect(user).await;
        let ready = client.ready.clone();
        Session {
            client,
            log: Log {
                name,
                user: index,
                entries: vec![Entry::Ready(ready)],
            },
            next_ref: 0,
        }
    }

    async fn read(&mut self, what: &str) -> Value {
        loop {
            match timeout(ARRIVAL, self.client.socket().next()).await {
                Err(_) => panic!(
                    "{}: no frame within {ARRIVAL:?} while waiting for {what}",
                    self.log.name
                ),
                Ok(None) | Ok(Some(Err(_))) => panic!(
                    "{}: the connection ended while waiting for {what}",
                    self.log.name
                ),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{}: non-JSON {text}: {e}", self.log.name))
                }
                Ok(Some(Ok(Message::Close(frame)))) => panic!(
                    "{}: closed ({frame:?}) while waiting for {what}",
                    self.log.name
                ),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Sends with a fresh ref; logs what arrives before the reply, then
    /// the reply.
    async fn request(&mut self, event: &str, data: Value, req: Req) -> Value {
        self.next_ref += 1;
        let reference = format!("p{}", self.next_ref);
        self.client
            .send_text(json!({"event": event, "ref": reference, "data": data}).to_string())
            .await;
        let what = format!("the reply to {event} {reference}");
        loop {
            let frame = self.read(&what).await;
            if frame["ref"] == reference.as_str() {
                self.log.entries.push(Entry::Reply {
                    req,
                    frame: frame.clone(),
                });
                return frame;
            }
            self.log.entries.push(Entry::Event(frame));
        }
    }

    /// Logs frames until one matches.
    async fn wait_event(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let frame = self.read(what).await;
            self.log.entries.push(Entry::Event(frame.clone()));
            if wanted(&frame) {
                return frame;
            }
        }
    }

    /// Closes from our side, logging what still arrives.
    async fn close(mut self) -> Log {
        let _ = self.client.socket().close(None).await;
        loop {
            match timeout(ARRIVAL, self.client.socket().next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{}: non-JSON {text}: {e}", self.log.name));
                    self.log.entries.push(Entry::Event(frame));
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("{}: the server did not close", self.log.name),
            }
        }
        self.log.entries.push(Entry::Closed);
        self.log
    }
}

// ---- the model ----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
struct Cursors {
    delivered: i64,
    read: i64,
}

struct Device {
    session: Option<Session>,
    /// The last seq this device saw without a gap, per thread.
    seen: HashMap<Uuid, i64>,
    connections: usize,
}

struct Sent {
    thread: usize,
    /// The acked message, if the send created one.
    message: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CursorKind {
    Delivered,
    Read,
}

struct CursorRecord {
    user: usize,
    thread: usize,
    kind: CursorKind,
    value: i64,
    what: String,
}

struct Run<'a> {
    app: &'a TestApp,
    users: Vec<TestUser>,
    devices: Vec<Vec<Device>>,
    threads: Vec<Uuid>,
    last_seq: Vec<i64>,
    members: Vec<BTreeMap<usize, Cursors>>,
    sent: HashMap<(usize, Uuid), Sent>,
    /// Every client_msg_id used, with who used it and for which thread.
    used: Vec<(usize, Uuid, usize)>,
    outsider: Option<Session>,
    outsider_user: TestUser,
    finished: Vec<Log>,
    cursor_records: Vec<CursorRecord>,
    stats: Stats,
    trace: &'a mut Vec<String>,
}

async fn execute(
    app: &TestApp,
    db: &mut AsyncPgConnection,
    case: &Case,
    trace: &mut Vec<String>,
) -> Result<Stats, Vec<String>> {
    // Fresh tenants for this case on the shared server.
    let company = app.company().await;
    let mut users = Vec::new();
    for i in 0..case.devices.len() {
        users.push(app.named_user(company, &format!("user{i}")).await);
    }
    let other_company = app.company().await;
    let outsider_user = app.named_user(other_company, "outsider").await;

    let mut threads = Vec::new();
    let mut members: Vec<BTreeMap<usize, Cursors>> = Vec::new();
    for (t, mask) in case.threads.iter().enumerate() {
        let mut set: Vec<usize> = (0..users.len()).filter(|u| mask & (1 << u) != 0).collect();
        if set.is_empty() {
            set.push(0);
        }
        let ids: Vec<Uuid> = set.iter().map(|&u| users[u].id).collect();
        let reply = app
            .admin_post(
                "/admin/threads",
                json!({"company_id": company, "title": format!("t{t}"), "member_ids": ids}),
            )
            .await;
        assert_eq!(reply.status, 201, "create thread: {reply:?}");
        threads.push(uuid(&reply.body["id"]));
        members.push(
            set.into_iter()
                .map(|u| {
                    (
                        u,
                        Cursors {
                            delivered: 0,
                            read: 0,
                        },
                    )
                })
                .collect(),
        );
        trace.push(format!(
            "thread t{t} = {} members {:?}",
            threads[t],
            members[t].keys()
        ));
    }

    let outsider = Session::open(app, &outsider_user, "outsider".into(), None).await;
    let mut run = Run {
        app,
        devices: case
            .devices
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|_| Device {
                        session: None,
                        seen: HashMap::new(),
                        connections: 0,
                    })
                    .collect()
            })
            .collect(),
        users,
        last_seq: vec![0; threads.len()],
        threads,
        members,
        sent: HashMap::new(),
        used: Vec::new(),
        outsider: Some(outsider),
        outsider_user,
        finished: Vec::new(),
        cursor_records: Vec::new(),
        stats: Stats::default(),
        trace,
    };
    for u in 0..run.users.len() {
        for d in 0..run.devices[u].len() {
            run.connect(u, d, None).await;
        }
    }
    for (i, op) in case.ops.iter().enumerate() {
        run.stats.ops += 1;
        run.apply(i, op).await;
    }
    run.finish(db).await
}

fn clamp_pick(pick: SeqPick, cursor: i64, last: i64) -> i64 {
    match pick {
        SeqPick::Zero => 0,
        SeqPick::BelowCursor(k) => (cursor - 1 - i64::from(k % 4)).max(0),
        SeqPick::AtCursor => cursor,
        SeqPick::Between(k) => cursor + i64::from(k) % (last - cursor + 1).max(1),
        SeqPick::Last => last,
        SeqPick::Beyond(k) => last + 1 + i64::from(k),
        SeqPick::Max => i64::MAX,
    }
}

impl Run<'_> {
    fn note(&mut self, line: String) {
        self.trace.push(line);
    }

    /// The device, or another connected device of the user if it is down.
    fn device(&self, user: usize, device: u8) -> Option<usize> {
        let n = self.devices[user].len();
        let wanted = usize::from(device) % n;
        if self.devices[user][wanted].session.is_some() {
            return Some(wanted);
        }
        (0..n).find(|&d| self.devices[user][d].session.is_some())
    }

    fn session(&mut self, user: usize, device: usize) -> &mut Session {
        self.devices[user][device]
            .session
            .as_mut()
            .expect("a connected device")
    }

    fn is_member(&self, user: usize, thread: usize) -> bool {
        self.members[thread].contains_key(&user)
    }

    async fn apply(&mut self, i: usize, op: &Op) {
        let n_users = self.users.len();
        let n_threads = self.threads.len();
        match *op {
            Op::Send {
                user,
                device,
                thread,
                anywhere,
            } => {
                let u = usize::from(user) % n_users;
                let mine: Vec<usize> = (0..n_threads).filter(|&t| self.is_member(u, t)).collect();
                let t = if anywhere || mine.is_empty() {
                    usize::from(thread) % n_threads
                } else {
                    mine[usize::from(thread) % mine.len()]
                };
                let Some(d) = self.device(u, device) else {
                    return self.skip(i, op);
                };
                self.send(i, u, d, t, Uuid::new_v4(), format!("op{i} from user{u}"))
                    .await;
            }
            Op::Resend {
                user,
                device,
                pick,
                as_other_user,
            } => {
                if self.used.is_empty() {
                    return self.skip(i, op);
                }
                let (owner, cmid, t) = self.used[usize::from(pick) % self.used.len()];
                let u = if as_other_user {
                    usize::from(user) % n_users
                } else {
                    owner
                };
                let Some(d) = self.device(u, device) else {
                    return self.skip(i, op);
                };
                self.send(i, u, d, t, cmid, format!("op{i}: resend by user{u}"))
                    .await;
            }
            Op::Delivered {
                user,
                device,
                thread,
                to,
            } => {
                self.cursor(i, op, user, device, thread, to, CursorKind::Delivered)
                    .await
            }
            Op::MarkRead {
                user,
                device,
                thread,
                to,
            } => {
                self.cursor(i, op, user, device, thread, to, CursorKind::Read)
                    .await
            }
            Op::Typing {
                user,
                device,
                thread,
                on,
            } => {
                let u = usize::from(user) % n_users;
                let t = usize::from(thread) % n_threads;
                let Some(d) = self.device(u, device) else {
                    return self.skip(i, op);
                };
                let thread_id = self.threads[t];
                let member = self.is_member(u, t);
                let event = if on {
                    "chat:typing-start"
                } else {
                    "chat:typing-stop"
                };
                let reply = self
                    .session(u, d)
                    .request(event, json!({"thread_id": thread_id}), Req::Other)
                    .await;
                if member {
                    assert_eq!(reply["event"], "chat:ack", "op {i} {event}: {reply}");
                    assert_eq!(
                        reply["data"],
                        json!({"thread_id": thread_id, "typing": on}),
                        "op {i}"
                    );
                } else {
                    assert_not_member(&reply, &format!("op {i} {event} by a non-member"));
                }
                self.stats.typing += 1;
                self.note(format!(
                    "op {i}: user{u}/dev{d} {event} t{t} (member: {member})"
                ));
            }
            Op::AddMember { user, thread } => {
                let u = usize::from(user) % n_users;
                let t = usize::from(thread) % n_threads;
                self.add_member(i, u, t).await;
            }
            Op::RemoveMember { user, thread } => {
                let u = usize::from(user) % n_users;
                let t = usize::from(thread) % n_threads;
                self.remove_member(i, u, t).await;
            }
            Op::Disconnect { user, device } => {
                let u = usize::from(user) % n_users;
                let d = usize::from(device) % self.devices[u].len();
                if self.devices[u][d].session.is_none() {
                    return self.skip(i, op);
                }
                self.disconnect(u, d).await;
                self.stats.disconnects += 1;
                self.note(format!("op {i}: user{u}/dev{d} disconnects"));
            }
            Op::Reconnect {
                user,
                device,
                sync_limit,
            } => {
                let u = usize::from(user) % n_users;
                let d = usize::from(device) % self.devices[u].len();
                if self.devices[u][d].session.is_some() {
                    self.disconnect(u, d).await;
                    self.stats.disconnects += 1;
                }
                self.note(format!("op {i}: user{u}/dev{d} reconnects"));
                self.connect(u, d, sync_limit).await;
                self.stats.reconnects += 1;
            }
            Op::Intrude { thread, how } => {
                let t = usize::from(thread) % n_threads;
                self.intrude(i, t, how).await;
            }
        }
    }

    fn skip(&mut self, i: usize, op: &Op) {
        self.stats.skipped += 1;
        self.note(format!(
            "op {i}: skipped {op:?} (no such session or nothing to resend)"
        ));
    }

    async fn send(&mut self, i: usize, u: usize, d: usize, t: usize, cmid: Uuid, body: String) {
        let thread_id = self.threads[t];
        let original = self.sent.get(&(u, cmid)).and_then(|s| s.message.clone());
        let member = self.is_member(u, t);
        let creates = original.is_none() && member;
        let req = if creates {
            Req::CreatingSend { thread: thread_id }
        } else {
            Req::Other
        };
        let reply = self
            .session(u, d)
            .request(
                "chat:send",
                json!({"thread_id": thread_id, "client_msg_id": cmid, "body": body}),
                req,
            )
            .await;
        let context = format!("op {i}: user{u}/dev{d} chat:send {cmid} to t{t}");
        if let Some(original) = original {
            assert_eq!(reply["event"], "chat:ack", "{context}: {reply}");
            assert_eq!(
                reply["data"]["message"], original,
                "{context}: a resend is acked with the original message"
            );
            self.stats.resends_acked_with_original += 1;
            self.note(format!(
                "{context}: acked with the original, seq {}",
                original["seq"]
            ));
            return;
        }
        if !self.used.iter().any(|&(o, c, _)| o == u && c == cmid) {
            self.used.push((u, cmid, t));
        }
        if !member {
            assert_not_member(&reply, &format!("{context} by a non-member"));
            self.sent.insert(
                (u, cmid),
                Sent {
                    thread: t,
                    message: None,
                },
            );
            self.stats.refused_sends += 1;
            self.note(format!("{context}: not_member"));
            return;
        }
        assert_eq!(reply["event"], "chat:ack", "{context}: {reply}");
        let message = reply["data"]["message"].clone();
        let seq = self.last_seq[t] + 1;
        assert_eq!(message["seq"], seq, "{context}: the next seq: {message}");
        assert_eq!(message["thread_id"], thread_id.to_string(), "{context}");
        assert_eq!(
            message["sender_id"],
            self.users[u].id.to_string(),
            "{context}"
        );
        assert_eq!(message["client_msg_id"], cmid.to_string(), "{context}");
        assert_eq!(message["body"], body.as_str(), "{context}");
        self.last_seq[t] = seq;
        self.sent.insert(
            (u, cmid),
            Sent {
                thread: t,
                message: Some(message),
            },
        );
        self.stats.messages += 1;
        self.note(format!("{context}: acked seq {seq}"));
    }

    #[allow(clippy::too_many_arguments)]
    async fn cursor(
        &mut self,
        i: usize,
        op: &Op,
        user: u8,
        device: u8,
        thread: u8,
        to: SeqPick,
        kind: CursorKind,
    ) {
        let u = usize::from(user) % self.users.len();
        let t = usize::from(thread) % self.threads.len();
        let Some(d) = self.device(u, device) else {
            return self.skip(i, op);
        };
        let thread_id = self.threads[t];
        let last = self.last_seq[t];
        let now = self.members[t].get(&u).copied();
        let current = match (now, kind) {
            (Some(c), CursorKind::Delivered) => c.delivered,
            (Some(c), CursorKind::Read) => c.read,
            (None, _) => 0,
        };
        let up_to = clamp_pick(to, current, last);
        let (event, field) = match kind {
            CursorKind::Delivered => ("chat:delivered", "last_delivered_seq"),
            CursorKind::Read => ("chat:mark-read", "last_read_seq"),
        };
        let reply = self
            .session(u, d)
            .request(
                event,
                json!({"thread_id": thread_id, "up_to_seq": up_to}),
                Req::Other,
            )
            .await;
        let context = format!(
            "op {i}: user{u}/dev{d} {event} t{t} up_to_seq {up_to} (cursor {current}, last_seq {last})"
        );
        let Some(mut cursors) = now else {
            assert_not_member(&reply, &format!("{context} by a non-member"));
            self.note(format!("{context}: not_member"));
            return;
        };
        let target = current.max(up_to.min(last));
        assert_eq!(reply["event"], "chat:ack", "{context}: {reply}");
        assert_eq!(
            reply["data"],
            json!({"thread_id": thread_id, field: target}),
            "{context}: the ack carries the cursor after the request"
        );
        match kind {
            CursorKind::Delivered => cursors.delivered = target,
            CursorKind::Read => {
                cursors.read = target;
                cursors.delivered = cursors.delivered.max(target);
            }
        }
        self.members[t].insert(u, cursors);
        self.cursor_records.push(CursorRecord {
            user: u,
            thread: t,
            kind,
            value: target,
            what: format!("op {i} ack"),
        });
        self.stats.cursor_acks += 1;
        self.note(format!("{context}: acked {target}"));
    }

    async fn add_member(&mut self, i: usize, u: usize, t: usize) {
        let thread_id = self.threads[t];
        let reply = self
            .app
            .admin_post(
                &format!("/admin/threads/{thread_id}/members"),
                json!({"user_id": self.users[u].id}),
            )
            .await;
        let context = format!("op {i}: admin adds user{u} to t{t}");
        if self.is_member(u, t) {
            assert_eq!(reply.status, 409, "{context}, already a member: {reply:?}");
            self.note(format!("{context}: 409, already a member"));
            return;
        }
        assert_eq!(reply.status, 201, "{context}: {reply:?}");
        let last = self.last_seq[t];
        for d in 0..self.devices[u].len() {
            let Some(session) = self.devices[u][d].session.as_mut() else {
                continue;
            };
            let joined = session
                .wait_event(&format!("chat:thread-joined of t{t}"), |f| {
                    f["event"] == "chat:thread-joined"
                        && f["data"]["thread"]["id"] == thread_id.to_string()
                })
                .await;
            let view = &joined["data"]["thread"];
            for field in ["last_seq", "last_delivered_seq", "last_read_seq"] {
                assert_eq!(view[field], last, "{context}: {field} at join: {joined}");
            }
        }
        self.members[t].insert(
            u,
            Cursors {
                delivered: last,
                read: last,
            },
        );
        for kind in [CursorKind::Delivered, CursorKind::Read] {
            self.cursor_records.push(CursorRecord {
                user: u,
                thread: t,
                kind,
                value: last,
                what: format!("op {i} join"),
            });
        }
        self.stats.joins += 1;
        self.note(format!("{context}: 201, cursors {last}"));
    }

    async fn remove_member(&mut self, i: usize, u: usize, t: usize) {
        let thread_id = self.threads[t];
        let reply = self
            .app
            .admin_delete(&format!(
                "/admin/threads/{thread_id}/members/{}",
                self.users[u].id
            ))
            .await;
        let context = format!("op {i}: admin removes user{u} from t{t}");
        if !self.is_member(u, t) {
            assert_eq!(reply.status, 404, "{context}, not a member: {reply:?}");
            self.note(format!("{context}: 404, not a member"));
            return;
        }
        assert_eq!(reply.status, 204, "{context}: {reply:?}");
        let last = self.last_seq[t];
        for d in 0..self.devices[u].len() {
            let Some(session) = self.devices[u][d].session.as_mut() else {
                continue;
            };
            session
                .wait_event(&format!("chat:thread-left of t{t}"), |f| {
                    f["event"] == "chat:thread-left"
                        && f["data"]["thread_id"] == thread_id.to_string()
                })
                .await;
            session.log.entries.push(Entry::LeftAt {
                thread: thread_id,
                last_seq: last,
            });
        }
        self.members[t].remove(&u);
        self.stats.removals += 1;
        self.note(format!("{context}: 204 at last_seq {last}"));
    }

    async fn disconnect(&mut self, u: usize, d: usize) {
        let session = self.devices[u][d]
            .session
            .take()
            .expect("a connected device");
        let log = session.close().await;
        // What the device saw without a gap is where it resumes.
        let context = Context {
            threads: self.threads.iter().copied().collect(),
            barriers: HashSet::new(),
            final_last: HashMap::new(),
            acked: None,
            user_ids: self.users.iter().map(|u| u.id.to_string()).collect(),
        };
        let mut ignored = Vec::new();
        for interval in intervals(&log, &context, &mut ignored) {
            let end = check_interval(&log.name, &interval, &mut ignored);
            self.devices[u][d].seen.insert(interval.thread, end);
        }
        self.finished.push(log);
    }

    async fn connect(&mut self, u: usize, d: usize, sync_limit: Option<u8>) {
        self.devices[u][d].connections += 1;
        let name = format!("user{u}/dev{d}#{}", self.devices[u][d].connections);
        let mut session = Session::open(self.app, &self.users[u], name.clone(), Some(u)).await;
        let ready = session.client.ready.clone();
        let listed: BTreeMap<Uuid, Value> = ready["threads"]
            .as_array()
            .expect("chat:ready lists threads")
            .iter()
            .map(|t| (uuid(&t["id"]), t.clone()))
            .collect();
        let expected: BTreeSet<Uuid> = (0..self.threads.len())
            .filter(|&t| self.is_member(u, t))
            .map(|t| self.threads[t])
            .collect();
        assert_eq!(
            listed.keys().copied().collect::<BTreeSet<_>>(),
            expected,
            "{name}: chat:ready lists exactly the user's threads: {ready}"
        );
        for (t, &thread_id) in self.threads.iter().enumerate() {
            let Some(view) = listed.get(&thread_id) else {
                continue;
            };
            let cursors = self.members[t][&u];
            let last = self.last_seq[t];
            assert_eq!(view["last_seq"], last, "{name}: chat:ready t{t}: {view}");
            assert_eq!(
                view["last_delivered_seq"], cursors.delivered,
                "{name}: t{t}"
            );
            assert_eq!(view["last_read_seq"], cursors.read, "{name}: t{t}");
            // Catch up from what this device saw.
            let mut after = self.devices[u][d]
                .seen
                .get(&thread_id)
                .copied()
                .unwrap_or(0);
            while after < last {
                let mut data = json!({"thread_id": thread_id, "after_seq": after});
                if let Some(limit) = sync_limit {
                    data["limit"] = json!(limit);
                }
                let req = Req::Sync {
                    thread: thread_id,
                    after,
                    final_check: false,
                };
                let reply = session.request("chat:sync", data, req).await;
                assert_eq!(reply["event"], "chat:ack", "{name}: sync t{t}: {reply}");
                let messages = reply["data"]["messages"]
                    .as_array()
                    .expect("a sync page has messages");
                let Some(newest) = messages.last() else {
                    panic!("{name}: sync t{t} after {after} < last_seq {last} was empty: {reply}");
                };
                after = newest["seq"].as_i64().expect("a seq");
                self.stats.sync_pages += 1;
                if reply["data"]["has_more"] != true {
                    break;
                }
            }
            assert!(
                after >= last,
                "{name}: sync of t{t} stopped at {after} < {last}"
            );
        }
        self.devices[u][d].session = Some(session);
    }

    async fn intrude(&mut self, i: usize, t: usize, how: Intrusion) {
        let thread_id = self.threads[t];
        let token = self.outsider_user.token.clone();
        let outsider = self.outsider.as_mut().expect("the outsider is connected");
        let context = format!("op {i}: the other company's user tries {how:?} on t{t}");
        let ws = |event: &str, data: Value| (event.to_string(), data);
        let frame = match how {
            Intrusion::Send => Some(ws(
                "chat:send",
                json!({"thread_id": thread_id, "client_msg_id": Uuid::new_v4(), "body": "hi"}),
            )),
            Intrusion::StolenClientMsgId(pick) => {
                let (thread, cmid) = if self.used.is_empty() {
                    (thread_id, Uuid::new_v4())
                } else {
                    let (_, cmid, t) = self.used[usize::from(pick) % self.used.len()];
                    (self.threads[t], cmid)
                };
                Some(ws(
                    "chat:send",
                    json!({"thread_id": thread, "client_msg_id": cmid, "body": "mine now"}),
                ))
            }
            Intrusion::Delivered => Some(ws(
                "chat:delivered",
                json!({"thread_id": thread_id, "up_to_seq": 1_000}),
            )),
            Intrusion::MarkRead => Some(ws(
                "chat:mark-read",
                json!({"thread_id": thread_id, "up_to_seq": 1_000}),
            )),
            Intrusion::Typing => Some(ws("chat:typing-start", json!({"thread_id": thread_id}))),
            Intrusion::Sync => Some(ws(
                "chat:sync",
                json!({"thread_id": thread_id, "after_seq": 0}),
            )),
            Intrusion::HttpHistory | Intrusion::HttpJoin => None,
        };
        if let Some((event, data)) = frame {
            let reply = outsider.request(&event, data, Req::Other).await;
            assert_not_member(&reply, &context);
        } else if matches!(how, Intrusion::HttpHistory) {
            let reply = self
                .app
                .get(&format!("/api/threads/{thread_id}/messages"), &token)
                .await;
            assert_eq!(reply.status, 404, "{context}: {reply:?}");
        } else {
            let reply = self
                .app
                .post(
                    &format!("/api/threads/{thread_id}/members"),
                    &token,
                    json!({"user_id": self.outsider_user.id}),
                )
                .await;
            assert_eq!(reply.status, 404, "{context}: {reply:?}");
        }
        self.stats.intrusions += 1;
        self.note(format!("{context}: refused"));
    }

    /// Brings every session to a known point, then checks everything.
    async fn finish(mut self, db: &mut AsyncPgConnection) -> Result<Stats, Vec<String>> {
        // Barrier: a new thread with every user of the company. The hub
        // routes its chat:thread-joined after everything routed before, so
        // once a session has it, every earlier event for it has arrived.
        let company = self.users[0].company_id;
        let ids: Vec<Uuid> = self.users.iter().map(|u| u.id).collect();
        let reply = self
            .app
            .admin_post(
                "/admin/threads",
                json!({"company_id": company, "title": "barrier", "member_ids": ids}),
            )
            .await;
        assert_eq!(reply.status, 201, "barrier thread: {reply:?}");
        let barrier = uuid(&reply.body["id"]);
        let reply = self
            .app
            .admin_post(
                "/admin/threads",
                json!({"company_id": self.outsider_user.company_id, "title": "barrier",
                       "member_ids": [self.outsider_user.id]}),
            )
            .await;
        assert_eq!(reply.status, 201, "outsider's barrier thread: {reply:?}");
        let outsider_barrier = uuid(&reply.body["id"]);

        let mut open: Vec<Session> = Vec::new();
        for user in &mut self.devices {
            for device in user.iter_mut() {
                open.extend(device.session.take());
            }
        }
        open.extend(self.outsider.take());
        for session in &mut open {
            let wanted = if session.log.user.is_some() {
                barrier
            } else {
                outsider_barrier
            };
            session
                .wait_event("the barrier's chat:thread-joined", |f| {
                    f["event"] == "chat:thread-joined"
                        && f["data"]["thread"]["id"] == wanted.to_string()
                })
                .await;
            session.log.entries.push(Entry::Barrier);
        }
        // The final chat:sync of every thread and a ping round trip.
        for session in &mut open {
            if let Some(u) = session.log.user {
                for t in 0..self.threads.len() {
                    if !self.members[t].contains_key(&u) {
                        continue;
                    }
                    let thread = self.threads[t];
                    let req = Req::Sync {
                        thread,
                        after: 0,
                        final_check: true,
                    };
                    let data = json!({"thread_id": thread, "after_seq": 0, "limit": 500});
                    let reply = session.request("chat:sync", data, req).await;
                    assert_eq!(reply["event"], "chat:ack", "final sync: {reply}");
                    assert_eq!(reply["data"]["has_more"], false, "final sync: {reply}");
                }
            }
            let pong = session.request("ping", json!({}), Req::Other).await;
            assert_eq!(pong["event"], "pong", "{}: {pong}", session.log.name);
        }
        for session in open {
            let log = session.close().await;
            self.finished.push(log);
        }
        let violations = self.check(db, barrier, outsider_barrier).await;
        if violations.is_empty() {
            Ok(self.stats)
        } else {
            Err(violations)
        }
    }

    async fn check(
        &mut self,
        db: &mut AsyncPgConnection,
        barrier: Uuid,
        outsider_barrier: Uuid,
    ) -> Vec<String> {
        let mut v = Vec::new();
        let list = self
            .threads
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(",");

        // Seqs gapless and exactly the acked messages, each once.
        let rows = json_rows(
            db,
            &format!(
                "SELECT row_to_json(m)::text AS j FROM messages m \
                 WHERE thread_id IN ({list}) ORDER BY thread_id, seq"
            ),
        )
        .await;
        let stored = json_rows(
            db,
            &format!(
                "SELECT json_build_object('id', id, 'last_seq', last_seq)::text AS j \
                 FROM threads WHERE id IN ({list})"
            ),
        )
        .await;
        for (t, &thread) in self.threads.iter().enumerate() {
            let seqs: Vec<i64> = rows
                .iter()
                .filter(|r| r["thread_id"] == thread.to_string())
                .map(|r| r["seq"].as_i64().unwrap_or(-1))
                .collect();
            let expected: Vec<i64> = (1..=self.last_seq[t]).collect();
            if seqs != expected {
                v.push(format!(
                    "t{t}: seqs in the database {seqs:?}, expected {expected:?}"
                ));
            }
            let last = stored
                .iter()
                .find(|r| r["id"] == thread.to_string())
                .map(|r| r["last_seq"].clone());
            if last != Some(json!(self.last_seq[t])) {
                v.push(format!(
                    "t{t}: threads.last_seq {last:?}, expected {}",
                    self.last_seq[t]
                ));
            }
        }
        let mut acked: HashMap<(Uuid, i64), Value> = HashMap::new();
        for ((u, cmid), sent) in &self.sent {
            let Some(message) = &sent.message else {
                continue;
            };
            let thread = self.threads[sent.thread];
            let seq = message["seq"].as_i64().unwrap_or(-1);
            acked.insert((thread, seq), message.clone());
            let by_id: Vec<&Value> = rows.iter().filter(|r| r["id"] == message["id"]).collect();
            let by_key: Vec<&Value> = rows
                .iter()
                .filter(|r| {
                    r["sender_id"] == self.users[*u].id.to_string()
                        && r["client_msg_id"] == cmid.to_string()
                })
                .collect();
            if by_id.len() != 1 || by_key.len() != 1 || by_id[0]["id"] != by_key[0]["id"] {
                v.push(format!(
                    "acked message {message} is stored {} times by id and {} by (sender, client_msg_id)",
                    by_id.len(),
                    by_key.len()
                ));
                continue;
            }
            for field in ["thread_id", "seq", "sender_id", "client_msg_id", "body"] {
                if by_id[0][field] != message[field] {
                    v.push(format!("acked {message} but stored {}", by_id[0]));
                }
            }
        }
        if rows.len() != acked.len() {
            v.push(format!(
                "{} messages stored, {} acked as created",
                rows.len(),
                acked.len()
            ));
        }

        // Cursors: the members and their cursors as modelled, within
        // bounds, and every value ever acked never above a later one.
        let memberships = json_rows(
            db,
            &format!(
                "SELECT row_to_json(m)::text AS j FROM memberships m WHERE thread_id IN ({list})"
            ),
        )
        .await;
        for (t, &thread) in self.threads.iter().enumerate() {
            let mut in_db = BTreeMap::new();
            for row in memberships
                .iter()
                .filter(|r| r["thread_id"] == thread.to_string())
            {
                let Some(u) = self
                    .users
                    .iter()
                    .position(|u| row["user_id"] == u.id.to_string())
                else {
                    v.push(format!("t{t}: a member of no case: {row}"));
                    continue;
                };
                let cursors = Cursors {
                    delivered: row["last_delivered_seq"].as_i64().unwrap_or(-1),
                    read: row["last_read_seq"].as_i64().unwrap_or(-1),
                };
                if !(0 <= cursors.read
                    && cursors.read <= cursors.delivered
                    && cursors.delivered <= self.last_seq[t])
                {
                    v.push(format!(
                        "t{t} user{u}: cursors out of bounds: {row} (last_seq {})",
                        self.last_seq[t]
                    ));
                }
                for (kind, value) in [
                    (CursorKind::Delivered, cursors.delivered),
                    (CursorKind::Read, cursors.read),
                ] {
                    self.cursor_records.push(CursorRecord {
                        user: u,
                        thread: t,
                        kind,
                        value,
                        what: "the database at the end".into(),
                    });
                }
                in_db.insert(u, cursors);
            }
            if in_db != self.members[t] {
                v.push(format!(
                    "t{t}: members and cursors in the database {in_db:?}, expected {:?}",
                    self.members[t]
                ));
            }
        }
        let mut last_value: HashMap<(usize, usize, CursorKind), (i64, &str)> = HashMap::new();
        for record in &self.cursor_records {
            let key = (record.user, record.thread, record.kind);
            if let Some((before, what)) = last_value.get(&key) {
                if record.value < *before {
                    v.push(format!(
                        "user{} t{} {:?} cursor went back from {before} ({what}) to {} ({})",
                        record.user, record.thread, record.kind, record.value, record.what
                    ));
                }
            }
            last_value.insert(key, (record.value, &record.what));
        }

        // Every session's stream.
        let context = Context {
            threads: self.threads.iter().copied().collect(),
            barriers: [barrier, outsider_barrier].into_iter().collect(),
            final_last: self
                .threads
                .iter()
                .copied()
                .zip(self.last_seq.iter().copied())
                .collect(),
            acked: Some(acked),
            user_ids: self.users.iter().map(|u| u.id.to_string()).collect(),
        };
        for log in &self.finished {
            self.stats.frames_checked += log.entries.len();
            match log.user {
                Some(_) => {
                    for interval in intervals(log, &context, &mut v) {
                        check_interval(&log.name, &interval, &mut v);
                    }
                }
                None => check_outsider(log, outsider_barrier, &mut v),
            }
        }
        v
    }
}

fn assert_not_member(reply: &Value, context: &str) {
    assert_eq!(reply["event"], "chat:error", "{context}: {reply}");
    assert_eq!(reply["data"]["code"], "not_member", "{context}: {reply}");
}

#[derive(QueryableByName)]
struct JsonRow {
    #[diesel(sql_type = Text)]
    j: String,
}

async fn json_rows(db: &mut AsyncPgConnection, sql: &str) -> Vec<Value> {
    let rows: Vec<JsonRow> = diesel::sql_query(sql)
        .load(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .map(|r| serde_json::from_str(&r.j).expect("Postgres wrote JSON"))
        .collect()
}

// ---- reading the streams ------------------------------------------------

struct Context {
    threads: HashSet<Uuid>,
    barriers: HashSet<Uuid>,
    /// Each thread's last seq at the barrier.
    final_last: HashMap<Uuid, i64>,
    /// Every created message as its sender's ack showed it, once known.
    acked: Option<HashMap<(Uuid, i64), Value>>,
    user_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Open,
    /// The session closed: what arrived must be gapless, but may stop short.
    Closed,
    /// Removed (or at the barrier) when the thread's last seq was this:
    /// everything up to it must have arrived.
    Complete(i64),
}

/// One membership of one session in one thread.
#[derive(Debug)]
struct Interval {
    thread: Uuid,
    /// chat:ready's or chat:thread-joined's last_seq.
    base: i64,
    /// Where the stream must start: the catch-up sync's after_seq, or base.
    lower: i64,
    /// Seqs from catch-up syncs and chat:message, in arrival order.
    stream: Vec<i64>,
    live: Vec<i64>,
    /// Seqs this session's own sends created (acked, never broadcast to it).
    own: BTreeSet<i64>,
    end: End,
}

fn thread_of(frame: &Value) -> Option<Uuid> {
    let data = &frame["data"];
    [
        &data["thread_id"],
        &data["message"]["thread_id"],
        &data["thread"]["id"],
    ]
    .into_iter()
    .find_map(|v| v.as_str())
    .and_then(|s| Uuid::parse_str(s).ok())
}

/// Splits a company session's log into memberships, checking on the way
/// that nothing about a thread arrives outside one.
fn intervals(log: &Log, cx: &Context, v: &mut Vec<String>) -> Vec<Interval> {
    let name = &log.name;
    let own_id = log.user.map(|u| cx.user_ids[u].as_str()).unwrap_or("");
    let mut all: Vec<Interval> = Vec::new();
    let mut open: HashMap<Uuid, usize> = HashMap::new();
    let mut leaving: HashMap<Uuid, usize> = HashMap::new();
    let mut after_barrier = false;
    let mut receipts: HashMap<(Uuid, String, String), i64> = HashMap::new();
    let start = |all: &mut Vec<Interval>, thread: Uuid, base: i64| {
        all.push(Interval {
            thread,
            base,
            lower: base,
            stream: Vec::new(),
            live: Vec::new(),
            own: BTreeSet::new(),
            end: End::Open,
        });
        all.len() - 1
    };
    let check_content = |v: &mut Vec<String>, thread: Uuid, message: &Value, how: &str| {
        let seq = message["seq"].as_i64().unwrap_or(-1);
        if let Some(acked) = &cx.acked {
            if acked.get(&(thread, seq)) != Some(message) {
                v.push(format!(
                    "{name}: {how} {message} is not the acked message of seq {seq}: {:?}",
                    acked.get(&(thread, seq))
                ));
            }
        }
    };
    for entry in &log.entries {
        match entry {
            Entry::Ready(data) => {
                for t in data["threads"].as_array().into_iter().flatten() {
                    let thread = uuid(&t["id"]);
                    if !cx.threads.contains(&thread) {
                        v.push(format!("{name}: chat:ready lists a thread of no case: {t}"));
                        continue;
                    }
                    let i = start(&mut all, thread, t["last_seq"].as_i64().unwrap_or(-1));
                    open.insert(thread, i);
                }
            }
            Entry::Event(frame) => {
                let event = frame["event"].as_str().unwrap_or_default();
                let Some(thread) = thread_of(frame) else {
                    continue;
                };
                if cx.barriers.contains(&thread) {
                    continue;
                }
                if !cx.threads.contains(&thread) {
                    v.push(format!(
                        "{name}: an event about a thread of no case: {frame}"
                    ));
                    continue;
                }
                match event {
                    "chat:thread-joined" => match open.entry(thread) {
                        MapEntry::Occupied(_) => {
                            v.push(format!("{name}: joined a thread it is in: {frame}"))
                        }
                        MapEntry::Vacant(slot) => {
                            let base = frame["data"]["thread"]["last_seq"].as_i64().unwrap_or(-1);
                            slot.insert(start(&mut all, thread, base));
                        }
                    },
                    "chat:thread-left" => match open.remove(&thread) {
                        Some(i) => {
                            leaving.insert(thread, i);
                        }
                        None => v.push(format!("{name}: left a thread it is not in: {frame}")),
                    },
                    _ => {
                        let Some(&i) = open.get(&thread) else {
                            v.push(format!(
                                "{name}: {event} about a thread it is not a member of: {frame}"
                            ));
                            continue;
                        };
                        let data = &frame["data"];
                        match event {
                            "chat:message" => {
                                let seq = data["message"]["seq"].as_i64().unwrap_or(-1);
                                if after_barrier {
                                    v.push(format!("{name}: a message after the barrier: {frame}"));
                                }
                                if seq <= all[i].base {
                                    v.push(format!(
                                        "{name}: chat:message seq {seq} at or below the last_seq {} it was given",
                                        all[i].base
                                    ));
                                }
                                all[i].stream.push(seq);
                                all[i].live.push(seq);
                                check_content(v, thread, &data["message"], "chat:message");
                            }
                            "chat:typing" | "chat:member-joined" if data["user_id"] == own_id => {
                                v.push(format!("{name}: {event} about its own user: {frame}"));
                            }
                            "chat:delivered" | "chat:read" => {
                                let key = (
                                    thread,
                                    data["user_id"].as_str().unwrap_or_default().to_string(),
                                    event.to_string(),
                                );
                                let up = data["up_to_seq"].as_i64().unwrap_or(-1);
                                if let Some(before) = receipts.insert(key, up) {
                                    if up <= before {
                                        v.push(format!(
                                            "{name}: {event} went from {before} to {up}: {frame}"
                                        ));
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            Entry::Reply { req, frame } => match req {
                Req::CreatingSend { thread } => {
                    if let (Some(&i), Some(seq)) =
                        (open.get(thread), frame["data"]["message"]["seq"].as_i64())
                    {
                        all[i].own.insert(seq);
                    }
                }
                Req::Sync {
                    thread,
                    after,
                    final_check,
                } => {
                    let messages = frame["data"]["messages"].as_array();
                    for message in messages.into_iter().flatten() {
                        check_content(v, *thread, message, "chat:sync returned");
                    }
                    if *final_check {
                        let seqs: Vec<i64> = messages
                            .into_iter()
                            .flatten()
                            .map(|m| m["seq"].as_i64().unwrap_or(-1))
                            .collect();
                        let last = cx.final_last.get(thread).copied().unwrap_or(-1);
                        if seqs != (1..=last).collect::<Vec<_>>() {
                            v.push(format!(
                                "{name}: the final sync gave {seqs:?}, last_seq {last}"
                            ));
                        }
                        continue;
                    }
                    if let Some(&i) = open.get(thread) {
                        all[i].lower = all[i].lower.min(*after);
                        for message in messages.into_iter().flatten() {
                            all[i].stream.push(message["seq"].as_i64().unwrap_or(-1));
                        }
                    }
                }
                Req::Other => {}
            },
            Entry::LeftAt { thread, last_seq } => match leaving.remove(thread) {
                Some(i) => all[i].end = End::Complete(*last_seq),
                None => v.push(format!("{name}: no thread-left before the removal note")),
            },
            Entry::Barrier => {
                after_barrier = true;
                for (thread, &i) in &open {
                    all[i].end = End::Complete(cx.final_last.get(thread).copied().unwrap_or(-1));
                }
            }
            Entry::Closed => {
                for &i in open.values() {
                    if all[i].end == End::Open {
                        all[i].end = End::Closed;
                    }
                }
            }
        }
    }
    all
}

/// Checks one membership's stream; returns the last seq it saw without a
/// gap, where a reconnecting device resumes.
fn check_interval(name: &str, iv: &Interval, v: &mut Vec<String>) -> i64 {
    let t = iv.thread;
    for pair in iv.stream.windows(2) {
        if pair[1] <= pair[0] {
            v.push(format!(
                "{name}: in {t} seq {} came after {}: stream {:?}",
                pair[1], pair[0], iv.stream
            ));
        }
    }
    for seq in &iv.live {
        if iv.own.contains(seq) {
            v.push(format!(
                "{name}: chat:message for its own send, seq {seq} in {t}"
            ));
        }
    }
    for seq in &iv.stream {
        if *seq <= iv.lower {
            v.push(format!(
                "{name}: seq {seq} in {t} at or below where it started, {}",
                iv.lower
            ));
        }
    }
    let covered: BTreeSet<i64> = iv.stream.iter().chain(iv.own.iter()).copied().collect();
    let mut gapless = iv.lower;
    while covered.contains(&(gapless + 1)) {
        gapless += 1;
    }
    match iv.end {
        End::Complete(last) => {
            if gapless < last {
                v.push(format!(
                    "{name}: in {t} seq {} never arrived (saw {:?} and its own {:?} from {} to {last})",
                    gapless + 1,
                    iv.stream,
                    iv.own,
                    iv.lower
                ));
            }
            if let Some(beyond) = covered.iter().find(|&&s| s > last) {
                v.push(format!(
                    "{name}: in {t} seq {beyond} past the last_seq {last}"
                ));
            }
        }
        End::Closed | End::Open => {
            let newest = iv.stream.iter().copied().max().unwrap_or(iv.lower);
            if gapless < newest {
                v.push(format!(
                    "{name}: in {t} seq {} missing below {newest} (saw {:?} and its own {:?} from {})",
                    gapless + 1,
                    iv.stream,
                    iv.own,
                    iv.lower
                ));
            }
        }
    }
    gapless
}

/// The other company's user gets its chat:ready (no threads), refusals of
/// its own requests, its barrier, its pong, and nothing else at all.
fn check_outsider(log: &Log, barrier: Uuid, v: &mut Vec<String>) {
    for entry in &log.entries {
        match entry {
            Entry::Ready(data) => {
                if data["threads"] != json!([]) {
                    v.push(format!("outsider: chat:ready lists threads: {data}"));
                }
            }
            Entry::Event(frame) => {
                let is_barrier = frame["event"] == "chat:thread-joined"
                    && frame["data"]["thread"]["id"] == barrier.to_string();
                if !is_barrier {
                    v.push(format!("outsider received {frame}"));
                }
            }
            Entry::Reply { frame, .. } => {
                let refused =
                    frame["event"] == "chat:error" && frame["data"]["code"] == "not_member";
                if !(refused || frame["event"] == "pong") {
                    v.push(format!("outsider was answered {frame}"));
                }
            }
            Entry::LeftAt { .. } | Entry::Barrier | Entry::Closed => {}
        }
    }
}
