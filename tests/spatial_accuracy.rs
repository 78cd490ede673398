//! Cross-camera identity accuracy of the running service, scored on what it
//! publishes. `bench/spatial_live/run_eval.py` simulates scenes with its own
//! generator (people on a floor seen by four perspective cameras; detector
//! scores spread below 0.7, bursty misses, fixed false detections, boxes
//! offset from the foot point and cut by the border and by occluders,
//! calibration fitted from noisy points, per-camera colour casts, look-alikes,
//! clock jitter and offsets, staggered camera starts, people standing still
//! and leaving through a door), publishes their `Detections` over NATS to
//! `nvr run` at the service's defaults (5 fps, 200 ms cycles), reads
//! `nvr.spatial.*.tracks` and `nvr.tracks.*` back and scores them with
//! motmetrics (IDF1 / MOTA at 1 m) and trackeval (HOTA).
//!
//! On reporting seeds (never used for tuning) the floor identity must stay
//! above the level measured for this build and clearly above the ablation
//! (the same run with re-identification off) and the baselines computed from
//! the same camera tracks (nearest-neighbour floor association; per-camera
//! ids), so a mediocre tracker fails. `scripts/eval-spatial` runs the full
//! reporting set (20 seeds per difficulty) and writes
//! `bench/results/spatial_live.md`.

mod common;

use common::*;

/// Floor IDF1 the tracker must reach (mean over the seeds below) per difficulty.
/// Measured for this build on seeds 118-119: 0.753 and 0.680 (re-identification
/// off: 0.640 and 0.554; nearest neighbour: 0.505 and 0.346).
const TARGETS: [(&str, f64); 2] = [("decent", 0.70), ("poor", 0.62)];

#[test]
fn global_identity_beats_the_ablation_and_the_baselines_on_reporting_seeds() {
    let py = require(&data().join("pyenv/bin/python"), "the python environment");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = std::process::Command::new(py)
        .arg(root().join("bench/spatial_live/run_eval.py"))
        .args(["--nvr", env!("CARGO_BIN_EXE_nvr")])
        .args(["--difficulty", "decent,poor", "--seeds", "118-119"])
        .args(["--duration", "60", "--ablations", "--jobs", "2"])
        .arg("--out")
        .arg(&out)
        .arg("--work")
        .arg(dir.path().join("work"))
        .output()
        .expect("run run_eval.py");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "run_eval.py failed:\n{log}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("spatial_live.json")).unwrap())
            .unwrap();
    println!("{log}");
    for (difficulty, target) in TARGETS {
        let agg = &v["aggregate"][difficulty];
        assert_eq!(agg["failed_runs"].as_u64(), Some(0), "{difficulty}: {log}");
        let idf1 = |m: &str| {
            agg[m]["idf1"]["mean"]
                .as_f64()
                .unwrap_or_else(|| panic!("{difficulty}: no {m} IDF1 in {agg}"))
        };
        let ours = idf1("nvr");
        assert!(
            ours >= target,
            "{difficulty}: floor IDF1 {ours:.3} below {target}"
        );
        // Re-identification off keeps the camera trackers' appearance gate,
        // so it is the closest of the three (0.100 and 0.112 above on these
        // seeds, 0.140 and 0.136 over seeds 100-119).
        for (other, margin) in [
            ("nvr_reid_off", 0.07),
            ("nearest", 0.10),
            ("per_camera_ids", 0.25),
        ] {
            let theirs = idf1(other);
            assert!(
                ours >= theirs + margin,
                "{difficulty}: floor IDF1 {ours:.3} not {margin} above {other} ({theirs:.3})"
            );
        }
    }
}
