//! Video sources against real ffmpeg, real sample files and a real RTSP
//! server on loopback. Missing ffmpeg, rtsp-server-perl or sample files make
//! these tests fail with a message naming `scripts/setup`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nvr_actors::video::{classify, probe, FfmpegSource, SourceError, SourceKind, SourceSpec};

fn data_dir() -> PathBuf {
    std::env::var_os("NVR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data")))
}

fn require_ffmpeg() {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "ffmpeg is not installed or does not run: run scripts/setup"
    );
}

fn sample(name: &str) -> String {
    require_ffmpeg();
    let p = data_dir().join("samples").join(name);
    assert!(
        p.is_file(),
        "sample video {} is missing: run scripts/setup",
        p.display()
    );
    p.to_string_lossy().into_owned()
}

fn spec(url: &str, fps: f64, max_side: u32) -> SourceSpec {
    SourceSpec {
        url: url.to_string(),
        fps,
        max_side,
        ..Default::default()
    }
}

/// Reads frames until the end (or `limit`), checking each; returns the
/// count. `first_index` is the index the next frame must have.
async fn drain(src: &mut FfmpegSource, limit: usize, first_index: u64) -> usize {
    let mut n = 0;
    while let Some(f) = src.next_frame().await.expect("file source failed") {
        assert_eq!((f.width, f.height), (416, 312));
        assert_eq!((f.orig_width, f.orig_height), (768, 576));
        assert_eq!(f.data.len(), 416 * 312 * 3);
        assert_eq!(f.index, first_index + n as u64);
        n += 1;
        src.recycle(f.data);
        if n == limit {
            break;
        }
    }
    n
}

#[tokio::test]
async fn file_is_sampled_scaled_and_ends_cleanly() {
    let url = sample("vtest.avi");
    let info = probe(&spec(&url, 5.0, 416), Duration::from_secs(10))
        .await
        .expect("probe vtest.avi");
    assert_eq!((info.width, info.height), (768, 576));
    assert_eq!(info.fps, Some(10.0));

    let mut src = FfmpegSource::start(&spec(&url, 5.0, 416))
        .await
        .expect("start vtest.avi");
    assert_eq!(src.frame_size(), (416, 312));
    assert_eq!(src.source_size(), (768, 576));
    // The first frame is a real picture, not a zeroed buffer.
    let first = src
        .next_frame()
        .await
        .expect("first frame")
        .expect("a frame");
    let mean = first.data.iter().map(|&b| b as f64).sum::<f64>() / first.data.len() as f64;
    assert!(mean > 20.0 && mean < 235.0, "mean pixel {mean}");
    let n = 1 + drain(&mut src, usize::MAX, 1).await;
    // 795 frames at 10 fps sampled at 5 fps.
    assert!((795 / 2 - 2..=795 / 2 + 2).contains(&n), "got {n} frames");
    assert_eq!(src.next_frame().await, Ok(None), "stays ended");
    src.stop().await;
}

#[tokio::test]
async fn mp4_file_url_reads_and_stop_leaves_no_process() {
    let path = sample("vtest.mp4");
    let url = format!("file://{path}");
    assert_eq!(classify(&url), Ok(SourceKind::File));
    let mut src = FfmpegSource::start(&spec(&url, 5.0, 416))
        .await
        .expect("start vtest.mp4");
    assert_eq!(drain(&mut src, 20, 0).await, 20);
    let pid = src.pid().expect("running child has a pid");
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    src.stop().await;
    // Killed and reaped: no process and no zombie with that pid (pids are not
    // reused this quickly).
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "ffmpeg {pid} is still there after stop"
    );
}

#[tokio::test]
async fn looping_file_yields_more_frames_than_it_has() {
    let url = sample("vtest.mp4");
    let mut s = spec(&url, 5.0, 416);
    s.looping = true;
    let mut src = FfmpegSource::start(&s).await.expect("start looping");
    // The clip has about 397 frames at 5 fps; a looped read keeps going.
    assert_eq!(drain(&mut src, 450, 0).await, 450);
    src.stop().await;
}

