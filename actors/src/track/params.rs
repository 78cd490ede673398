//! Tuning of the per-camera tracker: every threshold, gate and noise
//! level of [`super::Tracker`], with the defaults chosen for 5 fps NVR
//! footage and a string setter for command lines and evaluation scripts.

use super::kalman::KalmanParams;

/// Tuning of [`super::Tracker`]. `Default` is chosen for 5 fps NVR footage.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerParams {
    /// Detections scoring at least this take part in the first association stage.
    pub high_threshold: f32,
    /// Detections scoring at least this (and below `high_threshold`) take part in the second stage.
    pub low_threshold: f32,
    /// Minimum score of an unmatched detection to start a track that
    /// confirms after `min_hits` matches.
    pub new_track_threshold: f32,
    /// Minimum score of an unmatched detection to start a track at all: below
    /// `new_track_threshold` it confirms only after `low_birth_hits` matches,
    /// so a person the detector keeps scoring low (far, small, partly
    /// occluded) is still tracked while a one-frame false detection is not.
    pub birth_threshold: f32,
    /// Matches a track born from a detection below `new_track_threshold`
    /// needs before it is confirmed.
    pub low_birth_hits: u32,
    /// Consecutive misses a tentative track survives (a detector gap right
    /// after a person appears does not restart its confirmation).
    pub tentative_max_misses: u32,
    /// Minimum IoU (predicted box vs detection) for a first-stage match.
    pub match_iou: f32,
    /// Minimum IoU for a second-stage (low-score detection) match.
    pub low_match_iou: f32,
    /// Minimum IoU for a tentative track to take a detection.
    pub tentative_match_iou: f32,
    /// Minimum IoU between a track's last observation and a detection in the
    /// observation-centric recovery stage.
    pub recovery_iou: f32,
    /// Matched detections needed to turn a tentative track into a confirmed one.
    pub min_hits: u32,
    /// A track lost for longer than this (message time) is removed.
    pub max_lost_ms: u64,
    /// OC-SORT `delta_t`: how many updates back the motion direction is measured over.
    pub delta_t: u32,
    /// OC-SORT inertia: weight of the direction-consistency term in the first-stage cost.
    pub direction_weight: f32,
    /// Multiply IoU by the detection score in the first-stage cost (ByteTrack `fuse_score`).
    pub fuse_score: bool,
    /// Weight of the appearance (cosine) distance when track and detection both carry embeddings.
    pub appearance_weight: f32,
    /// Least cosine similarity between a track's appearance and a
    /// detection for any match when both carry embeddings: below it the
    /// detection is someone else, however well the boxes overlap. A track
    /// that lost its person (behind an occluder, at the image border) and
    /// picks up another where its own vanished changes appearance at once;
    /// that swap carries one identity from one person to another, which on
    /// the floor costs more than the new track the gate starts instead.
    /// Not higher on purpose: one person's appearance also drops from one
    /// frame to the next when an occluder (a sign, a post) enters the box;
    /// on the real footage, against the smoothed appearance
    /// (`appearance_momentum`), 0.5% of a walker's matches fall below about
    /// 0.7, and a gate of 0.65 already splits some tracks there. 0 or below
    /// turns the gate off.
    pub appearance_gate: f32,
    /// A track that missed its latest update(s) may have lost its person
    /// (hidden, or gone); a detection that overlaps its predicted box less
    /// than this (IoU) may be someone else who appeared near where that
    /// person was predicted. Such a match needs `weak_overlap_gate`.
    pub weak_overlap_iou: f32,
    /// Least cosine similarity for a track that missed its latest
    /// update(s) to take a detection overlapping its prediction less than
    /// `weak_overlap_iou`. A track matched in every update keeps its
    /// person down to `appearance_gate` (an occluder entering the box drops
    /// the colour descriptor for a frame or two, and the box with it); one
    /// that lost its person and finds someone only half where it was
    /// predicted must also find them alike. 0 or below: `appearance_gate`
    /// for every match.
    pub weak_overlap_gate: f32,
    /// Smoothing factor of the track embedding: `e = a * e + (1 - a) * d`, then
    /// L2-normalised. The default 0 keeps the latest detection's: the spatial
    /// tracker keeps its own long-term appearance per identity and needs to
    /// see a camera-tracker swap at once, which a slow average hides for
    /// several frames (on the simulator, 0.9 instead of 0 costs 18 points of
    /// global IDF1 on the hard preset).
    pub embedding_momentum: f32,
    /// Smoothing factor of the appearance a track is matched on (its
    /// gates, its cost and its re-identification), apart from the one it
    /// publishes: `m = a * m + (1 - a) * d`, then L2-normalised. A
    /// detection whose box takes in part of a passing neighbour mixes the
    /// neighbour's colours into the descriptor; matched on that one
    /// frame's descriptor, the track then lets the neighbour in. 0 matches
    /// on the latest detection's, as published.
    pub appearance_momentum: f32,
    /// Least cosine similarity for a confirmed track that missed at least
    /// one update to take back a detection on appearance alone, when its
    /// box no longer overlaps (a person reappearing after an occlusion
    /// away from where they vanished). Above 1 turns this stage off.
    pub reid_similarity: f32,
    /// How far (box heights per second since the track's last
    /// observation, plus half a height) such a detection may be from the
    /// track's last observed box.
    pub reid_speed: f32,
    /// Two confirmed tracks whose boxes overlap at least this (IoU) are
    /// watched as a crossing: when their boxes have parted, they exchange
    /// ids if each now sits where the other's motion before they met
    /// leads (a person passing in front of another, whose track took the
    /// front person's box). Above 1 turns the check off.
    pub crossing_iou: f32,
    /// How much better, in box heights summed over both tracks, the
    /// exchanged pairing must fit the two motions than the kept one.
    pub crossing_margin: f32,
    /// How far below the kept pairing's appearance similarity (summed over
    /// both tracks, before against after) the exchanged one may be.
    pub crossing_appearance_tolerance: f32,
    /// A crossing whose boxes have not parted within this long (message
    /// time) is given up: motion says little over longer.
    pub crossing_max_ms: u64,
    /// Nominal frame interval (ms) that the motion noise is expressed per.
    pub nominal_frame_ms: u64,
    /// Confirm tracks born in the very first update at once (ByteTrack's
    /// cold start: objects already in view when tracking starts).
    pub confirm_first_update: bool,
    /// Own-person matches (a track and the one detection that clearly
    /// overlaps it, nothing else near) a tracker samples before its
    /// appearance gates follow what they score. The gates are set for
    /// embeddings on which one person's frames score a median cosine of
    /// `appearance_reference_median` (the colour descriptor scores about
    /// 0.98); other embeddings (a re-ID model, a client's own vectors) can
    /// score them far lower, and then each gate is scaled down by the
    /// ratio of the two medians (never up). 0 = fixed gates.
    pub appearance_adapt_samples: u64,
    /// The median own-person cosine the appearance gates are set for.
    pub appearance_reference_median: f32,
    /// Kalman position noise per nominal frame, fraction of box height.
    pub kf_pos_noise: f32,
    /// Kalman velocity noise per nominal frame, fraction of box height.
    pub kf_vel_noise: f32,
    /// Kalman measurement noise, fraction of box height.
    pub kf_meas_noise: f32,
}

