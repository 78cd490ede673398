//! Where a camera track stands on the floor: the foot point of its box,
//! corrected for the body's depth and for boxes cut by the image border.

use super::super::Homography;

/// Height over width of a standing person's box, used to complete a box the
/// image border cuts.
const PERSON_ASPECT: f64 = 2.5;
/// A box edge within this (fraction of the image) of the border is cut by it.
const BORDER: f64 = 0.004;

/// Floor point of a person whose box is `bbox` (normalised to a `w` x `h`
/// image) through `hom`, moved `offset_m` away from the camera.
///
/// A box cut by the bottom border (feet below the image) takes its foot row
/// from the top of the box and the person's width; one cut by a side border
/// (but not at the top or bottom) takes its centre from the expected width.
/// The viewing direction is the floor direction of a point a little higher
/// up in the image, so no camera position is needed.
pub(super) fn foot_point(
    hom: &Homography,
    bbox: [f32; 4],
    w: f64,
    h: f64,
    offset_m: f64,
) -> Option<[f64; 2]> {
    let [x0, y0, x1, y1] = bbox.map(f64::from);
    let (bw, bh) = ((x1 - x0) * w, (y1 - y0) * h);
    let cut_left = x0 <= BORDER;
    let cut_right = x1 >= 1.0 - BORDER;
    let cut_top = y0 <= BORDER;
    let cut_bottom = y1 >= 1.0 - BORDER;
    let mut u = 0.5 * (x0 + x1) * w;
    let mut v = y1 * h;
    if cut_bottom && !cut_top && !cut_left && !cut_right {
        v = v.max(y0 * h + PERSON_ASPECT * bw);
    }
    if cut_left != cut_right && !cut_top && !cut_bottom {
        let full_w = bh / PERSON_ASPECT;
        if full_w > bw {
            u = if cut_left {
                x1 * w - 0.5 * full_w
            } else {
                x0 * w + 0.5 * full_w
            };
        }
    }
    let p0 = hom.project(u, v)?;
    if offset_m <= 0.0 {
        return Some(p0);
    }
    let dv = (0.05 * bh).max(2.0);
    let Some(p1) = hom.project(u, v - dv) else {
        return Some(p0);
    };
    let d = [p1[0] - p0[0], p1[1] - p0[1]];
    let n = (d[0] * d[0] + d[1] * d[1]).sqrt();
    if !(n > 1e-9 && n.is_finite()) {
        return Some(p0);
    }
    Some([p0[0] + offset_m * d[0] / n, p0[1] + offset_m * d[1] / n])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A camera 3 m high at floor (0, -4) looking along +y, tilted down:
    /// image rows further up are further away.
    fn camera() -> Homography {
        let f = 800.0;
        let (cx, cy) = (640.0, 360.0);
        let tilt: f64 = 0.5;
        let (c, s) = (tilt.cos(), tilt.sin());
        let cam = |x: f64, y: f64| -> [f64; 2] {
            // World (x, y, 0) relative to the camera at (0, -4, 3).
            let (dx, dy, dz) = (x, y + 4.0, -3.0);
            // Camera axes: right = +x, forward = (0, c, -s), down = (0, -s, -c).
            let zc = dy * c - dz * s;
            let yc = -dy * s - dz * c;
            [cx + f * dx / zc, cy + f * yc / zc]
        };
        let floor = [[-2.0, 2.0], [2.0, 2.0], [2.0, 8.0], [-2.0, 8.0], [0.0, 5.0]];
        let img: Vec<[f64; 2]> = floor.iter().map(|p| cam(p[0], p[1])).collect();
        Homography::from_points(&img, &floor).expect("calibration")
    }

    #[test]
    fn the_offset_moves_the_point_away_from_the_camera() {
        let hom = camera();
        let p = hom.to_image(0.0, 5.0).unwrap();
        let (w, h) = (1280.0, 720.0);
        let bbox = [
            ((p[0] - 30.0) / w) as f32,
            ((p[1] - 200.0) / h) as f32,
            ((p[0] + 30.0) / w) as f32,
            (p[1] / h) as f32,
        ];
        let a = foot_point(&hom, bbox, w, h, 0.0).unwrap();
        let b = foot_point(&hom, bbox, w, h, 0.25).unwrap();
        assert!(
            (a[0] - 0.0).abs() < 0.01 && (a[1] - 5.0).abs() < 0.01,
            "{a:?}"
        );
        assert!((b[1] - 5.25).abs() < 0.02 && b[0].abs() < 0.02, "{b:?}");
    }

    #[test]
    fn a_box_cut_by_the_bottom_border_is_completed_from_its_width() {
        let hom = camera();
        let (w, h) = (1280.0, 720.0);
        // A person whose feet would be at row 800 (below the image), 60 px wide.
        let full = [600.0, 650.0, 660.0, 800.0];
        let cut = [full[0] / w, full[1] / h, full[2] / w, 1.0].map(|x| x as f32);
        let naive = hom.project(630.0, 720.0).unwrap();
        let truth = hom.project(630.0, 650.0 + 2.5 * 60.0).unwrap();
        let got = foot_point(&hom, cut, w, h, 0.0).unwrap();
        assert!(
            (got[1] - truth[1]).abs() < (naive[1] - truth[1]).abs() / 4.0,
            "{got:?} {truth:?} {naive:?}"
        );
    }

    #[test]
    fn a_box_cut_by_a_side_border_keeps_its_centre_inside() {
        let hom = camera();
        let (w, h) = (1280.0, 720.0);
        // 80 px wide person centred at u = 10: only [0, 50] visible.
        let cut = [0.0, 300.0 / h, 50.0 / w, 500.0 / h].map(|x| x as f32);
        let truth = hom.project(10.0, 500.0).unwrap();
        let naive = hom.project(25.0, 500.0).unwrap();
        let got = foot_point(&hom, cut, w, h, 0.0).unwrap();
        assert!(
            (got[0] - truth[0]).abs() < (naive[0] - truth[0]).abs(),
            "{got:?} {truth:?} {naive:?}"
        );
    }
}
