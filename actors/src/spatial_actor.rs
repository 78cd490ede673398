//! `SpatialActor`: one per shard (a floor or any camera set). It reads the
//! `CameraTracks` of its cameras from durable JetStream consumers, holds
//! them in message-time order, and runs a matching cycle every
//! `matching_interval_ms` of message time once every live camera has
//! reached that time (a watermark), giving the tracker core each message
//! just before the first cycle at or after its time. So the output depends
//! on the input only, not on how fast or in which order it arrived. Each
//! cycle publishes `SpatialTracks` and its events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use hdrhistogram::Histogram;
use nvr_subjects::{decode, streams, subjects, CameraTracks, SpatialTrack};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::bus;
use crate::guard::{self, Limits, Refusal};
use crate::spatial::{CameraGeometry, SpatialParams, SpatialStats, SpatialTracker};
use crate::status::{new_histogram, now_ms, Latency, Progress, RefusalSink};

/// A camera whose messages stopped arriving this long ago (wall clock) no
/// longer holds the watermark back.
pub const STALL_AFTER: Duration = Duration::from_secs(2);
/// After the shard's first message, a configured camera that has sent
/// nothing yet holds the first cycles back for this long (wall clock), so a
/// run does not depend on which camera happened to publish first.
pub const STARTUP_GRACE: Duration = Duration::from_secs(2);

/// What a spatial actor needs.
pub struct SpatialArgs {
    /// Shard name.
    pub shard: String,
    /// Calibrated cameras of the shard.
    pub cameras: Vec<CameraGeometry>,
    /// Tracker parameters.
    pub params: SpatialParams,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Status shared with the API.
    pub status: Arc<Mutex<ShardStatus>>,
    /// Latest global tracks, for `/api/v1/spatial/tracks`.
    pub tracks: Arc<Mutex<Vec<SpatialTrack>>>,
    /// Bounds every camera-tracks message is checked against.
    pub limits: Limits,
    /// Message time between checkpoints of the shard (`nvr.state.shard.<shard>`), seconds; 0 = none.
    pub checkpoint_seconds: u64,
}

/// Status of one shard, as served by the status endpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ShardStatus {
    /// Shard name.
    pub shard: String,
    /// Cameras of the shard.
    pub cameras: Vec<String>,
    /// Core counters.
    pub stats: SpatialStats,
    /// Processing time per matching cycle.
    pub processing: Latency,
    /// Re-identification matching time per cycle.
    pub reid: Latency,
    /// Camera-track messages ingested.
    pub ingested: u64,
    /// Messages that could not be decoded.
    pub malformed: u64,
    /// Messages refused by the core (unknown camera, out of order).
    pub rejected: u64,
    /// Messages or tracks refused at the boundary, by reason.
    #[serde(default)]
    pub refused: crate::guard::RefusalCounts,
    /// Input and output marks, to tell a frozen shard from an idle one.
    #[serde(default)]
    pub progress: crate::status::Progress,
    /// Latest error.
    pub last_error: Option<String>,
    /// Processing-time histogram (V2, base64) for cross-node percentiles.
    pub processing_hist: String,
}

/// Messages of the spatial actor.
#[derive(Debug)]
pub enum SpatialMsg {
    /// A camera-tracks message from a consumer.
    Tracks(Box<jetstream::Message>),
    /// A consumer pump ended; fail so the supervisor restarts us.
    PumpFailed(String),
    /// A wall-clock tick: when every camera has gone quiet, message time is
    /// carried forward so tracks still expire by their TTL.
    Tick,
}

/// Wall time without any input after which the shard's clock is carried
/// forward by the wall clock (cameras down, publisher stopped).
const IDLE_AFTER: Duration = Duration::from_secs(3);

