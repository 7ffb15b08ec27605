//! Where one shot ends and the next begins: hard cuts and gradual transitions, decided from
//! the per-frame [`FrameSignals`] and the [`BlendWindow`]s. Pure computation, no I/O.
//!
//! **Cuts.** A frame is a cut when its difference to the frame before stands out against its
//! neighbourhood, not against a fixed bar: it must exceed a floor, exceed the median
//! difference of the frames around it several times over (so constant motion, a pan or
//! Conway's Life, cuts nothing, while a cut right after motion still does), and carry most of
//! the change across the frames on either side (so the steps of a quick dissolve are not
//! cuts). A picture that comes back within a few frames was a flash, not a cut, at either
//! edge. Cuts closer together than a minimum shot keep the stronger one.
//!
//! **Fades.** Around every run of black frames, however short, the brightness is followed
//! back to where it began to fall (a fade out) and forward to where it stops rising (a fade
//! in). One step is a cut to or from black; two or more, none carrying most of the change,
//! are a fade, whatever its curve.
//!
//! **Dissolves.** A blend window (its ends clearly different pictures, its middle frame close
//! to their average: the mark of a blend, which motion and cuts lack) is a dissolve when no
//! single step carries the change and the frames inside change more than those around it.
//! Overlapping windows see one dissolve; what a fade already explains is not one.

use crate::signals::{BACK, BlendWindow, FrameSignals, Signals};
use keyframe_domain::media::{SceneCut, Span, Transition, TransitionKind};

/// A cut's difference must be at least this (0 to 255 per pixel; cuts between ordinary shots
/// measure 20 to 40, a large object changing within a still shot 5 to 8) ...
const CUT_FLOOR: f32 = 12.0;
/// ... and this many times the median difference around it.
const CUT_RATIO: f32 = 3.0;
/// The neighbourhood for that median: this long either side (seconds), within limits.
const NEIGHBOURHOOD_SECS: f64 = 0.4;
/// A cut carries at least this share of the change from the frame two before it to the one
/// after it.
const CUT_CONCENTRATION: f32 = 0.6;
/// A picture within this share of a cut's difference of the picture before it was a flash.
const FLASH_RETURN: f32 = 0.35;
/// The shortest shot, in seconds: cuts closer than this keep the stronger.
const MIN_SHOT_SECS: f64 = 0.25;

/// A dissolve is a blend window (see [`BlendWindow`]) where no step carries more than this
/// share of the change ...
const MAX_STEP_SHARE: f32 = 0.5;
/// ... and the frames inside change at least this many times as much as those around it.
const BUSIER_THAN_AROUND: f32 = 1.2;

/// A fade's brightness moves at least this much per frame (0 to 255).
const FADE_STEP: f32 = 0.3;
/// A fade takes at least this many steps; fewer is a cut ...
const FADE_MIN_STEPS: usize = 2;
/// ... and none of them carries more than this share of its change in brightness (xfade's
/// dip to black, the steepest fade measured, puts 47 % in one step).
const FADE_MAX_STEP_SHARE: f32 = 0.6;

/// What the detection found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Boundaries {
    /// Hard cuts, in time order.
    pub cuts: Vec<SceneCut>,
    /// Fades and dissolves, in time order.
    pub transitions: Vec<Transition>,
}

impl Boundaries {
    /// The shots of a video of `duration_ms`: the stretches between cuts and transitions (a
    /// transition belongs to neither of the shots it joins).
    pub fn shots(&self, duration_ms: u64) -> Vec<Span> {
        let mut edges: Vec<(u64, u64)> = self
            .cuts
            .iter()
            .map(|cut| (cut.at_ms, cut.at_ms))
            .chain(self.transitions.iter().map(|t| (t.start_ms, t.end_ms)))
            .collect();
        edges.sort_unstable();
        let mut shots = Vec::new();
        let mut start = 0;
        for (edge_start, edge_end) in edges {
            if edge_start > start && edge_start <= duration_ms {
                shots.push(Span {
                    start_ms: start,
                    end_ms: edge_start,
                });
            }
            start = start.max(edge_end);
        }
        if duration_ms > start {
            shots.push(Span {
                start_ms: start,
                end_ms: duration_ms,
            });
        }
        shots
    }
}