impl Default for TrackerParams {
    fn default() -> Self {
        TrackerParams {
            high_threshold: 0.6,
            low_threshold: 0.1,
            new_track_threshold: 0.7,
            birth_threshold: 0.45,
            low_birth_hits: 3,
            tentative_max_misses: 1,
            match_iou: 0.2,
            low_match_iou: 0.3,
            tentative_match_iou: 0.2,
            recovery_iou: 0.5,
            min_hits: 2,
            max_lost_ms: 3000,
            delta_t: 3,
            direction_weight: 0.2,
            fuse_score: true,
            appearance_weight: 0.3,
            appearance_gate: 0.6,
            weak_overlap_iou: 0.7,
            weak_overlap_gate: 0.75,
            embedding_momentum: 0.0,
            appearance_momentum: 0.6,
            reid_similarity: 0.8,
            reid_speed: 1.0,
            crossing_iou: 0.3,
            crossing_margin: 1.0,
            crossing_appearance_tolerance: 0.1,
            crossing_max_ms: 3000,
            nominal_frame_ms: 200,
            confirm_first_update: true,
            appearance_adapt_samples: 30,
            appearance_reference_median: 0.95,
            kf_pos_noise: 1.0 / 20.0,
            kf_vel_noise: 0.03,
            kf_meas_noise: 1.0 / 20.0,
        }
    }
}

