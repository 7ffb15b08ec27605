//! The analysis of a video in one decoding pass.
//!
//! Decoding dominates the cost, so every detector hangs off the same decoded frames in one
//! ffmpeg run. The picture is split: one branch is scaled to a 128 x 72 copy that goes, raw,
//! down ffmpeg's standard output into a [`SignalExtractor`], whose per-frame signals
//! [`shots`] turns into cuts and transitions and [`stretches`] into black and frozen
//! stretches; the other branch saves candidate thumbnails at a steady rate, of which
//! [`thumbnails`] keeps one distinct frame per shot. The sound goes through `silencedetect`
//! and `ebur128`, whose momentary loudness every 0.1 s becomes the loudness curve. The filters
//! report on ffmpeg's error output, which is parsed line by line as it comes; `showinfo` there
//! gives each small frame's and each candidate's time.

use crate::ffmpeg::{self, MediaError};
use crate::highlights;
use crate::shots::{self, Boundaries};
use crate::signals::{self, FrameSignals, SignalExtractor};
use crate::stretches;
use crate::thumbnails::{self, Candidate};
use keyframe_domain::media::{AnalysisReport, Loudness, Span, VideoFacts};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// Tuning of the detectors.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisOptions {
    /// The most thumbnails to keep: one per distinct shot, up to this.
    pub thumbnails: u32,
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

/// Candidates saved per thumbnail wanted, spread evenly ...
const CANDIDATES_PER_THUMBNAIL: f64 = 4.0;
/// ... but no closer together than this (seconds) ...
const MIN_CANDIDATE_INTERVAL_SECS: f64 = 0.5;
/// ... nor further apart than this.
const MAX_CANDIDATE_INTERVAL_SECS: f64 = 10.0;

/// The instance name of the `showinfo` after the small copy, and of the one after the
/// candidate selection: their lines tell the frames' times.
const SIGNALS_INFO: &str = "showinfo@signals";
const CANDIDATES_INFO: &str = "showinfo@candidates";

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
    command.args(["-v", "info", "-i"]).arg(input);
    command.args(["-filter_complex", &filter_graph(&options, duration_secs, has_audio)]);
    // Every small frame as decoded, none repeated or dropped to make a constant rate.
    command.args([
        "-map",
        "[small]",
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "pipe:1",
    ]);
    // No `-frames:v`: ffmpeg stops once every output is complete, which would cut the
    // detectors short; the selection itself yields no frame past the last candidate.
    command.args(["-map", "[candidates]", "-fps_mode", "vfr", "-q:v", "4"]);
    command.arg(out_dir.join("candidate-%04d.jpg"));

    let mut findings = Findings::default();
    let mut extractor = SignalExtractor::new(facts.frame_rate);
    let total_ms = facts.duration_ms.unwrap_or(0);
    let mut reported = None;
    ffmpeg::run_with_output(
        "ffmpeg",
        command,
        cancel,
        |line| {
            findings.read(line);
            let done_ms = findings.frame_times_ms.last().copied().unwrap_or(0).min(total_ms);
            if let Some(percent) = done_ms.saturating_mul(100).checked_div(total_ms)
                && reported != Some(percent)
            {
                reported = Some(percent);
                on_progress(percent as u8);
            }
        },
        |bytes| extractor.push_bytes(bytes),
    )
    .await?;

    let signals = extractor.finish();
    if signals.frames.len() != findings.frame_times_ms.len() {
        // Should never happen; if it does, the times of the later frames are guesses.
        tracing::warn!(
            frames = signals.frames.len(),
            times = findings.frame_times_ms.len(),
            "ffmpeg logged a different number of frame times than frames it wrote"
        );
    }
    let boundaries = shots::detect(&signals, &findings.frame_times_ms, facts.frame_rate);
    let frame_signals = signals.frames;
    let duration_ms = facts
        .duration_ms
        .or(findings.frame_times_ms.last().copied())
        .unwrap_or_else(|| findings.last_time_ms.max(findings.loudness_points.len() as u64 * 100));

    let (files, candidates) = candidate_files(out_dir, &findings, &frame_signals).await?;
    findings.close_open_spans(duration_ms);
    let millis = |secs: f64| (secs * 1000.0).round() as u64;
    let times = &findings.frame_times_ms;
    let picture = Picture {
        black: stretches::black(&frame_signals, times, duration_ms, millis(options.black_min_secs)),
        frozen: stretches::frozen(&frame_signals, times, duration_ms, millis(options.freeze_min_secs)),
        boundaries,
    };
    let keep = thumbnails::choose(
        &candidates,
        &thumbnails::Context {
            duration_ms,
            boundaries: &picture.boundaries,
            frozen: &picture.frozen,
            count: options.thumbnails as usize,
        },
    );
    let thumbnails = keep_thumbnails(out_dir, &files, &keep).await?;
    Ok(Analysis {
        report: findings.into_report(facts.clone(), duration_ms, picture, &thumbnails),
        thumbnails,
    })
}

