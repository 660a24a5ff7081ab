//! `airlock-bench`: the benchmark harness of DESIGN §6. It runs the real `airlock-bridge` and
//! `airlock-connector` binaries over loopback with simulated visitors and a fake agent with a
//! set reply time, measures relay overhead, delta latency, throughput, capacity and footprint on
//! SQLite (and PostgreSQL when given), and reports each figure next to a floor measured in the
//! same run — a bare HTTP round trip, a bare SQLite commit, a bare PostgreSQL commit — so the
//! ratios hold on a noisy machine. Writes `results.json`, `results.md` and two SVG charts.
//!
//! `just bench` runs it in full; `--quick` only checks that it works (CI).

mod agent;
mod chart;
mod measure;
mod procs;
mod report;
mod stats;
mod visitor;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use agent::FakeAgent;
use measure::capacity::{Capacity, Hold};
use measure::throughput::Point;
use measure::{capacity, floors, relay, throughput};
use procs::{Backend, Bins, Bridge, Connector};
use report::Row;
use stats::Latency;

#[derive(Parser)]
#[command(
    name = "airlock-bench",
    about = "Measure Airlock against the budgets of DESIGN §6"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Few samples and short windows: checks that the harness works; the timings mean little.
    #[arg(long)]
    quick: bool,
    /// Where results.json, results.md and the charts are written.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Also measure on PostgreSQL: a fresh schema on this server for each bridge.
    #[arg(long, env = "AIRLOCK_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Where airlock-bridge and airlock-connector are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// How many idle visitors the capacity runs hold (default: 10,000, or 200 with --quick).
    #[arg(long)]
    held: Option<usize>,
    /// Concurrent visitors at each throughput point, comma-separated (default: 1,4,16,64,256, or
    /// 1,8 with --quick).
    #[arg(long, value_delimiter = ',')]
    loads: Option<Vec<u32>>,
    /// Seconds each throughput point is counted over (default: 10, or 1 with --quick).
    #[arg(long)]
    window: Option<u64>,
}

#[derive(Subcommand)]
enum Sub {
    /// The floor's minimal HTTP server (used by the harness itself).
    #[command(hide = true)]
    FloorServer,
}

/// How much of everything: the full run or the quick check.
struct Plan {
    samples: usize,
    /// Concurrent visitors at each throughput point.
    loads: Vec<u32>,
    window: Duration,
    /// Visitors sending while the loaded overhead is measured.
    background: u32,
    held: usize,
    probes: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                samples: 40,
                loads: vec![1, 8],
                window: Duration::from_secs(1),
                background: 4,
                held: 200,
                probes: 5,
            }
        } else {
            Plan {
                samples: 1000,
                loads: vec![1, 4, 16, 64, 256],
                window: Duration::from_secs(10),
                background: 16,
                held: 10_000,
                probes: 50,
            }
        }
    }
}

/// The agent's reply time while relay overhead is measured (subtracted from each sample).
const AGENT_DELAY: Duration = Duration::from_millis(20);

/// Everything measured, as written to `results.json`.
#[derive(Serialize)]
struct Results {
    mode: &'static str,
    machine: Machine,
    floors: Floors,
    backends: Vec<BackendResults>,
    rows: Vec<Row>,
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    cpu: String,
    kernel: String,
}

#[derive(Serialize)]
struct Floors {
    http_round_trip: Latency,
    sqlite_commit: Latency,
    /// Only when PostgreSQL is measured.
    #[serde(flatten)]
    postgres: Option<PostgresFloors>,
    /// The bare HTTP server's RSS at rest, and holding `held` idle requests.
    server_idle_rss_kib: Option<u64>,
    server_held_rss_kib: Option<u64>,
    held: usize,
}

/// PostgreSQL's own floors: a bare commit back to back, and paced as the idle relay overhead's
/// messages are (one each [`AGENT_DELAY`]).
#[derive(Serialize)]
struct PostgresFloors {
    postgres_commit: Latency,
    postgres_commit_idle: Latency,
}

