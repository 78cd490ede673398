//! Cameras that send frames more slowly than the matching cycle (2 fps
//! against 200 ms cycles): their windows follow their frame interval.

use super::tests::{cam, msg, source_groups, track, two_cameras, T0};
use super::*;
use nvr_subjects::{CameraTracks, TrackState};

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
    let mut st = two_cameras(SpatialParams::default());
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

/// Sources of each identity on the floor (observed or coasting) in `out`,
/// as sorted `(camera, track id)` lists.
fn groups(out: &StepOutput) -> Vec<Vec<(String, u64)>> {
    source_groups(out, |s| {
        matches!(s, SpatialState::Observed | SpatialState::Coasting)
    })
}

#[test]
fn two_identities_of_one_person_on_slow_cameras_a_frame_apart_are_merged() {
    // Cameras a and b see the same floor at 2 fps, b's frames 250 ms after
    // a's: never in the same cycle. For 10 frames their views of one person
    // lie 2.5 m apart (two people as far as the tracker can tell, two
    // identities), then 0.3 m: one person, and the two identities merge.
    let mut st = SpatialTracker::new(
        "s",
        SpatialParams::default(),
        vec![cam("a", 0.0), cam("b", 0.0)],
    );
    let mut msgs = Vec::new();
    for j in 0..24u64 {
        let x = 3.0 + 0.3 * j as f64;
        let gap = if j < 10 { 2.5 } else { 0.3 };
        let ta = T0 + j * FRAME;
        msgs.push(msg("a", ta, vec![track(1, 0.0, x, 3.0, None)]));
        let xb = x + 0.15; // where the person is a quarter second later
        msgs.push(msg(
            "b",
            ta + FRAME / 2,
            vec![track(5, 0.0, xb, 3.0 + gap, None)],
        ));
    }
    let outs = run(&mut st, &msgs, T0 + 23 * FRAME);
    let at_10 = &outs[(10 * FRAME / CYCLE) as usize - 2].1;
    assert_eq!(groups(at_10).len(), 2, "two identities while apart");
    assert!(st.stats().merged >= 1, "{:?}", st.stats());
    let a = |t| ("a".to_string(), t);
    let b = |t| ("b".to_string(), t);
    let last = &outs.last().expect("cycles").1;
    assert_eq!(groups(last), vec![vec![a(1), b(5)]]);
}

#[test]
fn a_slow_camera_track_that_jumps_onto_a_neighbour_joins_the_identity_the_other_view_gives_there() {
    // Two people 1.2 m apart walk side by side under cameras a and b (same
    // floor, 2 fps, b's frames 250 ms after a's). At frame 8 camera a's
    // track 1 jumps from P onto Q (its track 2 of Q ends) and P gets a new
    // track 3 on a. Camera b still sees them apart: a's track 1 must join
    // Q's identity, though the two cameras never send a frame in the same
    // cycle.
    let mut st = SpatialTracker::new(
        "s",
        SpatialParams::default(),
        vec![cam("a", 0.0), cam("b", 0.0)],
    );
    let mut msgs = Vec::new();
    for j in 0..20u64 {
        let ta = T0 + j * FRAME;
        let x = 3.0 + 0.25 * j as f64;
        let (p, q) = ((x, 3.0), (x, 4.2));
        let on_a = if j < 8 {
            vec![track(1, 0.0, p.0, p.1, None), track(2, 0.0, q.0, q.1, None)]
        } else {
            vec![track(1, 0.0, q.0, q.1, None), track(3, 0.0, p.0, p.1, None)]
        };
        msgs.push(msg("a", ta, on_a));
        let xb = x + 0.125;
        let on_b = vec![track(5, 0.0, xb, p.1, None), track(6, 0.0, xb, q.1, None)];
        msgs.push(msg("b", ta + FRAME / 2, on_b));
    }
    let outs = run(&mut st, &msgs, T0 + 19 * FRAME);
    let a = |t| ("a".to_string(), t);
    let b = |t| ("b".to_string(), t);
    let last = &outs.last().expect("cycles").1;
    let stats = st.stats();
    assert_eq!(
        groups(last),
        vec![vec![a(1), b(6)], vec![a(3), b(5)]],
        "{stats:?}"
    );
    assert!(stats.rebound_sources >= 1, "{stats:?}");
}

#[test]
fn two_cameras_a_few_milliseconds_apart_do_not_set_a_standing_person_walking() {
    // One person stands still. Cameras a and b, both at 2 fps, send their
    // frames 20 ms apart, on either side of a cycle's end now and then;
    // b puts the person 0.25 m further along x than a does (calibration).
    // That disagreement, over 20 ms, is no walking speed.
    let mut st = two_cameras(SpatialParams::default());
    let mut msgs = Vec::new();
    for j in 0..12u64 {
        let ts = T0 + j * FRAME + 190_000_000;
        msgs.push(msg("a", ts, vec![track(1, 0.0, 10.0, 4.0, None)]));
        msgs.push(msg(
            "b",
            ts + 20_000_000,
            vec![track(2, 8.0, 10.25, 4.0, None)],
        ));
    }
    let outs = run(&mut st, &msgs, T0 + 6 * 1_000_000_000);
    let speeds: Vec<f32> = outs
        .iter()
        .filter_map(|(_, o)| o.tracks.tracks.first())
        .map(|t| t.vx.hypot(t.vy))
        .collect();
    let fastest = speeds.iter().copied().fold(0.0f32, f32::max);
    assert!(fastest < 0.5, "speeds {speeds:?}");
    assert_eq!(st.stats().total_tracks, 1);
}
