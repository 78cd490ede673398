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

mod detection;
mod spatial;

pub use detection::{
    check_detection_config, detector_options, run_detector_node, serve_detection_status,
    DetectionNode,
};
pub use spatial::{
    run_spatial_node, serve_spatial_status, shards_for_run, spatial_params, ShardPlan, SpatialNode,
    SpatialNodeStatus,
};

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

/// A name for this process: host and pid.
pub fn node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}", std::process::id())
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

/// Binds a standalone node's listen address (config key `key`); `None`
/// after one line saying why, for exit code 2.
fn bind_node(key: &str, address: &str) -> Option<std::net::TcpListener> {
    match crate::api::bind(key, address) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("config error: {e:#}");
            None
        }
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