#[derive(Serialize)]
struct BackendResults {
    backend: &'static str,
    startup_ms: f64,
    idle_rss_kib: Option<u64>,
    overhead_idle: Latency,
    overhead_loaded: Latency,
    overhead_idle_halves: relay::Halves,
    overhead_loaded_halves: relay::Halves,
    delta: Latency,
    throughput: Vec<Point>,
    capacity: Vec<Capacity>,
    /// Raw samples, for the charts.
    #[serde(skip)]
    overhead_idle_ms: Vec<f64>,
    #[serde(skip)]
    overhead_loaded_ms: Vec<f64>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(Sub::FloorServer) = cli.command {
        return runtime.block_on(floors::serve_floor());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    raise_open_files_limit();
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let bins = Bins::locate(cli.bin_dir.as_deref())?;
    let mut plan = Plan::new(cli.quick);
    plan.held = cli.held.unwrap_or(plan.held);
    plan.loads = cli.loads.unwrap_or(plan.loads);
    plan.window = cli.window.map_or(plan.window, Duration::from_secs);
    std::fs::create_dir_all(&cli.out)
        .with_context(|| format!("cannot create {}", cli.out.display()))?;

    eprintln!("floors: bare HTTP round trips and bare SQLite commits");
    let http_floor = Latency::of_ms(&floors::http_round_trips(plan.samples).await?);
    let commit_floor = Latency::of_ms(&floors::sqlite_commits(plan.samples).await?);
    let (server_idle_kib, server_held_kib) = floors::server_rss(plan.held).await?;
    let mut postgres = None;
    if let Some(base) = &cli.postgres {
        eprintln!("floors: bare PostgreSQL commits, back to back and paced");
        let commits = floors::postgres_commits(base, plan.samples, None).await?;
        let paced = floors::postgres_commits(base, plan.samples / 2, Some(AGENT_DELAY)).await?;
        postgres = Some(PostgresFloors {
            postgres_commit: Latency::of_ms(&commits),
            postgres_commit_idle: Latency::of_ms(&paced),
        });
    }
    let floors = Floors {
        http_round_trip: http_floor,
        sqlite_commit: commit_floor,
        postgres,
        server_idle_rss_kib: server_idle_kib,
        server_held_rss_kib: server_held_kib,
        held: plan.held,
    };

    let mut backends = vec![Backend::Sqlite];
    backends.extend(cli.postgres.clone().map(Backend::Postgres));
    let mut results = Vec::new();
    for backend in &backends {
        results.push(measure_backend(&bins, backend, &plan).await?);
    }

    let binary_bytes = std::fs::metadata(&bins.bridge)?.len();
    let rows = rows(&floors, &results, binary_bytes);
    let table = report::table(&rows);
    let results = Results {
        mode: if cli.quick { "quick" } else { "full" },
        machine: machine(),
        floors,
        backends: results,
        rows,
    };
    write_outputs(&cli.out, &results, &table)?;
    println!("{table}");
    eprintln!("wrote {}", cli.out.display());
    Ok(())
}

async fn measure_backend(
    bins: &Bins,
    backend: &Backend,
    plan: &Plan,
) -> anyhow::Result<BackendResults> {
    let name = backend.name();
    eprintln!("{name}: start-up, idle memory, deltas");
    let bridge = Bridge::start(bins, backend).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kib = bridge.rss_kib();
    // Before any connector polls: the harness claims the item it streams into itself.
    let delta = Latency::of_ms(&relay::deltas(&bridge, plan.samples).await?);

    eprintln!("{name}: relay overhead, idle and under load");
    let agent = FakeAgent::start(AGENT_DELAY).await?;
    let key = bridge.connector_key().await?;
    let connector = Connector::start(bins, &bridge, &key, &agent.url, 64)?;
    let idle = relay::overhead(&bridge, &agent, plan.samples).await?;
    let stop = CancellationToken::new();
    let counts = std::sync::Arc::default();
    let load: Vec<_> = (0..plan.background)
        .map(|_| {
            tokio::spawn(relay::keep_sending(
                bridge.url.clone(),
                std::sync::Arc::clone(&counts),
                stop.clone(),
            ))
        })
        .collect();
    let loaded = relay::overhead(&bridge, &agent, plan.samples / 2).await?;
    stop.cancel();
    for task in load {
        task.await??;
    }
    drop(connector);

    eprintln!("{name}: throughput");
    let instant = FakeAgent::start(Duration::ZERO).await?;
    let connectors = [
        Connector::start(bins, &bridge, &key, &instant.url, 64)?,
        Connector::start(bins, &bridge, &key, &instant.url, 64)?,
    ];
    let throughput = throughput::curve(&bridge, &plan.loads, plan.window).await?;
    drop(connectors);
    let startup_ms = stats::ms(bridge.startup);
    drop(bridge);

    let mut held = Vec::new();
    for hold in [Hold::LongPoll, Hold::Sse] {
        eprintln!("{name}: {} idle visitors held ({hold:?})", plan.held);
        let bridge = Bridge::start(bins, backend).await?;
        held.push(capacity::hold(&bridge, hold, plan.held, plan.probes).await?);
    }
    let (idle_ms, loaded_ms) = (idle.totals(), loaded.totals());
    Ok(BackendResults {
        backend: name,
        startup_ms,
        idle_rss_kib,
        overhead_idle: Latency::of_ms(&idle_ms),
        overhead_loaded: Latency::of_ms(&loaded_ms),
        overhead_idle_halves: idle.halves(),
        overhead_loaded_halves: loaded.halves(),
        delta,
        throughput,
        capacity: held,
        overhead_idle_ms: idle_ms,
        overhead_loaded_ms: loaded_ms,
    })
}

/// The table: each figure with its floor, ratio and budget.
fn rows(floors: &Floors, results: &[BackendResults], binary: u64) -> Vec<Row> {
    const HTTP50: &str = "HTTP round trip p50";
    const HTTP99: &str = "HTTP round trip p99";
    let (http, commit) = (&floors.http_round_trip, &floors.sqlite_commit);
    let commits_per_sec = 1000.0 / commit.mean_ms;
    let mib = |kib: Option<u64>| kib.map_or(f64::NAN, |k| k as f64 / 1024.0);
    let held_floor = format!("bare server holding {}", floors.held);
    let (server_idle, server_held) = (
        mib(floors.server_idle_rss_kib),
        mib(floors.server_held_rss_kib),
    );
    let mut rows = vec![
        Row::new("floor: bare HTTP round trip p50", "-", http.p50_ms, "ms"),
        Row::new("floor: bare HTTP round trip p99", "-", http.p99_ms, "ms"),
        Row::new("floor: bare SQLite commit, mean", "-", commit.mean_ms, "ms"),
        Row::new("floor: bare HTTP server RSS, idle", "-", server_idle, "MiB"),
        Row::new(
            format!("floor: bare HTTP server RSS, {} requests held", floors.held),
            "-",
            server_held,
            "MiB",
        ),
        Row::new(
            "floor: bare SQLite commits per second",
            "-",
            commits_per_sec,
            "/s",
        ),
    ];
    // On PostgreSQL every write is a round trip to the server's process: the idle overhead is
    // set against a bare commit paced as its messages are, the throughput against bare commits.
    let paced = format!(
        "bare PostgreSQL commit, one each {} ms",
        AGENT_DELAY.as_millis()
    );
    let pg = floors.postgres.as_ref().map(|pg| {
        (
            &pg.postgres_commit_idle,
            1000.0 / pg.postgres_commit.mean_ms,
        )
    });
    if let Some((idle, per_sec)) = pg {
        rows.extend([
            Row::new(format!("floor: {paced}, p50"), "-", idle.p50_ms, "ms"),
            Row::new(format!("floor: {paced}, p99"), "-", idle.p99_ms, "ms"),
            Row::new(
                "floor: bare PostgreSQL commits per second",
                "-",
                per_sec,
                "/s",
            ),
        ]);
    }
    for r in results {
        let b = r.backend;
        let postgres = b == Backend::POSTGRES;
        // The p50 of one half of an overhead (the two add up to about its p50): no budget or
        // floor of its own.
        let half = |when: &str, part: &str, latency: Latency| {
            Row::new(
                format!("relay overhead {when}: {part}, p50"),
                b,
                latency.p50_ms,
                "ms",
            )
        };
        let (idle_floor, idle, commits) = match pg {
            Some((idle, per_sec)) if postgres => (
                paced.as_str(),
                idle,
                ("bare PostgreSQL commits per second", per_sec),
            ),
            _ => (
                "HTTP round trip",
                http,
                ("bare SQLite commits per second", commits_per_sec),
            ),
        };
        let peak_point = r
            .throughput
            .iter()
            .max_by(|a, b| a.messages_per_sec.total_cmp(&b.messages_per_sec));
        let peak = peak_point.map_or(0.0, |p| p.messages_per_sec);
        let loaded_rss = r.throughput.iter().filter_map(|p| p.bridge_rss_kib).max();
        rows.extend([
            Row::new("relay overhead p50, idle", b, r.overhead_idle.p50_ms, "ms")
                .floor(&format!("{idle_floor} p50"), idle.p50_ms)
                .at_most(5.0),
            half(
                "idle",
                "send → agent's request",
                r.overhead_idle_halves.to_agent,
            ),
            half(
                "idle",
                "agent's answer → reply visible",
                r.overhead_idle_halves.from_agent,
            ),
            Row::new("relay overhead p99, idle", b, r.overhead_idle.p99_ms, "ms")
                .floor(&format!("{idle_floor} p99"), idle.p99_ms)
                .at_most(25.0),
            Row::new(
                "relay overhead p50, under load",
                b,
                r.overhead_loaded.p50_ms,
                "ms",
            )
            .floor(HTTP50, http.p50_ms)
            .at_most(5.0),
            half(
                "under load",
                "send → agent's request",
                r.overhead_loaded_halves.to_agent,
            ),
            half(
                "under load",
                "agent's answer → reply visible",
                r.overhead_loaded_halves.from_agent,
            ),
            Row::new(
                "relay overhead p99, under load",
                b,
                r.overhead_loaded.p99_ms,
                "ms",
            )
            .floor(HTTP99, http.p99_ms)
            .at_most(25.0),
            Row::new("delta, stream call → visible, p50", b, r.delta.p50_ms, "ms")
                .floor(HTTP50, http.p50_ms)
                .at_most(5.0),
            Row::new("delta, stream call → visible, p99", b, r.delta.p99_ms, "ms")
                .floor(HTTP99, http.p99_ms),
            Row::new("throughput, peak", b, peak, "msg/s")
                .floor_in(commits.0, commits.1, "/s")
                .at_least(5000.0),
        ]);
        if let Some(point) = peak_point {
            let at = format!("at peak ({} visitors)", point.visitors);
            rows.push(Row::new(
                format!("long-poll answers per message, {at}"),
                b,
                point.polls_per_message,
                "",
            ));
            if let Some(cpu) = point.bridge_cpu_ms_per_message {
                rows.push(Row::new(
                    format!("bridge CPU per message, {at}"),
                    b,
                    cpu,
                    "ms",
                ));
            }
            if let Some(cpu) = point.machine_cpu_ms_per_message {
                // 5,000 messages/s on 2 cores leave 0.4 ms of CPU per message for everything.
                rows.push(Row::new(
                    format!("machine CPU per message, all processes, {at}"),
                    b,
                    cpu,
                    "ms",
                ));
            }
        }
        for held in &r.capacity {
            let what = match held.hold {
                Hold::LongPoll => "long-polls",
                Hold::Sse => "SSE streams",
            };
            rows.push(
                Row::new(
                    format!("{} idle {what} held: bridge RSS", held.held),
                    b,
                    mib(held.rss_held_kib),
                    "MiB",
                )
                .floor(&held_floor, server_held)
                .at_most(150.0),
            );
            rows.push(
                Row::new(
                    format!("wake-up of 1 of {} {what}, p50", held.held),
                    b,
                    held.wake.p50_ms,
                    "ms",
                )
                .floor(HTTP50, http.p50_ms),
            );
        }
        rows.extend([
            Row::new("bridge RSS, idle", b, mib(r.idle_rss_kib), "MiB")
                .floor("bare server, idle", server_idle)
                .at_most(20.0),
            Row::new("bridge RSS, under load (peak)", b, mib(loaded_rss), "MiB"),
            Row::new(
                "bridge start-up (spawn → /healthz 200)",
                b,
                r.startup_ms,
                "ms",
            ),
        ]);
    }
    rows.push(Row::new(
        "bridge binary size",
        "-",
        binary as f64 / 1_048_576.0,
        "MiB",
    ));
    rows
}

fn write_outputs(out: &std::path::Path, results: &Results, table: &str) -> anyhow::Result<()> {
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    std::fs::write(out.join("results.md"), table)?;
    let named: Vec<(String, &[f64])> = results
        .backends
        .iter()
        .flat_map(|r| {
            [
                (
                    format!("{}, idle", r.backend),
                    r.overhead_idle_ms.as_slice(),
                ),
                (
                    format!("{}, under load", r.backend),
                    r.overhead_loaded_ms.as_slice(),
                ),
            ]
        })
        .collect();
    let latency: Vec<chart::Series<'_, f64>> = named
        .iter()
        .map(|(name, points)| chart::Series { name, points })
        .collect();
    std::fs::write(
        out.join("latency.svg"),
        chart::latency_cdf(
            "Relay overhead (agent time excluded)",
            &latency,
            &[("budget p50", 5.0), ("budget p99", 25.0)],
        ),
    )?;
    let curves: Vec<Vec<(u32, f64)>> = results
        .backends
        .iter()
        .map(|r| {
            r.throughput
                .iter()
                .map(|p| (p.visitors, p.messages_per_sec))
                .collect()
        })
        .collect();
    let series: Vec<chart::Series<'_, (u32, f64)>> = results
        .backends
        .iter()
        .zip(&curves)
        .map(|(r, points)| chart::Series {
            name: r.backend,
            points,
        })
        .collect();
    std::fs::write(
        out.join("throughput.svg"),
        chart::throughput_curve("Throughput against load", &series, Some(5000.0)),
    )?;
    Ok(())
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        kernel,
    }
}

/// Thousands of held connections need as many file descriptors, in this process and in the
/// bridge (which inherits the limit): raise the soft limit to the hard one.
fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
