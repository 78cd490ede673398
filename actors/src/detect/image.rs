//! Packed RGB images and JPEG decode/encode/resize helpers used by cameras
//! (encode before publishing) and detectors (decode before inference).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::DetectError;

/// Largest width or height accepted from a JPEG header (guards memory use on
/// hostile input).
pub const MAX_JPEG_SIDE: usize = 16_384;

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

impl RgbImage {
    /// An image of one solid colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> RgbImage {
        let n = width as usize * height as usize;
        let mut data = Vec::with_capacity(n * 3);
        for _ in 0..n {
            data.extend_from_slice(&rgb);
        }
        RgbImage {
            width,
            height,
            data,
        }
    }

    /// Wrap a packed RGB buffer, checking that its length matches the size.
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Result<RgbImage, DetectError> {
        let img = RgbImage {
            width,
            height,
            data,
        };
        img.validate()?;
        Ok(img)
    }

    /// Check that the buffer length is `width * height * 3` and neither side is 0.
    pub fn validate(&self) -> Result<(), DetectError> {
        if self.width == 0 || self.height == 0 {
            return Err(DetectError::Image(format!(
                "empty image {}x{}",
                self.width, self.height
            )));
        }
        let want = self.width as usize * self.height as usize * 3;
        if self.data.len() != want {
            return Err(DetectError::Image(format!(
                "{}x{} RGB image needs {} bytes, buffer has {}",
                self.width,
                self.height,
                want,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// RGB value at `(x, y)`; the caller keeps coordinates in range.
    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// Most pixels [`decode_jpeg`] accepts from a header (8K UHD).
pub const DEFAULT_MAX_PIXELS: u64 = 7680 * 4320;

/// Decode a JPEG into packed RGB. Corrupt input returns `Err`, never panics.
/// Images that declare more than [`DEFAULT_MAX_PIXELS`] are refused.
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, DetectError> {
    decode_jpeg_limited(bytes, DEFAULT_MAX_PIXELS)
}

/// Decode a JPEG into packed RGB, refusing one whose header declares more
/// than `max_pixels` before any pixel buffer is allocated (a 19 KB file can
/// declare 16384 x 16384 pixels: 800 MB once decoded).
pub fn decode_jpeg_limited(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, DetectError> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(DetectError::Decode(format!(
            "not a JPEG ({} bytes, missing SOI marker)",
            bytes.len()
        )));
    }
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_JPEG_SIDE)
        .set_max_height(MAX_JPEG_SIDE);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    // zune-jpeg is written to return errors, but a decoder bug must not take the
    // worker down with it.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decoder
            .decode_headers()
            .map_err(|e| DetectError::Decode(format!("bad JPEG header: {e:?}")))?;
        let info = decoder
            .info()
            .ok_or_else(|| DetectError::Decode("JPEG header without frame info".into()))?;
        let declared = u64::from(info.width) * u64::from(info.height);
        if declared > max_pixels {
            return Err(DetectError::TooLarge(format!(
                "JPEG header declares {}x{} = {declared} pixels, more than the limit of {max_pixels}",
                info.width, info.height
            )));
        }
        let pixels = decoder
            .decode()
            .map_err(|e| DetectError::Decode(format!("corrupt JPEG: {e:?}")))?;
        Ok::<_, DetectError>((info.width as u32, info.height as u32, pixels))
    }))
    .map_err(|_| DetectError::Decode("JPEG decoder panicked on corrupt input".into()))??;
    let (width, height, pixels) = decoded;
    let out_cs = decoder.output_colorspace().unwrap_or(ColorSpace::RGB);
    let data = match out_cs.num_components() {
        3 => pixels,
        1 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        n => {
            return Err(DetectError::Decode(format!(
                "unsupported JPEG output colour space {out_cs:?} ({n} components)"
            )))
        }
    };
    RgbImage::from_raw(width, height, data)
        .map_err(|e| DetectError::Decode(format!("JPEG decoded to a bad buffer: {e}")))
}

/// Encode packed RGB as a baseline JPEG of the given quality (clamped to 1..=100).
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, DetectError> {
    img.validate()
        .map_err(|e| DetectError::Encode(e.to_string()))?;
    let (w, h) = (
        u16::try_from(img.width)
            .map_err(|_| DetectError::Encode(format!("width {} exceeds 65535", img.width)))?,
        u16::try_from(img.height)
            .map_err(|_| DetectError::Encode(format!("height {} exceeds 65535", img.height)))?,
    );
    let mut out = Vec::with_capacity(img.data.len() / 8);
    let encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    encoder
        .encode(&img.data, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| DetectError::Encode(e.to_string()))?;
    Ok(out)
}

