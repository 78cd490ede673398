//! `nvr bench detect`: (a) the raw ONNX Runtime inference rate of the model
//! alone, (b) the full path camera -> NATS -> detector -> NATS with N
//! synthetic cameras fed real footage, and the ratio of (b) to (a).
//!
//! The full path runs an embedded `nats-server` in a temporary directory and
//! the same detector workers `nvr run` starts, or with `--node` drives the
//! detection nodes already serving the NATS server of `--nats-url`. Each
//! synthetic camera publishes `Frame` messages at its fps, staggered like
//! independent cameras; with the camera side on (the default) it first does
//! what a camera does to each frame: decode a full-resolution image (a JPEG
//! of the footage stands in for the video decoder), resize it and encode the
//! JPEG it publishes. A core subscription on `nvr.detections.>` timestamps
//! every result.
//!
//! A step is *steady* when, over its whole window (60 s by default), every
//! offered frame but under 1% got detections, the queue did not grow (its
//! mean over the last fifth of the window is at most one frame per camera
//! above the first fifth's) and the end-to-end p99 is within
//! `--p99-bound-ms`. The sweep stops at the first step that is not; the
//! largest steady camera count is the node's capacity. An overload step then
//! measures the detectors' peak rate; it publishes pre-encoded frames (no
//! camera side), since on one machine the synthetic cameras of an overload
//! would otherwise take the cores the detectors are measured on.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use futures::StreamExt;
use hdrhistogram::Histogram;
use nvr_actors::bus::{self, now_ns};
use nvr_actors::detect::image::{decode_jpeg, encode_jpeg, resize_to_fit};
use nvr_actors::status::peak_rss_mb;
use nvr_subjects::messages::{Detections, Frame, FrameEncoding};
use nvr_subjects::{decode, subjects, SCHEMA_VERSION};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::node::DetectionNode;

mod rig;

use rig::*;

/// Arguments of `nvr bench detect`.
#[derive(Debug, Args)]
pub struct DetectBenchArgs {
    /// Input sizes for the raw model rate.
    #[arg(long, value_delimiter = ',', default_value = "320,416")]
    pub raw_sizes: Vec<u32>,
    /// Timed inferences per raw measurement.
    #[arg(long, default_value_t = 300)]
    pub raw_iterations: usize,
    /// Model input size of the full-path runs.
    #[arg(long, default_value_t = 320)]
    pub input_size: u32,
    /// Camera counts of the sweep (ascending); it stops at the first count
    /// that is not served in a steady state.
    #[arg(long, value_delimiter = ',', default_value = "8,16,20,24,28,32,36")]
    pub cameras: Vec<usize>,
    /// Cameras of the overload step (0 = none).
    #[arg(long, default_value_t = 60)]
    pub overload_cameras: usize,
    /// Frames per second of each synthetic camera.
    #[arg(long, default_value_t = 5.0)]
    pub fps: f64,
    /// Seconds each step publishes (the steady-state window).
    #[arg(long, default_value_t = 60.0)]
    pub duration_s: f64,
    /// Largest end-to-end p99 (ms) of a steady step.
    #[arg(long, default_value_t = 1000.0)]
    pub p99_bound_ms: f64,
    /// Do the camera side (decode, resize, JPEG encode) for every frame.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub camera_side: bool,
    /// Backend of the detector workers (default: `detection.backend`).
    #[arg(long)]
    pub backend: Option<String>,
    /// Drive the detection nodes already serving the NATS server of
    /// `--nats-url` instead of starting workers here (no raw model rate).
    #[arg(long)]
    pub node: bool,
    /// Detector workers (default: `detection.workers`).
    #[arg(long)]
    pub workers: Option<usize>,
    /// ONNX Runtime threads per worker (default: cores / workers).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Footage the frames are taken from.
    #[arg(long, default_value = "data/samples/vtest.avi")]
    pub footage: PathBuf,
    /// Where the results files go.
    #[arg(long, default_value_os_t = crate::bench::default_out())]
    pub out: PathBuf,
    /// Name of the results files.
    #[arg(long, default_value = "detect")]
    pub name: String,
}

