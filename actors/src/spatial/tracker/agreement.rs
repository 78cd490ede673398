//! How closely each pair of cameras agrees on where one person stands: the
//! gate for joining an identity another camera sees right now.
//!
//! Two calibrated views of one person land at slightly different floor
//! points (calibration error, box bottoms, clocks). How far apart depends on
//! the installation: crops of one image agree within centimetres, cameras
//! calibrated from a few hand-picked points can disagree by a metre. A fixed
//! gate is either too wide for the first (a passer-by next to the person
//! joins their identity) or too narrow for the second (the second view
//! starts a new identity). So each camera pair learns the distance between
//! its simultaneous views of the identities both see (a fading histogram),
//! and its gate follows from their 90% quantile.

use serde::{Deserialize, Serialize};

/// The quantile of a pair's disagreement the gate is derived from.
const QUANTILE: f64 = 0.9;
/// Width (metres) of a histogram bin.
const BIN_M: f64 = 0.05;
/// Bins; the last one takes every larger distance (a camera track that
/// moved to someone else only adds to the tail).
const BINS: usize = 60;
/// Samples the histogram holds (older ones fade out at this rate).
const WINDOW: f32 = 2000.0;
/// Samples before a pair's own estimate replaces `overlap_gate_m`.
pub(super) const MIN_SAMPLES: u32 = 50;
/// The gate as a multiple of the quantile.
const GATE_PER_QUANTILE: f64 = 1.5;
/// The radius within which two identities may be one person, as a multiple
/// of the quantile: wider than the join gate, since one person's views
/// farther apart than it start a second identity that this radius must
/// still find (a `duplicate`, then a merge).
const MERGE_PER_QUANTILE: f64 = 2.0;

/// One camera pair's distances between simultaneous views of one identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct PairAgreement {
    /// Fading histogram of the distances, `BIN_M` per bin.
    hist: Vec<f32>,
    /// Samples taken (saturating).
    samples: u32,
    /// `QUANTILE` of the histogram (metres; the upper edge of its bin),
    /// kept with it: the association reads it for every candidate.
    #[serde(default)]
    quantile_m: Option<f64>,
}

impl PairAgreement {
    /// Takes one distance between the pair's simultaneous views of one
    /// identity.
    pub(super) fn sample(&mut self, d: f64) {
        if !d.is_finite() || d < 0.0 {
            return;
        }
        if self.hist.len() != BINS {
            self.hist = vec![0.0; BINS];
        }
        let keep = 1.0 - 1.0 / WINDOW;
        self.hist.iter_mut().for_each(|x| *x *= keep);
        let bin = ((d / BIN_M) as usize).min(BINS - 1);
        self.hist[bin] += 1.0;
        self.samples = self.samples.saturating_add(1);
        self.quantile_m = quantile(&self.hist);
    }

    /// `QUANTILE` of the distances (metres; the upper edge of its bin), if
    /// any were taken.
    pub(super) fn quantile_m(&self) -> Option<f64> {
        self.quantile_m
    }

    /// Samples taken.
    pub(super) fn samples(&self) -> u32 {
        self.samples
    }

    /// The gate for this pair: `fallback` until it has `MIN_SAMPLES`, then
    /// `GATE_PER_QUANTILE` times its quantile within `[lo, hi]`.
    pub(super) fn gate(&self, fallback: f64, lo: f64, hi: f64) -> f64 {
        self.scaled(GATE_PER_QUANTILE, fallback, lo, hi)
    }

    /// How far apart two identities of this pair's cameras may be and still
    /// be one person: `fallback` until it has `MIN_SAMPLES`, then
    /// `MERGE_PER_QUANTILE` times its quantile within `[lo, hi]`.
    pub(super) fn merge_radius(&self, fallback: f64, lo: f64, hi: f64) -> f64 {
        self.scaled(MERGE_PER_QUANTILE, fallback, lo, hi)
    }

    fn scaled(&self, per_quantile: f64, fallback: f64, lo: f64, hi: f64) -> f64 {
        match self.quantile_m() {
            Some(q) if self.samples >= MIN_SAMPLES => (per_quantile * q).clamp(lo, hi.max(lo)),
            _ => fallback,
        }
    }
}

/// `QUANTILE` of histogram `hist` (the upper edge of its bin), if it holds
/// anything.
fn quantile(hist: &[f32]) -> Option<f64> {
    let total: f64 = hist.iter().map(|x| f64::from(*x)).sum();
    if total <= 0.0 {
        return None;
    }
    let mut acc = 0.0;
    for (i, x) in hist.iter().enumerate() {
        acc += f64::from(*x);
        if acc >= QUANTILE * total {
            return Some((i + 1) as f64 * BIN_M);
        }
    }
    Some(BINS as f64 * BIN_M)
}

/// The key of a camera pair (lower index first).
pub(super) fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(ds: impl Iterator<Item = f64>) -> PairAgreement {
        let mut p = PairAgreement::default();
        for d in ds {
            p.sample(d);
        }
        p
    }

    #[test]
    fn the_gate_follows_how_closely_the_cameras_agree() {
        // Views within 2-10 cm of each other: the gate shrinks to its floor.
        let close = learned((0..60).map(|i| 0.02 + 0.08 * ((i * 37 % 100) as f64 / 100.0)));
        assert_eq!(close.gate(1.0, 0.5, 1.5), 0.5);
        // Views spread uniformly over 0-1 m: the 90% quantile is 0.9 m,
        // the gate about 1.35 m.
        let loose = learned((0..5000).map(|i| (i * 37 % 1000) as f64 / 1000.0));
        let g = loose.gate(1.0, 0.5, 1.5);
        assert!((1.25..=1.45).contains(&g), "gate {g}");
    }

    #[test]
    fn a_few_samples_or_outliers_do_not_move_the_gate() {
        let few = learned((0..10).map(|_| 0.05));
        assert_eq!(few.gate(1.0, 0.5, 1.5), 1.0);
        // One sample in twenty is a track on someone else 5 m away: the
        // 90% quantile stays with the real views (within 0-0.5 m).
        let noisy = learned((0..4000).map(|i| {
            if i % 20 == 0 {
                5.0
            } else {
                (i * 37 % 500) as f64 / 1000.0
            }
        }));
        let g = noisy.gate(1.0, 0.5, 1.5);
        assert!(g <= 0.8, "gate {g}");
    }
}
