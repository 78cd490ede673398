//! Detection nodes sharing the `detectors` consumer: one killed mid-run
//! loses no frame; overload keeps the queue bounded; a frame given up after
//! its deliveries is counted; workers warm up before they pull.

use super::*;

fn detector_config(
    dir: &std::path::Path,
    name: &str,
    nats: &str,
    http: u16,
    extra: &str,
) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    write_config(
        &d,
        &format!(
            "{}detection:\n  address: \"127.0.0.1:{http}\"\n  models_path: \"{}\"\n  model: yolox_nano_dynamic\n  input_size: 320\n  workers: 1\n  threads: 1\n  batch_size: 2\n{extra}",
            base_config(
                nats,
                "  retention:\n    frames_per_camera: 1000\n    frames_max_age_ms: 600000\n"
            ),
            data().join("models").display()
        ),
    )
}

fn worker_counts(http: u16) -> (u64, u64, u64) {
    let v = json_get(http, "/status");
    let w = v["workers"].as_array().cloned().unwrap_or_default();
    let sum = |k: &str| w.iter().map(|x| x[k].as_u64().unwrap_or(0)).sum::<u64>();
    (
        sum("processed_count"),
        sum("skipped_count"),
        sum("error_count"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_detection_nodes_share_frames_and_a_killed_one_loses_none() {
    model_ready();
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (ha, hb) = (free_port(), free_port());
    let extra = "  max_frame_age_ms: 600000\n";
    let ca = detector_config(dir.path(), "a", &server.url, ha, extra);
    let cb = detector_config(dir.path(), "b", &server.url, hb, extra);
    let mut a = NvrProcess::start(
        &["detector", "--config", ca.to_str().unwrap()],
        dir.path(),
        &[],
    );
    let mut b = NvrProcess::start(
        &["detector", "--config", cb.to_str().unwrap()],
        dir.path(),
        &[],
    );
    a.wait_for_log("detection node running", Duration::from_secs(60));
    b.wait_for_log("detection node running", Duration::from_secs(60));

    let client = server.client().await;
    // Both nodes are instances of the NATS micro service (what `nats micro ls` lists).
    let infos = service_infos(&client, "nvr-detection", 2).await;
    assert_eq!(infos.len(), 2, "{infos:?}");
    let ids: BTreeSet<String> = infos
        .iter()
        .map(|i| i["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids.len(), 2, "two distinct instances: {infos:?}");
    assert!(
        infos
            .iter()
            .all(|i| i["name"] == "nvr-detection" && i["metadata"]["backend"] == "cpu"),
        "{infos:?}"
    );
    let js = jetstream::new(client.clone());
    let frames = jpeg_frames("vtest.avi", 5, 40, 320);
    let total = 160u64;
    let mut accepted = 0u64;
    let mut killed = false;
    let mut b_at_kill = 0u64;
    let mut seq = 0u64;
    while seq < total {
        seq += 1;
        let f = frame_msg("lobby", seq, &frames[seq as usize % frames.len()]);
        if publish_frame(&js, &f).await {
            accepted += 1;
        }
        if seq == total / 2 {
            // Both nodes must have taken a share before one of them dies.
            let (pa, pb) = eventually(Duration::from_secs(60), "both nodes processing", || {
                let (pa, _, _) = worker_counts(ha);
                let (pb, _, _) = worker_counts(hb);
                (pa >= 5 && pb >= 5).then_some((pa, pb))
            });
            assert!(pa > 0 && pb > 0);
            b_at_kill = pb;
            // a pauses for the second half, so the burst queues up behind b
            // alone and b is certain to be holding frames when it dies.
            // SAFETY: signals a child process this test started.
            assert_eq!(unsafe { libc::kill(a.child.id() as i32, libc::SIGSTOP) }, 0);
        }
        if !killed && seq == total {
            // Killed the moment its status shows it holding pulled frames
            // that it has not acknowledged (inference of a batch takes far
            // longer than one status request).
            let deadline = Instant::now() + Duration::from_secs(60);
            b_at_kill = loop {
                let v = json_get(hb, "/status");
                let w = &v["workers"][0];
                let processed = w["processed_count"].as_u64().unwrap_or(0);
                if processed >= b_at_kill + 2 && w["in_flight"].as_u64().unwrap_or(0) >= 1 {
                    b.child.kill().expect("SIGKILL node b");
                    break processed;
                }
                assert!(
                    Instant::now() < deadline,
                    "node b never held a pulled frame: {w}"
                );
                std::thread::sleep(Duration::from_millis(2));
            };
            let _ = b.child.wait();
            // SAFETY: as above.
            assert_eq!(unsafe { libc::kill(a.child.id() as i32, libc::SIGCONT) }, 0);
            killed = true;
        }
    }
    assert_eq!(accepted, total, "every frame was accepted by the stream");

    // The survivor drains the queue, including b's unacknowledged frames once
    // their ack wait runs out.
    let stream = js.get_stream(nvr_subjects::streams::FRAMES).await.unwrap();
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_consumer(nvr_subjects::streams::DETECTORS_CONSUMER)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let pending = loop {
        let info = consumer.info().await.unwrap().clone();
        let pending = info.num_pending + info.num_ack_pending as u64;
        let (pa, sa, ea) = worker_counts(ha);
        let seen = read_detection_seqs(&js, "lobby").await;
        if pending == 0 && seen.len() as u64 + sa + ea >= total {
            break pending;
        }
        assert!(
            Instant::now() < deadline,
            "queue did not drain: pending {pending}, a processed {pa}, detections {}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let seen = read_detection_seqs(&js, "lobby").await;
    let (pa, sa, ea) = worker_counts(ha);
    let info = consumer.info().await.unwrap().clone();
    eprintln!(
        "kill: b processed {} before SIGKILL, a {pa}; deliveries {} for {total} frames",
        b_at_kill, info.delivered.consumer_sequence
    );
    // published = processed + skipped + errors + still pending, frame by frame.
    assert_eq!(
        seen.len() as u64 + sa + ea + pending,
        total,
        "published {total} != detections {} + skipped {sa} + errors {ea} + pending {pending}",
        seen.len()
    );
    assert_eq!(
        sa + ea,
        0,
        "nothing skipped or failed with a 10-minute frame age"
    );
    let expected: BTreeSet<u64> = (1..=total).collect();
    assert_eq!(
        seen.keys().copied().collect::<BTreeSet<_>>(),
        expected,
        "every frame has detections"
    );
    assert!(b_at_kill > 0, "the killed node had processed frames");
    assert!(
        info.delivered.consumer_sequence > total,
        "the killed node held unacknowledged frames that were delivered again"
    );
    // b may finish a frame between the snapshot and the kill: count its
    // share from the stored detections instead.
    let a_worker = format!("-{}-w", a.child.id());
    let by_b = seen.values().filter(|w| !w.contains(&a_worker)).count() as u64;
    assert!(
        by_b >= b_at_kill,
        "b's stored detections {by_b} < its count {}",
        b_at_kill
    );
    assert!(pa + by_b >= total, "a {pa} + b {by_b} cover every frame");
    a.interrupt();
    assert_eq!(a.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Replies to `$SRV.INFO.<service>` until `want` instances answered (bounded).
async fn service_infos(client: &async_nats::Client, service: &str, want: usize) -> Vec<Value> {
    // Asked again every half second until `want` instances answered (or
    // 10 s): an answer lost to a busy machine does not fail the test.
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < want && tokio::time::Instant::now() < deadline {
        client
            .publish_with_reply(format!("$SRV.INFO.{service}"), inbox.clone(), "".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        let round = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(m)) = tokio::time::timeout_at(round.min(deadline), sub.next()).await {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            out.insert(v["id"].as_str().unwrap_or("").to_string(), v);
        }
    }
    out.into_values().collect()
}

/// Every stored Detections of `camera`: seq -> worker.
async fn read_detection_seqs(js: &jetstream::Context, camera: &str) -> BTreeMap<u64, String> {
    let stream = js
        .get_stream(nvr_subjects::streams::DETECTIONS)
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subjects::detections(camera),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    let mut msgs = consumer.messages().await.unwrap();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), msgs.next()).await
    {
        let d: Detections = decode(&m.payload).unwrap();
        out.insert(d.seq, d.worker.clone());
        if m.info().map(|i| i.pending == 0).unwrap_or(false) {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_keeps_the_queue_bounded_counts_skips_and_memory_stays_flat() {
    model_ready();
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let per_camera = 10u64;
    let cameras = 16usize;
    let cfg = write_config(
        dir.path(),
        &format!(
            "nats:\n  embedded: false\n  url: \"{}\"\n  retention:\n    frames_per_camera: {per_camera}\n    frames_max_age_ms: 600000\napi:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  models_path: \"{}\"\n  model: yolox_nano_dynamic\n  input_size: 320\n  workers: 1\n  threads: 1\n  max_frame_age_ms: 500\nspatial:\n  embedded: false\n",
            server.url,
            data().join("models").display()
        ),
    );
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("detector worker ready", Duration::from_secs(60));
    p.wait_for_log("nvr running", Duration::from_secs(30));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let frames = std::sync::Arc::new(jpeg_frames("vtest.avi", 5, 20, 320));

    // 16 cameras at 10 fps: 160 frames/s against one single-threaded worker.
    let seconds = 12u64;
    let mut tasks = Vec::new();
    for c in 0..cameras {
        let (js, frames) = (js.clone(), frames.clone());
        tasks.push(tokio::spawn(async move {
            let cam = format!("ov{c:02}");
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let (mut offered, mut accepted) = (0u64, 0u64);
            for seq in 1..=seconds * 10 {
                tick.tick().await;
                offered += 1;
                if publish_frame(
                    &js,
                    &frame_msg(&cam, seq, &frames[seq as usize % frames.len()]),
                )
                .await
                {
                    accepted += 1;
                }
            }
            (offered, accepted)
        }));
    }
    let bound = per_camera * cameras as u64;
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let st = json_get(api, "/api/v1/plugins/nvr-detection/status");
        let q = st["queue_size"].as_u64().unwrap();
        let mem = st["nodes"][0]["memory_mb"].as_f64().unwrap();
        assert!(
            q <= bound,
            "queue_size {q} above the per-camera bound {bound}"
        );
        samples.push((q, mem));
    }
    let (mut offered, mut accepted) = (0, 0);
    for t in tasks {
        let (o, a) = t.await.unwrap();
        offered += o;
        accepted += a;
    }
    let st = eventually(Duration::from_secs(60), "queue drained", || {
        let st = json_get(api, "/api/v1/plugins/nvr-detection/status");
        let done = st["processed_count"].as_u64()?
            + st["skipped_count"].as_u64()?
            + st["error_count"].as_u64()?;
        (st["queue_size"].as_u64()? == 0 && done >= accepted).then_some(st)
    });
    let processed = st["processed_count"].as_u64().unwrap();
    let skipped = st["skipped_count"].as_u64().unwrap();
    let errors = st["error_count"].as_u64().unwrap();
    assert_eq!(
        processed + skipped + errors,
        accepted,
        "every accepted frame accounted for: {st}"
    );
    assert!(skipped > 0, "overload must skip frames: {st}");
    assert!(processed > 0, "{st}");
    let refused = offered - accepted;
    let skipped_per_cam: u64 = st["cameras"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["skipped"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        skipped_per_cam, skipped,
        "per-camera skipped counts add up: {st}"
    );
    eprintln!(
        "overload: offered {offered}, refused at publish {refused}, processed {processed}, skipped {skipped}, queue samples {:?}",
        samples.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    let third = samples.len() / 3;
    let (early, late) = (samples[third].1, samples.last().unwrap().1);
    assert!(
        late - early < 40.0,
        "memory grew from {early:.0} MiB to {late:.0} MiB under overload"
    );
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
    let skip_logs = p
        .seen
        .iter()
        .filter(|l| l.contains("frame skipped"))
        .count();
    assert!(skip_logs >= 1, "\"frame skipped\" logged");
    assert!(
        (skip_logs as u64) < skipped.max(2),
        "skip logging is rate-limited ({skip_logs} lines for {skipped} skips)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_given_up_after_max_deliveries_is_counted() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "{}api:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  embedded: false\nspatial:\n  embedded: false\n",
            base_config(&server.url, "")
        ),
    );
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let frames = jpeg_frames("vtest.avi", 1, 1, 320);
    assert!(publish_frame(&js, &frame_msg("poison", 1, &frames[0])).await);
    // A worker that fails on this frame every time: take it and give it back.
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(nvr_subjects::streams::FRAMES)
        .await
        .unwrap()
        .get_consumer(nvr_subjects::streams::DETECTORS_CONSUMER)
        .await
        .unwrap();
    let mut deliveries = 0;
    while deliveries < 5 {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = batch.next().await {
            deliveries += 1;
            m.ack_with(jetstream::AckKind::Nak(None)).await.unwrap();
        }
    }
    // Workers keep pulling: the server gives up on the frame instead of a sixth delivery.
    let mut again = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    assert!(again.next().await.is_none(), "no sixth delivery");
    let st = eventually(Duration::from_secs(20), "dead_lettered_count 1", || {
        let st = json_get(api, "/api/v1/plugins/nvr-detection/status");
        (st["dead_lettered_count"] == 1).then_some(st)
    });
    assert_eq!(st["queue_size"], 0, "{st}");
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(p
        .seen
        .iter()
        .any(|l| l.contains("maximum number of deliveries")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_warm_up_before_they_pull_and_the_node_shows_its_layout() {
    model_ready();
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let extra = "  max_batch: 3\n  max_frame_age_ms: 600000\n";
    let cfg = detector_config(dir.path(), "n", &server.url, http, extra);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("  workers: 1\n", "  workers: 2\n")).unwrap();
    let mut node = NvrProcess::start(
        &["detector", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[],
    );
    // Health answers before the workers are warm, and says so.
    let first = eventually(Duration::from_secs(60), "/health answering", || {
        std::net::TcpStream::connect(("127.0.0.1", http)).ok()?;
        Some(http_get(http, "/health"))
    });
    assert!(
        first.0 == 200 || (first.0 == 503 && first.1.contains("warming")),
        "{first:?}"
    );
    node.wait_for_log("detection node running", Duration::from_secs(60));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let frames = jpeg_frames("vtest.avi", 5, 40, 320);
    for seq in 1..=9u64 {
        let f = frame_msg("warm", seq, &frames[seq as usize % frames.len()]);
        assert!(publish_frame(&js, &f).await);
    }
    eventually(Duration::from_secs(60), "9 frames processed", || {
        (worker_counts(http).0 == 9).then_some(())
    });
    let st = json_get(http, "/status");
    let layout = &st["layout"];
    assert_eq!(layout["workers"], 2, "{st}");
    assert_eq!(layout["warming"], 0, "{st}");
    assert_eq!(layout["threads"], 1, "{st}");
    assert_eq!(layout["batch"], 3, "{st}");
    assert_eq!(layout["batch_source"], "config", "{st}");
    let cap = layout["capacity_fps"].as_f64().unwrap_or(0.0);
    let cams = layout["capacity_cameras"].as_f64().unwrap_or(0.0);
    assert!(cap > 0.0, "{st}");
    assert!((cams - cap / 5.0).abs() <= 0.2, "{st}");
    for w in st["workers"].as_array().unwrap() {
        // Every frame was acknowledged: no worker holds one.
        assert_eq!(w["in_flight"], 0, "{w}");
        let l = &w["layout"];
        assert_eq!(l["batch"], 3, "{w}");
        assert_eq!(l["batchable"], true, "{w}");
        let sizes: Vec<u64> = l["timings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["batch"].as_u64())
            .collect();
        assert_eq!(sizes, vec![1, 3], "{w}");
        let warmed = l["warmed_ns"].as_u64().unwrap_or(0);
        let pulled = w["first_pull_ns"].as_u64().unwrap_or(0);
        assert!(
            warmed > 0 && pulled > warmed,
            "pulled at {pulled}, warmed at {warmed}"
        );
    }
    let (code, body) = http_get(http, "/health");
    assert_eq!(code, 200, "{body}");
    // The node's own /metrics, as Prometheus accepts them.
    let (code, scrape) = http_get(http, "/metrics");
    assert_eq!(code, 200, "{scrape}");
    promtool_check(&scrape);
    assert!(
        scrape.contains("nvr_detection_node_capacity_fps{"),
        "{scrape}"
    );
    let held: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("nvr_detection_worker_in_flight{"))
        .collect();
    assert_eq!(held.len(), 2, "one in-flight gauge per worker:\n{scrape}");
    assert!(
        held.iter()
            .all(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()) == Some(0.0)),
        "{held:?}"
    );
    // `$SRV.STATS` counts the frames, not only status requests.
    let reply = client
        .request("$SRV.STATS.nvr-detection", "".into())
        .await
        .unwrap();
    let stats: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        stats["endpoints"][0]["data"]["frames_processed"], 9,
        "{stats}"
    );
    node.interrupt();
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0));
}
