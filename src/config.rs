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
    /// Least appearance similarity for a track that missed a frame to take
    /// back a detection that no longer overlaps it (after an occlusion);
    /// above 1 turns it off.
    pub reid_similarity: f32,
    /// How far, in box heights per second since it was last seen, such a
    /// detection may be from the track's last box.
    pub reid_speed: f32,
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
            appearance_gate: p.appearance_gate,
            weak_overlap_iou: p.weak_overlap_iou,
            weak_overlap_gate: p.weak_overlap_gate,
            reid_similarity: p.reid_similarity,
            reid_speed: p.reid_speed,
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
            appearance_gate: self.appearance_gate,
            weak_overlap_iou: self.weak_overlap_iou,
            weak_overlap_gate: self.weak_overlap_gate,
            reid_similarity: self.reid_similarity,
            reid_speed: self.reid_speed,
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

/// Every tuning value finite and in its range.
fn check_tuning(t: &SpatialTuning) -> Result<(), ConfigError> {
    let unit = [
        ("appearance_weight", t.appearance_weight),
        ("impostor_quantile", t.impostor_quantile),
        ("alpha", t.alpha),
        ("beta", t.beta),
    ];
    for (k, v) in unit {
        if !(0.0..=1.0).contains(&v) {
            return err(format!("spatial.tuning.{k} = {v}: must be within 0..1"));
        }
    }
    let non_negative = [
        ("gate_m", t.gate_m),
        ("max_speed_mps", t.max_speed_mps),
        ("max_handoff_radius_m", t.max_handoff_radius_m),
        ("min_handoff_similarity", t.min_handoff_similarity),
        ("min_similarity", t.min_similarity),
        ("unbind_similarity", t.unbind_similarity),
        ("swap_check_similarity", t.swap_check_similarity),
        ("swap_margin", t.swap_margin),
        ("merge_m", t.merge_m),
        ("pair_m", t.pair_m),
        ("merge_similarity", t.merge_similarity),
        ("unbind_m", t.unbind_m),
        ("foot_offset_m", t.foot_offset_m),
        ("static_after_s", t.static_after_s),
        ("static_m", t.static_m),
        ("static_max_score", t.static_max_score),
        ("static_max_detected", t.static_max_detected),
        ("overlap_gate_m", t.overlap_gate_m),
        ("companion_max_s", t.companion_max_s),
    ];
    for (k, v) in non_negative {
        if !(v >= 0.0 && v.is_finite()) {
            return err(format!(
                "spatial.tuning.{k} = {v}: must be a finite number >= 0"
            ));
        }
    }
    Ok(())
}

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

/// A spatial shard: a named set of cameras.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// Shard name (subject token).
    pub name: String,
    /// Cameras it tracks.
    pub cameras: Vec<String>,
}

/// A floor plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FloorConfig {
    /// Floor id.
    pub id: String,
    /// Width and depth in metres.
    #[serde(default)]
    pub size_m: [f64; 2],
    /// Optional plan image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// A camera.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Camera id (subject token).
    pub id: String,
    /// Source URL (rtsp, http, file); absent = detections come from elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Loop a file source.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// RTSP transport (`tcp` or `udp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_transport: Option<String>,
    /// Floor the camera looks at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
    /// Per-camera detection settings.
    #[serde(default)]
    pub detection: CameraDetection,
    /// Image-to-floor calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// Per-camera detection settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CameraDetection {
    /// Frames per second sent to detection; absent = `detection.default_fps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Minimum score; absent = `detection.min_confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f32>,
}

/// Pixel-to-floor calibration: correspondences or an explicit matrix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// At least 4 image-pixel to floor-metre correspondences.
    #[serde(default)]
    pub points: Vec<CalibrationPoint>,
    /// An explicit 3x3 homography (image pixels to floor metres).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homography: Option<[[f64; 3]; 3]>,
}

/// One correspondence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationPoint {
    /// Pixel `[u, v]` in the original frame.
    pub image: [f64; 2],
    /// Floor position `[x, y]` in metres.
    pub floor: [f64; 2],
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

/// What the command line asked for, as key-path overrides.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`
    pub config_path: Option<PathBuf>,
    /// (key path, value, flag name)
    pub values: Vec<(String, Value, String)>,
    /// `--floor-plans`
    pub floor_plans: Option<PathBuf>,
}

impl Overrides {
    /// Records `--flag value` for key `path`.
    pub fn set(&mut self, path: &str, value: Value, flag: &str) {
        self.values.push((path.into(), value, flag.into()));
    }
}

/// A loaded configuration and where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Source of each key path that did not come from the default.
    pub sources: BTreeMap<String, Source>,
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
}

