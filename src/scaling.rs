//! The seed's "When to Scale" tables, evaluated live: each indicator with its
//! threshold, its current value, whether it is over, and the scaling option
//! the seed recommends for it. The health page shows them and
//! `/api/v1/system/health` carries them under `scaling`. Pure: the caller
//! gathers the figures.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The figures the verdicts are made of; `None` where nothing is known yet
/// (no detection node answers, no samples, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Detection nodes that answer.
    pub detection_nodes: usize,
    /// Mean detection latency, ms.
    pub detection_avg_latency_ms: Option<f64>,
    /// Frames skipped as a share of frames handled in the recent window, percent.
    pub frame_drop_pct: Option<f64>,
    /// Machine-wide CPU use over the last minute, percent.
    pub cpu_1m_pct: Option<f64>,
    /// GPU utilisation over the last minute, percent.
    pub gpu_1m_pct: Option<f64>,
    /// Detection load in cameras at 5 fps per detection node.
    pub cameras_at_5fps_per_node: Option<f64>,
    /// Frames waiting for or in detection.
    pub detection_queue: Option<u64>,
    /// Mean spatial cycle time, ms.
    pub spatial_processing_ms: Option<f64>,
    /// Identities on the floor now (observed and coasting).
    pub active_tracks: Option<u64>,
    /// Mean re-identification matching time per cycle, ms.
    pub reid_matching_ms: Option<f64>,
    /// Memory growth of this process, MiB per hour.
    pub memory_growth_mb_per_h: Option<f64>,
    /// Failed share of cross-camera handoffs, percent.
    pub handoff_failure_pct: Option<f64>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Indicator {
    /// `detection` or `spatial`.
    pub service: &'static str,
    /// The seed's name of the indicator.
    pub indicator: &'static str,
    /// The seed's threshold, as written there.
    pub threshold: &'static str,
    /// The threshold as a number in `unit`.
    pub limit: f64,
    /// The current value (null: not known yet).
    pub value: Option<f64>,
    /// Unit of `value` and `limit`.
    pub unit: &'static str,
    /// Whether the value is over the threshold.
    pub over: bool,
    /// The scaling option the seed recommends for this indicator.
    pub advice: &'static str,
}

/// The verdict of every indicator, detection first, in the seed's order.
pub fn evaluate(f: &Figures) -> Vec<Indicator> {
    let row =
        |service, indicator, threshold, limit: f64, value: Option<f64>, unit, advice| Indicator {
            service,
            indicator,
            threshold,
            limit,
            value: value.map(|v| (v * 100.0).round() / 100.0),
            unit,
            over: value.is_some_and(|v| v > limit),
            advice,
        };
    vec![
        row(
            "detection",
            "Detection latency",
            "> 200ms average",
            200.0,
            f.detection_avg_latency_ms,
            "ms",
            "Enable GPU/NPU inference (detection.backend: cuda), a smaller input \
             (detection.input_size: 320), or run `nvr detector` on another machine",
        ),
        row(
            "detection",
            "Frame drop rate",
            "> 10%",
            10.0,
            f.frame_drop_pct,
            "%",
            "Reduce cameras' detection fps, add GPU acceleration, or add a detection \
             node (`nvr detector` on another machine shares the queue)",
        ),
        row(
            "detection",
            "CPU usage",
            "> 80% sustained",
            80.0,
            f.cpu_1m_pct,
            "%",
            "Offload detection: `nvr detector` on another machine and \
             detection.embedded: false here",
        ),
        row(
            "detection",
            "GPU/NPU usage",
            "> 90% sustained",
            90.0,
            f.gpu_1m_pct,
            "%",
            "Add a detection node with its own GPU; nodes share the `detectors` work queue",
        ),
        row(
            "detection",
            "Camera count",
            "> 8 cameras at 5 FPS",
            8.0,
            f.cameras_at_5fps_per_node,
            "cameras per node",
            "Add detection nodes (load balanced through the shared work queue)",
        ),
        row(
            "detection",
            "Detection queue",
            "> 50 frames backlog",
            50.0,
            f.detection_queue.map(|q| q as f64),
            "frames",
            "Reduce detection fps per camera, add GPU acceleration, or add a detection node",
        ),
        row(
            "spatial",
            "Track processing latency",
            "> 100ms",
            100.0,
            f.spatial_processing_ms,
            "ms",
            "Shard spatial tracking by floor (`nvr spatial` nodes with SPATIAL_SHARD \
             and SPATIAL_CAMERAS)",
        ),
        row(
            "spatial",
            "Active tracks",
            "> 500 concurrent",
            500.0,
            f.active_tracks.map(|n| n as f64),
            "tracks",
            "Run spatial tracking on its own node (`nvr spatial`) or shard it by floor",
        ),
        row(
            "spatial",
            "Re-ID matching time",
            "> 50ms",
            50.0,
            f.reid_matching_ms,
            "ms",
            "Set spatial.reid_enabled: false if re-identification is not needed, \
             or shard by floor",
        ),
        row(
            "spatial",
            "Memory usage growth",
            "> 100MB/hour",
            100.0,
            f.memory_growth_mb_per_h,
            "MB/hour",
            "Lower spatial.track_ttl_seconds and spatial.max_tracks, or move spatial \
             tracking to its own node",
        ),
        row(
            "spatial",
            "Cross-camera handoff failures",
            "> 5%",
            5.0,
            f.handoff_failure_pct,
            "%",
            "Check camera calibration and overlaps on the floor plan; tune spatial.tuning",
        ),
    ]
}

