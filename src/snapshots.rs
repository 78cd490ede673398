//! Event snapshots: the JPEG of the frame each `track_started` event was
//! confirmed on, kept in the bounded `NVR_SNAPSHOTS` stream under
//! `nvr.snapshots.<camera>.<seq>` and served with the event's box drawn at
//! `GET /api/v1/events/<stream_seq>/snapshot.jpg`. `nvr run` watches the
//! frames on the bus (the last [`KEEP`] per camera) and the `track_started`
//! events; an event whose frame is not held (yet) waits up to [`WAIT`] for
//! it. Every outcome is counted (`/api/v1/system` `snapshots`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use nvr_subjects::{event_kind, subjects, Event, Frame, FrameEncoding};
use tracing::warn;

/// Frames held per camera (5 s at 5 fps): detection takes well under that.
const KEEP: usize = 25;
/// How long an event waits for its frame to arrive.
const WAIT: Duration = Duration::from_secs(5);
/// Most events waiting for their frame at once (others count as missed).
const MAX_WANTED: usize = 1000;

/// Counters of the snapshotter.
#[derive(Debug, Default)]
pub struct SnapshotCounts {
    /// Snapshots stored.
    pub stored: AtomicU64,
    /// Events whose frame never came within [`WAIT`] (frames not on this
    /// bus, or gone).
    pub missed: AtomicU64,
    /// Frames or events that did not decode, or a store that failed.
    pub failed: AtomicU64,
}

/// The JPEG of a frame message (raw frames are encoded).
fn frame_jpeg(payload: &[u8]) -> Option<(String, u64, Vec<u8>)> {
    let f: Frame = nvr_subjects::decode(payload).ok()?;
    let jpeg = match f.encoding {
        FrameEncoding::Jpeg => f.data.clone(),
        FrameEncoding::Rgb24 => {
            let img = nvr_actors::overlay::frame_image(&f).ok()?;
            nvr_actors::detect::image::encode_jpeg(&img, 85).ok()?
        }
    };
    Some((f.camera, f.seq, jpeg))
}

/// Stores `jpeg` as the snapshot of (`camera`, `seq`).
async fn store(
    js: &jetstream::Context,
    camera: &str,
    seq: u64,
    jpeg: Bytes,
    counts: &SnapshotCounts,
) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        nvr_subjects::HEADER_MSG_ID,
        nvr_subjects::msg_id(camera, seq).as_str(),
    );
    h.insert(nvr_subjects::HEADER_CONTENT_TYPE, "image/jpeg");
    h.insert(nvr_subjects::HEADER_CAMERA, camera);
    h.insert(nvr_subjects::HEADER_SEQ, seq.to_string().as_str());
    let done = match js
        .publish_with_headers(subjects::snapshot(camera, seq), h, jpeg)
        .await
    {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match done {
        Ok(()) => counts.stored.fetch_add(1, Ordering::Relaxed),
        Err(e) => {
            warn!(camera = %camera, seq, "storing the event snapshot: {e}");
            counts.failed.fetch_add(1, Ordering::Relaxed)
        }
    };
}

