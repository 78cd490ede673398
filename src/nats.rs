//! NATS plumbing: the embedded `nats-server` child, the client connection
//! with timeout, retries and reconnect, and (in [`streams`]) the idempotent
//! creation of the contract's streams and the shared `detectors` consumer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_nats::jetstream::{consumer, stream};
use tokio::process::{Child, Command};
use tracing::{error, info, warn};

use crate::config::{Config, NatsConfig};

mod streams;
pub use streams::*;

/// Set once the process has begun an orderly shutdown: the connection
/// dropping then (the embedded server stops last) is expected, not a fault.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// Marks the start of an orderly shutdown (see [`SHUTTING_DOWN`]).
pub fn mark_shutting_down() {
    SHUTTING_DOWN.store(true, Ordering::Relaxed);
}

fn shutting_down() -> bool {
    SHUTTING_DOWN.load(Ordering::Relaxed)
}

/// A supervised `nats-server` child owned by this process. A monitor task
/// restarts it with backoff when it exits or stops answering (a stopped or
/// wedged process is killed first); when it cannot be restarted,
/// [`EmbeddedServer::failed`] resolves so the process exits non-zero and its
/// service manager restarts it. Stopped on [`EmbeddedServer::stop`].
pub struct EmbeddedServer {
    /// The URL clients use to reach it.
    pub url: String,
    /// Asks the monitor to stop the child and return.
    stop: tokio_util::sync::CancellationToken,
    /// The monitor task (owns the child).
    monitor: Option<tokio::task::JoinHandle<()>>,
    /// Set with the reason once the server cannot be restarted.
    failed: tokio::sync::watch::Receiver<Option<String>>,
    /// Restarts so far (shown in health).
    pub restarts: Arc<AtomicU64>,
}

/// Consecutive failed restarts after which the embedded server is given up.
const MAX_RESTART_FAILURES: u32 = 5;
/// Consecutive failed liveness probes (one a second) after which a running
/// but unresponsive server is killed and restarted.
const MAX_PROBE_FAILURES: u32 = 15;

/// How the embedded server is started: everything needed to start it again.
#[derive(Clone)]
struct ServerLaunch {
    /// The generated configuration with the role users, when roles are on.
    config_file: Option<PathBuf>,
    bin: PathBuf,
    host: String,
    port: u16,
    store_dir: String,
    timeout: Duration,
}

/// The host and port the embedded server listens on, from `nats.url`.
pub fn embedded_listen(cfg: &NatsConfig) -> Result<(String, u16)> {
    let first = cfg.url.split(',').next().unwrap_or("").trim();
    let rest = first.split_once("://").map(|(_, r)| r).unwrap_or(first);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let (host, port) = crate::config::host_port(rest).map_err(|e| anyhow!("nats.url: {e}"))?;
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    Ok((host, port))
}

/// Checks, before anything is started, that the embedded server can run:
/// the binary exists, the store directory can be created and the port is
/// free (another server there would silently receive this process's
/// streams). The error is one line naming what is wrong.
pub fn preflight_embedded(cfg: &NatsConfig) -> Result<()> {
    find_server_bin(&cfg.server_bin)?;
    let (host, port) = embedded_listen(cfg)?;
    std::fs::create_dir_all(&cfg.store_dir).map_err(|e| {
        anyhow!(
            "nats.store_dir = {:?}: cannot create it: {e}",
            cfg.store_dir
        )
    })?;
    port_free(&host, port)
}

/// Fails with one line when `host:port` cannot be bound.
fn port_free(host: &str, port: u16) -> Result<()> {
    match std::net::TcpListener::bind((host, port)) {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "nats.url: port {port} on {host} is already in use ({e}); stop what holds it, pick another port, or set nats.embedded=false (NATS_EMBEDDED=false) to use the server there"
        ),
    }
}

impl ServerLaunch {
    /// Starts the child and waits until it answers on its port.
    async fn spawn(&self) -> Result<Child> {
        port_free(&self.host, self.port)?;
        let mut cmd = Command::new(&self.bin);
        if let Some(c) = &self.config_file {
            cmd.arg("-c").arg(c);
        }
        cmd.arg("-js")
            .arg("-a")
            .arg(&self.host)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store_dir)
            .arg("-n")
            .arg("nvr-embedded")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        nvr_actors::video::die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
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
            if probe(&self.host, self.port).await {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill().await;
                bail!(
                    "embedded nats-server did not answer on {}:{} within {:?}",
                    self.host,
                    self.port,
                    self.timeout
                );
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
        Ok(child)
    }
}

