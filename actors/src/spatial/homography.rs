//! Image-to-floor homography: estimation from point correspondences with the
//! normalised direct linear transform (Hartley), validation, and projection of
//! pixel coordinates onto the floor plane in metres.

use nalgebra::{DMatrix, Matrix3, Vector3};

/// Why a calibration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibError {
    /// Fewer than four correspondences, or image and floor lists of different length.
    #[error("calibration needs at least 4 image/floor point pairs of equal count, got {image} image and {floor} floor points")]
    TooFewPoints {
        /// Number of image points given.
        image: usize,
        /// Number of floor points given.
        floor: usize,
    },
    /// A coordinate is NaN or infinite.
    #[error("calibration point {index} has a non-finite coordinate")]
    NonFinite {
        /// Index of the offending pair.
        index: usize,
    },
    /// Two pairs share the same image or floor point.
    #[error("calibration points {a} and {b} are duplicates")]
    Duplicate {
        /// First index.
        a: usize,
        /// Second index.
        b: usize,
    },
    /// The image or floor points are (nearly) collinear: no unique homography.
    #[error("calibration {which} points are collinear (no unique homography)")]
    Collinear {
        /// `"image"` or `"floor"`.
        which: &'static str,
    },
    /// The matrix is singular or not finite.
    #[error("homography matrix is singular or not finite")]
    Singular,
    /// The points do not agree with any single homography.
    #[error("calibration points are inconsistent: reprojection error mean {mean_m:.3} m, max {max_m:.3} m (limit {limit_m} m); point {index} is {index_m:.3} m off on the floor and {index_px:.1} px in the image (limit {limit_px} px)")]
    Inconsistent {
        /// Mean floor reprojection error, metres.
        mean_m: f64,
        /// Maximum floor reprojection error, metres.
        max_m: f64,
        /// The floor limit that was exceeded, metres.
        limit_m: f64,
        /// The worst point off by more than both limits.
        index: usize,
        /// Its floor error, metres.
        index_m: f64,
        /// Its image error, pixels.
        index_px: f64,
        /// The image limit it exceeded too, pixels.
        limit_px: f64,
    },
}

/// Largest accepted reprojection error of a calibration point on the
/// floor, metres ...
pub const MAX_REPROJECTION_ERROR_M: f64 = 0.5;
/// ... unless it is within this many pixels in the image: far from a low
/// camera a pixel spans tens of centimetres of floor, and points clicked
/// there within a few pixels are as good as the image allows.
pub const MAX_REPROJECTION_ERROR_PX: f64 = 8.0;

/// A 3x3 homography mapping image pixels `(u, v, 1)` to floor metres `(x, y, 1)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Homography {
    /// The matrix, normalised so that its Frobenius norm is 1 and `w > 0` for
    /// pixels that see the floor.
    m: Matrix3<f64>,
}

