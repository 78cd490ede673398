//! Letterboxing: resize keeping aspect ratio, paste top-left on a square
//! canvas padded with 114, and convert HWC RGB u8 to NCHW BGR f32 (0..255),
//! the YOLOX input convention.
