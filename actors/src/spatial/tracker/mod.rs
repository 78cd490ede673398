//! The spatial tracker: ingest of camera tracks (`ingest`), one matching
//! cycle per step.
//!
//! Each camera track ("source") is projected to the floor by its foot point
//! (bottom centre of the box). A source, once bound to a global identity,
//! keeps it while it lives (sticky binding), unless it keeps disagreeing with
//! the identity's other sources. Unbound sources are matched to identities
//! by floor distance (widened across blind gaps), time since last seen and
//! appearance, first with a linear assignment over the gated candidates
//! (solved per connected component), then greedily, creating new identities
//! for the rest. A spatial hash over identity positions keeps gating local.
//! An identity that vanishes right next to another one moving like it (a
//! group member hidden behind another) is carried along at the same offset
//! until it is seen again or `companion_max_s` has passed.
//! A young identity whose camera's view of it clearly matches an identity
//! lost before it was born is taken over by that one (`relink`).

mod agreement;
#[cfg(test)]
mod agreement_tests;
mod appearance;
mod association;
#[cfg(test)]
mod checkpoint_tests;
mod consensus;
#[cfg(test)]
mod consensus_tests;
#[cfg(test)]
mod drift_tests;
#[cfg(test)]
mod duplicate_tests;
mod foot;
mod frames;
mod grid;
mod handoff_undo;
#[cfg(test)]
mod handoff_undo_tests;
mod idmap;
mod ingest;
mod lifecycle;
mod offsets;
mod output;
mod relink;
#[cfg(test)]
mod relink_tests;
#[cfg(test)]
mod slow_camera_tests;
#[cfg(test)]
mod static_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use nvr_subjects::{Event, SpatialState, SpatialTrack, SpatialTracks, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};

use super::{CameraGeometry, SpatialParams};

/// Why (part of) a `CameraTracks` message was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// The camera is not part of this shard.
    #[error("camera {0:?} is not configured in this spatial shard")]
    UnknownCamera(String),
    /// A track's embedding length differs from the first one seen on that camera.
    #[error(
        "camera {camera:?} track {track_id}: embedding has {got} dimensions, expected {expected}"
    )]
    EmbeddingDimension {
        /// Camera id.
        camera: String,
        /// Per-camera track id.
        track_id: u64,
        /// Dimension first seen on this camera.
        expected: usize,
        /// Dimension of the offending embedding.
        got: usize,
    },
    /// The message is older than one already ingested for the camera.
    #[error("camera {camera:?}: message at {ts_ns} ns is older than the last one ({last_ns} ns)")]
    OutOfOrder {
        /// Camera id.
        camera: String,
        /// Timestamp of the refused message.
        ts_ns: u64,
        /// Timestamp of the latest accepted message.
        last_ns: u64,
    },
}

/// Result of one matching cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// Identities seen within `max_gap_seconds`, by `global_id`.
    pub tracks: SpatialTracks,
    /// Handoff and lifecycle events of this cycle.
    pub events: Vec<Event>,
}

