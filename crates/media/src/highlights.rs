//! Highlight candidates from what the analysis found: pure scoring, no I/O.
//!
//! Candidate stretches are the shots between cuts and transitions (long shots split, very
//! short ones dropped; a fade or dissolve belongs to no candidate, so none starts or ends
//! half-faded). Each is scored by its loudness, whether it opens a new shot, and how little of
//! it is dead (black, silent or frozen); mostly dead stretches are not candidates at all.

use crate::shots::Boundaries;
use keyframe_domain::media::{Highlight, Loudness, Span};

/// Shots shorter than this are not candidates.
const MIN_SHOT_MS: u64 = 1_500;
/// Longer shots are split into pieces of at most this.
const MAX_SHOT_MS: u64 = 10_000;
/// Candidates returned, best first.
const MAX_CANDIDATES: usize = 5;
/// Loudness mapped onto 0..1: this quiet is 0 ...
const QUIET_LUFS: f64 = -50.0;
/// ... and this loud is 1.
const LOUD_LUFS: f64 = -10.0;

/// What scoring reads.
pub struct Inputs<'a> {
    /// The video's length.
    pub duration_ms: u64,
    /// Cuts and transitions.
    pub boundaries: &'a Boundaries,
    /// Black stretches.
    pub black: &'a [Span],
    /// Silent stretches.
    pub silence: &'a [Span],
    /// Frozen stretches.
    pub frozen: &'a [Span],
    /// The loudness curve.
    pub loudness: &'a Loudness,
}

/// The best candidates, best first.
pub fn candidates(inputs: &Inputs<'_>) -> Vec<Highlight> {
    let shots = inputs.boundaries.shots(inputs.duration_ms);
    let mut found: Vec<Highlight> = shots
        .iter()
        .flat_map(|shot| split(shot.start_ms, shot.end_ms))
        .filter(|span| span.duration_ms() >= MIN_SHOT_MS)
        .filter_map(|span| {
            let opens_shot = span.start_ms > 0 && shots.iter().any(|shot| shot.start_ms == span.start_ms);
            score(inputs, span, opens_shot)
        })
        .collect();
    found.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.start_ms.cmp(&b.start_ms)));
    found.truncate(MAX_CANDIDATES);
    found
}

fn split(start_ms: u64, end_ms: u64) -> Vec<Span> {
    let pieces = (end_ms - start_ms).div_ceil(MAX_SHOT_MS).max(1);
    let length = (end_ms - start_ms) / pieces;
    (0..pieces)
        .map(|i| Span {
            start_ms: start_ms + i * length,
            end_ms: if i + 1 == pieces {
                end_ms
            } else {
                start_ms + (i + 1) * length
            },
        })
        .collect()
}

fn covered(span: Span, spans: &[Span]) -> f64 {
    let covered: u64 = spans.iter().map(|other| span.overlap_ms(other)).sum();
    (covered as f64 / span.duration_ms().max(1) as f64).min(1.0)
}

fn score(inputs: &Inputs<'_>, span: Span, opens_on_cut: bool) -> Option<Highlight> {
    let black = covered(span, inputs.black);
    let silent = covered(span, inputs.silence);
    let frozen = covered(span, inputs.frozen);
    let dead = black.max(silent).max(frozen);
    if dead > 0.5 {
        return None;
    }
    let step = inputs.loudness.curve_step_ms.max(1);
    let first = (span.start_ms / step) as usize;
    let last = (span.end_ms.div_ceil(step) as usize).min(inputs.loudness.curve.len());
    let points = inputs.loudness.curve.get(first..last).unwrap_or_default();
    let loudness = if points.is_empty() {
        0.0
    } else {
        let mean = points.iter().sum::<f64>() / points.len() as f64;
        ((mean - QUIET_LUFS) / (LOUD_LUFS - QUIET_LUFS)).clamp(0.0, 1.0)
    };
    let raw = 0.55 * loudness + 0.25 * f64::from(u8::from(opens_on_cut)) + 0.2 * (1.0 - frozen);
    let mut reasons = Vec::new();
    if loudness >= 0.6 {
        reasons.push("loud".to_owned());
    }
    if opens_on_cut {
        reasons.push("scene_change".to_owned());
    }
    if frozen == 0.0 {
        reasons.push("moving".to_owned());
    }
    if dead == 0.0 {
        reasons.push("no_dead_air".to_owned());
    }
    Some(Highlight {
        start_ms: span.start_ms,
        end_ms: span.end_ms,
        score: (raw * (1.0 - dead) * 1000.0).round() / 1000.0,
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyframe_domain::media::{SceneCut, Transition, TransitionKind};

    fn loudness(curve: Vec<f64>) -> Loudness {
        Loudness {
            integrated_lufs: Some(-20.0),
            range_lu: Some(5.0),
            curve,
            curve_step_ms: 1_000,
        }
    }

    #[test]
    fn a_loud_shot_after_a_cut_beats_a_quiet_one_and_dead_air_is_no_candidate() {
        // 0-4 s quiet, 4-6 s black and silent, 6-10 s loud.
        let curve = vec![-40.0, -40.0, -40.0, -40.0, -120.0, -120.0, -15.0, -15.0, -15.0, -15.0];
        let loudness = loudness(curve);
        // A cut into the dead stretch, and a fade up from it that no candidate takes in.
        let boundaries = Boundaries {
            cuts: vec![SceneCut {
                at_ms: 4_000,
                score: 40.0,
            }],
            transitions: vec![Transition {
                start_ms: 5_500,
                end_ms: 6_000,
                kind: TransitionKind::FadeIn,
            }],
        };
        let dead = [Span {
            start_ms: 4_000,
            end_ms: 6_000,
        }];
        let found = candidates(&Inputs {
            duration_ms: 10_000,
            boundaries: &boundaries,
            black: &dead,
            silence: &dead,
            frozen: &[],
            loudness: &loudness,
        });
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].start_ms, found[0].end_ms), (6_000, 10_000));
        assert_eq!(found[0].reasons, vec!["loud", "scene_change", "moving", "no_dead_air"]);
        assert_eq!((found[1].start_ms, found[1].end_ms), (0, 4_000));
        assert!(found[0].score > found[1].score);
    }

    #[test]
    fn long_shots_are_split() {
        assert_eq!(split(0, 25_000).len(), 3);
        assert_eq!(split(0, 25_000).last().map(|s| s.end_ms), Some(25_000));
        assert_eq!(
            split(0, 4_000),
            vec![Span {
                start_ms: 0,
                end_ms: 4_000
            }]
        );
    }
}
