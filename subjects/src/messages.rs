//! Message structs carried on the `nvr.*` subjects.
//!
//! Every struct is encoded as a MessagePack map with named, snake_case fields
//! (see [`crate::codec`]). Field `v` carries [`crate::SCHEMA_VERSION`]. Units
//! are part of the contract and are documented on each field and in
//! `subjects/README.md`.

use serde::{Deserialize, Serialize};

use crate::SCHEMA_VERSION;

/// Pixel encoding of [`Frame::data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameEncoding {
    /// A baseline JPEG image.
    Jpeg,
    /// Packed 8-bit RGB, row-major, no padding; `data.len() == w * h * 3` of
    /// the encoded image (which may be smaller than `width` x `height`).
    Rgb24,
}

/// One sampled camera frame, published on `nvr.frames.<camera>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Schema version, always [`SCHEMA_VERSION`] when produced by this crate.
    pub v: u32,
    /// Camera id, the same token as in the subject.
    pub camera: String,
    /// Per-camera sequence number, strictly increasing for one camera run.
    pub seq: u64,
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Width in pixels of the original frame (before any downscale).
    pub width: u32,
    /// Height in pixels of the original frame (before any downscale).
    pub height: u32,
    /// How `data` is encoded.
    pub encoding: FrameEncoding,
    /// The encoded image bytes (possibly downscaled from `width` x `height`).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Width of the encoded image in `data` when `encoding` is `rgb24`
    /// (absent or 0 means `width`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub data_width: u32,
    /// Height of the encoded image in `data` when `encoding` is `rgb24`
    /// (absent or 0 means `height`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub data_height: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// One detected object inside [`Detections`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectedObject {
    /// Class index of the model (COCO index for the shipped model).
    pub class_id: u32,
    /// Human-readable class name, e.g. `"person"`.
    pub label: String,
    /// Confidence, 0..1.
    pub score: f32,
    /// `[x1, y1, x2, y2]`, normalised 0..1 of the original frame size.
    pub bbox: [f32; 4],
    /// Optional L2-normalised appearance vector for re-identification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// The detector's answer for one [`Frame`], published on `nvr.detections.<camera>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detections {
    /// Schema version.
    pub v: u32,
    /// Camera id.
    pub camera: String,
    /// Sequence number of the frame these detections belong to.
    pub seq: u64,
    /// Capture time of the frame, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Original frame width in pixels.
    pub width: u32,
    /// Original frame height in pixels.
    pub height: u32,
    /// Model name (file stem), e.g. `"yolox_nano"`.
    pub model: String,
    /// Inference backend that ran the model: `cpu`, `cuda`, ...
    pub backend: String,
    /// Id of the detector worker that produced this message.
    pub worker: String,
    /// Inference time in milliseconds (pre-processing, model, decoding).
    pub latency_ms: f32,
    /// Milliseconds between the frame's capture and its pull by the worker.
    pub queue_ms: f32,
    /// Detected objects.
    pub objects: Vec<DetectedObject>,
}

/// Lifecycle state of a per-camera track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackState {
    /// Seen too few times to be trusted yet.
    Tentative,
    /// An established track.
    Confirmed,
    /// Not matched in the latest update(s); predicted only.
    Lost,
}

/// One per-camera track inside [`CameraTracks`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Track id, unique per camera for all time.
    pub track_id: u64,
    /// Class label of the tracked object.
    pub label: String,
    /// Score of the latest matched detection, 0..1.
    pub score: f32,
    /// `[x1, y1, x2, y2]`, normalised 0..1 of the original frame.
    pub bbox: [f32; 4],
    /// Lifecycle state.
    pub state: TrackState,
    /// Number of detections matched to this track.
    pub hits: u32,
    /// Milliseconds since the track started (message time).
    pub age_ms: u64,
    /// Smoothed, L2-normalised appearance of the track, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// All tracks of one camera after one detections message, on `nvr.tracks.<camera>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraTracks {
    /// Schema version.
    pub v: u32,
    /// Camera id.
    pub camera: String,
    /// Sequence number of the frame that produced this update.
    pub seq: u64,
    /// Capture time of that frame, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Original frame width in pixels (maps normalised boxes back to the
    /// pixel coordinates a calibration is expressed in).
    pub width: u32,
    /// Original frame height in pixels.
    pub height: u32,
    /// Current tracks (tentative, confirmed and lost).
    pub tracks: Vec<Track>,
}

