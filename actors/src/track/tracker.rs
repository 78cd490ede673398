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
//! 5. tentative tracks against the remaining high-score detections, by IoU
//!    and then, where the frame came more than one and a half nominal
//!    frames after the last, as in the re-identification stage, by
//!    appearance within walking reach (a tentative track has no velocity
//!    to predict with);
//! 6. lifecycle: unmatched tentative tracks die, unmatched confirmed tracks go
//!    lost, lost tracks older than `max_lost_ms` are removed; new tentative
//!    tracks start from the remaining confident detections;
//! 7. crossings: two confirmed tracks whose boxes overlapped and have
//!    parted exchange ids where they swapped people meanwhile (`crossing`).
//!
//! When a lost track is matched again, its filter is rewound to the last
//! observation and re-run over virtual observations interpolated between
//! the last and the new one (OC-SORT observation-centric re-update), so the
//! velocity is not polluted by the drift accumulated while it was unseen.

use std::collections::VecDeque;

use nvr_subjects::{DetectedObject, Track, TrackState};

use super::assign::{iou, Assigner};
use super::kalman::{xyxy_to_cxcywh, KalmanBox};
use crossing::{Crossing, CROSSING_HISTORY};

pub use appearance_scale::AppearanceGates;
use appearance_scale::AppearanceScale;
use cost::{unit_dir, Stage};
use vector::{blend, cosine, normalise};

#[path = "appearance_scale.rs"]
mod appearance_scale;
#[path = "cost.rs"]
mod cost;
#[path = "crossing.rs"]
mod crossing;
#[path = "stages.rs"]
mod stages;
#[path = "vector.rs"]
mod vector;
pub use super::params::TrackerParams;

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
    /// Pairs of track ids that exchanged their boxes in this update: the
    /// two had swapped people while crossing (see `crossing`).
    pub swapped: Vec<(u64, u64)>,
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
    /// Recent observations (at most `delta_t + 1`, and at least
    /// `CROSSING_HISTORY` for the motion before a crossing).
    obs: VecDeque<Obs>,
    /// Unit direction of motion from observations, OC-SORT style.
    direction: Option<[f64; 2]>,
    embedding: Option<Vec<f32>>,
    /// The appearance matched on (`appearance_momentum`): steadier than
    /// the latest detection's, which is what `embedding` publishes.
    /// Absent in a checkpoint written before it existed: then `embedding`.
    #[serde(default)]
    matching: Option<Vec<f32>>,
}

