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
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nvr_actors::sim::{self, NoisePreset, SimConfig};
use nvr_actors::spatial::{bench, CameraGeometry, Homography, SpatialParams, SpatialTracker};
use nvr_actors::track::{Tracker, TrackerParams};
use nvr_subjects::{CameraTracks, TrackState, SCHEMA_VERSION};

/// Identities unobserved for up to this long (seconds) whose predicted
/// position is still inside a camera's view are reported (missed or occluded).
const COAST_S: f64 = 1.0;

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
    run_preset_inner(preset, seed, dir, None)
}

fn run_preset_inner(
    preset: NoisePreset,
    seed: u64,
    dir: &Path,
    mut diag: Option<&mut Vec<DiagFrame>>,
) -> Result<serde_json::Value> {
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
    // `SPATIAL_EVAL_TRACKER="key=value,..."` overrides per-camera tracker
    // parameters (for tuning).
    let mut tracker_params = TrackerParams::default();
    for kv in std::env::var("SPATIAL_EVAL_TRACKER")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("SPATIAL_EVAL_TRACKER: {kv:?} is not key=value"))?;
        tracker_params.set(k, v).map_err(anyhow::Error::msg)?;
    }
    let mut trackers: BTreeMap<String, Tracker> = geoms
        .iter()
        .map(|g| (g.id.clone(), Tracker::new(tracker_params.clone())))
        .collect();
    let mut spatial = SpatialTracker::new("eval", params_from_env()?, geoms);
    let mut ours = String::new();
    let mut baseline = String::new();
    let mut events: BTreeMap<String, u64> = BTreeMap::new();
    let mut rejected = 0u64;
    let coast_s: f64 = std::env::var("SPATIAL_EVAL_COAST_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(COAST_S);
    let dump: Vec<u64> = std::env::var("SPATIAL_EVAL_DUMP")
        .unwrap_or_default()
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect();
    let dump_gt: Option<u64> = std::env::var("SPATIAL_EVAL_DUMP_GT")
        .ok()
        .and_then(|v| v.parse().ok());
    let t1 = Instant::now();
    let mut mi = 0;
    // Per camera, ground-truth boxes by frame (for --diag).
    let mut gt_boxes: GtBoxes = BTreeMap::new();
    if diag.is_some() {
        for (cam, rows) in &out.gt_camera {
            for r in rows {
                gt_boxes
                    .entry((cam.clone(), r.frame))
                    .or_default()
                    .push((r.id, [r.x, r.y, r.x + r.w, r.y + r.h]));
            }
        }
    }
    for (fi, frame_ts) in out.frame_ts_ns.iter().enumerate() {
        let frame = fi as u64 + 1;
        let mut df = DiagFrame::default();
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
            if diag.is_some() {
                let gts = gt_boxes
                    .get(&(m.camera.clone(), frame))
                    .cloned()
                    .unwrap_or_default();
                for o in &m.objects {
                    let b = [
                        o.bbox[0] as f64 * m.width as f64,
                        o.bbox[1] as f64 * m.height as f64,
                        o.bbox[2] as f64 * m.width as f64,
                        o.bbox[3] as f64 * m.height as f64,
                    ];
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
                            let b = [
                                o.bbox[0] as f64 * m.width as f64,
                                o.bbox[1] as f64 * m.height as f64,
                                o.bbox[2] as f64 * m.width as f64,
                                o.bbox[3] as f64 * m.height as f64,
                            ];
                            let v = iou(b, *gb);
                            if v > 0.1 {
                                println!("   det iou {v:.2} score {:.2} {b:.0?}", o.score);
                            }
                        }
                        for t in &to.tracks {
                            let b = [
                                t.bbox[0] as f64 * m.width as f64,
                                t.bbox[1] as f64 * m.height as f64,
                                t.bbox[2] as f64 * m.width as f64,
                                t.bbox[3] as f64 * m.height as f64,
                            ];
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
                    let b = [
                        t.bbox[0] as f64 * m.width as f64,
                        t.bbox[1] as f64 * m.height as f64,
                        t.bbox[2] as f64 * m.width as f64,
                        t.bbox[3] as f64 * m.height as f64,
                    ];
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
        if diag.is_some() && dump.contains(&frame) && dump_gt.is_none() {
            println!("--- frame {frame}: {spatial:?}");
        }
        for e in &step.events {
            *events.entry(e.kind.clone()).or_default() += 1;
        }
        for t in &step.tracks.tracks {
            if t.last_seen_ns >= *frame_ts {
                let _ = writeln!(ours, "{frame},{},{:.4},{:.4}", t.global_id, t.x_m, t.y_m);
                if diag.is_some() {
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
        }
        for t in spatial.coasting_tracks(*frame_ts, coast_s) {
            let _ = writeln!(ours, "{frame},{},{:.4},{:.4}", t.global_id, t.x_m, t.y_m);
            if diag.is_some() {
                df.preds
                    .push((t.global_id, t.x_m as f64, t.y_m as f64, Vec::new()));
            }
        }
        if let Some(d) = diag.as_deref_mut() {
            d.push(df);
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

/// Prints the identity switches of one preset (see the module docs).
fn run_diag(preset: NoisePreset, seed: u64, dir: &Path) -> Result<()> {
    let mut frames = Vec::new();
    run_preset_inner(preset, seed, dir, Some(&mut frames))?;
    let out = sim::simulate(&SimConfig::preset(preset, seed));
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
