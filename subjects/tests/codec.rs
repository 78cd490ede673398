//! Golden bytes pin the MessagePack encoding of every message type; a client
//! in another language produces exactly these bytes from subjects/README.md.
//! Property tests check that malformed input is an error, never a panic.

use nvr_subjects::*;
use proptest::prelude::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn frame() -> Frame {
    Frame {
        v: 1,
        camera: "cam1".into(),
        seq: 7,
        ts_ns: 1_700_000_000_000_000_000,
        width: 768,
        height: 576,
        encoding: FrameEncoding::Jpeg,
        data: vec![0xff, 0xd8, 0xff, 0xd9],
        data_width: 0,
        data_height: 0,
    }
}

fn detections() -> Detections {
    Detections {
        v: 1,
        camera: "cam1".into(),
        seq: 7,
        ts_ns: 1_700_000_000_000_000_000,
        width: 768,
        height: 576,
        model: "yolox_nano".into(),
        backend: "cpu".into(),
        worker: "w1".into(),
        latency_ms: 11.5,
        queue_ms: 2.0,
        objects: vec![DetectedObject {
            class_id: 0,
            label: "person".into(),
            score: 0.875,
            bbox: [0.25, 0.5, 0.375, 0.75],
            embedding: Some(vec![0.6, 0.8]),
        }],
    }
}

fn camera_tracks() -> CameraTracks {
    CameraTracks {
        v: 1,
        camera: "cam1".into(),
        seq: 7,
        ts_ns: 1_700_000_000_000_000_000,
        width: 768,
        height: 576,
        tracks: vec![Track {
            track_id: 3,
            label: "person".into(),
            score: 0.875,
            bbox: [0.25, 0.5, 0.375, 0.75],
            state: TrackState::Confirmed,
            hits: 4,
            age_ms: 800,
            embedding: None,
        }],
    }
}

fn spatial() -> SpatialTracks {
    SpatialTracks {
        v: 1,
        shard: "floor1".into(),
        ts_ns: 1_700_000_000_000_000_000,
        tracks: vec![SpatialTrack {
            global_id: 12,
            floor: "floor1".into(),
            x_m: 1.5,
            y_m: 2.25,
            vx: 0.5,
            vy: -0.25,
            label: "person".into(),
            confidence: 0.75,
            sources: vec![TrackSource {
                camera: "cam1".into(),
                track_id: 3,
            }],
            last_seen_ns: 1_700_000_000_000_000_000,
            state: SpatialState::Coasting,
            duplicate_of: None,
        }],
    }
}

fn handoff() -> Event {
    let mut e = Event::new(event_kind::HANDOFF, 1_700_000_000_000_000_000);
    e.shard = Some("floor1".into());
    e.global_id = Some(12);
    e.from_camera = Some("cam1".into());
    e.to_camera = Some("cam2".into());
    e.gap_ms = Some(1500);
    e
}

macro_rules! golden {
    ($name:ident, $value:expr, $ty:ty, $hex:expr) => {
        #[test]
        fn $name() {
            let value = $value;
            let bytes = encode(&value).unwrap();
            assert_eq!(hex(&bytes), $hex, "encoding of {} changed", stringify!($ty));
            let back: $ty = decode(&bytes).unwrap();
            assert_eq!(back, value);
        }
    };
}

golden!(frame_golden, frame(), Frame, GOLDEN_FRAME);
golden!(
    detections_golden,
    detections(),
    Detections,
    GOLDEN_DETECTIONS
);
golden!(
    camera_tracks_golden,
    camera_tracks(),
    CameraTracks,
    GOLDEN_TRACKS
);
golden!(spatial_golden, spatial(), SpatialTracks, GOLDEN_SPATIAL);
golden!(event_golden, handoff(), Event, GOLDEN_EVENT);

