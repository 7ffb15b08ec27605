//! The analysis of a video in one decoding pass.
//!
//! Decoding dominates the cost, so every detector hangs off the same decoded frames in one
//! ffmpeg run: the picture is split, one branch scaled down to 160 pixels wide for
//! `blackdetect`, `scdet` (scene cuts) and `freezedetect`, the other picking a few frames for
//! thumbnails; the sound goes through `silencedetect` and `ebur128`, whose momentary loudness
//! every 0.1 s becomes the loudness curve. The detectors report on ffmpeg's error output,
//! which is parsed line by line as it comes.

use crate::ffmpeg::{self, MediaError};
use crate::highlights;
use keyframe_domain::media::{AnalysisReport, Loudness, SceneCut, Span, VideoFacts};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// Tuning of the detectors.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisOptions {
    /// Thumbnails to take, spread evenly.
    pub thumbnails: u32,
    /// `scdet` threshold, 0 to 100: a frame differing more from the last is a cut.
    pub scene_threshold: f64,
    /// Shortest black stretch reported, in seconds.
    pub black_min_secs: f64,
    /// Shortest silence reported, in seconds.
    pub silence_min_secs: f64,
    /// Below this level (dBFS) sound counts as silence.
    pub silence_noise_db: f64,
    /// Shortest frozen stretch reported, in seconds.
    pub freeze_min_secs: f64,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            thumbnails: 4,
            scene_threshold: 12.0,
            black_min_secs: 0.3,
            silence_min_secs: 0.4,
            silence_noise_db: -50.0,
            freeze_min_secs: 1.0,
        }
    }
}

/// What the pass produced: the report (thumbnail names filled in) and the thumbnail files.
#[derive(Debug)]
pub struct Analysis {
    /// The findings.
    pub report: AnalysisReport,
    /// Thumbnail files, in time order, named as in the report.
    pub thumbnails: Vec<PathBuf>,
}

/// Analyses `input`, whose probe gave `facts`, writing thumbnails into `out_dir`. Progress goes
/// to `on_progress` in percent.
pub async fn analyze(
    input: &Path,
    facts: &VideoFacts,
    options: AnalysisOptions,
    out_dir: &Path,
    cancel: &CancellationToken,
    mut on_progress: impl FnMut(u8),
) -> Result<Analysis, MediaError> {
    let has_audio = facts.audio_codec.is_some();
    let duration_secs = facts.duration_ms.map(|ms| ms as f64 / 1000.0);
    let mut command = ffmpeg::ffmpeg();
    command.args(["-v", "info", "-progress", "pipe:1", "-i"]).arg(input);
    command.args(["-filter_complex", &filter_graph(&options, duration_secs, has_audio)]);
    // No `-frames:v`: ffmpeg stops once every output is complete, which would cut the
    // detectors short; the selection itself yields no frame past the last middle.
    command.args(["-map", "[thumbs]", "-fps_mode", "vfr", "-q:v", "4"]);
    command.arg(out_dir.join("thumb-%02d.jpg"));

    let mut findings = Findings::default();
    let total_us = facts.duration_ms.unwrap_or(0).saturating_mul(1000);
    ffmpeg::run(
        "ffmpeg",
        command,
        cancel,
        |line| findings.read(line),
        |out_us| {
            if let Some(percent) = out_us.min(total_us).saturating_mul(100).checked_div(total_us) {
                on_progress(percent as u8);
            }
        },
    )
    .await?;

    let mut thumbnails = Vec::new();
    for index in 1.. {
        let path = out_dir.join(format!("thumb-{index:02}.jpg"));
        if !tokio::fs::try_exists(&path).await? {
            break;
        }
        thumbnails.push(path);
    }
    let duration_ms = facts
        .duration_ms
        .unwrap_or_else(|| findings.last_time_ms.max(findings.loudness_points.len() as u64 * 100));
    Ok(Analysis {
        report: findings.into_report(facts.clone(), duration_ms, &thumbnails),
        thumbnails,
    })
}

