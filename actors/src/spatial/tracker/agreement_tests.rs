//! Tests of the learned join gate (`agreement.rs`) through the tracker.

use super::tests::{cam, msg, track, DT, T0};
use super::*;

/// Cameras `a` and `b` follow one person along y = 3 for 100 cycles, `b`
/// placing them `offset` metres from `a`; then `b`'s track ends and a new
/// `b` track starts `new_offset` metres from `a`'s view. Returns whether
/// the new track joined the person's identity in its first cycle, and the
/// learned gate. The learned offsets are off: with them the steady
/// `offset` is taken out of `b`'s positions (see below).
fn new_track_joins(offset: f64, new_offset: f64) -> (bool, f64) {
    let params = SpatialParams {
        learn_offsets: false,
        ..SpatialParams::default()
    };
    let mut st = SpatialTracker::new("s", params, vec![cam("a", 0.0), cam("b", 0.0)]);
    let mut out = None;
    for i in 0..103u64 {
        let ts = T0 + i * DT;
        let x = 2.0 + 0.05 * i as f64;
        st.ingest(&msg("a", ts, vec![track(1, 0.0, x, 3.0, None)]))
            .unwrap();
        let on_b = match i {
            0..100 => vec![track(5, 0.0, x, 3.0 + offset, None)],
            100..102 => vec![],
            _ => vec![track(6, 0.0, x, 3.0 + new_offset, None)],
        };
        st.ingest(&msg("b", ts, on_b)).unwrap();
        out = Some(st.step(ts + 50_000_000));
    }
    let out = out.expect("ran");
    let joined =
        out.tracks.tracks.iter().any(|t| {
            t.global_id == 1 && t.sources.iter().any(|s| s.camera == "b" && s.track_id == 6)
        });
    let gate = st.stats().camera_agreement[0].gate_m;
    (joined, gate)
}

#[test]
fn the_join_gate_follows_how_closely_two_cameras_agree() {
    // `overlap_gate_m` is 1 m. Cameras that agree within 5 cm learn a
    // gate of half that: a new track 0.8 m away is someone else.
    let (joined, gate) = new_track_joins(0.05, 0.8);
    assert_eq!(gate, 0.5);
    assert!(!joined, "a track 0.8 m off joined at gate {gate}");
    // Cameras 0.85 m apart on every person learn a wider gate: a new
    // track 1.2 m away (the usual spread) joins the person's identity.
    let (joined, gate) = new_track_joins(0.85, 1.2);
    assert!(gate > 1.2, "gate {gate}");
    assert!(joined, "a track 1.2 m off did not join at gate {gate}");
    // Before anything is learned, the configured gate holds.
    let fresh = SpatialTracker::new("s", SpatialParams::default(), vec![cam("a", 0.0)]);
    assert!(fresh.stats().camera_agreement.is_empty());
}

/// Cameras `a` and `b` follow one person pacing around (3, 3) for 100
/// cycles, `b` placing them 0.6 m further along y; then only `b` sees
/// them. Returns the identity's published y in the last cycle both saw it
/// and in the cycles after.
fn y_when_a_stops(learn_offsets: bool) -> (f64, Vec<f64>) {
    let params = SpatialParams {
        learn_offsets,
        ..SpatialParams::default()
    };
    let mut st = SpatialTracker::new("s", params, vec![cam("a", 0.0), cam("b", 0.0)]);
    let mut before = f64::NAN;
    let mut after = Vec::new();
    for i in 0..110u64 {
        let ts = T0 + i * DT;
        let x = 3.0 + 0.2 * (i as f64 * 0.1).sin();
        let on_a = if i < 100 {
            vec![track(1, 0.0, x, 3.0, None)]
        } else {
            vec![]
        };
        st.ingest(&msg("a", ts, on_a)).unwrap();
        st.ingest(&msg("b", ts, vec![track(5, 0.0, x, 3.6, None)]))
            .unwrap();
        let out = st.step(ts + 50_000_000);
        let y = out
            .tracks
            .tracks
            .iter()
            .find(|t| t.global_id == 1)
            .map_or(f64::NAN, |t| f64::from(t.y_m));
        match i {
            99 => before = y,
            100.. => after.push(y),
            _ => {}
        }
    }
    (before, after)
}

#[test]
fn a_steady_disagreement_between_two_cameras_is_taken_out() {
    // Learned: the identity stays where both views put it together when
    // one camera stops seeing the person.
    let (before, after) = y_when_a_stops(true);
    assert!(
        after.iter().all(|y| (y - before).abs() < 0.1),
        "the identity moved from {before} when camera a stopped: {after:?}"
    );
    // Not learned: it jumps to where camera b alone puts them.
    let (before, after) = y_when_a_stops(false);
    assert!(
        after.last().is_some_and(|y| y - before > 0.2),
        "without the learned offsets, from {before}: {after:?}"
    );
}
