//! The HTTP API (port 12000): health, detection status, spatial stats and
//! tracks, Prometheus metrics. Detection and spatial figures are gathered
//! from every node on the bus (a status request that all nodes answer), so
//! local and remote nodes are aggregated the same way.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use nvr_actors::status::{self, histogram_from_b64, new_histogram, DetectionNodeStatus, Latency};
use nvr_subjects::streams;
use serde_json::{json, Value};

use crate::node::SpatialNodeStatus;
use crate::supervisor::Shared;

use crate::gather::{gather, GATHER};

mod client;
mod metrics;
mod system;

pub use client::print_status;
pub use metrics::metrics_response;

/// Binds the listen address of config key `key` (checked before anything
/// else starts, so a port in use fails with one line and exit code 2).
pub fn bind(key: &str, address: &str) -> Result<std::net::TcpListener> {
    let listen: SocketAddr = crate::config::parse_listen(address)
        .map_err(|e| anyhow::anyhow!("{key} = {address:?}: {e}"))?;
    let l = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("{key} = {address:?}: cannot listen on {listen}: {e}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Starts serving `app` on `listener` until `token` is cancelled.
pub fn serve(
    listener: std::net::TcpListener,
    app: Router,
    token: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    }))
}

/// The main API router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/system/health", get(system::system_health))
        .route(
            "/api/v1/plugins/nvr-detection/status",
            get(detection_status),
        )
        .route("/api/v1/spatial/stats", get(spatial_stats))
        .route("/api/v1/spatial/tracks", get(spatial_tracks))
        .route("/metrics", get(metrics::metrics))
        .merge(crate::web::routes())
        .merge(crate::events::routes())
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ))
        .with_state(shared)
}

/// With `api.token` set, every endpoint but `/health` and the page's own
/// assets needs `Authorization: Bearer <token>` (or `?token=<token>`, for
/// what a browser loads without headers: images and the live feed); others
/// get 401.
async fn require_token(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let want = &s.config.api.token;
    let path = req.uri().path();
    if want.is_empty() || path == "/health" || crate::web::is_public(path) {
        return next.run(req).await;
    }
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(percent_decode)
    });
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or(from_query);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), want.as_bytes())) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "this endpoint needs Authorization: Bearer <api.token>"})),
        )
            .into_response()
    }
}