/// The filter graph: detectors on a small copy of the picture and on the sound, thumbnails
/// from the full picture at the middles of equal stretches.
fn filter_graph(options: &AnalysisOptions, duration_secs: Option<f64>, has_audio: bool) -> String {
    let interval = duration_secs.map_or(10.0, |d| (d / f64::from(options.thumbnails.max(1))).max(0.04));
    let offset = interval / 2.0;
    let mut graph = format!(
        "[0:v]split=2[detect][pick];\
         [detect]scale=160:-2:flags=fast_bilinear,\
         blackdetect=d={black}:pix_th=0.10,\
         scdet=threshold={scene},\
         freezedetect=n=0.001:d={freeze},nullsink;\
         [pick]select='gte(t\\,{offset:.3})*(isnan(prev_selected_t)+gte(t-prev_selected_t\\,{interval:.3}))',\
         scale='min(640\\,iw)':-2[thumbs]",
        black = options.black_min_secs,
        scene = options.scene_threshold,
        freeze = options.freeze_min_secs,
    );
    if has_audio {
        graph.push_str(&format!(
            ";[0:a]silencedetect=n={noise}dB:d={silence},ebur128=framelog=info,anullsink",
            noise = options.silence_noise_db,
            silence = options.silence_min_secs,
        ));
    }
    graph
}

/// What the detectors said, gathered line by line.
#[derive(Debug, Default)]
struct Findings {
    scene_cuts: Vec<SceneCut>,
    black: Vec<Span>,
    silence: Vec<Span>,
    silence_start: Option<u64>,
    frozen: Vec<Span>,
    freeze_start: Option<u64>,
    /// Momentary loudness every 0.1 s, in LUFS.
    loudness_points: Vec<f64>,
    integrated_lufs: Option<f64>,
    range_lu: Option<f64>,
    in_summary: bool,
    last_time_ms: u64,
}

fn seconds_to_ms(raw: &str) -> Option<u64> {
    let seconds: f64 = raw.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
}

/// The value after `key` in `line`, up to the next space or `|`.
fn value_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    let rest = line[start..].trim_start();
    let end = rest.find([' ', '|', ',']).unwrap_or(rest.len());
    Some(&rest[..end])
}

impl Findings {
    fn read(&mut self, line: &str) {
        if line.contains("[blackdetect") {
            if let (Some(start), Some(end)) = (
                value_after(line, "black_start:").and_then(seconds_to_ms),
                value_after(line, "black_end:").and_then(seconds_to_ms),
            ) {
                self.black.push(Span {
                    start_ms: start,
                    end_ms: end,
                });
            }
        } else if line.contains("[scdet") {
            if let (Some(score), Some(at_ms)) = (
                value_after(line, "lavfi.scd.score:").and_then(|v| v.parse::<f64>().ok()),
                value_after(line, "lavfi.scd.time:").and_then(seconds_to_ms),
            ) {
                self.scene_cuts.push(SceneCut { at_ms, score });
            }
        } else if line.contains("[freezedetect") {
            if let Some(start) = value_after(line, "freeze_start:").and_then(seconds_to_ms) {
                self.freeze_start = Some(start);
            } else if let Some(end) = value_after(line, "freeze_end:").and_then(seconds_to_ms) {
                let start_ms = self.freeze_start.take().unwrap_or(0);
                self.frozen.push(Span { start_ms, end_ms: end });
            }
        } else if line.contains("[silencedetect") {
            if let Some(start) = value_after(line, "silence_start:").and_then(seconds_to_ms) {
                self.silence_start = Some(start);
            } else if let Some(end) = value_after(line, "silence_end:").and_then(seconds_to_ms) {
                let start_ms = self.silence_start.take().unwrap_or(0);
                self.silence.push(Span { start_ms, end_ms: end });
            }
        } else if line.contains("[Parsed_ebur128") {
            if line.contains("Summary:") {
                self.in_summary = true;
            } else if let Some(momentary) = value_after(line, "M:").and_then(|v| v.parse::<f64>().ok()) {
                // ffmpeg configures the graph more than once; a restart begins again at 0.1 s.
                if let Some(t) = value_after(line, "t:").and_then(seconds_to_ms) {
                    if t <= 100 {
                        self.loudness_points.clear();
                    }
                    self.last_time_ms = self.last_time_ms.max(t);
                }
                self.loudness_points.push(momentary);
            }
        } else if self.in_summary {
            let trimmed = line.trim_start();
            if let Some(value) = trimmed.strip_prefix("I:") {
                self.integrated_lufs = value_after(value, "").and_then(|v| v.parse().ok());
            } else if let Some(value) = trimmed.strip_prefix("LRA:") {
                self.range_lu = value_after(value, "").and_then(|v| v.parse().ok());
                self.in_summary = false;
            }
        }
    }

