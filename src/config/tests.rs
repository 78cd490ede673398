//! Loading and validation of configurations.

use super::load::*;
use super::*;

fn load_str(
    yaml: &str,
    env: &[(&str, &str)],
    flags: &[(&str, Value)],
) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, yaml).unwrap();
    let mut ov = Overrides {
        config_path: Some(p),
        ..Default::default()
    };
    for (k, v) in flags {
        ov.set(k, v.clone(), &format!("--{k}"));
    }
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load(&ov, &|k| env.get(k).cloned())
}

#[test]
fn precedence_flag_env_file_default() {
    let y = "detection:\n  backend: cuda\n  device_id: 1\n  min_confidence: 0.3\n";
    let l = load_str(
        y,
        &[
            ("DETECTION_DEVICE_ID", "2"),
            ("DETECTION_MIN_CONFIDENCE", "0.4"),
        ],
        &[("detection.min_confidence", Value::from(0.6))],
    )
    .unwrap();
    assert_eq!(l.config.detection.backend, "cuda");
    assert_eq!(l.config.detection.device_id, 2);
    assert!((l.config.detection.min_confidence - 0.6).abs() < 1e-6);
    assert_eq!(l.config.detection.default_fps, 5.0);
    assert!(matches!(l.sources["detection.backend"], Source::File(_)));
    assert_eq!(
        l.sources["detection.device_id"],
        Source::Env("DETECTION_DEVICE_ID".into())
    );
    let lines = describe(&l);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("detection.default_fps = 5.0  # default")),
        "{lines:?}"
    );
}

#[test]
fn seed_defaults() {
    let l = load_str("", &[], &[]).unwrap();
    let c = l.config;
    assert_eq!(c.detection.address, "localhost:12021");
    assert!(c.detection.embedded);
    assert_eq!(c.detection.backend, "cpu");
    assert_eq!(c.detection.default_fps, 5.0);
    assert_eq!(c.detection.min_confidence, 0.5);
    assert_eq!(c.detection.models_path, "/data/models");
    assert_eq!(c.spatial.address, "localhost:12020");
    assert!(c.spatial.reid_enabled);
    assert_eq!(c.spatial.max_gap_seconds, 30.0);
    assert_eq!(c.spatial.track_ttl_seconds, 300.0);
    assert_eq!(c.spatial.max_tracks, 10000);
    assert_eq!(c.api.address, "127.0.0.1:12000");
}

#[test]
fn env_false_and_lists() {
    let l = load_str(
        "",
        &[
            ("DETECTION_EMBEDDED", "false"),
            ("SPATIAL_CAMERAS", "cam1, cam2"),
            ("SPATIAL_SHARD", "floor1"),
        ],
        &[],
    )
    .unwrap();
    assert!(!l.config.detection.embedded);
    assert_eq!(l.config.spatial.cameras, vec!["cam1", "cam2"]);
    assert_eq!(l.config.spatial.shard, "floor1");
}

