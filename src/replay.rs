//! `nvr replay`: reads the recorded `Detections` of a time window from
//! JetStream through an ordered consumer that starts at `--from`, streams
//! them (constant memory: only each camera's reorder window is held) through
//! fresh per-camera trackers built from the configuration plus any `--set`
//! overrides, and writes the resulting tracks and events to stdout, a
//! JSON-lines file (`--out`) or a separate subject prefix (`--into`), never
//! into the live subjects. With `--shard`, the spatial shards named run on
//! the replayed camera tracks too, cycle by cycle on message time as the live
//! spatial actor runs them (see `replay_shard`), and their spatial tracks and
//! events are written alongside. Each camera goes through what its live track
//! actor does (boundary checks, the reorder window on message time, late
//! and sequence-reset handling), and trackers run on message time only, so a
//! replay of everything stored reproduces the live tracks byte for byte.
//! A window that starts mid-run is warmed up: reading starts where every
//! tracker involved last restarted before `--from` (a restarted live tracker
//! starts empty, and replay resets at the same point), and only outputs from
//! `--from` on are written, so the window equals what was published;
//! `--cold` starts fresh at `--from` instead.
//! `nvr replay <camera>` is the shorthand for one camera from the start.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, consumer};
use clap::Args;
use futures::StreamExt;
use nvr_actors::guard::{self, Limits, SeqVerdict};
use nvr_actors::track::{ReorderBuffer, Tracker, TrackerParams};
use nvr_subjects::{
    decode, encode, streams, subjects, CameraTracks, Checkpoint, Detections, Event, SpatialTracks,
    SCHEMA_VERSION,
};

use crate::replay_shard::ShardReplay;
use crate::replay_start::{Checkpoints, Plan, Restarts, WARM_MARGIN_NS};

/// Arguments of `nvr replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Camera whose detections to replay (`nvr replay <camera>`).
    #[arg(value_name = "CAMERA", conflicts_with = "camera")]
    pub camera_arg: Option<String>,
    /// Cameras to replay (comma-separated); default: every camera recorded
    /// in the window (with `--shard`: the shards' cameras).
    #[arg(long, value_delimiter = ',')]
    pub camera: Vec<String>,
    /// Spatial shards to replay as well (comma-separated; `all` for every
    /// shard of the configuration): fresh shards fed with the replayed
    /// camera tracks, writing spatial tracks and events.
    #[arg(long, value_delimiter = ',')]
    pub shard: Vec<String>,
    /// Start of the window: RFC 3339, Unix seconds, or relative (`-10m`);
    /// default: the start of the stream.
    #[arg(long, allow_hyphen_values = true)]
    pub from: Option<String>,
    /// End of the window (message time), same forms; default: now.
    #[arg(long, allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Change a configuration value for this replay only (`--set
    /// tracking.max_lost_ms=5000`); repeatable. Parsed as the key's type.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Write JSON lines (`{"subject", "message"}`) to this file instead of stdout.
    #[arg(long, conflicts_with = "into")]
    pub out: Option<PathBuf>,
    /// Publish the results under this subject prefix (`<prefix>.tracks.<camera>`,
    /// `<prefix>.events.<kind>.<camera>`), never under `nvr.`.
    #[arg(long)]
    pub into: Option<String>,
    /// Print MessagePack bytes as hex instead of JSON (camera and spatial
    /// tracks; events are left out).
    #[arg(long)]
    pub hex: bool,
    /// Start fresh trackers at `--from` instead of warming them up from the
    /// live trackers' last restart before it: faster over a long history,
    /// but the first moments of the window differ from what was published
    /// until identities settle.
    #[arg(long)]
    pub cold: bool,
}

/// One replayed output: tracks or an event, with the subject it would have.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A camera's tracks after one detections message.
    Tracks(CameraTracks),
    /// A shard's tracks after one matching cycle.
    Spatial(SpatialTracks),
    /// An event and its scope (the camera or the shard).
    Event {
        /// Camera id or shard name, the last subject token.
        scope: String,
        /// The event.
        event: Box<Event>,
    },
}