impl TrackInner {
    /// Cosine similarity of the appearance the track is matched on to `e`.
    fn similarity(&self, e: &[f32]) -> Option<f32> {
        cosine(self.matching.as_ref().or(self.embedding.as_ref())?, e)
    }

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

pub(super) fn centre(b: [f32; 4]) -> [f64; 2] {
    [
        (b[0] as f64 + b[2] as f64) * 0.5,
        (b[1] as f64 + b[3] as f64) * 0.5,
    ]
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
    /// Sorted by id (ids only grow and new tracks are appended; two
    /// tracks that exchange ids after a crossing are sorted back).
    tracks: Vec<TrackInner>,
    next_id: u64,
    step: u64,
    last_ts: Option<u64>,
    /// Pairs of confirmed tracks whose boxes overlap, or did until they
    /// parted, waiting to be checked for a swap. Absent in a checkpoint
    /// written before crossings were checked.
    #[serde(default)]
    crossings: Vec<Crossing>,
    /// What this camera's own-person matches score in appearance, which
    /// caps the appearance gates (`appearance_adapt_samples`). Absent in a
    /// checkpoint written before it existed: then empty.
    #[serde(default)]
    appearance: AppearanceScale,
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
            crossings: Vec::new(),
            appearance: AppearanceScale::default(),
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

    /// The appearance gates in force, capped by what this camera's
    /// own-person matches score (`appearance_adapt_samples`); `None` until
    /// a detection with an embedding was sampled.
    pub fn appearance_gates(&self) -> Option<AppearanceGates> {
        Some(self.appearance.gates(&self.params)).filter(|g| g.samples > 0)
    }

    /// Number of tracks currently held (tentative, confirmed and lost).
    pub fn active_count(&self) -> usize {
        self.tracks.len()
    }

    /// One update with the detections of one frame at message time `ts_ns`.
    /// Boxes may be in any consistent units. A `ts_ns` older than the previous
    /// update is treated as the same instant (no negative prediction).
    pub fn update(&mut self, ts_ns: u64, dets: &[DetectedObject]) -> TrackerOutput {
        let ts = self.last_ts.map_or(ts_ns, |l| ts_ns.max(l));
        // Frames further apart than one and a half nominal frames: a walker
        // may have moved more than a box width since the last one.
        let slow = self
            .last_ts
            .is_some_and(|l| (ts - l) as f64 > 1.5 * self.params.nominal_frame_ms as f64 * 1e6);
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

        // 2-5. association stages, with the gates the samples so far allow;
        // this update's own-person matches then join the samples.
        let gates = self.appearance.gates(&self.params);
        if self.params.appearance_adapt_samples > 0 {
            let by_x1 = &mut self.scratch.by_x1;
            self.appearance
                .sample(&self.tracks, &was_matched, dets, by_x1);
        }
        self.intern_labels(dets);
        let a = self.associate(dets, step, ts, slow, &was_matched, gates);

        // Apply matches.
        let mut started = Vec::new();
        for &(ti, di) in &a.pairs {
            let became = self.apply_match(ti, &dets[di], ts, step);
            if became {
                started.push(self.tracks[ti].id);
            }
        }

        // 6. lifecycle
        let (mut ended, mut ended_tracks) = self.retire(ts, &a.track_used);
        for &di in &a.birth {
            if !a.det_used[di] {
                if let Some(id) = self.spawn(&dets[di], ts, step) {
                    started.push(id);
                }
            }
        }
        let swapped = self.check_crossings(step, ts);
        started.sort_unstable();
        ended.sort_unstable();
        ended_tracks.sort_unstable_by_key(|t| t.track_id);
        TrackerOutput {
            tracks: self.snapshot(ts),
            started,
            ended,
            ended_tracks,
            swapped,
        }
    }

    /// Steps 2-5 of [`Self::update`]: every association stage in order, each
    /// on the tracks and detections the earlier ones left. `slow`: this
    /// frame came more than one and a half nominal frames after the last.
    /// `was_matched` says, per track, whether it was matched in the
    /// previous update; `gates` are the appearance gates in force.
    fn associate(
        &mut self,
        dets: &[DetectedObject],
        step: u64,
        ts: u64,
        slow: bool,
        was_matched: &[bool],
        gates: AppearanceGates,
    ) -> Association {
        let birth_threshold = self.params.birth_threshold;
        let (high, low, birth) = split_by_score(dets, &self.params);
        let mut det_used = vec![false; dets.len()];
        let mut track_used = vec![false; self.tracks.len()];
        let mut pairs: Vec<(usize, usize)> = Vec::new();

        // 2. first stage: confirmed tracks x high detections
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed)
            .collect();
        let m = self.match_stage(&pool, &high, dets, step, Stage::First, gates);
        self.take(m, &pool, &high, &mut pairs, &mut track_used, &mut det_used);

        // 3. second stage: previously tracked, unmatched tracks x low detections
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed && !track_used[i] && was_matched[i])
            .collect();
        let m = self.match_stage(&pool, &low, dets, step, Stage::Low, gates);
        self.take(m, &pool, &low, &mut pairs, &mut track_used, &mut det_used);