/// State of the spatial actor.
pub struct SpatialState {
    /// Static args.
    args: SpatialArgs,
    /// The core; `None` only while a cycle runs on a blocking thread.
    tracker: Option<SpatialTracker>,
    /// Statistics of the core after its last cycle (read without it).
    stats: SpatialStats,
    /// Latest message time per camera and when (wall clock) it arrived.
    camera_ts: BTreeMap<String, (u64, Instant)>,
    /// When the shard's first message arrived.
    first_input: Option<Instant>,
    /// Accepted messages not yet given to the tracker, in message-time order:
    /// each is ingested just before the first cycle at or after its time, so
    /// a cycle sees the same observations however fast the cameras' messages
    /// arrived. Acknowledged once ingested.
    pending: BTreeMap<(u64, String, u64), (CameraTracks, jetstream::Message)>,
    /// Message time of the next matching cycle.
    next_step_ns: Option<u64>,
    /// Processing time per cycle, microseconds.
    hist: Histogram<u64>,
    /// Re-ID time per cycle, microseconds.
    reid_hist: Histogram<u64>,
    /// Stops the pumps.
    cancel: CancellationToken,
    /// Consumer pumps, one per camera, and the tick task.
    pumps: Vec<JoinHandle<()>>,
    /// When the last message arrived (wall clock), for idle expiry.
    last_input: Instant,
    /// Message time carried forward while idle; `None` while input flows.
    idle_mark: Option<u64>,
    /// When the next checkpoint of the shard is due.
    checkpoints: crate::checkpoint::Schedule,
    /// Publishes the shard's checkpoints without holding up its cycles.
    checkpoint_out: crate::checkpoint::Background,
}

/// The first global id for a new incarnation of a shard: one past the
/// highest id in its last stored `SpatialTracks` and `handoff` event, or 1.
/// When an earlier incarnation published cycles, announces the restart
/// (`shard_started` at its last cycle's time) so a replay resets there.
async fn resume_global_id(js: &async_nats::jetstream::Context, shard: &str) -> u64 {
    let mut max = 0;
    let mut last_cycle = None;
    if let Some(t) = bus::last_stored::<nvr_subjects::SpatialTracks>(
        js,
        streams::SPATIAL,
        &subjects::spatial_tracks(shard),
    )
    .await
    {
        max = t.tracks.iter().map(|t| t.global_id).max().unwrap_or(0);
        last_cycle = Some(t.ts_ns);
    }
    if let Some(e) = bus::last_stored::<nvr_subjects::Event>(
        js,
        streams::EVENTS,
        &subjects::events(nvr_subjects::event_kind::HANDOFF, shard),
    )
    .await
    {
        max = max.max(e.global_id.unwrap_or(0));
    }
    if let Some(ts_ns) = last_cycle {
        let mut e = nvr_subjects::Event::new(nvr_subjects::event_kind::SHARD_STARTED, ts_ns);
        e.shard = Some(shard.to_string());
        e.global_id = Some(max + 1);
        let kind = nvr_subjects::event_kind::SHARD_STARTED;
        let id = format!("{shard}-{kind}-{ts_ns}");
        if let Err(e) = bus::publish_js(js, subjects::events(kind, shard), &e, Some(&id)).await {
            warn!(shard = %shard, "{e}");
        }
    }
    max + 1
}

/// The spatial actor.
#[derive(Clone, Copy)]
pub struct SpatialActor;

