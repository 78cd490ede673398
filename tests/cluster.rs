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

async fn publish(js: &jetstream::Context, d: &Detections) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        "Nats-Msg-Id",
        nvr_subjects::msg_id(&d.camera, d.seq).as_str(),
    );
    let ack = js
        .publish_with_headers(
            subjects::detections(&d.camera),
            h,
            encode(d).unwrap().into(),
        )
        .await
        .expect("publish");
    ack.await.expect("stored");
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
