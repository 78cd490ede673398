//! Retention sizing: what each camera adds to the stored per-camera streams
//! per day, and how long each stream's byte cap then keeps, from the
//! configuration alone (printed by `nvr config check`).
//!
//! Message sizes come from encoding representative messages with the wire
//! codec: [`OBJECTS_PER_FRAME`] people per frame, with the colour descriptor
//! when re-identification is on (the detector computes it only then), plus
//! the appearance model's embedding when one is configured.

use nvr_actors::detect::embed::COLOUR_DESCRIPTOR_LEN;
use nvr_actors::spatial::bench::bench_cycle;
use nvr_actors::track::{Tracker, TrackerParams};
use nvr_subjects::{
    encode, CameraTracks, DetectedObject, Detections, Track, TrackState, SCHEMA_VERSION,
};

use crate::config::Config;

/// Length of the shipped appearance model's embedding (`mobilenetv2_reid`,
/// see `scripts/export_reid.py`), assumed for any `detection.reid_model`.
pub const REID_MODEL_LEN: usize = 320;
/// Objects per frame the estimate assumes (a busy scene).
pub const OBJECTS_PER_FRAME: usize = 10;
/// Bytes a stored message takes beyond its payload: subject, the `Nvr-*`
/// and message-id headers, and the store's own record header (approximate).
pub const PER_MESSAGE_OVERHEAD: usize = 200;
const MIB: f64 = 1024.0 * 1024.0;
const DAY_S: f64 = 86_400.0;

/// `objects` people side by side, each with an embedding of `emb_len`
/// values (none for 0), walking right a little with each `frame`.
fn people(objects: usize, emb_len: usize, frame: u64) -> Vec<DetectedObject> {
    (0..objects)
        .map(|i| {
            let x = 0.05 + i as f32 * 0.09 + frame as f32 * 0.002;
            DetectedObject {
                class_id: 0,
                label: "person".into(),
                score: 0.9,
                bbox: [x, 0.2, x + 0.05, 0.6],
                embedding: (emb_len > 0).then(|| vec![0.123_456_7; emb_len]),
            }
        })
        .collect()
}

/// Stored bytes of one `Detections` message for `camera` with `objects`
/// people, each with an embedding of `emb_len` values (none for 0).
pub fn detections_bytes(camera: &str, objects: usize, emb_len: usize) -> usize {
    let msg = Detections {
        v: SCHEMA_VERSION,
        camera: camera.to_string(),
        seq: 1_000_000,
        ts_ns: 1_800_000_000_000_000_000,
        width: 1920,
        height: 1080,
        model: "yolox_nano".into(),
        backend: "cpu".into(),
        worker: "detector-host-0".into(),
        latency_ms: 12.5,
        queue_ms: 3.25,
        objects: people(objects, emb_len, 0),
    };
    encode(&msg).map_or(0, |b| b.len()) + PER_MESSAGE_OVERHEAD
}

/// Stored bytes of one `CameraTracks` message with `objects` confirmed tracks.
pub fn tracks_bytes(camera: &str, objects: usize, emb_len: usize) -> usize {
    let msg = CameraTracks {
        v: SCHEMA_VERSION,
        camera: camera.to_string(),
        seq: 1_000_000,
        ts_ns: 1_800_000_000_000_000_000,
        width: 1920,
        height: 1080,
        tracks: (0..objects)
            .map(|i| Track {
                track_id: 100_000 + i as u64,
                label: "person".into(),
                score: 0.8,
                bbox: [0.1 + i as f32 * 0.01, 0.2, 0.15 + i as f32 * 0.01, 0.6],
                state: TrackState::Confirmed,
                hits: 1000,
                age_ms: 60_000,
                embedding: (emb_len > 0).then(|| vec![0.123_456_7; emb_len]),
            })
            .collect(),
    };
    encode(&msg).map_or(0, |b| b.len()) + PER_MESSAGE_OVERHEAD
}

/// Stored bytes of one checkpoint of a camera's tracker following
/// `objects` people, each with an embedding of `emb_len` values: measured by
/// running a real tracker over a few frames of them.
pub fn tracker_checkpoint_bytes(objects: usize, emb_len: usize) -> usize {
    let mut t = Tracker::new(TrackerParams::default());
    for frame in 0..10u64 {
        let dets = people(objects, emb_len, frame);
        t.update(1_800_000_000_000_000_000 + frame * 200_000_000, &dets);
    }
    t.checkpoint().map_or(0, |b| b.len()) + PER_MESSAGE_OVERHEAD
}

