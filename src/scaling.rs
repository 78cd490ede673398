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

/// One indicator of the seed's table: what it reads and when it is over.
struct Rule {
    /// `detection` or `spatial`.
    service: &'static str,
    /// The indicator's name in the seed.
    indicator: &'static str,
    /// The threshold as the seed words it.
    threshold: &'static str,
    /// The threshold as a number, in `unit`.
    limit: f64,
    /// Reads the indicator's value from the figures (`None`: not measured).
    value: fn(&Figures) -> Option<f64>,
    /// Unit of the value and the limit.
    unit: &'static str,
    /// The scaling option the seed recommends.
    advice: &'static str,
}

/// The seed's indicators, detection first, in its order.
const RULES: &[Rule] = &[
    Rule {
        service: "detection",
        indicator: "Detection latency",
        threshold: "> 200ms average",
        limit: 200.0,
        value: |f| f.detection_avg_latency_ms,
        unit: "ms",
        advice: "Enable GPU/NPU inference (detection.backend: cuda), a smaller input \
             (detection.input_size: 320), or run `nvr detector` on another machine",
    },
    Rule {
        service: "detection",
        indicator: "Frame drop rate",
        threshold: "> 10%",
        limit: 10.0,
        value: |f| f.frame_drop_pct,
        unit: "%",
        advice: "Reduce cameras' detection fps, add GPU acceleration, or add a detection \
             node (`nvr detector` on another machine shares the queue)",
    },
    Rule {
        service: "detection",
        indicator: "CPU usage",
        threshold: "> 80% sustained",
        limit: 80.0,
        value: |f| f.cpu_1m_pct,
        unit: "%",
        advice: "Offload detection: `nvr detector` on another machine and \
             detection.embedded: false here",
    },
    Rule {
        service: "detection",
        indicator: "GPU/NPU usage",
        threshold: "> 90% sustained",
        limit: 90.0,
        value: |f| f.gpu_1m_pct,
        unit: "%",
        advice: "Add a detection node with its own GPU; nodes share the `detectors` work queue",
    },
    Rule {
        service: "detection",
        indicator: "Camera count",
        threshold: "> 8 cameras at 5 FPS",
        limit: 8.0,
        value: |f| f.cameras_at_5fps_per_node,
        unit: "cameras per node",
        advice: "Add detection nodes (load balanced through the shared work queue)",
    },
    Rule {
        service: "detection",
        indicator: "Detection queue",
        threshold: "> 50 frames backlog",
        limit: 50.0,
        value: |f| f.detection_queue.map(|q| q as f64),
        unit: "frames",
        advice: "Reduce detection fps per camera, add GPU acceleration, or add a detection node",
    },
    Rule {
        service: "spatial",
        indicator: "Track processing latency",
        threshold: "> 100ms",
        limit: 100.0,
        value: |f| f.spatial_processing_ms,
        unit: "ms",
        advice: "Shard spatial tracking by floor (`nvr spatial` nodes with SPATIAL_SHARD \
             and SPATIAL_CAMERAS)",
    },
    Rule {
        service: "spatial",
        indicator: "Active tracks",
        threshold: "> 500 concurrent",
        limit: 500.0,
        value: |f| f.active_tracks.map(|n| n as f64),
        unit: "tracks",
        advice: "Run spatial tracking on its own node (`nvr spatial`) or shard it by floor",
    },
    Rule {
        service: "spatial",
        indicator: "Re-ID matching time",
        threshold: "> 50ms",
        limit: 50.0,
        value: |f| f.reid_matching_ms,
        unit: "ms",
        advice: "Set spatial.reid_enabled: false if re-identification is not needed, \
             or shard by floor",
    },
    Rule {
        service: "spatial",
        indicator: "Memory usage growth",
        threshold: "> 100MB/hour",
        limit: 100.0,
        value: |f| f.memory_growth_mb_per_h,
        unit: "MB/hour",
        advice: "Lower spatial.track_ttl_seconds and spatial.max_tracks, or move spatial \
             tracking to its own node",
    },
    Rule {
        service: "spatial",
        indicator: "Cross-camera handoff failures",
        threshold: "> 5%",
        limit: 5.0,
        value: |f| f.handoff_failure_pct,
        unit: "%",
        advice: "Check camera calibration and overlaps on the floor plan; tune spatial.tuning",
    },
];

/// The verdict of every indicator, detection first, in the seed's order.
pub fn evaluate(f: &Figures) -> Vec<Indicator> {
    RULES
        .iter()
        .map(|r| {
            let value = (r.value)(f);
            Indicator {
                service: r.service,
                indicator: r.indicator,
                threshold: r.threshold,
                limit: r.limit,
                value: value.map(|v| (v * 100.0).round() / 100.0),
                unit: r.unit,
                over: value.is_some_and(|v| v > r.limit),
                advice: r.advice,
            }
        })
        .collect()
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
