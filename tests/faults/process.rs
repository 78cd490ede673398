//! Faults of the processes around the trackers: a killed, stopped or
//! unrestartable embedded nats-server, start-up faults that exit with one
//! line, credentials in URLs, a killed detection node.

use super::*;

/// `nvr run` with the shipped configuration on an embedded server at `port`.
fn embedded_run(store: &std::path::Path, nats_port: u16, api: u16) -> NvrProcess {
    require(&data().join("models/yolox_nano_dynamic.onnx"), "the model");
    require(&data().join("samples/vtest.avi"), "the sample footage");
    let url = format!("nats://127.0.0.1:{nats_port}");
    let api_addr = format!("127.0.0.1:{api}");
    NvrProcess::start(
        &["run", "--config", "config/config.yaml"],
        &root(),
        &[
            ("NATS_URL", url.as_str()),
            ("NATS_EMBEDDED", "true"),
            ("NATS_STORE_DIR", store.to_str().unwrap()),
            ("NVR_API_ADDR", api_addr.as_str()),
            ("DETECTION_WORKERS", "1"),
        ],
    )
}

fn server_pid(line: &str) -> u32 {
    line.split("pid=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("pid in log line")
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a process this test started (through nvr).
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn frames_published(api: u16) -> Option<u64> {
    let h = json(api, "/api/v1/system/health");
    h["components"]["cameras"][0]["frames_published"].as_u64()
}

#[test]
fn killed_or_stopped_embedded_server_is_noticed_and_restarted() {
    let store = tempfile::tempdir().unwrap();
    let (nats_port, api) = (free_port(), free_port());
    let mut p = embedded_run(store.path(), nats_port, api);
    let pid = server_pid(&p.wait_for_log("started embedded nats-server", Duration::from_secs(30)));
    p.wait_for_log("nvr running", Duration::from_secs(60));
    eventually(Duration::from_secs(30), "frames flow", || {
        frames_published(api).filter(|n| *n > 0)
    });

    // Stopped: health says so while it lasts, and every call still answers.
    let stopped = std::time::Instant::now();
    signal(pid, libc::SIGSTOP);
    let (code, body) = eventually(Duration::from_secs(10), "/health reports the stall", || {
        let (c, b) = http_get(api, "/health");
        (c == 503).then_some((c, b))
    });
    assert!(body.contains("NATS does not answer"), "{code} {body}");
    println!(
        "stopped server reported by /health after {:.2} s",
        stopped.elapsed().as_secs_f64()
    );
    let h = json(api, "/api/v1/system/health");
    assert_eq!(h["status"], "unavailable", "{h}");
    let (code, _) = http_get(api, "/api/v1/plugins/nvr-detection/status");
    assert_eq!(code, 200);
    signal(pid, libc::SIGCONT);
    eventually(Duration::from_secs(10), "/health recovers", || {
        (http_get(api, "/health").0 == 200).then_some(())
    });

    // Killed: restarted, the memory-backed frames stream re-created, frames flow again.
    let killed = std::time::Instant::now();
    signal(pid, libc::SIGKILL);
    p.wait_for_log("embedded nats-server restarted", Duration::from_secs(30));
    println!(
        "killed server restarted after {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    let h = eventually(Duration::from_secs(30), "restart visible", || {
        let h = json(api, "/api/v1/system/health");
        (h["nats"]["embedded_restarts"].as_u64()? == 1 && h["nats"]["streams_ok"] == true)
            .then_some(h)
    });
    let before = h["components"]["cameras"][0]["frames_published"]
        .as_u64()
        .unwrap_or(0);
    eventually(
        Duration::from_secs(30),
        "frames flow after the restart",
        || frames_published(api).filter(|n| *n > before + 5),
    );
    println!(
        "frames flowing again {:.2} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    assert!(
        !nats_server_pids(store.path().to_str().unwrap()).contains(&pid),
        "the killed server is reaped, not a zombie"
    );
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn embedded_server_that_cannot_come_back_makes_nvr_exit_non_zero() {
    let store = tempfile::tempdir().unwrap();
    let (nats_port, api) = (free_port(), free_port());
    let mut p = embedded_run(store.path(), nats_port, api);
    let pid = server_pid(&p.wait_for_log("started embedded nats-server", Duration::from_secs(30)));
    p.wait_for_log("nvr running", Duration::from_secs(60));
    signal(pid, libc::SIGKILL);
    // Something else takes the port before the server can come back.
    let squatter = eventually(Duration::from_secs(5), "port taken", || {
        std::net::TcpListener::bind(("127.0.0.1", nats_port)).ok()
    });
    let code = p.wait_exit(Duration::from_secs(60));
    drop(squatter);
    assert_eq!(code, Some(1), "log:\n{}", p.seen.join("\n"));
    assert!(
        p.seen.iter().any(|l| l.contains("could not be restarted")),
        "{}",
        p.seen.join("\n")
    );
}

#[test]
fn startup_faults_exit_2_with_one_line_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let busy_url = format!("nats://127.0.0.1:{busy_port}");
    let free_url = format!("nats://127.0.0.1:{}", free_port());
    let api_busy = format!("127.0.0.1:{busy_port}");
    let api_free = format!("127.0.0.1:{}", free_port());
    let store = dir.path().join("store");
    let store_s = store.to_str().unwrap().to_string();
    let not_dir = dir.path().join("file");
    std::fs::write(&not_dir, "x").unwrap();
    let bad_store = not_dir.join("store");
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![
                ("NATS_URL", busy_url.clone()),
                ("NVR_API_ADDR", api_free.clone()),
            ],
            "already in use",
        ),
        (
            vec![
                ("NATS_URL", free_url.clone()),
                ("NVR_API_ADDR", api_busy.clone()),
            ],
            "api.address",
        ),
        (
            vec![
                ("NATS_URL", free_url.clone()),
                ("NVR_API_ADDR", api_free.clone()),
                ("NATS_STORE_DIR", bad_store.to_str().unwrap().to_string()),
            ],
            "nats.store_dir",
        ),
    ];
    // The server binary exists (the faults are elsewhere): the one setup
    // installs, named absolutely since the test runs in a scratch directory.
    let cfg = write_config(
        dir.path(),
        &format!(
            "detection:\n  embedded: false\nnats:\n  server_bin: \"{}\"\n",
            nats_server_bin().display()
        ),
    );
    for (env, want) in cases {
        let mut env: Vec<(&str, String)> = env;
        env.push(("NATS_EMBEDDED", "true".into()));
        if !env.iter().any(|(k, _)| *k == "NATS_STORE_DIR") {
            env.push(("NATS_STORE_DIR", store_s.clone()));
        }
        let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, _out, err) = nvr_output(
            &["run", "--config", cfg.to_str().unwrap()],
            dir.path(),
            &env_ref,
        );
        assert_eq!(code, 2, "{want}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line expected, got {err:?}");
        assert!(lines[0].contains(want), "{:?} lacks {want:?}", lines[0]);
        assert!(
            nats_server_pids(&store_s).is_empty(),
            "no server was started for {want}"
        );
    }
    // A missing server binary, and a retention nats-server would refuse.
    let cfg = write_config(
        dir.path(),
        "detection:\n  embedded: false\nnats:\n  server_bin: /nonexistent/nats-server\n",
    );
    let (code, _, err) = nvr_output(
        &["run", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[("NVR_API_ADDR", api_free.as_str())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nats.server_bin"), "{err}");
    let cfg = write_config(dir.path(), "nats:\n  retention:\n    max_age_hours: 0.01\n");
    let (code, _, err) = nvr_output(
        &["config", "check", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("max_age_hours"), "{err}");
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_work_and_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = std::process::Command::new(nats_server_bin())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["--user", "nvr", "--pass", "s3cr3t-pw"])
        .arg("-sd")
        .arg(dir.path().join("store"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let api = free_port();
    let url = format!("nats://nvr:s3cr3t-pw@127.0.0.1:{port}");
    let cfg = write_config(dir.path(), &hall_config(&url, api, ""));
    let (code, out, err) = nvr_output(
        &["config", "check", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("s3cr3t-pw") && !err.contains("s3cr3t-pw"),
        "{out}{err}"
    );
    assert!(out.contains("nats://nvr:***@127.0.0.1"), "{out}");
    let mut p = NvrProcess::start(&["run", "--config", cfg.to_str().unwrap()], dir.path(), &[]);
    p.wait_for_log("nvr running", Duration::from_secs(60));
    eventually(Duration::from_secs(10), "healthy", || {
        (http_get(api, "/health").0 == 200).then_some(())
    });
    let h = json(api, "/api/v1/system/health");
    assert!(!h.to_string().contains("s3cr3t-pw"), "{h}");
    p.interrupt();
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        p.seen.iter().all(|l| !l.contains("s3cr3t-pw")),
        "password in the log:\n{}",
        p.seen.join("\n")
    );
    // The password from the environment works the same way and a wrong one
    // fails with the server's answer, still without printing it.
    let cfg = write_config(
        dir.path(),
        &hall_config(&format!("nats://127.0.0.1:{port}"), api, ""),
    );
    let (code, _, err) = nvr_output(
        &["run", "--config", cfg.to_str().unwrap()],
        dir.path(),
        &[
            ("NATS_USER", "nvr"),
            ("NATS_PASSWORD", "wrong-pw"),
            ("NVR_API_ADDR", &format!("127.0.0.1:{}", free_port())),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("authorization"), "{err}");
    assert!(!err.contains("wrong-pw"), "{err}");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_killed_detection_node_keeps_its_processed_frames_counted() {
    require(&data().join("models/yolox_nano_dynamic.onnx"), "the model");
    require(&data().join("samples/vtest.avi"), "the sample footage");
    let server = NatsServer::start();
    let (api, det_http) = (free_port(), free_port());
    let api_addr = format!("127.0.0.1:{api}");
    let det_addr = format!("127.0.0.1:{det_http}");
    let mut main = NvrProcess::start(
        &["run", "--config", "config/config.yaml"],
        &root(),
        &[
            ("NATS_URL", server.url.as_str()),
            ("NVR_API_ADDR", api_addr.as_str()),
            ("DETECTION_EMBEDDED", "false"),
        ],
    );
    main.wait_for_log("nvr running", Duration::from_secs(60));
    let mut node = NvrProcess::start(
        &["detector", "--config", "config/config.yaml"],
        &root(),
        &[
            ("NATS_URL", server.url.as_str()),
            ("DETECTION_ADDR", det_addr.as_str()),
            ("DETECTION_WORKERS", "1"),
        ],
    );
    node.wait_for_log("detection node running", Duration::from_secs(60));
    let status = |k: &str| json(api, "/api/v1/plugins/nvr-detection/status")[k].as_u64();
    let before = eventually(Duration::from_secs(60), "frames processed", || {
        status("processed_count").filter(|n| *n >= 10)
    });
    node.child.kill().expect("SIGKILL the detection node");
    let _ = node.child.wait();
    // With no node answering, the count stays (it comes from the stored
    // detections), and nothing it processed is counted as expired.
    let after = eventually(Duration::from_secs(10), "the node is gone", || {
        let s = json(api, "/api/v1/plugins/nvr-detection/status");
        (s["nodes"].as_array()?.is_empty()).then_some(s)
    });
    let processed = after["processed_count"].as_u64().unwrap_or(0);
    assert!(
        processed >= before,
        "processed fell from {before} to {processed}: {after}"
    );
    assert!(
        after["expired_count"].as_u64().unwrap_or(0) < before,
        "processed frames moved to expired: {after}"
    );
    main.interrupt();
    assert_eq!(main.wait_exit(Duration::from_secs(15)), Some(0));
}
