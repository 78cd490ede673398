//! `nvr bench ...`: benchmarks that print their figures and write them to
//! `bench/results/` (or `--out`), as Markdown for people and JSON for tools.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

mod detect;
mod spatial;
mod track;

/// Which benchmark to run.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Detection: raw model rate and the full camera -> NATS -> detector -> NATS path.
    Detect(detect::DetectBenchArgs),
    /// Per-camera tracker update rate, against the Python reference.
    Track(track::TrackBenchArgs),
    /// Spatial matching-cycle time at 500, 2000 and 10000 active tracks.
    Spatial(spatial::SpatialBenchArgs),
}

/// Runs a benchmark.
pub async fn run(loaded: &crate::config::Loaded, which: BenchCommand) -> Result<ExitCode> {
    match which {
        BenchCommand::Detect(a) => detect::run(&loaded.config, a).await,
        BenchCommand::Track(a) => track::run(&loaded.config, a).await,
        BenchCommand::Spatial(a) => spatial::run(&loaded.config, a).await,
    }
}

/// Writes `<dir>/<name>.md` and `<dir>/<name>.json` and says where they went.
pub fn write_results(
    dir: &Path,
    name: &str,
    markdown: &str,
    json: &serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let md = dir.join(format!("{name}.md"));
    let js = dir.join(format!("{name}.json"));
    std::fs::write(&md, markdown).with_context(|| format!("cannot write {}", md.display()))?;
    std::fs::write(&js, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("cannot write {}", js.display()))?;
    println!("results written to {} and {}", md.display(), js.display());
    Ok(())
}

/// The default results directory.
pub fn default_out() -> PathBuf {
    PathBuf::from("bench/results")
}

/// Which build ran the benchmark, for the results files.
pub fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug build"
    } else {
        "release build"
    }
}

/// A one-line description of this machine for the results files.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cores} cores, {cpu}")
}
