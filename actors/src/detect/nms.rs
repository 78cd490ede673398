//! Class-aware greedy non-maximum suppression: within each class, keep the
//! highest-scoring box and drop every other box of that class whose IoU with
//! a kept box exceeds the threshold. Boxes of different classes never
//! suppress each other. The result is deterministic (ties broken by input
//! order) and sorted by descending score.

use super::decode::Candidate;

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (0 when either is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area_a = (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
    let area_b = (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let union = area_a + area_b - inter;
    if union <= 0.0 || !union.is_finite() {
        0.0
    } else {
        inter / union
    }
}

/// Class-aware greedy NMS. Returns the kept candidates by descending score.
pub fn nms(mut candidates: Vec<Candidate>, iou_threshold: f32) -> Vec<Candidate> {
    // Stable sort: equal scores keep their input order.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len().min(256));
    for c in candidates {
        let suppressed = kept
            .iter()
            .any(|k| k.class_id == c.class_id && iou(&k.bbox, &c.bbox) > iou_threshold);
        if !suppressed {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(class_id: usize, score: f32, bbox: [f32; 4]) -> Candidate {
        Candidate {
            class_id,
            score,
            bbox,
        }
    }

    #[test]
    fn iou_basics() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        let half = iou(&a, &[5.0, 0.0, 15.0, 10.0]);
        assert!((half - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0; 4], &[0.0; 4]), 0.0);
    }

    #[test]
    fn suppresses_same_class_overlap() {
        let out = nms(
            vec![
                cand(0, 0.6, [1.0, 1.0, 11.0, 11.0]),
                cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
                cand(0, 0.5, [50.0, 50.0, 60.0, 60.0]),
            ],
            0.45,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[1].score, 0.5);
    }

    #[test]
    fn different_classes_both_survive() {
        let out = nms(
            vec![
                cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
                cand(2, 0.8, [0.0, 0.0, 10.0, 10.0]),
            ],
            0.45,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].class_id, 0);
        assert_eq!(out[1].class_id, 2);
    }

    proptest! {
        #[test]
        fn kept_boxes_of_a_class_do_not_overlap(
            boxes in proptest::collection::vec((0usize..3, 0.0f32..1.0, 0.0f32..100.0, 0.0f32..100.0, 1.0f32..40.0, 1.0f32..40.0), 0..60)
        ) {
            let cands: Vec<Candidate> = boxes.iter()
                .map(|&(c, s, x, y, w, h)| cand(c, s, [x, y, x + w, y + h]))
                .collect();
            let out = nms(cands.clone(), 0.5);
            prop_assert!(out.len() <= cands.len());
            for i in 0..out.len() {
                for j in (i + 1)..out.len() {
                    prop_assert!(out[i].score >= out[j].score);
                    if out[i].class_id == out[j].class_id {
                        prop_assert!(iou(&out[i].bbox, &out[j].bbox) <= 0.5);
                    }
                }
            }
            // Deterministic.
            prop_assert_eq!(out, nms(cands, 0.5));
        }
    }
}
