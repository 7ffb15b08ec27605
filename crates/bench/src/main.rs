//! `keyframe-bench`: measures Keyframe on this machine against its targets and prints medians,
//! p50/p99 and ratios. Not a test: it asserts nothing and only reports.
//!
//! It runs the real thing: a `keyframe serve` child process (the sibling binary in the same
//! target directory), local Postgres and NATS, HTTP over loopback; and the same `keyframe serve`
//! as the embedded deployment, on an SQLite file with neither. Every run uses a fresh database
//! and NATS prefix (or data directory) and removes them afterwards.
//!
//! Build and run: `cargo build --release --bin keyframe --bin keyframe-bench &&
//! target/release/keyframe-bench`

mod credits;
mod embedded;
mod load;
mod logins;
mod quality;
mod report;
mod server;
mod streams;
mod videos;

use anyhow::Context as _;
use clap::Parser;
use report::{Report, Stats};
use server::{Scratch, Server};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The load generator shares the two cores with what it measures, so it should take as little
/// as it can: the same allocator as `keyframe` (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Options.
#[derive(Debug, Parser)]
#[command(name = "keyframe-bench")]
struct Args {
    /// The `keyframe` binary to run (default: beside this one).
    #[arg(long)]
    keyframe_bin: Option<PathBuf>,
    /// Postgres connection to create and drop the scratch databases with; its query string
    /// (TLS mode) is used for every connection of the run, the service's and the raw inserts'
    /// alike. TLS over loopback costs CPU and protects nothing, so it is off by default.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")]
    admin_database_url: String,
    /// NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Concurrent clients in the HTTP and raw-insert phases.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds per round of each load phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds per load phase; the report quotes the median round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Events in the relay and replay backlog.
    #[arg(long, default_value_t = 200_000)]
    backlog: i64,
    /// Which phases to run (comma-separated): `serve` (commands, queries, logins, lag),
    /// `embedded` (start-up, commands, lists, lag and memory of the embedded deployment, which
    /// needs neither Postgres nor NATS),
    /// `backlog` (relay and replay), `videos` (analysis against decoding, uploads), `credits`
    /// (job requests with their reservation, distinct users against one shared user), `logins`
    /// (how long each kind of refused login takes), `streams` (the database's load with 1 and
    /// 1,000 idle live progress streams open), `quality` (the analysis's cuts, fades and
    /// dissolves against labelled clips, beside PySceneDetect's when installed; needs only
    /// ffmpeg).
    #[arg(long, value_delimiter = ',', default_values = ["serve", "embedded", "backlog", "videos", "credits", "logins", "streams", "quality"])]
    phases: Vec<String>,
    /// Refused logins of each kind in the `logins` phase.
    #[arg(long, default_value_t = 200)]
    login_samples: usize,
}

