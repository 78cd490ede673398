//! The HTTP API (port 12000): health, detection status, spatial stats and
//! tracks, Prometheus metrics. Detection and spatial figures are gathered
//! from every node on the bus (a status request that all nodes answer), so
//! local and remote nodes are aggregated the same way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
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
use futures::StreamExt;
use nvr_actors::status::{self, histogram_from_b64, new_histogram, DetectionNodeStatus, Latency};
use nvr_subjects::streams;
use serde_json::{json, Value};

use crate::node::SpatialNodeStatus;
use crate::supervisor::Shared;

/// How long a status request waits for nodes to answer.
const GATHER: Duration = Duration::from_millis(300);

/// Starts serving `app` on `listen` until `token` is cancelled.
pub async fn serve(
    listen: SocketAddr,
    app: Router,
    token: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
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
        .with_state(shared)
}

/// `{"status": "ok"}` with 200, or 503 when NATS is unreachable.
pub fn health_response(nats_ok: bool, service: &str) -> Response {
    let body = json!({
        "status": if nats_ok { "ok" } else { "unavailable" },
        "service": service,
        "nats_connected": nats_ok,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if nats_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

fn nats_ok(s: &Shared) -> bool {
    s.client.connection_state() == async_nats::connection::State::Connected
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    health_response(nats_ok(&s), "nvr")
}

/// Sends `body` to `subject` and collects every reply within [`GATHER`].
pub async fn gather(
    client: &async_nats::Client,
    subject: &str,
    body: &'static [u8],
) -> Vec<Vec<u8>> {
    let inbox = client.new_inbox();
    let Ok(mut sub) = client.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    if client
        .publish_with_reply(subject.to_string(), inbox, body.into())
        .await
        .is_err()
    {
        return Vec::new();
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + GATHER;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
        out.push(m.payload.to_vec());
    }
    out
}

async fn detection_nodes(s: &Shared) -> Vec<DetectionNodeStatus> {
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
    let stream = s.js.get_stream(streams::FRAMES).await.ok()?;
    let info = stream
        .consumer_info(streams::DETECTORS_CONSUMER)
        .await
        .ok()?;
    Some((info.num_pending, info.num_ack_pending as u64))
}

/// The aggregated detection status document.
pub async fn detection_document(s: &Shared) -> Value {
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
    let mut lat = new_histogram();
    let mut e2e = new_histogram();
    let (mut processed, mut errors, mut skipped, mut malformed) = (0u64, 0u64, 0u64, 0u64);
    let mut fps = 0.0;
    let mut workers = Vec::new();
    let mut cameras: BTreeMap<String, Value> = BTreeMap::new();
    let mut per_cam: BTreeMap<String, (u64, u64, u64, f64)> = BTreeMap::new();
    for n in &nodes {
        for w in &n.workers {
            processed += w.processed_count;
            errors += w.error_count;
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
        per_cam.entry(cam.clone()).or_default();
        let (p, sk, e, sum) = per_cam.get(cam).copied().unwrap_or_default();
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
    json!({
        "connected": !nodes.is_empty() && nats_ok(s),
        "backend": backend,
        "queue_size": pending + ack_pending,
        "queue_pending": pending,
        "queue_in_flight": ack_pending,
        "processed_count": processed,
        "error_count": errors,
        "skipped_count": skipped,
        "malformed_count": malformed,
        "dropped_at_publish_count": dropped_publish,
        "expired_count": expired,
        "dead_lettered_count": dead_lettered,
        "avg_latency_ms": round2(l.avg_ms),
        "p50_latency_ms": round2(l.p50_ms),
        "p95_latency_ms": round2(l.p95_ms),
        "p99_latency_ms": round2(l.p99_ms),
        "e2e_latency_ms": {"avg": round2(el.avg_ms), "p50": round2(el.p50_ms), "p99": round2(el.p99_ms)},
        "fps": round2(fps),
        "nodes": nodes.iter().map(|n| json!({
            "node": n.node, "backend": n.backend, "requested_backend": n.requested_backend,
            "fallback_reason": n.fallback_reason, "model": n.model, "input_size": n.input_size,
            "workers": n.workers.len(), "uptime_s": round2(n.uptime_s), "memory_mb": round2(n.memory_mb),
        })).collect::<Vec<_>>(),
        "workers": workers,
        "cameras": cameras,
    })
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

async fn detection_status(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(detection_document(&s).await)
}

/// Aggregates spatial node statuses into the stats document.
pub fn aggregate_spatial(nodes: &[SpatialNodeStatus]) -> Value {
    let mut active = 0usize;
    let mut total = 0u64;
    let mut handoffs = 0u64;
    let mut failures = 0u64;
    let mut evicted = 0u64;
    let mut expired = 0u64;
    let mut rejected = 0u64;
    let mut hist = new_histogram();
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
                "active_tracks": sh.stats.active_tracks, "total_tracks": sh.stats.total_tracks,
                "avg_processing_ms": round3(sh.processing.avg_ms), "p99_processing_ms": round3(sh.processing.p99_ms),
                "reid_matching_ms": round3(sh.reid.avg_ms),
                "handoffs_completed": sh.stats.handoffs_completed, "handoff_failures": sh.stats.handoff_failures,
                "evicted": sh.stats.evicted, "expired": sh.stats.expired, "cycles": sh.stats.cycles,
                "ingested": sh.ingested, "rejected": sh.rejected, "malformed": sh.malformed,
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

async fn system_health(State(s): State<Arc<Shared>>) -> Response {
    let ok = nats_ok(&s);
    let info = s.client.server_info();
    let det = detection_document(&s).await;
    let spatial_nodes = spatial_nodes(&s, false).await;
    let spatial = aggregate_spatial(&spatial_nodes);
    let mut cameras = Vec::new();
    let mut tracking = BTreeMap::new();
    for n in &spatial_nodes {
        tracking.extend(n.tracking.clone());
    }
    for (id, c) in &s.cameras {
        if let Ok(c) = c.lock() {
            let mut c = c.clone();
            c.id = id.clone();
            c.tracking = tracking.get(id).cloned();
            cameras.push(c);
        }
    }
    let det_ok = !s.config.detection.embedded && !s.config.cameras.iter().any(|c| c.url.is_some())
        || det["connected"].as_bool().unwrap_or(false);
    let body = json!({
        "status": if !ok { "unavailable" } else if det_ok { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": round2(s.started.elapsed().as_secs_f64()),
        "memory_mb": round2(status::rss_mb()),
        "nats": {
            "connected": ok,
            "url": s.nats_url,
            "embedded": s.nats_embedded,
            "server_name": info.server_name,
            "server_version": info.version,
            "jetstream": info.jetstream,
            "max_payload": info.max_payload,
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
            },
            "spatial": {
                "embedded": s.config.spatial.embedded,
                "nodes": spatial_nodes.len(),
                "shards": spatial["shards"],
                "active_tracks": spatial["active_tracks"],
            },
            "cameras": cameras,
        },
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let det = detection_document(&s).await;
    let sp = aggregate_spatial(&spatial_nodes(&s, false).await);
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, v: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    gauge(
        "nvr_nats_connected",
        "1 when connected to NATS",
        if nats_ok(&s) { 1.0 } else { 0.0 },
    );
    gauge(
        "nvr_detection_connected",
        "1 when at least one detection worker answered",
        if det["connected"].as_bool().unwrap_or(false) {
            1.0
        } else {
            0.0
        },
    );
    gauge(
        "nvr_detection_queue_size",
        "Frames pending or in flight on the detectors consumer",
        f(&det["queue_size"]),
    );
    gauge(
        "nvr_detection_processed_total",
        "Frames with published detections",
        f(&det["processed_count"]),
    );
    gauge(
        "nvr_detection_errors_total",
        "Frames that failed",
        f(&det["error_count"]),
    );
    gauge(
        "nvr_detection_skipped_total",
        "Frames skipped as too old",
        f(&det["skipped_count"]),
    );
    gauge(
        "nvr_detection_latency_avg_ms",
        "Mean inference latency",
        f(&det["avg_latency_ms"]),
    );
    gauge(
        "nvr_detection_latency_p99_ms",
        "99th percentile inference latency",
        f(&det["p99_latency_ms"]),
    );
    gauge(
        "nvr_detection_fps",
        "Frames processed per second",
        f(&det["fps"]),
    );
    gauge(
        "nvr_spatial_active_tracks",
        "Active global tracks",
        f(&sp["active_tracks"]),
    );
    gauge(
        "nvr_spatial_total_tracks",
        "Global tracks ever created",
        f(&sp["total_tracks"]),
    );
    gauge(
        "nvr_spatial_processing_avg_ms",
        "Mean matching-cycle time",
        f(&sp["avg_processing_ms"]),
    );
    gauge(
        "nvr_spatial_handoffs_total",
        "Completed handoffs",
        f(&sp["handoffs_completed"]),
    );
    gauge(
        "nvr_process_memory_mb",
        "Resident memory of this process",
        status::rss_mb(),
    );
    let _ = writeln!(out, "# HELP nvr_camera_frames_published_total Frames published per camera\n# TYPE nvr_camera_frames_published_total counter");
    for (id, c) in &s.cameras {
        if let Ok(c) = c.lock() {
            let _ = writeln!(
                out,
                "nvr_camera_frames_published_total{{camera=\"{id}\"}} {}",
                c.frames_published
            );
        }
    }
    let _ = writeln!(out, "# HELP nvr_camera_frames_dropped_total Frames refused at publish per camera\n# TYPE nvr_camera_frames_dropped_total counter");
    for (id, c) in &s.cameras {
        if let Ok(c) = c.lock() {
            let _ = writeln!(
                out,
                "nvr_camera_frames_dropped_total{{camera=\"{id}\"}} {}",
                c.frames_dropped
            );
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response()
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
    for path in [
        "/api/v1/system/health",
        "/api/v1/plugins/nvr-detection/status",
        "/api/v1/spatial/stats",
    ] {
        match http_get(&format!("{base}{path}")).await {
            Ok((code, body)) => {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                println!(
                    "{}",
                    json!({"endpoint": path, "http_status": code, "body": v})
                );
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

/// A minimal HTTP/1.1 GET (no TLS) for the CLI tools.
pub async fn http_get(url: &str) -> Result<(u16, String)> {
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
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes(),
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