fn check_points(image_px: &[[f64; 2]], floor_m: &[[f64; 2]]) -> Result<(), CalibError> {
    if image_px.len() != floor_m.len() || image_px.len() < 4 {
        return Err(CalibError::TooFewPoints {
            image: image_px.len(),
            floor: floor_m.len(),
        });
    }
    for (i, (a, b)) in image_px.iter().zip(floor_m).enumerate() {
        if !(a[0].is_finite() && a[1].is_finite() && b[0].is_finite() && b[1].is_finite()) {
            return Err(CalibError::NonFinite { index: i });
        }
    }
    for i in 0..image_px.len() {
        for j in (i + 1)..image_px.len() {
            let di = dist(image_px[i], image_px[j]);
            let df = dist(floor_m[i], floor_m[j]);
            if di < 1e-6 || df < 1e-9 {
                return Err(CalibError::Duplicate { a: i, b: j });
            }
        }
    }
    if collinear(image_px) {
        return Err(CalibError::Collinear { which: "image" });
    }
    if collinear(floor_m) {
        return Err(CalibError::Collinear { which: "floor" });
    }
    Ok(())
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// True when the points lie (nearly) on one line: the smaller singular value of
/// the centred point cloud is tiny relative to the larger one.
fn collinear(p: &[[f64; 2]]) -> bool {
    let n = p.len() as f64;
    let (mx, my) = p
        .iter()
        .fold((0.0, 0.0), |(x, y), q| (x + q[0] / n, y + q[1] / n));
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for q in p {
        let (dx, dy) = (q[0] - mx, q[1] - my);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    let tr = sxx + syy;
    let det = sxx * syy - sxy * sxy;
    let disc = ((tr * tr / 4.0) - det).max(0.0).sqrt();
    let l1 = tr / 2.0 + disc;
    let l2 = (tr / 2.0 - disc).max(0.0);
    l1 <= 0.0 || (l2 / l1).sqrt() < 1e-3
}

/// Hartley normalisation: translate to the centroid, scale to mean distance sqrt(2).
fn normaliser(p: &[[f64; 2]]) -> Matrix3<f64> {
    let n = p.len() as f64;
    let (mx, my) = p
        .iter()
        .fold((0.0, 0.0), |(x, y), q| (x + q[0] / n, y + q[1] / n));
    let md = p
        .iter()
        .map(|q| ((q[0] - mx).powi(2) + (q[1] - my).powi(2)).sqrt())
        .sum::<f64>()
        / n;
    let s = if md > 0.0 {
        std::f64::consts::SQRT_2 / md
    } else {
        1.0
    };
    Matrix3::new(s, 0.0, -s * mx, 0.0, s, -s * my, 0.0, 0.0, 1.0)
}

fn apply(t: &Matrix3<f64>, p: [f64; 2]) -> [f64; 2] {
    let v = t * Vector3::new(p[0], p[1], 1.0);
    [v[0] / v[2], v[1] / v[2]]
}

impl Default for Homography {
    /// The identity (pixels read as metres): a placeholder, never a
    /// calibration.
    fn default() -> Self {
        Homography {
            m: Matrix3::identity() / 3f64.sqrt(),
        }
    }
}

impl Homography {
    /// Estimates the image-to-floor homography from at least four
    /// correspondences (pixels, metres) with the normalised DLT. Refuses
    /// degenerate input (too few, non-finite, duplicate or collinear points)
    /// and inconsistent input (a point off by more than
    /// [`MAX_REPROJECTION_ERROR_M`] on the floor and more than
    /// [`MAX_REPROJECTION_ERROR_PX`] in the image).
    pub fn from_points(
        image_px: &[[f64; 2]],
        floor_m: &[[f64; 2]],
    ) -> Result<Homography, CalibError> {
        check_points(image_px, floor_m)?;
        let ti = normaliser(image_px);
        let tf = normaliser(floor_m);
        let n = image_px.len();
        // At least 9 rows so that the SVD yields a full 9x9 V^T.
        let rows = (2 * n).max(9);
        let mut a = DMatrix::<f64>::zeros(rows, 9);
        for (i, (ip, fp)) in image_px.iter().zip(floor_m).enumerate() {
            let [u, v] = apply(&ti, *ip);
            let [x, y] = apply(&tf, *fp);
            let r = 2 * i;
            let row1 = [-u, -v, -1.0, 0.0, 0.0, 0.0, x * u, x * v, x];
            let row2 = [0.0, 0.0, 0.0, -u, -v, -1.0, y * u, y * v, y];
            for k in 0..9 {
                a[(r, k)] = row1[k];
                a[(r + 1, k)] = row2[k];
            }
        }
        let svd = a.svd(false, true);
        let vt = svd.v_t.ok_or(CalibError::Singular)?;
        let (min_idx, _) =
            svd.singular_values
                .iter()
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |(bi, bv), (i, &s)| if s < bv { (i, s) } else { (bi, bv) },
                );
        let h = vt.row(min_idx);
        let hn = Matrix3::new(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]);
        let tf_inv = tf.try_inverse().ok_or(CalibError::Singular)?;
        let mut m = tf_inv * hn * ti;
        // Fix the overall sign so that pixels seeing the floor have w > 0.
        let positive = image_px
            .iter()
            .filter(|p| (m.row(2) * Vector3::new(p[0], p[1], 1.0))[0] > 0.0)
            .count();
        if 2 * positive < image_px.len() {
            m = -m;
        }
        let hom = Homography::from_nalgebra(m)?;
        let (mean_m, max_m) = hom.reprojection_error(image_px, floor_m);
        if max_m.is_nan() || max_m > MAX_REPROJECTION_ERROR_M {
            let worst = hom
                .point_errors(image_px, floor_m)
                .enumerate()
                .filter(|&(_, (e_m, e_px))| {
                    !(e_m <= MAX_REPROJECTION_ERROR_M || e_px <= MAX_REPROJECTION_ERROR_PX)
                })
                .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map(|(i, (e_m, e_px))| (i, e_m, e_px));
            if let Some((index, index_m, index_px)) = worst {
                return Err(CalibError::Inconsistent {
                    mean_m,
                    max_m,
                    limit_m: MAX_REPROJECTION_ERROR_M,
                    index,
                    index_m,
                    index_px,
                    limit_px: MAX_REPROJECTION_ERROR_PX,
                });
            }
        }
        Ok(hom)
    }

    /// Wraps an explicit image-to-floor matrix (row-major). Refuses singular
    /// or non-finite matrices. The sign is kept: `w` (third row times
    /// `(u, v, 1)`) must be positive for pixels that see the floor, as for a
    /// matrix normalised to `h22 = 1` whose pixel `(0, 0)` sees the floor;
    /// negate the matrix otherwise.
    pub fn from_matrix(m: [[f64; 3]; 3]) -> Result<Homography, CalibError> {
        let mm = Matrix3::new(
            m[0][0], m[0][1], m[0][2], m[1][0], m[1][1], m[1][2], m[2][0], m[2][1], m[2][2],
        );
        Homography::from_nalgebra(mm)
    }

    fn from_nalgebra(m: Matrix3<f64>) -> Result<Homography, CalibError> {
        if m.iter().any(|x| !x.is_finite()) {
            return Err(CalibError::Singular);
        }
        let norm = m.norm();
        if norm <= 0.0 {
            return Err(CalibError::Singular);
        }
        let m = m / norm;
        let sv = m.singular_values();
        let (smax, smin) = (sv.max(), sv.min());
        if smin.is_nan() || smin <= 1e-12 * smax {
            return Err(CalibError::Singular);
        }
        Ok(Homography { m })
    }

    /// Projects pixel `(u, v)` onto the floor, metres. `None` when the pixel
    /// lies on or above the horizon line (the ray does not meet the floor in
    /// front of the camera).
    pub fn project(&self, u: f64, v: f64) -> Option<[f64; 2]> {
        let p = self.m * Vector3::new(u, v, 1.0);
        // w > 0 in front of the camera (sign fixed at construction); a
        // negative or tiny w means the ray goes above the horizon.
        if p[2].is_nan() || p[2] <= 1e-12 {
            return None;
        }
        let x = p[0] / p[2];
        let y = p[1] / p[2];
        if x.is_finite() && y.is_finite() {
            Some([x, y])
        } else {
            None
        }
    }

    /// The pixel that sees floor point `(x, y)` (inverse of [`Homography::project`]),
    /// or `None` when no pixel in front of the camera does.
    pub fn to_image(&self, x: f64, y: f64) -> Option<[f64; 2]> {
        let inv = self.m.try_inverse()?;
        let p = inv * Vector3::new(x, y, 1.0);
        if p[2].abs() <= 1e-12 {
            return None;
        }
        let (u, v) = (p[0] / p[2], p[1] / p[2]);
        // The same pixel must see the floor in front of the camera.
        let back = self.project(u, v)?;
        if u.is_finite() && v.is_finite() && dist(back, [x, y]) < 1e-6 * (1.0 + x.abs() + y.abs()) {
            Some([u, v])
        } else {
            None
        }
    }

    /// Per calibration point: how far (metres) its image point projects
    /// from its floor point, and how far (pixels) its floor point maps back
    /// from its image point. A point that does not map counts as
    /// infinitely far.
    fn point_errors<'a>(
        &'a self,
        image_px: &'a [[f64; 2]],
        floor_m: &'a [[f64; 2]],
    ) -> impl Iterator<Item = (f64, f64)> + 'a {
        image_px.iter().zip(floor_m).map(|(ip, fp)| {
            let e_m = self
                .project(ip[0], ip[1])
                .map_or(f64::INFINITY, |p| dist(p, *fp));
            let e_px = self
                .to_image(fp[0], fp[1])
                .map_or(f64::INFINITY, |q| dist(q, *ip));
            (e_m, e_px)
        })
    }

    /// Mean and maximum of `errors`; zeros when there are none.
    fn mean_max(errors: impl Iterator<Item = f64>) -> (f64, f64) {
        let (n, sum, max) = errors.fold((0usize, 0.0, 0.0f64), |(n, s, m), e| {
            (n + 1, s + e, m.max(e))
        });
        if n == 0 {
            (0.0, 0.0)
        } else {
            (sum / n as f64, max)
        }
    }

    /// Mean and maximum floor distance (metres) between the projected image
    /// points and the given floor points. A point that does not project counts
    /// as infinitely far.
    pub fn reprojection_error(&self, image_px: &[[f64; 2]], floor_m: &[[f64; 2]]) -> (f64, f64) {
        Self::mean_max(self.point_errors(image_px, floor_m).map(|e| e.0))
    }

    /// Mean and maximum image distance (pixels) between the given image
    /// points and their floor points mapped back into the image. A point
    /// that does not map back counts as infinitely far.
    pub fn image_reprojection_error(
        &self,
        image_px: &[[f64; 2]],
        floor_m: &[[f64; 2]],
    ) -> (f64, f64) {
        Self::mean_max(self.point_errors(image_px, floor_m).map(|e| e.1))
    }

    /// The matrix, row-major, normalised to unit Frobenius norm.
    pub fn matrix(&self) -> [[f64; 3]; 3] {
        let m = &self.m;
        [
            [m[(0, 0)], m[(0, 1)], m[(0, 2)]],
            [m[(1, 0)], m[(1, 1)], m[(1, 2)]],
            [m[(2, 0)], m[(2, 1)], m[(2, 2)]],
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn truth() -> Homography {
        // Floor from image: a perspective map of a tilted camera.
        Homography::from_matrix([
            [0.012, 0.001, -3.0],
            [0.0005, 0.02, -2.0],
            [0.00001, 0.0012, 0.3],
        ])
        .unwrap()
    }

    fn grid_points(h: &Homography) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
        let mut img = Vec::new();
        let mut floor = Vec::new();
        for u in [100.0, 400.0, 700.0, 1000.0, 1200.0] {
            for v in [300.0, 450.0, 600.0, 700.0] {
                if let Some(p) = h.project(u, v) {
                    img.push([u, v]);
                    floor.push(p);
                }
            }
        }
        (img, floor)
    }

    #[test]
    fn recovers_known_homography_from_exact_points() {
        let t = truth();
        let (img, floor) = grid_points(&t);
        assert!(img.len() >= 8);
        let h = Homography::from_points(&img, &floor).unwrap();
        let (mean, max) = h.reprojection_error(&img, &floor);
        assert!(max < 1e-6, "mean {mean} max {max}");
        for (u, v) in [(640.0, 500.0), (200.0, 650.0), (1100.0, 350.0)] {
            let a = t.project(u, v).unwrap();
            let b = h.project(u, v).unwrap();
            assert!(dist(a, b) < 1e-6, "{a:?} {b:?}");
        }
        // Same matrix up to sign and scale (both unit norm).
        let (m1, m2) = (t.matrix(), h.matrix());
        let diff: f64 = (0..9)
            .map(|i| (m1[i / 3][i % 3] - m2[i / 3][i % 3]).abs())
            .sum();
        assert!(diff < 1e-6, "{m1:?} vs {m2:?}");
    }

    #[test]
    fn exactly_four_points_work() {
        let img = [[0.0, 0.0], [1280.0, 0.0], [1280.0, 720.0], [0.0, 720.0]];
        let floor = [[0.0, 10.0], [8.0, 10.0], [6.0, 2.0], [2.0, 2.0]];
        let h = Homography::from_points(&img, &floor).unwrap();
        assert!(h.reprojection_error(&img, &floor).1 < 1e-9);
    }

    #[test]
    fn degenerate_points_are_rejected() {
        let img = [[0.0, 0.0], [100.0, 100.0], [200.0, 200.0], [300.0, 300.0]];
        let floor = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert_eq!(
            Homography::from_points(&img, &floor),
            Err(CalibError::Collinear { which: "image" })
        );
        let sq = [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]];
        assert!(matches!(
            Homography::from_points(&sq[..3], &floor[..3]),
            Err(CalibError::TooFewPoints { .. })
        ));
        let dup = [[0.0, 0.0], [100.0, 0.0], [100.0, 0.0], [0.0, 100.0]];
        assert!(matches!(
            Homography::from_points(&dup, &floor),
            Err(CalibError::Duplicate { .. })
        ));
        let nan = [[0.0, 0.0], [100.0, f64::NAN], [100.0, 100.0], [0.0, 100.0]];
        assert!(matches!(
            Homography::from_points(&nan, &floor),
            Err(CalibError::NonFinite { index: 1 })
        ));
        assert!(matches!(
            Homography::from_points(&sq, &img),
            Err(CalibError::Collinear { which: "floor" })
        ));
        // Five points that no homography fits.
        let img5 = [
            [0.0, 0.0],
            [100.0, 0.0],
            [100.0, 100.0],
            [0.0, 100.0],
            [50.0, 50.0],
        ];
        let floor5 = [
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 10.0],
            [0.0, 10.0],
            [9.0, 1.0],
        ];
        let e = Homography::from_points(&img5, &floor5).unwrap_err();
        assert!(matches!(e, CalibError::Inconsistent { .. }), "{e}");
        assert!(e.to_string().contains("reprojection error"));
        assert!(e.to_string().contains("px in the image"), "{e}");
        assert_eq!(
            Homography::from_matrix([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 0.0, 1.0]]),
            Err(CalibError::Singular)
        );
    }

    /// A low camera (2.5 m) looking across a room: points clicked with
    /// 2 px of noise (and measured on the floor with 7 cm) come out up to
    /// 0.6 m off on the floor near the top of its image, where a pixel
    /// spans tens of centimetres, but within 6 px in the image. Accepted;
    /// a typo in one point is not.
    #[test]
    fn far_points_within_a_few_pixels_are_accepted_a_wrong_near_point_is_not() {
        let img = [
            [296.3, 115.1],
            [1207.4, 54.2],
            [860.8, 686.6],
            [675.0, 24.1],
            [898.0, 137.6],
            [369.4, 34.1],
            [129.2, 301.6],
            [923.3, 15.8],
        ];
        let floor = [
            [12.249, 4.317],
            [1.876, 12.494],
            [15.751, 12.385],
            [4.033, 4.314],
            [9.042, 10.208],
            [8.111, 0.53],
            [15.785, 7.409],
            [1.413, 8.006],
        ];
        let h = Homography::from_points(&img, &floor).unwrap();
        let (_, max_m) = h.reprojection_error(&img, &floor);
        assert!(max_m > MAX_REPROJECTION_ERROR_M, "{max_m}");
        let (_, max_px) = h.image_reprojection_error(&img, &floor);
        assert!(max_px < 6.0, "{max_px}");
        // A typo: one point's floor x and y exchanged.
        let mut wrong = floor;
        wrong[2] = [floor[2][1], floor[2][0]];
        let e = Homography::from_points(&img, &wrong).unwrap_err();
        assert!(matches!(e, CalibError::Inconsistent { .. }), "{e}");
    }

    proptest! {
        #[test]
        fn small_pixel_noise_gives_small_floor_error(seed in 0u64..1000, sigma in 0.0f64..1.0) {
            let t = truth();
            let (img, floor) = grid_points(&t);
            let noisy: Vec<[f64; 2]> = img.iter().enumerate().map(|(i, p)| {
                let a = ((seed as f64 + i as f64) * 12.9898).sin() * 43758.5453;
                let b = ((seed as f64 + i as f64) * 78.233).sin() * 12345.678;
                [p[0] + sigma * (a - a.floor() - 0.5), p[1] + sigma * (b - b.floor() - 0.5)]
            }).collect();
            let h = Homography::from_points(&noisy, &floor).unwrap();
            let (_, max) = h.reprojection_error(&img, &floor);
            prop_assert!(max < 0.1, "max {}", max);
        }
    }

    #[test]
    fn to_image_inverts_project() {
        let h =
            Homography::from_matrix([[0.01, 0.002, -1.0], [0.0005, 0.02, 0.5], [0.0, 0.001, 1.0]])
                .unwrap();
        for (u, v) in [(100.0, 200.0), (640.0, 360.0), (1200.0, 700.0)] {
            let p = h.project(u, v).unwrap();
            let q = h.to_image(p[0], p[1]).unwrap();
            assert!((q[0] - u).abs() < 1e-6 && (q[1] - v).abs() < 1e-6, "{q:?}");
        }
    }
}
