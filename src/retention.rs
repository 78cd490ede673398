//! Retention sizing: what each camera adds to the stored per-camera streams
//! per day, and how long each stream's byte cap then keeps, from the
//! configuration alone (printed by `nvr config check`).
//!
//! Message sizes come from encoding representative messages with the wire
//! codec: [`OBJECTS_PER_FRAME`] people per frame, with the colour descriptor
//! when re-identification is on (the detector computes it only then).

use nvr_actors::detect::embed::COLOUR_DESCRIPTOR_LEN;
use nvr_subjects::{
    encode, CameraTracks, DetectedObject, Detections, Track, TrackState, SCHEMA_VERSION,
};

use crate::config::Config;

/// Objects per frame the estimate assumes (a busy scene).
pub const OBJECTS_PER_FRAME: usize = 10;
/// Bytes a stored message takes beyond its payload: subject, the `Nvr-*`
/// and message-id headers, and the store's own record header (approximate).
pub const PER_MESSAGE_OVERHEAD: usize = 200;
const MIB: f64 = 1024.0 * 1024.0;
const DAY_S: f64 = 86_400.0;

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
        objects: (0..objects)
            .map(|i| DetectedObject {
                class_id: 0,
                label: "person".into(),
                score: 0.8,
                bbox: [0.1 + i as f32 * 0.01, 0.2, 0.15 + i as f32 * 0.01, 0.6],
                embedding: (emb_len > 0).then(|| vec![0.123_456_7; emb_len]),
            })
            .collect(),
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
    let emb = if c.spatial.reid_enabled {
        COLOUR_DESCRIPTOR_LEN
    } else {
        0
    };
    let mut out = vec![format!(
        "# retention: estimated for {OBJECTS_PER_FRAME} people per frame{}",
        if emb > 0 {
            format!(" with a {emb}-value colour descriptor each (spatial.reid_enabled)")
        } else {
            String::new()
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
    out
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