/// Watches frames and `track_started` events until `token` is cancelled.
pub async fn spawn_snapshotter(
    client: async_nats::Client,
    cameras: Vec<String>,
    counts: Arc<SnapshotCounts>,
    token: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut frames = client.subscribe(subjects::all::FRAMES).await?;
    let mut events = client
        .subscribe(subjects::events(event_kind::TRACK_STARTED, "*"))
        .await?;
    let js = jetstream::new(client);
    Ok(tokio::spawn(async move {
        let mut held: HashMap<String, VecDeque<(u64, Bytes)>> = HashMap::new();
        let mut wanted: Vec<(String, u64, Instant)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                m = frames.next() => {
                    let Some(m) = m else { break };
                    // Only configured cameras: frames on made-up subjects
                    // must not grow what is held.
                    if !subjects::camera_of(&m.subject).is_some_and(|c| cameras.iter().any(|x| x == c)) {
                        continue;
                    }
                    let Some((camera, seq, jpeg)) = frame_jpeg(&m.payload) else {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let jpeg = Bytes::from(jpeg);
                    if let Some(i) = wanted.iter().position(|w| w.0 == camera && w.1 == seq) {
                        wanted.swap_remove(i);
                        store(&js, &camera, seq, jpeg.clone(), &counts).await;
                    }
                    let q = held.entry(camera).or_default();
                    q.push_back((seq, jpeg));
                    while q.len() > KEEP {
                        q.pop_front();
                    }
                }
                m = events.next() => {
                    let Some(m) = m else { break };
                    let Ok(e) = nvr_subjects::decode::<Event>(&m.payload) else {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let (Some(camera), Some(seq)) = (e.camera, e.seq) else { continue };
                    let found = held
                        .get(&camera)
                        .and_then(|q| q.iter().find(|(s, _)| *s == seq))
                        .map(|(_, j)| j.clone());
                    match found {
                        Some(jpeg) => store(&js, &camera, seq, jpeg, &counts).await,
                        None if wanted.len() < MAX_WANTED => {
                            wanted.push((camera, seq, Instant::now()));
                        }
                        None => {
                            counts.missed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                _ = tick.tick() => {
                    let before = wanted.len();
                    wanted.retain(|w| w.2.elapsed() < WAIT);
                    counts.missed.fetch_add((before - wanted.len()) as u64, Ordering::Relaxed);
                }
            }
        }
    }))
}

/// `GET /api/v1/events/<stream_seq>/snapshot.jpg`: the snapshot of a
/// `track_started` event with its box drawn, or 404 saying why there is none.
pub async fn serve(
    js: &jetstream::Context,
    event_seq: u64,
    max_pixels: u64,
) -> Result<Vec<u8>, (u16, String)> {
    let events = js
        .get_stream(nvr_subjects::streams::EVENTS)
        .await
        .map_err(|e| {
            (
                503,
                format!("stream {}: {e}", nvr_subjects::streams::EVENTS),
            )
        })?;
    let m = events.get_raw_message(event_seq).await.map_err(|_| {
        (
            404,
            format!("no event {event_seq} in {}", nvr_subjects::streams::EVENTS),
        )
    })?;
    let e: Event = nvr_subjects::decode(&m.payload)
        .map_err(|e| (404, format!("event {event_seq} does not decode: {e}")))?;
    let (Some(camera), Some(seq), true) =
        (e.camera.clone(), e.seq, e.kind == event_kind::TRACK_STARTED)
    else {
        return Err((
            404,
            format!(
                "event {event_seq} is a {} event: only track_started events have a snapshot",
                e.kind
            ),
        ));
    };
    let snaps = js
        .get_stream(nvr_subjects::streams::SNAPSHOTS)
        .await
        .map_err(|e| {
            (
                503,
                format!("stream {}: {e}", nvr_subjects::streams::SNAPSHOTS),
            )
        })?;
    let s = snaps
        .get_last_raw_message_by_subject(&subjects::snapshot(&camera, seq))
        .await
        .map_err(|_| {
            (
                404,
                format!(
                    "no snapshot of event {event_seq} (camera {camera}, frame {seq}): it was never stored (frames not seen by nvr run, or snapshots off) or it aged out of {}",
                    nvr_subjects::streams::SNAPSHOTS
                ),
            )
        })?;
    draw(&s.payload, &e, max_pixels)
        .map_err(|why| (500, format!("snapshot of event {event_seq}: {why}")))
}

/// The JPEG with the event's box and label drawn.
fn draw(jpeg: &[u8], e: &Event, max_pixels: u64) -> Result<Vec<u8>, String> {
    use nvr_actors::detect::image::{decode_jpeg_limited, encode_jpeg};
    let mut img = decode_jpeg_limited(jpeg, max_pixels).map_err(|e| e.to_string())?;
    if let Some(b) = e.bbox {
        let (w, h) = (img.width as f32, img.height as f32);
        let tid = e.track_id.unwrap_or(0);
        let text = format!(
            "#{tid} {} {:.2}",
            e.label.as_deref().unwrap_or(""),
            e.score.unwrap_or(0.0)
        );
        nvr_actors::overlay::draw_boxes(
            &mut img,
            &[nvr_actors::overlay::BoxLabel {
                bbox: [b[0] * w, b[1] * h, b[2] * w, b[3] * h],
                text,
                color: nvr_actors::overlay::track_color(tid),
                dashed: false,
            }],
        );
    }
    encode_jpeg(&img, 85).map_err(|e| e.to_string())
}
