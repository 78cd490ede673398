//! Detection and spatial nodes: the child specs they run, the status they
//! answer on the bus (every node answers `nvr.status.*`, so the main API
//! aggregates local and remote nodes alike), their registration as NATS
//! micro services, and the standalone `nvr detector` / `nvr spatial`
//! commands with their own `/health` and `/status` (`/stats`) endpoints.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use async_nats::jetstream;
use async_nats::service::ServiceExt;
use axum::{extract::State, routing::get, Json, Router};
use futures::StreamExt;
use nvr_actors::camera::{CameraActor, CameraArgs};
use nvr_actors::detect::runtime::GpuOptions;
use nvr_actors::detect::{Backend, DetectorOptions, ModelType};
use nvr_actors::detector::{DetectorActor, DetectorArgs, LoadedModel};
use nvr_actors::spatial::{CameraGeometry, SpatialParams};
use nvr_actors::spatial_actor::{ShardStatus, SpatialActor, SpatialArgs};
use nvr_actors::status::{
    self, CameraStatus, DetectionNodeStatus, NodeLayout, TrackingStatus, WorkerStats,
};
use nvr_actors::track_actor::{TrackActor, TrackArgs};
use nvr_subjects::SpatialTrack;
use ractor::Actor;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::{self, Config};
use crate::supervisor::{self, ChildSpec, SpawnFn};

/// Stop order of each child kind: producers first.
pub mod order {
    /// Cameras stop first.
    pub const CAMERA: u8 = 0;
    /// Then detectors finish their batch.
    pub const DETECTOR: u8 = 1;
    /// Then per-camera trackers.
    pub const TRACK: u8 = 2;
    /// Then spatial shards.
    pub const SPATIAL: u8 = 3;
}

fn spawn_fn<A, F>(name: String, actor: A, make_args: F) -> SpawnFn
where
    A: Actor + Clone + Sync,
    F: Fn() -> A::Arguments + Send + Sync + 'static,
{
    let make_args = Arc::new(make_args);
    Arc::new(move |sup| {
        let name = name.clone();
        let actor = actor.clone();
        let args = make_args();
        Box::pin(async move {
            Actor::spawn_linked(Some(name), actor, args, sup)
                .await
                .map(|(r, _)| r.get_cell())
                .map_err(|e| match e {
                    ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
                    other => other.to_string(),
                })
        })
    })
}

/// The child spec of a camera with a URL.
pub fn camera_spec(
    cfg: &Config,
    cam: &config::CameraConfig,
    js: jetstream::Context,
    status: Arc<Mutex<CameraStatus>>,
) -> ChildSpec {
    let name = format!("camera:{}", cam.id);
    let source = nvr_actors::video::SourceSpec {
        url: cam.url.clone().unwrap_or_default(),
        fps: cam.detection.fps.unwrap_or(cfg.detection.default_fps),
        max_side: cfg.detection.input_size,
        looping: cam.looping,
        realtime: true,
        rtsp_transport: cam.rtsp_transport.clone(),
        ffmpeg_bin: "ffmpeg".into(),
    };
    let id = cam.id.clone();
    let quality = cfg.detection.jpeg_quality;
    ChildSpec {
        name: name.clone(),
        order: order::CAMERA,
        spawn: spawn_fn(name, CameraActor, move || CameraArgs {
            id: id.clone(),
            source: source.clone(),
            jpeg_quality: quality,
            js: js.clone(),
            status: status.clone(),
        }),
    }
}

