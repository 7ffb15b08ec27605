//! The embedded deployment: `keyframe serve` with no `DATABASE_URL` and no `NATS_URL`, so
//! SQLite in its data directory and every part in one process. How long it takes to start
//! (on an empty directory, migrations included; again on its own database; again after the
//! load), and the serve phase's figures against it: commands and lists per second, the
//! projection lag idle and under load, the peak RSS. The floor beside the commands is raw
//! SQLite inserts with the embedded database's settings, measured in the same run.

use crate::load;
use crate::report::{self, Report, Stats};
use crate::server::Server;
use anyhow::Context as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs the phase in a directory of its own, removed afterwards whatever the outcome, adding
/// its lines to `report`.
pub async fn run(
    report: &mut Report,
    keyframe: &Path,
    concurrency: usize,
    rounds: usize,
    round: Duration,
) -> anyhow::Result<()> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let dir = std::env::temp_dir().join(format!("keyframe-bench-embedded-{stamp}"));
    std::fs::create_dir_all(&dir)?;
    let outcome = measure(report, keyframe, &dir, concurrency, rounds, round).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn measure(
    report: &mut Report,
    keyframe: &Path,
    dir: &Path,
    concurrency: usize,
    rounds: usize,
    round: Duration,
) -> anyhow::Result<()> {
    // Start-up, spawn to ready: on an empty directory, then on the database it made.
    let mut first_starts = Vec::new();
    let mut restarts = Vec::new();
    for start in 0..rounds {
        let data = dir.join(format!("start-{start}"));
        let (server, took) = Server::start_embedded(keyframe, &data).await?;
        first_starts.push(took);
        server.stop().await;
        let (server, took) = Server::start_embedded(keyframe, &data).await?;
        restarts.push(took);
        server.stop().await;
    }
    report.line(
        "embedded: start to ready, empty directory / own database",
        format!(
            "{:.0} ms / {:.0} ms",
            Stats::of(&mut first_starts).p50_ms(),
            Stats::of(&mut restarts).p50_ms()
        ),
        None,
    );

    let data = dir.join("serve");
    let (server, _) = Server::start_embedded(keyframe, &data).await?;
    let database_url = format!("sqlite://{}", data.join("keyframe.db").display());
    let client = load::Client::new(&server.base_url)?;
    let token = client.register_and_login().await.context("bench user")?;

    let (_, mut idle_lag) = load::create_projects(&client, &token, &database_url, 0, round).await?;
    report.line(
        "embedded: projection lag, idle",
        Stats::of(&mut idle_lag).to_string(),
        None,
    );

    let mut raw_rates = Vec::new();
    let mut command_rates = Vec::new();
    let mut command_latency = Vec::new();
    let mut lag = Vec::new();
    for _ in 0..rounds {
        raw_rates.push(load::raw_sqlite_inserts(dir, concurrency, round).await?.rate());
        let (commands, lags) = load::create_projects(&client, &token, &database_url, concurrency, round).await?;
        command_rates.push(commands.rate());
        command_latency.extend(commands.latencies);
        lag.extend(lags);
    }
    let mut list_rates = Vec::new();
    let mut list_latency = Vec::new();
    for _ in 0..rounds {
        let lists = load::list_projects(&client, &token, concurrency, round).await?;
        list_rates.push(lists.rate());
        list_latency.extend(lists.latencies);
    }
    let raw_median = report::median(&mut raw_rates);
    let command_median = report::median(&mut command_rates);
    report.line(
        &format!("embedded: raw single-row INSERT+COMMIT (SQLite, WAL, synchronous=FULL, one writer, c={concurrency})"),
        format!("{raw_median:.0} tx/s (rounds: {})", report::list(&raw_rates)),
        None,
    );
    report.line(
        &format!("embedded: create project over HTTP (c={concurrency})"),
        report::requests(command_median, &command_rates, &Stats::of(&mut command_latency)),
        None,
    );
    report.line(
        "  embedded commands / raw inserts",
        format!("{:.0} %", 100.0 * command_median / raw_median),
        None,
    );
    let list_median = report::median(&mut list_rates);
    report.line(
        &format!("embedded: list projects over HTTP (c={concurrency})"),
        report::requests(list_median, &list_rates, &Stats::of(&mut list_latency)),
        None,
    );
    report.line(
        "embedded: projection lag under command load",
        Stats::of(&mut lag).to_string(),
        None,
    );
    let rss = server.peak_rss_mib()?;
    report.line("embedded: peak RSS of keyframe serve", format!("{rss:.0} MiB"), None);
    server.stop().await;

    // Started again on what the load left: the read models resume from their checkpoints and
    // the job queue is rebuilt from the log.
    let size_mib = std::fs::metadata(data.join("keyframe.db"))?.len() as f64 / (1024.0 * 1024.0);
    let (server, took) = Server::start_embedded(keyframe, &data).await?;
    server.stop().await;
    report.line(
        "embedded: start to ready after the load",
        format!("{:.0} ms ({size_mib:.0} MiB database)", took.as_secs_f64() * 1e3),
        None,
    );
    Ok(())
}
