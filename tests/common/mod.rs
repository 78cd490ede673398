//! Test harness: a real `nats-server -js` on a random port with a temporary
//! store, killed on drop; helpers to run the `nvr` binary as a child process
//! and to wait for events without sleeping.

#![allow(dead_code)]

pub mod browser;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The data directory filled by `scripts/setup`.
pub fn data() -> PathBuf {
    root().join("data")
}

/// Panics with a message naming `scripts/setup` when `path` is missing.
pub fn require(path: &Path, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run scripts/setup first",
        path.display()
    );
    path.to_path_buf()
}

/// The `nats-server` 2.15.1 binary that `scripts/setup` puts in
/// `data/bin/`, or a panic naming `scripts/setup`.
pub fn nats_server_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bin/nats-server");
    if p.is_file() {
        return p;
    }
    panic!("{} not found: run scripts/setup first", p.display());
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A running `nats-server -js` with a temporary store; killed on drop.
pub struct NatsServer {
    child: Child,
    /// Client URL.
    pub url: String,
    /// Client port.
    pub port: u16,
    /// Temporary directory holding the store and the ports file.
    pub dir: tempfile::TempDir,
}

/// `nats-server -js` on 127.0.0.1 port `port` (`-1`: a random one, see
/// its ports file in `dir`) with its store in `dir/store`, and the
/// configuration file `dir/nats.conf` where there is one.
fn spawn_nats_server(port: &str, dir: &Path) -> Child {
    let mut cmd = Command::new(nats_server_bin());
    let conf = dir.join("nats.conf");
    if conf.exists() {
        cmd.arg("-c").arg(conf);
    }
    cmd.args(["-js", "-a", "127.0.0.1", "-p", port, "--ports_file_dir"])
        .arg(dir)
        .arg("-sd")
        .arg(dir.join("store"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start nats-server")
}

impl NatsServer {
    /// Starts a server on a random port and waits for its ports file.
    pub fn start() -> NatsServer {
        Self::start_with_conf("")
    }

    /// [`Self::start`] with a nats-server configuration file holding `conf`
    /// (for example `max_payload: 2048`); the command line still sets the
    /// port, JetStream and the store.
    pub fn start_with_conf(conf: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("tempdir");
        if !conf.is_empty() {
            std::fs::write(dir.path().join("nats.conf"), conf).expect("write nats.conf");
        }
        let child = spawn_nats_server("-1", dir.path());
        let ports_file = dir.path().join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if let Some(u) = v["nats"][0].as_str() {
                        break u.to_string();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not write its ports file"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in url");
        NatsServer {
            child,
            url,
            port,
            dir,
        }
    }

    /// Kills the server and starts it again on the same port with an empty
    /// store: a server that came back having lost every stream and consumer.
    pub fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.path().join("store"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = spawn_nats_server(&self.port.to_string(), self.dir.path());
            // The port is free again once the old process is gone; a start
            // that lost the race for it exits at once.
            let up = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    break true;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if up {
                self.child = child;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not come back on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A connected client.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url)
            .await
            .expect("connect to test nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `nvr` binary under test (`NVR_BIN` overrides it, so benchmarks run
/// in the test harness can measure a release build).
pub fn nvr_bin() -> PathBuf {
    std::env::var_os("NVR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nvr")))
}

/// A child `nvr` process whose stderr lines are collected; killed on drop.
pub struct NvrProcess {
    /// The child.
    pub child: Child,
    /// Lines written on stderr (logs).
    lines: mpsc::Receiver<String>,
    /// Lines seen so far.
    pub seen: Vec<String>,
}

impl NvrProcess {
    /// Starts `nvr <args>` in `cwd` with extra environment.
    pub fn start(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> NvrProcess {
        let mut cmd = Command::new(nvr_bin());
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LOG_LEVEL", "info")
            .env_remove("RUST_LOG")
            .env_remove("NVR_CONFIG")
            .env_remove("NATS_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start nvr");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        NvrProcess {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits until a stderr line contains `needle`; panics with the log on timeout.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "timed out waiting for {needle:?} in nvr's log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The log so far: every line read until now, joined.
    pub fn log_so_far(&mut self) -> String {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }

    /// Sends SIGINT.
    pub fn interrupt(&self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
    }

    /// Waits for exit up to `timeout`; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(l) = self.lines.try_recv() {
                    self.seen.push(l);
                }
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line up to the end of stderr (after exit): waits for the
    /// reader to reach end of file, for up to `timeout`.
    pub fn all_lines(&mut self, timeout: Duration) -> &[String] {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => break,
            }
        }
        &self.seen
    }

    /// Everything left on stdout (after exit).
    pub fn stdout(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for NvrProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `nvr <args>` to completion; returns (exit code, stdout, stderr).
pub fn nvr_output(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(nvr_bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("NVR_CONFIG")
        .env_remove("NATS_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run nvr");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// GETs `http://127.0.0.1:<port><path>`; returns (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_with(port, path, &[])
}

/// `GET` with extra request headers.
pub fn http_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect api");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    (code, body)
}

/// `GET` of a binary body; returns (status, response head, body).
pub fn http_get_bytes(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect api");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let body = buf.get(split + 4..).unwrap_or_default().to_vec();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head, body)
}

/// Polls `f` until it returns `Some`, up to `timeout` (for state that has no event to await).
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a config file into `dir` and returns its path.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(&p, yaml).expect("write config");
    p
}

/// Whether a process with this pid is alive.
pub fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// Pids of running `nats-server` processes whose command line contains `needle`.
pub fn nats_server_pids(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if cmd.contains("nats-server") && cmd.contains(needle) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// A message-time origin two minutes in the past, rounded to the second:
/// scripted input starts there so that it lies inside the receivers' time
/// window (`limits.max_behind_ms`, `limits.max_ahead_ms`) while running ahead
/// of the wall clock by up to two minutes.
pub fn recent_t0() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    (now - 120) * 1_000_000_000
}

/// The message-time origin of a test binary's scripted input.
pub static T0: std::sync::LazyLock<u64> = std::sync::LazyLock::new(recent_t0);

/// Period of the scripted walker input (5 fps).
pub const WALK_DT: u64 = 200_000_000;

/// Detections of one person at normalised `x` on a 640x480 camera, at
/// message time `T0 + seq * WALK_DT`.
pub fn walker(camera: &str, seq: u64, x: f32) -> nvr_subjects::Detections {
    nvr_subjects::Detections {
        v: nvr_subjects::SCHEMA_VERSION,
        camera: camera.into(),
        seq,
        ts_ns: *T0 + seq * WALK_DT,
        width: 640,
        height: 480,
        model: "test".into(),
        backend: "cpu".into(),
        worker: "t".into(),
        latency_ms: 1.0,
        queue_ms: 1.0,
        objects: vec![nvr_subjects::DetectedObject {
            class_id: 0,
            label: "person".into(),
            score: 0.9,
            bbox: [x, 0.3, x + 0.08, 0.8],
            embedding: None,
        }],
    }
}

/// `nvr run` on an external server with detection off and one calibrated
/// camera `hall` on floor `lobby` (640x480 pixels = 10 x 10 m); `extra` is
/// top-level YAML inserted before the floors.
pub fn hall_config(nats_url: &str, api: u16, extra: &str) -> String {
    let floors = "floors:\n  - id: lobby\n    size_m: [10.0, 10.0]\ncameras:\n  - id: hall\n    floor: lobby\n    calibration:\n      points:\n        - { image: [0, 480], floor: [0.0, 0.0] }\n        - { image: [640, 480], floor: [10.0, 0.0] }\n        - { image: [640, 0], floor: [10.0, 10.0] }\n        - { image: [0, 0], floor: [0.0, 10.0] }\n";
    format!(
        "nats:\n  embedded: false\n  url: \"{nats_url}\"\napi:\n  address: \"127.0.0.1:{api}\"\ndetection:\n  embedded: false\n{extra}{floors}"
    )
}

/// Runs `promtool check metrics` on a scrape; fails naming the problems, or
/// naming the setup command when promtool is missing.
pub fn promtool_check(scrape: &str) {
    use std::io::Write;
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            panic!("promtool: {e} (install it with scripts/setup: Debian's prometheus package)")
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(scrape.as_bytes())
            .expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every payload stored on `filter` in `stream`, in stream order.
pub async fn stored_payloads(
    js: &async_nats::jetstream::Context,
    stream: &str,
    filter: String,
) -> Vec<Vec<u8>> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    use futures::StreamExt;
    let stream = js.get_stream(stream).await.expect("stream");
    let mut consumer = stream
        .create_consumer(pull::Config {
            filter_subject: filter,
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let n = consumer.info().await.expect("consumer info").num_pending as usize;
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let mut msgs = consumer.messages().await.expect("messages");
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while out.len() < n {
            match msgs.next().await {
                Some(Ok(m)) => out.push(m.payload.to_vec()),
                _ => break,
            }
        }
    })
    .await;
    assert_eq!(out.len(), n, "stored messages read");
    out
}

/// The lines of `nvr replay --hex` output as bytes.
pub fn hex_lines(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}
