//! Per-frame signals from a small copy of the picture: pure computation, no I/O.
//!
//! The analysis pass hands every decoded frame, scaled to [`WIDTH`] x [`HEIGHT`] in YUV 4:2:0,
//! to a [`SignalExtractor`]. It keeps the last couple of seconds of frames and records, per
//! frame, what the shot detection and the thumbnail choice need later: how far the frame is
//! from each of the few frames before it (cuts and flashes), its brightness, and a fingerprint
//! for telling thumbnails apart (48 bytes a frame). Besides, it notes every [`BlendWindow`]:
//! a span whose middle frame is close to the average of its ends, the mark of a fade or a
//! dissolve. The frames themselves are dropped as they age out, so memory stays small
//! whatever the video's length.
//!
//! Differences are mean absolute differences per pixel (0 to 255), luma weighted twice as
//! much as each chroma plane: luma carries structure and motion, while chroma sees a change
//! of colour at equal brightness, which luma alone misses entirely.

use std::collections::VecDeque;

/// Width of the small copy, in pixels.
pub const WIDTH: usize = 128;
/// Height of the small copy, in pixels.
pub const HEIGHT: usize = 72;
const LUMA_BYTES: usize = WIDTH * HEIGHT;
const CHROMA_BYTES: usize = (WIDTH / 2) * (HEIGHT / 2);
/// Bytes of one small frame (planar YUV 4:2:0).
pub const FRAME_BYTES: usize = LUMA_BYTES + 2 * CHROMA_BYTES;

/// How many frames back each frame is compared with, one by one: enough to see a flash of a
/// few frames end where it began.
pub const BACK: usize = 4;
/// A pixel this dark or darker counts as black: a tenth of the way from video black (16) to
/// white (235), as ffmpeg's `blackdetect` with `pix_th=0.10` counts it.
pub const BLACK_PIXEL: u8 = 38;
/// Most span lengths a [`SignalExtractor`] compares across.
const MAX_SPANS: usize = 10;
/// A blend window's ends differ by at least this much (0 to 255 per pixel) ...
const BLEND_MIN_CHANGE: f32 = 10.0;
/// ... and its middle is within this share of that change of the average of its ends (a linear
/// cross-fade scores under 0.1, a pixel dissolve under 0.3, motion 0.35 and more).
const BLEND_TOLERANCE: f32 = 0.3;
/// The shortest span compared across, in frames. Spans are even, so the middle frame is
/// exactly halfway (a linear blend's middle is then exactly the average of its ends).
const SHORTEST_SPAN: usize = 4;
/// The longest span is about this long (fades and dissolves beyond it are not looked for) ...
const LONGEST_SPAN_SECS: f64 = 2.0;
/// ... but never more frames than this, so high frame rates keep memory and time bounded.
const LONGEST_SPAN_FRAMES: usize = 120;

/// A compact description of a frame's look, for telling thumbnails apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Difference hash of the luma: one bit per horizontally adjacent pair of 9 x 8 blocks,
    /// set when the left block is brighter. Robust to small shifts and to re-encoding.
    pub structure: u64,
    /// Mean luma, U and V (0 to 255): the hash is blind to colour and overall brightness.
    pub colour: [u8; 3],
}

impl Fingerprint {
    /// Whether two frames are clearly different pictures, not one picture lit differently.
    pub fn structure_differs_from(&self, other: &Fingerprint) -> bool {
        const STRUCTURE_BITS: u32 = 12;
        (self.structure ^ other.structure).count_ones() >= STRUCTURE_BITS
    }

    /// Whether two frames look clearly different: a different structure, or a different
    /// colour or brightness.
    pub fn is_distinct_from(&self, other: &Fingerprint) -> bool {
        const COLOUR_STEPS: u16 = 20;
        let colour: u16 = self
            .colour
            .iter()
            .zip(other.colour)
            .map(|(a, b)| u16::from(a.abs_diff(b)))
            .sum();
        self.structure_differs_from(other) || colour >= COLOUR_STEPS
    }
}

/// What is known about one frame, relative to those before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSignals {
    /// Mean luma, 0 to 255.
    pub luma: f32,
    /// Standard deviation of the luma: near 0 for a flat (black, white, blank) picture.
    pub contrast: f32,
    /// Share of pixels at most [`BLACK_PIXEL`] bright, 0 to 1.
    pub black_share: f32,
    /// `back[k]`: difference to the frame `k + 1` before; infinite where there is none.
    pub back: [f32; BACK],
    /// The frame's look.
    pub fingerprint: Fingerprint,
}

