//! Property-based fuzzing of every decoder and of the actors' message
//! handling (boundary checks, then the per-camera and spatial tracker cores),
//! seeded with a kept corpus of hostile messages (`tests/corpus/`).
//!
//! Cases per property: `NVR_FUZZ_CASES` (default 1000, so the suite stays
//! quick; raise it for a longer run). Every property asserts that nothing
//! panics and that the state stays usable: after any input, normal input is
//! still tracked.

use std::path::PathBuf;

use nvr_actors::detect::image::{decode_jpeg_limited, encode_jpeg, RgbImage};
use nvr_actors::guard::{self, Limits};
use nvr_actors::spatial::homography::Homography;
use nvr_actors::spatial::{CameraGeometry, SpatialParams, SpatialTracker};
use nvr_actors::track::{Tracker, TrackerParams};
use nvr_subjects::{
    decode, encode, CameraTracks, DetectedObject, Detections, Event, Frame, FrameEncoding,
    SpatialTracks, Track, TrackState, SCHEMA_VERSION,
};
use proptest::prelude::*;

const T0: u64 = 1_800_000_000_000_000_000;
const DT: u64 = 200_000_000;

fn cases() -> u32 {
    std::env::var("NVR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Every file of the corpus.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .filter_map(Result::ok)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("readable corpus file"),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 8, "the corpus is missing files");
    out
}

fn person(x: f32) -> DetectedObject {
    DetectedObject {
        class_id: 0,
        label: "person".into(),
        score: 0.9,
        bbox: [x, 0.3, x + 0.08, 0.8],
        embedding: Some(vec![0.2; 8]),
    }
}

fn detections(seq: u64, ts_ns: u64, objects: Vec<DetectedObject>) -> Detections {
    Detections {
        v: SCHEMA_VERSION,
        camera: "hall".into(),
        seq,
        ts_ns,
        width: 640,
        height: 480,
        model: "m".into(),
        backend: "cpu".into(),
        worker: "w".into(),
        latency_ms: 1.0,
        queue_ms: 1.0,
        objects,
    }
}

fn camera_tracks(ts_ns: u64, tracks: Vec<Track>) -> CameraTracks {
    CameraTracks {
        v: SCHEMA_VERSION,
        camera: "hall".into(),
        seq: 1,
        ts_ns,
        width: 640,
        height: 480,
        tracks,
    }
}

fn track(id: u64, bbox: [f32; 4], embedding: Option<Vec<f32>>) -> Track {
    Track {
        track_id: id,
        label: "person".into(),
        score: 0.9,
        bbox,
        state: TrackState::Confirmed,
        hits: 10,
        age_ms: 1000,
        embedding,
    }
}

/// Writes the corpus of hostile messages (run once with `--ignored` when
/// a new finding is added; the files are kept in the repository).
#[test]
#[ignore]
fn write_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut far = detections(
        11,
        T0 + 10 * 365 * 24 * 3_600_000_000_000,
        vec![person(0.1)],
    );
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "tracks_hour_ahead.msgpack",
            encode(&camera_tracks(T0 + 3_600_000_000_000, vec![])).unwrap(),
        ),
        ("detections_ten_years_ahead.msgpack", encode(&far).unwrap()),
        ("detections_seq_jump.msgpack", {
            far.ts_ns = T0;
            far.seq = 11_000_000;
            encode(&far).unwrap()
        }),
        ("detections_wildcard_camera.msgpack", {
            far.camera = ">".into();
            encode(&far).unwrap()
        }),
        (
            "detections_bad_boxes.msgpack",
            encode(&detections(
                12,
                T0,
                [
                    [-50.0, -50.0, -10.0, -10.0],
                    [f32::NAN, 0.1, 0.2, 0.3],
                    [0.1, 0.1, f32::INFINITY, 0.3],
                    [0.5, 0.5, 0.4, 0.6],
                ]
                .into_iter()
                .map(|b| DetectedObject {
                    bbox: b,
                    ..person(0.1)
                })
                .collect(),
            ))
            .unwrap(),
        ),
        (
            "tracks_huge_embedding.msgpack",
            encode(&camera_tracks(
                T0,
                vec![track(1, [0.1, 0.1, 0.2, 0.5], Some(vec![0.001; 5000]))],
            ))
            .unwrap(),
        ),
        ("frame_jpeg_bomb.msgpack", {
            let img = RgbImage::filled(16, 16, [120, 120, 120]);
            let mut jpeg = encode_jpeg(&img, 80).unwrap();
            let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
            jpeg[sof + 5..sof + 9].copy_from_slice(&[0x40, 0x00, 0x40, 0x00]);
            encode(&Frame {
                v: SCHEMA_VERSION,
                camera: "hall".into(),
                seq: 1,
                ts_ns: T0,
                width: 16_384,
                height: 16_384,
                encoding: FrameEncoding::Jpeg,
                data: jpeg,
                data_width: 0,
                data_height: 0,
            })
            .unwrap()
        }),
        ("frame_rgb_size_mismatch.msgpack", {
            encode(&Frame {
                v: SCHEMA_VERSION,
                camera: "hall".into(),
                seq: 2,
                ts_ns: T0,
                width: 100_000,
                height: 100_000,
                encoding: FrameEncoding::Rgb24,
                data: vec![1, 2, 3],
                data_width: 0,
                data_height: 0,
            })
            .unwrap()
        }),
        ("not_msgpack.bin", b"\xc1\xff\x00garbage".to_vec()),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Every decoder of the contract on `bytes`: an error or a value, never a panic.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<Frame>(bytes);
    let _ = decode::<Detections>(bytes);
    let _ = decode::<CameraTracks>(bytes);
    let _ = decode::<SpatialTracks>(bytes);
    let _ = decode::<Event>(bytes);
    if let Ok(f) = decode::<Frame>(bytes) {
        let _ = decode_jpeg_limited(&f.data, Limits::default().max_image_pixels);
    }
}

