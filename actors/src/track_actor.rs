//! `TrackActor`: one per camera. It reads `nvr.detections.<camera>` from a
//! durable JetStream consumer, puts messages from several detector nodes
//! back in `seq` order with a short reorder window (later ones are counted
//! and dropped), runs the per-camera tracker on message time, publishes
//! `CameraTracks` and `track_started` / `track_ended` events, and
//! acknowledges each detections message once its output is stored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use nvr_subjects::{
    decode, event_kind, streams, subjects, CameraTracks, Detections, Event, SCHEMA_VERSION,
};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::bus;
use crate::guard::{self, Limits, Refusal, SeqVerdict};
use crate::status::{now_ms, RefusalSink, TrackingStatus};
use crate::track::{ReorderBuffer, Tracker, TrackerParams};

/// What a track actor needs.
pub struct TrackArgs {
    /// Camera id.
    pub camera: String,
    /// Tracker parameters.
    pub params: TrackerParams,
    /// Reorder window.
    pub reorder_window_ms: u64,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Durable consumer name (distinct per deployment role).
    pub durable: String,
    /// Status shared with the API.
    pub status: Arc<Mutex<TrackingStatus>>,
    /// Bounds every detections message is checked against.
    pub limits: Limits,
    /// Message time between checkpoints of the tracker (`nvr.state.tracker.<camera>`), seconds; 0 = none.
    pub checkpoint_seconds: u64,
}

/// Messages of the track actor.
#[derive(Debug)]
pub enum TrackMsg {
    /// A detections message from the consumer.
    Detections(Box<jetstream::Message>),
    /// Nothing arrived for a while: release what the reorder buffer holds.
    Idle,
    /// The consumer pump ended; fail so the supervisor restarts us.
    PumpFailed(String),
}

/// State of the track actor.
pub struct TrackState {
    /// Static args.
    args: TrackArgs,
    /// The tracker core.
    tracker: Tracker,
    /// Reorder buffer of (decoded message, JetStream message to ack).
    reorder: ReorderBuffer<(Detections, jetstream::Message)>,
    /// Stops the pump.
    cancel: CancellationToken,
    /// The pump task.
    pump: Option<JoinHandle<()>>,
    /// Highest seq handed to the tracker.
    highest_seq: u64,
    /// Whether anything was handed to the tracker yet.
    released_any: bool,
    /// Highest seq that arrived, for the reordered count.
    max_arrived_seq: u64,
    /// When the next checkpoint of the tracker is due.
    checkpoints: crate::checkpoint::Schedule,
    /// Stream sequence of the last detections message delivered, for the
    /// checkpoints (where a replay reads on from).
    last_stream_seq: u64,
}

/// Where a new incarnation of a camera's tracker starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resume {
    /// The first track id it gives.
    pub next_id: u64,
    /// `(seq, ts_ns)` of the last `CameraTracks` an earlier incarnation
    /// published, if any.
    pub after: Option<(u64, u64)>,
}

/// The first track id for a new incarnation of a camera's tracker: one past
/// the highest id in the camera's last stored `CameraTracks` and its last
/// `track_started` / `track_ended` events (ids only grow), or 1; and the
/// last stored `CameraTracks`.
pub async fn resume_track_id(js: &jetstream::Context, camera: &str) -> Resume {
    let mut max = 0;
    let mut after = None;
    if let Some(t) =
        bus::last_stored::<CameraTracks>(js, streams::TRACKS, &subjects::tracks(camera)).await
    {
        max = t.tracks.iter().map(|t| t.track_id).max().unwrap_or(0);
        after = Some((t.seq, t.ts_ns));
    }
    for kind in [event_kind::TRACK_STARTED, event_kind::TRACK_ENDED] {
        if let Some(e) =
            bus::last_stored::<Event>(js, streams::EVENTS, &subjects::events(kind, camera)).await
        {
            max = max.max(e.track_id.unwrap_or(0));
        }
    }
    Resume {
        next_id: max + 1,
        after,
    }
}

