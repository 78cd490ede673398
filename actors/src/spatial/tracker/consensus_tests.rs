//! Tests of the cross-view consensus (`consensus.rs`).

use super::tests::{cam, msg, source_groups, track, DT, T0};
use super::*;

/// A tracker with default settings over cameras `a` and `b`, which see
/// the same floor through the same calibration.
fn two_cameras_one_floor() -> SpatialTracker {
    SpatialTracker::new(
        "s",
        SpatialParams::default(),
        vec![cam("a", 0.0), cam("b", 0.0)],
    )
}

/// Sources of each published identity observed at the last cycle, as
/// `(camera, track id)` lists.
fn groups(out: &StepOutput) -> Vec<Vec<(String, u64)>> {
    source_groups(out, |s| s == SpatialState::Observed)
}

/// Two people 1.2 m apart (closer than `unbind_m`, farther than
/// `overlap_gate_m`) walk side by side under two cameras that see the same
/// floor. After 10 cycles camera `a`'s track 1 jumps from P onto Q (its
/// track 2 of Q ends) and P gets a new track 3 on camera `a`. Returns the
/// identities' camera tracks after `cycles` cycles and the counters.
fn jump_onto_neighbour(pair_m: f64, cycles: u64) -> (Vec<Vec<(String, u64)>>, SpatialStats) {
    let params = SpatialParams {
        pair_m,
        ..SpatialParams::default()
    };
    let mut st = SpatialTracker::new("s", params, vec![cam("a", 0.0), cam("b", 0.0)]);
    let mut last = None;
    for i in 0..cycles {
        let ts = T0 + i * DT;
        let x = 3.0 + 0.1 * i as f64;
        let (p, q) = ((x, 3.0), (x, 4.2));
        let on_a = if i < 10 {
            vec![track(1, 0.0, p.0, p.1, None), track(2, 0.0, q.0, q.1, None)]
        } else {
            vec![track(1, 0.0, q.0, q.1, None), track(3, 0.0, p.0, p.1, None)]
        };
        st.ingest(&msg("a", ts, on_a)).unwrap();
        let on_b = vec![track(5, 0.0, p.0, p.1, None), track(6, 0.0, q.0, q.1, None)];
        st.ingest(&msg("b", ts, on_b)).unwrap();
        last = Some(st.step(ts + 50_000_000));
    }
    (groups(&last.unwrap()), st.stats())
}

#[test]
fn a_camera_track_that_jumps_onto_a_neighbour_joins_the_identity_the_other_view_gives_there() {
    let (groups, stats) = jump_onto_neighbour(SpatialParams::default().pair_m, 30);
    let a = |t| ("a".to_string(), t);
    let b = |t| ("b".to_string(), t);
    // P: camera a's new track 3 with camera b's 5; Q: camera a's 1 with b's 6.
    assert_eq!(
        groups,
        vec![vec![a(1), b(6)], vec![a(3), b(5)]],
        "{stats:?}"
    );
    assert!(stats.rebound_sources >= 1, "{stats:?}");
    // P's new track 3 had made its own identity, merged into P's.
    assert!(stats.merged >= 1, "{stats:?}");
}

#[test]
fn the_jumped_track_moves_in_the_cycle_of_the_jump_when_the_other_camera_sees_its_identity_elsewhere(
) {
    // Camera b sees P's identity (its track 5) where P is in the very cycle
    // camera a's track 1 lands on Q, next to b's track 6: no need to wait
    // `merge_cycles` (3) cycles with the identity published on two people.
    let (groups, stats) = jump_onto_neighbour(SpatialParams::default().pair_m, 11);
    let with_a1 = groups
        .iter()
        .find(|g| g.contains(&("a".to_string(), 1)))
        .unwrap();
    assert_eq!(
        with_a1,
        &vec![("a".to_string(), 1), ("b".to_string(), 6)],
        "{groups:?} {stats:?}"
    );
    assert_eq!(stats.rebound_sources, 1, "{stats:?}");
}

#[test]
fn without_the_consensus_the_jumped_track_keeps_the_wrong_identity() {
    // The same scene with the rule off: the baseline the test above beats.
    let (groups, stats) = jump_onto_neighbour(0.0, 30);
    let wrong = vec![("a".to_string(), 1), ("b".to_string(), 5)];
    assert!(groups.contains(&wrong), "{groups:?} {stats:?}");
    assert_eq!(stats.rebound_sources, 0);
}

#[test]
fn two_cameras_agreeing_on_one_person_change_nothing() {
    let mut st = two_cameras_one_floor();
    let mut first = None;
    for i in 0..30u64 {
        let ts = T0 + i * DT;
        let x = 3.0 + 0.1 * i as f64;
        st.ingest(&msg("a", ts, vec![track(1, 0.0, x, 3.0, None)]))
            .unwrap();
        st.ingest(&msg("b", ts, vec![track(5, 0.0, x + 0.05, 3.0, None)]))
            .unwrap();
        let out = st.step(ts + 50_000_000);
        let g = groups(&out);
        assert_eq!(g.len(), 1, "cycle {i}: {g:?}");
        let id = out.tracks.tracks[0].global_id;
        assert_eq!(*first.get_or_insert(id), id);
    }
    let s = st.stats();
    assert_eq!(
        (s.rebound_sources, s.merged, s.total_tracks),
        (0, 0, 1),
        "{s:?}"
    );
}

