//! `nvr bench detect`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Arguments of `nvr bench detect`.
#[derive(Debug, Args)]
pub struct DetectBenchArgs {}

/// Runs the benchmark.
pub async fn run(_cfg: &crate::config::Config, _args: DetectBenchArgs) -> Result<ExitCode> {
    anyhow::bail!("not yet available")
}
