//! The measuring rig of `nvr bench detect`: synthetic cameras publishing
//! real footage at their rate, the subscription that timestamps every
//! result, and one step of the sweep measured over its window.

use super::*;

/// One frame of the footage as a camera would publish it.
pub(super) struct Source {
    /// Original width.
    pub(super) width: u32,
    /// Original height.
    pub(super) height: u32,
    /// The JPEG published without the camera side (resized, encoded once).
    pub(super) small: Vec<u8>,
    /// The full-resolution image the camera side starts from, as a JPEG.
    pub(super) full: Vec<u8>,
}

pub(super) async fn load_frames(
    path: &std::path::Path,
    max_side: u32,
    quality: u8,
) -> Result<Vec<Source>> {
    if !path.is_file() {
        bail!("footage {} not found; run scripts/setup", path.display());
    }
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<Vec<Source>> {
        let frames = nvr_actors::detect::frames::read_frames(&path, 0, 8, 60)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if frames.is_empty() {
            bail!("no frames decoded from {}", path.display());
        }
        frames
            .iter()
            .map(|f| {
                let small = resize_to_fit(f, max_side);
                let jpeg = |img, q| encode_jpeg(img, q).map_err(|e| anyhow!("jpeg: {e}"));
                Ok(Source {
                    width: f.width,
                    height: f.height,
                    small: jpeg(&small, quality)?,
                    full: jpeg(f, 95)?,
                })
            })
            .collect()
    })
    .await
    .map_err(|e| anyhow!("{e}"))?
}

/// What a camera does to a frame before publishing it: decode, resize to
/// the model input, JPEG-encode (blocking).
pub(super) fn camera_side(src: &Source, max_side: u32, quality: u8) -> Option<Vec<u8>> {
    let img = decode_jpeg(&src.full).ok()?;
    encode_jpeg(&resize_to_fit(&img, max_side), quality).ok()
}

pub(super) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Counters shared by the publishers and the result listener of one step.
#[derive(Default)]
pub(super) struct Counters {
    /// Frames the cameras tried to publish.
    offered: AtomicU64,
    /// Frames refused at publish.
    dropped: AtomicU64,
    /// Detections received.
    received: AtomicU64,
}

/// What a step drives: the bus, the footage and, when the workers run in
/// this process, their node.
pub(super) struct Rig<'a> {
    /// The configuration (detection settings, JPEG quality).
    pub(super) cfg: &'a Config,
    /// The command's arguments (cameras, fps, window, bounds).
    pub(super) args: &'a DetectBenchArgs,
    /// Connection the synthetic cameras publish on.
    pub(super) client: async_nats::Client,
    /// JetStream context of that connection.
    pub(super) js: async_nats::jetstream::Context,
    /// The in-process detection node, or `None` against remote nodes.
    pub(super) node: Option<&'a DetectionNode>,
    /// The footage every camera publishes.
    pub(super) frames: Arc<Vec<Source>>,
}

pub(super) async fn full_path(
    cfg: &Config,
    args: &DetectBenchArgs,
    url: &str,
    frames: Arc<Vec<Source>>,
) -> Result<(Vec<Step>, Option<Step>)> {
    let client = crate::nats::connect(cfg, url, "nvr bench detect").await?;
    let js = async_nats::jetstream::new(client.clone());
    crate::nats::ensure_streams(&js, &crate::nats::retention(cfg)).await?;
    let (node, specs) = DetectionNode::new(cfg, js.clone());
    // Workers warm up in `pre_start`: once the supervisor runs, they are ready.
    let (sup, handle) = crate::supervisor::start_supervisor(specs).await?;
    let rig = Rig {
        cfg,
        args,
        client,
        js,
        node: Some(&node),
        frames,
    };
    let result = sweep(&rig).await;
    crate::supervisor::shutdown_supervisor(&sup, handle).await;
    result
}

/// The camera-count sweep, stopping at the first step that is not steady,
/// then the overload step.
pub(super) async fn sweep(rig: &Rig<'_>) -> Result<(Vec<Step>, Option<Step>)> {
    let mut steps = Vec::new();
    let mut step_no = 0u64;
    for &n in &rig.args.cameras {
        step_no += 1;
        let s = one_step(rig, n, step_no, rig.args.camera_side).await?;
        print_step(&s);
        let stop = !s.steady;
        steps.push(s);
        if stop {
            break;
        }
    }
    let overload = if rig.args.overload_cameras > 0 {
        step_no += 1;
        let s = one_step(rig, rig.args.overload_cameras, step_no, false).await?;
        print_step(&s);
        Some(s)
    } else {
        None
    };
    Ok((steps, overload))
}

