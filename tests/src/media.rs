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
