//! The supervision tree and `nvr run`.
//!
//! A root [`Supervisor`] actor starts one child per configured camera,
//! detector worker, track actor and spatial shard; a child that fails is
//! restarted with exponential backoff; on SIGINT/SIGTERM children are
//! stopped in order (cameras, then detectors, then trackers, then spatial)
//! so in-flight work finishes, then the API and the embedded NATS server.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::node::{self, DetectionNode, SpatialNode};

/// Spawns one child under `supervisor`.
pub type SpawnFn = Arc<
    dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, String>> + Send>>
        + Send
        + Sync,
>;

/// A child the supervisor keeps running.
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique actor name, e.g. `camera:front_door`.
    pub name: String,
    /// Stop order: lower stops first.
    pub order: u8,
    /// How to start it.
    pub spawn: SpawnFn,
}

/// Messages of the supervisor.
pub enum SupMsg {
    /// Start a child again after its backoff.
    Restart(String),
    /// Stop every child in order, then reply.
    Shutdown(RpcReplyPort<()>),
}

/// State of the supervisor.
pub struct SupState {
    /// Every child spec by name.
    specs: BTreeMap<String, ChildSpec>,
    /// Running children by name.
    children: BTreeMap<String, ActorCell>,
    /// Consecutive failures and the time of the latest, per child.
    failures: BTreeMap<String, (u32, Instant)>,
    /// Set once shutdown began: failures are no longer restarted.
    stopping: bool,
}

/// The root supervisor.
pub struct Supervisor;

/// Restart delay after `n` consecutive failures.
pub fn backoff(n: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << n.min(6));
    Duration::from_millis(ms.min(30_000))
}

