//! `DetectorActor`: one detection worker. It loads the model and warms it up
//! (measuring the batch sizes it may use) before it first asks the shared
//! durable consumer `detectors` (the JetStream queue group) for frames. It
//! then pulls frames, skips those that waited too long, decodes the rest on
//! a few threads, runs the model on up to `max_batch` of them in one session
//! call on a blocking thread, publishes `Detections` and acknowledges each
//! frame only after JetStream stored its detections. A worker that dies
//! leaves its unacknowledged frames to be redelivered to the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use nvr_subjects::{decode, streams, subjects, Detections, Frame, FrameEncoding, SCHEMA_VERSION};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{debug, info, warn};

use crate::bus::{self, now_ns};
use crate::detect::batch::{choose_batch, BatchTiming};
use crate::detect::embed::box_colour;
use crate::detect::white_balance::{Gain, WhiteMeter, NEUTRAL};
use crate::detect::{DetectError, Detector, DetectorOptions, RgbImage};
use crate::guard::{self, Limits, Refusal};
use crate::status::{BatchTimingStatus, WorkerLayout, WorkerStats};

/// Batch sizes an accelerator's warm-up measures when `max_batch` is automatic.
const CALIBRATION_BATCHES: [usize; 5] = [1, 2, 4, 8, 16];

/// What a detector worker needs to start.
pub struct DetectorArgs {
    /// Worker id, unique across nodes (`<node>-w<n>`).
    pub worker: String,
    /// Model and backend.
    pub options: DetectorOptions,
    /// Frames older than this when pulled are skipped.
    pub max_frame_age_ms: u64,
    /// Frames per pull request (at least the batch size).
    pub batch_size: usize,
    /// Frames per session call; 0 = measured at warm-up (1 on the CPU,
    /// where a batch is no faster than its frames one by one).
    pub max_batch: usize,
    /// How long to wait for more frames when a pull returned fewer than
    /// the batch size, ms (0 = run what the pull returned).
    pub batch_window_ms: u64,
    /// Threads that decode a batch's images in parallel.
    pub decode_threads: usize,
    /// Minimum score by default.
    pub min_confidence: f32,
    /// Per-camera minimum score.
    pub camera_min_confidence: BTreeMap<String, f32>,
    /// Per-camera gain of the colour descriptor's pixels, from the white
    /// point configured for the camera (see `detect::white_balance`); a
    /// camera without one is described as it is.
    pub camera_gain: BTreeMap<String, Gain>,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Counters shared with the status endpoints.
    pub stats: Arc<WorkerStats>,
    /// Backend information filled in once the model is loaded.
    pub loaded: Arc<std::sync::Mutex<Option<LoadedModel>>>,
    /// Bounds every frame is checked against before it is decoded.
    pub limits: Limits,
}

/// What the worker reports about its model once loaded.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// Effective backend.
    pub backend: String,
    /// Why the backend differs from the requested one.
    pub fallback_reason: Option<String>,
    /// Model name.
    pub model: String,
    /// What person embeddings are made of (see `Detector::appearance`).
    pub appearance: String,
}

/// Messages of the detector actor.
#[derive(Debug)]
pub enum DetectorMsg {
    /// Pull and process the next batch.
    Pull,
}

/// A loaded, warmed-up model and what its warm-up measured.
struct Warm {
    /// The model.
    detector: Detector,
    /// Timing per batch size tried.
    timings: Vec<BatchTiming>,
}

/// State built in `pre_start`.
pub struct DetectorState {
    /// The model; moved into the blocking thread during inference, and
    /// absent until the warm-up finished.
    detector: Option<Detector>,
    /// The shared consumer, joined once warmed up.
    consumer: Option<consumer::Consumer<consumer::pull::Config>>,
    /// When the worker started loading its model.
    started: Instant,
    /// Static parts of the args.
    args: DetectorArgs,
    /// Frames per session call chosen at warm-up.
    batch: usize,
    /// When "frame skipped" was last logged (rate limit).
    last_skip_log: Option<Instant>,
    /// Skips since the last log line.
    skips_unlogged: u64,
}

/// The detector worker actor.
#[derive(Clone, Copy)]
pub struct DetectorActor;

