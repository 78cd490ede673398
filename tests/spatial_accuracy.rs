//! Cross-camera identity accuracy of the running service, scored on what it
//! publishes. `bench/spatial_live/run_eval.py` simulates scenes with its own
//! generator (people on a floor seen by four perspective cameras; detector
//! scores spread below 0.7, bursty misses, fixed false detections, boxes
//! offset from the foot point and cut by the border and by occluders, one
//! box around two overlapping people now and then,
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
//! ids), so a mediocre tracker fails. The same holds in the simulator's
//! second room (three cameras of other heights, lenses and image sizes),
//! on which nothing was tuned. `scripts/eval-spatial` runs the full
//! reporting set (20 seeds per difficulty, both rooms) and writes
//! `bench/results/spatial_live.md` and `spatial_live_rig1.md`.

mod common;

use common::*;

/// Floor IDF1 the tracker must reach (mean over the seeds below) per difficulty.
/// Measured for this build on seeds 116-119: 0.826 and 0.731 (re-identification
/// off: 0.747 and 0.619; nearest neighbour: 0.483 and 0.334). Four scenes per
/// difficulty, because one scene moves by 5 points or more on a change that
/// moves the mean of twenty by less than one.
const TARGETS: [(&str, f64); 2] = [("decent", 0.75), ("poor", 0.62)];

/// The same in the simulator's second room (`rig` 1: three cameras of other
/// heights, lenses and image sizes over a smaller floor), on which nothing
/// was tuned. Measured for this build on seeds 100-103: 0.860 and 0.790
/// (re-identification off: 0.735 and 0.672; nearest neighbour: 0.540 and
/// 0.340).
const TARGETS_RIG1: [(&str, f64); 2] = [("decent", 0.80), ("poor", 0.73)];

/// Runs the evaluation with the ablations on `seeds` of the decent and poor
/// presets, with `knobs` (`NVR_SIM_KNOBS`; empty: the presets as they ship,
/// whatever the caller's environment says). The results and the log.
fn evaluate(knobs: &str, seeds: &str) -> (serde_json::Value, String) {
    let py = require(&data().join("pyenv/bin/python"), "the python environment");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = std::process::Command::new(py);
    cmd.arg(root().join("bench/spatial_live/run_eval.py"))
        .args(["--nvr", env!("CARGO_BIN_EXE_nvr")])
        .args(["--difficulty", "decent,poor", "--seeds", seeds])
        .args(["--duration", "60", "--ablations", "--jobs", "2"])
        .arg("--out")
        .arg(&out)
        .arg("--work")
        .arg(dir.path().join("work"))
        .env_remove("NVR_SIM_KNOBS");
    if !knobs.is_empty() {
        cmd.env("NVR_SIM_KNOBS", knobs);
    }
    let o = cmd.output().expect("run run_eval.py");
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
    (v, log)
}

/// Checks each difficulty's mean floor IDF1 against its target and against
/// the ablation and the baselines by `margins`.
fn check(v: &serde_json::Value, log: &str, targets: &[(&str, f64)], margins: &[(&str, f64)]) {
    for &(difficulty, target) in targets {
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
        for &(other, margin) in margins {
            let theirs = idf1(other);
            assert!(
                ours >= theirs + margin,
                "{difficulty}: floor IDF1 {ours:.3} not {margin} above {other} ({theirs:.3})"
            );
        }
    }
}

#[test]
fn global_identity_beats_the_ablation_and_the_baselines_on_reporting_seeds() {
    let (v, log) = evaluate("", "116-119");
    // Re-identification off keeps the camera trackers' appearance gate
    // and shares the floor's motion model, so it is the closest of the
    // three (0.069 and 0.115 above on these seeds, 0.089 and 0.137 over
    // seeds 100-119).
    let margins = [
        ("nvr_reid_off", 0.06),
        ("nearest", 0.10),
        ("per_camera_ids", 0.25),
    ];
    check(&v, &log, &TARGETS, &margins);
}

#[test]
fn global_identity_holds_in_a_room_nothing_was_tuned_on() {
    let (v, log) = evaluate("rig=1", "100-103");
    // 0.131 and 0.130 above re-identification off on these seeds, 0.127
    // and 0.150 over seeds 100-119.
    let margins = [
        ("nvr_reid_off", 0.07),
        ("nearest", 0.10),
        ("per_camera_ids", 0.25),
    ];
    check(&v, &log, &TARGETS_RIG1, &margins);
}

