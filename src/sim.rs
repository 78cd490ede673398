//! `nvr sim`: the deterministic multi-camera simulator on the bus.
//!
//! Runs the simulator core (`nvr_actors::sim`): people walking on a floor
//! seen by several calibrated pinhole cameras with overlapping views and
//! blind gaps. With `--out` it writes the ground truth (per-camera MOT files
//! and the floor-plane `floor_gt.txt`) and a `config.yaml` holding the floor
//! and the cameras' calibration (cameras without a URL, detection off), so
//! `nvr run --config <dir>/config.yaml` tracks what the simulator publishes.
//! Unless `--no-publish` is given it publishes every camera's `Detections`
//! on `nvr.detections.<camera>` in timestamp order, paced by `--speed`, and
//! waits for each JetStream publish acknowledgement.
//!
//! Timestamps are the simulator's own by default (a fixed epoch), so two
//! runs publish identical messages. Trackers run on message time, so that is
//! all a tracker needs; but a running system remembers what it has seen: the
//! same `<camera>-<seq>` ids within the stream's duplicate window are
//! dropped as duplicates, and sequence numbers at or below the last one a
//! track actor released are dropped as late. `--now` shifts the timestamps
//! so frame 0 is the current time and offsets the sequence numbers by the
//! number of frame periods since the Unix epoch, so every `--now` run
//! continues where the previous one left off (what a live demo needs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream;
use clap::{Args, ValueEnum};
use nvr_actors::sim::{self, NoisePreset, SimConfig, SimOutput};
use nvr_subjects::{msg_id, subjects};

/// Noise preset on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// Near-perfect detections.
    Clean,
    /// Typical detector noise.
    Default,
    /// Heavy noise, crowds and occlusion.
    Hard,
}

impl From<PresetArg> for NoisePreset {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::Clean => NoisePreset::Clean,
            PresetArg::Default => NoisePreset::Default,
            PresetArg::Hard => NoisePreset::Hard,
        }
    }
}

/// Arguments of `nvr sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Noise preset; also sets the default number of people.
    #[arg(long, value_enum, default_value_t = PresetArg::Default)]
    pub preset: PresetArg,
    /// Random seed: the same seed and settings give the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Length of the simulated sequence, seconds [default: 120]
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Number of people [default: the preset's]
    #[arg(long)]
    pub people: Option<usize>,
    /// Frames per second of every camera [default: 10]
    #[arg(long)]
    pub fps: Option<f64>,
    /// Publishing pace: 1 = real time, 2 = twice as fast, 0 = as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Write ground truth and a config.yaml with the floor and camera calibration here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only write files (needs --out); publish nothing.
    #[arg(long)]
    pub no_publish: bool,
    /// Shift timestamps to the current time and sequence numbers past any
    /// earlier run, so a running system takes every run as new footage.
    /// Always done when publishing (receivers refuse timestamps far from
    /// their clock); with `--no-publish` it also shifts the written files.
    #[arg(long)]
    pub now: bool,
}

/// The simulator configuration the arguments ask for.
pub fn sim_config(args: &SimArgs) -> Result<SimConfig> {
    let mut cfg = SimConfig::preset(args.preset.into(), args.seed);
    if let Some(d) = args.duration_s {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration-s = {d}: must be a positive number of seconds");
        }
        cfg.duration_s = d;
    }
    if let Some(p) = args.people {
        cfg.people = p;
    }
    if let Some(f) = args.fps {
        if !(f.is_finite() && f > 0.0 && f <= 100.0) {
            bail!("--fps = {f}: must be in (0, 100]");
        }
        cfg.fps = f;
    }
    Ok(cfg)
}

fn preset_name(p: NoisePreset) -> &'static str {
    match p {
        NoisePreset::Clean => "clean",
        NoisePreset::Default => "default",
        NoisePreset::Hard => "hard",
    }
}

/// The `config.yaml` written next to the ground truth: detection off (the
/// simulator is the detector), the floor and the calibrated cameras.
pub fn config_file(out: &SimOutput) -> String {
    let c = &out.config;
    format!(
        "# Written by `nvr sim --preset {} --seed {} --duration-s {} --people {} --fps {}`.\n\
         # The cameras have no url: their detections come from `nvr sim` over NATS.\n\
         # Track them with: nvr run --config <this file>\n\
         detection:\n  embedded: false\n{}",
        preset_name(c.preset),
        c.seed,
        c.duration_s,
        c.people,
        c.fps,
        sim::config_yaml(out)
    )
}

/// Shifts timestamps so frame 0 is at `now_ns`, and sequence numbers by the
/// number of frame periods since the Unix epoch.
pub fn shift_to(out: &mut SimOutput, now_ns: u64) {
    let start = out.config.start_ns;
    let period_ns = (1e9 / out.config.fps).round().max(1.0) as u64;
    let seq_base = now_ns / period_ns;
    for m in &mut out.messages {
        m.ts_ns = m.ts_ns - start + now_ns;
        m.seq += seq_base;
    }
    for t in &mut out.frame_ts_ns {
        *t = *t - start + now_ns;
    }
    out.config.start_ns = now_ns;
}