/// A frame with at least this share of black pixels is black (`blackdetect`'s default).
const BLACK_FRAME_SHARE: f32 = 0.98;

impl FrameSignals {
    /// Whether the frame is black.
    pub fn is_black(&self) -> bool {
        self.black_share >= BLACK_FRAME_SHARE
    }
}

/// A span of frames that looks like a blend of its two ends: they differ clearly and are
/// different pictures (not one picture lit differently), and the frame in its middle is close
/// to their average, which motion and cuts never are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlendWindow {
    /// Its first frame (index).
    pub start: usize,
    /// Its last frame.
    pub end: usize,
    /// The difference between them.
    pub change: f32,
}

/// What an extractor found: a [`FrameSignals`] per frame and the blend windows, by end frame.
#[derive(Debug, Default)]
pub struct Signals {
    /// One per frame, in order.
    pub frames: Vec<FrameSignals>,
    /// Blend windows in order of their last frame.
    pub blends: Vec<BlendWindow>,
}

/// Turns a stream of small frames into [`FrameSignals`], one per frame.
#[derive(Debug)]
pub struct SignalExtractor {
    spans: Vec<usize>,
    /// The most recent frames, newest last; as many as the longest span needs.
    recent: VecDeque<Box<[u8]>>,
    /// Bytes of a frame still arriving.
    partial: Vec<u8>,
    found: Signals,
}

impl SignalExtractor {
    /// An extractor for a video of `frame_rate` frames per second (a guess of 30 when unknown).
    pub fn new(frame_rate: Option<f64>) -> Self {
        Self {
            spans: span_lengths(frame_rate),
            recent: VecDeque::new(),
            partial: Vec::with_capacity(FRAME_BYTES),
            found: Signals::default(),
        }
    }

    /// Takes the next bytes of the stream, in any chunking.
    pub fn push_bytes(&mut self, mut bytes: &[u8]) {
        if !self.partial.is_empty() {
            let wanted = (FRAME_BYTES - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..wanted]);
            bytes = &bytes[wanted..];
            if self.partial.len() < FRAME_BYTES {
                return;
            }
            let frame = std::mem::take(&mut self.partial);
            self.push_frame(frame.into_boxed_slice());
        }
        let mut chunks = bytes.chunks_exact(FRAME_BYTES);
        for frame in &mut chunks {
            self.push_frame(frame.into());
        }
        self.partial.extend_from_slice(chunks.remainder());
    }

    /// The signals of every whole frame taken. A trailing partial frame (a stream cut short)
    /// is dropped.
    pub fn finish(self) -> Signals {
        self.found
    }

    fn push_frame(&mut self, frame: Box<[u8]>) {
        let nth_back = |k: usize| self.recent.len().checked_sub(k).map(|i| &self.recent[i]);
        let mut back = [f32::INFINITY; BACK];
        for (k, slot) in back.iter_mut().enumerate() {
            if let Some(earlier) = nth_back(k + 1) {
                *slot = difference(&frame, earlier);
            }
        }
        let look = fingerprint(&frame);
        let index = self.found.frames.len();
        for &span in &self.spans {
            let (Some(start), Some(middle)) = (nth_back(span), nth_back(span / 2)) else {
                break;
            };
            let change = difference(&frame, start);
            if change >= BLEND_MIN_CHANGE
                && look.structure_differs_from(&self.found.frames[index - span].fingerprint)
                && blend_difference(middle, start, &frame) <= BLEND_TOLERANCE * change
            {
                self.found.blends.push(BlendWindow {
                    start: index - span,
                    end: index,
                    change,
                });
            }
        }
        let (luma, contrast, black_share) = luma_statistics(&frame[..LUMA_BYTES]);
        self.found.frames.push(FrameSignals {
            luma,
            contrast,
            black_share,
            back,
            fingerprint: look,
        });
        let keep = self.spans.last().copied().unwrap_or(0).max(BACK);
        if self.recent.len() == keep {
            self.recent.pop_front();
        }
        self.recent.push_back(frame);
    }
}

/// Even span lengths from [`SHORTEST_SPAN`] frames up to about [`LONGEST_SPAN_SECS`], each
/// about half as long again as the one before, so any fade or dissolve fits one of them with
/// little to spare.
fn span_lengths(frame_rate: Option<f64>) -> Vec<usize> {
    let rate = frame_rate.filter(|r| r.is_finite() && *r > 0.0).unwrap_or(30.0);
    let longest = ((rate * LONGEST_SPAN_SECS).round() as usize).clamp(SHORTEST_SPAN * 2, LONGEST_SPAN_FRAMES);
    let mut spans = vec![SHORTEST_SPAN];
    while let Some(&last) = spans.last() {
        let next = (last * 3).div_ceil(2).next_multiple_of(2);
        if next > longest || spans.len() == MAX_SPANS {
            break;
        }
        spans.push(next);
    }
    spans
}

