//! Detection service end to end: real footage, a real RTSP server, the real
//! model, a real `nats-server`; detection nodes sharing the `detectors`
//! consumer, one of them killed mid-run; overload.

#[path = "../common/mod.rs"]
mod common;
mod nodes;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use nvr_actors::bus::now_ns;
use nvr_actors::detect::frames::read_frames;
use nvr_actors::detect::image::{encode_jpeg, resize_to_fit};
use nvr_subjects::messages::{Detections, Frame, FrameEncoding};
use nvr_subjects::{decode, encode, subjects, SCHEMA_VERSION};
use serde_json::Value;

/// (original width, original height, JPEG) frames of a sample file.
fn jpeg_frames(name: &str, step: usize, count: usize, max_side: u32) -> Vec<(u32, u32, Vec<u8>)> {
    let path = require(&data().join("samples").join(name), "sample footage");
    read_frames(&path, 0, step, count)
        .expect("decode sample with ffmpeg (run scripts/setup)")
        .iter()
        .map(|f| {
            let small = resize_to_fit(f, max_side);
            (f.width, f.height, encode_jpeg(&small, 85).expect("jpeg"))
        })
        .collect()
}

fn frame_msg(camera: &str, seq: u64, (w, h, jpeg): &(u32, u32, Vec<u8>)) -> Frame {
    Frame {
        v: SCHEMA_VERSION,
        camera: camera.to_string(),
        seq,
        ts_ns: now_ns(),
        width: *w,
        height: *h,
        encoding: FrameEncoding::Jpeg,
        data: jpeg.clone(),
        data_width: 0,
        data_height: 0,
    }
}

/// Publishes a frame to JetStream; true when the stream accepted it.
async fn publish_frame(js: &jetstream::Context, f: &Frame) -> bool {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        nvr_subjects::msg_id(&f.camera, f.seq).as_str(),
    );
    headers.insert("Content-Type", "application/msgpack");
    let payload = encode(f).expect("encode frame");
    match js
        .publish_with_headers(subjects::frames(&f.camera), headers, payload.into())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

fn model_ready() {
    require(&data().join("models/yolox_nano_dynamic.onnx"), "the model");
    require(
        &data().join("onnxruntime/libonnxruntime.so.1.31.1"),
        "the ONNX Runtime library",
    );
}

/// The `nats:` section of a process talking to an external server, with
/// extra indented lines under it.
fn base_config(nats_url: &str, nats_extra: &str) -> String {
    format!("nats:\n  embedded: false\n  url: \"{nats_url}\"\n{nats_extra}")
}

fn persons(d: &Detections) -> Vec<[f32; 4]> {
    d.objects
        .iter()
        .filter(|o| o.label == "person")
        .map(|o| o.bbox)
        .collect()
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// Plausible pedestrian boxes of vtest.avi (768x576, people 60-200 px tall).
fn assert_plausible_people(dets: &[Detections]) {
    let mut total = 0;
    for d in dets {
        assert_eq!((d.width, d.height), (768, 576), "original frame size");
        for b in persons(d) {
            total += 1;
            assert!(
                b.iter().all(|v| (0.0..=1.0).contains(v)),
                "{b:?} not normalised"
            );
            let (w, h) = ((b[2] - b[0]) * 768.0, (b[3] - b[1]) * 576.0);
            assert!(
                h > w * 0.9,
                "pedestrian box {b:?} is wider than tall ({w:.0}x{h:.0} px)"
            );
            assert!(
                (30.0..=300.0).contains(&h),
                "pedestrian height {h:.0} px implausible"
            );
        }
    }
    let mean = total as f64 / dets.len() as f64;
    assert!(
        mean >= 2.0,
        "expected several people per frame of vtest.avi, got {mean:.1} on average"
    );
}

/// Collects `n` Detections of `camera` from a core subscription.
async fn collect_detections(
    client: &async_nats::Client,
    camera: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Detections> {
    let mut sub = client
        .subscribe(subjects::detections(camera))
        .await
        .expect("subscribe");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => out.push(decode::<Detections>(&m.payload).expect("Detections decode")),
            _ => panic!("only {} of {n} detections of {camera} arrived", out.len()),
        }
    }
    out
}

