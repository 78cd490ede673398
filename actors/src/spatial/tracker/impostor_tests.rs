//! The impostor level a handoff across a blind gap must beat: measured on
//! the comparison the handoff makes (one camera's own views of two people,
//! or their overall appearances).

use super::tests::{cam, msg, track, DT, T0};
use super::*;

/// Unit vector `w + k * e_i + m * e_j` in 8 dimensions (`w` = `e_7`).
fn emb(i: usize, k: f32, j: usize, m: f32) -> Option<Vec<f32>> {
    let mut e = vec![0.0f32; 8];
    e[7] = 1.0;
    e[i] += k;
    e[j] += m;
    let n = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    Some(e.into_iter().map(|x| x / n).collect())
}

/// Where the four people stand, 3 m apart.
const SPOTS: [f64; 4] = [2.0, 5.0, 8.0, 11.0];

/// Four people stand still in front of cameras `a` and `b` for 6 s.
/// Camera `a` tells them apart a little (cosine 0.8 between two of them),
/// camera `b` not at all (the same descriptor for everyone), so their
/// overall appearances, which mix both cameras, are closer still (about
/// 0.95). Person 0 then leaves both views for 3 s (longer than
/// `appearance_free_gap_ms`) and someone comes back on a new camera track
/// of camera `a`, 0.3 m from where person 0 was, looking like `back`.
/// Returns person 0's identity, the identity the newcomer gets, and how
/// many identities were created.
fn comes_back(back: Option<Vec<f32>>) -> (u64, Option<u64>, u64) {
    let mut st = SpatialTracker::new(
        "s",
        SpatialParams::default(),
        vec![cam("a", 0.0), cam("b", 0.0)],
    );
    let mut person0 = None;
    let mut after = None;
    for i in 0..100u64 {
        let ts = T0 + 2 * i * DT;
        let present = |p: usize| p != 0 || i < 30;
        let a: Vec<_> = (0..4)
            .filter(|p| present(*p))
            .map(|p| track(p as u64 + 1, 0.0, SPOTS[p], 2.0, emb(p, 0.5, p, 0.0)))
            .chain((i >= 45).then(|| track(21, 0.0, SPOTS[0] + 0.3, 2.0, back.clone())))
            .collect();
        let b: Vec<_> = (0..4)
            .filter(|p| present(*p))
            .map(|p| track(p as u64 + 11, 0.0, SPOTS[p], 2.0, emb(0, 0.0, 0, 0.0)))
            .collect();
        st.ingest(&msg("a", ts, a)).unwrap();
        st.ingest(&msg("b", ts, b)).unwrap();
        let out = st.step(ts + 1);
        let bound = |cam: &str, tid: u64| {
            out.tracks
                .tracks
                .iter()
                .find(|t| {
                    t.sources
                        .iter()
                        .any(|s| s.camera == cam && s.track_id == tid)
                })
                .map(|t| t.global_id)
        };
        if i == 29 {
            person0 = bound("a", 1);
        }
        if i == 60 {
            after = bound("a", 21);
        }
    }
    let person0 = person0.expect("person 0 has an identity");
    (person0, after, st.stats().total_tracks)
}

#[test]
fn a_person_back_on_a_camera_is_judged_against_how_that_camera_sees_others() {
    // Cosine 0.88 with camera a's view of person 0: above what camera a
    // gives two different people (0.8), below what their overall
    // appearances give (0.95).
    let (person0, after, total) = comes_back(emb(0, 0.5, 5, 0.6));
    assert_eq!(after, Some(person0));
    assert_eq!(total, 4);
}

#[test]
fn someone_else_back_on_that_camera_gets_a_new_identity() {
    // Cosine 0.77 with camera a's view of person 0: below what camera a
    // gives two different people.
    let (person0, after, total) = comes_back(emb(5, 0.6, 5, 0.0));
    assert!(after.is_some_and(|g| g != person0), "{after:?} {person0}");
    assert_eq!(total, 5);
}
