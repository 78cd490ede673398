//! Batched inference, the load-time check that a model really batches, and
//! the warm-up a worker runs before it takes frames.
//!
//! A model whose batch dimension is symbolic may still fix it inside the
//! graph (YOLOX's head reshapes to `[1, 85, -1]` unless its shape constants
//! are patched), in which case a batch runs but gives wrong outputs. So on
//! load the detector runs two different images alone and together and only
//! batches when the outputs agree; otherwise it runs one frame per call and
//! says why.

use std::time::Instant;

use super::image::RgbImage;
use super::letterbox::Geometry;
use super::model::Detector;
use super::model_io::decode_head;
use super::white_balance::{Gain, NEUTRAL};
use super::DetectError;

/// Largest relative difference between a frame's output in a batch and
/// alone that still counts as equal (float reordering across batch sizes).
const BATCH_TOLERANCE: f32 = 1e-3;

/// Per-call timing of one batch size, measured after a first (cold) call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchTiming {
    /// Frames per session call.
    pub batch: usize,
    /// Milliseconds per call.
    pub call_ms: f64,
}

impl BatchTiming {
    /// Frames per second of one worker at this batch size.
    pub fn fps(&self) -> f64 {
        self.batch as f64 * 1000.0 / self.call_ms.max(1e-6)
    }
}

/// The batch size to use from measured timings: the smallest whose
/// throughput is within 10% of the best (a bigger batch only adds latency).
pub fn choose_batch(timings: &[BatchTiming]) -> usize {
    let best = timings.iter().map(BatchTiming::fps).fold(0.0, f64::max);
    timings
        .iter()
        .filter(|t| t.fps() >= 0.9 * best)
        .map(|t| t.batch)
        .min()
        .unwrap_or(1)
}

/// A deterministic test card: gradients and blocks, so that the model's
/// outputs depend on the image (`seed` varies it).
pub fn test_card(width: u32, height: u32, seed: u32) -> RgbImage {
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let block = ((x / 37 + y / 29 + seed) % 5) as u8;
            data.push((x.wrapping_mul(3).wrapping_add(seed * 41) % 256) as u8);
            data.push((y.wrapping_mul(5) % 256) as u8 ^ (block * 40));
            data.push(((x ^ y).wrapping_add(seed * 17) % 256) as u8);
        }
    }
    RgbImage {
        width,
        height,
        data,
    }
}

impl Detector {
    /// Whether one session call may carry several frames.
    pub fn batchable(&self) -> bool {
        self.batchable
    }

    /// Why batching is off for this model, when it is.
    pub fn batch_note(&self) -> Option<&str> {
        self.batch_note.as_deref()
    }

    /// Letterboxes `imgs` into the model input (one `[B, 3, S, S]` tensor
    /// for several) and returns the geometry of each image.
    fn letterbox_all(&mut self, imgs: &[&RgbImage]) -> Result<Vec<Geometry>, DetectError> {
        self.batch_input.clear();
        let mut geometry = Vec::with_capacity(imgs.len());
        for img in imgs {
            geometry.push(self.letterbox.run(img, self.input_size)?);
            if imgs.len() > 1 {
                self.batch_input.extend_from_slice(self.letterbox.tensor());
            }
        }
        Ok(geometry)
    }

    /// The head's data for `imgs` in one call (the load-time check).
    fn run_raw(&mut self, imgs: &[&RgbImage]) -> Result<Vec<f32>, DetectError> {
        self.letterbox_all(imgs)?;
        self.run_input(imgs.len(), |_, data| Ok(data.to_vec()))
    }

    /// Detects objects in several images with one session call when the
    /// model batches (one call per image otherwise); `min_confidence[i]`
    /// applies to `imgs[i]`. The result of each image equals what
    /// [`Detector::detect`] gives for it alone.
    pub fn detect_batch(
        &mut self,
        imgs: &[&RgbImage],
        min_confidence: &[f32],
    ) -> Result<Vec<Vec<nvr_subjects::DetectedObject>>, DetectError> {
        self.detect_batch_balanced(imgs, min_confidence, &vec![NEUTRAL; imgs.len()])
    }

