//! `search`: full-text search latency over a large history. Seeds one
//! company with `--messages` messages in `--threads` threads, straight
//! into Postgres with COPY, then asks `GET /api/search` a fixed set of
//! queries, from the rarest word to one most messages hold, as a user who
//! is a member of every thread (so every message is in scope: the worst
//! case for the membership filter).
//!
//! The threads and memberships are made through the admin API, so they
//! are real; the messages go in with one COPY, and the same transaction
//! sets each thread's `last_seq` to its highest seq, as the server's
//! sends would have. Bodies are words from a made-up vocabulary of
//! `VOCABULARY` words drawn log-uniformly by rank (roughly Zipf's law, as
//! in real text): the word of rank 0 is in about half the messages, one of
//! rank 4000 in a few hundred of a million.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{stream, SinkExt, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::latency::{histogram, record, Summary};
use crate::report::{Meters, RunReport, Watch};
use crate::world::{Admin, Target};
use crate::BenchResult;

/// Words in the made-up vocabulary.
const VOCABULARY: u64 = 5000;
/// Syllables words are made of (16, so a word is its rank in base 16).
const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze", "ba", "do", "fi", "gu", "ho", "ja",
];
/// Rows per COPY chunk handed to the socket.
const CHUNK_ROWS: usize = 5000;
/// Seconds between seeded messages' creation times.
const SPACING_MICROS: i64 = 30_000_000;

pub struct SearchLoad {
    pub messages: usize,
    pub threads: usize,
    pub words_per_message: usize,
    /// Times each query is asked.
    pub repeat: usize,
    pub limit: usize,
    /// Search as this user (and their company's seeded history) instead
    /// of seeding anew.
    pub reuse_searcher: Option<Uuid>,
    pub database_url: String,
}

/// The word of this rank: its base-16 digits as syllables, so distinct
/// ranks are distinct words.
pub fn word(rank: u64) -> String {
    let mut digits = Vec::new();
    let mut n = rank;
    loop {
        digits.push(SYLLABLES[(n % 16) as usize]);
        n /= 16;
        if n == 0 {
            break;
        }
    }
    // Every word at least three syllables long, so none is an English
    // stop word or a single letter.
    while digits.len() < 3 {
        digits.push("ka");
    }
    digits.concat()
}

/// splitmix64: a fixed sequence, so every seed of the same size holds
/// the same text.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A rank drawn log-uniformly from 0..VOCABULARY: P(rank r) ~ 1/(r+1).
    fn rank(&mut self) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((VOCABULARY as f64 + 1.0).powf(u) - 1.0).floor() as u64 % VOCABULARY
    }
}

/// The queries asked, by label: what each one exercises.
fn queries() -> Vec<(&'static str, String)> {
    vec![
        ("rare", word(4000)),
        ("uncommon", word(300)),
        ("medium", word(30)),
        ("frequent", word(3)),
        ("commonest", word(0)),
        ("two_words", format!("{} {}", word(3), word(30))),
        ("phrase", format!("\"{} {}\"", word(0), word(1))),
        ("minus", format!("{} -{}", word(3), word(0))),
        ("absent", "nothingmatchesthis".into()),
    ]
}

struct Seeded {
    company: Uuid,
    searcher: Uuid,
    token: String,
    threads: Vec<Uuid>,
    seed_s: f64,
}

