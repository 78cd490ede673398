//! A camera's white balance for the colour descriptor.
//!
//! Two cameras see one person in different colours: each has its own colour
//! cast (a gain per channel), so a hue near a bin edge of
//! [`colour_descriptor`](super::embed::colour_descriptor) lands in another
//! bin and one person's descriptors disagree across cameras. Many people
//! pass a camera and their clothes average out to about grey, so the mean
//! colour of its person boxes, its white point, shows its cast. A camera's
//! white point is measured from its own frames (the detection status
//! reports it per camera, see [`WhiteMeter`]) and set in its configuration
//! (`cameras[].detection.white_point`); the descriptor's pixels are then
//! scaled by [`gain_of`] before they are binned, which makes the white
//! point's channels equal: the camera's cast goes, its brightness stays
//! (bringing every camera to one brightness as well cost 9 IDF1 points on
//! the dark real footage of `bench/real_footage`).
//!
//! The white point is set, not learnt as frames arrive: a correction that
//! moves while a camera's people are tracked changes their descriptors
//! under the tracks that hold them, and the detector workers that share a
//! camera's frames would each learn another one.

use serde::{Deserialize, Serialize};

/// Multipliers of R, G, B applied to a pixel before it is binned.
pub type Gain = [f64; 3];

/// The gain that leaves pixels as they are.
pub const NEUTRAL: Gain = [1.0; 3];

/// The gain for a camera whose white point (mean R, G, B of its person
/// boxes) is `white_point`: it scales each channel so that the white
/// point's three channels become their average, which takes out the
/// camera's colour cast and keeps its brightness. A channel of zero (or a
/// value that is not a finite positive number) is left as it is.
pub fn gain_of(white_point: [f64; 3]) -> Gain {
    let grey = white_point.iter().sum::<f64>() / 3.0;
    white_point.map(|m| {
        let g = grey / m;
        if m > 0.0 && g.is_finite() {
            g
        } else {
            1.0
        }
    })
}

/// A pixel scaled by `gain`, rounded to the nearest value (ties to even)
/// and clamped to 0..255.
pub fn apply_gain(px: [u8; 3], gain: &Gain) -> [u8; 3] {
    let mut out = [0u8; 3];
    for ((o, v), g) in out.iter_mut().zip(px).zip(gain) {
        *o = (f64::from(v) * g).round_ties_even().clamp(0.0, 255.0) as u8;
    }
    out
}

/// The running mean of a camera's person box colours (see
/// [`box_colour`](super::embed::box_colour)), before any gain: the white
/// point to configure for the camera.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WhiteMeter {
    /// Sum of the boxes' mean colours, R, G, B.
    pub sum: [f64; 3],
    /// Boxes in `sum`.
    pub boxes: u64,
}

impl WhiteMeter {
    /// Adds one box's mean colour.
    pub fn add(&mut self, colour: [f64; 3]) {
        for (s, c) in self.sum.iter_mut().zip(colour) {
            *s += c;
        }
        self.boxes += 1;
    }

    /// Adds another meter's boxes (another worker's, another frame's).
    pub fn merge(&mut self, other: &WhiteMeter) {
        for (s, c) in self.sum.iter_mut().zip(other.sum) {
            *s += c;
        }
        self.boxes += other.boxes;
    }

    /// The mean colour of the boxes, rounded to 0.1; `None` before any box.
    pub fn white_point(&self) -> Option<[f64; 3]> {
        (self.boxes > 0).then(|| {
            self.sum
                .map(|s| (s / self.boxes as f64 * 10.0).round() / 10.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grey_white_point_changes_nothing() {
        assert_eq!(gain_of([120.0, 120.0, 120.0]), NEUTRAL);
        assert_eq!(apply_gain([10, 200, 255], &NEUTRAL), [10, 200, 255]);
    }

    #[test]
    fn the_gain_takes_the_cast_out_and_keeps_the_brightness() {
        let wp = [150.0, 120.0, 90.0];
        let g = gain_of(wp);
        let balanced: Vec<f64> = wp.iter().zip(g).map(|(m, g)| m * g).collect();
        for b in &balanced {
            assert!((b - 120.0).abs() < 1e-9, "{balanced:?}");
        }
        assert_eq!(apply_gain([150, 120, 90], &g), [120, 120, 120]);
        // A darker camera with the same cast stays darker.
        assert_eq!(
            apply_gain([75, 60, 45], &gain_of([75.0, 60.0, 45.0])),
            [60, 60, 60]
        );
        // Saturates rather than wraps.
        assert_eq!(apply_gain([10, 10, 250], &g)[2], 255);
    }

    #[test]
    fn a_dead_channel_is_left_alone() {
        let g = gain_of([0.0, 100.0, 200.0]);
        assert_eq!(g[0], 1.0);
        assert!(g.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn the_meter_is_the_mean_of_its_boxes_whoever_counted_them() {
        let (mut a, mut b, mut all) = (
            WhiteMeter::default(),
            WhiteMeter::default(),
            WhiteMeter::default(),
        );
        assert_eq!(a.white_point(), None);
        for (i, c) in [
            [100.0, 50.0, 10.0],
            [110.0, 70.0, 30.0],
            [120.0, 90.0, 50.0],
        ]
        .into_iter()
        .enumerate()
        {
            if i == 1 {
                b.add(c)
            } else {
                a.add(c)
            }
            all.add(c);
        }
        a.merge(&b);
        assert_eq!(a.white_point(), Some([110.0, 70.0, 30.0]));
        assert_eq!(a.white_point(), all.white_point());
    }
}
