//! The spatial side of `nvr replay --shard`: one shard's matching cycles run
//! on message time, as the live spatial actor runs them. Camera tracks are
//! held in message-time order and each is given to the tracker just before
//! the first cycle at or after its time; a cycle runs once every camera of
//! the shard has reached it, so the cycles do not depend on how the
//! cameras' messages interleave in the stream. The live actor stops waiting
//! for a camera that sends nothing (wall clock); a replay has no wall clock
//! and stops waiting once [`HOLD`] messages are held: then only cameras
//! within [`STALL_AFTER`] of the newest message time hold the cycles back.
//! Memory stays bounded by [`HOLD`], not by the window.

use std::collections::BTreeMap;

use nvr_actors::guard::{self, Limits};
use nvr_actors::spatial::{CameraGeometry, SpatialParams, SpatialTracker};
use nvr_actors::spatial_actor::{first_cycle, CATCH_UP_CYCLES, STALL_AFTER};
use nvr_subjects::{CameraTracks, Checkpoint, Event, SpatialTracks};

/// Held camera tracks beyond which a camera that sends nothing (absent from
/// the window, or stopped) no longer holds the cycles back: 10,000 messages
/// are over 4 minutes of 8 cameras at 5 fps, far more lag than a live shard
/// waits for.
pub const HOLD: usize = 10_000;

/// What one cycle of a replayed shard published.
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    /// The cycle's tracks (`nvr.spatial.<shard>.tracks`).
    pub tracks: SpatialTracks,
    /// Its events (`nvr.events.<kind>.<shard>`).
    pub events: Vec<Event>,
}

/// One shard replayed from its cameras' tracks.
pub struct ShardReplay {
    /// The tracker, fresh at the start of the window.
    tracker: SpatialTracker,
    /// The shard's cameras.
    cameras: Vec<String>,
    /// Tuning, for the cycle interval and the embedding size.
    params: SpatialParams,
    /// Boundary limits of the live actor.
    limits: Limits,
    /// Newest message time per camera.
    camera_ts: BTreeMap<String, u64>,
    /// Held camera tracks, in message-time order.
    pending: BTreeMap<(u64, String, u64), CameraTracks>,
    /// Message time of the next cycle, once cycles started.
    next_step_ns: Option<u64>,
    /// Name, for a fresh tracker at a restart.
    shard: String,
    /// Cameras' geometry, for a fresh tracker at a restart.
    geometry: Vec<CameraGeometry>,
    /// Restarts of the live shard, `(last cycle before, first global id
    /// after)`, in time order; those before `next_restart` are behind.
    restarts: Vec<(u64, u64)>,
    /// Index of the next restart in `restarts`.
    next_restart: usize,
    /// Cycle time after which the live shard last restarted: older camera
    /// tracks went to the earlier incarnation.
    resumed_after: Option<u64>,
    /// Cycle time of the checkpoint it started from: camera tracks up to it
    /// were taken by the live shard before it.
    taken: Option<u64>,
    /// Camera tracks refused at the boundary.
    pub refused: u64,
    /// Camera tracks the tracker rejected.
    pub rejected: u64,
}

impl ShardReplay {
    /// A fresh shard; global ids start at 1. `restarts` are the live
    /// shard's restarts as `(last cycle before, first global id after)`.
    pub fn new(
        shard: &str,
        params: SpatialParams,
        cameras: Vec<CameraGeometry>,
        limits: Limits,
        mut restarts: Vec<(u64, u64)>,
    ) -> Self {
        restarts.sort_unstable();
        let ids = cameras.iter().map(|c| c.id.clone()).collect();
        ShardReplay {
            tracker: SpatialTracker::new(shard, params.clone(), cameras.clone()),
            shard: shard.to_string(),
            geometry: cameras,
            restarts,
            next_restart: 0,
            resumed_after: None,
            cameras: ids,
            params,
            limits,
            camera_ts: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_step_ns: None,
            taken: None,
            refused: 0,
            rejected: 0,
        }
    }

    /// The shard's name.
    pub fn name(&self) -> &str {
        &self.shard
    }

    /// The shard's cameras.
    pub fn cameras(&self) -> &[String] {
        &self.cameras
    }

    /// Whether `camera` belongs to this shard.
    pub fn has_camera(&self, camera: &str) -> bool {
        self.cameras.iter().any(|c| c == camera)
    }

