//! The bench's own tenant on the server under test: a company, users with
//! tokens, threads (all through the admin API), and one connected session
//! per user. Sessions spread round-robin over every `--url` given.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::client::{self, Behaviour, Command, Ready, SessionReport, Shared};
use crate::counting::{Acked, SeqTracker};
use crate::latency::histogram;
use crate::BenchResult;

/// Admin requests in flight while setting up.
const SETUP_CONCURRENCY: usize = 32;
/// How long a report from one session may take before the run fails.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// The server(s) under test.
#[derive(Debug, Clone)]
pub struct Target {
    pub urls: Vec<String>,
    pub admin_token: String,
}

impl Target {
    pub fn http(&self) -> &str {
        self.urls
            .first()
            .map_or("http://127.0.0.1:8080", String::as_str)
    }

    /// The WebSocket endpoint session `i` uses.
    pub fn ws_url(&self, i: usize) -> String {
        let base = self
            .urls
            .get(i % self.urls.len().max(1))
            .map_or("http://127.0.0.1:8080", String::as_str)
            .trim_end_matches('/');
        let ws = base
            .strip_prefix("https://")
            .map(|rest| format!("wss://{rest}"))
            .or_else(|| {
                base.strip_prefix("http://")
                    .map(|rest| format!("ws://{rest}"))
            })
            .unwrap_or_else(|| base.to_string());
        format!("{ws}/ws")
    }
}

/// The admin API, as the bench uses it.
pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

#[derive(Debug, Clone)]
pub struct BenchUser {
    pub id: Uuid,
    pub token: String,
}

fn id_of(value: &Value) -> BenchResult<Uuid> {
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no id in {value}"))?;
    Ok(id.parse()?)
}

impl Admin {
    pub fn new(target: &Target) -> BenchResult<Self> {
        Ok(Admin {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            base: target.http().trim_end_matches('/').to_string(),
            token: target.admin_token.clone(),
        })
    }

    async fn post(&self, path: &str, body: Value) -> BenchResult<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {body}").into());
        }
        Ok(body)
    }

    pub async fn company(&self) -> BenchResult<Uuid> {
        let name = format!("bench {}", Uuid::new_v4().simple());
        id_of(
            &self
                .post("/admin/companies", json!({ "name": name }))
                .await?,
        )
    }

    pub async fn user(&self, company: Uuid, n: usize) -> BenchResult<BenchUser> {
        let user = self
            .post(
                "/admin/users",
                json!({ "company_id": company, "display_name": format!("bench user {n}") }),
            )
            .await?;
        let id = id_of(&user)?;
        let token = self.token_for(id).await?;
        Ok(BenchUser { id, token })
    }

    /// A fresh token for an existing user.
    pub async fn token_for(&self, id: Uuid) -> BenchResult<String> {
        let minted = self
            .post(&format!("/admin/users/{id}/tokens"), json!({}))
            .await?;
        Ok(minted
            .get("token")
            .and_then(Value::as_str)
            .ok_or("no token minted")?
            .to_string())
    }

    pub async fn users(&self, company: Uuid, n: usize) -> BenchResult<Vec<BenchUser>> {
        stream::iter(0..n)
            .map(|i| self.user(company, i))
            .buffered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    pub async fn thread(&self, company: Uuid, members: &[Uuid]) -> BenchResult<Uuid> {
        id_of(
            &self
                .post(
                    "/admin/threads",
                    json!({ "company_id": company, "kind": "group",
                            "title": "bench", "member_ids": members }),
                )
                .await?,
        )
    }

    /// Threads of consecutive users: thread t holds users[t*m .. t*m+m].
    pub async fn threads(
        &self,
        company: Uuid,
        users: &[BenchUser],
        members: usize,
    ) -> BenchResult<Vec<Uuid>> {
        let groups: Vec<Vec<Uuid>> = users
            .chunks(members.max(1))
            .map(|c| c.iter().map(|u| u.id).collect())
            .collect();
        stream::iter(groups)
            .map(|ids| async move { self.thread(company, &ids).await })
            .buffered(SETUP_CONCURRENCY / 4)
            .try_collect()
            .await
    }
}

/// A layout of T threads of M members, one session per member.
pub struct World {
    pub shared: Arc<Shared>,
    pub sessions: Vec<mpsc::UnboundedSender<Command>>,
    /// Sessions in each thread.
    pub members: Vec<Vec<usize>>,
}