fn json_get(port: u16, path: &str) -> Value {
    let (code, body) = http_get(port, path);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_on_real_footage_yields_people_and_a_bad_camera_is_isolated() {
    model_ready();
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let footage = data().join("samples/vtest.avi");
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}api:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  models_path: \"{}\"\n  model: yolox_nano_dynamic\n  input_size: 416\n  workers: 1\nspatial:\n  embedded: false\ncameras:\n  - id: vt\n    url: \"{}\"\n    detection:\n      fps: 5\n      white_point: [120.5, 110.0, 100.0]\n  - id: broken\n    url: \"rtsp://127.0.0.1:1/nothing\"\n",
            base_config(&server.url, ""),
            data().join("models").display(),
            footage.display()
        ),
    );
    let client = server.client().await;
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    let dets = collect_detections(&client, "vt", 12, Duration::from_secs(60)).await;
    assert_plausible_people(&dets);
    let seqs: Vec<u64> = dets.iter().map(|d| d.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq increases: {seqs:?}"
    );
    assert!(dets
        .iter()
        .all(|d| d.model == "yolox_nano_dynamic" && d.backend == "cpu"));

    let health = eventually(
        Duration::from_secs(30),
        "broken camera error in health",
        || {
            let v = json_get(api, "/api/v1/system/health");
            let cams = v["components"]["cameras"].as_array()?.clone();
            let broken = cams.iter().find(|c| c["id"] == "broken")?.clone();
            (broken["errors"].as_u64()? >= 1).then_some(v)
        },
    );
    let cams = health["components"]["cameras"].as_array().unwrap();
    let vt = cams.iter().find(|c| c["id"] == "vt").unwrap();
    let broken = cams.iter().find(|c| c["id"] == "broken").unwrap();
    assert_eq!(vt["state"], "streaming", "{vt}");
    assert!(vt["frames_published"].as_u64().unwrap() >= 12, "{vt}");
    assert!(
        vt["fps_out"].as_f64().is_some() && vt["fps_in"].as_f64().is_some(),
        "{vt}"
    );
    assert_ne!(broken["state"], "streaming", "{broken}");
    let err = broken["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("rtsp://127.0.0.1:1/nothing"),
        "error names the URL: {broken}"
    );
    assert!(!err.contains('\n'), "one-line error: {err:?}");

    let st = json_get(api, "/api/v1/plugins/nvr-detection/status");
    assert_eq!(st["connected"], true, "{st}");
    assert_eq!(st["backend"], "cpu", "{st}");
    assert!(st["processed_count"].as_u64().unwrap() >= 12, "{st}");
    for k in [
        "queue_size",
        "error_count",
        "skipped_count",
        "avg_latency_ms",
        "p50_latency_ms",
        "p95_latency_ms",
        "p99_latency_ms",
        "e2e_p50_latency_ms",
        "e2e_p99_latency_ms",
        "fps",
    ] {
        assert!(st[k].is_number(), "{k} missing: {st}");
    }
    let vt = &st["cameras"]["vt"];
    assert!(vt["processed"].as_u64().unwrap() >= 12, "{st}");
    // The white point measured from the people the camera showed (before
    // the one set is applied), to set in its configuration, and the one set.
    assert!(vt["white_point_boxes"].as_u64().unwrap() >= 12, "{vt}");
    let wp: Vec<f64> = serde_json::from_value(vt["white_point"].clone()).unwrap();
    assert_eq!(wp.len(), 3, "{vt}");
    assert!(wp.iter().all(|v| (20.0..=235.0).contains(v)), "{vt}");
    assert_eq!(
        vt["white_point_set"],
        serde_json::json!([120.5, 110.0, 100.0]),
        "{vt}"
    );
    assert_eq!(st["workers"].as_array().unwrap().len(), 1, "{st}");
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn astronaut_through_a_detection_node_is_one_person_with_an_appearance_embedding() {
    model_ready();
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}detection:\n  address: \"127.0.0.1:{http}\"\n  models_path: \"{}\"\n  model: yolox_nano_dynamic\n  reid_model: mobilenetv2_reid\n  workers: 1\n  min_confidence: 0.5\ncameras:\n  - id: astro_warm\n    detection:\n      white_point: [150.0, 110.0, 80.0]\n",
            base_config(&server.url, ""),
            data().join("models").display()
        ),
    );
    require(
        &data().join("models/mobilenetv2_reid.onnx"),
        "the appearance model",
    );
    let mut node = NvrProcess::start(
        &["detector", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[],
    );
    node.wait_for_log("detection node running", Duration::from_secs(60));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut sub = client
        .subscribe(subjects::detections("astro"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let frame = jpeg_frames("astronaut.png", 1, 1, 416).remove(0);
    assert!(publish_frame(&js, &frame_msg("astro", 1, &frame)).await);
    let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("detections within 30 s")
        .unwrap();
    let d: Detections = decode(&m.payload).unwrap();
    assert_eq!((d.width, d.height), (512, 512));
    let people = persons(&d);
    assert_eq!(people.len(), 1, "exactly one person: {:?}", d.objects);
    // Hand-labelled: hair top to the bottom edge, left edge to the suit's side.
    let expected = [20.0 / 512.0, 15.0 / 512.0, 365.0 / 512.0, 1.0];
    assert!(
        iou(people[0], expected) >= 0.6,
        "{:?} vs {expected:?}",
        people[0]
    );
    // With detection.reid_model the person carries the colour descriptor and
    // the appearance model's embedding in one unit vector.
    let person = d.objects.iter().find(|o| o.label == "person").unwrap();
    let e = person.embedding.as_ref().expect("person without embedding");
    assert_eq!(
        e.len(),
        40 + 320,
        "colour descriptor + MobileNetV2 bottleneck"
    );
    let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "embedding norm {norm}");
    // The same frame from a camera with a warm cast set as its white point:
    // the colour descriptor changes, the appearance model's part does not.
    let mut warm_sub = client
        .subscribe(subjects::detections("astro_warm"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert!(publish_frame(&js, &frame_msg("astro_warm", 1, &frame)).await);
    let wm = tokio::time::timeout(Duration::from_secs(30), warm_sub.next())
        .await
        .expect("detections of astro_warm within 30 s")
        .unwrap();
    let wd: Detections = decode(&wm.payload).unwrap();
    let warm = wd
        .objects
        .iter()
        .find(|o| o.label == "person")
        .and_then(|o| o.embedding.clone())
        .expect("a person with an embedding on astro_warm");
    let unit = |v: &[f32]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let colour_cos = cos(&unit(&e[..40]), &unit(&warm[..40]));
    let model_cos = cos(&unit(&e[40..]), &unit(&warm[40..]));
    assert!(
        colour_cos < 0.995,
        "the white point changed nothing: cosine {colour_cos}"
    );
    assert!(
        model_cos > 0.9999,
        "the model's embedding changed: cosine {model_cos}"
    );
    assert_eq!(
        m.headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string()),
        Some("astro-1".to_string())
    );
    // What the message is, readable without decoding it.
    for (k, v) in [
        ("Nvr-Kind", "detections"),
        ("Nvr-Camera", "astro"),
        ("Nvr-Seq", "1"),
        ("Nvr-Schema", "1"),
    ] {
        let got = m
            .headers
            .as_ref()
            .and_then(|h| h.get(k))
            .map(|v| v.to_string());
        assert_eq!(got.as_deref(), Some(v), "header {k}");
    }
    // The counter moves once the frame is acknowledged, just after the publish.
    eventually(
        Duration::from_secs(10),
        "processed_count 2 on /status",
        || (json_get(http, "/status")["workers"][0]["processed_count"] == 2).then_some(()),
    );
    assert_eq!(
        json_get(http, "/status")["appearance"],
        "colour+mobilenetv2_reid"
    );
    let (code, _) = http_get(http, "/health");
    assert_eq!(code, 200);
    node.interrupt();
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Child processes killed and reaped on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_listening(port: u16) {
    eventually(
        Duration::from_secs(10),
        "rtsp-server-perl listening",
        || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_camera_on_loopback_yields_detections() {
    model_ready();
    let server_bin = "/usr/bin/rtsp-server-perl";
    assert!(
        std::path::Path::new(server_bin).is_file(),
        "{server_bin} is missing (Debian package rtsp-server-perl): run scripts/setup"
    );
    let mp4 = require(&data().join("samples/vtest.mp4"), "H.264 sample");
    let (client_port, source_port) = (free_port(), free_port());
    let rtp = 30000 + (client_port % 20000);
    let mut procs = Procs(Vec::new());
    procs.0.push(
        Command::new(server_bin)
            .args(["--clientport", &client_port.to_string()])
            .args(["--serverport", &source_port.to_string()])
            .args(["--client_listen_address", "127.0.0.1"])
            .args(["--source_listen_address", "127.0.0.1"])
            .args(["--rtp_start_port", &rtp.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start rtsp-server-perl: run scripts/setup"),
    );
    wait_listening(source_port);
    wait_listening(client_port);
    procs.0.push(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&mp4)
            .args(["-c", "copy", "-f", "rtsp"])
            .arg(format!("rtsp://127.0.0.1:{source_port}/cam1"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start ffmpeg: run scripts/setup"),
    );
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}api:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  models_path: \"{}\"\n  model: yolox_nano_dynamic\n  workers: 1\nspatial:\n  embedded: false\ncameras:\n  - id: door\n    url: \"rtsp://127.0.0.1:{client_port}/cam1\"\n    rtsp_transport: udp\n",
            base_config(&server.url, ""),
            data().join("models").display()
        ),
    );
    let client = server.client().await;
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    // The publisher may announce after the camera's first attempt: the camera reconnects.
    let dets = collect_detections(&client, "door", 8, Duration::from_secs(90)).await;
    assert_plausible_people(&dets);
    let v = json_get(api, "/api/v1/system/health");
    let cam = &v["components"]["cameras"][0];
    assert_eq!(cam["id"], "door");
    assert_eq!(cam["url"], format!("rtsp://127.0.0.1:{client_port}/cam1"));
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}
