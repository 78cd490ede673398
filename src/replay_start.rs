//! Where `nvr replay --from` starts each tracker and shard of its window,
//! and so where it starts reading: at the latest checkpoint
//! (`nvr.state.<kind>.<name>`, restored as it was) or restart (the live one
//! started empty there, and so does the replay) before `--from`, whichever
//! is later; from the start of the stream where there is neither. A shard
//! starts first: its cameras must then start at or before the shard's
//! start, so they give it every camera track it took after that point.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use async_nats::jetstream;
use futures::StreamExt;
use nvr_subjects::{checkpoint_kind, decode, streams, subjects, Checkpoint, Event};

/// The live trackers' restarts recorded in `NVR_EVENTS`.
#[derive(Debug, Default)]
pub struct Restarts {
    /// Per camera: `(last seq before, first track id after)`.
    pub cameras: BTreeMap<String, Vec<(u64, u64)>>,
    /// Per shard: `(last cycle before, first global id after)`.
    pub shards: BTreeMap<String, Vec<(u64, u64)>>,
    /// Per camera, the message time of each restart (the last detections
    /// the earlier incarnation took), for the warm-up start.
    pub camera_times: BTreeMap<String, Vec<u64>>,
}

/// Read this much (ns) before a restart point, so that messages of the new
/// incarnation stored a little before the last one of the earlier
/// incarnation (out of order, within the reorder window) are read too.
pub const WARM_MARGIN_NS: u64 = 10_000_000_000;

impl Restarts {
    /// Every `tracker_started` and `shard_started` event stored.
    pub async fn read(js: &jetstream::Context) -> Result<Restarts> {
        use nvr_subjects::event_kind::{SHARD_STARTED, TRACKER_STARTED};
        let mut r = Restarts::default();
        let Ok(mut stream) = js.get_stream(streams::EVENTS).await else {
            return Ok(r);
        };
        if stream.info().await?.state.last_sequence == 0 {
            return Ok(r);
        }
        for kind in [TRACKER_STARTED, SHARD_STARTED] {
            let mut messages = crate::nats::ordered_messages(
                &stream,
                format!("{}.events.{kind}.*", subjects::PREFIX),
                jetstream::consumer::DeliverPolicy::All,
            )
            .await?;
            while let Some((m, pending)) = next_stored(&mut messages, streams::EVENTS).await? {
                if let Ok(e) = decode::<Event>(&m.payload) {
                    match (e.camera, e.seq, e.track_id, e.shard, e.global_id) {
                        (Some(c), Some(seq), Some(id), _, _) if kind == TRACKER_STARTED => {
                            r.camera_times.entry(c.clone()).or_default().push(e.ts_ns);
                            r.cameras.entry(c).or_default().push((seq, id));
                        }
                        (_, _, _, Some(sh), Some(id)) if kind == SHARD_STARTED => {
                            r.shards.entry(sh).or_default().push((e.ts_ns, id));
                        }
                        _ => {}
                    }
                }
                if pending == 0 {
                    break;
                }
            }
        }
        Ok(r)
    }

    /// The latest restart of `kind` `name` at or before `at`.
    fn latest(&self, kind: &str, name: &str, at: u64) -> Option<u64> {
        let times: Vec<u64> = if kind == checkpoint_kind::SHARD {
            let s = self.shards.get(name)?;
            s.iter().map(|(t, _)| *t).collect()
        } else {
            self.camera_times.get(name)?.clone()
        };
        times.into_iter().filter(|t| *t <= at).max()
    }
}

/// The next stored message of an ordered consumer on `stream` and how many
/// are pending after it; `None` at the end (or after a second of silence).
async fn next_stored(
    messages: &mut jetstream::consumer::pull::Ordered,
    stream: &str,
) -> Result<Option<(jetstream::Message, u64)>> {
    match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
        Ok(Some(Ok(m))) => {
            let pending = m.info().map(|i| i.pending).unwrap_or(0);
            Ok(Some((m, pending)))
        }
        Ok(Some(Err(e))) => bail!("reading {stream}: {e}"),
        Ok(None) | Err(_) => Ok(None),
    }
}

/// The checkpoints stored around a window's start, by `(kind, name)`, in
/// time order (only those of this build's layout).
#[derive(Debug, Default)]
pub struct Checkpoints {
    by: BTreeMap<(String, String), Vec<Checkpoint>>,
}

