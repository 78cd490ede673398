//! Deterministic multi-camera simulator: people walking on a floor, seen by
//! pinhole cameras with overlapping views and blind gaps, producing per-camera
//! detections with preset-dependent noise, plus floor and per-camera ground
//! truth. Pure and seeded: the same configuration gives the same output.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use nvr_subjects::{DetectedObject, Detections, SCHEMA_VERSION};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Noise level of the simulated detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoisePreset {
    /// Near-perfect detections.
    Clean,
    /// Typical detector noise.
    Default,
    /// Heavy noise, crowds and occlusion.
    Hard,
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Noise preset.
    pub preset: NoisePreset,
    /// Random seed; the whole output is a function of the configuration.
    pub seed: u64,
    /// Length of the sequence, seconds.
    pub duration_s: f64,
    /// Frames per second of every camera.
    pub fps: f64,
    /// Number of people.
    pub people: usize,
    /// Capture time of frame 0, ns since the Unix epoch.
    pub start_ns: u64,
    /// Dimension of the appearance embeddings.
    pub embedding_dim: usize,
}

/// One MOT-challenge ground-truth row (pixels of the original frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotRow {
    /// Frame number, 1-based.
    pub frame: u64,
    /// Person id, 1-based.
    pub id: u64,
    /// Left, pixels.
    pub x: f64,
    /// Top, pixels.
    pub y: f64,
    /// Width, pixels.
    pub w: f64,
    /// Height, pixels.
    pub h: f64,
}

/// A simulated camera and its calibration.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCamera {
    /// Camera id.
    pub id: String,
    /// Floor id.
    pub floor: String,
    /// Image width, pixels.
    pub width: u32,
    /// Image height, pixels.
    pub height: u32,
    /// Calibration pairs: image pixels from the true projection.
    pub image_points: Vec<[f64; 2]>,
    /// Calibration pairs: floor metres.
    pub floor_points: Vec<[f64; 2]>,
}

impl SimConfig {
    /// The standard configuration of a preset (people count grows with difficulty).
    pub fn preset(preset: NoisePreset, seed: u64) -> SimConfig {
        let people = match preset {
            NoisePreset::Clean => 6,
            NoisePreset::Default => 8,
            NoisePreset::Hard => 14,
        };
        SimConfig {
            preset,
            seed,
            duration_s: 120.0,
            fps: 10.0,
            people,
            start_ns: 1_700_000_000_000_000_000,
            embedding_dim: 32,
        }
    }
}

/// Everything one simulation produces.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOutput {
    /// The configuration that produced it.
    pub config: SimConfig,
    /// Floor id.
    pub floor: String,
    /// Floor size, metres.
    pub floor_size_m: [f64; 2],
    /// The cameras.
    pub cameras: Vec<SimCamera>,
    /// Detections of every camera, sorted by `ts_ns` then camera.
    pub messages: Vec<Detections>,
    /// Floor ground truth: (frame 1-based, person id, x m, y m).
    pub gt_floor: Vec<(u64, u64, f64, f64)>,
    /// Per-camera MOT ground truth of visible people.
    pub gt_camera: BTreeMap<String, Vec<MotRow>>,
    /// Capture time of each frame (index = frame - 1), ns.
    pub frame_ts_ns: Vec<u64>,
}

/// Floor size of the simulated room, metres.
pub const FLOOR_SIZE_M: [f64; 2] = [20.0, 12.0];
/// Image size of every simulated camera, pixels.
pub const IMAGE_SIZE: [u32; 2] = [1280, 720];
const FLOOR_ID: &str = "floor1";
const DOOR: [f64; 2] = [0.4, 6.0];

/// Detector noise of a preset.
#[derive(Debug, Clone, Copy)]
struct Noise {
    /// Standard deviation of each box edge, as a fraction of the box height.
    jitter: f64,
    /// Independent per-frame miss probability.
    miss: f64,
    /// Probability per frame that a burst of misses starts.
    burst_start: f64,
    /// Burst length range, frames.
    burst_len: (u32, u32),
    /// Mean number of false positives per camera frame.
    fp_rate: f64,
    /// Score range of false positives.
    fp_score: (f32, f32),
    /// Norm of the per-detection embedding noise.
    emb_noise: f64,
    /// Norm of the per-camera embedding bias.
    cam_bias: f64,
    /// Occluded fraction above which a person is not detected.
    occl_miss: f64,
    /// Probability that a person leaves the room at a waypoint.
    leave_p: f64,
}

