//! JetStream stream and consumer definitions of the contract, as plain data.
//!
//! The binary turns these into client configurations; keeping them here lets
//! any client (or an operator with the NATS CLI) create the same streams.

use std::time::Duration;

/// Stream names.
pub const FRAMES: &str = "NVR_FRAMES";
/// Stream of detections.
pub const DETECTIONS: &str = "NVR_DETECTIONS";
/// Stream of per-camera tracks.
pub const TRACKS: &str = "NVR_TRACKS";
/// Stream of spatial tracks.
pub const SPATIAL: &str = "NVR_SPATIAL";
/// Stream of events.
pub const EVENTS: &str = "NVR_EVENTS";
/// Stream of event snapshots (frame JPEGs), bounded by its own byte cap.
pub const SNAPSHOTS: &str = "NVR_SNAPSHOTS";

/// Stream of checkpoints of live trackers and shards.
pub const STATE: &str = "NVR_STATE";

/// The one durable pull consumer shared by every detector worker.
pub const DETECTORS_CONSUMER: &str = "detectors";

/// Retention policy of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Messages are kept until limits remove them.
    Limits,
    /// A message is removed once a consumer acknowledged it.
    WorkQueue,
}

/// Storage backend of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory: lost on server restart.
    Memory,
    /// On disk.
    File,
}

/// What happens when a stream is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Remove the oldest messages.
    Old,
    /// Refuse new messages (the publisher sees an error and counts a drop).
    New,
}

/// A stream definition.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// Stream name.
    pub name: &'static str,
    /// Subjects captured by the stream.
    pub subjects: Vec<String>,
    /// Retention policy.
    pub retention: Retention,
    /// Storage backend.
    pub storage: Storage,
    /// Maximum age of a message; zero means unlimited.
    pub max_age: Duration,
    /// Maximum bytes; -1 means unlimited.
    pub max_bytes: i64,
    /// Maximum messages per subject; -1 means unlimited.
    pub max_msgs_per_subject: i64,
    /// Behaviour when full.
    pub discard: Discard,
    /// Replicas in a cluster.
    pub replicas: usize,
    /// De-duplication window for `Nats-Msg-Id`.
    pub duplicate_window: Duration,
}

/// Retention settings that the configuration controls.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSettings {
    /// Frames older than this expire from `NVR_FRAMES`.
    pub frames_max_age: Duration,
    /// Per-camera cap on frames waiting in `NVR_FRAMES`.
    pub frames_per_camera: i64,
    /// Age limit of the file-backed streams.
    pub max_age: Duration,
    /// Byte limit of each file-backed stream (-1 unlimited).
    pub max_bytes: i64,
    /// Byte limit of `NVR_SNAPSHOTS` (-1 unlimited).
    pub snapshots_max_bytes: i64,
    /// Replicas of every stream.
    pub replicas: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            frames_max_age: Duration::from_secs(10),
            frames_per_camera: 50,
            snapshots_max_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: 1 << 30,
            replicas: 1,
        }
    }
}

/// Every stream of the contract, configured by `r`.
pub fn all_streams(r: &RetentionSettings) -> Vec<StreamSpec> {
    let limits = |name, subject: &str| StreamSpec {
        name,
        subjects: vec![subject.to_string()],
        retention: Retention::Limits,
        storage: Storage::File,
        max_age: r.max_age,
        max_bytes: r.max_bytes,
        max_msgs_per_subject: -1,
        discard: Discard::Old,
        replicas: r.replicas,
        duplicate_window: Duration::from_secs(120),
    };
    vec![
        StreamSpec {
            name: FRAMES,
            subjects: vec![crate::subjects::all::FRAMES.to_string()],
            retention: Retention::WorkQueue,
            storage: Storage::Memory,
            max_age: r.frames_max_age,
            max_bytes: -1,
            max_msgs_per_subject: r.frames_per_camera,
            discard: Discard::New,
            replicas: r.replicas,
            duplicate_window: r.frames_max_age.min(Duration::from_secs(120)),
        },
        limits(DETECTIONS, crate::subjects::all::DETECTIONS),
        limits(TRACKS, crate::subjects::all::TRACKS),
        limits(SPATIAL, crate::subjects::all::SPATIAL),
        limits(EVENTS, crate::subjects::all::EVENTS),
        StreamSpec {
            max_bytes: r.snapshots_max_bytes,
            max_msgs_per_subject: 1,
            ..limits(SNAPSHOTS, crate::subjects::all::SNAPSHOTS)
        },
        limits(STATE, crate::subjects::all::STATE),
    ]
}

/// The shared detectors consumer: durable, pull, explicit ack.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerSpec {
    /// Durable name.
    pub durable: &'static str,
    /// Stream it reads.
    pub stream: &'static str,
    /// How long a pulled message may stay unacked before redelivery.
    pub ack_wait: Duration,
    /// Deliveries before a message is given up (counted as an error).
    pub max_deliver: i64,
    /// Upper bound on messages pulled but not acked across all workers.
    pub max_ack_pending: i64,
}

/// The `detectors` consumer on `NVR_FRAMES`.
pub fn detectors_consumer() -> ConsumerSpec {
    ConsumerSpec {
        durable: DETECTORS_CONSUMER,
        stream: FRAMES,
        ack_wait: Duration::from_secs(10),
        max_deliver: 5,
        max_ack_pending: 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_stream_is_a_bounded_work_queue_in_memory() {
        let s = all_streams(&RetentionSettings::default());
        assert_eq!(s.len(), 7);
        assert_eq!(s[5].name, SNAPSHOTS);
        assert_eq!(s[5].max_msgs_per_subject, 1);
        let f = &s[0];
        assert_eq!(f.name, FRAMES);
        assert_eq!(f.retention, Retention::WorkQueue);
        assert_eq!(f.storage, Storage::Memory);
        assert!(f.max_msgs_per_subject > 0);
        assert!(f.max_age > Duration::ZERO);
        assert!(s[1..].iter().all(|s| s.storage == Storage::File));
    }
}