/// The candidate thumbnail files the pass wrote, in order, each with its frame's signals (the
/// same decoded frame went down both branches, so their times match exactly).
async fn candidate_files(
    out_dir: &Path,
    findings: &Findings,
    frame_signals: &[FrameSignals],
) -> Result<(Vec<PathBuf>, Vec<Candidate>), MediaError> {
    let mut files = Vec::new();
    let mut candidates = Vec::new();
    let mut next_frame = 0;
    for (index, &at_ms) in findings.candidate_times_ms.iter().enumerate() {
        let path = out_dir.join(format!("candidate-{:04}.jpg", index + 1));
        if !tokio::fs::try_exists(&path).await? {
            break;
        }
        // Both lists are in decoding order: the candidate's frame is the one shown at the same
        // time, looked for from the last one found (the nearest, should the times disagree).
        let times = &findings.frame_times_ms;
        let frame = times[next_frame..]
            .iter()
            .position(|&t| t >= at_ms)
            .map(|offset| next_frame + offset)
            .map(|at_or_after| match at_or_after.checked_sub(1) {
                Some(before) if at_ms.abs_diff(times[before]) < times[at_or_after].abs_diff(at_ms) => before,
                _ => at_or_after,
            })
            .or_else(|| times.len().checked_sub(1));
        if let Some(frame) = frame {
            next_frame = frame;
        }
        candidates.push(Candidate {
            at_ms,
            signals: frame.and_then(|f| frame_signals.get(f).copied()),
        });
        files.push(path);
    }
    Ok((files, candidates))
}

/// Renames the chosen candidates `thumb-01.jpg` on, in order, and deletes the others.
async fn keep_thumbnails(out_dir: &Path, files: &[PathBuf], keep: &[usize]) -> Result<Vec<PathBuf>, MediaError> {
    let mut thumbnails = Vec::with_capacity(keep.len());
    for (number, &index) in keep.iter().enumerate() {
        let path = out_dir.join(format!("thumb-{:02}.jpg", number + 1));
        tokio::fs::rename(&files[index], &path).await?;
        thumbnails.push(path);
    }
    for (index, file) in files.iter().enumerate() {
        if !keep.contains(&index) {
            tokio::fs::remove_file(file).await?;
        }
    }
    Ok(thumbnails)
}