/// Detector options from the configuration.
pub fn detector_options(cfg: &Config) -> Result<DetectorOptions> {
    let d = &cfg.detection;
    let backend: Backend = d
        .backend
        .parse()
        .map_err(|_| anyhow!("detection.backend = {:?}: unknown backend", d.backend))?;
    let model_type: ModelType = d.model_type.parse().map_err(|_| {
        anyhow!(
            "detection.model_type = {:?}: unknown model type",
            d.model_type
        )
    })?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let threads = if d.threads > 0 {
        d.threads
    } else {
        (cores / d.effective_workers()).max(1)
    };
    Ok(DetectorOptions {
        model_path: d.model_path(),
        model_type,
        input_size: d.input_size,
        backend,
        device_id: d.device_id,
        allow_cpu_fallback: d.allow_cpu_fallback,
        threads,
        nms_iou: d.nms_iou,
        labels: d.labels.clone(),
        embeddings: cfg.spatial.reid_enabled,
        reid_model: d.reid_model_path().filter(|_| cfg.spatial.reid_enabled),
        reid_weight: d.reid_weight,
        gpu: GpuOptions {
            conv_search: d.cuda_conv_search.clone(),
            trt_fp16: d.trt_fp16,
            trt_cache_dir: d.trt_cache_path().display().to_string(),
            max_batch: if d.max_batch > 0 { d.max_batch } else { 16 },
            input_size: d.input_size,
        },
    })
}

/// Checks that the model exists and loads on the configured backend.
pub async fn check_detection_config(cfg: &Config) -> Result<()> {
    for m in cfg.detection.model_files() {
        if !m.path.is_file() {
            bail!(
                "{} = {:?}: model file {} does not exist (detection.models_path = {:?}; run scripts/setup)",
                m.key,
                m.value,
                m.path.display(),
                cfg.detection.models_path
            );
        }
    }
    let opts = detector_options(cfg)?;
    let loaded = tokio::task::spawn_blocking(move || nvr_actors::detect::Detector::load(opts))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    match loaded {
        Ok(d) => {
            if let Some(r) = d.fallback_reason() {
                tracing::warn!("detection backend: {r}");
            }
            Ok(())
        }
        Err(e) => Err(anyhow!("detection: {e}")),
    }
}

/// A detection node: its workers and their counters.
pub struct DetectionNode {
    /// Node id.
    pub node: String,
    /// Backend asked for.
    pub requested_backend: String,
    /// Model input size.
    pub input_size: u32,
    /// Per-worker counters.
    pub workers: Vec<Arc<WorkerStats>>,
    /// What each worker loaded.
    pub loaded: Vec<Arc<Mutex<Option<LoadedModel>>>>,
    /// Start time.
    pub started: Instant,
    /// ONNX Runtime threads per worker.
    pub threads: usize,
    /// `config` when `detection.max_batch` was set, else `measured`.
    pub batch_source: &'static str,
    /// The fps a camera count is expressed in.
    pub camera_fps: f64,
}

/// A name for this process: host and pid.
pub fn node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}", std::process::id())
}

impl DetectionNode {
    /// The node and the child specs of its workers.
    pub fn new(cfg: &Config, js: jetstream::Context) -> (Arc<DetectionNode>, Vec<ChildSpec>) {
        let node = node_id();
        let workers = cfg.detection.effective_workers();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        // Validated before the node starts; without options it runs no worker.
        let options = detector_options(cfg).ok();
        let threads = options.as_ref().map_or(0, |o| o.threads);
        let mut stats = Vec::new();
        let mut loaded = Vec::new();
        let mut specs = Vec::new();
        let cam_conf: BTreeMap<String, f32> = cfg
            .cameras
            .iter()
            .filter_map(|c| c.detection.min_confidence.map(|m| (c.id.clone(), m)))
            .collect();
        for i in 0..workers {
            let worker = format!("{node}-w{i}");
            let st = Arc::new(WorkerStats::new(&worker));
            let ld = Arc::new(Mutex::new(None));
            stats.push(st.clone());
            loaded.push(ld.clone());
            let (max_age, batch, min_conf) = (
                cfg.detection.max_frame_age_ms,
                cfg.detection.batch_size,
                cfg.detection.min_confidence,
            );
            let (max_batch, window) = (cfg.detection.max_batch, cfg.detection.batch_window_ms);
            let decode_threads = (cores / workers).max(1);
            let cam_conf = cam_conf.clone();
            let js = js.clone();
            let limits = cfg.limits.limits();
            let name = format!("detector:{worker}");
            let Some(options) = options.clone() else {
                continue;
            };
            specs.push(ChildSpec {
                name: name.clone(),
                order: order::DETECTOR,
                spawn: spawn_fn(name, DetectorActor, move || DetectorArgs {
                    worker: worker.clone(),
                    options: options.clone(),
                    max_frame_age_ms: max_age,
                    batch_size: batch,
                    max_batch,
                    batch_window_ms: window,
                    decode_threads,
                    min_confidence: min_conf,
                    camera_min_confidence: cam_conf.clone(),
                    js: js.clone(),
                    stats: st.clone(),
                    loaded: ld.clone(),
                    limits: limits.clone(),
                }),
            });
        }
        (
            Arc::new(DetectionNode {
                node,
                requested_backend: cfg.detection.backend.clone(),
                input_size: cfg.detection.input_size,
                workers: stats,
                loaded,
                started: Instant::now(),
                threads,
                batch_source: if cfg.detection.max_batch > 0 {
                    "config"
                } else {
                    "measured"
                },
                camera_fps: cfg.detection.default_fps,
            }),
            specs,
        )
    }

