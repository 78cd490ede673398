//! Letterboxing: resize keeping aspect ratio, paste top-left on a square
//! canvas padded with 114, and convert HWC RGB u8 to NCHW BGR f32 (0..255),
//! the YOLOX input convention.
//!
//! Because the image is pasted at the top-left corner, mapping a box from
//! model input pixels back to the source image is a single division by
//! [`Geometry::scale`].

use fast_image_resize::Resizer;

use super::image::{resize_exact, RgbImage};
use super::DetectError;

/// Value of the padding pixels (all three channels).
pub const PAD_VALUE: f32 = 114.0;

/// How a source image was placed in the square model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Side of the square model input in pixels.
    pub input_size: u32,
    /// Input pixels per source pixel (`min(S / w, S / h)`).
    pub scale: f32,
    /// Width of the resized image inside the input (pasted at x = 0).
    pub resized_width: u32,
    /// Height of the resized image inside the input (pasted at y = 0).
    pub resized_height: u32,
    /// Source image width, to normalise boxes.
    pub src_width: u32,
    /// Source image height, to normalise boxes.
    pub src_height: u32,
}

impl Geometry {
    /// Placement of a `src_width` x `src_height` image in an `input_size` square.
    pub fn new(src_width: u32, src_height: u32, input_size: u32) -> Geometry {
        let s = input_size as f64;
        let scale = (s / src_width.max(1) as f64).min(s / src_height.max(1) as f64);
        let rw = ((src_width as f64 * scale) as u32).clamp(1, input_size.max(1));
        let rh = ((src_height as f64 * scale) as u32).clamp(1, input_size.max(1));
        Geometry {
            input_size,
            scale: scale as f32,
            resized_width: rw,
            resized_height: rh,
            src_width,
            src_height,
        }
    }

    /// Map `[x1,y1,x2,y2]` in model input pixels to `[x1,y1,x2,y2]`
    /// normalised 0..1 of the source image, clamped to the image.
    pub fn to_normalised(&self, b: [f32; 4]) -> [f32; 4] {
        let sx = self.scale * self.src_width.max(1) as f32;
        let sy = self.scale * self.src_height.max(1) as f32;
        [
            (b[0] / sx).clamp(0.0, 1.0),
            (b[1] / sy).clamp(0.0, 1.0),
            (b[2] / sx).clamp(0.0, 1.0),
            (b[3] / sy).clamp(0.0, 1.0),
        ]
    }
}

/// Write the NCHW BGR f32 tensor for an already resized RGB image pasted
/// top-left in an `input_size` square padded with [`PAD_VALUE`].
/// `out` is resized to `3 * input_size * input_size`.
pub fn fill_tensor(resized: &RgbImage, input_size: u32, out: &mut Vec<f32>) {
    let s = input_size as usize;
    let plane = s * s;
    out.clear();
    out.resize(3 * plane, PAD_VALUE);
    let w = (resized.width as usize).min(s);
    let h = (resized.height as usize).min(s);
    let stride = resized.width as usize * 3;
    let (b_plane, rest) = out.split_at_mut(plane);
    let (g_plane, r_plane) = rest.split_at_mut(plane);
    for y in 0..h {
        let row = &resized.data[y * stride..y * stride + w * 3];
        let o = y * s;
        for (x, px) in row.chunks_exact(3).enumerate() {
            r_plane[o + x] = px[0] as f32;
            g_plane[o + x] = px[1] as f32;
            b_plane[o + x] = px[2] as f32;
        }
    }
}

/// Reusable letterboxer: keeps the resizer scratch space and the output
/// tensor between frames so steady-state inference does not allocate it.
pub struct Letterboxer {
    /// Scratch state of the resampler.
    resizer: Resizer,
    /// The NCHW BGR f32 tensor of the latest call.
    tensor: Vec<f32>,
}

impl Default for Letterboxer {
    fn default() -> Self {
        Self::new()
    }
}

impl Letterboxer {
    /// A letterboxer with empty buffers.
    pub fn new() -> Letterboxer {
        Letterboxer {
            resizer: Resizer::new(),
            tensor: Vec::new(),
        }
    }

