//! `ffprobe`: what a file holds (duration, resolution, codecs), without decoding it.

use crate::ffmpeg::{self, MediaError};
use keyframe_domain::media::VideoFacts;
use serde::Deserialize;
use std::path::Path;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Why a file is not a usable video.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// ffprobe could not read it (corrupt, truncated, not a media file).
    #[error("{0}")]
    Unreadable(String),
    /// It reads, but holds no video stream.
    #[error("the file holds no video stream")]
    NoVideo,
    /// ffprobe could not be run.
    #[error(transparent)]
    Tool(MediaError),
}

#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    disposition: Disposition,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize)]
struct Format {
    duration: Option<String>,
    bit_rate: Option<String>,
}

/// Probes the file at `path`.
pub async fn probe(path: &Path) -> Result<VideoFacts, ProbeError> {
    let mut command = Command::new("ffprobe");
    command
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path);
    // No decoding, so it is quick: collect its output whole.
    let output = command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| {
            ProbeError::Tool(MediaError::Spawn {
                tool: "ffprobe",
                source,
            })
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("unknown error");
        return Err(ProbeError::Unreadable(readable(last)));
    }
    facts_from_json(&String::from_utf8_lossy(&output.stdout))
}

/// The reason without the path ffprobe puts in front of it.
fn readable(line: &str) -> String {
    let reason = match line.rfind(": ") {
        Some(at) => &line[at + 2..],
        None => line,
    };
    format!("the file could not be read as a video: {}", reason.trim())
}

fn facts_from_json(json: &str) -> Result<VideoFacts, ProbeError> {
    let output: Output =
        serde_json::from_str(json).map_err(|e| ProbeError::Unreadable(format!("unexpected ffprobe output: {e}")))?;
    let video = output
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.disposition.attached_pic == 0)
        .ok_or(ProbeError::NoVideo)?;
    let audio = output.streams.iter().find(|s| s.codec_type.as_deref() == Some("audio"));
    let seconds = output
        .format
        .as_ref()
        .and_then(|f| f.duration.as_deref())
        .or(video.duration.as_deref())
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0);
    Ok(VideoFacts {
        duration_ms: seconds.map(|s| (s * 1000.0).round() as u64),
        width: video.width.unwrap_or(0),
        height: video.height.unwrap_or(0),
        frame_rate: video.avg_frame_rate.as_deref().and_then(parse_rate),
        video_codec: video.codec_name.clone().unwrap_or_else(|| "unknown".to_owned()),
        audio_codec: audio.and_then(|a| a.codec_name.clone()),
        bit_rate: output
            .format
            .as_ref()
            .and_then(|f| f.bit_rate.as_deref())
            .and_then(|b| b.parse().ok()),
    })
}

/// `"30000/1001"` as 29.97; `"0/0"` is unknown.
fn parse_rate(raw: &str) -> Option<f64> {
    let (numerator, denominator) = raw.split_once('/')?;
    let (numerator, denominator): (f64, f64) = (numerator.parse().ok()?, denominator.parse().ok()?);
    (denominator > 0.0 && numerator > 0.0).then(|| (numerator / denominator * 1000.0).round() / 1000.0)
}

/// Whether ffprobe and ffmpeg can be run (for readiness and start-up checks).
pub async fn tools_available() -> bool {
    let never = CancellationToken::new();
    let mut probe = Command::new("ffprobe");
    probe.arg("-version");
    let mut mpeg = Command::new("ffmpeg");
    mpeg.arg("-version");
    ffmpeg::run("ffprobe", probe, &never, |_| {}, |_| {}).await.is_ok()
        && ffmpeg::run("ffmpeg", mpeg, &never, |_| {}, |_| {}).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_facts_of_the_first_video_and_audio_streams() {
        let json = r#"{"streams":[
            {"codec_type":"video","codec_name":"mjpeg","width":100,"height":100,"disposition":{"attached_pic":1}},
            {"codec_type":"video","codec_name":"h264","width":1280,"height":720,"avg_frame_rate":"30000/1001"},
            {"codec_type":"audio","codec_name":"aac"}],
            "format":{"duration":"60.040000","bit_rate":"2500000"}}"#;
        let facts = facts_from_json(json).expect("facts");
        assert_eq!(facts.duration_ms, Some(60_040));
        assert_eq!((facts.width, facts.height), (1280, 720));
        assert_eq!(facts.video_codec, "h264");
        assert_eq!(facts.audio_codec.as_deref(), Some("aac"));
        assert_eq!(facts.frame_rate, Some(29.97));
        assert_eq!(facts.bit_rate, Some(2_500_000));
    }

    #[test]
    fn audio_only_is_not_a_video() {
        let json = r#"{"streams":[{"codec_type":"audio","codec_name":"mp3"}],"format":{"duration":"3.0"}}"#;
        assert!(matches!(facts_from_json(json), Err(ProbeError::NoVideo)));
    }

    #[test]
    fn the_reason_leaves_out_the_path() {
        assert_eq!(
            readable("/data/assets/x: Invalid data found when processing input"),
            "the file could not be read as a video: Invalid data found when processing input"
        );
    }
}
