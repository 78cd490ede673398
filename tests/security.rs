//! The embedded server with one user per role: each role works within its
//! permissions (a detection node as the `detection` user processes frames a
//! `camera` user published, which an `observer` reads) and is refused
//! outside them; without credentials nothing connects. The API's bearer
//! token guards every endpoint but `/health`.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use futures::StreamExt;
use nvr_actors::bus::now_ns;
use nvr_subjects::messages::{Detections, Frame, FrameEncoding};
use nvr_subjects::{decode, encode, subjects, SCHEMA_VERSION};

async fn connect_as(url: &str, store: &std::path::Path, role: &str) -> async_nats::Client {
    let pw = std::fs::read_to_string(store.join("roles").join(format!("{role}.password")))
        .unwrap_or_else(|e| panic!("password of {role}: {e}"));
    async_nats::ConnectOptions::with_user_and_password(role.into(), pw.trim().into())
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect as {role}: {e}"))
}

/// A JetStream publish that the server stores (Ok) or refuses (Err).
async fn js_publish(
    js: &jetstream::Context,
    subject: String,
    payload: Vec<u8>,
) -> Result<(), String> {
    let ack = js
        .publish(subject, payload.into())
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(3), ack)
        .await
        .map_err(|_| "no acknowledgement".to_string())?
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn frame(seq: u64) -> Frame {
    let img = nvr_actors::detect::RgbImage::filled(320, 240, [90, 90, 90]);
    Frame {
        v: SCHEMA_VERSION,
        camera: "hall".into(),
        seq,
        ts_ns: now_ns(),
        width: 640,
        height: 480,
        encoding: FrameEncoding::Jpeg,
        data: nvr_actors::detect::image::encode_jpeg(&img, 80).unwrap(),
        data_width: 0,
        data_height: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_work_within_their_permissions_and_are_refused_outside() {
    require(&data().join("models/yolox_nano_dynamic.onnx"), "the model");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (nats_port, api, det_http) = (free_port(), free_port(), free_port());
    let url = format!("nats://127.0.0.1:{nats_port}");
    let cfg = write_config(
        dir.path(),
        &format!(
            "nats:\n  embedded: true\n  server_bin: \"{}\"\n  roles: \"on\"\n  url: \"{url}\"\n  store_dir: \"{}\"\napi:\n  address: \"127.0.0.1:{api}\"\n  token: \"t0ken\"\ndetection:\n  embedded: false\n  workers: 1\n  models_path: \"{}\"\nspatial:\n  embedded: false\ncameras:\n  - id: hall\n",
            nats_server_bin().display(),
            store.display(),
            data().join("models").display()
        ),
    );
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));

    // Without credentials, nothing connects.
    let anonymous = async_nats::ConnectOptions::new()
        .max_reconnects(Some(1))
        .connect(url.as_str())
        .await;
    let refused = match anonymous {
        Err(e) => e.to_string(),
        Ok(c) => {
            // Some client versions report the refusal on first use.
            c.flush()
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        }
    };
    assert!(
        refused.to_lowercase().contains("authorization"),
        "anonymous connect: {refused:?}"
    );

    let camera = connect_as(&url, &store, "camera").await;
    let observer = connect_as(&url, &store, "observer").await;
    let cam_js = jetstream::new(camera.clone());
    let obs_js = jetstream::new(observer.clone());
    let mut dets = observer.subscribe("nvr.detections.*").await.unwrap();
    observer.flush().await.unwrap();

    // A detection node that runs as the `detection` user.
    let pw = std::fs::read_to_string(store.join("roles/detection.password")).unwrap();
    let det_addr = format!("127.0.0.1:{det_http}");
    let mut d = NvrProcess::start(
        &["detector", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[
            ("NATS_URL", url.as_str()),
            ("NATS_USER", "detection"),
            ("NATS_PASSWORD", pw.trim()),
            ("DETECTION_ADDR", det_addr.as_str()),
        ],
    );
    d.wait_for_log("detection node running", Duration::from_secs(60));
    assert!(
        d.seen.iter().all(|l| !l.contains(pw.trim())),
        "the password is never logged"
    );

    // The camera role publishes frames; the node detects; the observer reads.
    js_publish(
        &cam_js,
        subjects::frames("hall"),
        encode(&frame(1)).unwrap(),
    )
    .await
    .expect("camera may publish frames");
    let m = tokio::time::timeout(Duration::from_secs(30), dets.next())
        .await
        .expect("detections from the detection node")
        .unwrap();
    let got: Detections = decode(&m.payload).unwrap();
    assert_eq!((got.camera.as_str(), got.seq), ("hall", 1));

    // Outside their permissions, each role is refused.
    let d = decode::<Detections>(&m.payload).unwrap();
    assert!(
        js_publish(&cam_js, subjects::detections("hall"), encode(&d).unwrap())
            .await
            .is_err(),
        "camera may not publish detections"
    );
    assert!(
        js_publish(
            &obs_js,
            subjects::frames("hall"),
            encode(&frame(2)).unwrap()
        )
        .await
        .is_err(),
        "observer may not publish frames"
    );
    assert!(
        obs_js.delete_stream("NVR_DETECTIONS").await.is_err(),
        "observer may not delete streams"
    );
    assert!(
        cam_js.get_stream("NVR_DETECTIONS").await.is_ok(),
        "every role may read stream information"
    );

    // The API token guards everything but /health.
    assert_eq!(http_get(api, "/health").0, 200);
    assert_eq!(http_get(api, "/api/v1/system/health").0, 401);
    let (code, body) = http_get_with(
        api,
        "/api/v1/system/health",
        &[("Authorization", "Bearer t0ken")],
    );
    assert!(code == 200, "{code} {body}");
    let (code, _) = http_get_with(api, "/metrics", &[("Authorization", "Bearer wrong")]);
    assert_eq!(code, 401);
    // The page and its assets hold no data and load without the token; what
    // a browser loads without headers (images, the live feed) may carry it
    // as `?token=`.
    for path in ["/", "/ui/app.js", "/ui/style.css", "/favicon.ico"] {
        assert_eq!(http_get(api, path).0, 200, "{path}");
    }
    assert_eq!(http_get(api, "/api/v1/floors").0, 401);
    assert_eq!(http_get(api, "/api/v1/floors?token=wrong").0, 401);
    let (code, body) = http_get(api, "/api/v1/floors?t=1&token=t0ken");
    assert_eq!(code, 200, "{body}");

    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(0));
}

