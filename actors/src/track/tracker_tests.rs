//! Unit and property tests of the per-camera tracker.

#[path = "tracker_crossing_tests.rs"]
mod crossing;

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const FRAME: u64 = 200_000_000; // 5 fps
const T0: u64 = 1_700_000_000_000_000_000;

fn det(label: &str, score: f32, cx: f32, cy: f32, w: f32, h: f32) -> DetectedObject {
    DetectedObject {
        class_id: if label == "person" { 0 } else { 2 },
        label: label.to_string(),
        score,
        bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
        embedding: None,
    }
}

/// A confident person detection at one place, with appearance `e`.
fn looking(e: Vec<f32>) -> DetectedObject {
    let mut d = det("person", 0.9, 0.3, 0.5, 0.05, 0.15);
    d.embedding = Some(e);
    d
}

/// Five frames of one person there who looks like `[1, 0, 0]`; the id of
/// the track that follows them.
fn five_frames_of_one_look(tr: &mut Tracker) -> u64 {
    let mut id = 0;
    for f in 0..5u64 {
        let o = tr.update(T0 + f * FRAME, &[looking(vec![1.0, 0.0, 0.0])]);
        id = o.tracks.first().map_or(0, |t| t.track_id);
    }
    id
}

/// A tracker past its start-up: a new track is confirmed on its second
/// detection, not its first.
fn warm_tracker() -> Tracker {
    Tracker::new(TrackerParams {
        confirm_first_update: false,
        ..TrackerParams::default()
    })
}

fn confirmed_ids(o: &TrackerOutput) -> Vec<u64> {
    o.tracks
        .iter()
        .filter(|t| t.state == TrackState::Confirmed)
        .map(|t| t.track_id)
        .collect()
}

#[test]
fn a_restored_checkpoint_goes_on_exactly_as_the_original() {
    let frame = |f: u64| -> Vec<DetectedObject> {
        (0..5u64)
            .filter(|k| !(f + k).is_multiple_of(9))
            .map(|k| {
                let cx = (0.1 + 0.15 * k as f32 + 0.004 * f as f32) % 1.0;
                let score = if (f + 2 * k).is_multiple_of(4) {
                    0.5
                } else {
                    0.85
                };
                det("person", score, cx, 0.3 + 0.1 * k as f32, 0.05, 0.12)
            })
            .collect()
    };
    let mut live = Tracker::new(TrackerParams::default());
    for f in 0..50u64 {
        live.update(T0 + f * FRAME, &frame(f));
    }
    let bytes = live.checkpoint().expect("checkpoint");
    let mut restored = Tracker::restore(TrackerParams::default(), &bytes).expect("restore");
    for f in 50..150u64 {
        let (a, b) = (
            live.update(T0 + f * FRAME, &frame(f)),
            restored.update(T0 + f * FRAME, &frame(f)),
        );
        assert_eq!(a, b, "frame {f}");
    }
    assert!(live.next_id() > 5, "tracks were made");
    assert!(Tracker::restore(TrackerParams::default(), b"\x01\x02").is_err());
}

#[test]
fn linear_object_keeps_id_through_one_second_miss() {
    let mut tr = Tracker::new(TrackerParams::default());
    let mut ids = BTreeSet::new();
    for f in 0..40u64 {
        // normalised units, walking ~0.2 box widths per frame
        let cx = 0.1 + 0.008 * f as f32;
        let dets = if (15..20).contains(&f) {
            vec![]
        } else {
            vec![det("person", 0.9, cx, 0.5, 0.04, 0.1)]
        };
        let o = tr.update(T0 + f * FRAME, &dets);
        ids.extend(confirmed_ids(&o));
        if (15..20).contains(&f) {
            assert_eq!(o.tracks.len(), 1);
            assert_eq!(o.tracks[0].state, TrackState::Lost, "frame {f}");
        }
    }
    assert_eq!(ids.len(), 1, "ids {ids:?}");
}

