//! A tracker restored from a checkpoint goes on exactly as the original.

use super::tests::{cam, msg, track, DT, T0};
use super::*;
use nvr_subjects::CameraTracks;

/// Camera messages of step `i`: four people crossing three cameras with
/// noisy embeddings, tracks restarting now and then, one person leaving.
fn input(i: u64) -> Vec<CameraTracks> {
    let mut out = Vec::new();
    for (c, ox) in [("a", 0.0), ("b", 8.0), ("c", 22.0)] {
        let mut tracks = Vec::new();
        for p in 0..4u64 {
            if p == 3 && (40..70).contains(&i) {
                continue;
            }
            let x = (p as f64 * 6.0 + 0.12 * i as f64) % 30.0;
            let y = 1.0 + p as f64 * 1.5 + (i as f64 * 0.07 + p as f64).sin() * 0.3;
            if x > ox + 0.3 && x < ox + 12.5 {
                let noise = ((i * 7 + p * 13) % 11) as f32 * 0.01;
                let e = vec![1.0 + noise, p as f32 * 0.4, 0.5 - noise, (p % 2) as f32];
                tracks.push(track(p + 10 * (i / 45), ox, x, y, Some(e)));
            }
        }
        out.push(msg(c, T0 + i * DT, tracks));
    }
    out
}

fn step(st: &mut SpatialTracker, i: u64) -> StepOutput {
    for m in input(i) {
        let _ = st.ingest(&m);
    }
    st.step(T0 + i * DT + 1)
}

fn cameras() -> Vec<CameraGeometry> {
    vec![cam("a", 0.0), cam("b", 8.0), cam("c", 22.0)]
}

#[test]
fn a_restored_checkpoint_goes_on_exactly_as_the_original() {
    let mut live = SpatialTracker::new("s", SpatialParams::default(), cameras());
    for i in 0..60 {
        step(&mut live, i);
    }
    let bytes = live.checkpoint().expect("checkpoint");
    let mut restored =
        SpatialTracker::restore("s", SpatialParams::default(), cameras(), &bytes).expect("restore");
    // The learned offsets' derived corrections are not in the bytes; the
    // restore derives them again.
    assert_eq!(restored.offsets, live.offsets);
    let mut seen = std::collections::BTreeSet::new();
    for i in 60..160 {
        let (a, b) = (step(&mut live, i), step(&mut restored, i));
        assert_eq!(a, b, "step {i}");
        seen.extend(a.tracks.tracks.iter().map(|t| t.global_id));
    }
    assert!(seen.len() >= 4, "the run tracks people: {seen:?}");
    let counters = |t: &SpatialTracker| SpatialStats {
        last_step_ms: 0.0,
        last_reid_ms: 0.0,
        ..t.stats()
    };
    assert_eq!(counters(&restored), counters(&live));
}

#[test]
fn a_checkpoint_of_other_cameras_or_garbage_is_refused() {
    let mut live = SpatialTracker::new("s", SpatialParams::default(), cameras());
    for i in 0..10 {
        step(&mut live, i);
    }
    let bytes = live.checkpoint().expect("checkpoint");
    let two = vec![cam("a", 0.0), cam("b", 8.0)];
    assert!(SpatialTracker::restore("s", SpatialParams::default(), two, &bytes).is_err());
    assert!(SpatialTracker::restore("t", SpatialParams::default(), cameras(), &bytes).is_err());
    assert!(
        SpatialTracker::restore("s", SpatialParams::default(), cameras(), b"\x93\x01").is_err()
    );
}
