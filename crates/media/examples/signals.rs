//! Prints the per-frame signals of a video, one line per frame, and the blend windows, for
//! tuning the shot detection:
//! `cargo run --release -p keyframe-media --example signals -- FILE [FIRST LAST]`. Span lengths
//! are those of a 25 fps video, whatever the file's rate.

use keyframe_media::signals::{self, SignalExtractor};
use std::io::Read;
use std::process::{Command, Stdio};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = args.first().expect("a video file");
    let first: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let last: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(usize::MAX);
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-i", file, "-vf"])
        .arg(format!(
            "scale={}:{}:flags=fast_bilinear,format=yuv420p",
            signals::WIDTH,
            signals::HEIGHT
        ))
        .args(["-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut extractor = SignalExtractor::new(Some(25.0));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = stdout.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        extractor.push_bytes(&buffer[..n]);
    }
    child.wait()?;
    let found = extractor.finish();
    let shown = |n: usize| (first..=last).contains(&n);
    for (n, s) in found.frames.iter().enumerate().filter(|(n, _)| shown(*n)) {
        println!(
            "{n:5} luma {:5.1} contrast {:4.1} black {:4.2} back {:5.1} {:5.1} {:5.1} {:5.1}",
            s.luma, s.contrast, s.black_share, s.back[0], s.back[1], s.back[2], s.back[3],
        );
    }
    for w in found.blends.iter().filter(|w| shown(w.end)) {
        println!("blend {:5}-{:5} change {:5.1}", w.start, w.end, w.change);
    }
    Ok(())
}
