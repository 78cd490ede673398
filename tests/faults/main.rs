//! Faults and hostile input, through real processes and a real nats-server:
//! single crafted messages that used to freeze tracking, a JPEG
//! decompression bomb, lost streams, a killed, stopped or unrestartable
//! embedded nats-server, busy ports, credentials in URLs.

#[path = "../common/mod.rs"]
mod common;
mod process;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use nvr_actors::bus::now_ns;
use nvr_subjects::messages::{
    CameraTracks, Detections, Frame, FrameEncoding, SpatialState, SpatialTracks, Track, TrackState,
};
use nvr_subjects::{decode, encode, subjects, Message, SCHEMA_VERSION};
use serde_json::Value;

const DT: u64 = WALK_DT;

fn detections(camera: &str, seq: u64, x: f32) -> Detections {
    walker(camera, seq, x)
}

async fn publish<M: Message>(js: &jetstream::Context, subject: String, m: &M) {
    js.publish(subject, encode(m).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

fn json(port: u16, path: &str) -> Value {
    let (code, body) = http_get(port, path);
    assert!(code == 200 || code == 503, "{path}: {code} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Waits for the CameraTracks of `seq` on `sub`.
async fn tracks_for(sub: &mut async_nats::Subscriber, seq: u64) -> CameraTracks {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no CameraTracks for seq {seq}"))
            .unwrap();
        let t: CameraTracks = decode(&m.payload).unwrap();
        if t.seq == seq {
            return t;
        }
    }
}

/// Waits for a SpatialTracks cycle at or after `ts_ns` on `sub`.
async fn cycle_after(sub: &mut async_nats::Subscriber, ts_ns: u64) -> SpatialTracks {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("the shard keeps publishing cycles")
            .unwrap();
        let t: SpatialTracks = decode(&m.payload).unwrap();
        if t.ts_ns >= ts_ns {
            return t;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_messages_are_refused_and_tracking_continues() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(dir.path(), &hall_config(&server.url, api, ""));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut tracks = client.subscribe(subjects::tracks("hall")).await.unwrap();
    let mut spatial = client
        .subscribe(subjects::spatial_tracks("lobby"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));

    for seq in 1..=10 {
        publish(
            &js,
            subjects::detections("hall"),
            &detections("hall", seq, 0.1),
        )
        .await;
    }
    tracks_for(&mut tracks, 10).await;

    // 1. Camera tracks one hour ahead: used to carry the shard's clock away.
    let mut ahead = CameraTracks {
        v: SCHEMA_VERSION,
        camera: "hall".into(),
        seq: 11,
        ts_ns: *T0 + 3_600_000_000_000,
        width: 640,
        height: 480,
        tracks: vec![],
    };
    publish(&js, subjects::tracks("hall"), &ahead).await;
    // 2. Detections ten years ahead.
    let mut far = detections("hall", 11, 0.1);
    far.ts_ns += 10 * 365 * 24 * 3_600_000_000_000;
    publish(&js, subjects::detections("hall"), &far).await;
    // 3. A seq a thousand times larger than the camera's.
    let mut wild = detections("hall", 11_000_000, 0.1);
    wild.ts_ns = *T0 + 11 * DT;
    publish(&js, subjects::detections("hall"), &wild).await;
    // 4. Another camera's detections under hall's subject, and a wildcard camera.
    publish(
        &js,
        subjects::detections("hall"),
        &detections("cam2", 12, 0.5),
    )
    .await;
    publish(&js, subjects::detections("hall"), &detections(">", 12, 0.5)).await;
    // 5. Boxes that are not boxes.
    let mut bad = detections("hall", 11, 0.1);
    for b in [
        [-50.0, -50.0, -10.0, -10.0],
        [f32::NAN, 0.1, 0.2, 0.3],
        [0.1, 0.1, f32::INFINITY, 0.3],
    ] {
        let mut o = bad.objects[0].clone();
        o.bbox = b;
        bad.objects.push(o);
    }
    publish(&js, subjects::detections("hall"), &bad).await;
    // 6. A huge embedding on a camera track.
    ahead.seq = 12;
    ahead.ts_ns = *T0 + 12 * DT;
    ahead.tracks = vec![Track {
        track_id: 999,
        label: "person".into(),
        score: 0.9,
        bbox: [0.1, 0.1, 0.2, 0.5],
        state: TrackState::Confirmed,
        hits: 10,
        age_ms: 1000,
        embedding: Some(vec![0.001; 190_000]),
    }];
    publish(&js, subjects::tracks("hall"), &ahead).await;
    // 7. Camera tracks for a camera nobody tracks.
    ahead.camera = "ghost".into();
    publish(&js, subjects::tracks("ghost"), &ahead).await;

    // Tracking goes on: every later normal message is tracked, and the
    // shard keeps publishing cycles at the normal message times.
    for seq in 12..=40 {
        publish(
            &js,
            subjects::detections("hall"),
            &detections("hall", seq, 0.1 + 0.005 * seq as f32),
        )
        .await;
    }
    let last = tracks_for(&mut tracks, 40).await;
    assert!(
        last.tracks.iter().any(|t| t.state == TrackState::Confirmed),
        "the walker is tracked after the hostile messages: {last:?}"
    );
    let cycle = cycle_after(&mut spatial, *T0 + 35 * DT).await;
    assert!(
        cycle.ts_ns < *T0 + 60 * DT,
        "the shard's clock stayed with the cameras: {}",
        cycle.ts_ns
    );
    assert!(!cycle.tracks.is_empty(), "the walker is on the floor");

    let mut last = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let health = loop {
        let h = json(api, "/api/v1/system/health");
        let cams = h["components"]["cameras"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let r = cams
            .iter()
            .find(|c| c["id"] == "hall")
            .map(|c| c["tracking"]["refused"].clone())
            .unwrap_or(Value::Null);
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        if n("timestamp_ahead") >= 1
            && n("camera_mismatch") >= 1
            && n("invalid_camera") >= 1
            && n("bad_box") >= 3
            && n("seq_reset") >= 1
        {
            break h;
        }
        last = h;
        assert!(
            std::time::Instant::now() < deadline,
            "refusals not counted: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = last;
    let shard = &health["components"]["spatial"]["shards"][0];
    assert!(
        shard["refused"]["timestamp_ahead"].as_u64().unwrap_or(0) >= 1,
        "{shard}"
    );
    assert!(
        shard["refused"]["bad_embedding"].as_u64().unwrap_or(0) >= 1,
        "{shard}"
    );
    assert_eq!(health["status"], "degraded", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(reasons.contains("refused"), "{reasons}");
    assert!(
        health["components"]["untracked_cameras"]["ghost"]["tracks"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{health}"
    );
    let metrics = http_get(api, "/metrics").1;
    assert!(
        metrics.contains("nvr_refused_total{component=\"tracking\",reason=\"timestamp_ahead\"}"),
        "{metrics}"
    );
    // One line per refusal, naming what was wrong.
    p.wait_for_log("refused (timestamp_ahead)", Duration::from_secs(5));
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

/// A tiny JPEG whose header claims `w` x `h` pixels.
fn jpeg_bomb(w: u16, h: u16) -> Vec<u8> {
    let img = nvr_actors::detect::RgbImage::filled(16, 16, [120, 120, 120]);
    let mut bytes = nvr_actors::detect::image::encode_jpeg(&img, 80).unwrap();
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0 marker");
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detector_refuses_bombs_and_foreign_frames() {
    require(&data().join("models/yolox_nano_dynamic.onnx"), "the model");
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let yaml = hall_config(&server.url, api, "").replace(
        "detection:\n  embedded: false\n",
        &format!(
            "detection:\n  embedded: true\n  workers: 1\n  models_path: \"{}\"\n",
            data().join("models").display()
        ),
    );
    let cfg = write_config(dir.path(), &yaml);
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut dets = client.subscribe("nvr.detections.*").await.unwrap();
    client.flush().await.unwrap();
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    let rss_before = rss_mb(p.child.id());

    let frame = |camera: &str, seq: u64, data: Vec<u8>, w: u32, h: u32| Frame {
        v: SCHEMA_VERSION,
        camera: camera.into(),
        seq,
        ts_ns: now_ns(),
        width: w,
        height: h,
        encoding: FrameEncoding::Jpeg,
        data,
        data_width: 0,
        data_height: 0,
    };
    let real = nvr_actors::detect::image::encode_jpeg(
        &nvr_actors::detect::RgbImage::filled(320, 240, [90, 90, 90]),
        80,
    )
    .unwrap();
    // Eight bombs: a 19 KB-class file declaring 16384 x 16384 pixels each.
    for seq in 1..=8 {
        let f = frame("hall", seq, jpeg_bomb(16_384, 16_384), 640, 480);
        publish(&js, subjects::frames("hall"), &f).await;
    }
    // A frame on another camera's subject, and one an hour ahead.
    publish(
        &js,
        subjects::frames("ghost"),
        &frame("hall", 9, real.clone(), 640, 480),
    )
    .await;
    let mut ahead = frame("hall", 10, real.clone(), 640, 480);
    ahead.ts_ns += 3_600_000_000_000;
    publish(&js, subjects::frames("hall"), &ahead).await;
    // Then a normal frame is processed.
    publish(
        &js,
        subjects::frames("hall"),
        &frame("hall", 11, real, 640, 480),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let det: Detections = loop {
        let m = tokio::time::timeout_at(deadline, dets.next())
            .await
            .expect("detections for the normal frame")
            .unwrap();
        assert_eq!(
            m.subject.as_str(),
            "nvr.detections.hall",
            "nothing published for ghost"
        );
        let d: Detections = decode(&m.payload).unwrap();
        if d.seq == 11 {
            break d;
        }
        assert_eq!(d.seq, 11, "only the normal frame is processed");
    };
    assert_eq!(det.camera, "hall");
    let status = eventually(Duration::from_secs(10), "refusals counted", || {
        let s = json(api, "/api/v1/plugins/nvr-detection/status");
        let r = s["refused"].clone();
        (r["image_too_large"].as_u64()? == 8
            && r["camera_mismatch"].as_u64()? == 1
            && r["timestamp_ahead"].as_u64()? == 1)
            .then_some(s)
    });
    assert_eq!(status["error_count"].as_u64(), Some(10), "{status}");
    let peak = peak_rss_mb(p.child.id());
    println!("rss before {rss_before:.0} MB, peak after 8 bombs {peak:.0} MB");
    // Each bomb would need 805 MB once decoded.
    assert!(
        peak < rss_before + 400.0,
        "peak {peak} MB from {rss_before} MB"
    );
    p.wait_for_log("image too large", Duration::from_secs(5));
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

fn proc_status_mb(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn rss_mb(pid: u32) -> f64 {
    proc_status_mb(pid, "VmRSS:")
}

fn peak_rss_mb(pid: u32) -> f64 {
    proc_status_mb(pid, "VmHWM:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_streams_are_recreated_and_tracking_resumes() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(dir.path(), &hall_config(&server.url, api, ""));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut tracks = client.subscribe(subjects::tracks("hall")).await.unwrap();
    client.flush().await.unwrap();
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    publish(
        &js,
        subjects::detections("hall"),
        &detections("hall", 1, 0.1),
    )
    .await;
    tracks_for(&mut tracks, 1).await;

    let deleted = std::time::Instant::now();
    for s in ["NVR_FRAMES", "NVR_DETECTIONS"] {
        assert!(js.delete_stream(s).await.unwrap().success);
    }
    p.wait_for_log("re-created", Duration::from_secs(15));
    println!(
        "deleted streams re-created after {:.2} s",
        deleted.elapsed().as_secs_f64()
    );
    let h = eventually(Duration::from_secs(15), "streams back", || {
        let h = json(api, "/api/v1/system/health");
        (h["nats"]["streams_ok"] == true && h["nats"]["streams_recreated"].as_u64()? >= 1)
            .then_some(h)
    });
    assert_eq!(h["status"], "ok", "{h}");
    js.get_stream("NVR_FRAMES").await.expect("NVR_FRAMES again");
    let frames = js.get_stream("NVR_FRAMES").await.unwrap();
    frames
        .consumer_info("detectors")
        .await
        .expect("the detectors consumer again");
    // The track actor re-creates its consumer and tracking resumes.
    let mut seq = 2;
    let resumed = walk_until(&js, &mut seq, &mut tracks, &mut p, 30, "tracking", |_| true).await;
    println!(
        "tracking resumed {:.2} s after the deletion",
        deleted.elapsed().as_secs_f64()
    );
    let t: CameraTracks = decode(&resumed.payload).unwrap();
    assert_eq!(t.camera, "hall");
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Publishes the walker's detections on `hall`, one every half second from
/// `seq` on (a publish the server refuses is skipped), until `sub` delivers
/// a message that `done` accepts; panics with nvr's log after `limit_s`
/// seconds saying `what` did not resume.
async fn walk_until(
    js: &jetstream::Context,
    seq: &mut u64,
    sub: &mut async_nats::Subscriber,
    p: &mut NvrProcess,
    limit_s: u64,
    what: &str,
    done: impl Fn(&async_nats::Message) -> bool,
) -> async_nats::Message {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(limit_s);
    loop {
        if tokio::time::Instant::now() >= deadline {
            panic!("{what} did not resume; nvr's log:\n{}", p.log_so_far());
        }
        let m = detections("hall", *seq, 0.1 + 0.01 * *seq as f32);
        if let Ok(ack) = js
            .publish(subjects::detections("hall"), encode(&m).unwrap().into())
            .await
        {
            let _ = ack.await;
        }
        *seq += 1;
        let until = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await {
            if done(&m) {
                return m;
            }
        }
    }
}

/// A server that comes back with an empty store has lost the track actor's
/// consumer without telling it (the pull requests of the old connection are
/// gone, and a pull to a consumer that does not exist gets no answer): the
/// actor notices through its idle check, re-creates it, and tracking
/// resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_comes_back_empty_gets_streams_and_tracking_back() {
    let mut server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(dir.path(), &hall_config(&server.url, api, ""));
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    {
        let client = server.client().await;
        let js = jetstream::new(client.clone());
        let mut tracks = client.subscribe(subjects::tracks("hall")).await.unwrap();
        client.flush().await.unwrap();
        publish(
            &js,
            subjects::detections("hall"),
            &detections("hall", 1, 0.1),
        )
        .await;
        tracks_for(&mut tracks, 1).await;
    }

    let restarted = std::time::Instant::now();
    server.restart_empty();
    p.wait_for_log("re-created", Duration::from_secs(30));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut tracks = client.subscribe(subjects::tracks("hall")).await.unwrap();
    let mut spatial = client
        .subscribe(subjects::spatial_tracks("lobby"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut seq = 2;
    let resumed = walk_until(&js, &mut seq, &mut tracks, &mut p, 20, "tracking", |_| true).await;
    println!(
        "tracking resumed {:.2} s after the server came back empty",
        restarted.elapsed().as_secs_f64()
    );
    let t: CameraTracks = decode(&resumed.payload).unwrap();
    assert_eq!(t.camera, "hall");
    // The spatial shard's consumer was lost the same way: it notices too,
    // and the walker is observed on the floor again.
    let after_ns = *T0 + 2 * WALK_DT;
    walk_until(
        &js,
        &mut seq,
        &mut spatial,
        &mut p,
        20,
        "spatial tracking",
        |m| {
            let s: SpatialTracks = decode(&m.payload).unwrap();
            s.tracks
                .iter()
                .any(|t| t.state == SpatialState::Observed && t.last_seen_ns >= after_ns)
        },
    )
    .await;
    println!(
        "spatial tracking resumed {:.2} s after the server came back empty",
        restarted.elapsed().as_secs_f64()
    );
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}
