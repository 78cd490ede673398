//! The health page on the API port: `/` (also `/ui`), its script and style
//! (embedded in the binary; no front-end toolchain), and the data endpoints
//! only the page needed so far: the floors (`/api/v1/floors`), each camera's
//! latest frame with its tracks drawn (`/api/v1/cameras/<id>/latest.jpg`)
//! and a live feed of spatial tracks and handoffs as server-sent events
//! (`/api/v1/spatial/live`). Everything else the page shows comes from the
//! documented endpoints (`/api/v1/system/health`, the detection status,
//! `/api/v1/spatial/stats`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use nvr_subjects::{subjects, Event, SpatialState, SpatialTracks};
use serde_json::{json, Value};

use crate::supervisor::Shared;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");
const ICON: &str = include_str!("web/icon.svg");

/// Paths served without the API token: the page and its assets hold no data.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/ui" | "/favicon.ico") || path.starts_with("/ui/")
}

/// The page's routes, merged into the API router.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/app.js", get(script))
        .route("/ui/style.css", get(style))
        .route("/favicon.ico", get(icon))
        .route("/api/v1/floors", get(floors))
        .route("/api/v1/cameras/{id}/latest.jpg", get(latest))
        .route("/api/v1/spatial/live", get(live))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

/// Every floor with its size and its cameras, and the cameras of no floor.
async fn floors(State(s): State<Arc<Shared>>) -> Json<Value> {
    let cfg = &s.config;
    let floors: Vec<Value> = cfg
        .floors
        .iter()
        .map(|f| {
            let cams: Vec<&str> = cfg
                .cameras
                .iter()
                .filter(|c| c.floor.as_deref() == Some(f.id.as_str()))
                .map(|c| c.id.as_str())
                .collect();
            json!({"id": f.id, "size_m": f.size_m, "cameras": cams})
        })
        .collect();
    Json(json!({ "floors": floors }))
}

fn problem(code: StatusCode, msg: String) -> Response {
    (code, Json(json!({ "error": msg }))).into_response()
}

/// The latest frame of a camera with its tracks drawn, as JPEG.
async fn latest(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(cam) = s.config.cameras.iter().find(|c| c.id == id) else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no camera {id:?} in the configuration"),
        );
    };
    match s.latest.picture(&cam.id).await {
        Ok(p) => (
            [
                (header::CONTENT_TYPE, "image/jpeg".to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
                (
                    header::HeaderName::from_static("nvr-seq"),
                    p.seq.to_string(),
                ),
                (
                    header::HeaderName::from_static("nvr-overlay"),
                    if p.overlay { "tracks" } else { "none" }.to_string(),
                ),
                (
                    header::HeaderName::from_static("nvr-boxes"),
                    p.boxes.to_string(),
                ),
            ],
            p.jpeg,
        )
            .into_response(),
        Err(e @ crate::latest::NoPicture::NoFrame(..)) => {
            problem(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// A spatial cycle as the page draws it: rounded positions, the state (and
/// for a `duplicate` the identity it is a second view of), the cameras that
/// see it.
pub fn tracks_event(t: &SpatialTracks) -> Value {
    let tracks: Vec<Value> = t
        .tracks
        .iter()
        .map(|g| {
            let state = match g.state {
                SpatialState::Observed => "observed",
                SpatialState::Coasting => "coasting",
                SpatialState::Lost => "lost",
                SpatialState::Static => "static",
                SpatialState::Duplicate => "duplicate",
            };
            let mut v = json!({
                "id": g.global_id,
                "floor": g.floor,
                "x": (g.x_m * 100.0).round() / 100.0,
                "y": (g.y_m * 100.0).round() / 100.0,
                "state": state,
                "label": g.label,
                "cameras": g.sources.iter().map(|s| s.camera.as_str()).collect::<Vec<_>>(),
            });
            if let Some(of) = g.duplicate_of {
                v["duplicate_of"] = json!(of);
            }
            v
        })
        .collect();
    json!({"shard": t.shard, "ts_ns": t.ts_ns, "tracks": tracks})
}

/// Server-sent events: `tracks` for every spatial cycle of every shard,
/// `handoff` for every handoff event.
async fn live(State(s): State<Arc<Shared>>) -> Response {
    let subs = tokio::try_join!(
        s.client.subscribe(subjects::all::SPATIAL),
        s.client.subscribe(subjects::events("handoff", "*")),
    );
    let (tracks, handoffs) = match subs {
        Ok(v) => v,
        Err(e) => {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot subscribe to the spatial subjects: {e}"),
            )
        }
    };
    Sse::new(live_stream(tracks, handoffs))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn live_stream(
    tracks: async_nats::Subscriber,
    handoffs: async_nats::Subscriber,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let tracks = tracks.filter_map(|m| async move {
        let t = nvr_subjects::decode::<SpatialTracks>(&m.payload).ok()?;
        Some(
            SseEvent::default()
                .event("tracks")
                .data(tracks_event(&t).to_string()),
        )
    });
    let handoffs = handoffs.filter_map(|m| async move {
        let e = nvr_subjects::decode::<Event>(&m.payload).ok()?;
        let body = serde_json::to_string(&e).ok()?;
        Some(SseEvent::default().event("handoff").data(body))
    });
    futures::stream::select(tracks, handoffs).map(Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths() {
        assert!(is_public("/"));
        assert!(is_public("/ui/app.js"));
        assert!(is_public("/favicon.ico"));
        assert!(!is_public("/api/v1/floors"));
        assert!(!is_public("/api/v1/spatial/live"));
    }

    #[test]
    fn assets_reference_each_other() {
        assert!(INDEX.contains("/ui/app.js") && INDEX.contains("/ui/style.css"));
        for endpoint in [
            "/api/v1/system/health",
            "/api/v1/spatial/live",
            "/api/v1/floors",
            "latest.jpg",
        ] {
            assert!(SCRIPT.contains(endpoint), "app.js does not use {endpoint}");
        }
    }
}
