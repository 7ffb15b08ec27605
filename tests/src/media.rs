//! Test videos, made with ffmpeg.

/// Makes a test video with ffmpeg's lavfi sources into `path`: `args` are the inputs and
/// filters between `ffmpeg -y` and the output options (H.264 + AAC in MP4).
pub fn make_video(path: &std::path::Path, args: &[&str]) {
    encode(
        path,
        args,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
    );
}

/// A 2-second video with sound (160x120, 10 fps) in a directory of its own: an analysis of it
/// costs one credit (one started minute).
pub fn short_video() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keyframe-test-video-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("short.mp4");
    make_video(
        &path,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=160x120:r=10:d=2",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=2:r=22050",
        ],
    );
    path
}

/// The same as an AVI file of the kind cameras and older tools write (MPEG-4 Part 2 video,
/// PCM sound); `path` should end in `.avi`.
pub fn make_avi(path: &std::path::Path, args: &[&str]) {
    encode(path, args, &["-c:v", "mpeg4", "-q:v", "5", "-c:a", "pcm_s16le"]);
}

fn encode(path: &std::path::Path, args: &[&str], codecs: &[&str]) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .args(codecs)
        .arg(path)
        .status()
        .expect("ffmpeg runs (CI installs it)");
    assert!(status.success(), "ffmpeg made {}", path.display());
}
