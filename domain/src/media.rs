//! What Keyframe knows about a video and what an analysis finds in it: the facts the probe
//! reads at upload, and the report an analysis job produces. Plain data, shared by the events
//! that carry it, the worker that makes it and the API that shows it.

use serde::{Deserialize, Serialize};

/// The container formats Keyframe accepts, recognised by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// ISO base media (MP4, M4V): an `ftyp` box other than QuickTime's.
    Mp4,
    /// QuickTime (MOV).
    QuickTime,
    /// Matroska (MKV).
    Matroska,
    /// WebM (Matroska with the `webm` doc type).
    WebM,
    /// AVI: a RIFF file of form type `AVI ` (what many cameras and older tools write).
    Avi,
}

impl Container {
    /// The media type a download of it is served with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Mp4 => "video/mp4",
            Self::QuickTime => "video/quicktime",
            Self::Matroska => "video/x-matroska",
            Self::WebM => "video/webm",
            Self::Avi => "video/x-msvideo",
        }
    }
}

/// What the probe found in an uploaded video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoFacts {
    /// Playing time in milliseconds, when the container says.
    pub duration_ms: Option<u64>,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second, when known.
    pub frame_rate: Option<f64>,
    /// Codec of the first video stream (`h264`, `vp9`, ...).
    pub video_codec: String,
    /// Codec of the first audio stream; `None` when silent-by-construction.
    pub audio_codec: Option<String>,
    /// Overall bit rate in bits per second, when known.
    pub bit_rate: Option<u64>,
}

/// A span of time within a video, in milliseconds from its start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Where it starts.
    pub start_ms: u64,
    /// Where it ends.
    pub end_ms: u64,
}

impl Span {
    /// Its length.
    pub fn duration_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    /// How much of it `other` covers.
    pub fn overlap_ms(&self, other: &Span) -> u64 {
        self.end_ms
            .min(other.end_ms)
            .saturating_sub(self.start_ms.max(other.start_ms))
    }
}

/// A scene cut: where the picture changes abruptly, from one frame to the next.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SceneCut {
    /// When: the first frame of the new shot.
    pub at_ms: u64,
    /// How abrupt, 0 to 100: the mean change per pixel across the cut, as a share of the full
    /// range (a cut from black to white is 100; cuts between ordinary shots score 10 to 40).
    pub score: f64,
}

/// How a gradual transition between two shots goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// The picture fades up from black.
    FadeIn,
    /// The picture fades down to black.
    FadeOut,
    /// One shot blends into the next.
    Dissolve,
}

/// A gradual transition: a fade or a dissolve, from its first changing frame to its last.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The last frame before the change begins.
    pub start_ms: u64,
    /// The first frame after the change ends.
    pub end_ms: u64,
    /// Fade or dissolve.
    pub kind: TransitionKind,
}

/// The loudness of the whole video (EBU R 128) and a coarse curve of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Integrated loudness in LUFS; `None` without audio.
    pub integrated_lufs: Option<f64>,
    /// Loudness range in LU.
    pub range_lu: Option<f64>,
    /// Mean momentary loudness (LUFS) per `curve_step_ms`, from the start.
    pub curve: Vec<f64>,
    /// The time each point of `curve` covers.
    pub curve_step_ms: u64,
}

/// A stretch worth cutting into a clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Highlight {
    /// Where it starts.
    pub start_ms: u64,
    /// Where it ends.
    pub end_ms: u64,
    /// How promising, 0 to 1.
    pub score: f64,
    /// Why it scored (`loud`, `scene_change`, `busy`, ...).
    pub reasons: Vec<String>,
}

/// Everything an analysis finds in a video: the `result` of an `analyze` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisReport {
    /// The probe's facts about the file.
    pub metadata: VideoFacts,
    /// Scene cuts, in time order.
    pub scene_cuts: Vec<SceneCut>,
    /// Fades and dissolves, in time order. Absent from reports made before Keyframe looked
    /// for them.
    #[serde(default)]
    pub transitions: Vec<Transition>,
    /// Stretches of black picture.
    pub black_spans: Vec<Span>,
    /// Stretches of silence.
    pub silent_spans: Vec<Span>,
    /// Stretches where the picture does not move.
    pub frozen_spans: Vec<Span>,
    /// Loudness summary and curve.
    pub loudness: Loudness,
    /// Names of the thumbnail artifacts, in time order.
    pub thumbnails: Vec<String>,
    /// Highlight candidates, best first.
    pub highlights: Vec<Highlight>,
}

/// A file a job produced (a thumbnail, a clip), downloadable through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Its name within the job (`thumb-01.jpg`, `clip-01.mp4`).
    pub name: String,
    /// Its media type.
    pub content_type: String,
    /// Its size.
    pub size_bytes: u64,
    /// Where storage keeps it.
    pub storage_key: String,
}

impl VideoFacts {
    /// The longest video Keyframe takes: 12 hours. Longer claims are refused at upload, so no
    /// later step has to size anything by an absurd duration a crafted file declares.
    pub const MAX_DURATION_MS: u64 = 12 * 3600 * 1000;
}

impl Artifact {
    /// Whether `name` may name an artifact: short, plain, with an extension; never a path.
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name.contains('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_are_plain_file_names() {
        assert!(Artifact::is_valid_name("thumb-01.jpg"));
        assert!(Artifact::is_valid_name("clip_2.mp4"));
        assert!(!Artifact::is_valid_name("../secret.mp4"));
        assert!(!Artifact::is_valid_name("a/b.jpg"));
        assert!(!Artifact::is_valid_name(".hidden.jpg"));
        assert!(!Artifact::is_valid_name("noextension"));
    }

    #[test]
    fn span_overlap_is_the_shared_stretch() {
        let a = Span {
            start_ms: 1_000,
            end_ms: 3_000,
        };
        assert_eq!(
            a.overlap_ms(&Span {
                start_ms: 2_000,
                end_ms: 5_000
            }),
            1_000
        );
        assert_eq!(
            a.overlap_ms(&Span {
                start_ms: 4_000,
                end_ms: 5_000
            }),
            0
        );
        assert_eq!(a.duration_ms(), 2_000);
    }
}
