//! Validation of every message at the boundary of an actor, before it can
//! touch the actor's state. Pure functions: the caller passes the subject,
//! the message and the receiver's clock, and counts what is refused by
//! [`Refusal::reason`].
//!
//! The rules (each one exists because a single message once broke an actor
//! without them):
//! - the `camera` field must be a valid subject token equal to the camera in
//!   the subject, so one camera cannot feed another camera's tracker;
//! - timestamps more than `max_ahead` ahead of the receiver's wall clock, or
//!   more than `max_behind` behind it, are refused: they can never move an
//!   actor's clock (a message one hour ahead used to freeze a whole shard);
//! - sizes are bounded: objects per message, embedding length, and the
//!   pixels an image header declares (checked before anything is allocated);
//! - boxes must be finite and inside the frame: a small overshoot is clipped,
//!   anything else is dropped with the object and counted;
//! - a sequence number that jumps further than `max_seq_jump` from the
//!   camera's ordering resets that ordering (see the track actor) instead
//!   of freezing it.

use std::collections::BTreeMap;

use nvr_subjects::{subjects, DetectedObject, Track};

/// The bounds every received message is checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// A message timestamp this far ahead of the receiver's clock is refused
    /// (clock skew between machines must stay below it).
    pub max_ahead_ns: u64,
    /// A message timestamp this far behind the receiver's clock is refused
    /// (a stored backlog older than this is of no use to live tracking).
    pub max_behind_ns: u64,
    /// Most objects (detections or tracks) one message may carry.
    pub max_objects: usize,
    /// Longest embedding accepted; a longer one is dropped from its object.
    pub max_embedding_len: usize,
    /// A sequence number further than this from the camera's current one
    /// resets the camera's ordering.
    pub max_seq_jump: u64,
    /// How far (normalised units) a box may overshoot the frame before it
    /// is refused rather than clipped.
    pub bbox_tolerance: f32,
    /// Most pixels (width x height) an image may declare, in a `Frame` or in
    /// an image header, before it is decoded.
    pub max_image_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ahead_ns: 5_000_000_000,
            max_behind_ns: 600_000_000_000,
            max_objects: 1_000,
            max_embedding_len: 2_048,
            max_seq_jump: 100_000,
            bbox_tolerance: 0.02,
            max_image_pixels: 7680 * 4320,
        }
    }
}

/// Why a message (or one object of it) was refused. The name is the label
/// of its counter in the status API and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The `camera` field is not a valid subject token.
    InvalidCamera,
    /// The `camera` field names another camera than the subject.
    CameraMismatch,
    /// The message is for a camera this actor does not track.
    UnknownCamera,
    /// The timestamp is too far ahead of the receiver's clock.
    TimestampAhead,
    /// The timestamp is too far behind the receiver's clock.
    TimestampBehind,
    /// More objects than `max_objects`.
    TooManyObjects,
    /// A box or score that is not finite, not ordered or outside the frame.
    BadBox,
    /// An embedding longer than `max_embedding_len`, or with non-finite values.
    BadEmbedding,
    /// An embedding whose dimension differs from the configured one.
    EmbeddingDimension,
    /// An image that declares more than `max_image_pixels`.
    ImageTooLarge,
    /// A sequence number jump that reset the camera's ordering.
    SeqReset,
}

