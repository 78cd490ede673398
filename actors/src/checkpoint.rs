//! Checkpoints of live trackers and shards (`nvr.state.<kind>.<name>`): when
//! one is due, and how it goes on the bus. A replay starts a tracker from
//! the latest checkpoint before its window instead of from the start of the
//! stream (see `nvr replay`).

use async_nats::jetstream;
use nvr_subjects::{subjects, Checkpoint, SCHEMA_VERSION};
use tracing::warn;

use crate::bus;

/// Layout version of the `state` this build writes and reads.
pub const FORMAT: u32 = 1;

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

/// Publishes a checkpoint of `kind` for `name` at `at`; a failure is
/// logged, never fatal: a missing checkpoint only makes a later replay read
/// further back.
pub async fn publish(js: &jetstream::Context, kind: &str, name: &str, at: At, state: Vec<u8>) {
    let At {
        ts_ns,
        seq,
        stream_seq,
    } = at;
    let c = Checkpoint {
        v: SCHEMA_VERSION,
        kind: kind.to_string(),
        name: name.to_string(),
        ts_ns,
        seq,
        stream_seq,
        format: FORMAT,
        state,
    };
    let id = format!("{kind}-{name}-{ts_ns}");
    if let Err(e) = bus::publish_js(js, subjects::state(kind, name), &c, Some(&id)).await {
        warn!(name = %name, "checkpoint not stored: {e}");
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
}
