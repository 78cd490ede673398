//! Video sources for the camera actor: runs `ffmpeg` as a child process that
//! reads a camera (RTSP, HTTP, a file, optionally looped) and writes raw
//! RGB24 frames on its stdout, already sampled at the detection fps and
//! downscaled to fit a maximum side. This module parses the frames off the
//! pipe and reports a clean end of stream, or a failure carrying the last
//! lines of ffmpeg's stderr. The pure parts (URL handling, command lines,
//! output size, log parsing, backoff) live in the submodules.

mod args;
mod backoff;
pub mod url;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::task::JoinHandle;

pub use args::{output_dims, parse_stream_info, NET_IO_TIMEOUT};
pub use backoff::Backoff;
pub use url::{classify, mask_url};

/// How many of ffmpeg's last stderr lines a source keeps.
pub const STDERR_RING_LINES: usize = 20;
/// How many of those lines go into an error message.
const REASON_LINES: usize = 5;
/// Longest stderr line kept, in characters.
const MAX_LINE_CHARS: usize = 300;
/// How long `start` lets the probe run (an RTSP stream may need a key frame).
pub const START_PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// A running source that produces no bytes for this long (plus two frame
/// intervals) is killed and reported as stalled.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for ffmpeg to exit once its stdout has closed.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// What to read and how to sample it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Camera address: `rtsp://`, `rtsps://`, `http(s)://`, a file path or a `file://` URL.
    pub url: String,
    /// Output frame rate (ffmpeg `-vf fps=`): the camera's detection fps.
    pub fps: f64,
    /// Downscale so that `max(w, h) <= max_side` (aspect kept, even dims); 0 = no scaling.
    pub max_side: u32,
    /// Files only: loop forever (`-stream_loop -1`), so a clip can stand in for a camera.
    pub looping: bool,
    /// Files only: read at native rate (`-re`) so a file paces like a live camera.
    pub realtime: bool,
    /// RTSP transport, "tcp" or "udp"; `None` means tcp.
    pub rtsp_transport: Option<String>,
    /// The ffmpeg executable to run (a name looked up in `PATH`, or a path).
    pub ffmpeg_bin: PathBuf,
}

impl Default for SourceSpec {
    fn default() -> Self {
        SourceSpec {
            url: String::new(),
            fps: 5.0,
            max_side: 0,
            looping: false,
            realtime: false,
            rtsp_transport: None,
            ffmpeg_bin: PathBuf::from("ffmpeg"),
        }
    }
}

/// The kind of source a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `rtsp://` or `rtsps://`: a network camera.
    Rtsp,
    /// `http://` or `https://`: MJPEG, HLS or a file served over HTTP.
    Http,
    /// A local file path or `file://` URL.
    File,
}

/// Errors of a video source. Every message is one line naming the url, with
/// any password masked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The camera has no URL.
    #[error("video source: empty url")]
    EmptyUrl,
    /// A scheme ffmpeg is not asked to read here.
    #[error("video source {url}: unsupported scheme {scheme:?} (use rtsp, rtsps, http, https, file or a path)")]
    UnsupportedScheme {
        /// The masked url.
        url: String,
        /// The scheme as written, lower case.
        scheme: String,
    },
    /// A file source whose file does not exist.
    #[error("video source {url}: file not found")]
    MissingFile {
        /// The masked url.
        url: String,
    },
    /// A spec value out of range.
    #[error("video source {url}: {reason}")]
    InvalidSpec {
        /// The masked url.
        url: String,
        /// Which field and why.
        reason: String,
    },
    /// ffmpeg could not be started.
    #[error(
        "video source {url}: cannot run {bin}: {reason} (ffmpeg is installed by scripts/setup)"
    )]
    Spawn {
        /// The masked url.
        url: String,
        /// The executable tried.
        bin: String,
        /// The OS error.
        reason: String,
    },
    /// The source opened but no video stream size could be read, or it failed to open.
    #[error("video source {url}: probe failed: {reason}")]
    Probe {
        /// The masked url.
        url: String,
        /// ffmpeg's last error lines.
        reason: String,
    },
    /// An operation did not finish in time.
    #[error("video source {url}: {what} timed out after {secs:.1}s")]
    Timeout {
        /// The masked url.
        url: String,
        /// What timed out.
        what: String,
        /// The limit.
        secs: f64,
    },
    /// ffmpeg exited with an error, or the stream broke.
    #[error("video source {url}: ffmpeg failed: {reason}")]
    Failed {
        /// The masked url.
        url: String,
        /// Exit status and ffmpeg's last stderr lines.
        reason: String,
    },
}

