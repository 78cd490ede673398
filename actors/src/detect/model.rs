//! ONNX Runtime session wrapper: runtime initialisation, backend selection,
//! model validation and the end-to-end `detect` call.

use std::path::PathBuf;
use std::str::FromStr;

use super::decode::ModelType;
use super::image::RgbImage;
use super::DetectError;

/// Execution provider to run the model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Plain CPU.
    Cpu,
    /// NVIDIA CUDA.
    Cuda,
    /// AMD ROCm.
    Rocm,
    /// Apple CoreML.
    CoreMl,
    /// Intel OpenVINO.
    OpenVino,
}

impl Backend {
    /// Config name of the backend.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Rocm => "rocm",
            Backend::CoreMl => "coreml",
            Backend::OpenVino => "openvino",
        }
    }
}

impl FromStr for Backend {
    type Err = DetectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Backend::Cpu),
            "cuda" => Ok(Backend::Cuda),
            "rocm" => Ok(Backend::Rocm),
            "coreml" => Ok(Backend::CoreMl),
            "openvino" => Ok(Backend::OpenVino),
            other => Err(DetectError::Config {
                what: "backend".into(),
                reason: format!("{other:?} (expected cpu, cuda, rocm, coreml or openvino)"),
            }),
        }
    }
}

/// Load the ONNX Runtime library once per process.
pub fn init_runtime() -> Result<(), DetectError> {
    todo!()
}

/// Everything needed to load a [`Detector`].
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// ONNX model file.
    pub model_path: PathBuf,
    /// Output head layout of the model.
    pub model_type: ModelType,
    /// Square letterbox input size in pixels.
    pub input_size: u32,
    /// Requested execution provider.
    pub backend: Backend,
    /// Accelerator index for GPU backends.
    pub device_id: i32,
    /// Use the CPU when the requested backend is unavailable (with a warning).
    pub allow_cpu_fallback: bool,
    /// Intra-op threads; 0 = ONNX Runtime's default.
    pub threads: usize,
    /// IoU threshold of class-aware NMS.
    pub nms_iou: f32,
    /// Class names to keep; empty keeps all.
    pub labels: Vec<String>,
    /// Attach a colour descriptor to each person.
    pub embeddings: bool,
}

/// A loaded detection model.
pub struct Detector {
    _private: (),
}

impl Detector {
    /// Load and validate the model.
    pub fn load(opts: DetectorOptions) -> Result<Detector, DetectError> {
        let _ = opts;
        todo!()
    }
    /// Effective backend ("cpu" after a fallback).
    pub fn backend(&self) -> &str {
        todo!()
    }
    /// Why the requested backend was not used, if it was not.
    pub fn fallback_reason(&self) -> Option<&str> {
        todo!()
    }
    /// Model file stem.
    pub fn model_name(&self) -> &str {
        todo!()
    }
    /// Square input size.
    pub fn input_size(&self) -> u32 {
        todo!()
    }
    /// Detect objects; bboxes are normalised 0..1 of `img`.
    pub fn detect(&mut self, img: &RgbImage, min_confidence: f32) -> Result<Vec<nvr_subjects::DetectedObject>, DetectError> {
        let _ = (img, min_confidence);
        todo!()
    }
}
