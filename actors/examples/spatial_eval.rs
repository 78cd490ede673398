//! Offline evaluation of cross-camera spatial tracking: for each noise preset
//! the simulator's detections run through the per-camera tracker and the
//! spatial tracker (deterministic, on message time) and the predicted floor
//! tracks are written next to the floor ground truth, together with a
//! baseline that does no cross-camera association. `bench/spatial_eval/score.py`
//! scores them. With `--bench`, also times the spatial matching cycle.
//!
//! With `--diag <preset>`, runs that preset only and prints, for each
//! ground-truth person, every change of the predicted global id matched to
//! them (greedy 1 m floor matching that keeps a previous match while it
//! holds), with the camera tracks behind both ids and the ground-truth
//! person behind each camera track, plus the per-camera tracker's own
//! identity switches, and how many misses had a confirmed camera track on
//! the person, only a detection, or neither.
//!
//! Tuning knobs (environment): `SPATIAL_EVAL_PARAMS` and
//! `SPATIAL_EVAL_TRACKER` (`key=value,...` for the spatial and the
//! per-camera tracker), `SPATIAL_EVAL_COAST_S`; with `--diag`,
//! `SPATIAL_EVAL_DUMP=frame,...` prints the tracker state at those frames, or
//! with `SPATIAL_EVAL_DUMP_GT=<person>` that person's boxes, detections and
//! camera tracks there.
//!
//! Usage: `spatial_eval <outdir> [--bench] [--seed N] [--diag PRESET]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nvr_actors::sim::{self, NoisePreset, SimConfig, SimOutput};
use nvr_actors::spatial::eval::{self, preset_name, EvalHooks, EvalSettings};
use nvr_actors::spatial::{bench, SpatialParams, SpatialTracker, StepOutput};
use nvr_actors::track::{TrackerOutput, TrackerParams};
use nvr_subjects::{Detections, SpatialTrack, TrackState};

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
            "merge_similarity" => p.merge_similarity = f()?,
            "swap_check_similarity" => p.swap_check_similarity = f()?,
            "swap_margin" => p.swap_margin = f()?,
            "appearance_free_gap_ms" => p.appearance_free_gap_ms = f()? as u64,
            "max_handoff_radius_m" => p.max_handoff_radius_m = f()?,
            "max_speed_mps" => p.max_speed_mps = f()?,
            "merge_cycles" => p.merge_cycles = f()? as u32,
            "alpha" => p.alpha = f()?,
            "beta" => p.beta = f()?,
            "max_gap_seconds" => p.max_gap_seconds = f()?,
            _ => bail!("SPATIAL_EVAL_PARAMS: unknown key {k:?}"),
        }
    }
    Ok(p)
}

/// A reported identity: global id, x, y, sources as (camera, track id).
type DiagPred = (u64, f64, f64, Vec<(String, u64)>);
/// Ground-truth boxes (person, x1 y1 x2 y2 pixels) by (camera, frame).
type GtBoxes = BTreeMap<(String, u64), Vec<(u64, [f64; 4])>>;

/// Per-frame record kept for `--diag`.
#[derive(Default)]
struct DiagFrame {
    preds: Vec<DiagPred>,
    /// (camera, camera track id) -> ground-truth person, by box overlap.
    cam_gt: BTreeMap<(String, u64), u64>,
    /// Ground-truth persons with a detection (box overlap) on some camera.
    detected: std::collections::BTreeSet<u64>,
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let i = w * h;
    let u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i;
    if u > 0.0 {
        i / u
    } else {
        0.0
    }
}

fn run_preset(preset: NoisePreset, seed: u64, dir: &Path) -> Result<serde_json::Value> {
    Ok(run_preset_inner(preset, seed, dir, None)?.0)
}

/// Evaluation settings from the environment (see the module docs).
fn settings_from_env() -> Result<EvalSettings> {
    let mut tracker = TrackerParams::default();
    for kv in std::env::var("SPATIAL_EVAL_TRACKER")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("SPATIAL_EVAL_TRACKER: {kv:?} is not key=value"))?;
        tracker.set(k, v).map_err(anyhow::Error::msg)?;
    }
    let mut spatial = params_from_env()?;
    if let Ok(v) = std::env::var("SPATIAL_EVAL_COAST_S") {
        spatial.max_coast_seconds = v
            .parse()
            .with_context(|| format!("SPATIAL_EVAL_COAST_S={v:?} is not a number"))?;
    }
    Ok(EvalSettings { tracker, spatial })
}