/// Environment variables the seed names and the key path each one sets;
/// every other key gets its path in capitals (see [`crate::envvars`]).
pub const ENV_VARS: &[(&str, &str)] = &[
    ("LOG_LEVEL", "log_level"),
    ("LOG_FORMAT", "log_format"),
    ("NVR_API_ADDR", "api.address"),
    ("NVR_API_TOKEN", "api.token"),
    ("NATS_URL", "nats.url"),
    ("NATS_EMBEDDED", "nats.embedded"),
    ("NATS_STORE_DIR", "nats.store_dir"),
    ("NATS_CREDS", "nats.credentials"),
    ("NATS_USER", "nats.user"),
    ("NATS_PASSWORD", "nats.password"),
    ("NATS_TOKEN", "nats.token"),
    ("NATS_NKEY_SEED_FILE", "nats.nkey_seed_file"),
    ("NATS_ROLES", "nats.roles"),
    ("NATS_CA_FILE", "nats.tls_ca_file"),
    ("NATS_CERT_FILE", "nats.tls_cert_file"),
    ("NATS_KEY_FILE", "nats.tls_key_file"),
    ("NATS_MQTT_LISTEN", "nats.mqtt_listen"),
    ("NATS_JSON_EVENTS", "nats.json_events"),
    ("DETECTION_ADDR", "detection.address"),
    ("DETECTION_EMBEDDED", "detection.embedded"),
    ("DETECTION_BACKEND", "detection.backend"),
    ("DETECTION_DEVICE_ID", "detection.device_id"),
    ("DETECTION_DEFAULT_FPS", "detection.default_fps"),
    ("DETECTION_MIN_CONFIDENCE", "detection.min_confidence"),
    ("DETECTION_MODELS_PATH", "detection.models_path"),
    ("DETECTION_MODEL", "detection.model"),
    ("DETECTION_INPUT_SIZE", "detection.input_size"),
    ("DETECTION_REID_MODEL", "detection.reid_model"),
    ("DETECTION_REID_WEIGHT", "detection.reid_weight"),
    ("DETECTION_WORKERS", "detection.workers"),
    ("DETECTION_THREADS", "detection.threads"),
    ("DETECTION_MAX_BATCH", "detection.max_batch"),
    ("DETECTION_BATCH_WINDOW_MS", "detection.batch_window_ms"),
    ("DETECTION_CUDA_CONV_SEARCH", "detection.cuda_conv_search"),
    ("DETECTION_TRT_FP16", "detection.trt_fp16"),
    ("DETECTION_TRT_CACHE_DIR", "detection.trt_cache_dir"),
    ("SPATIAL_ADDR", "spatial.address"),
    ("SPATIAL_EMBEDDED", "spatial.embedded"),
    ("SPATIAL_REID_ENABLED", "spatial.reid_enabled"),
    ("SPATIAL_MAX_GAP_SECONDS", "spatial.max_gap_seconds"),
    ("SPATIAL_TRACK_TTL_SECONDS", "spatial.track_ttl_seconds"),
    ("SPATIAL_MAX_TRACKS", "spatial.max_tracks"),
    ("SPATIAL_SHARD", "spatial.shard"),
    ("SPATIAL_CAMERAS", "spatial.cameras"),
];

/// Parses an environment variable's text as the type of the field it sets
/// (read from the defaults): text stays text (a shard or camera named `1`),
/// a boolean accepts true/yes/on/1 and false/no/off/0, a number must parse,
/// a list is comma-separated. A field without a default value (an optional
/// one) gets the natural type of the text. A value that does not fit is
/// passed on as text, so the error names the key, the variable and the type.
pub fn env_value(path: &str, text: &str) -> Value {
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let target = path
        .split('.')
        .try_fold(&defaults, |v, k| v.get(k))
        .unwrap_or(&Value::Null);
    let t = text.trim();
    let as_text = || Value::String(text.to_string());
    match target {
        Value::String(_) => as_text(),
        Value::Bool(_) => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Value::Bool(true),
            "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => as_text(),
        },
        Value::Number(_) => guess_scalar(t)
            .filter(Value::is_number)
            .unwrap_or_else(as_text),
        Value::Array(_) => Value::Array(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        _ => guess_scalar(t).unwrap_or_else(as_text),
    }
}

/// A boolean or a finite number, when `t` reads as one.
fn guess_scalar(t: &str) -> Option<Value> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => return Some(Value::Bool(true)),
        "false" | "no" | "off" => return Some(Value::Bool(false)),
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::from(i));
    }
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::from)
}

/// Writes `value` at dotted `path` in `doc`, creating maps on the way.
fn set_path(doc: &mut Value, path: &str, value: Value) -> Result<(), ConfigError> {
    let mut cur = doc;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            if cur.is_null() {
                *cur = Value::Object(Default::default());
            } else {
                return err(format!(
                    "{}: expected a map, found {}",
                    parts[..i].join("."),
                    short(cur)
                ));
            }
        }
        let map = cur
            .as_object_mut()
            .ok_or_else(|| ConfigError(path.into()))?;
        if i + 1 == parts.len() {
            map.insert((*part).to_string(), value);
            return Ok(());
        }
        cur = map.entry((*part).to_string()).or_insert(Value::Null);
    }
    Ok(())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..57])
    } else {
        s
    }
}

