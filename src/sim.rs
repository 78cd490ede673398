//! `nvr sim`: the deterministic multi-camera simulator on the bus.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

/// Arguments of `nvr sim`.
#[derive(Debug, Args)]
pub struct SimArgs {}

/// Runs the simulator.
pub async fn run(_cfg: &crate::config::Config, _args: SimArgs) -> Result<ExitCode> {
    anyhow::bail!("not yet available")
}
