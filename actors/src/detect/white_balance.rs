//! Per-camera white balance of the colour descriptor.
//!
//! Two cameras see one person in different colours: each has its own colour
//! cast (a gain per channel), so a hue near a bin edge lands in another bin
//! of [`colour_descriptor`](super::embed::colour_descriptor) and the
//! descriptors of one person disagree across cameras. Many people pass each
//! camera, and their clothes average out to about grey, so the mean colour
//! of a camera's person boxes shows its cast. Each camera keeps that mean
//! ([`WhitePoint`]) over its latest detections, and the descriptor's pixels
//! are scaled per channel so that the mean's channels become equal (its
//! grey level stays) before they are binned ([`WhitePoint::gain`]).
//!
//! Everything is integer arithmetic except the gain, so that the white point
//! does not depend on the order of a frame's boxes. A frame is balanced with
//! the white point of the camera's frames [`LAG_FRAMES`] and more before it
//! ([`WhiteBalance`], shared by a process's detector workers), so that which
//! worker describes which frame, in which batch, changes nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The white point a camera starts from, per channel (0..255).
pub const GREY: f64 = 110.0;
/// Weight of the starting white point, in detections: the first few people
/// a camera sees move it only a little.
pub const PRIOR_DETECTIONS: i64 = 20;
/// Detections the white point remembers (older ones fade out), so that it
/// follows the light of the day.
pub const MEMORY_DETECTIONS: i64 = 2000;
/// Fixed-point scale of a box's mean colour.
const FIXED: u64 = 256;
/// Cameras a detector keeps a white point for; a camera beyond that is
/// described without one.
pub const MAX_CAMERAS: usize = 4096;

/// Sum and count of the pixels the descriptor sampled in one box, before
/// any gain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoxColour {
    /// Sum of the sampled pixels per channel (R, G, B).
    pub sum: [u64; 3],
    /// Pixels sampled.
    pub pixels: u64,
}

impl BoxColour {
    /// The box's mean colour in 1/256 units, rounded half up.
    fn mean_fixed(&self) -> Option<[i64; 3]> {
        (self.pixels > 0).then(|| {
            self.sum
                .map(|s| ((s * FIXED + self.pixels / 2) / self.pixels) as i64)
        })
    }
}

/// Multipliers of R, G, B applied to a pixel before it is binned.
pub type Gain = [f64; 3];

/// The gain that leaves pixels as they are.
pub const NEUTRAL: Gain = [1.0; 3];

/// One camera's running mean person colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WhitePoint {
    /// Sum of the boxes' mean colours, in 1/256 units.
    sum: [i64; 3],
    /// Boxes in `sum` (at most [`MEMORY_DETECTIONS`]).
    boxes: i64,
}

impl WhitePoint {
    /// The camera's mean person colour so far, the starting grey weighted
    /// as [`PRIOR_DETECTIONS`] boxes.
    pub fn mean(&self) -> [f64; 3] {
        let prior = GREY * FIXED as f64 * PRIOR_DETECTIONS as f64;
        let n = (self.boxes + PRIOR_DETECTIONS) as f64 * FIXED as f64;
        self.sum.map(|s| (s as f64 + prior) / n)
    }

    /// The per-channel gain that makes the mean's three channels equal to
    /// their average (a colour cast is taken out, the brightness stays).
    pub fn gain(&self) -> Gain {
        let m = self.mean();
        let grey = (m[0] + m[1] + m[2]) / 3.0;
        m.map(|m| if m > 0.0 { grey / m } else { 1.0 })
    }

    /// Boxes the white point holds.
    pub fn boxes(&self) -> i64 {
        self.boxes
    }

    /// Adds the boxes of one frame; then the oldest fade so that at most
    /// [`MEMORY_DETECTIONS`] count.
    pub fn add_frame(&mut self, boxes: &[BoxColour]) {
        for m in boxes.iter().filter_map(BoxColour::mean_fixed) {
            for (s, v) in self.sum.iter_mut().zip(m) {
                *s += v;
            }
            self.boxes += 1;
        }
        if self.boxes > MEMORY_DETECTIONS {
            for s in &mut self.sum {
                *s = *s * MEMORY_DETECTIONS / self.boxes;
            }
            self.boxes = MEMORY_DETECTIONS;
        }
    }
}

/// Frames a camera's white point lags behind the frame it balances: frame
/// `seq` is balanced with the white point of the camera's frames before
/// `seq - LAG_FRAMES`. Detector workers describe a camera's frames in
/// parallel and finish them in any order; frames that far back are done
/// (at 5 fps they are 12.8 s old, beyond `detection.max_frame_age_ms`), so
/// which worker describes which frame, and when, changes nothing.
pub const LAG_FRAMES: u64 = 64;
/// White points kept per camera, one after each frame, for frames that
/// come late.
const HISTORY: usize = 512;
/// Frames waiting per camera to be added to its white point, at most.
const MAX_PENDING: usize = 4096;

