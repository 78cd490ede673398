//! `nvr bench track`: per-camera tracker updates per second at 10, 50 and
//! 200 objects per frame, against the Python reference tracker (Roboflow
//! supervision's ByteTrack, `bench/track_eval/bench_reference.py`) timed on
//! the identical input: the synthetic 5 fps sequence of
//! `nvr_actors::track::bench::synthetic_sequence`, written as a MOT
//! detection file for the reference.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use nvr_actors::track::bench::{bench_updates, synthetic_sequence, write_mot, BenchRow};
use serde_json::json;

/// Arguments of `nvr bench track`.
#[derive(Debug, Args)]
pub struct TrackBenchArgs {
    /// Objects per frame to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![10usize, 50, 200])]
    pub objects: Vec<usize>,
    /// Frames of the synthetic sequence.
    #[arg(long, default_value_t = 300)]
    pub frames: usize,
    /// Runs of the sequence per tracker; the best rate of each is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Python interpreter with supervision installed [default:
    /// $NVR_DATA_DIR/pyenv/bin/python, else data/pyenv/bin/python]
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Results directory [default: bench/results]
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The target: at least this many times the reference's rate.
const TARGET_RATIO: f64 = 50.0;
/// The sequence seed `bench_updates` uses.
const SEED: u64 = 42;

fn default_python() -> PathBuf {
    let data = std::env::var_os("NVR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data"));
    data.join("pyenv").join("bin").join("python")
}