/// Finds the cuts and transitions in a video whose frames gave `signals`, shown at `times_ms`;
/// `frame_rate` is the video's (30 when unknown).
pub fn detect(signals: &Signals, times_ms: &[u64], frame_rate: Option<f64>) -> Boundaries {
    let frames = signals.frames.len().min(times_ms.len());
    let (frames_seen, times_ms) = (&signals.frames[..frames], &times_ms[..frames]);
    let rate = frame_rate.filter(|r| r.is_finite() && *r > 0.0).unwrap_or(30.0);
    let steps: Vec<f32> = frames_seen.iter().map(|s| finite_or_zero(s.back[0])).collect();
    // Stretches of frames (the last unchanged frame, the first settled one) and their kind.
    let mut gradual: Vec<(usize, usize, TransitionKind)> = fades(frames_seen);
    let blends = signals.blends.iter().filter(|w| w.end < frames);
    for (first, last) in dissolves(blends, &steps) {
        if !gradual.iter().any(|&(f, l, _)| first <= l && f <= last) {
            gradual.push((first, last, TransitionKind::Dissolve));
        }
    }
    gradual.sort_unstable_by_key(|&(first, _, _)| first);
    let cuts = cuts(frames_seen, &steps, &gradual, rate)
        .into_iter()
        .map(|frame| SceneCut {
            at_ms: times_ms[frame],
            score: (f64::from(steps[frame]) * 100.0 / 255.0 * 10.0).round() / 10.0,
        })
        .collect();
    let transitions = gradual
        .into_iter()
        .map(|(first, last, kind)| Transition {
            start_ms: times_ms[first],
            end_ms: times_ms[last],
            kind,
        })
        .collect();
    Boundaries { cuts, transitions }
}

fn finite_or_zero(value: f32) -> f32 {
    if value.is_finite() { value } else { 0.0 }
}

fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let middle = values.len() / 2;
    let (_, value, _) = values.select_nth_unstable_by(middle, f32::total_cmp);
    *value
}

/// The median step in the frames `radius` either side of `frame`, leaving out `skip` frames
/// either side of it (the change being judged, and a flash's partner).
fn median_around(steps: &[f32], frame: usize, radius: usize, skip: usize) -> f32 {
    let before = frame.saturating_sub(radius)..frame.saturating_sub(skip);
    let after = (frame + skip + 1).min(steps.len())..(frame + radius + 1).min(steps.len());
    let mut around: Vec<f32> = steps[before].iter().chain(&steps[after]).copied().collect();
    median(&mut around)
}

/// Fades out into and in from every run of black frames: `(first, last, kind)`, from the last
/// frame before the brightness starts to move to the first where it has settled.
fn fades(signals: &[FrameSignals]) -> Vec<(usize, usize, TransitionKind)> {
    let falls = |from: usize, to: usize| {
        let (a, b) = (&signals[from], &signals[to]);
        a.luma > b.luma + FADE_STEP && a.contrast >= b.contrast
    };
    // Two steps or more, none carrying most of the change: a cut to black followed by a
    // shot that happens to darken is no fade.
    let gradual = |first: usize, last: usize| {
        let total = (signals[first].luma - signals[last].luma).abs();
        let largest = (first..last)
            .map(|f| (signals[f].luma - signals[f + 1].luma).abs())
            .fold(0.0, f32::max);
        last - first >= FADE_MIN_STEPS && largest <= FADE_MAX_STEP_SHARE * total
    };
    let mut found = Vec::new();
    let mut frame = 0;
    // A fade out reaches back no further than the black before it.
    let mut floor = 0;
    while frame < signals.len() {
        if !signals[frame].is_black() {
            frame += 1;
            continue;
        }
        let first_black = frame;
        while frame + 1 < signals.len() && signals[frame + 1].is_black() {
            frame += 1;
        }
        let last_black = frame;
        // Black is counted from 84 % of the way down: within the run the picture may still be
        // darkening at its start and brightening at its end.
        let mut bottom = first_black;
        while bottom < last_black && falls(bottom, bottom + 1) {
            bottom += 1;
        }
        let mut rise = last_black;
        while rise > bottom && falls(rise, rise - 1) {
            rise -= 1;
        }
        let mut top = first_black;
        while top > floor && falls(top - 1, top) {
            top -= 1;
        }
        if gradual(top, bottom) {
            found.push((top, bottom, TransitionKind::FadeOut));
        }
        let mut settled = last_black;
        while settled + 1 < signals.len() && !signals[settled + 1].is_black() && falls(settled + 1, settled) {
            settled += 1;
        }
        if gradual(rise, settled) {
            found.push((rise, settled, TransitionKind::FadeIn));
        }
        floor = settled;
        frame += 1;
    }
    found
}

