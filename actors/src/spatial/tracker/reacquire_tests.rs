//! Tests of a camera re-acquiring a person it lost for a moment
//! (`reacquire_similarity`, `reacquire_m`).

use super::tests::{cam, msg, track, DT, T0};
use super::*;

const P: [f32; 4] = [1.0, 0.0, 0.0, 0.0];
/// Cosine 0.5 to `P`: below `min_handoff_similarity`, above
/// `reacquire_similarity`.
const HALF_P: [f32; 4] = [0.5, 0.866, 0.0, 0.0];
/// Cosine 0.3 to `P`: below both.
const UNLIKE_P: [f32; 4] = [0.3, 0.954, 0.0, 0.0];

/// A person walks along one camera at 1 m/s under camera track 1, is lost
/// by the camera for 0.3 s, and comes back `dx` metres from where walking
/// on brings them as camera track 5, whose first frame looks like `first`
/// and every later one like the person. The identities camera track 5
/// was published under, in order, and camera track 1's one.
fn lost_for_a_moment(first: [f32; 4], dx: f64) -> (Vec<u64>, u64) {
    let mut st = SpatialTracker::new("s", SpatialParams::default(), vec![cam("a", 0.0)]);
    let (mut ids, mut before) = (Vec::new(), None);
    for i in 0..60u64 {
        let ts = T0 + i * DT;
        let x = 1.0 + 0.1 * i as f64;
        let tracks = match i {
            0..30 => vec![track(1, 0.0, x, 3.0, Some(P.to_vec()))],
            30..33 => Vec::new(),
            _ => {
                let e = if i == 33 { first } else { P };
                vec![track(5, 0.0, x + dx, 3.0, Some(e.to_vec()))]
            }
        };
        st.ingest(&msg("a", ts, tracks)).unwrap();
        let out = st.step(ts + 1);
        // Every identity that carries a camera track counts, whatever its
        // state (a second identity next to a coasting one is published a
        // `duplicate` of it).
        for t in &out.tracks.tracks {
            if t.sources.iter().any(|s| s.track_id == 1) {
                before = Some(t.global_id);
            }
            if t.sources.iter().any(|s| s.track_id == 5) && ids.last() != Some(&t.global_id) {
                ids.push(t.global_id);
            }
        }
    }
    (ids, before.expect("the person was tracked before"))
}

#[test]
fn a_person_the_camera_lost_for_a_moment_keeps_their_id_though_their_first_box_is_poor() {
    let (ids, before) = lost_for_a_moment(HALF_P, 0.0);
    assert_eq!(ids, vec![before], "one identity throughout");
}

#[test]
fn a_first_box_unlike_the_person_still_starts_a_new_identity() {
    let (ids, before) = lost_for_a_moment(UNLIKE_P, 0.0);
    assert_ne!(ids.first(), Some(&before), "a new identity first: {ids:?}");
}

#[test]
fn a_poor_first_box_away_from_where_the_person_would_be_starts_a_new_identity() {
    let (ids, before) = lost_for_a_moment(HALF_P, 1.3);
    assert_ne!(ids.first(), Some(&before), "a new identity first: {ids:?}");
}
