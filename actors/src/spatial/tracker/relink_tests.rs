//! Tests of late re-identification (`relink_window_s`).

use super::tests::{cam, msg, track, DT, T0};
use super::*;
use nvr_subjects::event_kind;

const P: [f32; 4] = [1.0, 0.0, 0.0, 0.0];
const Q: [f32; 4] = [0.0, 0.0, 1.0, 0.0];

/// Two people walk along one camera; the first (`P`) is hidden for 3 s
/// and comes back as a new camera track whose first frame shows `first`
/// and every later one `again`. Returns the ids the comeback's camera
/// track was published under, in order, the tracker and its events.
fn comeback(
    params: SpatialParams,
    first: [f32; 4],
    again: [f32; 4],
) -> (Vec<u64>, SpatialTracker, Vec<Event>) {
    comeback_beside(params, Q, first, again)
}

/// [`comeback`], the second person looking like `q`.
fn comeback_beside(
    params: SpatialParams,
    q: [f32; 4],
    first: [f32; 4],
    again: [f32; 4],
) -> (Vec<u64>, SpatialTracker, Vec<Event>) {
    comeback_at(params, q, first, again, 1.0, 0.0)
}

/// [`comeback_beside`], the first person walking from floor x `start`,
/// and coming back `dx` metres from where walking on would have brought
/// them.
fn comeback_at(
    params: SpatialParams,
    q: [f32; 4],
    first: [f32; 4],
    again: [f32; 4],
    start: f64,
    dx: f64,
) -> (Vec<u64>, SpatialTracker, Vec<Event>) {
    let mut st = SpatialTracker::new("s", params, vec![cam("a", 0.0)]);
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for i in 0..100u64 {
        let ts = T0 + i * DT;
        let x = start + 0.1 * i as f64;
        let mut tracks = vec![track(2, 0.0, 11.0 - 0.05 * i as f64, 6.0, Some(q.to_vec()))];
        if i < 30 {
            tracks.push(track(1, 0.0, x, 3.0, Some(P.to_vec())));
        } else if i >= 60 {
            let e = if i == 60 { first } else { again };
            tracks.push(track(5, 0.0, x + dx, 3.0, Some(e.to_vec())));
        }
        st.ingest(&msg("a", ts, tracks)).unwrap();
        let out = st.step(ts + 1);
        for t in &out.tracks.tracks {
            let comeback = t.sources.iter().any(|s| s.track_id == 5);
            if t.state == SpatialState::Observed && comeback && ids.last() != Some(&t.global_id) {
                ids.push(t.global_id);
            }
        }
        events.extend(out.events);
    }
    (ids, st, events)
}

/// The comeback's first frame looks like someone else (cosine 0.29 to
/// `P`), so it starts a new identity.
const SPOILT: [f32; 4] = [0.29, 0.957, 0.0, 0.0];
/// Its next frames look like `P` as well as one person's views of
/// themselves do here (cosine 0.8), and more like its own young identity:
/// nothing in them says that camera track took the wrong identity.
const LIKE_P: [f32; 4] = [0.8, 0.6, 0.0, 0.0];

#[test]
fn a_person_whose_first_sight_was_spoilt_gets_their_old_id_back() {
    let (ids, st, events) = comeback(SpatialParams::default(), SPOILT, LIKE_P);
    assert_eq!(ids.len(), 2, "a new id first, then the old one: {ids:?}");
    let (young, old) = (ids[0], ids[1]);
    assert!(old < young, "the old identity takes over: {ids:?}");
    assert_eq!(st.stats().relinked, 1);
    assert!(
        events
            .iter()
            .any(|e| e.kind == event_kind::GLOBAL_ENDED && e.global_id == Some(young)),
        "the young id ends"
    );
    assert_eq!(st.stats().total_tracks, 3);
}

#[test]
fn without_late_re_identification_the_person_keeps_the_new_id() {
    let params = SpatialParams {
        relink_window_s: 0.0,
        ..SpatialParams::default()
    };
    let (ids, st, _) = comeback(params, SPOILT, LIKE_P);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(st.stats().relinked, 0);
}

#[test]
fn someone_else_appearing_where_a_person_vanished_keeps_their_own_id() {
    let other = [0.0, 0.0, 0.0, 1.0];
    let (ids, st, _) = comeback(SpatialParams::default(), other, other);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(st.stats().relinked, 0);
}

#[test]
fn a_young_identity_too_far_from_where_the_person_vanished_is_not_taken_over() {
    // `P` (1 m/s) comes back 1.5 m ahead of where walking on would have
    // brought it, farther than walking at `max_speed_mps` (0.5) could
    // bring it in 3 s, give or take `gate_m` and a turn.
    let params = SpatialParams {
        max_speed_mps: 0.5,
        gate_m: 0.5,
        ..SpatialParams::default()
    };
    let (ids, st, _) = comeback_at(params, Q, SPOILT, LIKE_P, 1.0, 1.5);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(st.stats().relinked, 0);
}

