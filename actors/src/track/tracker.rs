//! The tracker itself: track lifecycle, ByteTrack two-stage association and
//! the OC-SORT corrections.
//!
//! One [`Tracker::update`] per frame:
//! 1. predict every track to the frame's message time (`dt` from `ts_ns`);
//! 2. first stage: confirmed tracks (tracked or lost) against high-score
//!    detections; cost = `1 - IoU`, minus the OC-SORT direction-consistency
//!    bonus (observation-centric momentum), plus appearance distance when
//!    both sides carry embeddings;
//! 3. second stage: still-unmatched tracks that were tracked in the previous
//!    update against low-score detections (IoU only);
//! 4. observation-centric recovery: still-unmatched confirmed tracks against
//!    the remaining high-score detections by IoU with the track's *last
//!    observation* rather than its prediction;
//! 5. tentative tracks against the remaining high-score detections;
//! 6. lifecycle: unmatched tentative tracks die, unmatched confirmed tracks go
//!    lost, lost tracks older than `max_lost_ms` are removed; new tentative
//!    tracks start from the remaining confident detections.
//!
//! When a lost track is matched again, its filter is rewound to the last
//! observation and re-run over virtual observations interpolated between
//! the last and the new one (OC-SORT observation-centric re-update), so the
//! velocity is not polluted by the drift accumulated while it was unseen.

use std::collections::VecDeque;

use nvr_subjects::{DetectedObject, Track, TrackState};

use super::assign::{iou, Assigner};
use super::kalman::{xyxy_to_cxcywh, KalmanBox, KalmanParams};

/// Tuning of [`Tracker`]. `Default` is chosen for 5 fps NVR footage.
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
    /// Low on purpose: one person's appearance also drops from one frame to
    /// the next when an occluder (a sign, a post) enters the box, mostly
    /// not below 0.5 with the colour descriptor. 0 or below turns the gate
    /// off.
    pub appearance_gate: f32,
    /// Smoothing factor of the track embedding: `e = a * e + (1 - a) * d`, then
    /// L2-normalised. The default 0 keeps the latest detection's: the spatial
    /// tracker keeps its own long-term appearance per identity and needs to
    /// see a camera-tracker swap at once, which a slow average hides for
    /// several frames (on the simulator, 0.9 instead of 0 costs 18 points of
    /// global IDF1 on the hard preset).
    pub embedding_momentum: f32,
    /// Least cosine similarity for a confirmed track that missed at least
    /// one update to take back a detection on appearance alone, when its
    /// box no longer overlaps (a person reappearing after an occlusion
    /// away from where they vanished). Above 1 turns this stage off.
    pub reid_similarity: f32,
    /// How far (box heights per second since the track's last
    /// observation, plus half a height) such a detection may be from the
    /// track's last observed box.
    pub reid_speed: f32,
    /// Nominal frame interval (ms) that the motion noise is expressed per.
    pub nominal_frame_ms: u64,
    /// Confirm tracks born in the very first update at once (ByteTrack's
    /// cold start: objects already in view when tracking starts).
    pub confirm_first_update: bool,
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
            appearance_gate: 0.4,
            embedding_momentum: 0.0,
            reid_similarity: 0.8,
            reid_speed: 1.0,
            nominal_frame_ms: 200,
            confirm_first_update: true,
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
            "embedding_momentum" => self.embedding_momentum = f(key, value)?,
            "reid_similarity" => self.reid_similarity = f(key, value)?,
            "reid_speed" => self.reid_speed = f(key, value)?,
            "nominal_frame_ms" => self.nominal_frame_ms = u(key, value)?.max(1),
            "kf_pos_noise" => self.kf_pos_noise = f(key, value)?,
            "kf_vel_noise" => self.kf_vel_noise = f(key, value)?,
            "kf_meas_noise" => self.kf_meas_noise = f(key, value)?,
            _ => return Err(format!("unknown tracker param {key:?}")),
        }
        Ok(())
    }

    fn kalman(&self) -> KalmanParams {
        KalmanParams {
            pos_noise: self.kf_pos_noise as f64,
            vel_noise: self.kf_vel_noise as f64,
            meas_noise: self.kf_meas_noise as f64,
            nominal_dt: self.nominal_frame_ms.max(1) as f64 / 1000.0,
        }
    }
}

