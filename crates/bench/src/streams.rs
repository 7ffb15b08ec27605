//! Live progress streams: the Postgres transactions per second of the whole service with 1 and
//! with 1,000 idle `GET /api/v1/jobs/{id}/events` streams open (on a queued job, no worker
//! running). The streams hear the job's events from the process's one feed, so an idle one
//! costs nothing; each of them used to poll the store every 200 ms.

use crate::load;
use crate::report::Report;
use crate::server::{Scratch, Server};
use anyhow::Context as _;
use serde_json::Value;
use sqlx::Connection as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// Streams open in the loaded measurement.
const STREAMS: usize = 1_000;

/// Runs the phase, adding its lines to `report`.
pub async fn run(report: &mut Report, keyframe: &Path, scratch: &Scratch) -> anyhow::Result<()> {
    scratch
        .with_dir("streams", async |dir| measure(report, keyframe, scratch, dir).await)
        .await
}

async fn measure(report: &mut Report, keyframe: &Path, scratch: &Scratch, dir: &Path) -> anyhow::Result<()> {
    let video = crate::videos::short_video(dir)?;
    let server = Server::start(keyframe, scratch, &["serve"]).await?;
    let client = load::Client::new(&server.base_url)?;
    let requester = client.job_requester(&video).await?;
    let http = reqwest::Client::new();
    let job: Value = http
        .post(format!("{}/api/v1/jobs", server.base_url))
        .bearer_auth(&requester.token)
        .header("content-type", "application/json")
        .body(requester.body.clone())
        .send()
        .await?
        .json()
        .await?;
    let job_id = job["id"].as_str().context("no job id")?.to_owned();
    let open = async || -> anyhow::Result<reqwest::Response> {
        let response = http
            .get(format!("{}/api/v1/jobs/{job_id}/events", server.base_url))
            .bearer_auth(&requester.token)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "stream: {}", response.status());
        Ok(response)
    };
    let mut streams = vec![open().await?];
    let one = transactions_per_second(&scratch.database_url).await?;
    for _ in 1..STREAMS {
        streams.push(open().await?);
    }
    let many = transactions_per_second(&scratch.database_url).await?;
    report.line(
        "idle progress streams: Postgres transactions/s",
        format!(
            "{one:.1} with 1 open, {many:.1} with {STREAMS} open (polling: +{} /s)",
            STREAMS * 5
        ),
        Some(("no more with 1,000 than with 1 (+5 /s)", many <= one + 5.0)),
    );
    drop(streams);
    server.stop().await;
    Ok(())
}

/// Transactions committed or rolled back per second in the scratch database, over 6 seconds
/// after 2 of settling (backends report their counts about once a second).
async fn transactions_per_second(database_url: &str) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut connection = sqlx::PgConnection::connect(database_url).await?;
    let count = async |connection: &mut sqlx::PgConnection| -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(connection)
        .await?)
    };
    let started = Instant::now();
    let before = count(&mut connection).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = count(&mut connection).await?;
    Ok((after - before) as f64 / started.elapsed().as_secs_f64())
}
