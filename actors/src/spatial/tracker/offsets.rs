//! Where two cameras put one person, place by place: the systematic part
//! of their disagreement, learned and taken out of each camera's floor
//! positions.
//!
//! A calibration fitted from a handful of measured points is wrong by
//! different amounts in different parts of a camera's view, and two cameras
//! that look at one spot from different sides put one person at floor
//! points tens of centimetres apart, the same way every time. Left in, that
//! bias widens every gate that must hold one person's two views (so a
//! passer-by next to the person fits too) and makes an identity jump when a
//! second camera starts or stops seeing it.
//!
//! Each camera pair learns, per square of the floor ([`CELL_M`]), the mean
//! of the displacement between its simultaneous views of the identities
//! both see. From those, each camera's position at a place is moved to the
//! mean of all the cameras that have learned the place with it: with one
//! partner, half-way towards it, so both meet in the middle. Between
//! squares the correction is interpolated, and where a camera shares no
//! learned square it is zero, so a camera seen alone far from any overlap
//! keeps its calibration as configured. Views farther apart than
//! [`MAX_SAMPLE_M`] are not learned, and a camera track bound to someone
//! nearby for a few cycles moves a mean over hundreds of views little.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Side (metres) of a square of the floor with its own learned offsets.
pub(super) const CELL_M: f64 = 2.0;
/// A displacement larger than this (metres) is not one person's two views.
const MAX_SAMPLE_M: f64 = 1.5;
/// Samples a square's mean is taken over (older ones fade).
const WINDOW: f32 = 300.0;
/// Samples after which a square's mean counts in full; fewer count in
/// proportion.
const FULL_SAMPLES: f32 = 30.0;
/// Most (square, pair) entries kept: a bound on memory and checkpoint size
/// whatever positions the cameras report (about 100 pairs over a floor of
/// 4,000 m²). Once full, squares not yet learned stay unlearned.
const MAX_ENTRIES: usize = 100_000;

/// One camera pair's displacements in one square.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PairCell {
    /// The pair: camera indices, `a < b`.
    a: usize,
    b: usize,
    /// Samples taken, up to [`WINDOW`].
    n: f32,
    /// Their running mean: camera `b`'s position minus camera `a`'s
    /// (metres).
    d: [f32; 2],
}

impl PairCell {
    /// The length of the mean displacement, once learned in full.
    fn full_bias(&self) -> Option<f64> {
        (self.n >= FULL_SAMPLES).then(|| f64::from(self.d[0].hypot(self.d[1])))
    }
}

/// The learned offsets of a shard's cameras.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Offsets {
    /// Per square `(ix, iy)`: what each camera pair learned there (a
    /// handful of pairs at most), in pair order.
    squares: HashMap<(i32, i32), Vec<PairCell>>,
    /// Entries in `squares`, bounded by [`MAX_ENTRIES`].
    entries: usize,
    /// Per camera and square `(x0, y0)`: the corrections (metres) of that
    /// camera's positions at the centres of the squares `(x0, y0)`,
    /// `(x0 + 1, y0)`, `(x0, y0 + 1)` and `(x0 + 1, y0 + 1)`, between
    /// which a point is interpolated. Derived from `squares` whenever they
    /// change, kept four to an entry because it is read for every camera
    /// track of every message: one lookup each. Not in a checkpoint (it
    /// would be most of this struct's bytes): [`Offsets::rebuild`] derives
    /// it again.
    #[serde(skip)]
    corners: HashMap<(usize, i32, i32), [[f32; 2]; 4]>,
    /// Per camera pair: the sum of its full squares' bias lengths and how
    /// many there are, kept up to date for the stats.
    biases: BTreeMap<(usize, usize), (f64, u32)>,
}

/// The square holding floor point `p`.
fn cell_of(p: [f64; 2]) -> (i32, i32) {
    (
        (p[0] / CELL_M).floor() as i32,
        (p[1] / CELL_M).floor() as i32,
    )
}

