//! Cross-camera identity accuracy on the simulator, scored by the field's
//! reference scorers (motmetrics IDF1 at 1 m, trackeval HOTA, through
//! `bench/spatial_eval/score.py`): at the evaluation seed, global IDF1 is at
//! least 95 on the default preset and at least 85 on the hard one, far above
//! the baseline without cross-camera association. `scripts/eval-spatial`
//! reports the same runs plus more seeds and the cycle benchmark.

mod common;

use common::*;
use nvr_actors::sim::NoisePreset;
use nvr_actors::spatial::eval::{self, EvalHooks, EvalSettings};

#[test]
fn global_identity_meets_the_targets_on_the_default_and_hard_presets() {
    let py = require(&data().join("pyenv/bin/python"), "the python environment");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    let mut runs = Vec::new();
    for preset in [NoisePreset::Default, NoisePreset::Hard] {
        let run = eval::run(preset, 42, &EvalSettings::default(), EvalHooks::default())
            .expect("evaluation run");
        let d = out.join(eval::preset_name(preset));
        std::fs::create_dir_all(&d).unwrap();
        runs.push(run.write(&d).expect("write results"));
    }
    std::fs::write(
        out.join("runs.json"),
        serde_json::json!({ "runs": runs }).to_string(),
    )
    .unwrap();
    let res = dir.path().join("results");
    let o = std::process::Command::new(py)
        .arg(root().join("bench/spatial_eval/score.py"))
        .arg(&out)
        .arg(&res)
        .output()
        .expect("run score.py");
    assert!(
        o.status.success(),
        "score.py failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(res.join("spatial.json")).unwrap()).unwrap();
    for (preset, target) in [("default", 95.0), ("hard", 85.0)] {
        let ours = v["presets"][preset]["ours"]["idf1"].as_f64().unwrap();
        let base = v["presets"][preset]["baseline"]["idf1"].as_f64().unwrap();
        assert!(
            ours >= target,
            "{preset}: global IDF1 {ours:.1} below the target {target}"
        );
        assert!(
            ours > base + 50.0,
            "{preset}: {ours:.1} vs baseline {base:.1}"
        );
    }
}