    /// This node's status document.
    pub fn status(&self) -> DetectionNodeStatus {
        let first = self
            .loaded
            .iter()
            .find_map(|l| l.lock().ok().and_then(|l| l.clone()));
        let workers: Vec<_> = self.workers.iter().map(|w| w.snapshot()).collect();
        DetectionNodeStatus {
            node: self.node.clone(),
            backend: first
                .as_ref()
                .map(|l| l.backend.clone())
                .unwrap_or_else(|| self.requested_backend.clone()),
            requested_backend: self.requested_backend.clone(),
            fallback_reason: first.as_ref().and_then(|l| l.fallback_reason.clone()),
            appearance: first
                .as_ref()
                .map(|l| l.appearance.clone())
                .unwrap_or_default(),
            model: first.map(|l| l.model).unwrap_or_default(),
            input_size: self.input_size,
            uptime_s: self.started.elapsed().as_secs_f64(),
            memory_mb: status::rss_mb(),
            workers: workers.clone(),
            layout: NodeLayout::of(&workers, self.threads, self.batch_source, self.camera_fps),
        }
    }

    /// Workers still warming up, as a health reason (`None` once all are ready).
    pub fn warming(&self) -> Option<String> {
        let warming = self
            .workers
            .iter()
            .filter(|w| w.layout.lock().map(|l| l.is_none()).unwrap_or(false))
            .count();
        (warming > 0).then(|| {
            format!(
                "{warming} of {} detector workers warming up",
                self.workers.len()
            )
        })
    }
}

/// A shard to run: name and calibrated cameras.
#[derive(Debug, Clone)]
pub struct ShardPlan {
    /// Shard name.
    pub name: String,
    /// Its cameras with their geometry.
    pub cameras: Vec<CameraGeometry>,
}

fn geometry(cfg: &Config, id: &str) -> Result<Option<CameraGeometry>> {
    let Some(cam) = cfg.cameras.iter().find(|c| c.id == id) else {
        return Ok(None);
    };
    let Some(cal) = &cam.calibration else {
        return Ok(None);
    };
    let h = config::camera_homography(cam, cal).map_err(|e| anyhow!("{}", e.0))?;
    Ok(Some(CameraGeometry {
        id: cam.id.clone(),
        floor: cam.floor.clone().unwrap_or_else(|| "default".into()),
        homography: h,
    }))
}

