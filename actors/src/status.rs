//! Counters and latency histograms kept by the actors, and the JSON status
//! documents a node answers with on the bus (`nvr.status.*`) so that the main
//! API can aggregate every node, local or remote, the same way.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Subject on which every detection node answers a status request (not queued: all answer).
pub const DETECTION_STATUS_SUBJECT: &str = "nvr.status.detection";
/// Subject on which every spatial node answers a status request.
pub const SPATIAL_STATUS_SUBJECT: &str = "nvr.status.spatial";
/// Subject on which every camera/track host answers a status request.
pub const CAMERA_STATUS_SUBJECT: &str = "nvr.status.cameras";

/// A latency histogram in microseconds, 1 us .. 10 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Encodes a histogram as base64 of its V2 serialisation, for aggregation across nodes.
pub fn histogram_to_b64(h: &Histogram<u64>) -> String {
    use base64::Engine;
    let mut buf = Vec::new();
    if V2Serializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes [`histogram_to_b64`]; `None` on malformed input.
pub fn histogram_from_b64(s: &str) -> Option<Histogram<u64>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    Deserializer::new().deserialize(&mut &bytes[..]).ok()
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Mean.
    pub avg_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Samples.
    pub count: u64,
}

impl Latency {
    /// Summary of a microsecond histogram.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            avg_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            count: h.len(),
        }
    }
}

/// Rate over the most recent events (events per second).
#[derive(Debug)]
pub struct RateMeter {
    /// Times of the latest events.
    times: Mutex<VecDeque<Instant>>,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            times: Mutex::new(VecDeque::with_capacity(128)),
        }
    }
}

impl RateMeter {
    /// Records one event now.
    pub fn tick(&self) {
        if let Ok(mut t) = self.times.lock() {
            if t.len() == 128 {
                t.pop_front();
            }
            t.push_back(Instant::now());
        }
    }

    /// Events per second over the last 10 s (0 when idle).
    pub fn rate(&self) -> f64 {
        let Ok(t) = self.times.lock() else { return 0.0 };
        let now = Instant::now();
        let recent: Vec<&Instant> = t
            .iter()
            .filter(|i| now.duration_since(**i).as_secs_f64() < 10.0)
            .collect();
        if recent.len() < 2 {
            return 0.0;
        }
        let span = now.duration_since(*recent[0]).as_secs_f64();
        if span <= 0.0 {
            0.0
        } else {
            (recent.len() - 1) as f64 / span
        }
    }
}

/// Per-camera counters of a detector worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CameraCounters {
    /// Frames with published detections.
    pub processed: u64,
    /// Frames skipped for being older than `max_frame_age_ms`.
    pub skipped: u64,
    /// Frames that failed (corrupt, model error, publish error).
    pub errors: u64,
    /// Sum of inference latencies (ms), for the mean.
    pub latency_sum_ms: f64,
    /// Mean colour of the camera's described persons, before any gain:
    /// the white point to configure for it (`detect::white_balance`).
    #[serde(default)]
    pub white: crate::detect::white_balance::WhiteMeter,
}

/// Live counters of one detector worker.
#[derive(Debug)]
pub struct WorkerStats {
    /// Worker id, unique across nodes.
    pub worker: String,
    /// Frames with published detections.
    pub processed: AtomicU64,
    /// Frames skipped as too old.
    pub skipped: AtomicU64,
    /// Frames that failed for good (refused, undecodable, model error).
    pub errors: AtomicU64,
    /// Deliveries that failed and were left for redelivery (a frame that
    /// later succeeds, or is given up on by the server, counts once as a
    /// frame elsewhere).
    pub delivery_errors: AtomicU64,
    /// Frames whose message could not be decoded.
    pub malformed: AtomicU64,
    /// Inference latency, microseconds.
    pub latency: Mutex<Histogram<u64>>,
    /// End-to-end latency (capture to detections published), microseconds.
    pub e2e: Mutex<Histogram<u64>>,
    /// Queue time (capture to pull), microseconds.
    pub queue: Mutex<Histogram<u64>>,
    /// Per-camera counters (written by the worker on every frame, read by
    /// status requests: a concurrent map).
    pub cameras: dashmap::DashMap<String, CameraCounters>,
    /// Throughput.
    pub rate: RateMeter,
    /// The latest error, for the status page.
    pub last_error: Mutex<Option<String>>,
    /// Frames refused at the boundary, by reason (see [`crate::guard`]).
    pub refused: Mutex<crate::guard::RefusalCounts>,
    /// When a frame was last refused (ms since the Unix epoch).
    pub refused_ms: AtomicU64,
    /// What the warm-up measured and chose; `None` while warming up.
    pub layout: Mutex<Option<WorkerLayout>>,
    /// When the worker first asked the queue for frames (ns since the Unix
    /// epoch, 0 = not yet): always after its warm-up finished.
    pub first_pull_ns: AtomicU64,
    /// Frames pulled from the queue and not yet acknowledged, terminated or
    /// handed back: what a node that dies now leaves for redelivery.
    pub in_flight: AtomicU64,
}

