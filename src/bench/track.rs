//! `nvr bench track`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Arguments of `nvr bench track`.
#[derive(Debug, Args)]
pub struct TrackBenchArgs {}

/// Runs the benchmark.
pub async fn run(_cfg: &crate::config::Config, _args: TrackBenchArgs) -> Result<ExitCode> {
    anyhow::bail!("not yet available")
}
