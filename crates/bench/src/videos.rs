//! The video figures: the analysis of a 60-second 720p video against one plain decoding pass of
//! the same file, and uploads of 20 MB and 200 MB through a running `keyframe serve` with the
//! server's resident memory sampled meanwhile.

use crate::report::{self, Report};
use crate::server::{Scratch, Server};
use anyhow::Context as _;
use keyframe_media::analysis::{self, AnalysisOptions};
use keyframe_media::probe;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Runs the phase, adding its lines to `report`.
pub async fn run(report: &mut Report, keyframe: &Path, scratch: &Scratch, rounds: usize) -> anyhow::Result<()> {
    scratch
        .with_dir("videos", async |dir| {
            measure(report, keyframe, scratch, rounds, dir).await
        })
        .await
}

async fn measure(
    report: &mut Report,
    keyframe: &Path,
    scratch: &Scratch,
    rounds: usize,
    dir: &Path,
) -> anyhow::Result<()> {
    // 60 s of 720p at 30 fps, H.264 and AAC, with scene changes every 10 s so the detectors
    // have something to find.
    let video = dir.join("720p.mp4");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=1280x720:r=30:d=20",
            "-f",
            "lavfi",
            "-i",
            "smptebars=s=1280x720:r=30:d=20",
            "-f",
            "lavfi",
            "-i",
            "rgbtestsrc=s=1280x720:r=30:d=20",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=60:r=48000",
            "-filter_complex",
            "[0:v][1:v][2:v]concat=n=3:v=1:a=0,trim=duration=60[v]",
            "-map",
            "[v]",
            "-map",
            "3:a",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-t",
            "60",
        ],
        &video,
    )?;

    let mut decode = Vec::new();
    let mut analyse = Vec::new();
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-i"])
            .arg(&video)
            .args(["-f", "null", "-"])
            .status()?;
        anyhow::ensure!(status.success(), "the plain decode failed");
        decode.push(started.elapsed().as_secs_f64());

        let out = dir.join("analysis");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out)?;
        let started = Instant::now();
        let facts = probe::probe(&video).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let found = analysis::analyze(
            &video,
            &facts,
            AnalysisOptions::default(),
            &out,
            &CancellationToken::new(),
            |_| {},
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        analyse.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(found.report.scene_cuts.len() >= 2, "the analysis missed the cuts");
    }
    let decode_median = report::median(&mut decode);
    let analysis_median = report::median(&mut analyse);
    report.line(
        "60 s 720p: one plain decode (ffmpeg -f null)",
        format!("{decode_median:.2} s (rounds: {})", seconds(&decode)),
        None,
    );
    report.line(
        "60 s 720p: the full analysis (probe + one pass)",
        format!("{analysis_median:.2} s (rounds: {})", seconds(&analyse)),
        None,
    );
    let ratio = analysis_median / decode_median;
    report.line(
        "  analysis / decode",
        format!("{ratio:.2}x"),
        Some(("≤ 1.4x", ratio <= 1.4)),
    );

    let server = Server::start(keyframe, scratch, &["serve"]).await?;
    keyframe_media::storage::install_tls_provider();
    let client = reqwest::Client::new();
    let token = crate::load::Client::new(&server.base_url)?.register_and_login().await?;
    let project: Value = client
        .post(format!("{}/api/v1/projects", server.base_url))
        .bearer_auth(&token)
        .json(&json!({"name": "bench uploads"}))
        .send()
        .await?
        .json()
        .await?;
    let project_id = project["id"].as_str().context("no project id")?.to_owned();
    let baseline = server.rss_mib()?;
    for (label, frames) in [("20 MB", 15), ("200 MB", 145)] {
        let file = raw_video(dir, frames)?;
        let size = std::fs::metadata(&file)?.len();
        let peak = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let sampler = tokio::spawn(sample_rss(server.pid()?, peak.clone(), stop.clone()));
        let started = Instant::now();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            tokio::fs::File::open(&file).await?,
            256 * 1024,
        ));
        let answer = client
            .post(format!(
                "{}/api/v1/projects/{project_id}/assets?filename=raw.mkv",
                server.base_url
            ))
            .bearer_auth(&token)
            .header("content-length", size)
            .body(body)
            .send()
            .await?;
        let elapsed = started.elapsed();
        stop.cancel();
        let _ = sampler.await;
        anyhow::ensure!(answer.status().is_success(), "upload answered {}", answer.status());
        let rate = size as f64 / 1e6 / elapsed.as_secs_f64();
        let peak_mib = peak.load(Ordering::Relaxed) as f64 / 1024.0;
        report.line(
            &format!("upload {label} ({:.0} MB) over HTTP", size as f64 / 1e6),
            format!("{rate:.0} MB/s; server RSS peak {peak_mib:.0} MiB (before uploads {baseline:.0} MiB)"),
            None,
        );
        let _ = std::fs::remove_file(&file);
    }
    server.stop().await;
    Ok(())
}

fn seconds(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn ffmpeg(args: &[&str], output: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(output)
        .status()
        .context("running ffmpeg")?;
    anyhow::ensure!(status.success(), "ffmpeg could not make {}", output.display());
    Ok(())
}

/// Uncompressed 720p in Matroska: about 1.4 MB a frame, made in a moment at any size.
fn raw_video(dir: &Path, frames: u32) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("raw-{frames}.mkv"));
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=1280x720:r=25",
            "-frames:v",
            &frames.to_string(),
            "-c:v",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
        ],
        &path,
    )?;
    Ok(path)
}

/// Samples the process's resident set every 10 ms until `stop`, keeping the peak (KiB).
async fn sample_rss(pid: u32, peak: Arc<AtomicU64>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        if let Some(kib) = crate::server::memory_kib(pid, "VmRSS") {
            peak.fetch_max(kib, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two seconds of small H.264 video in `dir` (an analysis of it costs one credit).
pub fn short_video(dir: &Path) -> anyhow::Result<PathBuf> {
    let video = dir.join("short.mp4");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x120:r=10:d=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ],
        &video,
    )?;
    Ok(video)
}
