//! Events for people and other programs: `GET /api/v1/events` reads the
//! recorded lifecycle events (`NVR_EVENTS`) with filters, and the JSON mirror
//! republishes every event as JSON on `nvr.json.events.<kind>.<scope>`, which
//! nats-server's MQTT listener serves as topic `nvr/json/events/<kind>/<scope>`
//! (how Home Assistant and other MQTT clients connect).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use nvr_subjects::{streams, Event};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::warn;

use crate::supervisor::Shared;

/// Prefix of the JSON mirror's subjects.
pub const JSON_PREFIX: &str = "nvr.json.events";
/// Most events one request returns.
const MAX_LIMIT: usize = 1000;
/// Events read back from the end of the stream when no `after` is given.
const SCAN_BACK: u64 = 50_000;
/// Longest a request reads the stream.
const READ_BUDGET: Duration = Duration::from_secs(3);

/// Counters of the JSON mirror.
#[derive(Debug, Default)]
pub struct MirrorCounts {
    /// Events republished as JSON.
    pub mirrored: AtomicU64,
    /// Events that could not be decoded or republished.
    pub failed: AtomicU64,
}

/// The JSON subject of an event subject: `nvr.events.<kind>.<scope>` is
/// mirrored on `nvr.json.events.<kind>.<scope>`.
pub fn json_subject(subject: &str) -> Option<String> {
    subject
        .strip_prefix("nvr.events.")
        .map(|rest| format!("{JSON_PREFIX}.{rest}"))
}

/// Republishes every event as JSON until `token` is cancelled.
pub async fn spawn_json_mirror(
    client: async_nats::Client,
    counts: Arc<MirrorCounts>,
    token: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut sub = client
        .subscribe(nvr_subjects::subjects::all::EVENTS)
        .await?;
    Ok(tokio::spawn(async move {
        loop {
            let m = tokio::select! {
                _ = token.cancelled() => break,
                m = sub.next() => match m { Some(m) => m, None => break },
            };
            let body = nvr_subjects::decode::<Event>(&m.payload)
                .ok()
                .and_then(|e| serde_json::to_vec(&e).ok());
            let (Some(body), Some(subject)) = (body, json_subject(&m.subject)) else {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match client.publish(subject, body.into()).await {
                Ok(()) => counts.mirrored.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    warn!("JSON event mirror: {e}");
                    counts.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }))
}

/// Parses a time: RFC 3339 (`2026-11-30T12:00:00Z`), Unix seconds, or
/// relative to `now_ns` (`-10m`, `-2h`, `-30s`, `-1d`, `now`). Returns ns
/// since the Unix epoch.
pub fn parse_time(s: &str, now_ns: u64) -> Result<u64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ns);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let (num, unit) =
            rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?}: a relative time is -<number><s|m|h|d>"))?;
        let secs = match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
        };
        return Ok(now_ns.saturating_sub(secs.saturating_mul(1_000_000_000)));
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok((secs * 1e9) as u64);
        }
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?}: not RFC 3339, Unix seconds or -10m style ({e})"))?;
    u64::try_from(t.unix_timestamp_nanos()).map_err(|_| format!("{s:?}: before 1970"))
}

/// RFC 3339 of ns since the Unix epoch.
pub(crate) fn rfc3339(ns: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Query of `GET /api/v1/events`.
#[derive(Debug, Default, Deserialize)]
pub struct EventQuery {
    /// Only events about this camera (its own, or a handoff from or to it).
    pub camera: Option<String>,
    /// Only events of this label.
    pub label: Option<String>,
    /// Only events of this kind (`track_started`, `handoff`, ...).
    pub kind: Option<String>,
    /// Only events of this global identity.
    pub global_id: Option<u64>,
    /// Only events at or after this time.
    pub after: Option<String>,
    /// Only events before this time.
    pub before: Option<String>,
    /// At most this many (default 100, at most 1000): the first ones after
    /// `after`, or the latest ones without it.
    pub limit: Option<usize>,
}

/// Whether event `e` passes the filters of `q`.
fn matches(e: &Event, q: &EventQuery) -> bool {
    let cam_ok = q.camera.as_ref().is_none_or(|c| {
        [&e.camera, &e.from_camera, &e.to_camera]
            .iter()
            .any(|x| x.as_deref() == Some(c.as_str()))
    });
    cam_ok
        && q.label
            .as_ref()
            .is_none_or(|l| e.label.as_deref() == Some(l.as_str()))
        && q.kind.as_ref().is_none_or(|k| &e.kind == k)
        && q.global_id.is_none_or(|g| e.global_id == Some(g))
}

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response()
}

