//! Floor-plane, cross-camera spatial tracking core: projects each camera
//! track's foot point through the camera's homography, associates camera
//! tracks to global identities (floor distance, time gates and appearance),
//! keeps a constant-velocity floor motion model per identity, emits handoff
//! and lifecycle events, expires identities by TTL and caps their number.
//! Pure code, no I/O: the spatial actor wraps it.

pub mod bench;
pub mod homography;
mod tracker;

pub use homography::{CalibError, Homography};
pub use tracker::{CameraAgreement, IngestError, SpatialStats, SpatialTracker, StepOutput};

/// One calibrated camera of a shard (the default, an uncalibrated
/// placeholder, only stands in while a checkpoint is restored).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CameraGeometry {
    /// Camera id, as in `CameraTracks::camera`.
    pub id: String,
    /// Floor the camera looks at; global tracks carry it.
    pub floor: String,
    /// Image pixels (original frame size) to floor metres.
    pub homography: Homography,
}

/// Tuning of [`SpatialTracker`]. Defaults follow the seed's spatial settings.
///
/// The association's constants (every field not marked as set from the
/// `spatial` section) are what the configuration's `spatial.tuning` holds,
/// by the same names; the others come from `spatial.*` itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpatialParams {
    /// Longest blind gap (seconds) across which an identity can be handed to
    /// another camera track (`SPATIAL_MAX_GAP_SECONDS`).
    #[serde(skip)]
    pub max_gap_seconds: f64,
    /// An identity not seen for this long (seconds) is forgotten (`track_ttl_seconds`).
    #[serde(skip)]
    pub track_ttl_seconds: f64,
    /// Most identities held at once; the stalest is evicted beyond it (`max_tracks`).
    #[serde(skip)]
    pub max_tracks: usize,
    /// Use appearance embeddings when associating (`reid_enabled`).
    #[serde(skip)]
    pub reid_enabled: bool,
    /// Dimension every embedding must have (`spatial.embedding_dim`); others
    /// are stripped from their track and counted. `None`: any dimension up
    /// to `limits.max_embedding_len`, compared only with embeddings of the
    /// same dimension (never fixed by whichever message came first).
    #[serde(skip)]
    pub embedding_dim: Option<usize>,
    /// How often the shard publishes a matching cycle, milliseconds (`matching_interval_ms`).
    #[serde(skip)]
    pub matching_interval_ms: u64,
    /// Longest time (seconds) an unseen identity is published as `coasting`
    /// (predicted, still expected in view) before it is `lost`; after a
    /// camera that sends frames more slowly than the cycle, longer by two
    /// and a half times what its frame interval exceeds the cycle (one
    /// missed frame of that camera is bridged).
    #[serde(skip)]
    pub max_coast_seconds: f64,
    /// Floor distance (metres) within which two simultaneous observations can
    /// be the same person.
    pub gate_m: f64,
    /// Floor distance (metres) within which a camera track can join an
    /// identity another camera sees right now (overlapping views of one
    /// person agree to calibration and foot-point error).
    pub overlap_gate_m: f64,
    /// Weight of appearance dissimilarity in the association cost, 0..1.
    pub appearance_weight: f64,
    /// Walking speed (m/s) assumed when widening the gate across a blind gap.
    pub max_speed_mps: f64,
    /// Upper bound (metres) of the widened gate across a blind gap.
    pub max_handoff_radius_m: f64,
    /// Least cosine similarity for a handoff across a blind gap longer than
    /// `appearance_free_gap_ms` when both sides have embeddings.
    pub min_handoff_similarity: f64,
    /// Least cosine similarity for any association when both sides have embeddings.
    pub min_similarity: f64,
    /// A bound source whose appearance stays below this similarity to its
    /// identity for `unbind_cycles` is unbound (camera-tracker identity swap).
    pub unbind_similarity: f64,
    /// A bound source at least this similar to its identity is not checked
    /// against the other identities nearby.
    pub swap_check_similarity: f64,
    /// A bound source this much more similar to another identity that could
    /// be at its position than to its own counts as a camera-tracker swap.
    pub swap_margin: f64,
    /// Two identities seen by disjoint cameras closer than this (metres) with
    /// similar appearance for `merge_cycles` cycles are merged; until then
    /// the newer one is published `duplicate` (and stays so up to 1.5 times
    /// this apart). Cameras that have learned that they agree more closely
    /// use twice their 90% disagreement instead, 0.3 m at least.
    pub merge_m: f64,
    /// Least cosine similarity of two coinciding identities for a merge, when
    /// both have embeddings.
    pub merge_similarity: f64,
    /// Consecutive cycles before two coinciding identities are merged (and
    /// before a camera track joins the identity of a track it coincides
    /// with, see `pair_m`). With a camera slower than the cycle, its latest
    /// view within its frame interval takes part, and a cycle counts when
    /// either of the two views is new in it.
    pub merge_cycles: u32,
    /// Two camera tracks of different cameras closer than this (metres) on
    /// the floor, with no other track of either camera near, are one person:
    /// after `merge_cycles` cycles one joins the other's identity, where that
    /// leaves each identity seen at most once by each camera; at once when
    /// the other camera sees the moving track's identity elsewhere in the
    /// same cycle. 0 disables.
    pub pair_m: f64,
    /// Blind gaps shorter than this (ms) are bridged without the handoff
    /// similarity threshold.
    pub appearance_free_gap_ms: u64,
    /// Distance (metres) at which a source that disagrees with the other
    /// sources of its identity is considered inconsistent.
    pub unbind_m: f64,
    /// Consecutive inconsistent cycles after which that source is unbound;
    /// at once when it is more than `unbind_m` from where the identity's
    /// motion puts it while another of the identity's sources is near
    /// there (its camera tracker moved it to someone else).
    pub unbind_cycles: u32,
    /// Only camera tracks with at least this many hits are associated.
    pub min_hits: u32,
    /// Distance (metres) from the bottom centre of a person's box to the
    /// point below the person's axis, along the camera's viewing direction
    /// on the floor: a box's lowest point is the front of the feet, about a
    /// body radius nearer the camera than where the person stands.
    pub foot_offset_m: f64,
    /// An identity seen by one camera only (although another camera looks at
    /// that place) that has stayed within `static_m` metres of where it
    /// appeared for at least this long (seconds) is
    /// published as `static` (a fixed false detection) rather than as a
    /// person on the floor. 0 disables.
    pub static_after_s: f64,
    /// See `static_after_s`.
    pub static_m: f64,
    /// An identity whose detections by the camera that sees it average at
    /// least this score is a person standing still, never `static`: a
    /// detector is sure of a person in plain view and unsure of what it
    /// mistakes for one (a fixed false detection scores low and flickers).
    /// Above 1 disables (every such identity may be `static`).
    pub static_max_score: f64,
    /// An identity whose camera track (of the one camera that sees it) has
    /// had a detection in at least this share of its frames, over 5 s or
    /// more, is a person standing still, never `static`: a fixed false
    /// detection flickers. Above 1 disables.
    pub static_max_detected: f64,
    /// Quantile of the similarity between different people (identities
    /// observed at the same time) that a handoff across a blind gap must
    /// exceed, on top of `min_handoff_similarity`: where the appearance model cannot tell people
    /// apart (real footage, a colour descriptor), association leans on
    /// geometry and motion instead of reusing an identity for someone
    /// else. 0 disables.
    pub impostor_quantile: f64,
    /// Longest time (seconds) an identity that vanished right next to
    /// another one moving like it (a group member hidden behind it) is
    /// carried along with it; 0 disables.
    pub companion_max_s: f64,
    /// For this long (seconds) after an identity is born, its appearance
    /// as its camera has seen it is compared with the identities lost
    /// before it; one that clearly matches it, and could have got there
    /// along the way it was walking, takes it over (the person keeps their
    /// old id). 0 disables.
    pub relink_window_s: f64,
    /// Subtract each camera's mean embedding (its colour and viewpoint bias,
    /// shared by everyone it sees) before comparing appearance across cameras.
    pub camera_debias: bool,
    /// Learn, per camera pair and square of the floor, how far apart the
    /// two cameras put one person, and take that systematic part out of
    /// their floor positions (each moves half-way towards the other): the
    /// error of calibrations fitted from a few measured points.
    pub learn_offsets: bool,
    /// Position smoothing of the motion model, 0..1 (1 = take the measurement).
    pub alpha: f64,
    /// Velocity smoothing of the motion model, 0..1.
    pub beta: f64,
}

