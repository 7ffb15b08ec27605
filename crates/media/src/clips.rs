//! Cutting clips out of a video. Re-encoded, so a clip starts and ends where asked rather than
//! at the nearest keyframes (`-c copy` would snap to them).

use crate::ffmpeg::{self, MediaError};
use keyframe_domain::media::Span;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// Cuts each span of `input` into `out_dir` as `clip-NN.mp4` (H.264 and AAC, playable while
/// downloading). Progress goes to `on_progress` in percent of all the clips' time.
pub async fn cut(
    input: &Path,
    spans: &[Span],
    out_dir: &Path,
    cancel: &CancellationToken,
    mut on_progress: impl FnMut(u8),
) -> Result<Vec<PathBuf>, MediaError> {
    let total_ms: u64 = spans.iter().map(Span::duration_ms).sum::<u64>().max(1);
    let mut done_ms = 0;
    let mut clips = Vec::with_capacity(spans.len());
    for (index, span) in spans.iter().enumerate() {
        let output = out_dir.join(format!("clip-{:02}.mp4", index + 1));
        let mut command = ffmpeg::ffmpeg();
        command
            .args(["-v", "error", "-progress", "pipe:1", "-ss"])
            .arg(seconds(span.start_ms))
            .arg("-i")
            .arg(input)
            .arg("-t")
            .arg(seconds(span.duration_ms()))
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "23",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-movflags",
                "+faststart",
            ])
            .arg(&output);
        ffmpeg::run(
            "ffmpeg",
            command,
            cancel,
            |_| {},
            |out_us| {
                let at_ms = done_ms + (out_us / 1000).min(span.duration_ms());
                on_progress((at_ms * 100 / total_ms) as u8);
            },
        )
        .await?;
        done_ms += span.duration_ms();
        clips.push(output);
    }
    Ok(clips)
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}
