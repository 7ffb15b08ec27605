//! The credits figures: job requests per second, each reserving its price in a credit ledger
//! before the job is recorded, with every client on a user of its own against every client on
//! one shared user, and against the clients spread over the members of one organisation. The
//! shared user and the organisation are the contention cases: all requests reserve from one
//! ledger aggregate, so they take turns on it; the organisation's also record the member and
//! check their monthly limit.

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
    // Every user, and the organisation, gets a million credits: the free plan's allowance for
    // the organisation, the signup bonus for users.
    let server = Server::start(
        keyframe,
        scratch,
        &[
            "serve",
            "--signup-bonus-credits",
            "1000000",
            "--plans",
            "free:1000000,pro:1000,studio:5000",
        ],
    )
    .await?;
    let client = load::Client::new(&server.base_url)?;
    let mut distinct = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        distinct.push(client.job_requester(&video).await?);
    }
    let shared: Vec<JobRequester> = vec![client.job_requester(&video).await?; concurrency];
    let organization = client
        .organization_requesters(&video, concurrency, &scratch.mail_dir())
        .await?;

    let (mut distinct_rates, mut distinct_latency) = (Vec::new(), Vec::new());
    let (mut shared_rates, mut shared_latency) = (Vec::new(), Vec::new());
    let (mut team_rates, mut team_latency) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let phase = load::request_jobs(&client, &distinct, round).await?;
        distinct_rates.push(phase.rate());
        distinct_latency.extend(phase.latencies);
        let phase = load::request_jobs(&client, &shared, round).await?;
        shared_rates.push(phase.rate());
        shared_latency.extend(phase.latencies);
        let phase = load::request_jobs(&client, &organization, round).await?;
        team_rates.push(phase.rate());
        team_latency.extend(phase.latencies);
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
    let team_median = report::median(&mut team_rates);
    report.line(
        &format!("request a job with its reservation, {concurrency} members of one organisation (c={concurrency})"),
        report::requests(team_median, &team_rates, &Stats::of(&mut team_latency)),
        None,
    );
    report.line(
        "  organisation / distinct users",
        format!("{:.0} %", 100.0 * team_median / distinct_median),
        None,
    );
    let rss = server.peak_rss_mib()?;
    report.line("  peak RSS of keyframe serve", format!("{rss:.0} MiB"), None);
    server.stop().await;
    Ok(())
}
