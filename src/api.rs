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
        .route("/api/v1/system/health", get(system_health))
        .route(
            "/api/v1/plugins/nvr-detection/status",
            get(detection_status),
        )
        .route("/api/v1/spatial/stats", get(spatial_stats))
        .route("/api/v1/spatial/tracks", get(spatial_tracks))
        .route("/metrics", get(metrics))
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

async fn detection_nodes(s: &Shared) -> Vec<DetectionNodeStatus> {
    if !nats_ok(s) {
        return Vec::new();
    }
    let mut nodes: Vec<DetectionNodeStatus> =
        gather(&s.client, status::DETECTION_STATUS_SUBJECT, b"")
            .await
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes
}

async fn spatial_nodes(s: &Shared, with_tracks: bool) -> Vec<SpatialNodeStatus> {
    if !nats_ok(s) {
        return Vec::new();
    }
    let body: &'static [u8] = if with_tracks { b"tracks" } else { b"" };
    let mut nodes: Vec<SpatialNodeStatus> = gather(&s.client, status::SPATIAL_STATUS_SUBJECT, body)
        .await
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes
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
    let mut lat = new_histogram();
    let mut e2e = new_histogram();
    let (mut processed, mut errors, mut skipped, mut malformed) = (0u64, 0u64, 0u64, 0u64);
    let mut delivery_errors = 0u64;
    let mut refused = nvr_actors::guard::RefusalCounts::new();
    let mut fps = 0.0;
    let mut workers = Vec::new();
    let mut cameras: BTreeMap<String, Value> = BTreeMap::new();
    let mut per_cam: BTreeMap<String, (u64, u64, u64, f64)> = BTreeMap::new();
    for n in &nodes {
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
                e.0 += c.processed;
                e.1 += c.skipped;
                e.2 += c.errors;
                e.3 += c.latency_sum_ms;
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
    for (cam, st) in &s.cameras {
        let Ok(st) = st.lock().map(|x| x.clone()) else {
            continue;
        };
        let stored = if st.state == status::CameraState::External {
            0
        } else {
            stored.get(cam).copied().unwrap_or(0)
        };
        let e = per_cam.entry(cam.clone()).or_default();
        // A node that died took its counters with it; what was stored stays.
        e.0 = e.0.max(stored);
        let (p, sk, e, sum) = *e;
        cameras.insert(
            cam.clone(),
            json!({
                "published": st.frames_published,
                "dropped_at_publish": st.frames_dropped,
                "processed": p, "skipped": sk, "errors": e,
                "avg_latency_ms": if p > 0 { round2(sum / p as f64) } else { 0.0 },
                "fps_out": round2(st.fps_out),
            }),
        );
    }
    for (cam, (p, sk, e, sum)) in &per_cam {
        cameras.entry(cam.clone()).or_insert_with(|| {
            json!({"processed": p, "skipped": sk, "errors": e,
                   "avg_latency_ms": if *p > 0 { round2(sum / *p as f64) } else { 0.0 }})
        });
    }
    // Frames processed: what the live workers report, or what was stored for
    // this process's cameras when that is more (a node died meanwhile).
    let processed = processed.max(
        s.cameras
            .iter()
            .filter(|(_, st)| {
                st.lock()
                    .is_ok_and(|st| st.state != status::CameraState::External)
            })
            .filter_map(|(c, _)| stored.get(c))
            .sum::<u64>(),
    );
    let l = Latency::of(&lat);
    let el = Latency::of(&e2e);
    let (pending, ack_pending) = queue.unwrap_or((0, 0));
    let dropped_publish: u64 = s
        .cameras
        .values()
        .filter_map(|c| c.lock().ok().map(|c| c.frames_dropped))
        .sum();
    // Frames published here that no worker reported and that are no longer queued expired in the stream.
    let dead_lettered = s.dead_lettered.load(std::sync::atomic::Ordering::Relaxed);
    let expired = if published > 0 {
        published
            .saturating_sub(processed + skipped + errors + dead_lettered + pending + ack_pending)
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
        "error_count": errors + dead_lettered,
        "delivery_error_count": delivery_errors,
        "refused": refused,
        "skipped_count": skipped,
        "malformed_count": malformed,
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
        "fps": round2(fps),
        "nodes": nodes.iter().map(|n| json!({
            "node": n.node, "backend": n.backend, "requested_backend": n.requested_backend,
            "fallback_reason": n.fallback_reason, "model": n.model, "appearance": n.appearance, "input_size": n.input_size,
            "workers": n.workers.len(), "uptime_s": round2(n.uptime_s), "memory_mb": round2(n.memory_mb),
            "layout": n.layout,
        })).collect::<Vec<_>>(),
        "workers": workers,
        "cameras": cameras,
    });
    (doc, nodes)
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
                "merged": sh.stats.merged, "unbound_sources": sh.stats.unbound_sources,
                "rebound_sources": sh.stats.rebound_sources,
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

/// Messages, bytes, first and last message time (Unix seconds) and the
/// description of each contract stream; bounded to a second in all.
async fn stream_states(js: &async_nats::jetstream::Context) -> Value {
    let read = async {
        let mut out = serde_json::Map::new();
        for name in [
            streams::FRAMES,
            streams::DETECTIONS,
            streams::TRACKS,
            streams::SPATIAL,
            streams::EVENTS,
            streams::SNAPSHOTS,
            streams::STATE,
        ] {
            let Ok(mut st) = js.get_stream(name).await else {
                continue;
            };
            if let Ok(i) = st.info().await {
                out.insert(
                    name.to_string(),
                    json!({
                        "messages": i.state.messages,
                        "bytes": i.state.bytes,
                        "first_unix_s": i.state.first_timestamp.unix_timestamp(),
                        "last_unix_s": i.state.last_timestamp.unix_timestamp(),
                        "description": i.config.description,
                    }),
                );
            }
        }
        Value::Object(out)
    };
    tokio::time::timeout(Duration::from_secs(1), read)
        .await
        .unwrap_or(Value::Null)
}

async fn system_health(State(s): State<Arc<Shared>>) -> Response {
    let ok = nats_ok(&s);
    let info = s.client.server_info();
    let det = detection_document(&s).await;
    let spatial_nodes = spatial_nodes(&s, false).await;
    let spatial = aggregate_spatial(&spatial_nodes);
    let now = status::now_ms();
    let mut verdict = crate::health::Verdict::default();
    if let Some(p) = s.bus.problem() {
        verdict.fatal.push(p);
    }
    let mut cameras = Vec::new();
    let mut tracking = BTreeMap::new();
    for n in &spatial_nodes {
        tracking.extend(n.tracking.clone());
        for sh in &n.shards {
            verdict.actor(&format!("spatial shard {}", sh.shard), &sh.progress, now);
        }
    }
    for (cam, t) in &tracking {
        verdict.actor(&format!("tracker {cam}"), &t.progress, now);
    }
    for (id, c) in &s.cameras {
        if let Ok(c) = c.lock() {
            let mut c = c.clone();
            c.id = id.clone();
            verdict.camera(&c);
            c.tracking = tracking.get(id).cloned();
            cameras.push(c);
        }
    }
    let det_needed =
        s.config.detection.embedded || s.config.cameras.iter().any(|c| c.url.is_some());
    if ok && det_needed && !det["connected"].as_bool().unwrap_or(false) {
        verdict.degraded.push("no detection worker answers".into());
    }
    if ok {
        for n in det["workers"].as_array().into_iter().flatten() {
            let refused_ms = n["refused_ms"].as_u64().unwrap_or(0);
            if refused_ms > 0 && now.saturating_sub(refused_ms) < crate::health::REFUSED_WINDOW_MS {
                verdict.degraded.push(format!(
                    "detector {}: frames refused in the last {} s",
                    n["worker"].as_str().unwrap_or(""),
                    crate::health::REFUSED_WINDOW_MS / 1000
                ));
            }
        }
    }
    let untracked: BTreeMap<String, Value> = s
        .stored
        .untracked()
        .into_iter()
        .map(|(c, (d, t))| (c, json!({"detections": d, "tracks": t})))
        .collect();
    if !untracked.is_empty() {
        verdict.degraded.push(format!(
            "messages stored for cameras nobody tracks: {}",
            untracked.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let machine = s.sampler.figures();
    let scaling = crate::scaling::evaluate(&scaling_figures(&s, &det, &spatial, &machine));
    let status = verdict.status();
    let reasons: Vec<&String> = verdict.fatal.iter().chain(&verdict.degraded).collect();
    let body = json!({
        "status": status,
        "reasons": reasons,
        "scaling": scaling,
        "machine": machine,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": round2(s.started.elapsed().as_secs_f64()),
        "memory_mb": round2(status::rss_mb()),
        "nats": {
            "connected": ok,
            "url": crate::nats::redact_url(&s.nats_url),
            "embedded": s.nats_embedded,
            "embedded_restarts": s.nats_restarts.as_ref().map(|r| r.load(std::sync::atomic::Ordering::Relaxed)),
            "streams_ok": s.bus.streams_ok(),
            "streams_recreated": s.bus.recreated.load(std::sync::atomic::Ordering::Relaxed),
            "reconnects": s.bus.reconnects.load(std::sync::atomic::Ordering::Relaxed),
            "server_name": info.server_name,
            "server_version": info.version,
            "jetstream": info.jetstream,
            "max_payload": info.max_payload,
            "streams": stream_states(&s.js).await,
            "mqtt_listen": (!s.config.nats.mqtt_listen.is_empty()).then(|| s.config.nats.mqtt_listen.clone()),
            "snapshots": (s.config.nats.retention.snapshots_max_mb != 0).then(|| json!({
                "stream": nvr_subjects::streams::SNAPSHOTS,
                "stored": s.snapshots.stored.load(std::sync::atomic::Ordering::Relaxed),
                "missed": s.snapshots.missed.load(std::sync::atomic::Ordering::Relaxed),
                "failed": s.snapshots.failed.load(std::sync::atomic::Ordering::Relaxed),
            })),
            "json_events": s.config.nats.json_events_on().then(|| json!({
                "subjects": format!("{}.<kind>.<scope>", crate::events::JSON_PREFIX),
                "mirrored": s.json_events.mirrored.load(std::sync::atomic::Ordering::Relaxed),
                "failed": s.json_events.failed.load(std::sync::atomic::Ordering::Relaxed),
            })),
        },
        "components": {
            "detection": {
                "embedded": s.config.detection.embedded,
                "connected": det["connected"],
                "backend": det["backend"],
                "nodes": det["nodes"],
                "queue_size": det["queue_size"],
                "processed_count": det["processed_count"],
                "error_count": det["error_count"],
                "skipped_count": det["skipped_count"],
                "refused": det["refused"],
            },
            "spatial": {
                "embedded": s.config.spatial.embedded,
                "nodes": spatial_nodes.len(),
                "shards": spatial["shards"],
                "active_tracks": spatial["active_tracks"],
            },
            "cameras": cameras,
            "untracked_cameras": untracked,
        },
    });
    let code = if status == "unavailable" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// The figures of the "When to Scale" verdicts, from the detection and
/// spatial documents and the machine sampler.
fn scaling_figures(
    s: &Shared,
    det: &Value,
    spatial: &Value,
    machine: &crate::sampler::MachineFigures,
) -> crate::scaling::Figures {
    let det_nodes = det["nodes"].as_array().map_or(0, Vec::len);
    let spatial_nodes = spatial["nodes"].as_u64().unwrap_or(0);
    let with_det = |v: &Value| (det_nodes > 0).then(|| v.as_f64()).flatten();
    let with_spatial = |v: &Value| (spatial_nodes > 0).then(|| v.as_f64()).flatten();
    let processed = det["processed_count"].as_u64().unwrap_or(0);
    let skipped = det["skipped_count"].as_u64().unwrap_or(0);
    let cfg = &s.config;
    let load_5fps: f64 = cfg
        .cameras
        .iter()
        .filter(|c| c.url.is_some())
        .map(|c| c.detection.fps.unwrap_or(cfg.detection.default_fps) / 5.0)
        .sum();
    crate::scaling::Figures {
        detection_nodes: det_nodes,
        detection_avg_latency_ms: with_det(&det["avg_latency_ms"]),
        frame_drop_pct: s.drops.rate(processed, skipped),
        cpu_1m_pct: machine.cpu_1m_pct,
        gpu_1m_pct: machine.gpu_1m_pct,
        cameras_at_5fps_per_node: (det_nodes > 0).then(|| load_5fps / det_nodes as f64),
        detection_queue: (det_nodes > 0)
            .then(|| det["queue_size"].as_u64())
            .flatten(),
        spatial_processing_ms: with_spatial(&spatial["avg_processing_ms"]),
        active_tracks: (spatial_nodes > 0)
            .then(|| spatial["active_tracks"].as_u64())
            .flatten(),
        reid_matching_ms: with_spatial(&spatial["reid_matching_ms"]),
        memory_growth_mb_per_h: machine.memory_growth_mb_per_h,
        handoff_failure_pct: with_spatial(&spatial["handoff_failure_rate_pct"]),
    }
}

/// One of a worker's counters.
type WorkerCount = fn(&status::WorkerStatus) -> u64;

async fn metrics(State(s): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> Response {
    use crate::metrics::{labels, Exposition};
    let ((det, det_nodes), nodes) =
        tokio::join!(detection_document_and_nodes(&s), spatial_nodes(&s, false));
    let mut e = Exposition::default();
    // Every refusal, drop and recovery counter, so nothing is lost silently.
    let mut refused: BTreeMap<(&str, String), u64> = BTreeMap::new();
    for (k, v) in det["refused"].as_object().into_iter().flatten() {
        *refused.entry(("detection", k.clone())).or_insert(0) += v.as_u64().unwrap_or(0);
    }
    let (mut late, mut malformed_tracks, mut seq_resets, mut rejected) = (0u64, 0u64, 0u64, 0u64);
    for n in &nodes {
        for t in n.tracking.values() {
            late += t.late;
            malformed_tracks += t.malformed;
            seq_resets += t.seq_resets;
            for (k, v) in &t.refused {
                *refused.entry(("tracking", k.clone())).or_insert(0) += v;
            }
        }
        for sh in &n.shards {
            malformed_tracks += sh.malformed;
            rejected += sh.rejected;
            for (k, v) in &sh.refused {
                *refused.entry(("spatial", k.clone())).or_insert(0) += v;
            }
        }
    }
    for ((component, reason), v) in &refused {
        e.counter(
            "nvr_refused",
            "Messages or objects refused at an actor's boundary",
            labels(&[("component", component), ("reason", reason)]),
            *v,
        );
    }
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let counters: [(&str, &str, u64); 10] = [
        (
            "nvr_spatial_rejected",
            "Camera-tracks messages the spatial core refused (unknown camera, out of order)",
            rejected,
        ),
        (
            "nvr_detection_malformed",
            "Frame messages that could not be decoded",
            u(&det["malformed_count"]),
        ),
        (
            "nvr_detection_expired",
            "Frames that expired in the stream before a worker took them",
            u(&det["expired_count"]),
        ),
        (
            "nvr_detection_dead_lettered",
            "Frames given up after the maximum deliveries",
            u(&det["dead_lettered_count"]),
        ),
        (
            "nvr_detection_delivery_errors",
            "Deliveries that failed and were left for redelivery",
            u(&det["delivery_error_count"]),
        ),
        (
            "nvr_tracking_late",
            "Detections that arrived after their place in the order was passed",
            late,
        ),
        (
            "nvr_tracking_malformed",
            "Detections or tracks messages that could not be decoded",
            malformed_tracks,
        ),
        (
            "nvr_tracking_seq_resets",
            "Camera orderings reset by a sequence jump",
            seq_resets,
        ),
        (
            "nvr_nats_streams_recreated",
            "Contract streams or consumers found missing and re-created",
            s.bus.recreated.load(relaxed),
        ),
        (
            "nvr_nats_embedded_restarts",
            "Restarts of the embedded nats-server",
            s.nats_restarts
                .as_ref()
                .map(|r| r.load(relaxed))
                .unwrap_or(0),
        ),
    ];
    for (name, help, v) in counters {
        e.counter(name, help, Vec::new(), v);
    }
    // Frame totals of every worker ever seen: they do not go down when a
    // node leaves or a worker restarts.
    let totals = crate::metrics::totals();
    let per_worker = |f: WorkerCount| -> Vec<(String, u64)> {
        det_nodes
            .iter()
            .flat_map(|n| n.workers.iter().map(move |w| (w.worker.clone(), f(w))))
            .collect()
    };
    let frame_totals: [(&str, &str, WorkerCount); 3] = [
        (
            "nvr_detection_frames_processed",
            "Frames with published detections, all workers",
            |w| w.processed_count,
        ),
        (
            "nvr_detection_frames_skipped",
            "Frames skipped as too old, all workers",
            |w| w.skipped_count,
        ),
        (
            "nvr_detection_frames_failed",
            "Frames that failed for good, all workers",
            |w| w.error_count,
        ),
    ];
    for (name, help, f) in frame_totals {
        e.counter(name, help, Vec::new(), totals.total(name, &per_worker(f)));
    }
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    e.gauge(
        "nvr_nats_connected",
        "1 when connected to NATS",
        None,
        Vec::new(),
        flag(nats_ok(&s)),
    );
    e.gauge(
        "nvr_detection_connected",
        "1 when at least one detection worker answered",
        None,
        Vec::new(),
        flag(det["connected"].as_bool().unwrap_or(false)),
    );
    e.gauge(
        "nvr_detection_queue_frames",
        "Frames pending or in flight on the detectors consumer",
        None,
        Vec::new(),
        det["queue_size"].as_f64().unwrap_or(0.0),
    );
    e.gauge(
        "nvr_detection_fps",
        "Frames processed per second, all workers",
        None,
        Vec::new(),
        det["fps"].as_f64().unwrap_or(0.0),
    );
    for (id, c) in &s.cameras {
        if let Ok(c) = c.lock() {
            let l = labels(&[("camera", id)]);
            e.counter(
                "nvr_camera_frames_published",
                "Frames published per camera",
                l.clone(),
                c.frames_published,
            );
            e.counter(
                "nvr_camera_frames_dropped",
                "Frames refused at publish per camera",
                l,
                c.frames_dropped,
            );
        }
    }
    crate::metrics::detection_workers(&mut e, &det_nodes);
    crate::metrics::spatial_shards(&mut e, &nodes);
    crate::metrics::process(&mut e);
    metrics_response(&headers, e)
}

/// The HTTP response of a scrape: OpenMetrics when the scraper asks for
/// it, the Prometheus text format otherwise.
pub fn metrics_response(
    headers: &axum::http::HeaderMap,
    e: crate::metrics::Exposition,
) -> Response {
    let openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let text = e.render();
    let (content_type, body) = if openmetrics {
        (crate::metrics::CONTENT_TYPE, text)
    } else {
        (
            crate::metrics::CONTENT_TYPE_TEXT,
            crate::metrics::to_prometheus_text(&text),
        )
    };
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A few readable lines for one of `nvr status`'s documents.
fn readable_status(path: &str, v: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let n = |x: &Value| x.as_f64().map_or("-".to_string(), |f| format!("{f:.1}"));
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    match path {
        "/api/v1/system/health" => {
            let _ = writeln!(out, "health     {}", s(&v["status"]));
            for r in v["reasons"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "  - {}", s(r));
            }
            let nats = &v["nats"];
            let _ = writeln!(
                out,
                "nats       {} ({}, server {}, jetstream {})",
                if nats["connected"] == true {
                    "connected"
                } else {
                    "NOT connected"
                },
                s(&nats["url"]),
                s(&nats["server_version"]),
                nats["jetstream"]
            );
            for (name, st) in nats["streams"].as_object().into_iter().flatten() {
                let _ = writeln!(
                    out,
                    "  {name:<16} {:>9} messages {:>12} bytes",
                    st["messages"], st["bytes"]
                );
            }
            let cams = v["components"]["cameras"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !cams.is_empty() {
                let _ = writeln!(
                    out,
                    "cameras    {:<16} {:<13} {:>6} {:>7} {:>6}  last error",
                    "id", "state", "fps in", "fps out", "errors"
                );
                for c in &cams {
                    let _ = writeln!(
                        out,
                        "           {:<16} {:<13} {:>6} {:>7} {:>6}  {}",
                        s(&c["id"]),
                        s(&c["state"]),
                        n(&c["fps_in"]),
                        n(&c["fps_out"]),
                        c["errors"].to_string(),
                        c["last_error"].as_str().unwrap_or("")
                    );
                }
            }
        }
        "/api/v1/plugins/nvr-detection/status" => {
            let _ = writeln!(
                out,
                "detection  {} | backend {} | queue {} | {} fps | processed {} skipped {} errors {} | latency avg {} ms p99 {} ms",
                if v["connected"] == true { "connected" } else { "NO worker answers" },
                s(&v["backend"]),
                v["queue_size"],
                n(&v["fps"]),
                v["processed_count"],
                v["skipped_count"],
                v["error_count"],
                n(&v["avg_latency_ms"]),
                n(&v["p99_latency_ms"])
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "spatial    {} active, {} lost, {} static | handoffs {} done, {} failed | cycle avg {} ms p99 {} ms",
                v["active_tracks"],
                v["lost_tracks"],
                v["static_tracks"],
                v["handoffs_completed"],
                v["handoff_failures"],
                n(&v["avg_processing_ms"]),
                n(&v["p99_processing_ms"])
            );
        }
    }
    out
}

/// `nvr status`: prints the health, detection and spatial documents.
pub async fn print_status(
    cfg: &crate::config::Config,
    args: crate::cli::StatusArgs,
) -> Result<ExitCode> {
    let base = match args.api {
        Some(a) => a.trim_end_matches('/').to_string(),
        None => {
            let port = crate::config::host_port(&cfg.api.address)
                .map(|(_, p)| p)
                .unwrap_or(12000);
            format!("http://127.0.0.1:{port}")
        }
    };
    let mut failed = false;
    use std::io::IsTerminal;
    let as_json = args.json || !std::io::stdout().is_terminal();
    for path in [
        "/api/v1/system/health",
        "/api/v1/plugins/nvr-detection/status",
        "/api/v1/spatial/stats",
    ] {
        match http_get(&format!("{base}{path}"), &cfg.api.token).await {
            Ok((code, body)) => {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                if as_json {
                    println!(
                        "{}",
                        json!({"endpoint": path, "http_status": code, "body": v})
                    );
                } else {
                    print!("{}", readable_status(path, &v));
                }
                failed |= code >= 500;
            }
            Err(e) => {
                eprintln!("{base}{path}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A minimal HTTP/1.1 GET (no TLS) for the CLI tools, with the API's bearer
/// token when one is configured.
pub async fn http_get(url: &str, token: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(hostport),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connect to {hostport} timed out"))??;
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf))
        .await
        .map_err(|_| anyhow::anyhow!("reading {url} timed out"))??;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
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
