//! Deterministic multi-camera simulator: people walking on a floor, seen by
//! pinhole cameras with overlapping views and blind gaps, producing per-camera
//! detections with preset-dependent noise, plus floor and per-camera ground
//! truth. Pure and seeded: the same configuration gives the same output.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use nvr_subjects::Detections;

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

/// Runs the simulation.
pub fn simulate(cfg: &SimConfig) -> SimOutput {
    let _ = cfg;
    todo!()
}

/// Writes `<cam>.gt.txt` (MOT format) per camera and `floor_gt.txt` (`frame,id,x,y`).
pub fn write_ground_truth(out: &SimOutput, dir: &Path) -> io::Result<()> {
    let _ = (out, dir);
    todo!()
}

/// A `floors:` + `cameras:` YAML fragment with the calibration points.
pub fn config_yaml(out: &SimOutput) -> String {
    let _ = out;
    todo!()
}