impl Actor for SpatialActor {
    type Msg = SpatialMsg;
    type State = SpatialState;
    type Arguments = SpatialArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SpatialArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cancel = CancellationToken::new();
        let mut pumps = Vec::new();
        for cam in &args.cameras {
            let durable = format!("spatial-{}-{}", args.shard, cam.id);
            let consumer = bus::durable_pull(
                &args.js,
                streams::TRACKS,
                &durable,
                &subjects::tracks(&cam.id),
                true,
            )
            .await?;
            let token = cancel.clone();
            let me = myself.clone();
            pumps.push(tokio::spawn(bus::pump(
                consumer,
                token,
                None,
                "tracks",
                move |p| {
                    let msg = match p {
                        bus::Pumped::Message(m) => SpatialMsg::Tracks(m),
                        bus::Pumped::Idle => return true,
                        bus::Pumped::Failed(why) => SpatialMsg::PumpFailed(why),
                    };
                    me.cast(msg).is_ok()
                },
            )));
        }
        if let Ok(mut s) = args.status.lock() {
            s.progress.started_ms = now_ms();
            s.shard = args.shard.clone();
            s.cameras = args.cameras.iter().map(|c| c.id.clone()).collect();
        }
        {
            let me = myself.clone();
            let token = cancel.clone();
            pumps.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tick.tick() => {
                            if me.cast(SpatialMsg::Tick).is_err() {
                                return;
                            }
                        }
                    }
                }
            }));
        }
        let mut tracker =
            SpatialTracker::new(&args.shard, args.params.clone(), args.cameras.clone());
        tracker.set_next_id(resume_global_id(&args.js, &args.shard).await);
        let checkpoints = crate::checkpoint::Schedule::every(args.checkpoint_seconds);
        Ok(SpatialState {
            stats: tracker.stats(),
            tracker: Some(tracker),
            args,
            camera_ts: BTreeMap::new(),
            first_input: None,
            pending: BTreeMap::new(),
            next_step_ns: None,
            hist: new_histogram(),
            reid_hist: new_histogram(),
            cancel,
            pumps,
            last_input: Instant::now(),
            idle_mark: None,
            checkpoints,
            checkpoint_out: Default::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SpatialMsg::PumpFailed(why) => Err(why.into()),
            SpatialMsg::Tick => {
                let idle = state.last_input.elapsed();
                let newest = state.camera_ts.values().map(|(t, _)| *t).max();
                if let (true, Some(newest), false) =
                    (idle >= STALL_AFTER, newest, state.pending.is_empty())
                {
                    // The input stopped: what is held is due now, each
                    // message at its own cycle.
                    state.idle_mark = Some(newest);
                    run_cycles(state).await?;
                    ingest_until(state, None).await?;
                    return Ok(());
                }
                if let (true, Some(newest)) = (idle >= IDLE_AFTER, newest) {
                    let held = &state.stats;
                    if held.active_tracks + held.lost_tracks > 0 {
                        if state.idle_mark.is_none() {
                            info!(shard = %state.args.shard, idle_s = idle.as_secs(), "no camera input; carrying the shard clock forward so tracks expire");
                        }
                        state.idle_mark = Some(newest + idle.as_nanos() as u64);
                        run_cycles(state).await?;
                    }
                }
                Ok(())
            }
            SpatialMsg::Tracks(m) => {
                let mut ct: CameraTracks = match decode(&m.payload) {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(shard = %state.args.shard, subject = %m.subject, "malformed tracks message: {e}");
                        update(&state.args.status, |s| {
                            s.malformed += 1;
                            s.last_error = Some(format!("{}: {e}", m.subject));
                        });
                        let _ = m.ack_with(jetstream::AckKind::Term).await;
                        return Ok(());
                    }
                };
                if let Err(why) = check(&m.subject, &mut ct, &state.args) {
                    let line = format!(
                        "camera tracks refused ({why}) on {}: camera {:?}, seq {}, ts_ns {}",
                        m.subject, ct.camera, ct.seq, ct.ts_ns
                    );
                    warn!(shard = %state.args.shard, "{line}");
                    update(&state.args.status, |s| s.note_refused(&[(why, 1)], line));
                    let _ = m.ack_with(jetstream::AckKind::Term).await;
                    return Ok(());
                }
                let now = Instant::now();
                let e = state.camera_ts.entry(ct.camera.clone()).or_insert((0, now));
                *e = (e.0.max(ct.ts_ns), now);
                state.first_input.get_or_insert(now);
                state.last_input = now;
                state.idle_mark = None;
                let key = (ct.ts_ns, ct.camera.clone(), ct.seq);
                state.pending.insert(key, (ct, *m));
                run_cycles(state).await?;
                Ok(())
            }
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel.cancel();
        for p in state.pumps.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), state.checkpoint_out.finish()).await;
        Ok(())
    }
}

