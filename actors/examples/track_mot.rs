//! Runs the per-camera tracker over a MOT-challenge detection file and writes
//! its tracks in MOT format, for scoring with standard MOT tools.
//!
//! Usage: `track_mot <dets.txt> <out.txt> [--fps F] [--frames N] [--set key=value]...`
//! (`--set` overrides any `TrackerParams` field by name; `--frames` is the
//! last frame number, so trailing frames without detections are still run).
//!
//! `track_mot bench <objects> <frames> [<dets_out.txt>]` times tracker updates
//! on the synthetic sequence (`bench::bench_updates`), prints one JSON line,
//! and optionally writes that same sequence as a MOT file for
//! `bench/track_eval/bench_reference.py`.

use anyhow::{bail, Context, Result};
use nvr_actors::track::{bench, mot, TrackerParams};

fn run_bench(args: &[String]) -> Result<()> {
    let usage = "usage: track_mot bench <objects> <frames> [<dets_out.txt>]";
    let (Some(o), Some(f)) = (args.first(), args.get(1)) else {
        bail!("{usage}");
    };
    let objects: usize = o
        .parse()
        .with_context(|| format!("objects: bad integer {o:?}"))?;
    let frames: usize = f
        .parse()
        .with_context(|| format!("frames: bad integer {f:?}"))?;
    if let Some(path) = args.get(2) {
        let seq = bench::synthetic_sequence(objects, frames, 42);
        bench::write_mot(&seq, std::path::Path::new(path))
            .with_context(|| format!("writing {path}"))?;
    }
    let row = bench::bench_updates(objects, frames);
    println!("{}", serde_json::to_string(&row)?);
    Ok(())
}

fn main() -> Result<()> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("bench") {
        return run_bench(&all[1..]);
    }
    let mut args = all.into_iter();
    let mut pos = Vec::new();
    let mut fps = 5.0f64;
    let mut frames: Option<u32> = None;
    let mut params = TrackerParams::default();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fps" => {
                let v = args.next().context("--fps needs a value")?;
                fps = v
                    .parse()
                    .with_context(|| format!("--fps: bad number {v:?}"))?;
                if !(fps.is_finite() && fps > 0.0) {
                    bail!("--fps must be positive, got {v}");
                }
            }
            "--frames" => {
                let v = args.next().context("--frames needs a value")?;
                frames = Some(
                    v.parse()
                        .with_context(|| format!("--frames: bad integer {v:?}"))?,
                );
            }
            "--set" => {
                let v = args.next().context("--set needs key=value")?;
                let (k, val) = v
                    .split_once('=')
                    .with_context(|| format!("--set: expected key=value, got {v:?}"))?;
                params.set(k, val).map_err(anyhow::Error::msg)?;
            }
            "-h" | "--help" => {
                println!("usage: track_mot <dets.txt> <out.txt> [--fps F] [--frames N] [--set key=value]...");
                return Ok(());
            }
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => pos.push(a),
        }
    }
    let [input, output] = pos.as_slice() else {
        bail!("usage: track_mot <dets.txt> <out.txt> [--fps F] [--frames N] [--set key=value]...");
    };
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading detections {input}"))?;
    let dets = mot::parse_mot(&text).with_context(|| format!("parsing {input}"))?;
    let rows = mot::run_sequence(params, &dets, fps, frames);
    std::fs::write(output, mot::format_mot(&rows)).with_context(|| format!("writing {output}"))?;
    let ids: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.id).collect();
    eprintln!(
        "track_mot: {} detections in, {} track rows, {} ids -> {output}",
        dets.len(),
        rows.len(),
        ids.len()
    );
    Ok(())
}
