//! Time-aware constant-velocity Kalman filter on a box's centre and size
//! (`cx, cy, w, h` and their rates per second). Noise is proportional to the
//! box height, so the filter behaves the same whatever units boxes are in
//! (pixels or normalised 0..1). Process noise grows with the elapsed message
//! time, so skipped frames widen the uncertainty instead of breaking it.
//!
//! The model is the usual 8-state filter (`x = [cx, cy, w, h, vcx, vcy, vw,
//! vh]`, `F = [[I, dt I], [0, I]]`, `H = [I 0]`, diagonal `Q` and `R`). With
//! those matrices and a diagonal initial covariance, the covariance only ever
//! couples a coordinate with its own rate, so the filter is stored and run as
//! four 2-state blocks. Each block operation performs exactly the floating
//! point operations, in the same order, that the dense 8x8 matrix products
//! (and the 4x4 cofactor inverse of `S`) perform on their non-zero terms, so
//! the results are bit-for-bit those of the dense formulation (a test checks
//! this against a dense nalgebra implementation) at a fraction of the cost.

/// Noise settings of [`KalmanBox`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// Covariance of one coordinate and its rate: `[[pp, pv], [vp, vv]]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct Block {
    /// Variance of the coordinate.
    pp: f64,
    /// Covariance of the coordinate (row) with its rate (column).
    pv: f64,
    /// Covariance of the rate (row) with the coordinate (column).
    vp: f64,
    /// Variance of the rate.
    vv: f64,
}