/// The boundary checks of a camera-tracks message: the camera agrees with
/// the subject and belongs to the shard, its time is within the window
/// around this node's clock (so it can never carry the shard's clock away),
/// and its tracks' boxes and embeddings are sane (bad ones are dropped or
/// stripped in place and counted).
fn check(subject: &str, ct: &mut CameraTracks, args: &SpatialArgs) -> Result<(), Refusal> {
    guard::check_camera(subject, &ct.camera)?;
    if !args.cameras.iter().any(|c| c.id == ct.camera) {
        return Err(Refusal::UnknownCamera);
    }
    guard::check_time(ct.ts_ns, bus::now_ns(), &args.limits)?;
    let cleaned = guard::clean_tracks(&mut ct.tracks, args.params.embedding_dim, &args.limits)?;
    if !cleaned.is_clean() {
        let line = format!(
            "camera tracks {} seq {}: tracks refused: {}",
            ct.camera,
            ct.seq,
            cleaned.describe()
        );
        debug!("{line}");
        update(&args.status, |s| s.note_refused(&cleaned.refused, line));
    }
    Ok(())
}

impl RefusalSink for ShardStatus {
    fn refusal_parts(
        &mut self,
    ) -> (
        &mut guard::RefusalCounts,
        &mut Option<String>,
        &mut Progress,
    ) {
        (&mut self.refused, &mut self.last_error, &mut self.progress)
    }
}

/// Most messages held for their cycle; beyond it the oldest are ingested at
/// once (a live camera lagging very far behind the others).
const MAX_PENDING: usize = 20_000;

/// Runs `f` on the tracker core on a blocking thread, off the async
/// runtime's workers (a cycle over thousands of identities is milliseconds
/// of CPU that would otherwise stall every other task on that worker).
async fn on_core<R: Send + 'static>(
    state: &mut SpatialState,
    f: impl FnOnce(&mut SpatialTracker) -> R + Send + 'static,
) -> Result<R, ActorProcessingErr> {
    let mut core = state
        .tracker
        .take()
        .ok_or("spatial core missing after a failed cycle")?;
    let (core, r) = tokio::task::spawn_blocking(move || {
        let r = f(&mut core);
        (core, r)
    })
    .await
    .map_err(|e| format!("spatial core failed: {e}"))?;
    state.tracker = Some(core);
    Ok(r)
}

