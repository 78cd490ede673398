//! Cameras that send frames more slowly than the matching cycle (2 fps
//! against 200 ms cycles): their windows follow their frame interval.

use super::tests::{cam, msg, track, T0};
use super::*;

/// Matching cycle of the default parameters, ns.
const CYCLE: u64 = 200_000_000;
/// Frame interval of a camera at 2 fps, ns.
const FRAME: u64 = 500_000_000;

/// Runs 200 ms cycles over `msgs` (sorted by time): each cycle ingests the
/// messages up to its time, then steps. Returns the outputs with their
/// cycle times.
fn run(st: &mut SpatialTracker, msgs: &[CameraTracks], until: u64) -> Vec<(u64, StepOutput)> {
    let mut out = Vec::new();
    let mut next = 0;
    let mut t = T0 + CYCLE;
    while t <= until {
        while next < msgs.len() && msgs[next].ts_ns <= t {
            st.ingest(&msgs[next]).expect("ingest");
            next += 1;
        }
        out.push((t, st.step(t)));
        t += CYCLE;
    }
    out
}

#[test]
fn a_missed_frame_of_a_slow_camera_is_coasted_through() {
    let mut st = SpatialTracker::new("s", SpatialParams::default(), vec![cam("a", 0.0)]);
    // One person walking at 0.6 m/s, seen at 2 fps; the detector misses
    // them in the frame at 3.0 s (the camera tracker holds the track lost),
    // so they go unseen from 2.5 s to 3.5 s: one missed frame.
    let msgs: Vec<CameraTracks> = (0..12u64)
        .map(|j| {
            let ts = T0 + j * FRAME;
            let mut t = track(1, 0.0, 2.0 + 0.3 * j as f64, 4.0, None);
            if j == 6 {
                t.state = TrackState::Lost;
            }
            msg("a", ts, vec![t])
        })
        .collect();
    let outs = run(&mut st, &msgs, T0 + 11 * FRAME);
    for (t, o) in &outs {
        let tr = o
            .tracks
            .tracks
            .iter()
            .find(|x| x.global_id == 1)
            .unwrap_or_else(|| {
                panic!(
                    "at {} ms the identity is not published",
                    (t - T0) / 1_000_000
                )
            });
        assert!(
            matches!(tr.state, SpatialState::Observed | SpatialState::Coasting),
            "at {} ms: {:?}",
            (t - T0) / 1_000_000,
            tr.state
        );
    }
    assert_eq!(st.stats().total_tracks, 1);
}

#[test]
fn two_slow_cameras_a_frame_apart_see_one_person_under_one_identity() {
    // Cameras a (x 0..12.8) and b (x 8..20.8), both at 2 fps, b's frames
    // 250 ms after a's: more than a cycle apart. Across cameras the person
    // looks different (colour cast, viewpoint): geometry must join them.
    let mut st = SpatialTracker::new(
        "s",
        SpatialParams::default(),
        vec![cam("a", 0.0), cam("b", 8.0)],
    );
    let mut msgs = Vec::new();
    for j in 0..16u64 {
        let x = 6.0 + 0.4 * j as f64; // 0.8 m/s, into the overlap at 8 m
        let ta = T0 + j * FRAME;
        let tb = ta + FRAME / 2;
        msgs.push(msg(
            "a",
            ta,
            vec![track(1, 0.0, x, 3.0, Some(vec![1.0, 0.0, 0.0, 0.0]))],
        ));
        let xb = x + 0.2;
        let b = if xb > 8.5 {
            vec![track(5, 8.0, xb, 3.0, Some(vec![0.1, 1.0, 0.0, 0.0]))]
        } else {
            vec![]
        };
        msgs.push(msg("b", tb, b));
    }
    let outs = run(&mut st, &msgs, T0 + 15 * FRAME);
    let on_floor = |o: &StepOutput| -> Vec<u64> {
        o.tracks
            .tracks
            .iter()
            .filter(|t| matches!(t.state, SpatialState::Observed | SpatialState::Coasting))
            .map(|t| t.global_id)
            .collect()
    };
    for (t, o) in &outs {
        assert_eq!(on_floor(o), vec![1], "at {} ms", (t - T0) / 1_000_000);
    }
    assert_eq!(st.stats().total_tracks, 1, "one identity in all");
    let last = &outs.last().expect("cycles").1;
    let cams: Vec<&str> = last.tracks.tracks[0]
        .sources
        .iter()
        .map(|s| s.camera.as_str())
        .collect();
    assert_eq!(cams, ["a", "b"]);
    // The two cameras never send a frame in the same cycle, yet they learn
    // how closely they agree (each view paired with the other camera's
    // latest one, a frame apart).
    let agreement = st.stats().camera_agreement;
    assert!(agreement.iter().any(|p| p.samples >= 10), "{agreement:?}");
}
