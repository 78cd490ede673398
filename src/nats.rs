//! NATS plumbing: the embedded `nats-server` child, the client connection
//! with timeout, retries and reconnect, and the idempotent creation of the
//! contract's streams and the shared `detectors` consumer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_nats::jetstream::{self, consumer, stream};
use nvr_subjects::streams::{self as spec, Discard, Retention, RetentionSettings, Storage};
use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::config::{Config, NatsConfig};

/// A `nats-server` child owned by this process; stopped on [`EmbeddedServer::stop`] or drop.
pub struct EmbeddedServer {
    /// The child process (killed on drop as a last resort).
    child: Option<Child>,
    /// The URL clients use to reach it.
    pub url: String,
    /// Its process id, for logs and tests.
    pub pid: u32,
}

/// Finds the `nats-server` binary: config, PATH, then `/usr/sbin`.
pub fn find_server_bin(configured: &str) -> Result<PathBuf> {
    if !configured.is_empty() {
        let p = PathBuf::from(configured);
        if p.is_file() {
            return Ok(p);
        }
        bail!("nats.server_bin = {configured:?}: file does not exist");
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("nats-server");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    for p in ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"] {
        if Path::new(p).is_file() {
            return Ok(p.into());
        }
    }
    bail!("nats-server not found in PATH or /usr/sbin: run scripts/setup (or set nats.server_bin)")
}

impl EmbeddedServer {
    /// Starts `nats-server -js` listening where `cfg.url` says and waits until it answers.
    pub async fn start(cfg: &NatsConfig, timeout: Duration) -> Result<EmbeddedServer> {
        let bin = find_server_bin(&cfg.server_bin)?;
        let first = cfg.url.split(',').next().unwrap_or("").trim();
        let rest = first.split_once("://").map(|(_, r)| r).unwrap_or(first);
        let (host, port) = crate::config::host_port(rest).map_err(|e| anyhow!("nats.url: {e}"))?;
        let host = if host == "localhost" {
            "127.0.0.1".to_string()
        } else {
            host
        };
        std::fs::create_dir_all(&cfg.store_dir)
            .with_context(|| format!("nats.store_dir {}: cannot create", cfg.store_dir))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-js")
            .arg("-a")
            .arg(&host)
            .arg("-p")
            .arg(port.to_string())
            .arg("-sd")
            .arg(&cfg.store_dir)
            .arg("-n")
            .arg("nvr-embedded")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        nvr_actors::video::die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id().unwrap_or(0);
        let url = format!("nats://{host}:{port}");
        info!(pid, %url, bin = %bin.display(), "started embedded nats-server");

        let addr = format!("{host}:{port}");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                let last = err.lines().last().unwrap_or("").to_string();
                bail!("embedded nats-server exited ({status}) at start: {last}");
            }
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill().await;
                bail!("embedded nats-server did not answer on {addr} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Log what the server says from now on.
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.contains("[ERR]") || line.contains("[WRN]") {
                        warn!(target: "nats_server", "{line}");
                    } else {
                        tracing::debug!(target: "nats_server", "{line}");
                    }
                }
            });
        }
        Ok(EmbeddedServer {
            child: Some(child),
            url,
            pid,
        })
    }

    /// Asks the server to stop (SIGTERM), waits up to 3 s, then kills it.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // SAFETY: sending a signal to our own child process id.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
            match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
                Ok(_) => info!(pid = self.pid, "embedded nats-server stopped"),
                Err(_) => {
                    warn!(
                        pid = self.pid,
                        "embedded nats-server did not stop in 3 s; killing it"
                    );
                    let _ = child.kill().await;
                }
            }
        }
    }
}

/// Connects with the configured timeout and retries; the client then
/// reconnects by itself for as long as the process lives.
pub async fn connect(cfg: &Config, url: &str, name: &str) -> Result<async_nats::Client> {
    let d = &cfg.detection;
    let timeout = Duration::from_secs(d.timeout_seconds);
    let mut last = None;
    for attempt in 0..=d.max_retries {
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(timeout)
            .max_reconnects(None)
            .event_callback(|ev| async move {
                match ev {
                    async_nats::Event::Disconnected => warn!("NATS disconnected; reconnecting"),
                    async_nats::Event::Connected => info!("NATS connected"),
                    other => tracing::debug!("NATS event: {other}"),
                }
            });
        if !cfg.nats.credentials.is_empty() {
            opts = opts
                .credentials_file(&cfg.nats.credentials)
                .await
                .with_context(|| format!("nats.credentials {}", cfg.nats.credentials))?;
        }
        match tokio::time::timeout(timeout, opts.connect(url)).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => last = Some(format!("timed out after {timeout:?}")),
        }
        if attempt < d.max_retries {
            warn!(
                attempt = attempt + 1,
                of = d.max_retries + 1,
                "cannot connect to NATS at {url}: {}; retrying in {} ms",
                last.as_deref().unwrap_or(""),
                d.retry_delay_ms
            );
            tokio::time::sleep(Duration::from_millis(d.retry_delay_ms)).await;
        }
    }
    bail!(
        "cannot connect to NATS at {url} after {} attempts: {}",
        d.max_retries + 1,
        last.unwrap_or_default()
    )
}

