//! Configuration: YAML file, environment variables and command-line flags,
//! merged with the precedence flag > environment > file > default.
//!
//! Loading works on a generic document tree: the file is parsed into a JSON
//! value, environment variables and flags are written over it by key path
//! (each write records where the value came from), and the result is
//! deserialised into [`Config`] with unknown keys refused. Every error is one
//! line naming the key, the value and why.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod cameras;
mod load;
#[cfg(test)]
mod tests;
mod validate;

pub use cameras::{Calibration, CameraConfig, FloorConfig, ShardConfig};
pub use load::{describe, env_value, load, Loaded, Overrides, ENV_VARS};
pub use validate::{camera_homography, host_port, parse_listen, redact_nats_url, validate};

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "data/config.yaml";

/// A configuration error: one line, process exits with code 2.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built-in default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
    /// A floor-plan file.
    FloorPlan(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
            Source::FloorPlan(p) => write!(f, "floor plan {}", p.display()),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Log filter level (`LOG_LEVEL`); `RUST_LOG` overrides with a full filter.
    pub log_level: String,
    /// Log line format (`LOG_FORMAT`): `text`, or `json` (one object per line).
    pub log_format: String,
    /// The HTTP API.
    pub api: ApiConfig,
    /// The NATS server and the streams on it.
    pub nats: NatsConfig,
    /// Detection service.
    pub detection: DetectionConfig,
    /// Per-camera tracking.
    pub tracking: TrackingConfig,
    /// Spatial (floor-plane) tracking.
    pub spatial: SpatialConfig,
    /// Bounds every received message is checked against.
    pub limits: LimitsConfig,
    /// Floors of the site.
    pub floors: Vec<FloorConfig>,
    /// Cameras.
    pub cameras: Vec<CameraConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            log_format: "text".into(),
            api: ApiConfig::default(),
            nats: NatsConfig::default(),
            detection: DetectionConfig::default(),
            tracking: TrackingConfig::default(),
            spatial: SpatialConfig::default(),
            limits: LimitsConfig::default(),
            floors: Vec::new(),
            cameras: Vec::new(),
        }
    }
}

/// HTTP API settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address of the main API (`/health`, `/api/v1/...`, `/metrics`);
    /// loopback by default: it serves people's floor positions.
    pub address: String,
    /// When set, every endpoint but `/health` requires
    /// `Authorization: Bearer <token>` (`NVR_API_TOKEN`). Never logged.
    pub token: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            address: "127.0.0.1:12000".into(),
            token: String::new(),
        }
    }
}

/// NATS settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Start and own a `nats-server` child with JetStream.
    pub embedded: bool,
    /// Server URL; with `embedded`, where the child listens.
    pub url: String,
    /// `nats-server` binary; empty = `data/bin/nats-server` (from `scripts/setup`), then PATH, then `/usr/sbin`.
    pub server_bin: String,
    /// JetStream store directory of the embedded server.
    pub store_dir: String,
    /// Replicas of every stream (clustered servers).
    pub replicas: usize,
    /// Stream limits.
    pub retention: RetentionConfig,
    /// Credentials file (`.creds`: JWT and NKey seed) for a server that needs one.
    pub credentials: String,
    /// User name (or put `user:password@` in the URL).
    pub user: String,
    /// Password of `user`. Never logged.
    pub password: String,
    /// Authentication token (or put `token@` in the URL). Never logged.
    pub token: String,
    /// Users and least-privilege permissions per role on the embedded
    /// server (`NATS_ROLES`): `on`, `off`, or `auto` = on when it listens on
    /// a non-loopback address (so it is never exposed without authentication).
    pub roles: String,
    /// File holding an NKey seed (`SU...`).
    pub nkey_seed_file: String,
    /// CA certificate(s) (PEM) to verify the server's TLS certificate.
    pub tls_ca_file: String,
    /// Client certificate (PEM) for mutual TLS.
    pub tls_cert_file: String,
    /// Private key (PEM) of the client certificate.
    pub tls_key_file: String,
    /// MQTT listener of the embedded server (`host:port`, e.g.
    /// `0.0.0.0:1883`); empty = none. MQTT clients (Home Assistant) then
    /// read NATS subjects as topics (`nvr.json.events.handoff.lobby` is
    /// `nvr/json/events/handoff/lobby`). Turns `json_events` on.
    pub mqtt_listen: String,
    /// Mirror every event as JSON on `nvr.json.events.<kind>.<scope>`
    /// (for MQTT and tools that do not read MessagePack).
    pub json_events: bool,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            embedded: true,
            url: "nats://127.0.0.1:4222".into(),
            server_bin: String::new(),
            store_dir: "data/nats".into(),
            replicas: 1,
            retention: RetentionConfig::default(),
            credentials: String::new(),
            user: String::new(),
            password: String::new(),
            token: String::new(),
            roles: "auto".into(),
            nkey_seed_file: String::new(),
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            mqtt_listen: String::new(),
            json_events: false,
        }
    }
}