/// List clients running beside the logins: a light, steady load whose latency shows whether
/// hashing takes the cores from other requests.
const LIST_BESIDE_LOGINS: usize = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let keyframe = match &args.keyframe_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("keyframe"),
    };
    // Only the quality phase runs without a server.
    anyhow::ensure!(
        keyframe.exists() || args.phases.iter().all(|p| p == "quality"),
        "{} not found: build it first (cargo build --release --bin keyframe --bin keyframe-bench)",
        keyframe.display()
    );
    let round = Duration::from_secs(args.seconds);
    let mut report = Report::default();
    println!(
        "keyframe-bench: {} clients, {} rounds of {}s, backlog {}",
        args.concurrency, args.rounds, args.seconds, args.backlog
    );

    // Phase 1: commands, queries and projection lag against a running `keyframe serve`.
    if args.phases.iter().any(|p| p == "serve") {
        let scratch = Scratch::create(&args.admin_database_url, &args.nats_url, "serve").await?;
        let server = Server::start(&keyframe, &scratch, &["serve"]).await?;
        let client = load::Client::new(&server.base_url)?;
        let token = client.register_and_login().await.context("bench user")?;

        // The pipeline's own latency, with nothing else running: commit to visible.
        let (_, mut idle_lag) = load::create_projects(&client, &token, &scratch.database_url, 0, round).await?;
        report.line("projection lag, idle", Stats::of(&mut idle_lag).to_string(), None);

        let mut raw_rates = Vec::new();
        let mut command_rates = Vec::new();
        let mut command_latency = Vec::new();
        let mut lag = Vec::new();
        for _ in 0..args.rounds {
            let raw = load::raw_inserts(&scratch.database_url, args.concurrency, round).await?;
            raw_rates.push(raw.rate());
            let (commands, lags) =
                load::create_projects(&client, &token, &scratch.database_url, args.concurrency, round).await?;
            command_rates.push(commands.rate());
            command_latency.extend(commands.latencies);
            lag.extend(lags);
        }
        // The tables are seconds old, younger than autovacuum's first look (it wakes once a
        // minute), so Postgres would plan the lists with no statistics at all: a bitmap scan of
        // every one of the owner's rows and a sort, 27 ms a query at 100,000 projects. A running
        // service's tables have statistics; give these theirs.
        load::analyze(&scratch.database_url).await?;
        let mut list_rates = Vec::new();
        let mut list_latency = Vec::new();
        for _ in 0..args.rounds {
            let lists = load::list_projects(&client, &token, args.concurrency, round).await?;
            list_rates.push(lists.rate());
            list_latency.extend(lists.latencies);
        }
        let raw_median = report::median(&mut raw_rates);
        let command_median = report::median(&mut command_rates);
        report.line(
            "raw INSERT+COMMIT (Postgres, c=32)",
            format!("{raw_median:.0} tx/s (rounds: {})", report::list(&raw_rates)),
            None,
        );
        report.line(
            "create project over HTTP (c=32)",
            report::requests(command_median, &command_rates, &Stats::of(&mut command_latency)),
            None,
        );
        report.line(
            "  commands / raw inserts",
            format!("{:.0} %", 100.0 * command_median / raw_median),
            Some(("≥ 60 %", command_median / raw_median >= 0.6)),
        );
        report.line(
            "  create p99",
            format!("{:.1} ms", Stats::of(&mut command_latency).p99_ms()),
            Some(("≤ 20 ms", Stats::of(&mut command_latency).p99_ms() <= 20.0)),
        );
        let list_median = report::median(&mut list_rates);
        let list_stats = Stats::of(&mut list_latency);
        report.line(
            "list projects over HTTP (c=32)",
            report::requests(list_median, &list_rates, &list_stats),
            Some(("≥ 5000 req/s", list_median >= 5000.0)),
        );
        report.line(
            "  list p99",
            format!("{:.1} ms", list_stats.p99_ms()),
            Some(("≤ 20 ms", list_stats.p99_ms() <= 20.0)),
        );
        // Logins (production argon2id, 16 clients on an account each) beside a light list load, against the same list
        // load alone: hashing is bounded so the other endpoints keep their cores. What the
        // command rounds left to vacuum and analyze is done first, so that neither measurement
        // meets autovacuum or statistics from before those rounds.
        load::vacuum(&scratch.database_url).await?;
        let (bench_token, _) = client.register_and_login_with_credentials().await?;
        let mut credentials = Vec::new();
        for _ in 0..16 {
            credentials.push(client.register_and_login_with_credentials().await?.1);
        }
        let mut idle_lists = Vec::new();
        let mut login_rates = Vec::new();
        let mut login_latency = Vec::new();
        let mut loaded_lists = Vec::new();
        for _ in 0..args.rounds {
            idle_lists.extend(
                load::list_projects(&client, &bench_token, LIST_BESIDE_LOGINS, round)
                    .await?
                    .latencies,
            );
            let (logins, lists) =
                load::logins_beside_lists(&client, &bench_token, &credentials, LIST_BESIDE_LOGINS, round).await?;
            login_rates.push(logins.rate());
            login_latency.extend(logins.latencies);
            loaded_lists.extend(lists.latencies);
        }
        let login_median = report::median(&mut login_rates);
        report.line(
            "login over HTTP, production argon2id (c=16)",
            report::requests(login_median, &login_rates, &Stats::of(&mut login_latency)),
            None,
        );
        let idle_p99 = Stats::of(&mut idle_lists).p99_ms();
        let loaded_p99 = Stats::of(&mut loaded_lists).p99_ms();
        report.line(
            &format!("  list p99 (c={LIST_BESIDE_LOGINS}): alone / beside logins"),
            format!("{idle_p99:.1} ms / {loaded_p99:.1} ms ({:.2}x)", loaded_p99 / idle_p99),
            Some(("< 1.5x", loaded_p99 < 1.5 * idle_p99)),
        );

        let lag_stats = Stats::of(&mut lag);
        report.line(
            "projection lag under command load",
            lag_stats.to_string(),
            Some((
                "p50 ≤ 10 ms, p99 ≤ 50 ms",
                lag_stats.p50_ms() <= 10.0 && lag_stats.p99_ms() <= 50.0,
            )),
        );
        let rss = server.peak_rss_mib()?;
        report.line(
            "peak RSS of keyframe serve",
            format!("{rss:.0} MiB"),
            Some(("≤ 200 MB", rss * 1.048_576 <= 200.0)),
        );
        server.stop().await;
        scratch.remove().await;

        // The same commands with the API alone (no relay, no projectors in the process): how much
        // of the gap to raw inserts is the command path itself and how much is the pipeline
        // behind it competing for the same two cores.
        let scratch = Scratch::create(&args.admin_database_url, &args.nats_url, "api").await?;
        let server = Server::start(&keyframe, &scratch, &["serve", "--run", "api"]).await?;
        let client = load::Client::new(&server.base_url)?;
        let token = client.register_and_login().await.context("bench user")?;
        let mut alone_rates = Vec::new();
        let mut alone_latency = Vec::new();
        for _ in 0..args.rounds {
            let commands = load::create_projects_only(&client, &token, args.concurrency, round).await?;
            alone_rates.push(commands.rate());
            alone_latency.extend(commands.latencies);
        }
        let alone_median = report::median(&mut alone_rates);
        report.line(
            "create project, API alone (c=32)",
            report::requests(alone_median, &alone_rates, &Stats::of(&mut alone_latency)),
            None,
        );
        report.line(
            "  API alone / raw inserts",
            format!("{:.0} %", 100.0 * alone_median / raw_median),
            None,
        );
        server.stop().await;
        scratch.remove().await;
    }

    // Phase 1b: the same against the embedded deployment.
    if args.phases.iter().any(|p| p == "embedded") {
        embedded::run(&mut report, &keyframe, args.concurrency, args.rounds, round).await?;
    }

    // Phase 2: the relay and replay over a backlog written straight into the event store.
    if args.phases.iter().any(|p| p == "backlog") {
        let scratch = Scratch::create(&args.admin_database_url, &args.nats_url, "backlog").await?;
        let migrate = Server::run_to_end(&keyframe, &scratch, &["migrate"]).await?;
        anyhow::ensure!(migrate.status.success(), "keyframe migrate failed");
        load::write_backlog(&scratch.database_url, args.backlog).await?;

        let started = Instant::now();
        let relay = Server::start_background(&keyframe, &scratch, &["serve", "--run", "relay"]).await?;
        let (first, last) = scratch
            .wait_for_stream(args.backlog as u64, Duration::from_secs(600))
            .await?;
        let whole = started.elapsed();
        let steady = last.duration_since(first);
        let rate = args.backlog as f64 / steady.as_secs_f64();
        report.line(
            "relay: backlog to JetStream",
            format!(
                "{rate:.0} events/s (first to last PubAck; {:.0} events/s including start-up)",
                args.backlog as f64 / whole.as_secs_f64()
            ),
            Some(("≥ 20000 events/s", rate >= 20_000.0)),
        );
        let rss = relay.peak_rss_mib()?;
        report.line("  peak RSS of the relay process", format!("{rss:.0} MiB"), None);
        relay.stop().await;
        // JetStream alone in the same run: the same number of messages of an event's size,
        // published as the relay publishes (pipelined batches of 2,000, acks awaited).
        let sample = scratch.first_event_payload().await?;
        let raw = scratch
            .raw_jetstream_publish(args.backlog as u64, 2_000, &sample)
            .await?;
        report.line(
            "raw JetStream publish (async, acks awaited)",
            format!("{raw:.0} msgs/s of {} bytes", sample.len()),
            None,
        );
        report.line("  relay / raw JetStream", format!("{:.0} %", 100.0 * rate / raw), None);

        let mut replay_rates = Vec::new();
        for _ in 0..args.rounds.min(3) {
            let started = Instant::now();
            let output = Server::run_to_end(&keyframe, &scratch, &["replay", "--projection", "project_list"]).await?;
            anyhow::ensure!(
                output.status.success(),
                "replay failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            replay_rates.push(args.backlog as f64 / started.elapsed().as_secs_f64());
            print!("  {}", String::from_utf8_lossy(&output.stdout));
        }
        let replay_median = report::median(&mut replay_rates);
        report.line(
            "replay project_list (wall, incl. process start)",
            format!("{replay_median:.0} events/s (rounds: {})", report::list(&replay_rates)),
            Some(("≥ 50000 events/s", replay_median >= 50_000.0)),
        );
        scratch.remove().await;
    }
    // Phase 3: videos. Analysis against one plain decode; uploads and the server's memory.
    if args.phases.iter().any(|p| p == "videos") {
        let scratch = Scratch::create(&args.admin_database_url, &args.nats_url, "videos").await?;
        let outcome = videos::run(&mut report, &keyframe, &scratch, args.rounds).await;
        scratch.remove().await;
        outcome?;
    }
    // Phase 4: job requests with their credit reservation.
    if args.phases.iter().any(|p| p == "credits") {
        let scratch = Scratch::create(&args.admin_database_url, &args.nats_url, "credits").await?;
        let outcome = credits::run(&mut report, &keyframe, &scratch, args.concurrency, args.rounds, round).await;
        scratch.remove().await;
        outcome?;
    }
    // Phase 5: the three kinds of refused login, which must not tell each other apart.
    if args.phases.iter().any(|p| p == "logins") {
        let scratch = Scratch::create(&args.admin_database_url, &args.nats_url, "logins").await?;
        let outcome = logins::run(&mut report, &keyframe, &scratch, args.login_samples).await;
        scratch.remove().await;
        outcome?;
    }
    // Phase 6: idle live progress streams, which must not cost the database anything.
    if args.phases.iter().any(|p| p == "streams") {
        let scratch = Scratch::create(&args.admin_database_url, &args.nats_url, "streams").await?;
        let outcome = streams::run(&mut report, &keyframe, &scratch).await;
        scratch.remove().await;
        outcome?;
    }
    // Phase 7: what the analysis finds, against exact labels.
    if args.phases.iter().any(|p| p == "quality") {
        quality::run(&mut report, args.rounds).await?;
    }
    report.print();
    Ok(())
}