/// Runs the simulator.
pub async fn run(cfg: &crate::config::Config, args: SimArgs) -> Result<ExitCode> {
    if args.no_publish && args.out.is_none() {
        bail!("--no-publish writes files only: give --out <dir>");
    }
    if !(args.speed.is_finite() && args.speed >= 0.0) {
        bail!(
            "--speed = {}: must be 0 (as fast as possible) or a positive factor",
            args.speed
        );
    }
    let sim_cfg = sim_config(&args)?;
    let mut out = tokio::task::spawn_blocking(move || sim::simulate(&sim_cfg))
        .await
        .context("simulator thread")?;
    if args.now || !args.no_publish {
        // Paced, the simulation starts now; unpaced, it ends now, so every
        // timestamp is in the receivers' window (never far ahead of their clock).
        let span = out
            .messages
            .last()
            .map(|m| m.ts_ns.saturating_sub(out.config.start_ns))
            .unwrap_or(0);
        let now = nvr_actors::bus::now_ns();
        shift_to(&mut out, if args.speed == 0.0 { now - span } else { now });
    }
    if let Some(dir) = &args.out {
        sim::write_ground_truth(&out, dir)
            .with_context(|| format!("writing ground truth to {}", dir.display()))?;
        let cfg_path = dir.join("config.yaml");
        std::fs::write(&cfg_path, config_file(&out))
            .with_context(|| format!("writing {}", cfg_path.display()))?;
        println!(
            "wrote {} cameras' ground truth, floor_gt.txt and {} to {}",
            out.cameras.len(),
            cfg_path.display(),
            dir.display()
        );
    }
    if args.no_publish {
        return Ok(ExitCode::SUCCESS);
    }
    publish(cfg, &out, args.speed).await?;
    Ok(ExitCode::SUCCESS)
}

/// Publishes every message in timestamp order, paced by `speed`.
async fn publish(cfg: &crate::config::Config, out: &SimOutput, speed: f64) -> Result<()> {
    let url = &cfg.nats.url;
    let client = crate::nats::connect(cfg, url, "nvr sim").await?;
    let js = jetstream::new(client.clone());
    crate::nats::ensure_streams(&js, &crate::nats::retention(cfg))
        .await
        .context("setting up JetStream streams")?;
    let Some(first_ts) = out.messages.first().map(|m| m.ts_ns) else {
        println!("nothing to publish (zero-length simulation)");
        return Ok(());
    };
    let started = Instant::now();
    let mut per_camera: BTreeMap<&str, u64> = BTreeMap::new();
    let mut duplicates = 0u64;
    let mut progress =
        crate::progress::Progress::new("nvr sim publishing", out.messages.len() as u64, "messages");
    for m in &out.messages {
        progress.inc(1);
        if speed > 0.0 {
            let offset = Duration::from_secs_f64((m.ts_ns - first_ts) as f64 / 1e9 / speed);
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + offset)).await;
        }
        let id = msg_id(&m.camera, m.seq);
        let dup = nvr_actors::bus::publish_js(&js, subjects::detections(&m.camera), m, Some(&id))
            .await
            .with_context(|| format!("publishing {id}"))?;
        if dup {
            duplicates += 1;
        }
        *per_camera.entry(m.camera.as_str()).or_default() += 1;
    }
    progress.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    let total: u64 = per_camera.values().sum();
    let cams: Vec<String> = per_camera.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let last_ts = out.messages.last().map(|m| m.ts_ns).unwrap_or(first_ts);
    println!(
        "published {total} detections messages ({}) to {url} in {:.2} s for {:.1} s of simulated time; {duplicates} duplicates",
        cams.join(", "),
        started.elapsed().as_secs_f64(),
        (last_ts - first_ts) as f64 / 1e9,
    );
    if duplicates > 0 {
        eprintln!(
            "warning: {duplicates} messages were dropped by JetStream as duplicates of an earlier run; use --now to publish a run as new footage"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_moves_time_and_sequence_forward() {
        let cfg = SimConfig {
            duration_s: 2.0,
            ..SimConfig::preset(NoisePreset::Clean, 1)
        };
        let mut out = sim::simulate(&cfg);
        let before = out.messages.clone();
        let now = 1_800_000_000_000_000_000;
        shift_to(&mut out, now);
        assert_eq!(out.messages[0].ts_ns, now + before[0].ts_ns - cfg.start_ns);
        for (a, b) in before.iter().zip(&out.messages) {
            assert_eq!(b.ts_ns - a.ts_ns, now - cfg.start_ns);
            assert_eq!(b.seq - a.seq, now / 100_000_000);
            assert_eq!(a.objects, b.objects);
        }
    }

    #[test]
    fn config_file_turns_detection_off_and_names_the_preset() {
        let cfg = SimConfig {
            duration_s: 1.0,
            ..SimConfig::preset(NoisePreset::Hard, 3)
        };
        let text = config_file(&sim::simulate(&cfg));
        assert!(text.starts_with("# Written by `nvr sim --preset hard --seed 3"));
        assert!(text.contains("detection:\n  embedded: false\nfloors:\n"));
        assert!(text.contains("calibration:"));
    }
}
