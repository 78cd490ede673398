//! A detection node: its workers' options and child specs, the status it
//! answers, and the standalone `nvr detector` command.

use super::*;
use nvr_actors::detect::white_balance::{gain_of, Gain};

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
        let cam_gain: BTreeMap<String, Gain> = cfg
            .cameras
            .iter()
            .filter_map(|c| c.detection.white_point.map(|w| (c.id.clone(), gain_of(w))))
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
            let cam_gain = cam_gain.clone();
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
                    camera_gain: cam_gain.clone(),
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

/// `nvr detector`: a standalone detection node.
pub async fn run_detector_node(loaded: config::Loaded) -> Result<ExitCode> {
    let cfg = Arc::new(loaded.config);
    if let Err(e) = check_detection_config(&cfg).await {
        eprintln!("config error: {e}");
        return Ok(ExitCode::from(2));
    }
    let Some(listener) = bind_node("detection.address", &cfg.detection.address) else {
        return Ok(ExitCode::from(2));
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