    /// Starts from a checkpoint of the live shard instead of empty: the
    /// tracker as it was after its cycle at `c.ts_ns`, the next cycle one
    /// interval later; the restarts before it are behind, and camera tracks
    /// up to its time (which it had taken) are skipped.
    pub fn restore(&mut self, c: &Checkpoint) -> anyhow::Result<()> {
        self.tracker = SpatialTracker::restore(
            &self.shard,
            self.params.clone(),
            self.geometry.clone(),
            &c.state,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "checkpoint of shard {} at {} ns: {e} (replay with --cold)",
                c.name,
                c.ts_ns
            )
        })?;
        let interval = self.params.matching_interval_ms.max(1) * 1_000_000;
        self.next_step_ns = Some(c.ts_ns + interval);
        self.pending.clear();
        self.camera_ts.clear();
        self.next_restart = self.restarts.partition_point(|(after, _)| *after < c.ts_ns);
        self.taken = Some(c.ts_ns);
        Ok(())
    }

    /// Takes one camera's tracks; returns the cycles that became due.
    pub fn push(&mut self, tracks: &CameraTracks) -> Vec<Cycle> {
        if !self.has_camera(&tracks.camera) || self.taken.is_some_and(|t| tracks.ts_ns <= t) {
            return Vec::new();
        }
        let mut out = Vec::new();
        while let Some(&(after, next_id)) = self.restarts.get(self.next_restart) {
            if tracks.ts_ns <= after {
                break;
            }
            out.extend(self.restart(after, next_id));
        }
        if self.resumed_after.is_some_and(|a| tracks.ts_ns <= a) {
            self.refused += 1;
            return out;
        }
        let mut ct = tracks.clone();
        if guard::clean_tracks(&mut ct.tracks, self.params.embedding_dim, &self.limits).is_err() {
            self.refused += 1;
            return out;
        }
        let e = self.camera_ts.entry(ct.camera.clone()).or_insert(0);
        *e = (*e).max(ct.ts_ns);
        self.pending
            .insert((ct.ts_ns, ct.camera.clone(), ct.seq), ct);
        if let Some(mark) = self.watermark() {
            out.extend(self.run_cycles(mark, true));
        }
        out
    }

    /// The live shard published its last cycle at `after` and started again
    /// empty: the earlier incarnation's remaining cycles up to `after` (it
    /// ran them, idle ones included, before it stopped), then a fresh
    /// tracker that takes the held tracks newer than `after`.
    fn restart(&mut self, after: u64, next_id: u64) -> Vec<Cycle> {
        let out = if self.next_step_ns.is_some() {
            self.run_cycles(after, false)
        } else {
            Vec::new()
        };
        let mut tracker =
            SpatialTracker::new(&self.shard, self.params.clone(), self.geometry.clone());
        tracker.set_next_id(next_id);
        self.tracker = tracker;
        self.pending.retain(|k, _| k.0 > after);
        self.camera_ts.clear();
        for ct in self.pending.values() {
            let e = self.camera_ts.entry(ct.camera.clone()).or_insert(0);
            *e = (*e).max(ct.ts_ns);
        }
        self.next_step_ns = None;
        self.resumed_after = Some(after);
        self.next_restart += 1;
        out
    }

    /// The end of the window: the cycles up to the newest message, then what
    /// is still held goes to the tracker (as the live actor does when its
    /// input stops).
    pub fn finish(&mut self) -> Vec<Cycle> {
        let Some(newest) = self.camera_ts.values().copied().max() else {
            return Vec::new();
        };
        let out = self.run_cycles(newest, true);
        self.ingest_until(None);
        out
    }

    /// The message time every camera has reached; past [`HOLD`] held
    /// messages, every camera still sending.
    fn watermark(&self) -> Option<u64> {
        let newest = self.camera_ts.values().copied().max()?;
        if self.pending.len() <= HOLD {
            if self.camera_ts.len() < self.cameras.len() {
                return None;
            }
            return self.camera_ts.values().copied().min();
        }
        let stall = STALL_AFTER.as_nanos() as u64;
        self.camera_ts
            .values()
            .copied()
            .filter(|t| newest.saturating_sub(*t) <= stall)
            .min()
    }

    fn ingest_until(&mut self, until: Option<u64>) {
        while let Some((k, _)) = self.pending.first_key_value() {
            if until.is_some_and(|u| k.0 > u) {
                break;
            }
            if let Some((_, ct)) = self.pending.pop_first() {
                if self.tracker.ingest(&ct).is_err() {
                    self.rejected += 1;
                }
            }
        }
    }

    /// Runs every cycle up to `mark`; `catch_up` jumps over a long gap as
    /// the live actor does.
    fn run_cycles(&mut self, mark: u64, catch_up: bool) -> Vec<Cycle> {
        let interval = self.params.matching_interval_ms.max(1) * 1_000_000;
        let first_held = self.pending.first_key_value().map(|(k, _)| k.0);
        let next = *self
            .next_step_ns
            .get_or_insert_with(|| first_cycle(first_held, mark, interval));
        let mut next = if catch_up && mark.saturating_sub(next) > CATCH_UP_CYCLES * interval {
            (mark / interval) * interval
        } else {
            next
        };
        self.ingest_until(Some(next.saturating_sub(interval)));
        let mut out = Vec::new();
        while next <= mark {
            self.ingest_until(Some(next));
            let o = self.tracker.step(next);
            out.push(Cycle {
                tracks: o.tracks,
                events: o.events,
            });
            next += interval;
        }
        self.next_step_ns = Some(next);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvr_actors::spatial::Homography;
    use nvr_subjects::{Track, TrackState, SCHEMA_VERSION};

    fn camera(id: &str) -> CameraGeometry {
        CameraGeometry {
            id: id.into(),
            floor: "lobby".into(),
            homography: Homography::from_points(
                &[[0.0, 0.0], [640.0, 0.0], [640.0, 480.0], [0.0, 480.0]],
                &[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]],
            )
            .expect("homography"),
        }
    }

    fn tracks(camera: &str, i: u64) -> CameraTracks {
        CameraTracks {
            v: SCHEMA_VERSION,
            camera: camera.into(),
            seq: i + 1,
            ts_ns: 1_000_000_000_000 + i * 200_000_000,
            width: 640,
            height: 480,
            tracks: vec![Track {
                track_id: 1,
                label: "person".into(),
                score: 0.9,
                bbox: [0.4, 0.4, 0.5, 0.7],
                state: TrackState::Confirmed,
                hits: i as u32 + 1,
                age_ms: i * 200,
                embedding: None,
            }],
        }
    }

    fn two_cameras() -> ShardReplay {
        ShardReplay::new(
            "lobby",
            SpatialParams::default(),
            vec![camera("a"), camera("b")],
            Limits::default(),
            Vec::new(),
        )
    }

    fn replay(order: &[(&str, u64)]) -> Vec<Cycle> {
        let mut r = two_cameras();
        let mut out = Vec::new();
        for (c, i) in order {
            out.extend(r.push(&tracks(c, *i)));
        }
        out.extend(r.finish());
        out
    }

    #[test]
    fn cycles_do_not_depend_on_how_the_cameras_interleave() {
        // In step, and with camera b's messages arriving up to a second
        // (five messages) after camera a's of the same time.
        let mut in_step = Vec::new();
        let mut b_lags = Vec::new();
        for i in 0..30 {
            in_step.push(("a", i));
            in_step.push(("b", i));
            b_lags.push(("a", i));
            if i >= 5 {
                b_lags.push(("b", i - 5));
            }
        }
        b_lags.extend((25..30).map(|i| ("b", i)));
        let x = replay(&in_step);
        let y = replay(&b_lags);
        assert_eq!(x.len(), 30, "one cycle per 200 ms of input");
        assert_eq!(x, y);
        assert!(
            x.iter()
                .all(|c| c.tracks.tracks.len() == 1 && c.tracks.tracks[0].sources.len() == 2),
            "one person seen by both cameras in every cycle"
        );
    }

    #[test]
    fn a_camera_that_never_sends_holds_the_cycles_back_only_up_to_the_hold() {
        let only_a: Vec<_> = (0..HOLD as u64 + 10).map(|i| ("a", i)).collect();
        let mut r = two_cameras();
        let mut during = 0;
        for (k, (c, i)) in only_a.iter().enumerate() {
            let n = r.push(&tracks(c, *i)).len();
            if k < HOLD {
                during += n;
            }
        }
        assert_eq!(during, 0, "no cycle while camera b may still come");
        assert!(r.next_step_ns.is_some(), "cycles ran past the hold");
        assert!(r.pending.len() <= HOLD + 1, "held {}", r.pending.len());
    }
}
