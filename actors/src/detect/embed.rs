//! Appearance descriptors for re-identification.
//!
//! * [`colour_descriptor`]: a cheap, deterministic HSV histogram of the upper
//!   and lower halves of a box (clothing colours of a person), L2-normalised.
//!   Needs no model and costs a few microseconds per box.
//! * [`OnnxEmbedder`]: an optional ONNX re-ID network (the MobileNetV2 that
//!   `scripts/setup` exports, or e.g. OSNet) with input `[N,3,H,W]` (RGB,
//!   ImageNet mean/std) and output `[N,D]`.
//! * [`combine`]: both in one unit vector, so that one cosine weighs them.
//! * [`box_colour`]: the mean colour of the pixels the descriptor samples,
//!   from which a camera's white point is measured.

use std::path::Path;

use fast_image_resize::Resizer;
use ort::session::Session;
use ort::value::TensorRef;

use super::image::{resize_exact, RgbImage};
use super::runtime::{build_session, file_stem, Backend, RuntimeOptions};
use super::white_balance::{apply_gain, Gain, NEUTRAL};
use super::DetectError;

/// Hue bins for saturated pixels.
const HUE_BINS: usize = 8;
/// Saturation bins for saturated pixels.
const SAT_BINS: usize = 2;
/// Brightness bins for grey pixels (low saturation or very dark).
const GREY_BINS: usize = 4;
/// Bins per body half.
const HALF_BINS: usize = HUE_BINS * SAT_BINS + GREY_BINS;
/// Length of [`colour_descriptor`]'s output.
pub const COLOUR_DESCRIPTOR_LEN: usize = 2 * HALF_BINS;
/// Most pixels sampled along each axis of a box.
const MAX_SAMPLES_PER_AXIS: u32 = 48;

/// Hue (0..6), saturation (0..1), value (0..1) of an RGB pixel.
fn hsv(px: [u8; 3]) -> (f32, f32, f32) {
    let r = px[0] as f32 / 255.0;
    let g = px[1] as f32 / 255.0;
    let b = px[2] as f32 / 255.0;
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    let h = if delta <= 0.0 {
        0.0
    } else if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    };
    (h, s, max)
}

fn bin_of(px: [u8; 3]) -> usize {
    let (h, s, v) = hsv(px);
    if s < 0.25 || v < 0.15 {
        HUE_BINS * SAT_BINS + ((v * GREY_BINS as f32) as usize).min(GREY_BINS - 1)
    } else {
        let hb = ((h / 6.0 * HUE_BINS as f32) as usize).min(HUE_BINS - 1);
        let sb = (((s - 0.25) / 0.75 * SAT_BINS as f32) as usize).min(SAT_BINS - 1);
        hb * SAT_BINS + sb
    }
}

/// Pixel rectangle `[x0, y0, x1, y1)` of a normalised box, at least 1x1 and
/// inside the image; `None` for an empty image.
fn pixel_rect(img: &RgbImage, bbox_norm: [f32; 4]) -> Option<[u32; 4]> {
    if img.width == 0 || img.height == 0 || img.validate().is_err() {
        return None;
    }
    let clamp01 = |v: f32| if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let (w, h) = (img.width as f32, img.height as f32);
    let x0 = (clamp01(bbox_norm[0].min(bbox_norm[2])) * w) as u32;
    let y0 = (clamp01(bbox_norm[1].min(bbox_norm[3])) * h) as u32;
    let x1 = (clamp01(bbox_norm[0].max(bbox_norm[2])) * w).ceil() as u32;
    let y1 = (clamp01(bbox_norm[1].max(bbox_norm[3])) * h).ceil() as u32;
    let x0 = x0.min(img.width - 1);
    let y0 = y0.min(img.height - 1);
    Some([
        x0,
        y0,
        x1.clamp(x0 + 1, img.width),
        y1.clamp(y0 + 1, img.height),
    ])
}

fn l2_normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        let u = 1.0 / (v.len().max(1) as f32).sqrt();
        v.iter_mut().for_each(|x| *x = u);
    }
}

/// L2-normalised colour descriptor of the box `bbox_norm` (`[x1,y1,x2,y2]`
/// normalised 0..1 of `img`): an HSV histogram (8 hues x 2 saturations + 4
/// grey levels) of the upper half and of the lower half of the box's central
/// 60% width, each half normalised to sum 1, then the whole vector L2-
/// normalised. Always [`COLOUR_DESCRIPTOR_LEN`] long; deterministic.
pub fn colour_descriptor(img: &RgbImage, bbox_norm: [f32; 4]) -> Vec<f32> {
    colour_descriptor_balanced(img, bbox_norm, &NEUTRAL)
}