fn planes(frame: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let (luma, chroma) = frame.split_at(LUMA_BYTES);
    let (u, v) = chroma.split_at(CHROMA_BYTES);
    (luma, u, v)
}

/// Luma twice, each chroma plane once, as means per pixel.
fn weigh(luma_sum: u32, u_sum: u32, v_sum: u32) -> f32 {
    let luma = luma_sum as f32 / LUMA_BYTES as f32;
    let u = u_sum as f32 / CHROMA_BYTES as f32;
    let v = v_sum as f32 / CHROMA_BYTES as f32;
    (2.0 * luma + u + v) / 4.0
}

/// The difference between two frames, 0 (equal) to 255.
pub fn difference(a: &[u8], b: &[u8]) -> f32 {
    let sum = |x: &[u8], y: &[u8]| x.iter().zip(y).map(|(p, q)| u32::from(p.abs_diff(*q))).sum::<u32>();
    let (ay, au, av) = planes(a);
    let (by, bu, bv) = planes(b);
    weigh(sum(ay, by), sum(au, bu), sum(av, bv))
}

/// The difference between `middle` and the average of `start` and `end`.
fn blend_difference(middle: &[u8], start: &[u8], end: &[u8]) -> f32 {
    let sum = |m: &[u8], s: &[u8], e: &[u8]| {
        m.iter()
            .zip(s.iter().zip(e))
            .map(|(m, (s, e))| {
                let average = (u16::from(*s) + u16::from(*e)).div_ceil(2) as u8;
                u32::from(m.abs_diff(average))
            })
            .sum::<u32>()
    };
    let (my, mu, mv) = planes(middle);
    let (sy, su, sv) = planes(start);
    let (ey, eu, ev) = planes(end);
    weigh(sum(my, sy, ey), sum(mu, su, eu), sum(mv, sv, ev))
}

/// Mean, standard deviation and black share of the luma.
fn luma_statistics(luma: &[u8]) -> (f32, f32, f32) {
    let (sum, squares, black) = luma.iter().fold((0u64, 0u64, 0u32), |(sum, squares, black), &p| {
        (
            sum + u64::from(p),
            squares + u64::from(p) * u64::from(p),
            black + u32::from(p <= BLACK_PIXEL),
        )
    });
    let n = luma.len() as f64;
    let mean = sum as f64 / n;
    let variance = (squares as f64 / n - mean * mean).max(0.0);
    (mean as f32, variance.sqrt() as f32, (f64::from(black) / n) as f32)
}

fn fingerprint(frame: &[u8]) -> Fingerprint {
    let (luma, u, v) = planes(frame);
    // Mean luma of a 9 x 8 grid of blocks.
    let mut blocks = [[0f32; 9]; 8];
    for (row, cells) in blocks.iter_mut().enumerate() {
        let (top, bottom) = (row * HEIGHT / 8, (row + 1) * HEIGHT / 8);
        for (column, cell) in cells.iter_mut().enumerate() {
            let (left, right) = (column * WIDTH / 9, (column + 1) * WIDTH / 9);
            let sum: u32 = (top..bottom)
                .flat_map(|y| &luma[y * WIDTH + left..y * WIDTH + right])
                .map(|&p| u32::from(p))
                .sum();
            *cell = sum as f32 / ((bottom - top) * (right - left)) as f32;
        }
    }
    let mut structure = 0u64;
    for (row, cells) in blocks.iter().enumerate() {
        for column in 0..8 {
            // A margin of one step keeps flat pictures' noise out of the bits.
            if cells[column] > cells[column + 1] + 1.0 {
                structure |= 1 << (row * 8 + column);
            }
        }
    }
    let mean = |plane: &[u8]| (plane.iter().map(|&p| u32::from(p)).sum::<u32>() / plane.len() as u32) as u8;
    Fingerprint {
        structure,
        colour: [mean(luma), mean(u), mean(v)],
    }
}

/// Small frames made up for tests.
#[cfg(test)]
pub(crate) mod test_frames {
    use super::{CHROMA_BYTES, LUMA_BYTES};