impl Checkpoints {
    /// Reads the checkpoints stored from `lookback_s` seconds before `from`
    /// up to `from` (message time).
    pub async fn read(js: &jetstream::Context, from: u64, lookback_s: u64) -> Result<Checkpoints> {
        let mut c = Checkpoints::default();
        let Ok(mut stream) = js.get_stream(streams::STATE).await else {
            return Ok(c);
        };
        if stream.info().await?.state.messages == 0 {
            return Ok(c);
        }
        let lookback = lookback_s.saturating_mul(1_000_000_000);
        // Stored time is the publisher's clock: a minute of slack for skew.
        let start = from.saturating_sub(lookback + 60_000_000_000);
        let mut messages = crate::nats::ordered_messages(
            &stream,
            subjects::all::STATE.to_string(),
            crate::nats::start_at(start.max(1))?,
        )
        .await?;
        let mut parts = nvr_actors::checkpoint::Assembler::default();
        while let Some((m, pending)) = next_stored(&mut messages, streams::STATE).await? {
            let whole = decode::<Checkpoint>(&m.payload)
                .ok()
                .and_then(|k| parts.push(k));
            if let Some(k) = whole {
                if k.ts_ns > from.saturating_add(lookback) {
                    break;
                }
                if k.ts_ns <= from && k.format == nvr_actors::checkpoint::FORMAT {
                    c.by.entry((k.kind.clone(), k.name.clone()))
                        .or_default()
                        .push(k);
                }
            }
            if pending == 0 {
                break;
            }
        }
        Ok(c)
    }

    /// The latest checkpoint of `kind` `name` at or before `at`.
    fn latest(&self, kind: &str, name: &str, at: u64) -> Option<&Checkpoint> {
        self.by
            .get(&(kind.to_string(), name.to_string()))?
            .iter()
            .filter(|c| c.ts_ns <= at)
            .max_by_key(|c| c.ts_ns)
    }
}

/// Where one tracker or shard of the window starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// At the start of the stream (it has run since without a restart or a
    /// checkpoint within reach).
    Stream,
    /// Empty at its restart at this message time.
    Restart(u64),
    /// In the state of this checkpoint.
    Checkpoint(Box<Checkpoint>),
}

impl Start {
    /// The message time it starts at; `None` for the start of the stream.
    pub fn ts(&self) -> Option<u64> {
        match self {
            Start::Stream => None,
            Start::Restart(t) => Some(*t),
            Start::Checkpoint(c) => Some(c.ts_ns),
        }
    }
}

/// The later of the latest restart and the latest checkpoint at or before `at`.
fn start_of(kind: &str, name: &str, at: u64, r: &Restarts, c: &Checkpoints) -> Start {
    match (r.latest(kind, name, at), c.latest(kind, name, at)) {
        (Some(t), Some(k)) if k.ts_ns <= t => Start::Restart(t),
        (_, Some(k)) => Start::Checkpoint(Box::new(k.clone())),
        (Some(t), None) => Start::Restart(t),
        (None, None) => Start::Stream,
    }
}

/// Where every tracker and shard of a window starting at `from` starts, and
/// where reading starts (`None`: the start of the stream).
#[derive(Debug, Default)]
pub struct Plan {
    /// Per camera.
    pub cameras: BTreeMap<String, Start>,
    /// Per shard.
    pub shards: BTreeMap<String, Start>,
    /// Where reading starts: the earliest start less [`WARM_MARGIN_NS`].
    pub read_from: Option<u64>,
    /// Where reading starts in the detections stream when every camera
    /// starts from a checkpoint: after the earliest message their consumers
    /// had delivered (exact, whatever the clocks).
    pub read_seq: Option<u64>,
}