#[test]
fn a_young_identity_far_behind_where_a_walker_vanished_is_not_taken_over() {
    // `P` walks at 1 m/s, is hidden at x 7.9 and a look-alike appears 3 s
    // later at x 3.0, 4.9 m back the way `P` came: within walking reach
    // of where `P` vanished, but not near the way `P` was going.
    let (ids, st, _) = comeback_at(SpatialParams::default(), Q, SPOILT, LIKE_P, 5.0, -8.0);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(st.stats().relinked, 0);
    // Coming back near where it vanished, it is taken over.
    let (ids, st, _) = comeback_at(SpatialParams::default(), Q, SPOILT, LIKE_P, 5.0, -3.0);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(st.stats().relinked, 1);
}

#[test]
fn no_relink_where_the_camera_cannot_tell_the_lost_person_from_another() {
    // The other person looks more like `P` (cosine 0.85) than the comeback
    // ever does (0.8 at most): the appearance model cannot tell who came
    // back. The impostor level, which would refuse this too, is off.
    let params = SpatialParams {
        impostor_quantile: 0.0,
        ..SpatialParams::default()
    };
    let alike = [0.85, 0.0, 0.527, 0.0];
    let (ids, st, _) = comeback_beside(params.clone(), alike, SPOILT, LIKE_P);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(st.stats().relinked, 0);
    // With a second person who looks different, the same comeback is
    // relinked.
    let (ids, st, _) = comeback_beside(params, Q, SPOILT, LIKE_P);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(st.stats().relinked, 1);
}

/// `P` walks under camera `a` only, is hidden for 3 s and comes back
/// under both cameras: `a` sees them first, its first frame spoilt (a box
/// cut by the border: `SPOILT`) and every later one as `on_a`; `b`, which
/// never saw `P` before, joins a cycle later and sees them as `on_b`.
/// Returns the ids the comeback's camera tracks were published under, in
/// order, and the tracker.
fn comeback_in_two_views(on_a: [f32; 4], on_b: [f32; 4]) -> (Vec<u64>, SpatialTracker) {
    let cams = vec![cam("a", 0.0), cam("b", 0.0)];
    let mut st = SpatialTracker::new("s", SpatialParams::default(), cams);
    let mut ids = Vec::new();
    for i in 0..100u64 {
        let ts = T0 + i * DT;
        let x = 1.0 + 0.1 * i as f64;
        let mut on_cam_a = vec![track(2, 0.0, 11.0 - 0.05 * i as f64, 6.0, Some(Q.to_vec()))];
        let mut on_cam_b = Vec::new();
        if i < 30 {
            on_cam_a.push(track(1, 0.0, x, 3.0, Some(P.to_vec())));
        } else if i >= 60 {
            let e = if i == 60 { SPOILT } else { on_a };
            on_cam_a.push(track(5, 0.0, x, 3.0, Some(e.to_vec())));
            if i >= 61 {
                on_cam_b.push(track(6, 0.0, x + 0.05, 3.0, Some(on_b.to_vec())));
            }
        }
        st.ingest(&msg("a", ts, on_cam_a)).unwrap();
        st.ingest(&msg("b", ts, on_cam_b)).unwrap();
        let out = st.step(ts + 1);
        for t in &out.tracks.tracks {
            let comeback = t.sources.iter().any(|s| s.track_id == 5 || s.track_id == 6);
            if t.state == SpatialState::Observed && comeback && ids.last() != Some(&t.global_id) {
                ids.push(t.global_id);
            }
        }
    }
    (ids, st)
}

#[test]
fn a_person_one_camera_sees_well_gets_their_old_id_back_whatever_the_last_camera_sees() {
    // Camera `b`, the last to join the young identity, sees only part of
    // `P` (cosine 0.29); camera `a` sees them as they looked (cosine 0.8):
    // that view decides.
    let (ids, st) = comeback_in_two_views(LIKE_P, SPOILT);
    assert_eq!(ids.len(), 2, "a new id first, then the old one: {ids:?}");
    assert!(ids[1] < ids[0], "the old identity takes over: {ids:?}");
    assert_eq!(st.stats().relinked, 1);
    // Seen by neither camera as `P`, the person keeps the new id.
    let (ids, st) = comeback_in_two_views(SPOILT, SPOILT);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(st.stats().relinked, 0);
}

#[test]
fn a_person_away_longer_than_the_handoff_window_is_re_identified_while_still_held() {
    // `P` is hidden for 3 s, longer than `max_gap_seconds`: no camera
    // track joins its identity on arrival, but it is still held for
    // re-identification (`track_ttl_seconds`), and late re-identification
    // gives it back.
    let params = SpatialParams {
        max_gap_seconds: 2.0,
        ..SpatialParams::default()
    };
    let (ids, st, _) = comeback(params, SPOILT, LIKE_P);
    assert_eq!(ids.len(), 2, "a new id first, then the old one: {ids:?}");
    assert!(ids[1] < ids[0], "the old identity takes over: {ids:?}");
    assert_eq!(st.stats().relinked, 1);
    // Once forgotten (past `track_ttl_seconds`), it is not.
    let params = SpatialParams {
        max_gap_seconds: 2.0,
        track_ttl_seconds: 2.5,
        ..SpatialParams::default()
    };
    let (ids, st, _) = comeback(params, SPOILT, LIKE_P);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(st.stats().relinked, 0);
}
