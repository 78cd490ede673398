//! Appearance vectors of the tracker: L2 normalisation, cosine similarity
//! and the running blend a track keeps of its matched detections.

/// `slot = a * slot + (1 - a) * e`, L2-normalised (`e` is); `e` itself
/// when `a` is 0 or the slot is empty or of another dimension. Written in
/// place when it can be: this runs for every matched detection.
pub(super) fn blend(slot: &mut Option<Vec<f32>>, e: &[f32], a: f32) {
    match slot {
        Some(v) if v.len() == e.len() => {
            if a > 0.0 {
                for (x, y) in v.iter_mut().zip(e) {
                    *x = a * *x + (1.0 - a) * y;
                }
                normalise(v);
            } else {
                v.copy_from_slice(e);
            }
        }
        _ => *slot = Some(e.to_vec()),
    }
}

/// Scales `v` to unit length (a zero vector stays as it is).
pub(super) fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Cosine similarity of `a` and `b`; `None` when their lengths differ or
/// either is empty or zero.
pub(super) fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na <= 0.0 || nb <= 0.0 {
        None
    } else {
        Some(dot / (na * nb))
    }
}