impl Offsets {
    /// Takes one pair of simultaneous views of one identity: camera `a` saw
    /// it at `pa`, camera `b` at `pb` (each as its calibration puts it,
    /// before any correction).
    pub(super) fn sample(&mut self, a: usize, pa: [f64; 2], b: usize, pb: [f64; 2]) {
        if a == b {
            return;
        }
        let (a, pa, b, pb) = if a < b {
            (a, pa, b, pb)
        } else {
            (b, pb, a, pa)
        };
        let d = [pb[0] - pa[0], pb[1] - pa[1]];
        if !d.iter().all(|x| x.is_finite()) || d[0].hypot(d[1]) > MAX_SAMPLE_M {
            return;
        }
        let (ix, iy) = cell_of([(pa[0] + pb[0]) / 2.0, (pa[1] + pb[1]) / 2.0]);
        let full = self.entries >= MAX_ENTRIES;
        let cells = match self.squares.get_mut(&(ix, iy)) {
            Some(v) => v,
            None if full => return,
            None => self.squares.entry((ix, iy)).or_default(),
        };
        // Kept in pair order: the corrections sum over them in that order.
        let i = match cells.binary_search_by_key(&(a, b), |c| (c.a, c.b)) {
            Ok(i) => i,
            Err(_) if full => return,
            Err(i) => {
                cells.insert(
                    i,
                    PairCell {
                        a,
                        b,
                        ..PairCell::default()
                    },
                );
                self.entries += 1;
                i
            }
        };
        let c = &mut cells[i];
        let before = c.full_bias();
        c.n = (c.n + 1.0).min(WINDOW);
        for (m, x) in c.d.iter_mut().zip(d) {
            *m += (x as f32 - *m) / c.n;
        }
        let after = c.full_bias();
        if before.is_some() || after.is_some() {
            let e = self.biases.entry((a, b)).or_default();
            e.0 += after.unwrap_or(0.0) - before.unwrap_or(0.0);
            e.1 = (e.1 + u32::from(after.is_some())).saturating_sub(u32::from(before.is_some()));
        }
        for cam in [a, b] {
            set_corners(&mut self.corners, cam, (ix, iy), correction(cells, cam));
        }
    }

    /// Derives the corrections at the squares' corners from what the
    /// squares learned: after a restore from a checkpoint, which leaves
    /// them out. Gives what [`Offsets::sample`] kept up to date, exactly: a
    /// camera's correction in a square depends only on the pairs with it
    /// there, and every sample of such a pair recomputes it.
    pub(super) fn rebuild(&mut self) {
        self.corners.clear();
        for (&square, cells) in &self.squares {
            let cams: BTreeSet<usize> = cells.iter().flat_map(|c| [c.a, c.b]).collect();
            for cam in cams {
                set_corners(&mut self.corners, cam, square, correction(cells, cam));
            }
        }
    }

    /// What camera `cam`'s floor point `p` becomes: `p` plus the
    /// correction, interpolated between the centres of the four nearest
    /// squares (zero where the camera learned nothing).
    pub(super) fn correct(&self, cam: usize, p: [f64; 2]) -> [f64; 2] {
        if self.corners.is_empty() || !p.iter().all(|x| x.is_finite()) {
            return p;
        }
        let fx = p[0] / CELL_M - 0.5;
        let fy = p[1] / CELL_M - 0.5;
        let (x0, y0) = (fx.floor(), fy.floor());
        let (tx, ty) = (fx - x0, fy - y0);
        let Some(c) = self.corners.get(&(cam, x0 as i32, y0 as i32)) else {
            return p;
        };
        let mut out = p;
        for (k, wk) in [
            (0, (1.0 - tx) * (1.0 - ty)),
            (2, (1.0 - tx) * ty),
            (1, tx * (1.0 - ty)),
            (3, tx * ty),
        ] {
            out[0] += wk * f64::from(c[k][0]);
            out[1] += wk * f64::from(c[k][1]);
        }
        out
    }