/// Size and rate of a source's first video stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// Width in pixels of the decoded stream.
    pub width: u32,
    /// Height in pixels of the decoded stream.
    pub height: u32,
    /// Nominal frame rate, if the stream says.
    pub fps: Option<f64>,
}

/// One decoded, sampled and downscaled frame.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    /// Width of `data` in pixels.
    pub width: u32,
    /// Height of `data` in pixels.
    pub height: u32,
    /// Packed RGB24 pixels, `width * height * 3` bytes, row-major.
    pub data: Vec<u8>,
    /// Frame number in this run of ffmpeg, from 0.
    pub index: u64,
    /// Width of the source stream before scaling (detections are reported in these pixels).
    pub orig_width: u32,
    /// Height of the source stream before scaling.
    pub orig_height: u32,
}

fn spawn_error(spec: &SourceSpec, url: &str, e: std::io::Error) -> SourceError {
    SourceError::Spawn {
        url: url.to_string(),
        bin: spec.ffmpeg_bin.display().to_string(),
        reason: e.to_string(),
    }
}

/// The last `n` non-empty lines of `lines`, masked and joined on one line.
fn reason_from<'a>(
    raw_url: &str,
    lines: impl DoubleEndedIterator<Item = &'a str>,
    n: usize,
) -> String {
    let mut last: Vec<&str> = lines
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "At least one output file must be specified")
        .take(n)
        .collect();
    last.reverse();
    url::mask_in(raw_url, &last.join(" | "))
}

/// Asks the kernel to send `signal` to the child when the thread that spawned
/// it goes away, so an external process (ffmpeg, nats-server) never outlives an
/// `nvr` that was killed without a chance to clean up. Spawn from a runtime
/// worker thread (which lives as long as the process), not a short-lived
/// blocking thread.
pub fn die_with_parent(cmd: &mut Command, signal: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and only calls
    // the async-signal-safe `prctl`.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (cmd, signal);
}

/// Reads the size and rate of the source's first video stream by letting
/// ffmpeg open it and print its streams (`ffprobe` is not needed).
pub async fn probe(spec: &SourceSpec, timeout: Duration) -> Result<VideoInfo, SourceError> {
    let url = mask_url(spec.url.trim());
    let kind = classify(&spec.url)?;
    args::validate(spec, &url)?;
    let mut cmd = Command::new(&spec.ffmpeg_bin);
    cmd.args(args::probe_args(spec, kind))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut cmd, libc::SIGKILL);
    let child = cmd.spawn().map_err(|e| spawn_error(spec, &url, e))?;
    // Dropping the future on timeout drops the child, which kills it.
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| SourceError::Timeout {
            url: url.clone(),
            what: "probe".into(),
            secs: timeout.as_secs_f64(),
        })?
        .map_err(|e| SourceError::Probe {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let log = String::from_utf8_lossy(&out.stderr);
    parse_stream_info(&log).ok_or_else(|| {
        let reason = reason_from(&spec.url, log.lines(), 3);
        SourceError::Probe {
            url: url.clone(),
            reason: if reason.is_empty() {
                "no video stream found".into()
            } else {
                reason
            },
        }
    })
}

/// The last lines ffmpeg wrote on stderr.
type Ring = Arc<Mutex<VecDeque<String>>>;

/// Collects ffmpeg's stderr into the ring until it closes.
fn spawn_stderr_reader(stderr: ChildStderr, ring: Ring) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut r = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            for part in text.split(['\r', '\n']).filter(|p| !p.trim().is_empty()) {
                let part: String = part.trim_end().chars().take(MAX_LINE_CHARS).collect();
                if let Ok(mut q) = ring.lock() {
                    if q.len() == STDERR_RING_LINES {
                        q.pop_front();
                    }
                    q.push_back(part);
                }
            }
        }
    })
}