/// The shards `nvr run` runs: `spatial.shards`, or `spatial.shard` with
/// `spatial.cameras`, or one shard per floor of the calibrated cameras.
pub fn shards_for_run(cfg: &Config) -> Result<Vec<ShardPlan>> {
    let s = &cfg.spatial;
    let mut plans = Vec::new();
    let named: Vec<(String, Vec<String>)> = if !s.shards.is_empty() {
        s.shards
            .iter()
            .map(|sh| (sh.name.clone(), sh.cameras.clone()))
            .collect()
    } else if !s.shard.is_empty() {
        let cams = if s.cameras.is_empty() {
            cfg.cameras.iter().map(|c| c.id.clone()).collect()
        } else {
            s.cameras.clone()
        };
        vec![(s.shard.clone(), cams)]
    } else {
        let mut by_floor: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in &cfg.cameras {
            if let (Some(f), Some(_)) = (&c.floor, &c.calibration) {
                by_floor.entry(f.clone()).or_default().push(c.id.clone());
            }
        }
        by_floor.into_iter().collect()
    };
    for (name, cams) in named {
        let mut geos = Vec::new();
        for id in &cams {
            match geometry(cfg, id)? {
                Some(g) => geos.push(g),
                None => bail!(
                    "spatial shard {name}: camera {id:?} has no calibration (add cameras[].calibration or a floor-plan file)"
                ),
            }
        }
        if !geos.is_empty() {
            plans.push(ShardPlan {
                name,
                cameras: geos,
            });
        }
    }
    Ok(plans)
}

/// A spatial node: its shards and per-camera trackers.
pub struct SpatialNode {
    /// Node id.
    pub node: String,
    /// Shard statuses.
    pub shards: Vec<Arc<Mutex<ShardStatus>>>,
    /// Latest global tracks per shard.
    pub tracks: Vec<Arc<Mutex<Vec<SpatialTrack>>>>,
    /// Per-camera tracker statuses.
    pub tracking: BTreeMap<String, Arc<Mutex<TrackingStatus>>>,
    /// Start time.
    pub started: Instant,
}

/// What a spatial node answers on the bus.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpatialNodeStatus {
    /// Node id.
    pub node: String,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Resident memory, MiB.
    pub memory_mb: f64,
    /// Shards of the node.
    pub shards: Vec<ShardStatus>,
    /// Per-camera trackers of the node.
    pub tracking: BTreeMap<String, TrackingStatus>,
    /// Current global tracks, when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<ShardTrack>,
}

/// A global track with the shard that owns it: global ids are unique within
/// a shard, so (shard, global_id) identifies a track across the deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardTrack {
    /// The shard that tracks it.
    pub shard: String,
    /// The track as published on `nvr.spatial.<shard>.tracks`.
    #[serde(flatten)]
    pub track: SpatialTrack,
}

impl SpatialNode {
    /// The node and child specs: a track actor per camera in `track_cameras`
    /// and a spatial actor per shard.
    pub fn new(
        cfg: &Config,
        js: jetstream::Context,
        track_cameras: &[String],
        shards: Vec<ShardPlan>,
    ) -> (Arc<SpatialNode>, Vec<ChildSpec>) {
        let mut specs = Vec::new();
        let mut tracking = BTreeMap::new();
        let checkpoint_seconds = cfg.tracking.checkpoint_seconds;
        for cam in track_cameras {
            let st = Arc::new(Mutex::new(TrackingStatus::default()));
            tracking.insert(cam.clone(), st.clone());
            let (camera, params, window, js, limits) = (
                cam.clone(),
                cfg.tracking.params(),
                cfg.tracking.reorder_window_ms,
                js.clone(),
                cfg.limits.limits(),
            );
            let name = format!("track:{cam}");
            specs.push(ChildSpec {
                name: name.clone(),
                order: order::TRACK,
                spawn: spawn_fn(name, TrackActor, move || TrackArgs {
                    camera: camera.clone(),
                    params: params.clone(),
                    reorder_window_ms: window,
                    js: js.clone(),
                    durable: format!("track-{camera}"),
                    status: st.clone(),
                    limits: limits.clone(),
                    checkpoint_seconds,
                }),
            });
        }
        let mut statuses = Vec::new();
        let mut all_tracks = Vec::new();
        let params = spatial_params(cfg);
        for plan in shards {
            let st = Arc::new(Mutex::new(ShardStatus {
                shard: plan.name.clone(),
                cameras: plan.cameras.iter().map(|c| c.id.clone()).collect(),
                ..Default::default()
            }));
            let tr = Arc::new(Mutex::new(Vec::new()));
            statuses.push(st.clone());
            all_tracks.push(tr.clone());
            let (params, js, limits) = (params.clone(), js.clone(), cfg.limits.limits());
            let name = format!("spatial:{}", plan.name);
            specs.push(ChildSpec {
                name: name.clone(),
                order: order::SPATIAL,
                spawn: spawn_fn(name, SpatialActor, move || SpatialArgs {
                    shard: plan.name.clone(),
                    cameras: plan.cameras.clone(),
                    params: params.clone(),
                    js: js.clone(),
                    status: st.clone(),
                    tracks: tr.clone(),
                    limits: limits.clone(),
                    checkpoint_seconds,
                }),
            });
        }
        (
            Arc::new(SpatialNode {
                node: node_id(),
                shards: statuses,
                tracks: all_tracks,
                tracking,
                started: Instant::now(),
            }),
            specs,
        )
    }