/// What a track actor does with a message: boundary checks, then the tracker.
fn handle_detections(tracker: &mut Tracker, now: u64, limits: &Limits, mut d: Detections) {
    if guard::check_camera("nvr.detections.hall", &d.camera).is_err()
        || guard::check_time(d.ts_ns, now, limits).is_err()
    {
        return;
    }
    if guard::clean_detections(&mut d.objects, limits).is_ok() {
        tracker.update(d.ts_ns, &d.objects);
    }
}

/// What a spatial actor does with a message: boundary checks, then the core.
fn handle_tracks(st: &mut SpatialTracker, now: u64, limits: &Limits, mut t: CameraTracks) {
    if guard::check_camera("nvr.tracks.hall", &t.camera).is_err()
        || guard::check_time(t.ts_ns, now, limits).is_err()
    {
        return;
    }
    if guard::clean_tracks(&mut t.tracks, None, limits).is_ok() {
        let _ = st.ingest(&t);
    }
}

fn shard() -> SpatialTracker {
    let h = Homography::from_matrix([
        [10.0 / 640.0, 0.0, 0.0],
        [0.0, 10.0 / 480.0, 0.0],
        [0.0, 0.0, 1.0],
    ])
    .unwrap();
    SpatialTracker::new(
        "s",
        SpatialParams::default(),
        vec![CameraGeometry {
            id: "hall".into(),
            floor: "f".into(),
            homography: h,
        }],
    )
}

/// After any input, a person walking normally is still tracked.
fn still_tracks(tracker: &mut Tracker, start_ts: u64) {
    let mut confirmed = false;
    for i in 0..10u64 {
        let out = tracker.update(start_ts + i * DT, &[person(0.1 + 0.01 * i as f32)]);
        confirmed |= out.tracks.iter().any(|t| t.state == TrackState::Confirmed);
    }
    assert!(confirmed, "a normal walker is no longer tracked");
}

