//! How alike one person's own detections look on this camera's
//! embeddings, and the appearance gates that knowledge caps.
//!
//! The tracker's appearance gates (`appearance_gate`, `weak_overlap_gate`,
//! `reid_similarity`) are cosines chosen for nvr's colour descriptor, on
//! which a person's next detection scores about 0.99 against the track.
//! Embeddings from elsewhere (a re-identification model, a client's own
//! vectors in `Detections`) can score one person's frames far lower; a gate
//! above most of a person's own matches would then split every track. So
//! each tracker keeps a running histogram of the cosine between a track
//! and the detection that is unmistakably its own, chosen by geometry
//! alone before any gate (so the gates do not cut the samples that set
//! them), and scales the gates down by how much lower than the colour
//! descriptor's those matches score (their median against
//! `appearance_reference_median`). On the colour descriptor nothing
//! changes.

use super::{cosine, iou, valid_box, DetectedObject, TrackInner, TrackerParams};

/// Histogram bins: cosine from -1 to 1 in steps of 0.01.
const BINS: usize = 200;
/// At this many samples every count is halved, so the histogram follows a
/// scene whose lighting changes over the day.
const HALVE_AT: u64 = 20_000;
/// A detection overlapping a track's predicted box at least this much
/// (IoU) is that track's own person, when nothing else is near ...
const OWN_IOU: f32 = 0.7;
/// ... that is, no other detection overlaps the track's box or that
/// detection more than this.
const CLEAR_IOU: f32 = 0.3;

/// The running histogram of own-person cosines of one tracker.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct AppearanceScale {
    /// Counts per 0.01 of cosine from -1; empty until the first sample.
    bins: Vec<u32>,
    /// Sum of `bins`: how much the quantiles can be trusted.
    total: u64,
}

/// The appearance gates a camera's tracker applies in an update (and shows
/// in the status API): how many own-person matches it has sampled, their
/// median, and the gates they allow (the configured ones until
/// `appearance_adapt_samples` are in).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AppearanceGates {
    /// Own-person matches sampled (older ones fade).
    pub samples: u64,
    /// Their median cosine: how alike one person's frames look on this
    /// camera's embeddings.
    pub median: f32,
    /// `tracking.appearance_gate` in force.
    pub appearance_gate: f32,
    /// `tracking.weak_overlap_gate` in force.
    pub weak_overlap_gate: f32,
    /// `tracking.reid_similarity` in force.
    pub reid_similarity: f32,
}

impl AppearanceScale {
    /// Adds one own-person cosine.
    pub fn add(&mut self, cos: f32) {
        if !cos.is_finite() {
            return;
        }
        if self.bins.is_empty() {
            self.bins = vec![0; BINS];
        }
        let i = (((cos.clamp(-1.0, 1.0) + 1.0) * 100.0) as usize).min(BINS - 1);
        self.bins[i] += 1;
        self.total += 1;
        if self.total >= HALVE_AT {
            self.bins.iter_mut().for_each(|c| *c /= 2);
            self.total = self.bins.iter().map(|&c| c as u64).sum();
        }
    }

    /// The cosine a share `q` of the samples lies below (the lower edge of
    /// the bin that holds that sample); `None` without samples.
    pub fn quantile(&self, q: f32) -> Option<f32> {
        if self.total == 0 {
            return None;
        }
        let want = ((q.clamp(0.0, 1.0) as f64) * self.total as f64)
            .ceil()
            .max(1.0) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.bins.iter().enumerate() {
            seen += c as u64;
            if seen >= want {
                return Some(i as f32 / 100.0 - 1.0);
            }
        }
        Some(1.0)
    }

    /// The gates for the next update: once `appearance_adapt_samples`
    /// samples are in, each configured gate times the median own-person
    /// cosine over `appearance_reference_median` (the median the gates are
    /// set for), where that is below 1: an embedding on which one person's
    /// frames score lower gets proportionally lower gates. Never raised; a
    /// gate that is off stays off.
    pub fn gates(&self, p: &TrackerParams) -> AppearanceGates {
        let ready = p.appearance_adapt_samples > 0 && self.total >= p.appearance_adapt_samples;
        let median = self.quantile(0.5);
        let factor = match median {
            Some(m) if ready && p.appearance_reference_median > 0.0 => {
                (m / p.appearance_reference_median).clamp(0.0, 1.0)
            }
            _ => 1.0,
        };
        let scale = |level: f32| if level > 1.0 { level } else { level * factor };
        AppearanceGates {
            samples: self.total,
            median: median.unwrap_or(1.0),
            appearance_gate: scale(p.appearance_gate),
            weak_overlap_gate: scale(p.weak_overlap_gate),
            reid_similarity: scale(p.reid_similarity),
        }
    }