impl TrackerParams {
    /// Sets one parameter by its field name from a string (for command lines
    /// and evaluation scripts). Errors name the key and the bad value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn f(key: &str, v: &str) -> Result<f32, String> {
            v.parse::<f32>()
                .map_err(|e| format!("tracker param {key}: bad number {v:?}: {e}"))
        }
        fn u(key: &str, v: &str) -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|e| format!("tracker param {key}: bad integer {v:?}: {e}"))
        }
        match key {
            "high_threshold" => self.high_threshold = f(key, value)?,
            "low_threshold" => self.low_threshold = f(key, value)?,
            "new_track_threshold" => self.new_track_threshold = f(key, value)?,
            "birth_threshold" => self.birth_threshold = f(key, value)?,
            "low_birth_hits" => self.low_birth_hits = u(key, value)? as u32,
            "tentative_max_misses" => self.tentative_max_misses = u(key, value)? as u32,
            "match_iou" => self.match_iou = f(key, value)?,
            "low_match_iou" => self.low_match_iou = f(key, value)?,
            "tentative_match_iou" => self.tentative_match_iou = f(key, value)?,
            "recovery_iou" => self.recovery_iou = f(key, value)?,
            "min_hits" => self.min_hits = u(key, value)? as u32,
            "max_lost_ms" => self.max_lost_ms = u(key, value)?,
            "delta_t" => self.delta_t = u(key, value)? as u32,
            "appearance_adapt_samples" => self.appearance_adapt_samples = u(key, value)?,
            "appearance_reference_median" => self.appearance_reference_median = f(key, value)?,
            "direction_weight" => self.direction_weight = f(key, value)?,
            "fuse_score" => {
                self.fuse_score = value
                    .parse::<bool>()
                    .map_err(|e| format!("tracker param {key}: bad bool {value:?}: {e}"))?
            }
            "confirm_first_update" => {
                self.confirm_first_update = value
                    .parse::<bool>()
                    .map_err(|e| format!("tracker param {key}: bad bool {value:?}: {e}"))?
            }
            "appearance_weight" => self.appearance_weight = f(key, value)?,
            "appearance_gate" => self.appearance_gate = f(key, value)?,
            "weak_overlap_iou" => self.weak_overlap_iou = f(key, value)?,
            "weak_overlap_gate" => self.weak_overlap_gate = f(key, value)?,
            "embedding_momentum" => self.embedding_momentum = f(key, value)?,
            "appearance_momentum" => self.appearance_momentum = f(key, value)?,
            "reid_similarity" => self.reid_similarity = f(key, value)?,
            "reid_speed" => self.reid_speed = f(key, value)?,
            "crossing_iou" => self.crossing_iou = f(key, value)?,
            "crossing_margin" => self.crossing_margin = f(key, value)?,
            "crossing_appearance_tolerance" => self.crossing_appearance_tolerance = f(key, value)?,
            "crossing_max_ms" => self.crossing_max_ms = u(key, value)?,
            "nominal_frame_ms" => self.nominal_frame_ms = u(key, value)?.max(1),
            "kf_pos_noise" => self.kf_pos_noise = f(key, value)?,
            "kf_vel_noise" => self.kf_vel_noise = f(key, value)?,
            "kf_meas_noise" => self.kf_meas_noise = f(key, value)?,
            _ => return Err(format!("unknown tracker param {key:?}")),
        }
        Ok(())
    }

    /// The Kalman filter's noise levels from these parameters.
    pub(super) fn kalman(&self) -> KalmanParams {
        KalmanParams {
            pos_noise: self.kf_pos_noise as f64,
            vel_noise: self.kf_vel_noise as f64,
            meas_noise: self.kf_meas_noise as f64,
            nominal_dt: self.nominal_frame_ms.max(1) as f64 / 1000.0,
        }
    }
}
