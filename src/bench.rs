//! `nvr bench ...`: benchmarks that print their figures and write them to
//! `bench/results/`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

/// Which benchmark to run.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Detection: raw model rate and the full camera -> NATS -> detector -> NATS path.
    Detect,
    /// Per-camera tracker update rate, against the Python reference.
    Track,
    /// Spatial matching-cycle time at 500, 2000 and 10000 active tracks.
    Spatial,
}

/// Runs a benchmark.
pub async fn run(_loaded: &crate::config::Loaded, _which: BenchCommand) -> Result<ExitCode> {
    anyhow::bail!("not yet available")
}
