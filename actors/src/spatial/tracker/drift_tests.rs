//! Tests of which camera track leaves an identity when two of its camera
//! tracks part (`lifecycle.rs`, `blamed_sources`).

use super::tests::{msg, published, track, two_cameras, DT, T0};
use super::*;
use nvr_subjects::TrackState;

/// An embedding: `a` parts of look 0, the rest of look 1.
fn look(a: f32) -> Option<Vec<f32>> {
    let mut e = vec![0.0f32; 8];
    e[0] = a;
    e[1] = (1.0 - a * a).max(0.0).sqrt();
    Some(e)
}

/// One person at x = 9.5 seen by cameras `a` and `b` for 20 cycles (both
/// views look 0). Then camera `a` misses them for 5 cycles while camera
/// `b`'s track slides 0.4 m a cycle onto someone else who looks
/// `b_look` of look 0, dragging the identity along; then `a` sees the
/// person again where they stood. Returns the cameras of the identity's
/// camera tracks after that cycle.
fn drift(b_look: f32) -> Vec<String> {
    let mut st = two_cameras(SpatialParams::default());
    let x = 9.5;
    let mut gid = None;
    for i in 0..20u64 {
        let ts = T0 + i * DT;
        st.ingest(&msg("a", ts, vec![track(7, 0.0, x, 4.0, look(1.0))]))
            .unwrap();
        st.ingest(&msg("b", ts, vec![track(3, 8.0, x, 4.0, look(1.0))]))
            .unwrap();
        let out = st.step(ts + 50_000_000);
        gid = out.tracks.tracks.first().map(|t| t.global_id);
    }
    let gid = gid.unwrap();
    let mut missed = track(7, 0.0, x, 4.0, look(1.0));
    missed.state = TrackState::Lost;
    let mut out = None;
    for j in 1..=6u64 {
        let ts = T0 + (19 + j) * DT;
        let a = if j < 6 {
            missed.clone()
        } else {
            track(7, 0.0, x, 4.0, look(1.0))
        };
        st.ingest(&msg("a", ts, vec![a])).unwrap();
        let bx = x + 0.4 * j as f64;
        st.ingest(&msg("b", ts, vec![track(3, 8.0, bx, 4.0, look(b_look))]))
            .unwrap();
        out = Some(st.step(ts + 50_000_000));
    }
    let out = out.unwrap();
    published(&out, gid)
        .sources
        .iter()
        .map(|s| s.camera.clone())
        .collect()
}

#[test]
fn a_camera_track_that_slid_onto_someone_else_leaves_the_identity_not_the_one_that_stayed() {
    // Camera b's track now shows someone who looks 0.6 like the person:
    // not unlike enough to be unbound for its looks alone, clearly less
    // like them than camera a's track, which looks exactly like them.
    assert_eq!(drift(0.6), ["a"]);
}

#[test]
fn where_both_camera_tracks_look_alike_the_motion_decides() {
    // Nothing tells the two apart by their looks: the identity's motion
    // followed camera b, so camera a's track is the one that left.
    assert_eq!(drift(1.0), ["b"]);
}