impl NatsConfig {
    /// Whether events are mirrored as JSON.
    pub fn json_events_on(&self) -> bool {
        self.json_events || !self.mqtt_listen.is_empty()
    }
}

/// Stream limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Frames waiting longer than this expire (counted as dropped).
    pub frames_max_age_ms: u64,
    /// Frames waiting per camera before new ones are refused (counted).
    pub frames_per_camera: i64,
    /// Age limit of detections, tracks, spatial and events.
    pub max_age_hours: f64,
    /// Byte limit per file-backed stream.
    pub max_bytes_mb: i64,
    /// Byte limit of the event snapshots (frame JPEGs of `track_started`
    /// events, `NVR_SNAPSHOTS`); the oldest go first.
    pub snapshots_max_mb: i64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            frames_max_age_ms: 10_000,
            frames_per_camera: 50,
            max_age_hours: 24.0,
            max_bytes_mb: 1024,
            snapshots_max_mb: 256,
        }
    }
}

/// Detection service settings (the seed's `detection:` block).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Run detector workers in this process (`DETECTION_EMBEDDED`).
    pub embedded: bool,
    /// HTTP address of a standalone detection node (`DETECTION_ADDR`).
    pub address: String,
    /// Inference backend (`DETECTION_BACKEND`).
    pub backend: String,
    /// GPU index (`DETECTION_DEVICE_ID`).
    pub device_id: i32,
    /// Fall back to CPU (with a warning) when the backend is unavailable.
    pub allow_cpu_fallback: bool,
    /// Directory of model files (`DETECTION_MODELS_PATH`).
    pub models_path: String,
    /// Model file stem in `models_path`, or a path to an `.onnx` file.
    pub model: String,
    /// Output layout of the model: `yolox` or `yolov8`.
    pub model_type: String,
    /// Square model input size in pixels.
    pub input_size: u32,
    /// Appearance model (`DETECTION_REID_MODEL`): a file stem in
    /// `models_path` or a path to an `.onnx` file taking person crops
    /// `[N,3,H,W]` and giving `[N,D]` embeddings; empty = the colour
    /// descriptor alone. Its embedding is appended to the colour descriptor.
    pub reid_model: String,
    /// Share of the appearance model in the cosine similarity of two
    /// embeddings (the colour descriptor has the rest), 0..1.
    pub reid_weight: f32,
    /// Detector workers in this process; 0 = automatic (see [`DetectionConfig::effective_workers`]).
    pub workers: usize,
    /// ONNX Runtime threads per worker; 0 = cores / workers.
    pub threads: usize,
    /// Frames pulled per request.
    pub batch_size: usize,
    /// Frames per model call (`DETECTION_MAX_BATCH`); 0 = automatic: 1 on
    /// the CPU, measured at warm-up on an accelerator.
    pub max_batch: usize,
    /// How long a worker waits for more frames to fill a batch, ms.
    pub batch_window_ms: u64,
    /// cuDNN convolution search on CUDA and TensorRT: `heuristic` (fast
    /// first inference), `exhaustive` or `default`.
    pub cuda_conv_search: String,
    /// TensorRT: build FP16 engines.
    pub trt_fp16: bool,
    /// TensorRT: engine cache directory (empty: `<models_path>/trt-cache`).
    pub trt_cache_dir: String,
    /// Detection fps of a camera that sets none (`DETECTION_DEFAULT_FPS`).
    pub default_fps: f64,
    /// Minimum score reported (`DETECTION_MIN_CONFIDENCE`).
    pub min_confidence: f32,
    /// IoU threshold of non-maximum suppression.
    pub nms_iou: f32,
    /// Labels to report; empty = all.
    pub labels: Vec<String>,
    /// Frames older than this when pulled are skipped and counted.
    pub max_frame_age_ms: u64,
    /// JPEG quality of published frames.
    pub jpeg_quality: u8,
    /// Connecting to NATS and waiting for detection capacity.
    pub timeout_seconds: u64,
    /// Attempts before giving up on a connection.
    pub max_retries: u32,
    /// Delay between attempts.
    pub retry_delay_ms: u64,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            embedded: true,
            address: "localhost:12021".into(),
            backend: "cpu".into(),
            device_id: 0,
            allow_cpu_fallback: false,
            models_path: "/data/models".into(),
            model: "yolox_nano_dynamic".into(),
            model_type: "yolox".into(),
            input_size: 416,
            reid_model: String::new(),
            reid_weight: 0.5,
            workers: 0,
            threads: 0,
            batch_size: 4,
            max_batch: 0,
            batch_window_ms: 3,
            cuda_conv_search: "heuristic".into(),
            trt_fp16: true,
            trt_cache_dir: String::new(),
            default_fps: 5.0,
            min_confidence: 0.5,
            nms_iou: 0.45,
            labels: Vec::new(),
            max_frame_age_ms: 2000,
            jpeg_quality: 85,
            timeout_seconds: 30,
            max_retries: 3,
            retry_delay_ms: 1000,
        }
    }
}