impl Actor for DetectorActor {
    type Msg = DetectorMsg;
    type State = DetectorState;
    type Arguments = DetectorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: DetectorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Loading and warming up block only this worker (the supervisor
        // starts a node's workers together); the worker joins the queue
        // group once warm.
        let opts = args.options.clone();
        let want = args.max_batch;
        let started = Instant::now();
        let warm = tokio::task::spawn_blocking(move || warm_up(opts, want)).await??;
        let mut state = DetectorState {
            detector: None,
            consumer: None,
            started,
            args,
            batch: 1,
            last_skip_log: None,
            skips_unlogged: 0,
        };
        on_warm(&mut state, warm).await?;
        myself.cast(DetectorMsg::Pull)?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DetectorMsg::Pull => {
                let _ = state.args.stats.first_pull_ns.compare_exchange(
                    0,
                    now_ns(),
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                );
                let want = state.args.batch_size.max(state.batch);
                let mut pulled = Vec::with_capacity(want);
                pull(state, want, Duration::from_millis(500), &mut pulled).await;
                let window = state.args.batch_window_ms;
                if !pulled.is_empty() && pulled.len() < state.batch && window > 0 {
                    let more = state.batch - pulled.len();
                    pull(
                        state,
                        more,
                        Duration::from_millis(window.max(1)),
                        &mut pulled,
                    )
                    .await;
                }
                state.args.stats.hold(pulled.len());
                let mut ready = Vec::with_capacity(pulled.len());
                for m in pulled {
                    if let Some(w) = admit(state, m).await {
                        ready.push(w);
                    }
                }
                while !ready.is_empty() {
                    let rest = ready.split_off(ready.len().min(state.batch));
                    let batch = std::mem::replace(&mut ready, rest);
                    run_batch(state, batch).await?;
                }
                myself.cast(DetectorMsg::Pull)?;
            }
        }
        Ok(())
    }
}

/// Loads the model and runs it at every batch size the worker may use
/// (blocking).
fn warm_up(opts: DetectorOptions, want: usize) -> Result<Warm, DetectError> {
    let mut detector = Detector::load(opts)?;
    let accel = detector.backend() != "cpu";
    let sizes: Vec<usize> = match want {
        0 if accel => CALIBRATION_BATCHES.to_vec(),
        0 | 1 => vec![1],
        n => vec![1, n],
    };
    let rounds = if accel { 3 } else { 1 };
    let timings = detector.warm_up(&sizes, rounds)?;
    Ok(Warm { detector, timings })
}

/// Takes the warmed-up model: chooses the batch, publishes the layout and
/// only then joins the `detectors` consumer.
async fn on_warm(state: &mut DetectorState, warm: Warm) -> Result<(), ActorProcessingErr> {
    let Warm { detector, timings } = warm;
    let args = &state.args;
    let batch = match args.max_batch {
        0 => choose_batch(&timings),
        n if detector.batchable() => n,
        _ => 1,
    };
    let at = |b: usize| timings.iter().find(|t| t.batch == b).map(BatchTiming::fps);
    let layout = WorkerLayout {
        batch,
        batchable: detector.batchable(),
        batch_note: detector.batch_note().map(str::to_string),
        threads: args.options.threads,
        warmup_ms: (state.started.elapsed().as_secs_f64() * 1e4).round() / 10.0,
        warmed_ns: now_ns(),
        timings: timings
            .iter()
            .map(|t| BatchTimingStatus {
                batch: t.batch,
                call_ms: (t.call_ms * 100.0).round() / 100.0,
                fps: (t.fps() * 10.0).round() / 10.0,
            })
            .collect(),
        capacity_fps: (at(batch).or(at(1)).unwrap_or(0.0) * 10.0).round() / 10.0,
    };
    info!(
        worker = %args.worker,
        backend = detector.backend(),
        model = detector.model_name(),
        input = detector.input_size(),
        appearance = %detector.appearance(),
        batch,
        capacity_fps = layout.capacity_fps,
        warmup_ms = layout.warmup_ms as u64,
        "detector worker ready"
    );
    if let Ok(mut l) = args.loaded.lock() {
        *l = Some(LoadedModel {
            backend: detector.backend().to_string(),
            fallback_reason: detector.fallback_reason().map(str::to_string),
            model: detector.model_name().to_string(),
            appearance: detector.appearance(),
        });
    }
    let stream = args.js.get_stream(streams::FRAMES).await?;
    let consumer: consumer::Consumer<consumer::pull::Config> =
        stream.get_consumer(streams::DETECTORS_CONSUMER).await?;
    if let Ok(mut l) = args.stats.layout.lock() {
        *l = Some(layout);
    }
    state.consumer = Some(consumer);
    state.detector = Some(detector);
    state.batch = batch;
    Ok(())
}

