//! Test videos, made with ffmpeg.

/// Makes a test video with ffmpeg's lavfi sources into `path`: `args` are the inputs and
/// filters between `ffmpeg -y` and the output options (H.264 + AAC in MP4).
pub fn make_video(path: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ])
        .arg(path)
        .status()
        .expect("ffmpeg runs (CI installs it)");
    assert!(status.success(), "ffmpeg made {}", path.display());
}