#[test]
fn crossing_objects_keep_their_ids() {
    let mut tr = Tracker::new(TrackerParams::default());
    let mut first: Option<(u64, u64)> = None;
    for f in 0..30u64 {
        let a = 0.2 + 0.02 * f as f32; // moving right
        let b = 0.8 - 0.02 * f as f32; // moving left, same row
        let mut dets = vec![
            det("person", 0.9, a, 0.5, 0.05, 0.15),
            det("person", 0.85, b, 0.52, 0.05, 0.15),
        ];
        if f % 2 == 1 {
            dets.reverse(); // input order must not matter
        }
        let o = tr.update(T0 + f * FRAME, &dets);
        let conf: Vec<&Track> = o
            .tracks
            .iter()
            .filter(|t| t.state != TrackState::Tentative)
            .collect();
        if f >= 1 {
            assert_eq!(conf.len(), 2, "frame {f}: {:?}", o.tracks);
        }
        if f >= 1 && (a - b).abs() > 0.06 {
            // The track nearest each true object must keep its identity.
            let near = |x: f32| {
                conf.iter()
                    .min_by(|p, q| {
                        ((p.bbox[0] + p.bbox[2]) / 2.0 - x)
                            .abs()
                            .total_cmp(&((q.bbox[0] + q.bbox[2]) / 2.0 - x).abs())
                    })
                    .map(|t| t.track_id)
                    .unwrap_or(0)
            };
            let (ia, ib) = (near(a), near(b));
            assert_ne!(ia, ib, "frame {f}");
            match first {
                None => first = Some((ia, ib)),
                Some(p) => assert_eq!(p, (ia, ib), "frame {f}: identities swapped"),
            }
        }
    }
}

/// A person who vanishes and someone else who appears in the same place
/// a moment later: with the appearance gate the newcomer gets a new
/// track (without it, the old track takes them over on box overlap);
/// the same person coming back, or changing appearance moderately (an
/// occluder entering the box), keeps the track.
#[test]
fn a_track_does_not_take_over_someone_who_looks_different() {
    let run = |params: TrackerParams, back: Vec<f32>, gap: u64| -> (u64, u64) {
        let mut tr = Tracker::new(params);
        let before = five_frames_of_one_look(&mut tr);
        for f in 5..5 + gap {
            tr.update(T0 + f * FRAME, &[]);
        }
        let f = 5 + gap;
        tr.update(T0 + f * FRAME, &[looking(back.clone())]);
        let o = tr.update(T0 + (f + 1) * FRAME, &[looking(back)]);
        let after = o
            .tracks
            .iter()
            .filter(|t| t.state == TrackState::Confirmed)
            .map(|t| t.track_id)
            .next()
            .unwrap_or(0);
        (before, after)
    };
    let other = vec![0.1, 1.0, 0.0];
    for gap in [0, 2] {
        let (a, b) = run(TrackerParams::default(), other.clone(), gap);
        assert!(
            a != 0 && b != 0 && a != b,
            "gap {gap}: {a} took over as {b}"
        );
        let off = TrackerParams {
            appearance_gate: 0.0,
            ..TrackerParams::default()
        };
        let (a, b) = run(off, other.clone(), gap);
        assert!(a != 0 && a == b, "gate off, gap {gap}: {a} then {b}");
        // cosine 0.6: the same person partly behind a sign.
        let (a, b) = run(TrackerParams::default(), vec![0.6, 0.8, 0.0], gap);
        assert!(a != 0 && a == b, "occluded, gap {gap}: {a} then {b}");
    }
}

/// A passing neighbour whose colours leak into one frame of a track's box
/// (the descriptor halfway between the two people) does not let the
/// neighbour take the track in the next frame: the track is matched on
/// its smoothed appearance (`appearance_momentum`), to which the neighbour
/// is still unlike, while it publishes the latest detection's. Matched on
/// the latest detection's alone, the neighbour takes the track over.
#[test]
fn one_mixed_frame_does_not_let_a_neighbour_take_the_track() {
    let run = |params: TrackerParams| -> (u64, u64, Option<Vec<f32>>) {
        let mut tr = Tracker::new(params);
        let person = five_frames_of_one_look(&mut tr);
        let o = tr.update(T0 + 5 * FRAME, &[looking(vec![1.0, 1.0, 0.0])]);
        let mixed = o
            .tracks
            .iter()
            .find(|t| t.track_id == person)
            .and_then(|t| t.embedding.clone());
        tr.update(T0 + 6 * FRAME, &[looking(vec![0.0, 1.0, 0.0])]);
        let o = tr.update(T0 + 7 * FRAME, &[looking(vec![0.0, 1.0, 0.0])]);
        let neighbour = confirmed_ids(&o).first().copied().unwrap_or(0);
        (person, neighbour, mixed)
    };
    let (person, neighbour, mixed) = run(TrackerParams::default());
    assert!(
        person != 0 && neighbour != 0 && person != neighbour,
        "the neighbour took track {person} ({neighbour})"
    );
    let h = std::f32::consts::FRAC_1_SQRT_2;
    let e = mixed.expect("published embedding");
    assert!(
        (e[0] - h).abs() < 1e-5 && (e[1] - h).abs() < 1e-5,
        "publishes the latest detection's: {e:?}"
    );
    let latest = TrackerParams {
        appearance_momentum: 0.0,
        ..TrackerParams::default()
    };
    let (person, neighbour, _) = run(latest);
    assert!(
        person != 0 && person == neighbour,
        "matched on the latest frame: {person} then {neighbour}"
    );
}