/// The outcome of one full-path step.
#[derive(Debug, Clone, serde::Serialize)]
struct Step {
    /// Synthetic cameras.
    cameras: usize,
    /// Whether the cameras did the camera side for every frame.
    camera_side: bool,
    /// Frames offered by the cameras.
    offered: u64,
    /// Frames the stream accepted.
    published: u64,
    /// Frames refused at publish (queue full).
    dropped_at_publish: u64,
    /// Frames with detections received.
    processed: u64,
    /// Frames skipped by the workers as too old.
    skipped: u64,
    /// Frames that failed.
    errors: u64,
    /// Accepted frames neither processed, skipped nor failed (expired in the stream).
    expired: u64,
    /// Share of offered frames that got no detections, percent.
    skipped_pct: f64,
    /// Detections per second over the publishing window.
    fps: f64,
    /// End-to-end latency (capture timestamp to detections received), ms.
    e2e_p50_ms: f64,
    /// 99th percentile of the same.
    e2e_p99_ms: f64,
    /// Largest queue size seen (pending + in flight on `detectors`).
    max_queue: u64,
    /// Mean queue size over the first fifth of the window.
    queue_start: f64,
    /// Mean queue size over the last fifth of the window.
    queue_end: f64,
    /// Served in a steady state (see the module documentation).
    steady: bool,
    /// Mean GPU utilisation over the window, percent (where `nvidia-smi` exists).
    gpu_util_pct: Option<f64>,
    /// Resident memory of this process at the end of the step, MiB.
    rss_mb: f64,
    /// Peak resident memory of this process so far, MiB (includes loading the footage).
    peak_rss_mb: f64,
}

/// Runs the benchmark.
pub async fn run(cfg: &Config, args: DetectBenchArgs) -> Result<ExitCode> {
    let mut cfg = cfg.clone();
    if let Some(w) = args.workers {
        cfg.detection.workers = w.max(1);
    }
    if let Some(t) = args.threads {
        cfg.detection.threads = t;
    }
    if let Some(b) = &args.backend {
        cfg.detection.backend = b.clone();
    }
    cfg.detection.input_size = args.input_size;
    // The colour descriptor is computed exactly when the config asks for it
    // (`spatial.reid_enabled`, on by default).
    if args.node {
        return run_against_nodes(&cfg, &args).await;
    }
    let model = cfg.detection.model_path();
    if !model.is_file() {
        bail!(
            "model {} not found (detection.models_path / detection.model); run scripts/setup",
            model.display()
        );
    }
    let workers = cfg.detection.effective_workers();
    cfg.detection.workers = workers;
    let opts = crate::node::detector_options(&cfg)?;
    let threads = opts.threads;
    println!("machine: {}", crate::bench::machine());
    println!(
        "model: {} | workers {} x {} threads",
        model.display(),
        workers,
        threads
    );

    let raw = raw_rates(&model, &args, workers, threads).await?;

    // (b) the full path.
    let frames = load_frames(&args.footage, args.input_size, cfg.detection.jpeg_quality).await?;
    println!(
        "frames: {} JPEG frames of {} at most {} px ({} KiB mean)",
        frames.len(),
        args.footage.display(),
        args.input_size,
        frames.iter().map(|f| f.small.len()).sum::<usize>() / frames.len().max(1) / 1024
    );
    let store = tempfile::tempdir().context("temporary JetStream store")?;
    let port = free_port()?;
    cfg.nats.url = format!("nats://127.0.0.1:{port}");
    cfg.nats.store_dir = store.path().to_string_lossy().into_owned();
    let server = crate::nats::EmbeddedServer::start(&cfg.nats, Duration::from_secs(10)).await?;
    let result = full_path(&cfg, &args, &server.url, Arc::new(frames)).await;
    server.stop().await;
    let (steps, overload) = result?;

    let run = FullRun {
        model: &model,
        cfg: &cfg,
        args: &args,
        workers,
        threads,
        raw: &raw,
        steps: &steps,
        overload: overload.as_ref(),
    };
    let (md, doc) = run.report();
    print!("\n{md}");
    crate::bench::write_results(&args.out, &args.name, &md, &doc)?;
    Ok(ExitCode::SUCCESS)
}

