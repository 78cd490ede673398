//! The camera tracker's matching stages: the gated overlap stages (first,
//! low-score, recovery, tentative) and the reach-and-appearance stage that
//! takes back a track that missed a frame (or, after a slow frame, a
//! tentative one) by its looks within walking reach.

use nvr_subjects::DetectedObject;

use super::appearance_scale::AppearanceGates;
use super::cost::{edge_cost, Stage};
use super::{centre, Tracker};
use crate::track::assign::iou;

impl Tracker {
    /// One association stage: the gated cost of every (track, detection)
    /// pair that can match, then the assignment. Only pairs whose boxes
    /// overlap can pass an IoU gate, so candidates are swept in order of
    /// their left edge and each track only looks at those that can reach it.
    pub(super) fn match_stage(
        &mut self,
        pool: &[usize],
        cand: &[usize],
        dets: &[DetectedObject],
        step: u64,
        stage: Stage,
        gates: AppearanceGates,
    ) -> Vec<(usize, usize)> {
        if pool.is_empty() || cand.is_empty() {
            return Vec::new();
        }
        let mut sc = std::mem::take(&mut self.scratch);
        let p = &self.params;
        let (gate, limit) = match stage {
            Stage::First => (p.match_iou, 10.0),
            Stage::Low => (p.low_match_iou, 10.0),
            Stage::Recovery => (p.recovery_iou, 10.0),
            Stage::Tentative => (p.tentative_match_iou, 10.0),
        };
        sc.by_x1.clear();
        let mut max_w = 0.0f64;
        for (c, &di) in cand.iter().enumerate() {
            let b = dets[di].bbox;
            sc.by_x1.push((b[0], c));
            max_w = max_w.max(b[2] as f64 - b[0] as f64);
        }
        sc.by_x1
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        sc.edges.clear();
        for (r, &ti) in pool.iter().enumerate() {
            let t = &self.tracks[ti];
            let tl = sc.track_label[ti];
            if tl == u32::MAX {
                continue;
            }
            let tb = match stage {
                Stage::Recovery => t.last_obs(),
                _ => t.kf.xyxy(),
            };
            let prev = if stage == Stage::First && p.direction_weight != 0.0 {
                t.direction
                    .and_then(|dir| t.previous_obs(step, p.delta_t).map(|b| (dir, b)))
            } else {
                None
            };
            // A box overlaps `tb` horizontally only if it starts before tb's
            // right edge and ends after its left edge, so it starts after
            // `tb[0] - width`; the margin covers rounding.
            let left = tb[0] as f64;
            let lower = left - max_w * 1.001 - 1e-6 * left.abs();
            let from = sc.by_x1.partition_point(|&(x1, _)| (x1 as f64) <= lower);
            for &(x1, c) in &sc.by_x1[from..] {
                if x1 >= tb[2] || x1.is_nan() {
                    break;
                }
                let di = cand[c];
                if sc.det_label[di] != tl {
                    continue;
                }
                let d = &dets[di];
                let o = iou(tb, d.bbox);
                if o < gate || o <= 0.0 {
                    continue;
                }
                let Some(v) = edge_cost(p, &gates, t, d, o, stage, prev) else {
                    continue;
                };
                // Costs are shifted to be positive; the gate already decided validity.
                sc.edges.push((r, c, v + 1.0));
            }
        }
        let out = sc
            .assigner
            .assign_sparse(pool.len(), cand.len(), &sc.edges, limit);
        self.scratch = sc;
        out
    }

    /// Matches tracks `pool` that missed an update with detections `cand`
    /// on appearance (cosine at least `reid_similarity`), within the
    /// distance a person can have walked since the track's last
    /// observation (`reid_speed` box heights per second, plus half a
    /// height) and of a similar height; cheapest by dissimilarity, then
    /// distance.
    pub(super) fn reid_stage(
        &mut self,
        pool: &[usize],
        cand: &[usize],
        dets: &[DetectedObject],
        ts: u64,
        gates: AppearanceGates,
    ) -> Vec<(usize, usize)> {
        let p = &self.params;
        if pool.is_empty() || cand.is_empty() || gates.reid_similarity > 1.0 {
            return Vec::new();
        }
        let mut edges = Vec::new();
        for (r, &ti) in pool.iter().enumerate() {
            let t = &self.tracks[ti];
            if t.embedding.is_none() {
                continue;
            }
            let tl = self.scratch.track_label[ti];
            if tl == u32::MAX {
                continue;
            }
            let last = t.last_obs();
            let th = (last[3] - last[1]).max(1e-6) as f64;
            let gap_s = ts.saturating_sub(t.last_obs_ts) as f64 / 1e9;
            let reach = th * (0.5 + p.reid_speed as f64 * gap_s);
            let tc = centre(last);
            for (c, &di) in cand.iter().enumerate() {
                let d = &dets[di];
                if self.scratch.det_label[di] != tl {
                    continue;
                }
                let Some(cs) = d.embedding.as_ref().and_then(|de| t.similarity(de)) else {
                    continue;
                };
                let dh = (d.bbox[3] - d.bbox[1]) as f64;
                let dc = centre(d.bbox);
                let dist = ((dc[0] - tc[0]).powi(2) + (dc[1] - tc[1]).powi(2)).sqrt();
                if cs < gates.reid_similarity || dist > reach || dh < th / 1.5 || dh > th * 1.5 {
                    continue;
                }
                edges.push((r, c, 1.0 + (1.0 - cs as f64) + 0.1 * dist / th));
            }
        }
        let mut sc = std::mem::take(&mut self.scratch);
        let out = sc
            .assigner
            .assign_sparse(pool.len(), cand.len(), &edges, 10.0);
        self.scratch = sc;
        out
    }
}