/// Everything the sessions saw, merged.
pub struct Merged {
    pub acked: Vec<Acked>,
    pub received: HashMap<(usize, usize), SeqTracker>,
    pub ack: Histogram<u64>,
    pub delivery: Histogram<u64>,
    pub receipt_delivered: Histogram<u64>,
    pub receipt_read: Histogram<u64>,
    pub sync: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    pub closed_by_server: BTreeMap<String, u64>,
}

impl Merged {
    pub fn new() -> BenchResult<Self> {
        Ok(Merged {
            acked: Vec::new(),
            received: HashMap::new(),
            ack: histogram()?,
            delivery: histogram()?,
            receipt_delivered: histogram()?,
            receipt_read: histogram()?,
            sync: histogram()?,
            errors: BTreeMap::new(),
            closed_by_server: BTreeMap::new(),
        })
    }

    pub fn add(&mut self, report: SessionReport) -> BenchResult<()> {
        self.acked.extend(report.acked);
        for (thread, tracker) in report.received {
            self.received.insert((report.session, thread), tracker);
        }
        self.ack.add(&report.ack)?;
        self.delivery.add(&report.delivery)?;
        self.receipt_delivered.add(&report.receipt_delivered)?;
        self.receipt_read.add(&report.receipt_read)?;
        self.sync.add(&report.sync)?;
        for (code, n) in report.errors {
            *self.errors.entry(code).or_default() += n;
        }
        if let Some(why) = report.closed_by_server {
            *self.closed_by_server.entry(why).or_default() += 1;
        }
        Ok(())
    }
}

/// Opens one session per user, at most `concurrency` connecting at once.
/// Each session's task starts as soon as its chat:ready is in, so early
/// sessions answer the server's pings while later ones still connect.
/// Returns the command senders in user order and each one's chat:ready.
pub async fn connect_all(
    target: &Target,
    users: &[BenchUser],
    shared: &Arc<Shared>,
    behaviour: impl Fn(usize) -> Behaviour,
    concurrency: usize,
    on_ready: impl Fn(),
) -> BenchResult<(Vec<mpsc::UnboundedSender<Command>>, Vec<Ready>)> {
    let mut opened: Vec<(usize, mpsc::UnboundedSender<Command>, Ready)> =
        stream::iter(users.iter().enumerate())
            .map(|(i, user)| {
                let url = target.ws_url(i);
                let (on_ready, behaviour) = (&on_ready, &behaviour);
                async move {
                    let (ws, ready) = client::open(&url, &user.token).await?;
                    on_ready();
                    let session = client::spawn(i, ws, shared.clone(), behaviour(i))?;
                    Ok::<_, crate::BenchError>((i, session, ready))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
    opened.sort_by_key(|(i, _, _)| *i);
    Ok(opened.into_iter().map(|(_, s, r)| (s, r)).unzip())
}

impl World {
    /// Creates the tenant and connects every session.
    pub async fn build(
        target: &Target,
        threads: usize,
        members: usize,
        body_bytes: usize,
        behaviour: impl Fn(usize) -> Behaviour,
        concurrency: usize,
    ) -> BenchResult<Self> {
        let admin = Admin::new(target)?;
        let company = admin.company().await?;
        let users = admin.users(company, threads * members).await?;
        let thread_ids = admin.threads(company, &users, members).await?;
        let sizes = vec![members; thread_ids.len()];
        let shared = Arc::new(Shared::new(thread_ids, sizes, body_bytes));
        let (sessions, _) =
            connect_all(target, &users, &shared, behaviour, concurrency, || {}).await?;
        let members = (0..threads)
            .map(|t| (t * members..(t + 1) * members).collect())
            .collect();
        Ok(World {
            shared,
            sessions,
            members,
        })
    }

    /// Asks every session for what it saw since the last report.
    pub async fn collect(&self) -> BenchResult<Merged> {
        collect(&self.sessions).await
    }

    pub fn close(&self) {
        for session in &self.sessions {
            let _ = session.send(Command::Close);
        }
    }
}

pub async fn collect(sessions: &[mpsc::UnboundedSender<Command>]) -> BenchResult<Merged> {
    let mut merged = Merged::new()?;
    for session in sessions {
        let (tx, rx) = oneshot::channel();
        if session.send(Command::Report(tx)).is_err() {
            continue;
        }
        if let Ok(Ok(report)) = tokio::time::timeout(REPORT_TIMEOUT, rx).await {
            merged.add(report)?;
        }
    }
    Ok(merged)
}