impl TrackerOutput {
    /// The tracks as a `CameraTracks` message carries them: boxes
    /// (normalised to the frame) kept inside the frame.
    pub fn published(&self) -> Vec<Track> {
        let mut tracks = self.tracks.clone();
        for t in &mut tracks {
            t.bbox = clip_to_frame(t.bbox);
        }
        tracks
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
    /// Those tracks as they were last seen (box of the last observation,
    /// `age_ms` = first to last observation), for the `track_ended` event.
    pub ended_tracks: Vec<Track>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Obs {
    /// Update index at which the observation was made.
    step: u64,
    /// Detection box.
    bbox: [f32; 4],
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TrackInner {
    id: u64,
    label: String,
    score: f32,
    kf: KalmanBox,
    /// Filter state right after the last observation (for the re-update).
    kf_at_obs: KalmanBox,
    confirmed: bool,
    /// Matches needed to confirm (more for a track born from a low score).
    needed_hits: u32,
    /// Matched in the latest update.
    matched: bool,
    hits: u32,
    /// Consecutive updates without a match.
    misses: u32,
    first_ts: u64,
    /// Message time the filter was last predicted to.
    pred_ts: u64,
    last_obs_ts: u64,
    /// Recent observations (at most `delta_t + 1`).
    obs: VecDeque<Obs>,
    /// Unit direction of motion from observations, OC-SORT style.
    direction: Option<[f64; 2]>,
    embedding: Option<Vec<f32>>,
}

impl TrackInner {
    fn last_obs(&self) -> [f32; 4] {
        self.obs
            .back()
            .map(|o| o.bbox)
            .unwrap_or_else(|| self.kf.xyxy())
    }

    /// OC-SORT `k_previous_obs`: the earliest observation within the last
    /// `delta_t` updates, else the most recent one.
    fn previous_obs(&self, step: u64, delta_t: u32) -> Option<[f32; 4]> {
        let from = step.saturating_sub(delta_t as u64);
        self.obs
            .iter()
            .find(|o| o.step >= from && o.step < step)
            .or_else(|| self.obs.back())
            .map(|o| o.bbox)
    }
}

fn centre(b: [f32; 4]) -> [f64; 2] {
    [
        (b[0] as f64 + b[2] as f64) * 0.5,
        (b[1] as f64 + b[3] as f64) * 0.5,
    ]
}

fn unit_dir(from: [f32; 4], to: [f32; 4]) -> Option<[f64; 2]> {
    let (a, b) = (centre(from), centre(to));
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let n = (dx * dx + dy * dy).sqrt();
    if n <= 1e-12 {
        None
    } else {
        Some([dx / n, dy / n])
    }
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na <= 0.0 || nb <= 0.0 {
        None
    } else {
        Some(dot / (na * nb))
    }
}

fn valid_box(b: [f32; 4]) -> bool {
    b.iter().all(|v| v.is_finite()) && b[2] > b[0] && b[3] > b[1]
}

/// A per-camera tracker; a deterministic function of its input sequence.
/// Its state (everything but the parameters and the scratch buffers)
/// serialises, so a checkpoint of a live tracker restores to one that goes
/// on exactly as the live one did (see [`Tracker::restore`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Tracker {
    /// Tuning; not part of a checkpoint (a restore takes the caller's).
    #[serde(skip)]
    params: TrackerParams,
    /// Sorted by id (ids only grow and new tracks are appended).
    tracks: Vec<TrackInner>,
    next_id: u64,
    step: u64,
    last_ts: Option<u64>,
    /// Scratch buffers reused by every update (no state).
    #[serde(skip)]
    scratch: Scratch,
}

/// Buffers [`Tracker::update`] reuses between calls.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// The gated assignment solver.
    assigner: Assigner,
    /// Allowed pairs of one stage: (pool row, candidate column, cost).
    edges: Vec<(usize, usize, f64)>,
    /// Candidates of one stage sorted by left edge: (x1, column).
    by_x1: Vec<(f32, usize)>,
    /// Label index of each detection of the update.
    det_label: Vec<u32>,
    /// Label index of each track (`u32::MAX`: no detection has its label).
    track_label: Vec<u32>,
}

impl Tracker {
    /// A tracker with no tracks; the first track gets id 1.
    pub fn new(params: TrackerParams) -> Self {
        Tracker {
            params,
            tracks: Vec::new(),
            next_id: 1,
            step: 0,
            last_ts: None,
            scratch: Scratch::default(),
        }
    }

    /// A tracker whose first new track gets `next_id` (to continue a camera's
    /// id sequence after a restart, so ids are never reused).
    pub fn with_next_id(params: TrackerParams, next_id: u64) -> Self {
        Tracker {
            next_id: next_id.max(1),
            ..Tracker::new(params)
        }
    }

    /// The tracker's state as bytes (MessagePack): what
    /// [`Tracker::restore`] takes back.
    pub fn checkpoint(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec(self)
    }

    /// A tracker in the state of a [`Tracker::checkpoint`], with `params`:
    /// it goes on exactly as the tracker the checkpoint was taken of.
    pub fn restore(params: TrackerParams, state: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        let mut t: Tracker = rmp_serde::from_slice(state)?;
        t.params = params;
        Ok(t)
    }

    /// The id the next new track will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The parameters in use.
    pub fn params(&self) -> &TrackerParams {
        &self.params
    }

    /// Number of tracks currently held (tentative, confirmed and lost).
    pub fn active_count(&self) -> usize {
        self.tracks.len()
    }

    /// One update with the detections of one frame at message time `ts_ns`.
    /// Boxes may be in any consistent units. A `ts_ns` older than the previous
    /// update is treated as the same instant (no negative prediction).
    pub fn update(&mut self, ts_ns: u64, dets: &[DetectedObject]) -> TrackerOutput {
        let p = self.params.clone();
        let ts = self.last_ts.map_or(ts_ns, |l| ts_ns.max(l));
        self.last_ts = Some(ts);
        self.step += 1;
        let step = self.step;

        // 1. predict
        for t in &mut self.tracks {
            let dt = ts.saturating_sub(t.pred_ts) as f64 / 1e9;
            t.kf.predict(dt, !t.matched);
            t.pred_ts = ts;
        }
        let was_matched: Vec<bool> = self.tracks.iter().map(|t| t.matched).collect();
        for t in &mut self.tracks {
            t.matched = false;
        }

        // Split detections (ignoring degenerate boxes).
        let mut high = Vec::new();
        let mut low = Vec::new();
        for (i, d) in dets.iter().enumerate() {
            if !valid_box(d.bbox) || !d.score.is_finite() {
                continue;
            }
            if d.score >= p.high_threshold {
                high.push(i);
            } else if d.score >= p.low_threshold {
                low.push(i);
            }
        }
        self.intern_labels(dets);
        let mut det_used = vec![false; dets.len()];
        let mut track_used = vec![false; self.tracks.len()];
        let mut pairs: Vec<(usize, usize)> = Vec::new();

        // 2. first stage: confirmed tracks x high detections
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed)
            .collect();
        let m = self.match_stage(&pool, &high, dets, step, Stage::First);
        self.take(m, &pool, &high, &mut pairs, &mut track_used, &mut det_used);

        // 3. second stage: previously tracked, unmatched tracks x low detections
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed && !track_used[i] && was_matched[i])
            .collect();
        let m = self.match_stage(&pool, &low, dets, step, Stage::Low);
        self.take(m, &pool, &low, &mut pairs, &mut track_used, &mut det_used);

