//! Object detection core: image decoding, letterboxing, ONNX Runtime
//! inference, raw-head decoding (YOLOX and Ultralytics YOLOv8/YOLO11),
//! class-aware NMS and cheap appearance descriptors.
//!
//! Everything here is plain Rust over in-memory buffers; the only outside
//! resource is the ONNX Runtime shared library and the model file, both loaded
//! by [`model::Detector::load`].

pub mod batch;
pub mod bench;
pub mod decode;
pub mod embed;
pub mod frames;
pub mod image;
pub mod labels;
pub mod letterbox;
pub mod model;
mod model_io;
pub mod nms;
pub mod runtime;
pub mod white_balance;

pub use decode::ModelType;
pub use image::RgbImage;
pub use model::{Detector, DetectorOptions};
pub use nvr_subjects::DetectedObject;
pub use runtime::{init_runtime, Backend, RuntimeOptions};

/// Everything that can go wrong in the detection core. Each variant displays
/// as one line naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("ONNX Runtime library: {0}")]
    Runtime(String),
    /// The model file is missing, unreadable, corrupt or has unexpected shapes.
    #[error("model {path}: {reason}")]
    Model {
        /// Path of the model file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The requested execution provider is not available.
    #[error("backend {backend} is not available in this ONNX Runtime build ({reason})")]
    BackendUnavailable {
        /// Backend name as configured.
        backend: String,
        /// Why it could not be used.
        reason: String,
    },
    /// The requested execution provider is present but failed to start.
    #[error("backend {backend} failed: {reason}")]
    BackendFailed {
        /// Backend name as configured.
        backend: String,
        /// The execution provider's error.
        reason: String,
    },
    /// A configuration value is invalid (unknown backend or model type, ...).
    #[error("invalid {what}: {reason}")]
    Config {
        /// The setting that was wrong.
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Image bytes could not be decoded (corrupt or unsupported JPEG).
    #[error("image decode failed: {0}")]
    Decode(String),
    /// The image declares more pixels than allowed; nothing was decoded.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// Image could not be encoded.
    #[error("image encode failed: {0}")]
    Encode(String),
    /// Image dimensions or buffer size are invalid.
    #[error("invalid image: {0}")]
    Image(String),
    /// Inference failed at run time.
    #[error("inference failed: {0}")]
    Inference(String),
}
