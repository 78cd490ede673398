//! `DetectorActor`: one detection worker. It pulls batches of frames from the
//! shared durable consumer `detectors` (the JetStream queue group), skips
//! frames that waited too long, runs the model on a blocking thread,
//! publishes `Detections` and acknowledges each frame only after JetStream
//! stored its detections. A worker that dies leaves its unacknowledged
//! frames to be redelivered to the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use nvr_subjects::{decode, streams, subjects, Detections, Frame, FrameEncoding, SCHEMA_VERSION};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{debug, info, warn};

use crate::bus::{self, now_ns};
use crate::detect::{DetectError, Detector, DetectorOptions, RgbImage};
use crate::guard::{self, Limits, Refusal};
use crate::status::WorkerStats;

/// What a detector worker needs to start.
pub struct DetectorArgs {
    /// Worker id, unique across nodes (`<node>-w<n>`).
    pub worker: String,
    /// Model and backend.
    pub options: DetectorOptions,
    /// Frames older than this when pulled are skipped.
    pub max_frame_age_ms: u64,
    /// Frames per pull request.
    pub batch_size: usize,
    /// Minimum score by default.
    pub min_confidence: f32,
    /// Per-camera minimum score.
    pub camera_min_confidence: BTreeMap<String, f32>,
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
}

/// Messages of the detector actor.
#[derive(Debug)]
pub enum DetectorMsg {
    /// Pull and process the next batch.
    Pull,
}

/// State built in `pre_start`.
pub struct DetectorState {
    /// The model; moved into the blocking thread during inference.
    detector: Option<Detector>,
    /// The shared consumer.
    consumer: consumer::Consumer<consumer::pull::Config>,
    /// Static parts of the args.
    args: DetectorArgs,
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
        let opts = args.options.clone();
        let detector = tokio::task::spawn_blocking(move || Detector::load(opts)).await??;
        info!(
            worker = %args.worker,
            backend = detector.backend(),
            model = detector.model_name(),
            input = detector.input_size(),
            "detector worker ready"
        );
        if let Ok(mut l) = args.loaded.lock() {
            *l = Some(LoadedModel {
                backend: detector.backend().to_string(),
                fallback_reason: detector.fallback_reason().map(str::to_string),
                model: detector.model_name().to_string(),
            });
        }
        let stream = args.js.get_stream(streams::FRAMES).await?;
        let consumer: consumer::Consumer<consumer::pull::Config> =
            stream.get_consumer(streams::DETECTORS_CONSUMER).await?;
        myself.cast(DetectorMsg::Pull)?;
        Ok(DetectorState {
            detector: Some(detector),
            consumer,
            args,
            last_skip_log: None,
            skips_unlogged: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DetectorMsg::Pull => {
                let batch = state
                    .consumer
                    .fetch()
                    .max_messages(state.args.batch_size)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await;
                match batch {
                    Ok(mut messages) => {
                        while let Some(m) = messages.next().await {
                            match m {
                                Ok(m) => process(state, m).await?,
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
                myself.cast(DetectorMsg::Pull)?;
            }
        }
        Ok(())
    }
}

/// Processes one pulled frame message.
async fn process(
    state: &mut DetectorState,
    m: jetstream::Message,
) -> Result<(), ActorProcessingErr> {
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
            return Ok(());
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
        return Ok(());
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
        return Ok(());
    }
    let min_conf = state
        .args
        .camera_min_confidence
        .get(&frame.camera)
        .copied()
        .unwrap_or(state.args.min_confidence);
    let Some(mut detector) = state.detector.take() else {
        return Err("detector model missing".into());
    };
    let started = Instant::now();
    let camera = frame.camera.clone();
    let max_pixels = state.args.limits.max_image_pixels;
    let (detector, result) = tokio::task::spawn_blocking(move || {
        let r = infer(&mut detector, &frame, min_conf, max_pixels).map(|objs| (frame, objs));
        (detector, r)
    })
    .await?;
    state.detector = Some(detector);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (frame, objects) = match result {
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
            return Ok(());
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
            let e2e_ms = now_ns().saturating_sub(frame.ts_ns) as f64 / 1e6;
            stats.record_processed(&det.camera, latency_ms, age_ms, e2e_ms);
        }
        Err(e) => {
            warn!(worker = %state.args.worker, "{e}; frame left for redelivery");
            stats.record_delivery_error(&e.to_string());
            let _ = m
                .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
                .await;
        }
    }
    Ok(())
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

/// Decodes the frame's image and runs the model (blocking).
fn infer(
    detector: &mut Detector,
    frame: &Frame,
    min_conf: f32,
    max_pixels: u64,
) -> Result<Vec<nvr_subjects::DetectedObject>, DetectError> {
    let img = match frame.encoding {
        FrameEncoding::Jpeg => crate::detect::image::decode_jpeg_limited(&frame.data, max_pixels)?,
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
            RgbImage {
                width: w,
                height: h,
                data: frame.data.clone(),
            }
        }
    };
    detector.detect(&img, min_conf)
}