        // 4. observation-centric recovery: last observation x remaining high detections
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed && !track_used[i])
            .collect();
        let rest: Vec<usize> = high.iter().copied().filter(|&d| !det_used[d]).collect();
        let m = self.match_stage(&pool, &rest, dets, step, Stage::Recovery);
        self.take(m, &pool, &rest, &mut pairs, &mut track_used, &mut det_used);

        // 4b. appearance re-identification: tracks that missed an update x
        // remaining detections that could start a track, near and alike.
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed && !track_used[i] && !was_matched[i])
            .collect();
        let rest: Vec<usize> = high
            .iter()
            .chain(low.iter())
            .copied()
            .filter(|&d| !det_used[d] && dets[d].score >= p.birth_threshold)
            .collect();
        let m = self.reid_stage(&pool, &rest, dets, ts);
        self.take(m, &pool, &rest, &mut pairs, &mut track_used, &mut det_used);

        // 5. tentative tracks x remaining detections that could start one
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| !self.tracks[i].confirmed)
            .collect();
        let mut birth: Vec<usize> = high
            .iter()
            .chain(low.iter())
            .copied()
            .filter(|&d| dets[d].score >= p.birth_threshold)
            .collect();
        birth.sort_unstable();
        let rest: Vec<usize> = birth.iter().copied().filter(|&d| !det_used[d]).collect();
        let m = self.match_stage(&pool, &rest, dets, step, Stage::Tentative);
        self.take(m, &pool, &rest, &mut pairs, &mut track_used, &mut det_used);

        // Apply matches.
        let mut started = Vec::new();
        pairs.sort_unstable();
        for &(ti, di) in &pairs {
            let became = self.apply_match(ti, &dets[di], ts, step);
            if became {
                started.push(self.tracks[ti].id);
            }
        }

        // 6. lifecycle
        let mut ended = Vec::new();
        for (i, t) in self.tracks.iter_mut().enumerate() {
            if !track_used[i] {
                t.misses += 1;
            }
        }
        let mut ended_tracks = Vec::new();
        let max_lost_ns = p.max_lost_ms.saturating_mul(1_000_000);
        self.tracks.retain(|t| {
            if t.matched {
                return true;
            }
            if !t.confirmed {
                return t.misses <= p.tentative_max_misses;
            }
            if ts.saturating_sub(t.last_obs_ts) > max_lost_ns {
                ended.push(t.id);
                ended_tracks.push(Track {
                    track_id: t.id,
                    label: t.label.clone(),
                    score: t.score,
                    bbox: clip_to_frame(t.kf_at_obs.xyxy()),
                    state: TrackState::Lost,
                    hits: t.hits,
                    age_ms: t.last_obs_ts.saturating_sub(t.first_ts) / 1_000_000,
                    embedding: None,
                });
                return false;
            }
            true
        });

        // New tracks from the remaining detections that may start one.
        for &di in &birth {
            let d = &dets[di];
            if det_used[di] {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let kf = KalmanBox::new(xyxy_to_cxcywh(d.bbox), p.kalman());
            let confident = d.score >= p.new_track_threshold;
            let needed_hits = if confident {
                p.min_hits
            } else {
                p.min_hits.max(p.low_birth_hits)
            };
            let confirmed = needed_hits <= 1 || (confident && p.confirm_first_update && step == 1);
            if confirmed {
                started.push(id);
            }
            let mut obs = VecDeque::new();
            obs.push_back(Obs { step, bbox: d.bbox });
            let embedding = d.embedding.clone().map(|mut e| {
                normalise(&mut e);
                e
            });
            self.tracks.push(TrackInner {
                id,
                label: d.label.clone(),
                score: d.score,
                kf_at_obs: kf,
                kf,
                confirmed,
                needed_hits,
                matched: true,
                hits: 1,
                misses: 0,
                first_ts: ts,
                pred_ts: ts,
                last_obs_ts: ts,
                obs,
                direction: None,
                embedding,
            });
        }
        started.sort_unstable();
        ended.sort_unstable();
        ended_tracks.sort_unstable_by_key(|t| t.track_id);
        TrackerOutput {
            tracks: self.snapshot(ts),
            started,
            ended,
            ended_tracks,
        }
    }

    fn take(
        &self,
        m: Vec<(usize, usize)>,
        pool: &[usize],
        dets: &[usize],
        pairs: &mut Vec<(usize, usize)>,
        track_used: &mut [bool],
        det_used: &mut [bool],
    ) {
        for (r, c) in m {
            let (ti, di) = (pool[r], dets[c]);
            track_used[ti] = true;
            det_used[di] = true;
            pairs.push((ti, di));
        }
    }

    /// Numbers the labels of this update's detections and gives each track
    /// the number of its label, so the stages compare integers, not strings.
    fn intern_labels(&mut self, dets: &[DetectedObject]) {
        let mut labels: Vec<&str> = Vec::new();
        let sc = &mut self.scratch;
        sc.det_label.clear();
        for d in dets {
            let id = match labels.iter().position(|l| *l == d.label) {
                Some(i) => i,
                None => {
                    labels.push(&d.label);
                    labels.len() - 1
                }
            };
            sc.det_label.push(id as u32);
        }
        sc.track_label.clear();
        for t in &self.tracks {
            let id = labels
                .iter()
                .position(|l| *l == t.label)
                .map_or(u32::MAX, |i| i as u32);
            sc.track_label.push(id);
        }
    }

    /// One association stage: the gated cost of every (track, detection)
    /// pair that can match, then the assignment. Only pairs whose boxes
    /// overlap can pass an IoU gate, so candidates are swept in order of
    /// their left edge and each track only looks at those that can reach it.
    fn match_stage(
        &mut self,
        pool: &[usize],
        cand: &[usize],
        dets: &[DetectedObject],
        step: u64,
        stage: Stage,
    ) -> Vec<(usize, usize)> {
        if pool.is_empty() || cand.is_empty() {
            return Vec::new();
        }
        let mut sc = std::mem::take(&mut self.scratch);
        let p = &self.params;
        let (gate, limit) = match stage {
            Stage::First => (p.match_iou, 10.0),
            Stage::Low => (p.low_match_iou, 10.0),
            Stage::Recovery => (p.recovery_iou, 10.0),
            Stage::Tentative => (p.tentative_match_iou, 10.0),
        };
        sc.by_x1.clear();
        let mut max_w = 0.0f64;
        for (c, &di) in cand.iter().enumerate() {
            let b = dets[di].bbox;
            sc.by_x1.push((b[0], c));
            max_w = max_w.max(b[2] as f64 - b[0] as f64);
        }
        sc.by_x1
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        sc.edges.clear();
        for (r, &ti) in pool.iter().enumerate() {
            let t = &self.tracks[ti];
            let tl = sc.track_label[ti];
            if tl == u32::MAX {
                continue;
            }
            let tb = match stage {
                Stage::Recovery => t.last_obs(),
                _ => t.kf.xyxy(),
            };
            let prev = if stage == Stage::First && p.direction_weight != 0.0 {
                t.direction
                    .and_then(|dir| t.previous_obs(step, p.delta_t).map(|b| (dir, b)))
            } else {
                None
            };
            // A box overlaps `tb` horizontally only if it starts before tb's
            // right edge and ends after its left edge, so it starts after
            // `tb[0] - width`; the margin covers rounding.
            let left = tb[0] as f64;
            let lower = left - max_w * 1.001 - 1e-6 * left.abs();
            let from = sc.by_x1.partition_point(|&(x1, _)| (x1 as f64) <= lower);
            for &(x1, c) in &sc.by_x1[from..] {
                if x1 >= tb[2] || x1.is_nan() {
                    break;
                }
                let di = cand[c];
                if sc.det_label[di] != tl {
                    continue;
                }
                let d = &dets[di];
                let o = iou(tb, d.bbox);
                if o < gate || o <= 0.0 {
                    continue;
                }
                let sim = if p.fuse_score && matches!(stage, Stage::First | Stage::Tentative) {
                    o * d.score
                } else {
                    o
                };
                let mut v = 1.0 - sim as f64;
                if let Some((dir, pb)) = prev {
                    if let Some(dd) = unit_dir(pb, d.bbox) {
                        let cos = (dir[0] * dd[0] + dir[1] * dd[1]).clamp(-1.0, 1.0);
                        let diff = cos.acos();
                        let bonus =
                            (std::f64::consts::FRAC_PI_2 - diff.abs()) / std::f64::consts::PI;
                        v -= bonus * p.direction_weight as f64 * d.score as f64;
                    }
                }
                if let (Some(te), Some(de)) = (&t.embedding, &d.embedding) {
                    if let Some(cs) = cosine(te, de) {
                        if cs < p.appearance_gate {
                            continue;
                        }
                        v += p.appearance_weight as f64 * (1.0 - cs as f64);
                    }
                }
                // Costs are shifted to be positive; the gate already decided validity.
                sc.edges.push((r, c, v + 1.0));
            }
        }
        let out = sc
            .assigner
            .assign_sparse(pool.len(), cand.len(), &sc.edges, limit);
        self.scratch = sc;
        out
    }

    /// Matches tracks `pool` that missed an update with detections `cand`
    /// on appearance (cosine at least `reid_similarity`), within the
    /// distance a person can have walked since the track's last
    /// observation (`reid_speed` box heights per second, plus half a
    /// height) and of a similar height; cheapest by dissimilarity, then
    /// distance.
    fn reid_stage(
        &mut self,
        pool: &[usize],
        cand: &[usize],
        dets: &[DetectedObject],
        ts: u64,
    ) -> Vec<(usize, usize)> {
        let p = &self.params;
        if pool.is_empty() || cand.is_empty() || p.reid_similarity > 1.0 {
            return Vec::new();
        }
        let mut edges = Vec::new();
        for (r, &ti) in pool.iter().enumerate() {
            let t = &self.tracks[ti];
            let Some(te) = &t.embedding else {
                continue;
            };
            let tl = self.scratch.track_label[ti];
            if tl == u32::MAX {
                continue;
            }
            let last = t.last_obs();
            let th = (last[3] - last[1]).max(1e-6) as f64;
            let gap_s = ts.saturating_sub(t.last_obs_ts) as f64 / 1e9;
            let reach = th * (0.5 + p.reid_speed as f64 * gap_s);
            let tc = centre(last);
            for (c, &di) in cand.iter().enumerate() {
                let d = &dets[di];
                if self.scratch.det_label[di] != tl {
                    continue;
                }
                let Some(cs) = d.embedding.as_ref().and_then(|de| cosine(te, de)) else {
                    continue;
                };
                let dh = (d.bbox[3] - d.bbox[1]) as f64;
                let dc = centre(d.bbox);
                let dist = ((dc[0] - tc[0]).powi(2) + (dc[1] - tc[1]).powi(2)).sqrt();
                if cs < p.reid_similarity || dist > reach || dh < th / 1.5 || dh > th * 1.5 {
                    continue;
                }
                edges.push((r, c, 1.0 + (1.0 - cs as f64) + 0.1 * dist / th));
            }
        }
        let mut sc = std::mem::take(&mut self.scratch);
        let out = sc
            .assigner
            .assign_sparse(pool.len(), cand.len(), &edges, 10.0);
        self.scratch = sc;
        out
    }

    /// Updates track `ti` with detection `d`; returns true when this match confirmed it.
    fn apply_match(&mut self, ti: usize, d: &DetectedObject, ts: u64, step: u64) -> bool {
        let p = &self.params;
        let delta_t = p.delta_t;
        let momentum = p.embedding_momentum;
        let t = &mut self.tracks[ti];
        let z = xyxy_to_cxcywh(d.bbox);
        let gap = ts.saturating_sub(t.last_obs_ts) as f64 / 1e9;
        let nominal = p.nominal_frame_ms.max(1) as f64 / 1000.0;
        // Steps missed: unmatched updates, or elapsed nominal frames when
        // whole frames were skipped (no update at all).
        let k = (t.misses as u64 + 1)
            .max((gap / nominal).round() as u64)
            .min(64);
        if k > 1 && t.confirmed {
            // Observation-centric re-update: rewind to the last observation and
            // replay virtual observations interpolated up to this one.
            let last = xyxy_to_cxcywh(t.last_obs());
            let step_dt = gap / k as f64;
            let mut kf = t.kf_at_obs;
            for i in 1..k {
                let a = i as f64 / k as f64;
                let zi = [
                    last[0] + (z[0] - last[0]) * a,
                    last[1] + (z[1] - last[1]) * a,
                    last[2] + (z[2] - last[2]) * a,
                    last[3] + (z[3] - last[3]) * a,
                ];
                kf.predict(step_dt, false);
                kf.update(zi);
            }
            kf.predict(step_dt, false);
            t.kf = kf;
        }
        t.kf.update(z);
        t.kf_at_obs = t.kf;
        if let Some(prev) = t.previous_obs(step, delta_t) {
            if let Some(dir) = unit_dir(prev, d.bbox) {
                t.direction = Some(dir);
            }
        }
        t.obs.push_back(Obs { step, bbox: d.bbox });
        while t.obs.len() > delta_t as usize + 1 {
            t.obs.pop_front();
        }
        t.matched = true;
        t.misses = 0;
        t.hits += 1;
        t.score = d.score;
        t.last_obs_ts = ts;
        if let Some(de) = &d.embedding {
            let mut de = de.clone();
            normalise(&mut de);
            match &mut t.embedding {
                Some(te) if te.len() == de.len() => {
                    for (a, b) in te.iter_mut().zip(&de) {
                        *a = momentum * *a + (1.0 - momentum) * b;
                    }
                    normalise(te);
                }
                slot => *slot = Some(de),
            }
        }
        if !t.confirmed && t.hits >= t.needed_hits {
            t.confirmed = true;
            return true;
        }
        false
    }

    fn snapshot(&self, ts: u64) -> Vec<Track> {
        self.tracks
            .iter()
            .map(|t| Track {
                track_id: t.id,
                label: t.label.clone(),
                score: t.score,
                bbox: t.kf.xyxy(),
                state: if !t.confirmed {
                    TrackState::Tentative
                } else if t.matched {
                    TrackState::Confirmed
                } else {
                    TrackState::Lost
                },
                hits: t.hits,
                age_ms: ts.saturating_sub(t.first_ts) / 1_000_000,
                embedding: t.embedding.clone(),
            })
            .collect()
    }
}