    /// [`Detector::detect_batch`] with the colour descriptors of `imgs[i]`
    /// balanced by `gains[i]` (its camera's, see
    /// [`super::white_balance`]), as [`Detector::detect_balanced`] does.
    pub fn detect_batch_balanced(
        &mut self,
        imgs: &[&RgbImage],
        min_confidence: &[f32],
        gains: &[Gain],
    ) -> Result<Vec<Vec<nvr_subjects::DetectedObject>>, DetectError> {
        if imgs.len() != min_confidence.len() || imgs.len() != gains.len() {
            return Err(DetectError::Inference(format!(
                "{} images but {} thresholds and {} gains",
                imgs.len(),
                min_confidence.len(),
                gains.len()
            )));
        }
        if imgs.len() <= 1 || !self.batchable {
            return imgs
                .iter()
                .zip(min_confidence)
                .zip(gains)
                .map(|((img, c), g)| self.detect_balanced(img, *c, g))
                .collect();
        }
        let geometry = self.letterbox_all(imgs)?;
        let (model_type, size, allowed) = (self.model_type, self.input_size, self.allowed.clone());
        let n = imgs.len();
        let candidates = self.run_input(n, |shape, data| {
            let per = data.len() / n;
            if per == 0 {
                return Err(DetectError::Inference(
                    "the model gave an empty output".into(),
                ));
            }
            data.chunks(per)
                .zip(min_confidence)
                .map(|(slice, c)| {
                    decode_head(model_type, size, allowed.as_deref(), slice, shape, *c)
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        let mut out = Vec::with_capacity(n);
        for (((c, img), g), gain) in candidates.into_iter().zip(imgs).zip(&geometry).zip(gains) {
            let mut objects = self.finish(c, g, img, gain);
            self.add_model_embeddings(&mut objects, img)?;
            out.push(objects);
        }
        Ok(out)
    }

    /// Decides whether this model batches: two different images alone and
    /// together must give the same head outputs.
    pub(super) fn check_batching(&mut self) -> Result<(), DetectError> {
        let a = test_card(320, 240, 1);
        let b = test_card(200, 300, 2);
        let alone_a = self.run_raw(&[&a])?;
        let alone_b = self.run_raw(&[&b])?;
        let verdict = match self.run_raw(&[&a, &b]) {
            Err(e) => Err(format!("a batch of 2 fails ({e})")),
            Ok(both) if both.len() != alone_a.len() + alone_b.len() => Err(format!(
                "a batch of 2 gives {} values, expected {}",
                both.len(),
                alone_a.len() + alone_b.len()
            )),
            Ok(both) => {
                let (ba, bb) = both.split_at(alone_a.len());
                let worst = max_rel_diff(ba, &alone_a).max(max_rel_diff(bb, &alone_b));
                if worst <= BATCH_TOLERANCE {
                    Ok(())
                } else {
                    Err(format!(
                        "a batch of 2 differs from single frames (relative difference {worst:.3})"
                    ))
                }
            }
        };
        match verdict {
            Ok(()) => {
                self.batchable = true;
                self.batch_note = None;
            }
            Err(why) => {
                tracing::warn!(
                    model = %self.model_name,
                    "{why}: the graph fixes the batch size somewhere; running one frame per call"
                );
                self.batchable = false;
                self.batch_note = Some(why);
            }
        }
        Ok(())
    }

    /// Runs the model on test cards at each batch size in `sizes` (those
    /// above 1 only when the model batches): one cold call, then `rounds`
    /// timed calls. Returns the timing per batch size.
    pub fn warm_up(
        &mut self,
        sizes: &[usize],
        rounds: usize,
    ) -> Result<Vec<BatchTiming>, DetectError> {
        let cards: Vec<RgbImage> = (0..sizes.iter().copied().max().unwrap_or(1))
            .map(|i| test_card(640, 480, i as u32))
            .collect();
        let mut timings = Vec::new();
        for &n in sizes {
            if n == 0 || (n > 1 && !self.batchable) {
                continue;
            }
            let imgs: Vec<&RgbImage> = cards.iter().take(n).collect();
            let thresholds = vec![0.3; n];
            self.detect_batch(&imgs, &thresholds)?;
            let started = Instant::now();
            for _ in 0..rounds.max(1) {
                self.detect_batch(&imgs, &thresholds)?;
            }
            timings.push(BatchTiming {
                batch: n,
                call_ms: started.elapsed().as_secs_f64() * 1e3 / rounds.max(1) as f64,
            });
        }
        Ok(timings)
    }
}

/// Largest `|a - b| / max(1, |b|)` over two equally long slices.
fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(batch: usize, call_ms: f64) -> BatchTiming {
        BatchTiming { batch, call_ms }
    }

    #[test]
    fn batch_choice_takes_the_smallest_near_the_best_rate() {
        // GPU-like: calls cost about the same up to 8 frames.
        assert_eq!(
            choose_batch(&[t(1, 5.0), t(4, 6.0), t(8, 7.0), t(16, 14.0)]),
            8
        );
        // CPU-like: time grows with the batch; no gain, no batching.
        assert_eq!(choose_batch(&[t(1, 40.0), t(2, 79.0), t(4, 161.0)]), 1);
        // A small gain that is within 10% of the best keeps the smaller one.
        assert_eq!(choose_batch(&[t(1, 10.0), t(2, 19.0)]), 1);
        assert_eq!(choose_batch(&[]), 1);
    }

    #[test]
    fn test_cards_differ_by_seed() {
        let a = test_card(64, 48, 1);
        let b = test_card(64, 48, 2);
        assert_eq!(a.data.len(), 64 * 48 * 3);
        assert_ne!(a.data, b.data);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn relative_difference() {
        assert_eq!(max_rel_diff(&[1.0, 200.0], &[1.0, 200.0]), 0.0);
        assert!((max_rel_diff(&[0.5, 202.0], &[0.5, 200.0]) - 0.01).abs() < 1e-6);
    }
}
