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