/// A track that missed a frame and then finds a detection only half over
/// its predicted box takes it only when it looks alike (above
/// `weak_overlap_gate`): otherwise it is more likely someone else who
/// appeared near where its person vanished, and starts a track of their
/// own. A track matched in every frame keeps a half-overlapping detection
/// down to `appearance_gate` (its person, changed by an occluder), and so
/// does one that missed a frame when the detection overlaps it well.
#[test]
fn a_track_that_lost_its_person_takes_a_half_overlapping_newcomer_only_when_alike() {
    // Returns the track id before and the confirmed id after.
    let run = |params: TrackerParams, missed: bool, shift: f32, back: Vec<f32>| -> (u64, u64) {
        let mut tr = Tracker::new(params);
        let person = |cx: f32, e: Vec<f32>| {
            let mut d = det("person", 0.9, cx, 0.5, 0.05, 0.15);
            d.embedding = Some(e);
            d
        };
        let mut before = 0;
        let mut f = 0u64;
        for _ in 0..5 {
            let o = tr.update(T0 + f * FRAME, &[person(0.3, vec![1.0, 0.0, 0.0])]);
            before = o.tracks.first().map_or(0, |t| t.track_id);
            f += 1;
        }
        if missed {
            tr.update(T0 + f * FRAME, &[]);
            f += 1;
        }
        let mut after = 0;
        for _ in 0..2 {
            let o = tr.update(T0 + f * FRAME, &[person(0.3 + shift, back.clone())]);
            after = confirmed_ids(&o).first().copied().unwrap_or(0);
            f += 1;
        }
        (before, after)
    };
    // IoU of two 0.05-wide boxes 0.02 apart: 0.03 / 0.07, about 0.43.
    let half = 0.02;
    // Cosine 0.7: above `appearance_gate`, below `weak_overlap_gate`.
    let unlike = vec![0.7, 0.714_142_8, 0.0];
    let p = TrackerParams::default;
    let (a, b) = run(p(), true, half, unlike.clone());
    assert!(
        a != 0 && b != 0 && a != b,
        "missed, half over, cosine 0.7: {a} took over as {b}"
    );
    let (a, b) = run(p(), true, half, vec![0.9, 0.436, 0.0]);
    assert!(
        a != 0 && a == b,
        "missed, half over, cosine 0.9: {a} then {b}"
    );
    let (a, b) = run(p(), false, half, unlike.clone());
    assert!(
        a != 0 && a == b,
        "matched every frame, half over, cosine 0.7: {a} then {b}"
    );
    let (a, b) = run(p(), true, 0.0, unlike.clone());
    assert!(
        a != 0 && a == b,
        "missed, well over, cosine 0.7: {a} then {b}"
    );
    let off = TrackerParams {
        weak_overlap_gate: 0.0,
        ..p()
    };
    let (a, b) = run(off, true, half, unlike);
    assert!(a != 0 && a == b, "stage off: {a} then {b}");
}