/// Runs `openssl` with `args` in `dir`, panicking with its output on failure.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) is needed: run scripts/setup");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mutual_tls_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let subj = |cn: &str| format!("/CN={cn}");
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            &subj("nvr-test-ca"),
        ],
    );
    // X.509 v3 certificates (with extensions), as TLS libraries require.
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["server", "client"] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subj(name),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
    let port = free_port();
    let mut server = std::process::Command::new(nats_server_bin())
        .args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--tls",
            "--tlsverify",
        ])
        .args([
            "--tlscert",
            "server.pem",
            "--tlskey",
            "server.key",
            "--tlscacert",
            "ca.pem",
        ])
        .arg("-sd")
        .arg(d.join("store"))
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let api = free_port();
    let url = format!("tls://127.0.0.1:{port}");
    let cfg = write_config(d, &hall_config(&url, api, ""));
    let ca = d.join("ca.pem");
    let (cert, key) = (d.join("client.pem"), d.join("client.key"));
    let tls_env = [
        ("NATS_CA_FILE", ca.to_str().unwrap()),
        ("NATS_CERT_FILE", cert.to_str().unwrap()),
        ("NATS_KEY_FILE", key.to_str().unwrap()),
    ];
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], d, &tls_env);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    eventually(Duration::from_secs(10), "healthy over mutual TLS", || {
        (http_get(api, "/health").0 == 200).then_some(())
    });
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
    // Without the client certificate the server refuses the connection.
    let (code, _, err) = nvr_output(
        &["run", "--config", cfg.to_str().unwrap()],
        d,
        &[
            ("NATS_CA_FILE", ca.to_str().unwrap()),
            ("NVR_API_ADDR", &format!("127.0.0.1:{}", free_port())),
        ],
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("cannot connect to NATS"), "{err}");
    let _ = server.kill();
    let _ = server.wait();
}
