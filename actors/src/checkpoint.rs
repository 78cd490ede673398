//! Checkpoints of live trackers and shards (`nvr.state.<kind>.<name>`): when
//! one is due, and how it goes on the bus. A replay starts a tracker from
//! the latest checkpoint before its window instead of from the start of the
//! stream (see `nvr replay`).

use std::collections::BTreeMap;

use async_nats::jetstream;
use nvr_subjects::{subjects, Checkpoint, SCHEMA_VERSION};
use tracing::warn;

use crate::bus;

/// Layout version of the `state` this build writes and reads.
pub const FORMAT: u32 = 2;

/// When the next checkpoint is due, in message time.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// Message time between two checkpoints, ns; 0 = never.
    every_ns: u64,
    /// Message time at or after which the next one is due; `None` until the
    /// first input (a tracker's start needs no checkpoint: it is empty).
    due_ns: Option<u64>,
}

impl Schedule {
    /// A checkpoint every `every_s` seconds of message time (0: never).
    pub fn every(every_s: u64) -> Schedule {
        Schedule {
            every_ns: every_s.saturating_mul(1_000_000_000),
            due_ns: None,
        }
    }

    /// Whether a checkpoint at message time `ts_ns` is due; if so, the next
    /// one is due a period later. `ready`: whether the state can be taken
    /// now (a track actor with detections held for reordering cannot; it
    /// tries again with its next message).
    pub fn take(&mut self, ts_ns: u64, ready: bool) -> bool {
        if self.every_ns == 0 {
            return false;
        }
        match self.due_ns {
            None => {
                self.due_ns = Some(ts_ns.saturating_add(self.every_ns));
                false
            }
            Some(due) if ts_ns >= due && ready => {
                self.due_ns = Some(ts_ns.saturating_add(self.every_ns));
                true
            }
            Some(_) => false,
        }
    }
}

/// Where a checkpoint is: message time, and for a tracker the camera `seq`
/// and the detections stream sequence of the last message it took.
#[derive(Debug, Clone, Copy, Default)]
pub struct At {
    /// Message time of the state.
    pub ts_ns: u64,
    /// Camera seq (trackers; 0 for shards).
    pub seq: u64,
    /// `NVR_DETECTIONS` stream sequence (trackers; 0 for shards).
    pub stream_seq: u64,
}

/// Most bytes of a part's message left for everything but its slice of the
/// state (the other fields and the headers take a few hundred): 4 KiB, or
/// half of a small `max_payload`.
const PART_OVERHEAD: usize = 4096;
/// Smallest slice of the state one part carries.
const MIN_PART: usize = 256;

/// The largest slice of a state one message carries under `max_payload`.
pub fn part_bytes(max_payload: usize) -> usize {
    max_payload
        .saturating_sub((max_payload / 2).min(PART_OVERHEAD))
        .max(MIN_PART)
}

/// The messages a checkpoint of `kind` for `name` at `at` goes on the bus
/// in: `state` in slices of at most `part_bytes` (at least one part, even
/// for an empty state).
pub fn split(kind: &str, name: &str, at: At, state: &[u8], part_bytes: usize) -> Vec<Checkpoint> {
    let slices: Vec<&[u8]> = if state.is_empty() {
        vec![state]
    } else {
        state.chunks(part_bytes.max(1)).collect()
    };
    let parts = u32::try_from(slices.len()).unwrap_or(u32::MAX);
    slices
        .into_iter()
        .enumerate()
        .map(|(i, slice)| Checkpoint {
            v: SCHEMA_VERSION,
            kind: kind.to_string(),
            name: name.to_string(),
            ts_ns: at.ts_ns,
            seq: at.seq,
            stream_seq: at.stream_seq,
            format: FORMAT,
            part: u32::try_from(i).unwrap_or(u32::MAX),
            parts,
            state: slice.to_vec(),
        })
        .collect()
}

/// Publishes a checkpoint of `kind` for `name` at `at`, in as many parts as
/// the server's `max_payload` needs; a failure is logged, never fatal: a
/// missing (or incomplete) checkpoint only makes a later replay read
/// further back.
pub async fn publish(js: &jetstream::Context, kind: &str, name: &str, at: At, state: Vec<u8>) {
    let part = part_bytes(js.client().max_payload());
    for c in split(kind, name, at, &state, part) {
        let id = format!("{kind}-{name}-{}-{}", at.ts_ns, c.part);
        if let Err(e) = bus::publish_js(js, subjects::state(kind, name), &c, Some(&id)).await {
            warn!(name = %name, part = c.part, parts = c.parts, "checkpoint not stored: {e}");
            return;
        }
    }
}

/// Publishes checkpoints off the caller's path: the parts of a checkpoint
/// go out from a task of their own, so a large shard's state (tens of
/// parts once a minute) never holds up the cycle that took it. At most one
/// checkpoint is in flight; the next one waits for it, so parts of two
/// checkpoints never interleave.
#[derive(Default)]
pub struct Background {
    /// The task publishing the latest checkpoint, until it is awaited.
    in_flight: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    /// Starts publishing a checkpoint of `kind` for `name` at `at`, after
    /// the one still in flight (if any) is out.
    pub async fn publish(
        &mut self,
        js: &jetstream::Context,
        kind: &'static str,
        name: &str,
        at: At,
        state: Vec<u8>,
    ) {
        self.finish().await;
        let (js, name) = (js.clone(), name.to_string());
        self.in_flight = Some(tokio::spawn(async move {
            publish(&js, kind, &name, at, state).await;
        }));
    }