/// Decodes `%XX` escapes and `+` of a query value.
fn percent_decode(v: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%' && i + 2 < b.len())
            .then(|| Some(hex(b[i + 1])? * 16 + hex(b[i + 2])?))
            .flatten();
        match (escaped, b[i]) {
            (Some(x), _) => {
                out.push(x as u8);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, c) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares two secrets without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `{"status": "ok"}` with 200 while this process can do useful work, or 503
/// with the reason: NATS does not answer within a second, or a contract
/// stream is missing and could not be re-created.
pub fn health_response(bus: &crate::health::BusHealth, service: &str) -> Response {
    health_response_warming(bus, service, None)
}

/// [`health_response`], and `{"status": "warming"}` with 503 and the reason
/// while `warming` says the process is not ready to take work yet.
pub fn health_response_warming(
    bus: &crate::health::BusHealth,
    service: &str,
    warming: Option<String>,
) -> Response {
    let problem = bus.problem();
    let ok = problem.is_none() && warming.is_none();
    let status = match (&problem, &warming) {
        (Some(_), _) => "unavailable",
        (None, Some(_)) => "warming",
        (None, None) => "ok",
    };
    let problem = problem.or(warming);
    let body = json!({
        "status": status,
        "service": service,
        "nats_connected": bus.nats_answers(),
        "streams_ok": bus.streams_ok(),
        "reason": problem,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

fn nats_ok(s: &Shared) -> bool {
    s.bus.nats_answers()
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    health_response(&s.bus, "nvr")
}

/// Every node's answer on `subject` (nothing while NATS is down), sorted by
/// node id; an answer that does not parse is left out.
async fn node_statuses<T: serde::de::DeserializeOwned>(
    s: &Shared,
    subject: &str,
    body: &'static [u8],
    node: fn(&T) -> &str,
) -> Vec<T> {
    if !nats_ok(s) {
        return Vec::new();
    }
    let mut nodes: Vec<T> = gather(&s.client, subject, body)
        .await
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    nodes.sort_by(|a, b| node(a).cmp(node(b)));
    nodes
}

async fn detection_nodes(s: &Shared) -> Vec<DetectionNodeStatus> {
    node_statuses(
        s,
        status::DETECTION_STATUS_SUBJECT,
        b"",
        |n: &DetectionNodeStatus| n.node.as_str(),
    )
    .await
}

async fn spatial_nodes(s: &Shared, with_tracks: bool) -> Vec<SpatialNodeStatus> {
    let body: &'static [u8] = if with_tracks { b"tracks" } else { b"" };
    node_statuses(
        s,
        status::SPATIAL_STATUS_SUBJECT,
        body,
        |n: &SpatialNodeStatus| n.node.as_str(),
    )
    .await
}

/// Pending plus unacknowledged frames on the `detectors` consumer.
async fn queue_size(s: &Shared) -> Option<(u64, u64)> {
    if !nats_ok(s) {
        return None;
    }
    let read = async {
        let stream = s.js.get_stream(streams::FRAMES).await.ok()?;
        let info = stream
            .consumer_info(streams::DETECTORS_CONSUMER)
            .await
            .ok()?;
        Some((info.num_pending, info.num_ack_pending as u64))
    };
    tokio::time::timeout(GATHER, read).await.ok().flatten()
}

/// The aggregated detection status document.
pub async fn detection_document(s: &Shared) -> Value {
    detection_document_and_nodes(s).await.0
}

/// [`detection_document`] and the node statuses it was made from.
pub async fn detection_document_and_nodes(s: &Shared) -> (Value, Vec<status::DetectionNodeStatus>) {
    // Read in this order so a frame counted as published is, at the later
    // reads, either still queued, in flight or in a worker's counters: the
    // expired figure never counts a frame that is merely on its way.
    let published: u64 = s
        .cameras
        .values()
        .filter_map(|c| c.lock().ok().map(|c| c.frames_published))
        .sum();
    let queue = queue_size(s).await;
    let nodes = detection_nodes(s).await;
    let stored = s.stored.detections();
    let t = WorkerTotals::of(&nodes);
    let cameras = camera_documents(s, t.per_cam, &stored);
    // Frames processed: what the live workers report, or what was stored for
    // this process's cameras when that is more (a node died meanwhile).
    let processed = t.processed.max(
        s.cameras
            .iter()
            .filter(|(_, st)| {
                st.lock()
                    .is_ok_and(|st| st.state != status::CameraState::External)
            })
            .filter_map(|(c, _)| stored.get(c))
            .sum::<u64>(),
    );
    let l = Latency::of(&t.lat);
    let el = Latency::of(&t.e2e);
    let (pending, ack_pending) = queue.unwrap_or((0, 0));
    let dropped_publish: u64 = s
        .cameras
        .values()
        .filter_map(|c| c.lock().ok().map(|c| c.frames_dropped))
        .sum();
    // Frames published here that no worker reported and that are no longer queued expired in the stream.
    let dead_lettered = s.dead_lettered.load(std::sync::atomic::Ordering::Relaxed);
    let expired = if published > 0 {
        published.saturating_sub(
            processed + t.skipped + t.errors + dead_lettered + pending + ack_pending,
        )
    } else {
        0
    };
    let backend = nodes
        .first()
        .map(|n| n.backend.clone())
        .unwrap_or_else(|| s.config.detection.backend.clone());
    let doc = json!({
        "connected": !nodes.is_empty() && nats_ok(s),
        "backend": backend,
        "queue_size": pending + ack_pending,
        "queue_pending": pending,
        "queue_in_flight": ack_pending,
        "processed_count": processed,
        "error_count": t.errors + dead_lettered,
        "delivery_error_count": t.delivery_errors,
        "refused": t.refused,
        "skipped_count": t.skipped,
        "malformed_count": t.malformed,
        "dropped_at_publish_count": dropped_publish,
        "expired_count": expired,
        "dead_lettered_count": dead_lettered,
        "avg_latency_ms": round2(l.avg_ms),
        "p50_latency_ms": round2(l.p50_ms),
        "p95_latency_ms": round2(l.p95_ms),
        "p99_latency_ms": round2(l.p99_ms),
        "e2e_avg_latency_ms": round2(el.avg_ms),
        "e2e_p50_latency_ms": round2(el.p50_ms),
        "e2e_p95_latency_ms": round2(el.p95_ms),
        "e2e_p99_latency_ms": round2(el.p99_ms),
        "fps": round2(t.fps),
        "nodes": nodes.iter().map(|n| json!({
            "node": n.node, "backend": n.backend, "requested_backend": n.requested_backend,
            "fallback_reason": n.fallback_reason, "model": n.model, "appearance": n.appearance, "input_size": n.input_size,
            "workers": n.workers.len(), "uptime_s": round2(n.uptime_s), "memory_mb": round2(n.memory_mb),
            "layout": n.layout,
        })).collect::<Vec<_>>(),
        "workers": t.workers,
        "cameras": cameras,
    });
    (doc, nodes)
}

/// What every detection worker of every node reports, summed.
struct WorkerTotals {
    /// Inference latency of all workers, merged.
    lat: hdrhistogram::Histogram<u64>,
    /// Frame-to-detections latency of all workers, merged.
    e2e: hdrhistogram::Histogram<u64>,
    /// Frames with published detections.
    processed: u64,
    /// Frames that failed (undecodable ones included).
    errors: u64,
    /// Deliveries that failed and were left for redelivery.
    delivery_errors: u64,
    /// Frames refused, by reason.
    refused: nvr_actors::guard::RefusalCounts,
    /// Frames skipped as too old.
    skipped: u64,
    /// Undecodable frame messages (counted in `errors` too).
    malformed: u64,
    /// Frames per second, all workers together.
    fps: f64,
    /// One document per worker, for the `workers` list.
    workers: Vec<Value>,
    /// Per camera: processed, skipped, errors, latency sum (ms), colours.
    per_cam: BTreeMap<String, status::CameraCounters>,
}

impl WorkerTotals {
    /// Sums the workers of `nodes`.
    fn of(nodes: &[status::DetectionNodeStatus]) -> WorkerTotals {
        let mut lat = new_histogram();
        let mut e2e = new_histogram();
        let (mut processed, mut errors, mut skipped, mut malformed) = (0u64, 0u64, 0u64, 0u64);
        let mut delivery_errors = 0u64;
        let mut refused = nvr_actors::guard::RefusalCounts::new();
        let mut fps = 0.0;
        let mut workers = Vec::new();
        let mut per_cam: BTreeMap<String, status::CameraCounters> = BTreeMap::new();
        for n in nodes {
            for w in &n.workers {
                processed += w.processed_count;
                errors += w.error_count;
                delivery_errors += w.delivery_error_count;
                for (k, v) in &w.refused {
                    *refused.entry(k.clone()).or_insert(0) += v;
                }
                skipped += w.skipped_count;
                malformed += w.malformed_count;
                fps += w.fps;
                if let Some(h) = histogram_from_b64(&w.latency_hist) {
                    let _ = lat.add(&h);
                }
                if let Some(h) = histogram_from_b64(&w.e2e_hist) {
                    let _ = e2e.add(&h);
                }
                for (cam, c) in &w.cameras {
                    let e = per_cam.entry(cam.clone()).or_default();
                    e.processed += c.processed;
                    e.skipped += c.skipped;
                    e.errors += c.errors;
                    e.latency_sum_ms += c.latency_sum_ms;
                    e.white.merge(&c.white);
                }
                workers.push(json!({
                    "worker": w.worker,
                    "node": n.node,
                    "backend": n.backend,
                    "processed_count": w.processed_count,
                    "skipped_count": w.skipped_count,
                    "error_count": w.error_count,
                    "delivery_error_count": w.delivery_error_count,
                    "in_flight": w.in_flight,
                    "refused": w.refused,
                    "fps": round2(w.fps),
                    "avg_latency_ms": round2(w.latency.avg_ms),
                    "p50_latency_ms": round2(w.latency.p50_ms),
                    "p95_latency_ms": round2(w.latency.p95_ms),
                    "p99_latency_ms": round2(w.latency.p99_ms),
                    "last_error": w.last_error,
                }));
            }
        }
        WorkerTotals {
            lat,
            e2e,
            processed,
            errors,
            delivery_errors,
            refused,
            skipped,
            malformed,
            fps,
            workers,
            per_cam,
        }
    }
}

/// The `cameras` map of the detection document: this process's cameras
/// (published and dropped frames, what the workers did with them, or
/// what was stored when that is more) and the cameras only workers know.
fn camera_documents(
    s: &Shared,
    mut per_cam: BTreeMap<String, status::CameraCounters>,
    stored: &BTreeMap<String, u64>,
) -> BTreeMap<String, Value> {
    let configured: BTreeMap<&str, [f64; 3]> = s
        .config
        .cameras
        .iter()
        .filter_map(|c| c.detection.white_point.map(|w| (c.id.as_str(), w)))
        .collect();
    // What a camera's white point measures (to set in its configuration)
    // and the one set.
    let white = |cam: &str, c: &status::CameraCounters| {
        (
            c.white.white_point(),
            c.white.boxes,
            configured.get(cam).copied(),
        )
    };
    let mut cameras: BTreeMap<String, Value> = BTreeMap::new();
    for (cam, st) in &s.cameras {
        let Ok(st) = st.lock().map(|x| x.clone()) else {
            continue;
        };
        let stored = if st.state == status::CameraState::External {
            0
        } else {
            stored.get(cam).copied().unwrap_or(0)
        };
        let c = per_cam.entry(cam.clone()).or_default();
        // A node that died took its counters with it; what was stored stays.
        c.processed = c.processed.max(stored);
        let p = c.processed;
        let (wp, wp_boxes, wp_set) = white(cam, c);
        cameras.insert(
            cam.clone(),
            json!({
                "published": st.frames_published,
                "dropped_at_publish": st.frames_dropped,
                "processed": p, "skipped": c.skipped, "errors": c.errors,
                "avg_latency_ms": if p > 0 { round2(c.latency_sum_ms / p as f64) } else { 0.0 },
                "fps_out": round2(st.fps_out),
                "white_point": wp, "white_point_boxes": wp_boxes, "white_point_set": wp_set,
            }),
        );
    }
    for (cam, c) in &per_cam {
        cameras.entry(cam.clone()).or_insert_with(|| {
            let p = c.processed;
            let (wp, wp_boxes, wp_set) = white(cam, c);
            json!({"processed": p, "skipped": c.skipped, "errors": c.errors,
                   "avg_latency_ms": if p > 0 { round2(c.latency_sum_ms / p as f64) } else { 0.0 },
                   "white_point": wp, "white_point_boxes": wp_boxes, "white_point_set": wp_set})
        });
    }
    cameras
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

async fn detection_status(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(detection_document(&s).await)
}

/// Aggregates spatial node statuses into the stats document.
pub fn aggregate_spatial(nodes: &[SpatialNodeStatus]) -> Value {
    let (mut active, mut lost) = (0usize, 0usize);
    let mut total = 0u64;
    let mut handoffs = 0u64;
    let mut failures = 0u64;
    let mut evicted = 0u64;
    let mut expired = 0u64;
    let mut rejected = 0u64;
    let mut hist = new_histogram();
    let mut statics = 0usize;
    let mut duplicates = 0usize;
    let mut weighted = (0.0, 0u64);
    let mut reid = (0.0, 0u64);
    let mut p99: f64 = 0.0;
    let mut memory = 0.0;
    let mut shards = Vec::new();
    let mut tracking = BTreeMap::new();
    for n in nodes {
        memory += n.memory_mb;
        for (k, v) in &n.tracking {
            tracking.insert(k.clone(), v.clone());
        }
        for sh in &n.shards {
            active += sh.stats.active_tracks;
            lost += sh.stats.lost_tracks;
            statics += sh.stats.static_tracks;
            duplicates += sh.stats.duplicate_tracks;
            total += sh.stats.total_tracks;
            handoffs += sh.stats.handoffs_completed;
            failures += sh.stats.handoff_failures;
            evicted += sh.stats.evicted;
            expired += sh.stats.expired;
            rejected += sh.rejected + sh.malformed;
            weighted.0 += sh.processing.avg_ms * sh.processing.count as f64;
            weighted.1 += sh.processing.count;
            reid.0 += sh.reid.avg_ms * sh.reid.count as f64;
            reid.1 += sh.reid.count;
            p99 = p99.max(sh.processing.p99_ms);
            if let Some(h) = histogram_from_b64(&sh.processing_hist) {
                let _ = hist.add(&h);
            }
            shards.push(json!({
                "shard": sh.shard, "node": n.node, "cameras": sh.cameras,
                "active_tracks": sh.stats.active_tracks, "lost_tracks": sh.stats.lost_tracks,
                "static_tracks": sh.stats.static_tracks,
                "duplicate_tracks": sh.stats.duplicate_tracks,
                "total_tracks": sh.stats.total_tracks,
                "avg_processing_ms": round3(sh.processing.avg_ms), "p99_processing_ms": round3(sh.processing.p99_ms),
                "reid_matching_ms": round3(sh.reid.avg_ms),
                "handoffs_completed": sh.stats.handoffs_completed, "handoff_failures": sh.stats.handoff_failures,
                "evicted": sh.stats.evicted, "expired": sh.stats.expired, "cycles": sh.stats.cycles,
                "merged": sh.stats.merged, "relinked": sh.stats.relinked, "unbound_sources": sh.stats.unbound_sources,
                "rebound_sources": sh.stats.rebound_sources, "handoffs_undone": sh.stats.handoffs_undone,
                "camera_agreement": sh.stats.camera_agreement,
                "ingested": sh.ingested, "rejected": sh.rejected, "malformed": sh.malformed, "refused": sh.refused,
                "last_error": sh.last_error,
            }));
        }
    }
    let avg = if weighted.1 > 0 {
        weighted.0 / weighted.1 as f64
    } else {
        0.0
    };
    let reid_avg = if reid.1 > 0 {
        reid.0 / reid.1 as f64
    } else {
        0.0
    };
    let attempts = handoffs + failures;
    json!({
        "active_tracks": active,
        "lost_tracks": lost,
        "static_tracks": statics,
        "duplicate_tracks": duplicates,
        "total_tracks": total,
        "avg_processing_ms": round3(avg),
        "p99_processing_ms": round3(if hist.is_empty() { p99 } else { Latency::of(&hist).p99_ms }),
        "reid_matching_ms": round3(reid_avg),
        "handoffs_completed": handoffs,
        "handoff_failures": failures,
        "handoff_failure_rate_pct": if attempts > 0 { round2(failures as f64 * 100.0 / attempts as f64) } else { 0.0 },
        "evicted_tracks": evicted,
        "expired_tracks": expired,
        "rejected_messages": rejected,
        "memory_usage_mb": round2(memory),
        "nodes": nodes.len(),
        "shards": shards,
        "tracking": tracking,
    })
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

async fn spatial_stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(aggregate_spatial(&spatial_nodes(&s, false).await))
}

async fn spatial_tracks(State(s): State<Arc<Shared>>) -> Json<Value> {
    let nodes = spatial_nodes(&s, true).await;
    let tracks: Vec<_> = nodes.into_iter().flat_map(|n| n.tracks).collect();
    Json(json!({ "count": tracks.len(), "tracks": tracks }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb%20c+d"), "a+b c d");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
