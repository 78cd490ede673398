//! The latest frame of a camera with its tracks drawn on it
//! (`/api/v1/cameras/<id>/latest.jpg`). Frames are read off the bus only
//! while someone looks: the first request for a camera starts a watcher that
//! subscribes to `nvr.frames.<camera>` and `nvr.tracks.<camera>` and keeps
//! the last few of each; a watcher nobody asked for in a minute stops. Tracks
//! arrive after their frame (detection takes time), so the picture is the
//! newest frame whose tracks have arrived, or the newest frame without boxes
//! when none has.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nvr_subjects::{subjects, CameraTracks, Frame};

/// Frames and tracks kept per camera (3 s at 5 fps).
const KEEP: usize = 15;
/// A watcher nobody asked for this long stops.
const IDLE: Duration = Duration::from_secs(60);
/// How long a request waits for a first frame.
const FIRST_FRAME: Duration = Duration::from_secs(4);
/// How long a request waits for the tracks of a frame it already has.
const TRACKS_WAIT: Duration = Duration::from_millis(1500);

/// What one watcher holds.
#[derive(Default)]
struct Seen {
    /// Newest frames, oldest first.
    frames: VecDeque<Frame>,
    /// Newest tracks, oldest first.
    tracks: VecDeque<CameraTracks>,
    /// Last request for this camera.
    asked: Option<Instant>,
    /// Messages that did not decode (counted, not fatal).
    malformed: u64,
}

/// One camera's watcher.
struct Watcher {
    /// Its state, written by the subscription task.
    seen: Mutex<Seen>,
    /// Woken on every message.
    changed: tokio::sync::Notify,
}

/// A picture ready to serve.
pub struct Picture {
    /// The JPEG.
    pub jpeg: Vec<u8>,
    /// Sequence number of the frame.
    pub seq: u64,
    /// Whether tracks were drawn (the frame's own tracks had arrived).
    pub overlay: bool,
    /// Boxes drawn.
    pub boxes: usize,
}

/// Why there is no picture.
#[derive(Debug, thiserror::Error)]
pub enum NoPicture {
    /// No frame arrived in time.
    #[error("no frame from camera {0} within {1} s (is it streaming? cameras without a url publish no frames)")]
    NoFrame(String, u64),
    /// The frame could not be drawn.
    #[error("camera {0}: frame {1} could not be drawn: {2}")]
    Render(String, u64, String),
    /// The bus refused the subscription.
    #[error("cannot subscribe to camera {0}: {1}")]
    Bus(String, String),
}

/// The watchers of this process.
pub struct LatestFrames {
    /// Client the subscriptions use.
    client: async_nats::Client,
    /// Watchers by camera id.
    watchers: dashmap::DashMap<String, Arc<Watcher>>,
}

impl LatestFrames {
    /// No watcher yet.
    pub fn new(client: async_nats::Client) -> Arc<LatestFrames> {
        Arc::new(LatestFrames {
            client,
            watchers: dashmap::DashMap::new(),
        })
    }

    /// The latest picture of `camera` (a configured camera id).
    pub async fn picture(self: &Arc<Self>, camera: &str) -> Result<Picture, NoPicture> {
        let w = self.watcher(camera).await?;
        let started = Instant::now();
        loop {
            let notified = w.changed.notified();
            if let Some(p) = choose(&w, started.elapsed() >= TRACKS_WAIT) {
                // Decode, draw and encode take milliseconds of CPU: not on
                // the async runtime's threads.
                let cam = camera.to_string();
                return tokio::task::spawn_blocking(move || render(&cam, p))
                    .await
                    .unwrap_or_else(|e| Err(NoPicture::Render(camera.into(), 0, e.to_string())));
            }
            if started.elapsed() >= FIRST_FRAME {
                return Err(NoPicture::NoFrame(camera.into(), FIRST_FRAME.as_secs()));
            }
            let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
        }
    }

    async fn watcher(self: &Arc<Self>, camera: &str) -> Result<Arc<Watcher>, NoPicture> {
        let known = self.watchers.get(camera).map(|w| w.value().clone());
        if let Some(w) = known {
            if let Ok(mut s) = w.seen.lock() {
                s.asked = Some(Instant::now());
            }
            return Ok(w);
        }
        let bus = |e: async_nats::SubscribeError| NoPicture::Bus(camera.into(), e.to_string());
        let frames = self
            .client
            .subscribe(subjects::frames(camera))
            .await
            .map_err(bus)?;
        let tracks = self
            .client
            .subscribe(subjects::tracks(camera))
            .await
            .map_err(bus)?;
        let w = Arc::new(Watcher {
            seen: Mutex::new(Seen {
                asked: Some(Instant::now()),
                ..Default::default()
            }),
            changed: tokio::sync::Notify::new(),
        });
        self.watchers.insert(camera.to_string(), w.clone());
        let me = self.clone();
        let cam = camera.to_string();
        let task_w = w.clone();
        tokio::spawn(async move {
            watch(&task_w, frames, tracks).await;
            me.watchers.remove_if(&cam, |_, v| Arc::ptr_eq(v, &task_w));
        });
        Ok(w)
    }
}

/// Keeps `w` fed until nobody asked for a minute.
async fn watch(
    w: &Watcher,
    mut frames: async_nats::Subscriber,
    mut tracks: async_nats::Subscriber,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            m = frames.next() => {
                let Some(m) = m else { break };
                record(w, &m.payload, |s| &mut s.frames);
            }
            m = tracks.next() => {
                let Some(m) = m else { break };
                record(w, &m.payload, |s| &mut s.tracks);
            }
            _ = tick.tick() => {
                let idle = w
                    .seen
                    .lock()
                    .map(|s| s.asked.is_none_or(|a| a.elapsed() > IDLE))
                    .unwrap_or(true);
                if idle {
                    break;
                }
            }
        }
    }
}

/// Keeps a decoded message in the queue `pick` chooses (a malformed one is
/// counted) and wakes the waiting requests.
fn record<T: nvr_subjects::Message>(
    w: &Watcher,
    payload: &[u8],
    pick: impl FnOnce(&mut Seen) -> &mut VecDeque<T>,
) {
    let decoded = nvr_subjects::decode::<T>(payload);
    if let Ok(mut s) = w.seen.lock() {
        match decoded {
            Ok(v) => push(pick(&mut s), v),
            Err(_) => s.malformed += 1,
        }
    }
    w.changed.notify_waiters();
}

fn push<T>(q: &mut VecDeque<T>, v: T) {
    q.push_back(v);
    while q.len() > KEEP {
        q.pop_front();
    }
}

/// The newest frame whose tracks arrived; with `give_up`, the newest frame
/// even without them.
fn choose(w: &Watcher, give_up: bool) -> Option<(Frame, Option<CameraTracks>)> {
    let s = w.seen.lock().ok()?;
    for f in s.frames.iter().rev() {
        if let Some(t) = s.tracks.iter().rev().find(|t| t.seq == f.seq) {
            return Some((f.clone(), Some(t.clone())));
        }
    }
    if give_up {
        return s.frames.back().map(|f| (f.clone(), None));
    }
    None
}

fn render(camera: &str, (f, t): (Frame, Option<CameraTracks>)) -> Result<Picture, NoPicture> {
    let (jpeg, boxes) = nvr_actors::overlay::render(&f, t.as_ref())
        .map_err(|e| NoPicture::Render(camera.into(), f.seq, e.to_string()))?;
    Ok(Picture {
        jpeg,
        boxes,
        seq: f.seq,
        overlay: t.is_some(),
    })
}
