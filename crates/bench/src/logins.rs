//! The logins figures: how long a refused login takes in each of its three cases (a wrong
//! password, an unknown e-mail, a locked account), with production argon2id. The three answer
//! alike, and should take alike, or the time would tell which addresses have accounts. One
//! client sends them one at a time, the cases interleaved, so queueing and drift weigh on each
//! the same; the report quotes each case's median and p99 and the ratios of the medians.

use crate::load::Client;
use crate::report::{Report, Stats};
use crate::server::{Scratch, Server};
use hyper::http::StatusCode;
use std::path::Path;
use std::time::Duration;

/// Wrong guesses per account: fewer than the lockout threshold (5), so those accounts never lock.
const GUESSES_PER_ACCOUNT: usize = 4;

/// Runs the phase with `samples` logins of each case, adding its lines to `report`.
pub async fn run(report: &mut Report, keyframe: &Path, scratch: &Scratch, samples: usize) -> anyhow::Result<()> {
    let server = Server::start(keyframe, scratch, &["serve", "--run", "api"]).await?;
    let outcome = measure(report, &Client::new(&server.base_url)?, samples).await;
    server.stop().await;
    outcome
}

async fn measure(report: &mut Report, client: &Client, samples: usize) -> anyhow::Result<()> {
    const PASSWORD: &str = "tangerine orbit quietly sideways";
    let mut accounts = Vec::new();
    for _ in 0..samples.div_ceil(GUESSES_PER_ACCOUNT) {
        accounts.push(client.register(PASSWORD).await?);
    }
    let locked = client.register(PASSWORD).await?;
    for guess in 0..5 {
        client.login(&locked, &format!("wrong guess number {guess}")).await?;
    }
    let (status, _) = client.login(&locked, PASSWORD).await?;
    anyhow::ensure!(status == StatusCode::UNAUTHORIZED, "the account did not lock: {status}");

    let (mut wrong, mut unknown, mut refused_locked) = (Vec::new(), Vec::new(), Vec::new());
    for sample in 0..samples {
        let account = &accounts[sample / GUESSES_PER_ACCOUNT];
        let nobody = format!("nobody-{}@example.com", uuid::Uuid::now_v7());
        for (email, password, times) in [
            (account.as_str(), "a wrong password entirely", &mut wrong),
            (nobody.as_str(), PASSWORD, &mut unknown),
            (locked.as_str(), PASSWORD, &mut refused_locked),
        ] {
            let (status, took) = client.login(email, password).await?;
            anyhow::ensure!(status == StatusCode::UNAUTHORIZED, "a refused login answered {status}");
            times.push(took);
        }
    }
    let median = |times: &mut Vec<Duration>| Stats::of(times).p50_ms();
    let wrong_median = median(&mut wrong);
    for (case, times) in [
        ("wrong password", &mut wrong),
        ("unknown e-mail", &mut unknown),
        ("locked account", &mut refused_locked),
    ] {
        let stats = Stats::of(times);
        let ratio = stats.p50_ms() / wrong_median;
        report.line(
            &format!("refused login, {case} (c=1)"),
            format!("{stats}; median {ratio:.2}x a wrong password's"),
            Some(("median within 10 %", (0.9..=1.1).contains(&ratio))),
        );
    }
    Ok(())
}