impl Output {
    /// Its message time: the detections', the cycle's or the event's.
    pub fn ts_ns(&self) -> u64 {
        match self {
            Output::Tracks(t) => t.ts_ns,
            Output::Spatial(t) => t.ts_ns,
            Output::Event { event, .. } => event.ts_ns,
        }
    }

    /// The live subject of this output.
    pub fn subject(&self) -> String {
        match self {
            Output::Tracks(t) => subjects::tracks(&t.camera),
            Output::Spatial(t) => subjects::spatial_tracks(&t.shard),
            Output::Event { scope, event } => subjects::events(&event.kind, scope),
        }
    }
}

/// One camera as its live track actor handles it: boundary checks, reorder
/// window, late and reset handling, tracker, and the restarts of the live
/// tracker (`tracker_started` events).
pub struct CameraReplay {
    /// The camera's tracker.
    tracker: Tracker,
    /// Its parameters, for a fresh tracker at a restart.
    params: TrackerParams,
    /// Restarts of the live tracker, `(last seq before, first track id
    /// after)`, in seq order; those before `next_restart` are behind.
    restarts: Vec<(u64, u64)>,
    /// Index of the next restart in `restarts`.
    next_restart: usize,
    /// Seq after which the live tracker last restarted: older messages
    /// arriving later went to the earlier incarnation.
    resumed_after: Option<u64>,
    /// Detections waiting for their turn.
    reorder: ReorderBuffer<Detections>,
    /// Reorder window, ns.
    window_ns: u64,
    /// Whether anything was released.
    released_any: bool,
    /// Highest released seq.
    highest_seq: u64,
    /// Boundary limits.
    limits: Limits,
    /// `(seq, ts_ns)` of the checkpoint it started from: detections up to
    /// both were taken by the live tracker before it.
    taken: Option<(u64, u64)>,
    /// Messages refused at the boundary or arriving late.
    pub dropped: u64,
}

impl CameraReplay {
    /// A fresh camera; `restarts` are the live tracker's restarts as
    /// `(last seq before, first track id after)`.
    pub fn new(
        params: TrackerParams,
        reorder_window_ms: u64,
        limits: Limits,
        mut restarts: Vec<(u64, u64)>,
    ) -> Self {
        restarts.sort_unstable();
        CameraReplay {
            tracker: Tracker::new(params.clone()),
            params,
            restarts,
            next_restart: 0,
            resumed_after: None,
            reorder: ReorderBuffer::new(reorder_window_ms * 1_000_000),
            window_ns: reorder_window_ms * 1_000_000,
            released_any: false,
            highest_seq: 0,
            limits,
            taken: None,
            dropped: 0,
        }
    }

    /// Starts from a checkpoint of the live tracker instead of empty: the
    /// tracker as it was after the detections `c.seq`, with nothing held;
    /// the restarts before it are behind, and detections it had taken
    /// (at or before both its `seq` and its time) are skipped.
    pub fn restore(&mut self, c: &Checkpoint) -> Result<()> {
        self.tracker = Tracker::restore(self.params.clone(), &c.state).with_context(|| {
            format!(
                "checkpoint of camera {} at {}: unreadable (replay with --cold)",
                c.name,
                crate::events::rfc3339(c.ts_ns)
            )
        })?;
        self.reorder = ReorderBuffer::new(self.window_ns);
        self.released_any = true;
        self.highest_seq = c.seq;
        self.next_restart = self.restarts.partition_point(|(after, _)| *after < c.seq);
        self.taken = Some((c.seq, c.ts_ns));
        Ok(())
    }