/// Window over which the frame drop rate is measured.
const DROP_WINDOW: Duration = Duration::from_secs(300);

/// Recent (processed, skipped) counter readings, so the frame drop rate is
/// the rate of the last minutes rather than since start.
#[derive(Debug, Default)]
pub struct DropWindow {
    /// Readings, oldest first.
    readings: Mutex<VecDeque<(Instant, u64, u64)>>,
}

impl DropWindow {
    /// Records a reading and returns the drop rate since the oldest reading
    /// within the window (or since start when there is none), percent.
    pub fn rate(&self, processed: u64, skipped: u64) -> Option<f64> {
        let now = Instant::now();
        let Ok(mut r) = self.readings.lock() else {
            return None;
        };
        while r
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > DROP_WINDOW)
        {
            r.pop_front();
        }
        // A node that left takes its counters with it: start over.
        if r.back()
            .is_some_and(|(_, p, s)| *p > processed || *s > skipped)
        {
            r.clear();
        }
        r.push_back((now, processed, skipped));
        let (_, p0, s0) = if r.len() > 1 && now.duration_since(r[0].0) >= Duration::from_secs(10) {
            r[0]
        } else {
            (now, 0, 0)
        };
        drop_pct(processed - p0, skipped - s0)
    }
}

/// Skipped as a share of processed plus skipped, percent.
fn drop_pct(processed: u64, skipped: u64) -> Option<f64> {
    let handled = processed + skipped;
    (handled > 0).then(|| skipped as f64 * 100.0 / handled as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_known_nothing_over() {
        let rows = evaluate(&Figures::default());
        assert_eq!(rows.len(), 11);
        assert!(rows.iter().all(|r| !r.over && r.value.is_none()));
        assert_eq!(rows.iter().filter(|r| r.service == "spatial").count(), 5);
    }

    #[test]
    fn thresholds_are_strictly_greater() {
        let f = Figures {
            detection_avg_latency_ms: Some(200.0),
            detection_queue: Some(51),
            active_tracks: Some(501),
            handoff_failure_pct: Some(4.99),
            ..Default::default()
        };
        let rows = evaluate(&f);
        let over: Vec<&str> = rows
            .iter()
            .filter(|r| r.over)
            .map(|r| r.indicator)
            .collect();
        assert_eq!(over, ["Detection queue", "Active tracks"]);
    }

    #[test]
    fn drop_rate_since_start_then_windowed() {
        let w = DropWindow::default();
        assert_eq!(w.rate(0, 0), None);
        assert_eq!(w.rate(90, 10), Some(10.0));
        // A counter going down (a node left) restarts the window.
        assert_eq!(w.rate(45, 5), Some(10.0));
    }
}
