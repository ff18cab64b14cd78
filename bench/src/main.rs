//! `confab-bench`: drives a running confab over real WebSockets and its
//! admin API, counts every message (missing, duplicated, out of order),
//! measures latencies, throughput and what the server and Postgres spent,
//! and sets each figure beside a same-run ceiling of this machine.
//! See docs/BENCHMARKS.md for how to run it.

mod ceiling_db;
mod ceiling_ws;
mod client;
mod connections;
mod counting;
mod fanout;
mod latency;
mod plot;
mod procstat;
mod receipts;
mod report;
mod search;
mod storm;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::fanout::{run_load, sustained, Load};
use crate::procstat::Watched;
use crate::report::{emit, RunReport, Watch};
use crate::world::{Target, World};

pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
pub type BenchResult<T> = Result<T, BenchError>;

#[derive(Parser)]
#[command(
    name = "confab-bench",
    about = "Load, latency and capacity benchmarks for a running confab"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Args, Clone)]
struct Global {
    /// Base URL of a confab node; repeat for a cluster (sessions spread
    /// round-robin, admin calls go to the first).
    #[arg(
        long = "url",
        global = true,
        env = "CONFAB_BENCH_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    urls: Vec<String>,
    /// The server's admin token.
    #[arg(long, global = true, env = "CONFAB_ADMIN_TOKEN", default_value = "")]
    admin_token: String,
    /// Server pid(s) for RSS and CPU; default: every process named confab.
    #[arg(long = "server-pid", global = true)]
    server_pids: Vec<u32>,
    /// Postgres pid(s) for CPU; default: every process named postgres.
    #[arg(long = "pg-pid", global = true)]
    pg_pids: Vec<u32>,
    /// Append each run's JSON line to this file as well as stdout.
    #[arg(long, global = true)]
    json_out: Option<PathBuf>,
    /// Characters in each message body.
    #[arg(long, global = true, default_value_t = 100)]
    body_bytes: usize,
    /// Sessions connecting at once during setup.
    #[arg(long, global = true, default_value_t = 256)]
    concurrency: usize,
    /// Postgres for ceiling-db (the server's database).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/confab"
    )]
    database_url: String,
}

#[derive(Args, Clone)]
struct Layout {
    /// Threads.
    #[arg(long, default_value_t = 10)]
    threads: usize,
    /// Members (one session each) per thread.
    #[arg(long, default_value_t = 50)]
    members: usize,
}