/// Bytes one identity adds to a spatial shard's checkpoint (with the colour
/// descriptor): measured on the spatial benchmark's scene of 200 people.
pub fn shard_identity_bytes() -> usize {
    let row = bench_cycle(200, 1, false);
    row.checkpoint_bytes / row.active_tracks.max(1)
}

/// How long a stream receiving `bytes_per_day` keeps messages: the age
/// limit, or less when the byte cap (`max_bytes_mb`, negative = none) fills
/// first. Hours.
pub fn kept_hours(bytes_per_day: f64, max_age_hours: f64, max_bytes_mb: i64) -> f64 {
    if max_bytes_mb < 0 || bytes_per_day <= 0.0 {
        return max_age_hours;
    }
    let by_bytes = max_bytes_mb as f64 * MIB / bytes_per_day * 24.0;
    by_bytes.min(max_age_hours)
}

/// The lines `nvr config check` prints: per camera and per stream.
pub fn lines(c: &Config) -> Vec<String> {
    let model = c.detection.reid_model_path().is_some();
    let emb = match (c.spatial.reid_enabled, model) {
        (false, _) => 0,
        (true, false) => COLOUR_DESCRIPTOR_LEN,
        (true, true) => COLOUR_DESCRIPTOR_LEN + REID_MODEL_LEN,
    };
    let mut out = vec![format!(
        "# retention: estimated for {OBJECTS_PER_FRAME} people per frame{}",
        match (emb, model) {
            (0, _) => String::new(),
            (_, false) => format!(" with a {emb}-value colour descriptor each (spatial.reid_enabled)"),
            (_, true) => format!(
                " with a {emb}-value embedding each (colour descriptor + {REID_MODEL_LEN} from detection.reid_model, as the shipped model gives)"
            ),
        }
    )];
    let (mut det_day, mut trk_day) = (0.0, 0.0);
    for cam in &c.cameras {
        let fps = cam.detection.fps.unwrap_or(c.detection.default_fps);
        let per_day = fps * DAY_S;
        let d = detections_bytes(&cam.id, OBJECTS_PER_FRAME, emb) as f64 * per_day;
        let t = tracks_bytes(&cam.id, OBJECTS_PER_FRAME, emb) as f64 * per_day;
        det_day += d;
        trk_day += t;
        out.push(format!(
            "# camera {} at {fps} fps: detections {:.0} MiB/day, tracks {:.0} MiB/day",
            cam.id,
            d / MIB,
            t / MIB
        ));
    }
    let r = &c.nats.retention;
    for (stream, day) in [
        (nvr_subjects::streams::DETECTIONS, det_day),
        (nvr_subjects::streams::TRACKS, trk_day),
    ] {
        let kept = kept_hours(day, r.max_age_hours, r.max_bytes_mb);
        let mut line = format!(
            "# {stream}: {:.0} MiB/day from {} camera(s); keeps {kept:.1} h",
            day / MIB,
            c.cameras.len()
        );
        if kept + 1e-9 < r.max_age_hours {
            let need_mb = (day / MIB * r.max_age_hours / 24.0).ceil();
            line.push_str(&format!(
                " (nats.retention.max_bytes_mb {} fills before max_age_hours {}; max_bytes_mb {need_mb:.0} keeps {} h)",
                r.max_bytes_mb, r.max_age_hours, r.max_age_hours
            ));
        }
        out.push(line);
    }
    out.push(state_line(c, emb));
    out
}

/// Identities a shard is assumed to hold for the `NVR_STATE` estimate
/// (everyone seen within `spatial.track_ttl_seconds`).
pub const IDENTITIES_PER_SHARD: usize = 100;