impl Refusal {
    /// The counter label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::InvalidCamera => "invalid_camera",
            Refusal::CameraMismatch => "camera_mismatch",
            Refusal::UnknownCamera => "unknown_camera",
            Refusal::TimestampAhead => "timestamp_ahead",
            Refusal::TimestampBehind => "timestamp_behind",
            Refusal::TooManyObjects => "too_many_objects",
            Refusal::BadBox => "bad_box",
            Refusal::BadEmbedding => "bad_embedding",
            Refusal::EmbeddingDimension => "embedding_dimension",
            Refusal::ImageTooLarge => "image_too_large",
            Refusal::SeqReset => "seq_reset",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Refusal counts by reason, as served in status documents.
pub type RefusalCounts = BTreeMap<String, u64>;

/// Adds `n` refusals of `why` to `counts`.
pub fn count(counts: &mut RefusalCounts, why: Refusal, n: u64) {
    if n > 0 {
        *counts.entry(why.reason().to_string()).or_insert(0) += n;
    }
}

/// The `camera` field must be a valid token and, when the subject carries a
/// camera (`nvr.<family>.<camera>`), equal to it.
pub fn check_camera(subject: &str, camera: &str) -> Result<(), Refusal> {
    subjects::validate_token(camera).map_err(|_| Refusal::InvalidCamera)?;
    match subjects::camera_of(subject) {
        Some(c) if c == camera => Ok(()),
        _ => Err(Refusal::CameraMismatch),
    }
}

/// The timestamp must lie within the window around the receiver's clock.
pub fn check_time(ts_ns: u64, now_ns: u64, limits: &Limits) -> Result<(), Refusal> {
    if ts_ns > now_ns.saturating_add(limits.max_ahead_ns) {
        Err(Refusal::TimestampAhead)
    } else if ts_ns < now_ns.saturating_sub(limits.max_behind_ns) {
        Err(Refusal::TimestampBehind)
    } else {
        Ok(())
    }
}

/// Declared image size must be non-zero and within `max_image_pixels`.
pub fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<(), Refusal> {
    let px = u64::from(width) * u64::from(height);
    if px > limits.max_image_pixels {
        Err(Refusal::ImageTooLarge)
    } else {
        Ok(())
    }
}

/// A box clipped into the frame, or `None` when it is not finite, not
/// ordered, overshoots by more than `tol`, or is empty after clipping.
pub fn clean_box(b: [f32; 4], tol: f32) -> Option<[f32; 4]> {
    if !b.iter().all(|v| v.is_finite()) {
        return None;
    }
    let [x1, y1, x2, y2] = b;
    if x1 >= x2 || y1 >= y2 {
        return None;
    }
    if b.iter().any(|&v| v < -tol || v > 1.0 + tol) {
        return None;
    }
    let c = [
        x1.clamp(0.0, 1.0),
        y1.clamp(0.0, 1.0),
        x2.clamp(0.0, 1.0),
        y2.clamp(0.0, 1.0),
    ];
    (c[0] < c[2] && c[1] < c[3]).then_some(c)
}

/// Whether an embedding is acceptable: finite, non-empty, not too long and
/// of the configured dimension when one is configured.
fn check_embedding(e: &[f32], dim: Option<usize>, limits: &Limits) -> Result<(), Refusal> {
    if e.is_empty() || e.len() > limits.max_embedding_len || !e.iter().all(|v| v.is_finite()) {
        return Err(Refusal::BadEmbedding);
    }
    match dim {
        Some(d) if d != e.len() => Err(Refusal::EmbeddingDimension),
        _ => Ok(()),
    }
}

/// What cleaning a message's objects did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Refusals by reason (objects dropped, embeddings removed).
    pub refused: Vec<(Refusal, u64)>,
}

impl Cleaned {
    fn add(&mut self, why: Refusal) {
        match self.refused.iter_mut().find(|(r, _)| *r == why) {
            Some((_, n)) => *n += 1,
            None => self.refused.push((why, 1)),
        }
    }

    /// Whether anything was refused.
    pub fn is_clean(&self) -> bool {
        self.refused.is_empty()
    }