impl DetectionConfig {
    /// Detector workers to start: `workers`, or with 0 two per core (up to 8)
    /// on the CPU, where parallel single-threaded sessions outrun one
    /// multi-threaded session on a small model, and one per two cores (2 to
    /// 8) on an accelerator, so that decoding, NMS and publishing of some
    /// batches overlap the inference of others.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        if self.backend == "cpu" {
            // Two single-threaded sessions per core: while one waits on NATS
            // (publish and ack round trips) the other keeps the core busy.
            (2 * std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2))
            .clamp(1, 8)
        } else {
            (std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                / 2)
            .clamp(2, 8)
        }
    }

    /// The TensorRT engine cache directory.
    pub fn trt_cache_path(&self) -> PathBuf {
        if self.trt_cache_dir.is_empty() {
            Path::new(&self.models_path).join("trt-cache")
        } else {
            PathBuf::from(&self.trt_cache_dir)
        }
    }

    /// The model file this configuration names.
    pub fn model_path(&self) -> PathBuf {
        self.resolve(&self.model)
    }

    /// The appearance model file, when one is configured.
    pub fn reid_model_path(&self) -> Option<PathBuf> {
        (!self.reid_model.trim().is_empty()).then(|| self.resolve(self.reid_model.trim()))
    }

    /// Every model file the detector loads with this configuration: the
    /// detection model, then the appearance model when one is set.
    pub fn model_files(&self) -> Vec<ModelFile<'_>> {
        let mut out = vec![ModelFile {
            what: "detection model",
            key: "detection.model",
            value: &self.model,
            path: self.model_path(),
            fix: "run scripts/setup or set detection.models_path",
        }];
        if let Some(path) = self.reid_model_path() {
            out.push(ModelFile {
                what: "appearance model",
                key: "detection.reid_model",
                value: &self.reid_model,
                path,
                fix: "run scripts/setup, set detection.models_path, or set detection.reid_model to \"\"",
            });
        }
        out
    }

    /// `name` as a model file: a path when it ends in `.onnx` or names a
    /// directory, else a file stem in `models_path`.
    fn resolve(&self, name: &str) -> PathBuf {
        if name.ends_with(".onnx") || name.contains('/') {
            PathBuf::from(name)
        } else {
            Path::new(&self.models_path).join(format!("{name}.onnx"))
        }
    }
}