/// Appends up to `max` frame messages from one pull request to `out`.
async fn pull(
    state: &mut DetectorState,
    max: usize,
    expires: Duration,
    out: &mut Vec<jetstream::Message>,
) {
    let Some(consumer) = &state.consumer else {
        return;
    };
    let batch = consumer
        .fetch()
        .max_messages(max)
        .expires(expires)
        .messages()
        .await;
    match batch {
        Ok(mut messages) => {
            while let Some(m) = messages.next().await {
                match m {
                    Ok(m) => out.push(m),
                    Err(e) => {
                        debug!("pull: {e}");
                        break;
                    }
                }
            }
        }
        Err(e) => {
            warn!(worker = %state.args.worker, "pull failed: {e}; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A pulled message and its queue time (ms), kept while its frame runs.
type Pulled = (jetstream::Message, f64);

/// A frame admitted for inference.
struct Work {
    /// Its message, acknowledged once its detections are stored.
    msg: jetstream::Message,
    /// The decoded frame message.
    frame: Frame,
    /// Minimum score for its camera.
    min_conf: f32,
    /// White balance of its camera's colour descriptors.
    gain: Gain,
    /// Capture to pull, ms.
    age_ms: f64,
}

/// Boundary checks and age: the frame to run, or `None` when it was
/// refused or skipped (and acknowledged accordingly).
async fn admit(state: &mut DetectorState, m: jetstream::Message) -> Option<Work> {
    let pulled_ns = now_ns();
    let stats = state.args.stats.clone();
    let frame: Frame = match decode(&m.payload) {
        Ok(f) => f,
        Err(e) => {
            let camera = subjects::camera_of(&m.subject).map(str::to_string);
            warn!(subject = %m.subject, "malformed frame message: {e}");
            stats
                .malformed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stats.record_error(
                camera.as_deref(),
                &format!("malformed frame on {}: {e}", m.subject),
            );
            let _ = m.ack_with(AckKind::Term).await;
            stats.settle();
            return None;
        }
    };
    if let Err(why) = check_frame(&m.subject, &frame, pulled_ns, &state.args.limits) {
        let camera = subjects::camera_of(&m.subject).map(str::to_string);
        let line = format!(
            "frame refused ({why}) on {}: camera {:?}, seq {}, ts_ns {}, {}x{}",
            m.subject, frame.camera, frame.seq, frame.ts_ns, frame.width, frame.height
        );
        warn!(worker = %state.args.worker, "{line}");
        stats.record_refused(camera.as_deref(), why, &line);
        let _ = m.ack_with(AckKind::Term).await;
        stats.settle();
        return None;
    }
    let age_ms = pulled_ns.saturating_sub(frame.ts_ns) as f64 / 1e6;
    if age_ms > state.args.max_frame_age_ms as f64 {
        stats.record_skipped(&frame.camera);
        state.skips_unlogged += 1;
        let now = Instant::now();
        if state
            .last_skip_log
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(5))
        {
            warn!(
                worker = %state.args.worker,
                camera = %frame.camera,
                age_ms = age_ms as u64,
                skipped_since_last_log = state.skips_unlogged,
                "frame skipped: older than max_frame_age_ms ({} ms)",
                state.args.max_frame_age_ms
            );
            state.last_skip_log = Some(now);
            state.skips_unlogged = 0;
        }
        let _ = m.ack().await;
        stats.settle();
        return None;
    }
    let min_conf = state
        .args
        .camera_min_confidence
        .get(&frame.camera)
        .copied()
        .unwrap_or(state.args.min_confidence);
    let gain = state
        .args
        .camera_gain
        .get(&frame.camera)
        .copied()
        .unwrap_or(NEUTRAL);
    Some(Work {
        msg: m,
        frame,
        min_conf,
        gain,
        age_ms,
    })
}

/// Decodes, runs and publishes one batch of admitted frames.
async fn run_batch(state: &mut DetectorState, batch: Vec<Work>) -> Result<(), ActorProcessingErr> {
    let Some(mut detector) = state.detector.take() else {
        return Err("detector model missing".into());
    };
    let started = Instant::now();
    let max_pixels = state.args.limits.max_image_pixels;
    let threads = state.args.decode_threads.max(1);
    let (metas, frames): (Vec<Pulled>, Vec<Job>) = batch
        .into_iter()
        .map(|w| ((w.msg, w.age_ms), (w.frame, w.min_conf, w.gain)))
        .unzip();
    let (detector, frames, results) = tokio::task::spawn_blocking(move || {
        let r = infer_batch(&mut detector, &frames, max_pixels, threads);
        (detector, frames, r)
    })
    .await?;
    state.detector = Some(detector);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    for (((msg, age_ms), (frame, _, _)), (result, white)) in
        metas.into_iter().zip(frames).zip(results)
    {
        publish(state, msg, frame, age_ms, result, white, latency_ms).await;
    }
    Ok(())
}

/// Publishes one frame's detections and acknowledges it once they are
/// stored (then its person colours, `white`, count towards its camera's
/// measured white point); a frame that failed is counted and terminated.
async fn publish(
    state: &mut DetectorState,
    m: jetstream::Message,
    frame: Frame,
    age_ms: f64,
    result: Result<Vec<nvr_subjects::DetectedObject>, DetectError>,
    white: WhiteMeter,
    latency_ms: f64,
) {
    let stats = state.args.stats.clone();
    let camera = frame.camera.clone();
    let objects = match result {
        Ok(v) => v,
        Err(e) => {
            warn!(worker = %state.args.worker, camera = %camera, "frame failed: {e}");
            let line = format!("camera {camera}: {e}");
            match e {
                DetectError::TooLarge(_) => {
                    stats.record_refused(Some(&camera), Refusal::ImageTooLarge, &line)
                }
                _ => stats.record_error(Some(&camera), &line),
            }
            let _ = m.ack_with(AckKind::Term).await;
            stats.settle();
            return;
        }
    };
    let det = Detections {
        v: SCHEMA_VERSION,
        camera: frame.camera.clone(),
        seq: frame.seq,
        ts_ns: frame.ts_ns,
        width: frame.width,
        height: frame.height,
        model: state
            .detector
            .as_ref()
            .map(|d| d.model_name().to_string())
            .unwrap_or_default(),
        backend: state
            .detector
            .as_ref()
            .map(|d| d.backend().to_string())
            .unwrap_or_default(),
        worker: state.args.worker.clone(),
        latency_ms: latency_ms as f32,
        queue_ms: age_ms as f32,
        objects,
    };
    let id = nvr_subjects::msg_id(&det.camera, det.seq);
    match bus::publish_js(
        &state.args.js,
        subjects::detections(&det.camera),
        &det,
        Some(&id),
    )
    .await
    {
        Ok(_) => {
            // Acknowledge only after the detections are stored.
            if let Err(e) = m.double_ack().await {
                debug!("ack of {} failed: {e}", id);
            }
            stats.settle();
            let e2e_ms = now_ns().saturating_sub(frame.ts_ns) as f64 / 1e6;
            stats.record_processed(&det.camera, latency_ms, age_ms, e2e_ms);
            stats.record_white(&det.camera, &white);
        }
        Err(e) => {
            warn!(worker = %state.args.worker, "{e}; frame left for redelivery");
            stats.record_delivery_error(&e.to_string());
            let _ = m
                .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
                .await;
            stats.settle();
        }
    }
}

/// The boundary checks of a frame: its camera field agrees with the subject,
/// its time is not ahead of this node's clock (one that is too old is
/// skipped by age), and the size it declares is bounded.
fn check_frame(subject: &str, frame: &Frame, now_ns: u64, limits: &Limits) -> Result<(), Refusal> {
    guard::check_camera(subject, &frame.camera)?;
    if frame.ts_ns > now_ns.saturating_add(limits.max_ahead_ns) {
        return Err(Refusal::TimestampAhead);
    }
    guard::check_pixels(frame.width, frame.height, limits)?;
    guard::check_pixels(frame.data_width, frame.data_height, limits)
}

/// A frame to run, its camera's minimum score and colour gain.
type Job = (Frame, f32, Gain);

/// What one frame gave: its objects, and the colours of the persons among
/// them (before any gain), which measure its camera's white point.
type Outcome = (
    Result<Vec<nvr_subjects::DetectedObject>, DetectError>,
    WhiteMeter,
);

/// Decodes the frames' images on up to `threads` threads and runs the model
/// on those that decoded, in one session call when the model batches
/// (blocking). One outcome per frame, in order.
fn infer_batch(
    detector: &mut Detector,
    frames: &[Job],
    max_pixels: u64,
    threads: usize,
) -> Vec<Outcome> {
    let mut images: Vec<Option<Result<RgbImage, DetectError>>> =
        (0..frames.len()).map(|_| None).collect();
    let per = frames.len().div_ceil(threads.clamp(1, frames.len().max(1)));
    if frames.len() <= 1 || per >= frames.len() {
        for (slot, (f, _, _)) in images.iter_mut().zip(frames) {
            *slot = Some(decode_image(f, max_pixels));
        }
    } else {
        std::thread::scope(|scope| {
            for (slots, chunk) in images.chunks_mut(per).zip(frames.chunks(per)) {
                scope.spawn(move || {
                    for (slot, (f, _, _)) in slots.iter_mut().zip(chunk) {
                        *slot = Some(decode_image(f, max_pixels));
                    }
                });
            }
        });
    }
    let mut results: Vec<Result<Vec<nvr_subjects::DetectedObject>, DetectError>> =
        Vec::with_capacity(frames.len());
    let mut ok_idx = Vec::new();
    let mut ok_imgs = Vec::new();
    let mut ok_conf = Vec::new();
    let mut ok_gain = Vec::new();
    for (i, img) in images.into_iter().enumerate() {
        match img.unwrap_or_else(|| Err(DetectError::Image("not decoded".into()))) {
            Ok(img) => {
                ok_idx.push(i);
                ok_imgs.push(img);
                ok_conf.push(frames[i].1);
                ok_gain.push(frames[i].2);
                results.push(Ok(Vec::new()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    let refs: Vec<&RgbImage> = ok_imgs.iter().collect();
    match detector.detect_batch_balanced(&refs, &ok_conf, &ok_gain) {
        Ok(per_frame) => {
            for (i, objs) in ok_idx.iter().zip(per_frame) {
                results[*i] = Ok(objs);
            }
        }
        // One frame must not fail the others of its batch: each runs alone,
        // and only the one at fault gets the error.
        Err(_) => {
            for (((i, img), conf), gain) in ok_idx.iter().zip(&ok_imgs).zip(&ok_conf).zip(&ok_gain)
            {
                results[*i] = detector.detect_balanced(img, *conf, gain);
            }
        }
    }
    let mut out: Vec<Outcome> = results
        .into_iter()
        .map(|r| (r, WhiteMeter::default()))
        .collect();
    for (i, img) in ok_idx.into_iter().zip(&ok_imgs) {
        let (Ok(objects), white) = &mut out[i] else {
            continue;
        };
        for o in objects.iter().filter(|o| o.embedding.is_some()) {
            if let Some(c) = box_colour(img, o.bbox) {
                white.add(c);
            }
        }
    }
    out
}

/// The frame's image: JPEG decoded (bounded by `max_pixels`) or raw RGB
/// checked against its declared size.
fn decode_image(frame: &Frame, max_pixels: u64) -> Result<RgbImage, DetectError> {
    match frame.encoding {
        FrameEncoding::Jpeg => crate::detect::image::decode_jpeg_limited(&frame.data, max_pixels),
        FrameEncoding::Rgb24 => {
            let w = if frame.data_width > 0 {
                frame.data_width
            } else {
                frame.width
            };
            let h = if frame.data_height > 0 {
                frame.data_height
            } else {
                frame.height
            };
            let want = w as usize * h as usize * 3;
            if frame.data.len() != want || w == 0 || h == 0 {
                return Err(DetectError::Image(format!(
                    "rgb24 frame has {} bytes, expected {w}x{h}x3 = {want}",
                    frame.data.len()
                )));
            }
            Ok(RgbImage {
                width: w,
                height: h,
                data: frame.data.clone(),
            })
        }
    }
}
