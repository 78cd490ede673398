//! `/metrics`: the Prometheus exposition of every node's figures.

use super::*;
use crate::metrics::{labels, Exposition};

/// One of a worker's counters.
type WorkerCount = fn(&status::WorkerStatus) -> u64;

pub(super) async fn metrics(
    State(s): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let ((det, det_nodes), nodes) =
        tokio::join!(detection_document_and_nodes(&s), spatial_nodes(&s, false));
    let mut e = Exposition::default();
    drop_counters(&mut e, &s, &det, &nodes);
    frame_totals(&mut e, &det_nodes);
    status_gauges(&mut e, &s, &det);
    camera_counters(&mut e, &s);
    crate::metrics::detection_workers(&mut e, &det_nodes);
    crate::metrics::spatial_shards(&mut e, &nodes);
    crate::metrics::process(&mut e);
    metrics_response(&headers, e)
}

/// Every refusal, drop and recovery counter, so nothing is lost silently.
fn drop_counters(e: &mut Exposition, s: &Shared, det: &Value, nodes: &[SpatialNodeStatus]) {
    let mut refused: BTreeMap<(&str, String), u64> = BTreeMap::new();
    for (k, v) in det["refused"].as_object().into_iter().flatten() {
        *refused.entry(("detection", k.clone())).or_insert(0) += v.as_u64().unwrap_or(0);
    }
    let (mut late, mut malformed_tracks, mut seq_resets, mut rejected) = (0u64, 0u64, 0u64, 0u64);
    for n in nodes {
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
}

/// Frame totals of every worker ever seen: they do not go down when a node
/// leaves or a worker restarts.
fn frame_totals(e: &mut Exposition, det_nodes: &[DetectionNodeStatus]) {
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
}

/// Whether NATS and the detectors are up; the detectors' queue and rate.
fn status_gauges(e: &mut Exposition, s: &Shared, det: &Value) {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    e.gauge(
        "nvr_nats_connected",
        "1 when connected to NATS",
        None,
        Vec::new(),
        flag(nats_ok(s)),
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
}

/// Frames published and dropped per camera of this process.
fn camera_counters(e: &mut Exposition, s: &Shared) {
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