    /// Takes one detections message; returns what it released.
    pub fn push(&mut self, mut det: Detections) -> Vec<Output> {
        if self
            .taken
            .is_some_and(|(seq, ts)| det.seq <= seq && det.ts_ns <= ts)
        {
            return Vec::new();
        }
        if guard::clean_detections(&mut det.objects, &self.limits).is_err() {
            self.dropped += 1;
            return Vec::new();
        }
        let mut out = Vec::new();
        while let Some(&(after, next_id)) = self.restarts.get(self.next_restart) {
            if det.seq <= after {
                break;
            }
            // The live tracker stopped after `after` and started again
            // empty: what the earlier one held is released by it.
            let held = self.reorder.flush();
            out.extend(self.process(held));
            self.tracker = Tracker::with_next_id(self.params.clone(), next_id);
            self.reorder = ReorderBuffer::new(self.window_ns);
            self.released_any = false;
            self.highest_seq = 0;
            self.resumed_after = Some(after);
            self.next_restart += 1;
        }
        if self.resumed_after.is_some_and(|a| det.seq <= a) {
            self.dropped += 1;
            return out;
        }
        let highest = self.released_any.then_some(self.highest_seq);
        if guard::seq_verdict(det.seq, highest, &self.limits) == SeqVerdict::Reset {
            let held = self.reorder.flush();
            out.extend(self.process(held));
            self.reorder = ReorderBuffer::new(self.window_ns);
            self.released_any = false;
            self.highest_seq = 0;
        }
        if self.released_any && det.seq <= self.highest_seq {
            self.dropped += 1;
            return out;
        }
        let (seq, ts) = (det.seq, det.ts_ns);
        if self.reorder.push(seq, ts, det).is_err() {
            self.dropped += 1;
            return out;
        }
        let ready = self.reorder.pop_ready();
        out.extend(self.process(ready));
        out
    }

    /// Releases what is still held (the end of the window).
    pub fn finish(&mut self) -> Vec<Output> {
        let rest = self.reorder.flush();
        self.process(rest)
    }

    fn process(&mut self, ready: Vec<Detections>) -> Vec<Output> {
        let mut out = Vec::new();
        for det in ready {
            self.highest_seq = self.highest_seq.max(det.seq);
            self.released_any = true;
            let o = self.tracker.update(det.ts_ns, &det.objects);
            let tracks = CameraTracks {
                v: SCHEMA_VERSION,
                camera: det.camera.clone(),
                seq: det.seq,
                ts_ns: det.ts_ns,
                width: det.width,
                height: det.height,
                tracks: o.published(),
            };
            let events = nvr_actors::track_actor::track_events(
                &det.camera,
                det.seq,
                det.ts_ns,
                &o,
                &tracks.tracks,
            );
            out.push(Output::Tracks(tracks));
            out.extend(events.into_iter().map(|e| Output::Event {
                scope: det.camera.clone(),
                event: Box::new(e),
            }));
        }
        out
    }
}

/// Where outputs go.
enum Sink {
    /// JSON lines (or hex tracks) on stdout or in a file.
    Lines { w: Box<dyn Write>, hex: bool },
    /// Published under a prefix.
    Bus {
        client: async_nats::Client,
        prefix: String,
    },
}

