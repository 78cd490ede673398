//! Multi-node faults with real processes on loopback: a spatial shard
//! started twice has exactly one active instance and the standby takes over
//! when the active one dies; a three-node NATS cluster with replicated file
//! streams loses no stored message when a node stops, and the pipeline goes on.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use nvr_subjects::messages::{CameraTracks, Detections, SpatialTracks};
use nvr_subjects::{decode, encode, subjects};

const DT: u64 = WALK_DT;

fn detections(seq: u64) -> Detections {
    walker("hall", seq, 0.1 + 0.002 * (seq % 300) as f32)
}

/// Publishes `d` until JetStream stores it. While a cluster elects a new
/// stream leader an acknowledgement can time out; publishing again with the
/// same `Nats-Msg-Id` is safe (the stream de-duplicates), as any client does.
async fn publish(js: &jetstream::Context, d: &Detections) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            "Nats-Msg-Id",
            nvr_subjects::msg_id(&d.camera, d.seq).as_str(),
        );
        let sent = js
            .publish_with_headers(
                subjects::detections(&d.camera),
                h,
                encode(d).unwrap().into(),
            )
            .await;
        let err = match sent {
            Ok(ack) => match ack.await {
                Ok(_) => return,
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "detections {} never stored: {err}",
            d.seq
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes detections from `from` on until a SpatialTracks cycle at or
/// after the message time of `from` arrives.
async fn feed_until_cycle(
    js: &jetstream::Context,
    spatial: &mut async_nats::Subscriber,
    from: u64,
    within: Duration,
) -> (u64, SpatialTracks) {
    let min_ts = *T0 + from * DT;
    let deadline = tokio::time::Instant::now() + within;
    let mut seq = from;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SpatialTracks within {within:?}"
        );
        publish(js, &detections(seq)).await;
        seq += 1;
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), spatial.next()).await
        {
            let t: SpatialTracks = decode(&m.payload).unwrap();
            if t.ts_ns >= min_ts {
                return (seq, t);
            }
        }
    }
}

fn spatial_node(cfg: &std::path::Path, dir: &std::path::Path, url: &str) -> NvrProcess {
    let addr = format!("127.0.0.1:{}", free_port());
    NvrProcess::start(
        &[
            "spatial",
            "--config",
            cfg.to_str().unwrap(),
            "--nats-url",
            url,
            "--shard",
            "lobby",
            "--cameras",
            "hall",
            "--address",
            &addr,
        ],
        dir,
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_started_twice_has_one_active_instance_and_the_standby_takes_over() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &hall_config(&server.url, free_port(), ""));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let mut spatial = client
        .subscribe(subjects::spatial_tracks("lobby"))
        .await
        .unwrap();
    client.flush().await.unwrap();

    let mut a = spatial_node(&cfg, dir.path(), &server.url);
    a.wait_for_log("spatial node running", Duration::from_secs(60));
    let mut b = spatial_node(&cfg, dir.path(), &server.url);
    b.wait_for_log("standby", Duration::from_secs(60));

    let (seq, _) = feed_until_cycle(&js, &mut spatial, 1, Duration::from_secs(30)).await;
    // Only one instance answers status requests for the shard.
    let answers = {
        let inbox = client.new_inbox();
        let mut sub = client.subscribe(inbox.clone()).await.unwrap();
        client
            .publish_with_reply("nvr.status.spatial", inbox, "".into())
            .await
            .unwrap();
        let mut n = 0;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            n += 1;
        }
        n
    };
    assert_eq!(answers, 1, "exactly one active instance of the shard");
    assert!(
        !b.seen.iter().any(|l| l.contains("spatial node running")),
        "the standby stays standby while the active instance lives"
    );

    // The active one dies: the standby takes over within the lease time.
    let killed = Instant::now();
    // SAFETY: killing a process this test started.
    unsafe {
        libc::kill(a.child.id() as i32, libc::SIGKILL);
    }
    b.wait_for_log("spatial node running", Duration::from_secs(20));
    let takeover = killed.elapsed();
    let (_, cycle) = feed_until_cycle(&js, &mut spatial, seq, Duration::from_secs(30)).await;
    assert!(
        !cycle.tracks.is_empty(),
        "the new instance tracks the walker"
    );
    println!(
        "standby took over {:.1} s after the active instance was killed",
        takeover.as_secs_f64()
    );
    b.interrupt();
    assert_eq!(b.wait_exit(Duration::from_secs(10)), Some(0));
}

/// One member of a three-node JetStream cluster on loopback.
struct Member {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
}

