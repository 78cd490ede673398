//! Identities survive a restart: a restarted `nvr run` continues per-camera
//! track ids and global ids where the previous process stopped, so an id is
//! never given to two objects (and event de-duplication keys never collide).

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use nvr_subjects::messages::{CameraTracks, Detections, SpatialTracks};
use nvr_subjects::{decode, encode, subjects};

fn detections(seq: u64, x: f32) -> Detections {
    walker("hall", seq, x)
}

async fn publish(js: &jetstream::Context, d: &Detections) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        "Nats-Msg-Id",
        nvr_subjects::msg_id(&d.camera, d.seq).as_str(),
    );
    js.publish_with_headers(
        subjects::detections(&d.camera),
        h,
        encode(d).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// The camera tracks and the spatial tracks of a `nvr replay --hex` output.
fn camera_and_spatial(text: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    hex_lines(text)
        .into_iter()
        .partition(|b| decode::<SpatialTracks>(b).is_err())
}

/// The camera tracks of `hall` and the spatial tracks of `lobby` stored live.
async fn live_outputs(js: &jetstream::Context) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let tracks = stored_payloads(js, nvr_subjects::streams::TRACKS, subjects::tracks("hall")).await;
    let spatial = stored_payloads(
        js,
        nvr_subjects::streams::SPATIAL,
        subjects::spatial_tracks("lobby"),
    )
    .await;
    (tracks, spatial)
}