/// A camera track contributing to a global identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrackSource {
    /// Camera id.
    pub camera: String,
    /// Per-camera track id on that camera.
    pub track_id: u64,
}

/// One global (floor-plane) track inside [`SpatialTracks`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpatialTrack {
    /// Global identity, stable across cameras within the shard.
    pub global_id: u64,
    /// Floor id.
    pub floor: String,
    /// Position on the floor plan, metres.
    pub x_m: f32,
    /// Position on the floor plan, metres.
    pub y_m: f32,
    /// Velocity, metres per second.
    pub vx: f32,
    /// Velocity, metres per second.
    pub vy: f32,
    /// Class label.
    pub label: String,
    /// Confidence of the identity, 0..1.
    pub confidence: f32,
    /// Camera tracks currently bound to this identity.
    pub sources: Vec<TrackSource>,
    /// Time of the latest observation, ns since the Unix epoch.
    pub last_seen_ns: u64,
    /// Whether the identity is seen in this cycle, predicted through a short
    /// miss, or kept only for re-identification ("who is on the floor now"
    /// is `observed` + `coasting`). Read as `observed` when absent.
    #[serde(default)]
    pub state: SpatialState,
    /// For a `duplicate`: the identity on the floor it is a second view of
    /// (the person it stands for). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<u64>,
}

/// Whether a global identity is on the floor now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpatialState {
    /// Seen by at least one camera in this matching cycle.
    #[default]
    Observed,
    /// Not seen in this cycle but predicted to be in a camera's view (a
    /// detector miss or an occlusion), for at most `spatial.max_coast_seconds`;
    /// the position is the prediction.
    Coasting,
    /// Gone from view; kept only for re-identification. The position is
    /// where it was last seen, not where it is.
    Lost,
    /// Seen now (or missed for no longer than a person there would be
    /// `coasting`), but it has not moved since it appeared and only one camera
    /// has ever seen it although another one looks at that place
    /// (`spatial.tuning.static_after_s`, `static_m`), and that camera is
    /// unsure of it: its detections average less than
    /// `spatial.tuning.static_max_score` and come in fewer than
    /// `spatial.tuning.static_max_detected` of its frames:
    /// most likely a fixed false detection (a poster, a coat on a stand), not
    /// counted as a person on the floor.
    Static,
    /// Seen now within `spatial.tuning.merge_m` of an older identity on the
    /// floor (a smaller `global_id`, `observed` or `coasting`) that other
    /// cameras see, none of its own: most likely the same person seen from
    /// another view, not merged yet (that takes `spatial.tuning.merge_cycles`
    /// cycles). Not counted as a person on the floor: the older identity is
    /// (`duplicate_of`). A pair once marked stays marked up to 1.5 times
    /// `merge_m` apart.
    Duplicate,
}

/// Global tracks of one shard, published on `nvr.spatial.<shard>.tracks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpatialTracks {
    /// Schema version.
    pub v: u32,
    /// Shard name.
    pub shard: String,
    /// Time of this matching cycle (message time), ns since the Unix epoch.
    pub ts_ns: u64,
    /// Current global tracks.
    pub tracks: Vec<SpatialTrack>,
}

/// Kinds of [`Event`].
pub mod event_kind {
    /// A per-camera track was confirmed.
    pub const TRACK_STARTED: &str = "track_started";
    /// A per-camera track was removed.
    pub const TRACK_ENDED: &str = "track_ended";
    /// A global identity moved from one camera to another.
    pub const HANDOFF: &str = "handoff";
    /// A global identity was created.
    pub const GLOBAL_STARTED: &str = "global_started";
    /// A global identity expired.
    pub const GLOBAL_ENDED: &str = "global_ended";
    /// A camera's tracker started again after an earlier incarnation had
    /// published tracks: it starts empty, after `seq`, with track ids from
    /// `track_id`. Replay resets its tracker at the same point.
    pub const TRACKER_STARTED: &str = "tracker_started";
    /// A spatial shard started again after an earlier incarnation had
    /// published cycles up to `ts_ns`: it starts empty, with global ids from
    /// `global_id`. Replay resets its shard at the same point.
    pub const SHARD_STARTED: &str = "shard_started";
}

