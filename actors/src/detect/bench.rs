//! Raw inference benchmark: the model alone (no decode, NMS or letterbox in
//! the timed loop) on a real letterboxed frame, warm-up excluded.

use std::path::Path;
use std::time::Instant;

use ort::value::TensorRef;

use super::frames::read_frames;
use super::image::RgbImage;
use super::letterbox::Letterboxer;
use super::model_io::validate_input;
use super::runtime::{build_session, data_dir, RuntimeOptions};
use super::DetectError;

/// Untimed iterations before measuring.
pub const WARMUP_ITERATIONS: usize = 5;

/// Result of [`bench_raw`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawBench {
    /// Square input size used.
    pub input_size: u32,
    /// Timed iterations (warm-up excluded).
    pub iterations: usize,
    /// Inferences per second (iterations / total timed seconds).
    pub fps: f64,
    /// Mean latency in ms.
    pub mean_ms: f64,
    /// Median latency in ms.
    pub p50_ms: f64,
    /// 99th percentile latency in ms.
    pub p99_ms: f64,
}

/// Time the model alone on the first frame of `<data dir>/samples/vtest.avi`
/// (decoded with ffmpeg), letterboxed to `input_size`, on the CPU with
/// `threads` intra-op threads (0 = ONNX Runtime's default).
pub fn bench_raw(
    model_path: &Path,
    input_size: u32,
    iterations: usize,
    threads: usize,
) -> Result<RawBench, DetectError> {
    let sample = data_dir().join("samples").join("vtest.avi");
    let frame = read_frames(&sample, 0, 1, 1)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            DetectError::Image(format!(
                "no frame decoded from {}; run scripts/setup",
                sample.display()
            ))
        })?;
    bench_raw_on(model_path, &frame, input_size, iterations, threads)
}

/// Like [`bench_raw`] on a given frame.
pub fn bench_raw_on(
    model_path: &Path,
    frame: &RgbImage,
    input_size: u32,
    iterations: usize,
    threads: usize,
) -> Result<RawBench, DetectError> {
    let opts = RuntimeOptions {
        threads,
        ..RuntimeOptions::default()
    };
    let mut built = build_session(model_path, &opts)?;
    let input_size = validate_input(&built.session, model_path, input_size)?;
    let mut lb = Letterboxer::new();
    lb.run(frame, input_size)?;
    let s = input_size as usize;
    let iterations = iterations.max(1);
    let mut times_ms = Vec::with_capacity(iterations);
    let err = |e: ort::Error| DetectError::Inference(e.to_string().replace('\n', " "));
    for i in 0..WARMUP_ITERATIONS + iterations {
        let input = TensorRef::from_array_view(([1usize, 3, s, s], lb.tensor())).map_err(err)?;
        let t0 = Instant::now();
        let outputs = built.session.run(ort::inputs![input]).map_err(err)?;
        let dt = t0.elapsed().as_secs_f64() * 1e3;
        drop(outputs);
        if i >= WARMUP_ITERATIONS {
            times_ms.push(dt);
        }
    }
    Ok(summarise(input_size, &times_ms))
}

/// Summary statistics of per-iteration latencies in ms.
pub fn summarise(input_size: u32, times_ms: &[f64]) -> RawBench {
    let mut sorted = times_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let total: f64 = sorted.iter().sum();
    let pct = |p: f64| {
        if n == 0 {
            0.0
        } else {
            sorted[(((n - 1) as f64) * p).round() as usize]
        }
    };
    RawBench {
        input_size,
        iterations: n,
        fps: if total > 0.0 {
            n as f64 * 1e3 / total
        } else {
            0.0
        },
        mean_ms: if n > 0 { total / n as f64 } else { 0.0 },
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_statistics() {
        let times: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        let b = summarise(416, &times);
        assert_eq!(b.iterations, 100);
        assert!((b.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(b.p50_ms, 51.0);
        assert_eq!(b.p99_ms, 99.0);
        assert!((b.fps - 1000.0 / 50.5).abs() < 1e-9);
        let empty = summarise(320, &[]);
        assert_eq!(empty.fps, 0.0);
    }
}
