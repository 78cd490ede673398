//! Raw inference benchmark of a model on a real letterboxed frame.

use std::path::Path;

use super::DetectError;

/// Result of [`bench_raw`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawBench {
    /// Square input size used.
    pub input_size: u32,
    /// Timed iterations (warm-up excluded).
    pub iterations: usize,
    /// Inferences per second.
    pub fps: f64,
    /// Mean latency in ms.
    pub mean_ms: f64,
    /// Median latency in ms.
    pub p50_ms: f64,
    /// 99th percentile latency in ms.
    pub p99_ms: f64,
}

/// Time the model alone on a letterboxed frame.
pub fn bench_raw(model_path: &Path, input_size: u32, iterations: usize, threads: usize) -> Result<RawBench, DetectError> {
    let _ = (model_path, input_size, iterations, threads);
    todo!()
}