/// A raw-rate measurement of `sessions` sessions running side by side.
struct Raw {
    /// Model input size.
    input_size: u32,
    /// Sessions run in parallel.
    sessions: usize,
    /// Threads per session.
    threads: usize,
    /// Inferences per second, all sessions together.
    fps: f64,
    /// Mean latency of one inference, ms.
    mean_ms: f64,
    /// Median latency, ms.
    p50_ms: f64,
    /// 99th percentile latency, ms.
    p99_ms: f64,
    /// Timed inferences per session.
    iterations: usize,
}

async fn raw_parallel(
    model: &std::path::Path,
    size: u32,
    iterations: usize,
    sessions: usize,
    threads: usize,
) -> Result<Raw> {
    let mut jobs = Vec::new();
    for _ in 0..sessions {
        let m = model.to_path_buf();
        jobs.push(tokio::task::spawn_blocking(move || {
            nvr_actors::detect::bench::bench_raw(&m, size, iterations, threads)
        }));
    }
    let mut rows = Vec::new();
    for j in jobs {
        rows.push(
            j.await
                .map_err(|e| anyhow!("{e}"))?
                .map_err(|e| anyhow!("raw benchmark at {size}: {e}"))?,
        );
    }
    let n = rows.len().max(1) as f64;
    Ok(Raw {
        input_size: size,
        sessions,
        threads,
        fps: rows.iter().map(|r| r.fps).sum(),
        mean_ms: rows.iter().map(|r| r.mean_ms).sum::<f64>() / n,
        p50_ms: rows.iter().map(|r| r.p50_ms).sum::<f64>() / n,
        p99_ms: rows.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
        iterations,
    })
}

/// `--node`: the sweep against the detection nodes already on the bus.
async fn run_against_nodes(cfg: &Config, args: &DetectBenchArgs) -> Result<ExitCode> {
    if cfg.nats.embedded {
        bail!("--node drives running detection nodes: give their NATS server with --nats-url");
    }
    println!("machine (publisher): {}", crate::bench::machine());
    let frames =
        Arc::new(load_frames(&args.footage, args.input_size, cfg.detection.jpeg_quality).await?);
    let client = crate::nats::connect(cfg, &cfg.nats.url, "nvr bench detect").await?;
    let js = async_nats::jetstream::new(client.clone());
    let nodes =
        crate::gather::gather(&client, nvr_actors::status::DETECTION_STATUS_SUBJECT, b"{}").await;
    if nodes.is_empty() {
        bail!(
            "no detection node answers on {} at {}",
            nvr_actors::status::DETECTION_STATUS_SUBJECT,
            crate::nats::redact_url(&cfg.nats.url)
        );
    }
    println!("detection nodes answering: {}", nodes.len());
    let rig = Rig {
        cfg,
        args,
        client,
        js,
        node: None,
        frames,
    };
    let (steps, overload) = sweep(&rig).await?;
    let best = steps.iter().filter(|s| s.steady).max_by_key(|s| s.cameras);
    let mut md = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        md,
        "# Detection benchmark against running nodes\n\nCommand: `nvr bench detect --node --nats-url ...`; {} detection node(s) answered.\n",
        nodes.len()
    );
    steps_markdown(&mut md, args, &steps, overload.as_ref());
    print!("\n{md}");
    let doc = json!({
        "nodes": nodes.len(),
        "camera_side": args.camera_side,
        "full_path": {"input_size": args.input_size, "fps_per_camera": args.fps, "duration_s": args.duration_s, "steps": steps, "overload": overload},
        "steady_state_cameras": best.map(|b| b.cameras),
    });
    crate::bench::write_results(&args.out, &args.name, &md, &doc)?;
    Ok(ExitCode::SUCCESS)
}

