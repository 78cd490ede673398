//! Offline evaluation of cross-camera spatial tracking: for each noise preset
//! the simulator's detections run through the per-camera tracker and the
//! spatial tracker (deterministic, on message time) and the predicted floor
//! tracks are written next to the floor ground truth, together with a
//! baseline that does no cross-camera association. `bench/spatial_eval/score.py`
//! scores them. With `--bench`, also times the spatial matching cycle.
//!
//! Usage: `spatial_eval <outdir> [--bench] [--seed N]`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nvr_actors::sim::{self, NoisePreset, SimConfig};
use nvr_actors::spatial::{bench, CameraGeometry, Homography, SpatialParams, SpatialTracker};
use nvr_actors::track::{Tracker, TrackerParams};
use nvr_subjects::{CameraTracks, TrackState, SCHEMA_VERSION};

fn preset_name(p: NoisePreset) -> &'static str {
    match p {
        NoisePreset::Clean => "clean",
        NoisePreset::Default => "default",
        NoisePreset::Hard => "hard",
    }
}

/// `SPATIAL_EVAL_PARAMS="key=value,..."` overrides spatial parameters (for tuning).
fn params_from_env() -> Result<SpatialParams> {
    let mut p = SpatialParams::default();
    let Ok(spec) = std::env::var("SPATIAL_EVAL_PARAMS") else {
        return Ok(p);
    };
    for kv in spec.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("SPATIAL_EVAL_PARAMS: {kv:?} is not key=value"))?;
        let f = || {
            v.parse::<f64>()
                .with_context(|| format!("SPATIAL_EVAL_PARAMS: {k}={v:?} is not a number"))
        };
        match k {
            "reid_enabled" => p.reid_enabled = v == "true" || v == "1",
            "gate_m" => p.gate_m = f()?,
            "appearance_weight" => p.appearance_weight = f()?,
            "min_similarity" => p.min_similarity = f()?,
            "min_handoff_similarity" => p.min_handoff_similarity = f()?,
            "unbind_similarity" => p.unbind_similarity = f()?,
            "unbind_m" => p.unbind_m = f()?,
            "unbind_cycles" => p.unbind_cycles = f()? as u32,
            "merge_m" => p.merge_m = f()?,
            "merge_cycles" => p.merge_cycles = f()? as u32,
            "alpha" => p.alpha = f()?,
            "beta" => p.beta = f()?,
            "max_gap_seconds" => p.max_gap_seconds = f()?,
            _ => bail!("SPATIAL_EVAL_PARAMS: unknown key {k:?}"),
        }
    }
    Ok(p)
}

