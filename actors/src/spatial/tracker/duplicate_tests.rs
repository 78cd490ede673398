//! Tests of the `duplicate` state (`output.rs`): a second identity of a
//! person another identity on the floor already is.

use super::tests::{cam, msg, track, DT, T0};
use super::*;

/// `(global_id, state)` of every published identity of a cycle that is not
/// `lost`, sorted by id.
fn states(out: &StepOutput) -> Vec<(u64, SpatialState)> {
    out.tracks
        .tracks
        .iter()
        .filter(|t| t.state != SpatialState::Lost)
        .map(|t| (t.global_id, t.state))
        .collect()
}

/// A person walks along y = 3 under cameras `a` and `b`, which put them
/// `gap(cycle)` metres apart in y; `looks` are the embeddings of the two
/// views. With `same_camera`, `a` sees both points as two tracks and `b`
/// sees nothing. Returns each cycle's output.
fn run(
    gap: impl Fn(u64) -> f64,
    same_camera: bool,
    looks: [Option<Vec<f32>>; 2],
) -> Vec<StepOutput> {
    let mut st = SpatialTracker::new(
        "s",
        SpatialParams::default(),
        vec![cam("a", 0.0), cam("b", 0.0)],
    );
    let [la, lb] = looks;
    let mut out = Vec::new();
    for i in 0..30u64 {
        let ts = T0 + i * DT;
        let x = 3.0 + 0.1 * i as f64;
        let y2 = 3.0 + gap(i);
        let first = track(1, 0.0, x, 3.0, la.clone());
        if same_camera {
            let on_a = vec![first, track(2, 0.0, x, y2, lb.clone())];
            st.ingest(&msg("a", ts, on_a)).unwrap();
        } else {
            st.ingest(&msg("a", ts, vec![first])).unwrap();
            st.ingest(&msg("b", ts, vec![track(5, 0.0, x, y2, lb.clone())]))
                .unwrap();
        }
        out.push(st.step(ts + 50_000_000));
    }
    out
}

/// [`run`] with views `far` metres apart for the first 10 cycles, then
/// `near`, no embeddings; each cycle's states.
fn walk(far: f64, near: f64, same_camera: bool) -> Vec<Vec<(u64, SpatialState)>> {
    run(
        |i| if i < 10 { far } else { near },
        same_camera,
        [None, None],
    )
    .iter()
    .map(states)
    .collect()
}

#[test]
fn a_second_view_close_to_an_identity_is_a_duplicate_until_the_merge() {
    use SpatialState::{Duplicate, Observed};
    let cycles = walk(1.3, 0.4, false);
    // Apart: two people as far as the tracker can tell.
    for c in &cycles[..10] {
        assert_eq!(c, &vec![(1, Observed), (2, Observed)], "{cycles:?}");
    }
    // Together: the newer identity is a duplicate until it is merged, so
    // one person is on the floor in every cycle.
    let merged_at = cycles
        .iter()
        .position(|c| c == &vec![(1, Observed)])
        .expect("merged");
    assert!(merged_at > 10, "{cycles:?}");
    for c in &cycles[10..merged_at] {
        assert_eq!(c, &vec![(1, Observed), (2, Duplicate)], "{cycles:?}");
    }
    for c in &cycles[merged_at..] {
        assert_eq!(c, &vec![(1, Observed)], "{cycles:?}");
    }
}

#[test]
fn identities_apart_or_sharing_a_camera_are_never_duplicates() {
    // Two views that stay 1.3 m apart, and two tracks of one camera 0.4 m
    // apart (one camera tells its people apart): all observed throughout.
    for (far, near, same_camera) in [(1.3, 1.3, false), (1.3, 0.4, true)] {
        let cycles = walk(far, near, same_camera);
        for c in &cycles {
            assert!(
                c.iter().all(|(_, s)| *s == SpatialState::Observed) && c.len() == 2,
                "far {far} near {near} same camera {same_camera}: {cycles:?}"
            );
        }
    }
}

#[test]
fn a_duplicate_pair_stays_marked_until_it_is_clearly_apart() {
    use SpatialState::{Duplicate, Observed};
    // Two views that look nothing alike (so they are never merged) at
    // 1.3 m, 0.4 m, 1.0 m, 1.3 m and again 1.0 m apart, 6 cycles each. The
    // newer one becomes a duplicate at 0.4 m, stays one at 1.0 m (within
    // the hold radius of 1.2 m), is a person again at 1.3 m, and 1.0 m
    // apart is then not enough to mark it again.
    let gaps = [1.3, 0.4, 1.0, 1.3, 1.0];
    let looks = [
        Some(vec![1.0, 0.0, 0.0, 0.0]),
        Some(vec![0.0, 0.0, 1.0, 0.0]),
    ];
    let outs = run(|i| gaps[(i / 6) as usize], false, looks);
    for (i, out) in outs.iter().enumerate() {
        for t in &out.tracks.tracks {
            let want = (t.state == Duplicate).then_some(1);
            assert_eq!(t.duplicate_of, want, "cycle {i}: {t:?}");
        }
    }
    let cycles: Vec<_> = outs.iter().map(states).collect();
    // The first two cycles after each jump are not checked: the motion
    // model moves the identity there over a few cycles.
    let expect = |i: usize| match i / 6 {
        _ if i >= 6 && i % 6 < 2 => None,
        1 | 2 => Some(vec![(1, Observed), (2, Duplicate)]),
        _ => Some(vec![(1, Observed), (2, Observed)]),
    };
    for (i, c) in cycles.iter().enumerate() {
        if let Some(e) = expect(i) {
            assert_eq!(c, &e, "cycle {i}: {cycles:?}");
        }
    }
}

