//! Per-camera tracking through NATS: detections published on
//! `nvr.detections.<camera>` become `CameraTracks` on `nvr.tracks.<camera>`
//! (and `track_started` events), identical to the tracker core run offline;
//! detections arriving shuffled from two publishers give the same tracks as
//! in-order arrival; `nvr replay` reproduces the live output byte for byte.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use nvr_actors::track::{bench::synthetic_sequence, Tracker, TrackerParams};
use nvr_subjects::{
    decode, encode, event_kind, msg_id, subjects, CameraTracks, Detections, Event, SCHEMA_VERSION,
};

/// Frames per camera in these tests (5 fps: 16 s of message time).
const FRAMES: usize = 80;
/// Reorder window of the track actors; the shuffles below stay well inside it.
const REORDER_WINDOW_MS: u64 = 2000;

/// The detections of one camera: a deterministic 5 fps scene of 12 people
/// (normalised boxes, misses, low-score false positives).
fn scene(camera: &str) -> Vec<Detections> {
    let seq = synthetic_sequence(12, FRAMES, 11);
    // Message time starts at the test's origin, inside the receivers' window.
    let first = seq.first().map(|(t, _)| *t).unwrap_or(0);
    seq.into_iter()
        .enumerate()
        .map(|(i, (ts_ns, objects))| Detections {
            v: SCHEMA_VERSION,
            camera: camera.to_string(),
            seq: i as u64,
            ts_ns: ts_ns - first + *T0,
            width: 1920,
            height: 1080,
            model: "synthetic".into(),
            backend: "test".into(),
            worker: "test".into(),
            latency_ms: 0.0,
            queue_ms: 0.0,
            objects,
        })
        .collect()
}

/// The tracker core run offline over `dets` in order: what the bus must produce.
fn expected(dets: &[Detections]) -> (Vec<CameraTracks>, usize) {
    let mut tracker = Tracker::new(TrackerParams::default());
    let mut started = 0;
    let tracks = dets
        .iter()
        .map(|d| {
            // The boundary checks of the live actor (boxes clipped into the frame).
            let mut objects = d.objects.clone();
            nvr_actors::guard::clean_detections(
                &mut objects,
                &nvr_actors::guard::Limits::default(),
            )
            .expect("a sane scene");
            let out = tracker.update(d.ts_ns, &objects);
            started += out.started.len();
            CameraTracks {
                v: SCHEMA_VERSION,
                camera: d.camera.clone(),
                seq: d.seq,
                ts_ns: d.ts_ns,
                width: d.width,
                height: d.height,
                tracks: out.published(),
            }
        })
        .collect();
    (tracks, started)
}

/// Arrival order of `n` sequence numbers shuffled within blocks of five
/// (at most four frames, 800 ms of message time, out of place).
fn shuffled(n: usize) -> Vec<usize> {
    const PERMS: [[usize; 5]; 4] = [
        [3, 0, 4, 1, 2],
        [1, 4, 2, 0, 3],
        [4, 3, 2, 1, 0],
        [2, 0, 1, 4, 3],
    ];
    let mut out = Vec::with_capacity(n);
    for (b, start) in (0..n).step_by(5).enumerate() {
        for &k in &PERMS[b % PERMS.len()] {
            if start + k < n {
                out.push(start + k);
            }
        }
    }
    out
}

/// Publishes one detections message to JetStream and waits for its ack.
async fn publish(js: &jetstream::Context, d: &Detections) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id(&d.camera, d.seq).as_str());
    headers.insert("Content-Type", "application/msgpack");
    js.publish_with_headers(
        subjects::detections(&d.camera),
        headers,
        encode(d).expect("encode").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("publish ack");
}

/// Starts `nvr run` (no detection, per-camera trackers of `cameras`)
/// against `server`; returns the process and its API port.
fn start_run(server: &NatsServer, dir: &Path, cameras: &[&str]) -> (NvrProcess, u16) {
    let api = free_port();
    let mut yaml = format!(
        "api:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  embedded: false\ntracking:\n  reorder_window_ms: {REORDER_WINDOW_MS}\ncameras:\n"
    );
    for c in cameras {
        yaml.push_str(&format!("  - id: {c}\n"));
    }
    let cfg = write_config(dir, &yaml);
    let mut p = NvrProcess::start(
        &[
            "run",
            "--config",
            cfg.to_str().expect("utf-8 path"),
            "--nats-url",
            server.url.as_str(),
        ],
        dir,
        &[],
    );
    p.wait_for_log("nvr running", Duration::from_secs(60));
    (p, api)
}