/// The full-path table and the steady-state verdict.
fn steps_markdown(
    md: &mut String,
    args: &DetectBenchArgs,
    steps: &[Step],
    overload: Option<&Step>,
) {
    use std::fmt::Write as _;
    let _ = writeln!(
        md,
        "\n## (b) Full path: camera -> NATS -> detector -> NATS (input {}, {} fps per camera, {} s per step)\n",
        args.input_size, args.fps, args.duration_s
    );
    let _ = writeln!(md, "| cameras | camera side | offered | processed | not served % | fps | e2e p50 ms | e2e p99 ms | queue start / end / max | steady | GPU % | RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in steps.iter().chain(overload) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} / {:.0} / {} | {} | {} | {:.0} |",
            s.cameras,
            if s.camera_side { "on" } else { "off" },
            s.offered,
            s.processed,
            s.skipped_pct,
            s.fps,
            s.e2e_p50_ms,
            s.e2e_p99_ms,
            s.queue_start,
            s.queue_end,
            s.max_queue,
            if s.steady { "yes" } else { "no" },
            s.gpu_util_pct.map_or("-".to_string(), |g| format!("{g:.0}")),
            s.rss_mb
        );
    }
    let _ = writeln!(md);
    match steps.iter().filter(|s| s.steady).max_by_key(|s| s.cameras) {
        Some(b) => {
            let _ = writeln!(
                md,
                "Steady state: **{} cameras at {} fps** ({:.1} fps served, e2e p99 {:.0} ms within {:.0} ms, queue {:.0} -> {:.0}).",
                b.cameras, args.fps, b.fps, b.e2e_p99_ms, args.p99_bound_ms, b.queue_start, b.queue_end
            );
        }
        None => {
            let _ = writeln!(md, "No step was served in a steady state.");
        }
    }
}

fn print_step(s: &Step) {
    println!(
        "full path {:>3} cameras: {:>6.1} fps  not served {:>6.2}%  e2e p50 {:>6.1} ms  p99 {:>7.1} ms  queue {:.0} -> {:.0} (max {})  steady {}  RSS {:.0} MiB",
        s.cameras,
        s.fps,
        s.skipped_pct,
        s.e2e_p50_ms,
        s.e2e_p99_ms,
        s.queue_start,
        s.queue_end,
        s.max_queue,
        if s.steady { "yes" } else { "no" },
        s.rss_mb
    );
}

/// (a) The model alone at each `--raw-sizes` input: one session using every
/// core, one single-threaded session per core, and the node's own layout
/// (`workers` x `threads`); the best of them is the machine's raw model rate.
async fn raw_rates(
    model: &std::path::Path,
    args: &DetectBenchArgs,
    workers: usize,
    threads: usize,
) -> Result<Vec<Raw>> {
    let mut raw = Vec::new();
    for &size in &args.raw_sizes {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let mut layouts = vec![(1usize, cores), (cores, 1), (workers, threads)];
        layouts.sort();
        layouts.dedup();
        for (sessions, th) in layouts {
            let r = raw_parallel(model, size, args.raw_iterations, sessions, th).await?;
            println!(
                "raw model  input {:>3}: {:>6.1} fps  mean {:>5.1} ms  p50 {:>5.1} ms  p99 {:>5.1} ms ({} session(s) x {} thread(s))",
                size, r.fps, r.mean_ms, r.p50_ms, r.p99_ms, sessions, th
            );
            raw.push(r);
        }
    }
    Ok(raw)
}

