//! How often each camera sends a frame, and the time windows that follow
//! from it.
//!
//! Several rules of the tracker ask whether two views are "at the same
//! time" or whether an identity has missed "a frame": two cameras seeing
//! one person now, an identity coasting through a missed detection, an
//! occluder seen now. At the service's defaults every camera sends a frame
//! per matching cycle, so one cycle is that window. A camera slowed down to
//! save CPU (`detection.fps: 2` is the documented remedy for a growing
//! detection queue) sends one every two or three cycles: its views of a
//! person then come a frame apart from another camera's, and one missed
//! detection leaves a gap of two of its frames. The window for such a
//! camera is its own frame interval, measured from its messages' times.

use serde::{Deserialize, Serialize};

/// Message-time intervals remembered per camera.
const KEEP: usize = 15;
/// A camera whose median interval is within this factor of the matching
/// cycle runs at the cycle's rate: the cycle stays the window, so clock
/// jitter at the default rates changes nothing.
const SAME_RATE: f64 = 1.1;
/// Longest frame interval (ns) taken as a window: a camera slower than
/// this (a stalled feed, a snapshot camera) does not stretch the windows
/// beyond what still tells a missed frame from a person gone.
pub(super) const MAX_WINDOW_NS: u64 = 2_000_000_000;

/// The intervals between a camera's recent messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct FrameClock {
    /// The last [`KEEP`] intervals (ns), oldest first.
    intervals: Vec<u64>,
    /// Their median once three are known, kept up to date by
    /// [`FrameClock::record`]: the window is read for every identity on
    /// every cycle.
    #[serde(default)]
    median: Option<u64>,
}

impl FrameClock {
    /// Takes the interval between two consecutive messages. Zero (two
    /// messages of one frame time) says nothing about the rate.
    pub(super) fn record(&mut self, interval_ns: u64) {
        if interval_ns == 0 {
            return;
        }
        if self.intervals.len() == KEEP {
            self.intervals.remove(0);
        }
        self.intervals.push(interval_ns);
        self.median = (self.intervals.len() >= 3).then(|| {
            let mut v = self.intervals.clone();
            v.sort_unstable();
            v[v.len() / 2]
        });
    }

    /// The median interval, once three are known: a skipped frame or a
    /// restart does not move it.
    pub(super) fn median_ns(&self) -> Option<u64> {
        self.median
    }

    /// The window for this camera with matching cycles of `cycle_ns`: the
    /// cycle, or the camera's frame interval where it is clearly longer
    /// (at most [`MAX_WINDOW_NS`]).
    pub(super) fn window_ns(&self, cycle_ns: u64) -> u64 {
        match self.median_ns() {
            Some(m) if m as f64 > SAME_RATE * cycle_ns as f64 => m.min(MAX_WINDOW_NS).max(cycle_ns),
            _ => cycle_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CYCLE: u64 = 200_000_000;

    #[test]
    fn a_camera_at_the_cycle_rate_keeps_the_cycle_whatever_its_jitter() {
        let mut c = FrameClock::default();
        assert_eq!(c.window_ns(CYCLE), CYCLE, "nothing known yet");
        for i in 0..40u64 {
            c.record(CYCLE - 15_000_000 + (i * 7_919_000) % 30_000_000);
        }
        assert_eq!(c.window_ns(CYCLE), CYCLE);
    }

    #[test]
    fn a_slow_camera_gets_its_frame_interval_and_skips_do_not_move_it() {
        let mut c = FrameClock::default();
        for i in 0..30u64 {
            // 2 fps, every fifth frame skipped by a busy detector.
            c.record(if i % 5 == 4 {
                1_000_000_000
            } else {
                500_000_000
            });
        }
        assert_eq!(c.window_ns(CYCLE), 500_000_000);
        // Two messages of one frame time say nothing.
        c.record(0);
        assert_eq!(c.median_ns(), Some(500_000_000));
    }

    #[test]
    fn a_stalled_feed_stretches_the_window_only_so_far() {
        let mut c = FrameClock::default();
        for _ in 0..10 {
            c.record(60_000_000_000);
        }
        assert_eq!(c.window_ns(CYCLE), MAX_WINDOW_NS);
        // A camera faster than the cycle still has the cycle as its window.
        let mut fast = FrameClock::default();
        for _ in 0..10 {
            fast.record(CYCLE / 3);
        }
        assert_eq!(fast.window_ns(CYCLE), CYCLE);
    }
}
