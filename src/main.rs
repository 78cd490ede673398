//! `nvr`: the detection and spatial-tracking core of a network video
//! recorder. One binary, several roles: `nvr run` (everything the config
//! enables), `nvr detector` (a detection node), `nvr spatial` (a spatial
//! shard node), plus tools (`tail`, `replay`, `status`, `config check`,
//! `bench`, `sim`).

mod api;
mod bench;
mod census;
mod cli;
mod config;
mod envvars;
mod events;
mod gather;
mod health;
mod latest;
mod lease;
mod metrics;
mod nats;
mod node;
mod progress;
mod replay;
mod replay_shard;
mod replay_start;
mod retention;
mod roles;
mod sampler;
mod scaling;
mod sim;
mod snapshots;
mod supervisor;
mod tail;
mod web;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let loaded = match cli::load_config(&args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    cli::init_logging(&loaded.config, &args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cli::dispatch(args, loaded));
    // Blocking inference threads may still be finishing; do not wait long.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        // One line on stderr (not also a log line: both go to stderr).
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