/// [`colour_descriptor`] of the sampled pixels scaled by `gain` first (a
/// camera's white balance, see [`super::white_balance`]).
pub fn colour_descriptor_balanced(img: &RgbImage, bbox_norm: [f32; 4], gain: &Gain) -> Vec<f32> {
    let mut out = vec![0.0f32; COLOUR_DESCRIPTOR_LEN];
    let neutral = *gain == NEUTRAL;
    for_each_sample(img, bbox_norm, |half, px| {
        let px = if neutral { px } else { apply_gain(px, gain) };
        out[half * HALF_BINS + bin_of(px)] += 1.0;
    });
    for half in out.chunks_mut(HALF_BINS) {
        let sum: f32 = half.iter().sum();
        if sum > 0.0 {
            half.iter_mut().for_each(|v| *v /= sum);
        }
    }
    l2_normalise(&mut out);
    out
}

/// The mean colour (R, G, B, 0..255) of the pixels [`colour_descriptor`]
/// samples in the box, before any gain; `None` for a box of no pixels.
/// The mean over a camera's person boxes is its white point.
pub fn box_colour(img: &RgbImage, bbox_norm: [f32; 4]) -> Option<[f64; 3]> {
    let (mut sum, mut n) = ([0u64; 3], 0u64);
    for_each_sample(img, bbox_norm, |_, px| {
        for (s, v) in sum.iter_mut().zip(px) {
            *s += u64::from(v);
        }
        n += 1;
    });
    (n > 0).then(|| sum.map(|s| s as f64 / n as f64))
}

/// Calls `f(half, pixel)` for each pixel the descriptor samples in the box:
/// at most [`MAX_SAMPLES_PER_AXIS`] columns of its central 60% width and
/// twice that many rows, `half` 0 for the upper half of the box, 1 for the
/// lower.
fn for_each_sample(img: &RgbImage, bbox_norm: [f32; 4], mut f: impl FnMut(usize, [u8; 3])) {
    let Some([x0, y0, x1, y1]) = pixel_rect(img, bbox_norm) else {
        return;
    };
    // Central 60% of the width: less background beside the person.
    let bw = x1 - x0;
    let (cx0, cx1) = if bw >= 5 {
        (x0 + bw / 5, x1 - bw / 5)
    } else {
        (x0, x1)
    };
    let bh = y1 - y0;
    let xs = (cx1 - cx0).min(MAX_SAMPLES_PER_AXIS);
    let ys = bh.min(MAX_SAMPLES_PER_AXIS * 2);
    for iy in 0..ys {
        let y = y0 + ((iy as u64 * bh as u64 + bh as u64 / 2) / ys as u64) as u32;
        let half = if y - y0 < bh.div_ceil(2) { 0 } else { 1 };
        for ix in 0..xs {
            let x = cx0
                + ((ix as u64 * (cx1 - cx0) as u64 + (cx1 - cx0) as u64 / 2) / xs as u64) as u32;
            f(half, img.pixel(x.min(img.width - 1), y.min(img.height - 1)));
        }
    }
}

/// Cosine similarity of two L2-normalised vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Default re-ID input size `(height, width)` when the model's is symbolic.
pub const DEFAULT_REID_INPUT: (u32, u32) = (256, 128);

/// Optional ONNX re-identification model: input `[N,3,H,W]` float32 (RGB,
/// 0..1 then ImageNet mean/std), output `[N,D]`.
pub struct OnnxEmbedder {
    /// The ONNX Runtime session.
    session: Session,
    /// File stem of the model, for logs and status.
    name: String,
    /// Crop height fed to the model.
    height: u32,
    /// Crop width fed to the model.
    width: u32,
    /// Effective backend.
    backend: Backend,
    /// Why the requested backend was not used.
    fallback_reason: Option<String>,
    /// Resampler scratch space.
    resizer: Resizer,
    /// Reusable input tensor.
    tensor: Vec<f32>,
}

