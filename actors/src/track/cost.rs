//! The cost of a track taking a detection in each association stage:
//! overlap (fused with the score where ByteTrack does), the OC-SORT
//! direction-consistency bonus and the appearance distance, with the
//! appearance gates that rule a pair out.

use nvr_subjects::DetectedObject;

use super::{centre, AppearanceGates, TrackInner, TrackerParams};

/// The association stage a cost is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Confirmed tracks against high-score detections.
    First,
    /// Tracks tracked in the previous update against low-score detections.
    Low,
    /// Unmatched confirmed tracks against the rest, by their last observation.
    Recovery,
    /// Tentative tracks against the remaining high-score detections.
    Tentative,
}

/// The cost of track `t` taking detection `d`, whose box overlaps the
/// track's (predicted or last observed) box by `o` in `stage`: one minus
/// the overlap (times the score where ByteTrack fuses it), less the OC-SORT
/// direction bonus (`prev`: the track's direction and its observation
/// `delta_t` back), plus the appearance distance; `None` when appearance
/// rules the pair out (`gates`: the appearance gates in force).
pub(super) fn edge_cost(
    p: &TrackerParams,
    gates: &AppearanceGates,
    t: &TrackInner,
    d: &DetectedObject,
    o: f32,
    stage: Stage,
    prev: Option<([f64; 2], [f32; 4])>,
) -> Option<f64> {
    let sim = if p.fuse_score && matches!(stage, Stage::First | Stage::Tentative) {
        o * d.score
    } else {
        o
    };
    let mut v = 1.0 - sim as f64;
    if let Some((dir, pb)) = prev {
        if let Some(dd) = unit_dir(pb, d.bbox) {
            let cos = (dir[0] * dd[0] + dir[1] * dd[1]).clamp(-1.0, 1.0);
            let diff = cos.acos();
            let bonus = (std::f64::consts::FRAC_PI_2 - diff.abs()) / std::f64::consts::PI;
            v -= bonus * p.direction_weight as f64 * d.score as f64;
        }
    }
    if let Some(de) = &d.embedding {
        if let Some(cs) = t.similarity(de) {
            // A track that lost its person, half overlapping someone near
            // where it was predicted.
            let least = if t.misses > 0 && o < p.weak_overlap_iou {
                gates.appearance_gate.max(gates.weak_overlap_gate)
            } else {
                gates.appearance_gate
            };
            if cs < least {
                return None;
            }
            v += p.appearance_weight as f64 * (1.0 - cs as f64);
        }
    }
    Some(v)
}

/// Unit direction from the centre of box `from` to that of `to`; `None`
/// when they coincide.
pub(super) fn unit_dir(from: [f32; 4], to: [f32; 4]) -> Option<[f64; 2]> {
    let (a, b) = (centre(from), centre(to));
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let n = (dx * dx + dy * dy).sqrt();
    if n <= 1e-12 {
        None
    } else {
        Some([dx / n, dy / n])
    }
}