/// Everything one run of the benchmark measured, for its report.
struct FullRun<'a> {
    /// The model file.
    model: &'a std::path::Path,
    /// The configuration the node ran with.
    cfg: &'a Config,
    /// The command line.
    args: &'a DetectBenchArgs,
    /// Detection workers.
    workers: usize,
    /// ONNX Runtime threads per worker.
    threads: usize,
    /// (a) raw model rates.
    raw: &'a [Raw],
    /// (b) the full path's steps.
    steps: &'a [Step],
    /// (b) the overload step, if it ran.
    overload: Option<&'a Step>,
}

impl FullRun<'_> {
    /// The best raw model rate at input `size`.
    fn raw_at(&self, size: u32) -> Option<f64> {
        self.raw
            .iter()
            .filter(|r| r.input_size == size)
            .map(|r| r.fps)
            .fold(None, |a: Option<f64>, f| Some(a.map_or(f, |a| a.max(f))))
    }

    /// The results file's Markdown and JSON.
    fn report(&self) -> (String, serde_json::Value) {
        let FullRun {
            model,
            cfg,
            args,
            workers,
            threads,
            raw,
            steps,
            overload,
        } = *self;
        let best = steps.iter().filter(|s| s.steady).max_by_key(|s| s.cameras);
        let raw_rate = self.raw_at(args.input_size);
        let ratio = match (overload, raw_rate) {
            (Some(o), Some(r)) if r > 0.0 => Some(o.fps / r),
            _ => None,
        };
        let mut md = String::new();
        use std::fmt::Write as _;
        let _ = writeln!(md, "# Detection benchmark\n");
        let _ = writeln!(
            md,
            "Command: `nvr bench detect` ({}). Machine: {}. Model: `{}`, {} worker(s) x {} ONNX Runtime thread(s), backend {}, colour descriptor {}.\n",
            crate::bench::build(),
            crate::bench::machine(),
            model.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            cfg.detection.workers,
            threads,
            cfg.detection.backend,
            if cfg.spatial.reid_enabled { "on" } else { "off" }
        );
        let _ = writeln!(md, "## (a) Raw model rate (inference only, warm)\n\n| input | sessions x threads | fps | mean ms | p50 ms | p99 ms |\n|---|---|---|---|---|---|");
        for r in raw {
            let _ = writeln!(
                md,
                "| {} | {} x {} | {:.1} | {:.2} | {:.2} | {:.2} |",
                r.input_size, r.sessions, r.threads, r.fps, r.mean_ms, r.p50_ms, r.p99_ms
            );
        }
        steps_markdown(&mut md, args, steps, overload);
        if let (Some(o), Some(r)) = (overload, ratio) {
            let _ = writeln!(
                md,
                "Peak full-path rate under overload ({} cameras, pre-encoded frames): {:.1} fps = **{:.2}** of the raw model rate at {} ({:.1} fps).",
                o.cameras,
                o.fps,
                r,
                args.input_size,
                raw_rate.unwrap_or(0.0)
            );
        }
        let doc = json!({
            "machine": crate::bench::machine(),
            "model": model.to_string_lossy(),
            "workers": workers,
            "threads_per_worker": threads,
            "raw": raw.iter().map(|r| json!({
                "input_size": r.input_size, "sessions": r.sessions, "threads": r.threads, "fps": r.fps, "mean_ms": r.mean_ms,
                "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "iterations": r.iterations,
            })).collect::<Vec<_>>(),
            "full_path": {
                "input_size": args.input_size,
                "fps_per_camera": args.fps,
                "duration_s": args.duration_s,
                "steps": steps,
                "overload": overload,
            },
            "steady_state_cameras": best.map(|b| b.cameras),
            "camera_side": args.camera_side,
            "colour_descriptor": cfg.spatial.reid_enabled,
            "backend": cfg.detection.backend,
            "full_to_raw_ratio": ratio,
        });
        (md, doc)
    }
}