/// Dissolve stretches `(first, last)`: the unchanged frame before the change and the first
/// frame after it, in order, from the blend windows the extractor noted.
fn dissolves<'a>(blends: impl Iterator<Item = &'a BlendWindow>, steps: &[f32]) -> Vec<(usize, usize)> {
    /// A blend window that also passed the checks on its steps, with the median steps before
    /// and after it.
    struct Window {
        start: usize,
        end: usize,
        change: f32,
        before: f32,
        after: f32,
    }
    let mut found: Vec<Window> = Vec::new();
    for &BlendWindow { start, end, change } in blends {
        let span = end - start;
        let inside = &steps[start + 1..=end];
        if inside.iter().any(|step| *step > MAX_STEP_SHARE * change) {
            continue;
        }
        let busy = inside.iter().sum::<f32>() / span as f32;
        let before = &steps[start.saturating_sub(span / 2)..start];
        let after = &steps[(end + 1).min(steps.len())..(end + 1 + span / 2).min(steps.len())];
        let mut around: Vec<f32> = before.iter().chain(after).copied().collect();
        if busy < BUSIER_THAN_AROUND * median(&mut around) {
            continue;
        }
        found.push(Window {
            start,
            end,
            change,
            before: median(&mut before.to_vec()),
            after: median(&mut after.to_vec()),
        });
    }
    found.sort_unstable_by_key(|w| (w.start, w.end));
    // Overlapping windows see the same dissolve.
    let mut groups: Vec<Vec<Window>> = Vec::new();
    let mut group_end = 0;
    for window in found {
        match groups.last_mut() {
            Some(group) if window.start <= group_end => {
                group_end = group_end.max(window.end);
                group.push(window);
            }
            _ => {
                group_end = window.end;
                groups.push(vec![window]);
            }
        }
    }
    groups
        .into_iter()
        .filter_map(|group| {
            // Any part of a blend is a blend too: the dissolve is the shortest window that
            // takes in (nearly) all of the change ...
            let most = group.iter().map(|w| w.change).fold(0.0, f32::max);
            let best = group.iter().filter(|w| w.change >= 0.9 * most).min_by(|a, b| {
                (a.end - a.start)
                    .cmp(&(b.end - b.start))
                    .then(b.change.total_cmp(&a.change))
            })?;
            // ... less the frames at its ends that move no more than those on their side of it.
            let still = |frame: usize, beside: f32| steps[frame] <= 1.5 * beside + 0.3;
            let (mut first, mut last) = (best.start, best.end);
            while first + 1 < last && still(first + 1, best.before) {
                first += 1;
            }
            while last > first + 1 && still(last, best.after) {
                last -= 1;
            }
            // Two frames are a jump, not a dissolve.
            (last >= first + 2).then_some((first, last))
        })
        .collect()
}

/// The frames that open a new shot with a hard cut.
fn cuts(signals: &[FrameSignals], steps: &[f32], gradual: &[(usize, usize, TransitionKind)], rate: f64) -> Vec<usize> {
    let radius = ((rate * NEIGHBOURHOOD_SECS).round() as usize).clamp(4, 30);
    let min_shot = ((rate * MIN_SHOT_SECS).round() as usize).max(2);
    let mut found: Vec<usize> = Vec::new();
    for frame in 1..signals.len() {
        let step = steps[frame];
        if step < CUT_FLOOR {
            continue;
        }
        if step < CUT_RATIO * median_around(steps, frame, radius, 1) {
            continue;
        }
        // The change from two frames before to one after, when there is a frame after.
        if let Some(wider) = signals
            .get(frame + 1)
            .map(|next| next.back[2])
            .filter(|d| d.is_finite())
            && step < CUT_CONCENTRATION * wider
        {
            continue;
        }
        if is_flash_edge(signals, frame, step) {
            continue;
        }
        if gradual.iter().any(|&(first, last, _)| frame > first && frame <= last) {
            continue;
        }
        // A shot of a few frames at either end of the video is a leader, not a shot.
        if frame < min_shot || signals.len() - frame < min_shot {
            continue;
        }
        match found.last_mut() {
            Some(previous) if frame - *previous < min_shot => {
                if step > steps[*previous] {
                    *previous = frame;
                }
            }
            _ => found.push(frame),
        }
    }
    found
}

