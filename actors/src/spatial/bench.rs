//! Synthetic throughput benchmark of one spatial matching cycle at a given
//! number of active identities, with noisy per-frame embeddings under a
//! colour cast per camera (no I/O; callers print or store the rows).

use std::time::Instant;

use nvr_subjects::{encode, CameraTracks, Track, TrackState, SCHEMA_VERSION};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{CameraGeometry, Homography, SpatialParams, SpatialTracker};

/// Floor metres covered by one benchmark camera (one tile, plus overlap).
const TILE_M: [f64; 2] = [12.0, 8.0];
/// Overlap of neighbouring camera tiles, metres.
const OVERLAP_M: f64 = 1.0;
/// Pixels per metre of the benchmark cameras (1280 x 720 covers 12.8 x 9 m).
const PX_PER_M: f64 = 80.0;

/// Timing of [`bench_cycle`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchRow {
    /// Number of identities kept active.
    pub active_tracks: usize,
    /// Cycles measured.
    pub cycles: usize,
    /// Mean time of one cycle (ingest of every camera message plus `step`), ms.
    pub mean_ms: f64,
    /// 99th percentile of the cycle time, ms.
    pub p99_ms: f64,
    /// Mean time spent in the association (re-identification) part, ms.
    pub reid_mean_ms: f64,
    /// Size of the shard's checkpoint after the last cycle, bytes: how many
    /// parts it takes on the bus (see `crate::checkpoint`).
    pub checkpoint_bytes: usize,
    /// Time to serialise that checkpoint, ms.
    pub checkpoint_ms: f64,
    /// FNV-1a digest of every cycle's published tracks and events (their
    /// wire encoding), when asked for: equal digests before and after a
    /// change to the tracker show that it left the output unchanged.
    pub digest: Option<u64>,
}

/// FNV-1a over `bytes`, continuing from `h`.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A benchmark camera: its id, the floor position of its image origin and
/// its homography.
type BenchCamera = (String, [f64; 2], Homography);

/// Cameras tiling a floor of `size` metres, neighbouring tiles overlapping
/// by [`OVERLAP_M`].
fn tile_cameras(size: [f64; 2]) -> Vec<BenchCamera> {
    let nx = (size[0] / TILE_M[0]).round() as usize;
    let ny = (size[1] / TILE_M[1]).round() as usize;
    let mut cams = Vec::new();
    for ix in 0..nx {
        for iy in 0..ny {
            let ox = ix as f64 * TILE_M[0] - OVERLAP_M / 2.0;
            let oy = iy as f64 * TILE_M[1] - OVERLAP_M / 2.0;
            let m = [
                [1.0 / PX_PER_M, 0.0, ox],
                [0.0, 1.0 / PX_PER_M, oy],
                [0.0, 0.0, 1.0],
            ];
            if let Ok(h) = Homography::from_matrix(m) {
                cams.push((format!("c{ix}_{iy}"), [ox, oy], h));
            }
        }
    }
    cams
}

/// The people of the benchmark and how the cameras see them.
struct Crowd {
    /// Floor size, metres.
    size: [f64; 2],
    /// Per person: position, velocity (m/s) and unit appearance.
    people: Vec<([f64; 2], [f64; 2], Vec<f32>)>,
    /// Per camera: a gain per embedding component (its colour cast).
    gains: Vec<Vec<f32>>,
    /// Per camera: which person has which camera track id (churn restarts ids).
    track_ids: Vec<Vec<u64>>,
    /// Next camera track id to hand out.
    next_id: u64,
}

impl Crowd {
    /// `n` people at random places and headings on a floor of `size`, seen
    /// by `cameras` cameras.
    fn new(rng: &mut ChaCha8Rng, n: usize, size: [f64; 2], cameras: usize) -> Self {
        let dim = crate::detect::embed::COLOUR_DESCRIPTOR_LEN;
        let people = (0..n)
            .map(|_| {
                let p = [
                    rng.random_range(0.0..size[0]),
                    rng.random_range(0.0..size[1]),
                ];
                let a: f64 = rng.random_range(0.0..std::f64::consts::TAU);
                let mut e: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                e.iter_mut().for_each(|x| *x /= norm);
                (p, [1.2 * a.cos(), 1.2 * a.sin()], e)
            })
            .collect();
        let gains = (0..cameras)
            .map(|_| (0..dim).map(|_| rng.random_range(0.8f32..1.2)).collect())
            .collect();
        Crowd {
            size,
            people,
            gains,
            track_ids: vec![(0..n as u64).collect(); cameras],
            next_id: n as u64,
        }
    }

    /// Everyone walks for `dt` seconds, turning back at the floor's edges.
    fn walk(&mut self, dt: f64) {
        for (p, v, _) in self.people.iter_mut() {
            for k in 0..2 {
                p[k] += v[k] * dt;
                if p[k] < 0.0 || p[k] > self.size[k] {
                    v[k] = -v[k];
                    p[k] = p[k].clamp(0.0, self.size[k]);
                }
            }
        }
    }