/// A model file the detector loads, for the checks made before it starts.
#[derive(Debug)]
pub struct ModelFile<'a> {
    /// What it is, for messages ("detection model").
    pub what: &'static str,
    /// The configuration key that names it.
    pub key: &'static str,
    /// That key's value.
    pub value: &'a str,
    /// The file it resolves to.
    pub path: PathBuf,
    /// What to do when the file is missing.
    pub fix: &'static str,
}

/// Per-camera tracker settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Hold detections this long to put out-of-order arrivals back in order.
    pub reorder_window_ms: u64,
    /// Message time between two checkpoints of each tracker's and spatial
    /// shard's state (`nvr.state.*`), where `nvr replay` starts; 0 = none.
    pub checkpoint_seconds: u64,
    /// ByteTrack first-stage score.
    pub high_threshold: f32,
    /// ByteTrack second-stage score.
    pub low_threshold: f32,
    /// Minimum score to start a track confirmed after `min_hits` matches.
    pub new_track_threshold: f32,
    /// Minimum score to start a track at all; below `new_track_threshold` it
    /// needs `low_birth_hits` matches (people the detector scores low).
    pub birth_threshold: f32,
    /// Matches a track born below `new_track_threshold` needs to be confirmed.
    pub low_birth_hits: u32,
    /// Consecutive misses a tentative track survives.
    pub tentative_max_misses: u32,
    /// Minimum IoU in the first association stage.
    pub match_iou: f32,
    /// Matches before a track is confirmed.
    pub min_hits: u32,
    /// A track unmatched this long is removed.
    pub max_lost_ms: u64,
    /// Smoothing of a track's published appearance embedding (0 = the latest
    /// detection's; the spatial tracker averages per identity itself).
    pub embedding_momentum: f32,
    /// Smoothing of the appearance a track is matched on (0 = the latest
    /// detection's): one frame whose box takes in a passing neighbour does
    /// not let the neighbour take the track.
    pub appearance_momentum: f32,
    /// Least appearance similarity between a track and a detection for any
    /// match (a lower one is another person: no identity swap on box
    /// overlap alone); 0 turns it off.
    pub appearance_gate: f32,
    /// A detection that overlaps the predicted box of a track which missed
    /// its latest update(s) less than this (IoU) may be someone else ...
    pub weak_overlap_iou: f32,
    /// ... and such a match needs at least this appearance similarity; 0 =
    /// only `appearance_gate`.
    pub weak_overlap_gate: f32,
    /// Own-person matches a camera's tracker samples before its appearance
    /// gates follow what they score: the gates are set for embeddings on
    /// which one person's frames score a median cosine of
    /// `appearance_reference_median` (the colour descriptor), and on
    /// lower-scoring ones each gate is scaled down by the ratio, never up.
    /// 0 = fixed gates.
    pub appearance_adapt_samples: u64,
    /// The median own-person cosine the appearance gates are set for.
    pub appearance_reference_median: f32,
    /// Least appearance similarity for a track that missed a frame to take
    /// back a detection that no longer overlaps it (after an occlusion);
    /// above 1 turns it off.
    pub reid_similarity: f32,
    /// How far, in box heights per second since it was last seen, such a
    /// detection may be from the track's last box.
    pub reid_speed: f32,
    /// Two tracks whose boxes overlap at least this (IoU) are watched as a
    /// crossing; when their boxes part and each sits where the other's
    /// motion led, they exchange ids (one person passed in front of the
    /// other and the tracks swapped them). Above 1 turns it off.
    pub crossing_iou: f32,
    /// How much better (box heights, both tracks together) the exchanged
    /// pairing must fit the motions before the crossing.
    pub crossing_margin: f32,
    /// How much less alike (summed cosine, before against after) the
    /// exchanged pairing may look than the kept one.
    pub crossing_appearance_tolerance: f32,
    /// A crossing whose boxes do not part within this long is given up.
    pub crossing_max_ms: u64,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        let p = nvr_actors::track::TrackerParams::default();
        TrackingConfig {
            reorder_window_ms: 400,
            checkpoint_seconds: 60,
            high_threshold: p.high_threshold,
            low_threshold: p.low_threshold,
            new_track_threshold: p.new_track_threshold,
            birth_threshold: p.birth_threshold,
            low_birth_hits: p.low_birth_hits,
            tentative_max_misses: p.tentative_max_misses,
            match_iou: p.match_iou,
            min_hits: p.min_hits,
            max_lost_ms: p.max_lost_ms,
            embedding_momentum: p.embedding_momentum,
            appearance_momentum: p.appearance_momentum,
            appearance_gate: p.appearance_gate,
            weak_overlap_iou: p.weak_overlap_iou,
            weak_overlap_gate: p.weak_overlap_gate,
            appearance_adapt_samples: p.appearance_adapt_samples,
            appearance_reference_median: p.appearance_reference_median,
            reid_similarity: p.reid_similarity,
            reid_speed: p.reid_speed,
            crossing_iou: p.crossing_iou,
            crossing_margin: p.crossing_margin,
            crossing_appearance_tolerance: p.crossing_appearance_tolerance,
            crossing_max_ms: p.crossing_max_ms,
        }
    }
}