/// What a detector worker's warm-up measured and the batch it chose.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerLayout {
    /// Frames per session call.
    pub batch: usize,
    /// Whether the model batches (see `detect::batch`).
    pub batchable: bool,
    /// Why it does not, when it does not.
    pub batch_note: Option<String>,
    /// ONNX Runtime threads of the worker's session.
    pub threads: usize,
    /// How long loading and warming up took, ms.
    pub warmup_ms: f64,
    /// When the warm-up finished (ns since the Unix epoch).
    pub warmed_ns: u64,
    /// Measured milliseconds per call, per batch size tried.
    pub timings: Vec<BatchTimingStatus>,
    /// Frames per second of this worker at its batch size (model only,
    /// measured during warm-up while the node's other workers warmed too).
    pub capacity_fps: f64,
}

/// One measured batch size.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BatchTimingStatus {
    /// Frames per call.
    pub batch: usize,
    /// Milliseconds per call.
    pub call_ms: f64,
    /// Frames per second at this size.
    pub fps: f64,
}

impl WorkerStats {
    /// Fresh counters for `worker`.
    pub fn new(worker: &str) -> Self {
        WorkerStats {
            worker: worker.to_string(),
            processed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            delivery_errors: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            latency: Mutex::new(new_histogram()),
            e2e: Mutex::new(new_histogram()),
            queue: Mutex::new(new_histogram()),
            cameras: dashmap::DashMap::new(),
            rate: RateMeter::default(),
            last_error: Mutex::new(None),
            refused: Mutex::new(Default::default()),
            refused_ms: AtomicU64::new(0),
            layout: Mutex::new(None),
            first_pull_ns: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Records a frame refused at the boundary (also counted as an error).
    pub fn record_refused(&self, camera: Option<&str>, why: crate::guard::Refusal, error: &str) {
        if let Ok(mut r) = self.refused.lock() {
            crate::guard::count(&mut r, why, 1);
        }
        self.refused_ms.store(now_ms(), Ordering::Relaxed);
        self.record_error(camera, error);
    }

    fn camera(&self, camera: &str, f: impl FnOnce(&mut CameraCounters)) {
        f(&mut self.cameras.entry(camera.to_string()).or_default());
    }

    /// Records a processed frame.
    pub fn record_processed(&self, camera: &str, latency_ms: f64, queue_ms: f64, e2e_ms: f64) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        self.rate.tick();
        let us = |ms: f64| (ms.max(0.0) * 1000.0).round().clamp(1.0, 600_000_000.0) as u64;
        if let Ok(mut h) = self.latency.lock() {
            let _ = h.record(us(latency_ms));
        }
        if let Ok(mut h) = self.queue.lock() {
            let _ = h.record(us(queue_ms));
        }
        if let Ok(mut h) = self.e2e.lock() {
            let _ = h.record(us(e2e_ms));
        }
        self.camera(camera, |c| {
            c.processed += 1;
            c.latency_sum_ms += latency_ms;
        });
    }

    /// Sets the frames the worker now holds (after a pull).
    pub fn hold(&self, frames: usize) {
        self.in_flight.store(frames as u64, Ordering::Relaxed);
    }

    /// One held frame was acknowledged, terminated or handed back.
    pub fn settle(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// Adds a published frame's person colours to its camera's white point.
    pub fn record_white(&self, camera: &str, white: &crate::detect::white_balance::WhiteMeter) {
        if white.boxes > 0 {
            self.camera(camera, |c| c.white.merge(white));
        }
    }

    /// Records a skipped frame.
    pub fn record_skipped(&self, camera: &str) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        self.camera(camera, |c| c.skipped += 1);
    }

    /// Records a failed delivery left for redelivery.
    pub fn record_delivery_error(&self, error: &str) {
        self.delivery_errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.to_string());
        }
    }

    /// Records a failed frame.
    pub fn record_error(&self, camera: Option<&str>, error: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(camera) = camera {
            self.camera(camera, |c| c.errors += 1);
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error.to_string());
        }
    }

    /// A serialisable snapshot.
    pub fn snapshot(&self) -> WorkerStatus {
        let lat = self
            .latency
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| new_histogram());
        let e2e = self
            .e2e
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| new_histogram());
        let queue = self
            .queue
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| new_histogram());
        WorkerStatus {
            worker: self.worker.clone(),
            processed_count: self.processed.load(Ordering::Relaxed),
            skipped_count: self.skipped.load(Ordering::Relaxed),
            error_count: self.errors.load(Ordering::Relaxed),
            delivery_error_count: self.delivery_errors.load(Ordering::Relaxed),
            malformed_count: self.malformed.load(Ordering::Relaxed),
            fps: self.rate.rate(),
            latency: Latency::of(&lat),
            e2e_latency: Latency::of(&e2e),
            queue_latency: Latency::of(&queue),
            latency_hist: histogram_to_b64(&lat),
            e2e_hist: histogram_to_b64(&e2e),
            cameras: self
                .cameras
                .iter()
                .map(|e| (e.key().clone(), e.value().clone()))
                .collect(),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            refused: self.refused.lock().map(|r| r.clone()).unwrap_or_default(),
            refused_ms: self.refused_ms.load(Ordering::Relaxed),
            layout: self.layout.lock().ok().and_then(|l| l.clone()),
            first_pull_ns: self.first_pull_ns.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// Snapshot of one detector worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerStatus {
    /// Worker id.
    pub worker: String,
    /// Frames with published detections.
    pub processed_count: u64,
    /// Frames skipped as too old.
    pub skipped_count: u64,
    /// Frames that failed for good.
    pub error_count: u64,
    /// Deliveries that failed and were left for redelivery.
    #[serde(default)]
    pub delivery_error_count: u64,
    /// Undecodable frame messages (included in `error_count`).
    pub malformed_count: u64,
    /// Frames per second over the last 10 s.
    pub fps: f64,
    /// Inference latency.
    pub latency: Latency,
    /// Capture-to-published latency.
    pub e2e_latency: Latency,
    /// Capture-to-pull latency.
    pub queue_latency: Latency,
    /// Inference latency histogram (V2, base64), for exact cross-node percentiles.
    pub latency_hist: String,
    /// End-to-end latency histogram (V2, base64).
    pub e2e_hist: String,
    /// Per-camera counters.
    pub cameras: BTreeMap<String, CameraCounters>,
    /// The latest error.
    pub last_error: Option<String>,
    /// Frames refused at the boundary, by reason (included in `error_count`).
    #[serde(default)]
    pub refused: crate::guard::RefusalCounts,
    /// When a frame was last refused (ms since the Unix epoch, 0 = never).
    #[serde(default)]
    pub refused_ms: u64,
    /// Warm-up measurements and the chosen batch; absent while warming up.
    #[serde(default)]
    pub layout: Option<WorkerLayout>,
    /// When the worker first pulled frames (ns since the Unix epoch, 0 = not yet).
    #[serde(default)]
    pub first_pull_ns: u64,
    /// Frames pulled and not yet acknowledged, terminated or handed back.
    #[serde(default)]
    pub in_flight: u64,
}