impl OnnxEmbedder {
    /// Load a re-ID model and check its shapes (`[N,3,H,W]` in, `[N,D]` out).
    pub fn load(path: &Path, opts: &RuntimeOptions) -> Result<Self, DetectError> {
        let built = build_session(path, opts)?;
        let err = |reason: String| DetectError::Model {
            path: path.display().to_string(),
            reason,
        };
        let session = built.session;
        let (height, width) = {
            let Some(input) = session.inputs().first() else {
                return Err(err("model has no inputs".into()));
            };
            let Some(shape) = input.dtype().tensor_shape() else {
                return Err(err(format!("input {:?} is not a tensor", input.name())));
            };
            let shape: &[i64] = shape;
            if shape.len() != 4 || (shape[1] > 0 && shape[1] != 3) {
                return Err(err(format!(
                    "input {:?} has shape {shape:?}, expected [N,3,H,W]",
                    input.name()
                )));
            }
            match (shape[2], shape[3]) {
                (h, w) if h > 0 && w > 0 => (h as u32, w as u32),
                _ => DEFAULT_REID_INPUT,
            }
        };
        {
            let Some(output) = session.outputs().first() else {
                return Err(err("model has no outputs".into()));
            };
            let rank = output.dtype().tensor_shape().map(|s| s.len());
            if rank != Some(2) {
                return Err(err(format!(
                    "output {:?} has rank {rank:?}, expected [N,D]",
                    output.name()
                )));
            }
        }
        Ok(OnnxEmbedder {
            session,
            name: file_stem(path),
            height,
            width,
            backend: built.backend,
            fallback_reason: built.fallback_reason,
            resizer: Resizer::new(),
            tensor: Vec::new(),
        })
    }

    /// Effective backend ("cpu" after a fallback).
    pub fn backend(&self) -> &str {
        self.backend.as_str()
    }

    /// File stem of the model.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// Why the requested backend was not used, if it was not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Model input `(height, width)`.
    pub fn input_hw(&self) -> (u32, u32) {
        (self.height, self.width)
    }

    /// Embed each box (`[x1,y1,x2,y2]` normalised 0..1 of `img`) in one
    /// batch; returns one L2-normalised vector per box, in order.
    pub fn embed(
        &mut self,
        img: &RgbImage,
        bboxes: &[[f32; 4]],
    ) -> Result<Vec<Vec<f32>>, DetectError> {
        img.validate()?;
        if bboxes.is_empty() {
            return Ok(Vec::new());
        }
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        let (h, w) = (self.height as usize, self.width as usize);
        let plane = h * w;
        self.tensor.clear();
        self.tensor.resize(bboxes.len() * 3 * plane, 0.0);
        for (k, b) in bboxes.iter().enumerate() {
            let Some([x0, y0, x1, y1]) = pixel_rect(img, *b) else {
                continue;
            };
            let crop = crop(img, x0, y0, x1, y1);
            let resized = resize_exact(&mut self.resizer, &crop, self.width, self.height)?;
            let base = k * 3 * plane;
            for (i, px) in resized.data.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    self.tensor[base + c * plane + i] = (px[c] as f32 / 255.0 - MEAN[c]) / STD[c];
                }
            }
        }
        let inference = |e: ort::Error| DetectError::Inference(e.to_string().replace('\n', " "));
        let input = TensorRef::from_array_view(([bboxes.len(), 3, h, w], self.tensor.as_slice()))
            .map_err(inference)?;
        let outputs = self.session.run(ort::inputs![input]).map_err(inference)?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(inference)?;
        let shape: &[i64] = shape;
        if shape.len() != 2 || shape[0] as usize != bboxes.len() || shape[1] <= 0 {
            return Err(DetectError::Inference(format!(
                "re-ID output has shape {shape:?}, expected [{}, D]",
                bboxes.len()
            )));
        }
        let d = shape[1] as usize;
        Ok(data
            .chunks_exact(d)
            .map(|row| {
                let mut v = row.to_vec();
                l2_normalise(&mut v);
                v
            })
            .collect())
    }
}

/// One unit vector from a unit colour descriptor and a unit model embedding:
/// `[sqrt(1 - w) * colour, sqrt(w) * model]`, whose cosine with another such
/// vector is `(1 - w) * cos(colour) + w * cos(model)`. `w` is clamped to 0..1.
pub fn combine(colour: &[f32], model: &[f32], w: f32) -> Vec<f32> {
    let w = if w.is_nan() { 0.0 } else { w.clamp(0.0, 1.0) };
    let (a, b) = ((1.0 - w).sqrt(), w.sqrt());
    let mut out = Vec::with_capacity(colour.len() + model.len());
    out.extend(colour.iter().map(|x| a * x));
    out.extend(model.iter().map(|x| b * x));
    l2_normalise(&mut out);
    out
}

