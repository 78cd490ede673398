//! Time-aware constant-velocity Kalman filter on a box's centre and size
//! (`cx, cy, w, h` and their rates per second). Noise is proportional to the
//! box height, so the filter behaves the same whatever units boxes are in
//! (pixels or normalised 0..1). Process noise grows with the elapsed message
//! time, so skipped frames widen the uncertainty instead of breaking it.

use nalgebra::{SMatrix, SVector};

type M8 = SMatrix<f64, 8, 8>;
type V8 = SVector<f64, 8>;
type M4 = SMatrix<f64, 4, 4>;
type V4 = SVector<f64, 4>;
type M48 = SMatrix<f64, 4, 8>;

/// Noise settings of [`KalmanBox`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KalmanParams {
    /// Position noise, as a fraction of box height, per nominal frame.
    pub pos_noise: f64,
    /// Velocity noise, as a fraction of box height, per nominal frame.
    pub vel_noise: f64,
    /// Measurement noise, as a fraction of box height (width for `w`).
    pub meas_noise: f64,
    /// Nominal frame interval in seconds; noise is expressed per this step.
    pub nominal_dt: f64,
}

impl Default for KalmanParams {
    fn default() -> Self {
        KalmanParams {
            pos_noise: 1.0 / 20.0,
            vel_noise: 1.0 / 160.0,
            meas_noise: 1.0 / 20.0,
            nominal_dt: 0.2,
        }
    }
}

/// Kalman state of one tracked box.
#[derive(Debug, Clone, PartialEq)]
pub struct KalmanBox {
    x: V8,
    p: M8,
    params: KalmanParams,
}

/// `[x1, y1, x2, y2]` to `[cx, cy, w, h]`.
pub fn xyxy_to_cxcywh(b: [f32; 4]) -> [f64; 4] {
    let (x1, y1, x2, y2) = (b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64);
    [
        (x1 + x2) * 0.5,
        (y1 + y2) * 0.5,
        (x2 - x1).max(0.0),
        (y2 - y1).max(0.0),
    ]
}

/// `[cx, cy, w, h]` to `[x1, y1, x2, y2]`.
pub fn cxcywh_to_xyxy(c: [f64; 4]) -> [f32; 4] {
    let (hw, hh) = (c[2] * 0.5, c[3] * 0.5);
    [
        (c[0] - hw) as f32,
        (c[1] - hh) as f32,
        (c[0] + hw) as f32,
        (c[1] + hh) as f32,
    ]
}

impl KalmanBox {
    /// Starts a filter at measurement `z` (`cx, cy, w, h`) with zero velocity.
    pub fn new(z: [f64; 4], params: KalmanParams) -> Self {
        let h = z[3].abs().max(1e-9);
        let w = z[2].abs().max(1e-9);
        let dt0 = params.nominal_dt;
        let sp = 2.0 * params.pos_noise;
        let sv = 10.0 * params.vel_noise / dt0;
        let std = [
            sp * h,
            sp * h,
            sp * w,
            sp * h,
            sv * h,
            sv * h,
            sv * w,
            sv * h,
        ];
        let mut p = M8::zeros();
        for (i, s) in std.iter().enumerate() {
            p[(i, i)] = s * s;
        }
        let x = V8::from_column_slice(&[z[0], z[1], z[2], z[3], 0.0, 0.0, 0.0, 0.0]);
        KalmanBox { x, p, params }
    }