impl Member {
    fn start(&mut self) {
        let child = Command::new(nats_server_bin())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cluster member");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cluster(dir: &std::path::Path) -> Vec<Member> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let routes = ports
        .iter()
        .map(|(_, r)| format!("nats://127.0.0.1:{r}"))
        .collect::<Vec<_>>()
        .join(",");
    ports
        .iter()
        .enumerate()
        .map(|(i, (p, r))| {
            let mut m = Member {
                child: None,
                port: *p,
                args: vec![
                    "-js".into(),
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    p.to_string(),
                    "-n".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "nvr".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{r}"),
                    "--routes".into(),
                    routes.clone(),
                    "-sd".into(),
                    dir.join(format!("n{i}")).to_string_lossy().into_owned(),
                ],
            };
            m.start();
            m
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_nothing_when_a_node_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = cluster(dir.path());
    let urls = members
        .iter()
        .map(|m| format!("nats://127.0.0.1:{}", m.port))
        .collect::<Vec<_>>();
    // The test's own client stays on the first member.
    let client = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = async_nats::connect(urls[0].as_str()).await {
                let js = jetstream::new(c.clone());
                if js.query_account().await.is_ok() {
                    break c;
                }
            }
            assert!(Instant::now() < deadline, "the cluster did not form");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let js = jetstream::new(client.clone());
    let api = free_port();
    let cfg = write_config(
        dir.path(),
        &hall_config(&urls.join(","), api, "").replace(
            "  embedded: false\n  url:",
            "  embedded: false\n  replicas: 3\n  url:",
        ),
    );
    let mut tracks = client.subscribe(subjects::tracks("hall")).await.unwrap();
    client.flush().await.unwrap();
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(90));
    let info = js
        .get_stream("NVR_DETECTIONS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3, "streams are replicated");

    for seq in 1..=30 {
        publish(&js, &detections(seq)).await;
    }
    // One member stops (not the one the test's client uses).
    members[2].stop();
    for seq in 31..=60 {
        publish(&js, &detections(seq)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = tokio::time::timeout_at(deadline, tracks.next())
            .await
            .expect("tracking continues after a member stopped")
            .unwrap();
        let t: CameraTracks = decode(&m.payload).unwrap();
        if t.seq == 60 {
            break;
        }
    }
    let mut s = js.get_stream("NVR_DETECTIONS").await.unwrap();
    let stored = s.info().await.unwrap().state.messages;
    assert_eq!(stored, 60, "every published detections message is stored");
    // The member comes back and catches up.
    members[2].start();
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(0));
}

/// A TCP relay to the NATS server that can cut every connection and refuse
/// new ones for a while: a detection node's network going away and back.
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: u16) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c2, k2) = (cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c2.load(Ordering::SeqCst) {
                    continue; // dropped: the network is down
                }
                let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let h = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                k2.lock().unwrap().push(h);
            }
        });
        Relay {
            port,
            cut,
            conns,
            accept,
        }
    }

    fn set_cut(&self, down: bool) {
        self.cut.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            for h in self.conns.lock().unwrap().drain(..) {
                h.abort();
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.set_cut(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detector_cut_off_and_restored_reconnects_with_no_duplicates() {
    use nvr_subjects::messages::{Frame, FrameEncoding};
    require(&data().join("models/yolox_nano_dynamic.onnx"), "the model");
    let server = NatsServer::start();
    let relay = Relay::start(server.port).await;
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "nats:\n  embedded: false\n  url: \"nats://127.0.0.1:{}\"\n  retention:\n    frames_per_camera: 1000\n    frames_max_age_ms: 600000\ndetection:\n  address: \"127.0.0.1:{http}\"\n  models_path: \"{}\"\n  input_size: 320\n  workers: 1\n  threads: 1\n  max_frame_age_ms: 600000\n",
            relay.port,
            data().join("models").display()
        ),
    );
    let mut node = NvrProcess::start(
        &["detector", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[],
    );
    node.wait_for_log("detection node running", Duration::from_secs(60));
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let img = nvr_actors::detect::RgbImage::filled(320, 240, [90, 90, 90]);
    let jpeg = nvr_actors::detect::image::encode_jpeg(&img, 80).unwrap();
    let total = 40u64;
    let stored = |js: jetstream::Context| async move {
        js.get_stream("NVR_DETECTIONS")
            .await
            .ok()?
            .info()
            .await
            .ok()
            .map(|i| i.state.messages)
    };
    for seq in 1..=total {
        let f = Frame {
            v: nvr_subjects::SCHEMA_VERSION,
            camera: "door".into(),
            seq,
            ts_ns: nvr_actors::bus::now_ns(),
            width: 640,
            height: 480,
            encoding: FrameEncoding::Jpeg,
            data: jpeg.clone(),
            data_width: 0,
            data_height: 0,
        };
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", nvr_subjects::msg_id("door", seq).as_str());
        js.publish_with_headers(subjects::frames("door"), h, encode(&f).unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
        if seq == total / 4 {
            // Cut the node off in the middle of its work, for 3 s.
            let deadline = Instant::now() + Duration::from_secs(30);
            while stored(js.clone()).await.unwrap_or(0) < 3 {
                assert!(Instant::now() < deadline, "the node processes frames");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            relay.set_cut(true);
            tokio::time::sleep(Duration::from_secs(3)).await;
            relay.set_cut(false);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = stored(js.clone()).await.unwrap_or(0);
        if n >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of {total} frames have detections"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Exactly one stored detections message per frame: redeliveries after the
    // cut were de-duplicated, nothing was lost.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored(js.clone()).await, Some(total));
    let mut seqs = std::collections::BTreeSet::new();
    let stream = js.get_stream("NVR_DETECTIONS").await.unwrap();
    for s in 1..=total {
        let m = stream.get_raw_message(s).await.unwrap();
        let d: Detections = decode(&m.payload).unwrap();
        assert!(seqs.insert(d.seq), "frame {} stored twice", d.seq);
    }
    assert_eq!(seqs.len() as u64, total);
    assert!(
        node.wait_for_log("NATS connected", Duration::from_secs(10))
            .contains("connected"),
        "the node reconnected"
    );
    node.interrupt();
    assert_eq!(node.wait_exit(Duration::from_secs(10)), Some(0));
}