fn px_box(b: [f32; 4], m: &Detections) -> [f64; 4] {
    [
        b[0] as f64 * m.width as f64,
        b[1] as f64 * m.height as f64,
        b[2] as f64 * m.width as f64,
        b[3] as f64 * m.height as f64,
    ]
}

fn run_preset_inner(
    preset: NoisePreset,
    seed: u64,
    dir: &Path,
    diag: Option<&mut Vec<DiagFrame>>,
) -> Result<(serde_json::Value, SimOutput)> {
    let settings = settings_from_env()?;
    let dump: Vec<u64> = std::env::var("SPATIAL_EVAL_DUMP")
        .unwrap_or_default()
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect();
    let dump_gt: Option<u64> = std::env::var("SPATIAL_EVAL_DUMP_GT")
        .ok()
        .and_then(|v| v.parse().ok());
    let run = match diag {
        None => eval::run(preset, seed, &settings, EvalHooks::default()),
        Some(frames) => {
            // Per camera, ground-truth boxes by frame.
            let out = sim::simulate(&SimConfig::preset(preset, seed));
            let mut gt_boxes: GtBoxes = BTreeMap::new();
            for (cam, rows) in &out.gt_camera {
                for r in rows {
                    gt_boxes
                        .entry((cam.clone(), r.frame))
                        .or_default()
                        .push((r.id, [r.x, r.y, r.x + r.w, r.y + r.h]));
                }
            }
            let df = std::cell::RefCell::new(DiagFrame::default());
            let frames = std::cell::RefCell::new(frames);
            let mut on_message = |frame: u64, m: &Detections, to: &TrackerOutput| {
                let mut df = df.borrow_mut();
                let gts = gt_boxes
                    .get(&(m.camera.clone(), frame))
                    .cloned()
                    .unwrap_or_default();
                for o in &m.objects {
                    let b = px_box(o.bbox, m);
                    for (gid, gb) in &gts {
                        if iou(b, *gb) > 0.5 {
                            df.detected.insert(*gid);
                        }
                    }
                }
                if let Some(who) = dump_gt.filter(|_| dump.contains(&frame)) {
                    for (gid, gb) in gts.iter().filter(|g| g.0 == who) {
                        println!("f{frame} {} gt{gid} box {gb:.0?}", m.camera);
                        for o in &m.objects {
                            let b = px_box(o.bbox, m);
                            let v = iou(b, *gb);
                            if v > 0.1 {
                                println!("   det iou {v:.2} score {:.2} {b:.0?}", o.score);
                            }
                        }
                        for t in &to.tracks {
                            let b = px_box(t.bbox, m);
                            let v = iou(b, *gb);
                            if v > 0.1 {
                                println!(
                                    "   track {} {:?} iou {v:.2} hits {} {b:.0?}",
                                    t.track_id, t.state, t.hits
                                );
                            }
                        }
                    }
                }
                let mut pairs = Vec::new();
                for t in &to.tracks {
                    if t.state != TrackState::Confirmed {
                        continue;
                    }
                    let b = px_box(t.bbox, m);
                    for (gid, gb) in &gts {
                        let o = iou(b, *gb);
                        if o > 0.3 {
                            pairs.push((o, t.track_id, *gid));
                        }
                    }
                }
                pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let mut used_t = std::collections::BTreeSet::new();
                let mut used_g = std::collections::BTreeSet::new();
                for (_, tid, gid) in pairs {
                    if used_t.contains(&tid) || used_g.contains(&gid) {
                        continue;
                    }
                    used_t.insert(tid);
                    used_g.insert(gid);
                    df.cam_gt.insert((m.camera.clone(), tid), gid);
                }
            };
            let mut on_step = |frame: u64,
                               step: &StepOutput,
                               coasting: &[SpatialTrack],
                               spatial: &SpatialTracker| {
                if dump.contains(&frame) && dump_gt.is_none() {
                    println!("--- frame {frame}: {spatial:?}");
                }
                let mut df = std::mem::take(&mut *df.borrow_mut());
                for t in &step.tracks.tracks {
                    if t.last_seen_ns + 50_000_000 >= step.tracks.ts_ns {
                        df.preds.push((
                            t.global_id,
                            t.x_m as f64,
                            t.y_m as f64,
                            t.sources
                                .iter()
                                .map(|s| (s.camera.clone(), s.track_id))
                                .collect(),
                        ));
                    }
                }
                for t in coasting {
                    df.preds
                        .push((t.global_id, t.x_m as f64, t.y_m as f64, Vec::new()));
                }
                frames.borrow_mut().push(df);
            };
            eval::run_on(
                out,
                &settings,
                EvalHooks {
                    on_message: Some(&mut on_message),
                    on_step: Some(&mut on_step),
                },
            )
        }
    }
    .map_err(anyhow::Error::msg)?;
    let v = run
        .write(dir)
        .with_context(|| format!("writing results to {}", dir.display()))?;
    Ok((v, run.sim))
}