impl Sink {
    /// Where `args` send the outputs: `--out`, `--into` (checked) or stdout.
    fn open(args: &ReplayArgs, client: &async_nats::Client) -> Result<Sink> {
        let lines = |w: Box<dyn Write>| Sink::Lines { w, hex: args.hex };
        Ok(match (&args.out, &args.into) {
            (Some(path), _) => lines(Box::new(std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("--out {}", path.display()))?,
            ))),
            (None, Some(prefix)) => {
                check_prefix(prefix)?;
                Sink::Bus {
                    client: client.clone(),
                    prefix: prefix.clone(),
                }
            }
            (None, None) => lines(Box::new(std::io::BufWriter::new(std::io::stdout()))),
        })
    }

    async fn write(&mut self, o: &Output) -> Result<()> {
        match self {
            Sink::Lines { w, hex } => {
                if *hex {
                    let bytes = match o {
                        Output::Tracks(t) => encode(t)?,
                        Output::Spatial(t) => encode(t)?,
                        Output::Event { .. } => return Ok(()),
                    };
                    writeln!(
                        w,
                        "{}",
                        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    )?;
                    return Ok(());
                }
                let message = match o {
                    Output::Tracks(t) => serde_json::to_value(t)?,
                    Output::Spatial(t) => serde_json::to_value(t)?,
                    Output::Event { event, .. } => serde_json::to_value(event)?,
                };
                let line = serde_json::json!({"subject": o.subject(), "message": message});
                writeln!(w, "{line}")?;
            }
            Sink::Bus { client, prefix } => {
                let subject = o.subject();
                let rest = subject.strip_prefix("nvr.").unwrap_or(&subject);
                let body = match o {
                    Output::Tracks(t) => encode(t)?,
                    Output::Spatial(t) => encode(t)?,
                    Output::Event { event, .. } => encode(event.as_ref())?,
                };
                client
                    .publish(format!("{prefix}.{rest}"), body.into())
                    .await?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        match self {
            Sink::Lines { w, .. } => w.flush()?,
            Sink::Bus { client, .. } => client.flush().await?,
        }
        Ok(())
    }
}

/// Fresh shards for `--shard` (`all`: every shard of the configuration).
fn shard_replays(
    cfg: &crate::config::Config,
    names: &[String],
    restarts: &Restarts,
) -> Result<Vec<ShardReplay>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let plans = crate::node::shards_for_run(cfg)?;
    let all = names.iter().any(|n| n == "all");
    for n in names.iter().filter(|n| *n != "all") {
        if !plans.iter().any(|p| &p.name == n) {
            let known: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
            bail!("--shard {n}: no such shard in the configuration (shards: {known:?})");
        }
    }
    let params = crate::node::spatial_params(cfg);
    let limits = cfg.limits.limits();
    Ok(plans
        .into_iter()
        .filter(|p| all || names.contains(&p.name))
        .map(|p| {
            let r = restarts.shards.get(&p.name).cloned().unwrap_or_default();
            ShardReplay::new(&p.name, params.clone(), p.cameras, limits.clone(), r)
        })
        .collect())
}

/// Where every tracker and shard of the window starts and where reading
/// starts, with the one line on stderr that says why. `--cold` or no
/// `--from`: fresh at `--from`. Otherwise see [`Plan`]; the cameras involved
/// are those asked for, else every camera of the configuration or with a
/// restart.
#[allow(clippy::too_many_arguments)]
async fn reading_plan(
    js: &jetstream::Context,
    args: &ReplayArgs,
    from: Option<u64>,
    cameras: &[String],
    cfg: &crate::config::Config,
    shards: &[ShardReplay],
    restarts: &Restarts,
    first_ns: u64,
) -> Result<Plan> {
    let f = match from {
        Some(f) if !args.cold => f,
        other => {
            return Ok(Plan {
                read_from: other,
                ..Plan::default()
            })
        }
    };
    let mut involved = cameras.to_vec();
    if involved.is_empty() {
        involved.extend(cfg.cameras.iter().map(|c| c.id.clone()));
        involved.extend(restarts.camera_times.keys().cloned());
        involved.sort();
        involved.dedup();
    }
    // Far enough back for a shard's checkpoint and its cameras' before it.
    let lookback = (4 * cfg.tracking.checkpoint_seconds).max(120);
    let checkpoints = Checkpoints::read(js, f, lookback).await?;
    let names: Vec<&str> = shards.iter().map(|s| s.name()).collect();
    let plan = Plan::new(f, &involved, &names, restarts, &checkpoints);
    let n = plan.restored_count();
    match plan.read_from {
        Some(t) if t.saturating_add(WARM_MARGIN_NS) < first_ns => eprintln!(
            "nvr replay: the stream starts at {}, after the live trackers' last checkpoint or restart before --from: the window may differ from what was published until identities settle",
            crate::events::rfc3339(first_ns)
        ),
        Some(t) => {
            let at = match plan.read_seq {
                Some(q) => format!("stream sequence {q} (where the checkpoints were taken)"),
                None => format!(
                    "{} (less {} s)",
                    crate::events::rfc3339(t.max(first_ns)),
                    WARM_MARGIN_NS / 1_000_000_000
                ),
            };
            eprintln!(
                "nvr replay: reading from {at}: each tracker and shard starts from its last checkpoint or restart before --from ({n} of {} from checkpoints), so the window starts with the state they had; --cold starts fresh at --from",
                plan.cameras.len() + plan.shards.len()
            )
        }
        None => eprintln!(
            "nvr replay: reading from the start of the stream ({}): a tracker of the window has run since then without a checkpoint or restart before --from; --cold starts fresh at --from",
            crate::events::rfc3339(first_ns)
        ),
    }
    Ok(plan)
}

