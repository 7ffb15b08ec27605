//! Which frames become thumbnails: pure choice, no I/O.
//!
//! The analysis pass saves candidate frames at a steady rate; this picks among them one
//! representative per shot, taken away from the shot's edges, not black, not frozen where the
//! shot has a moving moment, and nearest the shot's middle. Longer shots come first, and a
//! frame joins only if it looks clearly different from those already chosen (by the
//! [`Fingerprint`]), so a static video gives one thumbnail and a video of three shots three.
//! When shots run out, further distinct views from within long shots (a camera turning)
//! fill the remaining places.

use crate::shots::Boundaries;
use crate::signals::{Fingerprint, FrameSignals};
use keyframe_domain::media::Span;

/// A candidate frame may not lie this close (ms) to a cut or a transition: the picture there
/// may still carry the other shot or be mid-change.
const EDGE_GUARD_MS: u64 = 300;

/// A frame the pass saved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// When it is shown.
    pub at_ms: u64,
    /// Its signals, when they are known.
    pub signals: Option<FrameSignals>,
}

/// What the choice reads besides the candidates.
pub struct Context<'a> {
    /// The video's length.
    pub duration_ms: u64,
    /// Its cuts and transitions.
    pub boundaries: &'a Boundaries,
    /// Where the picture does not move.
    pub frozen: &'a [Span],
    /// The most thumbnails wanted.
    pub count: usize,
}