/// Whether the change at `frame` is one edge of a flash: the picture before it comes back
/// within a few frames, or the picture after it is one from just before a few odd frames.
fn is_flash_edge(signals: &[FrameSignals], frame: usize, step: f32) -> bool {
    let returns = (1..BACK).any(|k| {
        signals
            .get(frame + k)
            .is_some_and(|later| later.back[k] < FLASH_RETURN * step)
    });
    let resumes = (1..BACK).any(|k| signals[frame].back[k] < FLASH_RETURN * step);
    returns || resumes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::test_frames::mix;
    use crate::signals::{FRAME_BYTES, HEIGHT, SignalExtractor, WIDTH};

    const RATE: f64 = 25.0;

    /// A picture: a colour (Y, U, V) with, when `pattern` is set, one of two textures
    /// shifted by `offset` pixels (the camera moving).
    #[derive(Clone, Copy)]
    struct Picture {
        yuv: (u8, u8, u8),
        pattern: Option<Texture>,
        offset: usize,
    }

    #[derive(Clone, Copy)]
    enum Texture {
        Waves,
        Ripples,
    }

    fn plain(y: u8, u: u8, v: u8) -> Picture {
        Picture {
            yuv: (y, u, v),
            pattern: None,
            offset: 0,
        }
    }

    fn textured(texture: Texture, y: u8, offset: usize) -> Picture {
        Picture {
            yuv: (y, 128, 128),
            pattern: Some(texture),
            offset,
        }
    }

    fn render(picture: Picture) -> Vec<u8> {
        let (y, u, v) = picture.yuv;
        let mut frame = Vec::with_capacity(FRAME_BYTES);
        for row in 0..HEIGHT {
            for column in 0..WIDTH {
                // Smooth textures the camera can pan over.
                let (px, py) = ((column + picture.offset) as f32, row as f32);
                let texture = match picture.pattern {
                    Some(Texture::Waves) => ((px * 0.21).sin() * 40.0 + (px * 0.037 + py * 0.11).cos() * 30.0) as i16,
                    Some(Texture::Ripples) => ((py * 0.3 + px * 0.05).sin() * 45.0 + (px * 0.13).cos() * 20.0) as i16,
                    None => 0,
                };
                frame.push((i16::from(y) + texture).clamp(16, 235) as u8);
            }
        }
        frame.extend(std::iter::repeat_n(u, FRAME_BYTES / 6));
        frame.extend(std::iter::repeat_n(v, FRAME_BYTES / 6));
        frame
    }

    fn run(frames: &[Vec<u8>]) -> Boundaries {
        let mut extractor = SignalExtractor::new(Some(RATE));
        for frame in frames {
            extractor.push_bytes(frame);
        }
        let signals = extractor.finish();
        let times: Vec<u64> = (0..signals.frames.len() as u64).map(|n| n * 40).collect();
        detect(&signals, &times, Some(RATE))
    }

    fn cut_times(found: &Boundaries) -> Vec<u64> {
        found.cuts.iter().map(|cut| cut.at_ms).collect()
    }

    fn still(picture: Picture, frames: usize) -> Vec<Vec<u8>> {
        vec![render(picture); frames]
    }

    #[test]
    fn a_change_of_colour_at_equal_brightness_is_a_cut() {
        let frames = [still(plain(81, 90, 240), 50), still(plain(81, 150, 60), 50)].concat();
        let found = run(&frames);
        assert_eq!(cut_times(&found), vec![2_000]);
        assert!(found.transitions.is_empty());
    }

    #[test]
    fn a_cut_right_after_motion_is_found_and_the_motion_cuts_nothing() {
        // A fast pan over one picture, then a cut to another pan of equal brightness.
        let first = (0..50).map(|n| render(textured(Texture::Waves, 120, n * 2)));
        let second = (0..50).map(|n| render(textured(Texture::Ripples, 120, n * 2)));
        let frames: Vec<Vec<u8>> = first.chain(second).collect();
        assert_eq!(cut_times(&run(&frames)), vec![2_000]);
    }

    #[test]
    fn constant_fast_motion_cuts_nothing() {
        let frames: Vec<Vec<u8>> = (0..150).map(|n| render(textured(Texture::Waves, 120, n * 9))).collect();
        let found = run(&frames);
        assert_eq!(found, Boundaries::default());
    }

    #[test]
    fn flashes_of_one_to_three_frames_are_not_cuts() {
        let scene = render(plain(100, 120, 130));
        let white = render(plain(235, 128, 128));
        let mut frames = vec![scene.clone(); 40];
        for length in 1..=3 {
            frames.extend(vec![white.clone(); length]);
            frames.extend(vec![scene.clone(); 30]);
        }
        assert_eq!(run(&frames), Boundaries::default());
    }

    #[test]
    fn a_fade_to_black_and_back_is_two_fades_and_no_cut() {
        let a = render(plain(150, 100, 160));
        let b = render(plain(110, 160, 90));
        let black = render(plain(16, 128, 128));
        let mut frames = vec![a.clone(); 50];
        // 10 frames down, 2 black frames (0.08 s: a dip far below blackdetect's minimum), 10 up.
        frames.extend((1..=10).map(|i| mix(&a, &black, i as f32 / 10.0)));
        frames.extend(vec![black.clone(); 2]);
        frames.extend((1..=10).map(|i| mix(&black, &b, i as f32 / 10.0)));
        frames.extend(vec![b.clone(); 50]);
        let found = run(&frames);
        assert_eq!(cut_times(&found), Vec::<u64>::new());
        let kinds: Vec<(u64, u64, TransitionKind)> = found
            .transitions
            .iter()
            .map(|t| (t.start_ms, t.end_ms, t.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (49 * 40, 59 * 40, TransitionKind::FadeOut),
                (61 * 40, 71 * 40, TransitionKind::FadeIn)
            ]
        );
    }

    #[test]
    fn a_cut_from_black_into_a_brightening_shot_is_a_cut_not_a_fade() {
        let a = render(plain(150, 100, 160));
        let black = render(plain(16, 128, 128));
        let mut frames = vec![a; 40];
        frames.extend(vec![black; 10]);
        // A shot that brightens by a step a frame for 30 frames, then holds.
        frames.extend((0..30).map(|n| render(plain(100 + n, 128, 128))));
        frames.extend(vec![render(plain(130, 128, 128)); 30]);
        let found = run(&frames);
        assert_eq!(cut_times(&found), vec![40 * 40, 50 * 40]);
        assert_eq!(found.transitions, vec![]);
    }

    #[test]
    fn a_dissolve_is_reported_as_one_and_is_no_cut() {
        let a = render(textured(Texture::Ripples, 90, 0));
        let b = render(plain(170, 100, 150));
        let mut frames = vec![a.clone(); 50];
        frames.extend((1..=15).map(|i| mix(&a, &b, i as f32 / 15.0)));
        frames.extend(vec![b; 50]);
        let found = run(&frames);
        assert_eq!(cut_times(&found), Vec::<u64>::new());
        assert_eq!(
            found.transitions,
            vec![Transition {
                start_ms: 49 * 40,
                end_ms: 64 * 40,
                kind: TransitionKind::Dissolve
            }]
        );
    }

    #[test]
    fn cuts_closer_than_a_shot_keep_the_stronger_and_leaders_are_not_shots() {
        let black = render(plain(16, 128, 128));
        let a = render(plain(120, 128, 128));
        let b = render(plain(160, 128, 128));
        let c = render(plain(60, 128, 128));
        // One black leader frame, a shot, then B for three frames (shorter than a shot), C.
        let mut frames = vec![black];
        frames.extend(vec![a; 40]);
        frames.extend(vec![b; 3]);
        frames.extend(vec![c; 40]);
        assert_eq!(cut_times(&run(&frames)), vec![44 * 40]);
    }
}