impl Actor for Supervisor {
    type Msg = SupMsg;
    type State = SupState;
    type Arguments = Vec<ChildSpec>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        specs: Vec<ChildSpec>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupState {
            specs: BTreeMap::new(),
            children: BTreeMap::new(),
            failures: BTreeMap::new(),
            stopping: false,
        };
        let mut ordered = specs;
        ordered.sort_by_key(|s| std::cmp::Reverse(s.order));
        // Start consumers before producers: spatial, trackers, detectors,
        // cameras. Children of one order start together (a node's detector
        // workers warm up their models at the same time).
        let mut i = 0;
        while i < ordered.len() {
            let order = ordered[i].order;
            let n = ordered[i..].iter().take_while(|s| s.order == order).count();
            let group: Vec<ChildSpec> = ordered[i..i + n].to_vec();
            i += n;
            let started =
                futures::future::join_all(group.iter().map(|spec| (spec.spawn)(myself.get_cell())))
                    .await;
            for (spec, r) in group.into_iter().zip(started) {
                let cell = r.map_err(|e| format!("{}: {e}", spec.name))?;
                state.children.insert(spec.name.clone(), cell);
                state.specs.insert(spec.name.clone(), spec);
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupMsg::Restart(name) => {
                if state.stopping || state.children.contains_key(&name) {
                    return Ok(());
                }
                let Some(spec) = state.specs.get(&name).cloned() else {
                    return Ok(());
                };
                match (spec.spawn)(myself.get_cell()).await {
                    Ok(cell) => {
                        info!(child = %name, "restarted");
                        state.children.insert(name, cell);
                    }
                    Err(e) => {
                        let n = bump(state, &name);
                        let d = backoff(n);
                        warn!(child = %name, "restart failed: {e}; next try in {d:?}");
                        myself.send_after(d, move || SupMsg::Restart(name));
                    }
                }
            }
            SupMsg::Shutdown(reply) => {
                state.stopping = true;
                let mut orders: Vec<u8> = state.specs.values().map(|s| s.order).collect();
                orders.sort();
                orders.dedup();
                for order in orders {
                    let names: Vec<String> = state
                        .specs
                        .values()
                        .filter(|s| s.order == order)
                        .map(|s| s.name.clone())
                        .collect();
                    let mut waits = Vec::new();
                    for name in names {
                        if let Some(cell) = state.children.remove(&name) {
                            waits.push(async move {
                                if cell
                                    .stop_and_wait(None, Some(Duration::from_secs(4)))
                                    .await
                                    .is_err()
                                {
                                    warn!(child = %name, "did not stop in time; killing");
                                    cell.kill();
                                }
                            });
                        }
                    }
                    futures::future::join_all(waits).await;
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("stopped: {}", reason.unwrap_or_else(|| "no reason".into())),
            ),
            _ => return Ok(()),
        };
        if state.stopping {
            return Ok(());
        }
        let Some(name) = state
            .children
            .iter()
            .find(|(_, c)| c.get_id() == cell.get_id())
            .map(|(n, _)| n.clone())
        else {
            return Ok(());
        };
        state.children.remove(&name);
        let n = bump(state, &name);
        let d = backoff(n);
        error!(child = %name, "{why}; restarting in {d:?}");
        myself.send_after(d, move || SupMsg::Restart(name));
        Ok(())
    }
}

/// Counts a failure of `name`; the count resets after a minute without one.
fn bump(state: &mut SupState, name: &str) -> u32 {
    let now = Instant::now();
    let e = state.failures.entry(name.to_string()).or_insert((0, now));
    if now.duration_since(e.1) > Duration::from_secs(60) {
        e.0 = 0;
    }
    e.0 += 1;
    e.1 = now;
    e.0 - 1
}

/// Everything the API and the status responders read.
pub struct Shared {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// NATS client.
    pub client: async_nats::Client,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Process start.
    pub started: Instant,
    /// URL of the NATS server in use.
    pub nats_url: String,
    /// Whether this process started that server.
    pub nats_embedded: bool,
    /// Camera pipelines of this process.
    pub cameras: BTreeMap<String, Arc<Mutex<nvr_actors::status::CameraStatus>>>,
    /// Frames the server gave up on after `max_deliver` deliveries to the
    /// `detectors` consumer (JetStream advisories), so they are counted too.
    pub dead_lettered: Arc<std::sync::atomic::AtomicU64>,
    /// Whether NATS answers and the streams exist (kept by the stream keeper).
    pub bus: Arc<crate::health::BusHealth>,
    /// Restarts of the embedded nats-server, when this process owns one.
    pub nats_restarts: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Detections stored per camera, counted from the stream itself, so a
    /// detection node that dies does not take its processed frames with it.
    pub stored: Arc<crate::census::Census>,
    /// Machine CPU, memory and GPU over time (the health page, the
    /// "When to Scale" verdicts).
    pub sampler: Arc<crate::sampler::Sampler>,
    /// Recent detection counters, so the frame drop rate is a recent one.
    pub drops: crate::scaling::DropWindow,
    /// Each camera's latest frame, read off the bus while someone looks.
    pub latest: Arc<crate::latest::LatestFrames>,
    /// Counters of the JSON event mirror (`nats.json_events`).
    pub json_events: Arc<crate::events::MirrorCounts>,
    /// Counters of the event snapshots (`nats.retention.snapshots_max_mb`).
    pub snapshots: Arc<crate::snapshots::SnapshotCounts>,
}

/// Counts JetStream's max-deliveries advisories of the `detectors` consumer
/// into `counter` for as long as the client lives.
pub async fn count_dead_letters(
    client: &async_nats::Client,
    counter: Arc<std::sync::atomic::AtomicU64>,
) -> Result<tokio::task::JoinHandle<()>> {
    use futures::StreamExt;
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        nvr_subjects::streams::FRAMES,
        nvr_subjects::streams::DETECTORS_CONSUMER
    );
    let mut sub = client
        .subscribe(subject)
        .await
        .map_err(|e| anyhow::anyhow!("subscribe to max-deliveries advisories: {e}"))?;
    Ok(tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(
                "frame dropped after the maximum number of deliveries: {}",
                String::from_utf8_lossy(&m.payload)
            );
        }
    }))
}