async fn seed(
    target: &Target,
    load: &SearchLoad,
    db: &tokio_postgres::Client,
) -> BenchResult<Seeded> {
    let admin = Admin::new(target)?;
    let company = admin.company().await?;
    let started = Instant::now();
    // The searcher, and one other member per thread (a handful, reused).
    let users = admin.users(company, 11).await?;
    let searcher = users[0].clone();
    let others: Vec<Uuid> = users[1..].iter().map(|u| u.id).collect();
    let threads: Vec<(Uuid, Uuid)> = stream::iter(0..load.threads)
        .map(|t| {
            let (admin, other) = (&admin, others[t % others.len()]);
            async move {
                let thread = admin.thread(company, &[searcher.id, other]).await?;
                Ok::<_, crate::BenchError>((thread, other))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    eprintln!(
        "search: {} threads made in {:.1} s; copying {} messages",
        threads.len(),
        started.elapsed().as_secs_f64(),
        load.messages
    );

    db.batch_execute("BEGIN").await?;
    let sink = db
        .copy_in(
            "COPY messages (id, thread_id, company_id, seq, sender_id, client_msg_id, kind, \
             body, created_at) FROM STDIN",
        )
        .await?;
    futures_util::pin_mut!(sink);
    let mut random = Random(0x5EED);
    // Message g goes to thread g % T as its seq g / T + 1, created at
    // first + g * spacing: seqs and times both rise, as sends make them.
    let first_micros = chrono_now_micros() - load.messages as i64 * SPACING_MICROS;
    let mut chunk = String::new();
    let copy_started = Instant::now();
    for g in 0..load.messages {
        let (thread, other) = threads[g % threads.len()];
        let seq = g / threads.len() + 1;
        let sender = if g % 3 == 0 { searcher.id } else { other };
        let mut body = String::new();
        for i in 0..load.words_per_message.max(1) {
            if i > 0 {
                body.push(' ');
            }
            body.push_str(&word(random.rank()));
        }
        let created = first_micros + g as i64 * SPACING_MICROS;
        // The server's ids are UUIDv7 of the moment it made the message,
        // and search orders by them: these are of the made-up moment.
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            created.div_euclid(1_000_000) as u64,
            (created.rem_euclid(1_000_000) * 1000) as u32,
        ));
        chunk.push_str(&format!(
            "{id}\t{thread}\t{company}\t{seq}\t{sender}\t{}\ttext\t{body}\t{}\n",
            Uuid::new_v4(),
            timestamp(created)
        ));
        if (g + 1) % CHUNK_ROWS == 0 {
            sink.send(Bytes::from(std::mem::take(&mut chunk))).await?;
        }
        if (g + 1) % 100_000 == 0 {
            eprintln!(
                "search: {} rows copied ({:.0} rows/s)",
                g + 1,
                (g + 1) as f64 / copy_started.elapsed().as_secs_f64()
            );
        }
    }
    if !chunk.is_empty() {
        sink.send(Bytes::from(chunk)).await?;
    }
    let copied = sink.finish().await?;
    db.execute(
        "UPDATE threads t SET last_seq = c.last
         FROM (SELECT thread_id, max(seq) AS last FROM messages
               WHERE company_id = $1 GROUP BY thread_id) c
         WHERE t.id = c.thread_id",
        &[&company],
    )
    .await?;
    db.batch_execute("COMMIT").await?;
    // As autovacuum would soon: the planner needs to know how common
    // each word is, and how many threads the searcher is in.
    db.batch_execute("ANALYZE messages; ANALYZE memberships; ANALYZE threads")
        .await?;
    let seed_s = started.elapsed().as_secs_f64();
    eprintln!(
        "search: {copied} rows committed, {:.0} rows/s through COPY; seeded in {seed_s:.1} s",
        copied as f64 / copy_started.elapsed().as_secs_f64()
    );
    Ok(Seeded {
        company,
        searcher: searcher.id,
        token: searcher.token,
        threads: threads.into_iter().map(|(t, _)| t).collect(),
        seed_s,
    })
}

fn chrono_now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Microseconds since the epoch as Postgres reads a timestamptz.
fn timestamp(micros: i64) -> String {
    format!(
        "{}.{:06}+00",
        epoch_date_time(micros.div_euclid(1_000_000)),
        micros.rem_euclid(1_000_000)
    )
}

/// "YYYY-MM-DD HH:MM:SS" of a Unix time (UTC), by the civil-from-days rule.
fn epoch_date_time(seconds: i64) -> String {
    let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

async fn reuse(
    target: &Target,
    searcher: Uuid,
    db: &tokio_postgres::Client,
) -> BenchResult<Seeded> {
    let row = db
        .query_one("SELECT company_id FROM users WHERE id = $1", &[&searcher])
        .await?;
    let company: Uuid = row.get(0);
    let threads = db
        .query(
            "SELECT thread_id FROM memberships WHERE user_id = $1 ORDER BY thread_id",
            &[&searcher],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let token = Admin::new(target)?.token_for(searcher).await?;
    Ok(Seeded {
        company,
        searcher,
        token,
        threads,
        seed_s: 0.0,
    })
}

pub async fn run(target: &Target, load: &SearchLoad, watch: &Watch) -> BenchResult<RunReport> {
    let (db, connection) = tokio_postgres::connect(&load.database_url, NoTls).await?;
    tokio::spawn(connection);
    let seeded = match load.reuse_searcher {
        Some(searcher) => reuse(target, searcher, &db).await?,
        None => seed(target, load, &db).await?,
    };
    let in_company: i64 = db
        .query_one(
            "SELECT count(*) FROM messages WHERE company_id = $1",
            &[&seeded.company],
        )
        .await?
        .get(0);
    let index_bytes: i64 = db
        .query_one("SELECT pg_relation_size('messages_search_words')", &[])
        .await?
        .get(0);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = target.http().trim_end_matches('/').to_string();
    let mut asked = queries();
    if let Some(thread) = seeded.threads.first() {
        asked.push((
            "one_thread",
            format!("{}&thread_id={thread}", encode(&word(0))),
        ));
    }
    let mut report = RunReport::new(
        "search",
        json!({ "messages": in_company, "threads": seeded.threads.len(),
                "words_per_message": load.words_per_message, "repeat": load.repeat,
                "limit": load.limit }),
    );
    let mut all = histogram()?;
    let mut matches = serde_json::Map::new();
    let meters = Meters::start(watch);
    let started = Instant::now();
    for (label, q) in &asked {
        // The thread-narrowed query is already encoded with its thread.
        let query = if *label == "one_thread" {
            q.clone()
        } else {
            encode(q)
        };
        let url = format!("{base}/api/search?limit={}&q={query}", load.limit);
        let mut h = histogram()?;
        let mut returned = 0;
        for _ in 0..load.repeat.max(1) {
            let began = Instant::now();
            let response = http.get(&url).bearer_auth(&seeded.token).send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            let micros = began.elapsed().as_micros() as u64;
            if !status.is_success() {
                return Err(format!("search {label}: {status} {body}").into());
            }
            returned = body["results"].as_array().map_or(0, Vec::len);
            record(&mut h, micros);
            record(&mut all, micros);
        }
        matches.insert(label.to_string(), json!({ "q": q, "page": returned }));
        eprintln!("{}", Summary::of(&h).line(label));
        report.latency.insert(label.to_string(), Summary::of(&h));
    }
    report.duration_s = started.elapsed().as_secs_f64();
    report.resources = meters.finish(0);
    report.latency.insert("all".into(), Summary::of(&all));
    // How many messages each word query matches, for reading the latencies.
    for (label, q) in queries().iter() {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM messages WHERE company_id = $1 AND deleted_at IS NULL
                   AND search_words @@ websearch_to_tsquery('english', $2)",
                &[&seeded.company, q],
            )
            .await?
            .get(0);
        if let Some(entry) = matches.get_mut(*label) {
            entry["matching"] = json!(n);
        }
    }
    report.extra = json!({
        "seed_s": seeded.seed_s,
        "company_id": seeded.company,
        "searcher": seeded.searcher,
        "gin_index_bytes": index_bytes,
        "queries": matches,
    });
    Ok(report)
}

/// A query-string value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_ranks_favour_the_first() {
        assert_eq!(word(0), "kakaka");
        assert_ne!(word(1), word(16));
        let mut random = Random(1);
        let draws: Vec<u64> = (0..100_000).map(|_| random.rank()).collect();
        let zero = draws.iter().filter(|r| **r == 0).count();
        let late = draws.iter().filter(|r| **r == 4000).count();
        assert!(zero > 5000 && late < 20, "{zero} {late}");
        assert!(draws.iter().all(|r| *r < VOCABULARY));
    }

    #[test]
    fn times_are_what_postgres_reads() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000000+00");
        assert_eq!(
            timestamp(1_796_608_123_456_789),
            "2026-12-07 01:48:43.456789+00"
        );
    }
}