/// Prints the identity switches of one preset (see the module docs).
fn run_diag(preset: NoisePreset, seed: u64, dir: &Path) -> Result<()> {
    let mut frames = Vec::new();
    let (_, out) = run_preset_inner(preset, seed, dir, Some(&mut frames))?;
    let mut gt_by_frame: BTreeMap<u64, Vec<(u64, f64, f64)>> = BTreeMap::new();
    for (f, id, x, y) in &out.gt_floor {
        gt_by_frame.entry(*f).or_default().push((*id, *x, *y));
    }
    let srcs = |s: &[(String, u64)], df: &DiagFrame| -> String {
        s.iter()
            .map(|(c, t)| {
                let g = df
                    .cam_gt
                    .get(&(c.clone(), *t))
                    .map_or("?".to_string(), |g| g.to_string());
                format!("{c}:{t}(gt{g})")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut prev: BTreeMap<u64, u64> = BTreeMap::new(); // gt -> pred (current match)
    let mut last: BTreeMap<u64, u64> = BTreeMap::new(); // gt -> last matched pred
    let mut first_seen: BTreeMap<u64, u64> = BTreeMap::new(); // pred -> frame
    let mut pred_gts: BTreeMap<u64, BTreeMap<u64, u64>> = BTreeMap::new();
    let mut cam_prev: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut switches = 0;
    let mut cam_switches = 0;
    let mut misses: BTreeMap<u64, u64> = BTreeMap::new();
    // Misses with and without a confirmed camera track on the person.
    let mut miss_kind: BTreeMap<&str, u64> = BTreeMap::new();
    // gt -> segments (pred or 0 for a miss, first frame, last frame).
    let mut segs: BTreeMap<u64, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for (fi, df) in frames.iter().enumerate() {
        let f = fi as u64 + 1;
        for (gid, ..) in &df.preds {
            first_seen.entry(*gid).or_insert(f);
        }
        for (k, g) in &df.cam_gt {
            if let Some(pg) = cam_prev.insert(k.clone(), *g) {
                if pg != *g {
                    cam_switches += 1;
                    println!(
                        "f{f:5} camera track {}:{} switches gt{pg} -> gt{g}",
                        k.0, k.1
                    );
                }
            }
        }
        let gts = gt_by_frame.get(&f).cloned().unwrap_or_default();
        let d =
            |g: &(u64, f64, f64), p: &DiagPred| ((g.1 - p.1).powi(2) + (g.2 - p.2).powi(2)).sqrt();
        let mut cur: BTreeMap<u64, u64> = BTreeMap::new();
        let mut used = std::collections::BTreeSet::new();
        for g in &gts {
            if let Some(pid) = prev.get(&g.0) {
                if let Some(p) = df.preds.iter().find(|p| p.0 == *pid) {
                    if d(g, p) <= 1.0 && !used.contains(pid) {
                        cur.insert(g.0, *pid);
                        used.insert(*pid);
                    }
                }
            }
        }
        let mut pairs = Vec::new();
        for g in gts.iter().filter(|g| !cur.contains_key(&g.0)) {
            for p in df.preds.iter().filter(|p| !used.contains(&p.0)) {
                let dd = d(g, p);
                if dd <= 1.0 {
                    pairs.push((dd, g.0, p.0));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        for (_, g, p) in pairs {
            if cur.contains_key(&g) || used.contains(&p) {
                continue;
            }
            cur.insert(g, p);
            used.insert(p);
        }
        for g in &gts {
            let p = cur.get(&g.0).copied().unwrap_or(0);
            let v = segs.entry(g.0).or_default();
            match v.last_mut() {
                Some(l) if l.0 == p && l.2 + 1 == f => l.2 = f,
                _ => v.push((p, f, f)),
            }
            match cur.get(&g.0) {
                None => {
                    *misses.entry(g.0).or_default() += 1;
                    let tracked = df.cam_gt.values().any(|x| *x == g.0);
                    let kind = if tracked {
                        "tracked"
                    } else if df.detected.contains(&g.0) {
                        "detected, untracked"
                    } else {
                        "undetected"
                    };
                    *miss_kind.entry(kind).or_default() += 1;
                }
                Some(p) => {
                    *pred_gts.entry(*p).or_default().entry(g.0).or_default() += 1;
                    if let Some(lp) = last.get(&g.0) {
                        if lp != p {
                            switches += 1;
                            let new = first_seen.get(p) == Some(&f);
                            let a = df.preds.iter().find(|q| q.0 == *lp);
                            let b = df.preds.iter().find(|q| q.0 == *p);
                            let a_gt = cur.iter().find(|(_, q)| *q == lp).map(|(g, _)| *g);
                            println!(
                                "f{f:5} gt{} at ({:.1},{:.1}): pred {lp} -> {p}{}  | old {lp}: {} now on gt{:?} src [{}] | new {p} src [{}]",
                                g.0,
                                g.1,
                                g.2,
                                if new { " (new id)" } else { "" },
                                a.map_or("gone".to_string(), |a| format!("at ({:.1},{:.1})", a.1, a.2)),
                                a_gt,
                                a.map_or(String::new(), |a| srcs(&a.3, df)),
                                b.map_or(String::new(), |b| srcs(&b.3, df)),
                            );
                        }
                    }
                    last.insert(g.0, *p);
                }
            }
        }
        prev = cur;
    }
    println!("global id switches {switches}, camera track switches {cam_switches}");
    println!("misses per gt: {misses:?}");
    println!("misses by camera tracking: {miss_kind:?}");
    for (g, v) in &segs {
        let t: Vec<String> = v
            .iter()
            .map(|(p, a, b)| {
                if *p == 0 {
                    format!("-[{a}-{b}]")
                } else {
                    format!("{p}[{a}-{b}]")
                }
            })
            .collect();
        println!("gt{g}: {}", t.join(" "));
    }
    for (p, m) in &pred_gts {
        println!(
            "pred {p} (first f{}): gt frames {m:?}",
            first_seen.get(p).copied().unwrap_or(0)
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut outdir: Option<PathBuf> = None;
    let mut do_bench = false;
    let mut seed = 42u64;
    let mut diag: Option<NoisePreset> = None;
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
            "--diag" => {
                i += 1;
                diag = Some(match args.get(i).map(String::as_str) {
                    Some("clean") => NoisePreset::Clean,
                    Some("default") => NoisePreset::Default,
                    Some("hard") => NoisePreset::Hard,
                    other => bail!("--diag needs clean, default or hard, got {other:?}"),
                });
            }
            a if outdir.is_none() && !a.starts_with('-') => outdir = Some(PathBuf::from(a)),
            a => bail!(
                "unexpected argument {a:?}; usage: spatial_eval <outdir> [--bench] [--seed N] [--diag PRESET]"
            ),
        }
        i += 1;
    }
    let outdir = outdir.context("usage: spatial_eval <outdir> [--bench] [--seed N]")?;
    if let Some(p) = diag {
        let dir = outdir.join(preset_name(p));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        return run_diag(p, seed, &dir);
    }
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
