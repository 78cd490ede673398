//! `nvr bench detect`: (a) the raw ONNX Runtime inference rate of the model
//! alone, (b) the full path camera publish -> NATS -> detector -> NATS on this
//! machine with N synthetic cameras fed pre-encoded frames of real footage,
//! and the ratio of (b) to (a).
//!
//! The full path runs an embedded `nats-server` in a temporary directory and
//! the same detector workers `nvr run` starts. Each synthetic camera publishes
//! `Frame` messages at its fps, staggered like independent cameras; a core
//! subscription on `nvr.detections.>` timestamps every result. A sweep over
//! camera counts finds the largest one served with under 1% of frames
//! skipped; an overload step measures the sustained throughput.

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
use nvr_actors::detect::image::{encode_jpeg, resize_to_fit};
use nvr_actors::status::peak_rss_mb;
use nvr_subjects::messages::{Detections, Frame, FrameEncoding};
use nvr_subjects::{decode, subjects, SCHEMA_VERSION};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::node::DetectionNode;

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
    /// with 1% or more frames skipped.
    #[arg(long, value_delimiter = ',', default_value = "8,16,20,24,28,32,36,40")]
    pub cameras: Vec<usize>,
    /// Cameras of the overload step (0 = none).
    #[arg(long, default_value_t = 60)]
    pub overload_cameras: usize,
    /// Frames per second of each synthetic camera.
    #[arg(long, default_value_t = 5.0)]
    pub fps: f64,
    /// Seconds each step publishes.
    #[arg(long, default_value_t = 20.0)]
    pub duration_s: f64,
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
    cfg.detection.input_size = args.input_size;
    cfg.spatial.reid_enabled = false;
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

    // (a) the model alone: one session using every core, one single-threaded
    // session per core, and the node's own layout; the best of them is the
    // machine's raw model rate.
    let mut raw = Vec::new();
    for &size in &args.raw_sizes {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let mut layouts = vec![(1usize, cores), (cores, 1), (workers, threads)];
        layouts.dedup();
        layouts.sort();
        layouts.dedup();
        for (sessions, th) in layouts {
            let r = raw_parallel(&model, size, args.raw_iterations, sessions, th).await?;
            println!(
                "raw model  input {:>3}: {:>6.1} fps  mean {:>5.1} ms  p50 {:>5.1} ms  p99 {:>5.1} ms ({} session(s) x {} thread(s))",
                size, r.fps, r.mean_ms, r.p50_ms, r.p99_ms, sessions, th
            );
            raw.push(r);
        }
    }

    // (b) the full path.
    let frames = load_frames(&args.footage, args.input_size, cfg.detection.jpeg_quality).await?;
    println!(
        "frames: {} JPEG frames of {} at most {} px ({} KiB mean)",
        frames.len(),
        args.footage.display(),
        args.input_size,
        frames.iter().map(|f| f.2.len()).sum::<usize>() / frames.len().max(1) / 1024
    );
    let store = tempfile::tempdir().context("temporary JetStream store")?;
    let port = free_port()?;
    cfg.nats.url = format!("nats://127.0.0.1:{port}");
    cfg.nats.store_dir = store.path().to_string_lossy().into_owned();
    let server = crate::nats::EmbeddedServer::start(&cfg.nats, Duration::from_secs(10)).await?;
    let result = full_path(&cfg, &args, &server.url, Arc::new(frames)).await;
    server.stop().await;
    let (steps, overload) = result?;

    let raw_at = |size: u32| {
        raw.iter()
            .filter(|r| r.input_size == size)
            .map(|r| r.fps)
            .fold(None, |a: Option<f64>, f| Some(a.map_or(f, |a| a.max(f))))
    };
    let best = steps
        .iter()
        .filter(|s| s.skipped_pct < 1.0)
        .max_by_key(|s| s.cameras);
    let ratio = match (&overload, raw_at(args.input_size)) {
        (Some(o), Some(r)) if r > 0.0 => Some(o.fps / r),
        _ => None,
    };
    let mut md = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(md, "# Detection benchmark\n");
    let _ = writeln!(
        md,
        "Command: `nvr bench detect` (release build). Machine: {}. Model: `{}`, {} worker(s) x {} ONNX Runtime thread(s), CPU backend.\n",
        crate::bench::machine(),
        model.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        cfg.detection.workers,
        threads
    );
    let _ = writeln!(md, "## (a) Raw model rate (inference only, warm)\n\n| input | sessions x threads | fps | mean ms | p50 ms | p99 ms |\n|---|---|---|---|---|---|");
    for r in &raw {
        let _ = writeln!(
            md,
            "| {} | {} x {} | {:.1} | {:.2} | {:.2} | {:.2} |",
            r.input_size, r.sessions, r.threads, r.fps, r.mean_ms, r.p50_ms, r.p99_ms
        );
    }
    let _ = writeln!(
        md,
        "\n## (b) Full path: camera publish -> NATS -> detector -> NATS (input {}, {} fps per camera, {} s per step)\n",
        args.input_size, args.fps, args.duration_s
    );
    let _ = writeln!(md, "| cameras | offered | processed | skipped % | fps | e2e p50 ms | e2e p99 ms | max queue | RSS MiB |\n|---|---|---|---|---|---|---|---|---|");
    for s in steps.iter().chain(overload.iter()) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {} | {:.0} |",
            s.cameras,
            s.offered,
            s.processed,
            s.skipped_pct,
            s.fps,
            s.e2e_p50_ms,
            s.e2e_p99_ms,
            s.max_queue,
            s.rss_mb
        );
    }
    let _ = writeln!(md);
    if let Some(b) = best {
        let _ = writeln!(
            md,
            "Largest camera count at {} fps with under 1% skipped: **{}** ({:.2}% skipped).",
            args.fps, b.cameras, b.skipped_pct
        );
    }
    if let (Some(o), Some(r)) = (&overload, ratio) {
        let _ = writeln!(
            md,
            "Sustained full-path rate under overload: {:.1} fps = **{:.2}** of the raw model rate at {} ({:.1} fps).",
            o.fps,
            r,
            args.input_size,
            raw_at(args.input_size).unwrap_or(0.0)
        );
    }
    print!("\n{md}");
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
        "max_cameras_under_1pct_skipped": best.map(|b| b.cameras),
        "full_to_raw_ratio": ratio,
    });
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

