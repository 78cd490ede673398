//! Command-line interface: flags, configuration loading, logging set-up and
//! dispatch to the subcommands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::config::{self, Loaded, Overrides};

/// Detection and multi-camera spatial tracking over NATS.
#[derive(Debug, Parser)]
#[command(name = "nvr", version, about)]
pub struct Cli {
    /// Configuration file [env: NVR_CONFIG] [default: data/config.yaml]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log level (trace, debug, info, warn, error) [env: LOG_LEVEL]
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// NATS server URL of a running server (no embedded server is started) [env: NATS_URL]
    #[arg(long, global = true)]
    pub nats_url: Option<String>,
    /// Log line format: text or json [env: LOG_FORMAT]
    #[arg(long, global = true)]
    pub log_format: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything the configuration enables in one process.
    Run(RunArgs),
    /// Run a detection node: detector workers on the shared `detectors` consumer.
    Detector(DetectorArgs),
    /// Run a spatial shard node: the track actors and spatial tracker of a camera set.
    Spatial(SpatialArgs),
    /// Print the messages on a subject (wildcards allowed) as JSON lines.
    Tail(crate::tail::TailArgs),
    /// Re-run stored detections of a camera through the tracker.
    Replay(crate::replay::ReplayArgs),
    /// Print the status of a running system.
    Status(StatusArgs),
    /// Configuration tools.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Benchmarks; each prints its figures and writes them under bench/results/.
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        which: crate::bench::BenchCommand,
    },
    /// Multi-camera simulator: publishes synthetic detections and writes ground truth.
    Sim(crate::sim::SimArgs),
}

/// `nvr run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// API listen address [default: 127.0.0.1:12000]
    #[arg(long)]
    pub api_addr: Option<String>,
}

/// `nvr detector`
#[derive(Debug, Args)]
pub struct DetectorArgs {
    /// Directory of model files [env: DETECTION_MODELS_PATH]
    #[arg(long)]
    pub models_path: Option<String>,
    /// Model file stem or path [env: DETECTION_MODEL]
    #[arg(long)]
    pub model: Option<String>,
    /// Inference backend: cpu, cuda, rocm, coreml, openvino [env: DETECTION_BACKEND]
    #[arg(long)]
    pub backend: Option<String>,
    /// GPU index [env: DETECTION_DEVICE_ID]
    #[arg(long)]
    pub device_id: Option<i32>,
    /// Detector workers in this node [env: DETECTION_WORKERS]
    #[arg(long)]
    pub workers: Option<usize>,
    /// Model input size [env: DETECTION_INPUT_SIZE]
    #[arg(long)]
    pub input_size: Option<u32>,
    /// ONNX Runtime threads per worker
    #[arg(long)]
    pub threads: Option<usize>,
    /// HTTP /health and /status address [env: DETECTION_ADDR]
    #[arg(long)]
    pub address: Option<String>,
    /// Fall back to CPU when the backend is unavailable
    #[arg(long)]
    pub allow_cpu_fallback: bool,
}

/// `nvr spatial`
#[derive(Debug, Args)]
pub struct SpatialArgs {
    /// Shard name [env: SPATIAL_SHARD]
    #[arg(long)]
    pub shard: Option<String>,
    /// Cameras of the shard, comma-separated [env: SPATIAL_CAMERAS]
    #[arg(long, value_delimiter = ',')]
    pub cameras: Option<Vec<String>>,
    /// Directory of floor-plan files (one YAML per floor with its cameras' calibration)
    #[arg(long)]
    pub floor_plans: Option<PathBuf>,
    /// HTTP /health and /stats address [env: SPATIAL_ADDR]
    #[arg(long)]
    pub address: Option<String>,
}

/// `nvr status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Base URL of the API [default: http://127.0.0.1:<api port>]
    #[arg(long)]
    pub api: Option<String>,
    /// One JSON line per endpoint (the default when stdout is not a
    /// terminal); otherwise a readable summary.
    #[arg(long)]
    pub json: bool,
}