impl TrackingConfig {
    /// Tracker parameters for the core.
    pub fn params(&self) -> nvr_actors::track::TrackerParams {
        nvr_actors::track::TrackerParams {
            high_threshold: self.high_threshold,
            low_threshold: self.low_threshold,
            new_track_threshold: self.new_track_threshold,
            birth_threshold: self.birth_threshold,
            low_birth_hits: self.low_birth_hits,
            tentative_max_misses: self.tentative_max_misses,
            match_iou: self.match_iou,
            min_hits: self.min_hits,
            max_lost_ms: self.max_lost_ms,
            embedding_momentum: self.embedding_momentum,
            appearance_momentum: self.appearance_momentum,
            appearance_gate: self.appearance_gate,
            weak_overlap_iou: self.weak_overlap_iou,
            weak_overlap_gate: self.weak_overlap_gate,
            appearance_adapt_samples: self.appearance_adapt_samples,
            appearance_reference_median: self.appearance_reference_median,
            reid_similarity: self.reid_similarity,
            reid_speed: self.reid_speed,
            crossing_iou: self.crossing_iou,
            crossing_margin: self.crossing_margin,
            crossing_appearance_tolerance: self.crossing_appearance_tolerance,
            crossing_max_ms: self.crossing_max_ms,
            ..Default::default()
        }
    }
}

/// Spatial tracking settings (the seed's `spatial:` block).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpatialConfig {
    /// Run spatial shards in this process (`SPATIAL_EMBEDDED`).
    pub embedded: bool,
    /// HTTP address of a standalone spatial node (`SPATIAL_ADDR`).
    pub address: String,
    /// Attach and use appearance embeddings (`SPATIAL_REID_ENABLED`).
    pub reid_enabled: bool,
    /// Handoff window across a blind gap (`SPATIAL_MAX_GAP_SECONDS`).
    pub max_gap_seconds: f64,
    /// Global track time-to-live (`SPATIAL_TRACK_TTL_SECONDS`).
    pub track_ttl_seconds: f64,
    /// Cap on concurrent global tracks (`SPATIAL_MAX_TRACKS`).
    pub max_tracks: usize,
    /// Period of the matching cycle.
    pub matching_interval_ms: u64,
    /// Longest time an unseen identity is published as `coasting` (predicted,
    /// still expected in view) before it becomes `lost`.
    pub max_coast_seconds: f64,
    /// Dimension every appearance embedding must have; 0 = any dimension up
    /// to `limits.max_embedding_len` (embeddings of different dimensions are
    /// never compared).
    pub embedding_dim: usize,
    /// The association's tuning constants (see `spatial.tuning` in
    /// config/config.yaml for what each one does).
    pub tuning: SpatialTuning,
    /// Shards; empty = one per floor.
    pub shards: Vec<ShardConfig>,
    /// The shard a `nvr spatial` node runs (`SPATIAL_SHARD`).
    pub shard: String,
    /// Cameras of that shard (`SPATIAL_CAMERAS`, comma-separated).
    pub cameras: Vec<String>,
}