/// The retention settings the configuration asks for.
pub fn retention(cfg: &Config) -> RetentionSettings {
    let r = &cfg.nats.retention;
    RetentionSettings {
        frames_max_age: Duration::from_millis(r.frames_max_age_ms),
        frames_per_camera: r.frames_per_camera,
        max_age: Duration::from_secs_f64(r.max_age_hours * 3600.0),
        max_bytes: if r.max_bytes_mb < 0 {
            -1
        } else {
            r.max_bytes_mb.saturating_mul(1024 * 1024)
        },
        replicas: cfg.nats.replicas,
    }
}

/// The client configuration of a contract stream.
pub fn stream_config(s: &spec::StreamSpec) -> stream::Config {
    stream::Config {
        name: s.name.to_string(),
        subjects: s.subjects.clone(),
        retention: match s.retention {
            Retention::Limits => stream::RetentionPolicy::Limits,
            Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
        },
        storage: match s.storage {
            Storage::Memory => stream::StorageType::Memory,
            Storage::File => stream::StorageType::File,
        },
        max_age: s.max_age,
        max_bytes: s.max_bytes,
        max_messages_per_subject: s.max_msgs_per_subject,
        discard: match s.discard {
            Discard::Old => stream::DiscardPolicy::Old,
            Discard::New => stream::DiscardPolicy::New,
        },
        discard_new_per_subject: matches!(s.discard, Discard::New) && s.max_msgs_per_subject > 0,
        num_replicas: s.replicas,
        duplicate_window: s.duplicate_window,
        ..Default::default()
    }
}

/// What [`ensure_streams`] did to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamAction {
    /// It did not exist and was created.
    Created,
    /// It existed with other settings and was updated.
    Updated,
    /// It existed with the wanted settings.
    Unchanged,
}

/// Whether two stream configurations agree on the fields this contract sets.
fn same_settings(a: &stream::Config, b: &stream::Config) -> bool {
    a.subjects == b.subjects
        && a.retention == b.retention
        && a.storage == b.storage
        && a.max_age == b.max_age
        && a.max_bytes == b.max_bytes
        && a.max_messages_per_subject == b.max_messages_per_subject
        && a.discard == b.discard
        && a.discard_new_per_subject == b.discard_new_per_subject
        && a.num_replicas == b.num_replicas
        && a.duplicate_window == b.duplicate_window
}

/// Creates or updates every stream of the contract and the `detectors`
/// consumer. Idempotent: a second call with the same settings changes nothing.
pub async fn ensure_streams(
    js: &jetstream::Context,
    settings: &RetentionSettings,
) -> Result<Vec<(String, StreamAction)>> {
    let mut out = Vec::new();
    for s in spec::all_streams(settings) {
        let want = stream_config(&s);
        let action = match js.get_stream(s.name).await {
            Ok(mut existing) => {
                let have = existing.info().await?.config.clone();
                if same_settings(&have, &want) {
                    StreamAction::Unchanged
                } else if have.retention != want.retention || have.storage != want.storage {
                    bail!(
                        "stream {} exists with retention {:?} / storage {:?}, which cannot be changed to {:?} / {:?}; delete it (nats stream rm {}) and start again",
                        s.name, have.retention, have.storage, want.retention, want.storage, s.name
                    );
                } else {
                    js.update_stream(want.clone())
                        .await
                        .with_context(|| format!("updating stream {}", s.name))?;
                    StreamAction::Updated
                }
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                js.create_stream(want.clone())
                    .await
                    .with_context(|| format!("creating stream {}", s.name))?;
                StreamAction::Created
            }
            Err(e) => return Err(anyhow!("looking up stream {}: {e}", s.name)),
        };
        info!(stream = s.name, ?action, "stream ready");
        out.push((s.name.to_string(), action));
    }
    ensure_detectors_consumer(js).await?;
    Ok(out)
}

/// The pull configuration of the shared `detectors` consumer.
pub fn detectors_consumer_config() -> consumer::pull::Config {
    let c = spec::detectors_consumer();
    consumer::pull::Config {
        durable_name: Some(c.durable.to_string()),
        description: Some("nvr detector workers (shared queue)".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: c.ack_wait,
        max_deliver: c.max_deliver,
        max_ack_pending: c.max_ack_pending,
        ..Default::default()
    }
}

/// Creates the `detectors` consumer if it does not exist.
pub async fn ensure_detectors_consumer(js: &jetstream::Context) -> Result<()> {
    let stream = js
        .get_stream(spec::FRAMES)
        .await
        .with_context(|| format!("stream {}", spec::FRAMES))?;
    stream
        .get_or_create_consumer::<consumer::pull::Config>(
            spec::DETECTORS_CONSUMER,
            detectors_consumer_config(),
        )
        .await
        .with_context(|| format!("consumer {}", spec::DETECTORS_CONSUMER))?;
    Ok(())
}