/// Receives `CameraTracks` from `sub` until every camera in `want` has
/// `count` messages (or the timeout passes; the caller's asserts then fail).
async fn collect_tracks(
    sub: &mut async_nats::Subscriber,
    want: &[&str],
    count: usize,
) -> BTreeMap<String, Vec<(Vec<u8>, CameraTracks)>> {
    let mut got: BTreeMap<String, Vec<(Vec<u8>, CameraTracks)>> = BTreeMap::new();
    let done = |g: &BTreeMap<String, Vec<(Vec<u8>, CameraTracks)>>| {
        want.iter()
            .all(|c| g.get(*c).map(|v| v.len() >= count).unwrap_or(false))
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while !done(&got) {
            let Some(m) = sub.next().await else { break };
            let t: CameraTracks = decode(&m.payload).expect("CameraTracks on nvr.tracks.*");
            got.entry(t.camera.clone())
                .or_default()
                .push((m.payload.to_vec(), t));
        }
    })
    .await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_become_tracks_and_shuffled_arrival_matches_in_order() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nvr, api) = start_run(&server, dir.path(), &["inorder", "shuffled"]);

    let watcher = server.client().await;
    let mut tracks_sub = watcher.subscribe("nvr.tracks.>").await.expect("subscribe");
    let mut events_sub = watcher
        .subscribe(subjects::events(event_kind::TRACK_STARTED, "*"))
        .await
        .expect("subscribe");
    watcher.flush().await.expect("flush");

    // Same scene on both cameras: one in order from one publisher, the
    // other shuffled, alternate sequence numbers from two publishers.
    let inorder = scene("inorder");
    let shuffled_dets = scene("shuffled");
    let js_a = jetstream::new(server.client().await);
    let js_b = jetstream::new(server.client().await);
    for d in &inorder {
        publish(&js_a, d).await;
    }
    let order = shuffled(FRAMES);
    assert!(order.windows(2).any(|w| w[0] > w[1]));
    for &i in &order {
        let js = if i % 2 == 0 { &js_a } else { &js_b };
        publish(js, &shuffled_dets[i]).await;
    }

    let got = collect_tracks(&mut tracks_sub, &["inorder", "shuffled"], FRAMES).await;
    let (want_in, started_in) = expected(&inorder);
    let (want_sh, started_sh) = expected(&shuffled_dets);
    for (cam, want) in [("inorder", &want_in), ("shuffled", &want_sh)] {
        let live = got.get(cam).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(live.len(), FRAMES, "{cam}: tracks messages received");
        for (i, ((bytes, t), w)) in live.iter().zip(want.iter()).enumerate() {
            assert_eq!(t, w, "{cam}: message {i} differs from the offline tracker");
            assert_eq!(
                bytes,
                &encode(w).expect("encode"),
                "{cam}: bytes of message {i}"
            );
        }
    }
    assert!(
        want_in.iter().any(|t| t.tracks.len() >= 10),
        "the scene should hold many tracks"
    );
    // Apart from the camera name, shuffled arrival gave exactly the in-order tracks.
    for (a, b) in got["inorder"].iter().zip(&got["shuffled"]) {
        let mut b = b.1.clone();
        b.camera = "inorder".into();
        assert_eq!(a.1, b);
    }

    // One track_started event per confirmed track, per camera.
    let mut started: BTreeMap<String, usize> = BTreeMap::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while started.values().sum::<usize>() < started_in + started_sh {
            let Some(m) = events_sub.next().await else {
                break;
            };
            let e: Event = decode(&m.payload).expect("Event");
            *started.entry(e.camera.unwrap_or_default()).or_default() += 1;
        }
    })
    .await;
    assert_eq!(started.get("inorder").copied().unwrap_or(0), started_in);
    assert_eq!(started.get("shuffled").copied().unwrap_or(0), started_sh);

    // The status API saw the reordering and dropped nothing as late (the
    // counters are updated just after the last publish: poll for them).
    let v = eventually(Duration::from_secs(20), "tracking status", || {
        let (code, body) = http_get(api, "/api/v1/spatial/stats");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let tr = &v["tracking"];
        (code == 200
            && tr["inorder"]["processed"] == FRAMES
            && tr["shuffled"]["processed"] == FRAMES)
            .then_some(v)
    });
    let tr = &v["tracking"];
    assert_eq!(tr["inorder"]["late"], 0, "{v}");
    assert_eq!(tr["shuffled"]["late"], 0, "{v}");
    assert_eq!(tr["inorder"]["reordered"], 0, "{v}");
    assert!(tr["shuffled"]["reordered"].as_u64().unwrap_or(0) > 0, "{v}");

    nvr.interrupt();
    assert_eq!(nvr.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_twice_is_byte_identical_to_live_tracks() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nvr, _api) = start_run(&server, dir.path(), &["porch"]);
    let watcher = server.client().await;
    let mut tracks_sub = watcher
        .subscribe("nvr.tracks.porch")
        .await
        .expect("subscribe");
    watcher.flush().await.expect("flush");

    let dets = scene("porch");
    let js = jetstream::new(server.client().await);
    for &i in &shuffled(FRAMES) {
        publish(&js, &dets[i]).await;
    }
    let live = collect_tracks(&mut tracks_sub, &["porch"], FRAMES).await;
    let live: Vec<Vec<u8>> = live
        .get("porch")
        .map(|v| v.iter().map(|(b, _)| b.clone()).collect())
        .unwrap_or_default();
    assert_eq!(live.len(), FRAMES);
    nvr.interrupt();
    assert_eq!(nvr.wait_exit(Duration::from_secs(10)), Some(0));

    // `nvr replay <camera>` (as README shows) and `--camera <camera>`.
    let replay = |camera: &[&str]| {
        let url = [
            "--hex",
            "--config",
            "config.yaml",
            "--nats-url",
            server.url.as_str(),
        ];
        let (code, out, err) = nvr_output(
            &[&["replay"][..], camera, &url[..]].concat(),
            dir.path(),
            &[],
        );
        assert_eq!(code, 0, "{err}");
        out
    };
    let first = replay(&["porch"]);
    let second = replay(&["--camera", "porch"]);
    assert_eq!(first, second, "two replays differ");
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), FRAMES, "{err}", err = first);
    for (i, (line, live)) in lines.iter().zip(&live).enumerate() {
        let hex: String = live.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(*line, hex, "replayed message {i} differs from the live one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_window_with_changed_settings_stays_off_the_live_subjects() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nvr, _api) = start_run(&server, dir.path(), &["porch", "yard"]);
    let watcher = server.client().await;
    let mut live_sub = watcher.subscribe("nvr.tracks.>").await.expect("subscribe");
    watcher.flush().await.expect("flush");
    let js = jetstream::new(server.client().await);
    for cam in ["porch", "yard"] {
        for d in scene(cam) {
            publish(&js, &d).await;
        }
    }
    let live = collect_tracks(&mut live_sub, &["porch", "yard"], FRAMES).await;
    assert_eq!(live.get("yard").map(Vec::len), Some(FRAMES));
    let run = |extra: &[&str]| {
        let base = [
            "replay",
            "--config",
            "config.yaml",
            "--nats-url",
            server.url.as_str(),
        ];
        let (code, out, err) = nvr_output(&[&base[..], extra].concat(), dir.path(), &[]);
        assert_eq!(code, 0, "{err}");
        (out, err)
    };

    // Both cameras, the whole window, into a JSON-lines file: tracks and
    // events, the tracks equal to the live ones.
    let out = dir.path().join("replay.jsonl");
    let (_, err) = run(&["--from", "-10m", "--out", out.to_str().expect("utf-8")]);
    assert!(err.contains("2 camera(s)"), "{err}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .expect("replay file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let tracks: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["subject"] == "nvr.tracks.yard")
        .collect();
    assert_eq!(tracks.len(), FRAMES);
    for (i, (r, (_, l))) in tracks.iter().zip(&live["yard"]).enumerate() {
        let r: CameraTracks = serde_json::from_value(r["message"].clone()).expect("tracks");
        assert_eq!(&r, l, "yard message {i}");
    }
    let started = lines
        .iter()
        .filter(|l| l["subject"] == "nvr.events.track_started.porch")
        .count();
    assert!(started >= 5, "{started} track_started events");

    // A window that ends half-way holds half the frames.
    let half = scene("porch")[FRAMES / 2].ts_ns;
    let out_half = dir.path().join("half.jsonl");
    run(&[
        "--camera",
        "porch",
        "--to",
        &format!("{}", half as f64 / 1e9),
        "--out",
        out_half.to_str().expect("utf-8"),
    ]);
    let n = std::fs::read_to_string(&out_half)
        .expect("file")
        .lines()
        .filter(|l| l.contains("\"subject\":\"nvr.tracks.porch\""))
        .count();
    assert!(
        (FRAMES / 2 - 1..=FRAMES / 2 + 1).contains(&n),
        "{n} tracks before the middle"
    );

    // A changed parameter, published under another prefix: different
    // tracks there, nothing on the live subjects.
    let mut replayed = watcher
        .subscribe("replay.tracks.porch")
        .await
        .expect("subscribe");
    watcher.flush().await.expect("flush");
    run(&["porch", "--set", "tracking.min_hits=6", "--into", "replay"]);
    let mut got = Vec::new();
    while got.len() < FRAMES {
        let m = tokio::time::timeout(Duration::from_secs(20), replayed.next())
            .await
            .expect("replayed tracks")
            .expect("subscription");
        got.push(nvr_subjects::decode::<CameraTracks>(&m.payload).expect("tracks"));
    }
    let differs = got.iter().zip(&live["porch"]).any(|(r, (_, l))| r != l);
    assert!(
        differs,
        "min_hits 6 gave the same tracks as the live default"
    );
    let stray = tokio::time::timeout(Duration::from_millis(500), live_sub.next()).await;
    assert!(
        stray.is_err(),
        "the live subjects received a message during the replay"
    );
    let (code, _, err) = nvr_output(
        &["replay", "--nats-url", server.url.as_str(), "--into", "nvr"],
        dir.path(),
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("live prefix"), "{err}");
    nvr.interrupt();
    assert_eq!(nvr.wait_exit(Duration::from_secs(10)), Some(0));
}