/// A person hidden for a second who reappears beside where they vanished
/// (no overlap with the last box) gets their track back on appearance;
/// someone who looks different there, or with the stage off, does not.
#[test]
fn reappearing_person_is_reidentified_on_appearance_only_when_alike() {
    let run = |params: TrackerParams, back: Vec<f32>| -> (u64, u64) {
        let mut tr = Tracker::new(params);
        let person = |cx: f32, e: Vec<f32>| {
            let mut d = det("person", 0.9, cx, 0.5, 0.05, 0.15);
            d.embedding = Some(e);
            d
        };
        let other = person(0.8, vec![0.0, 1.0, 0.0]);
        let mut before = 0;
        for f in 0..5u64 {
            let o = tr.update(
                T0 + f * FRAME,
                &[person(0.3, vec![1.0, 0.0, 0.0]), other.clone()],
            );
            before = o
                .tracks
                .iter()
                .find(|t| t.bbox[0] < 0.5)
                .map_or(0, |t| t.track_id);
        }
        for f in 5..10u64 {
            tr.update(T0 + f * FRAME, std::slice::from_ref(&other));
        }
        let o = tr.update(T0 + 10 * FRAME, &[person(0.36, back), other]);
        let after = o
            .tracks
            .iter()
            .find(|t| {
                t.state != TrackState::Lost && ((t.bbox[0] + t.bbox[2]) / 2.0 - 0.36).abs() < 0.02
            })
            .map_or(0, |t| t.track_id);
        (before, after)
    };
    let (a, b) = run(TrackerParams::default(), vec![0.98, 0.1, 0.0]);
    assert!(a != 0 && a == b, "alike: {a} then {b}");
    let (a, b) = run(TrackerParams::default(), vec![0.0, 0.1, 1.0]);
    assert!(a != 0 && b != 0 && a != b, "different: {a} then {b}");
    let off = TrackerParams {
        reid_similarity: 1.1,
        ..Default::default()
    };
    let (a, b) = run(off, vec![0.98, 0.1, 0.0]);
    assert!(a != 0 && b != 0 && a != b, "stage off: {a} then {b}");
}

#[test]
fn lifecycle_started_ended_and_removal_after_max_lost() {
    let p = TrackerParams {
        max_lost_ms: 1000,
        confirm_first_update: false,
        ..TrackerParams::default()
    };
    let mut tr = Tracker::new(p);
    let d = [det("person", 0.9, 0.5, 0.5, 0.05, 0.1)];
    let o = tr.update(T0, &d);
    assert_eq!(o.tracks[0].state, TrackState::Tentative);
    assert!(o.started.is_empty());
    let o = tr.update(T0 + FRAME, &d);
    assert_eq!(o.started, vec![1]);
    assert_eq!(o.tracks[0].state, TrackState::Confirmed);
    assert_eq!(o.tracks[0].hits, 2);
    assert_eq!(o.tracks[0].age_ms, 200);
    let last_seen = T0 + FRAME;
    let mut ended_at = None;
    for k in 1..20u64 {
        let ts = last_seen + k * FRAME;
        let o = tr.update(ts, &[]);
        if !o.ended.is_empty() {
            assert_eq!(o.ended, vec![1]);
            ended_at = Some(ts - last_seen);
            assert_eq!(tr.active_count(), 0);
            break;
        }
        assert_eq!(o.tracks[0].state, TrackState::Lost);
    }
    assert_eq!(
        ended_at,
        Some(1_200_000_000),
        "removed at the first update lost > 1000 ms"
    );
}

#[test]
fn cold_start_confirms_first_update_only() {
    let mut tr = Tracker::new(TrackerParams::default());
    let o = tr.update(T0, &[det("person", 0.9, 0.2, 0.5, 0.05, 0.1)]);
    assert_eq!(o.started, vec![1]);
    assert_eq!(o.tracks[0].state, TrackState::Confirmed);
    let o = tr.update(
        T0 + FRAME,
        &[
            det("person", 0.9, 0.2, 0.5, 0.05, 0.1),
            det("person", 0.9, 0.8, 0.5, 0.05, 0.1),
        ],
    );
    assert!(o.started.is_empty());
    assert_eq!(
        o.tracks[1].state,
        TrackState::Tentative,
        "later tracks need min_hits"
    );
}

