//! What `/health` and `/api/v1/system/health` know about the bus, kept
//! current by one background task per process (every role runs it):
//!
//! - NATS answers: a flush round trip bounded to one second, every second,
//!   so a stalled server (SIGSTOP, a wedged network) is seen within about a
//!   second although the client still calls itself connected;
//! - the contract's streams and the shared `detectors` consumer exist: they
//!   are checked after every reconnect, every few seconds, and at once when
//!   a publish fails, and re-created when missing (a restarted server loses
//!   the memory-backed `NVR_FRAMES`; someone may delete a stream), with a
//!   log line and a counter.
//!
//! Request handlers only read the atomics here, so they answer at once
//! whatever state NATS is in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use nvr_subjects::streams::{self as spec, RetentionSettings};
use tracing::{info, warn};

/// A probe older than this no longer counts as NATS answering.
const PROBE_FRESH: Duration = Duration::from_millis(2500);
/// How often the streams are checked while nothing else prompts it.
const STREAM_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Bus health of this process, shared by the API and the keeper task.
#[derive(Debug)]
pub struct BusHealth {
    /// When NATS last answered a bounded round trip.
    last_answer: Mutex<Option<Instant>>,
    /// Whether the latest round trip was answered (a failed one counts at
    /// once, without waiting for the last answer to grow old).
    last_probe_ok: AtomicBool,
    /// Whether every contract stream existed at the last check.
    streams_ok: AtomicBool,
    /// Streams or consumers found missing and re-created.
    pub recreated: AtomicU64,
    /// Reconnects seen.
    pub reconnects: AtomicU64,
    /// Latest problem, for the health document.
    last_problem: Mutex<Option<String>>,
}

impl Default for BusHealth {
    fn default() -> Self {
        BusHealth {
            last_answer: Mutex::new(None),
            last_probe_ok: AtomicBool::new(true),
            streams_ok: AtomicBool::new(true),
            recreated: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_problem: Mutex::new(None),
        }
    }
}

impl BusHealth {
    /// Whether NATS answered within the last few seconds.
    pub fn nats_answers(&self) -> bool {
        self.last_probe_ok.load(Ordering::Relaxed)
            && self
                .last_answer
                .lock()
                .ok()
                .and_then(|t| *t)
                .is_some_and(|t| t.elapsed() < PROBE_FRESH)
    }

    /// Whether the streams existed at the last check.
    pub fn streams_ok(&self) -> bool {
        self.streams_ok.load(Ordering::Relaxed)
    }

    /// Why the bus is not healthy, if it is not.
    pub fn problem(&self) -> Option<String> {
        if !self.nats_answers() {
            return Some("NATS does not answer (no round trip within 1 s)".into());
        }
        if !self.streams_ok() {
            return Some(
                self.last_problem
                    .lock()
                    .ok()
                    .and_then(|p| p.clone())
                    .unwrap_or_else(|| "a contract stream is missing".into()),
            );
        }
        None
    }

    fn set_problem(&self, p: Option<String>) {
        if let Ok(mut l) = self.last_problem.lock() {
            *l = p;
        }
    }
}

/// Starts the keeper task for `client`, just connected and with its streams
/// ensured (which counts as the first answer); it runs until aborted.
pub fn spawn_keeper(
    client: async_nats::Client,
    retention: RetentionSettings,
    health: Arc<BusHealth>,
) -> tokio::task::JoinHandle<()> {
    if let Ok(mut t) = health.last_answer.lock() {
        *t = Some(Instant::now());
    }
    tokio::spawn(async move {
        let js = jetstream::new(client.clone());
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut was_connected = true;
        let mut last_check = Instant::now();
        loop {
            let prompted = tokio::select! {
                _ = tick.tick() => false,
                _ = nvr_actors::bus::PUBLISH_FAILED.notified() => true,
            };
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            // A real round trip through the server and JetStream (a flush
            // only reaches the socket buffer, which a stopped server still
            // accepts).
            let answered = connected
                && matches!(
                    tokio::time::timeout(Duration::from_secs(1), js.query_account()).await,
                    Ok(Ok(_))
                );
            health.last_probe_ok.store(answered, Ordering::Relaxed);
            if answered {
                if let Ok(mut t) = health.last_answer.lock() {
                    *t = Some(Instant::now());
                }
            }
            let reconnected = connected && !was_connected;
            if reconnected {
                health.reconnects.fetch_add(1, Ordering::Relaxed);
                info!("NATS connection back; checking streams");
            }
            was_connected = connected;
            if answered && (prompted || reconnected || last_check.elapsed() >= STREAM_CHECK_EVERY) {
                last_check = Instant::now();
                check_streams(&js, &retention, &health).await;
            }
        }
    })
}