/// The filter graph: the small copy, candidate thumbnails from the full picture, and the
/// sound's detectors.
fn filter_graph(options: &AnalysisOptions, duration_secs: Option<f64>, has_audio: bool) -> String {
    let per_video = f64::from(options.thumbnails.max(1)) * CANDIDATES_PER_THUMBNAIL;
    let interval = duration_secs
        .map_or(MAX_CANDIDATE_INTERVAL_SECS, |d| d / per_video)
        .clamp(MIN_CANDIDATE_INTERVAL_SECS, MAX_CANDIDATE_INTERVAL_SECS);
    // The first candidate halfway into the first interval, or into the video if it is shorter.
    let offset = duration_secs.map_or(interval, |d| interval.min(d)) / 2.0;
    let mut graph = format!(
        "[0:v]split=2[detect][pick];\
         [detect]scale={width}:{height}:flags=fast_bilinear,format=yuv420p,{SIGNALS_INFO}[small];\
         [pick]select='gte(t\\,{offset:.3})*(isnan(prev_selected_t)+gte(t-prev_selected_t\\,{interval:.3}))',\
         scale='min(640\\,iw)':-2,{CANDIDATES_INFO}[candidates]",
        width = signals::WIDTH,
        height = signals::HEIGHT,
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

/// What the small copy's signals showed.
struct Picture {
    boundaries: Boundaries,
    black: Vec<Span>,
    frozen: Vec<Span>,
}

/// What the filters said, gathered line by line.
#[derive(Debug, Default)]
struct Findings {
    /// When each small frame is shown, in order.
    frame_times_ms: Vec<u64>,
    /// When each candidate thumbnail is shown, in order.
    candidate_times_ms: Vec<u64>,
    /// The time bases (numerator, denominator) of the two `showinfo`s' input.
    signals_time_base: (i64, i64),
    candidates_time_base: (i64, i64),
    silence: Vec<Span>,
    silence_start: Option<u64>,
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

/// Reads a `showinfo` line: its input's time base, or a frame's presentation time.
fn read_frame_time(line: &str, time_base: &mut (i64, i64), times_ms: &mut Vec<u64>) {
    if let Some(base) = value_after(line, "config in time_base:") {
        if let Some((num, den)) = base.split_once('/')
            && let (Ok(num), Ok(den)) = (num.parse::<i64>(), den.parse::<i64>())
            && num > 0
            && den > 0
        {
            *time_base = (num, den);
        }
    } else if line.contains(" n:") {
        let (num, den) = *time_base;
        let at_ms = value_after(line, " pts:")
            .and_then(|pts| pts.parse::<i64>().ok())
            .filter(|_| den > 0)
            .map(|pts| (i128::from(pts) * i128::from(num) * 1000 + i128::from(den) / 2) / i128::from(den))
            .map(|ms| u64::try_from(ms.max(0)).unwrap_or(u64::MAX));
        // A frame without a time (rare, broken files) is taken as shown with the one before.
        times_ms.push(at_ms.unwrap_or_else(|| times_ms.last().copied().unwrap_or(0)));
    }
}

impl Findings {
    fn read(&mut self, line: &str) {
        if line.contains(SIGNALS_INFO) {
            read_frame_time(line, &mut self.signals_time_base, &mut self.frame_times_ms);
        } else if line.contains(CANDIDATES_INFO) {
            read_frame_time(line, &mut self.candidates_time_base, &mut self.candidate_times_ms);
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

    /// Closes a silence still open at the end: it runs to the end.
    fn close_open_spans(&mut self, duration_ms: u64) {
        if let Some(start_ms) = self.silence_start.take() {
            self.silence.push(Span {
                start_ms,
                end_ms: duration_ms,
            });
        }
    }

    fn into_report(
        self,
        metadata: VideoFacts,
        duration_ms: u64,
        picture: Picture,
        thumbnails: &[PathBuf],
    ) -> AnalysisReport {
        let has_audio = metadata.audio_codec.is_some();
        let loudness = Loudness {
            integrated_lufs: self.integrated_lufs.filter(|_| has_audio),
            range_lu: self.range_lu.filter(|_| has_audio),
            curve_step_ms: curve_step_ms(duration_ms),
            curve: coarse_curve(&self.loudness_points, curve_step_ms(duration_ms)),
        };
        let highlights = highlights::candidates(&highlights::Inputs {
            duration_ms,
            boundaries: &picture.boundaries,
            black: &picture.black,
            silence: &self.silence,
            frozen: &picture.frozen,
            loudness: &loudness,
        });
        AnalysisReport {
            metadata,
            scene_cuts: picture.boundaries.cuts,
            transitions: picture.boundaries.transitions,
            black_spans: picture.black,
            silent_spans: self.silence,
            frozen_spans: picture.frozen,
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
            "[showinfo@signals @ 0x1] config in time_base: 1/12800, frame_rate: 25/1",
            "[showinfo@signals @ 0x1] n:   0 pts:      0 pts_time:0       pos:     1015 fmt:yuv420p",
            "[showinfo@signals @ 0x1] color_range:tv color_space:unknown color_primaries:unknown",
            "[showinfo@candidates @ 0x6] config in time_base: 1/90000, frame_rate: 25/1",
            "[showinfo@signals @ 0x1] n:   1 pts:    512 pts_time:0.04    pos:   108274 fmt:yuv420p",
            "[showinfo@candidates @ 0x6] n:   0 pts:   3600 pts_time:0.04    pos:   108274",
            "[showinfo@signals @ 0x1] n:   2 pts:  NOPTS pts_time:NOPTS",
            "[silencedetect @ 0x3] silence_start: 3",
            "[silencedetect @ 0x3] silence_end: 5.00002 | silence_duration: 2.00002",
            "[Parsed_ebur128_9 @ 0x5] t: 0.0999773  TARGET:-23 LUFS    M: -21.8 S:-120.7     I: -21.8 LUFS       LRA:   0.0 LU",
            "[Parsed_ebur128_9 @ 0x5] Summary:",
            "  Integrated loudness:",
            "    I:         -21.8 LUFS",
            "    LRA:         4.6 LU",
        ] {
            findings.read(line);
        }
        assert_eq!(findings.frame_times_ms, vec![0, 40, 40]);
        assert_eq!(findings.candidate_times_ms, vec![40]);
        assert_eq!(
            findings.silence,
            vec![Span {
                start_ms: 3_000,
                end_ms: 5_000
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
