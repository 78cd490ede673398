//! Packed RGB images and JPEG decode/encode/resize helpers used by cameras
//! (encode before publishing) and detectors (decode before inference).

use super::DetectError;

/// A packed 8-bit RGB image (row-major, 3 bytes per pixel, no padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, R,G,B per pixel.
    pub data: Vec<u8>,
}

/// Decode a JPEG into packed RGB. Corrupt input returns `Err`, never panics.
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, DetectError> {
    let _ = bytes;
    todo!()
}

/// Encode packed RGB as a baseline JPEG of the given quality (1..=100).
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, DetectError> {
    let _ = (img, quality);
    todo!()
}

/// Downscale so that the longer side is at most `max_side`, keeping the
/// aspect ratio. Returns a copy unchanged if already small enough.
pub fn resize_to_fit(img: &RgbImage, max_side: u32) -> RgbImage {
    let _ = max_side;
    img.clone()
}