#[tokio::test]
async fn bad_sources_fail_quickly_with_clear_messages() {
    require_ffmpeg();
    assert!(matches!(
        classify("ftp://x"),
        Err(SourceError::UnsupportedScheme { .. })
    ));
    assert_eq!(classify(""), Err(SourceError::EmptyUrl));

    let limit = Duration::from_secs(15);
    let missing = "/nonexistent/dir/camera.mp4";
    let e = tokio::time::timeout(limit, FfmpegSource::start(&spec(missing, 5.0, 416)))
        .await
        .expect("missing file did not fail in time")
        .expect_err("missing file must fail");
    let m = e.to_string();
    assert!(m.contains(missing) && m.contains("not found"), "{m}");

    let refused = "rtsp://admin:hunter2@127.0.0.1:1/x";
    let e = tokio::time::timeout(limit, FfmpegSource::start(&spec(refused, 5.0, 416)))
        .await
        .expect("refused rtsp did not fail in time")
        .expect_err("refused rtsp must fail");
    let m = e.to_string();
    assert!(m.contains("rtsp://admin:***@127.0.0.1:1/x"), "{m}");
    assert!(m.to_lowercase().contains("refused"), "{m}");
    assert!(!m.contains("hunter2") && !m.contains('\n'), "{m}");

    // A file that is not a video.
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, b"this is not a video").expect("write junk");
    let e = tokio::time::timeout(
        limit,
        FfmpegSource::start(&spec(&junk.to_string_lossy(), 5.0, 416)),
    )
    .await
    .expect("junk file did not fail in time")
    .expect_err("junk file must fail");
    assert!(matches!(e, SourceError::Probe { .. }), "{e}");
    assert!(e.to_string().contains("junk.mp4"), "{e}");

    // A missing ffmpeg executable names scripts/setup.
    let mut s = spec(&sample("vtest.avi"), 5.0, 416);
    s.ffmpeg_bin = "/nonexistent/ffmpeg".into();
    let e = FfmpegSource::start(&s).await.expect_err("no ffmpeg");
    assert!(matches!(e, SourceError::Spawn { .. }), "{e}");
    assert!(e.to_string().contains("scripts/setup"), "{e}");

    // Nonsense fps is refused before anything runs.
    let e = FfmpegSource::start(&spec(&sample("vtest.avi"), 0.0, 416))
        .await
        .expect_err("fps 0");
    assert!(e.to_string().contains("fps"), "{e}");
}

/// Child processes killed and reaped on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Polls until something listens on `port` (bounded).
async fn wait_listening(port: u16, procs: &mut Procs) {
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = procs.0.last_mut().and_then(|c| c.try_wait().ok().flatten()) {
            panic!("the server exited with {status} before listening on {port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port} after 5s");
}

/// Starts the source, retrying while the publisher is not announced yet.
async fn start_with_retries(s: &SourceSpec) -> Result<FfmpegSource, SourceError> {
    let mut last = None;
    for attempt in 0..20u32 {
        match FfmpegSource::start(s).await {
            Ok(src) => return Ok(src),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt as u64 + 1).min(5))).await;
    }
    Err(last.expect("at least one attempt"))
}