        // 4. observation-centric recovery: last observation x remaining high detections
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].confirmed && !track_used[i])
            .collect();
        let rest: Vec<usize> = high.iter().copied().filter(|&d| !det_used[d]).collect();
        let m = self.match_stage(&pool, &rest, dets, step, Stage::Recovery, gates);
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
            .filter(|&d| !det_used[d] && dets[d].score >= birth_threshold)
            .collect();
        let m = self.reid_stage(&pool, &rest, dets, ts, gates);
        self.take(m, &pool, &rest, &mut pairs, &mut track_used, &mut det_used);

        // 5. tentative tracks x remaining detections that could start one
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| !self.tracks[i].confirmed)
            .collect();
        let rest: Vec<usize> = birth.iter().copied().filter(|&d| !det_used[d]).collect();
        let m = self.match_stage(&pool, &rest, dets, step, Stage::Tentative, gates);
        self.take(m, &pool, &rest, &mut pairs, &mut track_used, &mut det_used);

        // 5b. after a slow frame, tentative tracks still unmatched x those
        // detections, near and alike: a tentative track has no velocity
        // yet, and with frames far apart a walker's box moves more than its
        // own width between them (at 2 fps one pair of frames in six
        // overlaps less than the IoU gate), so the overlap stage alone
        // restarts them every frame. At the nominal rate the overlap stage
        // suffices, and this one is not run.
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| slow && !self.tracks[i].confirmed && !track_used[i])
            .collect();
        let rest: Vec<usize> = birth.iter().copied().filter(|&d| !det_used[d]).collect();
        let m = self.reid_stage(&pool, &rest, dets, ts, gates);
        self.take(m, &pool, &rest, &mut pairs, &mut track_used, &mut det_used);

        pairs.sort_unstable();
        Association {
            pairs,
            track_used,
            det_used,
            birth,
        }
    }

    /// Step 6 of [`Self::update`]: counts a miss for every track left
    /// unmatched, drops tentative tracks past `tentative_max_misses` and
    /// confirmed ones unseen for over `max_lost_ms`. Returns the ids of the
    /// confirmed tracks removed and those tracks as they were last seen.
    fn retire(&mut self, ts: u64, track_used: &[bool]) -> (Vec<u64>, Vec<Track>) {
        let mut ended = Vec::new();
        let mut ended_tracks = Vec::new();
        for (i, t) in self.tracks.iter_mut().enumerate() {
            if !track_used[i] {
                t.misses += 1;
            }
        }
        let tentative_max_misses = self.params.tentative_max_misses;
        let max_lost_ns = self.params.max_lost_ms.saturating_mul(1_000_000);
        self.tracks.retain(|t| {
            if t.matched {
                return true;
            }
            if !t.confirmed {
                return t.misses <= tentative_max_misses;
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
        (ended, ended_tracks)
    }

    /// Starts a track from detection `d`, which no track took. Returns its
    /// id when it is confirmed at once (one hit is enough, or the first
    /// update of a confident detection with `confirm_first_update`).
    fn spawn(&mut self, d: &DetectedObject, ts: u64, step: u64) -> Option<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let p = &self.params;
        let kf = KalmanBox::new(xyxy_to_cxcywh(d.bbox), p.kalman());
        let confident = d.score >= p.new_track_threshold;
        let needed_hits = if confident {
            p.min_hits
        } else {
            p.min_hits.max(p.low_birth_hits)
        };
        let confirmed = needed_hits <= 1 || (confident && p.confirm_first_update && step == 1);
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
            matching: embedding.clone(),
            embedding,
        });
        confirmed.then_some(id)
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

    /// Updates track `ti` with detection `d`; returns true when this match confirmed it.
    fn apply_match(&mut self, ti: usize, d: &DetectedObject, ts: u64, step: u64) -> bool {
        let p = &self.params;
        let delta_t = p.delta_t;
        let momentum = p.embedding_momentum;
        let matching = p.appearance_momentum;
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
        while t.obs.len() > (delta_t as usize + 1).max(CROSSING_HISTORY) {
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
            blend(&mut t.matching, &de, matching);
            blend(&mut t.embedding, &de, momentum);
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

/// What the association stages of one update decided.
struct Association {
    /// Matched (track index, detection index) pairs, sorted.
    pairs: Vec<(usize, usize)>,
    /// Per track: matched in this update (its misses are not counted).
    track_used: Vec<bool>,
    /// Per detection: taken by a track (it starts no new one).
    det_used: Vec<bool>,
    /// Detections that may start a track (score at least
    /// `birth_threshold`), by index, sorted.
    birth: Vec<usize>,
}

/// The indices of `dets` with a usable box and score: those at or above
/// `high_threshold`, those between `low_threshold` and it, and those of
/// both that may start a track (at or above `birth_threshold`), in order.
fn split_by_score(
    dets: &[DetectedObject],
    params: &TrackerParams,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut high = Vec::new();
    let mut low = Vec::new();
    for (i, d) in dets.iter().enumerate() {
        if !valid_box(d.bbox) || !d.score.is_finite() {
            continue;
        }
        if d.score >= params.high_threshold {
            high.push(i);
        } else if d.score >= params.low_threshold {
            low.push(i);
        }
    }
    let mut birth: Vec<usize> = high
        .iter()
        .chain(low.iter())
        .copied()
        .filter(|&d| dets[d].score >= params.birth_threshold)
        .collect();
    birth.sort_unstable();
    (high, low, birth)
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
