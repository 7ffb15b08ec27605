//! The credits figures: job requests per second, each reserving its price in the requester's
//! credit ledger before the job is recorded, with every client on a user of its own against
//! every client on one shared user. The shared case is the contention case: all requests
//! reserve from one ledger aggregate, so they take turns on it.

use crate::load::{self, JobRequester};
use crate::report::{self, Report, Stats};
use crate::server::{Scratch, Server};
use std::path::Path;
use std::time::Duration;

/// Runs the phase, adding its lines to `report`.
pub async fn run(
    report: &mut Report,
    keyframe: &Path,
    scratch: &Scratch,
    concurrency: usize,
    rounds: usize,
    round: Duration,
) -> anyhow::Result<()> {
    scratch
        .with_dir("credits", async |dir| {
            measure(report, keyframe, scratch, concurrency, rounds, round, dir).await
        })
        .await
}

async fn measure(
    report: &mut Report,
    keyframe: &Path,
    scratch: &Scratch,
    concurrency: usize,
    rounds: usize,
    round: Duration,
    dir: &Path,
) -> anyhow::Result<()> {
    // Two seconds of video: an analysis costs one credit; every user can afford the run.
    let video = crate::videos::short_video(dir)?;
    let server = Server::start(keyframe, scratch, &["serve", "--signup-bonus-credits", "1000000"]).await?;
    let client = load::Client::new(&server.base_url)?;
    let mut distinct = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        distinct.push(client.job_requester(&video).await?);
    }
    let shared: Vec<JobRequester> = vec![client.job_requester(&video).await?; concurrency];

    let (mut distinct_rates, mut distinct_latency) = (Vec::new(), Vec::new());
    let (mut shared_rates, mut shared_latency) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let phase = load::request_jobs(&client, &distinct, round).await?;
        distinct_rates.push(phase.rate());
        distinct_latency.extend(phase.latencies);
        let phase = load::request_jobs(&client, &shared, round).await?;
        shared_rates.push(phase.rate());
        shared_latency.extend(phase.latencies);
    }
    let distinct_median = report::median(&mut distinct_rates);
    let shared_median = report::median(&mut shared_rates);
    report.line(
        &format!("request a job with its reservation, {concurrency} users (c={concurrency})"),
        report::requests(distinct_median, &distinct_rates, &Stats::of(&mut distinct_latency)),
        None,
    );
    report.line(
        &format!("request a job with its reservation, one shared user (c={concurrency})"),
        report::requests(shared_median, &shared_rates, &Stats::of(&mut shared_latency)),
        None,
    );
    report.line(
        "  shared user / distinct users",
        format!("{:.0} %", 100.0 * shared_median / distinct_median),
        None,
    );
    let rss = server.peak_rss_mib()?;
    report.line("  peak RSS of keyframe serve", format!("{rss:.0} MiB"), None);
    server.stop().await;
    Ok(())
}