fn noise_of(p: NoisePreset) -> Noise {
    match p {
        NoisePreset::Clean => Noise {
            jitter: 0.003,
            miss: 0.0,
            burst_start: 0.0,
            burst_len: (0, 0),
            fp_rate: 0.0,
            fp_score: (0.3, 0.5),
            emb_noise: 0.05,
            cam_bias: 0.1,
            occl_miss: 0.9,
            leave_p: 0.1,
        },
        NoisePreset::Default => Noise {
            jitter: 0.02,
            miss: 0.03,
            burst_start: 0.005,
            burst_len: (3, 10),
            fp_rate: 0.1,
            fp_score: (0.25, 0.65),
            emb_noise: 0.25,
            cam_bias: 0.25,
            occl_miss: 0.6,
            leave_p: 0.15,
        },
        NoisePreset::Hard => Noise {
            jitter: 0.04,
            miss: 0.08,
            burst_start: 0.02,
            burst_len: (5, 20),
            fp_rate: 0.4,
            fp_score: (0.25, 0.8),
            emb_noise: 0.4,
            cam_bias: 0.35,
            occl_miss: 0.5,
            leave_p: 0.2,
        },
    }
}

/// A pinhole camera looking at the floor.
#[derive(Debug, Clone)]
struct Pinhole {
    id: String,
    c: [f64; 3],
    f: f64,
    fwd: [f64; 3],
    right: [f64; 3],
    down: [f64; 3],
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

impl Pinhole {
    fn new(id: &str, x: f64, y: f64, height: f64, yaw_deg: f64, pitch_deg: f64, f: f64) -> Pinhole {
        let (yaw, pitch) = (yaw_deg.to_radians(), pitch_deg.to_radians());
        let fwd = [
            yaw.cos() * pitch.cos(),
            yaw.sin() * pitch.cos(),
            -pitch.sin(),
        ];
        let right = [yaw.sin(), -yaw.cos(), 0.0];
        let down = [
            fwd[1] * right[2] - fwd[2] * right[1],
            fwd[2] * right[0] - fwd[0] * right[2],
            fwd[0] * right[1] - fwd[1] * right[0],
        ];
        Pinhole {
            id: id.to_string(),
            c: [x, y, height],
            f,
            fwd,
            right,
            down,
        }
    }

    /// Pixel of a world point and its depth, or `None` behind the camera.
    fn project(&self, p: [f64; 3]) -> Option<([f64; 2], f64)> {
        let d = [p[0] - self.c[0], p[1] - self.c[1], p[2] - self.c[2]];
        let z = dot(d, self.fwd);
        if z < 0.2 {
            return None;
        }
        let cx = IMAGE_SIZE[0] as f64 / 2.0;
        let cy = IMAGE_SIZE[1] as f64 / 2.0;
        Some((
            [
                cx + self.f * dot(d, self.right) / z,
                cy + self.f * dot(d, self.down) / z,
            ],
            z,
        ))
    }

