//! The whole analysis pass, run by real ffmpeg on clips ffmpeg makes, with exact expectations:
//! each clip is built so that where its cuts, fades and dissolves lie is known to the frame.

use keyframe_domain::media::{AnalysisReport, Transition, TransitionKind};
use keyframe_media::analysis::{self, AnalysisOptions};
use keyframe_media::probe;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

const SIZE: &str = "s=320x180:r=25";

/// Makes a clip from lavfi `inputs` and a filter `graph` ending in `[v]`, H.264 at 25 fps.
fn make(dir: &Path, name: &str, inputs: &[String], graph: &str) -> PathBuf {
    let path = dir.join(format!("{name}.mp4"));
    let mut command = std::process::Command::new("ffmpeg");
    command.args(["-hide_banner", "-loglevel", "error", "-y"]);
    for input in inputs {
        command.args(["-f", "lavfi", "-i", input]);
    }
    command.args(["-filter_complex", graph, "-map", "[v]"]);
    command.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
    ]);
    let status = command.arg(&path).status().expect("ffmpeg runs (CI installs it)");
    assert!(status.success(), "ffmpeg made {name}");
    path
}

struct Analysed {
    report: AnalysisReport,
    thumbnails: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

async fn analyse(build: impl FnOnce(&Path) -> PathBuf) -> Analysed {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = build(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let facts = probe::probe(&input).await.expect("probed");
    let found = analysis::analyze(
        &input,
        &facts,
        AnalysisOptions::default(),
        &out,
        &CancellationToken::new(),
        |_| {},
    )
    .await
    .expect("analysed");
    let left: Vec<String> = std::fs::read_dir(&out)
        .expect("out dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("thumb-"))
        .collect();
    assert!(left.is_empty(), "only the thumbnails stay behind: {left:?}");
    Analysed {
        report: found.report,
        thumbnails: found.thumbnails,
        _dir: dir,
    }
}

fn cuts(found: &Analysed) -> Vec<u64> {
    found.report.scene_cuts.iter().map(|cut| cut.at_ms).collect()
}

#[tokio::test]
async fn cuts_between_colours_of_equal_brightness_are_found_to_the_frame() {
    // Luma 116 to 120 in all four; only the colour changes.
    let found = analyse(|dir| {
        let inputs: Vec<String> = ["0xC85050", "0x3C8C8C", "0x646EDC", "0x967828"]
            .iter()
            .map(|c| format!("color=c={c}:{SIZE}:d=2"))
            .collect();
        make(dir, "colours", &inputs, "[0][1][2][3]concat=n=4,noise=alls=6:allf=t[v]")
    })
    .await;
    assert_eq!(cuts(&found), vec![2_000, 4_000, 6_000]);
    assert_eq!(found.report.transitions, vec![]);
    // Four distinct shots, four thumbnails, named in order.
    assert_eq!(
        found.report.thumbnails,
        vec!["thumb-01.jpg", "thumb-02.jpg", "thumb-03.jpg", "thumb-04.jpg"]
    );
    assert_eq!(found.thumbnails.len(), 4);
    assert!(found.thumbnails.iter().all(|path| path.exists()));
}

#[tokio::test]
async fn flashes_of_one_to_three_frames_are_no_cuts() {
    let found = analyse(|dir| {
        make(
            dir,
            "flashes",
            &[format!("testsrc2={SIZE}:d=8")],
            "[0]drawbox=c=white:t=fill:enable='eq(n\\,40)+between(n\\,90\\,91)+between(n\\,150\\,152)'[v]",
        )
    })
    .await;
    assert_eq!(cuts(&found), Vec::<u64>::new());
    assert_eq!(found.report.transitions, vec![]);
}

#[tokio::test]
async fn a_fast_pan_and_conways_life_cut_nothing() {
    let pan = analyse(|dir| {
        make(
            dir,
            "pan",
            &["testsrc=s=960x180:r=25:d=6".to_owned()],
            "[0]crop=320:180:x='t*100':y=0[v]",
        )
    })
    .await;
    assert_eq!(cuts(&pan), Vec::<u64>::new());
    assert_eq!(pan.report.transitions, vec![]);
    let life = analyse(|dir| {
        make(
            dir,
            "life",
            &["life=s=160x90:r=25:mold=10:ratio=0.2:death_color=#C83232:life_color=#00FF00".to_owned()],
            "[0]trim=duration=10,scale=320:180:flags=neighbor[v]",
        )
    })
    .await;
    assert_eq!(cuts(&life), Vec::<u64>::new());
    assert_eq!(life.report.transitions, vec![]);
}

#[tokio::test]
async fn a_dip_to_black_is_a_fade_out_and_a_fade_in_and_a_cross_fade_a_dissolve() {
    let dip = analyse(|dir| {
        make(
            dir,
            "dip",
            &[format!("testsrc2={SIZE}:d=3"), format!("smptehdbars={SIZE}:d=3")],
            "[0][1]xfade=transition=fadeblack:duration=0.6:offset=2[v]",
        )
    })
    .await;
    assert_eq!(cuts(&dip), Vec::<u64>::new());
    let kinds: Vec<TransitionKind> = dip.report.transitions.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        vec![TransitionKind::FadeOut, TransitionKind::FadeIn],
        "{:?}",
        dip.report.transitions
    );
    // xfade's dip darkens over the first fifth of its 0.6 s (three frames, to the darkest at
    // 2.12 s) and brightens over the rest; within a frame (40 ms) of those bounds.
    let within_a_frame = |found: (u64, u64), expected: (u64, u64)| {
        found.0.abs_diff(expected.0) <= 40 && found.1.abs_diff(expected.1) <= 40
    };
    let (out, into) = (dip.report.transitions[0], dip.report.transitions[1]);
    assert!(within_a_frame((out.start_ms, out.end_ms), (2_000, 2_120)), "{out:?}");
    assert!(within_a_frame((into.start_ms, into.end_ms), (2_120, 2_600)), "{into:?}");

    let cross = analyse(|dir| {
        make(
            dir,
            "cross",
            &[format!("testsrc2={SIZE}:d=3"), format!("smptehdbars={SIZE}:d=3")],
            "[0][1]xfade=transition=fade:duration=1:offset=2[v]",
        )
    })
    .await;
    assert_eq!(cuts(&cross), Vec::<u64>::new());
    assert_eq!(cross.report.transitions.len(), 1, "{:?}", cross.report.transitions);
    let Transition { start_ms, end_ms, kind } = cross.report.transitions[0];
    assert_eq!(kind, TransitionKind::Dissolve);
    assert!(
        within_a_frame((start_ms, end_ms), (2_000, 3_000)),
        "{start_ms}-{end_ms}"
    );
    // No highlight starts or ends inside the dissolve.
    for highlight in &cross.report.highlights {
        for edge in [highlight.start_ms, highlight.end_ms] {
            assert!(!(start_ms < edge && edge < end_ms), "{highlight:?}");
        }
    }
}

#[tokio::test]
async fn a_still_video_gives_one_thumbnail() {
    let found = analyse(|dir| make(dir, "still", &[format!("smptebars={SIZE}:d=12")], "[0]null[v]")).await;
    assert_eq!(cuts(&found), Vec::<u64>::new());
    assert_eq!(found.report.thumbnails, vec!["thumb-01.jpg"]);
}