/// SIGINT and SIGTERM listeners, registered when this is created: a signal
/// that arrives before anyone waits is kept for the next [`Self::recv`]
/// instead of being lost, or of killing the process by the default action
/// while it is already reporting itself running.
pub struct ShutdownSignals {
    /// SIGINT (Ctrl-C); `None` if it could not be registered.
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    /// SIGTERM (`docker stop`, systemd); `None` if it could not be registered.
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Registers the listeners (inside the async runtime).
    pub fn install() -> ShutdownSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            ShutdownSignals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            ShutdownSignals {}
        }
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            if self.int.is_none() && self.term.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            let ShutdownSignals { int, term } = self;
            tokio::select! {
                _ = next(int) => {},
                _ = next(term) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Starts the supervisor with `specs`; a child that cannot start fails the whole start.
pub async fn start_supervisor(
    specs: Vec<ChildSpec>,
) -> Result<(ActorRef<SupMsg>, tokio::task::JoinHandle<()>)> {
    Actor::spawn(Some("nvr-supervisor".to_string()), Supervisor, specs)
        .await
        .map_err(|e| match e {
            ractor::SpawnErr::StartupFailed(inner) => anyhow::anyhow!("{inner}"),
            other => anyhow::anyhow!("{other}"),
        })
}

/// Stops the supervisor's children in order and then the supervisor.
pub async fn shutdown_supervisor(sup: &ActorRef<SupMsg>, handle: tokio::task::JoinHandle<()>) {
    match ractor::call_t!(sup, SupMsg::Shutdown, 3_000) {
        Ok(()) => {}
        Err(e) => warn!("ordered shutdown incomplete: {e}"),
    }
    sup.stop(None);
    let _ = tokio::time::timeout(Duration::from_secs(3), handle).await;
}

/// `nvr run`: everything the configuration enables, in one process.
pub async fn run_all(loaded: crate::config::Loaded) -> Result<ExitCode> {
    let cfg = Arc::new(loaded.config);
    // Startup faults: one line and exit code 2, before anything is started.
    let api_listener = match preflight(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("config error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let shards = match node::shards_for_run(&cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("config error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let timeout = Duration::from_secs(cfg.detection.timeout_seconds);
    let server = if cfg.nats.embedded {
        Some(crate::nats::EmbeddedServer::start(&cfg.nats, timeout).await?)
    } else {
        None
    };
    let url = server
        .as_ref()
        .map(|s| s.url.clone())
        .unwrap_or_else(|| cfg.nats.url.clone());
    // The owner of a server with role users connects as `nvr`.
    let cfg = if server.is_some() && cfg.nats.roles_enabled() && cfg.nats.user.is_empty() {
        let mut c = (*cfg).clone();
        c.nats.user = "nvr".into();
        c.nats.password = crate::roles::password(&c.nats.store_dir, "nvr")?;
        Arc::new(c)
    } else {
        cfg
    };
    let result = run_with_nats(cfg.clone(), &url, server.as_ref(), shards, api_listener).await;
    if let Some(s) = server {
        s.stop().await;
    }
    result
}

/// What `nvr run` checks before it starts anything: the detection model and
/// backend, the embedded server (binary, store directory, free port) and
/// the API port, which is bound here and kept.
async fn preflight(cfg: &Config) -> Result<std::net::TcpListener> {
    if cfg.detection.embedded {
        node::check_detection_config(cfg)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if cfg.nats.embedded {
        crate::nats::preflight_embedded(&cfg.nats)?;
    }
    crate::api::bind("api.address", &cfg.api.address)
}

/// The detection and spatial nodes this process runs in-process (as the
/// configuration's `embedded` flags say), their actors added to `specs`.
fn embedded_nodes(
    cfg: &Config,
    js: &jetstream::Context,
    shards: Vec<node::ShardPlan>,
    specs: &mut Vec<ChildSpec>,
) -> (Option<Arc<DetectionNode>>, Option<Arc<SpatialNode>>) {
    let detection = cfg.detection.embedded.then(|| {
        let (n, s) = DetectionNode::new(cfg, js.clone());
        specs.extend(s);
        n
    });
    let spatial = cfg.spatial.embedded.then(|| {
        let track_cams: Vec<String> = cfg.cameras.iter().map(|c| c.id.clone()).collect();
        let (n, s) = SpatialNode::new(cfg, js.clone(), &track_cams, shards);
        specs.extend(s);
        n
    });
    (detection, spatial)
}

/// Waits for a shutdown signal or for the embedded NATS server to fail for
/// good, marks the process as shutting down and logs why. Returns the
/// failure, if that was it.
async fn wait_for_stop(
    server: Option<&crate::nats::EmbeddedServer>,
    signals: &mut ShutdownSignals,
) -> Option<String> {
    let server_failed = async {
        match server {
            Some(s) => s.failed().await,
            None => std::future::pending().await,
        }
    };
    let fatal = tokio::select! {
        _ = signals.recv() => None,
        why = server_failed => Some(why),
    };
    crate::nats::mark_shutting_down();
    match &fatal {
        None => info!("shutting down"),
        Some(why) => error!("{why}; shutting down so the service manager restarts nvr"),
    }
    fatal
}

/// The camera actors of the cameras `nvr` pulls (`url` set) and the status
/// of every configured camera: those it pulls, and external ones whose
/// frames another process publishes.
fn camera_actors(
    cfg: &Arc<Config>,
    js: &jetstream::Context,
) -> (
    Vec<ChildSpec>,
    BTreeMap<String, Arc<Mutex<nvr_actors::status::CameraStatus>>>,
) {
    let mut specs = Vec::new();
    let mut cameras = BTreeMap::new();
    for cam in cfg.cameras.iter().filter(|c| c.url.is_some()) {
        let status = Arc::new(Mutex::new(nvr_actors::status::CameraStatus::default()));
        cameras.insert(cam.id.clone(), status.clone());
        specs.push(node::camera_spec(cfg, cam, js.clone(), status));
    }
    for cam in cfg.cameras.iter().filter(|c| c.url.is_none()) {
        let status = nvr_actors::status::CameraStatus {
            id: cam.id.clone(),
            state: nvr_actors::status::CameraState::External,
            ..Default::default()
        };
        cameras.insert(cam.id.clone(), Arc::new(Mutex::new(status)));
    }
    (specs, cameras)
}

/// What runs where, in words, for the start-up line: the detection
/// workers here (or none) and the spatial shards here (or none).
fn where_things_run(
    cfg: &Config,
    detection: Option<&DetectionNode>,
    spatial: Option<&SpatialNode>,
) -> (String, String) {
    let detection_here = match detection {
        Some(d) => {
            let l = d.status().layout;
            format!(
                "{} worker(s) here, {}, batch {}, ~{} fps measured",
                l.workers, cfg.detection.backend, l.batch, l.capacity_fps
            )
        }
        None => "on detection nodes (none here)".into(),
    };
    let spatial_here = match spatial {
        Some(s) => {
            let names: Vec<String> = s
                .shards
                .iter()
                .filter_map(|x| x.lock().ok().map(|x| x.shard.clone()))
                .collect();
            if names.is_empty() {
                "per-camera tracking here, no calibrated shard".into()
            } else {
                format!("shard(s) {} here", names.join(", "))
            }
        }
        None => "on spatial nodes (none here)".into(),
    };
    (detection_here, spatial_here)
}

/// The optional mirrors that run beside the actors until `token` is
/// cancelled: events as JSON (`nats.json_events`) and the snapshot store
/// (`nats.retention.snapshots_max_mb`).
async fn spawn_mirrors(
    cfg: &Config,
    client: &async_nats::Client,
    shared: &Shared,
    token: &tokio_util::sync::CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let json_mirror = if cfg.nats.json_events_on() {
        Some(
            crate::events::spawn_json_mirror(
                client.clone(),
                shared.json_events.clone(),
                token.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    let snapshotter = if cfg.nats.retention.snapshots_max_mb != 0 {
        Some(
            crate::snapshots::spawn_snapshotter(
                client.clone(),
                cfg.cameras.iter().map(|c| c.id.clone()).collect(),
                shared.snapshots.clone(),
                token.clone(),
            )
            .await?,
        )
    } else {
        None
    };
    Ok([json_mirror, snapshotter].into_iter().flatten().collect())
}

/// Logs what runs where, in one line.
fn log_running(
    cfg: &Config,
    url: &str,
    listen: std::net::SocketAddr,
    embedded: bool,
    detection: Option<&DetectionNode>,
    spatial: Option<&SpatialNode>,
) {
    let (detection_here, spatial_here) = where_things_run(cfg, detection, spatial);
    let camera_ids: Vec<&str> = cfg.cameras.iter().map(|c| c.id.as_str()).collect();
    info!(
        api = %format!("http://{listen}"),
        nats = %crate::nats::redact_url(url),
        embedded_nats = embedded,
        detection = %detection_here,
        spatial = %spatial_here,
        cameras = %camera_ids.join(","),
        "nvr running"
    );
}

async fn run_with_nats(
    cfg: Arc<Config>,
    url: &str,
    server: Option<&crate::nats::EmbeddedServer>,
    shards: Vec<node::ShardPlan>,
    api_listener: std::net::TcpListener,
) -> Result<ExitCode> {
    let embedded = server.is_some();
    let client = crate::nats::connect(&cfg, url, "nvr run").await?;
    let js = jetstream::new(client.clone());
    let retention = crate::nats::retention(&cfg);
    crate::nats::ensure_streams(&js, &retention)
        .await
        .context("setting up JetStream streams")?;
    let bus = Arc::new(crate::health::BusHealth::default());
    let keeper = crate::health::spawn_keeper(client.clone(), retention, bus.clone());
    let tracked: Vec<String> = cfg.cameras.iter().map(|c| c.id.clone()).collect();
    let stored = Arc::new(crate::census::Census::new(tracked));
    let census = crate::census::spawn(js.clone(), stored.clone());

    let (mut specs, cameras) = camera_actors(&cfg, &js);
    let (detection, spatial) = embedded_nodes(&cfg, &js, shards, &mut specs);

    let api_token = tokio_util::sync::CancellationToken::new();
    let shared = Arc::new(Shared {
        config: cfg.clone(),
        client: client.clone(),
        js: js.clone(),
        started: Instant::now(),
        nats_url: url.to_string(),
        nats_embedded: embedded,
        cameras,
        dead_lettered: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        bus,
        nats_restarts: server.map(|s| s.restarts.clone()),
        stored,
        sampler: crate::sampler::Sampler::spawn(api_token.clone()),
        drops: Default::default(),
        latest: crate::latest::LatestFrames::new(client.clone()),
        json_events: Default::default(),
        snapshots: Default::default(),
    });
    // Stops after the actors, so their last events are mirrored too.
    let mirror_token = tokio_util::sync::CancellationToken::new();
    let mirrors = spawn_mirrors(&cfg, &client, &shared, &mirror_token).await?;
    let dead_letters = count_dead_letters(&client, shared.dead_lettered.clone()).await?;

    let (sup, sup_handle) = start_supervisor(specs).await?;
    let mut responders = Vec::new();
    if let Some(d) = &detection {
        responders.push(node::serve_detection_status(client.clone(), d.clone()).await?);
    }
    if let Some(s) = &spatial {
        responders.push(node::serve_spatial_status(client.clone(), s.clone()).await?);
    }
    let services = node::register_services(&client, detection.as_ref(), spatial.as_ref()).await;
    crate::gather::prime_roster(&client);

    let listen = api_listener.local_addr()?;
    let api = crate::api::serve(
        api_listener,
        crate::api::router(shared.clone()),
        api_token.clone(),
    )?;
    let mut signals = ShutdownSignals::install();
    log_running(
        &cfg,
        url,
        listen,
        embedded,
        detection.as_deref(),
        spatial.as_deref(),
    );

    let fatal = wait_for_stop(server, &mut signals).await;
    api_token.cancel();
    shutdown_supervisor(&sup, sup_handle).await;
    mirror_token.cancel();
    for m in mirrors {
        let _ = tokio::time::timeout(Duration::from_secs(1), m).await;
    }
    for r in responders {
        r.abort();
    }
    dead_letters.abort();
    keeper.abort();
    census.abort();
    drop(services);
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), api).await;
    info!("stopped");
    Ok(if fatal.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_millis(1000));
        assert_eq!(backoff(3), Duration::from_millis(4000));
        assert_eq!(backoff(20), Duration::from_millis(30_000));
    }
}