/// One camera's white point as a function of its frame numbers.
#[derive(Debug, Clone, Default)]
struct CameraWhite {
    /// The white point of every frame added up to `through`.
    committed: WhitePoint,
    /// The last frame in `committed`.
    through: Option<u64>,
    /// `(seq, white point after it)` of the latest frames in `committed`.
    history: VecDeque<(u64, WhitePoint)>,
    /// Whether `history` lost its oldest entries.
    trimmed: bool,
    /// Frames described but not yet in `committed`, by `seq`.
    pending: BTreeMap<u64, Vec<BoxColour>>,
}

impl CameraWhite {
    /// Adds the pending frames before `limit`, in order.
    fn commit_before(&mut self, limit: u64) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() >= limit {
                break;
            }
            let (seq, boxes) = entry.remove_entry();
            self.committed.add_frame(&boxes);
            self.through = Some(seq);
            self.history.push_back((seq, self.committed));
            if self.history.len() > HISTORY {
                self.history.pop_front();
                self.trimmed = true;
            }
        }
    }

    /// The white point of the frames before `limit`.
    fn before(&self, limit: u64) -> WhitePoint {
        match self.history.iter().rev().find(|(s, _)| *s < limit) {
            Some((_, w)) => *w,
            None if self.trimmed => self.history.front().map(|(_, w)| *w).unwrap_or_default(),
            None => WhitePoint::default(),
        }
    }
}

/// The white points of the cameras whose frames a process describes, shared
/// by its detector workers.
#[derive(Debug, Default)]
pub struct WhiteBalance {
    /// Per camera id.
    cameras: HashMap<String, CameraWhite>,
}

impl WhiteBalance {
    /// The gain for frame `seq` of `camera`.
    pub fn gain(&mut self, camera: &str, seq: u64) -> Gain {
        let limit = seq.saturating_sub(LAG_FRAMES);
        match self.cameras.get_mut(camera) {
            Some(c) => {
                c.commit_before(limit);
                c.before(limit).gain()
            }
            None => NEUTRAL,
        }
    }

    /// Adds the boxes of frame `seq` of `camera` (ignored once
    /// [`MAX_CAMERAS`] other cameras hold a white point). A frame that
    /// comes after the white point moved past it is left out; a camera
    /// whose frame numbers start again starts again.
    pub fn add_frame(&mut self, camera: &str, seq: u64, boxes: &[BoxColour]) {
        if !self.cameras.contains_key(camera) && self.cameras.len() >= MAX_CAMERAS {
            return;
        }
        let c = self.cameras.entry(camera.to_string()).or_default();
        if let Some(through) = c.through {
            if seq.saturating_add(HISTORY as u64) < through {
                *c = CameraWhite::default();
            } else if seq <= through {
                return;
            }
        }
        c.pending.insert(seq, boxes.to_vec());
        while c.pending.len() > MAX_PENDING {
            c.pending.pop_first();
        }
    }

    /// `camera`'s white point of the frames added so far, if it sent any.
    pub fn latest(&self, camera: &str) -> Option<WhitePoint> {
        self.cameras.get(camera).map(|c| {
            let mut w = c.committed;
            for boxes in c.pending.values() {
                w.add_frame(boxes);
            }
            w
        })
    }
}

/// A [`WhiteBalance`] shared by the detector workers of one process.
pub type SharedWhiteBalance = Arc<Mutex<WhiteBalance>>;