/// `nvr config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate the configuration and print every effective value with its source.
    Check,
    /// List the environment variable of every configuration key, its default
    /// and meaning (`*` marks those set now).
    Env {
        /// Print the reference as a Markdown table (`config/ENV.md`).
        #[arg(long)]
        markdown: bool,
    },
}

/// Loads the configuration with this command line's overrides.
pub fn load_config(cli: &Cli) -> Result<Loaded, config::ConfigError> {
    let mut ov = Overrides {
        config_path: cli.config.clone(),
        ..Default::default()
    };
    if let Some(l) = &cli.log_level {
        ov.set("log_level", Value::from(l.clone()), "--log-level");
    }
    if let Some(f) = &cli.log_format {
        ov.set("log_format", Value::from(f.clone()), "--log-format");
    }
    if let Some(u) = &cli.nats_url {
        ov.set("nats.url", Value::from(u.clone()), "--nats-url");
        ov.set("nats.embedded", Value::Bool(false), "--nats-url");
    }
    match &cli.command {
        Command::Replay(a) => {
            for kv in &a.set {
                let Some((k, v)) = kv.split_once('=') else {
                    return Err(config::ConfigError(format!(
                        "--set {kv:?}: expected KEY=VALUE, e.g. --set tracking.max_lost_ms=5000"
                    )));
                };
                ov.set(k.trim(), config::env_value(k.trim(), v), "--set");
            }
        }
        Command::Run(a) => {
            if let Some(v) = &a.api_addr {
                ov.set("api.address", Value::from(v.clone()), "--api-addr");
            }
        }
        Command::Detector(a) => {
            let mut s = |k: &str, v: Option<Value>, f: &str| {
                if let Some(v) = v {
                    ov.set(k, v, f);
                }
            };
            s(
                "detection.models_path",
                a.models_path.clone().map(Value::from),
                "--models-path",
            );
            s(
                "detection.model",
                a.model.clone().map(Value::from),
                "--model",
            );
            s(
                "detection.backend",
                a.backend.clone().map(Value::from),
                "--backend",
            );
            s(
                "detection.device_id",
                a.device_id.map(Value::from),
                "--device-id",
            );
            s("detection.workers", a.workers.map(Value::from), "--workers");
            s(
                "detection.input_size",
                a.input_size.map(Value::from),
                "--input-size",
            );
            s("detection.threads", a.threads.map(Value::from), "--threads");
            s(
                "detection.address",
                a.address.clone().map(Value::from),
                "--address",
            );
            if a.allow_cpu_fallback {
                ov.set(
                    "detection.allow_cpu_fallback",
                    Value::Bool(true),
                    "--allow-cpu-fallback",
                );
            }
        }
        Command::Spatial(a) => {
            if let Some(v) = &a.shard {
                ov.set("spatial.shard", Value::from(v.clone()), "--shard");
            }
            if let Some(v) = &a.cameras {
                ov.set("spatial.cameras", Value::from(v.clone()), "--cameras");
            }
            if let Some(v) = &a.address {
                ov.set("spatial.address", Value::from(v.clone()), "--address");
            }
            ov.floor_plans = a.floor_plans.clone();
        }
        _ => {}
    }
    config::load(&ov, &|k| std::env::var(k).ok())
}