/// Camera outputs followed by the cycles of the shards they made due.
fn with_shards(out: Vec<Output>, shards: &mut [ShardReplay]) -> Vec<Output> {
    let mut all = Vec::with_capacity(out.len());
    for o in out {
        let cycles: Vec<_> = match &o {
            Output::Tracks(t) => shards.iter_mut().flat_map(|s| s.push(t)).collect(),
            _ => Vec::new(),
        };
        all.push(o);
        all.extend(cycles.into_iter().flat_map(cycle_outputs));
    }
    all
}

/// A cycle's spatial tracks and events as outputs.
fn cycle_outputs(c: crate::replay_shard::Cycle) -> Vec<Output> {
    let shard = c.tracks.shard.clone();
    let mut out = vec![Output::Spatial(c.tracks)];
    out.extend(c.events.into_iter().map(|e| Output::Event {
        scope: shard.clone(),
        event: Box::new(e),
    }));
    out
}

/// Checks `--into`: a valid prefix of subject tokens that is not the live one.
fn check_prefix(p: &str) -> Result<()> {
    if p.split('.').any(|t| subjects::validate_token(t).is_err()) {
        bail!("--into {p:?}: not a subject prefix (tokens of letters, digits, - and _)");
    }
    if p == nvr_subjects::subjects::PREFIX {
        bail!("--into {p:?}: that is the live prefix; pick another, such as replay");
    }
    Ok(())
}

/// The cameras to replay: those named, else every camera of the `--shard`
/// shards (none named and no shard: every camera stored).
fn selected_cameras(args: &ReplayArgs, shards: &[ShardReplay]) -> Vec<String> {
    let mut cameras = args.camera.clone();
    cameras.extend(args.camera_arg.clone());
    if cameras.is_empty() && !shards.is_empty() {
        for s in shards {
            cameras.extend(s.cameras().iter().cloned());
        }
        cameras.sort();
        cameras.dedup();
    }
    cameras
}

/// `--from` and `--to` as message times (ns).
fn time_window(args: &ReplayArgs) -> Result<(Option<u64>, Option<u64>)> {
    let now = nvr_actors::status::now_ms() * 1_000_000;
    let time = |t: &Option<String>, flag: &str| {
        t.as_deref()
            .map(|t| crate::events::parse_time(t, now).map_err(|e| anyhow::anyhow!("{flag} {e}")))
            .transpose()
    };
    Ok((time(&args.from, "--from")?, time(&args.to, "--to")?))
}

/// Where the replay's outputs go, and which of them: those from `--from` on
/// (earlier ones only warmed the trackers up), without events when only
/// tracks are printed.
struct Writer {
    /// The destination.
    sink: Sink,
    /// `--from`: outputs before it are not written.
    from: Option<u64>,
    /// The shorthand and a plain `nvr replay <camera>` print tracks only,
    /// as the live subject carries them.
    tracks_only: bool,
    /// Outputs written, for the closing line.
    written: u64,
}