#[test]
fn corpus_is_refused_or_handled_without_harm() {
    let limits = Limits::default();
    let mut tracker = Tracker::new(TrackerParams::default());
    let mut st = shard();
    for (name, bytes) in corpus() {
        decode_all(&bytes);
        if let Ok(d) = decode::<Detections>(&bytes) {
            handle_detections(&mut tracker, T0, &limits, d);
        }
        if let Ok(t) = decode::<CameraTracks>(&bytes) {
            handle_tracks(&mut st, T0, &limits, t);
        }
        if let Ok(f) = decode::<Frame>(&bytes) {
            let declared = guard::check_pixels(f.width, f.height, &limits);
            let decoded = decode_jpeg_limited(&f.data, limits.max_image_pixels);
            assert!(
                declared.is_err() || decoded.is_err(),
                "{name}: a hostile frame was accepted"
            );
        }
    }
    still_tracks(&mut tracker, T0 + DT);
    let out = st.step(T0 + DT);
    assert!(out.tracks.ts_ns == T0 + DT, "the shard's clock stayed put");
}

/// Random bytes, and random mutations of corpus files, through every decoder.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus();
    (
        0..seeds.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..16),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(move |(i, flips, truncate, random)| {
            if i % 5 == 4 {
                return random;
            }
            let mut b = seeds[i].1.clone();
            for (at, v) in flips {
                if !b.is_empty() {
                    let n = b.len();
                    b[at % n] = v;
                }
            }
            if truncate && b.len() > 1 {
                b.truncate(b.len() / 2);
            }
            b
        })
}

fn any_box() -> impl Strategy<Value = [f32; 4]> {
    prop_oneof![
        proptest::array::uniform4(-0.5f32..1.5),
        proptest::array::uniform4(proptest::num::f32::ANY),
    ]
}

fn any_detection() -> impl Strategy<Value = DetectedObject> {
    (
        any_box(),
        prop_oneof![0.0f32..1.0, proptest::num::f32::ANY],
        proptest::option::of(proptest::collection::vec(proptest::num::f32::ANY, 0..40)),
    )
        .prop_map(|(bbox, score, embedding)| DetectedObject {
            class_id: 0,
            label: "person".into(),
            score,
            bbox,
            embedding,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn decoders_never_panic(bytes in mutated()) {
        decode_all(&bytes);
    }

    /// Any sequence of detections messages (wild seqs, times, boxes, scores
    /// and embeddings) leaves the per-camera tracker working.
    #[test]
    fn tracker_survives_any_detections(
        msgs in proptest::collection::vec(
            (any::<u64>(), -3_600_000_000_000i64..3_600_000_000_000, proptest::collection::vec(any_detection(), 0..12)),
            1..30,
        )
    ) {
        let limits = Limits::default();
        let mut tracker = Tracker::new(TrackerParams::default());
        for (seq, offset, objects) in msgs {
            let ts = (T0 as i64 + offset) as u64;
            handle_detections(&mut tracker, T0, &limits, detections(seq, ts, objects));
        }
        still_tracks(&mut tracker, T0 + limits.max_ahead_ns + DT);
    }

    /// Any sequence of camera-tracks messages leaves the spatial shard stepping.
    #[test]
    fn spatial_tracker_survives_any_camera_tracks(
        msgs in proptest::collection::vec(
            (-3_600_000_000_000i64..3_600_000_000_000, proptest::collection::vec(
                (0u64..20, any_box(), proptest::option::of(proptest::collection::vec(-1.0f32..1.0, 1..48))),
                0..10,
            )),
            1..30,
        )
    ) {
        let limits = Limits::default();
        let mut st = shard();
        for (offset, tracks) in msgs {
            let ts = (T0 as i64 + offset) as u64;
            let tracks = tracks.into_iter().map(|(id, b, e)| track(id, b, e)).collect();
            handle_tracks(&mut st, T0, &limits, camera_tracks(ts, tracks));
        }
        let later = T0 + limits.max_ahead_ns + DT;
        let out = st.step(later);
        prop_assert_eq!(out.tracks.ts_ns, later);
    }
}