    /// A short description for a log line, e.g. `bad_box x2, bad_embedding x1`.
    pub fn describe(&self) -> String {
        self.refused
            .iter()
            .map(|(r, n)| format!("{r} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The parts of an object the checks look at.
trait Checked {
    fn bbox_mut(&mut self) -> &mut [f32; 4];
    fn score(&self) -> f32;
    fn embedding_mut(&mut self) -> &mut Option<Vec<f32>>;
}

/// Both object kinds carry a box, a score and an optional embedding.
macro_rules! checked {
    ($($t:ty),*) => {$(
        impl Checked for $t {
            fn bbox_mut(&mut self) -> &mut [f32; 4] {
                &mut self.bbox
            }
            fn score(&self) -> f32 {
                self.score
            }
            fn embedding_mut(&mut self) -> &mut Option<Vec<f32>> {
                &mut self.embedding
            }
        }
    )*};
}

checked!(DetectedObject, Track);

fn clean<T: Checked>(
    objects: &mut Vec<T>,
    dim: Option<usize>,
    limits: &Limits,
) -> Result<Cleaned, Refusal> {
    if objects.len() > limits.max_objects {
        return Err(Refusal::TooManyObjects);
    }
    let mut out = Cleaned::default();
    objects.retain_mut(|o| {
        let s = o.score();
        let Some(b) = clean_box(*o.bbox_mut(), limits.bbox_tolerance)
            .filter(|_| s.is_finite() && (0.0..=1.0).contains(&s))
        else {
            out.add(Refusal::BadBox);
            return false;
        };
        *o.bbox_mut() = b;
        let emb = o.embedding_mut();
        if let Some(e) = emb.as_deref() {
            if let Err(why) = check_embedding(e, dim, limits) {
                out.add(why);
                *emb = None;
            }
        }
        true
    });
    Ok(out)
}

/// Checks a `Detections` message's objects in place: too many objects
/// refuses the whole message; a bad box drops its object; a bad embedding
/// is removed from its object.
pub fn clean_detections(
    objects: &mut Vec<DetectedObject>,
    limits: &Limits,
) -> Result<Cleaned, Refusal> {
    clean(objects, None, limits)
}

/// Checks a `CameraTracks` message's tracks in place, as
/// [`clean_detections`] does, with the shard's embedding dimension when one
/// is configured.
pub fn clean_tracks(
    tracks: &mut Vec<Track>,
    dim: Option<usize>,
    limits: &Limits,
) -> Result<Cleaned, Refusal> {
    clean(tracks, dim, limits)
}

/// What the track actor does with a sequence number, given the highest
/// one released so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Within the ordering: reorder and process as usual.
    InOrder,
    /// Too far from the ordering (the camera restarted its numbering, or
    /// a hostile message): start a new ordering at this message.
    Reset,
}

/// Classifies `seq` against the highest released sequence number.
pub fn seq_verdict(seq: u64, highest: Option<u64>, limits: &Limits) -> SeqVerdict {
    match highest {
        Some(h) if seq.abs_diff(h) > limits.max_seq_jump => SeqVerdict::Reset,
        _ => SeqVerdict::InOrder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(bbox: [f32; 4], emb: Option<Vec<f32>>) -> DetectedObject {
        DetectedObject {
            class_id: 0,
            label: "person".into(),
            score: 0.9,
            bbox,
            embedding: emb,
        }
    }

    #[test]
    fn camera_must_match_the_subject() {
        assert_eq!(check_camera("nvr.frames.cam1", "cam1"), Ok(()));
        assert_eq!(
            check_camera("nvr.frames.ghost", "cam2"),
            Err(Refusal::CameraMismatch)
        );
        assert_eq!(
            check_camera("nvr.detections.cam1", ">"),
            Err(Refusal::InvalidCamera)
        );
        assert_eq!(
            check_camera("nvr.tracks.a", ""),
            Err(Refusal::InvalidCamera)
        );
        assert_eq!(check_camera("other", "cam1"), Err(Refusal::CameraMismatch));
    }

    #[test]
    fn time_window() {
        let l = Limits::default();
        let now = 1_800_000_000_000_000_000;
        assert_eq!(check_time(now, now, &l), Ok(()));
        assert_eq!(check_time(now + 4_000_000_000, now, &l), Ok(()));
        assert_eq!(
            check_time(now + 3_600_000_000_000, now, &l),
            Err(Refusal::TimestampAhead)
        );
        assert_eq!(check_time(u64::MAX, now, &l), Err(Refusal::TimestampAhead));
        assert_eq!(check_time(0, now, &l), Err(Refusal::TimestampBehind));
        assert_eq!(check_time(now - 60_000_000_000, now, &l), Ok(()));
    }

    #[test]
    fn boxes_are_clipped_or_refused() {
        let t = 0.02;
        assert_eq!(
            clean_box([0.1, 0.2, 0.3, 0.4], t),
            Some([0.1, 0.2, 0.3, 0.4])
        );
        assert_eq!(
            clean_box([-0.01, 0.2, 1.01, 0.4], t),
            Some([0.0, 0.2, 1.0, 0.4])
        );
        assert_eq!(clean_box([-50.0, -50.0, -10.0, -10.0], t), None);
        assert_eq!(clean_box([f32::NAN, 0.0, 0.5, 0.5], t), None);
        assert_eq!(clean_box([0.0, 0.0, f32::INFINITY, 0.5], t), None);
        assert_eq!(clean_box([0.5, 0.5, 0.4, 0.6], t), None, "unordered");
        assert_eq!(
            clean_box([1.0, 0.5, 1.01, 0.6], t),
            None,
            "empty once clipped"
        );
    }

    #[test]
    fn objects_are_cleaned_and_counted() {
        let l = Limits::default();
        let mut objs = vec![
            obj([0.1, 0.1, 0.2, 0.3], Some(vec![0.5; 40])),
            obj([-50.0, -50.0, -10.0, -10.0], None),
            obj([0.1, 0.1, 0.2, 0.3], Some(vec![0.1; 190_000])),
            obj([0.1, 0.1, 0.2, 0.3], Some(vec![f32::NAN; 4])),
        ];
        let c = clean_detections(&mut objs, &l).unwrap();
        assert_eq!(objs.len(), 3);
        assert!(objs[0].embedding.is_some());
        assert!(objs[1].embedding.is_none() && objs[2].embedding.is_none());
        assert_eq!(
            c.refused,
            vec![(Refusal::BadBox, 1), (Refusal::BadEmbedding, 2)]
        );
        let mut many = vec![obj([0.1, 0.1, 0.2, 0.3], None); 1001];
        assert_eq!(
            clean_detections(&mut many, &l),
            Err(Refusal::TooManyObjects)
        );
    }

    #[test]
    fn configured_dimension_refuses_others() {
        let l = Limits::default();
        let mut objs = vec![
            obj([0.1, 0.1, 0.2, 0.3], Some(vec![0.5; 40])),
            obj([0.1, 0.1, 0.2, 0.3], Some(vec![0.5; 32])),
        ];
        let c = clean(&mut objs, Some(40), &l).unwrap();
        assert!(objs[0].embedding.is_some() && objs[1].embedding.is_none());
        assert_eq!(c.refused, vec![(Refusal::EmbeddingDimension, 1)]);
    }

    #[test]
    fn seq_jumps_reset() {
        let l = Limits::default();
        assert_eq!(seq_verdict(5, None, &l), SeqVerdict::InOrder);
        assert_eq!(seq_verdict(6, Some(5), &l), SeqVerdict::InOrder);
        assert_eq!(seq_verdict(5_000_000, Some(5_000), &l), SeqVerdict::Reset);
        assert_eq!(seq_verdict(1, Some(5_000_000), &l), SeqVerdict::Reset);
    }

    #[test]
    fn pixels_are_bounded_before_decoding() {
        let l = Limits::default();
        assert_eq!(check_pixels(1920, 1080, &l), Ok(()));
        assert_eq!(
            check_pixels(16_384, 16_384, &l),
            Err(Refusal::ImageTooLarge)
        );
    }

    proptest! {
        /// Whatever box comes in, what is kept is finite, ordered and in the frame.
        #[test]
        fn kept_boxes_are_sane(b in proptest::array::uniform4(proptest::num::f32::ANY)) {
            if let Some(c) = clean_box(b, 0.02) {
                prop_assert!(c.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
                prop_assert!(c[0] < c[2] && c[1] < c[3]);
            }
        }

        /// Whatever the timestamps, a message inside the window passes and one
        /// outside never does.
        #[test]
        fn window_is_exact(ts in any::<u64>(), now in any::<u64>()) {
            let l = Limits::default();
            let inside = ts <= now.saturating_add(l.max_ahead_ns)
                && ts >= now.saturating_sub(l.max_behind_ns);
            prop_assert_eq!(check_time(ts, now, &l).is_ok(), inside);
        }
    }
}