/// Counters of a [`SpatialTracker`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpatialStats {
    /// Identities on the floor at the last cycle: `observed` + `coasting`.
    pub active_tracks: usize,
    /// Identities held only for re-identification (`lost`, or unseen for
    /// longer than `max_gap_seconds` and not yet expired by the TTL).
    #[serde(default)]
    pub lost_tracks: usize,
    /// Identities published as `static` at the last cycle (fixed false
    /// detections, not counted in `active_tracks`).
    #[serde(default)]
    pub static_tracks: usize,
    /// Identities published as `duplicate` at the last cycle (a second view
    /// of a person another identity already is, not merged yet; not counted
    /// in `active_tracks`).
    #[serde(default)]
    pub duplicate_tracks: usize,
    /// Identities created since start.
    pub total_tracks: u64,
    /// Handoffs from one camera to another.
    pub handoffs_completed: u64,
    /// New identities created while a recently lost identity last seen by
    /// another camera was within the handoff gate but refused on appearance.
    pub handoff_failures: u64,
    /// Identities evicted because of `max_tracks`.
    pub evicted: u64,
    /// Identities expired by `track_ttl_seconds`.
    pub expired: u64,
    /// Messages refused in whole or in part.
    pub rejected_messages: u64,
    /// Camera tracks unbound from their identity for disagreeing with its other sources.
    pub unbound_sources: u64,
    /// Camera tracks moved to the identity of another camera's track that
    /// coincides with them on the floor (see `pair_m`).
    #[serde(default)]
    pub rebound_sources: u64,
    /// Duration of the last association (re-identification) phase, ms.
    pub last_reid_ms: f64,
    /// Duration of the last whole step, ms.
    pub last_step_ms: f64,
    /// Identities merged into an older one they coincided with.
    pub merged: u64,
    /// Young identities taken over by the lost identity they turned out to
    /// be (late re-identification; each also counts as a merge).
    #[serde(default)]
    pub relinked: u64,
    /// Handoffs across a blind gap undone because every camera track they
    /// bound was taken away again soon after (someone else's track): the
    /// identity went back to where and what it was before.
    #[serde(default)]
    pub handoffs_undone: u64,
    /// Matching cycles run.
    pub cycles: u64,
    /// How closely each camera pair's views of one person agree on the
    /// floor (a calibration check), and the join gate that follows.
    #[serde(default)]
    pub camera_agreement: Vec<CameraAgreement>,
}

/// One camera pair's agreement on where the people both see stand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CameraAgreement {
    /// The two cameras.
    pub cameras: [String; 2],
    /// 90% of their simultaneous views of one identity are at most this
    /// far apart (metres; running estimate), after the learned offsets.
    pub p90_m: f64,
    /// How far apart the pair puts one person before the learned offsets
    /// take it out (metres): the mean length of the learned displacement
    /// over the squares of the floor the pair has learned in full; 0 while
    /// none is (or with `learn_offsets` off). A calibration check: a large
    /// value says one of the two cameras' calibrations is off there.
    #[serde(default)]
    pub offset_m: f64,
    /// Views compared so far.
    pub samples: u32,
    /// Gate (metres) within which one camera's new track joins an identity
    /// the other sees right now.
    pub gate_m: f64,
}

