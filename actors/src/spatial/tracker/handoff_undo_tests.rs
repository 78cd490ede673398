//! Tests of undoing a handoff that was someone else's (`handoff_undo.rs`).

use super::tests::{cam, msg, track, DT, T0};
use super::*;

const P: [f32; 4] = [1.0, 0.0, 0.0, 0.0];
/// The newcomer's first frame looks like `P` (cosine 0.8): enough to take
/// over `P`'s identity across a short blind gap.
const LIKE_P: [f32; 4] = [0.8, 0.6, 0.0, 0.0];
/// Its later frames look nothing like `P` (cosine 0).
const OTHER: [f32; 4] = [0.0, 1.0, 0.0, 0.0];
/// Steps (100 ms) for which `P` is seen, and the step the newcomer appears.
const P_UNTIL: u64 = 30;
const NEW_FROM: u64 = 45;

/// `P` walks along one camera at 1 m/s and is hidden after 3 s; 1.5 s
/// later someone else appears near where `P` was heading, at the floor
/// point and with the look `newcomer(k)` gives for their `k`-th frame.
/// Returns the tracker and every step's output.
fn scene(newcomer: impl Fn(f64) -> ([f64; 2], [f32; 4])) -> (SpatialTracker, Vec<StepOutput>) {
    let mut st = SpatialTracker::new("s", SpatialParams::default(), vec![cam("a", 0.0)]);
    let mut outs = Vec::new();
    for i in 0..80u64 {
        let ts = T0 + i * DT;
        let mut tracks = Vec::new();
        if i < P_UNTIL {
            tracks.push(track(1, 0.0, 1.0 + 0.1 * i as f64, 3.0, Some(P.to_vec())));
        }
        if i >= NEW_FROM {
            let ([x, y], e) = newcomer((i - NEW_FROM) as f64);
            tracks.push(track(8, 0.0, x, y, Some(e.to_vec())));
        }
        st.ingest(&msg("a", ts, tracks)).unwrap();
        outs.push(st.step(ts + 1));
    }
    (st, outs)
}

/// The identity published with camera track `track_id` at step `i`.
fn holder(outs: &[StepOutput], i: u64, track_id: u64) -> Option<&SpatialTrack> {
    outs[i as usize]
        .tracks
        .tracks
        .iter()
        .find(|t| t.sources.iter().any(|s| s.track_id == track_id))
}

#[test]
fn a_handoff_taken_back_leaves_the_identity_where_it_was() {
    // The newcomer looks like `P` in their first frame only, appears 1.1 m
    // from where `P` was heading and walks off the other way.
    let (st, outs) = scene(|k| {
        let e = if k == 0.0 { LIKE_P } else { OTHER };
        ([6.0 - 0.15 * k, 3.5 + 0.1 * k], e)
    });
    let p_id = holder(&outs, P_UNTIL - 1, 1)
        .expect("P is tracked")
        .global_id;
    // The newcomer's first frame takes `P`'s identity over ...
    let first = holder(&outs, NEW_FROM, 8).expect("the newcomer is tracked");
    assert_eq!(
        first.global_id, p_id,
        "the look-alike first frame joins P's identity"
    );
    // ... its next frames look like someone else, so the appearance check
    // unbinds it, and it becomes a new identity.
    let last = holder(&outs, 79, 8).expect("the newcomer is tracked");
    assert_ne!(last.global_id, p_id);
    // `P`'s identity is back where and when `P` was last seen, not where
    // the newcomer was when it was taken away.
    let seen_until = T0 + (P_UNTIL - 1) * DT;
    let p = outs[79]
        .tracks
        .tracks
        .iter()
        .find(|t| t.global_id == p_id)
        .expect("P's identity is kept for re-identification");
    assert_eq!(p.state, SpatialState::Lost);
    assert_eq!(p.last_seen_ns, seen_until);
    assert!(
        (p.x_m - 3.9).abs() < 0.3 && (p.y_m - 3.0).abs() < 0.3,
        "P's identity at ({}, {})",
        p.x_m,
        p.y_m
    );
    assert_eq!(st.stats().handoffs_undone, 1, "{:?}", st.stats());
}

#[test]
fn a_handoff_that_holds_is_kept() {
    // The newcomer goes on looking like `P`: nothing takes the handoff back.
    let (st, outs) = scene(|k| ([6.0 + 0.1 * k, 3.0], LIKE_P));
    let ids: BTreeSet<u64> = outs
        .iter()
        .flat_map(|o| &o.tracks.tracks)
        .filter(|t| t.state == SpatialState::Observed)
        .map(|t| t.global_id)
        .collect();
    assert_eq!(ids.len(), 1, "one person throughout: {ids:?}");
    assert_eq!(st.stats().handoffs_undone, 0);
}