impl Plan {
    /// The plan for `cameras` and `shards` (each shard's cameras among
    /// `cameras`).
    pub fn new(
        from: u64,
        cameras: &[String],
        shards: &[&str],
        r: &Restarts,
        c: &Checkpoints,
    ) -> Plan {
        let mut plan = Plan::default();
        let mut camera_at = Some(from);
        for s in shards {
            let st = start_of(checkpoint_kind::SHARD, s, from, r, c);
            camera_at = match (camera_at, st.ts()) {
                (Some(a), Some(t)) => Some(a.min(t)),
                _ => None,
            };
            plan.shards.insert(s.to_string(), st);
        }
        for cam in cameras {
            let st = match camera_at {
                Some(at) => start_of(checkpoint_kind::TRACKER, cam, at, r, c),
                None => Start::Stream,
            };
            plan.cameras.insert(cam.clone(), st);
        }
        let starts = plan.cameras.values().chain(plan.shards.values());
        plan.read_from = starts
            .map(Start::ts)
            .try_fold(from, |acc, t| t.map(|t| acc.min(t)))
            .map(|t| t.saturating_sub(WARM_MARGIN_NS));
        plan.read_seq = plan
            .cameras
            .values()
            .map(|s| match s {
                Start::Checkpoint(c) if c.stream_seq > 0 => Some(c.stream_seq),
                _ => None,
            })
            .try_fold(u64::MAX, |acc, q| q.map(|q| acc.min(q)))
            .filter(|q| *q != u64::MAX)
            .map(|q| q + 1);
        plan
    }

    /// How many trackers and shards start from a checkpoint.
    pub fn restored_count(&self) -> usize {
        self.cameras
            .values()
            .chain(self.shards.values())
            .filter(|s| matches!(s, Start::Checkpoint(_)))
            .count()
    }

    /// The checkpoint camera `cam` starts from, if any.
    pub fn camera_checkpoint(&self, cam: &str) -> Option<&Checkpoint> {
        match self.cameras.get(cam)? {
            Start::Checkpoint(c) => Some(c),
            _ => None,
        }
    }

    /// The checkpoint shard `shard` starts from, if any.
    pub fn shard_checkpoint(&self, shard: &str) -> Option<&Checkpoint> {
        match self.shards.get(shard)? {
            Start::Checkpoint(c) => Some(c),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn checkpoint(kind: &str, name: &str, ts: u64) -> Checkpoint {
        Checkpoint {
            v: nvr_subjects::SCHEMA_VERSION,
            kind: kind.into(),
            name: name.into(),
            ts_ns: ts,
            seq: ts / S,
            stream_seq: ts / S * 3,
            format: nvr_actors::checkpoint::FORMAT,
            part: 0,
            parts: 1,
            state: Vec::new(),
        }
    }

    fn checkpoints(list: &[(&str, &str, u64)]) -> Checkpoints {
        let mut c = Checkpoints::default();
        for (k, n, t) in list {
            c.by.entry((k.to_string(), n.to_string()))
                .or_default()
                .push(checkpoint(k, n, *t));
        }
        c
    }

    #[test]
    fn each_starts_at_its_later_of_checkpoint_and_restart_and_cameras_not_after_their_shard() {
        let mut r = Restarts::default();
        r.camera_times.insert("a".into(), vec![50 * S]);
        let c = checkpoints(&[
            ("tracker", "a", 40 * S),
            ("tracker", "a", 100 * S),
            ("tracker", "a", 160 * S),
            ("tracker", "b", 100 * S),
            ("shard", "lobby", 130 * S),
            ("shard", "lobby", 190 * S),
        ]);
        let cams = ["a".to_string(), "b".to_string()];
        // Cameras alone: each its latest before --from.
        let p = Plan::new(170 * S, &cams, &[], &r, &c);
        assert_eq!(p.cameras["a"].ts(), Some(160 * S));
        assert_eq!(p.cameras["b"].ts(), Some(100 * S));
        assert_eq!(p.read_from, Some(90 * S));
        assert_eq!(
            p.read_seq,
            Some(301),
            "after the earliest delivered message"
        );
        // With the shard (checkpoint at 130): cameras at or before 130.
        let p = Plan::new(170 * S, &cams, &["lobby"], &r, &c);
        assert_eq!(p.shards["lobby"].ts(), Some(130 * S));
        assert_eq!(p.cameras["a"].ts(), Some(100 * S));
        assert_eq!(p.restored_count(), 3);
        // A restart later than the checkpoint wins.
        let p = Plan::new(60 * S, &cams, &[], &r, &c);
        assert_eq!(p.cameras["a"], Start::Restart(50 * S));
        assert_eq!(p.read_seq, None, "a restart is found by time");
        // Nothing before --from: the start of the stream for all.
        let p = Plan::new(60 * S, &cams, &["lobby"], &r, &c);
        assert_eq!(p.shards["lobby"], Start::Stream);
        assert_eq!(p.cameras["a"], Start::Stream);
        assert_eq!(p.read_from, None);
    }
}