/// Whether a NATS server answers on `host:port`: it sends its `INFO` line
/// within a second of a connection (a stopped process accepts the
/// connection in the kernel but never sends it).
pub async fn probe(host: &str, port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"INFO")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

/// Sends SIGTERM to `child`, waits up to 3 s, then kills it.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: sending a signal to our own child process id.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
        Ok(_) => info!("embedded nats-server stopped"),
        Err(_) => {
            warn!("embedded nats-server did not stop in 3 s; killing it");
            let _ = child.kill().await;
        }
    }
}

impl EmbeddedServer {
    /// Starts `nats-server -js` listening where `cfg.url` says, waits until it
    /// answers, and supervises it from then on.
    pub async fn start(cfg: &NatsConfig, timeout: Duration) -> Result<EmbeddedServer> {
        preflight_embedded(cfg)?;
        let (host, port) = embedded_listen(cfg)?;
        let mqtt = (!cfg.mqtt_listen.is_empty())
            .then(|| format!("\nmqtt {{\n  listen: \"{}\"\n}}\n", cfg.mqtt_listen));
        let config_file = if cfg.roles_enabled() {
            let path = crate::roles::write_server_config(&cfg.store_dir, mqtt.as_deref())?;
            info!(
                roles = ?crate::roles::ROLES,
                passwords = %Path::new(&cfg.store_dir).join("roles").display(),
                "embedded nats-server requires a user per role"
            );
            Some(path)
        } else if let Some(m) = &mqtt {
            let path = Path::new(&cfg.store_dir).join("nats-server.conf");
            std::fs::write(&path, m).with_context(|| format!("cannot write {}", path.display()))?;
            Some(path)
        } else {
            None
        };
        if mqtt.is_some() {
            info!(listen = %cfg.mqtt_listen, "embedded nats-server serves MQTT");
        }
        let launch = ServerLaunch {
            config_file,
            bin: find_server_bin(&cfg.server_bin)?,
            host: host.clone(),
            port,
            store_dir: cfg.store_dir.clone(),
            timeout,
        };
        let child = launch.spawn().await?;
        let pid = child.id().unwrap_or(0);
        let url = format!("nats://{host}:{port}");
        info!(pid, %url, bin = %launch.bin.display(), "started embedded nats-server");
        let stop = tokio_util::sync::CancellationToken::new();
        let (failed_tx, failed) = tokio::sync::watch::channel(None);
        let restarts = Arc::new(AtomicU64::new(0));
        let monitor = tokio::spawn(supervise(
            launch,
            child,
            stop.clone(),
            failed_tx,
            restarts.clone(),
        ));
        Ok(EmbeddedServer {
            url,
            stop,
            monitor: Some(monitor),
            failed,
            restarts,
        })
    }

    /// Resolves with the reason once the server has died and could not be
    /// restarted.
    pub async fn failed(&self) -> String {
        let mut rx = self.failed.clone();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Stops the server (SIGTERM, then a kill after 3 s) and its monitor.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(m) = self.monitor.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), m).await;
        }
    }
}