/// Each observed identity's camera tracks, as `groups` gives them.
type Groups = Vec<Vec<(String, u64)>>;

/// Two people cross 0.6 m apart, P walking +x on y = 3.0, Q walking -x on
/// y = 3.6, under two cameras that see the same floor. When they pass, at
/// cycle 15, camera `a`'s tracker swaps its tracks 1 (P) and 2 (Q); camera
/// `b` keeps 5 on P and 6 on Q. Returns, per cycle from the swap on, the
/// identities' camera tracks and P's identity before and at that cycle.
fn swap_in_one_camera(cycles: u64) -> (Vec<Groups>, Vec<(u64, u64)>) {
    let mut st = two_cameras_one_floor();
    let mut after = Vec::new();
    let mut p_ids = Vec::new();
    let gid_of = |out: &StepOutput, cam: &str, id: u64| {
        out.tracks
            .tracks
            .iter()
            .find(|t| {
                t.state == SpatialState::Observed
                    && t.sources
                        .iter()
                        .any(|s| s.camera == cam && s.track_id == id)
            })
            .map(|t| t.global_id)
    };
    let mut p_before = None;
    for i in 0..cycles {
        let ts = T0 + i * DT;
        let p = (3.0 + 0.1 * i as f64, 3.0);
        let q = (6.0 - 0.1 * i as f64, 3.6);
        let (on_p, on_q) = if i < 15 { (1, 2) } else { (2, 1) };
        st.ingest(&msg(
            "a",
            ts,
            vec![
                track(on_p, 0.0, p.0, p.1, None),
                track(on_q, 0.0, q.0, q.1, None),
            ],
        ))
        .unwrap();
        st.ingest(&msg(
            "b",
            ts,
            vec![track(5, 0.0, p.0, p.1, None), track(6, 0.0, q.0, q.1, None)],
        ))
        .unwrap();
        let out = st.step(ts + 50_000_000);
        if i == 14 {
            p_before = gid_of(&out, "b", 5);
        }
        if i >= 15 {
            after.push(groups(&out));
            if let (Some(before), Some(now)) = (p_before, gid_of(&out, "b", 5)) {
                p_ids.push((before, now));
            }
        }
    }
    (after, p_ids)
}

#[test]
fn two_tracks_one_camera_swapped_between_two_people_are_swapped_back_in_the_same_cycle() {
    let (after, p_ids) = swap_in_one_camera(25);
    let a = |t| ("a".to_string(), t);
    let b = |t| ("b".to_string(), t);
    // From the very cycle of the swap, each identity is one person: P is
    // camera a's 2 with camera b's 5, Q camera a's 1 with b's 6. No cycle
    // publishes an identity on both.
    for (i, g) in after.iter().enumerate() {
        assert_eq!(
            g,
            &vec![vec![a(1), b(6)], vec![a(2), b(5)]],
            "cycle {}",
            15 + i
        );
    }
    // And P keeps the identity P had: the swap follows motion, not the
    // camera track.
    assert_eq!(p_ids.len(), after.len());
    for (before, now) in p_ids {
        assert_eq!(before, now);
    }
}

/// Person R (camera a's track 40, camera b's 35) and person S (camera a's
/// track 25 only) walk side by side 0.3 m apart. At cycle 10 camera b's
/// track 35 jumps onto S and lands 0.06 m from camera a's view of S, 0.24 m
/// from its view of R: four times nearer, not yet twice plus half of
/// `pair_m`. Returns the identities' camera tracks in the jump cycle.
fn jump_beside_a_neighbour() -> Groups {
    let mut st = two_cameras_one_floor();
    let mut last = Vec::new();
    for i in 0..11u64 {
        let ts = T0 + i * DT;
        let x = 3.0 + 0.1 * i as f64;
        let (r, s) = ((x, 3.0), (x, 3.3));
        let b35 = if i < 10 { r } else { (x, 3.24) };
        st.ingest(&msg(
            "a",
            ts,
            vec![
                track(25, 0.0, s.0, s.1, None),
                track(40, 0.0, r.0, r.1, None),
            ],
        ))
        .unwrap();
        st.ingest(&msg("b", ts, vec![track(35, 0.0, b35.0, b35.1, None)]))
            .unwrap();
        last = groups(&st.step(ts + 50_000_000));
    }
    last
}

#[test]
fn a_camera_track_that_jumps_next_to_another_view_of_a_close_neighbour_moves_at_once() {
    let a = |t| ("a".to_string(), t);
    let b = |t| ("b".to_string(), t);
    assert_eq!(
        jump_beside_a_neighbour(),
        vec![vec![a(25), b(35)], vec![a(40)]]
    );
}