impl Default for SpatialConfig {
    fn default() -> Self {
        SpatialConfig {
            embedded: true,
            address: "localhost:12020".into(),
            reid_enabled: true,
            max_gap_seconds: 30.0,
            track_ttl_seconds: 300.0,
            max_tracks: 10_000,
            matching_interval_ms: 200,
            max_coast_seconds: 1.0,
            embedding_dim: 0,
            tuning: SpatialTuning::default(),
            shards: Vec::new(),
            shard: String::new(),
            cameras: Vec::new(),
        }
    }
}

/// The association's tuning constants (`spatial.tuning`): the fields of
/// [`nvr_actors::spatial::SpatialParams`] that are not set from `spatial.*`.
pub type SpatialTuning = nvr_actors::spatial::SpatialParams;

impl NatsConfig {
    /// Whether the embedded server requires a user per role: `on`, or
    /// `auto` with a listen address other than loopback.
    pub fn roles_enabled(&self) -> bool {
        match self.roles.as_str() {
            "on" => true,
            "off" => false,
            _ => {
                let first = self.url.split(',').next().unwrap_or("").trim();
                let rest = first.split_once("://").map(|(_, r)| r).unwrap_or(first);
                let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
                !matches!(
                    host_port(rest).map(|(h, _)| h).as_deref(),
                    Ok("127.0.0.1" | "localhost" | "::1" | "[::1]")
                )
            }
        }
    }
}

/// Bounds every received message is checked against (see `nvr_actors::guard`).
/// A message outside them is refused with one log line and counted by
/// reason in the status API and `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Refuse message timestamps further ahead of this machine's clock.
    pub max_ahead_ms: u64,
    /// Refuse message timestamps further behind this machine's clock.
    pub max_behind_ms: u64,
    /// Most objects one detections or tracks message may carry.
    pub max_objects: usize,
    /// Longest appearance embedding accepted.
    pub max_embedding_len: usize,
    /// A sequence number further than this from a camera's current one
    /// starts a new ordering for that camera.
    pub max_seq_jump: u64,
    /// Box overshoot beyond the frame (normalised) that is clipped rather
    /// than refused.
    pub bbox_tolerance: f32,
    /// Most pixels a frame or image header may declare.
    pub max_image_pixels: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = nvr_actors::guard::Limits::default();
        LimitsConfig {
            max_ahead_ms: l.max_ahead_ns / 1_000_000,
            max_behind_ms: l.max_behind_ns / 1_000_000,
            max_objects: l.max_objects,
            max_embedding_len: l.max_embedding_len,
            max_seq_jump: l.max_seq_jump,
            bbox_tolerance: l.bbox_tolerance,
            max_image_pixels: l.max_image_pixels,
        }
    }
}

impl LimitsConfig {
    /// The limits for the actors.
    pub fn limits(&self) -> nvr_actors::guard::Limits {
        nvr_actors::guard::Limits {
            max_ahead_ns: self.max_ahead_ms.saturating_mul(1_000_000),
            max_behind_ns: self.max_behind_ms.saturating_mul(1_000_000),
            max_objects: self.max_objects,
            max_embedding_len: self.max_embedding_len,
            max_seq_jump: self.max_seq_jump,
            bbox_tolerance: self.bbox_tolerance,
            max_image_pixels: self.max_image_pixels,
        }
    }
}

/// A file of the `--floor-plans` directory: one floor and its cameras.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FloorPlanFile {
    id: String,
    #[serde(default)]
    size_m: [f64; 2],
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    cameras: Vec<CameraConfig>,
}