/// The monitor: restarts the child when it exits or stops answering.
async fn supervise(
    launch: ServerLaunch,
    mut child: Child,
    stop: tokio_util::sync::CancellationToken,
    failed: tokio::sync::watch::Sender<Option<String>>,
    restarts: Arc<AtomicU64>,
) {
    let mut probe_failures = 0u32;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                terminate(&mut child).await;
                return;
            }
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                error!("embedded nats-server exited unexpectedly ({status}); restarting it");
            }
            _ = tick.tick() => {
                if probe(&launch.host, launch.port).await {
                    probe_failures = 0;
                    continue;
                }
                probe_failures += 1;
                if probe_failures < MAX_PROBE_FAILURES {
                    if probe_failures == 3 {
                        warn!("embedded nats-server does not answer on {}:{}", launch.host, launch.port);
                    }
                    continue;
                }
                error!(
                    "embedded nats-server has not answered for {MAX_PROBE_FAILURES} s; killing and restarting it"
                );
                let _ = child.kill().await;
            }
        }
        probe_failures = 0;
        let mut attempt = 0u32;
        child = loop {
            if stop.is_cancelled() {
                return;
            }
            let delay = crate::supervisor::backoff(attempt).min(Duration::from_secs(5));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            match launch.spawn().await {
                Ok(c) => {
                    restarts.fetch_add(1, Ordering::Relaxed);
                    info!(pid = c.id().unwrap_or(0), "embedded nats-server restarted");
                    break c;
                }
                Err(e) => {
                    attempt += 1;
                    error!(attempt, "cannot restart the embedded nats-server: {e:#}");
                    if attempt >= MAX_RESTART_FAILURES {
                        let _ = failed.send(Some(format!(
                            "embedded nats-server could not be restarted after {attempt} attempts: {e:#}"
                        )));
                        return;
                    }
                }
            }
        };
    }
}

/// Where `scripts/setup` puts the pinned `nats-server` (relative to the
/// working directory).
pub const SETUP_SERVER_BIN: &str = "data/bin/nats-server";

/// Finds the `nats-server` binary: config, `data/bin/nats-server` (from
/// `scripts/setup`), PATH, then `/usr/sbin`.
pub fn find_server_bin(configured: &str) -> Result<PathBuf> {
    if !configured.is_empty() {
        let p = PathBuf::from(configured);
        if p.is_file() {
            return Ok(p);
        }
        bail!("nats.server_bin = {configured:?}: file does not exist");
    }
    if Path::new(SETUP_SERVER_BIN).is_file() {
        return Ok(SETUP_SERVER_BIN.into());
    }
    // A build inside the checkout (target/<profile>/nvr) finds the checkout's copy.
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            let p = dir.join(SETUP_SERVER_BIN);
            if p.is_file() {
                return Ok(p);
            }
        }
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
    bail!("nats-server not found in {SETUP_SERVER_BIN}, PATH or /usr/sbin: run scripts/setup (or set nats.server_bin)")
}

/// A NATS URL with any credentials in it replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    crate::config::redact_nats_url(url)
}

/// Credentials found in a URL's user-info part, and the URL without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlAuth {
    /// The URL(s) with the user-info removed.
    pub url: String,
    /// `user:password@`.
    pub user_password: Option<(String, String)>,
    /// `token@`.
    pub token: Option<String>,
}

/// Takes `user:password@` or `token@` out of a NATS URL (all servers of a
/// list share them), percent-decoding them.
pub fn split_url_auth(url: &str) -> UrlAuth {
    let mut out = UrlAuth {
        url: String::new(),
        user_password: None,
        token: None,
    };
    let mut urls = Vec::new();
    for one in url.split(',') {
        let one = one.trim();
        let (scheme, rest) = match one.split_once("://") {
            Some((s, r)) => (format!("{s}://"), r),
            None => (String::new(), one),
        };
        match rest.rsplit_once('@') {
            Some((auth, host)) => {
                match auth.split_once(':') {
                    Some((u, p)) => {
                        out.user_password = Some((
                            nvr_actors::video::url::percent_decode(u),
                            nvr_actors::video::url::percent_decode(p),
                        ))
                    }
                    None => out.token = Some(nvr_actors::video::url::percent_decode(auth)),
                }
                urls.push(format!("{scheme}{host}"));
            }
            None => urls.push(one.to_string()),
        }
    }
    out.url = urls.join(",");
    out
}

