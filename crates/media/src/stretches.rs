//! Black and frozen stretches, from the per-frame signals: pure computation, no I/O.
//!
//! They used to come from ffmpeg's `blackdetect` and `freezedetect`; the signals already hold
//! what those filters compute (the share of black pixels, the difference to the frames
//! before), so deciding here saves the pass two filters on its one serial thread.

use crate::signals::{BACK, FrameSignals};
use keyframe_domain::media::Span;

/// A frame differing from the frames before it by at most this (0 to 255 per pixel) has not
/// moved: `freezedetect`'s default noise of -60 dB is 0.001 of the range.
const FREEZE_NOISE: f32 = 0.3;

/// Stretches of black frames lasting at least `min_ms`: from the first black frame to the
/// first frame that is not (or the end).
pub fn black(signals: &[FrameSignals], times_ms: &[u64], duration_ms: u64, min_ms: u64) -> Vec<Span> {
    runs(signals.len().min(times_ms.len()), |frame| signals[frame].is_black())
        .into_iter()
        .map(|(first, last)| Span {
            start_ms: times_ms[first],
            end_ms: times_ms.get(last + 1).copied().unwrap_or(duration_ms),
        })
        .filter(|span| span.duration_ms() >= min_ms)
        .collect()
}

/// Stretches where the picture does not move, lasting at least `min_ms`: from the frame the
/// stillness begins with to the first frame that moves (or the end). As with `freezedetect`,
/// every frame is compared with the one the stillness began with (while it is among the last
/// few; then with the frame a few back), so a drift too slow to see from frame to frame ends it.
pub fn frozen(signals: &[FrameSignals], times_ms: &[u64], duration_ms: u64, min_ms: u64) -> Vec<Span> {
    let frames = signals.len().min(times_ms.len());
    let mut found = Vec::new();
    // The frame the current stillness began with.
    let mut reference: Option<usize> = None;
    let close = |reference: usize, end: usize, found: &mut Vec<Span>| {
        let span = Span {
            start_ms: times_ms[reference],
            end_ms: times_ms.get(end).copied().unwrap_or(duration_ms),
        };
        if span.duration_ms() >= min_ms {
            found.push(span);
        }
    };
    for (frame, signal) in signals.iter().enumerate().take(frames).skip(1) {
        let back = &signal.back;
        let since = frame - reference.unwrap_or(frame - 1);
        let still = back[0] <= FREEZE_NOISE && back[since.min(BACK) - 1] <= FREEZE_NOISE;
        match (still, reference) {
            (true, None) => reference = Some(frame - 1),
            (false, Some(start)) => {
                close(start, frame, &mut found);
                reference = None;
            }
            _ => {}
        }
    }
    if let Some(start) = reference {
        close(start, frames, &mut found);
    }
    found
}

/// Maximal runs `(first, last)` of frames for which `holds` is true.
fn runs(frames: usize, holds: impl Fn(usize) -> bool) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut start = None;
    for frame in 0..frames {
        match (holds(frame), start) {
            (true, None) => start = Some(frame),
            (false, Some(first)) => {
                found.push((first, frame - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(first) = start {
        found.push((first, frames - 1));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(black_share: f32, back: [f32; BACK]) -> FrameSignals {
        FrameSignals {
            luma: 100.0,
            contrast: 30.0,
            black_share,
            back,
            fingerprint: Default::default(),
        }
    }

    #[test]
    fn black_and_frozen_stretches_run_to_the_first_frame_out_of_them_or_the_end() {
        // 0-1 s moving, 1-2 s black (still from its second frame), 2-3 s moving, 3-4 s still
        // to the end. Each still frame's distances to the frames before it are real: the
        // first few still frames still differ from frames before the stillness began.
        let moving = |n: usize| frame(if (25..50).contains(&n) { 1.0 } else { 0.0 }, [5.0; BACK]);
        let still_since = |n: usize, start: usize| {
            let mut back = [0.1; BACK];
            for (k, distance) in back.iter_mut().enumerate() {
                if n - (k + 1) < start {
                    *distance = 40.0;
                }
            }
            back
        };
        let signals: Vec<FrameSignals> = (0..100)
            .map(|n| match n {
                0..25 | 50..75 => moving(n),
                25..50 => frame(1.0, still_since(n, 25)),
                _ => frame(0.0, still_since(n, 74)),
            })
            .collect();
        let times: Vec<u64> = (0..100).map(|n| n * 40).collect();
        let span = |start_ms, end_ms| Span { start_ms, end_ms };
        assert_eq!(black(&signals, &times, 4_000, 300), vec![span(1_000, 2_000)]);
        assert_eq!(black(&signals, &times, 4_000, 1_001), vec![]);
        // The black stillness begins with its first frame (1 s), the last one with the last
        // moving frame (2.96 s).
        assert_eq!(
            frozen(&signals, &times, 4_000, 900),
            vec![span(1_000, 2_000), span(2_960, 4_000)]
        );
    }
}