/// A running ffmpeg child that yields frames. Dropping it kills ffmpeg.
pub struct FfmpegSource {
    /// The masked url, for messages.
    url: String,
    /// The url as given, to mask its password in ffmpeg's messages.
    raw_url: String,
    /// The ffmpeg process.
    child: Child,
    /// Frame bytes; `None` once the stream has ended.
    stdout: Option<ChildStdout>,
    /// Collects stderr into `ring`.
    stderr_task: Option<JoinHandle<()>>,
    /// Last lines of stderr.
    ring: Ring,
    /// Output frame size.
    width: u32,
    height: u32,
    /// Source size before scaling.
    orig_width: u32,
    orig_height: u32,
    /// Bytes per frame.
    frame_len: usize,
    /// The frame being read; kept across calls so a cancelled read resumes.
    buf: Vec<u8>,
    /// Bytes of `buf` already read.
    filled: usize,
    /// Buffers handed back with `recycle`.
    spare: Vec<Vec<u8>>,
    /// Index of the next frame.
    index: u64,
    /// No bytes for this long means the source stalled.
    stall: Duration,
}

impl FfmpegSource {
    /// Probes the source's size, then spawns ffmpeg to read it at `spec.fps`
    /// scaled to fit `spec.max_side`.
    pub async fn start(spec: &SourceSpec) -> Result<FfmpegSource, SourceError> {
        let url = mask_url(spec.url.trim());
        let kind = classify(&spec.url)?;
        args::validate(spec, &url)?;
        let info = probe(spec, START_PROBE_TIMEOUT).await?;
        let (width, height) = output_dims(info.width, info.height, spec.max_side);
        let frame_len = (width as usize)
            .checked_mul(height as usize)
            .and_then(|p| p.checked_mul(3))
            .filter(|&n| n > 0 && n <= 1 << 30)
            .ok_or_else(|| SourceError::InvalidSpec {
                url: url.clone(),
                reason: format!("frame size {width}x{height} is out of range"),
            })?;
        let mut cmd = Command::new(&spec.ffmpeg_bin);
        cmd.args(args::run_args(spec, kind, width, height))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut cmd, libc::SIGKILL);
        let mut child = cmd.spawn().map_err(|e| spawn_error(spec, &url, e))?;
        let ring: Ring = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_RING_LINES)));
        let stderr_task = child
            .stderr
            .take()
            .map(|e| spawn_stderr_reader(e, ring.clone()));
        let stdout = child.stdout.take();
        let stall = STALL_TIMEOUT + Duration::from_secs_f64(2.0 / spec.fps);
        Ok(FfmpegSource {
            url,
            raw_url: spec.url.clone(),
            child,
            stdout,
            stderr_task,
            ring,
            width,
            height,
            orig_width: info.width,
            orig_height: info.height,
            frame_len,
            buf: Vec::new(),
            filled: 0,
            spare: Vec::new(),
            index: 0,
            stall,
        })
    }

    /// Output frame size (width, height).
    pub fn frame_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Source size before scaling (width, height).
    pub fn source_size(&self) -> (u32, u32) {
        (self.orig_width, self.orig_height)
    }

    /// Process id of the ffmpeg child, while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The masked url.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The last lines ffmpeg wrote on stderr (at most `STDERR_RING_LINES`), masked.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.ring
            .lock()
            .map(|q| q.iter().map(|l| url::mask_in(&self.raw_url, l)).collect())
            .unwrap_or_default()
    }

    /// Hands a frame's buffer back so the next frame reuses its allocation.
    pub fn recycle(&mut self, mut data: Vec<u8>) {
        if data.capacity() >= self.frame_len && self.spare.len() < 4 {
            data.resize(self.frame_len, 0);
            self.spare.push(data);
        }
    }

    /// Next frame; `Ok(None)` at a clean end of stream; `Err` when ffmpeg
    /// failed (its last stderr lines are the reason) or produced nothing for
    /// `STALL_TIMEOUT`. Cancel-safe: a dropped call loses no bytes. After the
    /// end or an error, further calls return `Ok(None)`.
    pub async fn next_frame(&mut self) -> Result<Option<VideoFrame>, SourceError> {
        if self.stdout.is_none() {
            return Ok(None);
        }
        if self.buf.len() != self.frame_len {
            self.buf = self.spare.pop().unwrap_or_default();
            self.buf.resize(self.frame_len, 0);
        }
        while self.filled < self.frame_len {
            let Some(stdout) = self.stdout.as_mut() else {
                return Ok(None);
            };
            let read =
                tokio::time::timeout(self.stall, stdout.read(&mut self.buf[self.filled..])).await;
            match read {
                Ok(Ok(0)) => return self.finish().await,
                Ok(Ok(n)) => self.filled += n,
                Ok(Err(e)) => {
                    let why = format!("reading frames: {e}");
                    return Err(self.fail(why).await);
                }
                Err(_) => {
                    let why = format!("no frame for {:.1}s", self.stall.as_secs_f64());
                    return Err(self.fail(why).await);
                }
            }
        }
        self.filled = 0;
        let data = std::mem::take(&mut self.buf);
        let index = self.index;
        self.index += 1;
        Ok(Some(VideoFrame {
            width: self.width,
            height: self.height,
            data,
            index,
            orig_width: self.orig_width,
            orig_height: self.orig_height,
        }))
    }

    /// ffmpeg's last stderr lines once it has exited and stderr is drained.
    async fn drained_reason(&mut self) -> String {
        if let Some(t) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        let lines = self.stderr_tail();
        reason_from(
            &self.raw_url,
            lines.iter().map(String::as_str),
            REASON_LINES,
        )
    }

    /// Stdout closed: waits for ffmpeg's exit status and turns it into the result.
    async fn finish(&mut self) -> Result<Option<VideoFrame>, SourceError> {
        self.stdout = None;
        let status: Option<ExitStatus> =
            match tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
                Ok(Ok(s)) => Some(s),
                _ => {
                    let _ = self.child.kill().await;
                    None
                }
            };
        let partial = self.filled;
        self.filled = 0;
        let tail = self.drained_reason().await;
        let with_tail = |head: String| {
            if tail.is_empty() {
                head
            } else {
                format!("{head}: {tail}")
            }
        };
        match status {
            Some(s) if s.success() && partial == 0 => Ok(None),
            Some(s) if s.success() => Err(SourceError::Failed {
                url: self.url.clone(),
                reason: with_tail(format!(
                    "stream ended inside a frame ({partial} of {} bytes)",
                    self.frame_len
                )),
            }),
            Some(s) => Err(SourceError::Failed {
                url: self.url.clone(),
                reason: with_tail(format!("exited with {s}")),
            }),
            None => Err(SourceError::Failed {
                url: self.url.clone(),
                reason: with_tail(format!(
                    "closed its output but did not exit within {}s",
                    EXIT_WAIT.as_secs()
                )),
            }),
        }
    }

    /// Kills ffmpeg after a read error or stall and builds the error.
    async fn fail(&mut self, why: String) -> SourceError {
        self.stdout = None;
        self.filled = 0;
        let _ = self.child.kill().await;
        let tail = self.drained_reason().await;
        SourceError::Failed {
            url: self.url.clone(),
            reason: if tail.is_empty() {
                why
            } else {
                format!("{why}: {tail}")
            },
        }
    }

    /// Kills ffmpeg and waits for it, so no zombie is left.
    pub async fn stop(mut self) {
        self.stdout = None;
        let _ = self.child.kill().await;
        if let Some(t) = self.stderr_task.take() {
            t.abort();
        }
    }
}

impl std::fmt::Debug for FfmpegSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FfmpegSource")
            .field("url", &self.url)
            .field("frame_size", &(self.width, self.height))
            .field("source_size", &(self.orig_width, self.orig_height))
            .field("index", &self.index)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_masked_line() {
        let lines = [
            "",
            "[rtsp @ 0x55] method DESCRIBE failed: 401 Unauthorized",
            "rtsp://admin:pw@cam/x: Server returned 401 Unauthorized (authorization failed)\r",
            "At least one output file must be specified",
        ];
        let r = reason_from("rtsp://admin:pw@cam/x", lines.iter().copied(), 5);
        assert!(!r.contains('\n') && !r.contains('\r'), "{r}");
        assert!(!r.contains(":pw@"), "{r}");
        assert!(r.starts_with("[rtsp @ 0x55] method DESCRIBE failed"), "{r}");
        assert!(r.ends_with("(authorization failed)"), "{r}");
    }

    #[test]
    fn error_messages_are_one_line_and_masked() {
        let e = classify("ftp://u:secret@host/x").unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("ftp://u:***@host/x") && !m.contains("secret"),
            "{m}"
        );
        assert!(!m.contains('\n'));
        assert_eq!(classify(""), Err(SourceError::EmptyUrl));
    }
}
