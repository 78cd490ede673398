//! The tracker itself: track lifecycle, two-stage association, OC-SORT corrections.

use nvr_subjects::{DetectedObject, Track};

/// Tuning of [`Tracker`]. `Default` is chosen for 5 fps NVR footage.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerParams {
    /// Detections scoring at least this take part in the first association stage.
    pub high_threshold: f32,
    /// Detections scoring at least this (and below `high_threshold`) take part in the second stage.
    pub low_threshold: f32,
    /// Minimum score of an unmatched detection to start a new track.
    pub new_track_threshold: f32,
    /// Minimum IoU for a first-stage match.
    pub match_iou: f32,
    /// Matched detections needed to turn a tentative track into a confirmed one.
    pub min_hits: u32,
    /// A track lost for longer than this (message time) is removed.
    pub max_lost_ms: u64,
}

impl Default for TrackerParams {
    fn default() -> Self {
        TrackerParams {
            high_threshold: 0.6,
            low_threshold: 0.1,
            new_track_threshold: 0.7,
            match_iou: 0.2,
            min_hits: 2,
            max_lost_ms: 3000,
        }
    }
}

/// The result of one [`Tracker::update`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrackerOutput {
    /// All current tracks (tentative, confirmed and lost), sorted by `track_id`.
    pub tracks: Vec<Track>,
    /// Ids of tracks confirmed in this update.
    pub started: Vec<u64>,
    /// Ids of previously confirmed tracks removed in this update.
    pub ended: Vec<u64>,
}

/// A per-camera tracker; deterministic function of its input sequence.
#[derive(Debug, Clone)]
pub struct Tracker {
    params: TrackerParams,
}

impl Tracker {
    /// A tracker with no tracks.
    pub fn new(params: TrackerParams) -> Self {
        Tracker { params }
    }

    /// One update with the detections of one frame at message time `ts_ns`.
    pub fn update(&mut self, ts_ns: u64, dets: &[DetectedObject]) -> TrackerOutput {
        let _ = (ts_ns, dets, &self.params);
        todo!()
    }

    /// Number of tracks currently held (tentative, confirmed and lost).
    pub fn active_count(&self) -> usize {
        todo!()
    }
}