    /// A flat frame of one colour.
    pub fn flat(y: u8, u: u8, v: u8) -> Vec<u8> {
        let mut frame = vec![y; LUMA_BYTES];
        frame.extend(std::iter::repeat_n(u, CHROMA_BYTES));
        frame.extend(std::iter::repeat_n(v, CHROMA_BYTES));
        frame
    }

    /// `a` and `b` mixed, `share` of `b`.
    pub fn mix(a: &[u8], b: &[u8], share: f32) -> Vec<u8> {
        a.iter()
            .zip(b)
            .map(|(a, b)| (f32::from(*a) * (1.0 - share) + f32::from(*b) * share).round() as u8)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_frames::{flat, mix};
    use super::*;

    #[test]
    fn span_lengths_are_even_and_grow_by_half_up_to_about_two_seconds() {
        assert_eq!(span_lengths(Some(25.0)), vec![4, 6, 10, 16, 24, 36]);
        assert_eq!(span_lengths(None), vec![4, 6, 10, 16, 24, 36, 54]);
        assert_eq!(span_lengths(Some(240.0)).last(), Some(&82));
        assert!(span_lengths(Some(240.0)).len() <= MAX_SPANS);
    }

    #[test]
    fn a_change_of_colour_at_equal_brightness_is_a_difference() {
        let red = flat(81, 90, 240);
        let teal = flat(81, 150, 60);
        assert_eq!(difference(&red, &red), 0.0);
        assert_eq!(difference(&red, &teal), (60.0 + 180.0) / 4.0);
    }

    /// Vertical stripes, `bright` and `dark`, 16 pixels wide.
    fn stripes(bright: u8, dark: u8) -> Vec<u8> {
        let mut frame = flat(128, 128, 128);
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                frame[y * WIDTH + x] = if (x / 16) % 2 == 0 { bright } else { dark };
            }
        }
        frame
    }

    fn extract(frames: &[Vec<u8>], chunk: usize) -> Signals {
        let mut extractor = SignalExtractor::new(Some(25.0));
        for piece in frames.concat().chunks(chunk) {
            extractor.push_bytes(piece);
        }
        extractor.finish()
    }

    #[test]
    fn frames_arrive_in_any_chunking_and_a_fade_is_a_blend() {
        let picture = stripes(200, 30);
        let black = flat(16, 128, 128);
        let mut frames: Vec<Vec<u8>> = (0..=10).map(|i| mix(&picture, &black, i as f32 / 10.0)).collect();
        // A stream cut short: the trailing partial frame is dropped.
        frames.push(picture[..10].to_vec());
        let found = extract(&frames, 1_000);
        assert_eq!(found.frames.len(), 11);
        assert!(found.frames[0].back[0].is_infinite());
        let last = found.frames[10];
        assert!(last.back[0] > 4.5 && last.back[0] < 5.5, "{last:?}");
        assert!(last.luma < 17.0 && last.contrast < 0.5 && last.black_share == 1.0);
        assert_eq!(found.frames[0].black_share, 0.5);
        // Every even span of 4 to 10 frames ending at or after its fourth frame, as long as
        // its ends differ enough and its start still shows the stripes; nothing longer fits.
        assert_eq!(span_lengths(Some(25.0)), vec![4, 6, 10, 16, 24, 36]);
        let whole = found
            .blends
            .iter()
            .find(|w| (w.start, w.end) == (0, 10))
            .expect("the whole fade");
        assert!(whole.change > 45.0, "{whole:?}");
        assert!(
            found
                .blends
                .iter()
                .all(|w| w.end - w.start <= 10 && (w.end - w.start) % 2 == 0)
        );
    }

    #[test]
    fn one_picture_growing_lighter_is_no_blend() {
        let frames: Vec<Vec<u8>> = (0..=20).map(|i| stripes(150 + i * 3, 40 + i * 3)).collect();
        let found = extract(&frames, FRAME_BYTES);
        assert_eq!(found.frames.len(), 21);
        assert_eq!(found.blends, vec![]);
    }

    #[test]
    fn fingerprints_tell_structure_and_colour_apart() {
        let grey = fingerprint(&flat(128, 128, 128));
        assert_eq!(grey.structure, 0);
        let striped = fingerprint(&stripes(200, 40));
        assert!(striped.is_distinct_from(&grey));
        let red = fingerprint(&flat(81, 90, 240));
        let teal = fingerprint(&flat(81, 150, 60));
        assert!(red.is_distinct_from(&teal));
        let nearly_red = fingerprint(&flat(83, 92, 238));
        assert!(!red.is_distinct_from(&nearly_red));
    }
}