#[test]
fn env_values_take_the_type_of_their_field() {
    let l = load_str(
        "",
        &[
            ("SPATIAL_SHARD", "1"),
            ("DETECTION_MODEL", "2024"),
            ("SPATIAL_EMBEDDED", "0"),
            ("DETECTION_WORKERS", "3"),
            ("DETECTION_MIN_CONFIDENCE", "0.25"),
            ("SPATIAL_CAMERAS", "7"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(l.config.spatial.shard, "1");
    assert_eq!(l.config.detection.model, "2024");
    assert!(!l.config.spatial.embedded);
    assert_eq!(l.config.detection.workers, 3);
    assert_eq!(l.config.detection.min_confidence, 0.25);
    assert_eq!(l.config.spatial.cameras, vec!["7"]);
    let l = load_str("", &[("SPATIAL_SHARD", "on")], &[]).unwrap();
    assert_eq!(l.config.spatial.shard, "on");
    let e = load_str("", &[("DETECTION_WORKERS", "many")], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("detection.workers") && e.contains("DETECTION_WORKERS"),
        "{e}"
    );
}

#[test]
fn nats_url_env_means_external() {
    let l = load_str("", &[("NATS_URL", "nats://10.0.0.1:4222")], &[]).unwrap();
    assert!(!l.config.nats.embedded);
}

#[test]
fn errors_are_one_line_and_name_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "detection:\n  bogus: 1\n",
            "detection.bogus = 1: unknown field `bogus`",
        ),
        ("detection:\n  input_size: big\n", "detection.input_size"),
        (
            "detection:\n  input_size: 333\n",
            "detection.input_size = 333",
        ),
        ("nats:\n  url: \"http://x:4222\"\n", "nats.url"),
        ("nats:\n  url: \"nats://host:99999\"\n", "nats.url"),
        (
            "detection:\n  backend: tpu\n",
            "detection.backend = \"tpu\"",
        ),
        (
            "cameras:\n  - id: a\n    url: \"ftp://x/y\"\n",
            "cameras[0].url",
        ),
        (
            "cameras:\n  - id: a\n    url: /nonexistent/file.mp4\n",
            "cameras[0].url",
        ),
        (
            "cameras:\n  - id: a\n    url: \"rtmp://host/live\"\n",
            "unsupported scheme \"rtmp\"",
        ),
        (
            "cameras:\n  - id: a\n    url: \"rtsp:///x\"\n",
            "has no host",
        ),
        ("cameras:\n  - id: \"a.b\"\n", "cameras[0].id"),
        ("cameras:\n  - id: a\n  - id: a\n", "duplicate camera id"),
        ("cameras:\n  - id: a\n    floor: nowhere\n", "no such floor"),
        (
            "cameras:\n  - id: a\n    detection:\n      white_point: [120, 0, 90]\n",
            "cameras[0].detection.white_point = [120.0, 0.0, 90.0] (camera a)",
        ),
        (
            "cameras:\n  - id: a\n    detection:\n      white_point: [120, 300, 90]\n",
            "from 1 to 255",
        ),
        (
            "cameras:\n  - id: a\n    detection:\n      white_point: [120, 90]\n",
            "cameras[0].detection.white_point",
        ),
        ("foo: 1\n", "unknown field `foo`"),
        (
            "tracking:\n  embedding_momentum: 1.0\n",
            "tracking.embedding_momentum = 1",
        ),
        (
            "tracking:\n  appearance_momentum: -0.1\n",
            "tracking.appearance_momentum = -0.1",
        ),
        ("detection: [1, 2\n", "c.yaml"),
        (
            "detection:\n  reid_weight: 0\n",
            "detection.reid_weight = 0: must be in (0, 1]",
        ),
    ];
    for (yaml, want) in cases {
        let e = load_str(yaml, &[], &[]).unwrap_err().to_string();
        assert!(e.contains(want), "{yaml:?}: {e:?} lacks {want:?}");
        assert!(!e.contains('\n'), "multi-line error: {e:?}");
    }
    let e = load_str("", &[("DETECTION_DEVICE_ID", "gpu0")], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("detection.device_id") && e.contains("DETECTION_DEVICE_ID"),
        "{e}"
    );
}

#[test]
fn reid_model_is_a_stem_in_models_path_or_a_path() {
    let mut d = DetectionConfig {
        models_path: "/m".into(),
        ..DetectionConfig::default()
    };
    assert_eq!(d.reid_model_path(), None);
    d.reid_model = "mobilenetv2_reid".into();
    assert_eq!(
        d.reid_model_path(),
        Some(PathBuf::from("/m/mobilenetv2_reid.onnx"))
    );
    d.reid_model = "/opt/osnet.onnx".into();
    assert_eq!(d.reid_model_path(), Some(PathBuf::from("/opt/osnet.onnx")));
    let l = load_str("", &[("DETECTION_REID_MODEL", "x")], &[]).unwrap();
    assert_eq!(l.config.detection.reid_model, "x");
}

#[test]
fn a_camera_white_point_is_read() {
    let y =
        "cameras:\n  - id: a\n    detection:\n      white_point: [131.5, 120, 98.25]\n  - id: b\n";
    let l = load_str(y, &[], &[]).unwrap();
    assert_eq!(
        l.config.cameras[0].detection.white_point,
        Some([131.5, 120.0, 98.25])
    );
    assert_eq!(l.config.cameras[1].detection.white_point, None);
}

#[test]
fn degenerate_calibration_names_the_camera() {
    let y = "floors:\n  - id: f\ncameras:\n  - id: door\n    floor: f\n    calibration:\n      points:\n        - {image: [0, 0], floor: [0, 0]}\n        - {image: [1, 1], floor: [1, 1]}\n        - {image: [2, 2], floor: [2, 2]}\n        - {image: [3, 3], floor: [3, 3]}\n";
    let e = load_str(y, &[], &[]).unwrap_err().to_string();
    assert!(e.contains("camera door"), "{e}");
}

#[test]
fn missing_explicit_file_is_an_error() {
    let ov = Overrides {
        config_path: Some("/nonexistent/c.yaml".into()),
        ..Default::default()
    };
    let e = load(&ov, &|_| None).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/c.yaml"), "{e}");
}
