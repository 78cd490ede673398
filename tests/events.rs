//! Events people can act on: a real MQTT client (`mosquitto_sub`) receives
//! JSON events through the embedded nats-server's MQTT listener, the events
//! carry label, score, box, floor and position, and `GET /api/v1/events`
//! filters them by camera, kind, label and time.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `mosquitto_sub` on `topic`, verbose (`topic payload` lines) with its
/// protocol log, killed on drop.
struct MqttSub {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl MqttSub {
    fn start(port: u16, topic: &str) -> MqttSub {
        // Line-buffered: mosquitto_sub buffers a pipe otherwise.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic, "-v", "-d"])
            .args(["-i", "nvr-events-test", "-q", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("mosquitto_sub: {e} (install it with scripts/setup: Debian's mosquitto-clients)")
            });
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        MqttSub { child, lines }
    }

    /// The first line that `pred` accepts within `timeout`.
    fn wait(&self, timeout: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(l) => seen.push(l),
                Err(_) => panic!("no {what} within {timeout:?}; got: {seen:#?}"),
            }
        }
    }
}

impl Drop for MqttSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get_json(api: u16, path: &str) -> (u16, Value) {
    let (code, body) = http_get(api, path);
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_clients_get_json_events_and_the_api_filters_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (nats_port, mqtt_port, api) = (free_port(), free_port(), free_port());
    let url = format!("nats://127.0.0.1:{nats_port}");
    let cfg = hall_config(&url, api, "")
        .replace(
            "nats:\n  embedded: false\n",
            &format!(
                "nats:\n  embedded: true\n  server_bin: \"{}\"\n  store_dir: \"{}\"\n  mqtt_listen: \"127.0.0.1:{mqtt_port}\"\n",
                nats_server_bin().display(),
                d.join("nats").display()
            ),
        );
    let cfg = write_config(d, &cfg);
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().expect("utf-8")], d, &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));

    // A real MQTT client, subscribed before anything happens.
    let sub = MqttSub::start(mqtt_port, "nvr/json/events/#");
    sub.wait(Duration::from_secs(20), "SUBACK", |l| l.contains("SUBACK"));

    // One person walks in front of camera `hall`.
    let client = async_nats::connect(&url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    for seq in 1..=15u64 {
        let m = walker("hall", seq, 0.2 + 0.02 * seq as f32);
        let body = nvr_subjects::encode(&m).expect("encode");
        js.publish(nvr_subjects::subjects::detections("hall"), body.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }

    // MQTT: topic nvr/json/events/<kind>/<scope>, a JSON payload.
    let line = sub.wait(
        Duration::from_secs(30),
        "a track_started event over MQTT",
        |l| l.starts_with("nvr/json/events/track_started/hall "),
    );
    let payload = line.split_once(' ').map(|x| x.1).unwrap_or("");
    let e: Value = serde_json::from_str(payload).expect("JSON payload");
    assert_eq!(e["kind"], "track_started", "{e}");
    assert_eq!(e["camera"], "hall", "{e}");
    assert_eq!(e["label"], "person", "{e}");
    assert!(e["score"].as_f64().unwrap_or(0.0) > 0.5, "{e}");
    assert_eq!(e["bbox"].as_array().map(Vec::len), Some(4), "{e}");
    let line = sub.wait(
        Duration::from_secs(30),
        "a global_started event over MQTT",
        |l| l.starts_with("nvr/json/events/global_started/"),
    );
    let g: Value = serde_json::from_str(line.split_once(' ').map(|x| x.1).unwrap_or(""))
        .expect("JSON payload");
    assert_eq!(g["floor"], "lobby", "{g}");
    assert_eq!(g["position_m"].as_array().map(Vec::len), Some(2), "{g}");

    // The events API: filters by camera, kind, label and time. The walker's
    // message times lie about two minutes in the past.
    let (code, doc) = get_json(api, "/api/v1/events?camera=hall&kind=track_started");
    assert_eq!(code, 200, "{doc}");
    assert!(doc["count"].as_u64().unwrap_or(0) >= 1, "{doc}");
    let first = &doc["events"][0];
    assert_eq!(first["label"], "person", "{doc}");
    assert_eq!(first["subject"], "nvr.events.track_started.hall", "{doc}");
    assert!(first["time"].as_str().unwrap_or("").ends_with('Z'), "{doc}");
    for (query, want_some) in [
        ("camera=hall&label=person", true),
        ("camera=hall&label=car", false),
        ("camera=elsewhere", false),
        ("kind=global_started&after=-10m", true),
        ("kind=global_started&after=-30s", false),
        ("kind=global_started&before=-10m", false),
    ] {
        let (code, doc) = get_json(api, &format!("/api/v1/events?{query}"));
        assert_eq!(code, 200, "{query}: {doc}");
        let n = doc["count"].as_u64().unwrap_or(0);
        assert_eq!(n > 0, want_some, "{query}: {doc}");
    }
    let (code, doc) = get_json(api, "/api/v1/events?limit=1");
    assert_eq!((code, doc["count"].as_u64()), (200, Some(1)), "{doc}");
    let (code, doc) = get_json(api, "/api/v1/events?after=yesterday");
    assert_eq!(code, 400, "{doc}");
    assert!(
        doc["error"].as_str().unwrap_or("").contains("after"),
        "{doc}"
    );

    let (_, health) = get_json(api, "/api/v1/system/health");
    assert!(
        health["nats"]["json_events"]["mirrored"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{health}"
    );
    assert_eq!(health["nats"]["json_events"]["failed"], 0, "{health}");

    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_started_event_has_a_snapshot_of_its_frame_with_the_box() {
    use nvr_actors::detect::image::{decode_jpeg, encode_jpeg, RgbImage};
    let server = NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let api = free_port();
    let cfg = write_config(dir.path(), &hall_config(&server.url, api, ""));
    let mut p = NvrProcess::start(
        &["run", "--config", cfg.to_str().expect("utf-8")],
        dir.path(),
        &[],
    );
    p.wait_for_log("nvr running", Duration::from_secs(60));
    let js = async_nats::jetstream::new(server.client().await);
    // A grey camera picture per frame, then the walker's detections of it.
    let grey = RgbImage {
        width: 640,
        height: 480,
        data: vec![128; 640 * 480 * 3],
    };
    let jpeg = encode_jpeg(&grey, 90).expect("jpeg");
    for seq in 1..=15u64 {
        let d = walker("hall", seq, 0.2 + 0.02 * seq as f32);
        let f = nvr_subjects::Frame {
            v: nvr_subjects::SCHEMA_VERSION,
            camera: "hall".into(),
            seq,
            ts_ns: d.ts_ns,
            width: 640,
            height: 480,
            encoding: nvr_subjects::FrameEncoding::Jpeg,
            data: jpeg.clone(),
            data_width: 0,
            data_height: 0,
        };
        for (subject, body) in [
            (
                nvr_subjects::subjects::frames("hall"),
                nvr_subjects::encode(&f).expect("encode"),
            ),
            (
                nvr_subjects::subjects::detections("hall"),
                nvr_subjects::encode(&d).expect("encode"),
            ),
        ] {
            js.publish(subject, body.into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
    }
    let (_, doc) = eventually(Duration::from_secs(30), "a stored snapshot", || {
        let (code, doc) = get_json(api, "/api/v1/system/health");
        (code == 200 && doc["nats"]["snapshots"]["stored"].as_u64().unwrap_or(0) >= 1)
            .then_some((code, doc))
    });
    assert_eq!(doc["nats"]["snapshots"]["failed"], 0, "{doc}");
    let (code, doc) = get_json(api, "/api/v1/events?camera=hall&kind=track_started");
    assert_eq!(code, 200, "{doc}");
    let e = &doc["events"][0];
    let url = e["snapshot"].as_str().expect("a snapshot link").to_string();
    let (code, head, body) = http_get_bytes(api, &url);
    assert_eq!(code, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("image/jpeg"), "{head}");
    let img = decode_jpeg(&body).expect("a JPEG");
    assert_eq!((img.width, img.height), (640, 480));
    // The event's box is drawn in its track's colour on the grey frame.
    let bbox: Vec<f64> = e["bbox"]
        .as_array()
        .expect("bbox")
        .iter()
        .map(|v| v.as_f64().unwrap_or(0.0))
        .collect();
    let tid = e["track_id"].as_u64().expect("track id");
    let want = nvr_actors::overlay::track_color(tid);
    let (x, y) = (
        (bbox[0] * 640.0) as usize + 1,
        (bbox[3] * 480.0) as usize - 1,
    );
    let px = &img.data[(y * 640 + x) * 3..(y * 640 + x) * 3 + 3];
    let near = |a: u8, b: u8| (a as i32 - b as i32).abs() < 60;
    assert!(
        px.iter().zip(want).all(|(a, b)| near(*a, b)),
        "box edge pixel {px:?}, track colour {want:?}"
    );
    let inside = &img.data[((y - 40) * 640 + x + 10) * 3..((y - 40) * 640 + x + 10) * 3 + 3];
    assert!(inside.iter().all(|v| near(*v, 128)), "{inside:?}");

    // Other events have none, and say why; a bad id is a bad request.
    let (_, doc) = get_json(api, "/api/v1/events?kind=global_started");
    let gseq = doc["events"][0]["stream_seq"]
        .as_u64()
        .expect("a global_started event");
    assert!(doc["events"][0]["snapshot"].is_null(), "{doc}");
    let (code, doc) = get_json(api, &format!("/api/v1/events/{gseq}/snapshot.jpg"));
    assert_eq!(code, 404, "{doc}");
    assert!(
        doc["error"]
            .as_str()
            .unwrap_or("")
            .contains("only track_started"),
        "{doc}"
    );
    let (code, _) = get_json(api, "/api/v1/events/latest/snapshot.jpg");
    assert_eq!(code, 400);
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(0));
}