#[test]
fn unmatched_tentative_dies_silently() {
    let mut tr = warm_tracker();
    tr.update(T0, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
    tr.update(T0 + FRAME, &[]);
    let o = tr.update(T0 + 2 * FRAME, &[]);
    assert!(o.tracks.is_empty() && o.ended.is_empty());
    let o = tr.update(T0 + 3 * FRAME, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
    assert_eq!(o.tracks[0].track_id, 2, "ids are never reused");
}

#[test]
fn low_score_detections_extend_but_never_start_tracks() {
    let mut tr = Tracker::new(TrackerParams::default());
    let o = tr.update(T0, &[det("person", 0.3, 0.5, 0.5, 0.05, 0.1)]);
    assert!(o.tracks.is_empty());
    tr.update(T0 + FRAME, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
    tr.update(T0 + 2 * FRAME, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
    let o = tr.update(T0 + 3 * FRAME, &[det("person", 0.3, 0.501, 0.5, 0.05, 0.1)]);
    assert_eq!(o.tracks.len(), 1);
    assert_eq!(o.tracks[0].state, TrackState::Confirmed);
    assert_eq!(o.tracks[0].score, 0.3);
}

#[test]
fn repeated_low_scores_start_a_track_a_flicker_does_not() {
    let mut tr = warm_tracker();
    // One 0.55 false detection: tentative, never confirmed, gone after
    // its allowed misses.
    tr.update(T0, &[det("person", 0.55, 0.2, 0.5, 0.05, 0.1)]);
    let o = tr.update(T0 + FRAME, &[]);
    assert!(o.tracks.iter().all(|t| t.state == TrackState::Tentative));
    let o = tr.update(T0 + 2 * FRAME, &[]);
    assert!(o.tracks.is_empty(), "{:?}", o.tracks);
    // A person the detector keeps scoring 0.55 is confirmed on the third match.
    let mut ids = Vec::new();
    for i in 0..4u64 {
        let x = 0.6 + 0.005 * i as f32;
        let o = tr.update(
            T0 + (10 + i) * FRAME,
            &[det("person", 0.55, x, 0.5, 0.05, 0.1)],
        );
        ids.push(confirmed_ids(&o));
    }
    assert!(ids[0].is_empty() && ids[1].is_empty(), "{ids:?}");
    assert_eq!(ids[2].len(), 1, "{ids:?}");
    assert_eq!(ids[2], ids[3]);
    // Below birth_threshold nothing starts.
    let mut tr = Tracker::new(TrackerParams::default());
    let o = tr.update(T0, &[det("person", 0.4, 0.5, 0.5, 0.05, 0.1)]);
    assert!(o.tracks.is_empty());
}

#[test]
fn a_tentative_track_survives_one_missed_frame() {
    let mut tr = warm_tracker();
    tr.update(T0, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
    tr.update(T0 + FRAME, &[]);
    let o = tr.update(T0 + 2 * FRAME, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
    assert_eq!(confirmed_ids(&o).len(), 1, "{:?}", o.tracks);
    assert_eq!(o.tracks[0].track_id, 1);
}

#[test]
fn a_walker_at_two_fps_is_confirmed_though_its_boxes_do_not_overlap() {
    // 2 fps: the box moves 1.2 of its widths per frame, so the tentative
    // track (no velocity yet) never overlaps the next detection.
    let half_second = 500_000_000;
    let mut tr = warm_tracker();
    let walker = |f: u64, e: Vec<f32>| {
        let mut d = det("person", 0.9, 0.2 + 0.06 * f as f32, 0.5, 0.05, 0.15);
        d.embedding = Some(e);
        d
    };
    let mut ids = Vec::new();
    for f in 0..4u64 {
        let o = tr.update(T0 + f * half_second, &[walker(f, vec![1.0, 0.0, 0.0])]);
        ids.push(confirmed_ids(&o));
    }
    assert!(ids[0].is_empty(), "{ids:?}");
    assert_eq!(ids[1], vec![1], "confirmed on its second frame: {ids:?}");
    assert_eq!(ids[3], vec![1], "{ids:?}");
    // The confirmed ids after a first frame at frame 0 with one look and a
    // second one `dt` later at frame `f` with look `e`.
    let second = |dt: u64, f: u64, e: Vec<f32>| {
        let mut tr = warm_tracker();
        tr.update(T0, &[walker(0, vec![1.0, 0.0, 0.0])]);
        let o = tr.update(T0 + dt, &[walker(f, e)]);
        confirmed_ids(&o)
    };
    // Someone who looks different there is not that track.
    assert!(second(half_second, 1, vec![0.0, 1.0, 0.0]).is_empty());
    // Nor is anyone farther than a walk from where it was.
    assert!(second(half_second, 4, vec![1.0, 0.0, 0.0]).is_empty());
    // At the nominal 5 fps the overlap stage alone decides.
    assert!(second(FRAME, 1, vec![1.0, 0.0, 0.0]).is_empty());
}

#[test]
fn published_boxes_stay_inside_the_frame() {
    let mut tr = Tracker::new(TrackerParams::default());
    // Moving fast towards the right border, then unseen: the prediction
    // leaves the frame, the published box does not.
    for i in 0..4u64 {
        let x = 0.80 + 0.05 * i as f32;
        tr.update(T0 + i * FRAME, &[det("person", 0.9, x, 0.5, 0.05, 0.1)]);
    }
    for i in 4..12u64 {
        let o = tr.update(T0 + i * FRAME, &[]);
        for t in &o.tracks {
            let b = clip_to_frame(t.bbox);
            assert!(crate::guard::clean_box(b, 0.0) == Some(b), "{b:?}");
        }
    }
    // A box wholly outside becomes a sliver at the border it left through.
    let b = clip_to_frame([1.05, 0.4, 1.1, 0.5]);
    assert!(crate::guard::clean_box(b, 0.0) == Some(b), "{b:?}");
    assert!(b[2] == 1.0 && b[0] < 1.0, "{b:?}");
}

#[test]
fn labels_never_mix() {
    let mut tr = warm_tracker();
    tr.update(T0, &[det("person", 0.9, 0.5, 0.5, 0.05, 0.1)]);
    let o = tr.update(T0 + FRAME, &[det("car", 0.9, 0.5, 0.5, 0.05, 0.1)]);
    // The person's tentative track is not continued by the car.
    let car: Vec<_> = o.tracks.iter().filter(|t| t.label == "car").collect();
    assert_eq!(car.len(), 1);
    assert_eq!(car[0].track_id, 2);
    assert!(o
        .tracks
        .iter()
        .all(|t| t.track_id != 1 || t.label == "person"));
}

#[test]
fn embedding_is_smoothed_and_normalised() {
    let mut tr = Tracker::new(TrackerParams {
        embedding_momentum: 0.9,
        ..TrackerParams::default()
    });
    let mut d = det("person", 0.9, 0.5, 0.5, 0.05, 0.1);
    d.embedding = Some(vec![3.0, 4.0]);
    let o = tr.update(T0, std::slice::from_ref(&d));
    assert_eq!(o.tracks[0].embedding, Some(vec![0.6, 0.8]));
    d.embedding = Some(vec![1.0, 0.0]);
    let o = tr.update(T0 + FRAME, std::slice::from_ref(&d));
    let e = o.tracks[0].embedding.clone().expect("embedding");
    let n = (e[0] * e[0] + e[1] * e[1]).sqrt();
    assert!((n - 1.0).abs() < 1e-5);
    assert!(
        e[0] > 0.6 && e[0] < 0.75,
        "smoothed towards the new one: {e:?}"
    );
}

#[test]
fn default_embedding_is_the_latest_detections() {
    let mut tr = Tracker::new(TrackerParams::default());
    let mut d = det("person", 0.9, 0.5, 0.5, 0.05, 0.1);
    d.embedding = Some(vec![3.0, 4.0]);
    tr.update(T0, std::slice::from_ref(&d));
    d.embedding = Some(vec![0.0, 2.0]);
    let o = tr.update(T0 + FRAME, std::slice::from_ref(&d));
    assert_eq!(o.tracks[0].embedding, Some(vec![0.0, 1.0]));
}

#[test]
fn re_update_after_gap_takes_velocity_from_observations() {
    // Right-moving for 10 frames, unseen for 5, reappears having turned
    // downwards: the re-update replays interpolated observations so the
    // new velocity follows the observed displacement, not the stale drift.
    let mut tr = Tracker::new(TrackerParams::default());
    let (w, h) = (0.05, 0.15);
    for f in 0..10u64 {
        tr.update(
            T0 + f * FRAME,
            &[det("person", 0.9, 0.2 + 0.01 * f as f32, 0.3, w, h)],
        );
    }
    let (x_last, y_last) = (0.2 + 0.01 * 9.0, 0.3);
    for f in 10..15u64 {
        let o = tr.update(T0 + f * FRAME, &[]);
        assert_eq!(o.tracks[0].state, TrackState::Lost);
    }
    // frame 15: 6 frames after the last observation, moved down 0.005 per
    // frame (close enough to the last observation for recovery by IoU)
    let o = tr.update(
        T0 + 15 * FRAME,
        &[det("person", 0.9, x_last, y_last + 0.03, w, h)],
    );
    assert_eq!(o.tracks.len(), 1);
    assert_eq!(o.tracks[0].track_id, 1);
    let v = tr.tracks[0].kf.velocity();
    assert!(
        v[1] > 0.01 && v[1] > v[0].abs() && v[0] > 0.0,
        "velocity should point down after the re-update, without the backward swing a \
         plain update gives when correcting the stale drift: {v:?}"
    );
}

#[test]
fn skipped_frames_use_elapsed_time() {
    // An object seen at 5 fps, then with 3 frames dropped entirely (no
    // updates at all): prediction must follow elapsed time and keep the id.
    let mut tr = Tracker::new(TrackerParams::default());
    let mut ids = BTreeSet::new();
    for f in (0..10u64).chain(13..20) {
        let cx = 0.1 + 0.01 * f as f32;
        let o = tr.update(T0 + f * FRAME, &[det("person", 0.9, cx, 0.5, 0.03, 0.1)]);
        ids.extend(confirmed_ids(&o));
    }
    assert_eq!(ids.len(), 1);
}

fn stream() -> impl Strategy<Value = Vec<(u64, Vec<DetectedObject>)>> {
    let obj = (
        0u8..2,
        0.0f32..1.0,
        0.0f32..0.9,
        0.0f32..0.9,
        0.02f32..0.3,
        0.02f32..0.3,
    );
    let frame = (1u64..4, proptest::collection::vec(obj, 0..8));
    proptest::collection::vec(frame, 1..40).prop_map(|frames| {
        let mut ts = T0;
        frames
            .into_iter()
            .map(|(gap, objs)| {
                ts += gap * FRAME;
                let dets = objs
                    .into_iter()
                    .map(|(l, s, x, y, w, h)| DetectedObject {
                        class_id: l as u32,
                        label: if l == 0 {
                            "person".into()
                        } else {
                            "car".into()
                        },
                        score: s,
                        bbox: [x, y, x + w, y + h],
                        embedding: None,
                    })
                    .collect();
                (ts, dets)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn ids_are_never_reused(seq in stream()) {
        let mut tr = Tracker::new(TrackerParams { max_lost_ms: 600, ..TrackerParams::default() });
        let mut gone: BTreeSet<u64> = BTreeSet::new();
        let mut prev: BTreeSet<u64> = BTreeSet::new();
        let mut max_seen = 0u64;
        let mut started_all = BTreeSet::new();
        let mut ended_all = BTreeSet::new();
        for (ts, dets) in &seq {
            let o = tr.update(*ts, dets);
            prop_assert!(o.tracks.windows(2).all(|w| w[0].track_id < w[1].track_id), "sorted by id");
            let now: BTreeSet<u64> = o.tracks.iter().map(|t| t.track_id).collect();
            for id in &now {
                prop_assert!(!gone.contains(id), "id {} came back", id);
                if !prev.contains(id) {
                    prop_assert!(*id > max_seen, "new id {} not above {}", id, max_seen);
                }
            }
            max_seen = max_seen.max(now.iter().copied().max().unwrap_or(0));
            gone.extend(prev.difference(&now).copied());
            for id in &o.started { prop_assert!(started_all.insert(*id)); }
            for id in &o.ended {
                prop_assert!(started_all.contains(id), "ended {} never started", id);
                prop_assert!(ended_all.insert(*id));
                prop_assert!(!now.contains(id));
            }
            prop_assert_eq!(tr.active_count(), o.tracks.len());
            prev = now;
        }
    }

    #[test]
    fn deterministic(seq in stream()) {
        let run = || {
            let mut tr = Tracker::new(TrackerParams::default());
            seq.iter().map(|(ts, d)| tr.update(*ts, d)).collect::<Vec<_>>()
        };
        let (a, b) = (run(), run());
        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}