/// `bench/track_eval/bench_reference.py` from the working directory, else
/// from the source tree this binary was built from.
fn reference_script() -> Option<PathBuf> {
    let rel = Path::new("bench/track_eval/bench_reference.py");
    [
        rel.to_path_buf(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Runs the reference on `det` and returns its updates per second.
async fn reference_rate(
    python: &Path,
    script: &Path,
    det: &Path,
    objects: usize,
    repeat: usize,
) -> Result<f64> {
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(det)
        .arg("--objects")
        .arg(objects.to_string())
        .arg("--repeat")
        .arg(repeat.to_string())
        .output()
        .await
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} {} failed ({}): {}",
            python.display(),
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("reference printed {line:?}, not a JSON line"))?;
    v["updates_per_sec"]
        .as_f64()
        .with_context(|| format!("reference output lacks updates_per_sec: {line}"))
}

/// Best of `repeat` runs of our tracker (by updates per second).
fn ours_best(objects: usize, frames: usize, repeat: usize) -> BenchRow {
    let mut best = bench_updates(objects, frames);
    for _ in 1..repeat.max(1) {
        let r = bench_updates(objects, frames);
        if r.updates_per_sec > best.updates_per_sec {
            best = r;
        }
    }
    best
}

/// Runs the benchmark.
pub async fn run(_cfg: &crate::config::Config, args: TrackBenchArgs) -> Result<ExitCode> {
    let frames = args.frames.max(1);
    let repeat = args.repeat.max(1);
    let python = args.python.clone().unwrap_or_else(default_python);
    let script = reference_script();
    let reference_missing = reference_missing(&python, script.as_deref());
    if let Some(why) = &reference_missing {
        eprintln!("reference tracker unavailable: {why}; reporting our numbers only");
    }
    let tmp = tempfile_dir()?;
    let mut rows = Vec::new();
    println!(
        "{:>8} {:>16} {:>12} {:>12} {:>18} {:>8}",
        "objects", "ours updates/s", "mean us", "p99 us", "reference upd/s", "ratio"
    );
    for &n in &args.objects {
        let ours = tokio::task::spawn_blocking(move || ours_best(n, frames, repeat))
            .await
            .context("benchmark thread")?;
        let theirs = match (&reference_missing, &script) {
            (None, Some(script)) => {
                let det = tmp.path().join(format!("synthetic_{n}.txt"));
                write_mot(&synthetic_sequence(n, frames, SEED), &det)
                    .with_context(|| format!("writing {}", det.display()))?;
                Some(reference_rate(&python, script, &det, n, repeat).await?)
            }
            _ => None,
        };
        let ratio = theirs
            .filter(|t| *t > 0.0)
            .map(|t| ours.updates_per_sec / t);
        println!(
            "{:>8} {:>16.0} {:>12.1} {:>12.1} {:>18} {:>8}",
            n,
            ours.updates_per_sec,
            ours.mean_us,
            ours.p99_us,
            theirs.map_or("-".into(), |t| format!("{t:.1}")),
            ratio.map_or("-".into(), |r| format!("{r:.0}x")),
        );
        rows.push((ours, theirs, ratio));
    }
    let report = Report {
        rows: &rows,
        frames,
        repeat,
        reference_missing: reference_missing.as_deref(),
        build: crate::bench::build(),
        machine: crate::bench::machine(),
    };
    let (md, js) = (report.markdown(), report.json());
    let out = args.out.unwrap_or_else(crate::bench::default_out);
    crate::bench::write_results(&out, "track_speed", &md, &js)?;
    Ok(ExitCode::SUCCESS)
}

/// A temporary directory for the reference's input files.
fn tempfile_dir() -> Result<TempDir> {
    let base = std::env::temp_dir().join(format!("nvr-bench-track-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    Ok(TempDir(base))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A row of the results: our rate, the reference's (if run) and their ratio.
type Row = (BenchRow, Option<f64>, Option<f64>);

/// What the results files say.
struct Report<'a> {
    /// One row per object count.
    rows: &'a [Row],
    /// Frames of the synthetic sequence.
    frames: usize,
    /// Runs per figure (the best is kept).
    repeat: usize,
    /// Why the reference was not run, if it was not.
    reference_missing: Option<&'a str>,
    /// Which build ran.
    build: &'static str,
    /// This machine, in one line.
    machine: String,
}

impl Report<'_> {
    /// Whether every row reached the target ratio (`None`: no reference).
    fn all_met(&self) -> Option<bool> {
        if self.reference_missing.is_some() {
            None
        } else {
            Some(
                self.rows
                    .iter()
                    .all(|(_, _, r)| r.is_some_and(|r| r >= TARGET_RATIO)),
            )
        }
    }

    /// The results file's Markdown.
    fn markdown(&self) -> String {
        let (build, machine, frames, repeat) =
            (self.build, &self.machine, self.frames, self.repeat);
        let mut md = String::new();
        let _ = writeln!(md, "# Per-camera tracker speed\n");
        let _ = writeln!(
            md,
            "Generated by `nvr bench track` ({build}) on {machine}. Input: \
         `track::bench::synthetic_sequence(objects, {frames}, {SEED})`, a 5 fps scene of \
         constant-velocity people with box jitter, 5% misses, a spread of scores and \
         low-score false positives. Ours: `Tracker` with default parameters \
         (`track::bench::bench_updates`). Reference: Roboflow supervision's ByteTrack \
         (`bench/track_eval/bench_reference.py`, driven through `update_with_tensors`, \
         the configuration of the accuracy evaluation) on the same sequence written as a \
         MOT detection file. Each figure is the best of {repeat} runs; one core, a shared \
         machine, so indicative.\n"
        );
        let _ = writeln!(
        md,
        "| objects | ours updates/s | ours mean us | ours p99 us | reference updates/s | ratio |"
    );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for (o, t, r) in self.rows {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.1} | {:.1} | {} | {} |",
                o.objects,
                o.updates_per_sec,
                o.mean_us,
                o.p99_us,
                t.map_or("-".into(), |t| format!("{t:.1}")),
                r.map_or("-".into(), |r| format!("{r:.0}x")),
            );
        }
        md.push('\n');
        match (self.all_met(), self.reference_missing) {
            (Some(met), _) => {
                let _ = writeln!(
                    md,
                    "Target (at least {TARGET_RATIO:.0}x the reference at every size): **{}**.",
                    if met { "met" } else { "not met" }
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(md, "Reference not run: {why}.");
            }
            (None, None) => {}
        }
        md
    }

    /// The results file's JSON.
    fn json(&self) -> serde_json::Value {
        let (build, machine, frames, repeat) =
            (self.build, &self.machine, self.frames, self.repeat);
        let (reference_missing, all_met) = (self.reference_missing, self.all_met());
        json!({
            "benchmark": "track",
            "command": "nvr bench track",
            "build": build,
            "machine": machine,
            "frames": frames,
            "repeat": repeat,
            "seed": SEED,
            "reference": "supervision ByteTrack via bench/track_eval/bench_reference.py",
            "reference_missing": reference_missing,
            "rows": self.rows.iter().map(|(o, t, r)| json!({
                "objects": o.objects,
                "ours_updates_per_sec": o.updates_per_sec,
                "ours_mean_us": o.mean_us,
                "ours_p99_us": o.p99_us,
                "reference_updates_per_sec": t,
                "ratio": r,
            })).collect::<Vec<_>>(),
            "target_ratio": TARGET_RATIO,
            "target_met": all_met,
        })
    }
}

/// Why the Python reference cannot run, if it cannot.
fn reference_missing(python: &std::path::Path, script: Option<&std::path::Path>) -> Option<String> {
    if !python.is_file() {
        Some(format!(
            "{} not found: run scripts/setup to install the Python reference (supervision), or pass --python",
            python.display()
        ))
    } else if script.is_none() {
        Some("bench/track_eval/bench_reference.py not found: run from the repository root".into())
    } else {
        None
    }
}