    /// Unclipped pixel box `[x1, y1, x2, y2]` of a standing person, and the
    /// depth of the feet.
    fn person_box(&self, pos: [f64; 2], height: f64, width: f64) -> Option<([f64; 4], f64)> {
        let hw = width / 2.0;
        let mut b = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        let mut depth = 0.0;
        // The body as a box of width `width` facing the camera.
        let side = [self.right[0], self.right[1]];
        let n = (side[0] * side[0] + side[1] * side[1]).sqrt().max(1e-9);
        let side = [side[0] / n * hw, side[1] / n * hw];
        for (k, z) in [0.0, height].iter().enumerate() {
            for s in [-1.0, 1.0] {
                let (px, zc) = self.project([pos[0] + s * side[0], pos[1] + s * side[1], *z])?;
                b[0] = b[0].min(px[0]);
                b[1] = b[1].min(px[1]);
                b[2] = b[2].max(px[0]);
                b[3] = b[3].max(px[1]);
                if k == 0 {
                    depth = zc;
                }
            }
        }
        Some((b, depth))
    }
}

fn cameras() -> Vec<Pinhole> {
    vec![
        Pinhole::new("cam1", 3.0, -0.3, 3.2, 80.0, 34.0, 1000.0),
        Pinhole::new("cam2", 17.0, -0.3, 3.2, 100.0, 34.0, 1000.0),
        Pinhole::new("cam3", 10.0, 12.3, 3.4, -90.0, 36.0, 900.0),
        Pinhole::new("cam4", -0.3, 6.0, 3.0, 0.0, 30.0, 1100.0),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Walking,
    Pausing(f64),
    Away(f64),
}

#[derive(Debug, Clone)]
struct Person {
    pos: [f64; 2],
    target: [f64; 2],
    speed: f64,
    height: f64,
    width: f64,
    phase: Phase,
    leader: Option<usize>,
    offset: [f64; 2],
    base: Vec<f64>,
}

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn unit_vec(rng: &mut ChaCha8Rng, d: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..d).map(|_| gauss(rng)).collect();
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn waypoint(rng: &mut ChaCha8Rng) -> [f64; 2] {
    [
        rng.random_range(1.0..FLOOR_SIZE_M[0] - 1.0),
        rng.random_range(1.0..FLOOR_SIZE_M[1] - 1.0),
    ]
}

fn overlap_area(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    w * h
}

/// Calibration pairs from the true projection: floor grid points whose image
/// lies well inside the frame, thinned to at most 12 spread points.
fn calibration(cam: &Pinhole) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let mut pairs = Vec::new();
    for xi in 0..=(FLOOR_SIZE_M[0] as i32) {
        for yi in 0..=(FLOOR_SIZE_M[1] as i32) {
            let (x, y) = (xi as f64, yi as f64);
            if let Some((px, _)) = cam.project([x, y, 0.0]) {
                if px[0] >= 20.0
                    && px[0] <= IMAGE_SIZE[0] as f64 - 20.0
                    && px[1] >= 20.0
                    && px[1] <= IMAGE_SIZE[1] as f64 - 20.0
                {
                    pairs.push((
                        [(px[0] * 10.0).round() / 10.0, (px[1] * 10.0).round() / 10.0],
                        [x, y],
                    ));
                }
            }
        }
    }
    let step = (pairs.len() / 12).max(1);
    let chosen: Vec<_> = pairs.iter().step_by(step).take(12).cloned().collect();
    (
        chosen.iter().map(|p| p.0).collect(),
        chosen.iter().map(|p| p.1).collect(),
    )
}

/// The output of a run before its first frame: the configuration, floor and
/// calibrated cameras.
fn empty_output(cfg: &SimConfig, cams: &[Pinhole]) -> SimOutput {
    SimOutput {
        config: cfg.clone(),
        floor: FLOOR_ID.to_string(),
        floor_size_m: FLOOR_SIZE_M,
        cameras: cams
            .iter()
            .map(|c| {
                let (image_points, floor_points) = calibration(c);
                SimCamera {
                    id: c.id.clone(),
                    floor: FLOOR_ID.to_string(),
                    width: IMAGE_SIZE[0],
                    height: IMAGE_SIZE[1],
                    image_points,
                    floor_points,
                }
            })
            .collect(),
        messages: Vec::new(),
        gt_floor: Vec::new(),
        gt_camera: cams.iter().map(|c| (c.id.clone(), Vec::new())).collect(),
        frame_ts_ns: Vec::new(),
    }
}

/// Runs the simulation.
pub fn simulate(cfg: &SimConfig) -> SimOutput {
    let noise = noise_of(cfg.preset);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let cams = cameras();
    let dim = cfg.embedding_dim.max(1);
    let cam_bias: Vec<Vec<f64>> = cams.iter().map(|_| unit_vec(&mut rng, dim)).collect();
    let fps = if cfg.fps.is_finite() && cfg.fps > 0.0 {
        cfg.fps
    } else {
        10.0
    };
    let dt = 1.0 / fps;
    let frames = (cfg.duration_s.max(0.0) * fps).round() as u64;
    let period_ns = (1e9 / fps).round() as u64;

    let mut people = spawn_people(cfg.people, &mut rng, dim);
    // Per camera and person: remaining burst-miss frames.
    let mut burst = vec![vec![0u32; cfg.people]; cams.len()];
    let mut out = empty_output(cfg, &cams);
    let (w, h) = (IMAGE_SIZE[0] as f64, IMAGE_SIZE[1] as f64);
    for fi in 0..frames {
        let t = fi as f64 * dt;
        let frame = fi + 1;
        move_people(&mut people, t, dt, &noise, &mut rng);
        let present: Vec<bool> = people
            .iter()
            .map(|p| !matches!(p.phase, Phase::Away(_)))
            .collect();
        let mut seen_by_any = vec![false; people.len()];
        out.frame_ts_ns.push(cfg.start_ns + fi * period_ns);
        for (ci, cam) in cams.iter().enumerate() {
            let ts_ns = cfg.start_ns + fi * period_ns + ci as u64 * 3_000_000;
            let vis = visible_boxes(cam, &people, &present);
            let mut objects = Vec::new();
            let gt = out.gt_camera.entry(cam.id.clone()).or_default();
            for (k, (_, pi, b)) in vis.iter().enumerate() {
                seen_by_any[*pi] = true;
                gt.push(MotRow {
                    frame,
                    id: *pi as u64 + 1,
                    x: b[0],
                    y: b[1],
                    w: b[2] - b[0],
                    h: b[3] - b[1],
                });
                let (occl, occluder) = occlusion(&vis, k);
                let detector = Detector {
                    noise: &noise,
                    cam_bias: &cam_bias[ci],
                    size: (w, h),
                };
                if let Some(o) = detector.observe(
                    &mut rng,
                    &people,
                    *pi,
                    b,
                    (occl, occluder),
                    &mut burst[ci][*pi],
                ) {
                    objects.push(o);
                }
            }
            false_positives(&noise, dim, &mut rng, &mut objects);
            out.messages.push(Detections {
                v: SCHEMA_VERSION,
                camera: cam.id.clone(),
                seq: fi,
                ts_ns,
                width: IMAGE_SIZE[0],
                height: IMAGE_SIZE[1],
                model: "sim".to_string(),
                backend: "sim".to_string(),
                worker: "sim".to_string(),
                latency_ms: 0.0,
                queue_ms: 0.0,
                objects,
            });
        }
        for (pi, p) in people.iter().enumerate() {
            if seen_by_any[pi] {
                out.gt_floor
                    .push((frame, pi as u64 + 1, p.pos[0], p.pos[1]));
            }
        }
    }
    out
}

/// The largest share of box `vis[k]` that a nearer box (those before it)
/// covers, and whose box that is.
fn occlusion(vis: &[(f64, usize, [f64; 4])], k: usize) -> (f64, Option<usize>) {
    let b = &vis[k].2;
    let area = ((b[2] - b[0]) * (b[3] - b[1])).max(1e-9);
    let mut occl = 0.0f64;
    let mut occluder = None;
    for (_, pj, bj) in vis.iter().take(k) {
        let o = overlap_area(b, bj) / area;
        if o > occl {
            occl = o;
            occluder = Some(*pj);
        }
    }
    (occl, occluder)
}

/// One camera's simulated detector.
struct Detector<'a> {
    /// The preset's noise.
    noise: &'a Noise,
    /// The camera's appearance bias (a unit vector).
    cam_bias: &'a [f64],
    /// Image size, pixels.
    size: (f64, f64),
}