    /// This node's status document (with tracks when `with_tracks`).
    pub fn status(&self, with_tracks: bool) -> SpatialNodeStatus {
        SpatialNodeStatus {
            node: self.node.clone(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            memory_mb: status::rss_mb(),
            shards: self
                .shards
                .iter()
                .filter_map(|s| s.lock().ok().map(|s| s.clone()))
                .collect(),
            tracking: self
                .tracking
                .iter()
                .filter_map(|(k, v)| v.lock().ok().map(|v| (k.clone(), v.clone())))
                .collect(),
            tracks: if with_tracks {
                self.shards
                    .iter()
                    .zip(&self.tracks)
                    .filter_map(|(s, t)| {
                        let shard = s.lock().ok()?.shard.clone();
                        let tracks = t.lock().ok()?.clone();
                        Some(tracks.into_iter().map(move |track| ShardTrack {
                            shard: shard.clone(),
                            track,
                        }))
                    })
                    .flatten()
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// Spatial parameters from the configuration.
pub fn spatial_params(cfg: &Config) -> SpatialParams {
    let s = &cfg.spatial;
    SpatialParams {
        max_gap_seconds: s.max_gap_seconds,
        track_ttl_seconds: s.track_ttl_seconds,
        max_tracks: s.max_tracks,
        reid_enabled: s.reid_enabled,
        embedding_dim: (s.embedding_dim > 0).then_some(s.embedding_dim),
        matching_interval_ms: s.matching_interval_ms,
        max_coast_seconds: s.max_coast_seconds,
        ..s.tuning.clone()
    }
}

/// Answers status requests on `subject` with `f()` as JSON, until aborted.
async fn serve_json<F>(
    client: async_nats::Client,
    subject: &str,
    f: F,
) -> Result<tokio::task::JoinHandle<()>>
where
    F: Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
{
    let mut sub = client.subscribe(subject.to_string()).await?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let body = f(&msg.payload);
                let _ = client.publish(reply, body.into()).await;
            }
        }
    }))
}

/// Serves this process's detection status on the bus.
pub async fn serve_detection_status(
    client: async_nats::Client,
    node: Arc<DetectionNode>,
) -> Result<tokio::task::JoinHandle<()>> {
    serve_json(client, status::DETECTION_STATUS_SUBJECT, move |_| {
        serde_json::to_vec(&node.status()).unwrap_or_default()
    })
    .await
}

/// Serves this process's spatial status on the bus (request body `tracks`
/// asks for the current global tracks too).
pub async fn serve_spatial_status(
    client: async_nats::Client,
    node: Arc<SpatialNode>,
) -> Result<tokio::task::JoinHandle<()>> {
    serve_json(client, status::SPATIAL_STATUS_SUBJECT, move |req| {
        serde_json::to_vec(&node.status(req == b"tracks")).unwrap_or_default()
    })
    .await
}