type SourceKey = (usize, u64);
/// The identity an unobserved one walks next to, and its offset from it.
type Companion = Option<(u64, [f64; 2])>;
/// Position, velocity and the message time they refer to.
type Motion = ([f64; 2], [f64; 2], u64);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CamState {
    /// Calibration; not part of a checkpoint (a restore takes the
    /// configuration's).
    #[serde(skip)]
    geom: CameraGeometry,
    floor_idx: usize,
    last_ts: Option<u64>,
    /// Image size of the latest message, pixels.
    size: Option<(u32, u32)>,
    /// Running sum of the camera's confirmed track embeddings and how many
    /// it holds: their mean (the camera's colour and viewpoint bias, shared
    /// by everyone it sees) is taken out of each embedding before it is
    /// compared with other cameras' views.
    emb_sum: Vec<f64>,
    emb_count: f64,
    /// How often the camera sends a frame: the window within which its
    /// views count as "now" and a missed frame is told from a person gone
    /// (see [`frames`]).
    #[serde(default)]
    frames: frames::FrameClock,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Source {
    /// Floor position of the latest confirmed box: the camera's calibration,
    /// corrected by the learned offsets (`learn_offsets`).
    pos: Option<[f64; 2]>,
    /// The same before the learned offsets: what they learn from.
    #[serde(default)]
    raw_pos: Option<[f64; 2]>,
    obs_ts: u64,
    fresh: bool,
    observed: bool,
    emb: Option<Vec<f32>>,
    label: String,
    score: f32,
    hits: u32,
    /// Messages of the camera that held this track since it was first
    /// seen, and how many of them brought it a new detection (its `hits`
    /// grew): a person in plain view is detected in nearly every frame, a
    /// fixed false detection flickers (`static_max_detected`).
    #[serde(default)]
    frames: u32,
    #[serde(default)]
    detected_frames: u32,
    bound: Option<u64>,
    bad_cycles: u32,
    /// The identity this camera track was last unbound from for disagreeing
    /// with it: that identity may not ride along with it as a hidden
    /// companion (it would be a duplicate of the same person).
    prev_bound: Option<u64>,
    first_ts: u64,
    /// Latest box, normalised 0..1 of the frame.
    bbox: [f32; 4],
}

/// One camera's history of an identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CamView {
    /// Camera index.
    cam: usize,
    /// Observations of the identity by this camera: a camera that saw it
    /// only a few times (a passer-by's track bound to it briefly) does not
    /// make it a person (`static`).
    obs: u32,
    /// Sum of the detection scores of those observations: a camera sure
    /// of what it sees at a fixed place sees a person standing there, not
    /// a fixed false detection (`static_max_score`).
    #[serde(default)]
    score_sum: f64,
    /// Its appearance as this camera sees it, and how many observations
    /// that holds: one camera's views of one person agree far more closely
    /// than two cameras' do, so a camera track that starts on a camera
    /// which has seen the identity before is compared with that view.
    emb: Option<(Vec<f32>, u32)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Global {
    floor_idx: usize,
    label: String,
    pos: [f64; 2],
    vel: [f64; 2],
    /// Message time `pos` refers to: the last observation, or later while
    /// the identity is carried along by its companion.
    pos_ts: u64,
    /// While unobserved: the identity it was walking next to when it
    /// disappeared (most likely hidden behind it) and its offset from it.
    companion: Companion,
    /// Position at the last observation: where it vanished, should it have
    /// left rather than walked on hidden behind its companion.
    obs_pos: [f64; 2],
    /// Matching cycle of the latest observation (cheap "observed now" test).
    seen_cycle: u64,
    last_seen: u64,
    sources: BTreeSet<SourceKey>,
    last_camera: usize,
    emb: Option<Vec<f32>>,
    /// Observations averaged into `emb` (its learning rate decays with it).
    emb_n: u32,
    /// What each camera has seen of it, sorted by camera (a few entries,
    /// kept in one vector: it is read and updated for every observed
    /// identity on every cycle).
    views: Vec<CamView>,
    score: f32,
    created_cycle: u64,
    /// Message time and position of the first observation and the farthest
    /// it has been from there since: what tells a fixed false detection
    /// from a person (`static`).
    born_ts: u64,
    origin: [f64; 2],
    max_disp: f64,
    /// Camera, box bottom centre (pixels) and box height (pixels) of the
    /// first observation, and the farthest the box has moved from there on
    /// that camera since, in box heights: far from a camera a fixed false
    /// detection's floor position jitters by metres, its box does not.
    img_origin: (usize, [f64; 2], f64),
    img_disp: f64,
    /// The identity as it was before a camera track took it over while it
    /// was unseen (see [`BeforeHandoff`]).
    #[serde(default)]
    before_handoff: Option<Box<BeforeHandoff>>,
}

/// An identity as it was when a camera track took it over while no camera
/// saw it (a handoff across a blind gap). Should every camera track bound
/// to it since be taken away again within [`UNDO_HANDOFF_CYCLES`] (unbound
/// for disagreeing with it, moved to the identity another camera gives
/// there), that track was someone else's: the identity goes back to where
/// and what it was, rather than keep the other person's position, motion
/// and looks, which would keep its own person from finding it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BeforeHandoff {
    /// Matching cycle of the handoff.
    cycle: u64,
    /// Whether a camera track bound since has been taken away (rather than
    /// ended by its camera's tracker).
    revoked: bool,
    /// The identity before the handoff.
    global: Global,
}