impl Detector<'_> {
    /// The detection of person `pi`, whose visible box is `b` and who is
    /// `occlusion` covered (share, by whom): `None` when missed (a burst of
    /// misses, `burst_left` frames of it still to come; an independent miss;
    /// too occluded; a box too small after jitter).
    fn observe(
        &self,
        rng: &mut ChaCha8Rng,
        people: &[Person],
        pi: usize,
        b: &[f64; 4],
        (occl, occluder): (f64, Option<usize>),
        burst_left: &mut u32,
    ) -> Option<DetectedObject> {
        let noise = self.noise;
        let (w, h) = self.size;
        if *burst_left > 0 {
            *burst_left -= 1;
            return None;
        }
        if noise.burst_start > 0.0 && rng.random_bool(noise.burst_start) {
            *burst_left = rng.random_range(noise.burst_len.0..=noise.burst_len.1);
            return None;
        }
        if occl > noise.occl_miss || (noise.miss > 0.0 && rng.random_bool(noise.miss)) {
            return None;
        }
        let bh = b[3] - b[1];
        let j = noise.jitter * bh;
        let nb = [
            (b[0] + j * gauss(rng)).clamp(0.0, w),
            (b[1] + j * gauss(rng)).clamp(0.0, h),
            (b[2] + j * gauss(rng)).clamp(0.0, w),
            (b[3] + j * gauss(rng)).clamp(0.0, h),
        ];
        if nb[2] - nb[0] < 2.0 || nb[3] - nb[1] < 2.0 {
            return None;
        }
        let score = (0.92 - 0.4 * occl + 0.04 * gauss(rng)).clamp(0.3, 0.99) as f32;
        let dim = self.cam_bias.len();
        let mut e: Vec<f64> = people[pi].base.clone();
        for (d, x) in e.iter_mut().enumerate() {
            *x += noise.cam_bias * self.cam_bias[d]
                + noise.emb_noise / (dim as f64).sqrt() * gauss(rng);
            if let Some(o) = occluder {
                *x += occl * people[o].base[d];
            }
        }
        Some(det(nb, score, &e))
    }
}