/// Resize `img` to exactly `width` x `height` (bilinear convolution, which
/// also anti-aliases when shrinking), reusing `resizer`'s scratch buffers.
pub fn resize_exact(
    resizer: &mut Resizer,
    img: &RgbImage,
    width: u32,
    height: u32,
) -> Result<RgbImage, DetectError> {
    img.validate()?;
    if width == 0 || height == 0 {
        return Err(DetectError::Image(format!(
            "cannot resize to {width}x{height}"
        )));
    }
    if width == img.width && height == img.height {
        return Ok(img.clone());
    }
    let src = ImageRef::new(img.width, img.height, &img.data, PixelType::U8x3)
        .map_err(|e| DetectError::Image(format!("resize source: {e}")))?;
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    resizer
        .resize(&src, &mut dst, &options)
        .map_err(|e| DetectError::Image(format!("resize failed: {e}")))?;
    Ok(RgbImage {
        width,
        height,
        data: dst.into_vec(),
    })
}

/// Size that fits `(width, height)` into a `max_side` square keeping the
/// aspect ratio (never upscales; each side at least 1).
pub fn fit_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if max_side == 0 || longest <= max_side {
        return (width, height);
    }
    let scale = max_side as f64 / longest as f64;
    let w = ((width as f64 * scale).round() as u32).clamp(1, max_side);
    let h = ((height as f64 * scale).round() as u32).clamp(1, max_side);
    (w, h)
}

/// Downscale so that the longer side is at most `max_side`, keeping the
/// aspect ratio. Returns an unchanged copy if already small enough (or if
/// `max_side` is 0, or the image buffer is malformed).
pub fn resize_to_fit(img: &RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = fit_size(img.width, img.height, max_side);
    if (w, h) == (img.width, img.height) {
        return img.clone();
    }
    let mut resizer = Resizer::new();
    resize_exact(&mut resizer, img, w, h).unwrap_or_else(|_| img.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[
                    (x * 255 / w.max(1)) as u8,
                    (y * 255 / h.max(1)) as u8,
                    128,
                ]);
            }
        }
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn jpeg_round_trip_keeps_size_and_colours() {
        let img = gradient(64, 48);
        let bytes = encode_jpeg(&img, 95).unwrap();
        assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
        let back = decode_jpeg(&bytes).unwrap();
        assert_eq!((back.width, back.height), (64, 48));
        assert_eq!(back.data.len(), img.data.len());
        let mean_abs: f64 = img
            .data
            .iter()
            .zip(&back.data)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / img.data.len() as f64;
        assert!(mean_abs < 4.0, "mean abs error {mean_abs}");
    }

    #[test]
    fn corrupt_jpeg_is_an_error() {
        assert!(decode_jpeg(&[]).is_err());
        assert!(decode_jpeg(b"hello world").is_err());
        let bytes = encode_jpeg(&gradient(32, 32), 80).unwrap();
        assert!(decode_jpeg(&bytes[..bytes.len() / 3]).is_err());
        let err = decode_jpeg(b"not a jpeg").unwrap_err().to_string();
        assert!(err.contains("JPEG"), "{err}");
    }

    #[test]
    fn encode_rejects_bad_buffer() {
        let bad = RgbImage {
            width: 10,
            height: 10,
            data: vec![0; 5],
        };
        assert!(encode_jpeg(&bad, 80).is_err());
    }

    #[test]
    fn resize_to_fit_keeps_aspect_and_skips_small() {
        let img = gradient(768, 576);
        let small = resize_to_fit(&img, 640);
        assert_eq!((small.width, small.height), (640, 480));
        assert_eq!(small.data.len(), 640 * 480 * 3);
        let same = resize_to_fit(&img, 1000);
        assert_eq!(same, img);
        let tall = resize_to_fit(&gradient(100, 400), 200);
        assert_eq!((tall.width, tall.height), (50, 200));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_jpeg(&bytes);
        }

        #[test]
        fn mutated_jpeg_never_panics(pos in 0usize..4096, val in any::<u8>(), cut in 0usize..4096) {
            let mut bytes = encode_jpeg(&gradient(40, 30), 70).unwrap();
            let p = pos % bytes.len();
            bytes[p] = val;
            let c = cut % (bytes.len() + 1);
            bytes.truncate(c.max(p + 1));
            let _ = decode_jpeg(&bytes);
        }
    }
}
