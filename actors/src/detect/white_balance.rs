//! Per-camera white balance of the colour descriptor.
//!
//! Two cameras see one person in different colours: each has its own colour
//! cast (a gain per channel) and brightness, so a hue near a bin edge lands
//! in another bin of [`colour_descriptor`](super::embed::colour_descriptor)
//! and the descriptors of one person disagree across cameras. Many people
//! pass each camera, and their clothes average out to about grey, so the
//! mean colour of a camera's person boxes is its cast. Each camera keeps
//! that mean ([`WhitePoint`]) over its latest detections, and the
//! descriptor's pixels are scaled by `GREY / mean` per channel before they
//! are binned ([`WhitePoint::gain`]).
//!
//! Everything is integer arithmetic except the gain, so that the white point
//! does not depend on the order of a frame's boxes. A frame is described with
//! the white point of the frames before it and then added to it, so that
//! batching frames changes nothing.

use std::collections::HashMap;

/// The grey a camera's mean person colour is scaled to, per channel (0..255).
/// It is also the white point a camera starts from.
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

    /// The per-channel gain that takes the mean to [`GREY`].
    pub fn gain(&self) -> Gain {
        self.mean().map(|m| if m > 0.0 { GREY / m } else { 1.0 })
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

/// The white points of the cameras one detector has seen.
#[derive(Debug, Clone, Default)]
pub struct WhitePoints {
    /// Per camera id.
    cameras: HashMap<String, WhitePoint>,
}

impl WhitePoints {
    /// The gain for a frame of `camera`.
    pub fn gain(&self, camera: &str) -> Gain {
        self.cameras.get(camera).copied().unwrap_or_default().gain()
    }

    /// Adds one frame's boxes to `camera`'s white point (ignored once
    /// [`MAX_CAMERAS`] other cameras hold one).
    pub fn add_frame(&mut self, camera: &str, boxes: &[BoxColour]) {
        if let Some(w) = self.cameras.get_mut(camera) {
            w.add_frame(boxes);
        } else if self.cameras.len() < MAX_CAMERAS {
            let mut w = WhitePoint::default();
            w.add_frame(boxes);
            self.cameras.insert(camera.to_string(), w);
        }
    }

    /// A camera's white point, if it has one.
    pub fn get(&self, camera: &str) -> Option<&WhitePoint> {
        self.cameras.get(camera)
    }
}

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
        assert_eq!(WhitePoints::default().gain("any"), NEUTRAL);
    }

    #[test]
    fn a_colour_cast_is_taken_out() {
        // A camera that sees everything 20% redder and 20% less blue.
        let mut w = WhitePoint::default();
        for _ in 0..MEMORY_DETECTIONS {
            w.add_frame(&[box_of([132, 110, 88], 500)]);
        }
        let g = w.gain();
        let cast = apply([132, 110, 88], &g);
        assert!(cast.iter().all(|&c| (108..=112).contains(&c)), "{cast:?}");
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
            w.add_frame(&[box_of([55, 55, 55], 10)]);
        }
        assert_eq!(w.boxes(), MEMORY_DETECTIONS);
        assert!((w.gain()[0] - 2.0).abs() < 0.05, "{:?}", w.gain());
        for _ in 0..3 * MEMORY_DETECTIONS {
            w.add_frame(&[box_of([220, 220, 220], 10)]);
        }
        assert!((w.gain()[0] - 0.5).abs() < 0.05, "{:?}", w.gain());
    }

    #[test]
    fn empty_boxes_and_extreme_gains_are_harmless() {
        let mut w = WhitePoint::default();
        w.add_frame(&[BoxColour::default()]);
        assert_eq!(w.boxes(), 0);
        for _ in 0..MEMORY_DETECTIONS {
            w.add_frame(&[box_of([0, 0, 0], 10)]);
        }
        assert!(w.gain().iter().all(|g| g.is_finite() && *g > 1.0));
        assert_eq!(apply([255, 0, 128], &[1e9, 1e9, 0.0]), [255, 0, 0]);
    }

    #[test]
    fn cameras_are_kept_apart_and_bounded() {
        let mut ws = WhitePoints::default();
        ws.add_frame("a", &[box_of([200, 100, 100], 10)]);
        assert_ne!(ws.gain("a"), NEUTRAL);
        assert_eq!(ws.gain("b"), NEUTRAL);
        for i in 0..MAX_CAMERAS + 10 {
            ws.add_frame(&format!("c{i}"), &[box_of([1, 2, 3], 1)]);
        }
        assert_eq!(ws.cameras.len(), MAX_CAMERAS);
    }
}
