//! Tests of the `static` state: a fixed false detection is published
//! `static`, a person standing still is not.

use super::tests::{msg, track, two_cameras, DT, PX, T0};
use super::*;
use nvr_subjects::{SpatialState, Track, TrackState};

/// A tall box (300 px) whose bottom centre is floor point (x, y) of camera
/// `ox`, scored as a detector scores what it is unsure of (a fixed false
/// detection).
fn tall(id: u64, ox: f64, x: f64, y: f64) -> Track {
    let mut t = track(id, ox, x, y, None);
    t.bbox[1] = (((y * PX) - 300.0) / 720.0) as f32;
    t.score = 0.65;
    t
}

#[test]
fn a_fixed_false_detection_is_static_even_when_its_floor_position_jitters_and_when_it_comes_back() {
    // Camera a alone sees a fixed box at floor (10, 5), where camera b also
    // looks: a person there would be seen by both. Its box bottom jumps by
    // 1.2 m on the floor (the far-field jitter of a box of 300 px, well under
    // half its height), more than `static_m`.
    let mut st = two_cameras(SpatialParams::default());
    let state_of = |out: &StepOutput| {
        out.tracks
            .tracks
            .iter()
            .find(|t| t.last_seen_ns + 3 * DT > out.tracks.ts_ns)
            .map(|t| (t.global_id, t.state))
    };
    let mut first = None;
    let mut last = None;
    for i in 0..150u64 {
        let ts = T0 + i * DT;
        let y = if i % 2 == 0 { 5.0 } else { 6.2 };
        st.ingest(&msg("a", ts, vec![tall(1, 0.0, 10.0, y)]))
            .unwrap();
        st.ingest(&msg("b", ts, vec![])).unwrap();
        let out = st.step(ts);
        if i == 20 {
            first = state_of(&out);
        }
        last = state_of(&out);
    }
    assert_eq!(first.map(|s| s.1), Some(SpatialState::Observed), "young");
    let (gid, state) = last.expect("the box's identity");
    assert_eq!(state, SpatialState::Static, "after static_after_s");
    // It flickers off for 3 s (its camera track ends) and comes back as a
    // new camera track: static at once, at the place it was static before.
    let mut back = None;
    for i in 150..200u64 {
        let ts = T0 + i * DT;
        let tracks = if i < 180 {
            vec![]
        } else {
            vec![tall(2, 0.0, 10.0, 5.0)]
        };
        st.ingest(&msg("a", ts, tracks)).unwrap();
        st.ingest(&msg("b", ts, vec![])).unwrap();
        let out = st.step(ts);
        if i == 185 {
            back = state_of(&out);
        }
    }
    let (gid2, state2) = back.expect("the box again");
    assert_eq!(state2, SpatialState::Static, "identity {gid2} (was {gid})");
}

#[test]
fn a_fixed_false_detection_stays_static_through_its_detector_misses() {
    // Camera a alone sees a fixed box where camera b also looks; once it is
    // static, its detector misses it for 0.8 s (the camera track is lost,
    // not ended): a person missed that long would coast, the box does not.
    let mut st = two_cameras(SpatialParams::default());
    let mut states = Vec::new();
    for i in 0..150u64 {
        let ts = T0 + i * DT;
        let mut t = tall(1, 0.0, 10.0, 5.0);
        let missed = (120..128).contains(&i);
        if missed {
            t.state = TrackState::Lost;
        }
        st.ingest(&msg("a", ts, vec![t])).unwrap();
        st.ingest(&msg("b", ts, vec![])).unwrap();
        let out = st.step(ts);
        assert_eq!(out.tracks.tracks.len(), 1, "cycle {i}: one identity");
        if i >= 115 {
            states.push((i, out.tracks.tracks[0].state));
        }
    }
    // Static, then (once a person missed there would no longer coast)
    // lost, never published as a person on the floor.
    assert!(
        states
            .iter()
            .all(|(_, s)| matches!(s, SpatialState::Static | SpatialState::Lost)),
        "{states:?}"
    );
    assert!(states
        .iter()
        .any(|(i, s)| *i > 120 && *s == SpatialState::Static));
    assert_eq!(states.last().map(|s| s.1), Some(SpatialState::Static));
}

