//! Per-camera multi-object tracker core: ByteTrack-style two-stage
//! association over a time-aware constant-velocity Kalman filter, with
//! OC-SORT observation-centric corrections (re-update after a gap and
//! direction consistency in the cost). Pure code, no I/O: the track actor
//! wraps it. Also holds the reorder buffer the actor uses when several
//! detector nodes publish out of order, a MOT-challenge reader/writer for
//! accuracy evaluation and synthetic benchmarks.

pub mod assign;
pub mod bench;
pub mod kalman;
pub mod mot;
mod params;
pub mod reorder;
mod tracker;

pub use reorder::{Late, ReorderBuffer};
pub use tracker::{AppearanceGates, Tracker, TrackerOutput, TrackerParams};
