//! The configuration of the room: spatial shards, floors, cameras and their
//! image-to-floor calibration.

use serde::{Deserialize, Serialize};

/// A spatial shard: a named set of cameras.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// Shard name (subject token).
    pub name: String,
    /// Cameras it tracks.
    pub cameras: Vec<String>,
}

/// A floor plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FloorConfig {
    /// Floor id.
    pub id: String,
    /// Width and depth in metres.
    #[serde(default)]
    pub size_m: [f64; 2],
    /// Optional plan image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// A camera.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Camera id (subject token).
    pub id: String,
    /// Source URL (rtsp, http, file); absent = detections come from elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Loop a file source.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// RTSP transport (`tcp` or `udp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_transport: Option<String>,
    /// Floor the camera looks at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
    /// Per-camera detection settings.
    #[serde(default)]
    pub detection: CameraDetection,
    /// Image-to-floor calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// Per-camera detection settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CameraDetection {
    /// Frames per second sent to detection; absent = `detection.default_fps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Minimum score; absent = `detection.min_confidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f32>,
    /// The camera's white point, R, G, B (1..255): the mean colour of its
    /// person boxes as the detection status measures it
    /// (`cameras.<id>.white_point`). Set, the colour descriptors of its
    /// persons take out its colour cast (its brightness stays), so that one
    /// person's descriptors agree across cameras that differ in colour;
    /// absent = described as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub white_point: Option<[f64; 3]>,
}

/// Pixel-to-floor calibration: correspondences or an explicit matrix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// At least 4 image-pixel to floor-metre correspondences.
    #[serde(default)]
    pub points: Vec<CalibrationPoint>,
    /// An explicit 3x3 homography (image pixels to floor metres).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homography: Option<[[f64; 3]; 3]>,
}

/// One correspondence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CalibrationPoint {
    /// Pixel `[u, v]` in the original frame.
    pub image: [f64; 2],
    /// Floor position `[x, y]` in metres.
    pub floor: [f64; 2],
}