/// Every leaf key path of a document.
fn leaf_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(v, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Reads a YAML file into a document tree.
fn read_yaml(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    parse_yaml(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

fn parse_yaml(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| one_line(&e.to_string()))?;
    match v {
        Value::Null => Ok(Value::Object(Default::default())),
        Value::Object(_) => Ok(v),
        other => Err(format!("top level must be a map, found {}", short(&other))),
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Loads the configuration: file (from `--config`, `NVR_CONFIG` or the
/// default path), then environment, then flags; then validates it.
pub fn load(ov: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let mut sources = BTreeMap::new();
    let (path, explicit) = match (&ov.config_path, env("NVR_CONFIG")) {
        (Some(p), _) => (p.clone(), true),
        (None, Some(p)) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let (mut doc, file) = if path.exists() {
        let doc = read_yaml(&path)?;
        let mut leaves = Vec::new();
        leaf_paths(&doc, "", &mut leaves);
        for l in leaves {
            sources.insert(l, Source::File(path.clone()));
        }
        (doc, Some(path.clone()))
    } else if explicit {
        return err(format!(
            "config file {} does not exist (from {})",
            path.display(),
            if ov.config_path.is_some() {
                "--config"
            } else {
                "NVR_CONFIG"
            }
        ));
    } else {
        (Value::Object(Default::default()), None)
    };

    for e in crate::envvars::all() {
        let (var, key) = (&e.var.as_str(), &e.key.as_str());
        if let Some(text) = env(var) {
            set_path(&mut doc, key, env_value(key, &text))?;
            sources.insert((*key).to_string(), Source::Env((*var).to_string()));
            if *key == "nats.url" && env("NATS_EMBEDDED").is_none() {
                // Naming a server means using it, not starting one.
                set_path(&mut doc, "nats.embedded", Value::Bool(false))?;
                sources.insert("nats.embedded".into(), Source::Env((*var).to_string()));
            }
        }
    }
    for (key, value, flag) in &ov.values {
        set_path(&mut doc, key, value.clone())?;
        sources.insert(key.clone(), Source::Flag(flag.clone()));
    }
    if let Some(dir) = &ov.floor_plans {
        merge_floor_plans(&mut doc, dir, &mut sources)?;
    }

    let config: Config = serde_path_to_error::deserialize(doc.clone()).map_err(|e| {
        let key = e.path().to_string();
        let source = sources
            .get(&key)
            .map(|s| format!(" (from {s})"))
            .unwrap_or_default();
        let value = lookup(&doc, &key)
            .map(|v| format!(" = {}", short(v)))
            .unwrap_or_default();
        ConfigError(format!(
            "{key}{value}: {}{source}",
            one_line(&e.inner().to_string())
        ))
    })?;
    validate(&config)?;
    Ok(Loaded {
        config,
        sources,
        file,
    })
}

fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = doc;
    for part in path.split('.') {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => {
                let idx = part.trim_start_matches('[').trim_end_matches(']');
                a.get(idx.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// Adds the floors and cameras of every `*.yaml` in `dir` to the document.
fn merge_floor_plans(
    doc: &mut Value,
    dir: &Path,
    sources: &mut BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError(format!("--floor-plans {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    if files.is_empty() {
        return err(format!(
            "--floor-plans {}: no .yaml floor files in the directory",
            dir.display()
        ));
    }
    for f in files {
        let v = read_yaml(&f)?;
        let plan: FloorPlanFile = serde_path_to_error::deserialize(v).map_err(|e| {
            ConfigError(format!(
                "{}: {}: {}",
                f.display(),
                e.path(),
                one_line(&e.inner().to_string())
            ))
        })?;
        let floor = FloorConfig {
            id: plan.id.clone(),
            size_m: plan.size_m,
            plan: plan.plan.clone(),
        };
        push_array(
            doc,
            "floors",
            serde_json::to_value(floor).unwrap_or(Value::Null),
        )?;
        sources.insert("floors".into(), Source::FloorPlan(f.clone()));
        for mut cam in plan.cameras {
            if cam.floor.is_none() {
                cam.floor = Some(plan.id.clone());
            }
            push_array(
                doc,
                "cameras",
                serde_json::to_value(cam).unwrap_or(Value::Null),
            )?;
            sources.insert("cameras".into(), Source::FloorPlan(f.clone()));
        }
    }
    Ok(())
}

fn push_array(doc: &mut Value, key: &str, item: Value) -> Result<(), ConfigError> {
    let map = doc
        .as_object_mut()
        .ok_or_else(|| ConfigError("top level must be a map".into()))?;
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    match entry {
        Value::Array(a) => {
            a.push(item);
            Ok(())
        }
        Value::Null => {
            *entry = Value::Array(vec![item]);
            Ok(())
        }
        other => err(format!("{key}: expected a list, found {}", short(other))),
    }
}

/// Checks the values that types alone cannot.
pub fn validate(c: &Config) -> Result<(), ConfigError> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    if !["text", "json"].contains(&c.log_format.as_str()) {
        return err(format!(
            "log_format = {:?}: must be text or json",
            c.log_format
        ));
    }
    if !LEVELS.contains(&c.log_level.to_ascii_lowercase().as_str()) {
        return err(format!(
            "log_level = {:?}: must be one of {}",
            c.log_level,
            LEVELS.join(", ")
        ));
    }
    parse_listen(&c.api.address)
        .map_err(|e| ConfigError(format!("api.address = {:?}: {e}", c.api.address)))?;
    validate_nats_url(&c.nats.url)?;
    if !c.nats.mqtt_listen.is_empty() {
        parse_listen(&c.nats.mqtt_listen).map_err(|e| {
            ConfigError(format!("nats.mqtt_listen = {:?}: {e}", c.nats.mqtt_listen))
        })?;
    }
    if c.nats.replicas == 0 || c.nats.replicas > 5 {
        return err(format!(
            "nats.replicas = {}: must be 1..=5",
            c.nats.replicas
        ));
    }
    let r = &c.nats.retention;
    if r.frames_max_age_ms == 0 {
        return err("nats.retention.frames_max_age_ms = 0: must be positive");
    }
    if r.frames_per_camera <= 0 {
        return err(format!(
            "nats.retention.frames_per_camera = {}: must be positive",
            r.frames_per_camera
        ));
    }
    if r.max_age_hours.is_nan() || r.max_age_hours * 3600.0 < 120.0 {
        return err(format!(
            "nats.retention.max_age_hours = {}: must be at least 2 minutes (0.0334), the streams' de-duplication window",
            r.max_age_hours
        ));
    }
    if !matches!(c.nats.roles.as_str(), "auto" | "on" | "off") {
        return err(format!(
            "nats.roles = {:?}: must be auto, on or off",
            c.nats.roles
        ));
    }
    let l = &c.limits;
    for (key, v, min) in [
        ("limits.max_ahead_ms", l.max_ahead_ms, 1),
        ("limits.max_behind_ms", l.max_behind_ms, 1_000),
        ("limits.max_objects", l.max_objects as u64, 1),
        ("limits.max_embedding_len", l.max_embedding_len as u64, 1),
        ("limits.max_seq_jump", l.max_seq_jump, 1),
        ("limits.max_image_pixels", l.max_image_pixels, 64 * 64),
    ] {
        if v < min {
            return err(format!("{key} = {v}: must be at least {min}"));
        }
    }
    if !(0.0..=1.0).contains(&l.bbox_tolerance) {
        return err(format!(
            "limits.bbox_tolerance = {}: must be in 0..=1",
            l.bbox_tolerance
        ));
    }
    if c.spatial.embedding_dim > l.max_embedding_len {
        return err(format!(
            "spatial.embedding_dim = {}: larger than limits.max_embedding_len ({})",
            c.spatial.embedding_dim, l.max_embedding_len
        ));
    }

    let d = &c.detection;
    host_port(&d.address)
        .map_err(|e| ConfigError(format!("detection.address = {:?}: {e}", d.address)))?;
    d.backend
        .parse::<nvr_actors::detect::model::Backend>()
        .map_err(|_| {
            ConfigError(format!(
                "detection.backend = {:?}: must be one of cpu, cuda, rocm, coreml, openvino",
                d.backend
            ))
        })?;
    d.model_type
        .parse::<nvr_actors::detect::decode::ModelType>()
        .map_err(|_| {
            ConfigError(format!(
                "detection.model_type = {:?}: must be yolox or yolov8",
                d.model_type
            ))
        })?;
    if d.input_size < 64 || d.input_size > 2048 || !d.input_size.is_multiple_of(32) {
        return err(format!(
            "detection.input_size = {}: must be a multiple of 32 between 64 and 2048 (e.g. 320, 416, 640)",
            d.input_size
        ));
    }
    if d.workers > 64 {
        return err(format!("detection.workers = {}: at most 64", d.workers));
    }
    if d.max_batch > 64 {
        return err(format!(
            "detection.max_batch = {}: at most 64 (0 = automatic)",
            d.max_batch
        ));
    }
    if d.batch_window_ms > 1000 {
        return err(format!(
            "detection.batch_window_ms = {}: at most 1000",
            d.batch_window_ms
        ));
    }
    if nvr_actors::detect::model::conv_search(&d.cuda_conv_search).is_err() {
        return err(format!(
            "detection.cuda_conv_search = {:?}: must be heuristic, exhaustive or default",
            d.cuda_conv_search
        ));
    }
    if d.batch_size == 0 || d.batch_size > 256 {
        return err(format!(
            "detection.batch_size = {}: must be 1..=256",
            d.batch_size
        ));
    }
    check_fps("detection.default_fps", d.default_fps)?;
    check_unit("detection.min_confidence", d.min_confidence)?;
    check_unit("detection.nms_iou", d.nms_iou)?;
    if !(d.reid_weight > 0.0 && d.reid_weight <= 1.0) {
        return err(format!(
            "detection.reid_weight = {}: must be in (0, 1]",
            d.reid_weight
        ));
    }
    if d.max_frame_age_ms == 0 {
        return err("detection.max_frame_age_ms = 0: must be positive");
    }
    if d.jpeg_quality == 0 || d.jpeg_quality > 100 {
        return err(format!(
            "detection.jpeg_quality = {}: must be 1..=100",
            d.jpeg_quality
        ));
    }
    if d.timeout_seconds == 0 {
        return err("detection.timeout_seconds = 0: must be positive");
    }
    for l in &d.labels {
        if !nvr_actors::detect::labels::COCO_LABELS.contains(&l.as_str()) && d.model_type == "yolox"
        {
            return err(format!(
                "detection.labels: {l:?} is not a label of the model"
            ));
        }
    }

    let t = &c.tracking;
    check_unit("tracking.high_threshold", t.high_threshold)?;
    check_unit("tracking.low_threshold", t.low_threshold)?;
    check_unit("tracking.new_track_threshold", t.new_track_threshold)?;
    check_unit("tracking.birth_threshold", t.birth_threshold)?;
    if t.birth_threshold > t.new_track_threshold {
        return err(format!(
            "tracking.birth_threshold = {}: must not exceed tracking.new_track_threshold ({})",
            t.birth_threshold, t.new_track_threshold
        ));
    }
    check_unit("tracking.match_iou", t.match_iou)?;
    if !(0.0..1.0).contains(&t.embedding_momentum) {
        return err(format!(
            "tracking.embedding_momentum = {}: must be at least 0 and below 1",
            t.embedding_momentum
        ));
    }
    if t.low_threshold > t.high_threshold {
        return err(format!(
            "tracking.low_threshold = {}: must not exceed tracking.high_threshold ({})",
            t.low_threshold, t.high_threshold
        ));
    }

    let s = &c.spatial;
    host_port(&s.address)
        .map_err(|e| ConfigError(format!("spatial.address = {:?}: {e}", s.address)))?;
    if !(s.max_gap_seconds >= 0.0 && s.max_gap_seconds.is_finite()) {
        return err(format!(
            "spatial.max_gap_seconds = {}: must be >= 0",
            s.max_gap_seconds
        ));
    }
    if !(s.max_coast_seconds >= 0.0 && s.max_coast_seconds.is_finite()) {
        return err(format!(
            "spatial.max_coast_seconds = {}: must be >= 0",
            s.max_coast_seconds
        ));
    }
    if !(s.track_ttl_seconds > 0.0 && s.track_ttl_seconds.is_finite()) {
        return err(format!(
            "spatial.track_ttl_seconds = {}: must be positive",
            s.track_ttl_seconds
        ));
    }
    if s.max_tracks == 0 {
        return err("spatial.max_tracks = 0: must be positive");
    }
    if s.matching_interval_ms == 0 {
        return err("spatial.matching_interval_ms = 0: must be positive");
    }
    check_tuning(&s.tuning)?;

    let mut floors = std::collections::BTreeSet::new();
    for (i, f) in c.floors.iter().enumerate() {
        token(&format!("floors[{i}].id"), &f.id)?;
        if !floors.insert(f.id.as_str()) {
            return err(format!("floors[{i}].id = {:?}: duplicate floor id", f.id));
        }
        if f.size_m.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return err(format!(
                "floors[{i}].size_m = {:?}: must be non-negative metres",
                f.size_m
            ));
        }
    }
    let mut cams = std::collections::BTreeSet::new();
    for (i, cam) in c.cameras.iter().enumerate() {
        let key = format!("cameras[{i}]");
        token(&format!("{key}.id"), &cam.id)?;
        if !cams.insert(cam.id.as_str()) {
            return err(format!("{key}.id = {:?}: duplicate camera id", cam.id));
        }
        if let Some(url) = &cam.url {
            validate_camera_url(url).map_err(|e| {
                ConfigError(format!("{key}.url = {url:?} (camera {}): {e}", cam.id))
            })?;
        }
        if let Some(t) = &cam.rtsp_transport {
            if t != "tcp" && t != "udp" {
                return err(format!("{key}.rtsp_transport = {t:?}: must be tcp or udp"));
            }
        }
        if let Some(fps) = cam.detection.fps {
            check_fps(&format!("{key}.detection.fps"), fps)?;
        }
        if let Some(mc) = cam.detection.min_confidence {
            check_unit(&format!("{key}.detection.min_confidence"), mc)?;
        }
        if let Some(f) = &cam.floor {
            if !floors.contains(f.as_str()) {
                return err(format!(
                    "{key}.floor = {f:?} (camera {}): no such floor in floors[]",
                    cam.id
                ));
            }
        }
        if let Some(cal) = &cam.calibration {
            camera_homography(cam, cal)?;
        }
    }
    for (i, sh) in s.shards.iter().enumerate() {
        token(&format!("spatial.shards[{i}].name"), &sh.name)?;
        for cam in &sh.cameras {
            if !cams.contains(cam.as_str()) {
                return err(format!(
                    "spatial.shards[{i}].cameras: {cam:?} is not a configured camera"
                ));
            }
        }
    }
    if !s.shard.is_empty() {
        token("spatial.shard", &s.shard)?;
    }
    for cam in &s.cameras {
        token("spatial.cameras", cam)?;
    }
    Ok(())
}

/// The homography of a camera's calibration, with a message naming the
/// camera when the points are degenerate or inconsistent.
pub fn camera_homography(
    cam: &CameraConfig,
    cal: &Calibration,
) -> Result<nvr_actors::spatial::homography::Homography, ConfigError> {
    use nvr_actors::spatial::homography::Homography;
    if let Some(m) = cal.homography {
        return Homography::from_matrix(m)
            .map_err(|e| ConfigError(format!("camera {}: calibration.homography: {e}", cam.id)));
    }
    let img: Vec<[f64; 2]> = cal.points.iter().map(|p| p.image).collect();
    let floor: Vec<[f64; 2]> = cal.points.iter().map(|p| p.floor).collect();
    Homography::from_points(&img, &floor)
        .map_err(|e| ConfigError(format!("camera {}: calibration.points: {e}", cam.id)))
}

fn token(key: &str, v: &str) -> Result<(), ConfigError> {
    nvr_subjects::subjects::validate_token(v).map_err(|e| ConfigError(format!("{key}: {e}")))
}

fn check_fps(key: &str, v: f64) -> Result<(), ConfigError> {
    if !(v > 0.0 && v <= 120.0) {
        return err(format!(
            "{key} = {v}: must be between 0 and 120 frames per second"
        ));
    }
    Ok(())
}

fn check_unit(key: &str, v: f32) -> Result<(), ConfigError> {
    if !(0.0..=1.0).contains(&v) {
        return err(format!("{key} = {v}: must be between 0 and 1"));
    }
    Ok(())
}

/// `host:port` with a valid port.
pub fn host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number 0..65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("host is empty".into());
    }
    Ok((host.to_string(), port))
}

/// A socket address to listen on (`host:port`; `localhost` allowed).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let (host, port) = host_port(s)?;
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| format!("{host:?} is not an IP address or localhost"))?;
    Ok(SocketAddr::new(ip, port))
}

/// A NATS URL: `nats://`, `tls://`, `ws://`, `wss://` or bare `host:port`;
/// several may be given separated by commas.
pub fn validate_nats_url(url: &str) -> Result<(), ConfigError> {
    for one in url.split(',') {
        let one = one.trim();
        let rest = match one.split_once("://") {
            Some((scheme, rest)) => {
                if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
                    return err(format!(
                        "nats.url = {url:?}: scheme {scheme:?} is not nats, tls, ws or wss"
                    ));
                }
                rest
            }
            None => one,
        };
        let hostport = rest.rsplit('@').next().unwrap_or(rest);
        host_port(hostport).map_err(|e| ConfigError(format!("nats.url = {url:?}: {e}")))?;
    }
    Ok(())
}

/// Replaces every secret of the configuration by `***`: passwords and
/// tokens, in their own keys and inside URLs.
pub fn redact(c: &mut Config) {
    for secret in [&mut c.nats.password, &mut c.nats.token, &mut c.api.token] {
        if !secret.is_empty() {
            *secret = "***".into();
        }
    }
    c.nats.url = redact_nats_url(&c.nats.url);
    for cam in &mut c.cameras {
        if let Some(u) = &cam.url {
            cam.url = Some(nvr_actors::bus::mask_url(u));
        }
    }
}

/// A NATS URL (or comma-separated list) with any `user:password@` or
/// `token@` replaced by `***`.
pub fn redact_nats_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let one = one.trim();
            let (scheme, rest) = match one.split_once("://") {
                Some((s, r)) => (format!("{s}://"), r),
                None => (String::new(), one),
            };
            match rest.rsplit_once('@') {
                Some((auth, host)) => match auth.split_once(':') {
                    Some((user, _)) => format!("{scheme}{user}:***@{host}"),
                    None => format!("{scheme}***@{host}"),
                },
                None => one.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks a camera URL with the rules the camera itself applies
/// ([`nvr_actors::video::classify`]: scheme, file existence), plus a host
/// for network sources.
pub fn validate_camera_url(url: &str) -> Result<(), String> {
    use nvr_actors::video::SourceKind;
    let kind = nvr_actors::video::classify(url).map_err(|e| e.to_string())?;
    if matches!(kind, SourceKind::Rtsp | SourceKind::Http) {
        let rest = url.trim().split_once("://").map_or("", |(_, r)| r);
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or(host);
        if host.is_empty() {
            return Err("has no host".into());
        }
    }
    Ok(())
}

/// Lines of `path = value  # source` for every leaf of the effective config.
pub fn describe(loaded: &Loaded) -> Vec<String> {
    let mut redacted = loaded.config.clone();
    redact(&mut redacted);
    let doc = serde_json::to_value(&redacted).unwrap_or(Value::Null);
    let mut leaves = Vec::new();
    leaf_paths(&doc, "", &mut leaves);
    let mut out = Vec::new();
    for path in leaves {
        let value = lookup(&doc, &path)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let top = path.split('.').next().unwrap_or("");
        let source = loaded
            .sources
            .get(&path)
            .or_else(|| {
                // Lists are sourced as a whole.
                loaded.sources.iter().find_map(|(k, s)| {
                    (path.starts_with(&format!("{k}.")) || k == top).then_some(s)
                })
            })
            .cloned()
            .unwrap_or(Source::Default);
        out.push(format!("{path} = {value}  # {source}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(
        yaml: &str,
        env: &[(&str, &str)],
        flags: &[(&str, Value)],
    ) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, yaml).unwrap();
        let mut ov = Overrides {
            config_path: Some(p),
            ..Default::default()
        };
        for (k, v) in flags {
            ov.set(k, v.clone(), &format!("--{k}"));
        }
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&ov, &|k| env.get(k).cloned())
    }

    #[test]
    fn precedence_flag_env_file_default() {
        let y = "detection:\n  backend: cuda\n  device_id: 1\n  min_confidence: 0.3\n";
        let l = load_str(
            y,
            &[
                ("DETECTION_DEVICE_ID", "2"),
                ("DETECTION_MIN_CONFIDENCE", "0.4"),
            ],
            &[("detection.min_confidence", Value::from(0.6))],
        )
        .unwrap();
        assert_eq!(l.config.detection.backend, "cuda");
        assert_eq!(l.config.detection.device_id, 2);
        assert!((l.config.detection.min_confidence - 0.6).abs() < 1e-6);
        assert_eq!(l.config.detection.default_fps, 5.0);
        assert!(matches!(l.sources["detection.backend"], Source::File(_)));
        assert_eq!(
            l.sources["detection.device_id"],
            Source::Env("DETECTION_DEVICE_ID".into())
        );
        let lines = describe(&l);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("detection.default_fps = 5.0  # default")),
            "{lines:?}"
        );
    }

    #[test]
    fn seed_defaults() {
        let l = load_str("", &[], &[]).unwrap();
        let c = l.config;
        assert_eq!(c.detection.address, "localhost:12021");
        assert!(c.detection.embedded);
        assert_eq!(c.detection.backend, "cpu");
        assert_eq!(c.detection.default_fps, 5.0);
        assert_eq!(c.detection.min_confidence, 0.5);
        assert_eq!(c.detection.models_path, "/data/models");
        assert_eq!(c.spatial.address, "localhost:12020");
        assert!(c.spatial.reid_enabled);
        assert_eq!(c.spatial.max_gap_seconds, 30.0);
        assert_eq!(c.spatial.track_ttl_seconds, 300.0);
        assert_eq!(c.spatial.max_tracks, 10000);
        assert_eq!(c.api.address, "127.0.0.1:12000");
    }

    #[test]
    fn env_false_and_lists() {
        let l = load_str(
            "",
            &[
                ("DETECTION_EMBEDDED", "false"),
                ("SPATIAL_CAMERAS", "cam1, cam2"),
                ("SPATIAL_SHARD", "floor1"),
            ],
            &[],
        )
        .unwrap();
        assert!(!l.config.detection.embedded);
        assert_eq!(l.config.spatial.cameras, vec!["cam1", "cam2"]);
        assert_eq!(l.config.spatial.shard, "floor1");
    }

    #[test]
    fn env_values_take_the_type_of_their_field() {
        let l = load_str(
            "",
            &[
                ("SPATIAL_SHARD", "1"),
                ("DETECTION_MODEL", "2024"),
                ("SPATIAL_EMBEDDED", "0"),
                ("DETECTION_WORKERS", "3"),
                ("DETECTION_MIN_CONFIDENCE", "0.25"),
                ("SPATIAL_CAMERAS", "7"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(l.config.spatial.shard, "1");
        assert_eq!(l.config.detection.model, "2024");
        assert!(!l.config.spatial.embedded);
        assert_eq!(l.config.detection.workers, 3);
        assert_eq!(l.config.detection.min_confidence, 0.25);
        assert_eq!(l.config.spatial.cameras, vec!["7"]);
        let l = load_str("", &[("SPATIAL_SHARD", "on")], &[]).unwrap();
        assert_eq!(l.config.spatial.shard, "on");
        let e = load_str("", &[("DETECTION_WORKERS", "many")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("detection.workers") && e.contains("DETECTION_WORKERS"),
            "{e}"
        );
    }

    #[test]
    fn nats_url_env_means_external() {
        let l = load_str("", &[("NATS_URL", "nats://10.0.0.1:4222")], &[]).unwrap();
        assert!(!l.config.nats.embedded);
    }

    #[test]
    fn errors_are_one_line_and_name_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                "detection:\n  bogus: 1\n",
                "detection.bogus = 1: unknown field `bogus`",
            ),
            ("detection:\n  input_size: big\n", "detection.input_size"),
            (
                "detection:\n  input_size: 333\n",
                "detection.input_size = 333",
            ),
            ("nats:\n  url: \"http://x:4222\"\n", "nats.url"),
            ("nats:\n  url: \"nats://host:99999\"\n", "nats.url"),
            (
                "detection:\n  backend: tpu\n",
                "detection.backend = \"tpu\"",
            ),
            (
                "cameras:\n  - id: a\n    url: \"ftp://x/y\"\n",
                "cameras[0].url",
            ),
            (
                "cameras:\n  - id: a\n    url: /nonexistent/file.mp4\n",
                "cameras[0].url",
            ),
            (
                "cameras:\n  - id: a\n    url: \"rtmp://host/live\"\n",
                "unsupported scheme \"rtmp\"",
            ),
            (
                "cameras:\n  - id: a\n    url: \"rtsp:///x\"\n",
                "has no host",
            ),
            ("cameras:\n  - id: \"a.b\"\n", "cameras[0].id"),
            ("cameras:\n  - id: a\n  - id: a\n", "duplicate camera id"),
            ("cameras:\n  - id: a\n    floor: nowhere\n", "no such floor"),
            ("foo: 1\n", "unknown field `foo`"),
            (
                "tracking:\n  embedding_momentum: 1.0\n",
                "tracking.embedding_momentum = 1",
            ),
            ("detection: [1, 2\n", "c.yaml"),
            (
                "detection:\n  reid_weight: 0\n",
                "detection.reid_weight = 0: must be in (0, 1]",
            ),
        ];
        for (yaml, want) in cases {
            let e = load_str(yaml, &[], &[]).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml:?}: {e:?} lacks {want:?}");
            assert!(!e.contains('\n'), "multi-line error: {e:?}");
        }
        let e = load_str("", &[("DETECTION_DEVICE_ID", "gpu0")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("detection.device_id") && e.contains("DETECTION_DEVICE_ID"),
            "{e}"
        );
    }

    #[test]
    fn reid_model_is_a_stem_in_models_path_or_a_path() {
        let mut d = DetectionConfig {
            models_path: "/m".into(),
            ..DetectionConfig::default()
        };
        assert_eq!(d.reid_model_path(), None);
        d.reid_model = "mobilenetv2_reid".into();
        assert_eq!(
            d.reid_model_path(),
            Some(PathBuf::from("/m/mobilenetv2_reid.onnx"))
        );
        d.reid_model = "/opt/osnet.onnx".into();
        assert_eq!(d.reid_model_path(), Some(PathBuf::from("/opt/osnet.onnx")));
        let l = load_str("", &[("DETECTION_REID_MODEL", "x")], &[]).unwrap();
        assert_eq!(l.config.detection.reid_model, "x");
    }

    #[test]
    fn degenerate_calibration_names_the_camera() {
        let y = "floors:\n  - id: f\ncameras:\n  - id: door\n    floor: f\n    calibration:\n      points:\n        - {image: [0, 0], floor: [0, 0]}\n        - {image: [1, 1], floor: [1, 1]}\n        - {image: [2, 2], floor: [2, 2]}\n        - {image: [3, 3], floor: [3, 3]}\n";
        let e = load_str(y, &[], &[]).unwrap_err().to_string();
        assert!(e.contains("camera door"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let ov = Overrides {
            config_path: Some("/nonexistent/c.yaml".into()),
            ..Default::default()
        };
        let e = load(&ov, &|_| None).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/c.yaml"), "{e}");
    }
}
