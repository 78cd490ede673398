//! Counts what JetStream actually stored, per camera: detections in
//! `NVR_DETECTIONS` and camera tracks in `NVR_TRACKS`, read through ordered
//! consumers that deliver headers only (no payload crosses the wire).
//!
//! Two things need a count that does not live in a node's memory: the
//! processed-frame total must not fall when a detection node dies (its
//! in-memory counters die with it), and messages for cameras that nobody
//! tracks must be counted somewhere instead of being stored silently.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use dashmap::DashMap;
use futures::StreamExt;
use nvr_subjects::{streams, subjects};
use tracing::debug;

/// Stored message counts per camera since this process started.
#[derive(Debug, Default)]
pub struct Census {
    /// Cameras this process tracks; others are reported as untracked.
    tracked: Vec<String>,
    /// Detections stored per camera (written by the census task, read by
    /// the API: a concurrent map).
    detections: DashMap<String, u64>,
    /// Camera tracks stored per camera.
    tracks: DashMap<String, u64>,
}

impl Census {
    /// An empty census for a process that tracks `tracked`.
    pub fn new(tracked: Vec<String>) -> Census {
        Census {
            tracked,
            ..Default::default()
        }
    }

    /// Detections stored per camera.
    pub fn detections(&self) -> BTreeMap<String, u64> {
        self.detections
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect()
    }

    /// Messages stored for cameras this process does not track:
    /// `{camera: {"detections": n, "tracks": m}}`.
    pub fn untracked(&self) -> BTreeMap<String, (u64, u64)> {
        let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (c, n) in self.detections() {
            if !self.tracked.contains(&c) {
                out.entry(c).or_default().0 = n;
            }
        }
        for e in self.tracks.iter() {
            if !self.tracked.contains(e.key()) {
                out.entry(e.key().clone()).or_default().1 = *e.value();
            }
        }
        out
    }

    fn add(&self, subject: &str) {
        let Some(camera) = subjects::camera_of(subject) else {
            return;
        };
        let map = match subjects::family(subject) {
            Some(subjects::Family::Detections) => &self.detections,
            Some(subjects::Family::Tracks) => &self.tracks,
            _ => return,
        };
        *map.entry(camera.to_string()).or_insert(0) += 1;
    }
}

/// Starts counting; runs until aborted, re-subscribing when a stream is
/// re-created or the connection drops.
pub fn spawn(
    js: jetstream::Context,
    census: std::sync::Arc<Census>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let d = tokio::spawn(follow(js.clone(), streams::DETECTIONS, census.clone()));
        let t = tokio::spawn(follow(js, streams::TRACKS, census));
        let _ = futures::future::join(d, t).await;
    })
}

async fn follow(js: jetstream::Context, stream: &'static str, census: std::sync::Arc<Census>) {
    let mut start: Option<u64> = None;
    loop {
        if let Err(e) = follow_once(&js, stream, &census, &mut start).await {
            debug!(stream, "census: {e}; re-subscribing");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(
    js: &jetstream::Context,
    stream: &str,
    census: &Census,
    start: &mut Option<u64>,
) -> Result<(), async_nats::Error> {
    let s = js.get_stream(stream).await?;
    let cfg = consumer::pull::OrderedConfig {
        headers_only: true,
        deliver_policy: match *start {
            Some(seq) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: seq,
            },
            None => consumer::DeliverPolicy::New,
        },
        ..Default::default()
    };
    let c = s.create_consumer(cfg).await?;
    let mut messages = c.messages().await?;
    while let Some(m) = messages.next().await {
        let m = m?;
        if let Ok(info) = m.info() {
            *start = Some(info.stream_sequence + 1);
        }
        census.add(m.subject.as_str());
    }
    Ok(())
}
