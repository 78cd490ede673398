//! Foundation: configuration errors, embedded and external NATS, stream
//! set-up, the health API, graceful shutdown and `nvr tail`.

mod common;

use std::time::Duration;

use common::*;
use nvr_subjects::{streams, subjects, DetectedObject, Detections, SCHEMA_VERSION};

fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(after) = stat.rsplit_once(')').map(|x| x.1) else {
            continue;
        };
        let ppid: u32 = after
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if ppid == pid {
            let comm = stat
                .split('(')
                .nth(1)
                .and_then(|s| s.split(')').next())
                .unwrap_or("")
                .to_string();
            out.push((p, comm));
        }
    }
    out
}

#[test]
fn bad_config_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("detection:\n  turbo: true\n", "unknown field `turbo`"),
        ("detection:\n  input_size: large\n", "detection.input_size"),
        ("nats:\n  url: \"ftp://host:4222\"\n", "nats.url"),
        (
            "cameras:\n  - id: door\n    url: \"gopher://x/y\"\n",
            "cameras[0].url",
        ),
    ];
    for (yaml, want) in cases {
        let cfg = write_config(dir.path(), yaml);
        let (code, _out, err) = nvr_output(
            &["config", "check", "--config", cfg.to_str().unwrap()],
            dir.path(),
            &[],
        );
        assert_eq!(code, 2, "{yaml}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line expected, got {err:?}");
        assert!(lines[0].contains(want), "{:?} lacks {want:?}", lines[0]);
    }
    // Wrong type from the environment names the variable.
    let cfg = write_config(dir.path(), "");
    let (code, _, err) = nvr_output(
        &["config", "check", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[("DETECTION_DEVICE_ID", "first-gpu")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("DETECTION_DEVICE_ID"), "{err}");
    // A missing model path fails before anything starts, and so does a
    // missing appearance model, named as such.
    let fails_naming = |yaml: &str, needles: &[&str]| {
        let cfg = write_config(dir.path(), yaml);
        for cmd in ["run", "detector", "config check"] {
            let args: Vec<&str> = cmd.split(' ').collect();
            let (code, _, err) = nvr_output(
                &[&args[..], &["--config", cfg.to_str().unwrap()]].concat(),
                dir.path(),
                &[],
            );
            assert_eq!(code, 2, "{cmd}: {err}");
            let line = err
                .lines()
                .find(|l| l.contains("config error"))
                .unwrap_or("");
            assert!(needles.iter().all(|n| line.contains(n)), "{cmd}: {err}");
        }
    };
    fails_naming(
        "detection:\n  models_path: /nonexistent/models\nnats:\n  embedded: false\n",
        &["/nonexistent/models"],
    );
    let models = data().join("models");
    assert!(
        models.join("yolox_nano_dynamic.onnx").is_file(),
        "run scripts/setup"
    );
    fails_naming(
        &format!(
            "detection:\n  models_path: {}\n  reid_model: /nonexistent/reid.onnx\nnats:\n  embedded: false\n",
            models.display()
        ),
        &["detection.reid_model", "/nonexistent/reid.onnx"],
    );
}

#[test]
fn config_check_shows_sources() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "detection:\n  backend: cuda\n  embedded: false\n",
    );
    let (code, out, err) = nvr_output(
        &["config", "check", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[("DETECTION_DEFAULT_FPS", "3")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("detection.backend = \"cuda\"  # file"),
        "{out}"
    );
    assert!(
        out.contains("detection.default_fps = 3.0  # env DETECTION_DEFAULT_FPS"),
        "{out}"
    );
    assert!(
        out.contains("detection.min_confidence = 0.5  # default"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_created_once_and_unchanged_on_restart() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "api:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  embedded: false\nspatial:\n  embedded: false\nnats:\n  retention:\n    frames_per_camera: 7\n    max_age_hours: 2\n"
        ),
    );
    let args = [
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--nats-url",
        server.url.as_str(),
    ];
    let mut p = NvrProcess::start(&args, dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(30));
    assert!(
        p.seen
            .iter()
            .any(|l| l.contains("NVR_FRAMES") && l.contains("Created")),
        "{:?}",
        p.seen
    );

    let client = server.client().await;
    let js = async_nats::jetstream::new(client);
    let mut frames = js.get_stream(streams::FRAMES).await.unwrap();
    let info = frames.info().await.unwrap().clone();
    assert_eq!(info.config.max_messages_per_subject, 7);
    assert_eq!(
        info.config.retention,
        async_nats::jetstream::stream::RetentionPolicy::WorkQueue
    );
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::Memory
    );
    let mut dets = js.get_stream(streams::DETECTIONS).await.unwrap();
    let dinfo = dets.info().await.unwrap().clone();
    assert_eq!(dinfo.config.max_age, Duration::from_secs(2 * 3600));
    assert_eq!(
        dinfo.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    for s in [
        streams::TRACKS,
        streams::SPATIAL,
        streams::EVENTS,
        streams::SNAPSHOTS,
        streams::STATE,
    ] {
        js.get_stream(s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    frames
        .consumer_info(streams::DETECTORS_CONSUMER)
        .await
        .expect("detectors consumer exists");
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));

    // Second start-up: every stream reported unchanged, settings identical.
    let mut p = NvrProcess::start(&args, dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(30));
    let unchanged = p.seen.iter().filter(|l| l.contains("Unchanged")).count();
    assert_eq!(unchanged, 7, "{:?}", p.seen);
    let again = frames.info().await.unwrap().clone();
    assert_eq!(again.config, info.config);
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn run_with_shipped_config_embeds_nats_and_stops_cleanly() {
    let root = root();
    require(&data().join("models/yolox_nano_dynamic.onnx"), "the model");
    require(&data().join("samples/vtest.avi"), "the sample footage");
    let store = tempfile::tempdir().unwrap();
    let (nats_port, api) = (free_port(), free_port());
    let url = format!("nats://127.0.0.1:{nats_port}");
    let api_addr = format!("127.0.0.1:{api}");
    let mut p = NvrProcess::start(
        &["run", "--config", "config/config.yaml"],
        &root,
        &[
            ("NATS_URL", url.as_str()),
            ("NATS_EMBEDDED", "true"),
            ("NATS_STORE_DIR", store.path().to_str().unwrap()),
            ("NVR_API_ADDR", api_addr.as_str()),
        ],
    );
    let started = p.wait_for_log("started embedded nats-server", Duration::from_secs(30));
    let pid: u32 = started
        .split("pid=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("pid in log line");
    p.wait_for_log("nvr running", Duration::from_secs(60));
    assert!(children_of(p.child.id()).iter().any(|(c, _)| *c == pid));

    let (code, body) = http_get(api, "/health");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(api, "/api/v1/system/health");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["nats"]["connected"], true, "{v}");
    assert_eq!(v["nats"]["jetstream"], true, "{v}");
    assert_eq!(v["nats"]["embedded"], true, "{v}");
    assert!(
        v["nats"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with("2."),
        "{v}"
    );
    assert!(v["components"]["cameras"].as_array().is_some(), "{v}");
    // Each contract stream with its description and what it holds.
    for name in [
        "NVR_FRAMES",
        "NVR_DETECTIONS",
        "NVR_TRACKS",
        "NVR_SPATIAL",
        "NVR_EVENTS",
        "NVR_SNAPSHOTS",
        "NVR_STATE",
    ] {
        let st = &v["nats"]["streams"][name];
        assert!(
            st["messages"].is_u64() && st["bytes"].is_u64(),
            "{name}: {v}"
        );
        assert!(
            st["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("nvr ")),
            "{name}: {v}"
        );
    }

    // Metrics Prometheus accepts: counters as counters, histograms in seconds.
    let (code, scrape) = http_get(api, "/metrics");
    assert_eq!(code, 200, "{scrape}");
    promtool_check(&scrape);
    for family in [
        "# TYPE nvr_detection_frames_processed_total counter",
        "# TYPE nvr_detection_inference_seconds histogram",
        "# TYPE nvr_process_resident_memory_bytes gauge",
    ] {
        assert!(scrape.contains(family), "{family} missing:\n{scrape}");
    }

    let t0 = std::time::Instant::now();
    p.interrupt();
    let code = p.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "did not stop within 5 s: {:?}", p.seen);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // A clean shutdown is not a fault: nothing after it warns.
    let lines = p.all_lines(Duration::from_secs(5));
    let from = lines
        .iter()
        .position(|l| l.contains("shutting down"))
        .expect("a shutting down line");
    let noisy: Vec<&String> = lines[from..]
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
    assert!(
        !alive(pid)
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "embedded nats-server {pid} still running"
    );
}

#[test]
fn run_against_external_nats_starts_none() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(
        dir.path(),
        &format!("api:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  embedded: false\nspatial:\n  embedded: false\n"),
    );
    let mut p = NvrProcess::start(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--nats-url",
            server.url.as_str(),
        ],
        dir.path(),
        &[],
    );
    p.wait_for_log("nvr running", Duration::from_secs(30));
    assert!(!p
        .seen
        .iter()
        .any(|l| l.contains("started embedded nats-server")));
    assert!(children_of(p.child.id())
        .iter()
        .all(|(_, c)| !c.contains("nats-server")));
    let (code, body) = http_get(api, "/api/v1/system/health");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["nats"]["embedded"], false);
    assert_eq!(v["nats"]["url"], server.url.as_str());
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_round_trip_through_tail() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut tail = NvrProcess::start(
        &[
            "tail",
            "nvr.detections.*",
            "--count",
            "2",
            "--nats-url",
            server.url.as_str(),
        ],
        dir.path(),
        &[],
    );
    tail.wait_for_log("tailing", Duration::from_secs(20));
    let det = Detections {
        v: SCHEMA_VERSION,
        camera: "porch".into(),
        seq: 42,
        ts_ns: 1_700_000_000_123_456_789,
        width: 1280,
        height: 720,
        model: "yolox_nano".into(),
        backend: "cpu".into(),
        worker: "w0".into(),
        latency_ms: 9.5,
        queue_ms: 1.25,
        objects: vec![DetectedObject {
            class_id: 0,
            label: "person".into(),
            score: 0.75,
            bbox: [0.125, 0.25, 0.5, 0.875],
            embedding: None,
        }],
    };
    let client = server.client().await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "porch-42");
    client
        .publish_with_headers(
            subjects::detections("porch"),
            headers,
            nvr_subjects::encode(&det).unwrap().into(),
        )
        .await
        .unwrap();
    client
        .publish(
            subjects::detections("porch"),
            bytes::Bytes::from_static(b"not msgpack"),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert_eq!(
        tail.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{:?}",
        tail.seen
    );
    let out = tail.stdout();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["subject"], "nvr.detections.porch");
    assert_eq!(lines[0]["type"], "detections");
    assert_eq!(lines[0]["headers"]["Nats-Msg-Id"], "porch-42");
    let back: Detections = serde_json::from_value(lines[0]["message"].clone()).unwrap();
    assert_eq!(back, det);
    assert_eq!(lines[1]["type"], "unknown");
    assert!(lines[1]["payload_base64"].is_string());
}

#[test]
fn json_log_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "detection:\n  max_retries: 1\n  retry_delay_ms: 10\n  timeout_seconds: 1\n  models_path: \"{}\"\n",
            data().join("models").display()
        ),
    );
    let url = format!("nats://127.0.0.1:{}", free_port());
    let (code, _, err) = nvr_output(
        &[
            "detector",
            "--config",
            cfg.to_str().unwrap(),
            "--nats-url",
            &url,
            "--log-format",
            "json",
        ],
        dir.path(),
        &[],
    );
    assert_ne!(code, 0, "{err}");
    let logs: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(
        logs.iter().any(|v| v["level"] == "WARN"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot connect"))),
        "{err}"
    );
}