#[derive(Args, Clone)]
struct Ceilings {
    /// Also run ceiling-ws and ceiling-db with this layout and report ratios.
    #[arg(long)]
    with_ceilings: bool,
    /// Pool size and rows per commit for ceiling-db.
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

#[derive(Subcommand)]
enum Scenario {
    /// T threads of M members at an offered rate for a duration.
    Fanout {
        #[command(flatten)]
        layout: Layout,
        /// Messages per second over all threads; 0 = as fast as --window allows.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Most messages sent and not yet acked, with --rate 0.
        #[arg(long, default_value_t = 256)]
        window: u64,
        #[command(flatten)]
        ceilings: Ceilings,
    },
    /// Steps the offered rate until delivery p99 passes a bound or any
    /// message goes missing; reports the highest sustained rate.
    Ramp {
        #[command(flatten)]
        layout: Layout,
        #[arg(long, default_value_t = 100.0)]
        start_rate: f64,
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        #[arg(long, default_value_t = 1_000_000.0)]
        max_rate: f64,
        /// Seconds per step.
        #[arg(long, default_value_t = 10.0)]
        step_duration: f64,
        #[arg(long, default_value_t = 50.0)]
        p99_bound_ms: f64,
        #[arg(long, default_value_t = 256)]
        window: u64,
        #[command(flatten)]
        ceilings: Ceilings,
    },
    /// N idle sessions: connect rate and server RSS per session.
    Connections {
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        #[arg(long, default_value_t = 1)]
        sessions_per_user: usize,
        /// Users per thread.
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Seconds to hold the sessions open after they connected.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// Send → delivered → read round trips over pairs.
    Receipts {
        #[arg(long, default_value_t = 50)]
        pairs: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// N clients reconnect at once and catch up with chat:sync.
    Storm {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Messages each thread receives while its readers are away.
        #[arg(long, default_value_t = 20)]
        backlog: usize,
    },
    /// Full-text search latency over a seeded history (COPY into Postgres).
    Search {
        /// Messages to seed.
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        /// Threads they are spread over (round-robin).
        #[arg(long, default_value_t = 1000)]
        threads: usize,
        #[arg(long, default_value_t = 12)]
        words_per_message: usize,
        /// Times each query is asked.
        #[arg(long, default_value_t = 30)]
        repeat: usize,
        /// Results per page asked for.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Search an earlier run's history as this user (its searcher,
        /// printed as `searcher` in that run's JSON) instead of seeding.
        #[arg(long)]
        reuse_searcher: Option<uuid::Uuid>,
    },
    /// Durable rows/s straight into Postgres, in batches through a pool.
    CeilingDb {
        #[arg(long, default_value_t = 10)]
        threads: usize,
        #[arg(long, default_value_t = 16)]
        pool_size: usize,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Deliveries/s from a bare in-process WebSocket broadcaster.
    CeilingWs {
        #[command(flatten)]
        layout: Layout,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 256)]
        window: u64,
    },
    /// SVG plots from JSON lines: latency vs offered rate, RSS vs sessions.
    Plot {
        #[arg(long)]
        input: PathBuf,
        #[arg(long, default_value = "docs/bench")]
        out_dir: PathBuf,
    },
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

impl Global {
    fn target(&self) -> Target {
        Target {
            urls: self.urls.clone(),
            admin_token: self.admin_token.clone(),
        }
    }

    fn watch(&self) -> Watch {
        let server = if self.server_pids.is_empty() {
            Watched::Pids(procstat::pids_named("confab"))
        } else {
            Watched::Pids(self.server_pids.clone())
        };
        let postgres = if self.pg_pids.is_empty() {
            Watched::Named("postgres".into())
        } else {
            Watched::Pids(self.pg_pids.clone())
        };
        Watch { server, postgres }
    }
}

/// Runs both ceilings with the scenario's layout and sets the scenario's
/// figures beside them.
async fn add_ceilings(
    report: &mut RunReport,
    global: &Global,
    layout: &Layout,
    ceilings: &Ceilings,
    duration: Duration,
    window: u64,
) -> BenchResult<()> {
    let ws = ceiling_ws::run(
        layout.threads,
        layout.members,
        duration,
        window,
        global.body_bytes,
        global.concurrency,
    )
    .await?;
    let db = ceiling_db::run(
        &global.target(),
        &global.database_url,
        &ceiling_db::DbLoad {
            threads: layout.threads,
            pool_size: ceilings.pool_size,
            batch: ceilings.batch,
            duration,
            body_bytes: global.body_bytes,
        },
    )
    .await?;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let extra = json!({
        "ceiling_ws": ws,
        "ceiling_db": db,
        "fanout_vs_ceiling_ws": ratio(report.throughput.delivered_per_s, ws.deliveries_per_s),
        "sends_vs_ceiling_db": ratio(report.throughput.acked_per_s, db.rows_per_s),
    });
    match &mut report.extra {
        serde_json::Value::Object(map) => {
            if let serde_json::Value::Object(more) = extra {
                map.extend(more);
            }
        }
        other => *other = extra,
    }
    Ok(())
}

/// The fan-out layout's sessions, each a plain reader (fanout, ramp).
async fn fanout_world(target: &Target, layout: &Layout, global: &Global) -> BenchResult<World> {
    World::build(
        target,
        layout.threads,
        layout.members,
        global.body_bytes,
        |_| client::Behaviour::default(),
        global.concurrency,
    )
    .await
}

async fn run(cli: Cli) -> BenchResult<Vec<RunReport>> {
    let global = cli.global;
    let target = global.target();
    let watch = global.watch();
    let json_out = global.json_out.as_ref();
    let mut reports = Vec::new();
    match cli.command {
        Scenario::Fanout {
            layout,
            rate,
            duration,
            window,
            ceilings,
        } => {
            let world = fanout_world(&target, &layout, &global).await?;
            let load = Load {
                rate,
                duration: seconds(duration),
                window,
            };
            let params = json!({ "threads": layout.threads, "members": layout.members,
                "rate": rate, "duration_s": duration, "window": window,
                "body_bytes": global.body_bytes, "nodes": target.urls.len() });
            let mut report = run_load(&world, &load, "fanout", params, &watch).await?;
            world.close();
            if ceilings.with_ceilings {
                add_ceilings(
                    &mut report,
                    &global,
                    &layout,
                    &ceilings,
                    load.duration,
                    window,
                )
                .await?;
            }
            emit(&report, json_out)?;
            reports.push(report);
        }
        Scenario::Ramp {
            layout,
            start_rate,
            factor,
            max_rate,
            step_duration,
            p99_bound_ms,
            window,
            ceilings,
        } => {
            let world = fanout_world(&target, &layout, &global).await?;
            let mut rate = start_rate;
            let mut best: Option<RunReport> = None;
            let mut steps = Vec::new();
            while rate <= max_rate {
                let load = Load {
                    rate,
                    duration: seconds(step_duration),
                    window,
                };
                let params = json!({ "threads": layout.threads, "members": layout.members,
                    "rate": rate, "duration_s": step_duration, "p99_bound_ms": p99_bound_ms,
                    "body_bytes": global.body_bytes, "nodes": target.urls.len() });
                let step = run_load(&world, &load, "ramp-step", params, &watch).await?;
                emit(&step, json_out)?;
                let held = sustained(&step, p99_bound_ms);
                let clean = step.clean;
                steps.push(json!({ "rate": rate, "held": held,
                    "delivery_p99_ms": step.p99_ms("delivery"), "ack_p99_ms": step.p99_ms("ack") }));
                if !clean {
                    reports.push(step);
                    break;
                }
                if !held {
                    break;
                }
                best = Some(step);
                rate *= factor.max(1.01);
            }
            world.close();
            let mut report = best.unwrap_or_else(|| RunReport::new("ramp", json!({})));
            report.scenario = "ramp".into();
            report.params = json!({ "threads": layout.threads, "members": layout.members,
                "start_rate": start_rate, "factor": factor, "step_duration_s": step_duration,
                "p99_bound_ms": p99_bound_ms, "body_bytes": global.body_bytes });
            report.extra = json!({
                "highest_sustained_msgs_per_s": report.throughput.offered_msgs_per_s,
                "steps": steps,
            });
            if ceilings.with_ceilings {
                add_ceilings(
                    &mut report,
                    &global,
                    &layout,
                    &ceilings,
                    seconds(step_duration),
                    window,
                )
                .await?;
            }
            emit(&report, json_out)?;
            reports.push(report);
        }
        Scenario::Connections {
            sessions,
            sessions_per_user,
            members,
            hold,
        } => {
            let idle = connections::Idle {
                sessions,
                sessions_per_user,
                members,
                hold: seconds(hold),
                concurrency: global.concurrency,
            };
            let report = connections::run(&target, &idle, &watch).await?;
            emit(&report, json_out)?;
            reports.push(report);
        }
        Scenario::Receipts { pairs, duration } => {
            let report = receipts::run(
                &target,
                pairs,
                seconds(duration),
                global.body_bytes,
                global.concurrency,
                &watch,
            )
            .await?;
            emit(&report, json_out)?;
            reports.push(report);
        }
        Scenario::Storm {
            clients,
            members,
            backlog,
        } => {
            let storm = storm::Storm {
                clients,
                members,
                backlog,
                concurrency: global.concurrency,
                body_bytes: global.body_bytes,
            };
            let report = storm::run(&target, &storm, &watch).await?;
            emit(&report, json_out)?;
            reports.push(report);
        }
        Scenario::Search {
            messages,
            threads,
            words_per_message,
            repeat,
            limit,
            reuse_searcher,
        } => {
            let load = search::SearchLoad {
                messages,
                threads: threads.max(1),
                words_per_message,
                repeat,
                limit,
                reuse_searcher,
                database_url: global.database_url.clone(),
            };
            let report = search::run(&target, &load, &watch).await?;
            emit(&report, json_out)?;
            reports.push(report);
        }
        Scenario::CeilingDb {
            threads,
            pool_size,
            batch,
            duration,
        } => {
            let load = ceiling_db::DbLoad {
                threads,
                pool_size,
                batch,
                duration: seconds(duration),
                body_bytes: global.body_bytes,
            };
            let db = ceiling_db::run(&target, &global.database_url, &load).await?;
            let mut report = RunReport::new(
                "ceiling-db",
                json!({ "threads": threads, "pool_size": pool_size, "batch": batch,
                        "duration_s": duration }),
            );
            report.duration_s = duration;
            report.acked = db.rows;
            report.throughput.acked_per_s = db.rows_per_s;
            report.latency.insert("commit".into(), db.commit);
            report.extra = json!(db);
            emit(&report, json_out)?;
            reports.push(report);
        }
        Scenario::CeilingWs {
            layout,
            duration,
            window,
        } => {
            let ws = ceiling_ws::run(
                layout.threads,
                layout.members,
                seconds(duration),
                window,
                global.body_bytes,
                global.concurrency,
            )
            .await?;
            let mut report = RunReport::new(
                "ceiling-ws",
                json!({ "threads": layout.threads, "members": layout.members,
                        "duration_s": duration, "window": window }),
            );
            report.duration_s = duration;
            report.counts.delivered = ws.deliveries;
            report.counts.missing = ws.missing;
            report.throughput.delivered_per_s = ws.deliveries_per_s;
            report.latency.insert("delivery".into(), ws.delivery);
            report.resources.bench_cpu = ws.bench_cpu;
            report.extra = json!(ws);
            emit(&report, json_out)?;
            reports.push(report);
        }
        Scenario::Plot { input, out_dir } => {
            for path in plot::run(&input, &out_dir)? {
                eprintln!("wrote {path}");
            }
        }
    }
    Ok(reports)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // 10,000 sessions need as many descriptors on this side too.
    confab::startup::raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("confab-bench: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(reports) if reports.iter().all(|r| r.clean) => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("confab-bench: FAILED — messages went missing, were duplicated or arrived out of order");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("confab-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