/// The people of a scene: every fourth person walks with the previous
/// one (a group); a quarter start away, entering later through the door.
fn spawn_people(count: usize, rng: &mut ChaCha8Rng, dim: usize) -> Vec<Person> {
    let mut people: Vec<Person> = Vec::new();
    for i in 0..count {
        let leader = if i % 4 == 3 { Some(i - 1) } else { None };
        let start_away = rng.random_bool(0.25);
        let pos = if start_away { DOOR } else { waypoint(rng) };
        people.push(Person {
            pos,
            target: waypoint(rng),
            speed: rng.random_range(0.8..1.5),
            height: rng.random_range(1.55..1.9),
            width: rng.random_range(0.45..0.6),
            phase: if start_away {
                Phase::Away(rng.random_range(0.0..15.0))
            } else {
                Phase::Walking
            },
            leader,
            offset: [rng.random_range(-0.5..0.5), 0.7],
            base: unit_vec(rng, dim),
        });
    }
    people
}

/// Moves every person by one frame (`t`: the frame's time, `dt`: the
/// frame period): group members follow their leader, the others walk to
/// their target, pause, leave through the door and come back.
fn move_people(people: &mut [Person], t: f64, dt: f64, noise: &Noise, rng: &mut ChaCha8Rng) {
    for i in 0..people.len() {
        if let Some(l) = people[i].leader {
            let lp = people[l].clone();
            let p = &mut people[i];
            p.phase = match lp.phase {
                Phase::Away(u) => Phase::Away(u),
                _ => Phase::Walking,
            };
            let goal = [
                (lp.pos[0] + p.offset[0]).clamp(0.2, FLOOR_SIZE_M[0] - 0.2),
                (lp.pos[1] + p.offset[1]).clamp(0.2, FLOOR_SIZE_M[1] - 0.2),
            ];
            let d = [goal[0] - p.pos[0], goal[1] - p.pos[1]];
            let n = (d[0] * d[0] + d[1] * d[1]).sqrt();
            let stepm = (2.0 * dt).min(n);
            if matches!(lp.phase, Phase::Away(_)) {
                p.pos = lp.pos;
            } else if n > 1e-9 {
                p.pos = [p.pos[0] + d[0] / n * stepm, p.pos[1] + d[1] / n * stepm];
            }
            continue;
        }
        let p = &mut people[i];
        match p.phase {
            Phase::Away(until) => {
                if t >= until {
                    p.phase = Phase::Walking;
                    p.pos = DOOR;
                    p.target = waypoint(rng);
                }
            }
            Phase::Pausing(until) => {
                if t >= until {
                    p.phase = Phase::Walking;
                    p.target = if rng.random_bool(noise.leave_p) {
                        DOOR
                    } else {
                        waypoint(rng)
                    };
                }
            }
            Phase::Walking => {
                let d = [p.target[0] - p.pos[0], p.target[1] - p.pos[1]];
                let n = (d[0] * d[0] + d[1] * d[1]).sqrt();
                let stepm = p.speed * dt;
                if n <= stepm {
                    p.pos = p.target;
                    if p.target == DOOR {
                        p.phase = Phase::Away(t + rng.random_range(4.0..20.0));
                    } else {
                        p.phase = Phase::Pausing(t + rng.random_range(0.0..4.0));
                    }
                } else {
                    // A slight sway keeps paths from being perfectly straight.
                    let sway = 0.05 * (t * 1.3 + i as f64).sin();
                    p.pos = [
                        p.pos[0] + d[0] / n * stepm - d[1] / n * sway * dt,
                        p.pos[1] + d[1] / n * stepm + d[0] / n * sway * dt,
                    ];
                }
            }
        }
    }
}