    /// How far apart each camera pair `(a, b)`, `a < b`, puts one person,
    /// for the stats: the mean length of its learned displacement (metres)
    /// over the squares it learned in full, for the pairs with any.
    pub(super) fn pair_biases(&self) -> BTreeMap<(usize, usize), f64> {
        self.biases
            .iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(k, (sum, n))| (*k, sum / f64::from(*n)))
            .collect()
    }
}

/// Records `c`, camera `cam`'s correction in square `(ix, iy)`, at the
/// four corner entries it is a corner of: the square is corner
/// `k = dx + 2 dy` of the entry at `(ix - dx, iy - dy)`.
fn set_corners(
    corners: &mut HashMap<(usize, i32, i32), [[f32; 2]; 4]>,
    cam: usize,
    (ix, iy): (i32, i32),
    c: [f32; 2],
) {
    for (k, (dx, dy)) in [(0, 0), (1, 0), (0, 1), (1, 1)].into_iter().enumerate() {
        corners
            .entry((cam, ix.saturating_sub(dx), iy.saturating_sub(dy)))
            .or_default()[k] = c;
    }
}

/// Camera `cam`'s correction in a square whose pairs learned `cells`: its
/// position moves to the mean over itself and each partner that learned
/// the square, each partner weighted by how much it learned there.
fn correction(cells: &[PairCell], cam: usize) -> [f32; 2] {
    let mut sum = [0.0f32; 2];
    let mut weight = 1.0f32;
    for c in cells {
        let sign = if c.a == cam {
            1.0
        } else if c.b == cam {
            -1.0
        } else {
            continue;
        };
        let w = (c.n / FULL_SAMPLES).min(1.0);
        sum[0] += sign * w * c.d[0];
        sum[1] += sign * w * c.d[1];
        weight += w;
    }
    [sum[0] / weight, sum[1] / weight]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
        (a[0] - b[0]).hypot(a[1] - b[1])
    }

    #[test]
    fn two_cameras_with_a_steady_disagreement_meet_in_the_middle() {
        let mut o = Offsets::default();
        // Camera 1 puts everyone 0.6 m further along x than camera 0 does,
        // around (5, 5).
        for i in 0..200 {
            let p = [4.2 + (i % 9) as f64 * 0.2, 4.1 + (i % 7) as f64 * 0.25];
            o.sample(0, p, 1, [p[0] + 0.6, p[1]]);
        }
        let p = [5.0, 5.0];
        let a = o.correct(0, p);
        let b = o.correct(1, [p[0] + 0.6, p[1]]);
        assert!(dist(a, b) < 0.05, "{a:?} vs {b:?}");
        assert!(dist(a, [5.3, 5.0]) < 0.05, "half-way: {a:?}");
        // A camera that learned nothing keeps its positions.
        assert_eq!(o.correct(2, p), p);
        // Far from the learned squares nothing moves either.
        assert_eq!(o.correct(0, [20.0, 20.0]), [20.0, 20.0]);
    }

    #[test]
    fn the_correction_fades_in_between_squares() {
        let mut o = Offsets::default();
        for _ in 0..100 {
            o.sample(0, [1.0, 1.0], 1, [1.4, 1.0]);
        }
        // The centre of square (0, 0) gets the full correction, the centre
        // of the next one none, and the way between a part.
        let full = o.correct(0, [1.0, 1.0])[0] - 1.0;
        let half = o.correct(0, [2.0, 1.0])[0] - 2.0;
        let none = o.correct(0, [3.0, 1.0])[0] - 3.0;
        assert!((full - 0.2).abs() < 1e-6, "{full}");
        assert!((half - 0.1).abs() < 1e-6, "{half}");
        assert!(none.abs() < 1e-9, "{none}");
    }

    #[test]
    fn wild_or_few_samples_move_little() {
        let mut o = Offsets::default();
        // Views 3 m apart are two people, not one person twice.
        for _ in 0..100 {
            o.sample(0, [1.0, 1.0], 1, [4.0, 1.0]);
        }
        assert_eq!(o.correct(0, [1.0, 1.0]), [1.0, 1.0]);
        // Three samples of 0.6 m count a tenth of the way.
        for _ in 0..3 {
            o.sample(0, [1.0, 1.0], 1, [1.6, 1.0]);
        }
        let moved = o.correct(0, [1.0, 1.0])[0] - 1.0;
        assert!(moved > 0.0 && moved < 0.06, "{moved}");
        assert!(o.pair_biases().is_empty(), "not yet learned in full");
    }

    #[test]
    fn what_is_learned_is_bounded() {
        let mut o = Offsets::default();
        // One sample in each of more squares than are kept, along a line
        // that reaches far beyond any floor.
        for i in 0..(MAX_ENTRIES + 10) {
            let p = [i as f64 * CELL_M, 1.0];
            o.sample(0, p, 1, [p[0] + 0.1, 1.0]);
        }
        assert_eq!(o.entries, MAX_ENTRIES);
        assert_eq!(o.squares.values().map(Vec::len).sum::<usize>(), MAX_ENTRIES);
        assert!(o.corners.len() <= 8 * MAX_ENTRIES);
        // Positions at the ends of the square indices do not overflow them.
        let mut edge = Offsets::default();
        edge.sample(0, [-1e12, -1e12], 1, [-1e12, -1e12]);
        edge.sample(0, [1e12, 1e12], 1, [1e12, 1e12]);
        assert_eq!(edge.entries, 2);
        // Non-finite positions are ignored.
        o.sample(0, [f64::NAN, 1.0], 1, [1.0, 1.0]);
        o.sample(0, [f64::INFINITY, 1.0], 1, [f64::INFINITY, 1.0]);
        assert_eq!(o.entries, MAX_ENTRIES);
    }

    #[test]
    fn corrections_derived_again_equal_those_kept_up_to_date() {
        let mut o = Offsets::default();
        // Three cameras over a strip of squares, each pair with its own
        // disagreement, some squares learned in part only.
        for i in 0..400u32 {
            let p = [f64::from(i % 37) * 0.31, 1.0 + f64::from(i % 11) * 0.4];
            let (a, b) = [(0, 1), (1, 2), (0, 2)][(i % 3) as usize];
            let d = 0.1 * (a + b) as f64 + f64::from(i % 5) * 0.02;
            o.sample(a, p, b, [p[0] + d, p[1] - d / 2.0]);
        }
        let mut restored = o.clone();
        restored.corners.clear();
        restored.rebuild();
        assert_eq!(restored.corners, o.corners);
        assert_eq!(restored, o);
    }

    #[test]
    fn three_cameras_agree_on_one_point() {
        let mut o = Offsets::default();
        // Cameras 1 and 2 see one person 0.4 m right and 0.4 m up of
        // where camera 0 does; each pair learns its share.
        let (p0, p1, p2) = ([5.0, 5.0], [5.4, 5.0], [5.0, 5.4]);
        for _ in 0..100 {
            o.sample(0, p0, 1, p1);
            o.sample(0, p0, 2, p2);
            o.sample(1, p1, 2, p2);
        }
        // Each camera's correction at the place, added to its own view.
        let at = |cam: usize, p: [f64; 2]| {
            let c = o.correct(cam, [5.0, 5.0]);
            [p[0] + c[0] - 5.0, p[1] + c[1] - 5.0]
        };
        let (a, b, c) = (at(0, p0), at(1, p1), at(2, p2));
        assert!(dist(a, b) < 1e-3 && dist(b, c) < 1e-3, "{a:?} {b:?} {c:?}");
        let bias = o.pair_biases().get(&(0, 1)).copied().unwrap_or(0.0);
        assert!((bias - 0.4).abs() < 1e-3, "{bias}");
    }
}