/// `px` scaled by `gain` per channel, rounded half to even and clamped to
/// 0..255.
pub fn apply(px: [u8; 3], gain: &Gain) -> [u8; 3] {
    let mut out = px;
    for (o, g) in out.iter_mut().zip(gain) {
        *o = (f64::from(*o) * g).round_ties_even().clamp(0.0, 255.0) as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn box_of(px: [u64; 3], n: u64) -> BoxColour {
        BoxColour {
            sum: px.map(|c| c * n),
            pixels: n,
        }
    }

    #[test]
    fn a_new_camera_is_neutral() {
        assert_eq!(WhitePoint::default().gain(), NEUTRAL);
        assert_eq!(WhiteBalance::default().gain("any", 1000), NEUTRAL);
    }

    #[test]
    fn a_colour_cast_is_taken_out_and_the_brightness_stays() {
        // A camera that sees everything 20% redder and 20% less blue.
        let mut w = WhitePoint::default();
        for _ in 0..MEMORY_DETECTIONS {
            w.add_frame(&[box_of([132, 110, 88], 500)]);
        }
        let cast = apply([132, 110, 88], &w.gain());
        assert!(cast.iter().all(|&c| (108..=112).contains(&c)), "{cast:?}");
        // A dark camera without a cast stays dark.
        let mut w = WhitePoint::default();
        for _ in 0..MEMORY_DETECTIONS {
            w.add_frame(&[box_of([40, 40, 40], 500)]);
        }
        assert_eq!(apply([40, 40, 40], &w.gain()), [40, 40, 40]);
    }

    #[test]
    fn the_order_of_a_frames_boxes_does_not_matter() {
        let boxes = [box_of([200, 10, 30], 77), box_of([5, 90, 250], 13)];
        let (mut a, mut b) = (WhitePoint::default(), WhitePoint::default());
        a.add_frame(&boxes);
        b.add_frame(&[boxes[1], boxes[0]]);
        assert_eq!(a, b);
        assert_eq!(a.gain(), b.gain());
    }

    #[test]
    fn the_memory_is_bounded_and_follows_a_change_of_light() {
        let mut w = WhitePoint::default();
        for _ in 0..3 * MEMORY_DETECTIONS {
            w.add_frame(&[box_of([55, 110, 165], 10)]);
        }
        assert_eq!(w.boxes(), MEMORY_DETECTIONS);
        assert!((w.mean()[0] - 55.0).abs() < 1.0, "{:?}", w.mean());
        for _ in 0..3 * MEMORY_DETECTIONS {
            w.add_frame(&[box_of([165, 110, 55], 10)]);
        }
        assert!((w.mean()[0] - 165.0).abs() < 10.0, "{:?}", w.mean());
        assert!(w.gain()[0] < 0.75 && w.gain()[2] > 1.5, "{:?}", w.gain());
    }

    #[test]
    fn empty_boxes_and_extreme_gains_are_harmless() {
        let mut w = WhitePoint::default();
        w.add_frame(&[BoxColour::default()]);
        assert_eq!(w.boxes(), 0);
        for _ in 0..MEMORY_DETECTIONS {
            w.add_frame(&[box_of([0, 50, 0], 10)]);
        }
        assert!(w.gain().iter().all(|g| g.is_finite() && *g > 0.0));
        assert_eq!(apply([255, 0, 128], &[1e9, 1e9, 0.0]), [255, 0, 0]);
    }

    /// A frame's boxes, different for every frame number.
    fn frame(seq: u64) -> Vec<BoxColour> {
        let x = seq.wrapping_mul(2_654_435_761) % 200;
        vec![
            box_of([x + 40, 90, 250 - x], 30 + seq % 7),
            box_of([120, x, 60], 11),
        ]
    }

    #[test]
    fn the_order_in_which_workers_finish_frames_does_not_matter() {
        let run = |order: &[u64]| {
            let mut wb = WhiteBalance::default();
            let mut gains = BTreeMap::new();
            for &seq in order {
                gains.insert(seq, wb.gain("cam", seq));
                wb.add_frame("cam", seq, &frame(seq));
            }
            gains
        };
        let in_order: Vec<u64> = (0..600).collect();
        // Four workers, each finishing its frames of a batch of 16 in its
        // own order.
        let shuffled: Vec<u64> = (0..600u64)
            .collect::<Vec<_>>()
            .chunks(16)
            .flat_map(|c| c.iter().rev().step_by(2).chain(c.iter().step_by(2)))
            .copied()
            .collect();
        assert_eq!(shuffled.len(), 600);
        let (a, b) = (run(&in_order), run(&shuffled));
        assert_eq!(a, b);
        assert_eq!(a[&10], NEUTRAL, "the first frames are balanced neutrally");
        assert_ne!(a[&599], NEUTRAL);
    }

    #[test]
    fn late_frames_are_left_out_and_a_restart_starts_again() {
        let mut wb = WhiteBalance::default();
        for seq in 0..2000 {
            wb.gain("cam", seq);
            wb.add_frame("cam", seq, &[box_of([200, 100, 50], 10)]);
        }
        let before = wb.gain("cam", 2000);
        assert_ne!(before, NEUTRAL);
        // A frame the white point has moved past changes nothing.
        wb.add_frame("cam", 1900, &[box_of([0, 0, 255], 10)]);
        assert_eq!(wb.gain("cam", 2000), before);
        // The camera's frame numbers start again: so does its white point.
        wb.add_frame("cam", 0, &[box_of([0, 0, 255], 10)]);
        assert_eq!(wb.gain("cam", 5), NEUTRAL);
    }

    #[test]
    fn cameras_are_kept_apart_and_bounded() {
        let mut wb = WhiteBalance::default();
        for seq in 0..200 {
            wb.add_frame("a", seq, &[box_of([200, 100, 100], 10)]);
        }
        assert_ne!(wb.gain("a", 200), NEUTRAL);
        assert_eq!(wb.gain("a", 10), NEUTRAL);
        assert_eq!(wb.gain("b", 200), NEUTRAL);
        assert!(wb.latest("a").is_some_and(|w| w.boxes() == 200));
        for i in 0..MAX_CAMERAS + 10 {
            wb.add_frame(&format!("c{i}"), 0, &[box_of([1, 2, 3], 1)]);
        }
        assert_eq!(wb.cameras.len(), MAX_CAMERAS);
    }
}