/// The simulator sends `Detections` whose embeddings it computes itself, so
/// that the evaluation needs no image pipeline. They must be the ones nvr's
/// detector would compute from the same pixels (`bench/spatial_live/sim.py`
/// `descriptor_grid` and `colour_descriptor` against
/// `detect::embed::colour_descriptor`), or the evaluation would score the
/// spatial tracker on an appearance that the product never produces. The
/// same holds with a camera's white point set (`white_gain` and `balance`
/// against `detect::white_balance`), and for the box colours a white point
/// is measured from (`detect::embed::box_colour`).
#[test]
fn the_simulators_colour_descriptor_is_nvrs() {
    use nvr_actors::detect::embed::{box_colour, colour_descriptor, colour_descriptor_balanced};
    use nvr_actors::detect::image::RgbImage;
    use nvr_actors::detect::white_balance::gain_of;
    let py = require(&data().join("pyenv/bin/python"), "the python environment");
    // Red, green, blue and yellow, a grey and a near-black patch, with a
    // pseudo-random texture on top: both halves of every box fall into
    // several hue, saturation and grey bins.
    let (w, h) = (160u32, 120u32);
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    let mut state: u32 = 12345;
    for y in 0..h {
        for x in 0..w {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = (state >> 24) as u8 / 4;
            let base: [u8; 3] = match (x / 20 + y / 30) % 6 {
                0 => [200, 30, 40],
                1 => [30, 160, 60],
                2 => [40, 50, 190],
                3 => [128, 128, 128],
                4 => [20, 20, 25],
                _ => [230, 200, 60],
            };
            data.extend(base.iter().map(|c| c.saturating_add(noise)));
        }
    }
    let img = RgbImage {
        width: w,
        height: h,
        data,
    };
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("img.rgb");
    std::fs::write(&raw, &img.data).unwrap();
    let boxes: [[f32; 4]; 6] = [
        [0.1, 0.1, 0.4, 0.9],
        [0.0, 0.0, 1.0, 1.0],
        [0.55, 0.2, 0.62, 0.8],
        [0.3, 0.45, 0.31, 0.5],
        [0.8, 0.5, 1.2, 1.3],
        [0.123, 0.077, 0.789, 0.654],
    ];
    let out = sim_script(
        std::process::Command::new(py)
            .args(["-c", SIM_DESCRIPTORS])
            .arg(root().join("bench/spatial_live"))
            .arg(&raw)
            .args([w.to_string(), h.to_string()])
            .arg(serde_json::to_string(&boxes.map(|b| b.map(f64::from))).unwrap())
            .arg(serde_json::to_string(&WHITE_POINT).unwrap()),
        "descriptor",
    );
    let sim: Vec<(Vec<f32>, Vec<f32>, [f64; 3])> = serde_json::from_slice(&out).unwrap();
    assert_eq!(sim.len(), boxes.len());
    let gain = gain_of(WHITE_POINT);
    let mut balancing_changed_something = false;
    for (b, (plain, balanced, colour)) in boxes.iter().zip(&sim) {
        let ours = colour_descriptor(&img, *b);
        let ours_balanced = colour_descriptor_balanced(&img, *b, &gain);
        balancing_changed_something |= differ(&ours, &ours_balanced) > 0.01;
        for (what, ours, s) in [("", &ours, plain), (" balanced", &ours_balanced, balanced)] {
            assert_eq!(ours.len(), s.len(), "box {b:?}");
            let worst = differ(ours, s);
            assert!(
                worst < 1e-5,
                "box {b:?}: the simulator's{what} descriptor differs from nvr's by {worst}\n nvr {ours:?}\n sim {s:?}"
            );
        }
        let ours = box_colour(&img, *b).expect("every box holds pixels");
        for (o, s) in ours.iter().zip(colour) {
            assert!(
                (o - s).abs() < 1e-9,
                "box {b:?}: mean colour nvr {ours:?}, sim {colour:?}"
            );
        }
    }
    assert!(
        balancing_changed_something,
        "the white point changed no descriptor"
    );
}

/// A white point with a strong cast, for the descriptor parity test.
const WHITE_POINT: [f64; 3] = [150.0, 118.0, 96.5];

