//! Decoding of raw detector heads into candidate boxes in model input pixels.
//!
//! * YOLOX raw head `[1, N, 5 + C]`: per anchor `(dx, dy, log w, log h, obj,
//!   cls...)` over grids of strides 8, 16, 32; objectness and class scores are
//!   already sigmoid; centre = `(d + grid) * stride`, size = `exp(l) * stride`.
//! * Ultralytics YOLOv8 / YOLO11 `[1, 4 + C, N]`: per anchor `(cx, cy, w, h)`
//!   in input pixels followed by sigmoid class scores; no objectness.

use std::str::FromStr;

use super::DetectError;

/// YOLOX feature-map strides, in output order.
pub const YOLOX_STRIDES: [u32; 3] = [8, 16, 32];

/// Layout of the model's output head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// YOLOX raw head `[1, N, 5 + C]`.
    Yolox,
    /// Ultralytics YOLOv8 / YOLO11 head `[1, 4 + C, N]`.
    Yolov8,
}

impl ModelType {
    /// Config name of the model type.
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelType::Yolox => "yolox",
            ModelType::Yolov8 => "yolov8",
        }
    }
}

impl FromStr for ModelType {
    type Err = DetectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "yolox" => Ok(ModelType::Yolox),
            "yolov8" | "yolo11" | "ultralytics" => Ok(ModelType::Yolov8),
            other => Err(DetectError::Config {
                what: "model type".into(),
                reason: format!("{other:?} (expected yolox, yolov8, yolo11 or ultralytics)"),
            }),
        }
    }
}

/// One decoded box before NMS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Best class index.
    pub class_id: usize,
    /// Confidence of that class (objectness x class score for YOLOX).
    pub score: f32,
    /// `[x1, y1, x2, y2]` in model input pixels.
    pub bbox: [f32; 4],
}

/// Number of YOLOX anchors for an input of `width` x `height`.
pub fn yolox_anchor_count(width: u32, height: u32) -> usize {
    YOLOX_STRIDES
        .iter()
        .map(|s| ((height / s) * (width / s)) as usize)
        .sum()
}

/// `v < t`, treating NaN as below every threshold.
#[inline]
fn below(v: f32, t: f32) -> bool {
    v.is_nan() || v < t
}

fn best_class(scores: impl Iterator<Item = f32>) -> (usize, f32) {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, s) in scores.enumerate() {
        if s > best.1 {
            best = (i, s);
        }
    }
    best
}

/// Decode a YOLOX raw head. `data` is the `[1, N, row_len]` tensor in
/// row-major order, `row_len = 5 + C`; `width`/`height` are the model input
/// size. `keep` filters class ids (e.g. a label allow-list).
pub fn decode_yolox(
    data: &[f32],
    row_len: usize,
    width: u32,
    height: u32,
    min_score: f32,
    keep: &dyn Fn(usize) -> bool,
) -> Result<Vec<Candidate>, DetectError> {
    if row_len < 6 {
        return Err(DetectError::Inference(format!(
            "YOLOX head rows have {row_len} values, need at least 6 (4 box + objectness + classes)"
        )));
    }
    let n = data.len() / row_len;
    let expected = yolox_anchor_count(width, height);
    if !data.len().is_multiple_of(row_len) || n != expected {
        return Err(DetectError::Inference(format!(
            "YOLOX head has {n} anchors of {row_len} values ({} floats), a {width}x{height} input needs {expected}",
            data.len()
        )));
    }
    let mut out = Vec::new();
    let mut idx = 0usize;
    for stride in YOLOX_STRIDES {
        let (gw, gh) = (width / stride, height / stride);
        let sf = stride as f32;
        for gy in 0..gh {
            for gx in 0..gw {
                let row = &data[idx * row_len..(idx + 1) * row_len];
                idx += 1;
                let obj = row[4];
                if below(obj, min_score) {
                    continue;
                }
                let (cls, cls_score) = best_class(row[5..].iter().copied());
                let score = obj * cls_score;
                if below(score, min_score) || !keep(cls) {
                    continue;
                }
                let cx = (row[0] + gx as f32) * sf;
                let cy = (row[1] + gy as f32) * sf;
                let w = row[2].min(20.0).exp() * sf;
                let h = row[3].min(20.0).exp() * sf;
                out.push(Candidate {
                    class_id: cls,
                    score,
                    bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                });
            }
        }
    }
    Ok(out)
}

