//! A spatial node: which shards run where, the status and tracks it
//! answers, and the standalone `nvr spatial` command.

use super::*;

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

/// The shard this node runs (`spatial.shard`, `default` when unset), its
/// cameras (`spatial.cameras`, every configured camera when unset) and
/// their floor geometry; an error names what is missing.
fn shard_of(
    cfg: &Config,
) -> std::result::Result<(String, Vec<String>, Vec<CameraGeometry>), String> {
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
        return Err(format!(
            "spatial node {shard}: no cameras (set SPATIAL_CAMERAS or cameras[])"
        ));
    }
    let mut geos = Vec::new();
    for id in &cameras {
        match geometry(cfg, id) {
            Ok(Some(g)) => geos.push(g),
            Ok(None) => {
                return Err(format!(
                    "spatial shard {shard}: camera {id:?} has no calibration (cameras[].calibration or --floor-plans)"
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok((shard, cameras, geos))
}

/// The standalone spatial node's HTTP routes: `/health`, `/stats`,
/// `/status`, `/tracks` and `/metrics`.
fn spatial_router(node: Arc<SpatialNode>, bus: Arc<crate::health::BusHealth>) -> Router {
    Router::new()
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
        .with_state(node)
}

/// `nvr spatial`: a standalone spatial shard node.
pub async fn run_spatial_node(loaded: config::Loaded) -> Result<ExitCode> {
    let cfg = Arc::new(loaded.config);
    let (shard, cameras, geos) = match shard_of(&cfg) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("config error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let Some(listener) = bind_node("spatial.address", &cfg.spatial.address) else {
        return Ok(ExitCode::from(2));
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
    let app = spatial_router(node.clone(), bus);
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
