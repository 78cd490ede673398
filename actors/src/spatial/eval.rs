//! Offline cross-camera evaluation run: one simulator preset goes through the
//! per-camera trackers and the spatial tracker on message time, and the
//! predicted floor tracks come out in the `frame,id,x,y` form the scorers
//! (`bench/spatial_eval/score.py`: motmetrics and trackeval) read, next to a
//! baseline without cross-camera association. Used by the `spatial_eval`
//! example and by the accuracy test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use nvr_subjects::{
    CameraTracks, Detections, SpatialState, SpatialTrack, TrackState, SCHEMA_VERSION,
};

use super::{CameraGeometry, Homography, SpatialParams, SpatialStats, SpatialTracker, StepOutput};
use crate::sim::{self, NoisePreset, SimConfig, SimOutput};
use crate::track::{Tracker, TrackerOutput, TrackerParams};

/// Settings of one evaluation run.
#[derive(Debug, Clone, Default)]
pub struct EvalSettings {
    /// Per-camera tracker parameters.
    pub tracker: TrackerParams,
    /// Spatial tracker parameters (`max_coast_seconds` bounds the coasting
    /// identities that are published, and so scored).
    pub spatial: SpatialParams,
}

/// Observer of each camera message: (frame, message, per-camera tracker output).
pub type MessageHook<'a> = &'a mut dyn FnMut(u64, &Detections, &TrackerOutput);
/// Observer of each matching cycle: (frame, step output, coasting identities, tracker).
pub type StepHook<'a> = &'a mut dyn FnMut(u64, &StepOutput, &[SpatialTrack], &SpatialTracker);

/// Observers of a run (for diagnostics); both optional.
#[derive(Default)]
pub struct EvalHooks<'a> {
    /// Sees every camera message with its per-camera tracks.
    pub on_message: Option<MessageHook<'a>>,
    /// Sees every matching cycle.
    pub on_step: Option<StepHook<'a>>,
}

/// The outcome of one run.
pub struct EvalRun {
    /// The simulation (ground truth, cameras, messages).
    pub sim: SimOutput,
    /// Predicted identities, `frame,id,x,y` lines.
    pub ours: String,
    /// Camera tracks as identities (no cross-camera association).
    pub baseline: String,
    /// Spatial events by kind.
    pub events: BTreeMap<String, u64>,
    /// Camera messages the spatial tracker refused.
    pub rejected: u64,
    /// Spatial tracker counters at the end.
    pub stats: SpatialStats,
    /// Seconds spent simulating.
    pub sim_seconds: f64,
    /// Seconds spent tracking.
    pub track_seconds: f64,
}

/// Name of a preset as used in file names and reports.
pub fn preset_name(p: NoisePreset) -> &'static str {
    match p {
        NoisePreset::Clean => "clean",
        NoisePreset::Default => "default",
        NoisePreset::Hard => "hard",
    }
}

/// Runs `preset` at `seed`. Errors name the camera whose calibration fails.
pub fn run(
    preset: NoisePreset,
    seed: u64,
    settings: &EvalSettings,
    hooks: EvalHooks<'_>,
) -> Result<EvalRun, String> {
    let t0 = Instant::now();
    let out = sim::simulate(&SimConfig::preset(preset, seed));
    let sim_seconds = t0.elapsed().as_secs_f64();
    let mut run = run_on(out, settings, hooks)?;
    run.sim_seconds = sim_seconds;
    Ok(run)
}

/// Runs an existing simulation (`sim_seconds` of the result is 0).
pub fn run_on(
    out: SimOutput,
    settings: &EvalSettings,
    hooks: EvalHooks<'_>,
) -> Result<EvalRun, String> {
    let EvalHooks {
        mut on_message,
        mut on_step,
    } = hooks;
    let mut geoms = Vec::new();
    for c in &out.cameras {
        let h = Homography::from_points(&c.image_points, &c.floor_points)
            .map_err(|e| format!("camera {} calibration: {e}", c.id))?;
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
        .map(|g| (g.id.clone(), Tracker::new(settings.tracker.clone())))
        .collect();
    let mut spatial = SpatialTracker::new("eval", settings.spatial.clone(), geoms);
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
                return Err(format!("unknown camera {}", m.camera));
            };
            let to = tr.update(m.ts_ns, &m.objects);
            for t in &to.tracks {
                if t.state != TrackState::Confirmed {
                    continue;
                }
                let u = 0.5 * (t.bbox[0] + t.bbox[2]) as f64 * m.width as f64;
                let v = t.bbox[3] as f64 * m.height as f64;
                if let (Some(h), Some(ci)) = (homs.get(&m.camera), cam_index.get(&m.camera)) {
                    if let Some(p) = h.project(u, v) {
                        let id = ci * 1_000_000 + t.track_id;
                        let _ = writeln!(baseline, "{frame},{id},{:.4},{:.4}", p[0], p[1]);
                    }
                }
            }
            if let Some(f) = on_message.as_mut() {
                f(frame, m, &to);
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
        // Scored exactly as published: who is on the floor now.
        for t in &step.tracks.tracks {
            if t.state != SpatialState::Lost {
                let _ = writeln!(ours, "{frame},{},{:.4},{:.4}", t.global_id, t.x_m, t.y_m);
            }
        }
        let coasting: Vec<SpatialTrack> = step
            .tracks
            .tracks
            .iter()
            .filter(|t| t.state == SpatialState::Coasting)
            .cloned()
            .collect();
        if let Some(f) = on_step.as_mut() {
            f(frame, &step, &coasting, &spatial);
        }
    }
    Ok(EvalRun {
        sim: out,
        ours,
        baseline,
        events,
        rejected,
        stats: spatial.stats(),
        sim_seconds: 0.0,
        track_seconds: t1.elapsed().as_secs_f64(),
    })
}

impl EvalRun {
    /// Writes `floor_gt.txt` (and the per-camera ground truth),
    /// `cameras.yaml`, `ours.txt`, `baseline.txt` and `run.json` to `dir`,
    /// and returns the `run.json` summary.
    pub fn write(&self, dir: &Path) -> std::io::Result<serde_json::Value> {
        sim::write_ground_truth(&self.sim, dir)?;
        std::fs::write(dir.join("cameras.yaml"), sim::config_yaml(&self.sim))?;
        std::fs::write(dir.join("ours.txt"), &self.ours)?;
        std::fs::write(dir.join("baseline.txt"), &self.baseline)?;
        let cfg = &self.sim.config;
        let people: std::collections::BTreeSet<u64> =
            self.sim.gt_floor.iter().map(|r| r.1).collect();
        let v = serde_json::json!({
            "preset": preset_name(cfg.preset),
            "seed": cfg.seed,
            "people": cfg.people,
            "people_seen": people.len(),
            "duration_s": cfg.duration_s,
            "fps": cfg.fps,
            "cameras": self.sim.cameras.len(),
            "messages": self.sim.messages.len(),
            "sim_seconds": self.sim_seconds,
            "track_seconds": self.track_seconds,
            "realtime_factor": cfg.duration_s / self.track_seconds.max(1e-9),
            "rejected": self.rejected,
            "events": self.events,
            "stats": self.stats,
        });
        std::fs::write(
            dir.join("run.json"),
            serde_json::to_string_pretty(&v).map_err(std::io::Error::other)?,
        )?;
        Ok(v)
    }
}
