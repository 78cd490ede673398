//! The per-camera tracker on real footage where two people cross: the
//! swap repaired, and the appearance gates on a weak embedding.

use super::*;

/// Person detections of one view of the real-footage check
/// (`bench/real_footage/crossing_fixture.py`): frames 280-330 of the right
/// view, where a walker passes in front of a man who stands and then
/// walks off the other way.
fn vtest_crossing() -> Vec<(u64, Vec<DetectedObject>)> {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("testdata/vtest_right_280_330.json")).expect("fixture");
    let mut out = Vec::new();
    for f in doc["frames"].as_array().expect("frames") {
        let objects = f["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .map(|o| {
                let v = |k: &str| -> Vec<f32> {
                    o[k].as_array()
                        .expect("array")
                        .iter()
                        .map(|x| x.as_f64().expect("number") as f32)
                        .collect()
                };
                let b = v("bbox");
                DetectedObject {
                    class_id: 0,
                    label: "person".into(),
                    score: o["score"].as_f64().expect("score") as f32,
                    bbox: [b[0], b[1], b[2], b[3]],
                    embedding: Some(v("embedding")),
                }
            })
            .collect();
        out.push((T0 + f["ts_ns"].as_u64().expect("ts"), objects));
    }
    out
}

/// Where the tracks of the stander and of the walker who passes in front
/// of him (in frame 305: the stander's box bottom-centre near (0.76,
/// 0.71), the walker's near (0.56, 0.70)) are 25 frames later: the box
/// centre x of the track that had the stander, then of the one that had
/// the walker.
fn after_the_crossing(p: TrackerParams) -> (f32, f32, u64) {
    let mut tr = Tracker::new(p);
    let (mut stander, mut walker, mut swaps) = (None, None, 0);
    let mut last = Vec::new();
    for (i, (ts, dets)) in vtest_crossing().iter().enumerate() {
        let o = tr.update(*ts, dets);
        swaps += o.swapped.len() as u64;
        let near = |x: f32, y: f32| {
            o.tracks
                .iter()
                .filter(|t| t.state == TrackState::Confirmed)
                .min_by(|a, b| {
                    let d = |t: &Track| ((t.bbox[0] + t.bbox[2]) / 2.0 - x).hypot(t.bbox[3] - y);
                    d(a).total_cmp(&d(b))
                })
                .map(|t| t.track_id)
        };
        if 280 + i == 305 {
            stander = near(0.76, 0.71);
            walker = near(0.56, 0.70);
        }
        last = o.tracks;
    }
    let cx = |id: Option<u64>| {
        last.iter()
            .find(|t| Some(t.track_id) == id)
            .map_or(f32::NAN, |t| (t.bbox[0] + t.bbox[2]) / 2.0)
    };
    assert_ne!(stander, walker);
    (cx(stander), cx(walker), swaps)
}

/// Real footage: a walker passes in front of a man who then walks off the
/// other way. The detector sees one box for both for two frames; the
/// walker's track takes the man and the man's track picks the walker up
/// again. When the two boxes have parted, their motion before they met
/// says they swapped, and the ids go back: each follows its own person.
#[test]
fn tracks_that_swapped_people_while_crossing_exchange_ids() {
    // The man walks left (to x 0.39 by frame 330), the walker on to the
    // right (x 0.72).
    let (stander, walker, swaps) = after_the_crossing(TrackerParams::default());
    assert!(
        stander < 0.5 && walker > 0.65,
        "stander's id at x {stander}, walker's at x {walker}"
    );
    assert_eq!(swaps, 1);
    // Without the check, the tracker keeps them swapped: the fixture
    // still holds the case.
    let off = TrackerParams {
        crossing_iou: 2.0,
        ..Default::default()
    };
    let (stander, walker, swaps) = after_the_crossing(off);
    assert!(
        stander > 0.65 && walker < 0.5,
        "stander's id at x {stander}, walker's at x {walker}"
    );
    assert_eq!(swaps, 0);
}

/// A weak embedding (another model's, or a client's own): each detection
/// of a person is that person's vector plus noise, and one person's frames
/// score only about 0.55 against the track. The colour descriptor's gates
/// refuse most of a person's own frames, and no track lasts; after
/// `appearance_adapt_samples` own-person matches the gates follow what
/// such matches score, and each person keeps one track.
#[test]
fn appearance_gates_follow_a_weak_embedding() {
    const DIM: usize = 256;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        // xorshift, then a sum of uniforms for a rough normal
        let mut s = 0.0f32;
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s += (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        s * 0.125
    };
    let base = |k: usize| -> Vec<f32> {
        (0..DIM)
            .map(|i| if i % 2 == k { 0.0884 } else { 0.0 })
            .collect()
    };
    let run =
        |p: TrackerParams, noise: &mut dyn FnMut() -> f32| -> (usize, Option<AppearanceGates>) {
            let mut tr = Tracker::new(p);
            let mut late_ids = BTreeSet::new();
            for f in 0..400u64 {
                let dets: Vec<DetectedObject> = (0..2)
                    .map(|k| {
                        let mut d = det(
                            "person",
                            0.9,
                            0.2 + 0.5 * k as f32 + 0.0005 * f as f32,
                            0.5,
                            0.05,
                            0.15,
                        );
                        let mut e: Vec<f32> = base(k).iter().map(|b| b + noise()).collect();
                        normalise(&mut e);
                        d.embedding = Some(e);
                        d
                    })
                    .collect();
                let o = tr.update(T0 + f * FRAME, &dets);
                if f >= 200 {
                    late_ids.extend(
                        confirmed_ids(&o)
                            .into_iter()
                            .filter(|&id| o.tracks.iter().any(|t| t.track_id == id && t.hits > 0)),
                    );
                }
            }
            (late_ids.len(), tr.appearance_gates())
        };
    let fixed = TrackerParams {
        appearance_adapt_samples: 0,
        ..TrackerParams::default()
    };
    let (fixed_ids, _) = run(fixed, &mut noise);
    assert_ne!(
        fixed_ids, 2,
        "fixed gates kept each person's track (the noise is too weak to test anything)"
    );
    let (ids, gates) = run(TrackerParams::default(), &mut noise);
    let g = gates.expect("sampled");
    assert!(g.samples >= 300, "{g:?}");
    assert!(g.appearance_gate < 0.6 && g.reid_similarity < 0.8, "{g:?}");
    assert_eq!(
        ids, 2,
        "adaptive gates: {ids} ids over the last 200 frames ({g:?})"
    );
}