/// Announces a restart: `tracker_started` after the earlier incarnation's
/// last published message, so a replay resets its tracker at that point.
async fn announce_restart(js: &jetstream::Context, camera: &str, r: Resume) {
    let Some((seq, ts_ns)) = r.after else {
        return;
    };
    let mut e = Event::new(event_kind::TRACKER_STARTED, ts_ns);
    e.camera = Some(camera.to_string());
    e.track_id = Some(r.next_id);
    e.seq = Some(seq);
    let id = format!("{camera}-{}-{seq}", event_kind::TRACKER_STARTED);
    if let Err(e) = bus::publish_js(
        js,
        subjects::events(event_kind::TRACKER_STARTED, camera),
        &e,
        Some(&id),
    )
    .await
    {
        warn!(camera = %camera, "{e}");
    }
}

/// The track actor.
#[derive(Clone, Copy)]
pub struct TrackActor;

impl Actor for TrackActor {
    type Msg = TrackMsg;
    type State = TrackState;
    type Arguments = TrackArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: TrackArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let consumer = bus::durable_pull(
            &args.js,
            streams::DETECTIONS,
            &args.durable,
            &subjects::detections(&args.camera),
            true,
        )
        .await?;
        let mut consumer = consumer;
        if let Ok(info) = consumer.info().await {
            if info.num_waiting > 0 {
                // Pull requests already waiting on this durable before our
                // pump starts: another process tracks this camera (or a
                // previous incarnation's requests have not expired yet).
                warn!(
                    camera = %args.camera,
                    consumer = %args.durable,
                    waiting = info.num_waiting,
                    "another process may be tracking this camera; its detections would be split between the two (run the track actors of a camera in one place: SPATIAL_EMBEDDED=false where nvr spatial nodes run)"
                );
            }
        }
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let window = Duration::from_millis(args.reorder_window_ms.max(50));
        let me = myself.clone();
        let pump = tokio::spawn(bus::pump(
            consumer,
            token,
            Some(window),
            "detections",
            move |p| {
                // After the idle window the reorder buffer releases what it holds.
                let msg = match p {
                    bus::Pumped::Message(m) => TrackMsg::Detections(m),
                    bus::Pumped::Idle => TrackMsg::Idle,
                    bus::Pumped::Failed(why) => TrackMsg::PumpFailed(why),
                };
                me.cast(msg).is_ok()
            },
        ));
        let window_ns = args.reorder_window_ms * 1_000_000;
        let resume = resume_track_id(&args.js, &args.camera).await;
        announce_restart(&args.js, &args.camera, resume).await;
        let next_id = resume.next_id;
        if next_id > 1 {
            debug!(camera = %args.camera, next_id, "continuing track ids");
        }
        update(&args.status, |s| s.progress.started_ms = now_ms());
        Ok(TrackState {
            tracker: Tracker::with_next_id(args.params.clone(), next_id),
            reorder: ReorderBuffer::new(window_ns),
            checkpoints: crate::checkpoint::Schedule::every(args.checkpoint_seconds),
            args,
            cancel,
            pump: Some(pump),
            highest_seq: 0,
            released_any: false,
            max_arrived_seq: 0,
            last_stream_seq: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TrackMsg::PumpFailed(why) => return Err(why.into()),
            TrackMsg::Idle => {
                let ready = state.reorder.flush();
                process(state, ready).await;
            }
            TrackMsg::Detections(m) => {
                if let Ok(info) = m.info() {
                    state.last_stream_seq = state.last_stream_seq.max(info.stream_sequence);
                }
                let mut det: Detections = match decode(&m.payload) {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(camera = %state.args.camera, "malformed detections message: {e}");
                        update(&state.args.status, |s| s.malformed += 1);
                        let _ = m.ack_with(async_nats::jetstream::AckKind::Term).await;
                        return Ok(());
                    }
                };
                if let Err(why) = check(&m.subject, &mut det, &state.args) {
                    refuse(&state.args, why, 1, &m.subject, &det);
                    let _ = m.ack_with(async_nats::jetstream::AckKind::Term).await;
                    return Ok(());
                }
                update(&state.args.status, |s| s.progress.input_ms = now_ms());
                let (seq, ts) = (det.seq, det.ts_ns);
                let highest = state.released_any.then_some(state.highest_seq);
                if guard::seq_verdict(seq, highest, &state.args.limits) == SeqVerdict::Reset {
                    // The camera restarted its numbering, or one message
                    // carried a wild seq: without a reset every later message
                    // would count as late and tracking would stop.
                    warn!(
                        camera = %state.args.camera,
                        seq,
                        highest = state.highest_seq,
                        "sequence number jumped beyond limits.max_seq_jump ({}); starting a new ordering",
                        state.args.limits.max_seq_jump
                    );
                    let held = state.reorder.flush();
                    process(state, held).await;
                    state.reorder = ReorderBuffer::new(state.args.reorder_window_ms * 1_000_000);
                    state.released_any = false;
                    state.highest_seq = 0;
                    state.max_arrived_seq = 0;
                    update(&state.args.status, |s| {
                        s.seq_resets += 1;
                        guard::count(&mut s.refused, Refusal::SeqReset, 1);
                    });
                }
                if state.released_any && seq <= state.highest_seq {
                    // Arrived after the window closed over its place: counted and dropped.
                    update(&state.args.status, |s| s.late += 1);
                    debug!(camera = %state.args.camera, seq, "late detections dropped");
                    let _ = m.ack().await;
                    return Ok(());
                }
                if seq < state.max_arrived_seq {
                    update(&state.args.status, |s| s.reordered += 1);
                }
                state.max_arrived_seq = state.max_arrived_seq.max(seq);
                if state.reorder.push(seq, ts, (det, *m)).is_err() {
                    update(&state.args.status, |s| s.late += 1);
                    return Ok(());
                }
                let ready = state.reorder.pop_ready();
                process(state, ready).await;
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel.cancel();
        if let Some(p) = state.pump.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        let rest = state.reorder.flush();
        process(state, rest).await;
        Ok(())
    }
}

/// The `track_started` and `track_ended` events of one tracker update at
/// message time `ts_ns`, with label, score, box (and duration when ended):
/// what the track actor publishes, and what a replay reproduces.
pub fn track_events(
    camera: &str,
    seq: u64,
    ts_ns: u64,
    out: &crate::track::TrackerOutput,
    published: &[nvr_subjects::Track],
) -> Vec<Event> {
    let mut events = Vec::new();
    for (kind, ids) in [
        (event_kind::TRACK_STARTED, &out.started),
        (event_kind::TRACK_ENDED, &out.ended),
    ] {
        for tid in ids {
            let mut ev = Event::new(kind, ts_ns);
            ev.camera = Some(camera.to_string());
            ev.track_id = Some(*tid);
            if kind == event_kind::TRACK_STARTED {
                // The frame it was confirmed on: its snapshot.
                ev.seq = Some(seq);
            }
            let seen = if kind == event_kind::TRACK_ENDED {
                out.ended_tracks.iter().find(|t| t.track_id == *tid)
            } else {
                published.iter().find(|t| t.track_id == *tid)
            };
            if let Some(t) = seen {
                ev.label = Some(t.label.clone());
                ev.score = Some(t.score);
                ev.bbox = Some(t.bbox);
                if kind == event_kind::TRACK_ENDED {
                    ev.duration_ms = Some(t.age_ms);
                }
            }
            events.push(ev);
        }
    }
    events
}

/// The boundary checks of a detections message; objects with bad boxes or
/// embeddings are dropped or stripped in place and counted.
fn check(subject: &str, det: &mut Detections, args: &TrackArgs) -> Result<(), Refusal> {
    guard::check_camera(subject, &det.camera)?;
    if det.camera != args.camera {
        return Err(Refusal::UnknownCamera);
    }
    guard::check_time(det.ts_ns, bus::now_ns(), &args.limits)?;
    let cleaned = guard::clean_detections(&mut det.objects, &args.limits)?;
    if !cleaned.is_clean() {
        let line = format!(
            "detections {} seq {}: objects refused: {}",
            det.camera,
            det.seq,
            cleaned.describe()
        );
        debug!("{line}");
        update(&args.status, |s| s.note_refused(&cleaned.refused, line));
    }
    Ok(())
}

/// Logs and counts a refused message.
fn refuse(args: &TrackArgs, why: Refusal, n: u64, subject: &str, det: &Detections) {
    let line = format!(
        "detections refused ({why}) on {subject}: camera {:?}, seq {}, ts_ns {}",
        det.camera, det.seq, det.ts_ns
    );
    warn!(camera = %args.camera, "{line}");
    update(&args.status, |s| s.note_refused(&[(why, n)], line));
}

fn update(status: &Mutex<TrackingStatus>, f: impl FnOnce(&mut TrackingStatus)) {
    if let Ok(mut s) = status.lock() {
        f(&mut s);
    }
}

/// Runs the tracker over released messages in order and publishes the
/// results; then a checkpoint of the tracker when one is due and no
/// detections are held for reordering.
async fn process(state: &mut TrackState, ready: Vec<(Detections, jetstream::Message)>) {
    let last = ready.last().map(|(d, _)| d.ts_ns);
    process_each(state, ready).await;
    let Some(ts_ns) = last else {
        return;
    };
    if state.checkpoints.take(ts_ns, state.reorder.is_empty()) {
        match state.tracker.checkpoint() {
            Ok(bytes) => {
                let at = crate::checkpoint::At {
                    ts_ns,
                    seq: state.highest_seq,
                    stream_seq: state.last_stream_seq,
                };
                let kind = nvr_subjects::checkpoint_kind::TRACKER;
                crate::checkpoint::publish(&state.args.js, kind, &state.args.camera, at, bytes)
                    .await
            }
            Err(e) => warn!(camera = %state.args.camera, "checkpoint not taken: {e}"),
        }
    }
}

async fn process_each(state: &mut TrackState, ready: Vec<(Detections, jetstream::Message)>) {
    for (det, m) in ready {
        let out = state.tracker.update(det.ts_ns, &det.objects);
        state.highest_seq = state.highest_seq.max(det.seq);
        state.released_any = true;
        let tracks = CameraTracks {
            v: SCHEMA_VERSION,
            camera: det.camera.clone(),
            seq: det.seq,
            ts_ns: det.ts_ns,
            width: det.width,
            height: det.height,
            tracks: out.published(),
        };
        let id = nvr_subjects::msg_id(&det.camera, det.seq);
        let js = &state.args.js;
        let mut ok = bus::publish_js(js, subjects::tracks(&det.camera), &tracks, Some(&id))
            .await
            .map_err(|e| warn!(camera = %det.camera, "{e}"))
            .is_ok();
        for ev in track_events(&det.camera, det.seq, det.ts_ns, &out, &tracks.tracks) {
            let tid = ev.track_id.unwrap_or(0);
            let eid = format!("{}-{}-{tid}", det.camera, ev.kind);
            ok &= bus::publish_js(js, subjects::events(&ev.kind, &det.camera), &ev, Some(&eid))
                .await
                .map_err(|e| warn!(camera = %det.camera, "{e}"))
                .is_ok();
        }
        let active = state.tracker.active_count();
        let appearance = state.tracker.appearance_gates();
        let started = out.started.len() as u64;
        for (a, b) in &out.swapped {
            debug!(camera = %det.camera, seq = det.seq, "tracks {a} and {b} exchanged ids after crossing");
        }
        let swaps = out.swapped.len() as u64;
        update(&state.args.status, |s| {
            s.crossing_swaps += swaps;
            s.progress.output_ms = now_ms();
            s.processed += 1;
            s.last_seq = det.seq;
            s.active_tracks = active;
            s.appearance = appearance;
            s.total_tracks += started;
        });
        if ok {
            let _ = m.ack().await;
        } else {
            let _ = m
                .ack_with(async_nats::jetstream::AckKind::Nak(Some(
                    Duration::from_secs(1),
                )))
                .await;
        }
    }
}