/// What a detection node answers on [`DETECTION_STATUS_SUBJECT`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DetectionNodeStatus {
    /// Node id (host name and process id).
    pub node: String,
    /// Effective backend.
    pub backend: String,
    /// Backend that was asked for.
    pub requested_backend: String,
    /// Why the effective backend differs, if it does.
    pub fallback_reason: Option<String>,
    /// Model name.
    pub model: String,
    /// What person embeddings are made of: `colour`, `colour+<appearance
    /// model>`, or `none` (re-identification off).
    #[serde(default)]
    pub appearance: String,
    /// Model input size.
    pub input_size: u32,
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// Resident memory of the node process, MiB.
    pub memory_mb: f64,
    /// Workers of the node.
    pub workers: Vec<WorkerStatus>,
    /// The node's layout and measured capacity.
    #[serde(default)]
    pub layout: NodeLayout,
}

/// How a detection node is laid out and what it measured it can do.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeLayout {
    /// Detector workers.
    pub workers: usize,
    /// Workers still warming up (the node takes no frames until they are 0).
    pub warming: usize,
    /// ONNX Runtime threads per worker.
    pub threads: usize,
    /// Frames per session call (the largest any worker chose).
    pub batch: usize,
    /// Whether `batch` was set by hand (`detection.max_batch`) or measured.
    pub batch_source: String,
    /// Frames per second the warmed-up workers sustain together (model
    /// only, from the warm-up measurements).
    pub capacity_fps: f64,
    /// `capacity_fps` in cameras at `detection.default_fps`.
    pub capacity_cameras: f64,
    /// The fps that camera count assumes.
    pub camera_fps: f64,
}