impl Global {
    /// Point `p` moved along the identity's velocity for `dt_s` seconds.
    fn carry(&self, p: [f64; 2], dt_s: f64) -> [f64; 2] {
        [p[0] + self.vel[0] * dt_s, p[1] + self.vel[1] * dt_s]
    }

    /// Where the identity's motion model puts it at `ts_ns`.
    fn predicted_at(&self, ts_ns: u64) -> [f64; 2] {
        self.carry(self.pos, ts_ns.saturating_sub(self.pos_ts) as f64 / 1e9)
    }

    /// Camera `cam`'s view of this identity, if it has one.
    fn view(&self, cam: usize) -> Option<&CamView> {
        self.views
            .binary_search_by_key(&cam, |v| v.cam)
            .ok()
            .map(|i| &self.views[i])
    }

    /// Camera `cam`'s view of this identity, added empty if it had none.
    fn view_mut(&mut self, cam: usize) -> &mut CamView {
        let i = match self.views.binary_search_by_key(&cam, |v| v.cam) {
            Ok(i) => i,
            Err(i) => {
                self.views.insert(
                    i,
                    CamView {
                        cam,
                        obs: 0,
                        score_sum: 0.0,
                        emb: None,
                    },
                );
                i
            }
        };
        &mut self.views[i]
    }
}

/// Cross-camera tracker of one shard. Its state (everything but the
/// parameters and the calibrations) serialises, so a checkpoint of a live
/// shard restores to one that goes on exactly as the live one did (see
/// [`SpatialTracker::restore`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpatialTracker {
    shard: String,
    /// Tuning; not part of a checkpoint (a restore takes the caller's).
    #[serde(skip)]
    params: SpatialParams,
    cams: Vec<CamState>,
    cam_index: BTreeMap<String, usize>,
    floors: Vec<String>,
    sources: BTreeMap<SourceKey, Source>,
    globals: idmap::IdMap<Global>,
    next_id: u64,
    stats: SpatialStats,
    last_step_ts: u64,
    updated: BTreeSet<u64>,
    merge_counts: BTreeMap<(u64, u64), u32>,
    /// Consecutive cycles two camera tracks of different cameras, bound to
    /// different identities, have coincided on the floor.
    pair_counts: BTreeMap<(SourceKey, SourceKey), u32>,
    /// How alike different people look to this shard's appearance model.
    impostors: appearance::Impostors,
    /// Where identities were found `static` (camera, box bottom centre and
    /// height in pixels, last time): a fixed false detection that flickers
    /// comes back as a new identity at the same place, which is `static`
    /// from the start rather than after `static_after_s` again.
    static_spots: Vec<(usize, [f64; 2], f64, u64)>,
    /// The identities the latest cycle published `duplicate`, each with the
    /// older identity it duplicated: a pair stays marked while it is within
    /// [`DUPLICATE_HOLD`] times `merge_m`, so a pair drifting around
    /// `merge_m` apart does not flicker between one person and two.
    /// Marking again from these at the same time gives the same marks, so
    /// [`Self::tracks`] repeats what the step published.
    duplicates: BTreeMap<u64, u64>,
    /// How closely each camera pair's simultaneous views of one person
    /// agree on the floor: the gate for joining an identity the other
    /// camera sees right now.
    #[serde(default)]
    agreement: BTreeMap<(usize, usize), agreement::PairAgreement>,
    /// Where each camera pair puts one person apart, place by place: taken
    /// out of the cameras' floor positions (`learn_offsets`).
    #[serde(default)]
    offsets: offsets::Offsets,
}