    fn into_report(mut self, metadata: VideoFacts, duration_ms: u64, thumbnails: &[PathBuf]) -> AnalysisReport {
        // A stretch still open at the end runs to the end.
        if let Some(start_ms) = self.silence_start.take() {
            self.silence.push(Span {
                start_ms,
                end_ms: duration_ms,
            });
        }
        if let Some(start_ms) = self.freeze_start.take() {
            self.frozen.push(Span {
                start_ms,
                end_ms: duration_ms,
            });
        }
        let has_audio = metadata.audio_codec.is_some();
        let loudness = Loudness {
            integrated_lufs: self.integrated_lufs.filter(|_| has_audio),
            range_lu: self.range_lu.filter(|_| has_audio),
            curve_step_ms: curve_step_ms(duration_ms),
            curve: coarse_curve(&self.loudness_points, curve_step_ms(duration_ms)),
        };
        let highlights = highlights::candidates(&highlights::Inputs {
            duration_ms,
            scene_cuts: &self.scene_cuts,
            black: &self.black,
            silence: &self.silence,
            frozen: &self.frozen,
            loudness: &loudness,
        });
        AnalysisReport {
            metadata,
            scene_cuts: self.scene_cuts,
            black_spans: self.black,
            silent_spans: self.silence,
            frozen_spans: self.frozen,
            loudness,
            thumbnails: thumbnails
                .iter()
                .filter_map(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
                .collect(),
            highlights,
        }
    }
}

/// One point per second, or fewer for long videos: at most about 600 points.
fn curve_step_ms(duration_ms: u64) -> u64 {
    (duration_ms / 600).div_ceil(1_000).max(1) * 1_000
}

/// Momentary loudness (every 0.1 s) averaged per `step_ms`, in the energy domain (averaging
/// decibels directly would let a quiet moment drag a loud second down), rounded to 0.1 LU.
fn coarse_curve(points: &[f64], step_ms: u64) -> Vec<f64> {
    let per_step = (step_ms / 100).max(1) as usize;
    points
        .chunks(per_step)
        .map(|chunk| {
            let energy = chunk.iter().map(|lufs| 10f64.powf(lufs / 10.0)).sum::<f64>() / chunk.len() as f64;
            let lufs = 10.0 * energy.log10();
            (lufs.max(-120.0) * 10.0).round() / 10.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_detectors_lines() {
        let mut findings = Findings::default();
        for line in [
            "[scdet @ 0x1] lavfi.scd.score: 31.332, lavfi.scd.time: 3",
            "[blackdetect @ 0x2] black_start:3 black_end:5 black_duration:2",
            "[silencedetect @ 0x3] silence_start: 3",
            "[silencedetect @ 0x3] silence_end: 5.00002 | silence_duration: 2.00002",
            "[freezedetect @ 0x4] lavfi.freezedetect.freeze_start: 0",
            "[freezedetect @ 0x4] lavfi.freezedetect.freeze_duration: 3",
            "[freezedetect @ 0x4] lavfi.freezedetect.freeze_end: 3",
            "[Parsed_ebur128_9 @ 0x5] t: 0.0999773  TARGET:-23 LUFS    M: -21.8 S:-120.7     I: -21.8 LUFS       LRA:   0.0 LU",
            "[Parsed_ebur128_9 @ 0x5] Summary:",
            "  Integrated loudness:",
            "    I:         -21.8 LUFS",
            "    LRA:         4.6 LU",
        ] {
            findings.read(line);
        }
        assert_eq!(
            findings.scene_cuts,
            vec![SceneCut {
                at_ms: 3_000,
                score: 31.332
            }]
        );
        assert_eq!(
            findings.black,
            vec![Span {
                start_ms: 3_000,
                end_ms: 5_000
            }]
        );
        assert_eq!(
            findings.silence,
            vec![Span {
                start_ms: 3_000,
                end_ms: 5_000
            }]
        );
        assert_eq!(
            findings.frozen,
            vec![Span {
                start_ms: 0,
                end_ms: 3_000
            }]
        );
        assert_eq!(findings.loudness_points, vec![-21.8]);
        assert_eq!(findings.integrated_lufs, Some(-21.8));
        assert_eq!(findings.range_lu, Some(4.6));
    }

    #[test]
    fn the_curve_averages_energy_per_step() {
        let curve = coarse_curve(
            &[-20.0; 10].iter().chain(&[-120.0; 10]).copied().collect::<Vec<_>>(),
            1_000,
        );
        assert_eq!(curve, vec![-20.0, -120.0]);
        assert_eq!(curve_step_ms(60_000), 1_000);
        assert_eq!(curve_step_ms(3_600_000), 6_000);
    }
}
