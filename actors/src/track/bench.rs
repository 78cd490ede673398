//! Synthetic detection streams and a throughput benchmark of [`super::Tracker`].

use nvr_subjects::DetectedObject;
use std::io;
use std::path::Path;

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

/// A deterministic synthetic detection stream at 5 fps.
pub fn synthetic_sequence(n_objects: usize, frames: usize, seed: u64) -> Vec<(u64, Vec<DetectedObject>)> {
    let _ = (n_objects, frames, seed);
    todo!()
}

/// Writes `seq` as a MOT-challenge detection file.
pub fn write_mot(seq: &[(u64, Vec<DetectedObject>)], path: &Path) -> io::Result<()> {
    let _ = (seq, path);
    todo!()
}

/// Times tracker updates on a synthetic sequence.
pub fn bench_updates(n_objects: usize, frames: usize) -> BenchRow {
    let _ = (n_objects, frames);
    todo!()
}