/// (original width, original height, JPEG) of frames spread over the footage.
type EncodedFrame = (u32, u32, Vec<u8>);

async fn load_frames(
    path: &std::path::Path,
    max_side: u32,
    quality: u8,
) -> Result<Vec<EncodedFrame>> {
    if !path.is_file() {
        bail!("footage {} not found; run scripts/setup", path.display());
    }
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<Vec<EncodedFrame>> {
        let frames = nvr_actors::detect::frames::read_frames(&path, 0, 8, 60)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if frames.is_empty() {
            bail!("no frames decoded from {}", path.display());
        }
        frames
            .iter()
            .map(|f| {
                let small = resize_to_fit(f, max_side);
                let jpeg = encode_jpeg(&small, quality).map_err(|e| anyhow!("jpeg: {e}"))?;
                Ok((f.width, f.height, jpeg))
            })
            .collect()
    })
    .await
    .map_err(|e| anyhow!("{e}"))?
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Counters shared by the publishers and the result listener of one step.
#[derive(Default)]
struct Counters {
    /// Frames the cameras tried to publish.
    offered: AtomicU64,
    /// Frames refused at publish.
    dropped: AtomicU64,
    /// Detections received.
    received: AtomicU64,
}

async fn full_path(
    cfg: &Config,
    args: &DetectBenchArgs,
    url: &str,
    frames: Arc<Vec<EncodedFrame>>,
) -> Result<(Vec<Step>, Option<Step>)> {
    let client = crate::nats::connect(cfg, url, "nvr bench detect").await?;
    let js = async_nats::jetstream::new(client.clone());
    crate::nats::ensure_streams(&js, &crate::nats::retention(cfg)).await?;
    let (node, specs) = DetectionNode::new(cfg, js.clone());
    let (sup, handle) = crate::supervisor::start_supervisor(specs).await?;
    // Wait for every worker to load its model before timing anything.
    let deadline = Instant::now() + Duration::from_secs(60);
    while node
        .loaded
        .iter()
        .any(|l| l.lock().map(|l| l.is_none()).unwrap_or(true))
    {
        if Instant::now() > deadline {
            bail!("detector workers did not load the model within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut steps = Vec::new();
    let mut step_no = 0u64;
    for &n in &args.cameras {
        step_no += 1;
        let s = one_step(cfg, args, &client, &js, &node, frames.clone(), n, step_no).await?;
        print_step(&s);
        let stop = s.skipped_pct >= 1.0;
        steps.push(s);
        if stop {
            break;
        }
    }
    let overload = if args.overload_cameras > 0 {
        step_no += 1;
        let s = one_step(
            cfg,
            args,
            &client,
            &js,
            &node,
            frames.clone(),
            args.overload_cameras,
            step_no,
        )
        .await?;
        print_step(&s);
        Some(s)
    } else {
        None
    };
    crate::supervisor::shutdown_supervisor(&sup, handle).await;
    Ok((steps, overload))
}

fn print_step(s: &Step) {
    println!(
        "full path {:>3} cameras: {:>6.1} fps  skipped {:>6.2}%  e2e p50 {:>6.1} ms  p99 {:>7.1} ms  max queue {:>4}  RSS {:.0} MiB",
        s.cameras, s.fps, s.skipped_pct, s.e2e_p50_ms, s.e2e_p99_ms, s.max_queue, s.rss_mb
    );
}

fn worker_totals(node: &DetectionNode) -> (u64, u64, u64) {
    node.workers.iter().fold((0, 0, 0), |acc, w| {
        (
            acc.0 + w.processed.load(Ordering::Relaxed),
            acc.1 + w.skipped.load(Ordering::Relaxed),
            acc.2 + w.errors.load(Ordering::Relaxed),
        )
    })
}

#[allow(clippy::too_many_arguments)]
async fn one_step(
    cfg: &Config,
    args: &DetectBenchArgs,
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    node: &DetectionNode,
    frames: Arc<Vec<EncodedFrame>>,
    cameras: usize,
    step_no: u64,
) -> Result<Step> {
    let counters = Arc::new(Counters::default());
    let e2e = Arc::new(std::sync::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| anyhow!("{e}"))?,
    ));
    let prefix = format!("s{step_no}c");
    let mut sub = client
        .subscribe(subjects::detections("*"))
        .await
        .map_err(|e| anyhow!("subscribe: {e}"))?;
    let listener = {
        let (counters, e2e, prefix) = (counters.clone(), e2e.clone(), prefix.clone());
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let Ok(d) = decode::<Detections>(&m.payload) else {
                    continue;
                };
                if !d.camera.starts_with(&prefix) {
                    continue;
                }
                let ms = now_ns().saturating_sub(d.ts_ns) as f64 / 1e6;
                counters.received.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut h) = e2e.lock() {
                    let _ = h.record(((ms * 1000.0).round() as u64).max(1));
                }
            }
        })
    };
    client.flush().await.map_err(|e| anyhow!("flush: {e}"))?;
    let (p0, s0, e0) = worker_totals(node);
    let cancel = CancellationToken::new();
    let period = Duration::from_secs_f64(1.0 / args.fps.max(0.1));
    let mut pubs = Vec::new();
    for i in 0..cameras {
        let (js, frames, counters, cancel) =
            (js.clone(), frames.clone(), counters.clone(), cancel.clone());
        let camera = format!("{prefix}{i:03}");
        let offset = period.mul_f64(i as f64 / cameras as f64);
        pubs.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = cancel.cancelled() => break,
                }
                let (w, h, jpeg) = &frames[(seq as usize + i * 7) % frames.len()];
                seq += 1;
                let f = Frame {
                    v: SCHEMA_VERSION,
                    camera: camera.clone(),
                    seq,
                    ts_ns: now_ns(),
                    width: *w,
                    height: *h,
                    encoding: FrameEncoding::Jpeg,
                    data: jpeg.clone(),
                    data_width: 0,
                    data_height: 0,
                };
                counters.offered.fetch_add(1, Ordering::Relaxed);
                let id = nvr_subjects::msg_id(&camera, seq);
                if bus::publish_js(&js, subjects::frames(&camera), &f, Some(&id))
                    .await
                    .is_err()
                {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Publish for the step's duration, sampling the queue.
    let started = Instant::now();
    let window = Duration::from_secs_f64(args.duration_s);
    let mut max_queue = 0u64;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(nvr_subjects::streams::FRAMES)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .get_consumer(nvr_subjects::streams::DETECTORS_CONSUMER)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(info) = consumer.info().await {
            max_queue = max_queue.max(info.num_pending + info.num_ack_pending as u64);
        }
    }
    cancel.cancel();
    for p in pubs {
        let _ = p.await;
    }
    let received_at_end = counters.received.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    // Drain: wait until the queue is empty and every accepted frame is accounted for.
    let drain_deadline =
        Instant::now() + Duration::from_millis(cfg.detection.max_frame_age_ms + 10_000);
    loop {
        let queue = consumer
            .info()
            .await
            .map(|i| i.num_pending + i.num_ack_pending as u64)
            .unwrap_or(0);
        let (p, s, e) = worker_totals(node);
        let accepted =
            counters.offered.load(Ordering::Relaxed) - counters.dropped.load(Ordering::Relaxed);
        if (queue == 0 && (p - p0) + (s - s0) + (e - e0) >= accepted)
            || Instant::now() > drain_deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the last detections reach the listener.
    let _ = client.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    listener.abort();
    let (p, s, e) = worker_totals(node);
    let (processed, skipped, errors) = (p - p0, s - s0, e - e0);
    let offered = counters.offered.load(Ordering::Relaxed);
    let dropped = counters.dropped.load(Ordering::Relaxed);
    let published = offered - dropped;
    let expired = published.saturating_sub(processed + skipped + errors);
    let not_served = offered.saturating_sub(processed);
    let h = e2e.lock().map_err(|_| anyhow!("histogram lock"))?;
    let pct = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Step {
        cameras,
        offered,
        published,
        dropped_at_publish: dropped,
        processed,
        skipped,
        errors,
        expired,
        skipped_pct: if offered > 0 {
            100.0 * not_served as f64 / offered as f64
        } else {
            0.0
        },
        fps: received_at_end.min(processed) as f64 / elapsed,
        e2e_p50_ms: pct(0.5),
        e2e_p99_ms: pct(0.99),
        max_queue,
        rss_mb: nvr_actors::status::rss_mb(),
        peak_rss_mb: peak_rss_mb(),
    })
}