impl Writer {
    /// Writes those of `outs` that belong to the window.
    async fn write(&mut self, outs: Vec<Output>) -> Result<()> {
        for o in outs {
            let in_window = self.from.is_none_or(|f| o.ts_ns() >= f);
            if in_window && !(self.tracks_only && matches!(o, Output::Event { .. })) {
                self.sink.write(&o).await?;
                self.written += 1;
            }
        }
        Ok(())
    }
}

/// The trackers of one replay: a [`CameraReplay`] per camera, created when
/// the camera's first detections of the window arrive, and the shards fed by
/// their camera tracks.
struct Replayer {
    /// Cameras asked for; empty = every camera.
    cameras: Vec<String>,
    /// Detections before this message time (ns) are skipped.
    read_from: Option<u64>,
    /// Detections from this message time (ns) on are skipped (`--to`).
    to: Option<u64>,
    /// Tracker parameters for every camera.
    params: TrackerParams,
    /// Reorder window of every camera, ms.
    reorder_window_ms: u64,
    /// Boundary limits of every camera.
    limits: Limits,
    /// Restarts of the live trackers per camera, taken by its replay.
    restarts: BTreeMap<String, Vec<(u64, u64)>>,
    /// Where each tracker starts (its checkpoint, if any).
    plan: Plan,
    /// Per camera.
    replays: BTreeMap<String, CameraReplay>,
    /// The `--shard` shards.
    shards: Vec<ShardReplay>,
}

impl Replayer {
    /// Feeds one camera's detections; the outputs they made due.
    fn push(&mut self, d: Detections) -> Result<Vec<Output>> {
        let wanted = self.cameras.is_empty() || self.cameras.contains(&d.camera);
        let in_window =
            self.read_from.is_none_or(|f| d.ts_ns >= f) && self.to.is_none_or(|t| d.ts_ns < t);
        if !(wanted && in_window) {
            return Ok(Vec::new());
        }
        let r = match self.replays.entry(d.camera.clone()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut r = CameraReplay::new(
                    self.params.clone(),
                    self.reorder_window_ms,
                    self.limits.clone(),
                    self.restarts.remove(&d.camera).unwrap_or_default(),
                );
                if let Some(c) = self.plan.camera_checkpoint(&d.camera) {
                    r.restore(c)?;
                }
                e.insert(r)
            }
        };
        Ok(with_shards(r.push(d), &mut self.shards))
    }

    /// Flushes every camera's reorder window and every shard's last cycle.
    fn finish(&mut self) -> Vec<Output> {
        let mut rest = Vec::new();
        for r in self.replays.values_mut() {
            rest.extend(with_shards(r.finish(), &mut self.shards));
        }
        for s in &mut self.shards {
            rest.extend(s.finish().into_iter().flat_map(cycle_outputs));
        }
        rest
    }

    /// Messages refused at a boundary or arriving late, over cameras and
    /// shards.
    fn dropped(&self) -> u64 {
        self.replays.values().map(|r| r.dropped).sum::<u64>()
            + self
                .shards
                .iter()
                .map(|s| s.refused + s.rejected)
                .sum::<u64>()
    }
}