/// Sets up tracing: `RUST_LOG` if set, else the configured level.
pub fn init_logging(cfg: &config::Config, cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::new(f),
        _ => {
            let level = cfg.log_level.to_ascii_lowercase();
            EnvFilter::new(format!("{level},ort=warn,async_nats=warn,ractor=warn"))
        }
    };
    // Tools print data on stdout; logs go to stderr.
    let quiet_tool = matches!(cli.command, Command::Tail(_) | Command::Config { .. });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(if quiet_tool && std::env::var("RUST_LOG").is_err() {
            tracing_subscriber::EnvFilter::new("warn")
        } else {
            filter
        })
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if cfg.log_format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli, loaded: Loaded) -> Result<ExitCode> {
    match cli.command {
        Command::Run(_) => crate::supervisor::run_all(loaded).await,
        Command::Detector(_) => crate::node::run_detector_node(loaded).await,
        Command::Spatial(_) => crate::node::run_spatial_node(loaded).await,
        Command::Tail(args) => crate::tail::run(&loaded.config, args).await,
        Command::Replay(args) => crate::replay::run(&loaded.config, args).await,
        Command::Status(args) => crate::api::print_status(&loaded.config, args).await,
        Command::Config {
            action: ConfigAction::Check,
        } => Ok(config_check(&loaded)),
        Command::Config {
            action: ConfigAction::Env { markdown },
        } => {
            if markdown {
                print!("{}", crate::envvars::markdown());
            } else {
                print_env_table();
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { which } => crate::bench::run(&loaded, which).await,
        Command::Sim(args) => crate::sim::run(&loaded.config, args).await,
    }
}

/// Prints every variable, its key, default and meaning; `*` marks those set.
fn print_env_table() {
    let vars = crate::envvars::all();
    let w_var = vars.iter().map(|e| e.var.len()).max().unwrap_or(0) + 2;
    let w_key = vars.iter().map(|e| e.key.len()).max().unwrap_or(0);
    let w_def = vars
        .iter()
        .map(|e| e.default.chars().count().min(30))
        .max()
        .unwrap_or(0);
    for e in vars {
        let set = if std::env::var_os(&e.var).is_some() {
            "*"
        } else {
            " "
        };
        let default: String = e.default.chars().take(30).collect();
        println!(
            "{set}{:w_var$}{:w_key$}  {:w_def$}  {}",
            e.var, e.key, default, e.doc
        );
    }
}

/// Prints the configuration with where each value came from; exit code 2
/// with one line when something the configuration needs here is missing.
fn config_check(loaded: &Loaded) -> ExitCode {
    match &loaded.file {
        Some(f) => println!("# configuration file: {}", f.display()),
        None => println!(
            "# no configuration file ({} not found): built-in defaults",
            config::DEFAULT_CONFIG_PATH
        ),
    }
    for line in config::describe(loaded) {
        println!("{line}");
    }
    let c = &loaded.config;
    for cam in &c.cameras {
        if let Some(cal) = &cam.calibration {
            if let Ok(h) = config::camera_homography(cam, cal) {
                if cal.points.is_empty() {
                    println!("# camera {}: explicit homography", cam.id);
                } else {
                    let img: Vec<[f64; 2]> = cal.points.iter().map(|p| p.image).collect();
                    let floor: Vec<[f64; 2]> = cal.points.iter().map(|p| p.floor).collect();
                    let (mean, max) = h.reprojection_error(&img, &floor);
                    let (_, max_px) = h.image_reprojection_error(&img, &floor);
                    println!(
                        "# camera {}: calibration from {} points, reprojection error mean {:.3} m, max {:.3} m ({:.1} px in the image)",
                        cam.id,
                        cal.points.len(),
                        mean,
                        max,
                        max_px
                    );
                }
            }
        }
    }
    for m in c.detection.model_files() {
        if m.path.is_file() {
            println!("# {}: {} (found)", m.what, m.path.display());
        } else if c.detection.embedded {
            eprintln!(
                "config error: {} = {:?}: model file {} does not exist, and detection runs in this process (detection.embedded); {}",
                m.key,
                m.value,
                m.path.display(),
                m.fix
            );
            return ExitCode::from(2);
        } else {
            println!(
                "# {}: {} NOT FOUND (not needed by `nvr run` with detection.embedded false; a `nvr detector` here needs it)",
                m.what,
                m.path.display()
            );
        }
    }
    for line in crate::retention::lines(c) {
        println!("{line}");
    }
    println!("# configuration OK");
    ExitCode::SUCCESS
}