/// A lifecycle event, published on `nvr.events.<kind>.<scope>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version.
    pub v: u32,
    /// Event kind, see [`event_kind`].
    pub kind: String,
    /// Message time of the event, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Spatial shard, for spatial events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Camera, for per-camera events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// Global identity, for spatial events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_id: Option<u64>,
    /// Per-camera track id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    /// Camera the identity was last seen on (handoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_camera: Option<String>,
    /// Camera the identity appeared on (handoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_camera: Option<String>,
    /// Milliseconds between the last sighting on `from_camera` and the first on `to_camera`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_ms: Option<u64>,
    /// Class label of the object (`person`, ...), so a consumer can act on
    /// the event without looking the track up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Detection score (per-camera events) or identity confidence (spatial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Box `[x1, y1, x2, y2]` normalised 0..1 of the frame (per-camera events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f32; 4]>,
    /// Floor of the identity (spatial events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
    /// Floor position in metres (spatial events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_m: Option<[f32; 2]>,
    /// How long the track or identity existed, for `*_ended` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// `track_started`: the camera `seq` of the frame the track was
    /// confirmed on (its snapshot, `nvr.snapshots.<camera>.<seq>`);
    /// `tracker_started`: the last camera `seq` the previous incarnation
    /// published tracks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl Event {
    /// A new event of `kind` at `ts_ns` with every optional field empty.
    pub fn new(kind: &str, ts_ns: u64) -> Self {
        Event {
            v: SCHEMA_VERSION,
            kind: kind.to_string(),
            ts_ns,
            shard: None,
            camera: None,
            global_id: None,
            track_id: None,
            from_camera: None,
            to_camera: None,
            gap_ms: None,
            label: None,
            score: None,
            bbox: None,
            floor: None,
            position_m: None,
            duration_ms: None,
            seq: None,
        }
    }
}

/// Kinds of [`Checkpoint`].
pub mod checkpoint_kind {
    /// A camera's per-camera tracker (`nvr.state.tracker.<camera>`).
    pub const TRACKER: &str = "tracker";
    /// A spatial shard's tracker (`nvr.state.shard.<shard>`).
    pub const SHARD: &str = "shard";
}

/// A periodic copy of a live tracker's state, published on
/// `nvr.state.<kind>.<name>` so that a replay of any window can start from
/// the state the live tracker had (rather than from the start of the
/// stream): a tracker restored from it and given the same later input
/// publishes the same bytes. `state` is opaque to clients; its layout is
/// internal to nvr and versioned by `format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Schema version.
    pub v: u32,
    /// [`checkpoint_kind`]: `tracker` or `shard`.
    pub kind: String,
    /// Camera id (`tracker`) or shard name (`shard`).
    pub name: String,
    /// Message time the state is at: the last detections the tracker took
    /// (`tracker`), the last matching cycle run (`shard`).
    pub ts_ns: u64,
    /// `tracker`: seq of the last detections the tracker took; `shard`: 0.
    pub seq: u64,
    /// `tracker`: the `NVR_DETECTIONS` stream sequence of the last
    /// detections message its consumer delivered (a replay that starts every
    /// tracker from a checkpoint reads on from the earliest of these);
    /// `shard`: 0.
    pub stream_seq: u64,
    /// Layout version of `state`; a reader that does not know it ignores
    /// the checkpoint.
    pub format: u32,
    /// Which part of the state this message carries, from 0: a state larger
    /// than the server's `max_payload` goes in `parts` consecutive messages
    /// whose `state` slices, joined in part order, are the whole state.
    #[serde(default)]
    pub part: u32,
    /// How many parts the state was split into (1: this message holds all
    /// of it). A reader uses a checkpoint only once it has every part.
    #[serde(default = "one_part")]
    pub parts: u32,
    /// The tracker's state (MessagePack, layout `format`), or this part's
    /// slice of it.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

/// `parts` of a checkpoint written before states were split.
fn one_part() -> u32 {
    1
}