/// `GET /api/v1/events`.
async fn events(State(s): State<Arc<Shared>>, Query(q): Query<EventQuery>) -> Response {
    let now = nvr_actors::status::now_ms() * 1_000_000;
    let parse = |v: &Option<String>, name: &str| -> Result<Option<u64>, String> {
        v.as_deref()
            .map(|t| parse_time(t, now).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let (after, before) = match (parse(&q.after, "after"), parse(&q.before, "before")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return bad_request(e),
    };
    if let Some(k) = &q.kind {
        if nvr_subjects::subjects::validate_token(k).is_err() {
            return bad_request(format!("kind = {k:?}: not a subject token"));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    match read(&s.js, &q, after, before, limit).await {
        Ok((events, scanned)) => Json(json!({
            "count": events.len(),
            "scanned": scanned,
            "events": events,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": format!("reading {}: {e}", streams::EVENTS) })),
        )
            .into_response(),
    }
}

/// Reads matching events in time order through an ordered consumer that
/// starts at `after` (or `SCAN_BACK` events before the end); returns them
/// and how many were read.
async fn read(
    js: &jetstream::Context,
    q: &EventQuery,
    after: Option<u64>,
    before: Option<u64>,
    limit: usize,
) -> anyhow::Result<(Vec<Value>, u64)> {
    let mut stream = js.get_stream(streams::EVENTS).await?;
    let info = stream.info().await?;
    let last = info.state.last_sequence;
    if info.state.messages == 0 {
        return Ok((Vec::new(), 0));
    }
    let deliver_policy = match after {
        Some(ns) => crate::nats::start_at(ns)?,
        None => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: last
                .saturating_sub(SCAN_BACK)
                .max(info.state.first_sequence),
        },
    };
    let filter_subject = match &q.kind {
        Some(k) => format!("nvr.events.{k}.*"),
        None => nvr_subjects::subjects::all::EVENTS.to_string(),
    };
    let mut messages =
        crate::nats::ordered_messages(&stream, filter_subject, deliver_policy).await?;
    let mut out = std::collections::VecDeque::new();
    let mut scanned = 0u64;
    let deadline = tokio::time::Instant::now() + READ_BUDGET;
    loop {
        let next = tokio::time::timeout_at(deadline, messages.next()).await;
        let Ok(Some(Ok(m))) = next else { break };
        scanned += 1;
        let (seq, pending) = m
            .info()
            .map(|i| (i.stream_sequence, i.pending))
            .unwrap_or((last, 0));
        if let Ok(e) = nvr_subjects::decode::<Event>(&m.payload) {
            if before.is_some_and(|b| e.ts_ns >= b) && after.is_some() {
                break;
            }
            // Message times decide; the stream is entered at `after` as a
            // storage time, which is never earlier than a message time.
            let in_window =
                after.is_none_or(|a| e.ts_ns >= a) && before.is_none_or(|b| e.ts_ns < b);
            if in_window && matches(&e, q) {
                let mut v = serde_json::to_value(&e)?;
                v["time"] = json!(rfc3339(e.ts_ns));
                v["subject"] = json!(m.subject.as_str());
                v["stream_seq"] = json!(seq);
                if e.kind == nvr_subjects::event_kind::TRACK_STARTED && e.seq.is_some() {
                    v["snapshot"] = json!(format!("/api/v1/events/{seq}/snapshot.jpg"));
                }
                out.push_back(v);
                if out.len() > limit {
                    if after.is_some() {
                        out.pop_back();
                        break;
                    }
                    out.pop_front();
                }
            }
        }
        if pending == 0 || seq >= last {
            break;
        }
    }
    Ok((out.into(), scanned))
}

/// `GET /api/v1/events/<stream_seq>/snapshot.jpg`.
async fn snapshot(
    State(s): State<Arc<Shared>>,
    axum::extract::Path(seq): axum::extract::Path<String>,
) -> Response {
    let Ok(seq) = seq.parse::<u64>() else {
        return bad_request(format!(
            "event id {seq:?}: not a number (the stream_seq of GET /api/v1/events)"
        ));
    };
    match crate::snapshots::serve(&s.js, seq, s.config.limits.max_image_pixels).await {
        Ok(jpeg) => ([(axum::http::header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response(),
        Err((code, why)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::NOT_FOUND),
            Json(json!({ "error": why })),
        )
            .into_response(),
    }
}

/// The events routes, merged into the API router.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/{seq}/snapshot.jpg", get(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000_000_000;

    #[test]
    fn times() {
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time("-10m", NOW), Ok(NOW - 600_000_000_000));
        assert_eq!(parse_time("-1d", NOW), Ok(NOW - 86_400_000_000_000));
        assert_eq!(parse_time("1800000000", NOW), Ok(NOW));
        assert_eq!(rfc3339(NOW), "2027-01-15T08:00:00Z");
        assert_eq!(parse_time("2027-01-15T08:00:00Z", 0), Ok(NOW));
        assert_eq!(parse_time("2027-01-15T09:00:00+01:00", 0), Ok(NOW));
        assert!(parse_time("-10x", NOW).unwrap_err().contains("unit"));
        assert!(parse_time("yesterday", NOW)
            .unwrap_err()
            .contains("RFC 3339"));
    }

    #[test]
    fn subjects_map_to_readable_mqtt_topics() {
        assert_eq!(
            json_subject("nvr.events.handoff.lobby").as_deref(),
            Some("nvr.json.events.handoff.lobby")
        );
        assert_eq!(json_subject("nvr.tracks.x"), None);
    }

    #[test]
    fn filters() {
        let mut e = Event::new("handoff", 1);
        e.from_camera = Some("a".into());
        e.to_camera = Some("b".into());
        e.label = Some("person".into());
        let q = |camera: &str, label: &str| EventQuery {
            camera: Some(camera.into()),
            label: Some(label.into()),
            ..Default::default()
        };
        assert!(matches(&e, &q("b", "person")));
        assert!(!matches(&e, &q("c", "person")));
        assert!(!matches(&e, &q("a", "car")));
    }
}
