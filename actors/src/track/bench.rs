//! Synthetic detection streams and a throughput benchmark of
//! [`super::Tracker`]. The same stream can be written as a MOT-challenge
//! detection file so a reference tracker can be timed on identical input.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Instant;

use nvr_subjects::DetectedObject;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Tracker, TrackerParams};

/// Message-time origin of synthetic sequences (ns since the Unix epoch).
pub const SYNTHETIC_T0_NS: u64 = 1_700_000_000_000_000_000;
/// Frame interval of synthetic sequences: 5 fps.
pub const SYNTHETIC_FRAME_NS: u64 = 200_000_000;
/// Pixel size the normalised boxes are scaled to by [`write_mot`].
pub const MOT_FRAME_SIZE: (f32, f32) = (1920.0, 1080.0);

/// One benchmark result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchRow {
    /// Objects in the synthetic scene.
    pub objects: usize,
    /// Frames (updates) timed.
    pub frames: usize,
    /// Tracker updates per second.
    pub updates_per_sec: f64,
    /// Mean update latency in microseconds.
    pub mean_us: f64,
    /// 99th percentile update latency in microseconds.
    pub p99_us: f64,
}

/// A deterministic synthetic 5 fps detection stream: `n_objects` people-sized
/// boxes moving at constant velocity (bouncing off the frame edges) in
/// normalised coordinates, with box jitter, occasional misses, a spread of
/// scores and low-score false positives.
pub fn synthetic_sequence(
    n_objects: usize,
    frames: usize,
    seed: u64,
) -> Vec<(u64, Vec<DetectedObject>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    struct Obj {
        cx: f32,
        cy: f32,
        w: f32,
        h: f32,
        vx: f32,
        vy: f32,
    }
    let mut objs: Vec<Obj> = (0..n_objects)
        .map(|_| {
            let h = rng.random_range(0.04f32..0.12);
            let w = h * rng.random_range(0.35f32..0.5);
            Obj {
                cx: rng.random_range(w..1.0 - w),
                cy: rng.random_range(h..1.0 - h),
                w,
                h,
                vx: rng.random_range(-0.15f32..0.15) * h,
                vy: rng.random_range(-0.08f32..0.08) * h,
            }
        })
        .collect();
    let person = |bbox: [f32; 4], score: f32| DetectedObject {
        class_id: 0,
        label: "person".to_string(),
        score,
        bbox,
        embedding: None,
    };
    let mut out = Vec::with_capacity(frames);
    for f in 0..frames {
        let ts = SYNTHETIC_T0_NS + f as u64 * SYNTHETIC_FRAME_NS;
        let mut dets = Vec::with_capacity(n_objects + n_objects / 10 + 1);
        for o in &mut objs {
            o.cx += o.vx;
            o.cy += o.vy;
            if o.cx - o.w / 2.0 < 0.0 || o.cx + o.w / 2.0 > 1.0 {
                o.vx = -o.vx;
                o.cx = o.cx.clamp(o.w / 2.0, 1.0 - o.w / 2.0);
            }
            if o.cy - o.h / 2.0 < 0.0 || o.cy + o.h / 2.0 > 1.0 {
                o.vy = -o.vy;
                o.cy = o.cy.clamp(o.h / 2.0, 1.0 - o.h / 2.0);
            }
            if rng.random::<f32>() < 0.05 {
                continue;
            }
            let j = 0.03;
            let cx = o.cx + rng.random_range(-j..j) * o.w;
            let cy = o.cy + rng.random_range(-j..j) * o.h;
            let w = o.w * (1.0 + rng.random_range(-j..j));
            let h = o.h * (1.0 + rng.random_range(-j..j));
            let score = rng.random_range(0.3f32..0.95);
            dets.push(person(
                [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                score,
            ));
        }
        for _ in 0..(n_objects / 10).max(1) {
            let h = rng.random_range(0.04f32..0.12);
            let w = h * 0.4;
            let cx = rng.random_range(w..1.0 - w);
            let cy = rng.random_range(h..1.0 - h);
            let score = rng.random_range(0.1f32..0.5);
            dets.push(person(
                [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                score,
            ));
        }
        out.push((ts, dets));
    }
    out
}

/// Writes `seq` as a MOT-challenge detection file (`frame,-1,x,y,w,h,score,-1,-1,-1`,
/// frames numbered from 1, boxes scaled to a [`MOT_FRAME_SIZE`] frame).
pub fn write_mot(seq: &[(u64, Vec<DetectedObject>)], path: &Path) -> io::Result<()> {
    let (fw, fh) = MOT_FRAME_SIZE;
    let mut s = String::new();
    for (i, (_, dets)) in seq.iter().enumerate() {
        for d in dets {
            let b = d.bbox;
            let _ = writeln!(
                s,
                "{},-1,{:.3},{:.3},{:.3},{:.3},{:.4},-1,-1,-1",
                i + 1,
                b[0] * fw,
                b[1] * fh,
                (b[2] - b[0]) * fw,
                (b[3] - b[1]) * fh,
                d.score
            );
        }
    }
    std::fs::write(path, s)
}

/// Times default-parameter tracker updates on `synthetic_sequence(n_objects, frames, 42)`.
pub fn bench_updates(n_objects: usize, frames: usize) -> BenchRow {
    let seq = synthetic_sequence(n_objects, frames, 42);
    let mut tracker = Tracker::new(TrackerParams::default());
    let mut lat_us = Vec::with_capacity(frames);
    let start = Instant::now();
    for (ts, dets) in &seq {
        let t0 = Instant::now();
        let out = tracker.update(*ts, dets);
        std::hint::black_box(&out);
        lat_us.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let total = start.elapsed().as_secs_f64();
    lat_us.sort_by(f64::total_cmp);
    let n = lat_us.len().max(1);
    let mean_us = lat_us.iter().sum::<f64>() / n as f64;
    let p99_us = lat_us
        .get(((n as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    BenchRow {
        objects: n_objects,
        frames,
        updates_per_sec: if total > 0.0 {
            frames as f64 / total
        } else {
            0.0
        },
        mean_us,
        p99_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_is_deterministic_and_sized() {
        let a = synthetic_sequence(20, 30, 7);
        let b = synthetic_sequence(20, 30, 7);
        assert_eq!(a, b);
        assert_eq!(a.len(), 30);
        assert_eq!(a[1].0 - a[0].0, SYNTHETIC_FRAME_NS);
        let n: usize = a.iter().map(|(_, d)| d.len()).sum();
        assert!(n > 20 * 30 * 8 / 10, "too few detections: {n}");
        assert_ne!(a, synthetic_sequence(20, 30, 8));
    }

    #[test]
    fn write_mot_roundtrips_through_the_parser() {
        let seq = synthetic_sequence(5, 10, 1);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("det.txt");
        write_mot(&seq, &path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let rows = super::super::mot::parse_mot(&text).expect("parse");
        let total: usize = seq.iter().map(|(_, d)| d.len()).sum();
        assert_eq!(rows.len(), total);
        assert_eq!(rows.last().map(|r| r.frame), Some(10));
    }

    #[test]
    fn bench_runs() {
        let row = bench_updates(10, 20);
        assert_eq!(row.objects, 10);
        assert_eq!(row.frames, 20);
        assert!(row.updates_per_sec > 0.0 && row.p99_us >= 0.0);
    }
}
