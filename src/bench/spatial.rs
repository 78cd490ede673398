//! `nvr bench spatial`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Arguments of `nvr bench spatial`.
#[derive(Debug, Args)]
pub struct SpatialBenchArgs {}

/// Runs the benchmark.
pub async fn run(_cfg: &crate::config::Config, _args: SpatialBenchArgs) -> Result<ExitCode> {
    anyhow::bail!("not yet available")
}