/// Registers this process as an instance of `nvr-detection` and/or
/// `nvr-spatial` (visible to `nats micro ls/info/stats`). The returned
/// services stay registered while held.
pub async fn register_services(
    client: &async_nats::Client,
    detection: Option<&Arc<DetectionNode>>,
    spatial: Option<&Arc<SpatialNode>>,
) -> Vec<async_nats::service::Service> {
    let mut out = Vec::new();
    let version = env!("CARGO_PKG_VERSION");
    if let Some(d) = detection {
        let d = d.clone();
        let meta: std::collections::HashMap<String, String> = [
            ("node".to_string(), d.node.clone()),
            ("backend".to_string(), d.requested_backend.clone()),
            ("workers".to_string(), d.workers.len().to_string()),
        ]
        .into();
        let work = d.clone();
        match client
            .service_builder()
            .description("nvr detection workers on the shared detectors consumer")
            .metadata(meta)
            // `$SRV.STATS` carries the node's real work, not only the
            // requests its status endpoint answered.
            .stats_handler(move |_, _| {
                let sum = |f: fn(&WorkerStats) -> u64| work.workers.iter().map(|w| f(w)).sum::<u64>();
                serde_json::json!({
                    "frames_processed": sum(|w| w.processed.load(std::sync::atomic::Ordering::Relaxed)),
                    "frames_skipped": sum(|w| w.skipped.load(std::sync::atomic::Ordering::Relaxed)),
                    "frames_failed": sum(|w| w.errors.load(std::sync::atomic::Ordering::Relaxed)),
                })
            })
            .start("nvr-detection", version)
            .await
        {
            Ok(svc) => {
                json_endpoint(&svc, "status", "nvr.svc.detection.status", move || {
                    d.status()
                })
                .await;
                out.push(svc);
            }
            Err(e) => tracing::warn!("cannot register micro service nvr-detection: {e}"),
        }
    }
    if let Some(s) = spatial {
        let s = s.clone();
        let shards: Vec<String> = s
            .shards
            .iter()
            .filter_map(|x| x.lock().ok().map(|x| x.shard.clone()))
            .collect();
        let meta: std::collections::HashMap<String, String> = [
            ("node".to_string(), s.node.clone()),
            ("shards".to_string(), shards.join(",")),
        ]
        .into();
        let work = s.clone();
        match client
            .service_builder()
            .description("nvr spatial tracking shards")
            .metadata(meta)
            .stats_handler(move |_, _| {
                let shards: Vec<_> = work.shards.iter().filter_map(|x| x.lock().ok().map(|x| x.clone())).collect();
                serde_json::json!({
                    "messages_ingested": shards.iter().map(|x| x.ingested).sum::<u64>(),
                    "messages_refused": shards.iter().map(|x| x.rejected + x.malformed).sum::<u64>(),
                    "cycles": shards.iter().map(|x| x.stats.cycles).sum::<u64>(),
                })
            })
            .start("nvr-spatial", version)
            .await
        {
            Ok(svc) => {
                json_endpoint(&svc, "stats", "nvr.svc.spatial.stats", move || {
                    s.status(false)
                })
                .await;
                out.push(svc);
            }
            Err(e) => tracing::warn!("cannot register micro service nvr-spatial: {e}"),
        }
    }
    // The server has the services' subscriptions once it answered a ping:
    // a node that says it is running is listed by `$SRV.INFO` at once.
    if let Err(e) = client.flush().await {
        tracing::warn!("NATS flush after registering micro services: {e}");
    }
    out
}

/// The NATS URL a node connects to (nodes never start a server).
fn node_url(cfg: &Config) -> String {
    cfg.nats.url.clone()
}

/// Adds an endpoint to a micro service that answers every request with
/// `status()` as JSON.
async fn json_endpoint<T: Serialize>(
    svc: &async_nats::service::Service,
    name: &str,
    subject: &str,
    status: impl Fn() -> T + Send + 'static,
) {
    match svc
        .endpoint_builder()
        .name(name)
        .add(subject.to_string())
        .await
    {
        Ok(mut ep) => {
            tokio::spawn(async move {
                while let Some(req) = ep.next().await {
                    let body = serde_json::to_vec(&status()).unwrap_or_default();
                    let _ = req.respond(Ok(body.into())).await;
                }
            });
        }
        Err(e) => tracing::warn!("cannot add micro service endpoint {subject}: {e}"),
    }
}