/// Checks that every contract stream and the `detectors` consumer exist and
/// re-creates what is missing.
async fn check_streams(js: &jetstream::Context, retention: &RetentionSettings, h: &BusHealth) {
    let names = tokio::time::timeout(Duration::from_secs(2), async {
        js.stream_names().collect::<Vec<_>>().await
    })
    .await;
    let Ok(names) = names else {
        return;
    };
    let present: Vec<String> = names.into_iter().filter_map(Result::ok).collect();
    let missing: Vec<&str> = spec::all_streams(retention)
        .iter()
        .map(|s| s.name)
        .filter(|n| !present.iter().any(|p| p == n))
        .collect();
    let consumer_missing = !missing.contains(&spec::FRAMES)
        && match js.get_stream(spec::FRAMES).await {
            Ok(s) => s.consumer_info(spec::DETECTORS_CONSUMER).await.is_err(),
            Err(_) => false,
        };
    if missing.is_empty() && !consumer_missing {
        h.streams_ok.store(true, Ordering::Relaxed);
        h.set_problem(None);
        return;
    }
    let what = if missing.is_empty() {
        format!("consumer {}", spec::DETECTORS_CONSUMER)
    } else {
        format!("stream(s) {}", missing.join(", "))
    };
    warn!("{what} missing on the NATS server; re-creating");
    h.streams_ok.store(false, Ordering::Relaxed);
    h.set_problem(Some(format!("{what} missing")));
    match crate::nats::ensure_streams(js, retention).await {
        Ok(_) => {
            h.recreated.fetch_add(1, Ordering::Relaxed);
            h.streams_ok.store(true, Ordering::Relaxed);
            h.set_problem(None);
            info!("{what} re-created");
        }
        Err(e) => {
            warn!("cannot re-create {what}: {e:#}");
            h.set_problem(Some(format!("{what} missing and not re-created: {e:#}")));
        }
    }
}

/// A live input that keeps arriving while an actor's output stopped this
/// long makes the actor count as frozen.
pub const FROZEN_AFTER_MS: u64 = 10_000;
/// Refusals within this window degrade health (then it recovers by itself).
pub const REFUSED_WINDOW_MS: u64 = 60_000;

/// The verdict of `/api/v1/system/health`: `ok`, `degraded` (serving, with
/// reasons) or `unavailable` (cannot do useful work).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// Reasons that make the process unable to work.
    pub fatal: Vec<String>,
    /// Reasons that degrade it.
    pub degraded: Vec<String>,
}

impl Verdict {
    /// `ok`, `degraded` or `unavailable`.
    pub fn status(&self) -> &'static str {
        if !self.fatal.is_empty() {
            "unavailable"
        } else if !self.degraded.is_empty() {
            "degraded"
        } else {
            "ok"
        }
    }

    /// Adds the reasons an actor's progress gives, if any.
    pub fn actor(&mut self, what: &str, p: &nvr_actors::status::Progress, now_ms: u64) {
        if let Some(ms) = p.frozen_for_ms(now_ms, FROZEN_AFTER_MS) {
            self.degraded.push(format!(
                "{what}: frozen (input arrives, no output for {} s)",
                ms / 1000
            ));
        }
        if p.refused_recently(now_ms, REFUSED_WINDOW_MS) {
            self.degraded.push(format!(
                "{what}: messages refused in the last {} s",
                REFUSED_WINDOW_MS / 1000
            ));
        }
    }

    /// Adds the reason a camera pipeline gives, if any.
    pub fn camera(&mut self, c: &nvr_actors::status::CameraStatus) {
        use nvr_actors::status::CameraState;
        match c.state {
            CameraState::Streaming | CameraState::External | CameraState::Stopped => {}
            CameraState::Starting if c.errors == 0 => {}
            state => self.degraded.push(format!(
                "camera {}: {}{}",
                c.id,
                serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                c.last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvr_actors::status::{CameraState, CameraStatus, Progress};

    #[test]
    fn verdicts() {
        let mut v = Verdict::default();
        assert_eq!(v.status(), "ok");
        let now = 1_000_000;
        v.actor(
            "track cam1",
            &Progress {
                input_ms: now - 100,
                output_ms: now - 30_000,
                started_ms: now - 60_000,
                refused_ms: 0,
            },
            now,
        );
        assert_eq!(v.status(), "degraded");
        assert!(v.degraded[0].contains("frozen"), "{:?}", v.degraded);
        v.camera(&CameraStatus {
            id: "c".into(),
            state: CameraState::Reconnecting,
            last_error: Some("unsupported scheme".into()),
            ..Default::default()
        });
        assert!(v.degraded[1].contains("reconnecting: unsupported scheme"));
        v.fatal.push("NATS does not answer".into());
        assert_eq!(v.status(), "unavailable");
    }
}