const GOLDEN_FRAME: &str = "88a17601a663616d657261a463616d31a373657107a574735f6e73cf17979cfe362a0000a57769647468cd0300a6686569676874cd0240a8656e636f64696e67a46a706567a464617461c404ffd8ffd9";
const GOLDEN_DETECTIONS: &str = "8ca17601a663616d657261a463616d31a373657107a574735f6e73cf17979cfe362a0000a57769647468cd0300a6686569676874cd0240a56d6f64656caa796f6c6f785f6e616e6fa76261636b656e64a3637075a6776f726b6572a27731aa6c6174656e63795f6d73ca41380000a871756575655f6d73ca40000000a76f626a656374739185a8636c6173735f696400a56c6162656ca6706572736f6ea573636f7265ca3f600000a462626f7894ca3e800000ca3f000000ca3ec00000ca3f400000a9656d62656464696e6792ca3f19999aca3f4ccccd";
const GOLDEN_TRACKS: &str = "87a17601a663616d657261a463616d31a373657107a574735f6e73cf17979cfe362a0000a57769647468cd0300a6686569676874cd0240a6747261636b739187a8747261636b5f696403a56c6162656ca6706572736f6ea573636f7265ca3f600000a462626f7894ca3e800000ca3f000000ca3ec00000ca3f400000a57374617465a9636f6e6669726d6564a46869747304a66167655f6d73cd0320";
const GOLDEN_SPATIAL: &str = "84a17601a57368617264a6666c6f6f7231a574735f6e73cf17979cfe362a0000a6747261636b73918ba9676c6f62616c5f69640ca5666c6f6f72a6666c6f6f7231a3785f6dca3fc00000a3795f6dca40100000a27678ca3f000000a27679cabe800000a56c6162656ca6706572736f6eaa636f6e666964656e6365ca3f400000a7736f75726365739182a663616d657261a463616d31a8747261636b5f696403ac6c6173745f7365656e5f6e73cf17979cfe362a0000a57374617465a8636f617374696e67";
const GOLDEN_EVENT: &str = "88a17601a46b696e64a768616e646f6666a574735f6e73cf17979cfe362a0000a57368617264a6666c6f6f7231a9676c6f62616c5f69640cab66726f6d5f63616d657261a463616d31a9746f5f63616d657261a463616d32a66761705f6d73cd05dc";

#[test]
fn fields_are_named_snake_case_maps() {
    // A generic msgpack reader sees a map keyed by field name.
    let bytes = encode(&detections()).unwrap();
    assert_eq!(bytes[0] & 0xf0, 0x80, "top level is a fixmap");
    let text = String::from_utf8_lossy(&bytes);
    for key in [
        "camera",
        "latency_ms",
        "queue_ms",
        "objects",
        "class_id",
        "bbox",
    ] {
        assert!(text.contains(key), "missing key {key}");
    }
}

#[test]
fn a_duplicate_names_the_identity_it_is_a_second_view_of() {
    let mut s = spatial();
    let plain = encode(&s).unwrap();
    assert!(
        !String::from_utf8_lossy(&plain).contains("duplicate_of"),
        "absent unless set"
    );
    s.tracks[0].state = SpatialState::Duplicate;
    s.tracks[0].duplicate_of = Some(4);
    let bytes = encode(&s).unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("duplicate_of"));
    let back: SpatialTracks = decode(&bytes).unwrap();
    assert_eq!(back.tracks[0].duplicate_of, Some(4));
    assert_eq!(back.tracks[0].state, SpatialState::Duplicate);
}

#[test]
fn wrong_schema_version_is_refused() {
    let mut d = detections();
    d.v = 2;
    let bytes = encode(&d).unwrap();
    let err = decode::<Detections>(&bytes).unwrap_err();
    assert!(err.to_string().contains("schema version 2"), "{err}");
}

#[test]
fn optional_fields_may_be_absent() {
    // An event written by a minimal client: only v, kind, ts_ns.
    #[derive(serde::Serialize)]
    struct Minimal {
        v: u32,
        kind: &'static str,
        ts_ns: u64,
    }
    let bytes = rmp_serde::to_vec_named(&Minimal {
        v: 1,
        kind: "track_started",
        ts_ns: 5,
    })
    .unwrap();
    let e: Event = decode(&bytes).unwrap();
    assert_eq!(e.kind, "track_started");
    assert_eq!(e.camera, None);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Frame>(&bytes);
        let _ = decode::<Detections>(&bytes);
        let _ = decode::<CameraTracks>(&bytes);
        let _ = decode::<SpatialTracks>(&bytes);
        let _ = decode::<Event>(&bytes);
    }

    #[test]
    fn truncated_messages_are_errors(cut in 0usize..200) {
        let bytes = encode(&detections()).unwrap();
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(decode::<Detections>(&bytes[..cut]).is_err());
    }

    #[test]
    fn detections_round_trip(seq in any::<u64>(), ts in any::<u64>(), score in 0f32..1.0, n in 0usize..5) {
        let mut d = detections();
        d.seq = seq;
        d.ts_ns = ts;
        d.objects = (0..n).map(|i| DetectedObject {
            class_id: i as u32, label: "person".into(), score,
            bbox: [0.1, 0.2, 0.3, 0.4], embedding: None }).collect();
        let back: Detections = decode(&encode(&d).unwrap()).unwrap();
        prop_assert_eq!(back, d);
    }
}