/// Kalman state of one tracked box.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KalmanBox {
    /// `cx, cy, w, h`.
    pos: [f64; 4],
    /// Their rates per second.
    vel: [f64; 4],
    /// Covariance blocks, one per coordinate.
    cov: [Block; 4],
    /// Noise settings.
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
        let scale = [h, h, w, h];
        let mut cov = [Block {
            pp: 0.0,
            pv: 0.0,
            vp: 0.0,
            vv: 0.0,
        }; 4];
        for (b, s) in cov.iter_mut().zip(scale) {
            let (p, v) = (sp * s, sv * s);
            b.pp = p * p;
            b.vv = v * v;
        }
        KalmanBox {
            pos: z,
            vel: [0.0; 4],
            cov,
            params,
        }
    }

    /// Advances the state by `dt` seconds. `freeze_size` stops size rates
    /// (used while a track is lost, so a box never collapses or explodes).
    pub fn predict(&mut self, dt: f64, freeze_size: bool) {
        if freeze_size {
            self.vel[2] = 0.0;
            self.vel[3] = 0.0;
        }
        if dt <= 0.0 {
            return;
        }
        let r = dt / self.params.nominal_dt;
        let h = self.pos[3].abs().max(1e-9);
        let w = self.pos[2].abs().max(1e-9);
        let sp = self.params.pos_noise;
        let sv = self.params.vel_noise / self.params.nominal_dt;
        let scale = [h, h, w, h];
        for (c, s) in scale.into_iter().enumerate() {
            // x = F x
            self.pos[c] += dt * self.vel[c];
            // P = F P F^T + Q, block by block.
            let b = self.cov[c];
            let (sp_c, sv_c) = (sp * s, sv * s);
            let (q_p, q_v) = (sp_c * sp_c * r, sv_c * sv_c * r);
            let fp_pp = b.pp + dt * b.vp;
            let fp_pv = b.pv + dt * b.vv;
            self.cov[c] = Block {
                pp: (fp_pp + fp_pv * dt) + q_p,
                pv: fp_pv,
                vp: b.vp + b.vv * dt,
                vv: b.vv + q_v,
            };
        }
        // Keep the size positive whatever the velocity did.
        let min_w = w * 0.05;
        let min_h = h * 0.05;
        if self.pos[2] < min_w {
            self.pos[2] = min_w;
            self.vel[2] = 0.0;
        }
        if self.pos[3] < min_h {
            self.pos[3] = min_h;
            self.vel[3] = 0.0;
        }
    }

    /// Corrects the state with measurement `z` (`cx, cy, w, h`).
    pub fn update(&mut self, z: [f64; 4]) {
        let h = self.pos[3].abs().max(1e-9);
        let w = self.pos[2].abs().max(1e-9);
        let sm = self.params.meas_noise;
        let scale = [h, h, w, h];
        let mut r = [0.0f64; 4];
        let mut s = [0.0f64; 4];
        for c in 0..4 {
            let sd = sm * scale[c];
            r[c] = sd * sd;
            // S = H P H^T + R (diagonal).
            s[c] = self.cov[c].pp + r[c];
        }
        // S^-1 by the cofactor formula of a 4x4 inverse, on a diagonal S.
        let cof0 = s[1] * s[2] * s[3];
        let det = s[0] * cof0;
        if det == 0.0 {
            // Degenerate covariance: fall back to trusting the measurement.
            *self = KalmanBox::new(z, self.params);
            return;
        }
        let cof = [
            cof0,
            s[0] * s[2] * s[3],
            s[0] * s[1] * s[3],
            s[0] * s[1] * s[2],
        ];
        let inv_det = 1.0 / det;
        for c in 0..4 {
            let s_inv = cof[c] * inv_det;
            let b = self.cov[c];
            // K = P H^T S^-1
            let k_p = b.pp * s_inv;
            let k_v = b.vp * s_inv;
            // x += K (z - H x)
            let y = z[c] - self.pos[c];
            self.pos[c] += k_p * y;
            self.vel[c] += k_v * y;
            // Joseph form: P = (I - K H) P (I - K H)^T + K R K^T.
            let g = 1.0 - k_p;
            let nk = 0.0 - k_v;
            let a_pp = g * b.pp;
            let a_pv = g * b.pv;
            let a_vp = nk * b.pp + b.vp;
            let a_vv = nk * b.pv + b.vv;
            let kr_p = k_p * r[c];
            let kr_v = k_v * r[c];
            self.cov[c] = Block {
                pp: a_pp * g + kr_p * k_p,
                pv: (a_pp * nk + a_pv) + kr_p * k_v,
                vp: a_vp * g + kr_v * k_p,
                vv: (a_vp * nk + a_vv) + kr_v * k_v,
            };
        }
        if self.pos[2] <= 0.0 {
            self.pos[2] = z[2].max(1e-9);
        }
        if self.pos[3] <= 0.0 {
            self.pos[3] = z[3].max(1e-9);
        }
    }

    /// Current `[cx, cy, w, h]`.
    pub fn cxcywh(&self) -> [f64; 4] {
        self.pos
    }

    /// Current box as `[x1, y1, x2, y2]`.
    pub fn xyxy(&self) -> [f32; 4] {
        cxcywh_to_xyxy(self.pos)
    }

    /// Current centre velocity (units per second).
    pub fn velocity(&self) -> [f64; 2] {
        [self.vel[0], self.vel[1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The dense 8x8 formulation the block filter must reproduce bit for bit.
    mod dense {
        use super::KalmanParams;
        use nalgebra::{SMatrix, SVector};

        type M8 = SMatrix<f64, 8, 8>;
        type V8 = SVector<f64, 8>;
        type M4 = SMatrix<f64, 4, 4>;
        type V4 = SVector<f64, 4>;
        type M48 = SMatrix<f64, 4, 8>;

        #[derive(Debug, Clone)]
        pub struct Dense {
            pub x: V8,
            pub p: M8,
            params: KalmanParams,
        }

        impl Dense {
            pub fn new(z: [f64; 4], params: KalmanParams) -> Self {
                let h = z[3].abs().max(1e-9);
                let w = z[2].abs().max(1e-9);
                let sp = 2.0 * params.pos_noise;
                let sv = 10.0 * params.vel_noise / params.nominal_dt;
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
                Dense { x, p, params }
            }

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
                    *self = Dense::new(z, self.params);
                    return;
                };
                let k = self.p * hm.transpose() * s_inv;
                let y = V4::from_column_slice(&z) - hm * self.x;
                self.x += k * y;
                let i_kh = M8::identity() - k * hm;
                self.p = i_kh * self.p * i_kh.transpose() + k * r * k.transpose();
                if self.x[2] <= 0.0 {
                    self.x[2] = z[2].max(1e-9);
                }
                if self.x[3] <= 0.0 {
                    self.x[3] = z[3].max(1e-9);
                }
            }
        }
    }

    /// Bit patterns of the block filter's state and covariance laid out as the dense one.
    fn bits_of(k: &KalmanBox) -> (Vec<u64>, Vec<u64>) {
        let x: Vec<u64> = k.pos.iter().chain(&k.vel).map(|v| v.to_bits()).collect();
        let mut p = vec![0u64; 64];
        for (c, b) in k.cov.iter().enumerate() {
            p[c * 8 + c] = b.pp.to_bits();
            p[c * 8 + c + 4] = b.pv.to_bits();
            p[(c + 4) * 8 + c] = b.vp.to_bits();
            p[(c + 4) * 8 + c + 4] = b.vv.to_bits();
        }
        (x, p)
    }

    fn dense_bits(d: &dense::Dense) -> (Vec<u64>, Vec<u64>) {
        let x: Vec<u64> = d.x.iter().map(|v| v.to_bits()).collect();
        let mut p = vec![0u64; 64];
        for i in 0..8 {
            for j in 0..8 {
                let v = d.p[(i, j)];
                // Off-block entries are (signed) zeros in the dense form; the
                // block form does not hold them.
                if i % 4 == j % 4 {
                    p[i * 8 + j] = v.to_bits();
                } else {
                    assert_eq!(
                        v, 0.0,
                        "dense covariance left its block structure at ({i}, {j})"
                    );
                }
            }
        }
        (x, p)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Predict(f64, bool),
        Update([f64; 4]),
    }

    fn ops() -> impl Strategy<Value = (Vec<f64>, Vec<Op>)> {
        let z = (0.0f64..2000.0, 0.0f64..1200.0, 0.5f64..300.0, 1.0f64..600.0)
            .prop_map(|(a, b, c, d)| [a, b, c, d]);
        let op = prop_oneof![
            (prop_oneof![Just(0.0), 0.0f64..2.0], any::<bool>())
                .prop_map(|(dt, f)| Op::Predict(dt, f)),
            z.clone().prop_map(Op::Update),
        ];
        (
            z.prop_map(|z| z.to_vec()),
            proptest::collection::vec(op, 1..60),
        )
    }

    proptest! {
        #[test]
        fn block_filter_is_bit_identical_to_the_dense_one((z0, seq) in ops()) {
            let params = KalmanParams { pos_noise: 0.05, vel_noise: 0.03, meas_noise: 0.05, nominal_dt: 0.2 };
            let z0 = [z0[0], z0[1], z0[2], z0[3]];
            let mut k = KalmanBox::new(z0, params);
            let mut d = dense::Dense::new(z0, params);
            prop_assert_eq!(bits_of(&k), dense_bits(&d));
            for op in &seq {
                match op {
                    Op::Predict(dt, f) => { k.predict(*dt, *f); d.predict(*dt, *f); }
                    Op::Update(z) => { k.update(*z); d.update(*z); }
                }
                prop_assert_eq!(bits_of(&k), dense_bits(&d), "after {:?}", op);
            }
        }
    }

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