impl NodeLayout {
    /// The layout of workers `stats` (threads and batch source from the config).
    pub fn of(
        stats: &[WorkerStatus],
        threads: usize,
        batch_source: &str,
        camera_fps: f64,
    ) -> NodeLayout {
        let ready: Vec<&WorkerLayout> = stats.iter().filter_map(|w| w.layout.as_ref()).collect();
        let capacity: f64 = ready.iter().map(|l| l.capacity_fps).sum();
        NodeLayout {
            workers: stats.len(),
            warming: stats.len() - ready.len(),
            threads,
            batch: ready.iter().map(|l| l.batch).max().unwrap_or(0),
            batch_source: batch_source.to_string(),
            capacity_fps: (capacity * 10.0).round() / 10.0,
            capacity_cameras: if camera_fps > 0.0 {
                (capacity / camera_fps * 10.0).round() / 10.0
            } else {
                0.0
            },
            camera_fps,
        }
    }
}

/// Resident set size of this process in MiB (Linux `/proc/self/statm`).
pub fn rss_mb() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else {
        return 0.0;
    };
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    pages * page / (1024.0 * 1024.0)
}

/// Peak resident set size of this process in MiB (`VmHWM`).
pub fn peak_rss_mb() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return 0.0;
    };
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Camera pipeline state.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// Starting the source.
    #[default]
    Starting,
    /// Frames are flowing.
    Streaming,
    /// The source failed or ended; waiting to reconnect.
    Reconnecting,
    /// Stopped.
    Stopped,
    /// No URL: detections come from elsewhere on the bus.
    External,
}

/// Status of one camera pipeline.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CameraStatus {
    /// Camera id.
    pub id: String,
    /// Source URL with any password masked.
    pub url: Option<String>,
    /// Pipeline state.
    pub state: CameraState,
    /// Frames read from the source per second.
    pub fps_in: f64,
    /// Frames published per second.
    pub fps_out: f64,
    /// Frames published (stored by JetStream).
    pub frames_published: u64,
    /// Frames refused by JetStream (queue full) or failed to publish.
    pub frames_dropped: u64,
    /// Source failures.
    pub errors: u64,
    /// Reconnect attempts.
    pub reconnects: u64,
    /// Latest error.
    pub last_error: Option<String>,
    /// Original frame size.
    pub width: u32,
    /// Original frame size.
    pub height: u32,
    /// Per-camera tracker status, where a track actor runs for the camera.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingStatus>,
}