#[tokio::test]
async fn rtsp_server_on_loopback() {
    let mp4 = sample("vtest.mp4");
    let server_bin = "/usr/bin/rtsp-server-perl";
    assert!(
        PathBuf::from(server_bin).is_file(),
        "{server_bin} is missing (Debian package rtsp-server-perl): run scripts/setup"
    );
    let client_port = free_port();
    let server_port = free_port();
    let rtp_port = 30000 + (client_port % 20000);
    let mut procs = Procs(Vec::new());
    procs.0.push(
        Command::new(server_bin)
            .args(["--clientport", &client_port.to_string()])
            .args(["--serverport", &server_port.to_string()])
            .args(["--client_listen_address", "127.0.0.1"])
            .args(["--source_listen_address", "127.0.0.1"])
            .args(["--rtp_start_port", &rtp_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start rtsp-server-perl: run scripts/setup"),
    );
    wait_listening(server_port, &mut procs).await;
    wait_listening(client_port, &mut procs).await;
    procs.0.push(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-re", "-stream_loop", "-1", "-i", &mp4])
            .args(["-c", "copy", "-f", "rtsp"])
            .arg(format!("rtsp://127.0.0.1:{server_port}/cam1"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the ffmpeg publisher"),
    );

    let url = format!("rtsp://127.0.0.1:{client_port}/cam1");
    let mut udp = spec(&url, 5.0, 416);
    udp.rtsp_transport = Some("udp".into());
    let mut src = start_with_retries(&udp).await.expect("rtsp over udp");
    assert_eq!(src.source_size(), (768, 576));
    for i in 0..10u64 {
        let f = src
            .next_frame()
            .await
            .expect("rtsp udp frame")
            .expect("rtsp stream ended early");
        assert_eq!((f.width, f.height, f.index), (416, 312, i));
        assert_eq!(f.data.len(), 416 * 312 * 3);
    }
    src.stop().await;

    // rtsp-server-perl answers RTP-over-TCP SETUP with 400; either it works
    // or it fails with a clear message naming the url.
    let mut tcp = spec(&url, 5.0, 416);
    tcp.rtsp_transport = Some("tcp".into());
    match FfmpegSource::start(&tcp).await {
        Ok(mut src) => {
            for _ in 0..10 {
                let f = src.next_frame().await.expect("rtsp tcp frame");
                let f = f.expect("rtsp tcp stream ended early");
                assert_eq!((f.width, f.height), (416, 312));
            }
            src.stop().await;
        }
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains(&url) && !m.contains('\n'), "{m}");
            eprintln!("rtsp over tcp is not supported by this server: {m}");
        }
    }

    // When the camera goes away, the reader ends or fails instead of hanging.
    let mut src = start_with_retries(&udp).await.expect("rtsp over udp again");
    let f = src.next_frame().await.expect("frame before cut");
    assert!(f.is_some());
    drop(procs);
    let end = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match src.next_frame().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("reader hung after the server went away");
    eprintln!("after the server went away: {end:?}");
    src.stop().await;
}

#[tokio::test]
async fn http_source_reads_to_the_end_and_reports_http_errors() {
    let avi = sample("vtest.avi");
    let dir = data_dir().join("samples");
    let port = free_port();
    let mut procs = Procs(Vec::new());
    procs.0.push(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run python3 -m http.server: run scripts/setup"),
    );
    wait_listening(port, &mut procs).await;
    assert!(avi.ends_with("vtest.avi"));
    let url = format!("http://127.0.0.1:{port}/vtest.avi");
    assert_eq!(classify(&url), Ok(SourceKind::Http));
    let mut src = FfmpegSource::start(&spec(&url, 5.0, 416))
        .await
        .expect("start http source");
    let n = drain(&mut src, usize::MAX, 0).await;
    assert!((795 / 2 - 2..=795 / 2 + 2).contains(&n), "got {n} frames");
    src.stop().await;

    let missing = format!("http://127.0.0.1:{port}/nothere.avi");
    let e = tokio::time::timeout(
        Duration::from_secs(15),
        FfmpegSource::start(&spec(&missing, 5.0, 416)),
    )
    .await
    .expect("404 did not fail in time")
    .expect_err("404 must fail");
    let m = e.to_string();
    assert!(m.contains(&missing) && m.contains("404"), "{m}");
}

#[tokio::test]
async fn silent_server_fails_after_the_io_timeout_instead_of_hanging() {
    require_ffmpeg();
    // Accepts connections (the kernel completes the handshake) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    let rtsp = spec(&format!("rtsp://127.0.0.1:{port}/x"), 5.0, 416);
    let http = spec(&format!("http://127.0.0.1:{port}/x"), 5.0, 416);
    let limit = nvr_actors::video::NET_IO_TIMEOUT + Duration::from_secs(10);
    let (r, h) = tokio::join!(
        tokio::time::timeout(limit, FfmpegSource::start(&rtsp)),
        tokio::time::timeout(limit, FfmpegSource::start(&http)),
    );
    let r = r.expect("silent rtsp server: start hung past the io timeout");
    let h = h.expect("silent http server: start hung past the io timeout");
    let re = r.expect_err("silent rtsp server must fail");
    let he = h.expect_err("silent http server must fail");
    assert!(re.to_string().contains(&rtsp.url), "{re}");
    assert!(he.to_string().contains(&http.url), "{he}");
    drop(listener);
}