impl Default for SpatialParams {
    fn default() -> Self {
        SpatialParams {
            max_gap_seconds: 30.0,
            track_ttl_seconds: 300.0,
            max_tracks: 10_000,
            reid_enabled: true,
            embedding_dim: None,
            matching_interval_ms: 200,
            max_coast_seconds: 1.0,
            gate_m: 1.5,
            overlap_gate_m: 1.0,
            appearance_weight: 0.7,
            max_speed_mps: 1.5,
            max_handoff_radius_m: 12.0,
            min_handoff_similarity: 0.6,
            min_similarity: 0.2,
            unbind_similarity: 0.5,
            swap_check_similarity: 0.9,
            swap_margin: 0.15,
            merge_m: 0.8,
            merge_similarity: 0.15,
            merge_cycles: 3,
            pair_m: 0.25,
            appearance_free_gap_ms: 2_000,
            unbind_m: 1.5,
            unbind_cycles: 3,
            min_hits: 1,
            foot_offset_m: 0.2,
            camera_debias: false,
            learn_offsets: true,
            companion_max_s: 0.0,
            relink_window_s: 10.0,
            impostor_quantile: 0.95,
            static_after_s: 10.0,
            static_m: 0.75,
            static_max_score: 0.8,
            static_max_detected: 0.9,
            alpha: 0.7,
            beta: 0.3,
        }
    }
}
