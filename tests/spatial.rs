//! Spatial tracking through NATS: two `nvr spatial` shard nodes with
//! disjoint camera sets fed by `nvr sim`, summed by the main API; and, with
//! `nvr run`, one walker seen by two overlapping cameras keeps one global
//! identity while a walker crossing a blind gap keeps it too and produces
//! exactly one `handoff` event on `nvr.events.handoff.<shard>`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use nvr_subjects::{
    decode, encode, event_kind, msg_id, subjects, DetectedObject, Detections, Event, SpatialTracks,
    SCHEMA_VERSION,
};
use serde_json::Value;

fn get_json(port: u16, path: &str) -> Option<Value> {
    let (code, body) = http_get(port, path);
    if code != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spatial_shards_are_summed_by_the_main_api() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let sim_dir = d.join("sim");
    let sim_args = ["--preset", "clean", "--seed", "4", "--duration-s", "20"];

    // The simulator writes the floor and calibrated cameras as config.
    let mut args = vec![
        "sim",
        "--no-publish",
        "--out",
        sim_dir.to_str().expect("utf-8"),
    ];
    args.extend(sim_args);
    let (code, out, err) = nvr_output(&args, d, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let sim_cfg = std::fs::read_to_string(sim_dir.join("config.yaml")).expect("sim config");
    for f in ["floor_gt.txt", "cam1.gt.txt", "cam4.gt.txt"] {
        assert!(sim_dir.join(f).is_file(), "{f} not written");
    }
    let api = free_port();
    let cfg = write_config(
        d,
        &format!("{sim_cfg}api:\n  address: \"127.0.0.1:{api}\"\nspatial:\n  embedded: false\n"),
    );
    let cfg = cfg.to_str().expect("utf-8");
    let url = server.url.as_str();

    let shards = [("front", "cam1,cam2"), ("back", "cam3,cam4")];
    let mut nodes = Vec::new();
    for (shard, cams) in shards {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut p = NvrProcess::start(
            &[
                "spatial",
                "--config",
                cfg,
                "--nats-url",
                url,
                "--shard",
                shard,
                "--cameras",
                cams,
                "--address",
                &addr,
            ],
            d,
            &[],
        );
        p.wait_for_log("spatial node running", Duration::from_secs(60));
        nodes.push((shard, cams, port, p));
    }
    let mut main = NvrProcess::start(&["run", "--config", cfg, "--nats-url", url], d, &[]);
    main.wait_for_log("nvr running", Duration::from_secs(60));

    // Publish the same simulation as fast as possible.
    let mut args = vec!["sim", "--speed", "0", "--config", cfg, "--nats-url", url];
    args.extend(sim_args);
    let (code, out, err) = nvr_output(&args, d, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("published 800 detections messages (cam1 200, cam2 200, cam3 200, cam4 200)"),
        "{out}"
    );

    // Once every message is in, the figures are stable: the main API's
    // per-shard entries equal what each node serves itself.
    let (doc, per_node) = eventually(Duration::from_secs(60), "both shards fed", || {
        let doc = get_json(api, "/api/v1/spatial/stats")?;
        let shards = doc["shards"].as_array()?;
        if shards.len() != 2 || shards.iter().any(|s| s["ingested"] != 400) {
            return None;
        }
        for cam in ["cam1", "cam2", "cam3", "cam4"] {
            if doc["tracking"][cam]["processed"] != 200 {
                return None;
            }
        }
        let mut per_node = BTreeMap::new();
        for (shard, _, port, _) in &nodes {
            let own = get_json(*port, "/stats")?;
            let mine = shards.iter().find(|s| s["shard"] == *shard)?;
            let theirs = &own["shards"][0];
            for k in [
                "active_tracks",
                "total_tracks",
                "cycles",
                "handoffs_completed",
            ] {
                if mine[k] != theirs[k] {
                    return None;
                }
            }
            per_node.insert(shard.to_string(), own);
        }
        Some((doc, per_node))
    });
    // Each spatial node's own /metrics, as Prometheus accepts them.
    for (shard, _, port, _) in &nodes {
        let (code, scrape) = http_get(*port, "/metrics");
        assert_eq!(code, 200, "{scrape}");
        promtool_check(&scrape);
        let cycles = "nvr_spatial_cycles_total{node=";
        let own = format!("shard=\"{shard}\"");
        assert!(scrape.contains(cycles) && scrape.contains(&own), "{scrape}");
    }
    let shards = doc["shards"].as_array().expect("shards");
    let names: BTreeSet<&str> = shards.iter().filter_map(|s| s["shard"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["back", "front"]), "{doc}");
    assert_eq!(doc["nodes"], 2, "{doc}");
    for key in ["active_tracks", "total_tracks", "handoffs_completed"] {
        let sum: u64 = shards.iter().filter_map(|s| s[key].as_u64()).sum();
        assert_eq!(doc[key].as_u64(), Some(sum), "{key}: {doc}");
        let nodes_sum: u64 = per_node.values().filter_map(|n| n[key].as_u64()).sum();
        assert_eq!(nodes_sum, sum, "{key}: per-node /stats vs main API");
    }
    for s in shards {
        assert!(s["total_tracks"].as_u64().unwrap_or(0) > 0, "{s}");
        // Once the input has stopped, people may already be lost (not on
        // the floor now) but are still held for re-identification.
        let held =
            s["active_tracks"].as_u64().unwrap_or(0) + s["lost_tracks"].as_u64().unwrap_or(0);
        assert!(held > 0, "{s}");
    }
    // Per-camera trackers of both nodes appear too (checked above: 200 each).
    assert_eq!(
        doc["tracking"].as_object().map(|m| m.len()),
        Some(4),
        "{doc}"
    );
    // Each tracker shows the appearance gates its own-person matches allow:
    // the simulator sends embeddings, so every camera has sampled some, and
    // a gate is never above the configured one.
    for cam in ["cam1", "cam2", "cam3", "cam4"] {
        let a = &doc["tracking"][cam]["appearance"];
        assert!(a["samples"].as_u64().unwrap_or(0) > 0, "{cam}: {doc}");
        let gate = a["appearance_gate"].as_f64().unwrap_or(f64::NAN);
        assert!(gate > 0.0 && gate <= 0.6 + 1e-6, "{cam}: {a}");
        let median = a["median"].as_f64().unwrap_or(f64::NAN);
        assert!((-1.0..=1.0).contains(&median), "{cam}: {a}");
    }

    // The current global tracks of both shards, each from its own cameras.
    let tracks = get_json(api, "/api/v1/spatial/tracks").expect("tracks");
    let list = tracks["tracks"].as_array().expect("tracks list");
    let mut node_total = 0;
    for (_, _, port, _) in &nodes {
        let v = get_json(*port, "/tracks").expect("node tracks");
        let n = v["tracks"]
            .as_array()
            .map(Vec::len)
            .expect("node tracks list");
        assert_eq!(v["count"], n, "the API's shape: {v}");
        node_total += n;
    }
    assert!(!list.is_empty(), "{tracks}");
    assert_eq!(list.len(), node_total, "{tracks}");
    assert_eq!(tracks["count"], list.len());
    let sets: Vec<BTreeSet<&str>> = nodes.iter().map(|n| n.1.split(',').collect()).collect();
    let mut seen = [0usize; 2];
    for t in list {
        let cams: BTreeSet<&str> = t["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .filter_map(|s| s["camera"].as_str())
            .collect();
        let owner = sets.iter().position(|s| cams.is_subset(s));
        assert!(owner.is_some(), "a track mixes shards: {t}");
        if let Some(i) = owner.filter(|_| !cams.is_empty()) {
            seen[i] += 1;
        }
    }
    assert!(
        seen.iter().all(|n| *n > 0),
        "tracks of both shards: {seen:?}"
    );

    main.interrupt();
    assert_eq!(main.wait_exit(Duration::from_secs(10)), Some(0));
    for (_, _, _, p) in &mut nodes {
        p.interrupt();
        assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
    }
}

/// Pixels per metre of the test cameras: camera `ox` sees floor x in
/// `[ox, ox + 12.8]`, y in `[0, 7.2]` (1280 x 720).
const PX: f64 = 100.0;
const DT: u64 = 100_000_000;
const FRAMES: u64 = 200;

fn camera_yaml(id: &str, floor: &str, ox: f64) -> String {
    format!(
        "  - id: {id}\n    floor: {floor}\n    calibration:\n      homography: [[{s}, 0.0, {ox}], [0.0, {s}, 0.0], [0.0, 0.0, 1.0]]\n",
        s = 1.0 / PX
    )
}

/// A person standing at floor `(x, y)` as camera `ox` detects them.
fn person(ox: f64, x: f64, y: f64) -> DetectedObject {
    let (u, v) = ((x - ox) * PX, y * PX);
    DetectedObject {
        class_id: 0,
        label: "person".into(),
        score: 0.9,
        bbox: [
            ((u - 20.0) / 1280.0) as f32,
            ((v - 150.0) / 720.0) as f32,
            ((u + 20.0) / 1280.0) as f32,
            (v / 720.0) as f32,
        ],
        embedding: None,
    }
}

fn detections(camera: &str, i: u64, objects: Vec<DetectedObject>) -> Detections {
    Detections {
        v: SCHEMA_VERSION,
        camera: camera.into(),
        seq: i,
        ts_ns: *T0 + i * DT,
        width: 1280,
        height: 720,
        model: "test".into(),
        backend: "test".into(),
        worker: "test".into(),
        latency_ms: 0.0,
        queue_ms: 0.0,
        objects,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_gives_one_identity_and_a_blind_gap_one_handoff() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port();
    // Floor "hall": cameras overlapping on x 8..12.8. Floor "corridor":
    // cameras with a blind gap on x 12.8..16. One shard per floor.
    let yaml = format!(
        "api:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  embedded: false\n\
         floors:\n  - id: hall\n    size_m: [21, 8]\n  - id: corridor\n    size_m: [29, 8]\n\
         cameras:\n{}{}{}{}",
        camera_yaml("hall_a", "hall", 0.0),
        camera_yaml("hall_b", "hall", 8.0),
        camera_yaml("corr_a", "corridor", 0.0),
        camera_yaml("corr_c", "corridor", 16.0),
    );
    let cfg = write_config(dir.path(), &yaml);
    let mut nvr = NvrProcess::start(
        &[
            "run",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--nats-url",
            server.url.as_str(),
        ],
        dir.path(),
        &[],
    );
    nvr.wait_for_log("nvr running", Duration::from_secs(60));

    let watcher = server.client().await;
    let mut spatial_sub = watcher
        .subscribe(subjects::spatial_tracks("*"))
        .await
        .expect("subscribe");
    watcher.flush().await.expect("flush");

    // Publish frame by frame, every camera each frame (empty when unseen).
    let js = jetstream::new(server.client().await);
    for i in 0..FRAMES {
        let hall_x = 1.0 + 0.09 * i as f64; // 1 .. 19 m at 0.9 m/s
        let hall_y = 4.0 + 0.02 * (i as f64 * 0.3).sin();
        let corr_x = 2.0 + 0.1 * i as f64; // 2 .. 22 m at 1 m/s
        let frame = [
            (
                "hall_a",
                (hall_x < 12.6).then(|| person(0.0, hall_x + 0.1, hall_y)),
            ),
            (
                "hall_b",
                (hall_x > 8.2).then(|| person(8.0, hall_x - 0.1, hall_y + 0.05)),
            ),
            ("corr_a", (corr_x < 12.5).then(|| person(0.0, corr_x, 3.0))),
            ("corr_c", (corr_x > 16.3).then(|| person(16.0, corr_x, 3.0))),
        ];
        for (cam, obj) in frame {
            let d = detections(cam, i, obj.into_iter().collect());
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", msg_id(cam, i).as_str());
            headers.insert("Content-Type", "application/msgpack");
            js.publish_with_headers(
                subjects::detections(cam),
                headers,
                encode(&d).expect("encode").into(),
            )
            .await
            .expect("publish")
            .await
            .expect("publish ack");
        }
    }

    // Read the published global tracks until both shards reach the end.
    let end = *T0 + (FRAMES - 5) * DT;
    let mut ids: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut last_ts: BTreeMap<String, u64> = BTreeMap::new();
    let mut fused = false;
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        while ["hall", "corridor"]
            .iter()
            .any(|s| last_ts.get(*s).copied().unwrap_or(0) < end)
        {
            let Some(m) = spatial_sub.next().await else {
                break;
            };
            let st: SpatialTracks = decode(&m.payload).expect("SpatialTracks");
            for t in &st.tracks {
                ids.entry(st.shard.clone()).or_default().insert(t.global_id);
                let cams: BTreeSet<&str> = t.sources.iter().map(|s| s.camera.as_str()).collect();
                fused |= cams.contains("hall_a") && cams.contains("hall_b");
            }
            last_ts.insert(st.shard.clone(), st.ts_ns);
        }
    })
    .await;
    assert!(reached.is_ok(), "spatial output stopped at {last_ts:?}");
    assert_eq!(ids.get("hall").map(BTreeSet::len), Some(1), "{ids:?}");
    assert_eq!(ids.get("corridor").map(BTreeSet::len), Some(1), "{ids:?}");
    assert!(
        fused,
        "no global track was seen by both hall cameras at once"
    );

    // In the corridor, exactly one handoff, from the first camera to the
    // second, after the walker's time in the blind gap (about 3.8 s at
    // 1 m/s); in the hall, the walker passing from one camera to the other
    // through the overlap is one handoff too. Both were published long
    // before the last cycle read above; the events stream holds every event.
    let handoffs = stored_handoffs(&js).await;
    let of = |shard: &str| -> Vec<&Event> {
        handoffs
            .iter()
            .filter(|h| h.shard.as_deref() == Some(shard))
            .collect()
    };
    let corridor = of("corridor");
    assert_eq!(corridor.len(), 1, "{handoffs:?}");
    let h = corridor[0];
    assert_eq!(h.kind, event_kind::HANDOFF);
    assert_eq!(h.from_camera.as_deref(), Some("corr_a"));
    assert_eq!(h.to_camera.as_deref(), Some("corr_c"));
    assert_eq!(h.global_id, ids["corridor"].iter().next().copied());
    let gap = h.gap_ms.unwrap_or(0);
    assert!((3_000..=4_800).contains(&gap), "gap {gap} ms");
    let hall = of("hall");
    assert_eq!(hall.len(), 1, "{handoffs:?}");
    assert_eq!(hall[0].from_camera.as_deref(), Some("hall_a"));
    assert_eq!(hall[0].to_camera.as_deref(), Some("hall_b"));
    assert_eq!(hall[0].global_id, ids["hall"].iter().next().copied());
    assert_eq!(handoffs.len(), 2, "{handoffs:?}");

    let stats = eventually(Duration::from_secs(20), "spatial stats", || {
        get_json(api, "/api/v1/spatial/stats").filter(|v| v["handoffs_completed"] == 2)
    });
    assert_eq!(stats["total_tracks"], 2, "{stats}");
    assert_eq!(stats["handoff_failures"], 0, "{stats}");

    nvr.interrupt();
    assert_eq!(nvr.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Every handoff event stored in `NVR_EVENTS`.
async fn stored_handoffs(js: &jetstream::Context) -> Vec<Event> {
    stored_payloads(
        js,
        nvr_subjects::streams::EVENTS,
        subjects::events(event_kind::HANDOFF, ">"),
    )
    .await
    .iter()
    .map(|b| decode(b).expect("Event"))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_states_follow_the_person_and_a_python_client_reads_the_floor() {
    let python = require(&data().join("pyenv/bin/python"), "the python environment");
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(dir.path(), &hall_config(&server.url, api, ""));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut spatial = client
        .subscribe(subjects::spatial_tracks("lobby"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    let mut reader = std::process::Command::new(python)
        .arg(root().join("subjects/python/floor_now.py"))
        .args(["--url", &server.url, "--count", "12", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start floor_now.py");
    // The client's subscription is in place before the first detection.
    let stderr = reader.stderr.take().expect("floor_now.py stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("floor_now.py says it listens within 30 s");
    assert!(ready.starts_with("listening on"), "{ready}");

    let publish = |d: Detections| {
        let js = js.clone();
        async move {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", msg_id(&d.camera, d.seq).as_str());
            js.publish_with_headers(subjects::detections("hall"), h, encode(&d).unwrap().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    // A walker for 4 s, then nobody for 4 s (the person left mid-view).
    for seq in 1..=20 {
        publish(walker("hall", seq, 0.3 + 0.005 * seq as f32)).await;
    }
    for seq in 21..=40 {
        let mut d = walker("hall", seq, 0.0);
        d.objects.clear();
        publish(d).await;
    }
    let gone_at = *T0 + 21 * WALK_DT;
    let mut states: BTreeMap<u64, String> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while states
        .keys()
        .last()
        .is_none_or(|ts| *ts < *T0 + 38 * WALK_DT)
    {
        let m = tokio::time::timeout_at(deadline, spatial.next())
            .await
            .expect("cycles until the end of the input")
            .unwrap();
        let v: Value = serde_json::to_value(decode::<SpatialTracks>(&m.payload).unwrap()).unwrap();
        let ts = v["ts_ns"].as_u64().unwrap();
        let st = v["tracks"][0]["state"]
            .as_str()
            .unwrap_or("none")
            .to_string();
        states.insert(ts, st);
    }
    let seen_while_walking: BTreeSet<&str> = states
        .range(*T0 + 5 * WALK_DT..gone_at)
        .map(|(_, s)| s.as_str())
        .collect();
    assert_eq!(
        seen_while_walking,
        BTreeSet::from(["observed"]),
        "{states:?}"
    );
    let after: Vec<&str> = states
        .range(gone_at + 1_500_000_000..)
        .map(|(_, s)| s.as_str())
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|s| *s == "lost"),
        "lost once the coasting time is over: {states:?}"
    );
    let stats = eventually(Duration::from_secs(10), "stats follow the states", || {
        let s = get_json(api, "/api/v1/spatial/stats")?;
        (s["active_tracks"] == 0).then_some(s)
    });
    assert_eq!(stats["shards"][0]["lost_tracks"], 1, "{stats}");
    assert_eq!(
        stats["handoff_failures"], 0,
        "one camera has no handoffs to fail: {stats}"
    );

    let out = reader
        .wait_with_output()
        .expect("floor_now.py ends after --count cycles");
    let text = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<String> = rx.try_iter().collect();
    assert!(out.status.success(), "{text}{errors:?}");
    let on_floor: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    assert_eq!(on_floor.len(), 12, "{text}");
    assert!(
        on_floor
            .iter()
            .any(|c| c["on_floor"][0]["state"] == "observed" && c["on_floor"][0]["global_id"] == 1),
        "{text}"
    );
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

/// The SpatialTracks payloads a fresh `nvr run` publishes for two overlapping
/// cameras' walker input, up to the input's last time; `paced` interleaves
/// the cameras in time order with pauses, otherwise all of one camera is
/// published before all of the other, as fast as possible. Also returns the
/// spatial tracks `nvr replay --shard lobby` computes from the stored
/// detections afterwards.
async fn spatial_output(paced: bool) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cal = "    floor: lobby\n    calibration:\n      points:\n        - { image: [0, 480], floor: [0.0, 0.0] }\n        - { image: [640, 480], floor: [10.0, 0.0] }\n        - { image: [640, 0], floor: [10.0, 10.0] }\n        - { image: [0, 0], floor: [0.0, 10.0] }\n";
    let yaml = format!(
        "nats:\n  embedded: false\n  url: \"{}\"\napi:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  embedded: false\nfloors:\n  - id: lobby\n    size_m: [10.0, 10.0]\ncameras:\n  - id: a\n{cal}  - id: b\n{cal}",
        server.url
    );
    let cfg = write_config(dir.path(), &yaml);
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut spatial = client
        .subscribe(subjects::spatial_tracks("lobby"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    const N: u64 = 30;
    let msg = |cam: &str, seq: u64| {
        // Two people, each seen by both cameras.
        let mut d = walker(cam, seq, 0.2 + 0.004 * seq as f32);
        let mut other = d.objects[0].clone();
        other.bbox = [
            0.7 - 0.004 * seq as f32,
            0.35,
            0.78 - 0.004 * seq as f32,
            0.85,
        ];
        d.objects.push(other);
        d
    };
    let order: Vec<(&str, u64)> = if paced {
        (1..=N).flat_map(|s| [("a", s), ("b", s)]).collect()
    } else {
        (1..=N)
            .map(|s| ("a", s))
            .chain((1..=N).map(|s| ("b", s)))
            .collect()
    };
    for (cam, seq) in order {
        let d = msg(cam, seq);
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", msg_id(cam, seq).as_str());
        js.publish_with_headers(subjects::detections(cam), h, encode(&d).unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
        if paced && cam == "b" {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    let last = *T0 + N * WALK_DT;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout_at(deadline, spatial.next())
            .await
            .expect("cycles up to the last input time")
            .unwrap();
        let t: SpatialTracks = decode(&m.payload).unwrap();
        if t.ts_ns <= last {
            out.push(m.payload.to_vec());
        }
        if t.ts_ns >= last {
            break;
        }
    }
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
    let (code, text, err) = nvr_output(
        &[
            "replay",
            "--shard",
            "lobby",
            "--hex",
            "--config",
            cfg.to_str().unwrap(),
        ],
        dir.path(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let replayed: Vec<Vec<u8>> = hex_lines(&text)
        .into_iter()
        .filter(|b| decode::<SpatialTracks>(b).is_ok())
        .collect();
    (out, replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_and_unpaced_publishing_give_byte_identical_output_and_replay_equals_live() {
    let (paced, paced_replay) = spatial_output(true).await;
    let (unpaced, unpaced_replay) = spatial_output(false).await;
    for (live, replay) in [(&paced, &paced_replay), (&unpaced, &unpaced_replay)] {
        assert_eq!(live.len(), replay.len(), "cycles replayed");
        for (i, (a, b)) in live.iter().zip(replay).enumerate() {
            assert_eq!(
                a,
                b,
                "replayed cycle {i} differs:\n{:?}\n{:?}",
                decode::<SpatialTracks>(a).unwrap(),
                decode::<SpatialTracks>(b).unwrap()
            );
        }
    }
    assert!(paced.len() >= 25, "{} cycles", paced.len());
    let ids = |v: &[Vec<u8>]| {
        v.iter()
            .map(|b| decode::<SpatialTracks>(b).unwrap().tracks.len())
            .max()
    };
    assert_eq!(ids(&paced), Some(2), "two people, two identities");
    assert_eq!(paced.len(), unpaced.len());
    for (i, (a, b)) in paced.iter().zip(&unpaced).enumerate() {
        assert_eq!(
            a,
            b,
            "cycle {i} differs:\n{:?}\n{:?}",
            decode::<SpatialTracks>(a).unwrap(),
            decode::<SpatialTracks>(b).unwrap()
        );
    }
}