/// The people camera `cam` sees, with their boxes cut by the image border,
/// nearest first: present, feet inside the image, at least 40% of their
/// height and 4 px of width visible. Each entry: depth, person index, box.
fn visible_boxes(
    cam: &Pinhole,
    people: &[Person],
    present: &[bool],
) -> Vec<(f64, usize, [f64; 4])> {
    let (w, h) = (IMAGE_SIZE[0] as f64, IMAGE_SIZE[1] as f64);
    let mut vis: Vec<(f64, usize, [f64; 4])> = Vec::new();
    for (pi, p) in people.iter().enumerate() {
        if !present[pi] {
            continue;
        }
        let Some((b, depth)) = cam.person_box(p.pos, p.height, p.width) else {
            continue;
        };
        let foot_v = b[3];
        let foot_u = 0.5 * (b[0] + b[2]);
        if foot_v < 0.0 || foot_v > h || foot_u < 0.0 || foot_u > w {
            continue;
        }
        let clipped = [b[0].max(0.0), b[1].max(0.0), b[2].min(w), b[3].min(h)];
        let full_h = b[3] - b[1];
        if full_h <= 0.0
            || (clipped[3] - clipped[1]) / full_h < 0.4
            || clipped[2] - clipped[0] < 4.0
        {
            continue;
        }
        vis.push((depth, pi, clipped));
    }
    vis.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    vis
}

/// Adds the false positives of one camera frame to `objects`: on average
/// `fp_rate` boxes at random places with random appearance.
fn false_positives(
    noise: &Noise,
    dim: usize,
    rng: &mut ChaCha8Rng,
    objects: &mut Vec<DetectedObject>,
) {
    let (w, h) = (IMAGE_SIZE[0] as f64, IMAGE_SIZE[1] as f64);
    let mut fp = noise.fp_rate;
    while fp > 0.0 {
        if rng.random_bool(fp.min(1.0)) {
            let bh = rng.random_range(60.0..260.0);
            let bw = bh * rng.random_range(0.3..0.5);
            let x = rng.random_range(0.0..w - bw);
            let y = rng.random_range(h * 0.25..h - bh);
            let score = rng.random_range(noise.fp_score.0..noise.fp_score.1);
            let e = unit_vec(rng, dim);
            objects.push(det([x, y, x + bw, y + bh], score, &e));
        }
        fp -= 1.0;
    }
}

fn det(b: [f64; 4], score: f32, emb: &[f64]) -> DetectedObject {
    let (w, h) = (IMAGE_SIZE[0] as f64, IMAGE_SIZE[1] as f64);
    let n = emb.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    DetectedObject {
        class_id: 0,
        label: "person".to_string(),
        score,
        bbox: [
            (b[0] / w) as f32,
            (b[1] / h) as f32,
            (b[2] / w) as f32,
            (b[3] / h) as f32,
        ],
        embedding: Some(emb.iter().map(|x| (x / n) as f32).collect()),
    }
}

/// Writes `<cam>.gt.txt` (MOT format: `frame,id,x,y,w,h,1,-1,-1,-1`) per
/// camera and `floor_gt.txt` (`frame,id,x,y`, metres; people seen by at
/// least one camera).
pub fn write_ground_truth(out: &SimOutput, dir: &Path) -> io::Result<()> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir)?;
    for (cam, rows) in &out.gt_camera {
        let mut s = String::new();
        for r in rows {
            let _ = writeln!(
                s,
                "{},{},{:.2},{:.2},{:.2},{:.2},1,-1,-1,-1",
                r.frame, r.id, r.x, r.y, r.w, r.h
            );
        }
        std::fs::write(dir.join(format!("{cam}.gt.txt")), s)?;
    }
    let mut s = String::new();
    for (f, id, x, y) in &out.gt_floor {
        let _ = writeln!(s, "{f},{id},{x:.4},{y:.4}");
    }
    std::fs::write(dir.join("floor_gt.txt"), s)
}

/// A `floors:` + `cameras:` YAML fragment with the calibration points (no url).
pub fn config_yaml(out: &SimOutput) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "floors:\n  - id: {}\n    size_m: [{}, {}]",
        out.floor, out.floor_size_m[0], out.floor_size_m[1]
    );
    let _ = writeln!(s, "cameras:");
    for c in &out.cameras {
        let _ = writeln!(
            s,
            "  - id: {}\n    floor: {}\n    calibration:\n      points:",
            c.id, c.floor
        );
        for (i, f) in c.image_points.iter().zip(&c.floor_points) {
            let _ = writeln!(
                s,
                "        - {{image: [{}, {}], floor: [{}, {}]}}",
                i[0], i[1], f[0], f[1]
            );
        }
    }
    s
}

#[cfg(test)]
mod tests;