/// The states published, cycle by cycle for 15 s, for box `box_at(i)` at
/// floor (10, 5), which camera a alone sees although camera b looks there.
fn standing_box_states(
    params: SpatialParams,
    box_at: &dyn Fn(u64) -> Track,
) -> Vec<Vec<SpatialState>> {
    let mut st = two_cameras(params);
    (0..150u64)
        .map(|i| {
            let ts = T0 + i * DT;
            st.ingest(&msg("a", ts, vec![box_at(i)])).unwrap();
            st.ingest(&msg("b", ts, vec![])).unwrap();
            st.step(ts).tracks.tracks.iter().map(|t| t.state).collect()
        })
        .collect()
}

#[test]
fn a_person_standing_still_whom_the_detector_is_sure_of_is_never_static() {
    // As a fixed false detection (one camera, where another also looks, not
    // moving for 15 s), but detected with a person's confidence.
    let sure = |i: u64| {
        let mut t = tall(1, 0.0, 10.0, 5.0);
        t.score = if i.is_multiple_of(2) { 0.88 } else { 0.76 };
        t
    };
    let states = standing_box_states(SpatialParams::default(), &sure);
    for (i, s) in states.iter().enumerate() {
        assert_eq!(s, &vec![SpatialState::Observed], "cycle {i}");
    }
    // The same with the threshold above any score: static after 10 s.
    let params = SpatialParams {
        static_max_score: 1.01,
        ..SpatialParams::default()
    };
    let states = standing_box_states(params, &sure);
    assert_eq!(states.last(), Some(&vec![SpatialState::Static]));
}

#[test]
fn a_score_that_is_not_a_number_or_out_of_range_does_not_spoil_an_identitys_scores() {
    let sure = |i: u64| {
        let mut t = tall(1, 0.0, 10.0, 5.0);
        t.score = match i {
            40 => f32::NAN,
            41 => 7.0,
            _ => 0.9,
        };
        t
    };
    let states = standing_box_states(SpatialParams::default(), &sure);
    assert_eq!(states.last(), Some(&vec![SpatialState::Observed]));
}

#[test]
fn a_person_standing_still_detected_in_nearly_every_frame_is_never_static_a_flickering_box_is() {
    // Both scored low; the camera tracker finds a detection for one in 19 of
    // 20 frames, for the other in 7 of 10 (its `hits` grow only then).
    let run = |detected: fn(u64) -> bool| {
        let states = standing_box_states(SpatialParams::default(), &|i| {
            let mut t = tall(1, 0.0, 10.0, 5.0);
            t.hits = (0..=i).filter(|k| detected(*k)).count() as u32;
            t
        });
        states.last().cloned()
    };
    assert_eq!(run(|i| i % 20 != 7), Some(vec![SpatialState::Observed]));
    assert_eq!(run(|i| i % 10 < 7), Some(vec![SpatialState::Static]));
}

#[test]
fn a_person_walking_where_only_one_camera_sees_them_is_never_static() {
    let mut st = two_cameras(SpatialParams::default());
    for i in 0..150u64 {
        let ts = T0 + i * DT;
        // Slowly, 0.3 m/s, inside b's view too but missed by b.
        let x = 8.5 + 0.03 * i as f64;
        st.ingest(&msg("a", ts, vec![tall(1, 0.0, x, 5.0)]))
            .unwrap();
        st.ingest(&msg("b", ts, vec![])).unwrap();
        let out = st.step(ts);
        assert!(
            out.tracks
                .tracks
                .iter()
                .all(|t| t.state != SpatialState::Static),
            "cycle {i}: {:?}",
            out.tracks.tracks
        );
    }
}

#[test]
fn a_person_who_walked_in_another_cameras_view_and_stopped_is_never_static() {
    // Cameras a and b see a person appear at (9, 5); a loses them after
    // 0.3 s. b alone follows them 3 m to (12, 5), where they stand for
    // 12 s, scored low. a looks there too, so a fixed false detection seen
    // by b alone would be `static`; this identity moved. Its box on a's
    // image never moved (a saw it only where it appeared), so that image
    // says nothing about where b saw it go.
    let mut st = two_cameras(SpatialParams::default());
    for i in 0..160u64 {
        let ts = T0 + i * DT;
        let x = (9.0 + 0.1 * i as f64).min(12.0);
        let a = if i < 3 {
            vec![tall(1, 0.0, x, 5.0)]
        } else {
            vec![]
        };
        st.ingest(&msg("a", ts, a)).unwrap();
        st.ingest(&msg("b", ts, vec![tall(1, 8.0, x, 5.0)]))
            .unwrap();
        let out = st.step(ts);
        assert_eq!(
            out.tracks
                .tracks
                .iter()
                .map(|t| t.state)
                .collect::<Vec<_>>(),
            vec![SpatialState::Observed],
            "cycle {i}"
        );
    }
}