/// Copy the pixel rectangle `[x0, x1) x [y0, y1)` out of `img`.
fn crop(img: &RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> RgbImage {
    let (w, h) = (x1 - x0, y1 - y0);
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    let stride = img.width as usize * 3;
    for y in y0..y1 {
        let start = y as usize * stride + x0 as usize * 3;
        data.extend_from_slice(&img.data[start..start + w as usize * 3]);
    }
    RgbImage {
        width: w,
        height: h,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    /// 100x100 image: left half red shirt over blue trousers, right half blue over blue.
    fn scene() -> RgbImage {
        let mut img = RgbImage::filled(100, 100, [0, 0, 0]);
        for y in 0..100u32 {
            for x in 0..100u32 {
                let px = match (x < 50, y < 50) {
                    (true, true) => [220, 20, 30],
                    _ => [20, 40, 200],
                };
                let i = ((y * 100 + x) * 3) as usize;
                img.data[i..i + 3].copy_from_slice(&px);
            }
        }
        img
    }

    #[test]
    fn descriptor_is_normalised_and_separates_colours() {
        let img = scene();
        let red = colour_descriptor(&img, [0.0, 0.0, 0.5, 1.0]);
        let blue = colour_descriptor(&img, [0.5, 0.0, 1.0, 1.0]);
        assert_eq!(red.len(), COLOUR_DESCRIPTOR_LEN);
        assert!((norm(&red) - 1.0).abs() < 1e-5);
        assert!((norm(&blue) - 1.0).abs() < 1e-5);
        assert_ne!(red, blue);
        // Same trousers, different shirts: similar but clearly not equal.
        let sim = cosine(&red, &blue);
        assert!(sim < 0.8, "similarity {sim}");
        // Deterministic and self-similar.
        assert_eq!(red, colour_descriptor(&img, [0.0, 0.0, 0.5, 1.0]));
        let red_again = colour_descriptor(&img, [0.05, 0.02, 0.45, 0.98]);
        assert!(cosine(&red, &red_again) > 0.95);
    }

    #[test]
    fn pure_red_and_blue_crops_are_far_apart() {
        let red = RgbImage::filled(20, 40, [230, 10, 10]);
        let blue = RgbImage::filled(20, 40, [10, 10, 230]);
        let a = colour_descriptor(&red, [0.0, 0.0, 1.0, 1.0]);
        let b = colour_descriptor(&blue, [0.0, 0.0, 1.0, 1.0]);
        assert!(cosine(&a, &b) < 0.01);
    }

    #[test]
    fn degenerate_inputs_still_give_unit_vectors() {
        let empty = RgbImage {
            width: 0,
            height: 0,
            data: vec![],
        };
        assert!((norm(&colour_descriptor(&empty, [0.0, 0.0, 1.0, 1.0])) - 1.0).abs() < 1e-5);
        let img = scene();
        let v = colour_descriptor(&img, [f32::NAN, 2.0, -1.0, 0.5]);
        assert!((norm(&v) - 1.0).abs() < 1e-5);
        let v = colour_descriptor(&img, [0.99, 0.99, 0.99, 0.99]);
        assert!((norm(&v) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn combined_cosine_is_the_weighted_mean_of_both_cosines() {
        let unit = |v: Vec<f32>| {
            let n = norm(&v);
            v.into_iter().map(|x| x / n).collect::<Vec<_>>()
        };
        let (c1, c2) = (unit(vec![1.0, 0.0, 1.0]), unit(vec![0.0, 1.0, 1.0]));
        let (m1, m2) = (unit(vec![1.0, 2.0]), unit(vec![2.0, 1.0]));
        for w in [0.0f32, 0.25, 0.5, 1.0] {
            let (a, b) = (combine(&c1, &m1, w), combine(&c2, &m2, w));
            assert_eq!(a.len(), 5);
            assert!((norm(&a) - 1.0).abs() < 1e-5);
            let want = (1.0 - w) * cosine(&c1, &c2) + w * cosine(&m1, &m2);
            assert!((cosine(&a, &b) - want).abs() < 1e-5, "w {w}");
        }
        // A weight outside 0..1 is clamped rather than producing NaN.
        assert!(combine(&c1, &m1, f32::NAN).iter().all(|x| x.is_finite()));
        assert!((norm(&combine(&c1, &m1, 7.0)) - 1.0).abs() < 1e-5);
    }

    proptest! {
        #[test]
        fn descriptor_always_unit(x0 in -0.5f32..1.5, y0 in -0.5f32..1.5, x1 in -0.5f32..1.5, y1 in -0.5f32..1.5) {
            let v = colour_descriptor(&scene(), [x0, y0, x1, y1]);
            prop_assert_eq!(v.len(), COLOUR_DESCRIPTOR_LEN);
            prop_assert!((norm(&v) - 1.0).abs() < 1e-4);
        }
    }
}