    /// Samples one update: every track matched in the previous update
    /// (`was_matched`) whose predicted box overlaps exactly one detection by
    /// `OWN_IOU` or more, with no other detection over its box or over that
    /// detection by more than `CLEAR_IOU`, adds the cosine of that detection
    /// to its appearance. Other tracks are not asked about: where a gate
    /// refused a person's own frame, a second track on that person is what
    /// the gate made, and its samples are the ones that correct it.
    /// `by_x1` is a scratch buffer: the detections sorted by left edge, so
    /// each box is compared only with those that can reach it.
    pub fn sample(
        &mut self,
        tracks: &[TrackInner],
        was_matched: &[bool],
        dets: &[DetectedObject],
        by_x1: &mut Vec<(f32, usize)>,
    ) {
        by_x1.clear();
        if dets.iter().all(|d| d.embedding.is_none()) {
            return;
        }
        let mut max_w = 0.0f32;
        for (j, d) in dets.iter().enumerate() {
            if valid_box(d.bbox) {
                by_x1.push((d.bbox[0], j));
                max_w = max_w.max(d.bbox[2] - d.bbox[0]);
            }
        }
        if by_x1.is_empty() {
            return;
        }
        by_x1.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        // The detections whose left edge lies within reach of box `b`.
        let near = |b: [f32; 4]| {
            let lo = by_x1.partition_point(|&(x, _)| x < b[0] - max_w);
            let hi = by_x1.partition_point(|&(x, _)| x <= b[2]);
            &by_x1[lo..hi.max(lo)]
        };
        for (i, t) in tracks.iter().enumerate() {
            if !was_matched.get(i).copied().unwrap_or(false) {
                continue;
            }
            let Some(own) = t.matching.as_ref().or(t.embedding.as_ref()) else {
                continue;
            };
            let tb = t.kf.xyxy();
            let mut found: Option<usize> = None;
            let mut clear = true;
            for &(_, j) in near(tb) {
                let o = iou(tb, dets[j].bbox);
                if o >= OWN_IOU && found.is_none() {
                    found = Some(j);
                } else if o > CLEAR_IOU {
                    clear = false;
                    break;
                }
            }
            let (Some(j), true) = (found, clear) else {
                continue;
            };
            let d = &dets[j];
            let crowded = near(d.bbox)
                .iter()
                .any(|&(_, k)| k != j && iou(dets[k].bbox, d.bbox) > CLEAR_IOU);
            if crowded || d.label != t.label {
                continue;
            }
            if let Some(c) = d.embedding.as_deref().and_then(|e| cosine(own, e)) {
                self.add(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TrackerParams {
        TrackerParams::default()
    }

    #[test]
    fn quantiles_come_from_the_samples() {
        let mut s = AppearanceScale::default();
        assert_eq!(s.quantile(0.5), None);
        for i in 0..100 {
            s.add(i as f32 / 100.0);
        }
        assert_eq!(s.gates(&params()).samples, 100);
        let q = s.quantile(0.1).unwrap();
        assert!((q - 0.09).abs() < 0.011, "{q}");
        let q = s.quantile(0.5).unwrap();
        assert!((q - 0.49).abs() < 0.011, "{q}");
        s.add(f32::NAN);
        assert_eq!(s.gates(&params()).samples, 100);
    }

    #[test]
    fn gates_scale_with_what_own_matches_score_and_never_rise() {
        let p = params();
        // Too few samples: the configured gates.
        let mut s = AppearanceScale::default();
        for _ in 0..10 {
            s.add(0.475);
        }
        assert_eq!(s.gates(&p).appearance_gate, p.appearance_gate);
        // A weak embedding: one person's matches score a median of 0.475,
        // half the reference: every gate halves.
        for _ in 0..1000 {
            s.add(0.475);
        }
        let g = s.gates(&p);
        let half = |v: f32| v * 0.47 / 0.95;
        assert!(
            (g.appearance_gate - half(p.appearance_gate)).abs() < 0.01,
            "{g:?}"
        );
        assert!(
            (g.weak_overlap_gate - half(p.weak_overlap_gate)).abs() < 0.01,
            "{g:?}"
        );
        assert!(
            (g.reid_similarity - half(p.reid_similarity)).abs() < 0.01,
            "{g:?}"
        );
        // The colour descriptor: 0.96-1.0 (median about 0.98); nothing changes.
        let mut c = AppearanceScale::default();
        for i in 0..1000 {
            c.add(0.96 + 0.04 * (i % 100) as f32 / 100.0);
        }
        let g = c.gates(&p);
        assert_eq!(
            (g.appearance_gate, g.weak_overlap_gate, g.reid_similarity),
            (p.appearance_gate, p.weak_overlap_gate, p.reid_similarity)
        );
        // Off: fixed gates.
        let off = TrackerParams {
            appearance_adapt_samples: 0,
            ..params()
        };
        assert_eq!(s.gates(&off).appearance_gate, off.appearance_gate);
        // A gate that is off stays off.
        let no_reid = TrackerParams {
            reid_similarity: 1.1,
            ..params()
        };
        assert_eq!(s.gates(&no_reid).reid_similarity, 1.1);
    }

    #[test]
    fn old_samples_fade() {
        let mut s = AppearanceScale::default();
        for _ in 0..HALVE_AT - 1 {
            s.add(0.2);
        }
        for _ in 0..10 * HALVE_AT {
            s.add(0.9);
        }
        assert!(s.gates(&params()).samples < HALVE_AT);
        assert!(s.quantile(0.01).unwrap() > 0.85);
    }
}
