//! Cross-camera identity on real footage through the whole service:
//! `bench/real_footage/run.py` cuts `data/samples/vtest.avi` (5 fps) into two
//! overlapping views (x in [0,480) and [288,768), one floor calibration
//! shifted per view) plus the full frame on a floor of its own, publishes
//! them as `Frame`s with identical timestamps to `nvr run` (real detector,
//! colour descriptor, per-camera and spatial trackers) and scores the
//! published global identities against the full frame's own camera tracks.
//!
//! Held here: global identity is better than keeping each view's camera
//! track ids (linking must not make identity worse), the two views agree on
//! the id of a person in their overlap at least as often as measured for
//! this build, an identity is rarely bound to two people at once, and
//! people who walk from one view to the other keep their id.

mod common;

use common::*;

fn metric(v: &serde_json::Value, name: &str) -> f64 {
    v["table"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["metric"] == name))
        .and_then(|r| r["mean"].as_f64())
        .unwrap_or_else(|| panic!("no metric {name} in real_footage.json"))
}

#[test]
fn global_identity_on_two_overlapping_views_beats_per_camera_ids() {
    let py = require(&data().join("pyenv/bin/python"), "the python environment");
    require(&data().join("samples/vtest.avi"), "the sample video");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = std::process::Command::new(py)
        .arg(root().join("bench/real_footage/run.py"))
        .args([
            "--nvr",
            env!("CARGO_BIN_EXE_nvr"),
            "--runs",
            "1",
            "--results",
            "",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run bench/real_footage/run.py");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "real_footage run failed:\n{log}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("real_footage.json")).unwrap())
            .unwrap();
    println!("{log}");
    let global = metric(&v, "idf1_global.idf1");
    let per_camera = metric(&v, "idf1_no_linking.idf1");
    // Measured: 0.898 against 0.593.
    assert!(
        global >= per_camera + 0.15,
        "global IDF1 {global:.3} not 0.15 above per-camera ids {per_camera:.3}"
    );
    // Measured: 0.898; 0.838 without the per-camera trackers' crossing
    // repair, which this holds.
    assert!(global >= 0.86, "global IDF1 {global:.3}");
    let agreement = metric(&v, "overlap_agreement.fraction");
    // Measured: 0.980.
    assert!(agreement >= 0.97, "overlap agreement {agreement:.3}");
    let double = metric(&v, "double_binding.count");
    // Measured: 1, in a crossing of three people where one camera's
    // detector gives one box for two of them (3 while two identities of
    // cameras that agree within centimetres, 0.4 m apart, could still be
    // one person's `duplicate`).
    assert!(double <= 1.0, "{double} cycles bind one id to two people");
    let crossers = metric(&v, "crossers.one_gid_outside_merges");
    // Measured: 7 of 12 (5 of 12 counting the frames where one detection
    // held the crosser and a hidden neighbour; checked by eye in
    // bench/results/real_footage_crossers.md).
    assert!(
        crossers >= 6.0,
        "{crossers} crossers keep one id outside shared frames"
    );
    let kept = metric(&v, "crossers.crossings_id_kept");
    // Measured: 23 of 26.
    assert!(kept >= 21.0, "{kept} crossings keep the id");
}
