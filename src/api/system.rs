//! `/api/v1/system/health`: every component, stream and node in one document.

use super::*;

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

pub(super) async fn system_health(State(s): State<Arc<Shared>>) -> Response {
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
    judge_detection(&s, ok, &det, now, &mut verdict);
    let untracked = untracked_cameras(&s, &mut verdict);
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
        "nats": nats_document(&s, ok, &info).await,
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

/// What the health verdict makes of detection: degraded when cameras need
/// it and no worker answers, or when a worker refused frames lately.
fn judge_detection(
    s: &Shared,
    ok: bool,
    det: &Value,
    now: u64,
    verdict: &mut crate::health::Verdict,
) {
    if !ok {
        return;
    }
    let det_needed =
        s.config.detection.embedded || s.config.cameras.iter().any(|c| c.url.is_some());
    if det_needed && !det["connected"].as_bool().unwrap_or(false) {
        verdict.degraded.push("no detection worker answers".into());
    }
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

/// Messages stored for cameras no tracker follows, by camera (a degraded
/// verdict when there are any).
fn untracked_cameras(s: &Shared, verdict: &mut crate::health::Verdict) -> BTreeMap<String, Value> {
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
    untracked
}

/// The `nats` section of the health document: the connection, the
/// server, the streams and the optional snapshot and JSON-event mirrors.
async fn nats_document(s: &Shared, ok: bool, info: &async_nats::ServerInfo) -> Value {
    json!({
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
    })
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