/// Connects a node role to NATS, ensures the streams and starts the stream
/// keeper that keeps them (and the role's `/health`) current.
async fn connect_role(
    cfg: &Config,
    url: &str,
    name: &str,
) -> Result<(
    async_nats::Client,
    jetstream::Context,
    Arc<crate::health::BusHealth>,
    tokio::task::JoinHandle<()>,
)> {
    let client = crate::nats::connect(cfg, url, name).await?;
    let js = jetstream::new(client.clone());
    let retention = crate::nats::retention(cfg);
    crate::nats::ensure_or_verify_streams(&js, &retention).await?;
    let bus = Arc::new(crate::health::BusHealth::default());
    let keeper = crate::health::spawn_keeper(client.clone(), retention, bus.clone());
    Ok((client, js, bus, keeper))
}

/// `nvr detector`: a standalone detection node.
pub async fn run_detector_node(loaded: config::Loaded) -> Result<ExitCode> {
    let cfg = Arc::new(loaded.config);
    if let Err(e) = check_detection_config(&cfg).await {
        eprintln!("config error: {e}");
        return Ok(ExitCode::from(2));
    }
    let listener = match crate::api::bind("detection.address", &cfg.detection.address) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("config error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let listen = listener.local_addr()?;
    let url = node_url(&cfg);
    let (client, js, bus, keeper) = connect_role(&cfg, &url, "nvr detector").await?;
    let (node, specs) = DetectionNode::new(&cfg, js.clone());
    let n2 = node.clone();
    let app =
        Router::new()
            .route(
                "/health",
                get(move |State(n): State<Arc<DetectionNode>>| {
                    let bus = bus.clone();
                    async move {
                        crate::api::health_response_warming(&bus, "nvr-detection", n.warming())
                    }
                }),
            )
            .route(
                "/status",
                get(|State(n): State<Arc<DetectionNode>>| async move { Json(n.status()) }),
            )
            .route(
                "/metrics",
                get(
                    |State(n): State<Arc<DetectionNode>>, h: axum::http::HeaderMap| async move {
                        let mut e = crate::metrics::Exposition::default();
                        crate::metrics::detection_workers(&mut e, &[n.status()]);
                        crate::metrics::process(&mut e);
                        crate::api::metrics_response(&h, e)
                    },
                ),
            )
            .with_state(n2);
    let token = tokio_util::sync::CancellationToken::new();
    // Health answers `warming` while the workers load and warm up.
    let api = crate::api::serve(listener, app, token.clone())?;
    let (sup, handle) = supervisor::start_supervisor(specs).await?;
    let responder = serve_detection_status(client.clone(), node.clone()).await?;
    let services = register_services(&client, Some(&node), None).await;
    let mut signals = supervisor::ShutdownSignals::install();
    info!(node = %node.node, workers = node.workers.len(), http = %listen, nats = %crate::nats::redact_url(&url), "detection node running");
    signals.recv().await;
    info!("shutting down");
    crate::nats::mark_shutting_down();
    token.cancel();
    supervisor::shutdown_supervisor(&sup, handle).await;
    responder.abort();
    keeper.abort();
    drop(services);
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), api).await;
    Ok(ExitCode::SUCCESS)
}

