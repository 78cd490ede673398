//! Decoding of raw detector heads into candidate boxes in input pixels.

use std::str::FromStr;

use super::DetectError;

/// Layout of the model's output head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// YOLOX raw head `[1, N, 5 + C]`.
    Yolox,
    /// Ultralytics YOLOv8 / YOLO11 head `[1, 4 + C, N]`.
    Yolov8,
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