/// A box normalised to the frame kept inside it (a lost track's prediction
/// may drift out of it; readers refuse boxes outside the frame): clamped,
/// and at least a sliver wide and high at the border it left through.
pub fn clip_to_frame(b: [f32; 4]) -> [f32; 4] {
    const EPS: f32 = 1e-3;
    let x0 = b[0].clamp(0.0, 1.0 - EPS);
    let y0 = b[1].clamp(0.0, 1.0 - EPS);
    let x1 = b[2].clamp(x0 + EPS, 1.0);
    let y1 = b[3].clamp(y0 + EPS, 1.0);
    [x0, y0, x1, y1]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    First,
    Low,
    Recovery,
    Tentative,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const FRAME: u64 = 200_000_000; // 5 fps
    const T0: u64 = 1_700_000_000_000_000_000;

    fn det(label: &str, score: f32, cx: f32, cy: f32, w: f32, h: f32) -> DetectedObject {
        DetectedObject {
            class_id: if label == "person" { 0 } else { 2 },
            label: label.to_string(),
            score,
            bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            embedding: None,
        }
    }

    fn confirmed_ids(o: &TrackerOutput) -> Vec<u64> {
        o.tracks
            .iter()
            .filter(|t| t.state == TrackState::Confirmed)
            .map(|t| t.track_id)
            .collect()
    }

    #[test]
    fn a_restored_checkpoint_goes_on_exactly_as_the_original() {
        let frame = |f: u64| -> Vec<DetectedObject> {
            (0..5u64)
                .filter(|k| !(f + k).is_multiple_of(9))
                .map(|k| {
                    let cx = (0.1 + 0.15 * k as f32 + 0.004 * f as f32) % 1.0;
                    let score = if (f + 2 * k).is_multiple_of(4) {
                        0.5
                    } else {
                        0.85
                    };
                    det("person", score, cx, 0.3 + 0.1 * k as f32, 0.05, 0.12)
                })
                .collect()
        };
        let mut live = Tracker::new(TrackerParams::default());
        for f in 0..50u64 {
            live.update(T0 + f * FRAME, &frame(f));
        }
        let bytes = live.checkpoint().expect("checkpoint");
        let mut restored = Tracker::restore(TrackerParams::default(), &bytes).expect("restore");
        for f in 50..150u64 {
            let (a, b) = (
                live.update(T0 + f * FRAME, &frame(f)),
                restored.update(T0 + f * FRAME, &frame(f)),
            );
            assert_eq!(a, b, "frame {f}");
        }
        assert!(live.next_id() > 5, "tracks were made");
        assert!(Tracker::restore(TrackerParams::default(), b"\x01\x02").is_err());
    }

    #[test]
    fn linear_object_keeps_id_through_one_second_miss() {
        let mut tr = Tracker::new(TrackerParams::default());
        let mut ids = BTreeSet::new();
        for f in 0..40u64 {
            // normalised units, walking ~0.2 box widths per frame
            let cx = 0.1 + 0.008 * f as f32;
            let dets = if (15..20).contains(&f) {
                vec![]
            } else {
                vec![det("person", 0.9, cx, 0.5, 0.04, 0.1)]
            };
            let o = tr.update(T0 + f * FRAME, &dets);
            ids.extend(confirmed_ids(&o));
            if (15..20).contains(&f) {
                assert_eq!(o.tracks.len(), 1);
                assert_eq!(o.tracks[0].state, TrackState::Lost, "frame {f}");
            }
        }
        assert_eq!(ids.len(), 1, "ids {ids:?}");
    }

    #[test]
    fn crossing_objects_keep_their_ids() {
        let mut tr = Tracker::new(TrackerParams::default());
        let mut first: Option<(u64, u64)> = None;
        for f in 0..30u64 {
            let a = 0.2 + 0.02 * f as f32; // moving right
            let b = 0.8 - 0.02 * f as f32; // moving left, same row
            let mut dets = vec![
                det("person", 0.9, a, 0.5, 0.05, 0.15),
                det("person", 0.85, b, 0.52, 0.05, 0.15),
            ];
            if f % 2 == 1 {
                dets.reverse(); // input order must not matter
            }
            let o = tr.update(T0 + f * FRAME, &dets);
            let conf: Vec<&Track> = o
                .tracks
                .iter()
                .filter(|t| t.state != TrackState::Tentative)
                .collect();
            if f >= 1 {
                assert_eq!(conf.len(), 2, "frame {f}: {:?}", o.tracks);
            }
            if f >= 1 && (a - b).abs() > 0.06 {
                // The track nearest each true object must keep its identity.
                let near = |x: f32| {
                    conf.iter()
                        .min_by(|p, q| {
                            ((p.bbox[0] + p.bbox[2]) / 2.0 - x)
                                .abs()
                                .total_cmp(&((q.bbox[0] + q.bbox[2]) / 2.0 - x).abs())
                        })
                        .map(|t| t.track_id)
                        .unwrap_or(0)
                };
                let (ia, ib) = (near(a), near(b));
                assert_ne!(ia, ib, "frame {f}");
                match first {
                    None => first = Some((ia, ib)),
                    Some(p) => assert_eq!(p, (ia, ib), "frame {f}: identities swapped"),
                }
            }
        }
    }

    /// A person who vanishes and someone else who appears in the same place
    /// a moment later: with the appearance gate the newcomer gets a new
    /// track (without it, the old track takes them over on box overlap);
    /// the same person coming back, or changing appearance moderately (an
    /// occluder entering the box), keeps the track.
    #[test]
    fn a_track_does_not_take_over_someone_who_looks_different() {
        let run = |params: TrackerParams, back: Vec<f32>, gap: u64| -> (u64, u64) {
            let mut tr = Tracker::new(params);
            let person = |e: Vec<f32>| {
                let mut d = det("person", 0.9, 0.3, 0.5, 0.05, 0.15);
                d.embedding = Some(e);
                d
            };
            let mut before = 0;
            for f in 0..5u64 {
                let o = tr.update(T0 + f * FRAME, &[person(vec![1.0, 0.0, 0.0])]);
                before = o.tracks.first().map_or(0, |t| t.track_id);
            }
            for f in 5..5 + gap {
                tr.update(T0 + f * FRAME, &[]);
            }
            let f = 5 + gap;
            tr.update(T0 + f * FRAME, &[person(back.clone())]);
            let o = tr.update(T0 + (f + 1) * FRAME, &[person(back)]);
            let after = o
                .tracks
                .iter()
                .filter(|t| t.state == TrackState::Confirmed)
                .map(|t| t.track_id)
                .next()
                .unwrap_or(0);
            (before, after)
        };
        let other = vec![0.1, 1.0, 0.0];
        for gap in [0, 2] {
            let (a, b) = run(TrackerParams::default(), other.clone(), gap);
            assert!(
                a != 0 && b != 0 && a != b,
                "gap {gap}: {a} took over as {b}"
            );
            let off = TrackerParams {
                appearance_gate: 0.0,
                ..TrackerParams::default()
            };
            let (a, b) = run(off, other.clone(), gap);
            assert!(a != 0 && a == b, "gate off, gap {gap}: {a} then {b}");
            // cosine 0.6: the same person partly behind a sign.
            let (a, b) = run(TrackerParams::default(), vec![0.6, 0.8, 0.0], gap);
            assert!(a != 0 && a == b, "occluded, gap {gap}: {a} then {b}");
        }
    }

    /// A person hidden for a second who reappears beside where they vanished
    /// (no overlap with the last box) gets their track back on appearance;
    /// someone who looks different there, or with the stage off, does not.
    #[test]
    fn reappearing_person_is_reidentified_on_appearance_only_when_alike() {
        let run = |params: TrackerParams, back: Vec<f32>| -> (u64, u64) {
            let mut tr = Tracker::new(params);
            let person = |cx: f32, e: Vec<f32>| {
                let mut d = det("person", 0.9, cx, 0.5, 0.05, 0.15);
                d.embedding = Some(e);
                d
            };
            let other = person(0.8, vec![0.0, 1.0, 0.0]);
            let mut before = 0;
            for f in 0..5u64 {
                let o = tr.update(
                    T0 + f * FRAME,
                    &[person(0.3, vec![1.0, 0.0, 0.0]), other.clone()],
                );
                before = o
                    .tracks
                    .iter()
                    .find(|t| t.bbox[0] < 0.5)
                    .map_or(0, |t| t.track_id);
            }
            for f in 5..10u64 {
                tr.update(T0 + f * FRAME, std::slice::from_ref(&other));
            }
            let o = tr.update(T0 + 10 * FRAME, &[person(0.36, back), other]);
            let after = o
                .tracks
                .iter()
                .find(|t| {
                    t.state != TrackState::Lost
                        && ((t.bbox[0] + t.bbox[2]) / 2.0 - 0.36).abs() < 0.02
                })
                .map_or(0, |t| t.track_id);
            (before, after)
        };
        let (a, b) = run(TrackerParams::default(), vec![0.98, 0.1, 0.0]);
        assert!(a != 0 && a == b, "alike: {a} then {b}");
        let (a, b) = run(TrackerParams::default(), vec![0.0, 0.1, 1.0]);
        assert!(a != 0 && b != 0 && a != b, "different: {a} then {b}");
        let off = TrackerParams {
            reid_similarity: 1.1,
            ..Default::default()
        };
        let (a, b) = run(off, vec![0.98, 0.1, 0.0]);
        assert!(a != 0 && b != 0 && a != b, "stage off: {a} then {b}");
    }

    #[test]
    fn lifecycle_started_ended_and_removal_after_max_lost() {
        let p = TrackerParams {
            max_lost_ms: 1000,
            confirm_first_update: false,
            ..TrackerParams::default()
        };
        let mut tr = Tracker::new(p);
        let d = [det("person", 0.9, 0.5, 0.5, 0.05, 0.1)];
        let o = tr.update(T0, &d);
        assert_eq!(o.tracks[0].state, TrackState::Tentative);
        assert!(o.started.is_empty());
        let o = tr.update(T0 + FRAME, &d);
        assert_eq!(o.started, vec![1]);
        assert_eq!(o.tracks[0].state, TrackState::Confirmed);
        assert_eq!(o.tracks[0].hits, 2);
        assert_eq!(o.tracks[0].age_ms, 200);
        let last_seen = T0 + FRAME;
        let mut ended_at = None;
        for k in 1..20u64 {
            let ts = last_seen + k * FRAME;
            let o = tr.update(ts, &[]);
            if !o.ended.is_empty() {
                assert_eq!(o.ended, vec![1]);
                ended_at = Some(ts - last_seen);
                assert_eq!(tr.active_count(), 0);
                break;
            }
            assert_eq!(o.tracks[0].state, TrackState::Lost);
        }
        assert_eq!(
            ended_at,
            Some(1_200_000_000),
            "removed at the first update lost > 1000 ms"
        );
    }

    #[test]
    fn cold_start_confirms_first_update_only() {
        let mut tr = Tracker::new(TrackerParams::default());
        let o = tr.update(T0, &[det("person", 0.9, 0.2, 0.5, 0.05, 0.1)]);
        assert_eq!(o.started, vec![1]);
        assert_eq!(o.tracks[0].state, TrackState::Confirmed);
        let o = tr.update(
            T0 + FRAME,
            &[
                det("person", 0.9, 0.2, 0.5, 0.05, 0.1),
                det("person", 0.9, 0.8, 0.5, 0.05, 0.1),
            ],
        );
        assert!(o.started.is_empty());
        assert_eq!(
            o.tracks[1].state,
            TrackState::Tentative,
            "later tracks need min_hits"
        );
    }

    #[test]
    fn unmatched_tentative_dies_silently() {
        let mut tr = Tracker::new(TrackerParams {
            confirm_first_update: false,
            ..TrackerParams::default()
        });
        tr.update(T0, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
        tr.update(T0 + FRAME, &[]);
        let o = tr.update(T0 + 2 * FRAME, &[]);
        assert!(o.tracks.is_empty() && o.ended.is_empty());
        let o = tr.update(T0 + 3 * FRAME, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
        assert_eq!(o.tracks[0].track_id, 2, "ids are never reused");
    }

    #[test]
    fn low_score_detections_extend_but_never_start_tracks() {
        let mut tr = Tracker::new(TrackerParams::default());
        let o = tr.update(T0, &[det("person", 0.3, 0.5, 0.5, 0.05, 0.1)]);
        assert!(o.tracks.is_empty());
        tr.update(T0 + FRAME, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
        tr.update(T0 + 2 * FRAME, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
        let o = tr.update(T0 + 3 * FRAME, &[det("person", 0.3, 0.501, 0.5, 0.05, 0.1)]);
        assert_eq!(o.tracks.len(), 1);
        assert_eq!(o.tracks[0].state, TrackState::Confirmed);
        assert_eq!(o.tracks[0].score, 0.3);
    }

    #[test]
    fn repeated_low_scores_start_a_track_a_flicker_does_not() {
        let mut tr = Tracker::new(TrackerParams {
            confirm_first_update: false,
            ..TrackerParams::default()
        });
        // One 0.55 false detection: tentative, never confirmed, gone after
        // its allowed misses.
        tr.update(T0, &[det("person", 0.55, 0.2, 0.5, 0.05, 0.1)]);
        let o = tr.update(T0 + FRAME, &[]);
        assert!(o.tracks.iter().all(|t| t.state == TrackState::Tentative));
        let o = tr.update(T0 + 2 * FRAME, &[]);
        assert!(o.tracks.is_empty(), "{:?}", o.tracks);
        // A person the detector keeps scoring 0.55 is confirmed on the third match.
        let mut ids = Vec::new();
        for i in 0..4u64 {
            let x = 0.6 + 0.005 * i as f32;
            let o = tr.update(
                T0 + (10 + i) * FRAME,
                &[det("person", 0.55, x, 0.5, 0.05, 0.1)],
            );
            ids.push(confirmed_ids(&o));
        }
        assert!(ids[0].is_empty() && ids[1].is_empty(), "{ids:?}");
        assert_eq!(ids[2].len(), 1, "{ids:?}");
        assert_eq!(ids[2], ids[3]);
        // Below birth_threshold nothing starts.
        let mut tr = Tracker::new(TrackerParams::default());
        let o = tr.update(T0, &[det("person", 0.4, 0.5, 0.5, 0.05, 0.1)]);
        assert!(o.tracks.is_empty());
    }

    #[test]
    fn a_tentative_track_survives_one_missed_frame() {
        let mut tr = Tracker::new(TrackerParams {
            confirm_first_update: false,
            ..TrackerParams::default()
        });
        tr.update(T0, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
        tr.update(T0 + FRAME, &[]);
        let o = tr.update(T0 + 2 * FRAME, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
        assert_eq!(confirmed_ids(&o).len(), 1, "{:?}", o.tracks);
        assert_eq!(o.tracks[0].track_id, 1);
    }

    #[test]
    fn published_boxes_stay_inside_the_frame() {
        let mut tr = Tracker::new(TrackerParams::default());
        // Moving fast towards the right border, then unseen: the prediction
        // leaves the frame, the published box does not.
        for i in 0..4u64 {
            let x = 0.80 + 0.05 * i as f32;
            tr.update(T0 + i * FRAME, &[det("person", 0.9, x, 0.5, 0.05, 0.1)]);
        }
        for i in 4..12u64 {
            let o = tr.update(T0 + i * FRAME, &[]);
            for t in &o.tracks {
                let b = clip_to_frame(t.bbox);
                assert!(crate::guard::clean_box(b, 0.0) == Some(b), "{b:?}");
            }
        }
        // A box wholly outside becomes a sliver at the border it left through.
        let b = clip_to_frame([1.05, 0.4, 1.1, 0.5]);
        assert!(crate::guard::clean_box(b, 0.0) == Some(b), "{b:?}");
        assert!(b[2] == 1.0 && b[0] < 1.0, "{b:?}");
    }

    #[test]
    fn labels_never_mix() {
        let mut tr = Tracker::new(TrackerParams {
            confirm_first_update: false,
            ..TrackerParams::default()
        });
        tr.update(T0, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
        let o = tr.update(T0 + FRAME, &[det("car", 0.9, 0.5, 0.5, 0.05, 0.1)]);
        // The person's tentative track is not continued by the car.
        let car: Vec<_> = o.tracks.iter().filter(|t| t.label == "car").collect();
        assert_eq!(car.len(), 1);
        assert_eq!(car[0].track_id, 2);
        assert!(o
            .tracks
            .iter()
            .all(|t| t.track_id != 1 || t.label == "person"));
    }

    #[test]
    fn embedding_is_smoothed_and_normalised() {
        let mut tr = Tracker::new(TrackerParams {
            embedding_momentum: 0.9,
            ..TrackerParams::default()
        });
        let mut d = det("person", 0.9, 0.5, 0.5, 0.05, 0.1);
        d.embedding = Some(vec![3.0, 4.0]);
        let o = tr.update(T0, std::slice::from_ref(&d));
        assert_eq!(o.tracks[0].embedding, Some(vec![0.6, 0.8]));
        d.embedding = Some(vec![1.0, 0.0]);
        let o = tr.update(T0 + FRAME, std::slice::from_ref(&d));
        let e = o.tracks[0].embedding.clone().expect("embedding");
        let n = (e[0] * e[0] + e[1] * e[1]).sqrt();
        assert!((n - 1.0).abs() < 1e-5);
        assert!(
            e[0] > 0.6 && e[0] < 0.75,
            "smoothed towards the new one: {e:?}"
        );
    }

    #[test]
    fn default_embedding_is_the_latest_detections() {
        let mut tr = Tracker::new(TrackerParams::default());
        let mut d = det("person", 0.9, 0.5, 0.5, 0.05, 0.1);
        d.embedding = Some(vec![3.0, 4.0]);
        tr.update(T0, std::slice::from_ref(&d));
        d.embedding = Some(vec![0.0, 2.0]);
        let o = tr.update(T0 + FRAME, std::slice::from_ref(&d));
        assert_eq!(o.tracks[0].embedding, Some(vec![0.0, 1.0]));
    }

    #[test]
    fn re_update_after_gap_takes_velocity_from_observations() {
        // Right-moving for 10 frames, unseen for 5, reappears having turned
        // downwards: the re-update replays interpolated observations so the
        // new velocity follows the observed displacement, not the stale drift.
        let mut tr = Tracker::new(TrackerParams::default());
        let (w, h) = (0.05, 0.15);
        for f in 0..10u64 {
            tr.update(
                T0 + f * FRAME,
                &[det("person", 0.9, 0.2 + 0.01 * f as f32, 0.3, w, h)],
            );
        }
        let (x_last, y_last) = (0.2 + 0.01 * 9.0, 0.3);
        for f in 10..15u64 {
            let o = tr.update(T0 + f * FRAME, &[]);
            assert_eq!(o.tracks[0].state, TrackState::Lost);
        }
        // frame 15: 6 frames after the last observation, moved down 0.005 per
        // frame (close enough to the last observation for recovery by IoU)
        let o = tr.update(
            T0 + 15 * FRAME,
            &[det("person", 0.9, x_last, y_last + 0.03, w, h)],
        );
        assert_eq!(o.tracks.len(), 1);
        assert_eq!(o.tracks[0].track_id, 1);
        let v = tr.tracks[0].kf.velocity();
        assert!(
            v[1] > 0.01 && v[1] > v[0].abs() && v[0] > 0.0,
            "velocity should point down after the re-update, without the backward swing a \
             plain update gives when correcting the stale drift: {v:?}"
        );
    }

    #[test]
    fn skipped_frames_use_elapsed_time() {
        // An object seen at 5 fps, then with 3 frames dropped entirely (no
        // updates at all): prediction must follow elapsed time and keep the id.
        let mut tr = Tracker::new(TrackerParams::default());
        let mut ids = BTreeSet::new();
        for f in (0..10u64).chain(13..20) {
            let cx = 0.1 + 0.01 * f as f32;
            let o = tr.update(T0 + f * FRAME, &[det("person", 0.9, cx, 0.5, 0.03, 0.1)]);
            ids.extend(confirmed_ids(&o));
        }
        assert_eq!(ids.len(), 1);
    }

    fn stream() -> impl Strategy<Value = Vec<(u64, Vec<DetectedObject>)>> {
        let obj = (
            0u8..2,
            0.0f32..1.0,
            0.0f32..0.9,
            0.0f32..0.9,
            0.02f32..0.3,
            0.02f32..0.3,
        );
        let frame = (1u64..4, proptest::collection::vec(obj, 0..8));
        proptest::collection::vec(frame, 1..40).prop_map(|frames| {
            let mut ts = T0;
            frames
                .into_iter()
                .map(|(gap, objs)| {
                    ts += gap * FRAME;
                    let dets = objs
                        .into_iter()
                        .map(|(l, s, x, y, w, h)| DetectedObject {
                            class_id: l as u32,
                            label: if l == 0 {
                                "person".into()
                            } else {
                                "car".into()
                            },
                            score: s,
                            bbox: [x, y, x + w, y + h],
                            embedding: None,
                        })
                        .collect();
                    (ts, dets)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn ids_are_never_reused(seq in stream()) {
            let mut tr = Tracker::new(TrackerParams { max_lost_ms: 600, ..TrackerParams::default() });
            let mut gone: BTreeSet<u64> = BTreeSet::new();
            let mut prev: BTreeSet<u64> = BTreeSet::new();
            let mut max_seen = 0u64;
            let mut started_all = BTreeSet::new();
            let mut ended_all = BTreeSet::new();
            for (ts, dets) in &seq {
                let o = tr.update(*ts, dets);
                prop_assert!(o.tracks.windows(2).all(|w| w[0].track_id < w[1].track_id), "sorted by id");
                let now: BTreeSet<u64> = o.tracks.iter().map(|t| t.track_id).collect();
                for id in &now {
                    prop_assert!(!gone.contains(id), "id {} came back", id);
                    if !prev.contains(id) {
                        prop_assert!(*id > max_seen, "new id {} not above {}", id, max_seen);
                    }
                }
                max_seen = max_seen.max(now.iter().copied().max().unwrap_or(0));
                gone.extend(prev.difference(&now).copied());
                for id in &o.started { prop_assert!(started_all.insert(*id)); }
                for id in &o.ended {
                    prop_assert!(started_all.contains(id), "ended {} never started", id);
                    prop_assert!(ended_all.insert(*id));
                    prop_assert!(!now.contains(id));
                }
                prop_assert_eq!(tr.active_count(), o.tracks.len());
                prev = now;
            }
        }

        #[test]
        fn deterministic(seq in stream()) {
            let run = || {
                let mut tr = Tracker::new(TrackerParams::default());
                seq.iter().map(|(ts, d)| tr.update(*ts, d)).collect::<Vec<_>>()
            };
            let (a, b) = (run(), run());
            prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }
}