/// Runs one `nvr run` incarnation over detections `seqs` of a walker
/// moving `dx` of the frame width per message, returning the highest track
/// id and global id it published.
async fn incarnation(
    server: &NatsServer,
    cfg: &std::path::Path,
    dir: &std::path::Path,
    seqs: std::ops::RangeInclusive<u64>,
    dx: f32,
) -> (u64, u64) {
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut tracks = client.subscribe(subjects::tracks("hall")).await.unwrap();
    let mut spatial = client
        .subscribe(subjects::spatial_tracks("lobby"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir, &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    let last = *seqs.end();
    for seq in seqs.clone() {
        // One walker per incarnation, moving right.
        let x = 0.1 + dx * (seq - *seqs.start()) as f32;
        publish(&js, &detections(seq, x)).await;
    }
    let (mut max_track, mut max_global) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout_at(deadline, tracks.next())
            .await
            .expect("CameraTracks for every detections message")
            .unwrap();
        let t: CameraTracks = decode(&m.payload).unwrap();
        max_track = max_track.max(t.tracks.iter().map(|t| t.track_id).max().unwrap_or(0));
        if t.seq == last {
            break;
        }
    }
    // The spatial shard publishes on a cadence in message time; take what came.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(m)) = tokio::time::timeout_at(until, spatial.next()).await {
        let s: SpatialTracks = decode(&m.payload).unwrap();
        max_global = max_global.max(s.tracks.iter().map(|t| t.global_id).max().unwrap_or(0));
    }
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
    (max_track, max_global)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_and_global_ids_continue_after_a_restart() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(dir.path(), &hall_config(&server.url, api, ""));
    let (t1, g1) = incarnation(&server, &cfg, dir.path(), 1..=20, 0.01).await;
    assert!(t1 >= 1, "first run produced tracks");
    // Much later in message time: the first walker is long gone.
    let (t2, g2) = incarnation(&server, &cfg, dir.path(), 400..=420, 0.01).await;
    assert!(
        t2 > t1,
        "track ids continue after a restart: first run up to {t1}, second run {t2}"
    );
    assert!(g1 >= 1, "first run produced global tracks");
    assert!(
        g2 > g1,
        "global ids continue after a restart: {g1} then {g2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_tracks_expire_when_every_camera_goes_quiet() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(
        dir.path(),
        &hall_config(
            &server.url,
            api,
            "spatial:\n  track_ttl_seconds: 2\n  max_gap_seconds: 1\n",
        ),
    );
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    for seq in 1..=15 {
        publish(&js, &detections(seq, 0.1 + 0.01 * seq as f32)).await;
    }
    let count = |v: &serde_json::Value| v["count"].as_u64().unwrap_or(0);
    eventually(Duration::from_secs(20), "a global track", || {
        let (code, body) = http_get(api, "/api/v1/spatial/tracks");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && count(&v) >= 1).then_some(())
    });
    // The camera stops: its walker must not stay on the floor plan forever.
    p.wait_for_log("carrying the shard clock forward", Duration::from_secs(20));
    let v = eventually(
        Duration::from_secs(30),
        "tracks expired after the input stopped",
        || {
            let (_, body) = http_get(api, "/api/v1/spatial/tracks");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (count(&v) == 0).then_some(v)
        },
    );
    assert_eq!(v["tracks"], serde_json::json!([]));
    let stats: serde_json::Value =
        serde_json::from_str(&http_get(api, "/api/v1/spatial/stats").1).unwrap();
    assert!(
        stats["expired_tracks"].as_u64().unwrap_or(0) >= 1,
        "{stats}"
    );
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tracker_of_the_same_camera_is_warned_about() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (api, spatial) = (free_port(), free_port());
    let cfg = write_config(dir.path(), &hall_config(&server.url, api, ""));
    let mut main = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    main.wait_for_log("nvr running", Duration::from_secs(60));
    let addr = format!("127.0.0.1:{spatial}");
    let mut node = NvrProcess::start(
        &["spatial", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[
            ("SPATIAL_SHARD", "lobby"),
            ("SPATIAL_CAMERAS", "hall"),
            ("SPATIAL_ADDR", addr.as_str()),
        ],
    );
    node.wait_for_log(
        "another process may be tracking this camera",
        Duration::from_secs(30),
    );
    node.wait_for_log("spatial node running", Duration::from_secs(30));
    node.interrupt();
    main.interrupt();
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(main.wait_exit(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_of_the_stream_and_of_windows_around_a_restart_equal_what_was_published() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(dir.path(), &hall_config(&server.url, api, ""));
    // The walker keeps walking while nvr restarts: the second incarnation
    // starts empty and gives the same person new ids.
    let (t1, g1) = incarnation(&server, &cfg, dir.path(), 1..=30, 0.01).await;
    let (t2, g2) = incarnation(&server, &cfg, dir.path(), 31..=60, 0.01).await;
    assert!(t2 > t1 && g2 > g1, "ids continue: {t1} {t2} {g1} {g2}");
    let js = jetstream::new(server.client().await);
    let (live_tracks, live_spatial) = live_outputs(&js).await;
    let restarts = stored_payloads(
        &js,
        nvr_subjects::streams::EVENTS,
        "nvr.events.>".to_string(),
    )
    .await;
    let kinds: Vec<String> = restarts
        .iter()
        .map(|b| decode::<nvr_subjects::Event>(b).unwrap().kind)
        .filter(|k| k == "tracker_started" || k == "shard_started")
        .collect();
    assert_eq!(
        kinds.len(),
        2,
        "one tracker_started and one shard_started: {kinds:?}"
    );

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
    let (tracks, spatial) = camera_and_spatial(&text);
    assert_eq!(tracks.len(), 60, "{err}");
    for (i, (a, b)) in live_tracks.iter().zip(&tracks).enumerate() {
        assert_eq!(
            a,
            b,
            "camera tracks {i} differ:\n{:?}\n{:?}",
            decode::<CameraTracks>(a).unwrap(),
            decode::<CameraTracks>(b).unwrap()
        );
    }
    assert!(live_spatial.len() >= 50, "{} cycles", live_spatial.len());
    // The replay ends at the last input; live may have run idle cycles after it.
    let last_input = decode::<CameraTracks>(tracks.last().unwrap())
        .unwrap()
        .ts_ns;
    let live_spatial: Vec<_> = live_spatial
        .into_iter()
        .filter(|b| decode::<SpatialTracks>(b).unwrap().ts_ns <= last_input)
        .collect();
    assert_eq!(live_spatial.len(), spatial.len(), "cycles replayed");
    for (i, (a, b)) in live_spatial.iter().zip(&spatial).enumerate() {
        assert_eq!(
            a,
            b,
            "cycle {i} differs:\n{:?}\n{:?}",
            decode::<SpatialTracks>(a).unwrap(),
            decode::<SpatialTracks>(b).unwrap()
        );
    }
    // Without the restart events the replay runs one tracker across the
    // restart and differs from what was published: the test can fail.
    let ids: Vec<u64> = tracks
        .iter()
        .flat_map(|b| decode::<CameraTracks>(b).unwrap().tracks)
        .map(|t| t.track_id)
        .collect();
    assert!(ids.contains(&t2), "the second incarnation's ids replayed");

    // Windows that start mid-run, before and after the restart: the replay
    // warms its trackers up (from the start of the stream, or from the
    // restart), so each window equals what was published.
    let window = |from_ns: u64, cold: bool| {
        let from = format!("{:.3}", from_ns as f64 / 1e9);
        let mut args = vec![
            "replay",
            "--shard",
            "lobby",
            "--hex",
            "--from",
            from.as_str(),
            "--config",
            cfg.to_str().unwrap(),
        ];
        if cold {
            args.push("--cold");
        }
        let (code, text, err) = nvr_output(&args, dir.path(), &[]);
        assert_eq!(code, 0, "{err}");
        let (tracks, spatial) = camera_and_spatial(&text);
        (tracks, spatial, err)
    };
    for (seq, how) in [
        (15, "start of the stream"),
        (
            45,
            "checkpoint or restart before --from (0 of 2 from checkpoints)",
        ),
    ] {
        // Between two messages, so the decimal seconds need not be exact.
        let from_ns = *T0 + seq * WALK_DT - WALK_DT / 2;
        let (tracks, spatial, err) = window(from_ns, false);
        assert!(err.contains(how), "{err}");
        let live_window: Vec<_> = live_tracks
            .iter()
            .filter(|b| decode::<CameraTracks>(b).unwrap().ts_ns >= from_ns)
            .cloned()
            .collect();
        assert_eq!(live_window.len() as u64, 61 - seq);
        assert_eq!(
            tracks, live_window,
            "camera tracks of the window from seq {seq}"
        );
        let live_spatial_window: Vec<_> = live_spatial
            .iter()
            .filter(|b| decode::<SpatialTracks>(b).unwrap().ts_ns >= from_ns)
            .cloned()
            .collect();
        assert!(!live_spatial_window.is_empty());
        assert_eq!(
            spatial, live_spatial_window,
            "spatial tracks of the window from seq {seq}"
        );
        // Fresh trackers at the window's start (`--cold`) give other
        // tracks: the warm-up is what makes the window equal.
        let (cold_tracks, _, _) = window(from_ns, true);
        assert_eq!(cold_tracks.len(), live_window.len());
        assert_ne!(cold_tracks, live_window, "a cold window differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_late_in_a_run_starts_from_checkpoints_and_equals_what_was_published() {
    // A small `max_payload`, so that checkpoints go on the bus in parts (a
    // shard with hundreds of identities outgrows the default 1 MiB).
    let server = NatsServer::start_with_conf("max_payload: 1024\n");
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let extra = "tracking:\n  checkpoint_seconds: 2\n";
    let cfg = write_config(dir.path(), &hall_config(&server.url, api, extra));
    // 24 s of message time without a restart: checkpoints every 2 s.
    let (t, g) = incarnation(&server, &cfg, dir.path(), 1..=120, 0.006).await;
    assert!(t >= 1 && g >= 1, "tracks and identities: {t} {g}");
    let js = jetstream::new(server.client().await);
    let checkpoints =
        stored_payloads(&js, nvr_subjects::streams::STATE, "nvr.state.>".to_string()).await;
    let stored: Vec<nvr_subjects::Checkpoint> = checkpoints
        .iter()
        .map(|b| decode::<nvr_subjects::Checkpoint>(b).unwrap())
        .collect();
    let kinds: std::collections::BTreeSet<(String, String, u64)> = stored
        .iter()
        .map(|c| (c.kind.clone(), c.name.clone(), c.ts_ns))
        .collect();
    assert!(
        kinds.iter().filter(|k| k.0 == "tracker").count() >= 8
            && kinds.iter().filter(|k| k.0 == "shard").count() >= 8,
        "tracker and shard checkpoints every 2 s: {kinds:?}"
    );
    let split = stored.iter().filter(|c| c.parts > 1).count();
    let sizes: Vec<(&str, u32, usize)> = stored
        .iter()
        .map(|c| (c.kind.as_str(), c.parts, c.state.len()))
        .collect();
    assert!(
        split > 0 && stored.iter().all(|c| c.state.len() <= 512),
        "states larger than half of a 1 KiB max_payload go in parts: {sizes:?}"
    );
    let (live_tracks, live_spatial) = live_outputs(&js).await;
    let from_ns = *T0 + 110 * WALK_DT - WALK_DT / 2;
    let from = format!("{:.3}", from_ns as f64 / 1e9);
    let args = [
        "replay", "--shard", "lobby", "--hex", "--from", &from, "--config",
    ];
    let mut args: Vec<&str> = args.to_vec();
    args.push(cfg.to_str().unwrap());
    let (code, text, err) = nvr_output(&args, dir.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(2 of 2 from checkpoints)"), "{err}");
    // Reading starts at the checkpoints (less a margin), not at the
    // start of the stream.
    let read: u64 = err
        .split("read ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no read count: {err}"));
    assert!(read < 100, "read {read} of 120 messages: {err}");
    let (tracks, spatial) = camera_and_spatial(&text);
    let after = |b: &Vec<u8>, spatial: bool| {
        let ts = if spatial {
            decode::<SpatialTracks>(b).unwrap().ts_ns
        } else {
            decode::<CameraTracks>(b).unwrap().ts_ns
        };
        ts >= from_ns
    };
    let live_window: Vec<_> = live_tracks
        .into_iter()
        .filter(|b| after(b, false))
        .collect();
    assert_eq!(live_window.len(), 11);
    assert_eq!(tracks, live_window, "camera tracks of the window");
    let last_input = decode::<CameraTracks>(tracks.last().unwrap())
        .unwrap()
        .ts_ns;
    let live_spatial: Vec<_> = live_spatial
        .into_iter()
        .filter(|b| after(b, true) && decode::<SpatialTracks>(b).unwrap().ts_ns <= last_input)
        .collect();
    assert!(!live_spatial.is_empty());
    assert_eq!(spatial, live_spatial, "spatial tracks of the window");
}