/// Client options carrying the configured authentication and TLS: a
/// `.creds` file, an NKey seed file, user and password, a token (from the
/// config or the URL), a CA file and a client certificate.
async fn auth_options(cfg: &NatsConfig, from_url: &UrlAuth) -> Result<async_nats::ConnectOptions> {
    let mut opts = async_nats::ConnectOptions::new();
    if !cfg.credentials.is_empty() {
        opts = async_nats::ConnectOptions::with_credentials_file(&cfg.credentials)
            .await
            .map_err(|e| anyhow!("nats.credentials {:?}: {e}", cfg.credentials))?;
    } else if !cfg.nkey_seed_file.is_empty() {
        let seed = std::fs::read_to_string(&cfg.nkey_seed_file)
            .map_err(|e| anyhow!("nats.nkey_seed_file {:?}: {e}", cfg.nkey_seed_file))?;
        opts = async_nats::ConnectOptions::with_nkey(seed.trim().to_string());
    } else if !cfg.user.is_empty() {
        opts = async_nats::ConnectOptions::with_user_and_password(
            cfg.user.clone(),
            cfg.password.clone(),
        );
    } else if !cfg.token.is_empty() {
        opts = async_nats::ConnectOptions::with_token(cfg.token.clone());
    } else if let Some((u, p)) = &from_url.user_password {
        opts = async_nats::ConnectOptions::with_user_and_password(u.clone(), p.clone());
    } else if let Some(t) = &from_url.token {
        opts = async_nats::ConnectOptions::with_token(t.clone());
    }
    if !cfg.tls_ca_file.is_empty() {
        opts = opts
            .add_root_certificates(PathBuf::from(&cfg.tls_ca_file))
            .require_tls(true);
    }
    match (cfg.tls_cert_file.is_empty(), cfg.tls_key_file.is_empty()) {
        (true, true) => {}
        (false, false) => {
            opts = opts
                .add_client_certificate(
                    PathBuf::from(&cfg.tls_cert_file),
                    PathBuf::from(&cfg.tls_key_file),
                )
                .require_tls(true);
        }
        _ => bail!("nats.tls_cert_file and nats.tls_key_file must be set together"),
    }
    Ok(opts)
}

/// Connects with the configured timeout, retries and credentials; the
/// client then reconnects by itself for as long as the process lives.
/// Credentials never appear in a log line.
pub async fn connect(cfg: &Config, url: &str, name: &str) -> Result<async_nats::Client> {
    let d = &cfg.detection;
    let timeout = Duration::from_secs(d.timeout_seconds);
    let auth = split_url_auth(url);
    let shown = redact_url(url);
    let mut last = None;
    for attempt in 0..=d.max_retries {
        let opts = auth_options(&cfg.nats, &auth)
            .await?
            .name(name)
            .connection_timeout(timeout)
            .max_reconnects(None)
            .event_callback(|ev| async move {
                match ev {
                    async_nats::Event::Disconnected if shutting_down() => {
                        tracing::debug!("NATS disconnected while shutting down")
                    }
                    async_nats::Event::Disconnected => warn!("NATS disconnected; reconnecting"),
                    async_nats::Event::Connected => info!("NATS connected"),
                    other => tracing::debug!("NATS event: {other}"),
                }
            });
        let addrs: Vec<async_nats::ServerAddr> = auth
            .url
            .split(',')
            .map(|u| u.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("nats.url = {shown:?}: {e}"))?;
        match tokio::time::timeout(timeout, opts.connect(addrs)).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => last = Some(format!("timed out after {timeout:?}")),
        }
        if attempt < d.max_retries {
            warn!(
                attempt = attempt + 1,
                of = d.max_retries + 1,
                "cannot connect to NATS at {shown}: {}; retrying in {} ms",
                last.as_deref().unwrap_or(""),
                d.retry_delay_ms
            );
            tokio::time::sleep(Duration::from_millis(d.retry_delay_ms)).await;
        }
    }
    bail!(
        "cannot connect to NATS at {shown} after {} attempts: {}",
        d.max_retries + 1,
        last.unwrap_or_default()
    )
}

/// Where an ordered read of a window starts: the first message stored at or
/// after `from_ns` (ns since the Unix epoch).
pub fn start_at(from_ns: u64) -> Result<consumer::DeliverPolicy> {
    Ok(consumer::DeliverPolicy::ByStartTime {
        start_time: time::OffsetDateTime::from_unix_timestamp_nanos(from_ns as i128)?,
    })
}

/// An ordered consumer's messages on `filter_subject` of `stream`, from
/// `deliver_policy` on: how the events API and replay read a window.
pub async fn ordered_messages(
    stream: &stream::Stream,
    filter_subject: String,
    deliver_policy: consumer::DeliverPolicy,
) -> Result<consumer::pull::Ordered> {
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject,
            deliver_policy,
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}