    /// Letterbox `img` into an `input_size` square; the tensor is then
    /// available from [`Letterboxer::tensor`].
    pub fn run(&mut self, img: &RgbImage, input_size: u32) -> Result<Geometry, DetectError> {
        img.validate()?;
        if input_size == 0 {
            return Err(DetectError::Image("input size 0".into()));
        }
        let g = Geometry::new(img.width, img.height, input_size);
        if g.resized_width == img.width && g.resized_height == img.height {
            fill_tensor(img, input_size, &mut self.tensor);
        } else {
            let resized = resize_exact(&mut self.resizer, img, g.resized_width, g.resized_height)?;
            fill_tensor(&resized, input_size, &mut self.tensor);
        }
        Ok(g)
    }

    /// The tensor written by the latest [`Letterboxer::run`]
    /// (`[1, 3, S, S]`, BGR planes, 0..255).
    pub fn tensor(&self) -> &[f32] {
        &self.tensor
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn geometry_landscape_and_portrait() {
        let g = Geometry::new(768, 576, 416);
        assert_eq!((g.resized_width, g.resized_height), (416, 312));
        assert!((g.scale - 416.0 / 768.0).abs() < 1e-6);
        let g = Geometry::new(300, 600, 320);
        assert_eq!((g.resized_width, g.resized_height), (160, 320));
        let g = Geometry::new(512, 512, 640);
        assert_eq!((g.resized_width, g.resized_height), (640, 640));
    }

    #[test]
    fn normalised_mapping_inverts_letterbox() {
        let g = Geometry::new(768, 576, 416);
        // The full resized area maps to the full image.
        let n = g.to_normalised([0.0, 0.0, 416.0, 312.0]);
        for (a, b) in n.iter().zip([0.0, 0.0, 1.0, 1.0]) {
            assert!((a - b).abs() < 1e-3, "{n:?}");
        }
        // A box in the padding clamps to the image edge.
        let n = g.to_normalised([100.0, 350.0, 200.0, 400.0]);
        assert_eq!(n[1], 1.0);
        let n = g.to_normalised([208.0, 78.0, 312.0, 156.0]);
        assert!((n[0] - 0.5).abs() < 1e-3 && (n[1] - 0.25).abs() < 1e-3);
    }

    #[test]
    fn tensor_is_bgr_planes_with_padding() {
        // 4x2 image of pure red, letterboxed into 4: resized 4x2, rows 2..4 padded.
        let img = RgbImage::filled(4, 2, [200, 10, 50]);
        let mut lb = Letterboxer::new();
        let g = lb.run(&img, 4).unwrap();
        assert_eq!((g.resized_width, g.resized_height), (4, 2));
        let t = lb.tensor();
        assert_eq!(t.len(), 3 * 16);
        // channel 0 = blue, 1 = green, 2 = red
        assert_eq!(t[0], 50.0);
        assert_eq!(t[16], 10.0);
        assert_eq!(t[32], 200.0);
        // row 2 (padding) in each plane
        assert_eq!(t[8], PAD_VALUE);
        assert_eq!(t[16 + 15], PAD_VALUE);
        assert_eq!(t[32 + 12], PAD_VALUE);
        assert_eq!(t[32 + 7], 200.0);
    }

    #[test]
    fn downscaled_solid_image_keeps_colour() {
        let img = RgbImage::filled(100, 50, [30, 60, 90]);
        let mut lb = Letterboxer::new();
        let g = lb.run(&img, 20).unwrap();
        assert_eq!((g.resized_width, g.resized_height), (20, 10));
        let t = lb.tensor();
        assert_eq!(t[5 * 20 + 7], 90.0);
        assert_eq!(t[400 + 5 * 20 + 7], 60.0);
        assert_eq!(t[800 + 5 * 20 + 7], 30.0);
        assert_eq!(t[800 + 15 * 20 + 7], PAD_VALUE);
    }

    #[test]
    fn bad_image_is_an_error() {
        let img = RgbImage {
            width: 10,
            height: 10,
            data: vec![0; 10],
        };
        assert!(Letterboxer::new().run(&img, 32).is_err());
    }

    proptest! {
        #[test]
        fn geometry_fits_inside_input(w in 1u32..4000, h in 1u32..4000, s in 1u32..1300) {
            let g = Geometry::new(w, h, s);
            prop_assert!(g.resized_width <= s && g.resized_height <= s);
            prop_assert!(g.resized_width >= 1 && g.resized_height >= 1);
            // The long side fills the input (up to rounding down).
            prop_assert!(g.resized_width.max(g.resized_height) + 1 >= s);
        }
    }
}