    /// What camera `ci` (`cam`) publishes at cycle `c`: a confirmed track
    /// for each person in its image, with a noisy embedding.
    fn camera_tracks(
        &mut self,
        rng: &mut ChaCha8Rng,
        ci: usize,
        cam: &BenchCamera,
        c: usize,
        ts: u64,
    ) -> CameraTracks {
        let (id, o, _) = cam;
        let mut tracks = Vec::new();
        for (pi, (p, _, e)) in self.people.iter().enumerate() {
            let (u, v) = ((p[0] - o[0]) * PX_PER_M, (p[1] - o[1]) * PX_PER_M);
            if !(0.0..1280.0).contains(&u) || !(60.0..720.0).contains(&v) {
                continue;
            }
            // 1% churn per cycle: the camera tracker loses and restarts the track.
            if rng.random_bool(0.01) {
                self.track_ids[ci][pi] = self.next_id;
                self.next_id += 1;
            }
            // What a real descriptor gives: the person's appearance under
            // this camera's colour gain, with fresh noise every frame.
            let mut emb: Vec<f32> = e
                .iter()
                .enumerate()
                .map(|(k, x)| x * self.gains[ci][k] + rng.random_range(-0.15f32..0.15))
                .collect();
            let n = emb.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            emb.iter_mut().for_each(|x| *x /= n);
            tracks.push(Track {
                track_id: self.track_ids[ci][pi],
                label: "person".into(),
                score: 0.9,
                bbox: [
                    ((u - 15.0) / 1280.0) as f32,
                    ((v - 60.0) / 720.0) as f32,
                    ((u + 15.0) / 1280.0) as f32,
                    (v / 720.0) as f32,
                ],
                state: TrackState::Confirmed,
                hits: 10,
                age_ms: 1000,
                embedding: Some(emb),
            });
        }
        tracks.sort_by_key(|t| t.track_id);
        CameraTracks {
            v: SCHEMA_VERSION,
            camera: id.clone(),
            seq: c as u64,
            ts_ns: ts,
            width: 1280,
            height: 720,
            tracks,
        }
    }
}

/// The mean and 99th percentile of `times`.
fn mean_p99(mut times: Vec<f64>) -> (f64, f64) {
    let n = times.len().max(1);
    let mean = times.iter().sum::<f64>() / n as f64;
    times.sort_by(|a, b| a.total_cmp(b));
    let p99 = times
        .get(((n as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    (mean, p99)
}

/// Runs `cycles` matching cycles with about `active_tracks` people walking on
/// a floor tiled by overlapping cameras and reports the cycle times.
/// With `digest`, also digests what the cycles published (outside the timing).
pub fn bench_cycle(active_tracks: usize, cycles: usize, digest: bool) -> BenchRow {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // About 1 person per 6 m^2, floor square-ish, tiled by cameras.
    let area = (active_tracks.max(1) as f64) * 6.0;
    let nx = ((area.sqrt() / TILE_M[0]).ceil() as usize).max(1);
    let ny = ((area / (nx as f64 * TILE_M[0]) / TILE_M[1]).ceil() as usize).max(1);
    let size = [nx as f64 * TILE_M[0], ny as f64 * TILE_M[1]];
    let cams = tile_cameras(size);
    let geoms = cams
        .iter()
        .map(|(id, _, h)| CameraGeometry {
            id: id.clone(),
            floor: "bench".into(),
            homography: h.clone(),
        })
        .collect();
    let params = SpatialParams {
        max_tracks: active_tracks.max(1) * 2,
        ..SpatialParams::default()
    };
    let mut tracker = SpatialTracker::new("bench", params, geoms);
    let mut crowd = Crowd::new(&mut rng, active_tracks, size, cams.len());
    let interval_ns = 200_000_000u64;
    let warmup = 5;
    let mut times = Vec::with_capacity(cycles);
    let mut reid = 0.0;
    let mut out_digest = None;
    for c in 0..(cycles + warmup) {
        let ts = 1_000_000_000_000 + c as u64 * interval_ns;
        crowd.walk(0.2);
        let msgs: Vec<CameraTracks> = cams
            .iter()
            .enumerate()
            .map(|(ci, cam)| crowd.camera_tracks(&mut rng, ci, cam, c, ts))
            .collect();
        let t0 = Instant::now();
        for m in &msgs {
            let _ = tracker.ingest(m);
        }
        let out = tracker.step(ts + 1);
        let el = t0.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(&out);
        if digest {
            let mut h = out_digest.unwrap_or(0xcbf2_9ce4_8422_2325);
            h = fnv1a(h, &encode(&out.tracks).unwrap_or_default());
            for e in &out.events {
                h = fnv1a(h, &encode(e).unwrap_or_default());
            }
            out_digest = Some(h);
        }
        if c >= warmup {
            times.push(el);
            reid += tracker.stats().last_reid_ms;
        }
    }
    let n = times.len().max(1);
    let (mean_ms, p99_ms) = mean_p99(times);
    let t0 = Instant::now();
    let checkpoint_bytes = tracker.checkpoint().map_or(0, |b| b.len());
    let checkpoint_ms = t0.elapsed().as_secs_f64() * 1e3;
    BenchRow {
        active_tracks: tracker.stats().active_tracks,
        cycles,
        mean_ms,
        p99_ms,
        reid_mean_ms: reid / n as f64,
        checkpoint_bytes,
        checkpoint_ms,
        digest: out_digest,
    }
}