/// The `NVR_STATE` line: checkpoint volume and how long it is kept.
fn state_line(c: &Config, emb: usize) -> String {
    let every = c.tracking.checkpoint_seconds;
    let stream = nvr_subjects::streams::STATE;
    if every == 0 {
        return format!("# {stream}: no checkpoints (tracking.checkpoint_seconds 0)");
    }
    let per_day = DAY_S / every as f64;
    let trackers =
        tracker_checkpoint_bytes(OBJECTS_PER_FRAME, emb) as f64 * per_day * c.cameras.len() as f64;
    let identity = shard_identity_bytes();
    let shards = c.spatial.shards.len().max(1);
    let shard_day = (identity * IDENTITIES_PER_SHARD) as f64 * per_day;
    let day = trackers + shard_day * shards as f64;
    let r = &c.nats.retention;
    let kept = kept_hours(day, r.max_age_hours, r.max_bytes_mb);
    format!(
        "# {stream}: a checkpoint every {every} s (tracking.checkpoint_seconds): trackers {:.0} MiB/day, \
         each shard about {:.1} KiB per identity it holds ({:.0} MiB/day at {IDENTITIES_PER_SHARD} identities); \
         keeps {kept:.1} h at {IDENTITIES_PER_SHARD} identities per shard (a replay window older than that \
         starts from a restart or the start of the stream)",
        trackers / MIB,
        identity as f64 / 1024.0,
        shard_day / MIB
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_grow_with_objects_and_embeddings() {
        let empty = detections_bytes("c", 0, 0);
        let ten = detections_bytes("c", 10, 0);
        let ten_emb = detections_bytes("c", 10, COLOUR_DESCRIPTOR_LEN);
        assert!(empty > PER_MESSAGE_OVERHEAD && ten > empty && ten_emb > ten);
        // Each embedding value is a MessagePack f32 (5 bytes).
        assert!(ten_emb - ten >= 10 * COLOUR_DESCRIPTOR_LEN * 5);
        assert!(tracks_bytes("c", 10, 0) > tracks_bytes("c", 0, 0));
    }

    #[test]
    fn checkpoint_volume_grows_with_tracks_and_falls_with_the_period() {
        let one = tracker_checkpoint_bytes(1, COLOUR_DESCRIPTOR_LEN);
        let ten = tracker_checkpoint_bytes(10, COLOUR_DESCRIPTOR_LEN);
        assert!(ten > one && one > PER_MESSAGE_OVERHEAD, "{one} {ten}");
        // An identity holds at least its appearance (40 f32) and a view of it.
        let identity = shard_identity_bytes();
        assert!(identity > COLOUR_DESCRIPTOR_LEN * 5, "{identity}");
        let mut c = Config::default();
        let state = |c: &Config| {
            lines(c)
                .into_iter()
                .find(|s| s.contains("NVR_STATE"))
                .expect("state line")
        };
        let mib_day = |line: &str| -> f64 {
            line.split("trackers ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|n| n.parse().ok())
                .expect("trackers MiB/day")
        };
        c.cameras = (0..50)
            .map(|i| {
                serde_json::from_value(serde_json::json!({"id": format!("cam{i}")}))
                    .expect("camera")
            })
            .collect();
        let every_minute = state(&c);
        assert!(every_minute.contains("every 60 s"), "{every_minute}");
        c.tracking.checkpoint_seconds = 600;
        let every_ten = state(&c);
        assert!(
            mib_day(&every_ten) < mib_day(&every_minute),
            "{every_ten} / {every_minute}"
        );
        c.tracking.checkpoint_seconds = 0;
        assert!(state(&c).contains("no checkpoints"));
    }

    #[test]
    fn the_byte_cap_decides_when_it_fills_first() {
        // 2 GiB a day into a 1 GiB cap: half a day.
        let day = 2.0 * 1024.0 * MIB;
        assert!((kept_hours(day, 24.0, 1024) - 12.0).abs() < 1e-9);
        assert_eq!(kept_hours(day, 6.0, 1024), 6.0);
        assert_eq!(kept_hours(day, 24.0, -1), 24.0);
        assert_eq!(kept_hours(0.0, 24.0, 1024), 24.0);
    }

    #[test]
    fn config_check_lines_name_every_camera_and_the_cap_that_decides() {
        let mut c = Config {
            cameras: (0..8)
                .map(|i| {
                    serde_json::from_value(
                        serde_json::json!({"id": format!("cam{i}"), "detection": {"fps": 5.0}}),
                    )
                    .expect("camera")
                })
                .collect(),
            ..Default::default()
        };
        let l = lines(&c);
        for i in 0..8 {
            assert!(
                l.iter()
                    .any(|s| s.contains(&format!("camera cam{i} at 5 fps"))),
                "{l:?}"
            );
        }
        // 8 cameras of 10 people at 5 fps overflow the 1 GiB default in a day.
        let det = l
            .iter()
            .find(|s| s.contains("NVR_DETECTIONS"))
            .expect("detections line");
        assert!(det.contains("fills before max_age_hours 24"), "{det}");
        c.nats.retention.max_bytes_mb = -1;
        let det = lines(&c)
            .into_iter()
            .find(|s| s.contains("NVR_DETECTIONS"))
            .expect("line");
        assert!(
            det.contains("keeps 24.0 h") && !det.contains("fills"),
            "{det}"
        );
    }
}