/// Decode an Ultralytics YOLOv8/YOLO11 head. `data` is `[1, 4 + C, N]` in
/// row-major order (attribute-major), `channels = 4 + C`.
pub fn decode_yolov8(
    data: &[f32],
    channels: usize,
    min_score: f32,
    keep: &dyn Fn(usize) -> bool,
) -> Result<Vec<Candidate>, DetectError> {
    if channels < 5 || !data.len().is_multiple_of(channels) {
        return Err(DetectError::Inference(format!(
            "YOLOv8 head has {} floats, not a multiple of {channels} channels (need 4 box + classes)",
            data.len()
        )));
    }
    let n = data.len() / channels;
    let at = |c: usize, i: usize| data[c * n + i];
    let mut out = Vec::new();
    for i in 0..n {
        let (cls, score) = best_class((4..channels).map(|c| at(c, i)));
        if below(score, min_score) || !keep(cls) {
            continue;
        }
        let (cx, cy, w, h) = (at(0, i), at(1, i), at(2, i), at(3, i));
        out.push(Candidate {
            class_id: cls,
            score,
            bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(_: usize) -> bool {
        true
    }

    #[test]
    fn model_type_parses() {
        assert_eq!("yolox".parse::<ModelType>().unwrap(), ModelType::Yolox);
        assert_eq!("YOLOv8".parse::<ModelType>().unwrap(), ModelType::Yolov8);
        assert_eq!("yolo11".parse::<ModelType>().unwrap(), ModelType::Yolov8);
        assert_eq!(
            "ultralytics".parse::<ModelType>().unwrap(),
            ModelType::Yolov8
        );
        let e = "ssd".parse::<ModelType>().unwrap_err().to_string();
        assert!(e.contains("ssd") && e.contains("yolox"), "{e}");
    }

    #[test]
    fn anchor_counts() {
        assert_eq!(yolox_anchor_count(416, 416), 3549);
        assert_eq!(yolox_anchor_count(640, 640), 8400);
        assert_eq!(yolox_anchor_count(320, 320), 2100);
    }

    #[test]
    fn yolox_hand_built_tensor() {
        // 64x32 input, 3 classes: strides 8 (8x4=32), 16 (4x2=8), 32 (2x1=2) -> 42 anchors.
        let (w, h, c) = (64u32, 32u32, 3usize);
        let row_len = 5 + c;
        let n = yolox_anchor_count(w, h);
        assert_eq!(n, 42);
        let mut data = vec![0.0f32; n * row_len];
        // Anchor on stride 8 at grid (x=3, y=2): index 2*8+3 = 19.
        let i = 19;
        data[i * row_len..(i + 1) * row_len].copy_from_slice(&[
            0.5,
            0.25,
            (2.0f32).ln(),
            (4.0f32).ln(),
            0.9,
            0.1,
            0.8,
            0.2,
        ]);
        // Anchor on stride 16 at grid (x=1, y=1): index 32 + 1*4 + 1 = 37, low score.
        let j = 37;
        data[j * row_len..(j + 1) * row_len]
            .copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 0.3, 0.5, 0.1, 0.1]);
        // Anchor on stride 32 at grid (x=1, y=0): index 40 + 1 = 41.
        let k = 41;
        data[k * row_len..(k + 1) * row_len]
            .copy_from_slice(&[0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.7]);
        let out = decode_yolox(&data, row_len, w, h, 0.25, &all).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        let a = out[0];
        assert_eq!(a.class_id, 1);
        assert!((a.score - 0.72).abs() < 1e-5);
        // centre ((0.5+3)*8, (0.25+2)*8) = (28, 18); size (16, 32)
        let want = [20.0, 2.0, 36.0, 34.0];
        for (g, w) in a.bbox.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{:?}", a.bbox);
        }
        let b = out[1];
        assert_eq!(b.class_id, 2);
        // centre ((0.5+1)*32, 0.5*32) = (48, 16); size 32x32
        assert_eq!(b.bbox, [32.0, 0.0, 64.0, 32.0]);
        // class filter
        let only_two = decode_yolox(&data, row_len, w, h, 0.25, &|c| c == 2).unwrap();
        assert_eq!(only_two.len(), 1);
        assert_eq!(only_two[0].class_id, 2);
    }

    #[test]
    fn yolox_wrong_anchor_count_is_an_error() {
        let data = vec![0.0f32; 10 * 85];
        let e = decode_yolox(&data, 85, 416, 416, 0.3, &all)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3549"), "{e}");
    }

    #[test]
    fn yolov8_hand_built_tensor() {
        // 2 classes, 3 anchors: layout [6, 3].
        let channels = 6;
        let n = 3;
        let mut data = vec![0.0f32; channels * n];
        let mut set = |c: usize, i: usize, v: f32| data[c * n + i] = v;
        // anchor 0: box centre (100, 50) size 20x40, class 1 score 0.9
        set(0, 0, 100.0);
        set(1, 0, 50.0);
        set(2, 0, 20.0);
        set(3, 0, 40.0);
        set(4, 0, 0.1);
        set(5, 0, 0.9);
        // anchor 1: below threshold
        set(4, 1, 0.2);
        // anchor 2: class 0 score 0.6
        set(0, 2, 10.0);
        set(1, 2, 10.0);
        set(2, 2, 4.0);
        set(3, 2, 4.0);
        set(4, 2, 0.6);
        let out = decode_yolov8(&data, channels, 0.5, &all).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].class_id, 1);
        assert!((out[0].score - 0.9).abs() < 1e-6);
        assert_eq!(out[0].bbox, [90.0, 30.0, 110.0, 70.0]);
        assert_eq!(out[1].class_id, 0);
        assert_eq!(out[1].bbox, [8.0, 8.0, 12.0, 12.0]);
        assert!(decode_yolov8(&data[..17], channels, 0.5, &all).is_err());
    }

    proptest! {
        #[test]
        fn yolox_decode_never_panics(vals in proptest::collection::vec(-50.0f32..50.0, 42 * 8)) {
            let out = decode_yolox(&vals, 8, 64, 32, 0.0, &all).unwrap();
            for c in out {
                prop_assert!(c.bbox[0] <= c.bbox[2] && c.bbox[1] <= c.bbox[3]);
                prop_assert!(c.class_id < 3);
            }
        }
    }
}