/// `nvr spatial`: a standalone spatial shard node.
pub async fn run_spatial_node(loaded: config::Loaded) -> Result<ExitCode> {
    let cfg = Arc::new(loaded.config);
    let shard = if cfg.spatial.shard.is_empty() {
        "default".to_string()
    } else {
        cfg.spatial.shard.clone()
    };
    let cameras: Vec<String> = if cfg.spatial.cameras.is_empty() {
        cfg.cameras.iter().map(|c| c.id.clone()).collect()
    } else {
        cfg.spatial.cameras.clone()
    };
    if cameras.is_empty() {
        eprintln!(
            "config error: spatial node {shard}: no cameras (set SPATIAL_CAMERAS or cameras[])"
        );
        return Ok(ExitCode::from(2));
    }
    let mut geos = Vec::new();
    for id in &cameras {
        match geometry(&cfg, id) {
            Ok(Some(g)) => geos.push(g),
            Ok(None) => {
                eprintln!(
                    "config error: spatial shard {shard}: camera {id:?} has no calibration (cameras[].calibration or --floor-plans)"
                );
                return Ok(ExitCode::from(2));
            }
            Err(e) => {
                eprintln!("config error: {e}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    let listener = match crate::api::bind("spatial.address", &cfg.spatial.address) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("config error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let listen = listener.local_addr()?;
    let url = node_url(&cfg);
    let (client, js, bus, keeper) = connect_role(&cfg, &url, "nvr spatial").await?;
    let plan = ShardPlan {
        name: shard.clone(),
        cameras: geos,
    };
    let (node, specs) = SpatialNode::new(&cfg, js.clone(), &cameras, vec![plan]);
    let mut signals = supervisor::ShutdownSignals::install();
    let mut lease = crate::lease::Lease::new(
        &js,
        cfg.nats.replicas,
        &format!("spatial-{shard}"),
        &node.node,
    )
    .await?;
    let app = Router::new()
        .route(
            "/health",
            get(move || {
                let bus = bus.clone();
                async move { crate::api::health_response(&bus, "nvr-spatial") }
            }),
        )
        .route(
            "/stats",
            get(|State(n): State<Arc<SpatialNode>>| async move {
                Json(crate::api::aggregate_spatial(&[n.status(false)]))
            }),
        )
        .route(
            "/status",
            get(|State(n): State<Arc<SpatialNode>>| async move { Json(n.status(false)) }),
        )
        .route(
            "/tracks",
            get(|State(n): State<Arc<SpatialNode>>| async move {
                // The shape of `GET /api/v1/spatial/tracks`.
                let tracks = n.status(true).tracks;
                Json(serde_json::json!({ "count": tracks.len(), "tracks": tracks }))
            }),
        )
        .route(
            "/metrics",
            get(
                |State(n): State<Arc<SpatialNode>>, h: axum::http::HeaderMap| async move {
                    let mut e = crate::metrics::Exposition::default();
                    crate::metrics::spatial_shards(&mut e, &[n.status(false)]);
                    crate::metrics::process(&mut e);
                    crate::api::metrics_response(&h, e)
                },
            ),
        )
        .with_state(node.clone());
    let token = tokio_util::sync::CancellationToken::new();
    let api = crate::api::serve(listener, app, token.clone())?;
    // Exactly one active instance per shard: wait for the lease.
    let acquired = tokio::select! {
        _ = lease.acquire() => true,
        _ = signals.recv() => false,
    };
    let mut code = ExitCode::SUCCESS;
    if acquired {
        let (sup, handle) = supervisor::start_supervisor(specs).await?;
        let responder = serve_spatial_status(client.clone(), node.clone()).await?;
        let services = register_services(&client, None, Some(&node)).await;
        info!(shard = %shard, cameras = ?cameras, http = %listen, nats = %crate::nats::redact_url(&url), "spatial node running");
        let lost = tokio::select! {
            _ = signals.recv() => false,
            _ = lease.hold() => true,
        };
        if lost {
            tracing::error!(shard = %shard, "lease lost: another instance may be active; stopping this one");
            code = ExitCode::from(1);
        } else {
            info!("shutting down");
        }
        crate::nats::mark_shutting_down();
        supervisor::shutdown_supervisor(&sup, handle).await;
        lease.release().await;
        responder.abort();
        drop(services);
    }
    token.cancel();
    keeper.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), api).await;
    Ok(code)
}