/// The candidates to keep, as indices into `candidates`, in time order.
pub fn choose(candidates: &[Candidate], context: &Context<'_>) -> Vec<usize> {
    let shots = context.boundaries.shots(context.duration_ms);
    // Usable candidates, grouped by shot: not black, not hard by an edge.
    let mut per_shot: Vec<Vec<usize>> = vec![Vec::new(); shots.len()];
    for (index, candidate) in candidates.iter().enumerate() {
        if candidate.signals.as_ref().is_some_and(FrameSignals::is_black) {
            continue;
        }
        let Some(shot) = shots
            .iter()
            .position(|s| s.start_ms <= candidate.at_ms && candidate.at_ms < s.end_ms)
        else {
            continue;
        };
        let span = shots[shot];
        let guard = EDGE_GUARD_MS.min(span.duration_ms() / 4);
        let inner_start = if span.start_ms == 0 { 0 } else { span.start_ms + guard };
        let inner_end = if span.end_ms >= context.duration_ms {
            u64::MAX
        } else {
            span.end_ms - guard
        };
        if candidate.at_ms >= inner_start && candidate.at_ms <= inner_end {
            per_shot[shot].push(index);
        }
    }
    let frozen = |index: usize| {
        let at = candidates[index].at_ms;
        context
            .frozen
            .iter()
            .any(|span| span.start_ms <= at && at < span.end_ms)
    };
    let fingerprint = |index: usize| candidates[index].signals.map(|s| s.fingerprint).unwrap_or_default();

    // One per shot: moving before frozen, then nearest the middle.
    let mut firsts: Vec<(u64, usize)> = per_shot
        .iter()
        .zip(&shots)
        .filter_map(|(indices, span)| {
            let middle = span.start_ms + span.duration_ms() / 2;
            let best = indices
                .iter()
                .copied()
                .min_by_key(|&i| (frozen(i), candidates[i].at_ms.abs_diff(middle)))?;
            Some((span.duration_ms(), best))
        })
        .collect();
    firsts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));

    let mut chosen: Vec<usize> = Vec::new();
    let mut chosen_looks: Vec<Fingerprint> = Vec::new();
    let mut take = |index: usize, chosen: &mut Vec<usize>| {
        let look = fingerprint(index);
        if chosen.len() < context.count && chosen_looks.iter().all(|other| look.is_distinct_from(other)) {
            chosen.push(index);
            chosen_looks.push(look);
        }
    };
    for &(_, index) in &firsts {
        take(index, &mut chosen);
    }
    // Then other views, furthest in time from what is already chosen first.
    let mut rest: Vec<usize> = per_shot
        .iter()
        .flatten()
        .copied()
        .filter(|i| !chosen.contains(i) && !frozen(*i))
        .collect();
    while chosen.len() < context.count && !rest.is_empty() {
        let distance = |i: usize| {
            chosen
                .iter()
                .map(|&c| candidates[c].at_ms.abs_diff(candidates[i].at_ms))
                .min()
                .unwrap_or(u64::MAX)
        };
        let Some(position) = (0..rest.len()).max_by_key(|&p| (distance(rest[p]), std::cmp::Reverse(rest[p]))) else {
            break;
        };
        let index = rest.swap_remove(position);
        take(index, &mut chosen);
    }
    if chosen.is_empty() && context.count > 0 {
        // Nothing qualified (a black video): still show the middle.
        let middle = context.duration_ms / 2;
        chosen.extend((0..candidates.len()).min_by_key(|&i| candidates[i].at_ms.abs_diff(middle)));
    }
    chosen.sort_unstable_by_key(|&i| candidates[i].at_ms);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyframe_domain::media::SceneCut;

    fn looking(structure: u64, luma: f32) -> Option<FrameSignals> {
        Some(FrameSignals {
            luma,
            contrast: if luma <= 20.0 { 2.0 } else { 40.0 },
            black_share: if luma <= 20.0 { 1.0 } else { 0.0 },
            back: [0.0; crate::signals::BACK],
            fingerprint: Fingerprint {
                structure,
                colour: [luma as u8, 128, 128],
            },
        })
    }

    fn every_half_second(until_ms: u64, look: impl Fn(u64) -> Option<FrameSignals>) -> Vec<Candidate> {
        (0..until_ms / 500)
            .map(|n| Candidate {
                at_ms: n * 500 + 250,
                signals: look(n * 500 + 250),
            })
            .collect()
    }

    fn cuts_at(times: &[u64]) -> Boundaries {
        Boundaries {
            cuts: times.iter().map(|&at_ms| SceneCut { at_ms, score: 30.0 }).collect(),
            transitions: Vec::new(),
        }
    }

    #[test]
    fn a_static_video_gives_one_thumbnail_from_its_middle() {
        let candidates = every_half_second(12_000, |_| looking(0x00ff_00ff, 120.0));
        let boundaries = Boundaries::default();
        let chosen = choose(
            &candidates,
            &Context {
                duration_ms: 12_000,
                boundaries: &boundaries,
                frozen: &[Span {
                    start_ms: 0,
                    end_ms: 12_000,
                }],
                count: 4,
            },
        );
        assert_eq!(
            chosen.iter().map(|&i| candidates[i].at_ms).collect::<Vec<_>>(),
            vec![5_750]
        );
    }

    #[test]
    fn one_distinct_thumbnail_per_shot_away_from_cuts_and_black() {
        // Shots 0-3 s, 3-4 s (black), 4-9 s, 9-12 s; the last looks like the first.
        let look = |at: u64| match at {
            0..3_000 => looking(0x0f0f_0f0f, 120.0),
            3_000..4_000 => looking(0, 16.0),
            4_000..9_000 => looking(0xf0f0_f0f0_0000_0000, 90.0),
            _ => looking(0x0f0f_0f0f, 121.0),
        };
        let candidates = every_half_second(12_000, look);
        let boundaries = cuts_at(&[3_000, 4_000, 9_000]);
        let chosen = choose(
            &candidates,
            &Context {
                duration_ms: 12_000,
                boundaries: &boundaries,
                frozen: &[],
                count: 4,
            },
        );
        let times: Vec<u64> = chosen.iter().map(|&i| candidates[i].at_ms).collect();
        // The 5 s shot first (its middle, 6.5 s), then the first shot (1.5 s: 1.25 or 1.75,
        // the earlier); the last shot repeats the first and the black one is skipped.
        assert_eq!(times, vec![1_250, 6_250]);
    }
}