    /// Advances the state by `dt` seconds. `freeze_size` stops size rates
    /// (used while a track is lost, so a box never collapses or explodes).
    pub fn predict(&mut self, dt: f64, freeze_size: bool) {
        if freeze_size {
            self.x[6] = 0.0;
            self.x[7] = 0.0;
        }
        if dt <= 0.0 {
            return;
        }
        let mut f = M8::identity();
        for i in 0..4 {
            f[(i, i + 4)] = dt;
        }
        let r = dt / self.params.nominal_dt;
        let h = self.x[3].abs().max(1e-9);
        let w = self.x[2].abs().max(1e-9);
        let sp = self.params.pos_noise;
        let sv = self.params.vel_noise / self.params.nominal_dt;
        let std = [
            sp * h,
            sp * h,
            sp * w,
            sp * h,
            sv * h,
            sv * h,
            sv * w,
            sv * h,
        ];
        let mut q = M8::zeros();
        for (i, s) in std.iter().enumerate() {
            q[(i, i)] = s * s * r;
        }
        self.x = f * self.x;
        self.p = f * self.p * f.transpose() + q;
        // Keep the size positive whatever the velocity did.
        let min_w = w * 0.05;
        let min_h = h * 0.05;
        if self.x[2] < min_w {
            self.x[2] = min_w;
            self.x[6] = 0.0;
        }
        if self.x[3] < min_h {
            self.x[3] = min_h;
            self.x[7] = 0.0;
        }
    }

    /// Corrects the state with measurement `z` (`cx, cy, w, h`).
    pub fn update(&mut self, z: [f64; 4]) {
        let mut hm = M48::zeros();
        for i in 0..4 {
            hm[(i, i)] = 1.0;
        }
        let h = self.x[3].abs().max(1e-9);
        let w = self.x[2].abs().max(1e-9);
        let sm = self.params.meas_noise;
        let std = [sm * h, sm * h, sm * w, sm * h];
        let mut r = M4::zeros();
        for (i, s) in std.iter().enumerate() {
            r[(i, i)] = s * s;
        }
        let s = hm * self.p * hm.transpose() + r;
        let Some(s_inv) = s.try_inverse() else {
            // Degenerate covariance: fall back to trusting the measurement.
            *self = KalmanBox::new(z, self.params);
            return;
        };
        let k = self.p * hm.transpose() * s_inv;
        let y = V4::from_column_slice(&z) - hm * self.x;
        self.x += k * y;
        let i_kh = M8::identity() - k * hm;
        // Joseph form keeps the covariance symmetric and positive.
        self.p = i_kh * self.p * i_kh.transpose() + k * r * k.transpose();
        if self.x[2] <= 0.0 {
            self.x[2] = z[2].max(1e-9);
        }
        if self.x[3] <= 0.0 {
            self.x[3] = z[3].max(1e-9);
        }
    }

    /// Current `[cx, cy, w, h]`.
    pub fn cxcywh(&self) -> [f64; 4] {
        [self.x[0], self.x[1], self.x[2], self.x[3]]
    }

    /// Current box as `[x1, y1, x2, y2]`.
    pub fn xyxy(&self) -> [f32; 4] {
        cxcywh_to_xyxy(self.cxcywh())
    }

    /// Current centre velocity (units per second).
    pub fn velocity(&self) -> [f64; 2] {
        [self.x[4], self.x[5]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_constant_velocity_and_predicts_over_gaps() {
        let mut kf = KalmanBox::new([100.0, 100.0, 40.0, 100.0], KalmanParams::default());
        for i in 1..20 {
            kf.predict(0.2, false);
            kf.update([100.0 + 10.0 * i as f64, 100.0, 40.0, 100.0]);
        }
        let v = kf.velocity();
        assert!((v[0] - 50.0).abs() < 2.0, "vx {}", v[0]);
        assert!(v[1].abs() < 1.0);
        kf.predict(1.0, false);
        let c = kf.cxcywh();
        assert!((c[0] - (290.0 + 50.0)).abs() < 5.0, "cx {}", c[0]);
    }

    #[test]
    fn size_never_collapses() {
        let mut kf = KalmanBox::new([0.5, 0.5, 0.1, 0.2], KalmanParams::default());
        for i in 1..6 {
            kf.predict(0.2, false);
            kf.update([0.5, 0.5, 0.1 - 0.015 * i as f64, 0.2 - 0.03 * i as f64]);
        }
        for _ in 0..50 {
            kf.predict(0.2, false);
        }
        let c = kf.cxcywh();
        assert!(c[2] > 0.0 && c[3] > 0.0);
    }
}