/// Feeds the detections stream through `replayer` to `writer` up to its
/// last message `last` (or until it goes quiet for 2 s), with a progress
/// bar; returns the messages read and how many of them were malformed.
async fn read_stream(
    messages: &mut consumer::pull::Ordered,
    last: u64,
    replayer: &mut Replayer,
    writer: &mut Writer,
) -> Result<(u64, u64)> {
    let (mut read, mut bad) = (0u64, 0u64);
    let mut progress: Option<crate::progress::Progress> = None;
    loop {
        let m = match tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => bail!("reading {}: {e}", streams::DETECTIONS),
            Ok(None) | Err(_) => break,
        };
        read += 1;
        let (seq, pending) = m
            .info()
            .map(|i| (i.stream_sequence, i.pending))
            .unwrap_or((last, 0));
        progress
            .get_or_insert_with(|| {
                crate::progress::Progress::new("nvr replay", read + pending, "messages")
            })
            .set(read);
        match decode::<Detections>(&m.payload) {
            Ok(d) => writer.write(replayer.push(d)?).await?,
            Err(_) => bad += 1,
        }
        if pending == 0 || seq >= last {
            break;
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    Ok((read, bad))
}

/// Runs `nvr replay`.
pub async fn run(cfg: &crate::config::Config, args: ReplayArgs) -> Result<ExitCode> {
    let client = crate::nats::connect(cfg, &cfg.nats.url, "nvr replay").await?;
    let js = jetstream::new(client.clone());
    let mut restarts = Restarts::read(&js).await?;
    let mut shards = shard_replays(cfg, &args.shard, &restarts)?;
    let cameras = selected_cameras(&args, &shards);
    let (from, to) = time_window(&args)?;
    let mut writer = Writer {
        sink: Sink::open(&args, &client)?,
        from,
        tracks_only: args.out.is_none() && args.into.is_none(),
        written: 0,
    };

    let mut stream = js
        .get_stream(streams::DETECTIONS)
        .await
        .with_context(|| format!("stream {}", streams::DETECTIONS))?;
    let info = stream.info().await?.clone();
    let last = info.state.last_sequence;
    let filter_subject = match cameras.as_slice() {
        [one] => subjects::detections(one),
        _ => subjects::all::DETECTIONS.to_string(),
    };
    // Message time of the oldest detections stored (what retention left).
    let first_ns = match stream.get_raw_message(info.state.first_sequence).await {
        Ok(m) => decode::<Detections>(&m.payload).map_or(0, |d| d.ts_ns),
        Err(_) => 0,
    };
    let plan = reading_plan(
        &js, &args, from, &cameras, cfg, &shards, &restarts, first_ns,
    )
    .await?;
    for s in &mut shards {
        if let Some(c) = plan.shard_checkpoint(s.name()) {
            s.restore(c)?;
        }
    }
    let deliver_policy = match (plan.read_seq, plan.read_from) {
        (Some(seq), _) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: seq,
        },
        (None, Some(ns)) => crate::nats::start_at(ns)?,
        (None, None) => consumer::DeliverPolicy::All,
    };
    let mut messages =
        crate::nats::ordered_messages(&stream, filter_subject, deliver_policy).await?;
    let mut replayer = Replayer {
        cameras,
        read_from: plan.read_from,
        to,
        params: cfg.tracking.params(),
        reorder_window_ms: cfg.tracking.reorder_window_ms,
        limits: cfg.limits.limits(),
        restarts: std::mem::take(&mut restarts.cameras),
        plan,
        replays: BTreeMap::new(),
        shards,
    };
    let started = std::time::Instant::now();
    let (read, bad) = if info.state.messages > 0 {
        read_stream(&mut messages, last, &mut replayer, &mut writer).await?
    } else {
        (0, 0)
    };
    writer.write(replayer.finish()).await?;
    writer.sink.finish().await?;
    eprintln!(
        "nvr replay: read {read} detections messages of {} camera(s), {} shard(s) in {:.2} s, wrote {} outputs; {bad} malformed, {} refused or late",
        replayer.replays.len(),
        replayer.shards.len(),
        started.elapsed().as_secs_f64(),
        writer.written,
        replayer.dropped()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_never_the_live_prefix() {
        assert!(check_prefix("replay").is_ok());
        assert!(check_prefix("replay.run1").is_ok());
        assert!(check_prefix("nvr").is_err());
        assert!(check_prefix("a..b").is_err());
        assert!(check_prefix("a b").is_err());
    }
}
