//! The health page in a real headless browser (Debian's chromium over the
//! DevTools protocol): `nvr run` with a real video camera (vtest.avi through
//! ffmpeg and YOLOX-Nano) and four simulated cameras on a floor fed by
//! `nvr sim`. The test asserts on what the page shows (status, the "When to
//! Scale" table, camera cards with their latest frame, identities on the
//! floor plan that the bus published, handoffs) and writes screenshots to
//! `<target>/tmp/ui/` as artifacts.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::browser::Browser;
use common::*;
use futures::StreamExt;

/// Where the screenshots go.
fn artifacts() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_page_shows_cameras_floor_plan_and_verdicts() {
    let model = require(&data().join("models/yolox_nano_dynamic.onnx"), "YOLOX-Nano");
    let footage = require(&data().join("samples/vtest.avi"), "sample footage");
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let sim_args = ["--preset", "clean", "--seed", "6", "--duration-s", "60"];
    let mut args = vec!["sim", "--no-publish", "--out", "sim"];
    args.extend(sim_args);
    let (code, out, err) = nvr_output(&args, d, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let sim_cfg = std::fs::read_to_string(d.join("sim/config.yaml")).expect("sim config");
    let detection = format!(
        "detection:\n  models_path: \"{}\"\n  model: yolox_nano_dynamic\n  input_size: 320\n  workers: 1\n",
        model.parent().expect("models dir").display()
    );
    assert!(
        sim_cfg.contains("detection:\n  embedded: false\n"),
        "{sim_cfg}"
    );
    let api = free_port();
    let cfg = format!(
        "nats:\n  embedded: false\n  url: \"{}\"\napi:\n  address: \"127.0.0.1:{api}\"\n{}  - id: vt\n    url: \"{}\"\n    loop: true\n    detection:\n      fps: 2\n",
        server.url,
        sim_cfg.replace("detection:\n  embedded: false\n", &detection),
        footage.display()
    );
    let cfg = write_config(d, &cfg);
    let cfg = cfg.to_str().expect("utf-8");
    let mut main = NvrProcess::start(&["run", "--config", cfg], d, &[]);
    main.wait_for_log("nvr running", Duration::from_secs(120));

    // What the bus publishes, to compare with what the page draws.
    let client = server.client().await;
    let mut spatial = client
        .subscribe(nvr_subjects::subjects::all::SPATIAL)
        .await
        .expect("subscribe");
    let seen_ids = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::<u64>::new()));
    let ids = seen_ids.clone();
    tokio::spawn(async move {
        while let Some(m) = spatial.next().await {
            if let Ok(t) = nvr_subjects::decode::<nvr_subjects::SpatialTracks>(&m.payload) {
                if let Ok(mut ids) = ids.lock() {
                    ids.extend(t.tracks.iter().map(|g| g.global_id));
                }
            }
        }
    });

    // The simulated people walk, in real time, while the page is open.
    let mut args = vec!["sim", "--speed", "1", "--config", cfg];
    args.extend(sim_args);
    let _sim = NvrProcess::start(&args, d, &[]);

    let mut b = Browser::launch(1400, 1600);
    b.navigate(&format!("http://127.0.0.1:{api}/"));
    let explain = "JSON.stringify({status: document.querySelector('#status')?.textContent, \
                   polls: window.nvr?.polls, cycles: window.nvr?.cycles, handoffs: window.nvr?.handoffs, \
                   errors: window.nvr?.errors, tracks: document.querySelectorAll('g.track').length})";
    let long = Duration::from_secs(90);

    // Status and the "When to Scale" table, filled from the health document.
    let status = b.wait_for(
        "window.nvr && nvr.polls > 0 && document.querySelector('#status').dataset.status",
        long,
        "the status badge",
        explain,
    );
    assert!(
        ["ok", "degraded"].contains(&status.as_str().unwrap_or("")),
        "status {status}"
    );
    let rows =
        b.eval("[...document.querySelectorAll('#scaling tbody tr')].map(r => r.dataset.indicator)");
    let rows: Vec<String> = serde_json::from_value(rows).expect("indicators");
    assert_eq!(rows.len(), 11, "{rows:?}");
    for want in [
        "Detection latency",
        "Detection queue",
        "Active tracks",
        "Cross-camera handoff failures",
    ] {
        assert!(
            rows.iter().any(|r| r == want),
            "{want} missing from {rows:?}"
        );
    }
    let latency_value = b.wait_for(
        "[...document.querySelectorAll('#scaling tbody tr')].find(r => r.dataset.indicator === 'Detection latency' && r.children[3].textContent !== '–')?.children[3].textContent",
        long,
        "a detection latency value in the scaling table",
        explain,
    );
    assert!(
        latency_value.as_str().unwrap_or("").ends_with("ms"),
        "{latency_value}"
    );

    // Camera cards: the four simulated cameras say they have no video; the
    // real one shows its latest frame.
    let cards = b.eval(
        "[...document.querySelectorAll('#cameras .camera')].map(c => c.dataset.camera).sort()",
    );
    assert_eq!(
        cards,
        serde_json::json!(["cam1", "cam2", "cam3", "cam4", "vt"])
    );
    let width = b.wait_for(
        "(() => { const i = document.querySelector('img[data-camera=vt]'); return i && i.dataset.loaded >= 2 && i.naturalWidth; })()",
        long,
        "the latest frame of camera vt",
        explain,
    );
    assert!(width.as_u64().unwrap_or(0) >= 320, "frame width {width}");

    // The same picture over HTTP: a JPEG with the camera's tracks drawn.
    let (code, head, jpeg) = eventually(long, "a frame with boxes drawn", || {
        let r = http_get_bytes(api, "/api/v1/cameras/vt/latest.jpg");
        let head = r.1.to_ascii_lowercase();
        let boxes: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("nvr-boxes: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        (head.contains("nvr-overlay: tracks") && boxes > 0).then_some(r)
    });
    assert_eq!(code, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/jpeg"),
        "{head}"
    );
    let img = nvr_actors::detect::image::decode_jpeg(&jpeg).expect("a JPEG");
    assert!(
        img.width >= 320 && img.height >= 240,
        "{}x{}",
        img.width,
        img.height
    );
    let (code, body) = http_get(api, "/api/v1/cameras/nosuch/latest.jpg");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no camera \\\"nosuch\\\""), "{body}");

    // Floor plan: identities drawn from the live feed, each one the bus
    // published; trails grow; handoffs are listed as they happen.
    b.wait_for(
        "document.querySelectorAll('svg[data-floor] g.track[data-state=observed]').length >= 3",
        long,
        "observed identities on the floor plan",
        explain,
    );
    let drawn = b.eval("[...document.querySelectorAll('g.track')].map(g => Number(g.dataset.id))");
    let drawn: Vec<u64> = serde_json::from_value(drawn).expect("ids");
    let published = seen_ids.lock().expect("ids").clone();
    for id in &drawn {
        assert!(
            published.contains(id),
            "page draws #{id}, which the bus never published ({published:?})"
        );
    }
    b.wait_for(
        "[...document.querySelectorAll('g.track polyline')].some(p => p.points.length >= 5)",
        long,
        "a trail of five positions",
        explain,
    );
    b.wait_for(
        "nvr.handoffs > 0 && document.querySelectorAll('#handoffs li').length > 0",
        long,
        "a handoff in the list",
        explain,
    );
    let first = b.eval("document.querySelector('#handoffs li').textContent");
    assert!(first.as_str().unwrap_or("").contains('→'), "{first}");

    // Spatial and detection sections filled from their documents.
    let shards = b.eval("document.querySelectorAll('#shards tbody tr').length");
    assert!(shards.as_u64().unwrap_or(0) >= 1, "{shards}");
    let nodes = b.eval("document.querySelectorAll('#detection-nodes tbody tr').length");
    assert_eq!(nodes, 1);
    let streams = b.eval(
        "[...document.querySelectorAll('#streams tbody tr')].map(r => r.children[0].textContent)",
    );
    assert!(streams.to_string().contains("DETECTIONS"), "{streams}");

    let out = artifacts();
    b.screenshot(None, &out.join("page.png"));
    b.screenshot(Some("#floors-section"), &out.join("floor-plan.png"));
    b.screenshot(Some(".camera[data-camera=vt]"), &out.join("camera-vt.png"));
    for f in ["page.png", "floor-plan.png", "camera-vt.png"] {
        let len = std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 5_000, "{f}: {len} bytes");
    }
    eprintln!("screenshots in {}", out.display());
    let errors = b.eval("nvr.errors");
    assert_eq!(errors, 0, "the page saw request errors");
}