/// Processed, skipped and failed frames of the workers in this process.
pub(super) fn worker_totals(node: Option<&DetectionNode>) -> (u64, u64, u64) {
    node.map_or((0, 0, 0), |node| {
        node.workers.iter().fold((0, 0, 0), |acc, w| {
            (
                acc.0 + w.processed.load(Ordering::Relaxed),
                acc.1 + w.skipped.load(Ordering::Relaxed),
                acc.2 + w.errors.load(Ordering::Relaxed),
            )
        })
    })
}

/// GPU utilisation (percent, first GPU) from `nvidia-smi`, where it exists.
pub(super) fn gpu_util() -> Option<f64> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=utilization.gpu",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Starts `cameras` synthetic cameras publishing until `cancel`.
pub(super) fn start_cameras(
    rig: &Rig<'_>,
    cameras: usize,
    side: bool,
    prefix: &str,
    counters: &Arc<Counters>,
    cancel: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let period = Duration::from_secs_f64(1.0 / rig.args.fps.max(0.1));
    let (max_side, quality) = (rig.args.input_size, rig.cfg.detection.jpeg_quality);
    (0..cameras)
        .map(|i| {
            let (js, frames, counters, cancel) = (
                rig.js.clone(),
                rig.frames.clone(),
                counters.clone(),
                cancel.clone(),
            );
            let camera = format!("{prefix}{i:03}");
            let offset = period.mul_f64(i as f64 / cameras as f64);
            tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut seq = 0u64;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = cancel.cancelled() => break,
                    }
                    let k = (seq as usize + i * 7) % frames.len();
                    seq += 1;
                    let ts_ns = now_ns();
                    counters.offered.fetch_add(1, Ordering::Relaxed);
                    let data = if side {
                        let frames = frames.clone();
                        let encoded = tokio::task::spawn_blocking(move || {
                            camera_side(&frames[k], max_side, quality)
                        })
                        .await;
                        match encoded {
                            Ok(Some(d)) => d,
                            _ => {
                                counters.dropped.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        }
                    } else {
                        frames[k].small.clone()
                    };
                    let f = Frame {
                        v: SCHEMA_VERSION,
                        camera: camera.clone(),
                        seq,
                        ts_ns,
                        width: frames[k].width,
                        height: frames[k].height,
                        encoding: FrameEncoding::Jpeg,
                        data,
                        data_width: 0,
                        data_height: 0,
                    };
                    let id = nvr_subjects::msg_id(&camera, seq);
                    if bus::publish_js(&js, subjects::frames(&camera), &f, Some(&id))
                        .await
                        .is_err()
                    {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect()
}

/// Counts the detections of this step's cameras and their end-to-end latency.
pub(super) async fn listen(
    client: &async_nats::Client,
    prefix: &str,
    counters: &Arc<Counters>,
    e2e: &Arc<std::sync::Mutex<Histogram<u64>>>,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut sub = client
        .subscribe(subjects::detections("*"))
        .await
        .map_err(|e| anyhow!("subscribe: {e}"))?;
    let (counters, e2e, prefix) = (counters.clone(), e2e.clone(), prefix.to_string());
    let task = tokio::spawn(async move {
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
    });
    client.flush().await.map_err(|e| anyhow!("flush: {e}"))?;
    Ok(task)
}

/// Queue size and GPU utilisation sampled every half second over a window.
pub(super) struct Samples {
    /// Queue size (pending + in flight on `detectors`) per sample.
    queue: Vec<u64>,
    /// GPU utilisation per sample, where `nvidia-smi` answered.
    gpu: Vec<f64>,
}

impl Samples {
    /// Mean queue over the samples in `[from, to)` fifths of the window.
    fn queue_mean(&self, from: usize, to: usize) -> f64 {
        let n = self.queue.len();
        let (a, b) = (n * from / 5, (n * to / 5).max(n * from / 5 + 1).min(n));
        let part = &self.queue[a.min(b)..b];
        part.iter().sum::<u64>() as f64 / part.len().max(1) as f64
    }
}

pub(super) async fn sample_window(
    consumer: &mut async_nats::jetstream::consumer::PullConsumer,
    window: Duration,
) -> Samples {
    let started = Instant::now();
    let mut s = Samples {
        queue: Vec::new(),
        gpu: Vec::new(),
    };
    let mut progress = crate::progress::Progress::new("step", window.as_secs().max(1), "s");
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        progress.set(started.elapsed().as_secs());
        if let Ok(info) = consumer.info().await {
            s.queue.push(info.num_pending + info.num_ack_pending as u64);
        }
        if let Ok(Some(g)) = tokio::task::spawn_blocking(gpu_util).await {
            s.gpu.push(g);
        }
    }
    progress.finish();
    s
}

/// Waits until the frame queue is empty and every frame published in the
/// step is accounted for (processed, skipped or failed on the node, whose
/// counters stood at `before` when the step began; received, without a
/// node), or until frames that old would have expired.
async fn drain(
    rig: &Rig<'_>,
    consumer: &mut async_nats::jetstream::consumer::PullConsumer,
    counters: &Counters,
    before: (u64, u64, u64),
) {
    let (p0, s0, e0) = before;
    let deadline =
        Instant::now() + Duration::from_millis(rig.cfg.detection.max_frame_age_ms + 10_000);
    loop {
        let queue = consumer
            .info()
            .await
            .map(|i| i.num_pending + i.num_ack_pending as u64)
            .unwrap_or(0);
        let (p, s, e) = worker_totals(rig.node);
        let accepted =
            counters.offered.load(Ordering::Relaxed) - counters.dropped.load(Ordering::Relaxed);
        let accounted = if rig.node.is_some() {
            (p - p0) + (s - s0) + (e - e0)
        } else {
            counters.received.load(Ordering::Relaxed)
        };
        if (queue == 0 && accounted >= accepted) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One load step: `cameras` cameras publish frames for the step's
/// duration, then the queue drains; what the detector made of them.
pub(super) async fn one_step(
    rig: &Rig<'_>,
    cameras: usize,
    step_no: u64,
    side: bool,
) -> Result<Step> {
    let counters = Arc::new(Counters::default());
    let e2e = Arc::new(std::sync::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).map_err(|e| anyhow!("{e}"))?,
    ));
    let prefix = format!("s{step_no}c{}-", std::process::id());
    let listener = listen(&rig.client, &prefix, &counters, &e2e).await?;
    let (p0, s0, e0) = worker_totals(rig.node);
    let cancel = CancellationToken::new();
    let pubs = start_cameras(rig, cameras, side, &prefix, &counters, &cancel);
    // Publish for the step's window, sampling the queue.
    let started = Instant::now();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = rig
        .js
        .get_stream(nvr_subjects::streams::FRAMES)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .get_consumer(nvr_subjects::streams::DETECTORS_CONSUMER)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let samples = sample_window(&mut consumer, Duration::from_secs_f64(rig.args.duration_s)).await;
    cancel.cancel();
    for p in pubs {
        let _ = p.await;
    }
    let received_at_end = counters.received.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    drain(rig, &mut consumer, &counters, (p0, s0, e0)).await;
    // Let the last detections reach the listener.
    let _ = rig.client.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    listener.abort();
    let (p, s, e) = worker_totals(rig.node);
    let processed = if rig.node.is_some() {
        p - p0
    } else {
        counters.received.load(Ordering::Relaxed)
    };
    let (skipped, errors) = (s - s0, e - e0);
    let offered = counters.offered.load(Ordering::Relaxed);
    let dropped = counters.dropped.load(Ordering::Relaxed);
    let published = offered - dropped;
    let expired = published.saturating_sub(processed + skipped + errors);
    let not_served = offered.saturating_sub(processed);
    let h = e2e.lock().map_err(|_| anyhow!("histogram lock"))?;
    let pct = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let skipped_pct = if offered > 0 {
        100.0 * not_served as f64 / offered as f64
    } else {
        0.0
    };
    let (queue_start, queue_end) = (samples.queue_mean(0, 1), samples.queue_mean(4, 5));
    let steady = skipped_pct < 1.0
        && queue_end <= queue_start + cameras as f64
        && pct(0.99) <= rig.args.p99_bound_ms;
    Ok(Step {
        cameras,
        camera_side: side,
        offered,
        published,
        dropped_at_publish: dropped,
        processed,
        skipped,
        errors,
        expired,
        skipped_pct,
        fps: received_at_end.min(processed) as f64 / elapsed,
        e2e_p50_ms: pct(0.5),
        e2e_p99_ms: pct(0.99),
        max_queue: samples.queue.iter().copied().max().unwrap_or(0),
        queue_start,
        queue_end,
        steady,
        gpu_util_pct: (!samples.gpu.is_empty())
            .then(|| samples.gpu.iter().sum::<f64>() / samples.gpu.len() as f64),
        rss_mb: nvr_actors::status::rss_mb(),
        peak_rss_mb: peak_rss_mb(),
    })
}
