//! Appearance descriptors for re-identification: a cheap deterministic colour
//! histogram, and an optional ONNX re-ID model.

use std::path::Path;

use super::image::RgbImage;
use super::model::Backend;
use super::DetectError;

/// L2-normalised colour descriptor of the box `bbox_norm` (`[x1,y1,x2,y2]`
/// normalised 0..1 of `img`).
pub fn colour_descriptor(img: &RgbImage, bbox_norm: [f32; 4]) -> Vec<f32> {
    let _ = (img, bbox_norm);
    todo!()
}

/// Optional ONNX re-identification model: input `[N,3,H,W]`, output `[N,D]`.
pub struct OnnxEmbedder {
    _private: (),
}

impl OnnxEmbedder {
    /// Load a re-ID model.
    pub fn load(path: &Path, backend: Backend, device_id: i32, threads: usize) -> Result<Self, DetectError> {
        let _ = (path, backend, device_id, threads);
        todo!()
    }

    /// Embed each box of `img`; one L2-normalised vector per box.
    pub fn embed(&mut self, img: &RgbImage, bboxes: &[[f32; 4]]) -> Result<Vec<Vec<f32>>, DetectError> {
        let _ = (img, bboxes);
        todo!()
    }
}