/// Floors of the page benchmark, four cameras each.
const BENCH_FLOORS: usize = 4;
/// People per camera of the page benchmark (16 cameras: 200 in all).
const PEOPLE_PER_CAMERA: usize = 13;
/// Identities the benchmark waits for.
const BENCH_IDS: u64 = 190;

/// A 640x480 camera whose view is the 10 x 10 m square at `(ox, oy)`.
fn square_camera(id: &str, floor: &str, ox: f64, oy: f64) -> String {
    format!(
        "  - id: {id}\n    floor: {floor}\n    calibration:\n      points:\n        - {{ image: [0, 480], floor: [{ox}, {oy}] }}\n        - {{ image: [640, 480], floor: [{}, {oy}] }}\n        - {{ image: [640, 0], floor: [{}, {}] }}\n        - {{ image: [0, 0], floor: [{ox}, {}] }}\n",
        ox + 10.0,
        ox + 10.0,
        oy + 10.0,
        oy + 10.0
    )
}

/// One camera's people at frame `seq`: a grid, each walking to and fro.
fn crowd(camera: &str, seq: u64, ts_ns: u64, people: usize) -> nvr_subjects::Detections {
    let objects = (0..people)
        .map(|k| {
            let (col, row) = ((k % 4) as f32, (k / 4) as f32);
            let phase = (seq as f32 * 0.05 + k as f32).sin() * 0.03;
            let x = 0.1 + 0.22 * col + phase;
            let foot = 0.3 + 0.18 * row;
            nvr_subjects::DetectedObject {
                class_id: 0,
                label: "person".into(),
                score: 0.9,
                bbox: [x - 0.02, foot - 0.15, x + 0.02, foot],
                embedding: None,
            }
        })
        .collect();
    nvr_subjects::Detections {
        v: nvr_subjects::SCHEMA_VERSION,
        camera: camera.into(),
        seq,
        ts_ns,
        width: 640,
        height: 480,
        model: "bench".into(),
        backend: "cpu".into(),
        worker: "bench".into(),
        latency_ms: 1.0,
        queue_ms: 1.0,
        objects,
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Page load and scrape times with 16 cameras on 4 floors and 200 people on
/// the floor plans; writes `bench/results/ui.md` and `ui.json`. Run with
/// `bench/ui/run` (a release build; `NVR_BIN` names it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/ui/run"]
async fn page_load_with_16_cameras_and_200_identities() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let api = free_port();
    let mut cfg = format!(
        "nats:\n  embedded: false\n  url: \"{}\"\napi:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  embedded: false\nfloors:\n",
        server.url
    );
    for f in 0..BENCH_FLOORS {
        cfg += &format!("  - id: floor{f}\n    size_m: [20.0, 20.0]\n");
    }
    cfg += "cameras:\n";
    let mut cameras = Vec::new();
    for f in 0..BENCH_FLOORS {
        for c in 0..4 {
            let id = format!("f{f}c{c}");
            cfg += &square_camera(
                &id,
                &format!("floor{f}"),
                (c % 2) as f64 * 10.0,
                (c / 2) as f64 * 10.0,
            );
            cameras.push(id);
        }
    }
    let cfg = write_config(d, &cfg);
    let mut main = NvrProcess::start(&["run", "--config", cfg.to_str().expect("utf-8")], d, &[]);
    main.wait_for_log("nvr running", Duration::from_secs(60));

    // 16 cameras at 5 fps, 12-13 people each, in real time.
    let client = server.client().await;
    let js = async_nats::jetstream::new(client);
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        for seq in 1u64.. {
            tick.tick().await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64;
            for (i, cam) in cameras.iter().enumerate() {
                let people = if i < 200 - 12 * 16 {
                    PEOPLE_PER_CAMERA
                } else {
                    PEOPLE_PER_CAMERA - 1
                };
                let m = crowd(cam, seq, now, people);
                let body = nvr_subjects::encode(&m).expect("encode");
                if let Ok(ack) = js
                    .publish(nvr_subjects::subjects::detections(cam), body.into())
                    .await
                {
                    let _ = ack.await;
                }
            }
        }
    });
    let active = eventually(
        Duration::from_secs(90),
        "200 identities on the floors",
        || {
            let (code, body) = http_get(api, "/api/v1/spatial/stats");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let n = v["active_tracks"].as_u64()?;
            (code == 200 && n >= BENCH_IDS).then_some(n)
        },
    );

    // Scrapes: /metrics and the documents the page polls.
    let mut timings = serde_json::Map::new();
    for path in ["/metrics", "/api/v1/system/health", "/api/v1/spatial/stats"] {
        let mut ms: Vec<f64> = (0..30)
            .map(|_| {
                let t = std::time::Instant::now();
                let (code, _) = http_get(api, path);
                assert_eq!(code, 200, "{path}");
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        timings.insert(
            path.into(),
            serde_json::json!({"mean_ms": mean, "p50_ms": percentile(&mut ms, 0.5), "max_ms": percentile(&mut ms, 1.0)}),
        );
    }

    // Page loads: from navigation to the first filled poll and to every
    // identity drawn on the floor plans.
    let mut b = Browser::launch(1400, 1600);
    let (mut poll_ms, mut draw_ms, mut load_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut event_bytes = 0;
    let mut cold = serde_json::Value::Null;
    // The first load also starts chromium's own machinery: reported apart.
    for i in 0..11 {
        b.navigate("about:blank");
        b.navigate(&format!("http://127.0.0.1:{api}/"));
        let want = BENCH_IDS;
        let r = b.wait_for(
            &format!(
                "(() => {{ if (!window.nvr || nvr.polls < 1) return null; \
                 const d = nvr.draws.find(d => d[1] >= {want}); if (!d) return null; \
                 const n = performance.getEntriesByType('navigation')[0]; \
                 return {{poll: nvr.firstPollMs, draw: d[0], load: n.loadEventEnd, bytes: nvr.lastEventBytes}}; }})()"
            ),
            Duration::from_secs(30),
            "the page with every identity drawn",
            "JSON.stringify({polls: window.nvr?.polls, draws: window.nvr?.draws?.slice(-3)})",
        );
        eprintln!("load {i}: {r}");
        if i == 0 {
            cold = r;
            continue;
        }
        poll_ms.push(r["poll"].as_f64().expect("poll"));
        draw_ms.push(r["draw"].as_f64().expect("draw"));
        load_ms.push(r["load"].as_f64().expect("load"));
        event_bytes = r["bytes"].as_u64().unwrap_or(0);
    }
    publisher.abort();
    let stat = |v: &mut Vec<f64>| {
        serde_json::json!({"mean_ms": v.iter().sum::<f64>() / v.len() as f64,
                           "p50_ms": percentile(v, 0.5), "max_ms": percentile(v, 1.0)})
    };
    let doc = serde_json::json!({
        "cameras": 16, "floors": BENCH_FLOORS, "active_tracks": active,
        "nvr": nvr_bin().strip_prefix(root()).unwrap_or(&nvr_bin()).display().to_string(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "scrape": timings,
        "page_load_event": stat(&mut load_ms),
        "page_first_poll": stat(&mut poll_ms),
        "page_all_identities_drawn": stat(&mut draw_ms),
        "live_event_bytes_per_shard_cycle": event_bytes,
        "first_load_after_browser_start": cold,
    });
    let out = root().join("bench/results");
    std::fs::create_dir_all(&out).expect("results dir");
    std::fs::write(
        out.join("ui.json"),
        serde_json::to_string_pretty(&doc).expect("json"),
    )
    .expect("write");
    let f = |v: &serde_json::Value| {
        format!(
            "{:.1} / {:.1} / {:.1}",
            v["mean_ms"].as_f64().unwrap_or(0.0),
            v["p50_ms"].as_f64().unwrap_or(0.0),
            v["max_ms"].as_f64().unwrap_or(0.0)
        )
    };
    let md = format!(
        "# Health page and scrape times\n\n`bench/ui/run`: `nvr run` ({}) with 16 external cameras on {} floors fed over NATS at 5 fps, {} identities active on the floor plans; headless chromium on the same {}-core machine. Times in ms, mean / p50 / max.\n\n| what | ms |\n|---|---|\n| `GET /metrics` (30 scrapes) | {} |\n| `GET /api/v1/system/health` (30) | {} |\n| `GET /api/v1/spatial/stats` (30) | {} |\n| page load event (10 loads after the first) | {} |\n| page: first poll rendered | {} |\n| page: every identity drawn on the floor plans | {} |\n\nThe first load after chromium starts is left out of these (it took {:.0} ms to the load event and {:.0} ms until every identity was drawn). One live `tracks` event (one shard's cycle, {} identities per floor): {} bytes.\n",
        doc["nvr"].as_str().unwrap_or(""),
        BENCH_FLOORS,
        active,
        doc["cores"],
        f(&doc["scrape"]["/metrics"]),
        f(&doc["scrape"]["/api/v1/system/health"]),
        f(&doc["scrape"]["/api/v1/spatial/stats"]),
        f(&doc["page_load_event"]),
        f(&doc["page_first_poll"]),
        f(&doc["page_all_identities_drawn"]),
        cold["load"].as_f64().unwrap_or(0.0),
        cold["draw"].as_f64().unwrap_or(0.0),
        active / BENCH_FLOORS as u64,
        event_bytes
    );
    std::fs::write(out.join("ui.md"), &md).expect("write");
    println!("{md}");
}