/// Status of one camera's track actor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrackingStatus {
    /// Confirmed and tentative tracks now.
    pub active_tracks: usize,
    /// Tracks ever started.
    pub total_tracks: u64,
    /// Detections messages processed.
    pub processed: u64,
    /// Messages that arrived after the reorder window (dropped).
    pub late: u64,
    /// Messages that arrived out of order but within the window.
    pub reordered: u64,
    /// Messages that could not be decoded.
    pub malformed: u64,
    /// Pairs of tracks that exchanged ids after crossing: each had taken
    /// the other person while their boxes overlapped.
    #[serde(default)]
    pub crossing_swaps: u64,
    /// The appearance gates the tracker applies now: the configured ones,
    /// lowered to what this camera's own-person matches score once it has
    /// sampled `tracking.appearance_adapt_samples` of them (embeddings
    /// other than the colour descriptor score one person lower). Absent
    /// until a detection with an embedding has been sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appearance: Option<crate::track::AppearanceGates>,
    /// Latest sequence number processed.
    pub last_seq: u64,
    /// Messages or objects refused at the boundary, by reason.
    #[serde(default)]
    pub refused: crate::guard::RefusalCounts,
    /// Times the sequence ordering was reset by a jump beyond `limits.max_seq_jump`.
    #[serde(default)]
    pub seq_resets: u64,
    /// Latest refusal or error, for the status page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Progress of the actor, to tell a frozen one from an idle one.
    #[serde(default)]
    pub progress: Progress,
}

/// Wall-clock marks (ms since the Unix epoch) of an actor's input and output:
/// input that keeps arriving while output stopped long ago means the actor
/// is frozen, whatever its counters say.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    /// When the latest accepted input arrived.
    pub input_ms: u64,
    /// When the actor last produced output from its input.
    pub output_ms: u64,
    /// When the actor (this incarnation) started.
    pub started_ms: u64,
    /// When the latest message was refused at the boundary.
    pub refused_ms: u64,
}

/// A status document that counts what its actor refused at the boundary.
pub trait RefusalSink {
    /// The refusal counts, the latest error and the progress marks.
    fn refusal_parts(
        &mut self,
    ) -> (
        &mut crate::guard::RefusalCounts,
        &mut Option<String>,
        &mut Progress,
    );

    /// Counts `reasons`, keeps `line` as the latest error and marks the time.
    fn note_refused(&mut self, reasons: &[(crate::guard::Refusal, u64)], line: String) {
        let (counts, last, progress) = self.refusal_parts();
        for (why, n) in reasons {
            crate::guard::count(counts, *why, *n);
        }
        *last = Some(line);
        progress.refused_ms = now_ms();
    }
}

impl RefusalSink for TrackingStatus {
    fn refusal_parts(
        &mut self,
    ) -> (
        &mut crate::guard::RefusalCounts,
        &mut Option<String>,
        &mut Progress,
    ) {
        (&mut self.refused, &mut self.last_error, &mut self.progress)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    crate::bus::now_ns() / 1_000_000
}

impl Progress {
    /// How long input has gone unanswered while still arriving, if the actor
    /// looks frozen (input within `window_ms`, no output for `window_ms`).
    pub fn frozen_for_ms(&self, now_ms: u64, window_ms: u64) -> Option<u64> {
        let recent_input = now_ms.saturating_sub(self.input_ms) < window_ms;
        let since = self.output_ms.max(self.started_ms);
        let stale_output = self.input_ms.saturating_sub(since) > window_ms;
        (recent_input && stale_output).then(|| now_ms.saturating_sub(since))
    }

    /// Whether something was refused within `window_ms`.
    pub fn refused_recently(&self, now_ms: u64, window_ms: u64) -> bool {
        self.refused_ms > 0 && now_ms.saturating_sub(self.refused_ms) < window_ms
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn frozen_only_when_input_flows_without_output() {
        let p = Progress {
            input_ms: 100_000,
            output_ms: 80_000,
            started_ms: 1_000,
            refused_ms: 0,
        };
        assert_eq!(p.frozen_for_ms(101_000, 10_000), Some(21_000));
        assert_eq!(p.frozen_for_ms(200_000, 10_000), None, "idle, not frozen");
        let healthy = Progress {
            input_ms: 100_000,
            output_ms: 99_900,
            started_ms: 1_000,
            refused_ms: 0,
        };
        assert_eq!(healthy.frozen_for_ms(100_100, 10_000), None);
        let just_started = Progress {
            input_ms: 100_000,
            output_ms: 0,
            started_ms: 99_000,
            refused_ms: 0,
        };
        assert_eq!(just_started.frozen_for_ms(100_100, 10_000), None);
        assert!(!healthy.refused_recently(100_100, 60_000));
    }
}