const GRID_CELL_M: f64 = 2.0;
const NO_EDGE: f64 = 1.0e6;
/// Cycles after a handoff across a blind gap within which taking away
/// every camera track bound since undoes it (see [`BeforeHandoff`]).
const UNDO_HANDOFF_CYCLES: u64 = 15;
/// Highest speed (m/s) of the motion model.
const MAX_SPEED_MPS: f64 = 3.0;
/// An identity whose box has stayed within this many box heights of where
/// it appeared counts as not moving (see `static_after_s`).
const STATIC_IMG_DISP: f64 = 0.5;
/// A camera track's score as the tracker keeps it: within 0..1, 0 when it
/// is not a number (one bad message must not spoil an identity's running
/// score sum).
fn detection_score(s: f32) -> f32 {
    if s.is_finite() {
        s.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Frames of a camera track after which the share of them with a detection
/// tells a person from a fixed false detection (`static_max_detected`).
const STATIC_MIN_FRAMES: u32 = 25;
/// Observations by which a camera counts as having seen an identity, for
/// the `static` test.
const STATIC_MIN_OBS: u32 = 5;
/// A place where nothing was `static` for this long is forgotten (ns).
const STATIC_SPOT_TTL_NS: u64 = 120_000_000_000;
/// Fraction of the image width and height kept as border by `in_view`.
const VIEW_MARGIN: f64 = 0.01;
/// Distance (metres) within which an observed identity may hide a coasting one.
const OCCLUDER_M: f64 = 1.2;
/// Identities observed within this (ns) before a time count as seen then.
const SEEN_NOW_NS: u64 = 60_000_000;
/// An identity unobserved for at most this long (s) can attach to a companion.
const COMPANION_ATTACH_S: f64 = 0.5;
/// Largest velocity difference (m/s) between an identity and its companion.
const COMPANION_SPEED_DIFF_MPS: f64 = 0.7;
/// Least learning rate of an identity's appearance.
const APPEARANCE_RATE: f32 = 0.02;
/// Observations after which an identity's appearance only learns from
/// observations that agree with it.
const APPEARANCE_SETTLE: u32 = 10;
/// Once a camera's view of an identity holds this many observations, it
/// learns only from observations at least this similar to it.
const CAMERA_VIEW_AGREE: f64 = 0.7;
/// Least learning rate of a camera's view of an identity.
const CAMERA_VIEW_RATE: f32 = 0.1;
/// The least floor distance (metres) within which two identities of cameras
/// that agree closely may still be one person: two people's body centres
/// are rarely nearer, and one person's two views rarely farther.
const MIN_MERGE_RADIUS_M: f64 = 0.3;
/// A `duplicate` pair stays marked up to this many times `merge_m` apart.
const DUPLICATE_HOLD: f64 = 1.5;
/// Identities seen within half of this (seconds) count as live for gating.
const LIVE_WINDOW_S: f64 = 2.0;
/// Pseudo-count of zero embeddings the camera mean starts from.
const CAMERA_MEAN_PRIOR: f64 = 20.0;
/// Observations the camera mean is taken over (older ones decay).
const CAMERA_MEAN_WINDOW: f64 = 2000.0;

use grid::Grid;

impl SpatialTracker {
    /// A tracker for `shard` over `cameras`.
    pub fn new(shard: &str, params: SpatialParams, cameras: Vec<CameraGeometry>) -> SpatialTracker {
        let mut floors: Vec<String> = Vec::new();
        let mut cams = Vec::new();
        let mut cam_index = BTreeMap::new();
        for geom in cameras {
            let floor_idx = match floors.iter().position(|f| *f == geom.floor) {
                Some(i) => i,
                None => {
                    floors.push(geom.floor.clone());
                    floors.len() - 1
                }
            };
            cam_index.insert(geom.id.clone(), cams.len());
            cams.push(CamState {
                geom,
                floor_idx,
                last_ts: None,
                size: None,
                emb_sum: Vec::new(),
                emb_count: 0.0,
                frames: frames::FrameClock::default(),
            });
        }
        SpatialTracker {
            shard: shard.to_string(),
            params,
            cams,
            cam_index,
            floors,
            sources: BTreeMap::new(),
            globals: idmap::IdMap::new(),
            next_id: 1,
            stats: SpatialStats::default(),
            last_step_ts: 0,
            updated: BTreeSet::new(),
            merge_counts: BTreeMap::new(),
            pair_counts: BTreeMap::new(),
            impostors: appearance::Impostors::default(),
            static_spots: Vec::new(),
            duplicates: BTreeMap::new(),
            agreement: BTreeMap::new(),
            offsets: offsets::Offsets::default(),
        }
    }

    /// Continues global ids at `next_id` (at least 1), for a shard that
    /// restarts after having published ids before.
    pub fn set_next_id(&mut self, next_id: u64) {
        self.next_id = self.next_id.max(next_id);
    }

    /// The tracker's state as bytes (MessagePack): what
    /// [`SpatialTracker::restore`] takes back.
    pub fn checkpoint(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec(self)
    }

    /// A tracker for `shard` over `cameras` with `params`, in the state of a
    /// [`SpatialTracker::checkpoint`]: it goes on exactly as the tracker the
    /// checkpoint was taken of. Refuses a checkpoint of another shard or of
    /// other cameras and floors.
    pub fn restore(
        shard: &str,
        params: SpatialParams,
        cameras: Vec<CameraGeometry>,
        state: &[u8],
    ) -> anyhow::Result<SpatialTracker> {
        let fresh = SpatialTracker::new(shard, params, cameras);
        let mut t: SpatialTracker = rmp_serde::from_slice(state)?;
        if t.shard != fresh.shard || t.cam_index != fresh.cam_index || t.floors != fresh.floors {
            anyhow::bail!(
                "checkpoint of shard {:?} over cameras {:?} does not fit shard {shard:?} over {:?}",
                t.shard,
                t.cam_index.keys().collect::<Vec<_>>(),
                fresh.cam_index.keys().collect::<Vec<_>>()
            );
        }
        for (c, f) in t.cams.iter_mut().zip(fresh.cams) {
            c.geom = f.geom;
        }
        t.params = fresh.params;
        t.offsets.rebuild();
        Ok(t)
    }

    /// The matching cycle, ns.
    pub(super) fn cycle_ns(&self) -> u64 {
        self.params.matching_interval_ms.max(1) * 1_000_000
    }

    /// The window (ns) within which camera `ci`'s views count as "now":
    /// one matching cycle, or the camera's frame interval where it sends
    /// frames more slowly (see [`frames`]).
    pub(super) fn frame_window_ns(&self, ci: usize) -> u64 {
        let cycle = self.cycle_ns();
        self.cams
            .get(ci)
            .map_or(cycle, |c| c.frames.window_ns(cycle))
    }

    /// Whether some camera sends frames more slowly than the matching
    /// cycle. Only then do the rules that pair views of one cycle (merges,
    /// consensus) also take views within a camera's frame window: with
    /// every camera at the cycle's rate they see exactly this cycle's.
    pub(super) fn has_slow_camera(&self) -> bool {
        let cycle = self.cycle_ns();
        self.cams.iter().any(|c| c.frames.window_ns(cycle) > cycle)
    }

    /// Whether a view of camera `ci` taken at `obs_ts` is still current at
    /// `ts_ns` for a camera slower than the cycle: within its frame window.
    /// (A camera at the cycle's rate has no such views: only its fresh ones
    /// are current.)
    pub(super) fn slow_view_current(&self, ci: usize, obs_ts: u64, ts_ns: u64) -> bool {
        let cycle = self.cycle_ns();
        let window = self.frame_window_ns(ci);
        window > cycle && ts_ns.saturating_sub(obs_ts) <= window
    }

    /// The shard name.
    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// The parameters in use.
    pub fn params(&self) -> &SpatialParams {
        &self.params
    }

    /// An event about identity `gid`, with its label, confidence, floor and
    /// position (and, when it ends, how long it existed) while it exists.
    pub(super) fn new_event(&self, kind: &str, ts_ns: u64, gid: u64) -> Event {
        let mut e = Event::new(kind, ts_ns);
        e.shard = Some(self.shard.clone());
        e.global_id = Some(gid);
        if let Some(g) = self.globals.get(&gid) {
            e.label = Some(g.label.clone());
            e.score = Some(g.score);
            e.floor = self.floors.get(g.floor_idx).cloned();
            e.position_m = Some([g.pos[0] as f32, g.pos[1] as f32]);
            if kind == nvr_subjects::event_kind::GLOBAL_ENDED {
                e.duration_ms = Some(g.last_seen.saturating_sub(g.born_ts) / 1_000_000);
            }
        }
        e
    }

    /// One matching cycle at message time `ts_ns`.
    pub fn step(&mut self, ts_ns: u64) -> StepOutput {
        let started = Instant::now();
        let mut events = Vec::new();
        self.last_step_ts = ts_ns;
        self.updated.clear();

        // 1. Expiry by TTL.
        self.expire(ts_ns, &mut events);
        // 2. Fresh observations of bound sources update their identity.
        let unbound = self.update_bound(ts_ns);
        // 3. Association of unbound sources.
        let reid_started = Instant::now();
        self.associate(ts_ns, &unbound, &mut events);
        self.stats.last_reid_ms = reid_started.elapsed().as_secs_f64() * 1e3;
        // 3b. Camera tracks two views put at one floor point share an identity.
        self.reconcile_views(ts_ns, &mut events);
        // 3c. A young identity its lost one's appearance clearly matches.
        self.relink_young(ts_ns, &mut events);
        // 3d. Handoffs whose every camera track was taken away again.
        self.undo_revoked_handoffs();
        for s in self.sources.values_mut() {
            s.fresh = false;
        }

        // Grid of the identities observed in this cycle.
        let observed = Grid::build(
            GRID_CELL_M,
            self.updated
                .iter()
                .filter_map(|gid| self.globals.get(gid).map(|g| (g.floor_idx, g.pos, *gid))),
        );

        // What different people's similarity looks like, from the
        // identities observed together in this cycle.
        self.sample_impostors();

        // 4. Merge identities that coincide on disjoint cameras.
        self.merge_coinciding(ts_ns, &observed, &mut events);

        // 5. Unobserved identities move with the one they walked beside.
        self.follow_companions(ts_ns, &observed);

        // 6. Cap.
        self.cap(ts_ns, &mut events);

        self.stats.cycles += 1;
        let (published, duplicates) = self.published_with_duplicates(ts_ns);
        self.duplicates = duplicates;
        let tracks = SpatialTracks {
            v: SCHEMA_VERSION,
            shard: self.shard.clone(),
            ts_ns,
            tracks: published,
        };
        self.remember_static_spots(&tracks.tracks, ts_ns);
        let count = |s: SpatialState| tracks.tracks.iter().filter(|t| t.state == s).count();
        self.stats.active_tracks = count(SpatialState::Observed) + count(SpatialState::Coasting);
        self.stats.static_tracks = count(SpatialState::Static);
        self.stats.duplicate_tracks = count(SpatialState::Duplicate);
        self.stats.lost_tracks = self.globals.len()
            - self.stats.active_tracks
            - self.stats.static_tracks
            - self.stats.duplicate_tracks;
        self.stats.camera_agreement = self.camera_agreement();
        self.stats.last_step_ms = started.elapsed().as_secs_f64() * 1e3;
        StepOutput { tracks, events }
    }

    /// Counters.
    pub fn stats(&self) -> SpatialStats {
        self.stats.clone()
    }

    /// What the last step published: identities seen within
    /// `max_gap_seconds`, with their state, by `global_id`.
    pub fn tracks(&self) -> Vec<SpatialTrack> {
        self.published_tracks(self.last_step_ts)
    }
}