    /// Waits for the checkpoint in flight to be stored (at shutdown: a
    /// stopping actor leaves its last checkpoint whole on the bus).
    pub async fn finish(&mut self) {
        if let Some(task) = self.in_flight.take() {
            if let Err(e) = task.await {
                warn!("checkpoint publisher stopped: {e}");
            }
        }
    }
}

/// Joins the parts of checkpoints read off the bus in stream order: each
/// checkpoint comes out whole once all of its parts were pushed.
#[derive(Debug, Default)]
pub struct Assembler {
    /// Parts seen so far of checkpoints not yet complete, by kind, name
    /// and message time; each by part number.
    pending: BTreeMap<(String, String, u64), BTreeMap<u32, Checkpoint>>,
}

impl Assembler {
    /// Takes one part; returns the whole checkpoint when this part
    /// completes it (a single-part checkpoint at once). A part that
    /// disagrees with the others on the number of parts starts that
    /// checkpoint over.
    pub fn push(&mut self, c: Checkpoint) -> Option<Checkpoint> {
        if c.parts <= 1 {
            return Some(c);
        }
        if c.part >= c.parts {
            return None;
        }
        let key = (c.kind.clone(), c.name.clone(), c.ts_ns);
        let parts = c.parts;
        let seen = self.pending.entry(key.clone()).or_default();
        if seen.values().next().is_some_and(|p| p.parts != parts) {
            seen.clear();
        }
        seen.insert(c.part, c);
        if seen.len() < parts as usize {
            return None;
        }
        let mut seen = self.pending.remove(&key)?.into_values();
        let mut whole = seen.next()?;
        for p in seen {
            whole.state.extend_from_slice(&p.state);
        }
        whole.part = 0;
        whole.parts = 1;
        Some(whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_a_period_after_the_first_input_and_only_when_ready() {
        let s = 1_000_000_000u64;
        let mut sch = Schedule::every(60);
        assert!(
            !sch.take(100 * s, true),
            "the first input only starts the clock"
        );
        assert!(!sch.take(159 * s, true));
        assert!(
            !sch.take(160 * s, false),
            "not while the state cannot be taken"
        );
        assert!(sch.take(161 * s, true));
        assert!(!sch.take(200 * s, true));
        assert!(sch.take(221 * s, true));
        let mut never = Schedule::every(0);
        assert!((0..10).all(|i| !never.take(i * 100 * s, true)));
    }

    fn at(ts_ns: u64) -> At {
        At {
            ts_ns,
            seq: 7,
            stream_seq: 9,
        }
    }

    #[test]
    fn a_state_split_in_parts_joins_back_whole_and_only_when_complete() {
        let state: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let parts = split("shard", "lobby", at(5), &state, 3_000);
        assert_eq!(parts.len(), 4);
        assert!(parts.iter().all(|p| p.parts == 4 && p.state.len() <= 3_000));
        assert_eq!(
            parts.iter().map(|p| p.part).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        let mut asm = Assembler::default();
        // Parts of another checkpoint interleaved, one of them missing.
        let other = split("shard", "lobby", at(6), &state, 3_000);
        let mut done = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i != 2 {
                done.extend(asm.push(other[i].clone()));
            }
            done.extend(asm.push(p.clone()));
        }
        assert_eq!(done.len(), 1, "only the complete checkpoint comes out");
        let whole = &done[0];
        assert_eq!((whole.ts_ns, whole.seq, whole.stream_seq), (5, 7, 9));
        assert_eq!((whole.part, whole.parts), (0, 1));
        assert_eq!(whole.state, state);
    }

    #[test]
    fn parts_fill_max_payload_less_its_overhead() {
        assert_eq!(part_bytes(1024 * 1024), 1024 * 1024 - 4096);
        assert_eq!(part_bytes(1024), 512);
        assert_eq!(part_bytes(100), MIN_PART);
    }

    #[test]
    fn a_small_or_empty_state_is_one_part_that_passes_through() {
        for state in [vec![], vec![1u8, 2, 3]] {
            let parts = split("tracker", "door", at(1), &state, 1024);
            assert_eq!(parts.len(), 1);
            assert_eq!((parts[0].part, parts[0].parts), (0, 1));
            let whole = Assembler::default().push(parts[0].clone());
            assert_eq!(whole.map(|c| c.state), Some(state));
        }
    }

    #[test]
    fn parts_that_disagree_on_their_count_or_number_are_not_joined() {
        let state = vec![5u8; 100];
        let mut asm = Assembler::default();
        let three = split("shard", "s", at(2), &state, 40);
        let two = split("shard", "s", at(2), &state, 50);
        assert!(asm.push(three[0].clone()).is_none());
        assert!(asm.push(three[1].clone()).is_none());
        // A split of the same checkpoint into two parts starts it over.
        assert!(asm.push(two[0].clone()).is_none());
        assert_eq!(asm.push(two[1].clone()).map(|c| c.state), Some(state));
        let mut bad = three[0].clone();
        bad.part = 3;
        assert!(asm.push(bad).is_none(), "a part number beyond the count");
    }
}