#[test]
fn a_merge_takes_the_view_of_the_camera_that_sees_the_person_now() {
    // Camera `a` follows one person throughout. Camera `b` sees them first
    // as track 5, loses them, and picks them up again as track 6 looking
    // different (another part of its field, other light): too unlike its
    // old view to continue the identity at once, so track 6 starts a new
    // one, which coincides with the person and is merged. From then on
    // the identity holds what `b` shows now: track 6 stays bound to it
    // instead of being unbound for looking unlike `b`'s old view, starting
    // yet another identity and being merged again, over and over.
    let mut st = SpatialTracker::new(
        "s",
        SpatialParams::default(),
        vec![cam("a", 0.0), cam("b", 0.0)],
    );
    let look_a = vec![1.0, 0.0, 0.0, 0.0];
    let old_b = vec![0.0, 1.0, 0.0, 0.0];
    let new_b = vec![0.6, 0.3, 0.74, 0.0];
    let mut bound_to = Vec::new();
    for i in 0..70u64 {
        let ts = T0 + i * DT;
        let x = 3.0 + 0.02 * i as f64;
        st.ingest(&msg(
            "a",
            ts,
            vec![track(1, 0.0, x, 3.0, Some(look_a.clone()))],
        ))
        .unwrap();
        let on_b = match i {
            0..15 => vec![track(5, 0.0, x, 3.5, Some(old_b.clone()))],
            15..20 => vec![],
            _ => vec![track(6, 0.0, x, 3.5, Some(new_b.clone()))],
        };
        st.ingest(&msg("b", ts, on_b)).unwrap();
        let out = st.step(ts + 50_000_000);
        let holder = out
            .tracks
            .tracks
            .iter()
            .find(|t| t.sources.iter().any(|s| s.camera == "b" && s.track_id == 6));
        bound_to.push(holder.map(|t| t.global_id));
    }
    // Track 6 first gets an identity of its own (the old view refuses it).
    assert!(
        bound_to[20].is_some_and(|g| g != 1),
        "track 6 at its start: {bound_to:?}"
    );
    // Merged within a few cycles, and bound to the person's identity for
    // good from then on.
    assert!(
        bound_to[30..].iter().all(|g| *g == Some(1)),
        "track 6 from cycle 30: {bound_to:?}"
    );
}

/// Cameras `a` and `b` both follow person P along y = 2 (track 1 on `a`,
/// 5 on `b`, 2 cm apart) from the first cycle. From cycle `learn`, two
/// more people walk along, X seen only by `a` (track 2, y = 5) and Y only
/// by `b` (track 6): Y starts 2 m farther off than `gap` from X, closes in
/// over 20 cycles and walks on beside X, `gap` metres apart, for 20 more.
/// Returns the states of those last 20 cycles.
fn side_by_side(learn: u64, gap: f64) -> Vec<Vec<(u64, SpatialState)>> {
    let mut st = SpatialTracker::new(
        "s",
        SpatialParams::default(),
        vec![cam("a", 0.0), cam("b", 0.0)],
    );
    let mut cycles = Vec::new();
    for i in 0..learn + 40 {
        let ts = T0 + i * DT;
        let x = 1.0 + 0.05 * i as f64;
        let (mut on_a, mut on_b) = (
            vec![track(1, 0.0, x, 2.0, None)],
            vec![track(5, 0.0, x, 2.02, None)],
        );
        if i >= learn {
            let closing = 2.0 * (1.0 - (i - learn) as f64 / 20.0).max(0.0);
            on_a.push(track(2, 0.0, x, 4.5, None));
            on_b.push(track(6, 0.0, x, 4.5 + gap + closing, None));
        }
        st.ingest(&msg("a", ts, on_a)).unwrap();
        st.ingest(&msg("b", ts, on_b)).unwrap();
        let out = st.step(ts + 50_000_000);
        if i >= learn + 20 {
            cycles.push(states(&out));
        }
    }
    cycles
}

#[test]
fn cameras_that_agree_closely_tell_two_people_side_by_side_apart() {
    use SpatialState::{Duplicate, Observed};
    // Before the cameras have learned how closely they agree, two views
    // 0.6 m apart may be one person (`merge_m` 0.8): the newer identity
    // is a duplicate of the older, then merged into it.
    let fresh = side_by_side(0, 0.6);
    assert!(
        fresh.iter().any(|c| c.contains(&(3, Duplicate))),
        "{fresh:?}"
    );
    assert_eq!(fresh.last().map(Vec::len), Some(2), "{fresh:?}");
    // Once they have seen that they put one person within centimetres,
    // two views 0.6 m apart are two people walking together: both are on
    // the floor, never a duplicate, never merged.
    let learned = side_by_side(100, 0.6);
    for c in &learned {
        assert_eq!(
            c,
            &vec![(1, Observed), (2, Observed), (3, Observed)],
            "{learned:?}"
        );
    }
    // One person's two views 0.1 m apart are still one person.
    let one = side_by_side(100, 0.1);
    assert!(one.iter().any(|c| c.contains(&(3, Duplicate))), "{one:?}");
    assert_eq!(one.last().map(Vec::len), Some(2), "{one:?}");
}