fn run_preset(preset: NoisePreset, seed: u64, dir: &Path) -> Result<serde_json::Value> {
    let cfg = SimConfig::preset(preset, seed);
    let t0 = Instant::now();
    let out = sim::simulate(&cfg);
    let sim_s = t0.elapsed().as_secs_f64();
    sim::write_ground_truth(&out, dir)
        .with_context(|| format!("writing ground truth to {}", dir.display()))?;
    std::fs::write(dir.join("cameras.yaml"), sim::config_yaml(&out))?;
    let mut geoms = Vec::new();
    for c in &out.cameras {
        let h = Homography::from_points(&c.image_points, &c.floor_points)
            .with_context(|| format!("camera {} calibration", c.id))?;
        geoms.push(CameraGeometry {
            id: c.id.clone(),
            floor: c.floor.clone(),
            homography: h,
        });
    }
    let homs: BTreeMap<String, Homography> = geoms
        .iter()
        .map(|g| (g.id.clone(), g.homography.clone()))
        .collect();
    let cam_index: BTreeMap<String, u64> = geoms
        .iter()
        .enumerate()
        .map(|(i, g)| (g.id.clone(), i as u64))
        .collect();
    let mut trackers: BTreeMap<String, Tracker> = geoms
        .iter()
        .map(|g| (g.id.clone(), Tracker::new(TrackerParams::default())))
        .collect();
    let mut spatial = SpatialTracker::new("eval", params_from_env()?, geoms);
    let mut ours = String::new();
    let mut baseline = String::new();
    let mut events: BTreeMap<String, u64> = BTreeMap::new();
    let mut rejected = 0u64;
    let t1 = Instant::now();
    let mut mi = 0;
    for (fi, frame_ts) in out.frame_ts_ns.iter().enumerate() {
        let frame = fi as u64 + 1;
        while mi < out.messages.len() && out.messages[mi].seq == fi as u64 {
            let m = &out.messages[mi];
            mi += 1;
            let Some(tr) = trackers.get_mut(&m.camera) else {
                bail!("unknown camera {}", m.camera)
            };
            let to = tr.update(m.ts_ns, &m.objects);
            for t in &to.tracks {
                if t.state != TrackState::Confirmed {
                    continue;
                }
                let u = 0.5 * (t.bbox[0] + t.bbox[2]) as f64 * m.width as f64;
                let v = t.bbox[3] as f64 * m.height as f64;
                if let Some(p) = homs[&m.camera].project(u, v) {
                    let id = cam_index[&m.camera] * 1_000_000 + t.track_id;
                    let _ = writeln!(baseline, "{frame},{id},{:.4},{:.4}", p[0], p[1]);
                }
            }
            let ct = CameraTracks {
                v: SCHEMA_VERSION,
                camera: m.camera.clone(),
                seq: m.seq,
                ts_ns: m.ts_ns,
                width: m.width,
                height: m.height,
                tracks: to.tracks,
            };
            if spatial.ingest(&ct).is_err() {
                rejected += 1;
            }
        }
        let step = spatial.step(frame_ts + 50_000_000);
        for e in &step.events {
            *events.entry(e.kind.clone()).or_default() += 1;
        }
        for t in &step.tracks.tracks {
            if t.last_seen_ns >= *frame_ts {
                let _ = writeln!(ours, "{frame},{},{:.4},{:.4}", t.global_id, t.x_m, t.y_m);
            }
        }
    }
    let run_s = t1.elapsed().as_secs_f64();
    std::fs::write(dir.join("ours.txt"), ours)?;
    std::fs::write(dir.join("baseline.txt"), baseline)?;
    let stats = spatial.stats();
    let people_ids: std::collections::BTreeSet<u64> = out.gt_floor.iter().map(|r| r.1).collect();
    let v = serde_json::json!({
        "preset": preset_name(preset),
        "seed": seed,
        "people": cfg.people,
        "people_seen": people_ids.len(),
        "duration_s": cfg.duration_s,
        "fps": cfg.fps,
        "cameras": out.cameras.len(),
        "messages": out.messages.len(),
        "sim_seconds": sim_s,
        "track_seconds": run_s,
        "realtime_factor": cfg.duration_s / run_s.max(1e-9),
        "rejected": rejected,
        "events": events,
        "stats": stats,
    });
    std::fs::write(dir.join("run.json"), serde_json::to_string_pretty(&v)?)?;
    Ok(v)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut outdir: Option<PathBuf> = None;
    let mut do_bench = false;
    let mut seed = 42u64;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--bench" => do_bench = true,
            "--seed" => {
                i += 1;
                let s = args.get(i).context("--seed needs a value")?;
                seed = s
                    .parse()
                    .with_context(|| format!("--seed {s:?}: not an unsigned integer"))?;
            }
            a if outdir.is_none() && !a.starts_with('-') => outdir = Some(PathBuf::from(a)),
            a => bail!(
                "unexpected argument {a:?}; usage: spatial_eval <outdir> [--bench] [--seed N]"
            ),
        }
        i += 1;
    }
    let outdir = outdir.context("usage: spatial_eval <outdir> [--bench] [--seed N]")?;
    let mut runs = Vec::new();
    for p in [NoisePreset::Clean, NoisePreset::Default, NoisePreset::Hard] {
        let dir = outdir.join(preset_name(p));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let v = run_preset(p, seed, &dir)?;
        println!(
            "{:8} messages {:6}  tracked in {:.2}s ({:.0}x real time)  globals {}  handoffs {}",
            preset_name(p),
            v["messages"],
            v["track_seconds"].as_f64().unwrap_or(0.0),
            v["realtime_factor"].as_f64().unwrap_or(0.0),
            v["stats"]["total_tracks"],
            v["stats"]["handoffs_completed"],
        );
        runs.push(v);
    }
    let mut rows = Vec::new();
    if do_bench {
        for n in [500usize, 2000, 10000] {
            let cycles = if n >= 10000 { 50 } else { 100 };
            let r = bench::bench_cycle(n, cycles);
            println!(
                "bench active_tracks {:6}: mean {:.3} ms  p99 {:.3} ms  reid mean {:.3} ms",
                r.active_tracks, r.mean_ms, r.p99_ms, r.reid_mean_ms
            );
            rows.push(r);
        }
    }
    let v = serde_json::json!({ "runs": runs, "bench": rows });
    std::fs::write(outdir.join("runs.json"), serde_json::to_string_pretty(&v)?)?;
    Ok(())
}