/// The largest difference between two vectors' elements.
fn differ(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// Runs a Python snippet against the simulator and returns what it printed;
/// fails the test with its error output (`what`: which check it is) if it
/// fails.
fn sim_script(cmd: &mut std::process::Command, what: &str) -> Vec<u8> {
    let o = cmd.output().expect("run python");
    assert!(
        o.status.success(),
        "sim.py {what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Prints, as JSON, the simulator's descriptor of each box, plain and
/// balanced with a white point, and the box's mean colour (argv: the
/// simulator's directory, a raw RGB image file, its width and height, the
/// normalised boxes as JSON, the white point as JSON).
const SIM_DESCRIPTORS: &str = r#"
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import sim
w, h = int(sys.argv[3]), int(sys.argv[4])
img = np.fromfile(sys.argv[2], dtype=np.uint8).reshape(h, w, 3)
gain = sim.white_gain(json.loads(sys.argv[6]))
out = []
for b in json.loads(sys.argv[5]):
    X, Y, half = sim.descriptor_grid(b, w, h)
    px = img[Y, X]
    out.append(([float(v) for v in sim.colour_descriptor(px, half)],
                [float(v) for v in sim.colour_descriptor(sim.balance(px, gain), half)],
                [float(v) for v in px.astype(np.float64).mean(0)]))
print(json.dumps(out))
"#;

/// The simulator's detector gives one box around two people whose boxes
/// overlap now and then, as a real one does when one person passes another
/// (`merge_iou`, `merge_p` in `bench/spatial_live/sim.py`). Every merged box
/// must cover both people, and switching the knob off must leave every
/// other frame exactly as it was, so that what the knob costs can be
/// measured on the same scenes.
#[test]
fn the_simulators_merged_boxes_cover_two_people_and_change_nothing_else() {
    let py = require(&data().join("pyenv/bin/python"), "the python environment");
    let out = sim_script(
        std::process::Command::new(py)
            .args(["-c", SIM_MERGES])
            .arg(root().join("bench/spatial_live"))
            .env_remove("NVR_SIM_KNOBS"),
        "merge check",
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    assert!(n("merged_boxes") >= 10, "too few merged boxes: {v}");
    assert_eq!(n("merge_frames_without_a_box_over_two"), 0, "{v}");
    assert!(n("frames_compared") > 500, "{v}");
    assert_eq!(n("other_frames_that_differ"), 0, "{v}");
    assert_eq!(n("merged_boxes_with_the_knob_off"), 0, "{v}");
}

/// Prints, as JSON, what the merge knob did in one decent scene: merged
/// boxes, merge frames without a box over two people's visible boxes, and
/// frames without a merge that differ from the same scene with the knob off.
const SIM_MERGES: &str = r#"
import dataclasses, json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import sim
# Without box jitter, so that a merged box is exactly the union of the two.
k = dataclasses.replace(sim.difficulty("decent"), box_jitter=0.0)
on = sim.Scene(k, 7, 20, 40.0)
off = sim.Scene(dataclasses.replace(k, merge_p=0.0), 7, 20, 40.0)

def covered(box, truth):
    w = min(box[2], truth[2]) - max(box[0], truth[0])
    h = min(box[3], truth[3]) - max(box[1], truth[1])
    area = (truth[2] - truth[0]) * (truth[3] - truth[1])
    return w > 0 and h > 0 and w * h >= 0.999 * area

bad = differ = compared = 0
for cam, frames in on.frames.items():
    for f_on, f_off in zip(frames, off.frames[cam]):
        if (cam, f_on.k) in on.merge_frames:
            camera = next(c for c in on.cameras if c.id == cam)
            seen = [r["vbox"] for r in on.render(camera, on.positions(f_on.t)).values()]
            over_two = any(sum(covered(d["bbox"], v) for v in seen) >= 2
                           for d in f_on.dets if d["pid"] > 0)
            bad += not over_two
            continue
        compared += 1
        a = sorted((d["pid"], tuple(np.round(d["bbox"], 6)), round(d["score"], 6)) for d in f_on.dets)
        b = sorted((d["pid"], tuple(np.round(d["bbox"], 6)), round(d["score"], 6)) for d in f_off.dets)
        differ += a != b
print(json.dumps({"merged_boxes": on.merged_boxes, "merge_frames_without_a_box_over_two": bad,
                  "frames_compared": compared, "other_frames_that_differ": differ,
                  "merged_boxes_with_the_knob_off": off.merged_boxes}))
"#;