/// Gives the tracker every held message with a time up to `until` (all of
/// them with `None`), in message-time order, and acknowledges each.
async fn ingest_until(
    state: &mut SpatialState,
    until: Option<u64>,
) -> Result<(), ActorProcessingErr> {
    let mut due = Vec::new();
    while let Some((k, _)) = state.pending.first_key_value() {
        if !(until.is_none_or(|u| k.0 <= u) || state.pending.len() > MAX_PENDING) {
            break;
        }
        if let Some((_, m)) = state.pending.pop_first() {
            due.push(m);
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    let (msgs, acks): (Vec<CameraTracks>, Vec<jetstream::Message>) = due.into_iter().unzip();
    let results = on_core(state, move |core| {
        msgs.iter()
            .map(|ct| {
                core.ingest(ct)
                    .map_err(|e| (ct.camera.clone(), e.to_string()))
            })
            .collect::<Vec<_>>()
    })
    .await?;
    for r in results {
        if let Err((camera, e)) = r {
            warn!(shard = %state.args.shard, camera = %camera, "{e}");
            update(&state.args.status, |s| {
                s.rejected += 1;
                s.last_error = Some(e);
            });
        }
        update(&state.args.status, |s| {
            s.ingested += 1;
            s.progress.input_ms = now_ms();
        });
    }
    for m in acks {
        let _ = m.ack().await;
    }
    Ok(())
}

fn update(status: &Mutex<ShardStatus>, f: impl FnOnce(&mut ShardStatus)) {
    if let Ok(mut s) = status.lock() {
        f(&mut s);
    }
}

/// The message time every live camera of the shard has reached. A camera is
/// live while its messages keep arriving (wall clock, [`STALL_AFTER`]); how
/// far its message time lags never excludes it, so the cycles, and what they
/// publish, do not depend on how fast or in which order the cameras'
/// messages were published. Until every one of the `expected` cameras has
/// sent something, no cycle runs for [`STARTUP_GRACE`] after the first
/// message.
pub fn watermark(
    camera_ts: &BTreeMap<String, (u64, Instant)>,
    expected: usize,
    first_input: Option<Instant>,
    now: Instant,
) -> Option<u64> {
    let starting = first_input.is_some_and(|f| now.duration_since(f) < STARTUP_GRACE);
    if camera_ts.len() < expected && starting {
        return None;
    }
    camera_ts
        .values()
        .filter(|(_, at)| now.duration_since(*at) <= STALL_AFTER)
        .map(|(t, _)| *t)
        .min()
}

/// Most cycles a shard runs to catch up with its input at once: after a
/// longer pause it jumps ahead instead of replaying empty cycles.
pub const CATCH_UP_CYCLES: u64 = 50;

/// Time of a shard's first matching cycle: the cycle at or after its
/// earliest held message, so the seconds before the last camera started are
/// tracked too (with the cameras that had started), but at most
/// [`CATCH_UP_CYCLES`] before the watermark `mark`.
pub fn first_cycle(first_held: Option<u64>, mark: u64, interval: u64) -> u64 {
    let interval = interval.max(1);
    let earliest = (mark / interval).saturating_sub(CATCH_UP_CYCLES) * interval;
    match first_held {
        Some(t) if t <= mark => (t.div_ceil(interval) * interval).max(earliest),
        _ => (mark / interval + 1) * interval,
    }
}

/// Runs every matching cycle whose time the watermark has passed.
async fn run_cycles(state: &mut SpatialState) -> Result<(), ActorProcessingErr> {
    let expected = state.args.cameras.len();
    let Some(mark) = watermark(
        &state.camera_ts,
        expected,
        state.first_input,
        Instant::now(),
    )
    .or(state.idle_mark) else {
        return Ok(());
    };
    let mark = mark.max(state.idle_mark.unwrap_or(0));
    let interval = state.args.params.matching_interval_ms.max(1) * 1_000_000;
    let first_held = state.pending.first_key_value().map(|(k, _)| k.0);
    let next = *state
        .next_step_ns
        .get_or_insert_with(|| first_cycle(first_held, mark, interval));
    let mut next = if mark.saturating_sub(next) > CATCH_UP_CYCLES * interval {
        // Far behind (e.g. after a pause): jump instead of replaying empty cycles.
        (mark / interval) * interval
    } else {
        next
    };
    // Messages older than the next cycle (late, or from before a jump)
    // cannot wait for it.
    ingest_until(state, Some(next.saturating_sub(interval))).await?;
    while next <= mark {
        ingest_until(state, Some(next)).await?;
        // A checkpoint is taken right after the step, while the held
        // messages are all newer than it: a replay restored from it goes
        // on with the camera tracks after `next`.
        let checkpoint = state.checkpoints.take(next, true);
        let (out, stats, state_bytes) = on_core(state, move |core| {
            let out = core.step(next);
            let bytes = checkpoint.then(|| core.checkpoint());
            (out, core.stats(), bytes)
        })
        .await?;
        let elapsed_us = (stats.last_step_ms * 1000.0) as u64;
        let _ = state.hist.record(elapsed_us.max(1));
        state.stats = stats.clone();
        let _ = state
            .reid_hist
            .record(((stats.last_reid_ms * 1000.0) as u64).max(1));
        let shard = state.args.shard.clone();
        let js = &state.args.js;
        let id = format!("{shard}-{next}");
        if let Err(e) =
            bus::publish_js(js, subjects::spatial_tracks(&shard), &out.tracks, Some(&id)).await
        {
            warn!(shard = %shard, "{e}");
        }
        for ev in &out.events {
            let eid = format!(
                "{shard}-{}-{}-{}",
                ev.kind,
                ev.global_id.unwrap_or(0),
                ev.ts_ns
            );
            if let Err(e) =
                bus::publish_js(js, subjects::events(&ev.kind, &shard), ev, Some(&eid)).await
            {
                warn!(shard = %shard, "{e}");
            }
        }
        match state_bytes {
            Some(Ok(bytes)) => {
                let kind = nvr_subjects::checkpoint_kind::SHARD;
                let at = crate::checkpoint::At {
                    ts_ns: next,
                    ..Default::default()
                };
                state
                    .checkpoint_out
                    .publish(js, kind, &shard, at, bytes)
                    .await;
            }
            Some(Err(e)) => warn!(shard = %shard, "checkpoint not taken: {e}"),
            None => {}
        }
        if let Ok(mut t) = state.args.tracks.lock() {
            *t = out.tracks.tracks.clone();
        }
        let (hist, reid) = (&state.hist, &state.reid_hist);
        update(&state.args.status, |s| {
            s.progress.output_ms = now_ms();
            s.stats = stats;
            s.processing = Latency::of(hist);
            s.reid = Latency::of(reid);
            if s.stats.cycles % 25 == 0 {
                s.processing_hist = crate::status::histogram_to_b64(hist);
            }
        });
        next += interval;
    }
    state.next_step_ns = Some(next);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_waits_for_every_live_camera_whatever_its_lag() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let mut m = BTreeMap::new();
        assert_eq!(watermark(&m, 3, None, now), None);
        m.insert("a".to_string(), (10_000_000_000, now));
        // Lagging far behind in message time but still arriving: waited for.
        m.insert("b".to_string(), (1_000_000_000, now));
        assert_eq!(watermark(&m, 2, Some(t0), now), Some(1_000_000_000));
        // Its messages stopped arriving: no longer waited for.
        m.insert(
            "b".to_string(),
            (1_000_000_000, now - Duration::from_secs(3)),
        );
        assert_eq!(watermark(&m, 2, Some(t0), now), Some(10_000_000_000));
    }

    #[test]
    fn first_cycle_starts_at_the_earliest_held_message_within_the_catch_up() {
        let ms = 1_000_000;
        // Camera a started 3 s before the last camera: its first seconds count.
        assert_eq!(
            first_cycle(Some(2_050 * ms), 5_010 * ms, 200 * ms),
            2_200 * ms
        );
        // On a cycle boundary: that very cycle.
        assert_eq!(
            first_cycle(Some(2_000 * ms), 5_010 * ms, 200 * ms),
            2_000 * ms
        );
        // Far older: at most CATCH_UP_CYCLES before the watermark.
        assert_eq!(
            first_cycle(Some(0), 60_000 * ms, 200 * ms),
            (300 - CATCH_UP_CYCLES) * 200 * ms
        );
        // Nothing held: the cycle after the watermark.
        assert_eq!(first_cycle(None, 5_010 * ms, 200 * ms), 5_200 * ms);
    }

    #[test]
    fn first_cycles_wait_for_every_configured_camera_within_a_grace() {
        let t0 = Instant::now();
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), (5_000_000_000, t0));
        assert_eq!(
            watermark(&m, 2, Some(t0), t0 + Duration::from_millis(500)),
            None
        );
        let later = t0 + STARTUP_GRACE + Duration::from_millis(100);
        m.insert("a".to_string(), (5_000_000_000, later));
        assert_eq!(watermark(&m, 2, Some(t0), later), Some(5_000_000_000));
        m.insert(
            "b".to_string(),
            (4_000_000_000, t0 + Duration::from_millis(600)),
        );
        assert_eq!(
            watermark(&m, 2, Some(t0), t0 + Duration::from_millis(700)),
            Some(4_000_000_000),
            "every camera reported: no need to wait"
        );
    }
}
